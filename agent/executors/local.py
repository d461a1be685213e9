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
        self.pool: queue.Queue[Sandbox] = queue.Queue()
        for i in range(workers):
            self.pool.put(Sandbox(device, root=Path(root) / str(i)))
        self.workers = workers

    def evaluate(self, request: EvalRequest, timeout_s: float) -> Verdict:
        sandbox = self.pool.get()
        try:
            return sandbox.evaluate(request, timeout_s=timeout_s)
        finally:
            self.pool.put(sandbox)

    def close(self) -> None:
        for _ in range(self.workers):
            self.pool.get().close()
