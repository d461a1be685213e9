"""Kernel backends: one small interface, one file per backend, one registry.

A backend knows how to recognise its candidates, which devices it can run and time on, how to
install launch hooks in the worker (so the harness sees every kernel launch), how to classify
its own errors, and what static GPU facts it can report without running (ptxas resource use).
Adding a backend is one new file plus one line in `BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kagent.sandbox.errors import UsageError
from kagent.sandbox.models import KernelResourceUse


@dataclass
class StaticReport:
    """What a backend learned without running on a GPU: compile check and resource use."""

    ok: bool = True
    message: str = ""
    log: str = ""
    resources: list[KernelResourceUse] = field(default_factory=list)


class Backend:
    name: str = ""
    markers: tuple[str, ...] = ()  # source text that identifies a candidate of this backend
    devices: tuple[str, ...] = ("cpu", "cuda")

    def detect(self, source: str) -> bool:
        return any(marker in source for marker in self.markers)

    def default_device(self, gpu_available: bool) -> str:
        return "cuda" if gpu_available and "cuda" in self.devices else "cpu"

    def prepare(self, device: str) -> list[str]:
        """In the worker, before the candidate is imported: install launch hooks.
        Returns caveats for the verdict's notes."""
        return []

    def runs_on(self, device: str) -> bool:
        """False where the candidate can only be compile-checked (CUDA without a GPU)."""
        return True

    def timing_meaningful(self, device: str) -> bool:
        return True

    def classify(self, err: BaseException, device: str) -> tuple[str, str] | None:
        """(status, reason) for a backend-specific exception, or None for the default."""
        return None

    def violations(self) -> list[tuple[str, str]]:
        """What the backend refused on the candidate's behalf so far, as (reason, detail):
        judged like the audit hook's findings, even where the candidate caught the error."""
        return []

    def static_report(self, device: str) -> StaticReport | None:
        """After the candidate ran (or was imported, where it cannot run)."""
        return None


def _registry() -> dict[str, Backend]:
    from kagent.sandbox.backends.cpp import CppBackend
    from kagent.sandbox.backends.cuda import CudaBackend
    from kagent.sandbox.backends.triton import TritonBackend

    return {b.name: b for b in (TritonBackend(), CudaBackend(), CppBackend())}


BACKENDS: dict[str, Backend] = _registry()


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def detect_backend(source: str) -> str | None:
    # cpp and cuda candidates may import triton-free torch helpers; check the specific ones first.
    for name in ("cpp", "cuda", "triton"):
        if BACKENDS[name].detect(source):
            return name
    return None
