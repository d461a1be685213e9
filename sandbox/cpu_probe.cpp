// Probes of this CPU's peaks for the speed of light (sol.py), built like a C++ candidate.
#include <cstdint>
#include <cstring>
#include <omp.h>

#if defined(__AVX512F__)
constexpr int VEC_BYTES = 64;
#elif defined(__AVX__)
constexpr int VEC_BYTES = 32;
#else
constexpr int VEC_BYTES = 16;
#endif
typedef float vec __attribute__((vector_size(VEC_BYTES)));
constexpr int LANES = VEC_BYTES / sizeof(float);
// Independent accumulators: enough to cover FMA latency (4 cycles) x 2 FMA ports, and more.
constexpr int ACC = 12;

// FLOP/s (in GFLOP/s) of `iters` rounds of ACC vector FMAs on each of `threads` threads.
extern "C" double fma_gflops(int threads, int64_t iters) {
    double sink = 0.0;
    double began = omp_get_wtime();
    #pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        vec acc[ACC];
        vec a, b;
        for (int l = 0; l < LANES; ++l) { a[l] = 0.999999f; b[l] = 1e-7f * (omp_get_thread_num() + 1); }
        for (int j = 0; j < ACC; ++j) acc[j] = b * (float)(j + 1);
        for (int64_t i = 0; i < iters; ++i) {
            #pragma GCC unroll 12
            for (int j = 0; j < ACC; ++j) acc[j] = acc[j] * a + b;
        }
        for (int j = 0; j < ACC; ++j)
            for (int l = 0; l < LANES; ++l) sink += acc[j][l];
    }
    double seconds = omp_get_wtime() - began;
    volatile double keep = sink;
    (void)keep;
    return 2.0 * ACC * LANES * (double)iters * threads / seconds / 1e9;
}

// Best time (seconds) of `reps` copies of n floats from src to dst on `threads` threads.
extern "C" double copy_seconds(const float* src, float* dst, int64_t n, int reps, int threads) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        double began = omp_get_wtime();
        if (threads == 1) {
            std::memcpy(dst, src, n * sizeof(float));
        } else {
            #pragma omp parallel num_threads(threads)
            {
                int t = omp_get_thread_num(), k = omp_get_num_threads();
                int64_t lo = n * t / k, hi = n * (t + 1) / k;
                std::memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
            }
        }
        double seconds = omp_get_wtime() - began;
        if (seconds < best) best = seconds;
    }
    return best;
}
