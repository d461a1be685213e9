"""C++ CPU kernels: plain C++ built by the system compiler into a shared library and called
through ctypes on tensor data pointers.

`torch.utils.cpp_extension.load_inline` takes ~30 s per build on 2 cores because it compiles
torch's headers; a plain `extern "C"` file builds in well under a second. Builds are cached by
the hash of the source, the flags and the compiler, so re-evaluating a candidate costs nothing.

The candidate contract (also in prompts/backend_cpp.md):

    from kagent.sandbox.backends.cpp import load_cpp

    lib = load_cpp(r'''
    #include <cstdint>
    extern "C" void relu(const float* x, float* y, int64_t n) {
        #pragma omp parallel for simd
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
    }
    ''')

    class ModelNew(torch.nn.Module):
        def forward(self, x):
            x = x.contiguous()
            y = torch.empty_like(x)
            lib.relu(x, y, x.numel())
            return y

Arguments map as: contiguous CPU tensor -> pointer to its data, Python int -> int64_t,
Python float -> double, bool -> int64_t. Functions return void.

The kernel runs inside the evaluation's process, where libtorch and the interpreter are loaded:
a source that reaches for them (their headers or namespaces, run-time symbol lookup, the
process's memory map, the Python C API) could compute with PyTorch where the harness's op
trace does not see it, and is refused before and after the build (`ForbiddenNative`). Once
the backend is prepared, the process can no longer create processes (confine.ProcessFilter, a
seccomp filter): builds then go to a builder process forked just before.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from kagent.sandbox import confine, launches
from kagent.sandbox.backends import Backend
from kagent.errors import CompileError

COMPILER = os.environ.get("CXX", "g++")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-w"]
BUILD_TIMEOUT_S = 120
# "0" leaves process creation allowed in the evaluation's process (debugging; the sandbox then
# relies on the audit hook for Python and on its process-tree sweep for native code).
SECCOMP_ENV = "KAGENT_SANDBOX_SECCOMP"

# What a C++ kernel never needs, in its source: (pattern, reason, what it is). libtorch and
# the interpreter are loaded in the process the kernel runs in; reaching them from C++ computes
# where the ATen op trace does not look.
FORBIDDEN_SOURCE = [
    (re.compile(r"#\s*include\s*[<\"]\s*(ATen|torch|c10|caffe2|pybind11|Python)\b[^>\"\n]*[>\"]?"), "forbidden_import",
     "a libtorch or Python header"),
    (re.compile(r"#\s*include\s*[<\"]\s*(dlfcn|link)\.h[>\"]?"), "forbidden_import", "the dynamic loader's header"),
    (re.compile(r"#\s*pragma\s+comment\b"), "forbidden_import", "a request to link a library"),
    (re.compile(r"\b(at|c10|torch|caffe2|pybind11)\s*::"), "forbidden_import", "a libtorch namespace"),
    (re.compile(r"\b(dlopen|dlmopen|dlsym|dlvsym|dladdr1?|dlinfo|dl_iterate_phdr|__libc_dl\w+|RTLD_\w+)\b"),
     "forbidden_call", "run-time lookup of libraries or symbols"),
    (re.compile(r"/proc/(self|thread-self|\d+)/(maps|smaps|map_files|mem|exe)\b"), "forbidden_call",
     "the process's memory or its map"),
    (re.compile(r"\b_?Py[A-Z][A-Za-z]*_\w+"), "forbidden_call", "the Python C API"),
]
# The same, in the built library's imported symbols (nm -D): whatever macros spelled them.
FORBIDDEN_SYMBOLS = [
    (re.compile(r"^(dlopen|dlmopen|dlsym|dlvsym|dladdr1?|dlinfo|dl_iterate_phdr|__libc_dl\w+)(@.*)?$"), "forbidden_call",
     "run-time lookup of libraries or symbols"),
    (re.compile(r"^_ZN[KVRO]*(2at|3c10|5torch|6caffe2)"), "forbidden_import", "a libtorch function"),
    (re.compile(r"^_?Py[A-Z][A-Za-z]*_\w+"), "forbidden_call", "the Python C API"),
]


class ForbiddenNative(Exception):
    """A C++ source or library that reaches into libtorch or the interpreter. `reason` is the
    verdict's (forbidden_import or forbidden_call)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


_refusals: list[tuple[str, str]] = []  # what load_cpp refused in this process, caught or not


def _refuse(reason: str, message: str) -> ForbiddenNative:
    _refusals.append((reason, message))
    return ForbiddenNative(reason, message)


