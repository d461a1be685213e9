"""Prompt templates live as files under prompts/; this renders them strictly: a placeholder
without a value is an error, never an empty string in a prompt."""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

from kagent.sandbox.errors import KagentError


@cache
def template(name: str) -> Template:
    return Template(resources.files("kagent.prompts").joinpath(f"{name}.md").read_text())


def render(name: str, **values) -> str:
    try:
        return template(name).substitute(**{k: str(v) for k, v in values.items()}).strip()
    except KeyError as err:
        raise KagentError(f"prompts/{name}.md: no value for ${err.args[0]}") from None
