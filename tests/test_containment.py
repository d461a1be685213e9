"""Crash containment: whatever a candidate does to its own process (crash, hang, eat memory,
exit, fork, read secrets, leave processes behind), the sandbox answers with a verdict, within
its limits, and stays usable for the next candidate. Real workers, real kills."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import CANDIDATES, ROOT, TASKS
from kagent.sandbox import supervisor
from kagent.sandbox.backends import detect_backend
from kagent.sandbox.supervisor import Sandbox
from kagent.sandbox.models import EvalRequest, Verdict

RELU_TASK = TASKS / "01_relu.py"
HONEST = CANDIDATES / "01_relu" / "cpp.py"
SECRET = "sk-test-secret-" + uuid.uuid4().hex[:8]


def run(sandbox: Sandbox, source: str, tmp_path: Path, timeout: float = 60, memory_mb: int | None = None,
        backend: str | None = None) -> Verdict:
    path = tmp_path / f"candidate_{uuid.uuid4().hex[:8]}.py"
    path.write_text(source)
    request = EvalRequest(task_path=str(RELU_TASK), candidate_path=str(path), device="cpu",
                          backend=backend or detect_backend(source) or "cpp")
    limits = {"memory_mb": memory_mb} if memory_mb else {}
    return sandbox.evaluate(request, timeout_s=timeout, **limits)


def assert_usable(sandbox: Sandbox) -> None:
    """The honest ReLU kernel still gets its verdict from the same sandbox."""
    request = EvalRequest(task_path=str(RELU_TASK), candidate_path=str(HONEST), backend="cpp", device="cpu")
    verdict = sandbox.evaluate(request, timeout_s=60)
    assert verdict.status == "correct", f"{verdict.status} ({verdict.reason}): {verdict.message}"


# One C++ library for every native misbehaviour, chosen at run time by MODE: it is compiled
# once (the build cache is keyed by the C++ source), so each test pays for its attack only.
CPP_MODES = {"relu": 0, "segfault": 1, "spin": 2, "malloc_bomb": 3, "fork_hog": 4,
             "spawn_child": 5, "spawn_daemon": 6, "kill_worker": 7, "stop_worker": 8,
             "stop_and_kill_worker": 9}
CPP_TEMPLATE = '''import os

import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <csignal>
#include <fcntl.h>
#include <unistd.h>

static void touch(int64_t bytes) {  // allocate and really use: malloc+memset alone is optimised away
    volatile char* p = (volatile char*)malloc(bytes);
    for (int64_t i = 0; i < bytes; i += 4096) p[i] = 1;
}

static void spawn_sleeper(int64_t marker, bool daemon) {
    static bool spawned = false;  // once per process, not once per forward call
    const char* flag = getenv("KAGENT_TEST_FLAG");
    if (spawned || !flag) return;
    spawned = true;
    char arg[32];
    snprintf(arg, sizeof arg, "%lld", (long long)marker);
    if (fork() == 0) {
        if (daemon) {  // its own session, and orphaned at once: re-parented, out of the group
            setsid();
            if (fork() != 0) _exit(0);
        }
        close(open(flag, O_CREAT | O_WRONLY, 0600));
        execl("/bin/sleep", "sleep", arg, (char*)0);
        _exit(0);
    }
    for (int i = 0; i < 500 && access(flag, F_OK) != 0; ++i) usleep(10000);
}

extern "C" void kernel(const float* x, float* y, int64_t n, int64_t mode, int64_t marker) {
    volatile int64_t spins = 0;
    static bool signalled = false;
    switch (mode) {
        case 1: { volatile float* p = nullptr; *p = 1.0f; break; }
        case 2: while (true) spins++;
        case 3: while (true) touch(1 << 26);
        case 4:
            for (int i = 0; i < 4; ++i)
                if (fork() == 0) { touch(500L << 20); sleep(100); _exit(0); }
            sleep(100);
            break;
        case 5: spawn_sleeper(marker, false); break;
        case 6: spawn_sleeper(marker, true); break;
        case 7: if (!signalled) { signalled = true; kill(getppid(), SIGKILL); usleep(300000); } break;
        case 8: if (!signalled) { signalled = true; kill(getppid(), SIGSTOP); } break;
        case 9: if (!signalled) { signalled = true; kill(getppid(), SIGSTOP); kill(getppid(), SIGKILL); } break;
    }
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
""")
MODE, MARKER, FLAG = @MODE@, @MARKER@, @FLAG@
if FLAG:
    os.environ["KAGENT_TEST_FLAG"] = FLAG


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.kernel(x, y, x.numel(), MODE, MARKER)
        return y
