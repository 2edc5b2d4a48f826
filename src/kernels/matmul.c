/* kernels/matmul.c — y = x·W^T over stored weight rows of any dtype.
 *
 * Threads take contiguous ranges of W's rows.  Each thread walks its rows in
 * tiles of KERN_ROW_TILE, and each tile in chunks of MATMUL_K_CHUNK columns:
 * the chunk is converted to f32 once (into a small stack buffer that stays in
 * L1) and then dotted with every row of x, so each weight byte is read from
 * memory once per call whatever T is and nothing is allocated.  f32 rows are
 * dotted in place, and f16/bf16 rows at T = 1 are widened in registers. */
#include "kernels/isa.h"
#include "kernels/kernels.h"

/* Columns converted at a time; a multiple of every block size (256). */
enum { MATMUL_K_CHUNK = 1024 };

typedef struct {
    const kern_isa_ops *isa;
    float *y;
    const float *x;
    const unsigned char *W;
    bs_dtype wtype;
    int T, N, K;
    size_t row_bytes;
} matmul_job;

/* f32 weights need no conversion: dot whole rows in place. */
static void matmul_tile_f32(const matmul_job *job, int n, int rows) {
    const float *w[KERN_ROW_TILE];
    for (int r = 0; r < KERN_ROW_TILE; r++)
        w[r] = (const float *)(job->W + (size_t)(n + (r < rows ? r : 0)) * job->row_bytes);
    for (int t = 0; t < job->T; t++) {
        float out[KERN_ROW_TILE];
        job->isa->dot4(job->x + (size_t)t * job->K, w, job->K, out);
        for (int r = 0; r < rows; r++) job->y[(size_t)t * job->N + n + r] = out[r];
    }
}

/* Decode with f16/bf16 weights: widen in registers, no buffer round trip.
 * Summed per MATMUL_K_CHUNK exactly like matmul_tile_converted, so a row's
 * result is bit-identical whether it is decoded alone (T = 1) or batched with
 * others: a request's output must not depend on what shares its step. */
static void matmul_tile_half_fused(const matmul_job *job, int n, int rows) {
    kern_dot4_half_fn dot4 = job->wtype == BS_DTYPE_BF16 ? job->isa->dot4_bf16 : job->isa->dot4_f16;
    const uint16_t *w[KERN_ROW_TILE];
    for (int k0 = 0; k0 < job->K; k0 += MATMUL_K_CHUNK) {
        int len = job->K - k0 < MATMUL_K_CHUNK ? job->K - k0 : MATMUL_K_CHUNK;
        for (int r = 0; r < KERN_ROW_TILE; r++)
            w[r] = (const uint16_t *)(job->W + (size_t)(n + (r < rows ? r : 0)) * job->row_bytes) + k0;
        float out[KERN_ROW_TILE];
        dot4(job->x + k0, w, len, out);
        for (int r = 0; r < rows; r++) job->y[n + r] = k0 == 0 ? out[r] : job->y[n + r] + out[r];
    }
}

static void matmul_tile_converted(const matmul_job *job, int n, int rows) {
    float buf[KERN_ROW_TILE][MATMUL_K_CHUNK];
    const float *w[KERN_ROW_TILE];
    size_t chunk_bytes = bs_dtype_row_bytes(job->wtype, MATMUL_K_CHUNK);
    for (int r = 0; r < KERN_ROW_TILE; r++) w[r] = buf[r < rows ? r : 0];
    for (int k0 = 0; k0 < job->K; k0 += MATMUL_K_CHUNK) {
        int len = job->K - k0 < MATMUL_K_CHUNK ? job->K - k0 : MATMUL_K_CHUNK;
        for (int r = 0; r < rows; r++) {
            const unsigned char *src = job->W + (size_t)(n + r) * job->row_bytes +
                                       (size_t)(k0 / MATMUL_K_CHUNK) * chunk_bytes;
            job->isa->dequant[job->wtype](src, buf[r], len);
        }
        for (int t = 0; t < job->T; t++) {
            float out[KERN_ROW_TILE];
            job->isa->dot4(job->x + (size_t)t * job->K + k0, w, len, out);
            float *yt = job->y + (size_t)t * job->N + n;
            for (int r = 0; r < rows; r++) yt[r] = k0 == 0 ? out[r] : yt[r] + out[r];
        }
    }
}

static void matmul_thread(void *ctx, int ith, int nth) {
    const matmul_job *job = ctx;
    long begin, end;
    bs_split_range(job->N, ith, nth, KERN_ROW_TILE, &begin, &end);
    int fused = job->T == 1 && ((job->wtype == BS_DTYPE_F16 && job->isa->dot4_f16) ||
                                (job->wtype == BS_DTYPE_BF16 && job->isa->dot4_bf16));
    for (long n = begin; n < end; n += KERN_ROW_TILE) {
        int rows = end - n < KERN_ROW_TILE ? (int)(end - n) : KERN_ROW_TILE;
        if (job->wtype == BS_DTYPE_F32)
            matmul_tile_f32(job, (int)n, rows);
        else if (fused)
            matmul_tile_half_fused(job, (int)n, rows);
        else
            matmul_tile_converted(job, (int)n, rows);
    }
}

void kern_matmul(bs_threadpool *pool, float *y, const float *x, int T, const void *W,
                 bs_dtype wtype, int N, int K) {
    matmul_job job = {
        .isa = kern_isa(), .y = y, .x = x, .W = W, .wtype = wtype,
        .T = T, .N = N, .K = K, .row_bytes = bs_dtype_row_bytes(wtype, K),
    };
    bs_threadpool_run(pool, matmul_thread, &job);
}
