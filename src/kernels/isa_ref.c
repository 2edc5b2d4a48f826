/* kernels/isa_ref.c — portable C building blocks: the reference every SIMD
 * variant is tested against, and the fallback on CPUs without AVX2. */
#include "base/dtype.h"
#include "kernels/isa.h"

static void ref_f16_to_f32(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bs_f16_to_f32(h[i]);
}

static void ref_bf16_to_f32(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = bs_bf16_to_f32(h[i]);
}

static float ref_dot(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void ref_dot4(const float *x, const float *const w[KERN_ROW_TILE], int n, float out[KERN_ROW_TILE]) {
    for (int r = 0; r < KERN_ROW_TILE; r++) out[r] = ref_dot(x, w[r], n);
}

const kern_isa_ops kern_isa_ref = {
    .name = "ref",
    .dequant = {
        [BS_DTYPE_F32] = kern_ref_dequant_f32,
        [BS_DTYPE_F16] = ref_f16_to_f32,
        [BS_DTYPE_BF16] = ref_bf16_to_f32,
        [BS_DTYPE_Q8_0] = kern_ref_dequant_q8_0,
        [BS_DTYPE_Q4_0] = kern_ref_dequant_q4_0,
        [BS_DTYPE_Q4_K] = kern_ref_dequant_q4_k,
        [BS_DTYPE_Q6_K] = kern_ref_dequant_q6_k,
    },
    .dot = ref_dot,
    .dot4 = ref_dot4,
};
