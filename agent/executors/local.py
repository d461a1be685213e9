"""Evaluations on this machine: a pool of warm sandboxes, one evaluation per sandbox at a time
(on a CPU, concurrent timing runs would disturb each other; on a GPU, one per device)."""

from __future__ import annotations

import queue
from pathlib import Path

from agent.executors import Executor
from sandbox.executor import Sandbox
from sandbox.models import EvalRequest, Verdict


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, device: str, workers: int, root: Path):
        self.sandboxes = [Sandbox(device, root=Path(root) / str(i)) for i in range(workers)]
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
