import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>

constexpr int64_t ROWS = 4;    // rows processed together by one thread
constexpr int64_t LANES = 32;  // partial sums per row

// y[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w    for every row r
extern "C" void rms_norm_rows4(const float* x, const float* w, float* y,
                               int64_t rows, int64_t dim, double eps) {
    const int64_t blocks = (rows + ROWS - 1) / ROWS;
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t r0 = b * ROWS;
        const int64_t nr = rows - r0 < ROWS ? rows - r0 : ROWS;
        float acc[ROWS][LANES] = {};
        float sum_sq[ROWS] = {};
        int64_t i = 0;
        for (; i + LANES <= dim; i += LANES) {
            for (int64_t k = 0; k < nr; ++k) {
                const float* xr = x + (r0 + k) * dim + i;
                #pragma omp simd
                for (int64_t l = 0; l < LANES; ++l) acc[k][l] += xr[l] * xr[l];
            }
        }
        for (int64_t k = 0; k < nr; ++k) {
            const float* xr = x + (r0 + k) * dim;
            float s = 0.f;
            #pragma omp simd reduction(+ : s)
            for (int64_t l = 0; l < LANES; ++l) s += acc[k][l];
            for (int64_t j = i; j < dim; ++j) s += xr[j] * xr[j];  // tail: dim % 32
            sum_sq[k] = s;
        }
        for (int64_t k = 0; k < nr; ++k) {
            const float* xr = x + (r0 + k) * dim;
            float* yr = y + (r0 + k) * dim;
            const float scale = 1.f / std::sqrt(sum_sq[k] / (float)dim + (float)eps);
            #pragma omp simd
            for (int64_t j = 0; j < dim; ++j) yr[j] = xr[j] * scale * w[j];
        }
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
        lib.rms_norm_rows4(x, self.weight.contiguous(), y, x.numel() // dim, dim, float(self.eps))
        return y
