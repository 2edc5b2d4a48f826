/* kernels/isa_ref.c — portable C building blocks: the reference every SIMD
 * variant is tested against, and the fallback on CPUs without AVX2. */
#include <math.h>

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

/* Element k of weight row w as f32, for each float weight type. */
static float ref_weight(bs_dtype type, const void *w, int k) {
    switch (type) {
    case BS_DTYPE_F16: return bs_f16_to_f32(((const uint16_t *)w)[k]);
    case BS_DTYPE_BF16: return bs_bf16_to_f32(((const uint16_t *)w)[k]);
    default: return ((const float *)w)[k];
    }
}

/* The defining loop: one sequential f32 sum per (token, row). */
static void ref_gemm(bs_dtype type, float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                     size_t row_bytes, int rows, int n, int first) {
    for (int t = 0; t < T; t++)
        for (int r = 0; r < rows; r++) {
            const void *row = (const char *)w + (size_t)r * row_bytes;
            float s = 0;
            for (int k = 0; k < n; k++) s += ((const float *)x)[(size_t)t * ldx + k] * ref_weight(type, row, k);
            float *out = y + (size_t)t * ldy + r;
            *out = first ? s : *out + s;
        }
}

static void ref_gemm_f32(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w, size_t row_bytes,
                         int rows, int n, int first) {
    ref_gemm(BS_DTYPE_F32, y, ldy, x, ldx, T, w, row_bytes, rows, n, first);
}

static void ref_gemm_f16(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w, size_t row_bytes,
                         int rows, int n, int first) {
    ref_gemm(BS_DTYPE_F16, y, ldy, x, ldx, T, w, row_bytes, rows, n, first);
}

static void ref_gemm_bf16(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w, size_t row_bytes,
                          int rows, int n, int first) {
    ref_gemm(BS_DTYPE_BF16, y, ldy, x, ldx, T, w, row_bytes, rows, n, first);
}

/* The _R16 layouts' defining loop (isa.h, kern_gemm_r16_fn). */
static void ref_gemm_r16(bs_dtype type, float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w,
                         int groups, int K) {
    size_t elem = type == BS_DTYPE_F32 ? 4 : 2;
    for (int g = 0; g < groups; g++) {
        const char *group = (const char *)w + (size_t)g * K * BS_ROW_GROUP * elem;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < BS_ROW_GROUP; r++) {
                float c[2] = {0, 0};
                for (int k = 0; k < K; k++)
                    c[k & 1] = fmaf(x[(size_t)t * ldx + k], ref_weight(type, group, k * BS_ROW_GROUP + r), c[k & 1]);
                y[(size_t)t * ldy + (size_t)g * BS_ROW_GROUP + r] = c[0] + c[1];
            }
    }
}

void kern_ref_gemm_f32_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups, int K) {
    ref_gemm_r16(BS_DTYPE_F32, y, ldy, x, ldx, T, w, groups, K);
}

void kern_ref_gemm_f16_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups, int K) {
    ref_gemm_r16(BS_DTYPE_F16, y, ldy, x, ldx, T, w, groups, K);
}

void kern_ref_gemm_bf16_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups,
                            int K) {
    ref_gemm_r16(BS_DTYPE_BF16, y, ldy, x, ldx, T, w, groups, K);
}

static void ref_axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void ref_scale(float *y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

void kern_ref_swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
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
    .gemm_f32 = ref_gemm_f32,
    .gemm_f16 = ref_gemm_f16,
    .gemm_bf16 = ref_gemm_bf16,
    .gemm_f32_r16 = kern_ref_gemm_f32_r16,
    .gemm_f16_r16 = kern_ref_gemm_f16_r16,
    .gemm_bf16_r16 = kern_ref_gemm_bf16_r16,
    .axpy = ref_axpy,
    .scale = ref_scale,
    .swiglu = kern_ref_swiglu,
    .qrepack = {
        [BS_DTYPE_Q8_0] = kern_ref_qrepack_q8_0,
        [BS_DTYPE_Q4_0] = kern_ref_qrepack_q4_0,
        [BS_DTYPE_Q4_K] = kern_ref_qrepack_q4_k,
        [BS_DTYPE_Q6_K] = kern_ref_qrepack_q6_k,
        [BS_DTYPE_Q8_0_R16] = kern_ref_qrepack_q8_0_r16,
        [BS_DTYPE_Q4_0_R16] = kern_ref_qrepack_q4_0_r16,
        [BS_DTYPE_Q4_K_R16] = kern_ref_qrepack_q4_k_r16,
        [BS_DTYPE_Q6_K_R16] = kern_ref_qrepack_q6_k_r16,
    },
    .qgemm = kern_ref_qgemm,
    .qmatvec = kern_ref_qmatvec,
    .quantize_x = kern_ref_quantize_x,
};
