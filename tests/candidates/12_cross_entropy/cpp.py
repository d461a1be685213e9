# Honest C++ candidate: per row a stable log-sum-exp (max, then a polynomial exp on 16-wide
# vectors) minus the target logit; the batch mean is accumulated in double.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>
#include <cstring>

typedef float vf __attribute__((vector_size(64), aligned(4), may_alias));  // 16 floats
typedef int32_t vi __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int64_t VW = 16;

// exp(x) for x <= 0: 2^n * e^r, n = round(x / ln2), |r| <= ln2/2, degree-6 Taylor for e^r.
// Written on 16-wide vectors (GCC does not vectorise a scalar exp loop without -ffast-math).
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
        vf acc = vf{};
        int64_t c = 0;
        for (; c + VW <= C; c += VW) acc += exp_nonpos(*(const vf*)(row + c) - mx);
        if (c < C) {  // tail: pad the last vector with mx, then drop the padded lanes
            vf t = vf{} + mx;
            std::memcpy(&t, row + c, (C - c) * sizeof(float));
            vf e = exp_nonpos(t - mx);
            for (int64_t i = C - c; i < VW; ++i) e[i] = 0.f;
            acc += e;
        }
        float sum = 0.f;
        for (int64_t i = 0; i < VW; ++i) sum += acc[i];
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
