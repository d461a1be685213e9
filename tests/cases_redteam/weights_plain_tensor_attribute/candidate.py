import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void scale(const float* x, const float* s, float* y, int64_t B, int64_t D) {
    for (int64_t r = 0; r < B; ++r) for (int64_t d = 0; d < D; ++d) y[r * D + d] = x[r * D + d] * s[d];
}
""")


class ModelNew(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.w = torch.randn(d, generator=g)

    def forward(self, x):
        y = torch.empty_like(x)
        lib.scale(x.contiguous(), self.w, y, x.shape[0], x.shape[1])
        return y
