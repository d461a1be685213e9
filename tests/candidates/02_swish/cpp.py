import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cstring>
#include <cmath>

// exp(x) for x <= 0, written with plain float ops so the loop below vectorizes:
// exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2 / 2, exp(r) by a degree-6 polynomial.
static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;  // keeps 2^n a normal float; exp(-87) ~ 1.6e-38
    // round(x / ln2) by the 1.5 * 2^23 trick (std::floor would block vectorization)
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

extern "C" void swish(const float* x, float* y, int64_t n) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        float v = x[i];
        float e = exp_nonpos(-std::fabs(v));  // in (0, 1]: never overflows
        float inv = 1.0f / (1.0f + e);
        float s = v >= 0.f ? inv : e * inv;    // sigmoid(v)
        y[i] = v * s;
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x):
        x = x.contiguous()
        y = torch.empty_like(x)
        lib.swish(x, y, x.numel())
        return y
