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
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from kagent.sandbox import launches
from kagent.sandbox.backends import Backend
from kagent.sandbox.errors import CompileError

COMPILER = os.environ.get("CXX", "g++")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-w"]
BUILD_TIMEOUT_S = 120


def cache_dir() -> Path:
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
    """Compile `source` to a shared library, or return the cached one. Raises CompileError."""
    digest = hashlib.sha256((_toolchain_id() + "\0" + source).encode()).hexdigest()[:24]
    target = cache_dir() / f"{digest}.so"
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
    def __init__(self, name: str, fn):
        self.name = name
        self._fn = fn
        self._fn.restype = None

    def __call__(self, *args) -> None:
        with launches.launching(self.name):
            self._fn(*[_to_c(a) for a in args])


class CppLibrary:
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
    """Build (or fetch from cache) and load a C++ source whose entry points are extern "C"."""
    return CppLibrary(build(source))


class CppBackend(Backend):
    name = "cpp"
    markers = ("load_cpp",)
    devices = ("cpu",)
