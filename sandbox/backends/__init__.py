"""Kernel backends: one small interface, one file per backend, one registry.

A backend knows how to recognise its candidates, which devices it can run and time on, how to
install launch hooks in the worker (so the harness sees every kernel launch), how to classify
its own errors, and what static GPU facts it can report without running (ptxas resource use).
Adding a backend is one new file plus one line in `BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kagent.errors import UsageError
from kagent.sandbox.models import KernelResourceUse


@dataclass
class StaticReport:
    """What a backend learned without running on a GPU: compile check and resource use."""

    ok: bool = True
    message: str = ""
    log: str = ""
    resources: list[KernelResourceUse] = field(default_factory=list)


class Backend:
    """One kind of kernel source. Everything the rest of kagent needs to know about a backend is
    here: `--backend` validation and help, `detect_backend`, the default choice and the guard's
    allow-list read these attributes from the `BACKENDS` registry.

    name: the `--backend` value. markers: source text that identifies a candidate.
    devices: where it runs ("cpu", "cuda"). detect_order: detection tries lower values first
    (a backend whose markers may also appear in another's candidates goes last).
    default_rank: the automatic choice prefers lower values among the backends that can time
    kernels here; None: never chosen unless asked for. candidate_imports: names a candidate may
    import from kagent modules ({module: names}), the only kagent names the guard lets through.
    summary: one line for the Coder on what a candidate is (how its kernels are written and built).
    guide: the Coder's guide, a prompt template under prompts/ (`"backend_cpp"` for
    prompts/backend_cpp.md), or None: prompts/backend_generic.md, rendered from the facts above
    (name, summary, devices, markers, candidate_imports). A new backend needs no prompt file."""

    name: str = ""
    summary: str = ""
    guide: str | None = None
    markers: tuple[str, ...] = ()  # source text that identifies a candidate of this backend
    devices: tuple[str, ...] = ("cpu", "cuda")
    detect_order: int = 1
    default_rank: int | None = None
    candidate_imports: dict[str, frozenset[str]] = {}

    def detect(self, source: str) -> bool:
        """Whether `source` (a candidate's text) looks like one of this backend's."""
        return any(marker in source for marker in self.markers)

    def default_device(self, gpu_available: bool) -> str:
        """The device a run uses when none is given: the GPU where this backend can use one."""
        return "cuda" if gpu_available and "cuda" in self.devices else "cpu"

    def prepare(self, device: str) -> list[str]:
        """In the worker, before the candidate is imported: install launch hooks.
        Returns caveats for the verdict's notes."""
        return []

    def runs_on(self, device: str) -> bool:
        """False where the candidate can only be compile-checked (CUDA without a GPU)."""
        return True

    def timing_meaningful(self, device: str) -> bool:
        """False where times are not a performance measurement (Triton's CPU interpreter)."""
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

    # The registry: one line per backend. Its order is the order help and messages list them in.
    return {b.name: b for b in (TritonBackend(), CudaBackend(), CppBackend())}


BACKENDS: dict[str, Backend] = _registry()


def backend_names(last: str = ", ") -> str:
    """The registered names for help and messages: "triton, cuda, cpp" (or "triton, cuda or cpp"
    with last=" or ")."""
    names = list(BACKENDS)
    return ", ".join(names[:-1]) + last + names[-1] if len(names) > 1 else "".join(names)


def get_backend(name: str) -> Backend:
    """The registered backend `name`; UsageError naming the choices for an unknown one."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}: choose one of {backend_names()}")
    return BACKENDS[name]


def detect_backend(source: str) -> str | None:
    """The backend whose markers `source` contains, tried in `detect_order`; None if none does."""
    for backend in sorted(BACKENDS.values(), key=lambda b: b.detect_order):
        if backend.detect(source):
            return backend.name
    return None


def default_backend(device: str | None = None) -> str:
    """The backend a run uses when none is given: by `default_rank`, the first that runs on
    `device` (any, if None), times meaningfully there, and can time kernels on this machine
    (`probes.support`, what `kagent doctor` reports); else the last of those candidates."""
    from kagent.sandbox.probes import support

    ranked = sorted((b for b in BACKENDS.values() if b.default_rank is not None
                     and (device is None or (device in b.devices and b.timing_meaningful(device)))),
                    key=lambda b: b.default_rank)
    if not ranked:
        raise UsageError(f"no backend runs on {device}: pass --backend")
    return next((b.name for b in ranked if support(b.name).can_time), ranked[-1].name)


def candidate_imports() -> dict[str, frozenset[str]]:
    """{kagent module: names} a candidate may import, merged over every registered backend."""
    allowed: dict[str, frozenset[str]] = {}
    for backend in BACKENDS.values():
        for module, names in backend.candidate_imports.items():
            allowed[module] = allowed.get(module, frozenset()) | frozenset(names)
    return allowed
