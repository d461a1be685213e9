"""The terminal: one console for results, one for errors and progress, and the one way a
command reports a user error (one line on stderr, the error's exit code)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text

from kagent.sandbox.errors import KagentError

# No emoji codes (":x" in a model name must print as typed) and no markup in error text.
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def fail(err: KagentError):
    err_console.print(Text.assemble(("error:", "red"), f" {err}"), soft_wrap=True)
    raise typer.Exit(err.exit_code)
