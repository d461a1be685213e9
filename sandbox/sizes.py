"""KernelBench tasks as they are: their sizes are module-level integer constants
(`batch_size = 16`, `dim = 16384`) read by `get_inputs()` and `get_init_inputs()` when called.

Two uses of those constants:
Sizes are changed in the file's source (its constant assignments rewritten before it runs), not
patched into a loaded module: a value derived at import (`input_shape = (dim,)`) must follow.

- **Shrinking** a task whose data do not fit (KernelBench's level-1 inputs are sized for GPUs:
  a median of about 2 GB): constants are halved, batch size first, until the task's inputs,
  parameters and outputs fit in a budget, each step checked by running the reference on the
  meta device (shapes only, no memory) with the same output ranks.
- **Shape variants**: the constants that shape the inputs but not the model are changed by a small
  odd amount, so a kernel that hard-codes the declared shapes fails even on tasks that ship no
  `get_extra_inputs()`.

What counts as a size: a module-level `NAME = <int literal>` of at least MIN_SIZE, or any
batch-like name (BATCH_NAMES) of at least 2. Small constants (kernel sizes, strides, paddings,
head counts) keep their values: changing them changes the operation, not its size.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import ModuleType

import torch

from kagent.sandbox.errors import TaskError
from kagent.sandbox.compare import tensors

MIN_SIZE = 16
BATCH_FLOOR = 8
BATCH_NAMES = re.compile(r"^(batch|batch_size|batchsize|bs|num_batches|n_batch)$", re.IGNORECASE)


def _constant_assignments(tree: ast.Module) -> list[tuple[str, ast.Constant]]:
    return [(target.id, node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and type(node.value.value) is int
            for target in node.targets if isinstance(target, ast.Name)]


def size_constants(path: str | Path) -> dict[str, int]:
    """The task file's scalable module-level size constants, {name: declared value}, in file order."""
    return {name: const.value for name, const in _constant_assignments(ast.parse(Path(path).read_text()))
            if const.value >= MIN_SIZE or (BATCH_NAMES.match(name) and const.value >= 2)}


def load_sized(path: str | Path, sizes: dict[str, int], module_name: str = "kagent_task") -> ModuleType:
    """Execute the task file as a module with its size constants set to `sizes` (the others as
    declared). Raises what the module raises at import, as importing it would."""
    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    for name, const in _constant_assignments(tree):
        if name in sizes:
            const.value = int(sizes[name])
    module = ModuleType(module_name)
    module.__file__ = str(path)
    exec(compile(tree, str(path), "exec"), module.__dict__)
    return module




def _meta_run(path: Path, sizes: dict[str, int]) -> tuple[int, list[int], str] | None:
    """(bytes of inputs, parameters, buffers and outputs; the outputs' ranks; repr of the init
    inputs) with `sizes`, from a run on the meta device; None when the reference cannot run."""
    try:
        module = load_sized(path, sizes, "kagent_task_sizing")
        with torch.device("meta"), torch.no_grad():
            init = list(module.get_init_inputs())
            model = module.Model(*init)
            inputs = module.get_inputs()
            outputs = tensors(model(*inputs))
    except Exception:
        return None
    held = tensors(list(inputs)) + list(model.parameters()) + list(model.buffers()) + outputs
    return sum(t.numel() * t.element_size() for t in held), [t.dim() for t in outputs], repr(init)


def footprint_bytes(path: str | Path, sizes: dict[str, int] | None = None) -> int | None:
    """Bytes the task holds per call (inputs, parameters, buffers, outputs) at `sizes` (default:
    as declared); None where the reference cannot run on the meta device."""
    run = _meta_run(Path(path), sizes or {})
    return run[0] if run else None


def shrink(path: str | Path, max_bytes: int) -> dict[str, int]:
    """Constants that make the task fit in `max_bytes`, {name: new value}; {} when it fits as
    declared or its size cannot be known on the meta device. Raises TaskError when no halving
    of its constants makes it fit."""
    path = Path(path)
    declared = size_constants(path)
    first = _meta_run(path, {})
    if first is None or first[0] <= max_bytes:
        return {}
    ranks, sizes, fixed, size = first[1], dict(declared), set(), first[0]
    while size > max_bytes:
        candidates = [n for n in sizes if n not in fixed and sizes[n] > 1]
        if not candidates:
            raise TaskError(f"{path}: needs {size / 2**20:.0f} MB per call even with its sizes shrunk "
                            f"({_describe(declared, sizes)}), over the {max_bytes / 2**20:.0f} MB limit")
        name = min(candidates, key=lambda n: _shrink_order(n, sizes[n]))
        trial = {**sizes, name: max(1, sizes[name] // 2)}
        run = _meta_run(path, trial)
        if run is None or run[1] != ranks:
            fixed.add(name)  # a shape constraint (divisibility, a matching dimension): leave it
            continue
        sizes, size = trial, run[0]
    return {name: value for name, value in sizes.items() if value != declared[name]}


def variant(path: str | Path, sizes: dict[str, int] | None = None) -> dict[str, int] | None:
    """A second set of sizes for the task at `sizes` (default: as declared), for the same model:
    every constant that shapes the inputs but not get_init_inputs() made one smaller (even
    sizes become odd), kept only where the reference still runs with the same output ranks and
    model. Returns the full set of changed constants, or None when no constant can vary."""
    path = Path(path)
    current = {**size_constants(path), **(sizes or {})}
    base = _meta_run(path, current)
    if base is None:
        return None
    changed: dict[str, int] = {}
    for name, value in current.items():
        if value < 3:
            continue
        run = _meta_run(path, {**current, **changed, name: value - 1})
        if run is not None and run[1] == base[1] and run[2] == base[2]:
            changed[name] = value - 1
    return {**current, **changed} if changed else None


def _shrink_order(name: str, value: int) -> tuple[int, int]:
    """Batch first, down to BATCH_FLOOR (a batch of 1 turns a GEMM into a GEMV); then the
    largest other constant, so shapes shrink evenly; the batch below its floor last."""
    if BATCH_NAMES.match(name):
        return (0 if value > BATCH_FLOOR else 2, -value)
    return (1, -value)


def _describe(declared: dict[str, int], sizes: dict[str, int]) -> str:
    return ", ".join(f"{n} {declared[n]}→{v}" for n, v in sizes.items() if v != declared[n]) or "nothing could shrink"
