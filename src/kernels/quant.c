/* kernels/quant.c — llama.cpp block layouts: reference dequantization of
 * Q8_0, Q4_0, Q4_K and Q6_K (bit-exact with ggml-quants.c), plain-float
 * conversions, and simple reference quantizers for tests and tools. */
#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"

/* ---- dequantization ---------------------------------------------------- */

static void dequant_q8_0(const block_q8_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = bs_f16_to_f32(b[i].d);
        for (int j = 0; j < 32; j++) y[j] = d * (float)b[i].qs[j];
    }
}

static void dequant_q4_0(const block_q4_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = bs_f16_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((b[i].qs[j] & 0xF) - 8);
            y[j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
        }
    }
}

/* Each 64 elements share 32 bytes of qs: the first 32 elements are the low
 * nibbles, the next 32 the high nibbles; value = d*scale*q - dmin*min. */
static void dequant_q4_k(const block_q4_k *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = bs_f16_to_f32(b[i].d), dmin = bs_f16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            int sc0, m0, sc1, m1;
            q4k_scale_min(j, b[i].scales, &sc0, &m0);
            q4k_scale_min(j + 1, b[i].scales, &sc1, &m1);
            float d0 = d * (float)sc0, o0 = dmin * (float)m0;
            float d1 = d * (float)sc1, o1 = dmin * (float)m1;
            for (int l = 0; l < 32; l++) *y++ = d0 * (float)(q[l] & 0xF) - o0;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] >> 4) - o1;
        }
    }
}

/* Each 128 elements use 64 bytes of ql and 32 of qh; within them element
 * l + 32*s (s < 4, l < 32) takes nibble s/2 of ql[l + 32*(s%2)] and bits 2s..2s+1
 * of qh[l]; 16 consecutive elements share one int8 scale; value = d*scale*(q-32). */
static void dequant_q6_k(const block_q6_k *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = bs_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void kern_ref_dequant_f32(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
void kern_ref_dequant_q8_0(const void *src, float *dst, int64_t n) { dequant_q8_0(src, dst, n / 32); }
void kern_ref_dequant_q4_0(const void *src, float *dst, int64_t n) { dequant_q4_0(src, dst, n / 32); }
void kern_ref_dequant_q4_k(const void *src, float *dst, int64_t n) { dequant_q4_k(src, dst, n / 256); }
void kern_ref_dequant_q6_k(const void *src, float *dst, int64_t n) { dequant_q6_k(src, dst, n / 256); }

void kern_dequant(bs_dtype type, const void *src, float *dst, int64_t n) {
    kern_isa()->dequant[type](src, dst, n);
}

/* ---- quantization ------------------------------------------------------ */

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The element of largest magnitude, sign kept. */
static float signed_absmax(const float *x, int n) {
    float m = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(m)) m = x[i];
    return m;
}

static void quantize_q8_0(const float *x, block_q8_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float d = fabsf(signed_absmax(x, 32)) / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = bs_f32_to_f16(d);
        for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)lrintf(x[j] * id);
    }
}

