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
        self.blocks = torch.nn.ModuleList([torch.nn.Module() for _ in range(2)])
        for blk in self.blocks:
            blk.register_buffer("scale", torch.ones(d), persistent=False)

    def forward(self, x):
        for blk in self.blocks:
            y = torch.empty_like(x)
            lib.scale(x.contiguous(), blk.scale, y, x.shape[0], x.shape[1])
            x = y
        return x
