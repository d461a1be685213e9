"""Triton candidates: `@triton.jit` kernels launched as `kernel[grid](...)`.

On a GPU they compile and run for real. On a CPU they run under the Triton interpreter
(TRITON_INTERPRET=1, set by the executor before triton is imported), which checks
correctness only: interpreter timings mean nothing, bf16 arithmetic is silently upcast and
libdevice calls fail, so the verdict says so instead of reporting a bogus mismatch. Where there
is no GPU, every launched kernel is also compiled ahead of time for sm_90 and ptxas reports its
registers, shared memory and spills.

This module must not import triton at import time: the parent process never needs it, and the
worker must set the interpreter flag first.
"""

from __future__ import annotations

import os

from kagent.sandbox import launches
from kagent.sandbox.backends import Backend, StaticReport
from kagent.sandbox.models import KernelResourceUse


class InterpreterUnsupported(Exception):
    """The kernel uses what the Triton interpreter cannot run (libdevice): not a wrong kernel."""


def _uses_libdevice(fn) -> bool:
    import inspect

    python_fn = getattr(fn, "fn", fn)  # JITFunction, InterpretedFunction and autotuners wrap it
    while hasattr(python_fn, "fn"):
        python_fn = python_fn.fn
    try:
        return "libdevice" in inspect.getsource(python_fn)
    except (OSError, TypeError):
        return False


class TritonBackend(Backend):
    """Triton kernels: run on a GPU, or under the Triton interpreter on a CPU (correctness only);
    launches are counted."""

    name = "triton"
    summary = "Triton kernels (@triton.jit) launched from ModelNew.forward"
    guide = "backend_triton"
    markers = ("triton.jit", "import triton")
    detect_order = 2  # cpp and cuda candidates may import triton-free torch helpers: checked first
    default_rank = 0

    def __init__(self):
        self.first_launches: dict[str, tuple] = {}  # kernel name -> (fn, args, kwargs)

    def prepare(self, device: str) -> list[str]:
        """Count every Triton launch (and record each kernel's first one for the static report);
        returns notes for the verdict. RuntimeError on a CPU without TRITON_INTERPRET=1."""
        if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("Triton on CPU needs TRITON_INTERPRET=1 before triton is imported")
        import triton.runtime.autotuner as autotuner
        import triton.runtime.jit as jit

        classes = [jit.JITFunction, autotuner.Autotuner, autotuner.Heuristics]
        if device == "cpu":
            from triton.runtime.interpreter import InterpretedFunction

            classes.append(InterpretedFunction)
        for cls in classes:
            cls.run = self._counted(cls.run, opaque=device == "cpu")
        if device == "cpu":
            return [
                "Triton interpreter on CPU: checked for correctness only; times are not a performance measurement",
            ]
        return []

    def _counted(self, run, opaque: bool):
        first = self.first_launches

        def counted_run(fn, *args, **kwargs):
            name = getattr(fn, "__name__", None) or getattr(getattr(fn, "fn", None), "__name__", "kernel")
            if not launches.in_opaque_launch() and name not in first:
                first[name] = (fn, args, dict(kwargs))
            with launches.launching(name, opaque=opaque):
                try:
                    return run(fn, *args, **kwargs)
                except Exception as err:
                    if opaque and _uses_libdevice(fn):  # opaque: the interpreter is running it
                        raise InterpreterUnsupported(
                            f"{name} calls libdevice, which the Triton interpreter cannot run") from err
                    raise

        counted_run.__wrapped__ = run
        return counted_run

    def timing_meaningful(self, device: str) -> bool:
        """Whether times measured on `device` measure performance (not under the CPU interpreter)."""
        return device == "cuda"

    def classify(self, err: BaseException, device: str) -> tuple[str, str] | None:
        """Map a Triton failure to (status, reason): compile_error, not_run (interpreter unsupported)
        or runtime_error (CUDA fault); None for others."""
        text = f"{type(err).__name__}: {err}"
        if type(err).__name__ == "CompilationError":
            return "compile_error", "compile_failed"
        if isinstance(err, InterpreterUnsupported):
            return "not_run", "interpreter_unsupported"
        if "illegal memory access" in text or "CUDA error" in text:
            return "runtime_error", "cuda_fault"
        return None

    def static_report(self, device: str) -> StaticReport | None:
        """Without a GPU: each launched kernel compiled ahead of time for a GPU target, with its
        resource use. None on a GPU."""
        if device == "cuda" or not self.first_launches:
            return None
        from kagent.sandbox.backends.triton_static import compile_for_gpu, describe_launch, divisible_params

        resources = []
        for name, (fn, args, kwargs) in self.first_launches.items():
            try:
                signature, constexprs, num_warps, num_stages = describe_launch(fn, args, kwargs)
                use = compile_for_gpu(fn, signature, constexprs, num_warps=num_warps, num_stages=num_stages,
                                      divisible_by_16=divisible_params(fn, args, kwargs))
                resources.append(KernelResourceUse(**use.model_dump(include=set(KernelResourceUse.model_fields))))
            except Exception as err:  # static feedback is best effort; never fails a verdict
                resources.append(KernelResourceUse(kernel=name, target="sm_90a", error=f"{type(err).__name__}: {err}"))
        return StaticReport(ok=True, message="compiled ahead of time for sm_90a", resources=resources)
