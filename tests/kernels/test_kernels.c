/* Kernels against direct formulas: matmul for every weight dtype, shape and
 * pool size (fast paths and forced reference), rope in both layouts, rmsnorm,
 * swiglu and dot. */
#include <stdint.h>
#include <string.h>

#include "../support/test.h"
#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "kernels/qdot.h"

static uint32_t rng_state = 777;
static float rand_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1 << 23) - 1.0f;
}

static void fill_random(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = rand_uniform();
}

static void test_cpu_features(void) {
    const kern_features *f = kern_cpu_features();
    CHECK(f == kern_cpu_features());
    if (f->avx512bw) CHECK(f->avx512f);
    kern_force_reference(1);
    CHECK_STR(kern_isa_name(), "ref");
    kern_force_reference(0);
    const char *name = kern_isa_name();
    CHECK(!strcmp(name, "ref") || !strcmp(name, "avx2") || !strcmp(name, "avx512"));
    if (f->avx512f && f->avx512bw && f->avx512vl && !getenv("BASALT_KERNELS")) CHECK_STR(name, "avx512");
}

/* One matmul case: W is random data quantized to wtype; the expectation is a
 * double-precision loop over the dequantized weights, and each output may
 * differ from it by f32 rounding of the sum: 1e-5 of sum |x*w|. */
static void check_matmul(bs_threadpool *pool, bs_dtype wtype, int T, int N, int K) {
    float *x = malloc(sizeof(float) * (size_t)T * K), *wf = malloc(sizeof(float) * (size_t)N * K);
    float *wd = malloc(sizeof(float) * (size_t)N * K), *y = malloc(sizeof(float) * (size_t)T * N);
    bs_dtype base = bs_dtype_block_type(wtype); /* an _R16 type: made from its plain rows */
    size_t row_bytes = bs_dtype_row_bytes(base, K);
    unsigned char *W = malloc(row_bytes * (size_t)N), *plain = malloc(row_bytes * (size_t)N);
    fill_random(x, (int64_t)T * K);
    fill_random(wf, (int64_t)N * K);
    for (int n = 0; n < N; n++) kern_quantize(base, wf + (size_t)n * K, plain + row_bytes * n, K);
    if (base != wtype)
        kern_interleave(base, plain, N, K, W);
    else
        memcpy(W, plain, row_bytes * (size_t)N);
    kern_dequant(base, plain, wd, (int64_t)N * K);
    kern_matmul(pool, y, x, T, W, wtype, N, K);
    /* Quantized weights multiply x rounded to int8 blocks (kernels/qdot.h). */
    float *xq = malloc(sizeof(float) * (size_t)T * K);
    kern_xblock *xb = malloc(sizeof(kern_xblock) * (size_t)(K / 32 + 1));
    for (int t = 0; t < T && kern_qlayout_of(wtype); t++) {
        kern_quantize_x(x + (size_t)t * K, K, xb);
        for (int k = 0; k < K; k++) xq[(size_t)t * K + k] = xb[k / 32].d * (float)xb[k / 32].q[k % 32];
    }
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double want = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                float xv = x[(size_t)t * K + k];
                if (kern_qlayout_of(wtype)) xv = xq[(size_t)t * K + k];
                double p = (double)xv * wd[(size_t)n * K + k];
                want += p;
                mag += fabs(p);
            }
            double got = y[(size_t)t * N + n];
            if (!(fabs(got - want) <= 1e-5 * mag + 1e-30)) {
                fprintf(stderr, "  %s T=%d N=%d K=%d pool=%d isa=%s: y[%d][%d] = %.9g, expected %.9g\n",
                        bs_dtype_name(wtype), T, N, K, bs_threadpool_size(pool), kern_isa_name(), t, n,
                        got, want);
                test_failed_ = 1;
                t = T;
                break;
            }
        }
    free(x);
    free(wf);
    free(wd);
    free(y);
    free(W);
    free(plain);
    free(xq);
    free(xb);
}

