# expect: incorrect
# Bug: indexes the input as if it were stored column-major (x[c * rows + r]), so each output
# sums a strided slice of the wrong elements instead of row r.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
extern "C" void row_sum(const float* x, float* y, int64_t rows, int64_t cols) {
    #pragma omp parallel for
    for (int64_t r = 0; r < rows; ++r) {
        float s = 0.f;
        for (int64_t c = 0; c < cols; ++c) s += x[c * rows + r];
        y[r] = s;
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        x = x.contiguous()
        rows, cols = x.shape
        y = torch.empty(rows, dtype=x.dtype, device=x.device)
        lib.row_sum(x, y, rows, cols)
        return y
