"""Cheap, GPU-free compile check for `cuda` candidates (KernelBench-style `load_inline` sources).

Compiling a `.cu` that includes <torch/extension.h> takes ~100 s, a plain `.cu` ~1 s. The
device code (kernels, `__device__` helpers, structs, constants, macros) rarely needs torch; only
the host wrapper and the pybind glue do. So we strip the torch parts and let nvcc + ptxas compile
what is left for a real target. That catches device-code errors and reports what the GPU would
see per kernel: registers, static shared memory, stack and spills (`ptxas -v`).

Limits, by design:
- Kernel templates instantiated only from the stripped wrapper (e.g. via AT_DISPATCH) produce no
  machine code: nvcc still parses them, but ptxas never sees them, so they get no resources.
  Writing explicit instantiations would mean re-deriving the template arguments; we don't.
- Dynamic shared memory (`extern __shared__`, sized at launch) is not in `bytes smem`.
- The host wrapper itself is not compiled: errors there only show up in the real build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pydantic import BaseModel


class CudaKernelResources(BaseModel):
    """One kernel's resource use as ptxas -v reports it: registers per thread, static shared memory,
    spill stores and loads and stack frame, in bytes."""

    kernel: str  # demangled signature when a demangler is available, else the mangled name
    target: str  # "sm_90"
    registers: int | None
    shared_memory_bytes: int | None  # static shared memory only
    spill_stores_bytes: int | None
    spill_loads_bytes: int | None
    stack_frame_bytes: int | None = None  # local arrays live here, spills too


class CudaCompileCheck(BaseModel):
    """The result of compiling CUDA device code with nvcc: accepted or not, one line, the whole log,
    each kernel's resources."""

    ok: bool  # nvcc accepted the device code (True when nvcc is missing: nothing failed)
    message: str  # one line: what was checked, or the first error line
    log: str  # full nvcc output, temp paths replaced by the file name
    kernels: list[CudaKernelResources]


# Anything that names these needs torch headers; the item mentioning it goes.
_TORCH_MARK = re.compile(
    r"\b(?:torch|at|c10|pybind11|py)::|\bTORCH_\w+|\bAT_[A-Z_]+|\bC10_\w+|\bPYBIND11_\w+"
    r"|\bnamespace\s+(?:torch|at|c10|pybind11)\b|\bpybind11\b|\bTensor\b"
)
_TORCH_INCLUDE = re.compile(r'#\s*include\s*[<"](?:torch|ATen|c10|pybind11|Python)\b')
_SCOPE_HEAD = re.compile(r'^(?:inline\s+)?namespace\b[\w:\s]*$|^extern\s+"C(?:\+\+)?"$')
# What torch/extension.h would have pulled in for the kernels; the #line keeps nvcc's line
# numbers equal to the candidate's own.
_PRELUDE = "".join(f"#include <{h}>\n" for h in (
    "cuda_runtime.h", "cstdint", "cmath", "cfloat", "climits", "limits", "algorithm", "type_traits"
)) + '#line 1 "kernel.cu"\n'
# The flags torch.utils.cpp_extension always passes, so half-precision operator errors etc. match.
NVCC_FLAGS = [
    "-std=c++20", "--expt-relaxed-constexpr", "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
]


def _top_level_items(src: str) -> list[tuple[str, str, str]]:
    """Split `src` into top-level items: (kind, text, code) with kind "pp" (a preprocessor line),
    "item" (a declaration or definition), "open"/"close" (a namespace or extern "C" scope, whose
    contents are items of their own) or "space". `code` is `text` with comments blanked, so a
    mention of torch in a comment doesn't count."""
    items: list[tuple[str, str, str]] = []
    text: list[str] = []
    code: list[str] = []
    depth, scopes, i, n = 0, 0, 0, len(src)

    def flush(kind: str = "item") -> None:
        if text:
            items.append((kind, "".join(text), "".join(code)))
            text.clear()
            code.clear()

    def take(end: int, blank: bool = False) -> None:
        nonlocal i
        chunk = src[i:end]
        text.append(chunk)
        code.append(re.sub(r"[^\n]", " ", chunk) if blank else chunk)
        i = end

    while i < n:
        c, nxt = src[i], src[i + 1:i + 2]
        if c == "/" and nxt == "/":
            end = src.find("\n", i)
            take(n if end < 0 else end, blank=True)
        elif c == "/" and nxt == "*":
            end = src.find("*/", i + 2)
            take(n if end < 0 else end + 2, blank=True)
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            take(min(j + 1, n))
        elif c == "#" and depth == 0 and not "".join(code).strip():
            flush("space")  # whitespace or comments before the directive
            end = i
            while True:  # a directive runs to the end of line, backslash continuations included
                end = src.find("\n", end)
                if end < 0 or src[end - 1] != "\\":
                    break
                end += 1
            take(n if end < 0 else end)
            flush("pp")
        elif c == "{":
            if depth == 0 and _SCOPE_HEAD.match("".join(code).strip()):
                take(i + 1)
                flush("open")
                scopes += 1
            else:
                depth += 1
                take(i + 1)
        elif c == "}":
            if depth == 0 and scopes:
                flush()
                take(i + 1)
                flush("close")
                scopes -= 1
                continue
            depth = max(depth - 1, 0)
            take(i + 1)
            # A function body ends the item; `struct S {...};` and `x = {...};` run to the `;`.
            if depth == 0 and not src[i:].lstrip().startswith(";"):
                flush()
        elif c == ";" and depth == 0:
            take(i + 1)
            flush()
        else:
            take(i + 1)
    flush()
    return items