'''


def cpp_candidate(mode: str, marker: int = 0, flag: Path | None = None) -> str:
    values = {"@MODE@": str(CPP_MODES[mode]), "@MARKER@": str(marker), "@FLAG@": repr(str(flag) if flag else "")}
    return re.sub("|".join(values), lambda m: values[m.group(0)], CPP_TEMPLATE)


def py_candidate(forward_body: str, imports: str = "") -> str:
    """A candidate whose forward runs `forward_body` (Python), then returns a copy of x."""
    body = "\n".join("        " + line for line in forward_body.strip().splitlines())
    return f'''import torch
from kagent.sandbox.backends.cpp import load_cpp
{imports}

class ModelNew(torch.nn.Module):
    def forward(self, x):
{body}
        return x.clone()
'''


def leftovers(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


@pytest.fixture(scope="module")
def plain_sandbox(tmp_path_factory, _cache_dir):
    """A worker without its own PID namespace, whose C++ candidates may create processes:
    containment then rests on the process tree alone (the subreaper worker, the parent's
    sweep), as on machines without namespaces or seccomp, and for native code the seccomp
    filter does not cover (CUDA)."""
    with Sandbox("cpu", root=tmp_path_factory.mktemp("plain-sandbox"), namespaces=False, seccomp=False) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def forking_sandbox(tmp_path_factory, _cache_dir):
    """Namespaces, but C++ candidates may create processes (tests/test_isolation.py shows they
    cannot by default): for what the namespaces and the sweep do with such processes."""
    with Sandbox("cpu", root=tmp_path_factory.mktemp("forking-sandbox"), seccomp=False) as sandbox:
        assert_usable(sandbox)  # started: the tests time their attacks, not its start-up
        yield sandbox


@pytest.fixture(params=["namespaced", "plain"])
def any_sandbox(request, cpu_sandbox, plain_sandbox):
    """Both: for the attacks whose containment differs without a PID namespace."""
    return cpu_sandbox if request.param == "namespaced" else plain_sandbox


# -- crashes, hangs, exits ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpp_built(cpu_sandbox, tmp_path_factory):
    """Builds the misbehaving library once; in its harmless mode it is an honest ReLU."""
    verdict = run(cpu_sandbox, cpp_candidate("relu"), tmp_path_factory.mktemp("build"))
    assert verdict.status == "correct", f"{verdict.status} ({verdict.reason}): {verdict.message}"


def test_segfault_is_a_crashed_verdict(cpu_sandbox, cpp_built, tmp_path):
    verdict = run(cpu_sandbox, cpp_candidate("segfault"), tmp_path)
    assert (verdict.status, verdict.reason) == ("runtime_error", "crashed"), verdict.message
    assert "SIGSEGV" in verdict.message
    assert_usable(cpu_sandbox)


@pytest.mark.parametrize("language", ["cpp", "python"])
def test_infinite_loop_times_out_on_time(cpu_sandbox, cpp_built, tmp_path, language):
    source = cpp_candidate("spin") if language == "cpp" else py_candidate("while True:\n    pass")
    timeout = 3.0
    started = time.monotonic()
    verdict = run(cpu_sandbox, source, tmp_path, timeout=timeout)
    wall = time.monotonic() - started
    assert (verdict.status, verdict.reason) == ("timeout", "timeout"), verdict.message
    assert timeout <= wall < timeout + 2.5, f"took {wall:.1f} s for a {timeout} s timeout"
    assert_usable(cpu_sandbox)


def test_os_exit_is_exited_early(cpu_sandbox, tmp_path):
    verdict = run(cpu_sandbox, py_candidate("os._exit(0)", imports="import os"), tmp_path)
    assert (verdict.status, verdict.reason) == ("runtime_error", "exited_early"), verdict.message
    assert "code 0" in verdict.message
    assert_usable(cpu_sandbox)


def test_python_fork_is_rejected(cpu_sandbox, tmp_path):
    # One fork, the child exiting at once: harmless even if the guard failed.
    source = py_candidate("if os.fork() == 0:\n    os._exit(0)", imports="import os")
    verdict = run(cpu_sandbox, source, tmp_path, timeout=30)
    assert (verdict.status, verdict.reason) == ("rejected", "forbidden_call"), verdict.message
    assert "os.fork" in verdict.message
    assert_usable(cpu_sandbox)


# -- memory ---------------------------------------------------------------------------------


def test_huge_tensor_is_out_of_memory(cpu_sandbox, tmp_path):
    source = py_candidate("hog = torch.empty(100 * 2**30, dtype=torch.uint8)")
    verdict = run(cpu_sandbox, source, tmp_path)  # the default 8 GB limit
    assert (verdict.status, verdict.reason) == ("runtime_error", "out_of_memory"), verdict.message
    assert_usable(cpu_sandbox)


@pytest.mark.parametrize("bomb", ["python_list", "cpp_malloc"])
def test_growing_memory_bomb_is_stopped(cpu_sandbox, cpp_built, tmp_path, bomb):
    source = py_candidate("hog = []\nwhile True:\n    hog.append(bytearray(1 << 24))") if bomb == "python_list" \
        else cpp_candidate("malloc_bomb")
    started = time.monotonic()
    verdict = run(cpu_sandbox, source, tmp_path, timeout=60, memory_mb=2048)
    assert time.monotonic() - started < 30, "the bomb was not stopped by the memory limit"
    assert verdict.status == "runtime_error" and verdict.reason in ("out_of_memory", "crashed"), \
        f"{verdict.status} ({verdict.reason}): {verdict.message}"
    assert_usable(cpu_sandbox)


def test_memory_of_forked_processes_counts(forking_sandbox, cpp_built, tmp_path):
    # Four children of 500 MB each: every process stays under the per-process limit (the
    # address-space rlimit), together they are far over it.
    started = time.monotonic()
    verdict = run(forking_sandbox, cpp_candidate("fork_hog"), tmp_path, timeout=30, memory_mb=2048)
    assert (verdict.status, verdict.reason) == ("runtime_error", "out_of_memory"), \
        f"{verdict.status} ({verdict.reason}): {verdict.message}"
    assert time.monotonic() - started < 20
    assert not [p for p in supervisor.descendants(forking_sandbox._zygote_pid) if supervisor.pid_alive(p)]
    assert_usable(forking_sandbox)


# -- processes left behind ------------------------------------------------------------------


@pytest.mark.parametrize("sandbox_kind, how", [("namespaced", "child"), ("namespaced", "daemon"), ("plain", "daemon")])
def test_spawned_processes_are_killed(request, cpp_built, tmp_path, sandbox_kind, how):
    """A sleeping child (same process group) and a daemon (setsid + double fork: its own
    session, re-parented when its parent exits) are both gone once the verdict is back."""
    any_sandbox = request.getfixturevalue("forking_sandbox" if sandbox_kind == "namespaced" else "plain_sandbox")
    marker = 10**9 + uuid.uuid4().int % 10**9  # a unique `sleep` argument to find it by
    # The candidate's one writable place that outlives its workdir: the build cache.
    flag = Path(os.environ["KAGENT_CACHE_DIR"]) / f"spawned-{marker}"
    verdict = run(any_sandbox, cpp_candidate(f"spawn_{how}", marker, flag), tmp_path)
    assert flag.exists(), f"the candidate never spawned its process: {verdict.status} {verdict.message}"
    assert verdict.status == "correct", f"{verdict.status} ({verdict.reason}): {verdict.message}"
    assert leftovers(f"sleep {marker}$") == [], "a process the candidate spawned survived its evaluation"
    assert_usable(any_sandbox)


def test_worker_killed_or_stopped_by_candidate(any_sandbox, cpp_built, tmp_path):
    """Without a PID namespace the candidate can signal the worker: that is a verdict, not a
    crash of kagent or a hang; with one, the worker (PID 1 there) does not even notice."""
    if any_sandbox.isolated:
        verdict = run(any_sandbox, cpp_candidate("stop_and_kill_worker"), tmp_path)
        assert verdict.status == "correct", f"{verdict.status} ({verdict.reason}): {verdict.message}"
        assert_usable(any_sandbox)
        return

    killed = run(any_sandbox, cpp_candidate("kill_worker"), tmp_path, timeout=20)
    assert (killed.status, killed.reason) == ("runtime_error", "crashed"), killed.message
    assert "worker died" in killed.message

    timeout = 2.0
    started = time.monotonic()
    stopped = run(any_sandbox, cpp_candidate("stop_worker"), tmp_path, timeout=timeout)  # on a new worker
    assert (stopped.status, stopped.reason) == ("timeout", "timeout"), stopped.message
    assert time.monotonic() - started < 5 + timeout + supervisor.KILL_GRACE_S + 3  # start-up, limit, grace
    assert_usable(any_sandbox)


def test_worker_messages_arriving_together_are_all_read():
    """The worker may write a job's start and end in one go: a buffered reader would keep the
    second line where select() cannot see it, and the parent would wait for it forever."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b'{"id": "a", "pid": 7}\nsome library printing\n{"id": "a", "exit_code": 0}\n{"id"')
        messages = supervisor._Messages(read_end)
        assert messages.read(1) == {"id": "a", "pid": 7}
        assert messages.read(0.5) == {"id": "a", "exit_code": 0}
        assert messages.read(0.05) is None  # half a line: not a message yet
        os.write(write_end, b': "b"}\n')
        assert messages.read(0.5) == {"id": "b"}
        os.close(write_end)
        write_end = None
        assert messages.read(1) is None  # end of stream
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)


# -- secrets and private directories ----------------------------------------------------------


def test_api_keys_do_not_reach_the_candidate(tmp_path, monkeypatch, _cache_dir):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET + "-anthropic")
    monkeypatch.setenv("TRITON_API_TOKEN", SECRET + "-token")  # an allowed prefix, a secret's name
    source = py_candidate(
        "raise RuntimeError(f\"key={os.environ.get('OPENAI_API_KEY')} anthropic={os.environ.get('ANTHROPIC_API_KEY')} \"\n"
        "                   f\"secrets={[k for k, v in os.environ.items() if 'sk-test' in v]}\")",
        imports="import os")
    with Sandbox("cpu", root=tmp_path / "sandbox") as sandbox:  # the worker starts with the secrets set
        verdict = run(sandbox, source, tmp_path)
    assert (verdict.status, verdict.reason) == ("runtime_error", "exception"), verdict.message
    assert "key=None anthropic=None secrets=[]" in verdict.message
    assert "key=None" in verdict.artifacts.traceback
    assert "sk-test-secret" not in verdict.model_dump_json()


def test_other_processes_environment_is_invisible(cpu_sandbox, tmp_path):
    """With a PID namespace the candidate sees no process outside its sandbox, so it cannot
    read an API key from kagent's (or any process's) /proc/PID/environ, nor reach the verifier
    that checks its verdict (sandbox/verifier.py)."""
    if not cpu_sandbox.isolated:
        pytest.skip("no PID namespace on this machine (unshare --pid --mount-proc is not allowed)")
    holder = subprocess.Popen(["sleep", "60"], env={**os.environ, "OPENAI_API_KEY": SECRET})
    try:
        source = py_candidate('''
