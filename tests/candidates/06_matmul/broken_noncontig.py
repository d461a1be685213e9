# expect: runtime_error
# Bug: transposes B so the inner loop reads both operands along K, but passes the transposed
# view without .contiguous() (the cpp backend rejects non-contiguous tensors: ValueError).
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
// C = A @ Bt^T, with Bt (N, K) row-major.
extern "C" void matmul_nt(const float* A, const float* Bt, float* C,
                          int64_t M, int64_t N, int64_t K) {
    #pragma omp parallel for collapse(2)
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            float s = 0.f;
            #pragma omp simd reduction(+:s)
            for (int64_t k = 0; k < K; ++k) s += A[i * K + k] * Bt[j * K + k];
            C[i * N + j] = s;
        }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, A, B):
        A = A.contiguous()
        Bt = B.t()
        M, K = A.shape
        N = B.shape[1]
        C = torch.empty(M, N, dtype=A.dtype, device=A.device)
        lib.matmul_nt(A, Bt, C, M, N, K)
        return C
