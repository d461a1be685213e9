# expect: incorrect
# Bug: the output size accounts for the padding, but the input index forgets to subtract it
# (ih = oh*stride + kh instead of oh*stride - pad + kh), so every output is shifted by one pixel.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>

extern "C" void conv2d_fwd(const float* x, const float* w, const float* b, float* y,
                           int64_t N, int64_t C, int64_t H, int64_t W,
                           int64_t OC, int64_t KH, int64_t KW,
                           int64_t SH, int64_t SW, int64_t PH, int64_t PW,
                           int64_t OH, int64_t OW) {
    #pragma omp parallel for collapse(2)
    for (int64_t n = 0; n < N; ++n)
        for (int64_t oc = 0; oc < OC; ++oc)
            for (int64_t oh = 0; oh < OH; ++oh)
                for (int64_t ow = 0; ow < OW; ++ow) {
                    float acc = b[oc];
                    for (int64_t c = 0; c < C; ++c)
                        for (int64_t kh = 0; kh < KH; ++kh)
                            for (int64_t kw = 0; kw < KW; ++kw) {
                                const int64_t ih = oh * SH + kh, iw = ow * SW + kw;
                                if (ih < H && iw < W)
                                    acc += x[((n * C + c) * H + ih) * W + iw] *
                                           w[((oc * C + c) * KH + kh) * KW + kw];
                            }
                    y[((n * OC + oc) * OH + oh) * OW + ow] = acc;
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
