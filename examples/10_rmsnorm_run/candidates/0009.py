import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

constexpr int64_t W = 16;                  // lanes per accumulator (one AVX-512 register of fp32)
constexpr int64_t STREAM_BYTES = 1 << 20;  // outputs larger than this bypass the cache

// yr[j] = xr[j] * (scale * w[j]) for j < dim; streaming stores where `stream` and AVX allow.
static inline void scale_row(const float* xr, const float* w, float* yr, int64_t dim, float scale, bool stream) {
    int64_t j = 0;
#if defined(__AVX512F__)
    if (stream) {
        for (; j < dim && reinterpret_cast<uintptr_t>(yr + j) % 64 != 0; ++j) yr[j] = xr[j] * (scale * w[j]);
        const __m512 s = _mm512_set1_ps(scale);
        for (; j + 16 <= dim; j += 16)
            _mm512_stream_ps(yr + j, _mm512_mul_ps(_mm512_loadu_ps(xr + j), _mm512_mul_ps(s, _mm512_loadu_ps(w + j))));
    }
#elif defined(__AVX__)
    if (stream) {
        for (; j < dim && reinterpret_cast<uintptr_t>(yr + j) % 32 != 0; ++j) yr[j] = xr[j] * (scale * w[j]);
        const __m256 s = _mm256_set1_ps(scale);
        for (; j + 8 <= dim; j += 8)
            _mm256_stream_ps(yr + j, _mm256_mul_ps(_mm256_loadu_ps(xr + j), _mm256_mul_ps(s, _mm256_loadu_ps(w + j))));
    }
#endif
    #pragma omp simd
    for (int64_t k = j; k < dim; ++k) yr[k] = xr[k] * (scale * w[k]);
}

// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w    for every row r
extern "C" void rms_norm_stream32(const float* x, const float* w, float* y,
                                  int64_t rows, int64_t dim, double eps) {
    const bool stream = rows * dim * (int64_t)sizeof(float) > STREAM_BYTES;
    const float inv_dim = 1.f / (float)dim;
    #pragma omp parallel
    {
        #pragma omp for schedule(dynamic, 32)
        for (int64_t r = 0; r < rows; ++r) {
            const float* xr = x + r * dim;
            float a0[W] = {0.f}, a1[W] = {0.f}, a2[W] = {0.f}, a3[W] = {0.f};
            int64_t i = 0;
            for (; i + 4 * W <= dim; i += 4 * W) {
                #pragma omp simd
                for (int64_t l = 0; l < W; ++l) {
                    const float v0 = xr[i + l], v1 = xr[i + W + l], v2 = xr[i + 2 * W + l], v3 = xr[i + 3 * W + l];
                    a0[l] += v0 * v0;
                    a1[l] += v1 * v1;
                    a2[l] += v2 * v2;
                    a3[l] += v3 * v3;
                }
            }
            float sum_sq = 0.f;
            #pragma omp simd reduction(+ : sum_sq)
            for (int64_t l = 0; l < W; ++l) sum_sq += (a0[l] + a1[l]) + (a2[l] + a3[l]);
            for (; i < dim; ++i) sum_sq += xr[i] * xr[i];  // tail when dim is not a multiple of 64
            scale_row(xr, w, y + r * dim, dim, 1.f / std::sqrt(sum_sq * inv_dim + (float)eps), stream);
        }
#if defined(__x86_64__)
        _mm_sfence();  // streaming stores are weakly ordered: make them visible before returning
#endif
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x = x.contiguous()
        dim = x.shape[-1]
        y = torch.empty_like(x)
        lib.rms_norm_stream32(x, self.weight.contiguous(), y, x.numel() // dim, dim, float(self.eps))
        return y
