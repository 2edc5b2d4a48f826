/* The quantized matmul (kernels/qdot.h): activation quantization, the
 * reference repackers and tile kernel against the definition computed from
 * the dequantized weights, every SIMD table this CPU runs bit-exact against
 * the reference, and kern_matmul end to end for every quantized type. */
#include <stdint.h>
#include <string.h>

#include "../support/test.h"
#include "base/threadpool.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"
#include "kernels/qdot.h"

static const bs_dtype qtypes[] = {BS_DTYPE_Q8_0, BS_DTYPE_Q4_0, BS_DTYPE_Q4_K, BS_DTYPE_Q6_K};
enum { NQ = sizeof qtypes / sizeof qtypes[0] };

static uint32_t rng_state = 4242;
static uint32_t rand_u32(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}
static float rand_uniform(void) { return (float)rand_u32() / (float)(1 << 23) - 1.0f; } /* [-1, 1) */

/* n blocks of random bytes whose f16 scales are finite (top exponent bit
 * clear) and at most 2 in magnitude, so every code pattern is exercised. */
static void random_blocks(bs_dtype type, unsigned char *dst, int n) {
    int bb = bs_dtype_block_bytes(type);
    for (int i = 0; i < n * bb; i++) dst[i] = (unsigned char)rand_u32();
    for (int b = 0; b < n; b++) {
        unsigned char *blk = dst + (size_t)b * bb;
        if (type == BS_DTYPE_Q6_K) {
            blk[209] &= 0xBF;
        } else {
            blk[1] &= 0xBF;
            if (type == BS_DTYPE_Q4_K) blk[3] &= 0xBF;
        }
    }
}

/* Random activation blocks with every int8 code but -128 (the quantizer
 * never makes it) and consistent sums. */
static void random_xblocks(kern_xblock *x, int n) {
    for (int b = 0; b < n; b++) {
        x[b].d = (rand_uniform() + 1.5f) * 0.01f;
        for (int h = 0; h < 2; h++) {
            int sum = 0;
            for (int i = 16 * h; i < 16 * h + 16; i++) {
                x[b].q[i] = (int8_t)((int)(rand_u32() % 255) - 127);
                sum += x[b].q[i];
            }
            x[b].sum[h] = (int16_t)sum;
        }
    }
}

static void test_quantize_x(void) {
    enum { K = 96 };
    float x[K];
    kern_xblock xb[K / 32];
    for (int i = 0; i < K; i++) x[i] = rand_uniform() * 3;
    for (int i = 32; i < 64; i++) x[i] = 0; /* an all-zero block */
    x[5] = -3.5f;                            /* a negative maximum maps to -127 */
    kern_quantize_x(x, K, xb);
    CHECK(xb[1].d == 0);
    CHECK_INT(xb[0].q[5], -127);
    for (int b = 0; b < K / 32; b++) {
        int sum[2] = {0, 0};
        for (int i = 0; i < 32; i++) {
            CHECK(xb[b].q[i] >= -127);
            CHECK_NEAR(xb[b].d * xb[b].q[i], x[32 * b + i], xb[b].d * 0.5001 + 1e-30);
            sum[i / 16] += xb[b].q[i];
        }
        CHECK_INT(xb[b].sum[0], sum[0]);
        CHECK_INT(xb[b].sum[1], sum[1]);
    }
}

/* The reference kernel against the definition: sum over columns of the
 * dequantized weight times d * q, in double; only f32 rounding may differ. */
