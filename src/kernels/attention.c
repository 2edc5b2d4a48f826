/* kernels/attention.c — online-softmax attention over spans of a KV cache
 * (see attention.h), on the ISA's dot, axpy and scale. */
#include "kernels/attention.h"

#include <math.h>
#include <string.h>

#include "kernels/isa.h"

/* Scores computed before the running output is touched: the maximum of a
 * group is known before any of its values is added, so the output is
 * rescaled at most once per group. */
enum { ATTN_GROUP = 64 };

void kern_attn_init(kern_attn *a, float *out, int head_dim, float scale) {
    *a = (kern_attn){.max = -INFINITY, .sum = 0, .scale = scale, .head_dim = head_dim};
    memset(out, 0, (size_t)head_dim * sizeof *out);
}

void kern_attn_span(kern_attn *a, float *out, const float *q, const float *k, const float *v, size_t stride, int n) {
    const kern_isa_ops *isa = kern_isa();
    int hd = a->head_dim;
    float s[ATTN_GROUP];
    for (int i0 = 0; i0 < n; i0 += ATTN_GROUP) {
        int cnt = n - i0 < ATTN_GROUP ? n - i0 : ATTN_GROUP;
        float m = a->max;
        for (int i = 0; i < cnt; i++) {
            s[i] = isa->dot(q, k + (size_t)(i0 + i) * stride, hd) * a->scale;
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
            isa->axpy(out, p, v + (size_t)(i0 + i) * stride, hd);
        }
    }
}

void kern_attn_finish(const kern_attn *a, float *out) {
    if (a->sum > 0) kern_isa()->scale(out, 1.0f / a->sum, a->head_dim);
}
