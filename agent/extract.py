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