static void test_reference_against_dequant(void) {
    enum { NB = 2, MAXK = 512, T = 3 };
    static unsigned char raw[KERN_QROWS][NB * 210];
    static float wd[KERN_QROWS][MAXK], y[T][KERN_QROWS];
    static kern_xblock x[T][MAXK / 32];
    static kern_qtile tile;
    for (int q = 0; q < NQ; q++) {
        bs_dtype type = qtypes[q];
        int be = bs_dtype_block_elems(type), K = NB * be;
        const kern_qlayout *L = kern_qlayout_of(type);
        const void *rows[KERN_QROWS];
        for (int r = 0; r < KERN_QROWS; r++) {
            random_blocks(type, raw[r], NB);
            kern_dequant(type, raw[r], wd[r], K);
            rows[r] = raw[r];
        }
        for (int t = 0; t < T; t++) random_xblocks(x[t], K / 32);
        kern_isa_ref.qrepack[type](rows, 0, NB, &tile);
        kern_isa_ref.qgemm(L, &tile, K / L->sub, x[0], MAXK / 32, T, y[0], KERN_QROWS, KERN_QROWS, 0);
        for (int t = 0; t < T; t++)
            for (int r = 0; r < KERN_QROWS; r++) {
                double want = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    double p = (double)wd[r][k] * x[t][k / 32].d * x[t][k / 32].q[k % 32];
                    want += p;
                    mag += fabs(p);
                }
                if (!(fabs(y[t][r] - want) <= 1e-5 * mag)) {
                    fprintf(stderr, "  %s t=%d r=%d: %.9g, expected %.9g\n", bs_dtype_name(type), t, r, y[t][r],
                            want);
                    test_failed_ = 1;
                    return;
                }
            }
    }
}

/* One SIMD table against the reference: activation quantization, the
 * repacked tile and the kernel's
 * outputs must be bit-identical, for 1..9 tokens (full and partial register
 * tiles), short row tiles (repeated row pointers, rows < KERN_QROWS: nothing
 * past them written) and accumulation on top of y. */
static void check_table(const kern_isa_ops *isa) {
    enum { NB = KERN_QCHUNK / 32, MAXT = 9, LD = KERN_QROWS + 3 };
    static unsigned char raw[KERN_QROWS][KERN_QCHUNK / 256 * 210 + NB * 34];
    static kern_xblock x[MAXT][NB];
    static kern_qtile want, got;
    static float y[MAXT][LD], yref[MAXT][LD];
    static float xf[KERN_QCHUNK];
    static kern_xblock xgot[NB], xwant[NB];
    for (int i = 0; i < KERN_QCHUNK; i++) xf[i] = rand_uniform() * (float)(1 + i % 7);
    for (int i = 64; i < 96; i++) xf[i] = 0; /* an all-zero block */
    isa->quantize_x(xf, KERN_QCHUNK, xgot);
    kern_isa_ref.quantize_x(xf, KERN_QCHUNK, xwant);
    CHECK(memcmp(xgot, xwant, sizeof xgot) == 0);
    for (int q = 0; q < NQ; q++) {
        bs_dtype type = qtypes[q];
        int be = bs_dtype_block_elems(type), nb = KERN_QCHUNK / be, b0 = 1;
        const kern_qlayout *L = kern_qlayout_of(type);
        for (int rows = KERN_QROWS; rows >= 5; rows -= 11) {
            const void *rp[KERN_QROWS];
            for (int r = 0; r < KERN_QROWS; r++) {
                random_blocks(type, raw[r], nb + b0);
                rp[r] = raw[r < rows ? r : rows - 1];
            }
            memset(&want, 0, sizeof want);
            memset(&got, 0, sizeof got);
            kern_isa_ref.qrepack[type](rp, b0, nb, &want);
            isa->qrepack[type](rp, b0, nb, &got);
            CHECK(memcmp(want.q, got.q, sizeof want.q) == 0);
            CHECK(memcmp(want.scale, got.scale, sizeof want.scale) == 0);
            CHECK(memcmp(want.min, got.min, sizeof want.min) == 0);
            for (int t = 0; t < MAXT; t++) random_xblocks(x[t], NB);
            for (int T = 1; T <= MAXT; T++)
                for (int accumulate = 0; accumulate < 2; accumulate++) {
                    for (int t = 0; t < MAXT; t++)
                        for (int r = 0; r < LD; r++) y[t][r] = yref[t][r] = rand_uniform();
                    isa->qgemm(L, &want, KERN_QCHUNK / L->sub, x[0], NB, T, y[0], LD, rows, accumulate);
                    kern_isa_ref.qgemm(L, &want, KERN_QCHUNK / L->sub, x[0], NB, T, yref[0], LD, rows,
                                       accumulate);
                    if (memcmp(y, yref, sizeof y) != 0) {
                        fprintf(stderr, "  %s %s T=%d rows=%d accumulate=%d differs from the reference\n",
                                isa->name, bs_dtype_name(type), T, rows, accumulate);
                        test_failed_ = 1;
                        return;
                    }
                }
        }
    }
}

