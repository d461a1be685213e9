"""Option handling shared by `kagent optimize` and `kagent batch`: paths made absolute once, at
the command line, and every option value checked before anything is written.

Why absolute at once: a sandbox worker runs in its own directory, so a relative path that crosses
into it (runs/..., a task, a candidate) would be resolved a second time against the wrong one."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from kagent.sandbox.errors import UsageError

# RunConfig / BatchOptions field -> the command-line option it comes from.
OPTION_FLAGS = {"max_iters": "--max-iters", "max_cost": "--max-cost", "time_limit_s": "--time-limit",
                "concurrency": "--concurrency", "workers": "--workers", "executor": "--executor",
                "backend": "--backend", "device": "--device", "prices": "--prices",
                "llm_timeout_s": "--llm-timeout", "task_max_cost": "--task-max-cost",
                "stop_at_sol": "--stop-at-sol", "patience": "--patience", "baseline": "--baseline"}


def absolute(path: Path | None) -> Path | None:
    """`path` as an absolute path (`~` expanded, symlinks kept as given), or None. Relative
    paths are taken from the current directory, the one the user typed them in."""
    return None if path is None else Path(path).expanduser().absolute()


def invalid_option(err: ValidationError, flags: dict[str, str] = OPTION_FLAGS) -> UsageError:
    """A pydantic error on a config as one line naming the option and the value given, e.g.
    `invalid --max-iters 0: Input should be greater than or equal to 1`."""
    first = err.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    flag = flags.get(field, f"--{field.replace('_', '-')}" if field else "option")
    value = first.get("input")
    shown = f" {value}" if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    return UsageError(f"invalid {flag}{shown}: {first['msg']}")


def choose_target(backend: str | None, device: str | None, here: bool = True) -> tuple[str, str]:
    """The backend and device a run uses: the given ones, checked, or the best this machine can
    run and time (triton on a GPU, cpp on a CPU), from the same probes as `kagent doctor`.
    UsageError, naming the option and value, for an unknown name, a device without its
    hardware, or a backend whose kernels cannot run here (CUDA kernels are only compile-checked
    without a GPU: every candidate would be `not_run`). `here=False` (evaluations on a Ray
    cluster) skips the checks of this machine's hardware."""
    from kagent.sandbox.backends import BACKENDS
    from kagent.sandbox.probes import default_backend, gpu_ready, probe_gpu, probe_torch, require_here

    if device is not None and device not in ("cpu", "cuda"):
        raise UsageError(f"invalid --device {device!r}: choose cpu or cuda")
    if backend is not None and backend not in BACKENDS:
        raise UsageError(f"invalid --backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if here:
        require_here(backend or "cpp", device or "cpu")
    backend = backend or ("cpp" if device == "cpu" else default_backend())
    device = device or BACKENDS[backend].default_device(gpu_ready(probe_gpu(), probe_torch()).can_run)
    if device not in BACKENDS[backend].devices:
        raise UsageError(f"invalid --device {device}: the {backend} backend runs on {', '.join(BACKENDS[backend].devices)}")
    if here:
        require_here(backend, device)
    return backend, device