def scan_source(source: str) -> tuple[str, str] | None:
    """(reason, detail) for the first thing in a C++ source that reaches into libtorch or the
    interpreter, or None. Comments are scanned too: no honest kernel needs these words; and
    adjacent string literals are joined first, as the compiler joins them."""
    source = re.sub(r'"\s*"', "", source)
    for pattern, reason, what in FORBIDDEN_SOURCE:
        found = pattern.search(source)
        if found:
            line = source.count("\n", 0, found.start()) + 1
            return reason, f"{found.group(0).strip()} (kernel.cpp line {line}): {what}, which C++ kernels may not reach"
    return None


def scan_symbols(library: Path) -> tuple[str, str] | None:
    """(reason, detail) for the first symbol the built library imports that reaches into
    libtorch or the interpreter, or None. Raises CompileError where the symbols cannot be read."""
    nm = shutil.which("nm")
    if nm is None:
        raise CompileError("cannot check the built library: nm (binutils) not found")
    listed = subprocess.run([nm, "-D", "--undefined-only", "--format=posix", str(library)],
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if listed.returncode != 0:
        raise CompileError(f"cannot check the built library: {listed.stderr.strip()[:200]}")
    for symbol in (line.split()[0] for line in listed.stdout.splitlines() if line.strip()):
        for pattern, reason, what in FORBIDDEN_SYMBOLS:
            if pattern.search(symbol):
                return reason, f"{symbol} (imported by the built library): {what}, which C++ kernels may not reach"
    return None


def cache_dir() -> Path:
    """Where built C++ libraries are cached: $KAGENT_CACHE_DIR/cpp, else ~/.cache/kagent/cpp."""
    root = os.environ.get("KAGENT_CACHE_DIR") or os.path.join(Path.home(), ".cache", "kagent")
    return Path(root) / "cpp"


@cache
def _toolchain_id() -> str:
    """What, besides the source, decides the binary: compiler version and the host CPU
    (for -march=native)."""
    version = subprocess.run([COMPILER, "--version"], capture_output=True, text=True).stdout
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((line for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return "\n".join([version, platform.machine(), cpu, " ".join(FLAGS)])


def build(source: str) -> Path:
    """Compile `source` to a shared library, or return the cached one, after checking it
    (`scan_source`, `scan_symbols`). Raises CompileError, ForbiddenNative."""
    if _builder is not None:
        return _builder.build(source)
    found = scan_source(source)
    if found:
        raise _refuse(*found)
    target = _compile(source)
    found = scan_symbols(target)
    if found:
        raise _refuse(*found)
    return target


def _compile(source: str, directory: str | Path | None = None) -> Path:
    """The shared library built from `source`, in `directory` (default: the build cache, where
    it is found again by its hash). Raises CompileError."""
    digest = hashlib.sha256((_toolchain_id() + "\0" + source).encode()).hexdigest()[:24]
    target = Path(directory or cache_dir()) / f"{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "kernel.cpp"
        src.write_text(source)
        out = Path(tmp) / "kernel.so"
        try:
            proc = subprocess.run(
                [COMPILER, *FLAGS, str(src), "-o", str(out)],
                capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise CompileError(f"{COMPILER} took longer than {BUILD_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            log = proc.stderr.replace(str(src), "kernel.cpp")
            first = next((line for line in log.splitlines() if "error" in line), log.strip()[:200])
            raise CompileError(f"C++ compile failed: {first}", log=log)
        os.replace(out, target)  # atomic: a concurrent build of the same source is harmless
    return target


def _to_c(arg):
    import torch

    if isinstance(arg, torch.Tensor):
        if arg.device.type != "cpu":
            raise ValueError(f"cpp kernels take CPU tensors, got one on {arg.device}")
        if not arg.is_contiguous():
            raise ValueError("cpp kernels take contiguous tensors: call .contiguous() first")
        return ctypes.c_void_p(arg.data_ptr())
    if isinstance(arg, bool):
        return ctypes.c_int64(int(arg))
    if isinstance(arg, int):
        return ctypes.c_int64(arg)
    if isinstance(arg, float):
        return ctypes.c_double(arg)
    raise TypeError(f"cpp kernels take tensors, ints and floats, not {type(arg).__name__}")


class CppFunction:
    """One extern "C" function of a built library; calling it converts tensors to pointers, ints to
    int64 and floats to double, and counts the launch."""

    def __init__(self, name: str, fn):
        self.name = name
        self._fn = fn
        self._fn.restype = None

    def __call__(self, *args) -> None:
        with launches.launching(self.name):
            self._fn(*[_to_c(a) for a in args])


class CppLibrary:
    """A built C++ library loaded with ctypes (what `load_cpp` returns): `lib.name` is its extern "C"
    function `name`; AttributeError for one it lacks."""

    def __init__(self, path: Path):
        self.path = path
        self._lib = ctypes.CDLL(str(path))

    def __getattr__(self, name: str) -> CppFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return CppFunction(name, getattr(self._lib, name))
        except AttributeError:
            raise AttributeError(
                f"the C++ library has no function {name!r}: is it declared extern \"C\"?"
            ) from None


def load_cpp(source: str) -> CppLibrary:
    """Build (or fetch from cache) and load a C++ source whose entry points are extern "C".
    Raises CompileError, ForbiddenNative."""
    return CppLibrary(build(source))


class BuildRequest(BaseModel):
    """To the builder: one C++ source."""

    source: str


class BuildReply(BaseModel):
    """From the builder: the library's path, or why there is none (`reason` set where the
    source was refused, unset for a compile error)."""

    path: str | None = None
    error: str = ""
    reason: str | None = None
    log: str = ""


class _Builder:
    """Runs `build` for a process that may no longer create processes: a child forked before
    the filter went in, serving one JSON line per request on a pair of pipes. It dies with its
    parent and cannot be ptraced by it (not dumpable, and the filter refuses ptrace)."""

    def __init__(self):
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(requests_w)
                os.close(replies_r)
                confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
                confine.prctl(confine.PR_SET_DUMPABLE, 0)
                _serve(requests_r, replies_w)
            finally:
                os._exit(0)
        os.close(requests_r)
        os.close(replies_w)
        self.pid = pid
        self._requests = os.fdopen(requests_w, "w")
        self._replies = os.fdopen(replies_r, "r")

    def build(self, source: str) -> Path:
        self._requests.write(BuildRequest(source=source).model_dump_json() + "\n")
        self._requests.flush()
        line = self._replies.readline()
        if not line:
            raise CompileError("the C++ builder process is gone")
        reply = BuildReply.model_validate_json(line)
        if reply.path is not None:
            return Path(reply.path)
        if reply.reason is not None:
            raise _refuse(reply.reason, reply.error)
        raise CompileError(reply.error, log=reply.log)


def _serve(requests_fd: int, replies_fd: int) -> None:
    """The builder's loop: until its parent closes the pipe."""
    with os.fdopen(requests_fd, "r") as requests, os.fdopen(replies_fd, "w") as replies:
        for line in requests:
            try:
                reply = BuildReply(path=str(build(BuildRequest.model_validate_json(line).source)))
            except ForbiddenNative as err:
                reply = BuildReply(error=str(err), reason=err.reason)
            except CompileError as err:
                reply = BuildReply(error=str(err), log=err.log)
            except Exception as err:  # the builder must answer whatever happens
                reply = BuildReply(error=f"the C++ build failed: {type(err).__name__}: {err}")
            replies.write(reply.model_dump_json() + "\n")
            replies.flush()


_builder: _Builder | None = None
_filter: confine.ProcessFilter | None = None


class CppBackend(Backend):
    """C++ kernels on a CPU, built with `load_cpp`; process creation from native code is refused while
    the candidate runs."""

    name = "cpp"
    summary = "C++17 with OpenMP on the CPU, built with load_cpp and called through ctypes"
    guide = "backend_cpp"
    markers = ("load_cpp",)
    devices = ("cpu",)
    detect_order = 0
    default_rank = 1
    candidate_imports = {"kagent.sandbox.backends.cpp": frozenset({"load_cpp"})}

    def prepare(self, device: str) -> list[str]:
        """Refuse process creation in this process from here on (the candidate is imported
        next), with a builder forked first for its builds. A note where that is not possible."""
        global _builder, _filter
        if os.environ.get(SECCOMP_ENV) == "0":
            return [f"process creation from native code is not refused ({SECCOMP_ENV}=0)"]
        if confine.filter_library is None:
            return [f"process creation from native code is not refused here: {confine.filter_missing}"]
        try:
            _builder = _Builder()
            _filter = confine.ProcessFilter()
        except OSError as err:
            return [f"process creation from native code is not refused here: {err}"]
        return []

    def classify(self, err: BaseException, device: str) -> tuple[str, str] | None:
        """A refused native call (ForbiddenNative) is `rejected` with its reason; anything else is not
        this backend's to classify (None)."""
        if isinstance(err, ForbiddenNative):
            return "rejected", err.reason
        return None

    def violations(self) -> list[tuple[str, str]]:
        """What the candidate's native code was refused so far: (reason, detail) pairs."""
        found = list(_refusals)
        refused = _filter.refused() if _filter is not None else None
        if refused:
            found.append(("forbidden_call", refused))
        return found
