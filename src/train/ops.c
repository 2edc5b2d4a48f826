/* train/ops.c — forward/backward pairs of the decoder's ops (see ops.h).
 * Frozen float weights go through kern_matmul (kernels/matmul.c); the
 * other GEMMs go to OpenBLAS (cblas_sgemm); attention splits its work over a
 * thread pool in units computed alike on any thread; everything else is
 * plain loops, single-threaded, so results depend only on the inputs and the
 * BLAS thread count (kern_matmul's not even on that). */
#include "train/ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/kernels.h"

/* ---- embedding ----------------------------------------------------------- */

/* out[T][C] = E[tok[t]][:] */
void embedding_forward(float *out, const int32_t *tok, int T, const bs_weight *E) {
    for (int t = 0; t < T; t++)
        kern_dequant_rows(E->dtype, E->data, E->cols, tok[t], 1, out + (size_t)t * E->cols);
}

/* dE[V][C] += dout[T][C] scattered by tok[t] */
void embedding_backward(float *dE, const float *dout, const int32_t *tok, int T, int C) {
    for (int t = 0; t < T; t++) {
        float *row = dE + (size_t)tok[t] * C;
        const float *d = dout + (size_t)t * C;
        for (int i = 0; i < C; i++) row[i] += d[i];
    }
}

/* ---- RMSNorm ------------------------------------------------------------- */

/* x[N][C], w[C] -> out[N][C], rstd[N] */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C, float eps) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        rstd[n] = r;
        float *o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) o[i] = xr[i] * r * w[i];
    }
}

/* y_i = x_i r w_i, r = (mean x^2 + eps)^-1/2:
 * dx_i = r w_i dy_i - r^3/C x_i sum_j dy_j w_j x_j;  dw_i = sum_n dy_i x_i r */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                      const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
        float r = rstd[n];
        double dot = 0;
        for (int i = 0; i < C; i++) dot += (double)dy[i] * w[i] * xr[i];
        float c = (float)(dot * r * r * r / C);
        float *dxr = dx + (size_t)n * C;
        for (int i = 0; i < C; i++) dxr[i] += r * w[i] * dy[i] - c * xr[i];
        if (dw)
            for (int i = 0; i < C; i++) dw[i] += dy[i] * xr[i] * r;
    }
}

/* ---- linear -------------------------------------------------------------- */

/* Rows [r0, r0+n) of a non-f32 W dequantized into scratch. */
static const float *dequant_rows(const bs_weight *W, int r0, int n, float *scratch) {
    kern_dequant_rows(W->dtype, W->data, W->cols, r0, n, scratch);
    return scratch;
}

/* inp[T][C] · W[OC][C]^T + bias[OC] -> out[T][OC] */
void matmul_forward(float *out, const float *inp, const bs_weight *W, const float *bias, int T, bs_threadpool *pool,
                    float *scratch) {
    int OC = W->rows, C = W->cols;
    if (bs_dtype_block_elems(W->dtype) == 1) { /* F32, F16, BF16: see ops.h */
        kern_matmul(pool, out, inp, T, W->data, W->dtype, OC, C);
    } else {
        for (int r0 = 0; r0 < OC; r0 += MATMUL_CHUNK_ROWS) {
            int n = OC - r0 < MATMUL_CHUNK_ROWS ? OC - r0 : MATMUL_CHUNK_ROWS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, C, 1.0f, inp, C,
                        dequant_rows(W, r0, n, scratch), C, 0.0f, out + r0, OC);
        }
    }
    if (!bias) return;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) out[(size_t)t * OC + o] += bias[o];
}

