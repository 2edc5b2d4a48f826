/* Every SIMD table this CPU can run (AVX2 and AVX-512 where present) against
 * the portable reference, element by element; kern_matmul only composes these
 * building blocks, so this covers the ISA the dispatcher does not pick. */
#include <stdint.h>
#include <string.h>

#include "../support/test.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"

static uint32_t rng_state = 99;
static float rand_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1 << 23) - 1.0f;
}

static void check_table(const kern_isa_ops *isa) {
    enum { MAX = 300 };
    static const int sizes[] = {1, 7, 8, 15, 16, 17, 33, 64, 65, 127, 300};
    float a[MAX], w[MAX];
    uint16_t h[MAX];
    for (int i = 0; i < MAX; i++) {
        a[i] = rand_uniform() * 4;
        w[i] = rand_uniform();
        h[i] = (uint16_t)(rand_uniform() * 32768 + 32768);
    }
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        float got[MAX], want[MAX];
        isa->dequant[BS_DTYPE_F16](h, got, n);
        kern_isa_ref.dequant[BS_DTYPE_F16](h, want, n);
        for (int i = 0; i < n; i++) CHECK(isnan(want[i]) ? isnan(got[i]) : memcmp(&got[i], &want[i], 4) == 0);
        isa->dequant[BS_DTYPE_BF16](h, got, n);
        kern_isa_ref.dequant[BS_DTYPE_BF16](h, want, n);
        for (int i = 0; i < n; i++) CHECK(memcmp(&got[i], &want[i], 4) == 0);

        double mag = 0;
        for (int i = 0; i < n; i++) mag += fabs((double)a[i] * w[i]);
        CHECK_NEAR(isa->dot(a, w, n), kern_isa_ref.dot(a, w, n), 1e-6 * mag);
    }
}

/* SwiGLU against the reference's libm expf: a few ulp, over the whole range
 * (large |gate| saturates to 0 and to gate * up), with vector tails. */
static void check_swiglu(const kern_isa_ops *isa) {
    enum { N = 203 };
    float g[N], u[N], got[N], want[N];
    for (int i = 0; i < N; i++) {
        g[i] = rand_uniform() * (i < 100 ? 8 : 120);
        u[i] = rand_uniform() * 3;
    }
    g[0] = 0;
    g[1] = INFINITY;
    g[2] = -INFINITY;
    g[3] = 88.5f;
    g[4] = -88.5f;
    for (int n = 1; n <= N; n += 101) {
        isa->swiglu(got, g, u, n);
        kern_isa_ref.swiglu(want, g, u, n);
        for (int i = 0; i < n; i++)
            if (!(got[i] == want[i] || (isnan(got[i]) && isnan(want[i])) ||
                  fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-30f)) {
                fprintf(stderr, "  %s swiglu(%.9g, %.9g) = %.9g, reference %.9g\n", isa->name, g[i], u[i], got[i],
                        want[i]);
                test_failed_ = 1;
                return;
            }
    }
}

/* A kern_gemm_fn against the reference table's for one weight type: T tokens
 * x rows weight rows over n columns, written fresh (first) then accumulated
 * on top; the tolerance is f32 rounding of the sum of |products|.  Row t must
 * also be bit-identical when computed alone (batch invariance). */
