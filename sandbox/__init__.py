"""The evaluation sandbox: loads a task, runs an untrusted candidate kernel in a separate
process, and returns a `Verdict` that says whether it is correct, honest and fast.

This module is the sandbox's public surface: `agent/` imports the sandbox only from here
(tests/test_layering.py checks it). Names are loaded on first use, so importing the package does
not import torch."""

from __future__ import annotations

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "BACKENDS": "backends",
    "backend_names": "backends",
    "default_backend": "backends",
    "detect_backend": "backends",
    "BackendName": "models",
    "DeviceName": "models",
    "EvalRequest": "models",
    "Verdict": "models",
    "gpu_ready": "probes",
    "probe_gpu": "probes",
    "probe_torch": "probes",
    "require_here": "probes",
    "DEFAULT_MEMORY_MB": "supervisor",
    "ENV_SECRET": "supervisor",
    "Sandbox": "supervisor",
    "pid_alive": "processes",
    "visible_gpus": "supervisor",
}
# Modules that are themselves part of the surface: the messages between processes (the Ray
# executor's reply), the doctor's probes, the task-size planner.
_MODULES = ("messages", "probes", "sizes")

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str):
    """Import a public name's module on first use (PEP 562)."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
