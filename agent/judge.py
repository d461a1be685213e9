"""The Judge: turns a verdict plus hardware facts into one diagnosis that steers the next
Coder attempt. Its answer is structured and validated; a malformed answer is retried once,
then the loop goes on without it."""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from kagent.agent.prompts import render
from kagent.agent.providers import Message
from kagent.sandbox.models import Verdict

JSON_BLOCK = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


class JudgeFeedback(BaseModel):
    kind: Literal["failure", "bottleneck"]
    diagnosis: str = Field(min_length=1)
    recommendation: str = Field(min_length=1)
    confidence: float = Field(default=0.5, ge=0, le=1)


def parse_feedback(reply: str) -> JudgeFeedback:
    """Raises ValueError with a short reason when the reply is not a valid feedback object."""
    candidates = JSON_BLOCK.findall(reply)
    if not candidates:
        start, end = reply.find("{"), reply.rfind("}")
        candidates = [reply[start:end + 1]] if 0 <= start < end else []
    if not candidates:
        raise ValueError("no JSON object found")
    try:
        return JudgeFeedback.model_validate(json.loads(candidates[-1]))
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err.msg}") from None
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc'])) or 'object'}: {first['msg']}") from None


def verdict_facts(verdict: Verdict) -> str:
    lines = []
    if verdict.failed_input_set:
        lines.append(f"failed input set: {verdict.failed_input_set}")
    if verdict.max_abs_error is not None:
        lines.append(f"max abs error: {verdict.max_abs_error:.3g}, max rel error: {verdict.max_rel_error:.3g}")
    if verdict.speedup is not None:
        lines.append(f"speedup over eager PyTorch: {verdict.speedup:.2f}x "
                     f"(reference {verdict.ref_time_ms:.4f} ms, candidate {verdict.candidate_time_ms:.4f} ms)")
    elif verdict.status == "correct":
        lines.append("timing: not a performance measurement on this machine")
    if verdict.sol_fraction is not None:
        bound = next((n for n in verdict.artifacts.notes if n.startswith("speed of light")), "")
        lines.append(f"at {verdict.sol_fraction:.0%} of the speed of light ({verdict.sol_time_ms:.4f} ms), "
                     f"headroom {max(0.0, 1 / verdict.sol_fraction - 1):.1f}x at most; {bound}".rstrip("; "))
    if verdict.artifacts.torch_ops:
        lines.append(f"PyTorch ops seen in forward: {', '.join(verdict.artifacts.torch_ops)}")
    log = verdict.artifacts.compile_log or verdict.artifacts.traceback
    if log and verdict.status in ("compile_error", "runtime_error"):
        lines.append("log (tail):\n" + log.strip()[-1500:])
    return "\n".join(lines)


def hardware_facts(verdict: Verdict) -> str:
    lines = [
        f"{use.kernel} on {use.target}: " + (use.error or
            f"{use.registers} registers/thread, {use.shared_memory_bytes} B shared memory, "
            f"{use.spill_stores_bytes} B spill stores, {use.spill_loads_bytes} B spill loads")
        for use in verdict.artifacts.resources
    ]
    if verdict.artifacts.launches:
        lines.append("kernel launches per call: " + ", ".join(f"{k} x{v}" for k, v in verdict.artifacts.launches.items()))
    if verdict.artifacts.ncu:
        lines.append("Nsight Compute, per kernel:\n" + verdict.artifacts.ncu)
    if verdict.artifacts.reference_profile:
        lines.append("eager PyTorch reference, by ATen op (torch.profiler):\n" + verdict.artifacts.reference_profile)
    lines += verdict.artifacts.notes
    return "\n".join(lines) or "none available"


def judge_messages(task_name: str, task_source: str, candidate_id: int, source: str, verdict: Verdict,
                   device_description: str) -> list[Message]:
    return [
        Message(role="system", content=render("judge_system")),
        Message(role="user", content=render(
            "judge", task_name=task_name, task_source=task_source.strip(), candidate_id=candidate_id,
            backend=verdict.backend, device_description=device_description, candidate_source=source.strip(),
            status=verdict.status, reason=verdict.reason, message=verdict.message,
            verdict_facts=verdict_facts(verdict), hardware_facts=hardware_facts(verdict),
        )),
    ]


def retry_message(error: str) -> Message:
    return Message(role="user", content=render("judge_retry", error=error))
