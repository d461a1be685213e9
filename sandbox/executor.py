"""The parent side of the sandbox: start a warm worker (zygote.py), send it evaluations, and
enforce the limits from outside the candidate's process.

The parent never imports torch and never runs candidate code. It gives the worker an
environment stripped of secrets, kills a candidate's whole process group when its wall-clock
time runs out or its memory passes the limit, and accepts a verdict only when it carries the
signature made with the key generated for that one evaluation.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sandbox import errors
from sandbox.models import EvalRequest, Verdict
from sandbox.zygote import LOG_FILE, RESULT_FILE, sign

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_MB = 8192
STARTUP_TIMEOUT_S = 120.0
# Environment a worker may see: the toolchain and the device, nothing that could be a secret.
ENV_ALLOWED = re.compile(
    r"^(PATH|LANG|LC_\w+|TZ|TERM|USER|LOGNAME|SHELL|CUDA_\w+|NVIDIA_\w+|LD_LIBRARY_PATH|"
    r"CC|CXX|CPATH|LIBRARY_PATH|OMP_\w+|MKL_\w+|OPENBLAS_\w+|TRITON_\w+|TORCH_CUDA_ARCH_LIST|"
    r"PYTHONPATH|VIRTUAL_ENV|KAGENT_CACHE_DIR)$"
)
ENV_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.IGNORECASE)


def worker_env(device: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if ENV_ALLOWED.match(k) and not ENV_SECRET.search(k)}
    env.setdefault("KAGENT_CACHE_DIR", str(Path.home() / ".cache" / "kagent"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"  # must be set before triton is imported
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["KAGENT_PRELOAD_TRITON"] = "1"
    return env


def gpu_available() -> bool:
    """Without importing torch (which the parent avoids) or initialising CUDA (which the
    fork server must not): an NVIDIA device node and a working driver."""
    return any(Path("/dev").glob("nvidia[0-9]*")) and shutil.which("nvidia-smi") is not None


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Sandbox:
    """One warm worker for one device. `evaluate` is safe to call from several threads; the
    evaluations then run one at a time (bound concurrency with several Sandboxes)."""

    def __init__(self, device: str, root: str | Path | None = None):
        self.device = device
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="kagent-sandbox-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # -- worker lifecycle -------------------------------------------------------------------

    def _start(self) -> subprocess.Popen:
        log = open(self.root / "zygote.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox.zygote"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            env=worker_env(self.device), cwd=self.root, text=True, bufsize=1,
            start_new_session=True,  # a Ctrl-C meant for kagent is handled by kagent
        )
        log.close()
        ready = self._read(proc, STARTUP_TIMEOUT_S)
        if not ready or not ready.get("ready"):
            proc.kill()
            tail = (self.root / "zygote.log").read_text()[-500:]
            raise errors.SandboxError(f"the sandbox worker failed to start: {tail.strip().splitlines()[-1] if tail.strip() else 'no output'}")
        return proc

    def _worker(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        return self._proc

    @staticmethod
    def _read(proc: subprocess.Popen, timeout: float) -> dict | None:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = proc.stdout.readline()
        return json.loads(line) if line else None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

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
        with self._lock:
            workdir = self.root / f"eval-{uuid.uuid4().hex[:12]}"
            workdir.mkdir()
            try:
                return self._evaluate(request, workdir, timeout_s, memory_mb)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    def _evaluate(self, request: EvalRequest, workdir: Path, timeout_s: float, memory_mb: int) -> Verdict:
        proc = self._worker()
        key = secrets.token_bytes(32)
        job_id = workdir.name
        proc.stdin.write(json.dumps({
            "id": job_id, "request": request.model_dump(mode="json"), "workdir": str(workdir),
            "key": key.hex(), "memory_mb": memory_mb,
        }) + "\n")
        proc.stdin.flush()
        started = self._read(proc, 30)
        if not started or "pid" not in started:
            self.close()
            raise errors.SandboxError("the sandbox worker did not start the evaluation")
        pid = started["pid"]
        deadline = time.monotonic() + timeout_s
        killed_for = None
        finished = None
        while finished is None:
            finished = self._read(proc, 0.02)
            if finished is not None:
                break
            if proc.poll() is not None:
                raise errors.SandboxError("the sandbox worker died")
            if killed_for is None and time.monotonic() > deadline:
                killed_for = "timeout"
            elif killed_for is None and _rss_mb(pid) > memory_mb:
                killed_for = "memory"
            if killed_for:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._kill_leftovers(pid)
        elapsed = timeout_s - (deadline - time.monotonic())
        return self._verdict(request, workdir, key, finished, killed_for, timeout_s, memory_mb, elapsed)

    @staticmethod
    def _kill_leftovers(pid: int) -> None:
        """Anything the candidate spawned (a fork bomb, a daemon) dies with its session."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _verdict(self, request, workdir, key, finished, killed_for, timeout_s, memory_mb, elapsed) -> Verdict:
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
        result_path = workdir / RESULT_FILE
        if finished.get("signal"):
            name = _signal_name(finished["signal"])
            return failed("runtime_error", "crashed", f"the candidate's process died with {name}")
        if not result_path.exists():
            return failed("runtime_error", "exited_early",
                          f"the candidate's process exited (code {finished.get('exit_code')}) before a verdict")
        try:
            signed = json.loads(result_path.read_text())
            body, mac = signed["body"], signed["mac"]
        except (ValueError, KeyError, TypeError):
            return failed("rejected", "forged_result", "the result file was not written by the harness")
        if not secrets.compare_digest(mac, sign(key, body)):
            return failed("rejected", "forged_result", "the result carries no valid harness signature")
        payload = json.loads(body)
        if "error" in payload:
            error_class = getattr(errors, payload["error"], errors.SandboxError)
            raise error_class(payload["message"])
        verdict = Verdict.model_validate(payload["verdict"])
        if verdict.status != "correct":
            verdict.artifacts.stderr_tail = log_tail or None
        return verdict