/* One table's in-place decode kernel against the reference (the tile path)
 * bit for bit: 1..KERN_QMV_MAX_T tokens, row counts around the 8- and
 * 16-row groups (short last groups), one to five blocks per row, and
 * strides wider than the data (nothing past the rows written). */
static void check_qmatvec(const kern_isa_ops *isa) {
    enum { MAXR = 37, MAXNB = 5, XS = MAXNB * 8 + 3, YS = MAXR + 2 };
    static unsigned char W[MAXR * MAXNB * 210];
    static kern_xblock x[KERN_QMV_MAX_T][XS];
    static float y[KERN_QMV_MAX_T][YS], yref[KERN_QMV_MAX_T][YS];
    static const int row_counts[] = {1, 7, 8, 16, 21, MAXR};
    for (int q = 0; q < NQ; q++) {
        bs_dtype type = qtypes[q];
        int be = bs_dtype_block_elems(type);
        for (int nb = 1; nb <= MAXNB; nb += 2) {
            int K = nb * be;
            size_t row_bytes = bs_dtype_row_bytes(type, K);
            random_blocks(type, W, MAXR * nb);
            for (int t = 0; t < KERN_QMV_MAX_T; t++) random_xblocks(x[t], XS);
            for (size_t ri = 0; ri < sizeof row_counts / sizeof row_counts[0]; ri++)
                for (int T = 1; T <= KERN_QMV_MAX_T; T++) {
                    int rows = row_counts[ri];
                    for (int t = 0; t < KERN_QMV_MAX_T; t++)
                        for (int r = 0; r < YS; r++) y[t][r] = yref[t][r] = rand_uniform();
                    isa->qmatvec(type, W, row_bytes, rows, K, x[0], XS, T, y[0], YS);
                    kern_ref_qmatvec(type, W, row_bytes, rows, K, x[0], XS, T, yref[0], YS);
                    if (memcmp(y, yref, sizeof y) != 0) {
                        fprintf(stderr, "  %s qmatvec %s K=%d rows=%d T=%d differs from the reference\n", isa->name,
                                bs_dtype_name(type), K, rows, T);
                        test_failed_ = 1;
                        return;
                    }
                    if (rows % BS_ROW_GROUP) continue;
                    /* the same rows interleaved: the same bits, by the table and by the reference */
                    static unsigned char WR[MAXR * MAXNB * 210];
                    bs_dtype rtype = bs_dtype_interleaved(type);
                    kern_interleave(type, W, rows, K, WR);
                    for (int ref = 0; ref < 2; ref++) {
                        for (int t = 0; t < KERN_QMV_MAX_T; t++)
                            for (int r = 0; r < YS; r++) y[t][r] = yref[t][r];
                        for (int t = 0; t < T; t++)
                            for (int r = 0; r < rows; r++) y[t][r] = -1.0f;
                        if (ref)
                            kern_ref_qmatvec(rtype, WR, row_bytes, rows, K, x[0], XS, T, y[0], YS);
                        else
                            isa->qmatvec(rtype, WR, row_bytes, rows, K, x[0], XS, T, y[0], YS);
                        if (memcmp(y, yref, sizeof y) != 0) {
                            fprintf(stderr, "  %s qmatvec %s K=%d rows=%d T=%d (%s) differs from the plain rows\n",
                                    isa->name, bs_dtype_name(rtype), K, rows, T, ref ? "reference" : "table");
                            test_failed_ = 1;
                            return;
                        }
                    }
                }
        }
    }
}

