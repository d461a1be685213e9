"""KernelBench tasks as they are: their sizes are module-level integer constants
(`batch_size = 16`, `dim = 16384`) read by `get_inputs()` and `get_init_inputs()` when called.

Sizes are changed in the file's source (its constant assignments rewritten before it runs), not
patched into a loaded module: a value derived at import (`input_shape = (dim,)`) must follow.
Two uses of those constants:

- **Shrinking** a task whose data do not fit (KernelBench's level-1 inputs are sized for GPUs:
  a median of about 2 GB): constants are halved, batch size first, until the task's inputs,
  parameters and outputs fit in a budget, each step checked by running the reference on the
  meta device (shapes only, no memory) with the same output ranks.
- **Shape variants**: the constants that shape the inputs but not the model are made one larger,
  so a kernel that hard-codes the declared shapes fails even on tasks that ship no
  `get_extra_inputs()`.

What counts as a size: a module-level `NAME = <int literal or integer arithmetic on literals>`
(`DIM = 4 * 1024 * 1024`) of at least MIN_SIZE, or any batch-like name (BATCH_NAMES) of at least 2. Small constants (kernel sizes, strides, paddings,
head counts) keep their values: changing them changes the operation, not its size.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

from kagent.errors import ErrorMessage, KagentError, TaskError, TaskTooLarge

MIN_SIZE = 16
BATCH_FLOOR = 8
BATCH_NAMES = re.compile(r"^(batch|batch_size|batchsize|bs|num_batches|n_batch)$", re.IGNORECASE)


_ARITHMETIC = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a ** b, ast.LShift: lambda a, b: a << b}


def _int_value(node: ast.expr) -> int | None:
    """The value of an int literal or of integer arithmetic on literals (`4 * 1024 * 1024`,
    `2 ** 20`), else None."""
    if isinstance(node, ast.Constant):
        return node.value if type(node.value) is int else None
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _int_value(node.left), _int_value(node.right)
        if left is None or right is None or (isinstance(node.op, (ast.Pow, ast.LShift)) and not 0 <= right <= 64):
            return None
        try:
            return _ARITHMETIC[type(node.op)](left, right)
        except ZeroDivisionError:
            return None
    return None


def _constant_assignments(tree: ast.Module) -> list[tuple[str, ast.Assign, int]]:
    """(name, its assignment, value) of every module-level `NAME = <int expression>`."""
    return [(target.id, node, value) for node in tree.body
            if isinstance(node, ast.Assign) and (value := _int_value(node.value)) is not None
            for target in node.targets if isinstance(target, ast.Name)]


def size_constants(path: str | Path) -> dict[str, int]:
    """The task file's scalable module-level size constants, {name: declared value}, in file order."""
    return {name: value for name, _, value in _constant_assignments(ast.parse(Path(path).read_text()))
            if value >= MIN_SIZE or (BATCH_NAMES.match(name) and value >= 2)}


