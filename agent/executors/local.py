"""Evaluations on this machine: a pool of warm sandboxes, one evaluation per sandbox at a time.
On a GPU machine, one sandbox per GPU, each pinned to its device; on a CPU, `workers` of them
(default one: concurrent timing runs would disturb each other)."""

from __future__ import annotations

import queue
from pathlib import Path

from kagent.agent.executors import Executor
from kagent.sandbox.executor import Sandbox, visible_gpus
from kagent.sandbox.models import EvalRequest, Verdict


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, device: str, workers: int | None, root: Path):
        if device == "cuda":
            gpus = visible_gpus()
            gpus = gpus[:workers] if workers else gpus
            self.sandboxes = [Sandbox(device, root=Path(root) / str(g), gpu=g) for g in gpus or [None]]
        else:
            self.sandboxes = [Sandbox(device, root=Path(root) / str(i)) for i in range(workers or 1)]
        self.pool: queue.Queue[Sandbox] = queue.Queue()
        for sandbox in self.sandboxes:
            self.pool.put(sandbox)

    def evaluate(self, request: EvalRequest, timeout_s: float) -> Verdict:
        sandbox = self.pool.get()
        try:
            return sandbox.evaluate(request, timeout_s=timeout_s)
        finally:
            self.pool.put(sandbox)

    def close(self) -> None:
        """Also while evaluations run (Ctrl-C): they end with a SandboxError."""
        for sandbox in self.sandboxes:
            sandbox.close()
