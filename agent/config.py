"""The run configuration: `RunConfig`, saved into every run's archive, unknown keys rejected;
and the nested TOML file a user writes (`--config FILE`), mapped onto it by `CONFIG_TREE`:

    task = "tasks/01_relu.py"          # top level: task, runs_dir
    [models]   coder, judge, base_url, prices, llm_timeout_s
    [budget]   max_iters, max_cost, time_limit_s, stop_at_sol, patience
    [search]   concurrency, baseline, policy, islands, elite_size, migration_interval, max_repairs, seed
    [sandbox]  backend, device, eval_timeout_s, cache_dir, namespaces, max_input_mb
    [executor] name, workers, ray_address
    [batch]    task_dir, workers, max_cost   (kagent batch only; budget.max_cost is then per task)

Environment variables are read for secrets (API keys, by the providers); overriding the file,
for the two sandbox settings KAGENT_CACHE_DIR and KAGENT_SANDBOX_NAMESPACES; and, overriding
the defaults only (a file or a flag beats them), KAGENT_BASELINE and KAGENT_STOP_AT_SOL."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from kagent.errors import UsageError
from kagent.sandbox import BackendName, DeviceName

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
    """Everything one optimize run needs, flat (the archive stores it as JSON; `CONFIG_TREE` maps
    the nested file onto it). Costs in USD, times in seconds. A ValidationError names the field."""

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
    executor: str = "local"  # where evaluations run: a name in agent.executors.EXECUTORS
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
    # The selection policy (a name in agent.selection.POLICIES) and the island policy's knobs.
    policy: str = "islands"
    # Shrink the task's module-level sizes until its inputs, weights and outputs fit in this
    # many MB (sandbox/sizes.py); None: sizes.DEFAULT_MAX_INPUT_MB for the device; 0: never.
    max_input_mb: int | None = Field(default=None, ge=0)
    islands: int = Field(default=2, ge=1)
    elite_size: int = Field(default=3, ge=1)
    migration_interval: int = Field(default=4, ge=0)  # iterations between migrations; 0: none
    max_repairs: int = Field(default=2, ge=0)  # attempts at fixing one failure
    seed: int = 0
    runs_dir: str = "runs"
    prices: dict[str, tuple[float, float]] = {}
    # Sandbox settings (KAGENT_CACHE_DIR and KAGENT_SANDBOX_NAMESPACES=0 override them): where
    # compiled kernels are cached (None: ~/.cache/kagent), and whether candidates run in their
    # own PID and mount namespaces where the system allows.
    cache_dir: str | None = None
    sandbox_namespaces: bool = True

    @field_validator("executor")
    @classmethod
    def _registered_executor(cls, name: str) -> str:
        from kagent.agent.executors import EXECUTORS, executor_names

        if name not in EXECUTORS:
            raise ValueError(f"unknown executor {name!r}: choose one of {executor_names()}")
        return name

    @field_validator("policy")
    @classmethod
    def _registered_policy(cls, name: str) -> str:
        from kagent.agent.selection import POLICIES

        if name not in POLICIES:
            raise ValueError(f"unknown selection policy {name!r}: choose one of {', '.join(POLICIES)}")
        return name

    def with_environment(self) -> "RunConfig":
        """This config with the sandbox settings the environment overrides (KAGENT_CACHE_DIR,
        KAGENT_SANDBOX_NAMESPACES=0) taken from it, so the config saved says what was used."""
        update: dict[str, Any] = {}
        if os.environ.get("KAGENT_CACHE_DIR"):
            update["cache_dir"] = os.environ["KAGENT_CACHE_DIR"]
        if os.environ.get("KAGENT_SANDBOX_NAMESPACES") == "0":
            update["sandbox_namespaces"] = False
        return self.model_copy(update=update)

    def apply_environment(self) -> None:
        """Hand the sandbox settings to the sandboxes this process starts (they read the
        environment), where the environment does not set them already."""
        if self.cache_dir:
            os.environ.setdefault("KAGENT_CACHE_DIR", self.cache_dir)
        if not self.sandbox_namespaces:
            os.environ.setdefault("KAGENT_SANDBOX_NAMESPACES", "0")

    @property
    def judge(self) -> str:
        """The Judge's PROVIDER:MODEL (the Coder's unless --judge-model was given)."""
        return self.judge_model or self.model

    def price(self, spec: str) -> tuple[float, float] | None:
        """USD per million (input, output) tokens for `spec`, or None where unknown."""
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


class BatchSection(BaseModel):
    """What `kagent batch` adds to a run's configuration: tasks at once and the whole batch's
    cost cap (USD; each task's own cap is the run's max_cost, `--task-max-cost`)."""

    model_config = ConfigDict(extra="forbid")

    task_dir: str = ""  # the task directory, absolute
    workers: int = Field(default=2, ge=1)  # tasks at once
    max_cost: float | None = Field(default=None, gt=0)  # the whole batch, USD


# The nested file -> RunConfig fields (section "batch": BatchSection fields). One table: the
# file's schema, its error messages and `config_tree` all read it.
CONFIG_TREE: dict[str, dict[str, str]] = {
    "": {"task": "task_path", "runs_dir": "runs_dir"},
    "models": {"coder": "model", "judge": "judge_model", "base_url": "base_url", "prices": "prices",
               "llm_timeout_s": "llm_timeout_s"},
    "budget": {"max_iters": "max_iters", "max_cost": "max_cost", "time_limit_s": "time_limit_s",
               "stop_at_sol": "stop_at_sol", "patience": "patience"},
    "search": {"concurrency": "concurrency", "baseline": "baseline", "policy": "policy", "islands": "islands",
               "elite_size": "elite_size", "migration_interval": "migration_interval",
               "max_repairs": "max_repairs", "seed": "seed"},
    "sandbox": {"backend": "backend", "device": "device", "eval_timeout_s": "eval_timeout_s",
                "cache_dir": "cache_dir", "namespaces": "sandbox_namespaces", "max_input_mb": "max_input_mb"},
    "executor": {"name": "executor", "workers": "eval_workers", "ray_address": "ray_address"},
    "batch": {"task_dir": "task_dir", "workers": "workers", "max_cost": "max_cost"},
}
PATH_FIELDS = ("task_path", "runs_dir", "cache_dir", "task_dir")  # relative ones are taken from the file's directory


def _section_model(section: str, keys: dict[str, str]) -> type[BaseModel]:
    """A model of one section: each key typed and bounded as its field (None: not given),
    others refused. RunConfig's own validators (executor, policy) run on the merged config."""
    source = BatchSection if section == "batch" else RunConfig

    def typed(info):
        return Optional[Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation]

    fields = {key: (typed(source.model_fields[field]), None) for key, field in keys.items()}
    return create_model(f"{section.title() or 'Top'}Section", __config__=ConfigDict(extra="forbid"), **fields)


