import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void sum_max(const float* x, float* s, float* m, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        float a = 0.f, b = x[r * cols];
        for (int64_t c = 0; c < cols; ++c) { a += x[r * cols + c]; b = x[r * cols + c] > b ? x[r * cols + c] : b; }
        s[r] = a; m[r] = b * 1.01f;
    }
}
""")

class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        s, m = torch.empty(x.shape[0]), torch.empty(x.shape[0])
        lib.sum_max(x, s, m, x.shape[0], x.shape[1])
        return s, m
