/* kernels/qdot.c — kern_matmul for block-quantized weights (see qdot.h):
 * quantizes the activations once per call into a per-thread scratch, then
 * threads take contiguous ranges of W's rows.  Up to KERN_QMV_MAX_T tokens
 * (decode) are multiplied by the ISA's qmatvec straight from the stored
 * blocks; more go in tiles of KERN_QROWS rows, each repacked KERN_QCHUNK
 * columns at a time and applied to every token before the next chunk is
 * read.  Either way each weight byte is read from memory once per call.
 * Owns the activation scratch of each calling thread (freed when the thread
 * exits). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "kernels/qdot.h"

/* Most bytes of quantized activations held at once: a call with more tokens
 * than fit is run in passes (each re-reading the weights), which bounds the
 * scratch at 4 MiB per calling thread; 0.5B-class prefill (256 tokens of up
 * to 4864 columns, 1.4 MB) takes one pass. */
enum { QDOT_SCRATCH_BYTES = 4 << 20 };
/* Up to this many tokens an interleaved matrix goes through the decode
 * kernel rather than the repacked tiles (batched decode). */
enum { QDOT_R16_MAX_T = 8 };
/* Below this many activations (tokens x K) quantizing is left to the calling
 * thread: waking the pool costs more than the work. */
enum { QDOT_PARALLEL_QUANT = 1 << 15 };

static const kern_qlayout layouts[BS_DTYPE_COUNT] = {
    [BS_DTYPE_Q8_0] = {.sub = 32, .off = 128}, /* u = int8 code + 128 */
    [BS_DTYPE_Q4_0] = {.sub = 32, .off = 8},   /* u = nibble, weight = d * (u - 8) */
    [BS_DTYPE_Q4_K] = {.sub = 32, .off = 0, .has_min = 1},
    [BS_DTYPE_Q6_K] = {.sub = 16, .off = 32},
};

const kern_qlayout *kern_qlayout_of(bs_dtype t) {
    t = bs_dtype_block_type(t);
    return (unsigned)t < BS_DTYPE_COUNT && layouts[t].sub ? &layouts[t] : NULL;
}

/* Round-to-nearest-even of |v| <= 2^22 by the float adder: adding 1.5 * 2^23
 * leaves the integer in the low mantissa bits (what vcvtps2dq gives). */
static inline int nearest_int(float v) {
    float f = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return (i & 0x007FFFFF) - 0x00400000;
}

void kern_ref_quantize_x(const float *x, int K, kern_xblock *out) {
    for (int b = 0; b < K / 32; b++, x += 32) {
        float amax = 0;
        for (int i = 0; i < 32; i++) {
            float a = fabsf(x[i]);
            amax = a > amax ? a : amax;
        }
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        kern_xblock *o = &out[b];
        o->d = amax / 127.0f;
        for (int h = 0; h < 2; h++) {
            int sum = 0;
            for (int i = 16 * h; i < 16 * h + 16; i++) {
                int q = nearest_int(x[i] * id);
                o->q[i] = (int8_t)q;
                sum += q;
            }
            o->sum[h] = (int16_t)sum;
        }
    }
}

void kern_quantize_x(const float *x, int K, kern_xblock *out) { kern_isa()->quantize_x(x, K, out); }

/* The AVX-512 qgemm also needs VNNI (vpdpbusd); without it the AVX2 entries
 * serve.  Compared by entry: the tables built from kern_isa_avx512 share it. */
static const kern_isa_ops *qdot_isa(void) {
    const kern_isa_ops *isa = kern_isa();
    if (isa->qgemm == kern_isa_avx512.qgemm && !kern_cpu_features()->avx512vnni) return &kern_isa_avx2;
    return isa;
}

int kern_qmatvec_reads_interleaved(void) { return qdot_isa() != &kern_isa_ref; }

/* ---- per-thread activation scratch -------------------------------------- */

typedef struct {
    size_t cap; /* blocks */
    kern_xblock blocks[];
} scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_make_key(void) {
    if (pthread_key_create(&scratch_key, free) != 0) {
        bs_log_error("kernels: cannot create the quantized-activation scratch key");
        abort();
    }
}

/* The calling thread's scratch, grown to at least n blocks.  It is bounded by
 * QDOT_SCRATCH_BYTES (or one token's row), so failing to get it means the
 * process is out of memory; kern_matmul has no error path. */
static kern_xblock *scratch_get(size_t n) {
    pthread_once(&scratch_once, scratch_make_key);
    scratch *s = pthread_getspecific(scratch_key);
    if (!s || s->cap < n) {
        scratch *grown = realloc(s, sizeof *s + n * sizeof(kern_xblock));
        if (!grown || pthread_setspecific(scratch_key, grown) != 0) {
            bs_log_error("kernels: out of memory for %zu quantized activation blocks", n);
            abort();
        }
        grown->cap = n;
        s = grown;
    }
    return s->blocks;
}

/* ---- the parallel passes ------------------------------------------------ */

typedef struct {
    const kern_isa_ops *isa;
    const kern_matmul_out *outs; /* the matrices, all over the same x */
    int n_outs;
    const float *x;
    kern_xblock *xq;
    int t0, T, K; /* this pass: tokens [t0, t0 + T) */
} qmatmul_job;

