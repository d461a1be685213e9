"""What the operating system enforces around a candidate, beyond the checks inside its
process: the servers that judge it cannot be made to run its code, native code cannot create
processes or reach into libtorch, and every verdict says how isolated the candidate was. Real
workers, real candidates, nothing about a verdict faked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import CANDIDATES, ROOT, TASKS
from kagent.sandbox import confine
from kagent.sandbox.backends import cpp
from kagent.sandbox.supervisor import NAMESPACES_ENV, Sandbox, namespace_prefix
from kagent.sandbox.models import EvalRequest, Verdict

RELU_TASK = TASKS / "01_relu.py"
HONEST = CANDIDATES / "01_relu" / "cpp.py"


def run(sandbox: Sandbox, source_or_path: str | Path, tmp_path: Path, backend: str = "cpp", timeout: float = 60,
        task: Path = RELU_TASK) -> Verdict:
    path = Path(source_or_path) if isinstance(source_or_path, Path) else tmp_path / f"candidate_{uuid.uuid4().hex[:8]}.py"
    if not isinstance(source_or_path, Path):
        path.write_text(source_or_path)
    request = EvalRequest(task_path=str(task), candidate_path=str(path), backend=backend, device="cpu")
    return sandbox.evaluate(request, timeout_s=timeout)


def assert_correct(verdict: Verdict) -> None:
    assert verdict.status == "correct", f"{verdict.status} ({verdict.reason}): {verdict.message}"


# -- the servers' module path -----------------------------------------------------------------

PLANT = '''import os
import torch
from kagent.sandbox.backends.cpp import load_cpp

PLANTED = """import pathlib
pathlib.Path(MARKER).write_text(__name__)
"""


class ModelNew(torch.nn.Module):
    def forward(self, x):
        root = os.path.abspath("..")  # the sandbox's root: the candidate's workdir is below it
        for package in ("kagent", "kagent/sandbox", "sandbox"):
            os.makedirs(os.path.join(root, package), exist_ok=True)
            open(os.path.join(root, package, "__init__.py"), "w").write(PLANTED)
        for package in ("kagent/sandbox", "sandbox"):
            for module in ("verifier", "zygote", "harness"):
                open(os.path.join(root, package, module + ".py"), "w").write(PLANTED)
        return x.clone()
'''


def test_code_planted_in_the_sandbox_root_never_runs(tmp_path, monkeypatch):
    """A candidate writes `kagent/sandbox/verifier.py` (and the fork server, and the old
    `sandbox/` layout) into its sandbox root, the one directory above its workdir it can write.
    Neither a restarted verifier nor a new sandbox on that root (a `--resume`), even with the
    root on PYTHONPATH, imports it: the servers start outside the root, in Python's isolated
    mode."""
    marker = tmp_path / "planted-code-ran"
    source = PLANT.replace("MARKER", repr(str(marker)))
    root = tmp_path / "sandbox"
    with Sandbox("cpu", root=root) as sandbox:
        run(sandbox, source, tmp_path)
        assert (root / "kagent" / "sandbox" / "verifier.py").exists(), "the candidate could not plant its code"
        sandbox._stop_verifier()  # as if it died: the next `correct` verdict starts a new one
        assert_correct(run(sandbox, HONEST, tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(root))
    with Sandbox("cpu", root=root) as resumed:
        assert_correct(run(resumed, HONEST, tmp_path))
    assert not marker.exists(), f"planted code ran as {marker.read_text()}"


# -- process creation from native code --------------------------------------------------------

# One library for every attack, chosen at run time by MODE (built once: the cache is keyed by
# the source). Each command would create MARKER; mode 0 is an honest OpenMP ReLU.
SPAWN_MODES = {"omp_relu": 0, "fork": 1, "system": 2, "popen": 3, "posix_spawn": 4, "fork_in_omp_threads": 5,
               "execve": 6}
SPAWN = '''import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

extern "C" void kernel(const float* x, float* y, int64_t n, int64_t mode, const char* marker) {
    std::string touch = std::string("touch ") + marker;
    char* argv[] = {(char*)"touch", (char*)marker, nullptr};
    switch (mode) {
        case 1: if (fork() == 0) { execv("/usr/bin/touch", argv); _exit(0); } break;
        case 2: system(touch.c_str()); break;
        case 3: { FILE* f = popen(touch.c_str(), "r"); if (f) pclose(f); break; }
        case 4: { pid_t pid; if (posix_spawnp(&pid, "touch", nullptr, nullptr, argv, environ) == 0) waitpid(pid, nullptr, 0); break; }
        case 5: {
            #pragma omp parallel
            if (fork() == 0) { execv("/usr/bin/touch", argv); _exit(0); }
            break;
        }
        case 6: execv("/usr/bin/touch", argv); break;
    }
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
""")


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.kernel(x, y, x.numel(), MODE, torch.tensor(list(MARKER.encode() + b"\\\\0"), dtype=torch.uint8))
        return y
