import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <algorithm>

// C (M, N) = A (M, K) @ B (K, N), all row-major and contiguous.
// C is cut into MR x NR register tiles; each tile walks K in KC-long slices so the
// KC x NR slice of B it streams stays in L1. Full tiles use fixed-size loops the compiler
// keeps in vector registers; edge tiles use the same code with runtime bounds.
constexpr int64_t MR = 4, NR = 32, KC = 256;

static inline void tile_full(const float* A, const float* B, float* C,
                             int64_t K, int64_t N, int64_t k0, int64_t kc) {
    float acc[MR][NR];
    for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) acc[i][j] = k0 == 0 ? 0.f : C[i * N + j];
    for (int64_t k = k0; k < k0 + kc; ++k) {
        const float* b = B + k * N;
        for (int64_t i = 0; i < MR; ++i) {
            const float a = A[i * K + k];
            #pragma omp simd
            for (int64_t j = 0; j < NR; ++j) acc[i][j] += a * b[j];
        }
    }
    for (int64_t i = 0; i < MR; ++i)
        for (int64_t j = 0; j < NR; ++j) C[i * N + j] = acc[i][j];
}

static void tile_edge(const float* A, const float* B, float* C, int64_t K, int64_t N,
                      int64_t k0, int64_t kc, int64_t mr, int64_t nr) {
    float acc[MR][NR];
    for (int64_t i = 0; i < mr; ++i)
        for (int64_t j = 0; j < nr; ++j) acc[i][j] = k0 == 0 ? 0.f : C[i * N + j];
    for (int64_t k = k0; k < k0 + kc; ++k) {
        const float* b = B + k * N;
        for (int64_t i = 0; i < mr; ++i) {
            const float a = A[i * K + k];
            for (int64_t j = 0; j < nr; ++j) acc[i][j] += a * b[j];
        }
    }
    for (int64_t i = 0; i < mr; ++i)
        for (int64_t j = 0; j < nr; ++j) C[i * N + j] = acc[i][j];
}

extern "C" void matmul(const float* A, const float* B, float* C,
                       int64_t M, int64_t N, int64_t K) {
    const int64_t tiles_m = (M + MR - 1) / MR, tiles_n = (N + NR - 1) / NR;
    if (K == 0) {
        #pragma omp parallel for
        for (int64_t i = 0; i < M * N; ++i) C[i] = 0.f;
        return;
    }
    // Column panels outermost: a thread reuses one NR-wide panel of B across many row tiles.
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t tn = 0; tn < tiles_n; ++tn) {
        for (int64_t tm = 0; tm < tiles_m; ++tm) {
            const int64_t i0 = tm * MR, j0 = tn * NR;
            const int64_t mr = std::min(MR, M - i0), nr = std::min(NR, N - j0);
            for (int64_t k0 = 0; k0 < K; k0 += KC) {
                const int64_t kc = std::min(KC, K - k0);
                if (mr == MR && nr == NR)
                    tile_full(A + i0 * K, B + j0, C + i0 * N + j0, K, N, k0, kc);
                else
                    tile_edge(A + i0 * K, B + j0, C + i0 * N + j0, K, N, k0, kc, mr, nr);
            }
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