/* dout[T][OC] -> dinp[T][C] += dout·W, dW[OC][C] += dout^T·inp, dbias[OC] += colsum(dout) */
void matmul_backward(float *dinp, float *dW, float *dbias, const float *dout, const float *inp, const bs_weight *W,
                     const bs_weight *WT, int T, bs_threadpool *pool, float *scratch) {
    int OC = W->rows, C = W->cols;
    if (dinp && WT) { /* dout·W = dout·(W^T)^T: the forward's kernel over the transposed copy */
        kern_matmul(pool, scratch, dout, T, WT->data, WT->dtype, C, OC);
        for (size_t i = 0; i < (size_t)T * C; i++) dinp[i] += scratch[i];
    } else if (dinp && W->dtype == BS_DTYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, OC, 1.0f, dout, OC, W->data, C, 1.0f, dinp, C);
    } else if (dinp) {
        for (int r0 = 0; r0 < OC; r0 += MATMUL_CHUNK_ROWS) {
            int n = OC - r0 < MATMUL_CHUNK_ROWS ? OC - r0 : MATMUL_CHUNK_ROWS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, n, 1.0f, dout + r0, OC,
                        dequant_rows(W, r0, n, scratch), C, 1.0f, dinp, C);
        }
    }
    if (dW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, T, 1.0f, dout, OC, inp, C, 1.0f, dW, C);
    if (dbias)
        for (int t = 0; t < T; t++)
            for (int o = 0; o < OC; o++) dbias[o] += dout[(size_t)t * OC + o];
}

/* ---- dropout ------------------------------------------------------------- */

/* Keep element i of the mask `key`: a splitmix64 hash of (key, i) >= p. */
static int dropout_keep(uint64_t key, int64_t i, float p) {
    uint64_t z = key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((z >> 40) * 0x1.0p-24) >= p;
}

/* x[n] -> out[n] */
void dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t key) {
    float scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++) out[i] = dropout_keep(key, i, p) ? x[i] * scale : 0.0f;
}

/* dout[n] -> dx[n] += */
void dropout_backward(float *dx, const float *dout, int64_t n, float p, uint64_t key) {
    float scale = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++)
        if (dropout_keep(key, i, p)) dx[i] += dout[i] * scale;
}

/* ---- LoRA ---------------------------------------------------------------- */

/* xd[T][C], A[r][C], B[OC][r] -> u[T][r] = xd·A^T, y[T][OC] += s·u·B^T */
void lora_forward(float *y, float *u, const float *xd, const float *A, const float *B, int T, int C, int OC,
                  int r, float s) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, r, C, 1.0f, xd, C, A, C, 0.0f, u, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, r, s, u, r, B, r, 1.0f, y, OC);
}

/* dy[T][OC] -> du[T][r] = s·dy·B, dB[OC][r] += s·dy^T·u, dA[r][C] += du^T·xd, dxd[T][C] += du·A */
void lora_backward(float *dxd, float *dA, float *dB, float *du, const float *dy, const float *xd, const float *u,
                   const float *A, const float *B, int T, int C, int OC, int r, float s) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, r, OC, s, dy, OC, B, r, 0.0f, du, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, r, T, s, dy, OC, u, r, 1.0f, dB, r);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, C, T, 1.0f, du, r, xd, C, 1.0f, dA, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, r, 1.0f, du, r, A, C, 1.0f, dxd, C);
}

/* ---- RoPE ---------------------------------------------------------------- */

/* Rotate every pair of x[T][n_heads][hd] by sign * pos[t] * inv_freq[i]. */
static void rope_rotate(float *x, const int *pos, int T, int n_heads, int hd, const float *cos_t,
                        const float *sin_t, int neox, float sign) {
    int half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *c = cos_t + (size_t)pos[t] * half, *s = sin_t + (size_t)pos[t] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < half; i++) {
                int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                float a = v[i0], b = v[i1], sn = sign * s[i];
                v[i0] = a * c[i] - b * sn;
                v[i1] = a * sn + b * c[i];
            }
        }
    }
}

/* x[T][n_heads][hd] in place */
void rope_forward(float *x, const int *pos, int T, int n_heads, int hd, const float *cos_t, const float *sin_t,
                  int neox) {
    rope_rotate(x, pos, T, n_heads, hd, cos_t, sin_t, neox, 1.0f);
}

