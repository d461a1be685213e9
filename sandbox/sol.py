"""Speed of light: a lower bound on the time of any kernel for a task on this device.

    sol_time = max(bytes_moved / memory_bandwidth, flops / peak_flops)

`bytes_moved` counts every input and parameter read once and every output written once (a
kernel cannot do less); `flops` are the reference's floating-point operations as counted by
`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention: the ops that can be
compute-bound; element-wise ops count zero FLOPs there and are memory-bound anyway). The larger
term names the binding bound (`memory` or `compute`): the roofline model (Williams, Waterman and
Patterson, "Roofline", CACM 2009).

Peaks come from vendors' datasheets for common GPUs (GPU_PEAKS, each with its source) and are
measured once per machine on a CPU (cpu_probe.cpp: an FMA loop on every core, and a streaming
copy sized like the task's own data, because a task that fits in the CPU's caches moves its bytes
at cache bandwidth, not DRAM bandwidth). Measured figures are cached in the kagent cache dir.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from kagent.sandbox.backends.cpp import build, cache_dir

if TYPE_CHECKING:
    import torch
# torch is imported where it is used: the parent process (blocks.py reads SpeedOfLight) never
# needs it, and importing it costs every CLI command ~1.2 s.

# A kernel this much faster than the bound is not fast, it is wrong (a measurement or a cheat).
# Not 1.0: the bound's peaks are measured with their own error (CPU probes, a busy machine) and
# a GPU may boost above its datasheet clock. Source: our measurements of honest kernels
# (tests/test_sol.py); see bench/README.md.
# On a CPU the peaks are probed on a machine that may be busy: the same copy probe measured 56
# and 27 GB/s an hour apart on the loaded 2-core test machine, so only an absurd fraction is a
# verdict there; a GPU's datasheet peaks are firm.
FASTER_THAN_LIGHT = {"cpu": 10.0, "cuda": 1.2}
PROBE_RUNS = 300  # repetitions of each CPU probe; the best one counts


class DevicePeaks(BaseModel):
    """What the device can do at best: `bandwidth_gbs` (GB/s, 1e9 bytes/s) for data of the size
    it was asked about, `tflops` (1e12 FLOP/s) by compute dtype ("fp32", "fp16", "bf16",
    "fp64"), and where the figures come from (`source`)."""

    device: str
    bandwidth_gbs: float
    tflops: dict[str, float]
    source: str


class Workload(BaseModel):
    """What a task must do per call: bytes it must move (inputs and parameters read once,
    outputs written once) and FLOPs (FlopCounterMode), with the dtype that sets the FLOP peak."""

    bytes_moved: int
    flops: int
    compute_dtype: str  # "fp32", "fp16", "bf16", "fp64"


class SpeedOfLight(BaseModel):
    """The bound for one task on one device (milliseconds) and which term binds."""

    sol_time_ms: float
    bound: Literal["memory", "compute"]
    memory_time_ms: float
    compute_time_ms: float
    workload: Workload
    peaks: DevicePeaks

    def describe(self) -> str:
        """One line for people and the Judge."""
        return (f"speed of light {self.sol_time_ms:.4f} ms ({self.bound}-bound: "
                f"{self.workload.bytes_moved / 1e6:.2f} MB at {self.peaks.bandwidth_gbs:.0f} GB/s = "
                f"{self.memory_time_ms:.4f} ms, {self.workload.flops / 1e9:.3f} GFLOP at "
                f"{self.peaks.tflops.get(self.workload.compute_dtype, 0):.2f} TFLOP/s = {self.compute_time_ms:.4f} ms; "
                f"{self.peaks.source})")


# Dense (no sparsity) peaks, boost clock, SXM/board as named. Matched by substring of
# torch.cuda.get_device_name(), longest first.
GPU_PEAKS: dict[str, DevicePeaks] = {
    peaks.device: peaks for peaks in [
        DevicePeaks(device="H200", bandwidth_gbs=4800, tflops={"fp64": 34, "fp32": 67, "fp16": 989.5, "bf16": 989.5},
                    source="NVIDIA H200 Tensor Core GPU datasheet (SXM), 2024"),
        DevicePeaks(device="H100 PCIe", bandwidth_gbs=2000, tflops={"fp64": 26, "fp32": 51, "fp16": 756, "bf16": 756},
                    source="NVIDIA H100 Tensor Core GPU datasheet (PCIe), 2023"),
        DevicePeaks(device="H100", bandwidth_gbs=3350, tflops={"fp64": 34, "fp32": 67, "fp16": 989.5, "bf16": 989.5},
                    source="NVIDIA H100 Tensor Core GPU datasheet (SXM), 2023"),
        DevicePeaks(device="A100", bandwidth_gbs=2039, tflops={"fp64": 9.7, "fp32": 19.5, "fp16": 312, "bf16": 312},
                    source="NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB), 2021"),
        DevicePeaks(device="L40S", bandwidth_gbs=864, tflops={"fp32": 91.6, "fp16": 362, "bf16": 362},
                    source="NVIDIA L40S datasheet, 2023"),
        DevicePeaks(device="A10", bandwidth_gbs=600, tflops={"fp32": 31.2, "fp16": 125, "bf16": 125},
                    source="NVIDIA A10 datasheet, 2021"),
        DevicePeaks(device="T4", bandwidth_gbs=320, tflops={"fp32": 8.1, "fp16": 65},
                    source="NVIDIA T4 datasheet, 2019"),
        DevicePeaks(device="RTX 4090", bandwidth_gbs=1008, tflops={"fp32": 82.6, "fp16": 165.2, "bf16": 165.2},
                    source="NVIDIA Ada Lovelace architecture whitepaper (GeForce RTX 4090), 2022"),
    ]
}


def _dtype_name(dtype: "torch.dtype") -> str:
    import torch

    return {torch.float64: "fp64", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")


def workload(model: torch.nn.Module, inputs: list) -> Workload:
    """Run the reference once under FlopCounterMode and count what any kernel must move.
    `inputs` as the task's get_inputs() gives them (non-tensors ignored)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from kagent.sandbox.compare import tensors

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = model(*inputs)
    read = {id(t): t for t in tensors(list(inputs)) + list(model.parameters()) + list(model.buffers())}
    nbytes = sum(t.numel() * t.element_size() for t in read.values())
    nbytes += sum(t.numel() * t.element_size() for t in tensors(out))
    floating = [t.dtype for t in read.values() if t.is_floating_point()]
    return Workload(bytes_moved=nbytes, flops=int(counter.get_total_flops()),
                    compute_dtype=_dtype_name(min(floating, key=lambda d: torch.finfo(d).bits) if floating else torch.float32))


