import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void affine(const float* x, const float* s0, const float* s1, const float* b, float* y, int64_t B, int64_t D) {
    for (int64_t r = 0; r < B; ++r) for (int64_t d = 0; d < D; ++d) y[r * D + d] = x[r * D + d] * s0[d] * s1[d] + b[d];
}
""")


class ModelNew(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.scales = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(d)) for _ in range(2)])
        self.shifts = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.zeros(d))})

    def forward(self, x):
        y = torch.empty_like(x)
        lib.affine(x.contiguous(), self.scales[0].detach(), self.scales[1].detach(), self.shifts["a"].detach(), y, x.shape[0], x.shape[1])
        return y
