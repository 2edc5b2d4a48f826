/* engine/context.c — the KV cache and the forward pass.
 *
 * A batch of T tokens flows through the model as [T][...] row blocks so every
 * weight matrix is read once per batch (kern_matmul with T rows).  K and V
 * are projected straight into the cache rows of their positions; attention
 * then reads the cache for all T tokens, split over (token, head) pairs
 * across the model's thread pool. */
#include "engine/context.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model_impl.h"
#include "kernels/kernels.h"

/* Tokens per forward chunk: large enough that weight reads amortise, small
 * enough that activations stay a few MB for mid-size models. */
enum { MAX_BATCH = 256 };

struct bs_context {
    bs_model *m;
    int n_ctx, n_batch, pos;
    float *key_cache, *value_cache; /* [n_layers][n_ctx][kv_dim] */
    /* Activations for up to n_batch tokens: views into mem. */
    float *x;      /* [n_batch][dim] residual stream */
    float *xb;     /* [n_batch][dim] normed input, then projection output */
    float *q;      /* [n_batch][q_dim] queries */
    float *att;    /* [n_batch][q_dim] attention output, heads concatenated */
    float *hb;     /* [n_batch][ffn_dim] gate, then silu(gate) * up */
    float *hb2;    /* [n_batch][ffn_dim] up */
    float *scores; /* [n_threads][n_ctx] attention weights, one row per thread */
    float *mem;
};

bs_status context_open(bs_model *m, int n_ctx, bs_context **out, bs_error *err) {
    *out = NULL;
    const bs_model_config *cfg = &m->cfg;
    if (n_ctx <= 0 || n_ctx > cfg->max_pos)
        return bs_fail(err, BS_ERANGE, "context size %d is outside 1..%d (the model's max positions)", n_ctx,
                       cfg->max_pos);
    bs_context *c = calloc(1, sizeof *c);
    if (!c) return bs_fail(err, BS_ENOMEM, "out of memory for a context");
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_ctx < MAX_BATCH ? n_ctx : MAX_BATCH;
    size_t q_dim = (size_t)cfg->n_heads * cfg->head_dim, kv_dim = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t cache = (size_t)cfg->n_layers * n_ctx * kv_dim;
    size_t B = (size_t)c->n_batch;
    size_t sizes[] = {cache, cache, B * cfg->dim, B * cfg->dim, B * q_dim, B * q_dim,
                      B * cfg->ffn_dim, B * cfg->ffn_dim,
                      (size_t)bs_threadpool_size(m->pool) * n_ctx};
    float **views[] = {&c->key_cache, &c->value_cache, &c->x, &c->xb, &c->q, &c->att, &c->hb, &c->hb2,
                       &c->scores};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += sizes[i];
    c->mem = malloc(total * sizeof(float));
    if (!c->mem) {
        free(c);
        return bs_fail(err, BS_ENOMEM, "out of memory for a %d-token context (%.1f MB)", n_ctx,
                       (double)total * sizeof(float) / 1e6);
    }
    float *p = c->mem;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *views[i] = p;
        p += sizes[i];
    }
    *out = c;
    return BS_OK;
}

void context_close(bs_context *c) {
    if (!c) return;
    free(c->mem);
    free(c);
}

void context_reset(bs_context *c) { c->pos = 0; }
int context_pos(const bs_context *c) { return c->pos; }
int context_size(const bs_context *c) { return c->n_ctx; }
bs_model *context_model(const bs_context *c) { return c->m; }

/* y[T][rows] = x[T][cols] W^T (+ bias). */
static void linear(bs_threadpool *pool, float *y, const float *x, int T, const bs_matrix *w, const float *bias) {
    kern_matmul(pool, y, x, T, w->data, w->dtype, w->rows, w->cols);
    if (!bias) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < w->rows; i++) y[(size_t)t * w->rows + i] += bias[i];
}

typedef struct attention_job {
    bs_context *c;
    int layer, T, pos0;
} attention_job;

/* Causal grouped-query attention of T new tokens over the cache; query head
 * h reads key/value head h / (n_heads / n_kv_heads). */
static void attention_worker(void *p, int ith, int nth) {
    const attention_job *job = p;
    const bs_context *c = job->c;
    const bs_model_config *cfg = &c->m->cfg;
    int hd = cfg->head_dim, n_heads = cfg->n_heads, group = cfg->n_heads / cfg->n_kv_heads;
    size_t q_dim = (size_t)n_heads * hd, kv_dim = (size_t)cfg->n_kv_heads * hd;
    const float *k_layer = c->key_cache + (size_t)job->layer * c->n_ctx * kv_dim;
    const float *v_layer = c->value_cache + (size_t)job->layer * c->n_ctx * kv_dim;
    float *scores = c->scores + (size_t)ith * c->n_ctx;
    float scale = 1.0f / sqrtf((float)hd);
    long begin, end;
    bs_split_range((long)job->T * n_heads, ith, nth, 1, &begin, &end);
    for (long item = begin; item < end; item++) {
        int t = (int)(item / n_heads), h = (int)(item % n_heads);
        int pos = job->pos0 + t;
        int start = cfg->sliding_window && pos >= cfg->sliding_window ? pos - cfg->sliding_window + 1 : 0;
        int n = pos - start + 1;
        const float *q = c->q + t * q_dim + (size_t)h * hd;
        const float *k = k_layer + (size_t)start * kv_dim + (size_t)(h / group) * hd;
        const float *v = v_layer + (size_t)start * kv_dim + (size_t)(h / group) * hd;
        for (int j = 0; j < n; j++) scores[j] = kern_dot_f32(q, k + j * kv_dim, hd) * scale;
        kern_softmax(scores, n);
        float *out = c->att + t * q_dim + (size_t)h * hd;
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int j = 0; j < n; j++) {
            const float *vj = v + j * kv_dim;
            float a = scores[j];
            for (int d = 0; d < hd; d++) out[d] += a * vj[d];
        }
    }
}