/* The _R16 layouts hold the same bytes: every row read back through
 * kern_deinterleave_blocks and kern_dequant_rows (any first row and count)
 * is the plain row. */
static void test_interleave_round_trip(void) {
    enum { ROWS = 48, NB = 3 };
    static unsigned char W[ROWS * NB * 210], WR[ROWS * NB * 210], back[NB * 210];
    static float want[ROWS * NB * 256], got[ROWS * NB * 256];
    for (int q = 0; q < NQ; q++) {
        bs_dtype type = qtypes[q], rtype = bs_dtype_interleaved(type);
        int K = NB * bs_dtype_block_elems(type);
        size_t row_bytes = bs_dtype_row_bytes(type, K);
        CHECK(kern_can_interleave(type, ROWS, K));
        CHECK(!kern_can_interleave(type, ROWS - 1, K));
        CHECK(bs_dtype_block_type(rtype) == type);
        random_blocks(type, W, ROWS * NB);
        kern_interleave(type, W, ROWS, K, WR);
        CHECK(memcmp(W, WR, row_bytes * ROWS) != 0);
        for (int r = 0; r < ROWS; r++) {
            kern_deinterleave_blocks(rtype, WR, K, r, 0, NB, back);
            CHECK(memcmp(back, W + r * row_bytes, row_bytes) == 0);
        }
        kern_dequant(type, W, want, (int64_t)ROWS * K);
        static const int spans[][2] = {{0, ROWS}, {5, 1}, {15, 2}, {17, 30}};
        for (size_t i = 0; i < sizeof spans / sizeof spans[0]; i++) {
            int r0 = spans[i][0], n = spans[i][1];
            kern_dequant_rows(rtype, WR, K, r0, n, got);
            CHECK(memcmp(got, want + (size_t)r0 * K, sizeof(float) * (size_t)n * K) == 0);
            kern_dequant_rows(type, W, K, r0, n, got);
            CHECK(memcmp(got, want + (size_t)r0 * K, sizeof(float) * (size_t)n * K) == 0);
        }
    }
}

static void test_avx2_table(void) {
    const kern_features *f = kern_cpu_features();
    if (!(f->avx2 && f->fma && f->f16c)) SKIP("CPU lacks AVX2/FMA/F16C");
    check_table(&kern_isa_avx2);
    check_qmatvec(&kern_isa_avx2);
}

static void test_avx512_table(void) {
    const kern_features *f = kern_cpu_features();
    if (!(f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni)) SKIP("CPU lacks AVX-512 F/BW/VL/VNNI");
    check_table(&kern_isa_avx512);
    check_qmatvec(&kern_isa_avx512);
}

/* kern_matmul end to end: against the reference definition applied to the
 * quantized x, for every token count up to past KERN_QMV_MAX_T (both the
 * decode kernel and the tiles) and a row count with a short last tile; the
 * fast path must match the forced reference bit for bit. */
