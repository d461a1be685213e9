import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <cstring>

// exp(x) for float, branch-free and SIMD-friendly: clamp, Cody-Waite range reduction,
// degree-6 polynomial on [-ln2/2, ln2/2], scale by 2^n through the exponent bits.
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float t = x * 1.44269504088896341f;
    const float n = (t + 12582912.0f) - 12582912.0f;      // round to nearest
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float s; std::memcpy(&s, &e, 4);
    return p * s;
}

extern "C" void swish(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
    #pragma omp parallel for simd schedule(static) if(n >= 65536)
    for (int64_t i = 0; i < n; ++i) {
        const float v = x[i];
        y[i] = v / (1.0f + exp_poly(-v));
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
