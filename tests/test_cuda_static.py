"""The GPU-free CUDA compile check: strip the torch parts, compile the device code with nvcc."""

import re
import shutil
import time

import pytest

from kagent.sandbox.backends.cuda_static import compile_check, device_code_only

pytestmark = pytest.mark.skipif(
    shutil.which("nvcc") is None, reason="nvcc not on PATH: the CUDA compile check needs it")

KERNELBENCH_ADD = r'''
#include <torch/extension.h>
#include <cuda_runtime.h>
#include <ATen/cuda/CUDAContext.h>

#define TILE 256  // see torch::add: a comment mentioning torch must not drop anything
#define CHECK_CUDA(x) TORCH_CHECK(x.is_cuda(), #x " must be a CUDA tensor")

namespace {
__constant__ float kScale[2] = {1.0f, 2.0f};
}

/* c = a + b, staged through a shared-memory tile { ; */
__global__ void add_kernel(const float* __restrict__ a, const float* __restrict__ b,
                           float* __restrict__ c, int n) {
    __shared__ float tile[TILE];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) tile[threadIdx.x] = a[i];
    __syncthreads();
    const char brace = '}';
    if (i < n) c[i] = tile[threadIdx.x] * kScale[0] + b[i] + (brace == '{');
}

torch::Tensor add_cuda(torch::Tensor a, torch::Tensor b) {
    CHECK_CUDA(a);
    auto c = torch::empty_like(a);
    int n = a.numel();
    add_kernel<<<(n + TILE - 1) / TILE, TILE, 0, at::cuda::getCurrentCUDAStream()>>>(
        a.data_ptr<float>(), b.data_ptr<float>(), c.data_ptr<float>(), n);
    return c;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("add_cuda", &add_cuda, "a + b");
}
'''


def test_device_code_only_strips_torch_and_keeps_kernel():
    out = device_code_only(KERNELBENCH_ADD)
    for gone in ("torch/extension.h", "ATen/", "add_cuda", "PYBIND11_MODULE", "empty_like"):
        assert gone not in out
    for kept in ("#include <cuda_runtime.h>", "#include <cstdint>", "#define TILE 256",
                 "__constant__ float kScale", "__global__ void add_kernel", "__syncthreads();"):
        assert kept in out
    # Removed lines become blank lines, so nvcc line numbers match the candidate's.
    body = out.split('#line 1 "kernel.cu"\n', 1)[1]
    assert body.count("\n") == KERNELBENCH_ADD.count("\n")
    line = KERNELBENCH_ADD[:KERNELBENCH_ADD.index("__global__")].count("\n")
    assert body.splitlines()[line].startswith("__global__ void add_kernel")


def test_compile_check_reports_registers_and_shared_memory():
    start = time.monotonic()
    result = compile_check(KERNELBENCH_ADD)
    assert time.monotonic() - start < 10
    assert result.ok and "not compile-checked" not in result.message, result.log
    assert len(result.kernels) == 1
    k = result.kernels[0]
    assert k.kernel.startswith("add_kernel")
    assert k.target == "sm_90"
    assert k.registers and k.registers > 0
    assert k.shared_memory_bytes == 256 * 4
    assert k.spill_stores_bytes == 0 and k.spill_loads_bytes == 0


def test_compile_error_names_the_line():
    broken = KERNELBENCH_ADD.replace("if (i < n) tile[threadIdx.x] = a[i];",
                                     "if (i < n) tile[threadIdx.x] = a[i] + undefined_thing;")
    line = 1 + broken[:broken.index("undefined_thing")].count("\n")
    result = compile_check(broken)
    assert not result.ok
    assert re.search(rf"kernel\.cu\({line}\): error", result.message), result.message
    assert "undefined_thing" in result.message
    assert "kagent-cuda-" not in result.log  # temp paths are replaced by the file name
    assert result.kernels == []


def test_register_pressure_spills():
    # __launch_bounds__(1024, 2) caps the kernel at 32 registers; 64 live accumulators can't fit.
    source = r'''
#include <torch/extension.h>
__global__ void __launch_bounds__(1024, 2) pressure(const float* __restrict__ in, float* out, int n) {
    float acc[64];
    #pragma unroll
    for (int j = 0; j < 64; ++j) acc[j] = in[threadIdx.x + j * n];
    #pragma unroll
    for (int r = 0; r < 8; ++r) {
        #pragma unroll
        for (int j = 0; j < 64; ++j) acc[j] = acc[j] * acc[(j + r + 1) & 63] + in[j];
    }
    float s = 0.f;
    #pragma unroll
    for (int j = 0; j < 64; ++j) s += acc[j] * (j + 1);
    out[threadIdx.x] = s;
}
'''
    result = compile_check(source)
    assert result.ok, result.log
    (k,) = result.kernels
    assert k.registers is not None and k.registers <= 32
    assert k.spill_stores_bytes and k.spill_stores_bytes > 0
    assert k.spill_loads_bytes and k.spill_loads_bytes > 0
    assert k.stack_frame_bytes and k.stack_frame_bytes > 0


def test_dynamically_indexed_local_array_uses_the_stack():
    source = r'''
__global__ void local_array(float* out, int k) {
    float arr[512];
    for (int i = 0; i < 512; ++i) arr[i] = i * out[i];
    out[threadIdx.x] = arr[k];
}
'''
    (k,) = compile_check(source).kernels
    assert k.stack_frame_bytes is not None and k.stack_frame_bytes >= 512 * 4


def test_template_kernel_instantiated_only_by_the_wrapper_is_not_compiled():
    source = r'''
#include <torch/extension.h>
template <typename scalar_t>
__global__ void scale(scalar_t* x, int n) { if (threadIdx.x < n) x[threadIdx.x] *= 2; }
torch::Tensor run(torch::Tensor x) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "scale", ([&] {
        scale<scalar_t><<<1, 32>>>(x.data_ptr<scalar_t>(), x.numel()); }));
    return x;
}
'''
    result = compile_check(source)
    assert result.ok and result.kernels == []
    assert "templated kernels" in result.message


def test_missing_nvcc_is_skipped_not_failed(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = compile_check(KERNELBENCH_ADD)
    assert result.ok
    assert "not compile-checked" in result.message


def test_timeout_is_a_failed_check_not_an_exception():
    result = compile_check(KERNELBENCH_ADD, timeout_s=0.001)
    assert not result.ok and "timed out" in result.message
