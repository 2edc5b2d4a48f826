/* train/ops.h — the training ops of the decoder: each forward function next
 * to its backward, in data-flow order.  Activations are f32 row blocks
 * [T][C] (T rows = the tokens of every sequence of a micro-batch, packed).
 *
 * Conventions (as llm.c): a backward function ACCUMULATES (+=) into every
 * gradient it is given (input and parameter gradients alike), so residual
 * branches and shared weights need no extra adds; a NULL gradient pointer
 * means "not needed" (frozen parameter or no input gradient).  RoPE is the
 * exception: it rotates in place, forward and back. */
#ifndef BASALT_TRAIN_OPS_H
#define BASALT_TRAIN_OPS_H

#include <stdint.h>

#include "base/threadpool.h"
#include "engine/model.h"

/* Rows of a non-f32 weight dequantized at a time by matmul_*: scratch for a
 * weight of C columns holds MATMUL_CHUNK_ROWS * C floats. */
enum { MATMUL_CHUNK_ROWS = 256 };

/* out[T][C] = E[tok[t]]; E [V][C] in any dtype (rows whole blocks). */
void embedding_forward(float *out, const int32_t *tok, int T, const bs_weight *E);
/* dE[V][C] += dout[t] at row tok[t]. */
void embedding_backward(float *dE, const float *dout, const int32_t *tok, int T, int C);

/* out[N][C] = x / sqrt(mean(x^2) + eps) * w; rstd[N] saved.  out != x. */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps);
/* dx[N][C] += dL/dx, dw[C] += dL/dw (NULL: frozen). */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int N, int C);

/* out[T][OC] = inp[T][C] W^T + bias; W [OC][C] in any dtype: F32, F16 and
 * BF16 go to kern_matmul on pool (NULL: this thread), widened to f32 exactly
 * and summed in an order fixed by C alone, whatever T and the thread count;
 * block-quantized weights are dequantized MATMUL_CHUNK_ROWS rows at a time
 * into scratch for cblas_sgemm.  bias [OC] or NULL. */
void matmul_forward(float *out, const float *inp, const bs_weight *W, const float *bias, int T, bs_threadpool *pool,
                    float *scratch);
/* dinp[T][C] += dout W; dW[OC][C] += dout^T inp (W must then be f32);
 * dbias[OC] += sum_t dout[t].  WT, when not NULL, is W transposed ([C][OC],
 * a float dtype): dinp then comes from kern_matmul over it (scratch must
 * hold T*C floats); else from cblas_sgemm over W (dequantized in chunks). */
void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const bs_weight *W,
                     const bs_weight *WT, int T, bs_threadpool *pool, float *scratch);

/* Inverted dropout: out[n] = x * keep / (1 - p), keep drawn from a counter
 * hash of (key, index) so the backward (and a recomputed forward) redraws
 * the same mask without storing it. */
void dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t key);
/* dx[n] += dout * keep / (1 - p). */
void dropout_backward(float *dx, const float *dout, int64_t n, float p, uint64_t key);

/* LoRA branch: u[T][r] = xd A^T (saved), y[T][OC] += s * u B^T.
 * xd [T][C] (the dropped-out input), A [r][C], B [OC][r]. */
void lora_forward(float *y, float *u, const float *xd, const float *A, const float *B, int T, int C, int OC,
                  int r, float s);
/* du[T][r] = s * dy B (scratch, overwritten); dB += s * dy^T u;
 * dA += du^T xd; dxd[T][C] += du A. */
void lora_backward(float *dxd, float *dA, float *dB, float *du, const float *dy, const float *xd, const float *u,
                   const float *A, const float *B, int T, int C, int OC, int r, float s);

/* Rotary embedding in place on x[T][n_heads][hd] at pos[t]; cos/sin tables
 * [max_pos][hd/2].  neox != 0 pairs i with i + hd/2, else 2i with 2i+1. */
void rope_forward(float *x, const int *pos, int T, int n_heads, int hd, const float *cos_t, const float *sin_t,
                  int neox);
/* dx in place: the inverse rotation (the transpose of the forward's). */
void rope_backward(float *dx, const int *pos, int T, int n_heads, int hd, const float *cos_t, const float *sin_t,
                   int neox);

/* Packed causal grouped-query attention: sequence s owns rows
 * [seq_start[s], seq_start[s+1]); query head h reads kv head h/(H/KV);
 * window > 0 attends only to the last `window` positions.  With a pool the
 * work is split over its first n_threads threads (NULL: the caller's thread
 * alone); each (row, head) of the forward and (sequence, kv head) of the
 * backward is computed the same way whichever thread runs it, so results do
 * not depend on the thread count. */
typedef struct attn_shape {
    const int *seq_start; /* [n_seq + 1] */
    int n_seq, H, KV, hd, window;
    bs_threadpool *pool;
    int n_threads;
} attn_shape;

/* out[T][H][hd] = softmax(q k^T / sqrt(hd)) v; lse[T][H] (log-sum-exp of
 * the scaled scores) saved so the backward recomputes the probabilities.
 * q [T][H][hd], k, v [T][KV][hd]. */
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const attn_shape *s);
/* dq [T][H][hd], dk, dv [T][KV][hd] += gradients. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, const attn_shape *s);

/* h[n] = silu(g) * u. */
void swiglu_forward(float *h, const float *g, const float *u, int64_t n);
/* dg[n], du[n] += gradients. */
void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);

/* Weighted cross-entropy of logits[N][V] against target[N] (rows with
 * weight 0 are skipped; their target may be -1).  Returns
 * sum_t w[t] * (logsumexp(logits[t]) - logits[t][target[t]]) in double.
 * With dscale != 0 the logits are replaced by their gradient
 * dscale * w[t] * (softmax(logits[t]) - onehot(target[t])). */
double crossentropy_forward_backward(float *logits, const int32_t *target, const float *w, int N, int V,
                                     float dscale);

#endif