seen, found, verifier = 0, [], False
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            env = open(f"/proc/{pid}/environ", "rb").read()
            verifier = verifier or b"kagent.sandbox.verifier" in open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        seen += 1
        found += [e.decode() for e in env.split(b"\\0") if e.startswith(b"OPENAI_API_KEY=")]
raise RuntimeError(f"holder_visible={os.path.exists('/proc/HOLDER')} seen={seen} found={found} verifier={verifier}")
'''.replace("HOLDER", str(holder.pid)), imports="import os")
        verdict = run(cpu_sandbox, source, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    match = re.search(r"holder_visible=(\w+) seen=(\d+) found=(\[.*?\]) verifier=(\w+)", verdict.message)
    assert match, verdict.message
    assert match.group(1) == "False" and int(match.group(2)) >= 1 and match.group(3) == "[]", verdict.message
    assert cpu_sandbox._verifier is not None and cpu_sandbox._verifier.poll() is None  # it runs...
    assert match.group(4) == "False", verdict.message  # ...out of the candidate's sight
    assert SECRET not in verdict.model_dump_json()


def test_namespace_used_where_the_system_allows_it():
    """Guards the skip above: if this machine can run a PID namespace, the sandbox uses one."""
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "true"]
    if os.geteuid() != 0:
        command[1:1] = ["--user", "--map-root-user"]
    try:
        allowed = subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        allowed = False
    if os.environ.get(supervisor.NAMESPACES_ENV) == "0":
        pytest.skip(f"{supervisor.NAMESPACES_ENV}=0")
    assert bool(supervisor.namespace_prefix()) == allowed


def test_private_home_and_tmp_removed_after_verdict(cpu_sandbox, tmp_path):
    source = py_candidate(
        'raise RuntimeError("dirs=" + json.dumps([os.getcwd(), os.environ["HOME"], os.environ["TMPDIR"],'
        ' tempfile.gettempdir(), os.path.expanduser("~")]))',
        imports="import json\nimport os\nimport tempfile")
    verdict = run(cpu_sandbox, source, tmp_path)
    match = re.search(r"dirs=(\[.*\])", verdict.message)
    assert match, verdict.message
    cwd, home, tmpdir, gettempdir, expanded = (Path(p) for p in json.loads(match.group(1)))
    root = cpu_sandbox.root.resolve()
    assert cwd.parent == root and cwd.name.startswith("eval-"), cwd
    for path in (home, tmpdir, gettempdir, expanded):
        assert path.is_relative_to(cwd) and path != cwd, path
    assert home != tmpdir
    assert not cwd.exists(), "the per-evaluation directory outlived its verdict"


def test_a_dead_verifier_is_replaced(plain_sandbox):
    """The verifier is one long-lived process: if it dies between evaluations (killed by an
    operator, out of memory), the next `correct` verdict starts a new one, not an error."""
    assert_usable(plain_sandbox)
    first = plain_sandbox._verifier
    first.kill()
    first.wait()
    assert_usable(plain_sandbox)
    assert plain_sandbox._verifier is not first and plain_sandbox._verifier.poll() is None


ESCAPE = r'''import errno
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <unistd.h>

