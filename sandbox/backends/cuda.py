"""CUDA C++ candidates in KernelBench style: `torch.utils.cpp_extension.load_inline` with
`cuda_sources`. On a GPU they are built and run for real. Without one, the CPU torch wheel
cannot link CUDA code, so the device code is compile-checked with nvcc (cuda_static.py) and the
verdict says it was not run."""

from __future__ import annotations

from kagent.sandbox import launches
from kagent.sandbox.backends import Backend, StaticReport
from kagent.sandbox.backends.cuda_static import compile_check
from kagent.sandbox.models import KernelResourceUse


class NotRunnable(Exception):
    """Raised in place of building a CUDA extension where there is no GPU."""


class CudaBackend(Backend):
    """CUDA kernels built with torch's load_inline; without a GPU the sources are compile-checked with
    nvcc and the candidate is `not_run`."""

    name = "cuda"
    summary = "CUDA C++ kernels built with torch.utils.cpp_extension.load_inline"
    guide = "backend_cuda"
    markers = ("load_inline", "cuda_sources", "__global__")
    detect_order = 1

    def __init__(self):
        self.sources: list[str] = []

    def prepare(self, device: str) -> list[str]:
        """Wrap load_inline to collect the CUDA sources and count launches (refusing to build without a
        GPU); returns notes for the verdict."""
        import torch.utils.cpp_extension as cpp_extension

        real_load_inline = cpp_extension.load_inline
        sources = self.sources

        def load_inline(*args, **kwargs):
            cuda_sources = kwargs.get("cuda_sources", args[2] if len(args) > 2 else [])
            sources.extend([cuda_sources] if isinstance(cuda_sources, str) else cuda_sources)
            if device != "cuda":
                raise NotRunnable("no GPU: CUDA source compile-checked only")
            module = real_load_inline(*args, **kwargs)
            return _LaunchCounted(module)

        cpp_extension.load_inline = load_inline
        return [] if device == "cuda" else ["no GPU: the CUDA kernel was compile-checked with nvcc, not run"]

    def runs_on(self, device: str) -> bool:
        """Whether candidates of this backend run on `device` (only on cuda)."""
        return device == "cuda"

    def classify(self, err: BaseException, device: str) -> tuple[str, str] | None:
        """Map a load_inline or CUDA failure to (status, reason): not_run/no_gpu,
        compile_error/compile_failed, runtime_error/cuda_fault; None for others."""
        if isinstance(err, NotRunnable):
            return "not_run", "no_gpu"
        if "Error building extension" in str(err):
            return "compile_error", "compile_failed"
        if "CUDA error" in str(err) or "illegal memory access" in str(err):
            return "runtime_error", "cuda_fault"
        return None

    def static_report(self, device: str) -> StaticReport | None:
        """The nvcc compile check of the collected sources with each kernel's registers, shared memory
        and spills."""
        if not self.sources:
            return StaticReport(ok=True, message="no load_inline CUDA source was found")
        check = compile_check("\n".join(self.sources))
        resources = [
            KernelResourceUse(
                kernel=k.kernel, target=k.target, registers=k.registers,
                shared_memory_bytes=k.shared_memory_bytes, spill_stores_bytes=k.spill_stores_bytes,
                spill_loads_bytes=k.spill_loads_bytes,
            )
            for k in check.kernels
        ]
        return StaticReport(ok=check.ok, message=check.message, log=check.log, resources=resources)


class _LaunchCounted:
    """The built extension, with every exported function recorded as a kernel launch."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name: str):
        fn = getattr(self._module, name)
        if not callable(fn):
            return fn

        def launch(*args, **kwargs):
            with launches.launching(name):
                return fn(*args, **kwargs)

        return launch
