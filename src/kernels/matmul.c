/* kernels/matmul.c — y = x·W^T over stored weight rows of any dtype.
 *
 * Threads take contiguous ranges of W's rows, so each thread reads only its
 * own weights (and, on a NUMA machine, the pages it first touched) and writes
 * only its own outputs; nothing is shared but x and nothing is allocated.
 * How an output is summed depends on K alone, never on T or the thread
 * split, so a token's result is bit-identical alone or batched.
 *
 * Float weights in the _R16 layouts (qinterleave.c) go to the ISA's
 * gemm_r16, one lane per row, whose sums isa.h defines.  Plain float weights
 * (F32, F16, BF16) go through its register-tiled gemm in column chunks of
 * MATMUL_K_CHUNK whose partial sums are added to y in chunk order: for each
 * chunk, every weight tile is loaded once, widened to f32 in registers and
 * used against all the tokens.  (Rounding x to bf16 for the
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
    const kern_matmul_out *outs; /* float matrices, all over the same x */
    int n_outs;
    const float *x;
    int T, K;
} matmul_job;

static int chunk_len(int K, int k0) { return K - k0 < MATMUL_K_CHUNK ? K - k0 : MATMUL_K_CHUNK; }

/* Rows [n, n + rows) (whole groups) of a float matrix in an _R16 layout:
 * decode and prefill alike, the T blocks only bound how much of x one pass
 * over the weights holds. */
static void matmul_rows_r16(const matmul_job *job, const kern_matmul_out *o, long n, int rows) {
    bs_dtype base = bs_dtype_block_type(o->wtype);
    kern_gemm_r16_fn gemm = base == BS_DTYPE_F32   ? job->isa->gemm_f32_r16
                            : base == BS_DTYPE_F16 ? job->isa->gemm_f16_r16
                                                   : job->isa->gemm_bf16_r16;
    const unsigned char *w = (const unsigned char *)o->W + (size_t)n * bs_dtype_row_bytes(base, job->K);
    for (int t0 = 0; t0 < job->T; t0 += MATMUL_T_BLOCK) {
        int nt = job->T - t0 < MATMUL_T_BLOCK ? job->T - t0 : MATMUL_T_BLOCK;
        gemm(o->y + (size_t)t0 * o->N + n, (size_t)o->N, job->x + (size_t)t0 * job->K, (size_t)job->K, nt, w,
             rows / BS_ROW_GROUP, job->K);
    }
}

/* Rows [n, n + rows) of one F32, F16 or BF16 matrix. */
static void matmul_rows_float(const matmul_job *job, const kern_matmul_out *o, long n, int rows) {
    if (bs_dtype_block_type(o->wtype) != o->wtype) {
        matmul_rows_r16(job, o, n, rows);
        return;
    }
    kern_gemm_fn gemm = o->wtype == BS_DTYPE_F32   ? job->isa->gemm_f32
                        : o->wtype == BS_DTYPE_F16 ? job->isa->gemm_f16
                                                   : job->isa->gemm_bf16;
    size_t elem = o->wtype == BS_DTYPE_F32 ? 4 : 2, row_bytes = bs_dtype_row_bytes(o->wtype, job->K);
    const unsigned char *w = (const unsigned char *)o->W + (size_t)n * row_bytes;
    if (job->T == 1) {
        kern_gemv_fn gemv = o->wtype == BS_DTYPE_F32   ? job->isa->gemv_f32
                            : o->wtype == BS_DTYPE_F16 ? job->isa->gemv_f16
                                                       : job->isa->gemv_bf16;
        if (gemv) {
            gemv(o->y + n, job->x, w, row_bytes, rows, job->K, MATMUL_K_CHUNK);
            return;
        }
        /* Tables without a gemv: a row tile takes every chunk before the
         * next tile starts, so the weights are read in address order instead
         * of one pass per chunk over the whole range.  The sums are the
         * same: chunk by chunk into y. */
        for (int r0 = 0; r0 < rows; r0 += MATMUL_ROW_ALIGN) {
            int rr = rows - r0 < MATMUL_ROW_ALIGN ? rows - r0 : MATMUL_ROW_ALIGN;
            for (int k0 = 0; k0 < job->K; k0 += MATMUL_K_CHUNK)
                gemm(o->y + n + r0, (size_t)o->N, job->x + k0, (size_t)job->K, 1,
                     w + (size_t)r0 * row_bytes + (size_t)k0 * elem, row_bytes, rr, chunk_len(job->K, k0), k0 == 0);
        }
        return;
    }
    for (int t0 = 0; t0 < job->T; t0 += MATMUL_T_BLOCK) {
        int nt = job->T - t0 < MATMUL_T_BLOCK ? job->T - t0 : MATMUL_T_BLOCK;
        const float *x = job->x + (size_t)t0 * job->K;
        float *y = o->y + (size_t)t0 * o->N + n;
        for (int k0 = 0; k0 < job->K; k0 += MATMUL_K_CHUNK)
            gemm(y, (size_t)o->N, x + k0, (size_t)job->K, nt, w + (size_t)k0 * elem, row_bytes, rows,
                 chunk_len(job->K, k0), k0 == 0);
    }
}

/* A thread's contiguous range of rows of every matrix, as kern_matmul_quant
 * splits them: one pool pass for the group. */
static void matmul_thread(void *ctx, int ith, int nth) {
    const matmul_job *job = ctx;
    for (int i = 0; i < job->n_outs; i++) {
        long begin, end;
        bs_split_range(job->outs[i].N, ith, nth, MATMUL_ROW_ALIGN, &begin, &end);
        if (begin < end) matmul_rows_float(job, &job->outs[i], begin, (int)(end - begin));
    }
}

void kern_matmul(bs_threadpool *pool, float *y, const float *x, int T, const void *W,
                 bs_dtype wtype, int N, int K) {
    kern_matmul_group(pool, x, T, K, &(kern_matmul_out){y, W, wtype, N}, 1);
}

void kern_matmul_group(bs_threadpool *pool, const float *x, int T, int K, const kern_matmul_out *outs, int n) {
    int quantized = 0;
    for (int i = 0; i < n; i++) quantized += kern_qlayout_of(outs[i].wtype) != NULL;
    if (quantized == n) { /* block-quantized: int8 dot products (qdot.c) */
        kern_matmul_quant(pool, x, T, K, outs, n);
        return;
    }
    if (quantized) { /* mixed: each matrix on its own path */
        for (int i = 0; i < n; i++) kern_matmul_group(pool, x, T, K, &outs[i], 1);
        return;
    }
    matmul_job job = {.isa = kern_isa(), .outs = outs, .n_outs = n, .x = x, .T = T, .K = K};
    bs_threadpool_run(pool, matmul_thread, &job);
}
