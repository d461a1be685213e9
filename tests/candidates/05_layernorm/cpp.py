import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cmath>

// y = (x - mean) / sqrt(var + eps) * w + b over each row of a contiguous (rows, cols) matrix.
// Two passes (mean, then centered variance) with double accumulators, so rows with a large
// mean do not lose the variance to cancellation.
extern "C" void layernorm_rows(const float* x, const float* w, const float* b, float* y,
                               int64_t rows, int64_t cols, double eps) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        double s = 0.0;
        #pragma omp simd reduction(+:s)
        for (int64_t c = 0; c < cols; ++c) s += xr[c];
        const float mean = (float)(s / cols);
        double ss = 0.0;
        #pragma omp simd reduction(+:ss)
        for (int64_t c = 0; c < cols; ++c) {
            float d = xr[c] - mean;
            ss += d * d;
        }
        const float rstd = (float)(1.0 / std::sqrt(ss / cols + eps));
        #pragma omp simd
        for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];
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
        lib.layernorm_rows(x, self.ln.weight.contiguous(), self.ln.bias.contiguous(), y,
                           x.numel() // cols, cols, float(self.ln.eps))
        return y
