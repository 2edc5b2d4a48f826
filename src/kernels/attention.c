/* kernels/attention.c — online-softmax attention over spans of a KV cache
 * (see attention.h), on the ISA's dot, axpy and scale. */
#include "kernels/attention.h"

#include <math.h>
#include <string.h>

#include "kernels/isa.h"
#include "kernels/kernels.h"

/* Scores computed before the running output is touched: the maximum of a
 * group is known before any of its values is added, so the output is
 * rescaled at most once per group. */
enum { ATTN_GROUP = 64 };

void kern_attn_init(kern_attn *a, float *out, int head_dim, float scale) {
    *a = (kern_attn){.max = -INFINITY, .sum = 0, .scale = scale, .head_dim = head_dim};
    memset(out, 0, (size_t)head_dim * sizeof *out);
}

/* Row i of a span, rows row_bytes apart: an f32 row in place, any other
 * dtype's row dequantized into tmp. */
static inline const float *span_row(const void *base, bs_dtype dtype, size_t row_bytes, int i, int hd, float *tmp) {
    const void *row = (const char *)base + (size_t)i * row_bytes;
    if (dtype == BS_DTYPE_F32) return row;
    kern_dequant(dtype, row, tmp, hd);
    return tmp;
}

static void span(kern_attn *a, float *out, const float *q, const void *k, const void *v, bs_dtype dtype,
                 size_t row_bytes, int n) {
    const kern_isa_ops *isa = kern_isa();
    int hd = a->head_dim;
    float s[ATTN_GROUP], tmp[KERN_ATTN_MAX_HEAD_DIM];
    for (int i0 = 0; i0 < n; i0 += ATTN_GROUP) {
        int cnt = n - i0 < ATTN_GROUP ? n - i0 : ATTN_GROUP;
        float m = a->max;
        for (int i = 0; i < cnt; i++) {
            s[i] = isa->dot(q, span_row(k, dtype, row_bytes, i0 + i, hd, tmp), hd) * a->scale;
            m = fmaxf(m, s[i]);
        }
        if (m > a->max) {
            /* exp(-inf) = 0 before the first group: nothing to rescale. */
            float f = expf(a->max - m);
            if (a->sum > 0) isa->scale(out, f, hd);
            a->sum *= f;
            a->max = m;
        }
        for (int i = 0; i < cnt; i++) {
            float p = expf(s[i] - m);
            a->sum += p;
            isa->axpy(out, p, span_row(v, dtype, row_bytes, i0 + i, hd, tmp), hd);
        }
    }
}

void kern_attn_span(kern_attn *a, float *out, const float *q, const float *k, const float *v, size_t stride, int n) {
    span(a, out, q, k, v, BS_DTYPE_F32, stride * sizeof(float), n);
}

void kern_attn_span_stored(kern_attn *a, float *out, const float *q, const void *k, const void *v, bs_dtype dtype,
                           size_t row_bytes, int n) {
    span(a, out, q, k, v, dtype, row_bytes, n);
}

void kern_attn_finish(const kern_attn *a, float *out) {
    if (a->sum > 0) kern_isa()->scale(out, 1.0f / a->sum, a->head_dim);
}
