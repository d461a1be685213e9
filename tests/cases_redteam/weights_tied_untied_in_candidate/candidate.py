import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void linear(const float* x, const float* w, const float* b, float* y, int64_t B, int64_t I, int64_t O, int64_t has_bias, int64_t relu) {
    for (int64_t r = 0; r < B; ++r)
        for (int64_t o = 0; o < O; ++o) {
            float s = has_bias ? b[o] : 0.f;
            for (int64_t i = 0; i < I; ++i) s += x[r * I + i] * w[o * I + i];
            y[r * O + o] = relu && s < 0.f ? 0.f : s;
        }
}
""")


def linear(x, w, b=None, relu=False):
    x = x.contiguous()
    y = torch.empty(x.shape[0], w.shape[0])
    lib.linear(x, w.detach().contiguous(), w.detach() if b is None else b.detach().contiguous(), y, x.shape[0], x.shape[1], w.shape[0], b is not None, relu)
    return y


class ModelNew(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.enc = torch.nn.Linear(d, d, bias=False)
        self.dec = torch.nn.Linear(d, d, bias=False)

    def forward(self, x):
        return linear(linear(x, self.enc.weight, relu=True), self.dec.weight)
