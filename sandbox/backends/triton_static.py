"""Ahead-of-time compilation of Triton kernels for an NVIDIA target, without a GPU.

Triton lowers a kernel to PTX entirely on the host; only loading the cubin needs a driver.
So on a CPU-only box we can still compile for sm_90 and ask `ptxas -v` what the kernel would
cost on an H100 (registers, shared memory, spills): static hardware feedback for a judge,
even though the kernel itself only ran under TRITON_INTERPRET=1.

The compile runs in a child process with TRITON_INTERPRET unset, because under the
interpreter every @triton.jit object -- the kernel, its helpers, and triton's own stdlib such
as tl.zeros / tl.sum -- is an InterpretedFunction that the code generator cannot lower (and
calling one during codegen permanently patches triton.language in this process). The child
re-imports the kernel's module, so kernels must be module-level functions in a file. A child
also gives a real timeout and survives LLVM/MLIR aborts.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Iterable

from pydantic import BaseModel


class KernelResources(BaseModel):
    """One Triton kernel compiled for a GPU target: registers per thread, shared memory and spills in
    bytes, warps, stages and the constexpr specialisation; error when it did not compile."""

    kernel: str               # the @triton.jit function's name
    target: str               # the ptxas --gpu-name used, e.g. "sm_90a"
    registers: int | None     # per thread, from ptxas -v
    shared_memory_bytes: int | None
    spill_stores_bytes: int | None
    spill_loads_bytes: int | None
    num_warps: int
    num_stages: int
    constexprs: dict[str, int | float | bool | str]   # the specialisation compiled
    error: str | None = None  # one line when compilation failed (the others are then None)


def _unwrap(fn):
    """Peel triton.autotune / triton.heuristics wrappers down to the jit'd object."""
    from triton.runtime.autotuner import Autotuner, Heuristics
    while isinstance(fn, (Autotuner, Heuristics)):
        fn = fn.fn
    return fn


def _specialise(fn, args: tuple, kwargs: dict):
    """Bind one launch's arguments the way triton's JIT would: returns
    [(param, value, type, attr)] and the leftover launch options (num_warps, ...)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    from triton.runtime.autotuner import Autotuner, Heuristics
    from triton.runtime.jit import JITFunction, create_function_from_signature
    kwargs = dict(kwargs)
    # Replay what the wrappers add to kwargs, outermost first (that is their call order).
    while isinstance(fn, (Autotuner, Heuristics)):
        if isinstance(fn, Heuristics):
            for name, heur in fn.values.items():
                kwargs[name] = heur({**dict(zip(fn.arg_names, args)), **kwargs})
        else:
            config = getattr(fn, "best_config", None) or (fn.configs[0] if len(fn.configs) == 1 else None)
            if config is None:
                raise ValueError("autotuned kernel has several configs and none chosen yet; launch it first")
            kwargs.update(config.all_kwargs())
        fn = fn.fn
    # An InterpretedFunction keeps the python function and the jit(...) options: rebuild the
    # JITFunction it would have been, and let triton's own binder apply the specialisation
    # rules (annotations, do_not_specialize, defaults, ints == 1 and None become constexpr).
    jf = fn if isinstance(fn, JITFunction) else JITFunction(fn.fn, **fn.kwargs)
    backend = make_backend(GPUTarget("cuda", 90, 32))
    params, spec, options = create_function_from_signature(jf.signature, jf.params, backend)(*args, **kwargs)
    return [(name, value, ty, attr) for (name, value), (ty, attr) in zip(params.items(), spec)], options


def describe_launch(fn, args: tuple, kwargs: dict) -> tuple[dict[str, str], dict, int, int]:
    """From one real launch `fn[grid](*args, **kwargs)` (fn is the JITFunction, or the object triton.jit returns
    under TRITON_INTERPRET=1), derive the signature (param name -> triton type string like '*fp32', 'i32', 'i64',
    'fp32'), the constexpr values, num_warps and num_stages (from kwargs, defaulting to 4 and 3), so
    compile_for_gpu can reproduce that specialisation."""
    bound, options = _specialise(fn, args, kwargs)
    signature = {name: ty for name, _, ty, _ in bound if ty != "constexpr"}
    constexprs = {name: value for name, value, ty, _ in bound if ty == "constexpr"}
    return signature, constexprs, int(options.get("num_warps", 4)), int(options.get("num_stages", 3))


def divisible_params(fn, args: tuple, kwargs: dict) -> list[str]:
    """Params of that launch triton would mark 16-divisible (pointer 16-byte aligned, int % 16 == 0).
    This changes codegen (vectorised, unmasked-width loads), so pass it to compile_for_gpu."""
    return [name for name, _, ty, attr in _specialise(fn, args, kwargs)[0] if ty != "constexpr" and attr == "D"]


def _ptxas(arch: int) -> str | None:
    """The ptxas triton itself would use (its bundled one) for this arch; else the one on PATH."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        return get_ptxas(arch).path
    except Exception:
        return shutil.which("ptxas")


