"""Everything that crosses the sandbox's process boundary: the request sent to a worker and
the verdict that comes back."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# `error`: kagent, the machine, the task or the user's input failed, not the kernel (see README:
# reasons `interrupted`, `worker_failed`, `harness_error`, `task_error`, `usage_error`,
# `task_too_large`); never a candidate's fitness.
Status = Literal[
    "correct", "incorrect", "compile_error", "runtime_error", "timeout", "rejected", "not_run", "error"
]


def _registered_backend(name: str) -> str:
    from kagent.sandbox.backends import BACKENDS, backend_names  # here: the backends import this module

    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {backend_names()}")
    return name


# A name in the backend registry (sandbox/backends/__init__.py), read when a value is validated.
BackendName = Annotated[str, AfterValidator(_registered_backend)]
DeviceName = Literal["cpu", "cuda"]
# How isolated the candidate's process was (executor.py, confine.py):
#   "namespaces"     its own PID and mount namespace, every mount read-only but its workdir and
#                    the build cache, no capabilities: it sees and can change nothing of kagent's;
#   "pid_namespace"  its own PID namespace, but the filesystem could not be locked (the kernel
#                    refused the remount): it can write wherever kagent's user can;
#   "none"           no namespace (refused, or KAGENT_SANDBOX_NAMESPACES=0): it sees every
#                    process of the machine and can write wherever kagent's user can.
# The limits on time, memory and file size hold in all three, and so does the seccomp filter
# refusing process creation to C++ candidates (where it cannot be installed, the notes say so).
Isolation = Literal["namespaces", "pid_namespace", "none"]


class EvalRequest(BaseModel):
    """What one worker evaluates. Paths are absolute."""

    model_config = ConfigDict(extra="forbid")

    task_path: str
    candidate_path: str
    backend: BackendName
    device: DeviceName
    seeds: list[int] = [0, 1, 2]
    # Timing: warm-up calls, then adaptive repetitions bounded by a time budget per side.
    warmup: int = 5
    min_runs: int = 10
    max_runs: int = 1000
    timing_budget_s: float = 0.4
    allow_tf32: bool = False
    static_analysis: bool = True  # ahead-of-time GPU compile for resource use where no GPU
    # Also time the reference under torch.compile (sandbox/compiled.py), compiled once per task
    # by the verifier before the candidate's clock starts: compile_time_ms, speedup_vs_compile.
    compile_baseline: bool = False
    # The task's module-level size constants as evaluated (sizes.TaskSizes, decided once per
    # task): those shrunk to fit ({}: as declared), and every constant of its shape:variant
    # input set (None: no such set).
    scaled_sizes: dict[str, int] = {}
    variant_sizes: dict[str, int] | None = None


class TimingStats(BaseModel):
    """Timings of one side (reference or candidate) over `runs` timed calls, in milliseconds per call."""

    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p20_ms: float
    p80_ms: float
    runs: int


class KernelResourceUse(BaseModel):
    """Static resource use of one kernel compiled for a GPU target (ptxas -v)."""

    kernel: str
    target: str
    registers: int | None = None
    shared_memory_bytes: int | None = None
    spill_stores_bytes: int | None = None
    spill_loads_bytes: int | None = None
    error: str | None = None


class Artifacts(BaseModel):
    """Evidence that feeds the next Coder and Judge prompts."""

    compile_log: str | None = None
    traceback: str | None = None
    stderr_tail: str | None = None
    torch_ops: list[str] = []  # ATen compute ops seen in the candidate's forward
    launches: dict[str, int] = {}  # custom kernel launches per forward call
    resources: list[KernelResourceUse] = []
    notes: list[str] = []  # caveats: interpreter timing, bf16 upcast, not run, ...
    reference_profile: str | None = None  # where eager PyTorch spends its time (torch.profiler)
    ncu: str | None = None  # Nsight Compute metrics per candidate kernel (GPU with ncu only)


class OutputCheck(BaseModel):
    """The verifier's judgement of the outputs behind a `correct` verdict (verifier.py)."""

    ok: bool
    input_sets: list[str] = []  # the input sets it checked, in order
    failed_input_set: str | None = None
    reason: str | None = None  # the comparison's reason where an output was off (compare.Comparison)
    detail: str = ""
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    peak_rss_mb: float | None = None  # the verifier's peak resident memory for this evaluation (MemoryUse)


class MemoryUse(BaseModel):
    """What an evaluation held in memory: each process's peak resident set (VmHWM, reset when
    the evaluation begins) above its resident set then (the imported libraries), in MB, and the
    task's own inputs and outputs on one input set. None where not measured (no /proc)."""

    worker_peak_mb: float | None = None  # the candidate's process: the harness, both models, the candidate's allocations
    verifier_peak_mb: float | None = None  # the verifier: the reference, its timing and its check
    task_io_mb: float | None = None


class Verdict(BaseModel):
    """The sandbox's judgement of one candidate. status: correct, incorrect, rejected, compile_error,
    runtime_error, timeout, not_run or error (kagent failed, not the kernel); reason: a
    machine-readable word; message: one line. Errors are absolute and relative; times are in ms;
    speedup is the reference's time over the candidate's (None when not measured); artifacts
    hold the evidence for the Judge and the Coder."""

    status: Status
    reason: str  # machine-readable: "ok", "mismatch", "torch_op_in_forward", ...
    message: str  # one human line
    backend: str
    device: str
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    failed_input_set: str | None = None
    input_sets: list[str] = []  # every input set the candidate was checked on
    ref_time_ms: float | None = None
    candidate_time_ms: float | None = None
    speedup: float | None = None
    timing_meaningful: bool = False
    ref_timing: TimingStats | None = None
    candidate_timing: TimingStats | None = None
    implausible_speedup: bool = False
    # The timing was disturbed even after one re-timing (sandbox/noise.py): the speedup may be off.
    timing_noisy: bool = False
    timing_spread: float | None = None  # (p80 - p20) / median, the worse side
    timing_other_load: float | None = None  # share of the CPUs other processes used while timing
    # The reference under torch.compile (sandbox/compiled.py): its median time per call, and the
    # candidate's speedup over it (null where compile failed: reason in artifacts.notes).
    compile_time_ms: float | None = None
    speedup_vs_compile: float | None = None
    compile_timing: TimingStats | None = None
    # Speed of light (sandbox/sol.py): the roofline bound on any kernel's time for the task on
    # this device, and sol_time_ms / candidate_time_ms (1.0 is the limit).
    sol_time_ms: float | None = None
    sol_fraction: float | None = None
    scaled_sizes: dict[str, int] | None = None  # module-level sizes shrunk to fit (sandbox/sizes.py)
    memory: MemoryUse | None = None
    elapsed_s: float | None = None
    isolation: Isolation = "none"  # set by the sandbox's parent process, never by the candidate's
    artifacts: Artifacts = Field(default_factory=Artifacts)
