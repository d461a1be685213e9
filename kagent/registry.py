"""Lazy registry entries shared by the seams whose implementations may need optional packages
(providers, executors): an entry is the class itself, or "module:Class", imported on first use
so that `--help` and the other entries work without it."""

from __future__ import annotations

import importlib


def load_entry(entry: str | type) -> type:
    """The class an entry names: `entry` itself, or `module:Class` imported now. Raises
    ImportError (the module or the name cannot be loaded, AttributeError folded in)."""
    if not isinstance(entry, str):
        return entry
    module, _, attr = entry.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except AttributeError as err:
        raise ImportError(str(err)) from None