/* K sizes per block size: float types take K not a multiple of 16; block
 * types cover one block, several, and more than one 1024-column chunk. */
static void matmul_all_shapes(int reference) {
    static const int k_float[] = {1, 13, 67, 1100};
    static const int k_q32[] = {32, 96, 2080};
    static const int k_q256[] = {256, 1280};
    static const int shapes[][2] = {{1, 1}, {1, 13}, {7, 5}, {3, 32}};
    bs_threadpool *pools[3] = {NULL, NULL, NULL};
    bs_error err = {0};
    CHECK_OK(bs_threadpool_open(2, &pools[1], &err), &err);
    CHECK_OK(bs_threadpool_open(3, &pools[2], &err), &err);
    kern_force_reference(reference);
    for (int type = 0; type < BS_DTYPE_COUNT; type++) {
        int be = bs_dtype_block_elems((bs_dtype)type), r16 = bs_dtype_block_type((bs_dtype)type) != (bs_dtype)type;
        if (r16 && be > 1) continue; /* quantized _R16: test_qdot, batch invariance */
        const int *ks = be == 1 ? k_float : be == 32 ? k_q32 : k_q256;
        int nk = be == 1 ? 4 : be == 32 ? 3 : 2;
        for (int ki = 0; ki < nk; ki++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (int p = 0; p < 3; p++) /* _R16 rows come in whole groups */
                    check_matmul(pools[p], (bs_dtype)type, shapes[s][0], r16 ? 16 * (int)(s + 1) : shapes[s][1],
                                 ks[ki]);
    }
    kern_force_reference(0);
    bs_threadpool_close(pools[1]);
    bs_threadpool_close(pools[2]);
}

static void test_matmul_fast(void) { matmul_all_shapes(0); }
static void test_matmul_reference(void) { matmul_all_shapes(1); }

/* More threads than rows: idle threads must not write anything. */
static void test_matmul_more_threads_than_rows(void) {
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    CHECK_OK(bs_threadpool_open(3, &pool, &err), &err);
    float x[2 * 5] = {1, 2, 3, 4, 5, -1, -2, -3, -4, -5}, w[5] = {1, 0, 1, 0, 1}, y[2] = {0, 0};
    kern_matmul(pool, y, x, 2, w, BS_DTYPE_F32, 1, 5);
    CHECK_NEAR(y[0], 9, 0);
    CHECK_NEAR(y[1], -9, 0);
    bs_threadpool_close(pool);
}

/* Batch invariance: row t of a T-row matmul is bit-identical to the same row
 * computed alone (T = 1), for every dtype and a K spanning several chunks, so
 * a served request's tokens never depend on what else shares its step. */
static void test_matmul_batch_invariant(void) {
    enum { T = 131, MAXN = 48, K = 2304 }; /* T past one 128-token pass of matmul.c */
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    CHECK_OK(bs_threadpool_open(2, &pool, &err), &err);
    static float x[T * K], wf[MAXN * K], batched[T * MAXN], alone[MAXN];
    static unsigned char W[MAXN * K * 4], plain[MAXN * K * 4];
    fill_random(x, T * K);
    fill_random(wf, MAXN * K);
    for (int d = 0; d < BS_DTYPE_COUNT; d++) {
        /* the _R16 layouts: quantized as their block type, then interleaved
         * (three groups of 16 rows, split 32 + 16 between the threads); the
         * other types with a ragged 37 rows (two whole decode tiles on one
         * thread, 5 rows on the other) */
        bs_dtype base = bs_dtype_block_type((bs_dtype)d);
        int N = base != (bs_dtype)d ? 48 : 37;
        size_t row_bytes = bs_dtype_row_bytes(base, K);
        for (int n = 0; n < N; n++) kern_quantize(base, wf + (size_t)n * K, plain + row_bytes * n, K);
        if (base != (bs_dtype)d)
            kern_interleave(base, plain, N, K, W);
        else
            memcpy(W, plain, row_bytes * N);
        kern_matmul(pool, batched, x, T, W, (bs_dtype)d, N, K);
        for (int t = 0; t < T; t++) {
            kern_matmul(pool, alone, x + (size_t)t * K, 1, W, (bs_dtype)d, N, K);
            if (memcmp(alone, batched + (size_t)t * N, sizeof(float) * (size_t)N) != 0) {
                fprintf(stderr, "  %s: row %d differs between T=1 and T=%d\n", bs_dtype_name((bs_dtype)d), t, T);
                test_failed_ = 1;
            }
        }
    }
    bs_threadpool_close(pool);
}

/* Long float rows (decode takes them 8 per tile) are batch-invariant too. */
static void test_matmul_long_rows(void) {
    enum { T = 3, N = 21, K = 6400 };
    static const bs_dtype types[] = {BS_DTYPE_BF16, BS_DTYPE_F16, BS_DTYPE_F32};
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    CHECK_OK(bs_threadpool_open(2, &pool, &err), &err);
    static float x[T * K], wf[N * K], batched[T * N], alone[N];
    static unsigned char W[N * K * 4];
    fill_random(x, T * K);
    fill_random(wf, N * K);
    for (int i = 0; i < 3; i++) {
        size_t row_bytes = bs_dtype_row_bytes(types[i], K);
        for (int n = 0; n < N; n++) kern_quantize(types[i], wf + (size_t)n * K, W + row_bytes * n, K);
        kern_matmul(pool, batched, x, T, W, types[i], N, K);
        for (int t = 0; t < T; t++) {
            kern_matmul(pool, alone, x + (size_t)t * K, 1, W, types[i], N, K);
            CHECK(memcmp(alone, batched + (size_t)t * N, sizeof alone) == 0);
        }
    }
    bs_threadpool_close(pool);
}

/* A group of float matrices (one pool pass, each thread its share of every
 * matrix) is the separate calls bit for bit, for decode and prefill, with
 * row counts that split unevenly over the threads. */
static void test_matmul_group_float(void) {
    enum { T = 131, K = 1100 };
    static const bs_dtype types[] = {BS_DTYPE_BF16, BS_DTYPE_F16, BS_DTYPE_F32};
    static const int ns[] = {40, 9, 130};
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    CHECK_OK(bs_threadpool_open(2, &pool, &err), &err);
    static float x[T * K], wf[130 * K], grouped[3][T * 130], alone[T * 130];
    static unsigned char W[3][130 * K * 4];
    fill_random(x, T * K);
    fill_random(wf, 130 * K);
    kern_matmul_out outs[3];
    for (int i = 0; i < 3; i++) {
        size_t row_bytes = bs_dtype_row_bytes(types[i], K);
        for (int n = 0; n < ns[i]; n++) kern_quantize(types[i], wf + (size_t)n * K, W[i] + row_bytes * n, K);
        outs[i] = (kern_matmul_out){grouped[i], W[i], types[i], ns[i]};
    }
    static const int ts[] = {1, 5, T};
    for (int ti = 0; ti < 3; ti++) {
        kern_matmul_group(pool, x, ts[ti], K, outs, 3);
        for (int i = 0; i < 3; i++) {
            kern_matmul(pool, alone, x, ts[ti], W[i], types[i], ns[i], K);
            if (memcmp(alone, grouped[i], sizeof(float) * (size_t)ts[ti] * ns[i]) != 0) {
                fprintf(stderr, "  %s T=%d: the group differs from a separate call\n", bs_dtype_name(types[i]), ts[ti]);
                test_failed_ = 1;
            }
        }
    }
    bs_threadpool_close(pool);
}

/* The float _R16 layouts: each row's sum is defined by isa.h (four fmaf
 * chains over the columns mod 4), so the fast table's result is the portable
 * reference's bit for bit, for decode and prefill token counts, column counts
 * with every tail length, and one to three groups over one or two threads;
 * and kern_dequant_rows and kern_transpose_float read the layout back as the
 * plain rows. */
static void test_matmul_r16_float(void) {
    enum { MAXT = 13, N = 48, MAXK = 1100 };
    static const bs_dtype types[] = {BS_DTYPE_BF16, BS_DTYPE_F16, BS_DTYPE_F32};
    static const int ts[] = {1, 2, 6, 7, MAXT}, ks[] = {1, 2, 3, 5, 67, MAXK};
    bs_threadpool *pool = NULL;
    bs_error err = {0};
    CHECK_OK(bs_threadpool_open(2, &pool, &err), &err);
    static float x[MAXT * MAXK], wf[N * MAXK], fast[MAXT * N], ref[MAXT * N], want[N * MAXK], got[N * MAXK];
    static unsigned char plain[N * MAXK * 4], W[N * MAXK * 4], T1[N * MAXK * 4], T2[N * MAXK * 4];
    fill_random(x, MAXT * MAXK);
    fill_random(wf, N * MAXK);
    for (int i = 0; i < 3; i++)
        for (int ki = 0; ki < 6; ki++) {
            int K = ks[ki];
            bs_dtype rtype = bs_dtype_interleaved(types[i]);
            size_t row_bytes = bs_dtype_row_bytes(types[i], K);
            for (int n = 0; n < N; n++) kern_quantize(types[i], wf + (size_t)n * K, plain + row_bytes * n, K);
            CHECK(kern_can_interleave(types[i], N, K) && !kern_can_interleave(types[i], N - 8, K));
            kern_interleave(types[i], plain, N, K, W);
            if (K > 1) CHECK(memcmp(plain, W, row_bytes * N) != 0);
            for (int ti = 0; ti < 5; ti++)
                for (int rows = 16; rows <= N; rows += 16) {
                    kern_matmul(pool, fast, x, ts[ti], W, rtype, rows, K);
                    kern_force_reference(1);
                    kern_matmul(NULL, ref, x, ts[ti], W, rtype, rows, K);
                    kern_force_reference(0);
                    if (memcmp(fast, ref, sizeof(float) * (size_t)ts[ti] * rows) != 0) {
                        fprintf(stderr, "  %s T=%d N=%d K=%d: %s differs from the reference\n",
                                bs_dtype_name(rtype), ts[ti], rows, K, kern_isa_name());
                        test_failed_ = 1;
                    }
                }
            kern_dequant(types[i], plain, want, (int64_t)N * K);
            static const int spans[][2] = {{0, N}, {5, 1}, {15, 2}, {17, 30}};
            for (int sp = 0; sp < 4; sp++) {
                kern_dequant_rows(rtype, W, K, spans[sp][0], spans[sp][1], got);
                CHECK(memcmp(got, want + (size_t)spans[sp][0] * K, sizeof(float) * (size_t)spans[sp][1] * K) == 0);
            }
            kern_transpose_float(types[i], plain, N, K, T1);
            kern_transpose_float(rtype, W, N, K, T2);
            CHECK(memcmp(T1, T2, row_bytes * N) == 0);
            kern_dequant(types[i], T1 + (size_t)(K - 1) * N * (row_bytes / K), got, N);
            for (int n = 0; n < N; n++) CHECK(got[n] == want[(size_t)n * K + K - 1]);
        }
    bs_threadpool_close(pool);
}

static void rope_case(int neox, int pos) {
    enum { HEADS = 3, DIM = 64, HALF = DIM / 2 };
    float inv_freq[HALF], x[HEADS * DIM], orig[HEADS * DIM];
    for (int i = 0; i < HALF; i++) inv_freq[i] = (float)pow(10000.0, -2.0 * i / DIM);
    fill_random(x, HEADS * DIM);
    memcpy(orig, x, sizeof x);
    kern_rope(x, HEADS, DIM, pos, inv_freq, neox);
    for (int h = 0; h < HEADS; h++)
        for (int i = 0; i < HALF; i++) {
            int a = h * DIM + (neox ? i : 2 * i), b = h * DIM + (neox ? i + HALF : 2 * i + 1);
            double angle = (float)pos * inv_freq[i]; /* the f32 product, as documented */
            double c = cos(angle), s = sin(angle);
            CHECK_NEAR(x[a], orig[a] * c - orig[b] * s, 2e-6);
            CHECK_NEAR(x[b], orig[a] * s + orig[b] * c, 2e-6);
        }
}

static void test_rope(void) {
    rope_case(1, 0);
    rope_case(1, 5);
    rope_case(1, 4321);
    rope_case(0, 5);
    rope_case(0, 4321);
    /* neox pairs 0 with 2 in a 4-dim head; the GGUF layout pairs 0 with 1. */
    float inv[2] = {1.0f, 0.5f}, v[4] = {1, 0, 0, 0};
    kern_rope(v, 1, 4, 1, inv, 1);
    CHECK_NEAR(v[0], cos(1.0), 1e-6);
    CHECK_NEAR(v[2], sin(1.0), 1e-6);
    CHECK_NEAR(v[1], 0, 0);
    float u[4] = {1, 0, 0, 0};
    kern_rope(u, 1, 4, 1, inv, 0);
    CHECK_NEAR(u[0], cos(1.0), 1e-6);
    CHECK_NEAR(u[1], sin(1.0), 1e-6);
    CHECK_NEAR(u[2], 0, 0);
}

static void test_rmsnorm(void) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 0.5f, 2, 1}, out[4];
    kern_rmsnorm(out, x, w, 4, 1e-5f);
    double scale = 1.0 / sqrt(30.0 / 4 + 1e-5);
    for (int i = 0; i < 4; i++) CHECK_NEAR(out[i], x[i] * scale * w[i], 1e-6);
    kern_rmsnorm(x, x, w, 4, 1e-5f); /* in place */
    for (int i = 0; i < 4; i++) CHECK_NEAR(x[i], out[i], 0);
    for (int reference = 0; reference < 2; reference++) {
        kern_force_reference(reference);
        float a[101], g[101], o[101];
        fill_random(a, 101);
        fill_random(g, 101);
        kern_rmsnorm(o, a, g, 101, 1e-6f);
        double ss = 0;
        for (int i = 0; i < 101; i++) ss += (double)a[i] * a[i];
        for (int i = 0; i < 101; i++) CHECK_NEAR(o[i], a[i] / sqrt(ss / 101 + 1e-6) * g[i], 1e-5);
    }
    kern_force_reference(0);
}

