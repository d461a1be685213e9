import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>

constexpr int64_t W = 16;  // lanes per accumulator (one AVX-512 register of fp32)

// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w    for every row r
extern "C" void rms_norm(const float* x, const float* w, float* y,
                         int64_t rows, int64_t dim, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * dim;
        float* yr = y + r * dim;
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
        const float scale = 1.f / std::sqrt(sum_sq / (float)dim + (float)eps);
        #pragma omp simd
        for (int64_t j = 0; j < dim; ++j) yr[j] = xr[j] * scale * w[j];
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
        lib.rms_norm(x, self.weight.contiguous(), y, x.numel() // dim, dim, float(self.eps))
        return y
