"""`cmd:COMMAND`: any program as the LLM. For each request COMMAND runs through the shell, reads
exactly one JSON object on its stdin,

    {"role": "coder" | "judge", "model": COMMAND, "messages": [{"role": ..., "content": ...}, ...]}

and its whole stdout is the reply. A command that cannot be run, exits non-zero or runs past the
timeout (--llm-timeout) is a ProviderError naming the command and the last line of its stderr;
nothing is retried (the command can retry by itself). Token counts are estimates. Each command
runs in its own process group, killed whole on timeout and by cancel() (Ctrl-C, --time-limit),
so no child of it outlives the call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from kagent.errors import ConfigError, ProviderError, one_line

from .base import Completion, Message, Provider, Role, estimate_tokens


class CommandProvider(Provider):
    """`cmd:COMMAND`: runs COMMAND through the shell for each request (see the module docstring)."""

    name = "cmd"
    form = "cmd:COMMAND"
    summary = "run COMMAND for each request: JSON request on stdin, reply on stdout"

    def __init__(self, model: str, *, base_url: str | None = None, timeout_s: float = 600, max_retries: int = 4):
        super().__init__(model, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)
        if not model.strip():
            raise ConfigError("malformed model spec 'cmd:': give the command after the colon")
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def complete(self, role: Role, messages: list[Message]) -> Completion:
        """Run the command with the request as JSON on stdin; its stdout is the reply. ProviderError
        when it cannot run, exits non-zero, runs past timeout_s or is cancelled."""
        request = json.dumps({"role": role, "model": self.model, "messages": [m.model_dump() for m in messages]})
        start = time.monotonic()
        with self._lock:
            self.check_cancelled()
            # Its own session, so a timeout kills the whole process group, not just the shell.
            proc = subprocess.Popen(self.model, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, encoding="utf-8", errors="replace", start_new_session=True)
            self._running.add(proc)
        try:
            out, err = proc.communicate(request, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise ProviderError(f"cmd: {self._short()} gave no reply within {self.timeout_s:g}s") from None
        finally:
            with self._lock:
                self._running.discard(proc)
        if self.cancelled:
            _kill_group(proc)  # what the shell left behind
            raise ProviderError(f"cmd: {self._short()} was cancelled (the run is stopping)")
        if proc.returncode != 0:
            last = next((line for line in reversed(err.splitlines()) if line.strip()), "no stderr")
            raise ProviderError(f"cmd: {self._short()} exited with code {proc.returncode}: {one_line(last)}")
        return Completion(
            text=out, provider=self.name, model=self.model,
            input_tokens=sum(estimate_tokens(m.content) for m in messages), output_tokens=estimate_tokens(out),
            tokens_estimated=True, latency_s=time.monotonic() - start,
        )

    def cancel(self) -> None:
        """Kill the process group of every command in flight; later calls fail at once."""
        with self._lock:
            self.cancelled = True
            running = list(self._running)
        for proc in running:
            _kill_group(proc)

    def _short(self) -> str:
        return repr(one_line(self.model, 60))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
