/* Block layouts: each quant type is checked against blocks built by hand from
 * the documented llama.cpp layout, then a quantize -> dequantize round trip is
 * checked against an error bound; f16/bf16 conversions fast vs reference. */
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "../support/test.h"

static void put_f16(unsigned char *p, float v) {
    uint16_t h = bs_f32_to_f16(v);
    memcpy(p, &h, 2);
}

static uint32_t rng_state = 12345;
static float rand_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1 << 23) - 1.0f;
}

/* Q8_0: f16 d, then 32 int8; value = d*q. */
static void test_q8_0_layout(void) {
    unsigned char blk[2 * 34];
    for (int b = 0; b < 2; b++) {
        put_f16(blk + 34 * b, b ? -0.25f : 0.5f);
        for (int j = 0; j < 32; j++) blk[34 * b + 2 + j] = (unsigned char)(int8_t)(j * 8 - 128 + b);
    }
    float y[64];
    kern_dequant(BS_DTYPE_Q8_0, blk, y, 64);
    for (int j = 0; j < 32; j++) {
        CHECK_NEAR(y[j], 0.5 * (j * 8 - 128), 0);
        CHECK_NEAR(y[32 + j], -0.25 * (j * 8 - 127), 0);
    }
}

/* Q4_0: f16 d, 16 bytes; element j < 16 is the low nibble of byte j, element
 * j + 16 its high nibble; value = d*(q - 8). */
static void test_q4_0_layout(void) {
    unsigned char blk[18];
    put_f16(blk, 0.5f);
    for (int j = 0; j < 16; j++) blk[2 + j] = (unsigned char)(j | (15 - j) << 4);
    float y[32];
    kern_dequant(BS_DTYPE_Q4_0, blk, y, 32);
    for (int j = 0; j < 16; j++) {
        CHECK_NEAR(y[j], 0.5 * (j - 8), 0);
        CHECK_NEAR(y[j + 16], 0.5 * (15 - j - 8), 0);
    }
}

/* Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit (scale, min) for 8 sub-blocks of 32,
 * 128 bytes of nibbles.  Sub-block j < 4: scale = low 6 bits of byte j, min =
 * low 6 bits of byte j+4.  j >= 4: scale = low nibble of byte j+4 | top 2 bits
 * of byte j-4 << 4; min = high nibble of byte j+4 | top 2 bits of byte j << 4.
 * Element e: 64-element group g = e/64 uses bytes 32g..32g+31; e%64 < 32 is
 * the low nibble of byte 32g + e%32, otherwise the high nibble.
 * value = d*scale*q - dmin*min. */
static void test_q4_k_layout(void) {
    static const int sc[2][8] = {{1, 5, 17, 33, 63, 40, 2, 21}, {0, 63, 62, 7, 16, 47, 32, 9}};
    static const int mn[2][8] = {{0, 3, 62, 15, 9, 48, 31, 1}, {63, 0, 1, 2, 60, 17, 33, 12}};
    static const float d[2] = {0.25f, 0.0625f}, dmin[2] = {0.5f, 1.5f};
    unsigned char blk[2 * 144];
    memset(blk, 0, sizeof blk);
    for (int b = 0; b < 2; b++) {
        unsigned char *p = blk + 144 * b, *s = p + 4, *qs = p + 16;
        put_f16(p, d[b]);
        put_f16(p + 2, dmin[b]);
        for (int j = 0; j < 4; j++) {
            s[j] |= (unsigned char)sc[b][j];
            s[j + 4] |= (unsigned char)mn[b][j];
        }
        for (int j = 4; j < 8; j++) {
            s[j + 4] |= (unsigned char)((sc[b][j] & 0xF) | (mn[b][j] & 0xF) << 4);
            s[j - 4] |= (unsigned char)((sc[b][j] >> 4) << 6);
            s[j] |= (unsigned char)((mn[b][j] >> 4) << 6);
        }
        for (int i = 0; i < 128; i++) qs[i] = (unsigned char)(i * 7 + 3 + b * 50);
    }
    float y[512];
    kern_dequant(BS_DTYPE_Q4_K, blk, y, 512);
    for (int b = 0; b < 2; b++) {
        const unsigned char *qs = blk + 144 * b + 16;
        for (int e = 0; e < 256; e++) {
            int g = e / 64, r = e % 64, j = e / 32;
            unsigned char byte = qs[32 * g + r % 32];
            int q = r < 32 ? (byte & 0xF) : (byte >> 4);
            double want = (double)d[b] * sc[b][j] * q - (double)dmin[b] * mn[b][j];
            CHECK_NEAR(y[256 * b + e], want, 1e-6 * fabs(want));
        }
    }
}

/* Q6_K: ql[128], qh[64], int8 scales[16], f16 d.  Element e: half h = e/128,
 * r = e%128, s = r/32, l = r%32.  Low 4 bits: byte ql[64h + l + 32*(s%2)],
 * low nibble for s < 2, high nibble otherwise.  High 2 bits: bits 2s, 2s+1 of
 * qh[32h + l].  value = d * scales[e/16] * (q - 32). */
