"""Guards around untrusted candidate code running inside the worker process.

Three layers, each reporting a violation as (reason, detail):
- a static scan of the candidate's source for imports and attributes that only a cheat needs;
- a Python audit hook, active while candidate code runs, that refuses process creation,
  sockets, and the introspection (frames, gc) a candidate would need to reach the harness;
- an integrity snapshot of torch, the timer and the harness, compared after candidate code ran.
The process boundary (executor.py) remains the real wall; these make cheating visible.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from kagent.sandbox.backends import candidate_imports

# Modules a kernel never needs: compute outside the kernel, processes, or the harness itself.
FORBIDDEN_MODULES = {
    "numpy": "forbidden_import", "ctypes": "forbidden_import", "subprocess": "forbidden_import",
    "multiprocessing": "forbidden_import", "socket": "forbidden_import",
    "threading": "forbidden_import", "_thread": "forbidden_import", "concurrent": "forbidden_import",
    "signal": "forbidden_import",
    "gc": "introspection", "inspect": "introspection", "traceback": "introspection",
    "kagent": "forbidden_import", "agent": "forbidden_import", "sandbox": "forbidden_import",
}
# What a candidate may take from kagent is each backend's `candidate_imports` (the cpp backend's
# loader), by name: the module itself would hand over what it imports (ctypes, the launch counter).
INTROSPECTION_ATTRS = {
    "_getframe", "_current_frames", "f_back", "f_locals", "f_globals", "tb_frame", "gi_frame",
    "cr_frame", "settrace", "setprofile", "addaudithook", "get_referrers", "get_objects",
    "__globals__",  # a function's module namespace: load_cpp's holds ctypes and the launch counter
}
# torch internals that switch off or bypass the dispatch mode tracing the forward's ATen ops:
# compute run under them is invisible to the trace.
TRACE_BYPASS_NAMES = {
    "_python_dispatch", "_disable_current_modes", "_pop_mode", "_pop_mode_temporarily",
    "_pop_torch_dispatch_mode", "_push_on_torch_dispatch_stack", "_get_dispatch_stack_at",
    "_len_torch_dispatch_stack", "_set_dispatch_mode", "_unset_dispatch_mode",
    "_DisableTorchDispatch", "_ExcludeDispatchKeyGuard", "_EnablePythonDispatcher",
    "_DisablePythonDispatcher", "DisableTorchFunction", "DisableTorchFunctionSubclass",
}
# Subprocesses a backend legitimately runs while building a candidate's kernels.
ALLOWED_EXECUTABLES = {
    "g++", "gcc", "c++", "cc", "clang", "clang++", "nvcc", "ninja", "ptxas", "cu++filt",
    "ldconfig", "which", "cicc", "fatbinary", "nvlink", "nm",
}
# Audit events that a candidate may never trigger.
FORBIDDEN_EVENTS = {
    "os.fork": "forbidden_call", "os.forkpty": "forbidden_call", "os.system": "forbidden_call",
    "os.exec": "forbidden_call", "os.posix_spawn": "forbidden_call", "os.spawn": "forbidden_call",
    "os.kill": "forbidden_call", "os.killpg": "forbidden_call", "socket.connect": "forbidden_call",
    "socket.bind": "forbidden_call", "sys.settrace": "introspection",
    "sys.setprofile": "introspection", "sys._current_frames": "introspection",
    "gc.get_objects": "introspection", "gc.get_referrers": "introspection",
    "gc.get_referents": "introspection", "sys.addaudithook": "patched_harness",
}
# Library code that hands frames to its caller: a call from here counts as the caller's.
FRAME_PROXIES = ("inspect.py", "traceback.py")
# Events judged even outside `watching()` when candidate code is on the stack: the harness
# itself calls into candidate objects (overridden nn.Module methods, returned containers).
JUDGED_EVENTS = set(FORBIDDEN_EVENTS) | {"subprocess.Popen", "sys._getframe", "object.__getattr__", "open"}
# The process's own memory as a file: everything in the worker, the verdict's signing key too.
PROCESS_MEMORY = re.compile(r"^/proc/\d+(/task/\d+)?/(mem|pagemap)$")


def scan_source(source: str, filename: str) -> tuple[str, str] | None:
    """Static check: the first forbidden import or introspection attribute, if any."""
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            allowed = candidate_imports().get(node.module)
            if allowed is None:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                names = [f"{node.module}.{alias.name}" for alias in node.names if alias.name not in allowed]
        for name in names:
            root = name.split(".")[0]
            if root in FORBIDDEN_MODULES:
                return FORBIDDEN_MODULES[root], f"line {node.lineno}: imports {name}"
            if TRACE_BYPASS_NAMES & set(name.split(".")):
                return "patched_harness", f"line {node.lineno}: imports {name}, which hides torch ops from the harness"
        if isinstance(node, ast.Attribute) and node.attr in INTROSPECTION_ATTRS:
            return "introspection", f"line {node.lineno}: uses .{node.attr}"
        used = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if used in TRACE_BYPASS_NAMES:
            return "patched_harness", f"line {node.lineno}: uses {used}, which hides torch ops from the harness"
        if isinstance(node, ast.Name) and node.id in {"__import__", "eval", "exec", "globals"}:
            return "forbidden_call", f"line {node.lineno}: uses {node.id}()"
    return None


class Guard:
    """The audit hook. Installed once per process (hooks cannot be removed); enforces only
    inside `watching()`, i.e. while the candidate's code runs."""

    def __init__(self, candidate_path: str, protected_files: set[str],
                 refused_elsewhere: Callable[[], list[tuple[str, str]]] = list):
        self.candidate_path = candidate_path
        self.protected = protected_files  # the harness and the task: frames a candidate must not see
        self.active = False
        self.denied: list[tuple[str, str]] = []
        # What was refused below Python (the backend's checks, the OS's filter): judged alike.
        self.refused_elsewhere = refused_elsewhere
        self._busy = False

    @property
    def violations(self) -> list[tuple[str, str]]:
        """Every (reason, detail) refused so far, the audit hook's first."""
        return self.denied + self.refused_elsewhere()

    def install(self) -> None:
        """Install the audit hook (once per process: audit hooks cannot be removed)."""
        sys.addaudithook(self._hook)

    @contextmanager
    def watching(self):
        """Context manager: refuse forbidden events while the candidate's code runs."""
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def _deny(self, reason: str, detail: str) -> None:
        self.denied.append((reason, detail))
        # Raise so the call fails; the violation is recorded even if the candidate catches it.
        raise PermissionError(f"kagent sandbox: {detail} is not allowed in a candidate")

    def _caller_is_candidate(self) -> bool:
        """Whether the code that raised the event is the candidate's (through a frame proxy)."""
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:  # this hook's own frames
            frame = frame.f_back
        while frame is not None and frame.f_code.co_filename.endswith(FRAME_PROXIES):
            frame = frame.f_back
        return frame is not None and frame.f_code.co_filename == self.candidate_path

    def _candidate_on_stack(self) -> bool:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename == self.candidate_path:
                return True
            frame = frame.f_back
        return False

    def _hook(self, event: str, args: tuple) -> None:
        if self._busy or not (self.active or event in JUDGED_EVENTS):
            return
        self._busy = True  # our own sys._getframe calls raise events too
        try:
            if self.active or self._candidate_on_stack():
                self._check(event, args)
        finally:
            self._busy = False

    def _check(self, event: str, args: tuple) -> None:
        if event in FORBIDDEN_EVENTS:
            self._deny(FORBIDDEN_EVENTS[event], event)
        elif event == "subprocess.Popen":
            executable = os.path.basename(str(args[0] or (args[1][0] if args[1] else "")))
            if executable not in ALLOWED_EXECUTABLES:
                self._deny("forbidden_call", f"running {executable}")
        elif event == "sys._getframe":
            frame = args[0]
            if self._caller_is_candidate() or frame.f_code.co_filename in self.protected:
                self._deny("introspection", "sys._getframe")
        elif event == "object.__getattr__" and args[1] in {"tb_frame", "gi_frame", "cr_frame", "ag_frame"}:
            if self._caller_is_candidate():
                self._deny("introspection", f"reading {args[1]}")
        elif event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if PROCESS_MEMORY.match(path):
                self._deny("introspection", f"opening {path}")


