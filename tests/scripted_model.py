"""The scripted LLM of the tests, two ways: `ScriptedProvider`, a Provider a test constructs and
hands to a Run (`enqueue()` replies, read back `history`), and a program for the `cmd:`
provider (the path every CLI test uses) that reads one request as JSON on stdin and prints a
reply:

    python tests/scripted_model.py MODE

    provider = ScriptedProvider(mode="improve")        # or mode=None: only queued replies
    provider.enqueue("coder", "```python\n...\n```")    # answered before the mode's replies
    run = Run(config, run_dir, archive, provider, provider)
    provider.history                                   # [(role, [Message, ...]), ...]

MODE:
  improve  the Coder's first draft is a correct but slow C++ ReLU; given a parent kernel it
           answers with a fast one. The Judge answers valid JSON (after one malformed reply
           when the candidate was slow, to exercise the retry).
  garbage  the Coder answers prose without code; the Judge answers prose too.
  fail     exits non-zero (a provider failure).
  sleep    sleeps, then behaves like improve (for kill / resume tests).
  dawdle   the Coder's kernel is a correct ReLU that sleeps 0.3 s per call: an evaluation
           takes several seconds (for stopping one mid-way).
  crash    the Coder's kernel writes "kernel exploded: bad index" to stderr and aborts.
"""

import json
import sys
import threading
import time
from collections import deque

SLOW = '''import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void relu(const float* x, float* y, int64_t n, int64_t repeat) {
    // Deliberately wasteful: recompute every element many times.
    for (int64_t r = 0; r < repeat; ++r)
        for (int64_t i = 0; i < n; ++i) { volatile float v = x[i]; y[i] = v > 0.f ? v : 0.f; }
}
""")


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.relu(x, y, x.numel(), 8)
        return y
'''

FAST = '''import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void relu(const float* x, float* y, int64_t n) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
""")


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.relu(x, y, x.numel())
        return y
'''


DAWDLE = FAST.replace("#include <cstdint>", "#include <cstdint>\n#include <unistd.h>").replace(
    "int64_t n) {", "int64_t n) {\n    usleep(300000);  // slow on purpose: a long evaluation")

CRASH = FAST.replace("#include <cstdint>", "#include <cstdint>\n#include <cstdio>\n#include <cstdlib>").replace(
    "int64_t n) {", 'int64_t n) {\n    fprintf(stderr, "kernel exploded: bad index %ld\\n", (long)n); abort();')


def coder(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    if "candidate #" in prompt and "The kernel you start from" in prompt:
        return f"The parent recomputes every element; drop the repeat loop and vectorise.\n\n```python\n{FAST}```\n"
    return f"A first, simple version:\n\n```python\n{SLOW}```\nThis should be correct."


def judge(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    slow = "repeat" in prompt and "Your reply could not be used" not in prompt
    if slow and len(request["messages"]) == 2:
        return "The kernel is slow because it repeats work."  # malformed: no JSON
    kind = "bottleneck" if "status: correct" in prompt else "failure"
    return "```json\n" + json.dumps({
        "kind": kind, "diagnosis": "the repeat loop recomputes every element 8 times",
        "recommendation": "remove the repeat loop and add #pragma omp parallel for simd",
        "confidence": 0.9,
    }) + "\n```"


def reply_for(mode: str, request: dict) -> str:
    """What the scripted model answers `request` ({"role", "model", "messages"}) in `mode`
    (improve, garbage, dawdle, crash; see the module docstring)."""
    if mode == "garbage":
        return "I would rather talk about the weather." if request["role"] == "coder" else "Looks fine to me."
    if mode in ("dawdle", "crash") and request["role"] == "coder":
        return f"```python\n{DAWDLE if mode == 'dawdle' else CRASH}```"
    return coder(request) if request["role"] == "coder" else judge(request)


if __name__ != "__main__":  # imported for ScriptedProvider; the cmd: program stays quick to start
    from kagent.agent.providers.base import Completion, Message, Provider, estimate_tokens
    from kagent.errors import ProviderError
else:
    Provider = object


class ScriptedProvider(Provider):
    """An in-process provider whose replies a test scripts. `enqueue(role, *replies)` queues
    replies for a role, answered first in first out; with a `mode` an empty queue falls back on
    that mode's replies (as `python scripted_model.py MODE` gives them), without one it is a
    ProviderError. `history` lists every request, (role, messages), in the order received.
    Thread-safe: a Run asks from several threads. Token counts are estimates."""

    name = "scripted"
    form = "scripted:MODE"
    summary = "replies a test queued with enqueue(), then MODE's (tests only)"

    def __init__(self, model: str = "script", *, mode: str | None = None, **kw):
        super().__init__(model, **kw)
        self.mode = mode
        self.queues: dict[str, deque[str]] = {"coder": deque(), "judge": deque()}
        self.history: list[tuple[str, list[Message]]] = []
        self._lock = threading.Lock()

    def enqueue(self, role: str, *replies: str) -> "ScriptedProvider":
        """Queue `replies` for `role` ("coder" or "judge"); returns the provider, to chain."""
        with self._lock:
            self.queues[role].extend(replies)
        return self

    def complete(self, role, messages):
        """The next queued reply for `role`, else the mode's; ProviderError when there is none."""
        self.check_cancelled()
        with self._lock:
            self.history.append((role, list(messages)))
            queued = self.queues[role].popleft() if self.queues[role] else None
        if queued is None and self.mode is None:
            raise ProviderError(f"scripted: no {role} reply queued")
        text = queued if queued is not None else reply_for(self.mode, {
            "role": role, "model": self.model, "messages": [m.model_dump() for m in messages]})
        return Completion(text=text, provider=self.name, model=self.model,
                          input_tokens=sum(estimate_tokens(m.content) for m in messages),
                          output_tokens=estimate_tokens(text), tokens_estimated=True, latency_s=0.0)


def main() -> None:
    mode = sys.argv[1]
    request = json.load(sys.stdin)
    assert set(request) == {"role", "model", "messages"}, request.keys()
    if mode == "fail":
        print("scripted failure", file=sys.stderr)
        sys.exit(3)
    if mode == "sleep":
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
    print(reply_for("improve" if mode == "sleep" else mode, request))


if __name__ == "__main__":
    main()
