"""Pull the candidate's Python file out of an LLM reply: fenced blocks, several blocks, prose
around them, or a bare file."""

from __future__ import annotations

import re

FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(reply: str) -> str | None:
    """The block that defines ModelNew (the last such, if the model wrote drafts first);
    None when no usable code is there."""
    blocks = [(lang.lower(), body.strip()) for lang, body in FENCE.findall(reply)]
    with_model = [body for lang, body in blocks if "class ModelNew" in body and lang in ("", "python", "py", "python3")]
    if with_model:
        return with_model[-1] + "\n"
    if not blocks and "class ModelNew" in reply:
        # A bare file: start at its first import.
        start = re.search(r"^(import|from)\s", reply, re.MULTILINE)
        return reply[start.start() if start else 0:].strip() + "\n"
    return None


IDEA = re.compile(r"^\s*\**idea\**\s*:\**\s*(.+)$", re.IGNORECASE | re.MULTILINE)
IDEA_CHARS = 160  # one line of the run's history per candidate


def extract_idea(reply: str) -> str | None:
    """The one-line idea of a Coder reply: its `Idea: ...` line (coder.md asks for one), else
    the first line of prose before the code; None when the reply is code only. At most
    IDEA_CHARS characters."""
    match = IDEA.search(reply)
    if match is None:
        prose = FENCE.split(reply, maxsplit=1)[0] if FENCE.search(reply) else ""
        lines = [line.strip() for line in prose.splitlines() if line.strip()]
        if not lines:
            return None
        text = lines[0]
    else:
        text = match.group(1).strip()
    return text if len(text) <= IDEA_CHARS else text[:IDEA_CHARS - 1] + "…"
