# kagent best kernel: a drop-in ModelNew for 10_rmsnorm.py
# task: /work/main/bench/runs/tasks-20261130-103959/10_rmsnorm.py
# backend: cpp  device: cpu (CPU: Intel(R) Xeon(R) Processor, 2 cores, AVX-512 (16 fp32 lanes))
# speedup: 2.63x over eager PyTorch, re-timed at the end of the run; timing noisy (spread 1727%): not to be trusted (candidate #3)
# run: /work/main/bench/runs/batch-20261130-104001-2b17/10_rmsnorm/20261130-110417-10_rmsnorm-fd8b
import torch
import torch.nn as nn
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cmath>
#include <immintrin.h>

static inline __mmask16 tail_mask(int64_t r) { return (__mmask16)((1u << r) - 1); }

// One row: pass 1 sum of squares with 8 independent AVX-512 accumulators (hides FMA latency),
// pass 2 y = x * (rstd * w). The row (2 KiB at D=512) is L1-resident for the second pass, so
// DRAM/L3 sees one read of x and one write of y.
static void rms_row(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                    int64_t d, float eps) {
    __m512 q0 = _mm512_setzero_ps(), q1 = q0, q2 = q0, q3 = q0, q4 = q0, q5 = q0, q6 = q0, q7 = q0;
    int64_t i = 0;
    for (; i + 128 <= d; i += 128) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        const __m512 c = _mm512_loadu_ps(x + i + 32), e = _mm512_loadu_ps(x + i + 48);
        const __m512 f = _mm512_loadu_ps(x + i + 64), g = _mm512_loadu_ps(x + i + 80);
        const __m512 h = _mm512_loadu_ps(x + i + 96), k = _mm512_loadu_ps(x + i + 112);
        q0 = _mm512_fmadd_ps(a, a, q0); q1 = _mm512_fmadd_ps(b, b, q1);
        q2 = _mm512_fmadd_ps(c, c, q2); q3 = _mm512_fmadd_ps(e, e, q3);
        q4 = _mm512_fmadd_ps(f, f, q4); q5 = _mm512_fmadd_ps(g, g, q5);
        q6 = _mm512_fmadd_ps(h, h, q6); q7 = _mm512_fmadd_ps(k, k, q7);
    }
    q0 = _mm512_add_ps(q0, q4); q1 = _mm512_add_ps(q1, q5); q2 = _mm512_add_ps(q2, q6); q3 = _mm512_add_ps(q3, q7);
    for (; i + 64 <= d; i += 64) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        const __m512 c = _mm512_loadu_ps(x + i + 32), e = _mm512_loadu_ps(x + i + 48);
        q0 = _mm512_fmadd_ps(a, a, q0); q1 = _mm512_fmadd_ps(b, b, q1);
        q2 = _mm512_fmadd_ps(c, c, q2); q3 = _mm512_fmadd_ps(e, e, q3);
    }
    for (; i + 16 <= d; i += 16) { const __m512 a = _mm512_loadu_ps(x + i); q0 = _mm512_fmadd_ps(a, a, q0); }
    if (i < d) { const __m512 a = _mm512_maskz_loadu_ps(tail_mask(d - i), x + i); q1 = _mm512_fmadd_ps(a, a, q1); }
    const float ms = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(q0, q1), _mm512_add_ps(q2, q3))) / (float)d;
    const __m512 r = _mm512_set1_ps(1.0f / std::sqrt(ms + eps));
    i = 0;
    for (; i + 32 <= d; i += 32) {
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), r), _mm512_loadu_ps(w + i)));
        _mm512_storeu_ps(y + i + 16, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i + 16), r), _mm512_loadu_ps(w + i + 16)));
    }
    for (; i + 16 <= d; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), r), _mm512_loadu_ps(w + i)));
    if (i < d) {
        const __mmask16 k = tail_mask(d - i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), r), _mm512_maskz_loadu_ps(k, w + i)));
    }
}

extern "C" void rmsnorm(const float* x, const float* w, float* y, int64_t rows, int64_t d, double eps) {
    // blocks of 64 rows, dynamic: a core preempted by another process does not stall the call
    #pragma omp parallel for schedule(dynamic, 64) if(rows * d >= 262144 && rows > 1)
    for (int64_t r = 0; r < rows; ++r) rms_row(x + r * d, w, y + r * d, d, (float)eps);
}
''')


class ModelNew(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.randn(dim))   # loaded from the reference

    def forward(self, x):
        x = x.contiguous()
        d = self.weight.numel()
        y = torch.empty_like(x)
        lib.rmsnorm(x, self.weight.contiguous(), y, x.numel() // d, d, float(self.eps))
        return y
