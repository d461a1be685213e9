"""`replay:RUN_DIR`: answer with the replies recorded in an earlier run's archive, in the order
they were recorded, one cursor per role: the n-th coder request gets the n-th recorded coder
reply, whatever it asks (among concurrent requests, whichever comes first). Calls recorded as
failed (error not NULL) are skipped. RUN_DIR is anything `kagent show` takes (a run directory,
or a run id under ./runs, batches included); its archive is opened read-only
(`Archive.open(..., readonly=True)`) and its llm_calls read once, at construction."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from kagent.errors import ConfigError, ProviderError, UsageError

from .base import Completion, Message, Provider, Role, estimate_tokens


class ReplayProvider(Provider):
    """`replay:RUN`: answers with an earlier run's recorded replies, in order per role (see the module
    docstring). ConfigError when RUN has no readable archive."""

    name = "replay"
    form = "replay:RUN_DIR"
    summary = "replay the replies recorded in RUN_DIR/archive.db, in order per role"

    def __init__(self, model: str, *, base_url: str | None = None, timeout_s: float = 600, max_retries: int = 4):
        super().__init__(model, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)
        from kagent.agent.archive import Archive  # here: importing the registry stays cheap
        from kagent.agent.locate import resolve_run

        run_dir = Path(model).expanduser()
        if not (run_dir / "archive.db").is_file():
            try:
                run_dir = resolve_run(model, Path("runs"))[1]
            except UsageError:
                raise ConfigError(f"replay: no run archive at {run_dir / 'archive.db'}") from None
        try:
            with Archive.open(run_dir, readonly=True) as archive:
                rows = [(call.role, call.reply, call.input_tokens, call.output_tokens)
                        for call in archive.llm_calls() if call.error is None]
        except (UsageError, sqlite3.Error, ValueError) as err:
            raise ConfigError(f"replay: cannot read llm_calls from {run_dir / 'archive.db'}: {err}") from None
        self.replies: dict[str, list[tuple[str, int | None, int | None]]] = {"coder": [], "judge": []}
        for role, reply, input_tokens, output_tokens in rows:
            self.replies.setdefault(role, []).append((reply or "", input_tokens, output_tokens))
        self.cursor = {role: 0 for role in self.replies}
        self.lock = threading.Lock()  # the run loop asks from several threads at once

    def complete(self, role: Role, messages: list[Message]) -> Completion:
        """The next recorded reply for `role`, whatever is asked; ProviderError when none is left."""
        self.check_cancelled()
        recorded = self.replies.get(role, [])
        with self.lock:
            n = self.cursor.get(role, 0)
            if n >= len(recorded):
                raise ProviderError(f"replay: {self.model} has no more {role} replies ({len(recorded)} recorded)")
            self.cursor[role] = n + 1
        text, input_tokens, output_tokens = recorded[n]
        if input_tokens is None:
            input_tokens = sum(estimate_tokens(m.content) for m in messages)
        return Completion(
            text=text, provider=self.name, model=self.model, input_tokens=input_tokens,
            output_tokens=output_tokens if output_tokens is not None else estimate_tokens(text),
            tokens_estimated=True, latency_s=0.0,
        )
