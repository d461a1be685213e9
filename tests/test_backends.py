"""What each backend does where there is no GPU: the Triton interpreter's blind spots (bf16,
libdevice) are reported, not failed; CUDA is compile-checked with nvcc and reported not run."""

from __future__ import annotations

import shutil

import pytest

from conftest import CANDIDATES, TASKS

RELU = TASKS / "01_relu.py"
TRITON_RELU = (CANDIDATES / "01_relu" / "triton.py").read_text()

BF16_TASK = '''
import torch

class Model(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2

def get_inputs():
    return [torch.randn(64, 100).to(torch.bfloat16)]

def get_init_inputs():
    return []
'''

TRITON_TIMES_TWO = '''
import torch
import triton
import triton.language as tl
{extra_import}

@triton.jit
def relu2(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(y_ptr + offs, {expression}, mask=mask)

class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        n = x.numel()
        relu2[(triton.cdiv(n, 1024),)](x, y, n, BLOCK=1024)
        return y
'''

CUDA_RELU = r'''
import torch
from torch.utils.cpp_extension import load_inline

source = """
#include <torch/extension.h>
__global__ void relu_kernel(const float* x, float* y, int64_t n) {
    __shared__ float tile[256];
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    if (i < n) y[i] = tile[threadIdx.x] > 0.f ? tile[threadIdx.x] : 0.f;  BROKEN
}
torch::Tensor relu(torch::Tensor x) {
    auto y = torch::empty_like(x);
    int64_t n = x.numel();
    relu_kernel<<<(n + 255) / 256, 256>>>(x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
"""
ext = load_inline(name="relu_ext", cpp_sources="torch::Tensor relu(torch::Tensor x);",
                  cuda_sources=source, functions=["relu"])

class ModelNew(torch.nn.Module):
    def forward(self, x):
        return ext.relu(x.contiguous())
'''
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")


def test_bf16_task_is_checked_in_fp32_under_the_interpreter(evaluate, tmp_path):
    task = tmp_path / "bf16_relu.py"
    task.write_text(BF16_TASK)
    verdict = evaluate(task, TRITON_TIMES_TWO.format(extra_import="", expression="tl.maximum(x, 0.0) * 2"))
    assert verdict.status == "correct", verdict.message
    assert any("bf16" in note for note in verdict.artifacts.notes)
    assert verdict.speedup is None and not verdict.timing_meaningful


def test_libdevice_under_the_interpreter_is_not_run_not_wrong(evaluate):
    source = TRITON_TIMES_TWO.format(extra_import="from triton.language.extra import libdevice",
                                     expression="libdevice.fmax(x, 0.0)")
    verdict = evaluate(RELU, source)
    assert (verdict.status, verdict.reason) == ("not_run", "interpreter_unsupported"), verdict.message
    assert "libdevice" in verdict.message


def test_triton_kernels_get_sm90_resource_use_without_a_gpu(evaluate):
    verdict = evaluate(RELU, TRITON_RELU)
    assert verdict.status == "correct"
    [use] = verdict.artifacts.resources
    assert use.target.startswith("sm_90") and use.error is None and use.registers > 0


@needs_nvcc
def test_cuda_without_a_gpu_is_compile_checked_and_not_run(evaluate):
    verdict = evaluate(RELU, CUDA_RELU.replace("BROKEN", ""), backend="cuda")
    assert (verdict.status, verdict.reason) == ("not_run", "no_gpu"), verdict.message
    [use] = verdict.artifacts.resources
    assert "relu_kernel" in use.kernel and use.registers > 0 and use.shared_memory_bytes == 1024
    assert any("not run" in note for note in verdict.artifacts.notes)


@needs_nvcc
def test_cuda_device_code_error_is_a_compile_error_without_a_gpu(evaluate):
    verdict = evaluate(RELU, CUDA_RELU.replace("BROKEN", "undefined_thing();"), backend="cuda")
    assert (verdict.status, verdict.reason) == ("compile_error", "compile_failed"), verdict.message
    assert "undefined_thing" in verdict.message


def test_one_sandbox_per_visible_gpu_each_pinned(monkeypatch, tmp_path):
    from kagent.agent.executors.local import LocalExecutor
    from kagent.sandbox.supervisor import visible_gpus, worker_env

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    executor = LocalExecutor("cuda", None, tmp_path)  # sandboxes start lazily: no GPU needed here
    assert [s.gpu for s in executor.sandboxes] == ["2", "3"]
    assert worker_env("cuda", "3")["CUDA_VISIBLE_DEVICES"] == "3"
    assert [s.gpu for s in LocalExecutor("cuda", 1, tmp_path).sandboxes] == ["2"]
    cpu_env = worker_env("cpu")
    assert "CUDA_VISIBLE_DEVICES" not in cpu_env and cpu_env["TRITON_INTERPRET"] == "1"
    assert len(LocalExecutor("cpu", None, tmp_path).sandboxes) == 1
