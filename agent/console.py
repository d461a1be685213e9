"""The terminal: one console for results, one for errors and progress, and the one way a
command reports a user error (one line on stderr, the error's exit code)."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.text import Text

from kagent.errors import KagentError

# No emoji codes (":x" in a model name must print as typed) and no markup in error text.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def failure_tail(verdict, lines: int = 8) -> str | None:
    """The last `lines` non-blank lines of what a failed candidate left behind (its traceback,
    else its stderr, else its compile log): what a person reads to see why it died. None for a
    verdict without any."""
    if verdict is None or verdict.status == "correct":
        return None
    artifacts = verdict.artifacts
    text = artifacts.traceback or artifacts.stderr_tail or artifacts.compile_log or ""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) or None


def fail(err: KagentError, as_json: bool = False):
    """Report `err` as one line on stderr and exit with its code. With `as_json` (a command's
    --json) stdout still gets its one object: {"error": the line, "exit_code": the code}."""
    err_console.print(Text.assemble(("error:", "red"), f" {err}"), soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps({"error": str(err), "exit_code": err.exit_code}) + "\n")
        sys.stdout.flush()
    raise typer.Exit(err.exit_code)
