# expect: runtime_error
# Bug: the kernel is not declared extern "C", so its symbol is C++-mangled
# (_Z11linear_reluPKfS0_S0_Pflll) and `lib.linear_relu` raises AttributeError at the call.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>

void linear_relu(const float* x, const float* w, const float* b, float* y,
                 int64_t M, int64_t K, int64_t N) {
    #pragma omp parallel for collapse(2)
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            float acc = b[n];
            #pragma omp simd reduction(+ : acc)
            for (int64_t k = 0; k < K; ++k) acc += x[m * K + k] * w[n * K + k];
            y[m * N + n] = acc > 0.f ? acc : 0.f;
        }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        x = x.contiguous()
        M, K = x.shape
        N = self.linear.weight.shape[0]
        y = torch.empty(M, N, dtype=x.dtype, device=x.device)
        w, b = self.linear.weight.contiguous(), self.linear.bias.contiguous()
        lib.linear_relu(x, w, b, y, M, K, N)
        return y