def load_sized(path: str | Path, sizes: dict[str, int], module_name: str = "kagent_task") -> ModuleType:
    """Execute the task file as a module with its size constants set to `sizes` (the others as
    declared). Raises what the module raises at import, as importing it would."""
    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    for name, node, _ in _constant_assignments(tree):
        if name in sizes:
            node.value = ast.copy_location(ast.Constant(int(sizes[name])), node.value)
    module = ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        exec(compile(tree, str(path), "exec"), module.__dict__)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _meta_run(path: Path, sizes: dict[str, int]) -> tuple[int, list[int], str] | None:
    """(bytes of inputs, parameters, buffers and outputs; the outputs' ranks; repr of the init
    inputs) with `sizes`, from a run on the meta device; None when the reference cannot run."""
    import torch  # here: the CLI decides sizes (decide()) without importing torch

    from kagent.sandbox.compare import tensors

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
    every constant that shapes the inputs but not get_init_inputs() made one larger (an odd
    change: even sizes become odd), kept only where the reference still runs with the same
    output ranks and model. Larger, not smaller: a kernel that hard-codes the declared shapes
    then stays inside its buffers and leaves part of the output unwritten (`incorrect`), where
    a smaller shape would have it write past the end of the output (a crash, or worse, a
    corrupted heap). Returns the full set of constants, or None when no constant can vary."""
    path = Path(path)
    current = {**size_constants(path), **(sizes or {})}
    base = _meta_run(path, current)
    if base is None:
        return None
    changed: dict[str, int] = {}
    for name, value in current.items():
        run = _meta_run(path, {**current, **changed, name: value + 1})
        if run is not None and run[1] == base[1] and run[2] == base[2]:
            changed[name] = value + 1
    return {**current, **changed} if changed else None


def _shrink_order(name: str, value: int) -> tuple[int, int]:
    """Batch first, down to BATCH_FLOOR (a batch of 1 turns a GEMM into a GEMV); then the
    largest other constant, so shapes shrink evenly; the batch below its floor last."""
    if BATCH_NAMES.match(name):
        return (0 if value > BATCH_FLOOR else 2, -value)
    return (1, -value)


def _describe(declared: dict[str, int], sizes: dict[str, int]) -> str:
    return ", ".join(f"{n} {declared[n]}→{v}" for n, v in sizes.items() if v != declared[n]) or "nothing could shrink"


# Default --max-input-mb: on a CPU, KernelBench's GPU-sized tasks (a level-1 median of about
# 2 GB) shrink to this (256 MB made an honest element-wise kernel overrun the default 120 s
# evaluation timeout on a busy 2-core machine); on a GPU they run as declared (0: never shrink).
DEFAULT_MAX_INPUT_MB = {"cpu": 64, "cuda": 0}
# The harness holds about this many copies of a task's inputs and outputs beyond what the models
# allocate (harness.py, HARNESS_INPUT_COPIES): a task whose footprint times this exceeds the
# memory limit cannot be evaluated.
HARNESS_COPIES = 3
SIZING_TIMEOUT_S = 120.0


class TaskSizes(BaseModel):
    """The sizes a task is evaluated at, decided once per task (decide()) and sent with every
    EvalRequest: `scaled` the constants shrunk to fit (empty: as declared), `variant` the full
    set of constants of its `shape:variant` input set (None: no such set)."""

    scaled: dict[str, int] = {}
    variant: dict[str, int] | None = None
    footprint_mb: float | None = None  # inputs, parameters, buffers and outputs at `scaled`


def plan(path: str | Path, max_input_mb: int, memory_mb: int | None = None) -> TaskSizes:
    """The sizes to evaluate the task at (in this process: see decide()). `max_input_mb` 0 keeps
    the declared sizes. Raises TaskTooLarge where it cannot fit in `max_input_mb`, or its harness
    copies (HARNESS_COPIES) cannot fit in `memory_mb`; TaskError where no size fits."""
    path = Path(path)
    scaled = shrink(path, max_input_mb * 2**20) if max_input_mb > 0 else {}
    footprint = footprint_bytes(path, scaled)
    if memory_mb and footprint is not None and HARNESS_COPIES * footprint > memory_mb * 2**20:
        hint = "raise --memory-limit or --max-input-mb" if max_input_mb > 0 else \
            "raise --memory-limit, or let kagent shrink it (--max-input-mb N)"
        raise TaskTooLarge(f"{path}: the task holds {footprint / 2**20:.0f} MB of inputs, weights and outputs per call; "
                           f"with the harness's copies that is more than the memory limit of {memory_mb} MB: {hint}")
    has_extra = hasattr(load_sized(path, {}, "kagent_task_sizing"), "get_extra_inputs")
    return TaskSizes(scaled=scaled, variant=None if has_extra else variant(path, scaled),
                     footprint_mb=None if footprint is None else round(footprint / 2**20, 3))


class TaskFacts(BaseModel):
    """What `kagent optimize` learns about a task before it spends anything, found in a process
    without API keys (decide()): the sizes it is evaluated at, and the compute ops (ATen names)
    its reference runs there, which choose the Coder's optimisation guides."""

    sizes: TaskSizes
    ops: list[str] = []


class TaskFactsReply(BaseModel):
    """The sizing process's one line on stdout: the task's facts, or the KagentError that
    ended it (kagent.errors' one codec)."""

    facts: TaskFacts | None = None
    error: ErrorMessage | None = None


def decide(path: str | Path, max_input_mb: int, memory_mb: int | None = None, device: str = "cpu") -> TaskFacts:
    """In a separate process with the sandbox's environment (no API keys: the task's code runs
    there): plan() the sizes, check the reference can judge a candidate at them
    (task.validate_task) and trace its ops (trace.reference_ops). Raises TaskError or
    TaskTooLarge, one line naming the task."""
    from kagent.sandbox.supervisor import SERVER_CWD, SERVER_PYTHON, worker_env

    if device != "cpu":
        memory_mb = None  # a GPU task's tensors live in device memory, not under the host's limit
    command = [*SERVER_PYTHON, "kagent.sandbox.sizes", str(Path(path).resolve()), str(max_input_mb), str(memory_mb or 0)]
    env = worker_env(device)
    if "OMP_PROC_BIND" not in os.environ:  # bound for stable timings; nothing is timed here, and a
        env.pop("OMP_PROC_BIND", None)  # thread bound to a busy core waits for it (4 s -> 15 s at load 8)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=SERVER_CWD,
                              timeout=SIZING_TIMEOUT_S)
        reply = TaskFactsReply.model_validate_json(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        raise TaskError(f"{path}: checking the task took longer than {SIZING_TIMEOUT_S:g} s") from None
    except (ValueError, IndexError):  # pydantic's ValidationError is a ValueError
        raise TaskError(f"{path}: checking the task failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}") from None
    if reply.error is not None or reply.facts is None:
        raise reply.error.to_error() if reply.error else TaskError(f"{path}: checking the task returned no facts")
    return reply.facts


def main() -> None:
    """`python -m kagent.sandbox.sizes TASK MAX_INPUT_MB MEMORY_MB`: one JSON line on stdout,
    a TaskFactsReply."""
    path, max_input_mb, memory_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from kagent.sandbox.task import load_task, validate_task  # one-line errors for a task that does not import
    from kagent.sandbox.trace import reference_ops

    try:
        load_task(path)
        planned = plan(path, max_input_mb, memory_mb or None)
        validate_task(path, planned.scaled)
        reply = TaskFactsReply(facts=TaskFacts(sizes=planned, ops=reference_ops(path, planned.scaled)))
    except KagentError as err:
        reply = TaskFactsReply(error=ErrorMessage.of(err))
    print(reply.model_dump_json())


if __name__ == "__main__":
    main()