'''


def spawn_candidate(mode: str, marker: Path) -> str:
    return SPAWN.replace("MODE", str(SPAWN_MODES[mode])).replace("MARKER", repr(str(marker)))


def test_honest_openmp_kernel_stays_correct(cpu_sandbox, tmp_path):
    """The filter lets OpenMP (and torch) create threads: the same library, honest, is correct,
    and the verdict says how isolated it ran."""
    verdict = run(cpu_sandbox, spawn_candidate("omp_relu", tmp_path / "unused"), tmp_path)
    assert_correct(verdict)
    assert verdict.isolation == ("namespaces" if cpu_sandbox.isolated and cpu_sandbox.confined else
                                 "pid_namespace" if cpu_sandbox.isolated else "none")
    assert not any("not refused" in note for note in verdict.artifacts.notes), verdict.artifacts.notes


@pytest.mark.parametrize("mode", [m for m in SPAWN_MODES if m != "omp_relu"])
def test_process_creation_from_cpp_is_refused_by_the_os(cpu_sandbox, tmp_path, mode):
    """fork, system, popen, posix_spawn, execve, and fork from OpenMP's worker threads: the
    command never runs, and the verdict is forbidden_call (the call fails with EPERM, or, where
    glibc blocked signals around it as posix_spawn does, the process is killed with SIGSYS)."""
    marker = tmp_path / f"ran-{mode}"
    verdict = run(cpu_sandbox, spawn_candidate(mode, marker), tmp_path)
    assert (verdict.status, verdict.reason) == ("rejected", "forbidden_call"), f"{verdict.status} ({verdict.reason}): {verdict.message}"
    assert "process" in verdict.message, verdict.message
    assert not marker.exists(), "the command the candidate started ran"
    assert_correct(run(cpu_sandbox, HONEST, tmp_path))


# Answers as the filter's library does, and installs nothing.
FAKE_FILTER = """
#include <cstdint>
extern "C" int64_t kagent_refuse_processes(void) { return 0; }
extern "C" int64_t kagent_refused(void) { return 0; }
extern "C" int64_t kagent_last_refused(void) { return -1; }
extern "C" int64_t kagent_handler_intact(void) { return 1; }
"""


def test_a_filter_library_planted_in_the_build_cache_is_not_used(tmp_path, monkeypatch):
    """The build cache is writable by every candidate and keyed by a hash anyone can compute: a
    library planted there under the filter's name must not replace the filter for later
    evaluations (the fork server builds its own, privately)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("KAGENT_CACHE_DIR", str(cache))
    real = cpp._compile(confine.REFUSE_PROCESSES_CPP, tmp_path)  # the name the filter would have in the cache
    fake = cpp._compile(FAKE_FILTER, tmp_path)
    (cache / "cpp").mkdir(parents=True)
    (cache / "cpp" / real.name).write_bytes(fake.read_bytes())
    marker = tmp_path / "ran-fork"
    with Sandbox("cpu", root=tmp_path / "sandbox") as sandbox:
        verdict = run(sandbox, spawn_candidate("fork", marker), tmp_path)
    assert (verdict.status, verdict.reason) == ("rejected", "forbidden_call"), f"{verdict.status} ({verdict.reason}): {verdict.message}"
    assert not marker.exists()


# -- reaching into libtorch -------------------------------------------------------------------

REACH = '''import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
HEADERS
#include <cstdint>

