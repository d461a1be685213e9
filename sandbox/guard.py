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
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

# Modules a kernel never needs: compute outside the kernel, processes, or the harness itself.
FORBIDDEN_MODULES = {
    "numpy": "forbidden_import", "ctypes": "forbidden_import", "subprocess": "forbidden_import",
    "multiprocessing": "forbidden_import", "socket": "forbidden_import",
    "threading": "forbidden_import", "concurrent": "forbidden_import", "signal": "forbidden_import",
    "gc": "introspection", "inspect": "introspection", "traceback": "introspection",
    "agent": "forbidden_import", "sandbox": "forbidden_import",
}
ALLOWED_KAGENT_MODULES = {"sandbox.backends.cpp"}
INTROSPECTION_ATTRS = {
    "_getframe", "_current_frames", "f_back", "f_locals", "f_globals", "tb_frame", "gi_frame",
    "cr_frame", "settrace", "setprofile", "addaudithook", "get_referrers", "get_objects",
}
# Subprocesses a backend legitimately runs while building a candidate's kernels.
ALLOWED_EXECUTABLES = {
    "g++", "gcc", "c++", "cc", "clang", "clang++", "nvcc", "ninja", "ptxas", "cu++filt",
    "ldconfig", "which", "cicc", "fatbinary", "nvlink",
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


def scan_source(source: str, filename: str) -> tuple[str, str] | None:
    """Static check: the first forbidden import or introspection attribute, if any."""
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name in ALLOWED_KAGENT_MODULES or name.rsplit(".", 1)[0] in ALLOWED_KAGENT_MODULES:
                continue
            root = name.split(".")[0]
            if root in FORBIDDEN_MODULES:
                return FORBIDDEN_MODULES[root], f"line {node.lineno}: imports {name}"
        if isinstance(node, ast.Attribute) and node.attr in INTROSPECTION_ATTRS:
            return "introspection", f"line {node.lineno}: uses .{node.attr}"
        if isinstance(node, ast.Name) and node.id in {"__import__", "eval", "exec", "globals"}:
            return "forbidden_call", f"line {node.lineno}: uses {node.id}()"
    return None


class Guard:
    """The audit hook. Installed once per process (hooks cannot be removed); enforces only
    inside `watching()`, i.e. while the candidate's code runs."""

    def __init__(self, candidate_path: str, protected_files: set[str]):
        self.candidate_path = candidate_path
        self.protected = protected_files  # the harness and the task: frames a candidate must not see
        self.active = False
        self.violations: list[tuple[str, str]] = []
        self._busy = False

    def install(self) -> None:
        sys.addaudithook(self._hook)

    @contextmanager
    def watching(self):
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def _deny(self, reason: str, detail: str) -> None:
        self.violations.append((reason, detail))
        # Raise so the call fails; the violation is recorded even if the candidate catches it.
        raise PermissionError(f"kagent sandbox: {detail} is not allowed in a candidate")

    def _caller_is_candidate(self) -> bool:
        frame = sys._getframe(2)  # 0: this, 1: _hook, 2: the code that raised the event
        while frame is not None and frame.f_code.co_filename.endswith(FRAME_PROXIES):
            frame = frame.f_back
        return frame is not None and frame.f_code.co_filename == self.candidate_path

    def _hook(self, event: str, args: tuple) -> None:
        if not self.active or self._busy:
            return
        self._busy = True  # our own sys._getframe calls raise events too
        try:
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


def _functions(namespace: dict) -> dict[str, int]:
    return {name: id(value) for name, value in namespace.items() if callable(value)}


def integrity_snapshot(extra_modules: list) -> dict[str, dict[str, int]]:
    """Identities of what the harness relies on: torch's entry points, the timer, builtins."""
    targets = {
        "torch": vars(torch), "torch.Tensor": vars(torch.Tensor),
        "torch.nn.functional": vars(torch.nn.functional), "torch.nn.Module": vars(torch.nn.Module),
        "time": vars(time), "builtins": vars(builtins), "torch.cuda": vars(torch.cuda),
    }
    for module in extra_modules:
        targets[getattr(module, "__name__", str(module))] = vars(module)
    return {name: _functions(namespace) for name, namespace in targets.items()}


def integrity_changes(before: dict[str, dict[str, int]], extra_modules: list) -> list[str]:
    """Names whose object was replaced since the snapshot (new names are fine: lazy imports)."""
    after = integrity_snapshot(extra_modules)
    return [
        f"{space}.{name}"
        for space, names in before.items()
        for name, ident in names.items()
        if after.get(space, {}).get(name, ident) != ident
    ]


def protected_files(task_path: str | Path) -> set[str]:
    here = Path(__file__).parent
    return {str(p) for p in here.rglob("*.py")} | {str(Path(task_path).resolve())}
