"""Kernel launch log of the current process. Backends wrap every launch of a candidate's
kernel in `launching(name)`, so the harness can prove the custom kernel actually ran for the
test inputs, and can tell a backend's own plumbing from the candidate's PyTorch calls."""

from collections import Counter
from contextlib import contextmanager

_counts: Counter = Counter()
_failures: list[str] = []
_depth = 0


_opaque = 0


@contextmanager
def launching(kernel: str, opaque: bool = False):
    """Record one launch. `opaque`: ATen ops run inside it are the backend's own plumbing (the
    Triton interpreter's argument copies), not the candidate's; a C++ extension is not opaque,
    since its host code could call torch to do the work."""
    global _depth, _opaque
    if _depth == 0:
        _counts[kernel] += 1
    _depth += 1
    _opaque += opaque
    try:
        yield
    except BaseException as err:
        # A failed launch: if the forward still returns, the candidate swallowed the error.
        if _depth == 1:
            _failures.append(f"{kernel}: {type(err).__name__}: {err}")
        raise
    finally:
        _depth -= 1
        _opaque -= opaque


def in_opaque_launch() -> bool:
    """Whether a launch whose inner calls must not be counted (the Triton interpreter) is running."""
    return _opaque > 0


def reset() -> None:
    """Forget the launches and failures counted so far."""
    _counts.clear()
    _failures.clear()


def snapshot() -> tuple[dict[str, int], list[str]]:
    """The launches counted so far (kernel name to count) and the failures seen."""
    return dict(_counts), list(_failures)
