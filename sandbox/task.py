"""Task specs in KernelBench format, and the input sets a candidate is checked on.

A task file defines `class Model(torch.nn.Module)`, `get_inputs()` and `get_init_inputs()`.
It may also define `get_extra_inputs() -> dict[str, list]`: named extra input sets (other
shapes, edge values) that every candidate must also get right. kagent seeds torch before
calling `get_inputs` / `get_extra_inputs`, so both should draw fresh random values.

A task may be loaded at other sizes than it declares (sizes.py: its module-level size constants
shrunk to fit), and one without `get_extra_inputs()` gets a `shape:variant` input set drawn from
the same file loaded at a second set of sizes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch

from kagent.sandbox.compare import compare, flatten, same_values
from kagent.errors import TaskError, TaskTooLarge

REQUIRED = ("Model", "get_inputs", "get_init_inputs")
EXTRA_INPUTS_HOOK = "get_extra_inputs"
SHAPE_VARIANT = "shape:variant"  # the input set drawn at the task's variant sizes
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
    """A loaded KernelBench task file: its module, Model class and input functions."""

    path: Path
    module: ModuleType
    Model: type
    get_inputs: Callable[[], list]
    get_init_inputs: Callable[[], list]
    get_extra_inputs: Callable[[], dict[str, list]] | None
    variant_sizes: dict[str, int] | None = None  # every size constant of the shape:variant set
    variant_module: ModuleType | None = None  # the file loaded at variant_sizes, on first use

    def get_variant_inputs(self) -> list:
        """get_inputs() of the task file loaded at `variant_sizes` (loaded on first use: before
        any candidate code runs, when the input sets are first surveyed)."""
        from kagent.sandbox.sizes import load_sized

        if self.variant_module is None:
            self.variant_module = load_sized(self.path, self.variant_sizes or {}, "kagent_task_variant")
        return self.variant_module.get_inputs()

    @property
    def name(self) -> str:
        """The task's name: its file name without .py."""
        return self.path.stem


def load_task(path: str | Path, sizes: dict[str, int] | None = None, variant: dict[str, int] | None = None) -> Task:
    """Import and validate the shape of a task file, with its size constants set to `sizes`
    (sizes.load_sized) where given, and a shape:variant input set at `variant` where given and
    the task has no get_extra_inputs(). Raises TaskError with one line."""
    from kagent.sandbox.sizes import load_sized

    path = Path(path).resolve()
    try:
        module = load_sized(path, sizes, "kagent_task") if sizes else load_module(path, "kagent_task")
    except FileNotFoundError:
        raise TaskError(f"{path}: task file not found") from None
    except SyntaxError as err:
        raise TaskError(f"{path}: syntax error at line {err.lineno}: {err.msg}") from None
    except ModuleNotFoundError as err:
        if err.name is None or err.name.split(".")[0] in sys.builtin_module_names:
            raise TaskError(f"{path}: {_where(err, path)}import failed: {err}") from None
        top = err.name.split(".")[0]
        raise TaskError(f"{path}: {_where(err, path)}the task imports {top!r}, which is not installed: "
                        f"pip install {top}") from None
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
        variant_sizes=variant if variant and not hasattr(module, EXTRA_INPUTS_HOOK) else None,
    )


# torch reports a failed CPU allocation as a RuntimeError, not a MemoryError.
ALLOCATION_FAILED = re.compile(r"DefaultCPUAllocator: (can't allocate|not enough) memory|CUDA out of memory")
SCALARS = (bool, int, float)  # non-tensor inputs passed through unchanged (KernelBench level 1 uses them)


def _call(task: Task, what: str, fn: Callable, *args) -> Any:
    try:
        return fn(*args)
    except BaseException as err:
        if isinstance(err, MemoryError) or ALLOCATION_FAILED.search(str(err)):
            raise TaskTooLarge(f"{task.path}: {what} ran out of memory under the evaluation's memory limit "
                               f"(raise it with --memory-limit, or make the task smaller)") from None
        raise TaskError(f"{task.path}: {_where(err, task.path)}{what} raised {type(err).__name__}: {err}") from None


def _check_inputs(task: Task, where: str, inputs: Any) -> list:
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TaskError(f"{task.path}: {where} must return a non-empty list of tensors")
    for i, value in enumerate(inputs):
        if not isinstance(value, (torch.Tensor, *SCALARS)):
            raise TaskError(f"{task.path}: {where} input {i} is a {type(value).__name__}, not a tensor, int, float or bool")
    return list(inputs)


