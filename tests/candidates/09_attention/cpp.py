# Honest C++ candidate: per (batch*head, tile of TQ query rows), scores = Q K^T and out = P V
# are both register-tiled (TQ rows x 32 columns of 16-wide vector accumulators); K is
# transposed and V padded once up front; softmax uses a polynomial exp on 16-wide vectors.
import math

import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

typedef float vf __attribute__((vector_size(64), aligned(4), may_alias));  // 16 floats
typedef int32_t vi __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int64_t VW = 16;
constexpr int64_t TQ = 8;        // query rows per tile
constexpr int64_t TV = 2;        // vectors per accumulator row
constexpr int64_t TN = TV * VW;  // columns per accumulator tile

// exp(x) for x <= 0 (inputs here are s - max): 2^n * e^r, n = round(x / ln2), |r| <= ln2/2,
// degree-6 Taylor for e^r. Written on vectors: GCC does not vectorise a scalar exp loop
// without -ffast-math.
static inline vf exp_nonpos(vf x) {
    const vf lo = vf{} - 87.f;
    x = x < lo ? lo : x;
    const vf n = (x * 1.44269504f + 12582912.f) - 12582912.f;  // round to nearest integer
    const vf r = x - n * 0.693145751953125f - n * 1.428606765330187e-6f;
    vf p = vf{} + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

static inline int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// out[B,Sq,D] = softmax(q[B,Sq,D] k[B,Sk,D]^T * scale) v[B,Sk,D]
extern "C" void attention_fwd(const float* q, const float* k, const float* v, float* out,
                              int64_t B, int64_t Sq, int64_t Sk, int64_t D, double scale) {
    const float sc = (float)scale;
    const int64_t Skp = round_up(Sk, TN), Dp = round_up(D, TN);
    std::vector<float> kt(B * D * Skp);  // kt[b][d][j] = k[b][j][d], zero for j >= Sk
    std::vector<float> vp(B * Sk * Dp);  // vp[b][j][d] = v[b][j][d], zero for d >= D
    #pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        float* ktb = kt.data() + b * D * Skp;
        for (int64_t d = 0; d < D; ++d) {
            for (int64_t j = 0; j < Sk; ++j) ktb[d * Skp + j] = k[(b * Sk + j) * D + d];
            for (int64_t j = Sk; j < Skp; ++j) ktb[d * Skp + j] = 0.f;
        }
        for (int64_t j = 0; j < Sk; ++j) {
            float* dst = vp.data() + (b * Sk + j) * Dp;
            std::memcpy(dst, v + (b * Sk + j) * D, D * sizeof(float));
            for (int64_t d = D; d < Dp; ++d) dst[d] = 0.f;
        }
    }

    const int64_t nq = (Sq + TQ - 1) / TQ;
    #pragma omp parallel
    {
        std::vector<float> sbuf(TQ * Skp);
        #pragma omp for collapse(2) schedule(static)
        for (int64_t b = 0; b < B; ++b) {
            for (int64_t t = 0; t < nq; ++t) {
                const int64_t i0 = t * TQ, rows = std::min(TQ, Sq - i0);
                const float* ktb = kt.data() + b * D * Skp;
                const float* vb = vp.data() + b * Sk * Dp;
                const float* qi[TQ];  // rows past Sq repeat the last one; never stored
                for (int64_t r = 0; r < TQ; ++r)
                    qi[r] = q + (b * Sq + i0 + std::min(r, rows - 1)) * D;

                // scores s[r][j] = scale * q_r . k_j, 32 keys at a time
                for (int64_t j0 = 0; j0 < Skp; j0 += TN) {
                    vf acc[TQ][TV];
                    for (int64_t r = 0; r < TQ; ++r)
                        for (int64_t u = 0; u < TV; ++u) acc[r][u] = vf{};
                    const float* kd = ktb + j0;
                    for (int64_t d = 0; d < D; ++d, kd += Skp) {
                        vf kv[TV];
                        for (int64_t u = 0; u < TV; ++u) kv[u] = *(const vf*)(kd + u * VW);
                        for (int64_t r = 0; r < TQ; ++r) {
                            const float a = qi[r][d];
                            for (int64_t u = 0; u < TV; ++u) acc[r][u] += a * kv[u];
                        }
                    }
                    for (int64_t r = 0; r < TQ; ++r)
                        for (int64_t u = 0; u < TV; ++u)
                            *(vf*)(sbuf.data() + r * Skp + j0 + u * VW) = acc[r][u] * sc;
                }

                // softmax numerators over the Sk real keys (padding set to -inf, so its exp is
                // ~1e-38 and P V never reads it); 1/row sum kept for the end
                float inv[TQ];
                for (int64_t r = 0; r < TQ; ++r) {
                    float* sr = sbuf.data() + r * Skp;
                    for (int64_t j = Sk; j < Skp; ++j) sr[j] = -INFINITY;
                    vf m = vf{} - INFINITY;
                    for (int64_t j = 0; j < Skp; j += VW) {
                        const vf x = *(const vf*)(sr + j);
                        m = x > m ? x : m;
                    }
                    float mx = m[0];
                    for (int64_t i = 1; i < VW; ++i) mx = m[i] > mx ? m[i] : mx;
                    vf acc = vf{};
                    for (int64_t j = 0; j < Skp; j += VW) {
                        const vf e = exp_nonpos(*(const vf*)(sr + j) - mx);
                        *(vf*)(sr + j) = e;
                        acc += e;
                    }
                    float sum = 0.f;
                    for (int64_t i = 0; i < VW; ++i) sum += acc[i];
                    inv[r] = 1.f / sum;
                }

                // out[r][d] = sum_j p[r][j] v[j][d] / sum_r, 32 head dims at a time
                for (int64_t d0 = 0; d0 < Dp; d0 += TN) {
                    vf acc[TQ][TV];
                    for (int64_t r = 0; r < TQ; ++r)
                        for (int64_t u = 0; u < TV; ++u) acc[r][u] = vf{};
                    const float* vj = vb + d0;
                    for (int64_t j = 0; j < Sk; ++j, vj += Dp) {
                        vf vv[TV];
                        for (int64_t u = 0; u < TV; ++u) vv[u] = *(const vf*)(vj + u * VW);
                        for (int64_t r = 0; r < TQ; ++r) {
                            const float p = sbuf[r * Skp + j];
                            for (int64_t u = 0; u < TV; ++u) acc[r][u] += p * vv[u];
                        }
                    }
                    const int64_t db = std::min(TN, D - d0);
                    for (int64_t r = 0; r < rows; ++r) {
                        float tile[TN];
                        std::memcpy(tile, acc[r], sizeof(tile));
                        float* dst = out + (b * Sq + i0 + r) * D + d0;
                        for (int64_t d = 0; d < db; ++d) dst[d] = tile[d] * inv[r];
                    }
                }
            }
        }
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, q, k, v):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        B, Sq, D = q.shape
        Sk = k.shape[1]
        out = torch.empty(B, Sq, D, dtype=q.dtype, device=q.device)
        lib.attention_fwd(q, k, v, out, B, Sq, Sk, D, 1.0 / math.sqrt(D))
        return out
