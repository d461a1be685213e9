"""Nsight Compute facts for the Judge, where `ncu` exists (a GPU machine with the CUDA toolkit).

After a candidate passed on a GPU, the worker runs it once more in a child process under
`ncu`, collecting a few metrics per kernel that say what bounds it: duration, SM and DRAM
throughput as a share of peak, achieved occupancy, registers. The child is `python -m
sandbox.ncu_target`, which builds the task's inputs and the candidate and calls its forward.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys

METRICS = {  # ncu metric -> what the Judge reads
    "gpu__time_duration.sum": "duration",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": "SM throughput % of peak",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed": "DRAM throughput % of peak",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "achieved occupancy %",
    "launch__registers_per_thread": "registers/thread",
}


def parse(csv_text: str) -> dict[str, dict[str, str]]:
    """ncu --csv output (one row per kernel launch and metric) -> kernel -> label -> value
    with unit. A kernel launched several times keeps its last launch."""
    start = csv_text.find('"ID"')
    if start < 0:
        return {}
    kernels: dict[str, dict[str, str]] = {}
    for row in csv.DictReader(io.StringIO(csv_text[start:])):
        label = METRICS.get(row.get("Metric Name", ""))
        if label is None:
            continue
        unit = row.get("Metric Unit", "")
        value = row.get("Metric Value", "")
        kernels.setdefault(row.get("Kernel Name", "?"), {})[label] = f"{value} {unit}".strip() if unit not in ("", "%") else value
    return kernels


def summarize(kernels: dict[str, dict[str, str]]) -> str:
    """Nsight Compute facts per kernel, one line each (name cut to 80 characters)."""
    return "\n".join(
        f"{name[:80]}: " + ", ".join(f"{label} {value}" for label, value in facts.items())
        for name, facts in kernels.items()
    )


def profile(task_path: str, candidate_path: str, timeout_s: float = 120) -> str | None:
    """Metrics per kernel of one candidate forward, or None where ncu is missing or fails."""
    ncu = shutil.which("ncu")
    if ncu is None:
        return None
    command = [ncu, "--csv", "--metrics", ",".join(METRICS), sys.executable, "-m", "kagent.sandbox.ncu_target",
               task_path, candidate_path]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except (subprocess.TimeoutExpired, OSError):
        return None
    return summarize(parse(proc.stdout)) or None
