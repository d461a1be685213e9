"""The worker side of the sandbox: a fork server.

Importing torch costs ~1.5 s; an evaluation of a cached kernel should cost less than that. So
one warm process imports torch (never initialising CUDA or OpenMP, which do not survive a
fork) and forks a fresh child per evaluation. Each child becomes its own session (so the
parent can kill its whole process group), gets a private working directory as HOME and
TMPDIR, a memory limit, and writes its verdict to a file signed with a per-evaluation key: a
candidate printing or writing a fake verdict cannot produce a valid signature. (Native code
can read the key from memory; a `correct` verdict is therefore also checked by the verifier,
against the outputs the child saves beside it.) The server is a
child subreaper (or PID 1 of its own namespace, see executor.py), so a process a candidate
orphans — a daemon that left the process group — is re-parented here, where the parent finds
and kills it. As PID 1 of its own namespace it also locks the filesystem read-only around the
workdirs and the build cache, and each child drops every capability (confine.py). In a CPU sandbox it
also builds and loads the seccomp filter a C++ evaluation installs (confine.ProcessFilter), so
each child inherits code no candidate could have changed.

Protocol on stdin/stdout, one JSON object per line (the models in messages.py):
  <- Ready {"ready": true, "confined": BOOL}
  -> ForkJob {"id": ID, "request": {...EvalRequest}, "workdir": DIR, "key": HEX, "memory_mb": N}
  <- Forked {"id": ID, "pid": PID}
  <- Exited {"id": ID, "exit_code": CODE | null, "signal": SIG | null}
and in the workdir, the result file: Signed {"body": Result JSON, "mac": HEX}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import resource
import select
import sys
import tempfile
import traceback

from pydantic import BaseModel

from kagent.errors import ErrorMessage
from kagent.sandbox import confine
from kagent.sandbox.messages import Exited, ForkJob, Forked, Ready, Result, Signed, dumps
from kagent.sandbox.confine import (PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, create_gpu_device_nodes, drop_privileges,
                             lock_filesystem, prctl)

RESULT_FILE = "result.json"
OUTPUTS_FILE = "outputs.pt"  # what a candidate judged correct returned: read by verifier.py
LOG_FILE = "worker.log"


def sign(key: bytes, body: str) -> str:
    """HMAC-SHA256 of `body` with `key`, hex: how the zygote's messages are signed."""
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _send(message: BaseModel) -> None:
    sys.stdout.write(dumps(message) + "\n")
    sys.stdout.flush()


