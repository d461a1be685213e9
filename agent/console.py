"""The terminal: one console for results, one for errors and progress, and the one way a
command reports a user error (one line on stderr, the error's exit code)."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.text import Text

from kagent.sandbox.errors import KagentError

# No emoji codes (":x" in a model name must print as typed) and no markup in error text.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def fail(err: KagentError, as_json: bool = False):
    """Report `err` as one line on stderr and exit with its code. With `as_json` (a command's
    --json) stdout still gets its one object: {"error": the line, "exit_code": the code}."""
    err_console.print(Text.assemble(("error:", "red"), f" {err}"), soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps({"error": str(err), "exit_code": err.exit_code}) + "\n")
        sys.stdout.flush()
    raise typer.Exit(err.exit_code)
