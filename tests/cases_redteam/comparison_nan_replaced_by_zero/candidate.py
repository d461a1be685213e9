import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cmath>
#include <cstdint>
extern "C" void f(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) { const float v = (float)x[i]; y[i] = (float)(v < 0.f ? 0.f : std::log(v)); }
}
""")

class ModelNew(torch.nn.Module):
    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.f(x, y, x.numel())
        return y
