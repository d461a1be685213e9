"""Task specs in KernelBench format, and the input sets a candidate is checked on.

A task file defines `class Model(torch.nn.Module)`, `get_inputs()` and `get_init_inputs()`.
It may also define `get_extra_inputs() -> dict[str, list]`: named extra input sets (other
shapes, edge values) that every candidate must also get right. kagent seeds torch before
calling `get_inputs` / `get_extra_inputs`, so both should draw fresh random values.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch

from kagent.sandbox.errors import TaskError

REQUIRED = ("Model", "get_inputs", "get_init_inputs")
EXTRA_INPUTS_HOOK = "get_extra_inputs"
# Inputs scaled and shifted away from the task's own distribution: a kernel that only works
# for small values centred on zero (no max-subtraction, hard-coded ranges) fails here.
DISTRIBUTION_SHIFT = ("dist:scaled_shifted", 16.0, 4.0)


def _where(err: BaseException, path: Path) -> str:
    """'line N' of the deepest frame inside `path`, for one-line error messages."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == str(path)]
    return f"line {frames[-1].lineno}: " if frames else ""


def load_module(path: str | Path, name: str) -> ModuleType:
    """Import a Python file as a module. Raises FileNotFoundError, SyntaxError or whatever the
    module raises at import; callers turn those into their own errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@dataclass
class Task:
    path: Path
    module: ModuleType
    Model: type
    get_inputs: Callable[[], list]
    get_init_inputs: Callable[[], list]
    get_extra_inputs: Callable[[], dict[str, list]] | None

    @property
    def name(self) -> str:
        return self.path.stem


def load_task(path: str | Path) -> Task:
    """Import and validate the shape of a task file. Raises TaskError with one line."""
    path = Path(path).resolve()
    try:
        module = load_module(path, "kagent_task")
    except FileNotFoundError:
        raise TaskError(f"{path}: task file not found") from None
    except SyntaxError as err:
        raise TaskError(f"{path}: syntax error at line {err.lineno}: {err.msg}") from None
    except BaseException as err:
        raise TaskError(f"{path}: {_where(err, path)}import failed: {type(err).__name__}: {err}") from None
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise TaskError(f"{path}: not a KernelBench task: missing {', '.join(missing)}")
    if not (isinstance(module.Model, type) and issubclass(module.Model, torch.nn.Module)):
        raise TaskError(f"{path}: Model must be a subclass of torch.nn.Module")
    for name in ("get_inputs", "get_init_inputs", EXTRA_INPUTS_HOOK):
        if hasattr(module, name) and not callable(getattr(module, name)):
            raise TaskError(f"{path}: {name} must be a function")
    return Task(
        path=path,
        module=module,
        Model=module.Model,
        get_inputs=module.get_inputs,
        get_init_inputs=module.get_init_inputs,
        get_extra_inputs=getattr(module, EXTRA_INPUTS_HOOK, None),
    )


def _call(task: Task, what: str, fn: Callable, *args) -> Any:
    try:
        return fn(*args)
    except BaseException as err:
        raise TaskError(f"{task.path}: {_where(err, task.path)}{what} raised {type(err).__name__}: {err}") from None


def _check_inputs(task: Task, where: str, inputs: Any) -> list[torch.Tensor]:
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TaskError(f"{task.path}: {where} must return a non-empty list of tensors")
    for i, value in enumerate(inputs):
        if not isinstance(value, torch.Tensor):
            raise TaskError(f"{task.path}: {where} input {i} is a {type(value).__name__}, not a tensor")
    return list(inputs)


def init_inputs(task: Task) -> list:
    init = _call(task, "get_init_inputs()", task.get_init_inputs)
    if not isinstance(init, (list, tuple)):
        raise TaskError(f"{task.path}: get_init_inputs() must return a list")
    return list(init)


def build_model(task: Task, cls: type, init: list, seed: int, device: torch.device) -> torch.nn.Module:
    """Construct under a fixed seed, so Model and ModelNew draw the same initial weights.
    The task's own Model failing to build is a task error; a candidate's is the caller's."""
    torch.manual_seed(seed)
    if cls is task.Model:
        return _call(task, "Model(*get_init_inputs())", lambda: cls(*init).to(device).eval())
    return cls(*init).to(device).eval()


def input_sets(task: Task, seeds: list[int], device: torch.device) -> dict[str, list[torch.Tensor]]:
    """Fresh random inputs per seed, the task's extra sets, and a shifted distribution."""
    sets: dict[str, list[torch.Tensor]] = {}
    for seed in seeds:
        torch.manual_seed(seed)
        sets[f"seed:{seed}"] = _check_inputs(task, "get_inputs()", _call(task, "get_inputs()", task.get_inputs))
    if task.get_extra_inputs is not None:
        torch.manual_seed(seeds[0] + 1000)
        extra = _call(task, f"{EXTRA_INPUTS_HOOK}()", task.get_extra_inputs)
        if not isinstance(extra, dict):
            raise TaskError(f"{task.path}: {EXTRA_INPUTS_HOOK}() must return a dict of name -> inputs")
        for name, inputs in extra.items():
            sets[f"extra:{name}"] = _check_inputs(task, f"{EXTRA_INPUTS_HOOK}()[{name!r}]", inputs)
    name, scale, shift = DISTRIBUTION_SHIFT
    sets[name] = [x * scale + shift if x.is_floating_point() else x.clone() for x in sets[f"seed:{seeds[0]}"]]
    return {name: [x.to(device) for x in inputs] for name, inputs in sets.items()}


def check_reference(task: Task, model: torch.nn.Module, inputs: list[torch.Tensor]) -> Any:
    """Run the reference once; a task whose forward raises is a task error."""
    with torch.no_grad():
        return _call(task, "Model.forward", model, *inputs)


def validate_task(path: str | Path) -> Task:
    """Everything `kagent optimize` must know before it spends money: the task loads, builds,
    draws inputs and runs its reference. Runs the (trusted) task in this process."""
    task = load_task(path)
    model = build_model(task, task.Model, init_inputs(task), 0, torch.device("cpu"))
    sets = input_sets(task, [0], torch.device("cpu"))
    check_reference(task, model, next(iter(sets.values())))
    return task
