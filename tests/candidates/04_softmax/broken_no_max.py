# expect: incorrect
# Bug: no max subtraction before exp, so exp overflows to inf for large inputs and the row
# becomes NaN (only the large_values input set shows it).
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cmath>
extern "C" void softmax_rows(const float* x, float* y, int64_t rows, int64_t cols) {
    #pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        float s = 0.f;
        for (int64_t c = 0; c < cols; ++c) {
            yr[c] = std::exp(xr[c]);
            s += yr[c];
        }
        for (int64_t c = 0; c < cols; ++c) yr[c] /= s;
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        cols = x.shape[-1]
        lib.softmax_rows(x, y, x.numel() // cols, cols)
        return y