def gpu_peaks(name: str) -> DevicePeaks | None:
    """Datasheet peaks of the GPU called `name` (torch.cuda.get_device_name()), or None."""
    for key in sorted(GPU_PEAKS, key=len, reverse=True):
        if key.lower() in name.lower():
            return GPU_PEAKS[key].model_copy(update={"device": name})
    return None


# ---------------------------------------------------------------- CPU probes

@cache
def _probe_library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build((Path(__file__).parent / "cpu_probe.cpp").read_text())))
    lib.fma_gflops.restype = ctypes.c_double
    lib.fma_gflops.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.copy_seconds.restype = ctypes.c_double
    lib.copy_seconds.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    return lib


def _cpu_name() -> str:
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _probe_cache() -> Path:
    key = f"{_cpu_name()}-{os.cpu_count()}".replace("/", "_").replace(" ", "_")
    return cache_dir().parent / "sol" / f"{key}.json"


def _measure_fma_tflops() -> float:
    """Peak fp32 TFLOP/s. The best of many short (~0.1 ms) runs: on a busy machine most short
    runs still get a core to themselves, where one long run would be preempted and report the
    load instead of the peak. One core's best times the core count is counted too (every core at
    its single-core turbo clock): over-estimating the peak only loosens the bound."""
    lib, threads = _probe_library(), os.cpu_count() or 1
    every_core = max(lib.fma_gflops(threads, 1 << 15) for _ in range(PROBE_RUNS))
    one_core = max(lib.fma_gflops(1, 1 << 15) for _ in range(PROBE_RUNS))
    return max(every_core, one_core * threads) / 1e3


