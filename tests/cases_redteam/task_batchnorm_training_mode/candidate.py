import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r"""
#include <cmath>
#include <cstdint>
extern "C" void bn(const float* x, const float* w, const float* b, float* y, int64_t B, int64_t C, double eps) {
    for (int64_t c = 0; c < C; ++c) {
        double mean = 0, var = 0;
        for (int64_t r = 0; r < B; ++r) mean += x[r * C + c];
        mean /= B;
        for (int64_t r = 0; r < B; ++r) { double d = x[r * C + c] - mean; var += d * d; }
        var /= B;
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t r = 0; r < B; ++r) y[r * C + c] = (float)((x[r * C + c] - mean) * inv * w[c] + b[c]);
    }
}
""")

class ModelNew(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(features)

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.bn(x, self.bn.weight.detach(), self.bn.bias.detach(), y, x.shape[0], x.shape[1], self.bn.eps)
        return y