static void check_gemm(const kern_isa_ops *isa, bs_dtype type, int T, int rows, int n) {
    enum { MAXT = 9, MAXR = 19, MAXN = 1100 };
    static float x[MAXT * MAXN], wf[MAXR * MAXN], y[MAXT * MAXR], yref[MAXT * MAXR], alone[MAXR];
    static unsigned char w[MAXR * (MAXN * 4 + 12)];
    size_t ldx = MAXN, ldy = MAXR, row_bytes = bs_dtype_row_bytes(type, n) + 12; /* rows not packed tight */
    for (int i = 0; i < MAXT * MAXN; i++) x[i] = rand_uniform() * 4;
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < n; k++) wf[r * n + k] = rand_uniform();
    for (int r = 0; r < rows; r++) kern_quantize(type, wf + r * n, w + r * row_bytes, n);
    kern_gemm_fn got_fn = type == BS_DTYPE_F32 ? isa->gemm_f32 : type == BS_DTYPE_F16 ? isa->gemm_f16 : isa->gemm_bf16;
    kern_gemm_fn ref_fn = type == BS_DTYPE_F32   ? kern_isa_ref.gemm_f32
                          : type == BS_DTYPE_F16 ? kern_isa_ref.gemm_f16
                                                 : kern_isa_ref.gemm_bf16;
    for (int first = 1; first >= 0; first--) {
        got_fn(y, ldy, x, ldx, T, w, row_bytes, rows, n, first);
        ref_fn(yref, ldy, x, ldx, T, w, row_bytes, rows, n, first);
    }
    float wd[MAXN];
    for (int r = 0; r < rows; r++) {
        kern_dequant(type, w + r * row_bytes, wd, n);
        for (int t = 0; t < T; t++) {
            double mag = 0;
            for (int k = 0; k < n; k++) mag += fabs((double)x[t * ldx + k] * wd[k]);
            if (!(fabs(y[t * ldy + r] - yref[t * ldy + r]) <= 2e-6 * mag + 1e-30)) {
                fprintf(stderr, "  %s gemm %s T=%d rows=%d n=%d: y[%d][%d] = %.9g, reference %.9g\n", isa->name,
                        bs_dtype_name(type), T, rows, n, t, r, y[t * ldy + r], yref[t * ldy + r]);
                test_failed_ = 1;
                return;
            }
        }
    }
    for (int t = 0; t < T; t++) {
        got_fn(alone, ldy, x + t * ldx, ldx, 1, w, row_bytes, rows, n, 1);
        got_fn(alone, ldy, x + t * ldx, ldx, 1, w, row_bytes, rows, n, 0);
        if (memcmp(alone, y + t * ldy, (size_t)rows * sizeof(float)) != 0) {
            fprintf(stderr, "  %s gemm %s T=%d rows=%d n=%d: token %d differs alone\n", isa->name,
                    bs_dtype_name(type), T, rows, n, t);
            test_failed_ = 1;
        }
    }
}

static void check_gemms(const kern_isa_ops *isa) {
    static const int ns[] = {1, 7, 16, 31, 33, 64, 100, 1100};
    static const int shapes[][2] = {{1, 1}, {1, 19}, {2, 5}, {3, 8}, {4, 17}, {7, 9}, {9, 19}};
    for (int type = BS_DTYPE_F32; type <= BS_DTYPE_BF16; type++)
        for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                check_gemm(isa, (bs_dtype)type, shapes[s][0], shapes[s][1], ns[i]);
}

/* A kern_gemm_r16_fn against the reference table's: bit for bit, since
 * isa.h defines every sum (two fmaf chains); token tiles, the two-group
 * prefill tiles with an odd last group, and column tails all covered, y with
 * a row stride wider than the groups. */
static void check_gemm_r16(const kern_isa_ops *isa) {
    enum { MAXT = 13, MAXG = 3, MAXK = 100, LDY = MAXG * 16 + 5 };
    static const int ts[] = {1, 2, 5, 6, 7, 13}, ks[] = {1, 2, 3, 16, 33, 100};
    static float x[MAXT * MAXK], y[MAXT * LDY], yref[MAXT * LDY];
    static unsigned char w[MAXG * 16 * MAXK * 4];
    for (int i = 0; i < MAXT * MAXK; i++) x[i] = rand_uniform() * 4;
    for (int type = BS_DTYPE_F32; type <= BS_DTYPE_BF16; type++) {
        bs_dtype t = (bs_dtype)type;
        kern_gemm_r16_fn got_fn = t == BS_DTYPE_F32   ? isa->gemm_f32_r16
                                  : t == BS_DTYPE_F16 ? isa->gemm_f16_r16
                                                      : isa->gemm_bf16_r16;
        kern_gemm_r16_fn ref_fn = t == BS_DTYPE_F32   ? kern_isa_ref.gemm_f32_r16
                                  : t == BS_DTYPE_F16 ? kern_isa_ref.gemm_f16_r16
                                                      : kern_isa_ref.gemm_bf16_r16;
        for (size_t i = 0; i < sizeof w / 4; i++) { /* finite random weights in any layout */
            float v = rand_uniform();
            if (t == BS_DTYPE_F32)
                memcpy(w + 4 * i, &v, 4);
            else
                kern_quantize(t, &v, w + 2 * i, 1);
        }
        for (size_t ti = 0; ti < sizeof ts / sizeof ts[0]; ti++)
            for (int groups = 1; groups <= MAXG; groups++)
                for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                    got_fn(y, LDY, x, ks[ki], ts[ti], w, groups, ks[ki]);
                    ref_fn(yref, LDY, x, ks[ki], ts[ti], w, groups, ks[ki]);
                    for (int tk = 0; tk < ts[ti]; tk++)
                        if (memcmp(y + tk * LDY, yref + tk * LDY, sizeof(float) * 16 * (size_t)groups) != 0) {
                            fprintf(stderr, "  %s gemm_r16 %s T=%d groups=%d K=%d: token %d differs\n", isa->name,
                                    bs_dtype_name(t), ts[ti], groups, ks[ki], tk);
                            test_failed_ = 1;
                            return;
                        }
                }
    }
}