static void test_swiglu(void) {
    float g[5] = {0, 1, -2, 100, -100}, u[5] = {3, 2, 1, 0.5f, 7}, out[5];
    kern_swiglu(out, g, u, 5);
    for (int i = 0; i < 5; i++) CHECK_NEAR(out[i], g[i] / (1 + exp(-(double)g[i])) * u[i], 1e-6 * fabs(out[i]) + 1e-30);
    CHECK_NEAR(out[3], 50, 1e-5);
    CHECK(out[4] == 0 && !isnan(out[4]));
}

static void test_dot(void) {
    static const int sizes[] = {0, 1, 15, 16, 17, 63, 64, 100, 1000};
    float a[1000], b[1000];
    fill_random(a, 1000);
    fill_random(b, 1000);
    for (int reference = 0; reference < 2; reference++) {
        kern_force_reference(reference);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int n = sizes[s];
            double want = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                want += (double)a[i] * b[i];
                mag += fabs((double)a[i] * b[i]);
            }
            CHECK_NEAR(kern_dot_f32(a, b, n), want, 1e-6 * mag);
        }
    }
    kern_force_reference(0);
}

int main(void) {
    RUN(test_cpu_features);
    RUN(test_matmul_fast);
    RUN(test_matmul_reference);
    RUN(test_matmul_more_threads_than_rows);
    RUN(test_matmul_batch_invariant);
    RUN(test_matmul_group_float);
    RUN(test_matmul_long_rows);
    RUN(test_matmul_r16_float);
    RUN(test_rope);
    RUN(test_rmsnorm);
    RUN(test_swiglu);
    RUN(test_dot);
    TEST_MAIN_END();
}
