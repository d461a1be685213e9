"""Every example task with its hand-written kernels: the honest C++ and Triton kernels must be
judged correct, each broken variant must fail with the status its first line names."""

from __future__ import annotations

import re

import pytest

from conftest import CANDIDATES, TASKS

CASES = sorted(p for p in CANDIDATES.glob("*/*.py"))


def expected_status(path) -> str:
    if path.stem in ("cpp", "triton"):
        return "correct"
    if path.stem == "cuda":  # the CPU sandbox only compile-checks CUDA; bench/gpu_check.sh runs it
        return "not_run"
    match = re.match(r"#\s*expect:\s*(\w+)", path.read_text())
    assert match, f"{path}: a broken variant must start with '# expect: STATUS'"
    return match.group(1)


def test_every_task_has_honest_cpp_and_triton_kernels_and_a_broken_one():
    tasks = sorted(p.stem for p in TASKS.glob("*.py"))
    assert len(tasks) >= 12
    for task in tasks:
        names = {p.stem for p in (CANDIDATES / task).glob("*.py")}
        assert {"cpp", "triton"} <= names, task
        assert any(n.startswith("broken") for n in names), task


@pytest.mark.parametrize("candidate", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_candidate_verdict(evaluate, candidate):
    verdict = evaluate(TASKS / f"{candidate.parent.name}.py", candidate)
    want = expected_status(candidate)
    assert verdict.status == want, f"{verdict.status} ({verdict.reason}): {verdict.message}"
    if want == "correct":
        assert len(verdict.input_sets) >= 4  # three seeds, the shifted distribution, extra sets
        assert verdict.max_abs_error is not None
        if verdict.backend == "cpp":
            assert verdict.timing_meaningful and verdict.speedup > 0
        else:  # the Triton interpreter on CPU checks correctness only
            assert not verdict.timing_meaningful and verdict.speedup is None