def init_inputs(task: Task) -> list:
    """The task's constructor arguments. Raises TaskError."""
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


def nbytes(values: list) -> int:
    """Bytes held by the tensors among `values` (nested lists included)."""
    return sum(v.nbytes for v in flatten(values) if isinstance(v, torch.Tensor))


def _fingerprint(values: list) -> str:
    """A digest of the shapes, dtypes and a strided sample of the values of an input set, to
    check that drawing it again gives the same set. A sample keeps it cheap on large inputs;
    what it misses the verifier does not (it draws every set on its own)."""
    digest = hashlib.blake2b(digest_size=16)
    for v in values:
        if not isinstance(v, torch.Tensor):
            digest.update(repr((type(v).__name__, v)).encode())
            continue
        digest.update(repr((tuple(v.shape), str(v.dtype))).encode())
        flat = v.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)].contiguous().cpu()
        digest.update(sample.view(torch.uint8).numpy() if sample.numel() else b"")
    return digest.hexdigest()


class InputsChanged(Exception):
    """An input set drawn again came out different from the first draw (something changed
    torch's RNG or the task's code since)."""


class InputSets(Mapping):
    """name -> inputs for every input set: fresh random inputs per seed, the task's extra sets,
    and a shifted distribution. Only the first set is kept (until `release(first=True)`); the
    others are drawn again, from their seeds, when asked for (so an evaluation never holds every
    set at once), and must come out as they did the first time (InputsChanged otherwise). `cast` is applied to every set
    handed out (the Triton interpreter's bf16 upcast). Raises TaskError on construction."""

    def __init__(self, task: Task, seeds: list[int], device: torch.device):
        self.task, self.seeds, self.device = task, list(seeds), device
        self.cast: Callable[[list], list] = lambda xs: xs
        self._prints: dict[str, str] = {}
        self._last: tuple[str, list] | None = None
        first = self._draw_seed(self.seeds[0])
        if not same_values(self._draw_seed(self.seeds[0]), first):
            raise TaskError(f"{task.path}: get_inputs() draws different inputs under the same torch seed "
                            "(random values must come from torch's RNG: torch.randn, not numpy or random)")
        self._first: list | None = first
        self._prints[f"seed:{self.seeds[0]}"] = _fingerprint(first)
        self._surveyed = False

    @property
    def first(self) -> list:
        """The first seed's set: kept once drawn, drawn again (and fingerprint-checked) after
        `release(first=True)`."""
        if self._first is None:
            first = self._draw_seed(self.seeds[0])
            if _fingerprint(first) != self._prints[f"seed:{self.seeds[0]}"]:
                raise InputsChanged(f"input set seed:{self.seeds[0]} came out different when drawn again")
            self._first = first
        return self._first

    def _survey(self) -> None:
        """Draw every other set once, for its name and fingerprint (on first need, so a task
        too large for memory is found on the first set alone)."""
        if self._surveyed:
            return
        self._surveyed = True
        for seed in self.seeds[1:]:
            self._prints[f"seed:{seed}"] = _fingerprint(self._draw_seed(seed))
        for name, inputs in self._draw_extras().items():
            self._prints[f"extra:{name}"] = _fingerprint(inputs)
        if self.task.variant_sizes:
            self._prints[SHAPE_VARIANT] = _fingerprint(self._draw_variant())
        self._prints[DISTRIBUTION_SHIFT[0]] = _fingerprint(self._shifted())

    def _draw_seed(self, seed: int) -> list:
        torch.manual_seed(seed)
        inputs = _check_inputs(self.task, "get_inputs()", _call(self.task, "get_inputs()", self.task.get_inputs))
        return [x.to(self.device) if isinstance(x, torch.Tensor) else x for x in inputs]

    def _draw_extras(self) -> dict[str, list]:
        if self.task.get_extra_inputs is None:
            return {}
        torch.manual_seed(self.seeds[0] + 1000)
        extra = _call(self.task, f"{EXTRA_INPUTS_HOOK}()", self.task.get_extra_inputs)
        if not isinstance(extra, dict):
            raise TaskError(f"{self.task.path}: {EXTRA_INPUTS_HOOK}() must return a dict of name -> inputs")
        return {name: [x.to(self.device) if isinstance(x, torch.Tensor) else x
                       for x in _check_inputs(self.task, f"{EXTRA_INPUTS_HOOK}()[{name!r}]", inputs)]
                for name, inputs in extra.items()}

    def _draw_variant(self) -> list:
        torch.manual_seed(self.seeds[0] + 2000)
        inputs = _call(self.task, f"get_inputs() at sizes {self.task.variant_sizes}", self.task.get_variant_inputs)
        return [x.to(self.device) if isinstance(x, torch.Tensor) else x
                for x in _check_inputs(self.task, "get_inputs() (shape variant)", inputs)]

    def _shifted(self) -> list:
        _, scale, shift = DISTRIBUTION_SHIFT
        if self._first is None:  # a fresh draw of the first set, shifted in place: no third copy
            shifted = self._draw_seed(self.seeds[0])
        else:
            shifted = [x.clone() if isinstance(x, torch.Tensor) else x for x in self._first]
        return [x.mul_(scale).add_(shift) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                for x in shifted]

    def _draw(self, name: str) -> list:
        if name == f"seed:{self.seeds[0]}":
            return self.first
        if name == DISTRIBUTION_SHIFT[0]:
            return self._shifted()
        if name.startswith("seed:"):
            inputs = self._draw_seed(int(name[5:]))
        elif name == SHAPE_VARIANT:
            inputs = self._draw_variant()
        else:
            inputs = self._draw_extras()[name[len("extra:"):]]
        if _fingerprint(inputs) != self._prints[name]:
            raise InputsChanged(f"input set {name} came out different when drawn again")
        return inputs

    def __getitem__(self, name: str) -> list:
        if name != f"seed:{self.seeds[0]}":
            self._survey()
        if name not in self._prints and name != f"seed:{self.seeds[0]}":
            raise KeyError(name)
        if self._last is None or self._last[0] != name:
            self._last = None  # let the previous set go before drawing the next
            self._last = (name, self._draw(name))
        return self.cast(self._last[1])

    def release(self, first: bool = False) -> None:
        """Let the last set handed out go (and with `first`, the first set too); each is drawn
        again when asked for."""
        self._last = None
        if first:
            self._first = None

    def __iter__(self) -> Iterator[str]:
        self._survey()
        return iter(list(self._prints))

    def __len__(self) -> int:
        self._survey()
        return len(self._prints)


