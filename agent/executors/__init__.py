"""The executor seam: where evaluations run. `local` keeps a pool of warm sandboxes on this
machine; `ray` sends each evaluation to a Ray cluster. Both return the same Verdict, and the
loop writes it into the same archive.

Adding an executor is one new file with an `Executor` subclass plus one line in `EXECUTORS`;
`--executor`, its help, config validation and `make_executor` all read the registry."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from kagent.errors import UsageError, one_line
from kagent.registry import load_entry
from kagent.sandbox import EvalRequest, Verdict


class Executor:
    """Where evaluations (and, for `kagent batch`, whole tasks) run.

    Every executor takes the same constructor arguments:
    device: "cpu" or "cuda". workers: local: how many of the GPUs to use (None: all; a CPU is
    one device whatever it says); ray: evaluations kept in flight (None: one). root: a directory
    of this machine for the executor's own files (sandbox roots, logs), or None where it keeps
    none. address: a cluster to join (ray), None to start a private one. task_slots: whole
    tasks `submit_task` runs at once (a batch's --workers), 0 when none will be submitted."""

    name: str = ""

    def __init__(self, device: str, workers: int | None, root: Path | None, address: str | None = None,
                 task_slots: int = 0):
        self.device, self.workers, self.root, self.address = device, workers, root, address
        self.task_slots = task_slots
        self._tasks: ThreadPoolExecutor | None = None

    def evaluate(self, request: EvalRequest, timeout_s: float) -> Verdict:
        """One candidate's verdict; waits at most about `timeout_s` seconds for the sandbox.
        Raises SandboxError where kagent (not the candidate) failed."""
        raise NotImplementedError

    def submit_task(self, task_fn: Callable[..., Any], *args: Any) -> Future:
        """Run `task_fn(*args)` (a whole optimize run, for `kagent batch`) where this executor
        runs work; its Future holds the return value or the exception. The default: a thread of
        this process, `task_slots` at once."""
        if self._tasks is None:
            self._tasks = ThreadPoolExecutor(max_workers=max(self.task_slots, 1), thread_name_prefix=f"kagent-{self.name}")
        return self._tasks.submit(task_fn, *args)

    def close(self) -> None:
        """Release what the executor holds; tasks not yet started are cancelled, running ones
        are left to finish (a batch waits for them first, or stops them on Ctrl-C)."""
        if self._tasks is not None:
            self._tasks.shutdown(wait=False, cancel_futures=True)
            self._tasks = None


# The registry: executor name -> its class, or "module:Class" for one whose module is imported
# only when chosen (ray is a heavy, optional import).
EXECUTORS: dict[str, type[Executor] | str] = {
    "local": "kagent.agent.executors.local:LocalExecutor",
    "ray": "kagent.agent.executors.ray:RayExecutor",
}


def executor_names(last: str = ", ") -> str:
    """The registered names for help and messages: "local, ray" (or "local or ray")."""
    names = list(EXECUTORS)
    return ", ".join(names[:-1]) + last + names[-1] if len(names) > 1 else "".join(names)


def executor_class(name: str) -> type[Executor]:
    """The class registered as `name`, its module imported now. UsageError, naming --executor,
    for an unknown name or one whose module cannot be imported here (ray not installed)."""
    if name not in EXECUTORS:
        raise UsageError(f"invalid --executor {name!r}: choose one of {executor_names()}")
    try:
        return load_entry(EXECUTORS[name])
    except ImportError as err:
        raise UsageError(f"--executor {name}: not available here ({one_line(err, 200)})") from None


def make_executor(name: str, device: str, workers: int | None, root: Path | None, address: str | None = None,
                  task_slots: int = 0) -> Executor:
    """Construct the executor registered as `name` (arguments as `Executor`). Raises UsageError
    as `executor_class`, ConfigError where it cannot start (an unreachable Ray cluster)."""
    return executor_class(name)(device, workers, root, address, task_slots)
