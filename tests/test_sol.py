"""Speed of light (sandbox/sol.py): the bound is computed from real FLOP counts and real
probes of this machine, and eager PyTorch (an honest kernel) never beats it."""

import time
from pathlib import Path

import pytest
import torch

from kagent.sandbox import sol
from kagent.sandbox.task import build_model, init_inputs, input_sets, load_task

ROOT = Path(__file__).resolve().parent.parent


def reference(task_file: str):
    task = load_task(ROOT / "tasks" / task_file)
    model = build_model(task, task.Model, init_inputs(task), 0, torch.device("cpu"))
    return model, next(iter(input_sets(task, [0], torch.device("cpu")).values()))


def test_workload_counts_bytes_and_flops():
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64)
    work = sol.workload(lin, [x])
    # x, weight, bias read once; the output written once; fp32.
    assert work.bytes_moved == 4 * (16 * 64 + 32 * 64 + 32 + 16 * 32)
    assert work.flops == 2 * 16 * 64 * 32 and work.compute_dtype == "fp32"
    relu = sol.workload(torch.nn.ReLU(), [torch.randn(1000, dtype=torch.float16)])
    assert (relu.bytes_moved, relu.flops, relu.compute_dtype) == (4000, 0, "fp16")


def test_the_binding_bound():
    peaks = sol.DevicePeaks(device="toy", bandwidth_gbs=100, tflops={"fp32": 1.0}, source="test")
    memory = sol.speed_of_light(sol.Workload(bytes_moved=10**9, flops=10**9, compute_dtype="fp32"), peaks)
    assert memory.bound == "memory" and memory.sol_time_ms == pytest.approx(10.0)
    compute = sol.speed_of_light(sol.Workload(bytes_moved=10**6, flops=10**12, compute_dtype="fp16"), peaks)
    assert compute.bound == "compute" and compute.sol_time_ms == pytest.approx(1000.0)  # fp16 falls back to fp32
    assert "compute-bound" in compute.describe()


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H200", "H200"), ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA GeForce RTX 4090", "RTX 4090"), ("NVIDIA L40S", "L40S"),
])
def test_gpu_table_matches_device_names(name, expected):
    peaks = sol.gpu_peaks(name)
    assert peaks is not None and peaks.source.startswith("NVIDIA") and peaks.device == name
    assert peaks.bandwidth_gbs == sol.GPU_PEAKS[expected].bandwidth_gbs


def test_an_unknown_gpu_has_no_bound():
    assert sol.gpu_peaks("Some Future Accelerator") is None


def test_cpu_probes_are_cached_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGENT_CACHE_DIR", str(tmp_path))
    first = sol.cpu_peaks(1 << 20)
    assert first.bandwidth_gbs > 0.5 and first.tflops["fp32"] > 0.001
    assert "measured on this machine" in first.source
    calls = []
    monkeypatch.setattr(sol, "_measure_fma_tflops", lambda: calls.append("fma") or 1.0)
    monkeypatch.setattr(sol, "_measure_copy_gbs", lambda n: calls.append(n) or 1.0)
    again = sol.cpu_peaks((1 << 20) + 5)  # same size class: nothing measured again
    assert calls == [] and again == first
    sol.cpu_peaks(1 << 24)  # a new size class measures its copy only
    assert calls == [1 << 24]


def _best_ms(fn, args, runs: int = 30) -> float:
    best = float("inf")
    with torch.no_grad():
        fn(*args)
        for _ in range(runs):
            began = time.perf_counter()
            fn(*args)
            best = min(best, (time.perf_counter() - began) * 1e3)
    return best


@pytest.mark.parametrize("task_file", sorted(p.name for p in (ROOT / "tasks").glob("[0-9]*.py")))
def test_eager_pytorch_never_beats_the_speed_of_light(task_file):
    """Eager PyTorch is an honest kernel: its best time must not be faster than the bound
    allows (beyond the documented margin), or honest candidates would be rejected."""
    model, inputs = reference(task_file)
    bound = sol.speed_of_light(sol.workload(model, inputs), sol.device_peaks("cpu", sol.workload(model, inputs).bytes_moved))
    fraction = bound.sol_time_ms / _best_ms(model, inputs)
    assert 0 < fraction and not sol.faster_than_light(fraction, "cpu"), (fraction, bound.describe())


def _eval(*args: str, env: dict | None = None) -> tuple[int, dict]:
    import json
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "kagent.agent.cli", "eval", *args, "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    return proc.returncode, json.loads(proc.stdout)


def test_a_verdict_carries_the_speed_of_light_and_the_judge_sees_it():
    from kagent.agent.judge import verdict_facts
    from kagent.sandbox.models import Verdict

    code, verdict = _eval("tasks/01_relu.py", "tests/candidates/01_relu/cpp.py")
    assert code == 0 and verdict["status"] == "correct", verdict["message"]
    assert verdict["sol_time_ms"] > 0 and 0 < verdict["sol_fraction"] <= sol.FASTER_THAN_LIGHT["cpu"]
    assert verdict["sol_fraction"] == pytest.approx(verdict["sol_time_ms"] / verdict["candidate_time_ms"])
    assert "of the speed of light (memory-bound)" in verdict["message"]
    assert "of the speed of light" in verdict_facts(Verdict.model_validate(verdict))


def test_a_kernel_faster_than_the_speed_of_light_is_rejected(tmp_path, monkeypatch):
    """The machine's peaks as the probe cache records them, made absurdly low: the honest
    kernel then measures far faster than the bound allows, and the verdict says so instead of
    crowning it."""
    import json

    monkeypatch.setenv("KAGENT_CACHE_DIR", str(tmp_path))
    path = sol._probe_cache()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fp32_tflops": 1e-9, "copy_gbs": {str(1 << k): 1e-4 for k in range(13, 41)}}))
    code, verdict = _eval("tasks/01_relu.py", "tests/candidates/01_relu/cpp.py", env={"KAGENT_CACHE_DIR": str(tmp_path)})
    assert code == 1 and (verdict["status"], verdict["reason"]) == ("rejected", "faster_than_light"), verdict["message"]
    assert verdict["sol_fraction"] > 1000 and verdict["implausible_speedup"] is True
    assert "no kernel can be that fast" in verdict["message"]
