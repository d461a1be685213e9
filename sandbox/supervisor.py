"""The parent side of the sandbox: start a warm worker (zygote.py), send it evaluations, and
enforce the limits from outside the candidate's process.

The parent never imports torch and never runs candidate code. It gives the worker an
environment stripped of secrets and, where the kernel allows it, its own PID and mount
namespace (a fresh /proc: a candidate sees no process outside its sandbox, so it cannot read
kagent's /proc/PID/environ for an API key). It kills every process a candidate left behind —
its own, a fork's, a daemon's that left the process group — when its wall-clock time runs out,
when their memory together passes the limit, and after every evaluation; and it accepts a
verdict only when it carries the signature made with the key generated for that one evaluation
and, where it says `correct`, only when the verifier (verifier.py, a second warm process outside
the namespace) finds the outputs behind it right and the timings fit the evaluation's wall time.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, ValidationError

from kagent import errors
from kagent.sandbox import blocks
from kagent.sandbox import messages as msg
from kagent.sandbox.models import EvalRequest, MemoryUse, OutputCheck, Verdict
from kagent.sandbox.processes import _children, _Messages, _rss_mb, _signal_name, descendants, kill_tree, pid_alive
from kagent.sandbox.zygote import LOG_FILE, OUTPUTS_FILE, RESULT_FILE, sign

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_MB = 8192
STARTUP_TIMEOUT_S = 120.0
ZYGOTE_LOG, VERIFIER_LOG = "zygote.log", "verifier.log"  # in the sandbox's root
VERIFY_MIN_TIMEOUT_S = 60.0  # the verifier runs the (trusted) reference: allow it at least this
# torch.compile of the reference (the compile baseline): once per task, before the candidate's
# clock starts; inductor on a busy 2-core machine can take minutes for a large model.
COMPILE_TIMEOUT_S = 600.0
POLL_S = 0.02  # how often the parent looks for the end of an evaluation
MEMORY_POLL_S = 0.05  # how often it adds up the memory of the candidate's processes
KILL_GRACE_S = 3.0  # after a kill, how long the worker has to report the death before it is replaced
# "0" starts the worker without its own PID namespace (debugging; secrets in /proc are then exposed).
NAMESPACES_ENV = "KAGENT_SANDBOX_NAMESPACES"
# Environment a worker may see: the toolchain and the device, nothing that could be a secret.
ENV_ALLOWED = re.compile(
    r"^(PATH|LANG|LC_\w+|TZ|TERM|USER|LOGNAME|SHELL|CUDA_\w+|NVIDIA_\w+|LD_LIBRARY_PATH|"
    r"CC|CXX|CPATH|LIBRARY_PATH|OMP_\w+|MKL_\w+|OPENBLAS_\w+|TRITON_\w+|TORCH_CUDA_ARCH_LIST|"
    r"PYTHONPATH|VIRTUAL_ENV|KAGENT_CACHE_DIR|KAGENT_SANDBOX_SECCOMP|GLIBC_TUNABLES)$"
)
# How the fork server and the verifier run Python. `-m` would put the working directory first on
# sys.path, and PYTHONPATH or the user's site-packages could name a directory a candidate writes
# to (its sandbox root outlives it: a `--resume`, or a restarted verifier, would import a planted
# `kagent/sandbox/verifier.py` from there, unconfined). Isolated mode (-I) leaves out all three:
# kagent and torch come from the interpreter's own site-packages only.
SERVER_PYTHON = (sys.executable, "-I", "-m")
SERVER_CWD = "/"  # read-only for every confined candidate, and not on the module path anyway
ENV_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.IGNORECASE)


def worker_env(device: str, gpu: str | None = None) -> dict[str, str]:
    """A worker's environment: allowed variables only, no secret-looking one, plus the device's
    settings (CPU: TRITON_INTERPRET, thread binding, malloc tuning; GPU: CUDA_VISIBLE_DEVICES)."""
    env = {k: v for k, v in os.environ.items() if ENV_ALLOWED.match(k) and not ENV_SECRET.search(k)}
    env.setdefault("KAGENT_CACHE_DIR", str(Path.home() / ".cache" / "kagent"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"  # must be set before triton is imported
        # Unbound OpenMP threads that spin-wait can land on one core and stall each other by a
        # scheduler tick per barrier: 100x outliers in CPU timings (bench/README.md).
        env.setdefault("OMP_PROC_BIND", "true")
        # glibc hands a freed multi-MB block back to the kernel or not depending on the heap's
        # history, so one process faults fresh pages into every output allocation and the next
        # does not: a 25% swing in a 50 us kernel's median between evaluations. Serve such
        # blocks from the heap and never trim it: every evaluation reuses warm pages.
        env.setdefault("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=17179869184")
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["KAGENT_PRELOAD_TRITON"] = "1"
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def gpu_available() -> bool:
    """Whether evaluations can run on a GPU here: one nvidia-smi lists and a CUDA build of torch
    (probes.gpu_ready, the answer `kagent doctor` gives), without importing torch (which the
    parent avoids) or initialising CUDA (which the fork server must not)."""
    from kagent.sandbox import probes

    return probes.gpu_ready(probes.probe_gpu(), probes.probe_torch()).can_run


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs):
    that variable where set, else the UUID of each GPU nvidia-smi lists (probes.probe_gpu).
    Not /dev/nvidiaN numbers: a container keeps the host's (its one GPU may be /dev/nvidia3,
    which CUDA there calls device 0), and CUDA may order GPUs otherwise than the driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    from kagent.sandbox.probes import probe_gpu

    return [gpu.uuid for gpu in probe_gpu().gpus]


@functools.cache
def namespace_prefix() -> tuple[str, ...]:
    """The command that starts the worker as PID 1 of its own PID namespace with its own /proc
    (util-linux `unshare`; a user namespace too where kagent is not root), or () where the
    kernel, the container or the environment does not allow it."""
    unshare = shutil.which("unshare")
    if os.environ.get(NAMESPACES_ENV) == "0" or unshare is None:
        return ()
    base = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child"]
    variants = ([base] if os.geteuid() == 0 else []) + [[unshare, "--user", "--map-root-user", *base[1:]]]
    for command in variants:
        try:
            probe = subprocess.run(  # PID 1, and a /proc that shows this namespace, not the host's
                [*command, sys.executable, "-S", "-c", "import os; assert os.getpid() == 1 == int(os.readlink('/proc/self'))"],
                capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return tuple(command)
    return ()


# -- the worker's process tree, seen from outside ----------------------------------------------


class Sandbox:
    """One warm worker for one device. `evaluate` is safe to call from several threads; the
    evaluations then run one at a time (bound concurrency with several Sandboxes)."""

    def __init__(self, device: str, root: str | Path | None = None, namespaces: bool = True,
                 gpu: str | None = None, seccomp: bool = True):
        self.device = device
        self.gpu = gpu  # pin the worker to this GPU (CUDA_VISIBLE_DEVICES), one sandbox per GPU
        self.namespaces = namespaces  # False: no PID namespace even where one is available
        self.seccomp = seccomp  # False: C++ candidates may create processes (backends/cpp.py SECCOMP_ENV)
        self._closed = False
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="kagent-sandbox-")).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen | None = None
        self._messages: _Messages | None = None
        self._zygote_pid: int | None = None  # the fork server, as this process sees it
        self._verifier: subprocess.Popen | None = None
        self._verifier_messages: _Messages | None = None
        self._verifier_ready = False
        self.confined = False  # read-only filesystem and no capabilities (confine.py), once started
        self._lock = threading.Lock()
        self._compile_timed_out: set[tuple] = set()  # tasks whose torch.compile is not tried again

    @property
    def isolated(self) -> bool:
        """Whether workers start in their own PID namespace (see `namespace_prefix`)."""
        return self.namespaces and bool(namespace_prefix())

    @property
    def isolation(self) -> str:
        """How isolated the running worker's candidates are: a `models.Isolation` value."""
        if self._proc is None or not self.isolated:
            return "none"
        return "namespaces" if self.confined else "pid_namespace"

    # -- worker lifecycle -------------------------------------------------------------------

    def _start(self) -> subprocess.Popen:
        prefix = namespace_prefix() if self.namespaces else ()
        proc, self._messages = self._spawn([*prefix, *SERVER_PYTHON, "kagent.sandbox.zygote", str(self.root)], ZYGOTE_LOG)
        self._proc = proc  # now, not once ready: a close() meanwhile (Ctrl-C) must be able to end it
        ready = _parse(msg.Ready, self._messages.read(STARTUP_TIMEOUT_S))
        if ready is None:
            proc.kill()
            proc.wait()
            raise errors.SandboxError(f"the sandbox worker failed to start: {self._last_log_line(ZYGOTE_LOG)}")
        self.confined = ready.confined
        # Under `unshare --fork` the fork server is unshare's only child.
        kids = _children(proc.pid) if prefix else [proc.pid]
        self._zygote_pid = kids[0] if kids else proc.pid
        return proc

    def _spawn(self, command: list[str], log_name: str) -> tuple[subprocess.Popen, _Messages]:
        """A server process (the fork server or the verifier) with the worker environment,
        talking JSON lines on stdin/stdout, its stderr appended to `log_name` in the root.
        It starts in SERVER_CWD with SERVER_PYTHON: nothing a candidate can write (the root,
        its workdirs, the build cache) is on its module path."""
        env = worker_env(self.device, self.gpu)
        if not self.seccomp:
            env["KAGENT_SANDBOX_SECCOMP"] = "0"
        with open(self.root / log_name, "ab") as log:
            proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                env=env, cwd=SERVER_CWD, bufsize=0,
                start_new_session=True,  # a Ctrl-C meant for kagent is handled by kagent
            )
        return proc, _Messages(proc.stdout.fileno())

    def _last_log_line(self, log_name: str) -> str:
        lines = (self.root / log_name).read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def _worker(self) -> subprocess.Popen:
        if self._closed:
            raise errors.SandboxError("the sandbox was closed")
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            self._start_verifier()  # imports torch while the worker does
            self._proc = self._start()
            self._verifier_started()  # and is done before any timing runs beside it
        return self._proc

    def _start_verifier(self) -> None:
        """Start the verifier unless it runs; `_verify` waits for it to be ready. Outside the
        namespace and not below the fork server: no candidate can reach it."""
        if self._verifier is not None and self._verifier.poll() is None:
            return
        self._stop_verifier()
        self._verifier, self._verifier_messages = self._spawn([*SERVER_PYTHON, "kagent.sandbox.verifier"], VERIFIER_LOG)
        self._verifier_ready = False

    def _verifier_started(self) -> None:
        """Wait until the verifier is ready."""
        if self._verifier_ready:
            return
        if _parse(msg.Ready, self._verifier_messages.read(STARTUP_TIMEOUT_S)) is None:
            self._stop_verifier()
            raise errors.SandboxError(f"the verifier failed to start: {self._last_log_line(VERIFIER_LOG)}")
        self._verifier_ready = True

    def _stop_verifier(self) -> None:
        proc, self._verifier = self._verifier, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5 if self._verifier_ready else 0)  # one still starting cannot hear "stop"
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def _stop(self, force: bool = False) -> None:
        """End the worker and everything below it: politely (end of input) unless `force`."""
        proc, self._proc = self._proc, None
        started = self._zygote_pid is not None  # a worker still starting up cannot hear "stop"
        if self._zygote_pid is not None:
            kill_tree(self._zygote_pid)
        if proc is not None:
            if proc.poll() is None and not force and started:
                try:
                    proc.stdin.close()
                    proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait()
            proc.stdout.close()
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        self._zygote_pid = None
        self._messages = None

    def close(self) -> None:
        """Stop the workers and the verifier, and remove the sandbox's directory when it made it."""
        self._closed = True
        self._stop()
        self._stop_verifier()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def warm_up(self) -> None:
        """Start the fork server and the verifier now (each imports torch: seconds), e.g. in a
        thread while the task is being checked. A failure here is raised again, as it should be,
        by the first evaluation."""
        try:
            self._worker()
        except errors.KagentError:
            pass

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one evaluation -----------------------------------------------------------------------

    def evaluate(self, request: EvalRequest, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB) -> Verdict:
        """Run one evaluation. Raises TaskError / CandidateError for user errors; every way a
        candidate can fail becomes a Verdict."""
        if request.device != self.device:
            raise errors.UsageError(f"this sandbox runs on {self.device}, not {request.device}")
        if not timeout_s > 0:  # NaN included: it would never expire
            raise errors.UsageError(f"the evaluation timeout must be a positive number of seconds, got {timeout_s}")
        with self._lock:
            workdir = self.root / f"eval-{uuid.uuid4().hex[:12]}"
            workdir.mkdir()
            try:
                return self._evaluate(request, workdir, timeout_s, memory_mb)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    def _evaluate(self, request: EvalRequest, workdir: Path, timeout_s: float, memory_mb: int) -> Verdict:
        proc = self._worker()
        isolation = self.isolation
        key = secrets.token_bytes(32)
        job_id = workdir.name
        self._start_verifier()
        self._verifier_started()
        compile_note = None
        if request.compile_baseline:
            request, compile_note = self._compile(request, job_id)
        session = blocks.Session(  # the timing blocks, timestamped here (blocks.py)
            str(workdir), key, sign, request, job_id, self._tell_verifier, self._ask_verifier,
            lambda: [pid for pid in descendants(self._zygote_pid) if pid_alive(pid)], self._verifier.pid)
        if compile_note:
            session.notes.append(compile_note)
        session.open()
        session.prepare_reference()  # while the worker runs its checks
        try:
            verdict = self._run_job(request, workdir, timeout_s, memory_mb, proc, key, job_id, session)
        finally:
            session.close()
        verdict.isolation = isolation  # what the parent knows, whatever the candidate wrote
        verdict.scaled_sizes = request.scaled_sizes or None  # what was measured, whatever the verdict
        return verdict

    def _compile(self, request: EvalRequest, job_id: str) -> tuple[EvalRequest, str | None]:
        """Have the verifier compile the task's reference with torch.compile (once per task:
        it keeps it), before the worker starts, so compilation never counts against the
        candidate's time limit. A compilation that does not finish in COMPILE_TIMEOUT_S is not
        tried again for this task: its evaluations go on without the compile baseline, with a
        note. A failed compilation is the verifier's to report (`compile_note`)."""
        task = (request.task_path, request.allow_tf32)
        if task not in self._compile_timed_out:
            try:
                self._ask_verifier(msg.CompileJob(id=job_id, request=request), COMPILE_TIMEOUT_S)
                return request, None
            except errors.SandboxError:  # the verifier was stopped: it restarts for the timing
                self._compile_timed_out.add(task)
                self._start_verifier()
                self._verifier_started()
        return (request.model_copy(update={"compile_baseline": False}),
                f"torch.compile baseline not measured: compiling the reference took more than {COMPILE_TIMEOUT_S:g} s")

    def _run_job(self, request, workdir, timeout_s, memory_mb, proc, key, job_id, session) -> Verdict:
        try:
            job = msg.ForkJob(id=job_id, request=request, workdir=str(workdir), key=key.hex(), memory_mb=memory_mb)
            proc.stdin.write((msg.dumps(job) + "\n").encode())
            proc.stdin.flush()
        except OSError:
            self._stop()
            raise errors.SandboxError("the sandbox worker is gone") from None
        started = _parse(msg.Forked, self._messages.about(job_id, 30))
        if started is None:
            self._stop()
            raise errors.SandboxError("the sandbox worker did not start the evaluation")
        begun = time.monotonic()
        deadline = begun + timeout_s
        next_memory_check = begun
        killed_for = killed_at = None
        finished = None
        tree: list[int] = []  # the candidate's processes at the last look
        while finished is None:
            if killed_for is None:
                session.poll(deadline)
            finished = self._messages.about(job_id, POLL_S)
            if finished is not None:
                finished = _parse(msg.Exited, finished)
                if finished is None:
                    self._stop()
                    raise errors.SandboxError("the sandbox worker sent a malformed end of evaluation")
                break
            now = time.monotonic()
            if proc.poll() is not None:  # only a candidate kills the worker
                # Its processes lost their parent: end them by what was last seen of them.
                for pid in tree:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                if proc.pid == self._zygote_pid:  # no PID namespace: pids are ours to kill
                    try:
                        os.killpg(started.pid, signal.SIGKILL)  # the candidate's own session
                    except (ProcessLookupError, PermissionError):
                        pass
                self._stop()
                killed_for = killed_for or "worker_died"
                break
            if killed_for is None and now > deadline:
                killed_for = "timeout"
            elif killed_for is None and now >= next_memory_check:
                next_memory_check = now + MEMORY_POLL_S
                tree = descendants(self._zygote_pid)
                if _rss_mb(tree) > memory_mb:
                    killed_for = "memory"
            if killed_for and killed_at is None:
                killed_at = now
                kill_tree(self._zygote_pid)
            elif killed_at is not None and now > killed_at + KILL_GRACE_S:
                self._stop(force=True)  # the worker does not report the death (stopped by the candidate?)
                break
        if self._zygote_pid is not None and not kill_tree(self._zygote_pid):
            self._stop(force=True)  # leftovers a kill cannot end: start clean next time
        elapsed = time.monotonic() - begun
        return self._verdict(request, workdir, key, finished or msg.Exited(id=job_id), killed_for, timeout_s, memory_mb,
                             elapsed, session)

    def _verdict(self, request, workdir, key, finished: msg.Exited, killed_for, timeout_s, memory_mb, elapsed,
                 session) -> Verdict:
        log_path = workdir / LOG_FILE
        log_tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""

        def failed(status: str, reason: str, message: str) -> Verdict:
            verdict = Verdict(status=status, reason=reason, message=message, backend=request.backend,
                              device=request.device, elapsed_s=round(elapsed, 3))
            verdict.artifacts.stderr_tail = log_tail or None
            return verdict

        if killed_for == "timeout":
            return failed("timeout", "timeout", f"the evaluation took longer than {timeout_s:g} s and was killed")
        if killed_for == "memory":
            return failed("runtime_error", "out_of_memory", f"the candidate used more than {memory_mb} MB and was killed")
        if killed_for == "worker_died":
            return failed("runtime_error", "crashed", "the sandbox worker died while running the candidate")
        result_path = workdir / RESULT_FILE
        if finished.signal == signal.SIGSYS:
            # The seccomp filter's signal (confine.ProcessFilter), fatal where the caller blocked
            # signals around the call, as glibc's posix_spawn (system, popen) does.
            return failed("rejected", "forbidden_call", "the candidate's process was killed by the OS (SIGSYS) for "
                                                        "creating a process from native code")
        if finished.signal:
            name = _signal_name(finished.signal)
            return failed("runtime_error", "crashed", f"the candidate's process died with {name}")
        if not result_path.exists():
            return failed("runtime_error", "exited_early",
                          f"the candidate's process exited (code {finished.exit_code}) before a verdict")
        try:
            signed = msg.Signed.model_validate(json.loads(result_path.read_text()))
        except (ValueError, OSError):  # pydantic's ValidationError is a ValueError
            return failed("rejected", "forged_result", "the result file was not written by the harness")
        if not signed.valid(key, sign):
            return failed("rejected", "forged_result", "the result carries no valid harness signature")
        try:
            result = msg.Result.model_validate(json.loads(signed.body))
        except ValueError as err:  # signed with a key read from the candidate's memory
            return failed("rejected", "forged_result", f"the signed result is malformed: {errors.one_line(err, 200)}")
        if result.error is not None:
            raise result.error.to_error()
        if result.verdict is None:
            return failed("rejected", "forged_result", "the signed result carries no verdict")
        verdict = result.verdict
        if session.refused:  # seen from outside the candidate's process, whatever it claims
            return failed("rejected", session.refused.reason, session.refused.message)
        if verdict.status != "correct":
            verdict.artifacts.stderr_tail = log_tail or None
            return verdict
        # A claim made inside the candidate's process: check it from outside.
        claimed_s = sum(t.mean_ms * t.runs for t in (verdict.ref_timing, verdict.candidate_timing) if t) / 1000
        if claimed_s > elapsed:
            return failed("rejected", "forged_result",
                          f"the reported timings add up to {claimed_s:.2f} s, more than the whole evaluation took ({elapsed:.2f} s)")
        check = self._verify(request, workdir, timeout_s, session.timed_blocks())
        if not check.ok and check.reason == "precision_loss" and check.input_sets == verdict.input_sets:
            # Close to right, judged against a reference where no candidate code ran: the
            # worker's own reference ran under the candidate's thread count and float mode, so an
            # honest kernel at the edge of the tolerance can pass there and fail here. Wrong, not forged.
            return failed("incorrect", "precision_loss",
                          f"wrong result on input set {check.failed_input_set} (judged by the verifier): {check.detail}")
        if not check.ok or check.input_sets != verdict.input_sets:
            where = f" on input set {check.failed_input_set}" if check.failed_input_set else ""
            return failed("rejected", "forged_result",
                          f"the harness said correct but the verifier disagrees{where}: {check.detail or 'other input sets'}")
        if not session.finished:
            return failed("rejected", "forged_result", "the harness said correct without the timing blocks the parent runs")
        session.apply(verdict)  # the timing as the parent and the verifier saw it
        verdict.memory = (verdict.memory or MemoryUse()).model_copy(update={"verifier_peak_mb": check.peak_rss_mb})
        verdict.max_abs_error, verdict.max_rel_error = check.max_abs_error, check.max_rel_error
        return verdict

    def _tell_verifier(self, job: BaseModel) -> None:
        """Send one job (a messages.VerifierJob) to the verifier without waiting for its reply."""
        self._start_verifier()
        self._verifier_started()
        try:
            self._verifier.stdin.write((msg.dumps(job) + "\n").encode())
        except OSError:
            self._stop_verifier()
            raise errors.SandboxError("the verifier is gone") from None

    def _ask_verifier(self, job: BaseModel, wait_s: float, sent: bool = False) -> BaseModel:
        """Send one job (a messages.VerifierJob) to the verifier (unless `sent` already) and
        return its reply (a messages.VerifierReply of the same `op`). Raises the error it
        reports; a reply that does not validate is kagent's own bug (SandboxError)."""
        if not sent:
            self._tell_verifier(job)
        # A reply to an earlier job of the same evaluation nobody waited for (the reference
        # prepared for timing when the candidate then failed or forged its verdict) is stale.
        deadline = time.monotonic() + wait_s
        while True:
            message = self._verifier_messages.about(job.id, max(0.0, deadline - time.monotonic()))
            if message is None:
                self._stop_verifier()
                raise errors.SandboxError(f"the verifier did not answer within {wait_s:g} s")
            try:
                reply = msg.VERIFIER_REPLY.validate_python({k: v for k, v in message.items() if k != "id"})
            except ValidationError as err:
                raise errors.SandboxError(f"the verifier sent a malformed reply: {errors.one_line(err, 300)}") from None
            if isinstance(reply, msg.Failed):
                raise reply.to_error()
            if reply.op == job.op:
                return reply

    def _verify(self, request: EvalRequest, workdir: Path, timeout_s: float, timed_blocks: list[list[int]]) -> OutputCheck:
        """The verifier's judgement of the outputs saved in `workdir`."""
        job = msg.CheckJob(id=workdir.name, request=request, outputs=str(workdir / OUTPUTS_FILE),
                           timed_blocks=[tuple(block) for block in timed_blocks])
        return self._ask_verifier(job, max(timeout_s, VERIFY_MIN_TIMEOUT_S)).check


def _parse(model: type[BaseModel], message: dict | None) -> BaseModel | None:
    """`message` (a line from a trusted server: the fork server, the verifier) as a `model`;
    None when there is none or it does not validate."""
    try:
        return model.model_validate(message) if message is not None else None
    except ValidationError:
        return None
