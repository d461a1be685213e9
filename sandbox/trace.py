"""Run-time trace of what a candidate's forward did: the ATen ops it called, the storages it
allocated, and the custom kernels it launched.

A regex over the source cannot tell `torch.matmul` in a dead branch from one that does the
work, nor see ops called from a C++ extension; a TorchDispatchMode sees every ATen op that
actually executes, from Python or C++.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kagent.sandbox import launches

# Ops that allocate, reshape, view or move memory without computing anything from it. A
# candidate may call these; any other ATen op in its forward is PyTorch doing the work.
ALLOWED_OPS = frozenset(
    """
    empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros
    ones ones_like new_ones full full_like new_full fill fill_ zero_ scalar_tensor
    view _unsafe_view _reshape_alias reshape as_strided t transpose permute unsqueeze squeeze
    expand expand_as select slice narrow split split_with_sizes unbind chunk detach alias
    lift_fresh contiguous clone copy_ _to_copy to _local_scalar_dense resize_ view_as
    unflatten flatten movedim sym_size sym_stride sym_numel sym_storage_offset is_same_size
    _has_compatible_shallow_copy_type
    """.split()
)


# Ops that return uninitialised memory: `traced_call(fill=...)` decides what that memory holds.
UNINITIALISED_OPS = frozenset("empty empty_like empty_strided new_empty new_empty_strided".split())


def op_name(func) -> str:
    """The ATen op name of a dispatched function (`aten.add.Tensor` -> `add`)."""
    return func._overloadpacket.__name__


@dataclass
class ForwardTrace:
    """What one traced forward call did: ATen compute ops, storages it allocated, kernel launches and
    launch failures."""

    compute_ops: list[str] = field(default_factory=list)
    allocated: set[int] = field(default_factory=set)  # data_ptr of storages created in the call
    launches: dict[str, int] = field(default_factory=dict)
    launch_failures: list[str] = field(default_factory=list)


class _Recorder(TorchDispatchMode):
    def __init__(self, trace: ForwardTrace, fill: Callable[[torch.Tensor], None] | None):
        super().__init__()
        self.trace = trace
        self.fill = fill

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if launches.in_opaque_launch():
            return out  # a backend's own plumbing inside a launch (e.g. the Triton interpreter)
        name = op_name(func)
        if name not in ALLOWED_OPS and name not in self.trace.compute_ops:
            self.trace.compute_ops.append(name)
        if not any(ret.alias_info for ret in func._schema.returns):  # views and in-place ops alias
            for value in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(value, torch.Tensor) and value.device.type != "meta" and value.layout == torch.strided:
                    self.trace.allocated.add(value.untyped_storage().data_ptr())
                    if self.fill is not None and name in UNINITIALISED_OPS:
                        self.fill(value)
        return out


def traced_call(fn, *args, fill: Callable[[torch.Tensor], None] | None = None) -> tuple[object, ForwardTrace]:
    """Call fn(*args) recording ops, allocations and kernel launches. `fill`, if given, writes
    every uninitialised tensor the call allocates (torch.empty and kin) before the call sees
    it: what stale memory holds is then the harness's choice, not the allocator's."""
    trace = ForwardTrace()
    launches.reset()
    try:
        with _Recorder(trace, fill):
            out = fn(*args)
    finally:
        trace.launches, trace.launch_failures = launches.snapshot()
    return out, trace


class _OpNames(TorchDispatchMode):
    def __init__(self, names: list[str]):
        super().__init__()
        self.names = names

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = op_name(func)
        if name not in ALLOWED_OPS and name not in self.names:
            self.names.append(name)
        return func(*args, **(kwargs or {}))


def compute_ops(fn, *args) -> list[str]:
    """The ATen compute ops (overload-packet names such as "addmm", "_softmax", in first-call
    order, each once) that `fn(*args)` executes, memory plumbing (ALLOWED_OPS) left out. For
    the trusted reference: what kind of work a kernel for it must do."""
    names: list[str] = []
    with torch.no_grad(), _OpNames(names):
        fn(*args)
    return names


def reference_ops(task_path: str, sizes: dict[str, int] | None = None) -> list[str]:
    """The compute ops the task's reference runs on its first input set (at `sizes`, as in
    load_task), built on the CPU as `validate_task` does (trusted task code). Raises TaskError
    like it."""
    from kagent.sandbox.task import build_model, init_inputs, input_sets, load_task

    task = load_task(task_path, sizes)
    model = build_model(task, task.Model, init_inputs(task), 0, torch.device("cpu"))
    return compute_ops(model, *next(iter(input_sets(task, [0], torch.device("cpu")).values())))
