/* bench/quant_matmul.c — kern_matmul speed on quantized weights of the
 * Qwen2.5-0.5B FFN-down shape (896 rows of 4864 columns, a valid shape for
 * every quantized type).  Decode (T = 1) cycles through LAYERS distinct
 * matrices, more than the last-level cache holds, and reports weight bytes
 * read per second; prefill (T = 128) reports multiply-adds per second and the
 * tokens/s a 494 M-parameter model would get from that rate.  Weights and
 * activations are random; only the speed means anything.
 *
 * usage: quant_matmul [THREADS] [REPS] */
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/threadpool.h"
#include "kernels/kernels.h"

enum { N = 896, K = 4864, LAYERS = 48, PREFILL_T = 128 };
static const double MODEL_PARAMS = 494.0e6;

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 5;
    static const bs_dtype types[] = {BS_DTYPE_Q8_0, BS_DTYPE_Q4_0, BS_DTYPE_Q4_K, BS_DTYPE_Q6_K};
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    if (bs_threadpool_open(threads, &pool, &err) != BS_OK) return 1;
    float *wf = malloc(sizeof(float) * (size_t)N * K), *x = malloc(sizeof(float) * (size_t)PREFILL_T * K);
    float *y = malloc(sizeof(float) * (size_t)PREFILL_T * N);
    unsigned seed = 1;
    for (size_t i = 0; i < (size_t)N * K; i++) wf[i] = (float)((seed = seed * 1103515245u + 12345u) >> 8) / 8388608.0f - 1;
    for (size_t i = 0; i < (size_t)PREFILL_T * K; i++) x[i] = (float)((seed = seed * 1103515245u + 12345u) >> 8) / 8388608.0f - 1;
    printf("isa %s, %d threads, %d x %d weights, %d reps (best run)\n", kern_isa_name(), threads, N, K, reps);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        bs_dtype t = types[ti];
        size_t bytes = bs_dtype_row_bytes(t, K) * N;
        unsigned char *W = malloc(bytes * LAYERS);
        for (int n = 0; n < N; n++) kern_quantize(t, wf + (size_t)n * K, W + bs_dtype_row_bytes(t, K) * n, K);
        for (int l = 1; l < LAYERS; l++)
            for (size_t i = 0; i < bytes; i++) W[bytes * l + i] = W[i];
        double best_tg = 1e9, best_pp = 1e9;
        for (int r = 0; r < reps; r++) {
            double t0 = bs_now();
            for (int l = 0; l < LAYERS; l++) kern_matmul(pool, y, x, 1, W + bytes * l, t, N, K);
            double dt = (bs_now() - t0) / LAYERS;
            best_tg = dt < best_tg ? dt : best_tg;
            t0 = bs_now();
            for (int l = 0; l < 4; l++) kern_matmul(pool, y, x, PREFILL_T, W + bytes * l, t, N, K);
            dt = (bs_now() - t0) / 4;
            best_pp = dt < best_pp ? dt : best_pp;
        }
        double macs = (double)N * K * PREFILL_T / best_pp;
        printf("%-5s decode %6.1f us/matrix %6.2f GB/s | prefill T=%d %6.2f ms %7.1f GMAC/s (~%.0f tok/s at 494M)\n",
               bs_dtype_name(t), best_tg * 1e6, bytes / best_tg / 1e9, PREFILL_T, best_pp * 1e3, macs / 1e9,
               macs / MODEL_PARAMS);
        free(W);
    }
    bs_threadpool_close(pool);
    free(wf);
    free(x);
    free(y);
    return 0;
}
