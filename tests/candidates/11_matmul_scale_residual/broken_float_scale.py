# expect: incorrect
# Bug: `scale` is declared `float` in the C signature, but a Python float is passed as a C
# double, so the kernel reads the wrong register bits (0.5 arrives as 0.0f) and returns ~x.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

// 16 floats: one AVX-512 register (GCC splits it on narrower targets).
typedef float vf __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int64_t VW = 16;
constexpr int64_t TM = 8;        // rows of x per micro-tile
constexpr int64_t TV = 2;        // vectors per row
constexpr int64_t TN = TV * VW;  // output columns per micro-tile

// y[M,N] = (x[M,K] @ w[N,K]^T + b[N]) * scale + x[M,N]   (square: K == N)
extern "C" void linear_scale_residual(const float* x, const float* w, const float* b, float* y,
                                      float scale, int64_t M, int64_t K, int64_t N) {
    const float sc = scale;
    // W^T, zero-padded to a multiple of TN columns so every micro-tile runs the same loop.
    const int64_t Np = (N + TN - 1) / TN * TN;
    std::vector<float> wt(K * Np);
    #pragma omp parallel for
    for (int64_t k = 0; k < K; ++k) {
        for (int64_t n = 0; n < N; ++n) wt[k * Np + n] = w[n * K + k];
        for (int64_t n = N; n < Np; ++n) wt[k * Np + n] = 0.f;
    }

    const int64_t mt = (M + TM - 1) / TM, nt = Np / TN;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t bm = 0; bm < mt; ++bm) {
        for (int64_t bn = 0; bn < nt; ++bn) {
            const int64_t m0 = bm * TM, n0 = bn * TN;
            const int64_t mb = std::min(TM, M - m0), nb = std::min(TN, N - n0);
            const float* xr[TM];  // rows past M repeat the last row; their results are dropped
            for (int64_t i = 0; i < TM; ++i) xr[i] = x + (m0 + std::min(i, mb - 1)) * K;
            vf acc[TM][TV];
            for (int64_t i = 0; i < TM; ++i)
                for (int64_t v = 0; v < TV; ++v) acc[i][v] = vf{};
            const float* wk = wt.data() + n0;
            for (int64_t k = 0; k < K; ++k, wk += Np) {
                vf wv[TV];
                for (int64_t v = 0; v < TV; ++v) wv[v] = *(const vf*)(wk + v * VW);
                for (int64_t i = 0; i < TM; ++i) {
                    const float a = xr[i][k];
                    for (int64_t v = 0; v < TV; ++v) acc[i][v] += a * wv[v];
                }
            }
            for (int64_t i = 0; i < mb; ++i) {
                float tile[TN];
                std::memcpy(tile, acc[i], sizeof(tile));
                float* yr = y + (m0 + i) * N + n0;
                for (int64_t j = 0; j < nb; ++j) {
                    yr[j] = (tile[j] + b[n0 + j]) * sc + x[(m0 + i) * K + n0 + j];
                }
            }
        }
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, dim, scale):
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim)
        self.scale = scale

    def forward(self, x):
        x = x.contiguous()
        w = self.linear.weight.contiguous()
        M, K = x.shape
        N = w.shape[0]
        y = torch.empty(M, N, dtype=x.dtype, device=x.device)
        b = self.linear.bias.contiguous()
        lib.linear_scale_residual(x, w, b, y, float(self.scale), M, K, N)
        return y
