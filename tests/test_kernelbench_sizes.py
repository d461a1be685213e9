"""KernelBench tasks as they are, through `kagent eval` as a user runs it (relative paths,
default flags): a task declared at GPU sizes (4 GiB of inputs and outputs) is shrunk to the CPU
budget and evaluated, the verdict names the sizes measured, a second set of sizes
(`shape:variant`) fails a kernel that hard-codes the declared shapes, and `--max-input-mb 0`
refuses to shrink: a task-level error before any candidate is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ROOT
from kagent.sandbox import sizes

TASK = "tests/kernelbench/level2_affine_clamp_tuple_init.py"
HONEST = "tests/kernelbench/candidates/affine_clamp_cpp.py"
FIXED_BATCH = "tests/kernelbench/candidates/affine_clamp_cpp_fixed_batch.py"


def kagent(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "kagent.agent.cli", "eval", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def runs() -> dict[str, subprocess.CompletedProcess]:
    commands = {
        "honest": [TASK, HONEST, "--json", "--timeout", "400"],
        "fixed_batch": [TASK, FIXED_BATCH, "--timeout", "400"],
        "no_shrink": [TASK, HONEST, "--max-input-mb", "0"],
        "no_shrink_json": [TASK, HONEST, "--max-input-mb", "0", "--json"],
        "negative": [TASK, HONEST, "--max-input-mb", "-1"],
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(kagent, *args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def test_the_task_is_declared_at_gpu_sizes():
    assert sizes.footprint_bytes(ROOT / TASK) > 4 * 2**30


def test_a_gpu_sized_task_is_shrunk_and_judged_with_the_sizes_named(runs):
    result = runs["honest"]
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout[-2000:] + result.stderr[-2000:]
    verdict = json.loads(lines[0])
    assert (result.returncode, verdict["status"]) == (0, "correct"), verdict["message"]
    # batch first, halved from 2048 until 4 GiB fit in the CPU default (64 MB): 16 rows x 1 MiB x 2
    assert verdict["scaled_sizes"] == {"batch_size": 16}
    assert "shape:variant" in verdict["input_sets"]
    assert not any("not loaded" in note for note in verdict["artifacts"]["notes"])  # both buffers reached ModelNew


def test_a_kernel_hard_coding_the_declared_batch_fails_on_the_shape_variant(runs):
    result = runs["fixed_batch"]
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.startswith("incorrect") and "input set shape:variant" in result.stdout.splitlines()[0]
    assert "scaled sizes" in result.stdout and "batch_size=16" in result.stdout


def test_max_input_mb_0_refuses_to_shrink_a_task_that_cannot_fit(runs):
    result = runs["no_shrink"]
    assert result.returncode == 2 and result.stdout == "", result.stdout[-2000:]
    stderr = result.stderr.strip().splitlines()
    assert len(stderr) == 1 and "Traceback" not in result.stderr, result.stderr
    assert stderr[0].startswith("error: ") and "level2_affine_clamp_tuple_init.py" in stderr[0]
    assert "4098 MB" in stderr[0] and "memory limit of 8192 MB" in stderr[0], stderr[0]
    as_json = runs["no_shrink_json"]
    lines = as_json.stdout.splitlines()
    assert as_json.returncode == 2 and len(lines) == 1, as_json.stdout
    error = json.loads(lines[0])
    assert (error["status"], error["reason"]) == ("error", "task_too_large") and error["message"] in stderr[0]


def test_a_negative_budget_is_a_usage_error(runs):
    result = runs["negative"]
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "--max-input-mb" in result.stderr and "Traceback" not in result.stderr


RELU_AT_GPU_SIZES = '''import torch

batch_size = 4096
dim = 393216


class Model(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
'''


def test_optimize_shrinks_once_and_the_run_shows_the_sizes(tmp_path):
    """`kagent optimize` at its defaults on a 12 GiB task: every candidate is judged at the
    sizes decided once for the run, and the summary and `kagent show` say which."""
    (tmp_path / "relu_gpu.py").write_text(RELU_AT_GPU_SIZES)
    script = os.path.relpath(ROOT / "tests" / "scripted_model.py", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["COLUMNS"] = "200"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kagent.agent.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)

    done = run("optimize", "relu_gpu.py", "--model", f"cmd:{sys.executable} {script} improve", "--max-iters", "1", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["scaled_sizes"] == {"batch_size": 16} and summary["candidates"] == 1, summary
    shown = json.loads(run("show", summary["run_dir"], "--json").stdout)
    assert shown["run"]["scaled_sizes"] == {"batch_size": 16}
    candidate = json.loads(run("show", summary["run_dir"], "--candidate", "1", "--json").stdout)
    assert candidate["verdict"]["scaled_sizes"] == {"batch_size": 16}, candidate["verdict"]
    assert "shape:variant" in candidate["verdict"]["input_sets"]
    text = run("show", summary["run_dir"]).stdout
    assert "scaled sizes" in text and "batch_size=16" in text


ROW_SUM_400MB = '''import torch

batch_size = 100
dim = 1048576  # 100 x 1M fp32: a 400 MB input, a 400-byte output


class Model(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=1)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
'''

ROW_SUM_CPP = """import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
extern "C" void row_sum(const float* x, float* y, int64_t rows, int64_t cols) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        double acc = 0.0;
        const float* xr = x + r * cols;
        #pragma omp simd reduction(+:acc)
        for (int64_t c = 0; c < cols; ++c) acc += xr[c];
        y[r] = (float)acc;
    }
}
''')


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty(x.shape[0], dtype=x.dtype)
        lib.row_sum(x, y, x.shape[0], x.shape[1])
        return y
"""
# Peak resident memory of each of an evaluation's processes, in multiples of the task's own
# inputs and outputs (one set), the "about 3x": what the harness needs at least is the
# set being checked and its float64 copy (2x for fp32) for the float64 answer: 3x. Measured
# 3.06x (worker) and 3.4x (verifier) on this 400 MB task; 6.1x and 6.8x before the first set
# was let go and the outputs went to disk, 20x and 38x on a 64 MB task before that. On the
# 200 MB in / 200 MB out task below: 3.34x and 3.19x (4.3x and 5.3x before, with 2x + 1).
PEAK_OVER_TASK_IO = 3.5


def test_an_evaluation_holds_a_bounded_multiple_of_the_task_inputs(evaluate, tmp_path):
    task = tmp_path / "row_sum_400mb.py"
    task.write_text(ROW_SUM_400MB)
    verdict = evaluate(task, ROW_SUM_CPP, timeout=600)
    assert verdict.status == "correct", verdict.message
    memory = verdict.memory
    assert memory.task_io_mb == pytest.approx(400, rel=0.01)
    for peak in (memory.worker_peak_mb, memory.verifier_peak_mb):
        assert peak is not None and peak <= PEAK_OVER_TASK_IO * memory.task_io_mb, memory


SCALE_200MB = '''import torch

rows = 50
dim = 1048576  # 50 x 1M fp32: a 200 MB input and a 200 MB output


class Model(torch.nn.Module):
    def forward(self, x):
        return x * 2.0  # one op: its only allocation is the output


def get_inputs():
    return [torch.randn(rows, dim)]


def get_init_inputs():
    return []
'''

SCALE_CPP = """import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
extern "C" void scale(const float* x, float* y, int64_t n) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * 2.0f;
}
''')


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.scale(x, y, x.numel())
        return y
"""


def test_a_task_with_a_large_output_holds_a_bounded_multiple_too(evaluate, tmp_path):
    """The output as large as the input: the outputs of every input set and of one timed call
    per block (10 to 16) reach the verifier without being held at once on either side."""
    task = tmp_path / "scale_200mb.py"
    task.write_text(SCALE_200MB)
    verdict = evaluate(task, SCALE_CPP, timeout=600)
    assert verdict.status == "correct", verdict.message
    memory = verdict.memory
    assert memory.task_io_mb == pytest.approx(400, rel=0.01)
    for peak in (memory.worker_peak_mb, memory.verifier_peak_mb):
        assert peak is not None and peak <= PEAK_OVER_TASK_IO * memory.task_io_mb, memory
