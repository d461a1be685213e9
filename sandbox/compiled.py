"""torch.compile as a second baseline: the reference compiled with `torch.compile` (default
mode: inductor generates C++/OpenMP on a CPU, Triton on a GPU), the speed a user gets without
writing a kernel.

Compiling takes tens of seconds (minutes on a busy 2-core machine), so it happens once per task
and process: later models of the same class reuse the compiled graphs (dynamo treats the
parameters of an inlined nn.Module as graph inputs, so a new instance does not recompile; on
disk, inductor's FX graph cache serves other processes). It runs only in trusted processes,
never beside a timing loop, and never counts against a candidate's time limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class CompiledReference:
    """A compiled reference (`forward`: same signature as the model's), or why there is none
    (`error`, one line). `compile_s`: seconds the first compiled call took (compilation)."""

    forward: Callable | None
    compile_s: float
    error: str | None = None


def compile_reference(model: torch.nn.Module, inputs: list, expected: list | None = None,
                      check: Callable[[object, object], bool] | None = None) -> CompiledReference:
    """Compile `model` and run it once on `inputs` (which compiles it). When `expected` and
    `check` are given, the compiled output must pass `check(output, expected)`: a compiled
    baseline that computes something else would be a wrong yardstick. Never raises for the
    task's sake: a failure is returned as `error`."""
    began = time.perf_counter()
    try:
        compiled = torch.compile(model)
        with torch.no_grad():
            out = compiled(*inputs)
    except Exception as err:  # inductor, a missing compiler, an unsupported op
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return CompiledReference(None, time.perf_counter() - began, f"torch.compile failed: {type(err).__name__}: {text}"[:300])
    elapsed = time.perf_counter() - began
    if expected is not None and check is not None and not check(out, expected):
        return CompiledReference(None, elapsed, "torch.compile changed the reference's result beyond tolerance")
    return CompiledReference(compiled, elapsed)