static int64_t create(const char* path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

extern "C" void escape(const char* outside, int64_t* result) {
    result[0] = create(outside);
    result[1] = mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND, nullptr) == 0 ? 0 : errno;
    result[2] = ptrace(PTRACE_ATTACH, getppid(), nullptr, nullptr) == 0 ? 0 : errno;
    result[3] = create("inside.txt");
}
""")


class ModelNew(torch.nn.Module):
    def forward(self, x):
        result = torch.full((4,), -1, dtype=torch.int64)
        lib.escape(torch.tensor(list(b"OUTSIDE\0"), dtype=torch.uint8), result)
        names = [errno.errorcode.get(int(r), str(int(r))) if r else "ok" for r in result]
        raise RuntimeError("outside={} remount={} ptrace={} inside={}".format(*names))
'''


def test_confined_candidate_cannot_write_outside_its_workdir(forking_sandbox, tmp_path):
    """Native code running as root (real or mapped) in a confined worker: a file outside the
    workdir and the build cache cannot be created (read-only mounts), the root cannot be
    remounted writable, and the fork server cannot be ptraced (no capabilities left, and the
    server is not dumpable; the seccomp filter, off here, would refuse ptrace too). Its own
    workdir stays writable."""
    if not forking_sandbox.isolated:
        pytest.skip("no PID and mount namespace on this machine")
    outside = tmp_path / "planted.txt"
    verdict = run(forking_sandbox, ESCAPE.replace("OUTSIDE", str(outside)), tmp_path)
    assert "outside=EROFS remount=EPERM ptrace=EPERM inside=ok" in verdict.message, verdict.message
    assert forking_sandbox.confined
    assert not outside.exists()


def test_confinement_in_a_user_namespace(tmp_path):
    """The path a non-root kagent takes: `unshare --user --map-root-user`, where mounts
    inherited from the host are locked. The read-only remount must still work there, keep the
    writable directory writable, and survive the capability drop."""
    writable, outside = tmp_path / "writable", tmp_path / "outside.txt"
    writable.mkdir()
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from kagent.sandbox.confine import drop_privileges, lock_filesystem\n"
              f"lock_filesystem([{str(writable)!r}]); drop_privileges()\n"
              f"open({str(writable / 'ok.txt')!r}, 'w').write('x')\n"
              "try:\n"
              f"    open({str(outside)!r}, 'w')\n"
              "except OSError as err:\n"
              "    print('refused', err.errno)\n")
    command = ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--mount-proc"]
    probe = subprocess.run([*command, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not allowed here")
    done = subprocess.run([*command, sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "refused 30"  # EROFS
    assert (writable / "ok.txt").exists() and not outside.exists()
