# expect: compile_error
# Bug: the output pointer is declared `const float*` (copied from the input's signature), so
# the store `y[...] = ...` is an assignment to a read-only location.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>

extern "C" void rmsnorm_fwd(const float* x, const float* w, const float* y,
                            int64_t rows, int64_t dim, double eps) {
    #pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * dim;
        float ss = 0.f;
        #pragma omp simd reduction(+ : ss)
        for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
        const float inv = 1.f / std::sqrt(ss / dim + (float)eps);
        #pragma omp simd
        for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = xr[i] * inv * w[i];
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
        lib.rmsnorm_fwd(x, self.weight.contiguous(), y, x.numel() // dim, dim, float(self.eps))
        return y
