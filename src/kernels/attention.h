/* kernels/attention.h — attention of one query head over keys and values
 * handed over a span at a time (a paged KV cache gives one block's positions
 * per span), with an online softmax: a running maximum and sum rescale the
 * output accumulated so far, so no score row is ever stored and the work per
 * query is one pass over its keys and values.
 *
 *   kern_attn a;
 *   kern_attn_init(&a, out, head_dim, 1 / sqrtf(head_dim));
 *   for each span, in position order: kern_attn_span(&a, out, q, k, v, stride, n);
 *   kern_attn_finish(&a, out);   // out = softmax(q·K^T * scale) V
 */
#ifndef BASALT_KERNELS_ATTENTION_H
#define BASALT_KERNELS_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"

typedef struct kern_attn {
    float max;   /* largest scaled score so far (-inf before the first span) */
    float sum;   /* sum of exp(score - max) so far */
    float scale; /* applied to every q·k */
    int head_dim;
} kern_attn;

/* Start a query: out (head_dim floats) is the accumulator, zeroed here. */
void kern_attn_init(kern_attn *a, float *out, int head_dim, float scale);

/* n positions whose keys and values start at k and v, stride floats apart. */
void kern_attn_span(kern_attn *a, float *out, const float *q, const float *k, const float *v, size_t stride, int n);

/* The same over a cache stored in dtype (F16 or Q8_0), position rows
 * row_bytes apart: each key and value row is dequantized exactly
 * (kern_dequant) before the same f32 operations, so the result is
 * bit-identical to kern_attn_span over the dequantized rows.  head_dim is at
 * most KERN_ATTN_MAX_HEAD_DIM and a whole number of dtype's blocks. */
enum { KERN_ATTN_MAX_HEAD_DIM = 512 };
void kern_attn_span_stored(kern_attn *a, float *out, const float *q, const void *k, const void *v, bs_dtype dtype,
                           size_t row_bytes, int n);

/* Divide by the softmax sum; out then holds the attention output.  A query
 * that saw no position gets zeros. */
void kern_attn_finish(const kern_attn *a, float *out);

#endif
