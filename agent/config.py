"""The run configuration: one typed tree, saved into every run's archive, unknown keys rejected.
Environment variables are only read for secrets (API keys, by the providers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kagent.sandbox.errors import UsageError
from kagent.sandbox.models import BackendName, DeviceName

# USD per million tokens (input, output), by "provider:model". Override per run with --prices.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "openai:gpt-5": (1.25, 10.0),
    "openai:gpt-5-mini": (0.25, 2.0),
    "openai:gpt-4.1": (2.0, 8.0),
    "openai:o3": (2.0, 8.0),
    "anthropic:claude-opus-4-1": (15.0, 75.0),
    "anthropic:claude-sonnet-4-5": (3.0, 15.0),
    "anthropic:claude-haiku-4-5": (1.0, 5.0),
}

MAX_INPUT_MB_HELP = ("Shrink the task's module-level size constants (batch first) until its inputs, weights and "
                     "outputs fit in this many MB (default 64 on a CPU, 0 on a GPU); 0 never shrinks.")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_path: str
    model: str  # PROVIDER:MODEL for the Coder
    judge_model: str | None = None  # PROVIDER:MODEL for the Judge; default: the Coder's
    base_url: str | None = None  # OpenAI-compatible server for openai: models
    backend: BackendName
    device: DeviceName
    max_iters: int = Field(default=10, ge=1)
    max_cost: float | None = Field(default=None, gt=0)  # USD
    time_limit_s: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=2, ge=1)  # candidates in flight (LLM calls overlap)
    eval_workers: int | None = Field(default=None, ge=1)  # evaluations at once; default one per GPU, 1 on a CPU
    executor: Literal["local", "ray"] = "local"  # where evaluations run
    ray_address: str | None = None  # join this Ray cluster; None starts a local one
    eval_timeout_s: float = Field(default=120.0, gt=0)
    # Seconds one LLM call may take (retries included for openai:/anthropic:); reasoning models
    # can think for minutes on a kernel.
    llm_timeout_s: float = Field(default=600.0, gt=0)
    # Termination rules, as in KernelEvolve: stop once the best kernel reaches this fraction of
    # the speed of light (sol_fraction), or after `patience` finished candidates without a new
    # best. None: no such rule. (Not yet on by default: an element-wise kernel reaches 0.8 on a
    # CPU, and the tests that count a run's candidates would first need to turn it off.)
    stop_at_sol: float | None = Field(default=None, gt=0, le=1)
    # What the search's fitness measures speed against: torch.compile where the task compiles
    # (the compiler a user would otherwise use), or eager PyTorch.
    baseline: Literal["eager", "compile"] = "compile"
    patience: int | None = Field(default=None, ge=1)
    # Shrink the task's module-level sizes until its inputs, weights and outputs fit in this
    # many MB (sandbox/sizes.py); None: sizes.DEFAULT_MAX_INPUT_MB for the device; 0: never.
    max_input_mb: int | None = Field(default=None, ge=0)
    islands: int = Field(default=2, ge=1)
    seed: int = 0
    runs_dir: str = "runs"
    prices: dict[str, tuple[float, float]] = {}

    @property
    def judge(self) -> str:
        return self.judge_model or self.model

    def price(self, spec: str) -> tuple[float, float] | None:
        return {**DEFAULT_PRICES, **self.prices}.get(spec)


def load_prices(path: Path | None) -> dict[str, tuple[float, float]]:
    """A --prices file: {"provider:model": [usd_per_M_input, usd_per_M_output]}."""
    if path is None:
        return {}
    try:
        table = json.loads(path.read_text())
        return {str(spec): (float(pair[0]), float(pair[1])) for spec, pair in table.items()}
    except (OSError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise UsageError(f"{path}: cannot read prices: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
