import torch
from kagent.sandbox.backends.cpp import load_cpp

lib = load_cpp(r'''
#include <cstdint>
#include <omp.h>

// Sum of a contiguous span with 64 independent partial sums (several vector accumulators,
// so the adds are not serialized on one register).
static inline float span_sum(const float* p, int64_t n) {
    constexpr int64_t L = 64;
    float acc[L] = {};
    int64_t i = 0;
    for (; i + L <= n; i += L)
        #pragma omp simd
        for (int64_t l = 0; l < L; ++l) acc[l] += p[i + l];
    float s = 0.f;
    for (; i < n; ++i) s += p[i];
    #pragma omp simd reduction(+:s)
    for (int64_t l = 0; l < L; ++l) s += acc[l];
    return s;
}

// y[r] = sum_c x[r * cols + c] for a contiguous (rows, cols) matrix.
extern "C" void row_sum(const float* x, float* y, int64_t rows, int64_t cols) {
    if (rows >= 4 * omp_get_max_threads()) {
        // Many rows: one row per iteration, rows split across threads.
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; ++r) y[r] = span_sum(x + r * cols, cols);
    } else {
        // Few long rows: split each row into per-thread chunks.
        for (int64_t r = 0; r < rows; ++r) {
            const float* row = x + r * cols;
            float s = 0.f;
            #pragma omp parallel reduction(+:s)
            {
                const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
                const int64_t chunk = (cols + nt - 1) / nt;
                const int64_t lo = t * chunk < cols ? t * chunk : cols;
                const int64_t hi = lo + chunk < cols ? lo + chunk : cols;
                s += span_sum(row + lo, hi - lo);
            }
            y[r] = s;
        }
    }
}
''')


class ModelNew(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        assert x.dim() == 2 and self.dim in (1, -1), "kernel reduces the last dim of a 2D tensor"
        x = x.contiguous()
        rows, cols = x.shape
        y = torch.empty(rows, dtype=x.dtype, device=x.device)
        lib.row_sum(x, y, rows, cols)
        return y
