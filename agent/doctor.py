"""`kagent doctor`: what this machine can do with kagent, and why not where it cannot.

One report composed from the probes in sandbox/probes.py, the same ones the other commands use
for their defaults and errors. The probes that wait on subprocesses run together; the
timing-noise probe runs alone afterwards, so it measures the machine, not the doctor.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import typer
from pydantic import BaseModel
from rich.table import Table

from kagent.agent.console import console
from kagent.sandbox import probes

BACKEND_NAMES = ("cpp", "triton", "cuda")


class DoctorReport(BaseModel):
    """Everything `kagent doctor --json` prints: one answer per probe, and per backend whether
    it can run and time candidates here."""

    gpu: probes.GpuProbe
    gpu_ready: probes.Support  # evaluations can run on the GPU (`--device cuda`)
    torch: probes.TorchProbe
    triton: probes.ToolProbe
    nvcc: probes.ToolProbe
    ninja: probes.ToolProbe
    ncu: probes.NcuProbe
    compiler: probes.CompilerProbe
    isolation: probes.IsolationProbe
    memory: probes.MemoryProbe
    timing: probes.TimingProbe
    backends: dict[str, probes.Support]


def doctor(noise_s: float = 2.0) -> DoctorReport:
    """Run every probe (a few seconds: `noise_s` of them for the timing-noise probe)."""
    gpu = probes.probe_gpu()
    with ThreadPoolExecutor(8) as pool:
        torch = pool.submit(probes.probe_torch, deep=gpu.available)
        nvcc, triton, ninja = pool.submit(probes.probe_nvcc), pool.submit(probes.probe_triton), pool.submit(probes.probe_ninja)
        compiler, isolation = pool.submit(probes.probe_compiler), pool.submit(probes.probe_isolation)
        isolation_result = isolation.result()
        ncu = pool.submit(probes.probe_ncu, confined=isolation_result.confined)
        parts = dict(torch=torch.result(), nvcc=nvcc.result(), ninja=ninja.result(), triton=triton.result(),
                     compiler=compiler.result(), isolation=isolation_result, ncu=ncu.result())
    ready = probes.gpu_ready(gpu, parts["torch"])
    timing = probes.measure_noise(noise_s)
    if ready.can_run and gpu.other_processes:  # the CPU probe cannot see them, GPU timings can
        timing = timing.model_copy(update={"trustworthy": False, "reason": f"{timing.reason}; {gpu.other_processes} "
                                                                           "other process(es) computing on the GPU"})
    backends = {name: probes.backend_support(name, ready, parts["triton"], parts["nvcc"], parts["torch"], parts["compiler"],
                                             parts["ninja"]) for name in BACKEND_NAMES}
    return DoctorReport(gpu=gpu, gpu_ready=ready, memory=probes.probe_memory(), timing=timing,
                        backends=backends, **parts)


def _mark(ok: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "-"}[ok]


def print_report(report: DoctorReport) -> None:
    """The report as two tables: the machine, then the backends."""
    machine = Table(show_header=False, box=None, pad_edge=False)
    gpu = report.gpu
    machine.add_row("gpu", _mark(gpu.available), gpu.reason)
    if gpu.available:
        machine.add_row("driver / CUDA", "", f"{gpu.driver_version} / CUDA {gpu.cuda_version}")
    machine.add_row("torch", _mark(report.torch.matches_gpu), report.torch.reason)
    for name in ("triton", "nvcc", "ninja", "ncu"):
        tool = getattr(report, name)
        machine.add_row(name, _mark(tool.found), tool.reason)
    machine.add_row("C++ compiler", _mark(report.compiler.works), report.compiler.reason)
    machine.add_row("isolation", _mark(report.isolation.confined), report.isolation.reason)
    machine.add_row("memory", "", report.memory.reason)
    machine.add_row("timing", _mark(report.timing.trustworthy), report.timing.reason)
    console.print(machine)
    backends = Table("backend", "run", "time", "why", box=None, pad_edge=False)
    for name, answer in report.backends.items():
        backends.add_row(name, _mark(answer.can_run), _mark(answer.can_time), answer.reason)
    console.print(backends)


def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
) -> None:
    """Check what this machine can do with kagent: GPU, toolchains, isolation, timing noise."""
    report = doctor()
    if as_json:
        sys.stdout.write(report.model_dump_json() + "\n")
    else:
        print_report(report)