static void test_q6_k_layout(void) {
    unsigned char blk[210];
    memset(blk, 0, sizeof blk);
    unsigned char *ql = blk, *qh = blk + 128;
    int8_t scales[16];
    for (int j = 0; j < 16; j++) scales[j] = (int8_t)(j * 9 - 70);
    scales[15] = -128;
    memcpy(blk + 192, scales, 16);
    put_f16(blk + 208, 0.125f);
    int q[256];
    for (int e = 0; e < 256; e++) {
        q[e] = (e * 37 + 11) % 64;
        int h = e / 128, r = e % 128, s = r / 32, l = r % 32;
        ql[64 * h + l + 32 * (s % 2)] |= (unsigned char)((q[e] & 0xF) << (s < 2 ? 0 : 4));
        qh[32 * h + l] |= (unsigned char)((q[e] >> 4) << (2 * s));
    }
    float y[256];
    kern_dequant(BS_DTYPE_Q6_K, blk, y, 256);
    for (int e = 0; e < 256; e++) CHECK_NEAR(y[e], 0.125 * scales[e / 16] * (q[e] - 32), 0);
}

static float max_abs(const float *x, int n) {
    float m = 0;
    for (int i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* Quantize random blocks (plus an all-zero and an all-positive block) and
 * check each element comes back within `bound` times its block's max |x|. */
static void round_trip(bs_dtype type, double bound) {
    enum { N = 4 * 256 };
    float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = rand_uniform() * (i < 512 ? 1.0f : 30.0f);
    for (int i = 256; i < 512; i++) x[i] = 0;
    for (int i = 512; i < 768; i++) x[i] = fabsf(x[i]) + 5.0f;
    unsigned char q[N * 2];
    CHECK(bs_dtype_row_bytes(type, N) <= sizeof q);
    kern_quantize(type, x, q, N);
    kern_dequant(type, q, y, N);
    int be = bs_dtype_block_elems(type);
    for (int b = 0; b < N / be; b++) {
        double tol = bound * max_abs(x + b * be, be);
        for (int i = b * be; i < (b + 1) * be; i++) CHECK_NEAR(y[i], x[i], tol);
    }
    for (int i = 256; i < 512; i++) CHECK_NEAR(y[i], 0, 0);
}

/* Bounds: half a quantization step plus the rounding of the scales; in the
 * symmetric types (Q4_0, Q6_K) the largest element maps to the bottom level,
 * so one of the opposite sign near the same magnitude may clamp a full step. */
static void test_q8_0_round_trip(void) { round_trip(BS_DTYPE_Q8_0, 0.55 / 127); }
static void test_q4_0_round_trip(void) { round_trip(BS_DTYPE_Q4_0, 1.01 / 8); }
static void test_q4_k_round_trip(void) { round_trip(BS_DTYPE_Q4_K, 0.08); }
static void test_q6_k_round_trip(void) { round_trip(BS_DTYPE_Q6_K, 1.05 / 32); }

static void test_float_round_trip(void) {
    float x[37], y[37];
    for (int i = 0; i < 37; i++) x[i] = rand_uniform() * 100;
    uint16_t h[37];
    kern_quantize(BS_DTYPE_F16, x, h, 37);
    kern_dequant(BS_DTYPE_F16, h, y, 37);
    for (int i = 0; i < 37; i++) CHECK_NEAR(y[i], x[i], fabs(x[i]) / 2048);
    kern_quantize(BS_DTYPE_BF16, x, h, 37);
    kern_dequant(BS_DTYPE_BF16, h, y, 37);
    for (int i = 0; i < 37; i++) CHECK_NEAR(y[i], x[i], fabs(x[i]) / 256);
    kern_quantize(BS_DTYPE_F32, x, y, 37);
    CHECK(memcmp(x, y, sizeof x) == 0);
}

/* SIMD f16/bf16 widening must equal the scalar conversion bit for bit,
 * including tails, infinities, signed zero and subnormals. */
static void test_half_conversions_fast_vs_ref(void) {
    enum { N = 53 };
    uint16_t h[N];
    for (int i = 0; i < N; i++) h[i] = (uint16_t)(i * 1237 + 11);
    h[0] = 0x7c00;  /* f16 +inf */
    h[1] = 0x8000;  /* -0 */
    h[2] = 0x0001;  /* smallest f16 subnormal */
    h[3] = 0x7bff;  /* f16 max */
    h[4] = 0xff80;  /* bf16 -inf */
    for (int t = 0; t < 2; t++) {
        bs_dtype type = t ? BS_DTYPE_BF16 : BS_DTYPE_F16;
        for (int n = 1; n <= N; n += 13) {
            float fast[N], ref[N];
            kern_force_reference(0);
            kern_dequant(type, h, fast, n);
            kern_force_reference(1);
            kern_dequant(type, h, ref, n);
            kern_force_reference(0);
            for (int i = 0; i < n; i++) {
                if (isnan(ref[i])) {
                    CHECK(isnan(fast[i]));
                    continue;
                }
                CHECK(memcmp(&fast[i], &ref[i], 4) == 0);
                float want = t ? bs_bf16_to_f32(h[i]) : bs_f16_to_f32(h[i]);
                CHECK(memcmp(&ref[i], &want, 4) == 0);
            }
        }
    }
    CHECK_NEAR(bs_f16_to_f32(h[2]), ldexp(1, -24), 0);
}

int main(void) {
    RUN(test_q8_0_layout);
    RUN(test_q4_0_layout);
    RUN(test_q4_k_layout);
    RUN(test_q6_k_layout);
    RUN(test_q8_0_round_trip);
    RUN(test_q4_0_round_trip);
    RUN(test_q4_k_round_trip);
    RUN(test_q6_k_round_trip);
    RUN(test_float_round_trip);
    RUN(test_half_conversions_fast_vs_ref);
    TEST_MAIN_END();
}