def _measure_copy_gbs(nbytes: int) -> float:
    """Best bandwidth (GB/s) of reading and writing `nbytes` in total, hot in cache as the
    timing loop leaves them, over one thread and over all (small copies are faster alone)."""
    lib = _probe_library()
    n = max(1024, nbytes // 8)  # floats per buffer: n read + n written = nbytes
    import torch

    src, dst = torch.ones(n), torch.empty(n)
    reps = max(20, min(PROBE_RUNS, int(1e9 // (8 * n))))  # best of many, as for the FMA peak
    best = min(lib.copy_seconds(src.data_ptr(), dst.data_ptr(), n, reps, threads) for threads in {1, os.cpu_count() or 1})
    return 8 * n / best / 1e9


def cpu_peaks(nbytes: int) -> DevicePeaks:
    """This CPU's measured peaks for a task moving `nbytes` per call: the FMA peak (measured
    once per machine) and the copy bandwidth at that size (per power-of-two size class)."""
    path = _probe_cache()
    try:
        measured = json.loads(path.read_text())
    except (OSError, ValueError):
        measured = {}
    # Rounded down: a smaller copy is never slower per byte, so the bound stays a lower bound.
    size_class = str(1 << max(13, max(1, nbytes).bit_length() - 1))
    changed = False
    if "fp32_tflops" not in measured:
        measured["fp32_tflops"], changed = _measure_fma_tflops(), True
    if size_class not in measured.setdefault("copy_gbs", {}):
        measured["copy_gbs"][size_class], changed = _measure_copy_gbs(int(size_class)), True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(measured))
        tmp.replace(path)
    fp32 = measured["fp32_tflops"]
    return DevicePeaks(device=f"CPU: {_cpu_name()}, {os.cpu_count()} cores", bandwidth_gbs=measured["copy_gbs"][size_class],
                       tflops={"fp32": fp32, "fp64": fp32 / 2, "fp16": fp32, "bf16": fp32},
                       source=f"measured on this machine ({path.name}: FMA loop on every core, copy of {int(size_class) >> 10} KiB)")


def device_peaks(device: str, nbytes: int) -> DevicePeaks | None:
    """Peaks for `device` ("cpu" or "cuda") and a task moving `nbytes`; None for a GPU the
    table does not know (the verdict then has no speed of light)."""
    if device == "cuda":
        import torch

        return gpu_peaks(torch.cuda.get_device_name())
    return cpu_peaks(nbytes)


def speed_of_light(work: Workload, peaks: DevicePeaks) -> SpeedOfLight:
    """The roofline bound of `work` on `peaks` (see the module docstring)."""
    memory_ms = work.bytes_moved / (peaks.bandwidth_gbs * 1e9) * 1e3
    rate = peaks.tflops.get(work.compute_dtype) or peaks.tflops["fp32"]
    compute_ms = work.flops / (rate * 1e12) * 1e3
    return SpeedOfLight(sol_time_ms=max(memory_ms, compute_ms), bound="compute" if compute_ms > memory_ms else "memory",
                        memory_time_ms=memory_ms, compute_time_ms=compute_ms, workload=work, peaks=peaks)


def faster_than_light(sol_fraction: float, device: str) -> bool:
    """Whether a measured `sol_fraction` (sol_time / candidate_time) is beyond what the
    device allows, measurement error included."""
    return sol_fraction > FASTER_THAN_LIGHT["cuda" if device == "cuda" else "cpu"]
