import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cstring>
#include <immintrin.h>

// exp(x) for x <= 0: clamp, Cody-Waite reduction, degree-6 polynomial, scalef by 2^n.
static inline __m512 exp_neg(__m512 x) {   // exp(x) for x <= 0
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}
// swish(v) = v * sigmoid(v) with e = exp(-|v|) in (0, 1], so nothing overflows:
// v >= 0: v / (1 + e);  v < 0: v * e / (1 + e).  1/(1+e) via rcp14 + one Newton step.
static inline __m512 swish16(__m512 v) {
    const __m512 a = _mm512_abs_ps(v);
    const __m512 e = exp_neg(_mm512_sub_ps(_mm512_setzero_ps(), a));
    const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
    __m512 rc = _mm512_rcp14_ps(d);
    rc = _mm512_mul_ps(rc, _mm512_fnmadd_ps(d, rc, _mm512_set1_ps(2.0f)));  // one Newton step
    const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 num = _mm512_mask_blend_ps(neg, v, _mm512_mul_ps(v, e));
    return _mm512_mul_ps(num, rc);
}
static void run(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {                       // two vectors in flight per iteration
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        _mm512_storeu_ps(y + i, swish16(a));
        _mm512_storeu_ps(y + i + 16, swish16(b));
    }
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, swish16(_mm512_loadu_ps(x + i)));
    if (i < n) {                                         // masked tail, no scalar loop
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, swish16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

extern "C" void swish(const float* x, float* y, int64_t n) {
    if (n < 65536) { run(x, y, n); return; }             // fork/join costs more than the work
    const int64_t chunk = 16384;                          // 64 KiB blocks, 16-element aligned
    const int64_t nchunks = (n + chunk - 1) / chunk;
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; ++c) {
        const int64_t b = c * chunk, e = b + chunk < n ? b + chunk : n;
        run(x + b, y + b, e - b);
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.swish(x, y, x.numel())
        return y
