"""The run configuration: one typed tree, saved into every run's archive, unknown keys rejected.
Environment variables are read for secrets (API keys, by the providers) and, where named below,
to override a default (flags override both)."""

from __future__ import annotations

import json
import os
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


# Defaults the environment may override, by variable: what the search measures speed against,
# and when it stops at the speed of light (0: never). The test suite sets both (tests/conftest.py):
# compiling each task's reference and stopping early would change what most tests measure.
BASELINE_ENV, STOP_AT_SOL_ENV = "KAGENT_BASELINE", "KAGENT_STOP_AT_SOL"
DEFAULT_BASELINE, DEFAULT_STOP_AT_SOL = "compile", 0.8


def default_baseline() -> str:
    """`KAGENT_BASELINE` if set, else "compile"; RunConfig validates the value."""
    return os.environ.get(BASELINE_ENV) or DEFAULT_BASELINE


def default_stop_at_sol() -> float | str:
    """`KAGENT_STOP_AT_SOL` if set (RunConfig validates it), else 0.8 (KernelEvolve's rule)."""
    return os.environ.get(STOP_AT_SOL_ENV) or DEFAULT_STOP_AT_SOL


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
    # best. 0 / None: no such rule.
    stop_at_sol: float | None = Field(default_factory=default_stop_at_sol, ge=0, le=1, validate_default=True)
    # What the search's fitness measures speed against: torch.compile where the task compiles
    # (the compiler a user would otherwise use; its time is measured in every evaluation), or
    # eager PyTorch (torch.compile is then not run at all: tens of seconds saved per task).
    baseline: Literal["eager", "compile"] = Field(default_factory=default_baseline, validate_default=True)
    patience: int | None = Field(default=None, ge=1)
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
