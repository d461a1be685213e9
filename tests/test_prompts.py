"""Prompts are Jinja2 templates under prompts/, rendered strictly (a missing variable or
attribute is an error naming the template), and the fragments the Judge and the Coder read
(verdict facts, hardware facts, history lines) come from templates too."""

from __future__ import annotations

from importlib import resources

import pytest

from kagent.agent.judge import hardware_facts, judge_messages, verdict_facts
from kagent.agent.prompts import environment, render
from kagent.errors import KagentError
from kagent.sandbox.models import Verdict


def verdict(status: str, **fields) -> Verdict:
    return Verdict(status=status, reason=fields.pop("reason", "ok"), message=f"{status} message", backend="cpp",
                   device="cpu", **fields)


def test_every_template_parses():
    names = [p.name for p in resources.files("kagent.prompts").iterdir() if p.name.endswith(".md")]
    assert {"coder.md", "judge.md", "verdict_facts.md", "hardware_facts.md", "history_line.md"} <= set(names)
    for name in names:
        environment().get_template(name)  # a syntax error raises here


def test_missing_values_are_errors_not_blanks():
    with pytest.raises(KagentError, match=r"prompts/history_line.md: no value for \$record"):
        render("history_line", idea="x")
    with pytest.raises(KagentError, match=r"prompts/inspiration.md: .*has no attribute 'id'"):
        render("inspiration", member={})


def test_verdict_and_hardware_facts_come_from_templates():
    failed = verdict("compile_error", reason="compile_failed")
    failed.artifacts.compile_log = "x" * 3000 + "error: expected ';'"
    facts = verdict_facts(failed)
    assert facts.startswith("log (tail):\n") and facts.endswith("error: expected ';'")
    assert len(facts) == len("log (tail):\n") + 1500
    assert hardware_facts(failed) == ""

    fast = verdict("correct", speedup=2.5, ref_time_ms=1.0, candidate_time_ms=0.4, max_abs_error=1e-6,
                   max_rel_error=1e-7)
    fast.artifacts.launches = {"relu": 1}
    assert verdict_facts(fast).splitlines() == [
        "max abs error: 1e-06, max rel error: 1e-07",
        "speedup over eager PyTorch: 2.50x (reference 1.0000 ms, candidate 0.4000 ms)",
    ]
    fast.speedup_vs_compile, fast.compile_time_ms, fast.sol_time_ms, fast.sol_fraction = 1.25, 0.5, 0.1, 0.25
    assert verdict_facts(fast).splitlines()[2:] == [
        "speedup over torch.compile: 1.25x (compiled reference 0.5000 ms)",
        "at 25% of the speed of light (0.1000 ms), headroom: at most 4.0x faster",
    ]
    (_, user) = judge_messages("relu.py", "class Model: ...", 3, "class ModelNew: ...", fast, "CPU: test")
    assert "status: correct (ok)\nmessage: correct message\nmax abs error" in user.content
    assert "# Hardware and compiler facts\nkernel launches per call: relu x1\n" in user.content
    (_, bare) = judge_messages("relu.py", "class Model: ...", 3, "class ModelNew: ...", failed, "CPU: test")
    assert "# Hardware and compiler facts\nnone available" in bare.content
