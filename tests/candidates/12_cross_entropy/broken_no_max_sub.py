# expect: incorrect
# Bug: log-sum-exp without subtracting the row max first. Fine for randn logits, but with
# logits ~ randn*30 expf overflows to inf and the loss becomes inf.
import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cmath>
#include <cstdint>

extern "C" void cross_entropy_fwd(const float* logits, const int64_t* targets, float* loss,
                                  int64_t B, int64_t C) {
    double total = 0.0;
    #pragma omp parallel for reduction(+ : total)
    for (int64_t b = 0; b < B; ++b) {
        const float* row = logits + b * C;
        float sum = 0.f;
        for (int64_t c = 0; c < C; ++c) sum += std::exp(row[c]);
        total += std::log(sum) - row[targets[b]];
    }
    loss[0] = (float)(total / B);
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
