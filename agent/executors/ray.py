"""Evaluations on a Ray cluster: each evaluation is one Ray task that runs a warm sandbox on
whichever node has a free GPU (device cuda) or CPU (device cpu).

One machine: `kagent optimize TASK --model ... --executor ray` starts a private local Ray
instance and stops it at the end of the run. With `--ray-address` it joins an existing cluster
instead and leaves it running.

A batch across several GPU nodes:

    # on the head node (it may have GPUs too)
    ray start --head --port=6379
    # on every other node
    ray start --address=HEAD:6379
    # on the head node, with the runs directory on a filesystem every node mounts
    kagent batch tasks/ --executor ray --ray-address auto --runs-dir /shared/runs ...

Evaluations take turns on a node's device as they do locally: Ray gives each GPU evaluation a
GPU of its own, and CPU evaluations on one node hold a lock file (`_node_cpu`) while they run.

Every node needs the same Python environment with kagent installed (the same venv path, or an
image), and, for cuda, the CUDA toolchain. Task and candidate files need not be on a shared
filesystem: the driver sends their contents with each evaluation, and the worker writes them to
a private temporary directory. `--runs-dir` must be shared for `batch` because whole optimize
runs execute on the nodes and write their archives there.

Secrets: evaluations never need API keys. A local instance is started with every secret-looking
variable removed from its environment, and every evaluation task runs with the driver's
secret-looking variables (and the provider keys) overridden to empty strings in its runtime env,
so the Ray worker processes that host sandboxes never hold them. On a cluster you start
yourself, start `ray start` from a shell without API keys exported. Batch tasks (`submit_task`)
do need the provider keys for their LLM calls: they get the driver's provider variables as an
argument and set them in their process only while the task runs.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from concurrent.futures import Future
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable

import ray

from kagent import errors
from kagent.sandbox import ENV_SECRET, Sandbox, pid_alive
from kagent.sandbox import EvalRequest, Verdict
from kagent.sandbox import messages as msg

from kagent.agent.executors import Executor

PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
# What a batch task forwards from the driver for its LLM calls: provider settings and API keys.
PROVIDER_ENV = re.compile(r"^(OPENAI|ANTHROPIC)_\w+$|_API_KEY$")
EVAL_RETRIES = 1  # a node that dies mid-evaluation: the evaluation is rerun once elsewhere


def _secret_names(environ: dict[str, str] | os._Environ) -> set[str]:
    """Variables that look like secrets (Ray's own RAY_* settings excepted)."""
    return {name for name in environ if ENV_SECRET.search(name) and not name.startswith("RAY_")}


# -- the driver's connection to Ray ------------------------------------------------------------

_connection_lock = threading.Lock()
_connection_users = 0  # open executors using a connection this process made
_connection_ours = False  # whether this module called ray.init (and so may shut it down)


def _connect(address: str | None, num_cpus: int | None) -> bool:
    """Connect this process to Ray once; returns whether the caller holds a share of a
    connection this module made (False inside a Ray worker, or where someone else connected)."""
    global _connection_users, _connection_ours
    with _connection_lock:
        if ray.is_initialized():
            if _connection_ours:
                _connection_users += 1
            return _connection_ours
        quiet = dict(ignore_reinit_error=True, logging_level=logging.WARNING, log_to_driver=False,
                     include_dashboard=False)
        if address:
            if not _reachable(address):  # ray.init would retry for minutes
                raise ConnectionError("nothing answers there")
            ray.init(address=address, **quiet)
        else:
            # The processes of a local instance (raylet, workers) inherit this environment when
            # they start: start them without secrets. Providers read their keys before this.
            saved = {name: os.environ.pop(name) for name in _secret_names(os.environ)}
            usage = os.environ.get("RAY_USAGE_STATS_ENABLED")
            os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
            # Ray protects a new local instance with a token (~/.ray/auth_token) by default and
            # says so in a warning on every start: not news for an instance only kagent uses.
            auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
            auth_level = auth_log.level
            auth_log.setLevel(logging.ERROR)
            try:
                ray.init(address="local", num_cpus=num_cpus, **quiet)
            finally:
                auth_log.setLevel(auth_level)
                os.environ.update(saved)
                if usage is None:
                    os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
                else:
                    os.environ["RAY_USAGE_STATS_ENABLED"] = usage
        _connection_ours, _connection_users = True, 1
        return True


def _reachable(address: str) -> bool:
    """Whether a HOST:PORT address accepts a connection ("auto" and ray:// are left to Ray)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return True
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        return True
    except OSError:
        return False


def _disconnect() -> None:
    global _connection_users, _connection_ours
    with _connection_lock:
        _connection_users -= 1
        if _connection_users == 0 and _connection_ours:
            _connection_ours = False
            ray.shutdown()  # stops a local instance this process started; only disconnects from a cluster
            _remove_stale_roots()


# -- the worker side ---------------------------------------------------------------------------

_sandboxes: dict[tuple[str, str | None], Sandbox] = {}
_sandboxes_lock = threading.Lock()


def _sandbox_home() -> Path:
    return Path(tempfile.gettempdir()) / f"kagent-ray-{os.getuid()}"


def _sandbox_root() -> Path:
    """A directory for one worker process's sandbox, named by its PID. Ray kills workers
    without running their exit handlers, so the directories of workers that are gone are
    removed by the next worker on the node (and by a driver that stops its local instance)."""
    home = _sandbox_home()
    home.mkdir(mode=0o700, exist_ok=True)
    _remove_stale_roots()
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=home))


def _remove_stale_roots() -> None:
    home = _sandbox_home()
    for stale in home.iterdir() if home.is_dir() else ():
        pid = stale.name.split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _warm_sandbox(device: str) -> Sandbox:
    """One warm sandbox per Ray worker process and device. Ray sets CUDA_VISIBLE_DEVICES per
    task, and a worker process may be given another GPU next time: its sandbox is keyed by it."""
    key = (device, os.environ.get("CUDA_VISIBLE_DEVICES") if device == "cuda" else None)
    with _sandboxes_lock:
        if key not in _sandboxes:
            if not _sandboxes:
                atexit.register(_close_sandboxes)
            _sandboxes[key] = Sandbox(device, root=_sandbox_root())
        return _sandboxes[key]


def _close_sandboxes() -> None:
    with _sandboxes_lock:
        for sandbox in _sandboxes.values():
            sandbox.close()
            shutil.rmtree(sandbox.root, ignore_errors=True)
        _sandboxes.clear()


@contextmanager
def _node_cpu():
    """Hold this node's CPU for one evaluation: Ray runs one task per requested CPU, so CPU
    evaluations of several worker processes would otherwise time at once and disturb each
    other. A lock file shared by the node's workers (GPU evaluations need none: Ray gives each
    one a GPU of its own)."""
    home = _sandbox_home()
    home.mkdir(mode=0o700, exist_ok=True)
    with open(home / "cpu.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


def _json_text(path: str) -> str:
    return json.dumps(path)[1:-1]  # a path as it appears inside a JSON string


def evaluate_on_worker(request_json: str, task: bytes | None, candidate: bytes | None, timeout_s: float) -> str:
    """The Ray task: write the files, evaluate them in this worker's warm sandbox, and return
    the verdict or the KagentError that ended it as a `messages.Result`'s JSON. Paths of the
    temporary files are written back as the driver's paths, so verdicts and errors read the same
    as a local evaluation's. A file the driver could not read is left missing (None): the
    sandbox then reports it exactly as it would locally."""
    request = EvalRequest.model_validate_json(request_json)
    sandbox = _warm_sandbox(request.device)
    tmp = tempfile.mkdtemp(prefix="files-", dir=sandbox.root)
    try:
        task_path = Path(tmp, "task", Path(request.task_path).name)
        candidate_path = Path(tmp, "candidate", Path(request.candidate_path).name)
        for path, data in ((task_path, task), (candidate_path, candidate)):
            path.parent.mkdir()
            if data is not None:
                path.write_bytes(data)
        here = request.model_copy(update={"task_path": str(task_path), "candidate_path": str(candidate_path)})
        try:
            with _node_cpu() if request.device == "cpu" else nullcontext():
                verdict = sandbox.evaluate(here, timeout_s=timeout_s)
            result = msg.Result(verdict=verdict)
        except errors.KagentError as err:
            result = msg.Result(error=errors.ErrorMessage.of(err))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = msg.dumps(result)
    for worker_path, driver_path in ((candidate_path, request.candidate_path), (task_path, request.task_path)):
        text = text.replace(_json_text(str(worker_path)), _json_text(driver_path))
    return text


def _decode(text: str) -> Verdict:
    result = msg.Result.model_validate(json.loads(text))  # json.loads: an infinite error stays Infinity
    if result.error is not None or result.verdict is None:
        raise result.error.to_error() if result.error else errors.SandboxError("a Ray worker returned neither a verdict nor an error")
    return result.verdict


def run_with_env(env: dict[str, str], task_fn: Callable[..., Any], *args: Any) -> Any:
    """A batch task: `task_fn(*args)` with the driver's provider variables set in this worker
    process for the duration of the call only."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return task_fn(*args)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_remote_evaluate = None
