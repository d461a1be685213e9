import torch
import torch.nn as nn
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <vector>
#include <immintrin.h>

// y = relu(x @ W^T + b), x: M x K, W: N x K (nn.Linear layout), b: N, y: M x N.
// Work is split over panels of 32 output columns. Each panel packs its 32 rows of W into a
// K x 32 k-major buffer (32 KiB for K=256, stays in L1), then an MR x 32 register micro-kernel
// (MR <= 8 rows: 16 zmm accumulators) streams the panel with broadcast x values; bias and ReLU
// are fused into the single store of each tile.
constexpr int NR = 32;

template <int MR>
static inline void micro(const float* __restrict__ x, int64_t K, const float* __restrict__ P,
                         const float* __restrict__ bias, float* __restrict__ y, int64_t N,
                         __mmask16 m0, __mmask16 m1) {
    __m512 acc0[MR], acc1[MR];
    const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
    for (int r = 0; r < MR; ++r) { acc0[r] = b0; acc1[r] = b1; }
    for (int64_t k = 0; k < K; ++k) {
        const __m512 w0 = _mm512_load_ps(P + k * NR), w1 = _mm512_load_ps(P + k * NR + 16);
        for (int r = 0; r < MR; ++r) {
            const __m512 a = _mm512_set1_ps(x[r * K + k]);
            acc0[r] = _mm512_fmadd_ps(a, w0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(a, w1, acc1[r]);
        }
    }
    const __m512 z = _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) {
        _mm512_mask_storeu_ps(y + r * N, m0, _mm512_max_ps(acc0[r], z));
        _mm512_mask_storeu_ps(y + r * N + 16, m1, _mm512_max_ps(acc1[r], z));
    }
}

// 16x16 in-register transpose: in[c] = row c (16 k values) -> out[kk] = column kk (16 rows).
static inline void transpose16(const __m512* in, __m512* out) {
    __m512 t[16], s[16];
    for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm512_unpacklo_ps(in[2 * i], in[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(in[2 * i], in[2 * i + 1]);
    }
    // s[4g + c]: lane L holds rows 4g..4g+3 of column 4L + c
    for (int g = 0; g < 4; ++g) {
        s[4 * g + 0] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0x44);
        s[4 * g + 1] = _mm512_shuffle_ps(t[4 * g + 0], t[4 * g + 2], 0xEE);
        s[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        s[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    // 4x4 transpose of 128-bit lanes across groups, per column offset c
    for (int c = 0; c < 4; ++c) {
        const __m512 u0 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x88);
        const __m512 u1 = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xDD);
        const __m512 u2 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x88);
        const __m512 u3 = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xDD);
        out[0 + c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        out[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xDD);
        out[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        out[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xDD);
    }
}

// P[k][c] = W[j0 + c][k] for c < nc, 0 for nc <= c < 32; 16x16 blocks transposed in registers.
static void pack_panel(const float* __restrict__ W, int64_t K, int64_t j0, int64_t nc, float* __restrict__ P) {
    for (int h = 0; h < 2; ++h) {
        int64_t k0 = 0;
        for (; k0 + 16 <= K; k0 += 16) {
            __m512 in[16], out[16];
            for (int c = 0; c < 16; ++c)
                in[c] = 16 * h + c < nc ? _mm512_loadu_ps(W + (j0 + 16 * h + c) * K + k0) : _mm512_setzero_ps();
            transpose16(in, out);
            for (int kk = 0; kk < 16; ++kk) _mm512_store_ps(P + (k0 + kk) * NR + 16 * h, out[kk]);
        }
        for (; k0 < K; ++k0)
            for (int c = 0; c < 16; ++c)
                P[k0 * NR + 16 * h + c] = 16 * h + c < nc ? W[(j0 + 16 * h + c) * K + k0] : 0.0f;
    }
}

static void panel(const float* x, const float* W, const float* b, float* y,
                  int64_t M, int64_t N, int64_t K, int64_t j0) {
    thread_local std::vector<float, std::allocator<float>> store;
    if ((int64_t)store.size() < K * NR + 16) store.resize(K * NR + 16);
    float* P = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(store.data()) + 63) & ~uintptr_t(63));
    const int64_t nc = N - j0 < NR ? N - j0 : NR;
    alignas(64) float bias[NR];
    for (int c = 0; c < NR; ++c) bias[c] = c < nc ? b[j0 + c] : 0.0f;
    pack_panel(W, K, j0, nc, P);
    const __mmask16 m0 = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 = nc >= 32 ? (__mmask16)0xFFFF : nc <= 16 ? (__mmask16)0 : (__mmask16)((1u << (nc - 16)) - 1);
    int64_t i = 0;
    for (; i + 8 <= M; i += 8) micro<8>(x + i * K, K, P, bias, y + i * N + j0, N, m0, m1);
    const int64_t rest = M - i;
    const float* xi = x + i * K; float* yi = y + i * N + j0;
    switch (rest) {
        case 7: micro<7>(xi, K, P, bias, yi, N, m0, m1); break;
        case 6: micro<6>(xi, K, P, bias, yi, N, m0, m1); break;
        case 5: micro<5>(xi, K, P, bias, yi, N, m0, m1); break;
        case 4: micro<4>(xi, K, P, bias, yi, N, m0, m1); break;
        case 3: micro<3>(xi, K, P, bias, yi, N, m0, m1); break;
        case 2: micro<2>(xi, K, P, bias, yi, N, m0, m1); break;
        case 1: micro<1>(xi, K, P, bias, yi, N, m0, m1); break;
        default: break;
    }
}

extern "C" void linear_bias_relu(const float* x, const float* W, const float* b, float* y,
                                 int64_t M, int64_t N, int64_t K) {
    const int64_t npanels = (N + NR - 1) / NR;
    #pragma omp parallel for schedule(dynamic, 1) if(M * N * K >= (int64_t)1 << 20 && npanels > 1)
    for (int64_t p = 0; p < npanels; ++p) panel(x, W, b, y, M, N, K, p * NR);
}
''')


class ModelNew(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)   # weights loaded from the reference

    def forward(self, x):
        w = self.linear.weight
        N, K = w.shape
        x2 = x.reshape(-1, K).contiguous()
        y = torch.empty(x2.shape[0], N, dtype=x.dtype, device=x.device)
        lib.linear_bias_relu(x2, w.contiguous(), self.linear.bias.contiguous(), y, x2.shape[0], N, K)
        return y.view(*x.shape[:-1], N)
