"""Reading LLM replies: the Coder's code and the Judge's structured feedback; and the prompt
templates, rendered strictly."""

from __future__ import annotations

import pytest

from kagent.agent.extract import extract_code
from kagent.agent.judge import JudgeFeedback, parse_feedback
from kagent.agent.prompts import render
from kagent.errors import KagentError

MODEL = "import torch\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x\n"


def test_fenced_block_with_prose_around_it():
    reply = f"Here is my kernel.\n\n```python\n{MODEL}```\n\nIt should be fast."
    assert extract_code(reply) == MODEL


def test_several_blocks_pick_the_last_one_defining_model_new():
    draft = MODEL.replace("return x", "return x  # draft")
    reply = f"```cpp\nextern \"C\" void f();\n```\nFirst try:\n```python\n{draft}```\nBetter:\n```py\n{MODEL}```"
    assert extract_code(reply) == MODEL


def test_unterminated_fence_and_bare_file():
    assert extract_code(f"```python\n{MODEL}") == MODEL
    assert extract_code(f"Sure.\n{MODEL}") == MODEL


@pytest.mark.parametrize("reply", ["I cannot help with that.", "```python\nprint('no model here')\n```", ""])
def test_reply_without_usable_code(reply):
    assert extract_code(reply) is None


def test_judge_feedback_from_json_block_or_bare_object():
    body = '{"kind": "bottleneck", "diagnosis": "memory bound", "recommendation": "vectorise loads", "confidence": 0.8}'
    for reply in (f"```json\n{body}\n```", f"Thoughts first. {body} Done."):
        assert parse_feedback(reply) == JudgeFeedback(kind="bottleneck", diagnosis="memory bound",
                                                      recommendation="vectorise loads", confidence=0.8)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("no json at all", "no JSON object"),
        ('{"kind": "failure", "diagnosis": "x"', "no JSON object"),
        ('{"kind": "failure", "diagnosis": "x", "recommendation": }', "invalid JSON"),
        ('{"kind": "praise", "diagnosis": "x", "recommendation": "y"}', "kind"),
        ('{"kind": "failure", "diagnosis": "", "recommendation": "y"}', "diagnosis"),
    ],
)
def test_malformed_judge_feedback_says_why(reply, error):
    with pytest.raises(ValueError, match=error):
        parse_feedback(reply)


def test_prompts_render_strictly():
    text = render("judge_retry", error="no JSON object found")
    assert "no JSON object found" in text and "$" not in text
    with pytest.raises(KagentError, match=r"prompts/judge_retry.md: no value for \$error"):
        render("judge_retry")