def input_sets(task: Task, seeds: list[int], device: torch.device) -> InputSets:
    """Every input set of an evaluation, drawn lazily (InputSets). Raises TaskError."""
    return InputSets(task, seeds, device)


def _with_grad_off(task: Task, model: torch.nn.Module, inputs: list) -> Any:
    with torch.no_grad():
        return _call(task, "Model.forward", model, *[x.clone() if isinstance(x, torch.Tensor) else x for x in inputs])


def check_reference(task: Task, model: torch.nn.Module, sets: InputSets,
                    first_run: Callable[[Any], None] | None = None) -> Any:
    """Run the reference and make sure it can judge a candidate: its forward runs, gives the
    same answer twice on the same inputs (no dropout in training mode, no torch.rand), and
    depends on its inputs (not the same output on every seeded set). Returns its output on the
    first set. `first_run` is called with that output before any other set is drawn. Raises
    TaskError."""
    first = _with_grad_off(task, model, sets.first)
    if first_run is not None:
        first_run(first)
    names = [n for n in sets if n.startswith("seed:")]
    again = _with_grad_off(task, model, sets.first)
    # Loosely (bf16's bound): GPU atomics may reorder a sum between runs; dropout changes everything.
    differ = compare(again, first, tolerance_dtype=torch.bfloat16) if not same_values(again, first) else None
    if differ is not None and not differ.ok:
        raise TaskError(f"{task.path}: the reference is not deterministic: two runs of Model.forward on the same "
                        f"inputs differ ({differ.detail.split(';')[0]}); no candidate can be judged against it "
                        "(dropout in training mode, torch.rand in forward?)")
    del again
    if len(names) > 1 and all(same_values(_with_grad_off(task, model, sets[n]), first) for n in names[1:]):
        raise TaskError(f"{task.path}: the reference's output does not depend on its inputs (the same on every "
                        "input set): no kernel can be judged on it")
    return first


def validate_task(path: str | Path, sizes: dict[str, int] | None = None) -> Task:
    """Everything `kagent optimize` must know before it spends money: the task loads, builds,
    draws inputs and runs its reference, at `sizes` (sizes.TaskSizes.scaled) where given. Runs
    the (trusted) task in this process."""
    task = load_task(path, sizes)
    model = build_model(task, task.Model, init_inputs(task), 0, torch.device("cpu"))
    check_reference(task, model, input_sets(task, [0, 1], torch.device("cpu")))
    return task