def _parse_ptxas(log: str, kernel_name: str) -> tuple[int, int, int, int]:
    """ptxas -v prints, per entry function, '... S bytes spill stores, L bytes spill loads' and
    'Used R registers, ... M bytes smem, ...'. Read only our kernel's block."""
    start = log.find(f"Compiling entry function '{kernel_name}'")
    block = log[start:] if start >= 0 else log
    regs = re.search(r"Used (\d+) registers", block)
    if regs is None:
        raise RuntimeError("no 'Used N registers' line in ptxas -v output")
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", block)
    smem = re.search(r"(\d+) bytes smem", block)
    return (int(regs.group(1)), int(smem.group(1)) if smem else 0,
            int(spills.group(1)) if spills else 0, int(spills.group(2)) if spills else 0)


def _encode(value):
    """Constexprs cross to the child as JSON; tl.dtype values (e.g. DTYPE=tl.float16) by name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    from triton.language import dtype
    if type(value) is dtype:   # not its pointer/block subclasses
        return {"dtype": str(value)}
    raise TypeError(f"unsupported constexpr value {value!r}")


def compile_for_gpu(fn, signature: dict[str, str], constexprs: dict, num_warps: int = 4, num_stages: int = 3,
                    arch: int = 90, timeout_s: float = 60,
                    divisible_by_16: Iterable[str] | None = None) -> KernelResources:
    """`divisible_by_16`: param names to specialise as 16-divisible (see divisible_params); by default
    every pointer param, which is what triton picks for any freshly allocated torch tensor."""
    pyfn = getattr(_unwrap(fn), "fn", fn)   # JITFunction and InterpretedFunction both keep it in .fn
    name = getattr(pyfn, "__name__", str(fn))
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"   # triton emits '.target sm_90a' for Hopper
    shown = {k: v if isinstance(v, (int, float, bool, str)) else str(v) for k, v in constexprs.items()}
    base = dict(kernel=name, target=gpu, num_warps=num_warps, num_stages=num_stages, constexprs=shown)

    def failed(msg: str) -> KernelResources:
        line = " ".join(str(msg).split())[:500]
        return KernelResources(**base, registers=None, shared_memory_bytes=None, spill_stores_bytes=None,
                               spill_loads_bytes=None, error=line or "compilation failed")

    deadline = time.monotonic() + timeout_s
    if divisible_by_16 is None:
        divisible_by_16 = [k for k, ty in signature.items() if ty.startswith("*")]
    try:
        if "<locals>" in pyfn.__qualname__:
            raise TypeError("kernel must be a module-level function to be compiled ahead of time")
        request = dict(file=pyfn.__code__.co_filename, module=pyfn.__module__, qualname=pyfn.__qualname__,
                       signature=signature, constexprs={k: _encode(v) for k, v in constexprs.items()},
                       divisible=list(divisible_by_16), num_warps=num_warps, num_stages=num_stages, arch=arch,
                       sys_path=[p for p in sys.path if isinstance(p, str)])
    except Exception as e:
        return failed(f"{type(e).__name__}: {e}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        request["out"] = out
        try:
            # -P: this file's folder must not shadow packages (it holds a triton.py)
            child = subprocess.run([sys.executable, "-P", os.path.abspath(__file__)], input=json.dumps(request),
                                   capture_output=True, text=True, env=env, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return failed(f"triton compile timed out after {timeout_s:g}s")
        if not os.path.exists(out):   # crashed before reporting (e.g. an LLVM abort)
            tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
            return failed(f"triton compile crashed (exit {child.returncode}): {tail}")
        with open(out) as f:
            result = json.load(f)
        if "error" in result:
            return failed(result["error"])

        # Triton already ran ptxas to build the cubin but discards its -v log, so run it again.
        ptxas = _ptxas(arch)
        if ptxas is None:
            return failed("ptxas not found")
        ptx_path = os.path.join(tmp, "kernel.ptx")
        with open(ptx_path, "w") as f:
            f.write(result["ptx"])
        # same flags triton uses for the real cubin, so the numbers match a real launch
        cmd = [ptxas, "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu}", ptx_path, "-o", ptx_path + ".o"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return failed(f"ptxas timed out after {timeout_s:g}s")
        except OSError as e:
            return failed(f"ptxas could not run: {e}")
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        return failed(f"ptxas failed: {_ptxas_errors(log) or log.strip()[-300:]}")
    try:
        regs, smem, spill_st, spill_ld = _parse_ptxas(log, result["name"])
    except RuntimeError as e:
        return failed(str(e))
    # ptxas -v counts only static smem; triton allocates its buffers dynamically and records the size.
    return KernelResources(**base, registers=regs, shared_memory_bytes=max(smem, result["shared"]),
                           spill_stores_bytes=spill_st, spill_loads_bytes=spill_ld)


def _child(request: dict) -> dict:
    """In the child: import the kernel's module without the interpreter and compile to PTX."""
    import importlib.util
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend
    sys.path[:] = request["sys_path"]
    # '__main__' would re-run the caller's script guard, so load that file under another name
    modname = "_triton_static_kernel" if request["module"] == "__main__" else request["module"]
    spec = importlib.util.spec_from_file_location(modname, request["file"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    spec.loader.exec_module(module)
    fn = module
    for part in request["qualname"].split("."):
        fn = getattr(fn, part)
    jf = _unwrap(fn)
    given = set(request["signature"]) | set(request["constexprs"])
    if given != set(jf.arg_names):
        raise ValueError(f"signature and constexprs must name each parameter once: missing "
                         f"{sorted(set(jf.arg_names) - given)}, unknown {sorted(given - set(jf.arg_names))}")
    constexprs = {k: tl.dtype(v["dtype"]) if isinstance(v, dict) else v for k, v in request["constexprs"].items()}
    target = GPUTarget("cuda", request["arch"], 32)
    attr = make_backend(target).parse_attr("D")
    attrs = {(jf.arg_names.index(k),): attr for k in request["divisible"]}
    signature = {**request["signature"], **{k: "constexpr" for k in constexprs}}  # every param must be typed
    src = triton.compiler.ASTSource(fn=jf, signature=signature, constexprs=constexprs, attrs=attrs)
    kernel = triton.compile(src, target=target,
                            options={"num_warps": request["num_warps"], "num_stages": request["num_stages"]})
    return {"name": kernel.metadata.name, "shared": kernel.metadata.shared or 0, "ptx": kernel.asm["ptx"]}


def _one_line_error(e: BaseException) -> str:
    from triton.compiler.errors import CompilationError
    if isinstance(e, CompilationError):
        # Its str() is a multi-line source excerpt. An error inside a helper arrives wrapped
        # in the caller's error, so descend to the innermost one for the real place and cause.
        while not e.error_message and isinstance(e.__cause__, CompilationError):
            e = e.__cause__
        func = re.match(r"\s*def\s+(\w+)", e.src or "")
        where = f" in {func.group(1) if func else 'kernel'}" + (
            f" (line {e.node.lineno}, counting its def line as 1)" if hasattr(e.node, "lineno") else "")
        msg = (e.error_message or repr(e.__cause__ or "")).strip().splitlines() or [""]
        return f"{type(e).__name__}{where}: {msg[-1]}"
    if errors := _ptxas_errors(str(e)):   # triton's PTXASError carries the whole ptxas log
        return f"{type(e).__name__}: ptxas rejected the PTX: {errors}"
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


def _ptxas_errors(log: str) -> str:
    """'ptxas file.ptx, line 35; error   : Unknown modifier' lines -> their messages, deduplicated."""
    found = re.findall(r"^ptxas\b.*?\b(?:error|fatal)\s*:\s*(.*)$", log, re.M)
    return "; ".join(dict.fromkeys(m.strip() for m in found))


if __name__ == "__main__":
    req = json.load(sys.stdin)
    try:
        res = _child(req)
    except BaseException as err:  # report everything, even SystemExit from the kernel's module
        res = {"error": _one_line_error(err)}
    with open(req["out"], "w") as fh:
        json.dump(res, fh)
