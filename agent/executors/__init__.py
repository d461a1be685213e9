"""The executor seam: where evaluations run. `local` keeps a pool of warm sandboxes on this
machine; `ray` sends each evaluation to a Ray cluster. Both return the same Verdict, and the
loop writes it into the same archive. Adding an executor is one new file plus one line here."""

from __future__ import annotations

from kagent.sandbox.errors import ConfigError
from kagent.sandbox.models import EvalRequest, Verdict


class Executor:
    name: str = ""

    def evaluate(self, request: EvalRequest, timeout_s: float) -> Verdict:
        raise NotImplementedError

    def close(self) -> None:
        pass


def make_executor(name: str, device: str, workers: int | None, root, address: str | None = None) -> Executor:
    """`workers`: local: how many of the GPUs to use (None: all; a CPU is one device whatever
    it says), evaluations of every run in the process sharing them one at a time per device;
    ray: evaluations this executor keeps in flight (None: one)."""
    if name == "local":
        from kagent.agent.executors.local import LocalExecutor

        return LocalExecutor(device, workers, root)
    if name == "ray":
        from kagent.agent.executors.ray import RayExecutor

        return RayExecutor(device, workers or 1, address)
    raise ConfigError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")


EXECUTORS = ("local", "ray")
