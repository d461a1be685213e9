# expect: incorrect
# Bug: variance as E[x^2] - E[x]^2 accumulated in fp32; fine for zero-mean rows but the
# cancellation destroys it when the mean is large (the large_mean input set).
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cmath>
extern "C" void layernorm_rows(const float* x, const float* w, const float* b, float* y,
                               int64_t rows, int64_t cols, double eps) {
    #pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float s = 0.f, sq = 0.f;
        for (int64_t c = 0; c < cols; ++c) {
            s += xr[c];
            sq += xr[c] * xr[c];
        }
        float mean = s / cols;
        float var = sq / cols - mean * mean;
        float rstd = 1.0f / std::sqrt(var + (float)eps);
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