static void test_matmul_quant(void) {
    enum { T = 6, N = 37, K = 1280 }; /* K: two chunks and a half */
    static float x[T * K], wf[N * K], y[T * N], yref[T * N];
    static unsigned char W[N * K * 2];
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    CHECK_OK(bs_threadpool_open(3, &pool, &err), &err);
    for (int i = 0; i < T * K; i++) x[i] = rand_uniform();
    for (int i = 0; i < N * K; i++) wf[i] = rand_uniform();
    for (int q = 0; q < NQ; q++) {
        bs_dtype type = qtypes[q];
        size_t row_bytes = bs_dtype_row_bytes(type, K);
        for (int n = 0; n < N; n++) kern_quantize(type, wf + (size_t)n * K, W + row_bytes * n, K);
        for (int tn = 1; tn <= T; tn++) { /* the decode kernel up to KERN_QMV_MAX_T, then the tiles */
            kern_force_reference(1);
            kern_matmul(NULL, yref, x, tn, W, type, N, K);
            kern_force_reference(0);
            kern_matmul(pool, y, x, tn, W, type, N, K);
            if (memcmp(y, yref, sizeof(float) * (size_t)tn * N) != 0) {
                fprintf(stderr, "  %s T=%d: %s differs from the reference\n", bs_dtype_name(type), tn,
                        kern_isa_name());
                test_failed_ = 1;
            }
        }
    }
    /* interleaved rows: the same bits through both paths, split over 3 threads */
    enum { NR = 48 };
    static unsigned char WR[NR * K * 2];
    for (int q = 0; q < NQ; q++) {
        bs_dtype type = qtypes[q];
        size_t row_bytes = bs_dtype_row_bytes(type, K);
        for (int n = 0; n < NR; n++) kern_quantize(type, wf + (size_t)(n % N) * K, W + row_bytes * n, K);
        kern_interleave(type, W, NR, K, WR);
        for (int tn = 1; tn <= T; tn++) {
            static float yr[T * NR], yp[T * NR];
            kern_force_reference(1);
            kern_matmul(NULL, yp, x, tn, W, type, NR, K);
            kern_force_reference(0);
            kern_matmul(pool, yr, x, tn, WR, bs_dtype_interleaved(type), NR, K);
            if (memcmp(yr, yp, sizeof(float) * (size_t)tn * NR) != 0) {
                fprintf(stderr, "  %s T=%d: %s interleaved differs from the plain reference\n", bs_dtype_name(type),
                        tn, kern_isa_name());
                test_failed_ = 1;
            }
        }
    }
    /* a group over the same x, matrices of mixed types and sizes (plain,
     * interleaved, float), is the separate calls bit for bit */
    static float wq4[16 * K], ya[T * NR], yb[T * N], yc[T * 16], za[T * NR], zb[T * N], zc[T * 16];
    static unsigned char Wk[NR * K], Wq[N * K];
    size_t rk = bs_dtype_row_bytes(BS_DTYPE_Q4_K, K), rq = bs_dtype_row_bytes(BS_DTYPE_Q6_K, K);
    for (int n = 0; n < NR; n++) kern_quantize(BS_DTYPE_Q4_K, wf + (size_t)(n % N) * K, W + rk * n, K);
    kern_interleave(BS_DTYPE_Q4_K, W, NR, K, Wk);
    for (int n = 0; n < N; n++) kern_quantize(BS_DTYPE_Q6_K, wf + (size_t)n * K, Wq + rq * n, K);
    for (int i = 0; i < 16 * K; i++) wq4[i] = rand_uniform();
    for (int with_float = 0; with_float < 2; with_float++)
        for (int tn = 1; tn <= T; tn += 4) {
            kern_matmul_out outs[] = {{ya, Wk, BS_DTYPE_Q4_K_R16, NR}, {yb, Wq, BS_DTYPE_Q6_K, N},
                                      {yc, wq4, BS_DTYPE_F32, 16}};
            kern_matmul_group(pool, x, tn, K, outs, 2 + with_float);
            kern_matmul(pool, za, x, tn, Wk, BS_DTYPE_Q4_K_R16, NR, K);
            kern_matmul(pool, zb, x, tn, Wq, BS_DTYPE_Q6_K, N, K);
            kern_matmul(pool, zc, x, tn, wq4, BS_DTYPE_F32, 16, K);
            CHECK(memcmp(ya, za, sizeof(float) * (size_t)tn * NR) == 0);
            CHECK(memcmp(yb, zb, sizeof(float) * (size_t)tn * N) == 0);
            if (with_float) CHECK(memcmp(yc, zc, sizeof(float) * (size_t)tn * 16) == 0);
        }
    bs_threadpool_close(pool);
}

int main(void) {
    RUN(test_quantize_x);
    RUN(test_reference_against_dequant);
    RUN(test_interleave_round_trip);
    RUN(test_avx2_table);
    RUN(test_avx512_table);
    RUN(test_matmul_quant);
    TEST_MAIN_END();
}
