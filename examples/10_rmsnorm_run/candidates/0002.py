import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>

constexpr int64_t LANES = 64;  // independent partial sums: several vectors in flight

// y[r, :] = x[r, :] * (1 / sqrt(mean(x[r, :]^2) + eps)) * w
extern "C" void rms_norm_blocked(const float* x, const float* w, float* y,
                                 int64_t rows, int64_t dim, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * dim;
        float* yr = y + r * dim;
        float acc[LANES] = {0.f};
        int64_t i = 0;
        for (; i + LANES <= dim; i += LANES) {
            #pragma omp simd
            for (int64_t l = 0; l < LANES; ++l) acc[l] += xr[i + l] * xr[i + l];
        }
        float sum_sq = 0.f;
        for (; i < dim; ++i) sum_sq += xr[i] * xr[i];  // tail: dim not a multiple of LANES
        #pragma omp simd reduction(+ : sum_sq)
        for (int64_t l = 0; l < LANES; ++l) sum_sq += acc[l];
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
        lib.rms_norm_blocked(x, self.weight.contiguous(), y, x.numel() // dim, dim, float(self.eps))
        return y
