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
    float a[MAX], w[KERN_ROW_TILE][MAX];
    uint16_t h[MAX], finite[MAX];
    for (int i = 0; i < MAX; i++) {
        a[i] = rand_uniform() * 4;
        for (int r = 0; r < KERN_ROW_TILE; r++) w[r][i] = rand_uniform();
        h[i] = (uint16_t)(rand_uniform() * 32768 + 32768);
        finite[i] = h[i] & 0xBFFF; /* top exponent bit clear: |value| < 2 in f16 and bf16 */
    }
    const float *rows[KERN_ROW_TILE] = {w[0], w[1], w[2], w[3]};
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
        for (int i = 0; i < n; i++) mag += fabs((double)a[i] * w[0][i]);
        CHECK_NEAR(isa->dot(a, w[0], n), kern_isa_ref.dot(a, w[0], n), 1e-6 * mag);
        float out[KERN_ROW_TILE], ref[KERN_ROW_TILE];
        isa->dot4(a, rows, n, out);
        kern_isa_ref.dot4(a, rows, n, ref);
        for (int r = 0; r < KERN_ROW_TILE; r++) {
            double m = 0;
            for (int i = 0; i < n; i++) m += fabs((double)a[i] * w[r][i]);
            CHECK_NEAR(out[r], ref[r], 1e-6 * m);
        }
        /* Fused half-precision rows: the reference dot4 on widened rows. */
        for (int bf16 = 0; bf16 < 2; bf16++) {
            const uint16_t *hrows[KERN_ROW_TILE];
            static float wide[KERN_ROW_TILE][MAX];
            const float *wrows[KERN_ROW_TILE];
            if (n + 7 * (KERN_ROW_TILE - 1) > MAX) continue;
            for (int r = 0; r < KERN_ROW_TILE; r++) {
                hrows[r] = finite + 7 * r; /* rows at odd offsets */
                kern_isa_ref.dequant[bf16 ? BS_DTYPE_BF16 : BS_DTYPE_F16](hrows[r], wide[r], n);
                wrows[r] = wide[r];
            }
            (bf16 ? isa->dot4_bf16 : isa->dot4_f16)(a, hrows, n, out);
            kern_isa_ref.dot4(a, wrows, n, ref);
            for (int r = 0; r < KERN_ROW_TILE; r++) {
                double m = 0;
                for (int i = 0; i < n; i++) m += fabs((double)a[i] * wide[r][i]);
                CHECK_NEAR(out[r], ref[r], 1e-6 * m);
            }
        }
    }
}

/* Block dequantization must be bit-identical to the reference; the blocks are
 * random bytes (with finite f16 scales) so every bit pattern is exercised. */
static void check_block_dequant(const kern_isa_ops *isa) {
    enum { N = 2 * 256 };
    for (int type = BS_DTYPE_Q8_0; type < BS_DTYPE_COUNT; type++) {
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

static void test_avx2_table(void) {
    const kern_features *f = kern_cpu_features();
    if (!(f->avx2 && f->fma && f->f16c)) SKIP("CPU lacks AVX2/FMA/F16C");
    check_table(&kern_isa_avx2);
    check_block_dequant(&kern_isa_avx2);
}

static void test_avx512_table(void) {
    const kern_features *f = kern_cpu_features();
    if (!(f->avx512f && f->avx512bw && f->avx512vl)) SKIP("CPU lacks AVX-512 F/BW/VL");
    check_table(&kern_isa_avx512);
    check_block_dequant(&kern_isa_avx512);
}

int main(void) {
    RUN(test_avx2_table);
    RUN(test_avx512_table);
    TEST_MAIN_END();
}