_remote_batch = None


def _remotes():
    global _remote_evaluate, _remote_batch
    if _remote_evaluate is None:
        _remote_evaluate = ray.remote(max_retries=EVAL_RETRIES)(evaluate_on_worker)
        _remote_batch = ray.remote(num_cpus=1, max_retries=0)(run_with_env)
    return _remote_evaluate, _remote_batch


def _ray_failure(err: Exception) -> errors.SandboxError:
    cause = getattr(err, "cause", None)
    what = f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(err).__name__}: {err}"
    lines = [line for line in what.strip().splitlines() if line.strip()]
    return errors.SandboxError(f"the Ray evaluation failed: {lines[0] if lines else type(err).__name__}")


# -- the executor ------------------------------------------------------------------------------


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, device: str, workers: int | None, root: Path | None = None, address: str | None = None,
                 task_slots: int = 0, *, num_cpus: int | None = None):
        """`workers`: evaluations in flight (None: one). `root` is not used (nodes keep their
        sandboxes under their own home). `address`: a cluster to join ("auto", "HOST:6379");
        None starts a local instance with this machine's GPUs and `num_cpus` CPUs (default:
        this machine's, at least `workers`, plus one per task slot, so that batch tasks waiting
        on their LLM calls never starve the evaluations they submit)."""
        workers = workers or 1
        super().__init__(device, workers, root, address, task_slots)
        if address is None and num_cpus is None:
            num_cpus = max(os.cpu_count() or 1, workers) + task_slots
        try:
            self._owns_share = _connect(address, num_cpus)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise errors.ConfigError(f"cannot connect to Ray{f' at {address}' if address else ''}: {err}") from None
        self._closed = False
        self._slots = threading.BoundedSemaphore(workers)  # evaluations in flight from this executor
        resources = {"num_gpus": 1, "num_cpus": 1} if device == "cuda" else {"num_cpus": 1}
        blank = {name: "" for name in _secret_names(os.environ) | set(PROVIDER_KEYS)}
        self._eval_options = {**resources, "runtime_env": {"env_vars": blank}}
        if device == "cuda" and not ray.cluster_resources().get("GPU"):
            self.close()
            raise errors.ConfigError("--device cuda: the Ray cluster has no GPUs")

    def evaluate(self, request: EvalRequest, timeout_s: float) -> Verdict:
        task, candidate = _read(request.task_path), _read(request.candidate_path)
        remote_evaluate, _ = _remotes()
        with self._slots:
            ref = remote_evaluate.options(**self._eval_options).remote(
                request.model_dump_json(), task, candidate, timeout_s)
            try:
                text = ray.get(ref)  # bounded by the sandbox's own timeout on the worker
            except ray.exceptions.RayError as err:
                raise _ray_failure(err) from None
        return _decode(text)

    def submit_task(self, task_fn: Callable[..., Any], *args: Any) -> Future:
        """Run `task_fn(*args)` as a Ray task (one CPU; evaluations inside it ask for their own
        GPUs). `task_fn` must be importable on the nodes (a module-level function of kagent)."""
        _, remote_batch = _remotes()
        env = {name: value for name, value in os.environ.items() if PROVIDER_ENV.search(name)}
        return remote_batch.remote(env, task_fn, *args).future()

    def close(self) -> None:
        """Disconnect from Ray where this executor's connection was the last one."""
        if self._closed:
            return
        self._closed = True
        if self._owns_share:
            _disconnect()


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None  # the worker leaves it missing: the sandbox reports it as a local run would
