# Honest: any batch, the feature count from the input's shape.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
extern "C" void affine_clamp(const float* x, const float* scale, const float* shift, float* y,
                             int64_t rows, int64_t cols, double lo, double hi, int64_t steps) {
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        #pragma omp simd
        for (int64_t c = 0; c < cols; ++c) {
            float v = xr[c] * scale[c] + shift[c] * (float)steps;
            yr[c] = v < (float)lo ? (float)lo : (v > (float)hi ? (float)hi : v);
        }
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, features, momentum):
        super().__init__()
        self.register_buffer("scale", torch.empty(features))
        self.register_buffer("shift", torch.empty(features), persistent=False)

    def forward(self, x, lo, hi, steps):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.affine_clamp(x, self.scale, self.shift, y, x.shape[0], x.shape[1], lo, hi, steps)
        return y
