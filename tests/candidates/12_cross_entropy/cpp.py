# Honest C++ candidate: per row a stable log-sum-exp (max, then a vectorisable exp), minus the
# target logit; the batch mean is accumulated in double.
import torch
from sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>

// exp(x) for x <= 0 (inputs here are x - max): 2^n * e^r with |r| <= ln2/2, degree-6 Taylor.
static inline float exp_nonpos(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float n = std::floor(x * 1.44269504f + 0.5f);
    const float r = x - n * 0.693145751953125f - n * 1.428606765330187e-6f;
    float p = 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    return p * __builtin_bit_cast(float, ((int32_t)n + 127) << 23);
}

// loss[0] = mean_b( logsumexp(logits[b, :]) - logits[b, targets[b]] )
extern "C" void cross_entropy_fwd(const float* logits, const int64_t* targets, float* loss,
                                  int64_t B, int64_t C) {
    double total = 0.0;
    #pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        const float* row = logits + b * C;
        float mx = -INFINITY;
        #pragma omp simd reduction(max : mx)
        for (int64_t c = 0; c < C; ++c) mx = row[c] > mx ? row[c] : mx;
        float sum = 0.f;
        #pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < C; ++c) sum += exp_nonpos(row[c] - mx);
        total += (double)mx + std::log((double)sum) - (double)row[targets[b]];
    }
    loss[0] = (float)(total / (double)B);
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, logits, targets):
        logits, targets = logits.contiguous(), targets.contiguous()
        B, C = logits.shape
        loss = torch.empty((), dtype=logits.dtype, device=logits.device)
        lib.cross_entropy_fwd(logits, targets, loss, B, C)
        return loss
