# expect: compile_error
# Bug: calls std::sqrt without including <cmath> ('sqrt' is not a member of 'std').
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
extern "C" void layernorm_rows(const float* x, const float* w, const float* b, float* y,
                               int64_t rows, int64_t cols, double eps) {
    #pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float mean = 0.f, var = 0.f;
        for (int64_t c = 0; c < cols; ++c) mean += xr[c];
        mean /= cols;
        for (int64_t c = 0; c < cols; ++c) var += (xr[c] - mean) * (xr[c] - mean);
        float rstd = 1.0f / std::sqrt(var / cols + (float)eps);
        for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = (xr[c] - mean) * rstd * w[c] + b[c];
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        self.ln = torch.nn.LayerNorm(normalized_shape)

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        cols = self.ln.weight.numel()
        lib.layernorm_rows(x, self.ln.weight, self.ln.bias, y, x.numel() // cols, cols,
                           float(self.ln.eps))
        return y
