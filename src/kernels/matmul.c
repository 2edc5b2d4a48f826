/* kernels/matmul.c — y = x·W^T over stored weight rows of any dtype.
 *
 * Threads take contiguous ranges of W's rows, so each thread reads only its
 * own weights (and, on a NUMA machine, the pages it first touched) and writes
 * only its own outputs; nothing is shared but x and nothing is allocated.
 * Columns go in chunks of MATMUL_K_CHUNK whose partial sums are added to y in
 * chunk order: how an output is summed depends on K alone, never on T or the
 * thread split, so a token's result is bit-identical alone or batched.
 *
 * Float weights (F32, F16, BF16) go through the ISA's register-tiled gemm:
 * for each chunk, every weight tile is loaded once, widened to f32 in
 * registers and used against all the tokens.  (Rounding x to bf16 for the
 * vdpbf16ps instruction would halve BF16 prefill's arithmetic, but its
 * 2^-9 relative error per activation breaks the 1e-3 oracle tolerance.)
 * Block-quantized weights go to int8 dot products (qdot.c). */
#include "kernels/isa.h"
#include "kernels/kernels.h"

/* Columns per chunk: a weight tile's chunk stays in L1 while every token
 * passes over it. */
enum { MATMUL_K_CHUNK = 1024 };
/* Tokens per pass over the weights: their f32 x chunk (512 KB) stays in L2
 * while the row tiles go by; longer prompts read the weights again per pass. */
enum { MATMUL_T_BLOCK = 128 };
/* Thread ranges start at multiples of this many rows (whole gemm tiles). */
enum { MATMUL_ROW_ALIGN = 16 };

typedef struct {
    const kern_isa_ops *isa;
    float *y;
    const float *x;
    const unsigned char *W;
    bs_dtype wtype;
    int T, N, K;
    size_t row_bytes;
} matmul_job;

static int chunk_len(int K, int k0) { return K - k0 < MATMUL_K_CHUNK ? K - k0 : MATMUL_K_CHUNK; }

/* Rows [n, n + rows) of F32, F16 or BF16 weights. */
static void matmul_rows_float(const matmul_job *job, long n, int rows) {
    kern_gemm_fn gemm = job->wtype == BS_DTYPE_F32   ? job->isa->gemm_f32
                        : job->wtype == BS_DTYPE_F16 ? job->isa->gemm_f16
                                                     : job->isa->gemm_bf16;
    size_t elem = job->wtype == BS_DTYPE_F32 ? 4 : 2;
    const unsigned char *w = job->W + (size_t)n * job->row_bytes;
    for (int t0 = 0; t0 < job->T; t0 += MATMUL_T_BLOCK) {
        int nt = job->T - t0 < MATMUL_T_BLOCK ? job->T - t0 : MATMUL_T_BLOCK;
        const float *x = job->x + (size_t)t0 * job->K;
        float *y = job->y + (size_t)t0 * job->N + n;
        for (int k0 = 0; k0 < job->K; k0 += MATMUL_K_CHUNK)
            gemm(y, (size_t)job->N, x + k0, (size_t)job->K, nt, w + (size_t)k0 * elem, job->row_bytes, rows,
                 chunk_len(job->K, k0), k0 == 0);
    }
}

static void matmul_thread(void *ctx, int ith, int nth) {
    const matmul_job *job = ctx;
    long begin, end;
    bs_split_range(job->N, ith, nth, MATMUL_ROW_ALIGN, &begin, &end);
    if (begin < end) matmul_rows_float(job, begin, (int)(end - begin));
}

void kern_matmul(bs_threadpool *pool, float *y, const float *x, int T, const void *W,
                 bs_dtype wtype, int N, int K) {
    if (kern_qlayout_of(wtype)) { /* block-quantized: int8 dot products (qdot.c) */
        kern_matmul_quant(pool, x, T, K, &(kern_matmul_out){y, W, wtype, N}, 1);
        return;
    }
    matmul_job job = {
        .isa = kern_isa(), .y = y, .x = x, .W = W, .wtype = wtype,
        .T = T, .N = N, .K = K, .row_bytes = bs_dtype_row_bytes(wtype, K),
    };
    bs_threadpool_run(pool, matmul_thread, &job);
}

void kern_matmul_group(bs_threadpool *pool, const float *x, int T, int K, const kern_matmul_out *outs, int n) {
    int quantized = 1;
    for (int i = 0; i < n; i++) quantized &= kern_qlayout_of(outs[i].wtype) != NULL;
    if (quantized) {
        kern_matmul_quant(pool, x, T, K, outs, n);
        return;
    }
    for (int i = 0; i < n; i++) kern_matmul(pool, outs[i].y, x, T, outs[i].W, outs[i].wtype, outs[i].N, K);
}
