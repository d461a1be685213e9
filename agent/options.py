"""Option handling shared by `kagent optimize` and `kagent batch`: the option definitions
(typer's Annotated options, defined once here), the merge of a `--config` file with the flags
that override it, paths made absolute once, at the command line, and every value checked
before anything is written.

Why absolute at once: a sandbox worker runs in its own directory, so a relative path that crosses
into it (runs/..., a task, a candidate) would be resolved a second time against the wrong one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError, create_model

from kagent.agent.config import MAX_INPUT_MB_HELP, FileValues, RunConfig, invalid_key
from kagent.agent.executors import executor_names
from kagent.agent.providers import PRICES_HELP, PROVIDERS
from kagent.sandbox import backend_names
from kagent.errors import UsageError

_DEFAULT = {name: field.default for name, field in RunConfig.model_fields.items()}

# -- the options both commands take, defined once (the parameter's name is the flag) -------------
Config = Annotated[Optional[Path], typer.Option(
    help="TOML file of settings, nested by section (README, \"Configuration\"); flags override it.")]
Model = Annotated[Optional[str], typer.Option(help=f"Coder model as PROVIDER:MODEL, PROVIDER one of {', '.join(PROVIDERS)}.")]
JudgeModel = Annotated[Optional[str], typer.Option(help="Judge model as PROVIDER:MODEL (default: --model).")]
BaseUrl = Annotated[Optional[str], typer.Option(
    help="OpenAI-compatible server for openai: models (vLLM, SGLang, Ollama).")]
Backend = Annotated[Optional[str], typer.Option(
    help=f"{backend_names(' or ')} (default: triton on a GPU, cpp on a CPU).")]
Device = Annotated[Optional[str], typer.Option(help="cpu or cuda (default: the GPU if there is one).")]
MaxIters = Annotated[Optional[int], typer.Option(
    help=f"Stop after this many candidates (a batch: per task; default {_DEFAULT['max_iters']}).")]
TimeLimit = Annotated[Optional[float], typer.Option(help="Stop after this many seconds (a batch: per task).")]
Concurrency = Annotated[Optional[int], typer.Option(
    help=f"Candidates in flight at once (a batch: per task; default {_DEFAULT['concurrency']}).")]
LlmTimeout = Annotated[Optional[float], typer.Option(
    help=f"Seconds one LLM call may take (default {_DEFAULT['llm_timeout_s']:g}).")]
StopAtSol = Annotated[Optional[float], typer.Option(
    help="Stop once the best kernel reaches this fraction of the speed of light (default 0.8; 0: never).")]
Patience = Annotated[Optional[int], typer.Option(help="Stop after this many candidates without a better one.")]
Baseline = Annotated[Optional[str], typer.Option(
    help="Speed the search maximises: over compile (torch.compile, where the task compiles; the default) "
         "or eager PyTorch.")]
MaxInputMb = Annotated[Optional[int], typer.Option(help=MAX_INPUT_MB_HELP)]
Executor = Annotated[Optional[str], typer.Option(
    help=f"Where evaluations (a batch: and tasks) run: {executor_names(' or ')} (default local: this machine).")]
RayAddress = Annotated[Optional[str], typer.Option(
    help="With --executor ray: join this cluster ('auto', HOST:6379); default: start a local one.")]
RunsDir = Annotated[Optional[Path], typer.Option(help="Where runs are written, and where --resume looks for a run id (default: runs).")]
Prices = Annotated[Optional[Path], typer.Option(help=PRICES_HELP)]
AsJson = Annotated[bool, typer.Option("--json", help="Print exactly one JSON summary on stdout at the end.")]

# RunConfig field (or "batch.FIELD") -> the command-line option it comes from.
OPTION_FLAGS = {"max_iters": "--max-iters", "max_cost": "--max-cost", "time_limit_s": "--time-limit",
                "concurrency": "--concurrency", "executor": "--executor", "ray_address": "--ray-address",
                "backend": "--backend", "device": "--device", "prices": "--prices", "model": "--model",
                "judge_model": "--judge-model", "base_url": "--base-url", "runs_dir": "--runs-dir",
                "llm_timeout_s": "--llm-timeout", "stop_at_sol": "--stop-at-sol", "patience": "--patience",
                "baseline": "--baseline", "task_path": "TASK"}
BATCH_FLAGS = OPTION_FLAGS | {"max_cost": "--task-max-cost", "task_path": "TASK_DIR", "batch.workers": "--workers",
                              "batch.max_cost": "--max-cost", "batch.task_dir": "TASK_DIR"}


def absolute(path: Path | None) -> Path | None:
    """`path` as an absolute path (`~` expanded, symlinks kept as given), or None. Relative
    paths are taken from the current directory, the one the user typed them in."""
    return None if path is None else Path(path).expanduser().absolute()


def run_flags(**flags: Any) -> dict[str, Any]:
    """The RunConfig fields the shared options give, by field name, leaving out those not given
    (None). Takes the options by their parameter names (time_limit=..., llm_timeout=...)."""
    renamed = {"time_limit": "time_limit_s", "llm_timeout": "llm_timeout_s"}
    return {renamed.get(name, name): value for name, value in flags.items() if value is not None}


def merge(file: FileValues, flags: dict[str, Any], batch_flags: dict[str, Any] | None = None) -> FileValues:
    """The settings a command runs with: the file's, each overridden by the flag given for it.
    `origin` keeps only what still comes from the file (for messages)."""
    batch_flags = {k: v for k, v in (batch_flags or {}).items() if v is not None}
    run = file.run | flags
    if "prices" in file.run and "prices" in flags:  # a --prices file adds to the file's table
        run["prices"] = file.run["prices"] | flags["prices"]
    origin = {field: where for field, where in file.origin.items()
              if field not in flags and field.removeprefix("batch.") not in batch_flags}
    return FileValues(path=file.path, run=run, batch=file.batch | batch_flags, origin=origin)


def invalid_option(err: ValidationError, flags: dict[str, str] = OPTION_FLAGS,
                   origin: FileValues | None = None) -> UsageError:
    """A pydantic error on a config as one line naming the option (or the config file's key) and
    the value given, e.g. `invalid --max-iters 0: Input should be greater than or equal to 1`."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    field = ".".join(loc[:2]) if loc[:1] == ["batch"] else (loc[0] if loc else "")
    if origin is not None and field in origin.origin:
        return UsageError(invalid_key(origin.path, origin.origin[field], first))
    value = first.get("input")
    shown = f" {value}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    flag = flags.get(field, f"--{field.removeprefix('batch.').replace('_', '-')}" if field else "option")
    return UsageError(f"invalid {flag}{shown}: {first['msg'].removeprefix('Value error, ')}")


def check_field(name: str, value: Any) -> Any:
    """`value` checked (and converted) as RunConfig's field `name` alone, for a command that
    takes one of the shared options without a whole RunConfig (`kagent eval --baseline`).
    Raises UsageError as `invalid_option` words it: the same line as optimize and batch."""
    field = RunConfig.model_fields[name]
    try:
        return getattr(create_model("Option", **{name: (field.annotation, field)})(**{name: value}), name)
    except ValidationError as err:
        raise invalid_option(err) from None


def choose_target(backend: str | None, device: str | None, here: bool = True) -> tuple[str, str]:
    """The backend and device a run uses: the given ones, checked, or the best this machine can
    run and time (by the registry's `default_rank`: triton on a GPU, cpp on a CPU), from the same
    probes as `kagent doctor`. UsageError, naming the option and value, for an unknown name, a
    device without its hardware, or a backend whose kernels cannot run here (CUDA kernels are
    only compile-checked without a GPU: every candidate would be `not_run`). `here=False`
    (evaluations on a Ray cluster) skips the checks of this machine's hardware."""
    from kagent.sandbox import BACKENDS, default_backend
    from kagent.sandbox import gpu_ready, probe_gpu, probe_torch, require_here

    if device is not None and device not in ("cpu", "cuda"):
        raise UsageError(f"invalid --device {device!r}: choose cpu or cuda")
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"invalid --backend {backend!r}: choose one of {backend_names()}")
    if here:
        require_here(backend or "cpp", device or "cpu")
    backend = backend or default_backend(device)
    device = device or BACKENDS[backend].default_device(gpu_ready(probe_gpu(), probe_torch()).can_run)
    if device not in BACKENDS[backend].devices:
        raise UsageError(f"invalid --device {device}: the {backend} backend runs on {', '.join(BACKENDS[backend].devices)}")
    if here:
        require_here(backend, device)
    return backend, device
