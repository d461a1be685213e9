import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>

// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w    for every row r
extern "C" void rms_norm(const float* x, const float* w, float* y,
                         int64_t rows, int64_t dim, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * dim;
        float* yr = y + r * dim;
        float sum_sq = 0.f;
        #pragma omp simd reduction(+ : sum_sq)
        for (int64_t i = 0; i < dim; ++i) sum_sq += xr[i] * xr[i];
        const float scale = 1.f / std::sqrt(sum_sq / (float)dim + (float)eps);
        #pragma omp simd
        for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
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