extern "C" void relu(const float* x, float* y, int64_t n) {
    BODY
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
""")


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.relu(x, y, x.numel())
        return y
'''
# Each computes (or could compute) with PyTorch where the op trace does not look.
REACHES = {
    "aten_header": ("#include <ATen/ATen.h>", "", "forbidden_import"),
    "torch_namespace": ("", "// torch::relu would do", "forbidden_import"),
    "dlopen": ("#include <dlfcn.h>", "", "forbidden_import"),
    "dlsym": ("extern \"C\" void* dlsym(void*, const char*);",
              "void* f = dlsym((void*)0, \"_ZN2at4_ops4relu4callERKNS_6TensorE\"); (void)f;", "forbidden_call"),
    "proc_maps": ("#include <cstdio>", "FILE* m = fopen(\"/proc/self/\" \"maps\", \"r\"); if (m) fclose(m);", "forbidden_call"),
    "python_api": ("extern \"C\" void* PyImport_ImportModule(const char*);",
                   "if (n < 0) PyImport_ImportModule(\"torch\");", "forbidden_call"),
    # Spelled by macros: only the built library's imported symbols show it.
    "dlsym_by_macro": ("#define LOOKUP(a, b) a##b\nextern \"C\" void* LOOKUP(dl, sym)(void*, const char*);",
                       "if (n < 0) LOOKUP(dl, sym)((void*)0, \"x\");", "forbidden_call"),
    "libtorch_symbol_by_macro": (
        "#define NS(a, b) a##b\nnamespace NS(a, t) { struct Tensor; Tensor& NS(re, lu_)(Tensor&); }",
        "if (n < 0) NS(a, t)::NS(re, lu_)(*(NS(a, t)::Tensor*)y);", "forbidden_import"),
}


@pytest.mark.parametrize("how", list(REACHES))
def test_cpp_reaching_into_libtorch_is_rejected(cpu_sandbox, tmp_path, how):
    """libtorch's headers and namespaces, run-time symbol lookup, the process's memory map, the
    Python C API: in the source, or in the built library's imported symbols."""
    headers, body, reason = REACHES[how]
    verdict = run(cpu_sandbox, REACH.replace("HEADERS", headers).replace("BODY", body), tmp_path)
    assert (verdict.status, verdict.reason) == ("rejected", reason), f"{verdict.status} ({verdict.reason}): {verdict.message}"
    where = "(imported by the built library)" if how.endswith("_by_macro") else "(kernel.cpp line"
    assert where in verdict.message, verdict.message


def test_a_refused_library_is_rejected_even_when_the_candidate_catches_the_error(cpu_sandbox, tmp_path):
    source = REACH.replace("HEADERS", "#include <ATen/ATen.h>").replace("BODY", "").replace(
        "lib = load_cpp(", "try:\n    lib = load_cpp(").replace('""")\n', '""")\nexcept Exception:\n    lib = None\n')
    verdict = run(cpu_sandbox, source, tmp_path)
    assert (verdict.status, verdict.reason) == ("rejected", "forbidden_import"), f"{verdict.status} ({verdict.reason}): {verdict.message}"


# -- how isolated, said by every verdict and once by the CLI ----------------------------------


def kagent_eval(*extra_env: tuple[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(extra_env)
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", "eval", "tasks/01_relu.py",
                           "tests/candidates/01_relu/cpp.py", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_eval_reports_isolation_and_warns_once_without_namespaces():
    """Where namespaces are refused (here: turned off, as an operator would), the verdict says
    `isolation: none` and the CLI says so in one stderr line; stdout stays one JSON object."""
    plain = kagent_eval((NAMESPACES_ENV, "0"))
    assert plain.returncode == 0, plain.stderr[-2000:]
    [line] = plain.stdout.splitlines()
    assert json.loads(line)["isolation"] == "none"
    warnings = [w for w in plain.stderr.splitlines() if "isolation: none" in w]
    assert len(warnings) == 1 and len(plain.stderr.strip().splitlines()) == 1, plain.stderr
    if not namespace_prefix():
        return  # this machine refuses namespaces: that is the case above
    isolated = kagent_eval()
    assert isolated.returncode == 0, isolated.stderr[-2000:]
    assert json.loads(isolated.stdout)["isolation"] == "namespaces"
    assert isolated.stderr.strip() == "", isolated.stderr