/* The largest-magnitude element maps to q = 0 (value -8d), so d may be negative. */
static void quantize_q4_0(const float *x, block_q4_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float d = signed_absmax(x, 32) / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = bs_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int lo = clamp_int((int)lrintf(x[j] * id) + 8, 0, 15);
            int hi = clamp_int((int)lrintf(x[j + 16] * id) + 8, 0, 15);
            b[i].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

/* Per 32-element sub-block: offset = -min(x, 0), step = (max - min) / 15; the
 * steps and offsets are then stored as 6-bit multiples of d and dmin.  Steps
 * round up so the sub-block's range still fits in 16 levels. */
static void quantize_q4_k(const float *x, block_q4_k *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float step[8], offset[8], max_step = 0, max_offset = 0;
        for (int j = 0; j < 8; j++) {
            float lo = 0, hi = x[32 * j];
            for (int l = 0; l < 32; l++) {
                lo = fminf(lo, x[32 * j + l]);
                hi = fmaxf(hi, x[32 * j + l]);
            }
            step[j] = (hi - lo) / 15.0f;
            offset[j] = -lo;
            max_step = fmaxf(max_step, step[j]);
            max_offset = fmaxf(max_offset, offset[j]);
        }
        b[i].d = bs_f32_to_f16(max_step / 63.0f);
        b[i].dmin = bs_f32_to_f16(max_offset / 63.0f);
        float d = bs_f16_to_f32(b[i].d), dmin = bs_f16_to_f32(b[i].dmin);
        int ls[8], lm[8];
        for (int j = 0; j < 8; j++) {
            ls[j] = d > 0 ? clamp_int((int)ceilf(step[j] / d), 0, 63) : 0;
            lm[j] = dmin > 0 ? clamp_int((int)lrintf(offset[j] / dmin), 0, 63) : 0;
        }
        for (int j = 0; j < 4; j++) { /* inverse of q4k_scale_min */
            b[i].scales[j] = (uint8_t)(ls[j] | (ls[j + 4] >> 4) << 6);
            b[i].scales[j + 4] = (uint8_t)(lm[j] | (lm[j + 4] >> 4) << 6);
            b[i].scales[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | (lm[j + 4] & 0xF) << 4);
        }
        uint8_t q[256];
        for (int j = 0; j < 8; j++) {
            float s = d * (float)ls[j], o = dmin * (float)lm[j];
            for (int l = 0; l < 32; l++)
                q[32 * j + l] = s > 0 ? (uint8_t)clamp_int((int)lrintf((x[32 * j + l] + o) / s), 0, 15) : 0;
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    }
}

/* Per 16-element sub-block the largest-magnitude element maps to q = -32; the
 * sub-block scales are stored as int8 multiples of d, rounded away from zero
 * so that element is not clamped. */
static void quantize_q6_k(const float *x, block_q6_k *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[16], max_scale = 0;
        for (int j = 0; j < 16; j++) {
            scale[j] = signed_absmax(x + 16 * j, 16) / -32.0f;
            if (fabsf(scale[j]) > fabsf(max_scale)) max_scale = scale[j];
        }
        float iscale = max_scale != 0 ? -128.0f / max_scale : 0.0f;
        b[i].d = bs_f32_to_f16(max_scale != 0 ? 1.0f / iscale : 0.0f);
        float d = bs_f16_to_f32(b[i].d);
        int q[256];
        for (int j = 0; j < 16; j++) {
            float ls = iscale * scale[j];
            b[i].scales[j] = (int8_t)clamp_int((int)(ls < 0 ? floorf(ls) : ceilf(ls)), -128, 127);
            float s = d * (float)b[i].scales[j];
            for (int l = 0; l < 16; l++)
                q[16 * j + l] = s != 0 ? clamp_int((int)lrintf(x[16 * j + l] / s), -32, 31) + 32 : 32;
        }
        for (int half = 0; half < 2; half++) {
            const int *qq = q + 128 * half;
            uint8_t *ql = b[i].ql + 64 * half, *qh = b[i].qh + 32 * half;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((qq[l] & 0xF) | (qq[l + 64] & 0xF) << 4);
                ql[l + 32] = (uint8_t)((qq[l + 32] & 0xF) | (qq[l + 96] & 0xF) << 4);
                qh[l] = (uint8_t)((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 |
                                  (qq[l + 96] >> 4) << 6);
            }
        }
    }
}

void kern_quantize(bs_dtype type, const float *src, void *dst, int64_t n) {
    int64_t nb = n / bs_dtype_block_elems(type);
    uint16_t *half = dst;
    switch (type) {
    case BS_DTYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case BS_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) half[i] = bs_f32_to_f16(src[i]);
        break;
    case BS_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) half[i] = bs_f32_to_bf16(src[i]);
        break;
    case BS_DTYPE_Q8_0: quantize_q8_0(src, dst, nb); break;
    case BS_DTYPE_Q4_0: quantize_q4_0(src, dst, nb); break;
    case BS_DTYPE_Q4_K: quantize_q4_k(src, dst, nb); break;
    case BS_DTYPE_Q6_K: quantize_q6_k(src, dst, nb); break;
    default: break; /* the _R16 layouts are made by kern_interleave */
    }
}
