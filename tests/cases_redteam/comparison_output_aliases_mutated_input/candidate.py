import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cstdint>
extern "C" void dbl(float* x, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] *= 2.f; }
""")

class ModelNew(torch.nn.Module):
    def forward(self, x):
        lib.dbl(x, x.numel())
        return x