_SECTIONS = {section: _section_model(section, keys) for section, keys in CONFIG_TREE.items()}
ConfigFile = create_model(
    "ConfigFile", __config__=ConfigDict(extra="forbid"),
    **{key: (Optional[_SECTIONS[""].model_fields[key].annotation], None) for key in CONFIG_TREE[""]},
    **{section: (Optional[model], None) for section, model in _SECTIONS.items() if section},
)
ConfigFile.__doc__ = "The `--config` TOML file: the sections of CONFIG_TREE, every key optional, no others."


class FileValues(BaseModel):
    """What a config file (`path`) sets: RunConfig fields (`run`), BatchSection fields
    (`batch`), and the file's key for each, for messages (field or "batch.FIELD" -> "section.key")."""

    path: str | None = None
    run: dict[str, Any] = {}
    batch: dict[str, Any] = {}
    origin: dict[str, str] = {}


def invalid_key(path: Path | str, key: str, error: dict) -> str:
    """One line for a pydantic error on a config file's key: "FILE: invalid budget.max_iters 0:
    Input should be greater than or equal to 1"."""
    value = error.get("input")
    shown = f" {value}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    return f"{path}: invalid {key}{shown}: {error['msg'].removeprefix('Value error, ')}"


def load_config(path: Path | None) -> FileValues:
    """Read a `--config` TOML file into RunConfig/BatchSection fields. None: an empty one.
    UsageError, one line naming the file and the key, for an unreadable file, bad TOML, an
    unknown section or key, or a value of the wrong type."""
    if path is None:
        return FileValues()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise UsageError(f"{path}: cannot read config: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not a valid TOML file: {err}") from None
    try:
        tree = ConfigFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            kind = "section" if len(first["loc"]) == 1 and isinstance(first.get("input"), dict) else "key"
            raise UsageError(f"{path}: unknown {kind} {key!r}") from None
        raise UsageError(invalid_key(path, key, first)) from None
    values = FileValues(path=str(path))
    for section, keys in CONFIG_TREE.items():
        given = tree if not section else getattr(tree, section)
        for key, field in keys.items():
            value = getattr(given, key, None) if given is not None else None
            if value is None:
                continue
            if field in PATH_FIELDS:  # relative to the file, wherever kagent is started from
                value = str((path.parent / Path(value).expanduser()).absolute())
            (values.batch if section == "batch" else values.run)[field] = value
            values.origin[("batch." if section == "batch" else "") + field] = f"{section + '.' if section else ''}{key}"
    return values


def config_tree(config: BaseModel) -> dict[str, dict[str, Any]]:
    """The nested view of a resolved RunConfig or BatchOptions (the file's layout, top-level
    keys under "run"), e.g. to show a run's configuration."""
    fields = config.model_dump()
    tree = {section or "run": {key: fields.get(field) for key, field in keys.items()}
            for section, keys in CONFIG_TREE.items() if section != "batch"}
    if isinstance(fields.get("batch"), dict):
        tree["batch"] = {key: fields["batch"].get(field) for key, field in CONFIG_TREE["batch"].items()}
    return tree
