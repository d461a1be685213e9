# expect: compile_error
# Bug: uses the C99 keyword `restrict`, which C++ does not have (g++ spells it __restrict__).
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
extern "C" void matmul(const float* restrict A, const float* restrict B, float* restrict C,
                       int64_t M, int64_t N, int64_t K) {
    #pragma omp parallel for
    for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) C[i * N + j] = 0.f;
        for (int64_t k = 0; k < K; ++k) {
            const float a = A[i * K + k];
            for (int64_t j = 0; j < N; ++j) C[i * N + j] += a * B[k * N + j];
        }
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A, B):
        A = A.contiguous()
        B = B.contiguous()
        M, K = A.shape
        N = B.shape[1]
        C = torch.empty(M, N, dtype=A.dtype, device=A.device)
        lib.matmul(A, B, C, M, N, K)
        return C