def _functions(namespace: dict, constants: bool = False) -> dict[str, int | str]:
    found: dict[str, int | str] = {name: id(value) for name, value in namespace.items() if callable(value)}
    if constants:  # the harness's UPPER_CASE settings: tolerances, allowed ops, forbidden names
        found.update({name: repr(value) for name, value in namespace.items() if name.isupper()})
    return found


def _harness_namespaces() -> dict[str, tuple[dict, bool]]:
    """kagent's own modules and their classes: unimportable for a candidate, but reachable
    through sys.modules."""
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "kagent" or name.startswith("kagent.")):
            continue
        found[name] = (vars(module), True)
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = (vars(value), False)
    return found


def _label(target) -> str:
    """A module's name; a class's public dotted name (torch.nn.Linear, not
    torch.nn.modules.linear.Linear) where torch.nn exports it."""
    if isinstance(target, type) and getattr(torch.nn, target.__name__, None) is target:
        return f"torch.nn.{target.__name__}"
    return getattr(target, "__name__", str(target))


def integrity_snapshot(extra_modules: list) -> dict[str, dict[str, int | str]]:
    """Identities of what the harness relies on: torch's entry points, the timer, builtins,
    the harness itself (functions, classes' methods, and its settings' values)."""
    targets = {
        "torch": (vars(torch), False), "torch.Tensor": (vars(torch.Tensor), False),
        "torch.nn.functional": (vars(torch.nn.functional), False),
        "torch.nn.Module": (vars(torch.nn.Module), False), "time": (vars(time), False),
        "builtins": (vars(builtins), False), "torch.cuda": (vars(torch.cuda), False),
        **_harness_namespaces(),
    }
    for module in extra_modules:
        targets[_label(module)] = (vars(module), False)
    return {name: _functions(namespace, constants) for name, (namespace, constants) in targets.items()}


def integrity_changes(before: dict[str, dict[str, int | str]], extra_modules: list) -> list[str]:
    """Names whose object was replaced since the snapshot (new names are fine: lazy imports)."""
    after = integrity_snapshot(extra_modules)
    return [
        f"{space}.{name}"
        for space, names in before.items()
        for name, ident in names.items()
        if after.get(space, {}).get(name, ident) != ident
    ]


def protected_files(task_path: str | Path) -> set[str]:
    """Files a candidate may not open for writing: kagent's sandbox sources and the task file."""
    here = Path(__file__).parent
    return {str(p) for p in here.rglob("*.py")} | {str(Path(task_path).resolve())}