/* dx[T][n_heads][hd] in place: R(θ)^T = R(-θ) */
void rope_backward(float *dx, const int *pos, int T, int n_heads, int hd, const float *cos_t, const float *sin_t,
                   int neox) {
    rope_rotate(dx, pos, T, n_heads, hd, cos_t, sin_t, neox, -1.0f);
}

/* ---- attention ----------------------------------------------------------- */

/* First key position row i of a sequence may attend to. */
static int window_start(int i, int window) { return window && i >= window ? i - window + 1 : 0; }

typedef struct attn_job {
    float *out, *lse, *dq, *dk, *dv;                    /* what the pass writes */
    const float *saved_out, *saved_lse, *dout, *q, *k, *v; /* what it reads */
    const attn_shape *s;
} attn_job;

/* y[n] += a x[n], in blocks of 8 the compiler vectorizes, for AVX-512 where
 * the CPU has it (chosen once at load time). */
__attribute__((target_clones("avx512f", "default"))) static void axpy(float *restrict y, float a,
                                                                    const float *restrict x, int n) {
    int d = 0;
    for (; d + 8 <= n; d += 8)
        for (int e = 0; e < 8; e++) y[d + e] += a * x[d + e];
    for (; d < n; d++) y[d] += a * x[d];
}

/* Run fn on the shape's first n_threads pool threads, or on this one. */
static void attn_run(const attn_shape *s, bs_parallel_fn fn, attn_job *job) {
    if (s->pool && s->n_threads > 1)
        bs_threadpool_run(s->pool, fn, job);
    else
        fn(job, 0, 1);
}

/* Threads of the run that take part (the pool may be larger). */
static int attn_threads(const attn_shape *s, int nth) { return s->n_threads < nth ? s->n_threads : nth; }

/* Forward of row t (position i of the sequence starting at row0), head h:
 * the inference engine's online softmax (kernels/attention.h) over the
 * positions it may see, which are contiguous rows. */
static void attn_forward_row(const attn_job *jb, int row0, int i, int h) {
    const attn_shape *s = jb->s;
    int H = s->H, KV = s->KV, hd = s->hd, j0 = window_start(i, s->window);
    size_t t = (size_t)row0 + i, kv = (((size_t)row0 + j0) * KV + h / (H / KV)) * hd;
    float *o = jb->out + (t * H + h) * hd;
    kern_attn a;
    kern_attn_init(&a, o, hd, 1.0f / sqrtf((float)hd));
    kern_attn_span(&a, o, jb->q + (t * H + h) * hd, jb->k + kv, jb->v + kv, (size_t)KV * hd, i - j0 + 1);
    kern_attn_finish(&a, o);
    jb->lse[t * H + h] = a.max + logf(a.sum);
}

/* Thread ith takes every nth (row, head) unit: causal rows grow in cost, so
 * interleaving balances them. */
static void attn_forward_part(void *ctx, int ith, int nth) {
    const attn_job *jb = ctx;
    const attn_shape *s = jb->s;
    nth = attn_threads(s, nth);
    long u = 0;
    for (int sq = 0; sq < s->n_seq; sq++) {
        int row0 = s->seq_start[sq], n = s->seq_start[sq + 1] - row0;
        for (int i = 0; i < n; i++)
            for (int h = 0; h < s->H; h++, u++)
                if (u % nth == ith) attn_forward_row(jb, row0, i, h);
    }
}

/* q[T][H][hd], k,v[T][KV][hd] -> out[T][H][hd], lse[T][H] */
void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, const attn_shape *s) {
    attn_job jb = {.out = out, .lse = lse, .q = q, .k = k, .v = v, .s = s};
    attn_run(s, attn_forward_part, &jb);
}

/* Backward of sequence sq for the query heads of kv head g (they alone
 * write its dk, dv rows), in a fixed order:
 * p_j = exp(s_j - lse), D = dout·out:
 * ds_j = p_j (dout·v_j - D);  dq += scale Σ ds_j k_j;  dk_j += scale ds_j q;  dv_j += p_j dout */
