"""torch.compile as a baseline (sandbox/compiled.py): the compiled reference computes the same
result, a second instance reuses the compilation, and a failure is a reason, not a crash."""

import time

import torch

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