def _child(job: ForkJob, confined: bool) -> None:
    """Runs in the forked child; never returns."""
    os.setsid()
    workdir = job.workdir
    log = os.open(os.path.join(workdir, LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.chdir(workdir)
    for var, sub in (("HOME", "home"), ("TMPDIR", "tmp"), ("TRITON_CACHE_DIR", "triton"),
                     ("TORCH_EXTENSIONS_DIR", "torch_extensions")):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
        os.environ[var] = os.path.join(workdir, sub)
    tempfile.tempdir = None  # cached by the server at import: make tempfile read TMPDIR again
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    request = job.request
    if request.device == "cpu":  # CUDA reserves huge virtual ranges: there, the parent watches RSS
        limit = job.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Files too: the verifier reads what this process leaves behind.
    file_limit = job.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    if confined:
        drop_privileges()
    key, job.key = bytes.fromhex(job.key), ""
    try:
        import torch

        from kagent.errors import KagentError
        from kagent.sandbox.harness import Evaluation

        try:
            evaluation = Evaluation(request, lambda body: sign(key, body))
            verdict = evaluation.run()
            if verdict.status == "correct":
                torch.save(evaluation.outputs, os.path.join(workdir, OUTPUTS_FILE))
            result = Result(verdict=verdict)
        except KagentError as err:
            result = Result(error=ErrorMessage.of(err))
    except BaseException:  # kagent's own failure: its traceback, never blamed on the candidate
        result = Result(error=ErrorMessage(error="SandboxError", message=traceback.format_exc()[-2000:]))
    tmp = os.path.join(workdir, RESULT_FILE + ".tmp")
    with open(tmp, "w") as f:
        f.write(dumps(Signed.of(result, lambda body: sign(key, body))))
    os.replace(tmp, os.path.join(workdir, RESULT_FILE))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip atexit handlers a candidate may have registered


def _reap(jobs: dict[int, str]) -> None:
    """Collect every child that ended: report a job's end, drop an orphan's."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        job_id = jobs.pop(pid, None)
        if job_id is not None:
            _send(Exited(id=job_id, exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                         signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None))


def _confine(root: str) -> bool:
    """As PID 1 of a namespace of our own: lock the filesystem but `root` (the sandbox's, where
    workdirs are made) and the build cache, become non-dumpable. False (with the reason on
    stderr) where the kernel refuses."""
    if os.getpid() != 1:
        return False
    try:
        from kagent.sandbox.backends.cpp import cache_dir

        create_gpu_device_nodes()  # (a no-op without an NVIDIA GPU)
        for skipped in lock_filesystem([root, str(cache_dir().parent)]):
            print(f"kagent sandbox: left as it was: {skipped}", file=sys.stderr)
    except OSError as err:
        print(f"kagent sandbox: filesystem not locked: {err}", file=sys.stderr)
        return False
    return prctl(PR_SET_DUMPABLE, 0)


def _load_process_filter() -> None:
    """Where C++ candidates run (a CPU sandbox), the seccomp filter each evaluation installs
    (confine.ProcessFilter): built and loaded here, before the filesystem is locked."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        confine.filter_missing = "not a CPU sandbox"
        return
    from kagent.sandbox.backends import cpp
    from kagent.errors import CompileError

    if os.environ.get(cpp.SECCOMP_ENV) == "0":
        return
    try:
        confine.load_process_filter(cpp._compile)
    except (OSError, CompileError) as err:
        confine.filter_missing = f"the fork server could not build it: {err}"
        print(f"kagent sandbox: process creation will not be refused: {err}", file=sys.stderr)


def main(root: str) -> None:
    """Serve evaluations whose workdirs are under `root` (the sandbox's root directory)."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the candidates' processes come back here
    import torch  # noqa: F401  (the point of the zygote: import once)

    if os.environ.get("TRITON_INTERPRET") == "1" or os.environ.get("KAGENT_PRELOAD_TRITON") == "1":
        try:
            import triton  # noqa: F401
        except ImportError:
            pass
    import kagent.sandbox.harness  # noqa: F401
    from kagent.sandbox.trace import traced_call

    _load_process_filter()

    # The first dispatch-mode entry imports torch._dynamo, which rewraps torch functions:
    # do it here, once, so it is neither paid per evaluation nor mistaken for a candidate's patch.
    traced_call(torch.empty, 1)

    confined = _confine(root)
    jobs: dict[int, str] = {}  # pid -> job id
    _send(Ready(confined=confined))
    stdin_open = True
    pending = b""  # read from the raw fd: a buffered reader could hide a second job from select
    while stdin_open or jobs:
        if b"\n" not in pending:
            readable, _, _ = select.select([0] if stdin_open else [], [], [], 0.02)
            if readable:
                chunk = os.read(0, 65536)
                pending += chunk
                if not chunk:
                    stdin_open = False  # the parent is gone: finish nothing new, kill what runs
                    for pid in jobs:
                        try:
                            os.killpg(pid, 9)
                        except ProcessLookupError:
                            pass
        if b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            job = ForkJob.model_validate(json.loads(line))
            pid = os.fork()
            if pid == 0:
                _child(job, confined)
            jobs[pid] = job.id
            _send(Forked(id=job.id, pid=pid))
        _reap(jobs)


if __name__ == "__main__":
    main(sys.argv[1])
    sys.stdout.flush()
    os._exit(0)  # torch's interpreter teardown takes ~0.5 s of CPU, and nothing is left to save
