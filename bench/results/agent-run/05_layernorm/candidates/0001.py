import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cmath>
#include <immintrin.h>

static inline __mmask16 tail_mask(int64_t r) { return (__mmask16)((1u << r) - 1); }

// One row: pass 1 mean, pass 2 variance as mean((x - mean)^2) (robust when |mean| >> std),
// pass 3 y = (x - mean) * rstd * w + b. The row (<= tens of KiB) stays in L1/L2 between passes.
static void ln_row(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                   float* __restrict__ y, int64_t d, float eps) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= d; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= d; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    if (i < d) s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(tail_mask(d - i), x + i));
    const float mean = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3))) / (float)d;

    const __m512 m = _mm512_set1_ps(mean);
    __m512 q0 = _mm512_setzero_ps(), q1 = q0, q2 = q0, q3 = q0;
    i = 0;
    for (; i + 64 <= d; i += 64) {
        __m512 a = _mm512_sub_ps(_mm512_loadu_ps(x + i), m);
        __m512 c = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), m);
        __m512 e = _mm512_sub_ps(_mm512_loadu_ps(x + i + 32), m);
        __m512 f = _mm512_sub_ps(_mm512_loadu_ps(x + i + 48), m);
        q0 = _mm512_fmadd_ps(a, a, q0); q1 = _mm512_fmadd_ps(c, c, q1);
        q2 = _mm512_fmadd_ps(e, e, q2); q3 = _mm512_fmadd_ps(f, f, q3);
    }
    for (; i + 16 <= d; i += 16) {
        __m512 a = _mm512_sub_ps(_mm512_loadu_ps(x + i), m);
        q0 = _mm512_fmadd_ps(a, a, q0);
    }
    if (i < d) {
        const __mmask16 k = tail_mask(d - i);
        __m512 a = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), m);
        q1 = _mm512_fmadd_ps(a, a, q1);
    }
    const float var = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(q0, q1), _mm512_add_ps(q2, q3))) / (float)d;
    const __m512 r = _mm512_set1_ps(1.0f / std::sqrt(var + eps));

    i = 0;
    for (; i + 32 <= d; i += 32) {
        __m512 a = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), m), r);
        __m512 c = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), m), r);
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(w + i), _mm512_loadu_ps(b + i)));
        _mm512_storeu_ps(y + i + 16, _mm512_fmadd_ps(c, _mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(b + i + 16)));
    }
    for (; i + 16 <= d; i += 16) {
        __m512 a = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), m), r);
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(w + i), _mm512_loadu_ps(b + i)));
    }
    if (i < d) {
        const __mmask16 k = tail_mask(d - i);
        __m512 a = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m), r);
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, b + i)));
    }
}

extern "C" void layernorm(const float* x, const float* w, const float* b, float* y,
                          int64_t rows, int64_t d, double eps) {
    #pragma omp parallel for schedule(static) if(rows * d >= 65536 && rows > 1)
    for (int64_t r = 0; r < rows; ++r)
        ln_row(x + r * d, w, b, y + r * d, d, (float)eps);
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, normalized_shape: int):
        super().__init__()
        self.ln = torch.nn.LayerNorm(normalized_shape)   # holds weight/bias/eps; loaded from the reference

    def forward(self, x):
        x = x.contiguous()
        d = self.ln.weight.numel()
        y = torch.empty_like(x)
        lib.layernorm(x, self.ln.weight.contiguous(), self.ln.bias.contiguous(), y,
                      x.numel() // d, d, float(self.ln.eps))
        return y
