"""torch.compile as a baseline (sandbox/compiled.py): the compiled reference computes the same
result, a second instance reuses the compilation, and a failure is a reason, not a crash."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from conftest import CANDIDATES, TASKS
from kagent.sandbox.compiled import compile_reference


class Swish(torch.nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


def test_compiled_reference_matches_and_is_reused():
    x = torch.randn(1000)
    first = compile_reference(Swish(), [x], [Swish()(x)], lambda out, want: torch.allclose(out, want[0], atol=1e-6))
    assert first.error is None and first.compile_s > 0
    assert torch.allclose(first.forward(x), x * torch.sigmoid(x), atol=1e-6)
    began = time.perf_counter()
    second = compile_reference(Swish(), [x])
    assert second.error is None
    # A new instance of a compiled class does not compile again: far below the first's time.
    assert time.perf_counter() - began < max(1.0, first.compile_s / 3)


def test_a_baseline_that_computes_something_else_is_refused():
    x = torch.randn(10)
    result = compile_reference(Swish(), [x], [x + 1], lambda out, want: torch.allclose(out, want[0]))
    assert result.forward is None and "changed the reference's result" in result.error


def test_a_compile_failure_is_a_reason(monkeypatch):
    def broken(model):
        raise RuntimeError("inductor: no working C++ compiler\nmore")
    monkeypatch.setattr(torch, "compile", broken)
    result = compile_reference(Swish(), [torch.randn(4)])
    assert result.forward is None and result.error == "torch.compile failed: RuntimeError: inductor: no working C++ compiler"


# ------------------------------------------------------------- through the sandbox and the CLI

def _eval_json(task, candidate, *flags: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "kagent.agent.cli", "eval", str(task), str(candidate), "--json", *flags],
                          capture_output=True, text=True, timeout=600, env={k: v for k, v in os.environ.items()
                                                                            if k != "KAGENT_BASELINE"})
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr[-3000:]
    return json.loads(lines[0])


def test_eval_times_the_reference_under_torch_compile_by_default():
    """The default baseline (no --baseline, no KAGENT_BASELINE): the verifier compiles the
    reference and times it in the same alternating blocks as the candidate and the eager
    reference, so speedup_vs_compile is the ratio of two medians taken side by side."""
    verdict = _eval_json(TASKS / "01_relu.py", CANDIDATES / "01_relu" / "cpp.py")
    assert verdict["status"] == "correct", verdict["message"]
    assert verdict["compile_time_ms"] > 0 and verdict["compile_timing"]["runs"] == verdict["candidate_timing"]["runs"]
    assert verdict["speedup_vs_compile"] == pytest.approx(verdict["compile_time_ms"] / verdict["candidate_time_ms"])
    assert "vs torch.compile" in verdict["message"]

    eager = _eval_json(TASKS / "01_relu.py", CANDIDATES / "01_relu" / "cpp.py", "--baseline", "eager")
    assert eager["status"] == "correct" and eager["speedup"] > 0
    assert eager["compile_time_ms"] is None and eager["speedup_vs_compile"] is None


COMPILE_CHANGES_RESULT = '''
import torch
import torch.nn as nn


class Model(nn.Module):
    """ReLU, except that under torch.compile it doubles its result: a compiled baseline that
    computes something else must not be used as a yardstick."""

    def forward(self, x):
        if torch.compiler.is_compiling():
            return torch.relu(x) * 2
        return torch.relu(x)


def get_inputs():
    return [torch.randn(256, 1024)]


def get_init_inputs():
    return []
'''


def test_a_task_whose_compiled_reference_differs_has_no_compile_speedup(tmp_path):
    task = tmp_path / "relu_compiled_differs.py"
    task.write_text(COMPILE_CHANGES_RESULT)
    verdict = _eval_json(task, CANDIDATES / "01_relu" / "cpp.py")
    assert verdict["status"] == "correct", verdict["message"]  # the candidate is judged against eager
    assert verdict["speedup"] > 0 and verdict["speedup_vs_compile"] is None and verdict["compile_time_ms"] is None
    assert any("torch.compile changed the reference's result" in note for note in verdict["artifacts"]["notes"]), \
        verdict["artifacts"]["notes"]