/* Block dequantization must be bit-identical to the reference; the blocks are
 * random bytes (with finite f16 scales) so every bit pattern is exercised. */
static void check_block_dequant(const kern_isa_ops *isa) {
    enum { N = 2 * 256 };
    for (int type = BS_DTYPE_Q8_0; type < BS_DTYPE_COUNT; type++) {
        if (bs_dtype_block_type((bs_dtype)type) != (bs_dtype)type) continue; /* _R16: kern_dequant_rows */
        unsigned char raw[2 * 210 * 8];
        size_t bytes = bs_dtype_row_bytes((bs_dtype)type, N);
        for (size_t i = 0; i < bytes; i++) raw[i] = (unsigned char)(rand_uniform() * 128 + 128);
        /* f16 fields: keep them finite by clearing the top exponent bit. */
        int bb = bs_dtype_block_bytes((bs_dtype)type);
        for (size_t b = 0; b < bytes / (size_t)bb; b++) {
            unsigned char *blk = raw + b * (size_t)bb;
            if (type == BS_DTYPE_Q6_K) {
                blk[209] &= 0xBF;
            } else {
                blk[1] &= 0xBF;
                if (type == BS_DTYPE_Q4_K) blk[3] &= 0xBF;
            }
        }
        float got[N], want[N];
        isa->dequant[type](raw, got, N);
        kern_isa_ref.dequant[type](raw, want, N);
        for (int i = 0; i < N; i++)
            if (memcmp(&got[i], &want[i], 4) != 0) {
                fprintf(stderr, "  %s %s[%d] = %.9g, reference %.9g\n", isa->name, bs_dtype_name((bs_dtype)type),
                        i, got[i], want[i]);
                test_failed_ = 1;
                break;
            }
    }
}

/* The reference gemm itself against a double-precision loop. */
static void test_reference_gemm(void) {
    enum { T = 3, R = 5, N = 77 };
    float x[T * N], w[R * N], y[T * R];
    for (int i = 0; i < T * N; i++) x[i] = rand_uniform();
    for (int i = 0; i < R * N; i++) w[i] = rand_uniform();
    kern_isa_ref.gemm_f32(y, R, x, N, T, w, N * sizeof(float), R, N, 1);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            double want = 0;
            for (int k = 0; k < N; k++) want += (double)x[t * N + k] * w[r * N + k];
            CHECK_NEAR(y[t * R + r], want, 1e-5);
        }
    /* and its _R16 sums: rows as lanes of 16-row groups, column k of the
     * group at k * 16 */
    enum { G = 2, K = 37 };
    float wr[G * 16 * K], xr[T * K], yr[T * G * 16];
    for (int i = 0; i < G * 16 * K; i++) wr[i] = rand_uniform();
    for (int i = 0; i < T * K; i++) xr[i] = rand_uniform();
    kern_isa_ref.gemm_f32_r16(yr, G * 16, xr, K, T, wr, G, K);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < G * 16; r++) {
            double want = 0;
            for (int k = 0; k < K; k++) want += (double)xr[t * K + k] * wr[(r / 16) * 16 * K + k * 16 + r % 16];
            CHECK_NEAR(yr[t * G * 16 + r], want, 1e-5);
        }
}

static void test_avx2_table(void) {
    const kern_features *f = kern_cpu_features();
    if (!(f->avx2 && f->fma && f->f16c)) SKIP("CPU lacks AVX2/FMA/F16C");
    check_table(&kern_isa_avx2);
    check_gemms(&kern_isa_avx2);
    check_gemm_r16(&kern_isa_avx2);
    check_swiglu(&kern_isa_avx2);
    check_block_dequant(&kern_isa_avx2);
}

static void test_avx512_table(void) {
    const kern_features *f = kern_cpu_features();
    if (!(f->avx512f && f->avx512bw && f->avx512vl)) SKIP("CPU lacks AVX-512 F/BW/VL");
    check_table(&kern_isa_avx512);
    check_gemms(&kern_isa_avx512);
    check_gemm_r16(&kern_isa_avx512);
    check_swiglu(&kern_isa_avx512);
    check_block_dequant(&kern_isa_avx512);
}

int main(void) {
    RUN(test_reference_gemm);
    RUN(test_avx2_table);
    RUN(test_avx512_table);
    TEST_MAIN_END();
}