static void quantize_thread(void *ctx, int ith, int nth) {
    const qmatmul_job *job = ctx;
    long begin, end;
    bs_split_range(job->T, ith, nth, 1, &begin, &end);
    for (long t = begin; t < end; t++)
        job->isa->quantize_x(job->x + (size_t)(job->t0 + t) * job->K, job->K, job->xq + (size_t)t * (job->K / 32));
}

void kern_qtiles(const kern_isa_ops *isa, bs_dtype type, const void *W, size_t row_bytes, int rows, int K,
                 const kern_xblock *x, size_t x_stride, int T, float *y, size_t y_stride) {
    const kern_qlayout *L = kern_qlayout_of(type);
    int be = bs_dtype_block_elems(type), interleaved = bs_dtype_block_type(type) != type;
    /* An _R16 tile is one group (callers split rows at multiples of
     * KERN_QROWS), whose repacker takes the group's first byte. */
    _Static_assert((int)KERN_QROWS == (int)BS_ROW_GROUP, "a tile is one interleaved group");
    kern_qtile tile;
    for (int n = 0; n < rows; n += KERN_QROWS) {
        int nr = rows - n < KERN_QROWS ? rows - n : KERN_QROWS;
        const void *rp[KERN_QROWS];
        for (int r = 0; r < KERN_QROWS; r++) /* a short last tile repeats its last row */
            rp[r] = (const unsigned char *)W + (size_t)(n + (interleaved ? 0 : r < nr ? r : nr - 1)) * row_bytes;
        for (int k0 = 0; k0 < K; k0 += KERN_QCHUNK) {
            int len = K - k0 < KERN_QCHUNK ? K - k0 : KERN_QCHUNK;
            isa->qrepack[type](rp, k0 / be, len / be, &tile);
            isa->qgemm(L, &tile, len / L->sub, x + k0 / 32, x_stride, T, y + n, y_stride, nr, k0 > 0);
        }
    }
}

void kern_ref_qmatvec(bs_dtype type, const void *W, size_t row_bytes, int rows, int K, const kern_xblock *x,
                      size_t x_stride, int T, float *y, size_t y_stride) {
    kern_qtiles(&kern_isa_ref, type, W, row_bytes, rows, K, x, x_stride, T, y, y_stride);
}

/* A thread's contiguous range of rows of every matrix (so a small one is
 * split as evenly as a large one): the table's in-place decode kernel for a
 * few tokens, the repacked tiles for more (both give the same bits). */
static void rows_thread(void *ctx, int ith, int nth) {
    const qmatmul_job *job = ctx;
    size_t x_stride = (size_t)job->K / 32;
    for (int i = 0; i < job->n_outs; i++) {
        const kern_matmul_out *o = &job->outs[i];
        long begin, end;
        bs_split_range(o->N, ith, nth, KERN_QROWS, &begin, &end);
        if (begin >= end) continue;
        size_t row_bytes = bs_dtype_row_bytes(o->wtype, job->K);
        const unsigned char *W = (const unsigned char *)o->W + (size_t)begin * row_bytes;
        float *y = o->y + (size_t)job->t0 * o->N + begin;
        if (job->T <= KERN_QMV_MAX_T)
            job->isa->qmatvec(o->wtype, W, row_bytes, (int)(end - begin), job->K, job->xq, x_stride, job->T, y,
                              (size_t)o->N);
        else if (bs_dtype_block_type(o->wtype) != o->wtype && job->T <= QDOT_R16_MAX_T)
            /* Batched decode over an interleaved matrix: group by group, the
             * tokens KERN_QMV_MAX_T at a time while the group is in cache —
             * no repack, which costs more than the dots at these T. */
            for (long g = begin; g < end; g += BS_ROW_GROUP)
                for (int t = 0; t < job->T; t += KERN_QMV_MAX_T)
                    job->isa->qmatvec(o->wtype, W + (size_t)(g - begin) * row_bytes, row_bytes, BS_ROW_GROUP, job->K,
                                      job->xq + (size_t)t * x_stride, x_stride,
                                      job->T - t < KERN_QMV_MAX_T ? job->T - t : KERN_QMV_MAX_T,
                                      y + (size_t)t * o->N + (g - begin), (size_t)o->N);
        else
            kern_qtiles(job->isa, o->wtype, W, row_bytes, (int)(end - begin), job->K, job->xq, x_stride, job->T, y,
                        (size_t)o->N);
    }
}

void kern_matmul_quant(bs_threadpool *pool, const float *x, int T, int K, const kern_matmul_out *outs, int n) {
    const kern_isa_ops *isa = qdot_isa();
    size_t per_token = (size_t)K / 32;
    size_t fit = QDOT_SCRATCH_BYTES / (per_token * sizeof(kern_xblock));
    int pass = fit < 1 ? 1 : fit < (size_t)T ? (int)fit : T;
    qmatmul_job job = {.isa = isa, .outs = outs, .n_outs = n, .x = x, .K = K,
                       .xq = scratch_get((size_t)pass * per_token)};
    for (job.t0 = 0; job.t0 < T; job.t0 += pass) {
        job.T = T - job.t0 < pass ? T - job.t0 : pass;
        if ((long)job.T * K >= QDOT_PARALLEL_QUANT)
            bs_threadpool_run(pool, quantize_thread, &job);
        else
            quantize_thread(&job, 0, 1);
        bs_threadpool_run(pool, rows_thread, &job);
    }
}