def device_code_only(cuda_source: str) -> str:
    """The part of `cuda_source` that compiles without torch. Removed items become blank lines
    so nvcc's line numbers still point into the candidate's source."""
    out = []
    for kind, text, code in _top_level_items(cuda_source):
        drop = (kind == "pp" and bool(_TORCH_INCLUDE.match(text.strip()))) or (
            kind == "item" and bool(_TORCH_MARK.search(code)))
        out.append("\n" * text.count("\n") if drop else text)
    return _PRELUDE + "".join(out)


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def _parse_ptxas(log: str) -> list[CudaKernelResources]:
    kernels: dict[str, CudaKernelResources] = {}
    frames: dict[str, tuple[int, int, int]] = {}
    entry = props = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry = m.group(1)
            kernels[entry] = CudaKernelResources(
                kernel=entry, target=m.group(2), registers=None, shared_memory_bytes=None,
                spill_stores_bytes=None, spill_loads_bytes=None)
        elif m := _PROPS.search(line):
            props = m.group(1)
        elif (m := _FRAME.search(line)) and props:
            frames[props] = tuple(int(g) for g in m.groups())
        elif (m := _USED.search(line)) and entry:
            k = kernels[entry]
            k.registers = int(m.group(1))
            smem = _SMEM.search(line)  # ptxas leaves out smem when there is none
            k.shared_memory_bytes = int(smem.group(1)) if smem else 0
    for name, k in kernels.items():
        if name in frames:
            k.stack_frame_bytes, k.spill_stores_bytes, k.spill_loads_bytes = frames[name]
    _demangle(list(kernels.values()))
    return list(kernels.values())


def _demangle(kernels: list[CudaKernelResources]) -> None:
    """cu++filt ships with full CUDA toolkits; binutils' c++filt reads the same Itanium names."""
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if not tool or not kernels:
        return
    try:
        proc = subprocess.run([tool], input="\n".join(k.kernel for k in kernels) + "\n",
                              capture_output=True, text=True, timeout=10)
        names = proc.stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return
    if proc.returncode == 0 and len(names) == len(kernels):
        for k, name in zip(kernels, names):
            k.kernel = name.removeprefix("void ")  # templates demangle with their return type


def _first_error(log: str) -> str | None:
    return next((ln.strip() for ln in log.splitlines() if re.search(r"\berror\b", ln, re.I)), None)


def compile_check(cuda_source: str, arch: int = 90, timeout_s: float = 60) -> CudaCompileCheck:
    """Compile the torch-free device code with nvcc for sm_<arch> and report per-kernel
    resources. Never raises."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return CudaCompileCheck(ok=True, log="", kernels=[],
                                message="nvcc not found: CUDA source not compile-checked")
    target = f"sm_{arch}"
    try:
        source = device_code_only(cuda_source)
        with tempfile.TemporaryDirectory(prefix="kagent-cuda-") as tmp:
            Path(tmp, "kernel.cu").write_text(source)
            cmd = [nvcc, "-c", f"-arch={target}", *NVCC_FLAGS, "-Xptxas", "-v",
                   "-o", "kernel.o", "kernel.cu"]
            proc = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
            log = proc.stdout.replace(tmp + "/", "").replace(tmp, ".")
    except subprocess.TimeoutExpired:
        return CudaCompileCheck(ok=False, log="", kernels=[],
                                message=f"nvcc timed out after {timeout_s:g} s")
    except Exception as e:  # a broken toolchain is a failed check, not a crash
        return CudaCompileCheck(ok=False, log="", kernels=[],
                                message=f"nvcc could not run: {type(e).__name__}: {e}")
    if proc.returncode != 0:
        message = _first_error(log) or f"nvcc exited with code {proc.returncode}"
        return CudaCompileCheck(ok=False, message=message, log=log,
                                kernels=[])
    kernels = _parse_ptxas(log)
    message = f"device code compiled for {target}: {len(kernels)} kernel(s)"
    if not kernels and "__global__" in source:
        message += " (templated kernels instantiated only by the torch wrapper are not compiled)"
    return CudaCompileCheck(ok=True, message=message, log=log,
                            kernels=kernels)
