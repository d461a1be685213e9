"""The Coder's knowledge base: short optimisation guides by operation class (element-wise,
reductions, normalisation, softmax, scans, GEMM, convolution, attention, pooling), one section
per backend, chosen from the ATen ops the task's reference actually runs.

The guides and the op-to-class index are data under `prompts/knowledge/` (index.toml and one
`<class>.md` per class with `## cpp`, `## triton`, `## cuda` sections), so adding a class is one
file plus one index entry. The idea of retrieving guides by operation comes from KernelEvolve's
prompt synthesis; the text is this project's own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from kagent.errors import KagentError

FALLBACK_CLASS = "elementwise"  # an op the index does not list is most likely point-wise


@dataclass(frozen=True)
class Guide:
    """One operation class's advice for one backend: `title` (e.g. "Reductions"), `key` (the
    file stem, e.g. "reduction"), `text` (the class's introduction plus the backend section)."""

    key: str
    title: str
    text: str


def _folder():
    return resources.files("kagent.prompts").joinpath("knowledge")


@cache
def _index() -> dict[str, dict]:
    """index.toml as {class key: {"title": str, "ops": [ATen op names]}}."""
    return tomllib.loads(_folder().joinpath("index.toml").read_text())


def classes_for(ops: list[str]) -> list[str]:
    """The operation classes of these ATen op names (overload-packet names, e.g. "addmm",
    "_softmax"), in the index's order, each once. Ops no class lists count as element-wise;
    no ops at all gives no classes."""
    found: set[str] = set()
    for op in ops:
        matches = [key for key, entry in _index().items() if op in entry["ops"]]
        found.update(matches or [FALLBACK_CLASS])
    return [key for key in _index() if key in found]


@cache
def guide(key: str, backend: str) -> Guide:
    """The guide of one class for one backend: the file's text before its first `## ` heading
    plus the `## <backend>` section. Raises KagentError if the file or the section is missing
    (a knowledge base that silently lacks a backend would starve the Coder)."""
    entry = _index().get(key)
    path = _folder().joinpath(f"{key}.md")
    if entry is None or not path.is_file():
        raise KagentError(f"prompts/knowledge/{key}.md: no such guide")
    intro, *sections = path.read_text().split("\n## ")
    for section in sections:
        heading, _, body = section.partition("\n")
        if heading.strip() == backend:
            return Guide(key, entry["title"], f"{intro.strip()}\n\n{body.strip()}")
    raise KagentError(f"prompts/knowledge/{key}.md: no '## {backend}' section")


def guides_for(ops: list[str], backend: str) -> list[Guide]:
    """The guides that apply to a reference running `ops`, for `backend`."""
    return [guide(key, backend) for key in classes_for(ops)]
