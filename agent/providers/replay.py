"""`replay:RUN_DIR`: answer with the replies recorded in an earlier run's archive, in the order
they were recorded, one cursor per role: the n-th coder request gets the n-th recorded coder
reply, whatever it asks (among concurrent requests, whichever comes first). Calls recorded as
failed (error not NULL) are skipped. Reads RUN_DIR/archive.db, table llm_calls, once at
construction."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from kagent.sandbox.errors import ConfigError, ProviderError

from .base import Completion, Message, Provider, Role, estimate_tokens


class ReplayProvider(Provider):
    name = "replay"
    form = "replay:RUN_DIR"
    summary = "replay the replies recorded in RUN_DIR/archive.db, in order per role"

    def __init__(self, model: str, *, base_url: str | None = None, timeout_s: float = 600, max_retries: int = 4):
        super().__init__(model, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)
        archive = Path(model).expanduser() / "archive.db"
        if not archive.is_file():
            raise ConfigError(f"replay: no run archive at {archive}")
        try:
            with closing(sqlite3.connect(archive.resolve().as_uri() + "?mode=ro", uri=True)) as db:
                rows = db.execute("SELECT role, reply, input_tokens, output_tokens FROM llm_calls"
                                  " WHERE error IS NULL ORDER BY id").fetchall()
        except sqlite3.Error as err:
            raise ConfigError(f"replay: cannot read llm_calls from {archive}: {err}") from None
        self.replies: dict[str, list[tuple[str, int | None, int | None]]] = {"coder": [], "judge": []}
        for role, reply, input_tokens, output_tokens in rows:
            self.replies.setdefault(role, []).append((reply or "", input_tokens, output_tokens))
        self.cursor = {role: 0 for role in self.replies}
        self.lock = threading.Lock()  # the run loop asks from several threads at once

    def complete(self, role: Role, messages: list[Message]) -> Completion:
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
