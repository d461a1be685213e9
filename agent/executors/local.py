"""Evaluations on this machine, one per device at a time across the whole process.

A device is a machine-wide resource: two evaluations timed at once on a CPU, or on one GPU,
disturb each other's timings. Every run of a process (a batch runs several in threads) leases
its device from one process-wide `DEVICES` before evaluating: one slot per GPU, one for the
CPU. Each run keeps its own warm sandboxes (one per GPU it may use, pinned to it; one on a CPU)
under its own run directory, so its logs stay with it, and LLM calls keep overlapping: only
evaluations wait for the device.

Every evaluation appends one `EvaluationRecord` line (slot, wall-clock start and end) to
`evaluations.jsonl` in the executor's root (`RUN_DIR/sandbox/`), written while the slot is held.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel

from kagent.agent.executors import Executor
from kagent.errors import SandboxError
from kagent.sandbox import Sandbox, visible_gpus
from kagent.sandbox import EvalRequest, Verdict

EVALUATIONS_LOG = "evaluations.jsonl"


class EvaluationRecord(BaseModel):
    """One evaluation as the executor saw it: the device slot it held and when (Unix seconds)."""

    slot: str  # "cpu", "cuda:GPU" (a CUDA_VISIBLE_DEVICES entry) or "cuda" (no GPU listed)
    candidate_path: str
    started_at: float
    finished_at: float
    status: str | None = None  # the verdict's status; None when the evaluation raised


class DeviceSlots:
    """The process's devices: each slot held by at most one evaluation at a time. Waiters are
    served as slots free up; a run restricted to some GPUs waits only for those."""

    def __init__(self) -> None:
        self._busy: set[str] = set()
        self._freed = threading.Condition()

    @contextmanager
    def hold(self, slots: list[str]) -> Iterator[str]:
        """Wait for any of `slots` to be free, hold it for the `with` body; yields its name."""
        with self._freed:
            while all(slot in self._busy for slot in slots):
                self._freed.wait()
            slot = next(slot for slot in slots if slot not in self._busy)
            self._busy.add(slot)
        try:
            yield slot
        finally:
            with self._freed:
                self._busy.discard(slot)
                self._freed.notify_all()


DEVICES = DeviceSlots()  # one per process: every LocalExecutor of every run shares it


class LocalExecutor(Executor):
    """One run's sandboxes on this machine, evaluating only while holding a device of `DEVICES`."""

    name = "local"

    def __init__(self, device: str, workers: int | None, root: Path | None, address: str | None = None,
                 task_slots: int = 0):
        """`workers`: on a GPU machine, use only the first `workers` GPUs (default: all); on
        a CPU there is one slot whatever it says (concurrent timings disturb each other).
        `address` is not used (no cluster). Sandboxes are made at the first evaluation (or the
        first look at `sandboxes`), under `root`; a batch that only submits tasks makes none."""
        super().__init__(device, workers, None if root is None else Path(root), address, task_slots)
        self._log_lock = threading.Lock()

    @cached_property
    def slots(self) -> dict[str, Sandbox]:
        """Device slot name -> this run's sandbox pinned to it."""
        if self.root is None:
            raise SandboxError("the local executor was made without a root directory: it cannot evaluate")
        if self.device == "cuda":
            gpus = visible_gpus()
            gpus = (gpus[:self.workers] if self.workers else gpus) or [None]  # None: the GPU CUDA picks
            return {f"cuda:{g}" if g else "cuda": Sandbox(self.device, root=self.root / (g or "0"), gpu=g)
                    for g in gpus}
        return {"cpu": Sandbox(self.device, root=self.root / "0")}

    @property
    def sandboxes(self) -> list[Sandbox]:
        """This run's sandboxes, one per device slot."""
        return list(self.slots.values())

    def evaluate(self, request: EvalRequest, timeout_s: float) -> Verdict:
        """Wait for a free device of this run's, evaluate there, log the evaluation. Raises what
        `Sandbox.evaluate` raises (logged too, with no status)."""
        with DEVICES.hold(list(self.slots)) as slot:
            started, status = time.time(), None
            try:
                verdict = self.slots[slot].evaluate(request, timeout_s=timeout_s)
                status = verdict.status
                return verdict
            finally:
                self._log(EvaluationRecord(slot=slot, candidate_path=request.candidate_path, started_at=started,
                                           finished_at=time.time(), status=status))

    def _log(self, record: EvaluationRecord) -> None:
        with self._log_lock, open(self.root / EVALUATIONS_LOG, "a") as log:
            log.write(record.model_dump_json() + "\n")

    def close(self) -> None:
        """Also while evaluations run (Ctrl-C): they end with a SandboxError."""
        super().close()
        for sandbox in (self.__dict__.get("slots") or {}).values():  # only sandboxes already made
            sandbox.close()
