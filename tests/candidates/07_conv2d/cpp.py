# Honest C++ candidate: im2col into a zero-padded column buffer, then a register-tiled GEMM
# (weights [OC, C*KH*KW] x columns [C*KH*KW, OH*OW]) with the bias added in the epilogue.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

typedef float vf __attribute__((vector_size(64), aligned(4), may_alias));  // 16 floats
constexpr int64_t VW = 16;
constexpr int64_t TM = 8;        // output channels per micro-tile
constexpr int64_t TV = 2;        // vectors of output pixels per micro-tile
constexpr int64_t TN = TV * VW;

// y[N,OC,OH,OW] = conv2d(x[N,C,H,W], w[OC,C,KH,KW], stride (SH,SW), padding (PH,PW)) + b[OC]
extern "C" void conv2d_fwd(const float* x, const float* w, const float* b, float* y,
                           int64_t N, int64_t C, int64_t H, int64_t W,
                           int64_t OC, int64_t KH, int64_t KW,
                           int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                           int64_t OH, int64_t OW) {
    const int64_t K = C * KH * KW, P = OH * OW;
    const int64_t Pp = (P + TN - 1) / TN * TN;  // columns padded so every tile is full
    std::vector<float> col(N * K * Pp);

    // im2col: col[n][(c,kh,kw)][(oh,ow)] = x[n][c][oh*SH-PH+kh][ow*SW-PW+kw], 0 outside the image
    #pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = 0; k < K; ++k) {
            const int64_t c = k / (KH * KW), kh = (k / KW) % KH, kw = k % KW;
            const float* in = x + (n * C + c) * H * W;
            float* row = col.data() + (n * K + k) * Pp;
            for (int64_t oh = 0; oh < OH; ++oh) {
                const int64_t ih = oh * SH - PH + kh;
                float* r = row + oh * OW;
                if (ih < 0 || ih >= H) {
                    for (int64_t ow = 0; ow < OW; ++ow) r[ow] = 0.f;
                    continue;
                }
                const float* irow = in + ih * W;
                for (int64_t ow = 0; ow < OW; ++ow) {
                    const int64_t iw = ow * SW - PW + kw;
                    r[ow] = (iw >= 0 && iw < W) ? irow[iw] : 0.f;
                }
            }
            for (int64_t p = P; p < Pp; ++p) row[p] = 0.f;
        }
    }

    // GEMM per image: out[oc, p] = sum_k w[oc, k] * col[k, p]
    const int64_t mt = (OC + TM - 1) / TM, nt = Pp / TN;
    #pragma omp parallel for collapse(3) schedule(static)
    for (int64_t n = 0; n < N; ++n) {
        for (int64_t bm = 0; bm < mt; ++bm) {
            for (int64_t bn = 0; bn < nt; ++bn) {
                const int64_t m0 = bm * TM, p0 = bn * TN;
                const int64_t mb = std::min(TM, OC - m0), pb = std::min(TN, P - p0);
                const float* wr[TM];  // channels past OC repeat the last one; dropped below
                for (int64_t i = 0; i < TM; ++i) wr[i] = w + (m0 + std::min(i, mb - 1)) * K;
                vf acc[TM][TV];
                for (int64_t i = 0; i < TM; ++i)
                    for (int64_t v = 0; v < TV; ++v) acc[i][v] = vf{};
                const float* ck = col.data() + n * K * Pp + p0;
                for (int64_t k = 0; k < K; ++k, ck += Pp) {
                    vf cv[TV];
                    for (int64_t v = 0; v < TV; ++v) cv[v] = *(const vf*)(ck + v * VW);
                    for (int64_t i = 0; i < TM; ++i) {
                        const float a = wr[i][k];
                        for (int64_t v = 0; v < TV; ++v) acc[i][v] += a * cv[v];
                    }
                }
                for (int64_t i = 0; i < mb; ++i) {
                    float tile[TN];
                    std::memcpy(tile, acc[i], sizeof(tile));
                    float* out = y + (n * OC + m0 + i) * P + p0;
                    const float bias = b[m0 + i];
                    for (int64_t j = 0; j < pb; ++j) out[j] = tile[j] + bias;
                }
            }
        }
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, kernel_size,
                                    stride=stride, padding=padding)

    def forward(self, x):
        x = x.contiguous()
        w = self.conv.weight.contiguous()
        N, C, H, W = x.shape
        OC, _, KH, KW = w.shape
        SH, SW = self.conv.stride
        PH, PW = self.conv.padding
        OH = (H + 2 * PH - KH) // SH + 1
        OW = (W + 2 * PW - KW) // SW + 1
        y = torch.empty(N, OC, OH, OW, dtype=x.dtype, device=x.device)
        lib.conv2d_fwd(x, w, self.conv.bias.contiguous(), y,
                       N, C, H, W, OC, KH, KW, SH, SW, PH, PW, OH, OW)
        return y
