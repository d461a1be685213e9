import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void row_sum(const _Float16* x, _Float16* y, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
        float a = 0.f;  // accumulated in fp32, rounded to fp16 once
        for (int64_t c = 0; c < cols; ++c) a += (float)x[r * cols + c];
        y[r] = (_Float16)a;
    }
}
""")


class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty(x.shape[0], dtype=x.dtype)
        lib.row_sum(x, y, x.shape[0], x.shape[1])
        return y
