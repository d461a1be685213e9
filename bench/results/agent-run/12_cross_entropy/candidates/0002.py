import torch
import torch.nn as nn
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cmath>
#include <immintrin.h>

static inline __mmask16 tail_mask(int64_t r) { return (__mmask16)((1u << r) - 1); }

// 2^t for t <= 0 (t already in base 2): clamp at -125 (results stay normal floats: denormals
// are slow and negligible in the sum), n = round(t), f = t - n in [-0.5, 0.5], degree-6
// polynomial for 2^f (truncation < 2e-7 relative), scalef by 2^n. 10 vector ops in all.
static inline __m512 exp2_neg(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-125.0f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.5403530e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

// loss of one row = log(sum_j exp(x_j - max)) + max - x[target]; the row (4 KiB at C=1000) is
// read twice from L1: pass 1 max, pass 2 sum of exp with 4 accumulators. No probabilities stored.
static double row_loss(const float* __restrict__ x, int64_t c, int64_t t) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 32 <= c; i += 32) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
    }
    for (; i + 16 <= c; i += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + i));
    if (i < c) m1 = _mm512_mask_max_ps(m1, tail_mask(c - i), m1, _mm512_maskz_loadu_ps(tail_mask(c - i), x + i));
    const float mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    // exp(x - max) = 2^(x*log2e - max*log2e): one FMA per vector to get the base-2 argument
    const __m512 l2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 off = _mm512_set1_ps(-mx * 1.44269504088896341f);
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    i = 0;
    for (; i + 64 <= c; i += 64) {
        s0 = _mm512_add_ps(s0, exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(x + i), l2e, off)));
        s1 = _mm512_add_ps(s1, exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), l2e, off)));
        s2 = _mm512_add_ps(s2, exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), l2e, off)));
        s3 = _mm512_add_ps(s3, exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), l2e, off)));
    }
    for (; i + 16 <= c; i += 16) s0 = _mm512_add_ps(s0, exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(x + i), l2e, off)));
    if (i < c) {
        const __mmask16 k = tail_mask(c - i);
        s1 = _mm512_mask_add_ps(s1, k, s1, exp2_neg(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, x + i), l2e, off)));
    }
    s0 = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
    const double sum = (double)_mm512_reduce_add_ps(s0);
    return std::log(sum) + (double)mx - (double)x[t];
}

// mean over rows whose target is not ignore_index (F.cross_entropy's default -100)
extern "C" void cross_entropy(const float* x, const int64_t* target, float* out,
                              int64_t rows, int64_t c, int64_t ignore_index) {
    double total = 0.0;
    int64_t count = 0;
    #pragma omp parallel for schedule(static) reduction(+ : total, count) if(rows * c >= 65536 && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = target[r];
        if (t == ignore_index) continue;
        total += row_loss(x + r * c, c, t);
        count += 1;
    }
    out[0] = (float)(total / (double)count);   // count == 0 gives nan, as PyTorch does
}
''')


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, logits, targets):
        logits = logits.contiguous()
        targets = targets.contiguous()
        out = torch.empty((), dtype=logits.dtype, device=logits.device)
        lib.cross_entropy(logits, targets, out, logits.shape[0], logits.shape[1], -100)
        return out