static void attn_backward_group(const attn_job *jb, int sq, int g) {
    const attn_shape *s = jb->s;
    int H = s->H, KV = s->KV, hd = s->hd, group = H / KV;
    float scale = 1.0f / sqrtf((float)hd);
    const float *q = jb->q, *k = jb->k, *v = jb->v;
    float *dk = jb->dk, *dv = jb->dv;
    int row0 = s->seq_start[sq], n = s->seq_start[sq + 1] - row0;
    for (int i = 0; i < n; i++) {
        size_t t = (size_t)row0 + i;
        for (int h = g * group; h < (g + 1) * group; h++) {
            size_t qo = (t * H + h) * hd;
            const float *qh = q + qo, *gr = jb->dout + qo;
            float *dqh = jb->dq + qo;
            float D = kern_dot_f32(gr, jb->saved_out + qo, hd), L = jb->saved_lse[t * H + h];
            for (int j = window_start(i, s->window); j <= i; j++) {
                size_t kv = (((size_t)row0 + j) * KV + g) * hd;
                float p = expf(kern_dot_f32(qh, k + kv, hd) * scale - L);
                float ds = p * (kern_dot_f32(gr, v + kv, hd) - D) * scale;
                axpy(dqh, ds, k + kv, hd);
                axpy(dk + kv, ds, qh, hd);
                axpy(dv + kv, p, gr, hd);
            }
        }
    }
}

static void attn_backward_part(void *ctx, int ith, int nth) {
    const attn_job *jb = ctx;
    const attn_shape *s = jb->s;
    nth = attn_threads(s, nth);
    long u = 0;
    for (int sq = 0; sq < s->n_seq; sq++)
        for (int g = 0; g < s->KV; g++, u++)
            if (u % nth == ith) attn_backward_group(jb, sq, g);
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                        const float *q, const float *k, const float *v, const attn_shape *s) {
    attn_job jb = {.dq = dq, .dk = dk, .dv = dv, .saved_out = out, .saved_lse = lse, .dout = dout,
                   .q = q, .k = k, .v = v, .s = s};
    attn_run(s, attn_backward_part, &jb);
}

/* ---- SwiGLU -------------------------------------------------------------- */

/* g[n], u[n] -> h[n] = g σ(g) u */
void swiglu_forward(float *h, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* dh[n] -> dg += dh u σ(g)(1 + g(1 - σ(g))), du += dh g σ(g) */
void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        du[i] += dh[i] * g[i] * sg;
    }
}

/* ---- cross-entropy ------------------------------------------------------- */

/* logits[N][V] -> Σ w·(lse - logit[target]); logits <- dscale·w·(softmax - onehot).
 * One exp per logit: e_i = exp(z_i - max) is kept in the row and the
 * gradient is c·e_i/Σe (= c·exp(z_i - lse)); sums in double. */
double crossentropy_forward_backward(float *logits, const int32_t *target, const float *w, int N, int V,
                                     float dscale) {
    double loss = 0;
    for (int n = 0; n < N; n++) {
        float *z = logits + (size_t)n * V;
        if (w[n] == 0) {
            if (dscale != 0) memset(z, 0, (size_t)V * sizeof *z);
            continue;
        }
        float mx = z[0];
        for (int i = 1; i < V; i++)
            if (z[i] > mx) mx = z[i];
        float zt = z[target[n]];
        double sum = 0;
        if (dscale == 0) {
            for (int i = 0; i < V; i++) sum += expf(z[i] - mx);
        } else {
            for (int i = 0; i < V; i++) {
                z[i] = expf(z[i] - mx);
                sum += z[i];
            }
        }
        loss += w[n] * (mx + log(sum) - zt);
        if (dscale == 0) continue;
        float c = (float)(dscale * w[n] / sum);
        for (int i = 0; i < V; i++) z[i] *= c;
        z[target[n]] -= dscale * w[n];
    }
    return loss;
}
