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
from kagent.sandbox import Verdict

JSON_BLOCK = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


class JudgeFeedback(BaseModel):
    """The Judge's answer: a failure's cause or a correct kernel's bottleneck, and what to do
    next; confidence in [0, 1]. Stored as the candidate's judge_json."""

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
    """The verdict's evidence for an LLM, one fact a line (prompts/verdict_facts.md): the failed
    input set, errors, the speedup with both times in ms, the distance to the speed of light,
    the PyTorch ops seen, a failure's log tail. Empty when there is none."""
    bound = next((n for n in verdict.artifacts.notes if n.startswith("speed of light")), "")
    return render("verdict_facts", verdict=verdict, bound=bound)


def hardware_facts(verdict: Verdict) -> str:
    """Compiler and hardware evidence (prompts/hardware_facts.md): registers, shared memory and
    spills per kernel, launches per call, Nsight Compute and torch.profiler summaries, notes."""
    return render("hardware_facts", verdict=verdict)


def judge_messages(task_name: str, task_source: str, candidate_id: int, source: str, verdict: Verdict,
                   device_description: str) -> list[Message]:
    """The Judge's request about one evaluated candidate: the system prompt, then the task, the
    candidate's source and its verdict with every fact the sandbox measured."""
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
    """The follow-up that asks the Judge again after a reply parse_feedback refused (`error`)."""
    return Message(role="user", content=render("judge_retry", error=error))