static void add_rows(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* RMSNorm each of n rows of width w in place-or-out. */
static void rmsnorm_rows(float *out, const float *x, const float *weight, int n, int w, float eps) {
    for (int r = 0; r < n; r++) kern_rmsnorm(out + (size_t)r * w, x + (size_t)r * w, weight, w, eps);
}

/* T tokens at positions c->pos.. through every layer.  logits: NULL (no LM
 * head), [T][n_vocab] when all_logits, else [n_vocab] for the last token. */
static void forward(bs_context *c, const int32_t *tokens, int T, float *logits, int all_logits) {
    const bs_model *m = c->m;
    const bs_model_config *cfg = &m->cfg;
    bs_threadpool *pool = m->pool;
    int dim = cfg->dim, hd = cfg->head_dim, pos0 = c->pos;
    size_t q_dim = (size_t)cfg->n_heads * hd, kv_dim = (size_t)cfg->n_kv_heads * hd;

    for (int t = 0; t < T; t++) {
        const char *row = (const char *)m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes;
        kern_dequant(m->tok_embd.dtype, row, c->x + (size_t)t * dim, dim);
    }

    for (int l = 0; l < cfg->n_layers; l++) {
        const bs_layer *L = &m->layers[l];
        float *k = c->key_cache + ((size_t)l * c->n_ctx + pos0) * kv_dim;
        float *v = c->value_cache + ((size_t)l * c->n_ctx + pos0) * kv_dim;

        rmsnorm_rows(c->xb, c->x, L->attn_norm, T, dim, cfg->rms_eps);
        linear(pool, c->q, c->xb, T, &L->wq, L->bq);
        linear(pool, k, c->xb, T, &L->wk, L->bk);
        linear(pool, v, c->xb, T, &L->wv, L->bv);
        if (cfg->qk_norm) {
            rmsnorm_rows(c->q, c->q, L->q_norm, T * cfg->n_heads, hd, cfg->rms_eps);
            rmsnorm_rows(k, k, L->k_norm, T * cfg->n_kv_heads, hd, cfg->rms_eps);
        }
        for (int t = 0; t < T; t++) {
            kern_rope(c->q + t * q_dim, cfg->n_heads, hd, pos0 + t, m->inv_freq, cfg->rope_neox);
            kern_rope(k + t * kv_dim, cfg->n_kv_heads, hd, pos0 + t, m->inv_freq, cfg->rope_neox);
        }
        attention_job job = {c, l, T, pos0};
        bs_threadpool_run(pool, attention_worker, &job);
        linear(pool, c->xb, c->att, T, &L->wo, L->bo);
        add_rows(c->x, c->xb, (size_t)T * dim);

        rmsnorm_rows(c->xb, c->x, L->ffn_norm, T, dim, cfg->rms_eps);
        linear(pool, c->hb, c->xb, T, &L->w_gate, L->b_gate);
        linear(pool, c->hb2, c->xb, T, &L->w_up, L->b_up);
        kern_swiglu(c->hb, c->hb, c->hb2, T * cfg->ffn_dim);
        linear(pool, c->xb, c->hb, T, &L->w_down, L->b_down);
        add_rows(c->x, c->xb, (size_t)T * dim);
    }
    c->pos += T;
    if (!logits) return;

    const float *last = all_logits ? c->x : c->x + (size_t)(T - 1) * dim;
    int rows = all_logits ? T : 1;
    rmsnorm_rows(c->xb, last, m->out_norm, rows, dim, cfg->rms_eps);
    linear(pool, logits, c->xb, rows, &m->lm_head, NULL);
}

bs_status context_eval(bs_context *c, const int32_t *tokens, int n, float *logits, int all_logits,
                       bs_error *err) {
    int n_vocab = c->m->cfg.n_vocab;
    if (n <= 0 || !tokens) return bs_fail(err, BS_EINVAL, "context_eval: no tokens");
    if (n > c->n_ctx - c->pos)
        return bs_fail(err, BS_ERANGE, "context full: %d tokens at position %d exceed the context size %d", n,
                       c->pos, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return bs_fail(err, BS_EINVAL, "token id %d at index %d is outside the vocabulary (0..%d)",
                           tokens[i], i, n_vocab - 1);
    for (int done = 0; done < n;) {
        int T = n - done < c->n_batch ? n - done : c->n_batch;
        int last_chunk = done + T == n;
        float *out = !logits ? NULL : all_logits ? logits + (size_t)done * n_vocab : last_chunk ? logits : NULL;
        forward(c, tokens + done, T, out, all_logits);
        done += T;
    }
    return BS_OK;
}
