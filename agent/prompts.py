"""Prompt templates live as files under prompts/ (Jinja2, https://jinja.palletsprojects.com);
this renders them strictly: a variable without a value is an error, never an empty string in
a prompt (`jinja2.StrictUndefined`).

Templates see the values they are given plus two filters: `fmt` (Python's format spec:
`{{ x | fmt(".3g") }}`) and `speedup` (`agent.present.speedup_text`: `1.23x`, or its argument
for None). Block tags eat the newline after them (`trim_blocks`, `lstrip_blocks`), so a
conditional line is written `{% if x %}line{% endif %}` on a line of its own."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import jinja2

from kagent.agent.present import speedup_text
from kagent.errors import KagentError


def _source(name: str) -> str:
    return resources.files("kagent.prompts").joinpath(name).read_text()


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment for prompts (loads from the installed `kagent.prompts`)."""
    env = jinja2.Environment(loader=jinja2.FunctionLoader(_source), undefined=jinja2.StrictUndefined,
                             autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = format
    env.filters["speedup"] = speedup_text
    return env


def backend_guide(backend: Any) -> str:
    """The Coder's guide for `backend` (a sandbox Backend): its own template (`backend.guide`),
    else prompts/backend_generic.md rendered from the facts the backend declares (name, summary,
    devices, markers, the kagent names its candidates may import)."""
    if backend.guide:
        return render(backend.guide)
    imports = {module: sorted(names) for module, names in sorted(backend.candidate_imports.items())}
    return render("backend_generic", backend_name=backend.name, summary=backend.summary, devices=list(backend.devices),
                  markers=list(backend.markers), imports=imports)


def render(name: str, **values) -> str:
    """prompts/`name`.md rendered with `values`, stripped of surrounding whitespace. Raises
    KagentError naming the template and the variable when a value is missing."""
    try:
        return environment().get_template(f"{name}.md").render(**values).strip()
    except jinja2.UndefinedError as err:
        missing = re.fullmatch(r"'(\w+)' is undefined", err.message or "")
        raise KagentError(f"prompts/{name}.md: " + (f"no value for ${missing[1]}" if missing else str(err.message))) from None
