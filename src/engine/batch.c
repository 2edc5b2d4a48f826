/* engine/batch.c — the forward pass.
 *
 * T rows (the new tokens of every item, concatenated) flow through the model
 * as [T][...] row blocks so every weight matrix is read once per step
 * (kern_matmul with T rows).  Each row carries its item and position: K and
 * V are projected for all rows, then scattered into the rows' cache blocks,
 * and attention reads each row's own sequence block by block, split over
 * (row, head) pairs across the model's thread pool.  Every per-row
 * computation depends only on that row and its sequence's cache, so a
 * sequence's logits do not depend on what it is batched with. */
#include "engine/batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model_impl.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"

struct bs_batch {
    bs_model *m;
    bs_kv_pool *kv;
    int max_tokens, max_items, max_pos;
    /* Activations for up to max_tokens rows: views into mem. */
    float *x;      /* [T][dim] residual stream */
    float *xb;     /* [T][dim] normed input, then projection output */
    float *q;      /* [T][q_dim] queries */
    float *k, *v;  /* [T][kv_dim] new keys / values before they go to their blocks */
    float *att;    /* [T][q_dim] attention output, heads concatenated */
    float *hb;     /* [T][ffn_dim] gate, then silu(gate) * up */
    float *hb2;    /* [T][ffn_dim] up */
    float *logits; /* [max_items][n_vocab] LM head output of BATCH_OUT_LOGITS_LAST rows */
    float *mem;
    int *row_item, *row_pos; /* [T] */
    /* LoRA (items with an adapter): their rows gathered per adapter, A x and
     * B (A x); a separate allocation so a model's activations above stay
     * sized to the model alone. */
    float *lora_x;   /* [T][widest projection input] */
    float *lora_u;   /* [T][BS_ADAPTER_MAX_RANK] */
    float *lora_y;   /* [T][widest projection output] */
    int *item_row0;  /* [max_items] first row of each item */
};

bs_status batch_open(bs_model *m, bs_kv_pool *kv, int max_tokens, int max_items, int max_pos, bs_batch **out,
                     bs_error *err) {
    *out = NULL;
    const bs_model_config *cfg = &m->cfg;
    if (max_tokens <= 0 || max_items <= 0 || max_pos <= 0)
        return bs_fail(err, BS_EINVAL, "batch: bad sizes (%d tokens, %d items, %d positions)", max_tokens,
                       max_items, max_pos);
    /* Attention reads one head's span of a position's row: in a block type
     * every head must start a block. */
    bs_dtype kv_dtype = kv_pool_dtype(kv);
    if (bs_dtype_row_bytes(kv_dtype, cfg->head_dim) == 0)
        return bs_fail(err, BS_EINVAL, "batch: a %s KV cache needs head_dim (%d) a multiple of %d",
                       bs_dtype_name(kv_dtype), cfg->head_dim, bs_dtype_block_elems(kv_dtype));
    bs_batch *b = calloc(1, sizeof *b);
    if (!b) return bs_fail(err, BS_ENOMEM, "batch: out of memory");
    b->m = m;
    b->kv = kv;
    b->max_tokens = max_tokens;
    b->max_items = max_items;
    b->max_pos = max_pos;
    size_t q_dim = (size_t)cfg->n_heads * cfg->head_dim, kv_dim = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t T = (size_t)max_tokens;
    size_t sizes[] = {T * cfg->dim, T * cfg->dim, T * q_dim, T * kv_dim, T * kv_dim, T * q_dim,
                      T * cfg->ffn_dim, T * cfg->ffn_dim, (size_t)max_items * cfg->n_vocab};
    float **views[] = {&b->x, &b->xb, &b->q, &b->k, &b->v, &b->att, &b->hb, &b->hb2, &b->logits};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += sizes[i];
    b->mem = malloc(total * sizeof(float));
    b->row_item = malloc(T * sizeof *b->row_item);
    b->row_pos = malloc(T * sizeof *b->row_pos);
    size_t wide = (size_t)cfg->dim;
    if (q_dim > wide) wide = q_dim;
    if ((size_t)cfg->ffn_dim > wide) wide = (size_t)cfg->ffn_dim;
    b->lora_x = malloc(T * (2 * wide + BS_ADAPTER_MAX_RANK) * sizeof(float));
    b->lora_u = b->lora_x ? b->lora_x + T * wide : NULL;
    b->lora_y = b->lora_x ? b->lora_u + T * BS_ADAPTER_MAX_RANK : NULL;
    b->item_row0 = malloc((size_t)max_items * sizeof *b->item_row0);
    if (!b->mem || !b->row_item || !b->row_pos || !b->lora_x || !b->item_row0) {
        batch_close(b);
        return bs_fail(err, BS_ENOMEM, "batch: out of memory for %d rows (%.1f MB)", max_tokens,
                       (double)total * sizeof(float) / 1e6);
    }
    float *p = b->mem;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *views[i] = p;
        p += sizes[i];
    }
    *out = b;
    return BS_OK;
}

void batch_close(bs_batch *b) {
    if (!b) return;
    free(b->mem);
    free(b->row_item);
    free(b->row_pos);
    free(b->lora_x);
    free(b->item_row0);
    free(b);
}

int batch_max_tokens(const bs_batch *b) { return b->max_tokens; }

/* One projection of a shared input: the linear, its weight and bias, and
 * where its output [T][w->rows] goes. */
typedef struct {
    bs_lin lin;
    const bs_matrix *w;
    const float *bias;
    float *y;
} projection;

/* scale * B (A x) of each adapter added to the rows of the items using it.
 * An adapter's rows are gathered so its A and B are read once per step;
 * kern_matmul rows do not depend on their neighbours, so an item's output is
 * the same whatever it is batched with. */
static void add_lora(bs_batch *b, const bs_batch_item *items, int n_items, int layer, const projection *p,
                     const float *x) {
    bs_threadpool *pool = b->m->pool;
    int in = p->w->cols, out = p->w->rows;
    for (int i = 0; i < n_items; i++) {
        const bs_adapter *ad = items[i].adapter;
        const float *A, *B;
        int seen = 0;
        for (int k = 0; k < i && !seen; k++) seen = items[k].adapter == ad;
        if (!ad || seen || !adapter_lora(ad, layer, p->lin, &A, &B)) continue;
        int n = 0, r = adapter_config(ad)->rank;
        for (int k = i; k < n_items; k++) {
            if (items[k].adapter != ad) continue;
            memcpy(b->lora_x + (size_t)n * in, x + (size_t)b->item_row0[k] * in,
                   (size_t)items[k].n * in * sizeof *x);
            n += items[k].n;
        }
        kern_matmul(pool, b->lora_u, b->lora_x, n, A, BS_DTYPE_F32, r, in);
        kern_matmul(pool, b->lora_y, b->lora_u, n, B, BS_DTYPE_F32, out, r);
        float scale = adapter_scale(ad);
        for (int k = i, g = 0; k < n_items; k++) {
            if (items[k].adapter != ad) continue;
            float *yk = p->y + (size_t)b->item_row0[k] * out;
            const float *d = b->lora_y + (size_t)g * out;
            for (size_t e = 0; e < (size_t)items[k].n * out; e++) yk[e] += scale * d[e];
            g += items[k].n;
        }
    }
}

/* y = x[T][cols] W^T + bias, then the adapters, for n projections of the
 * same x: the base matmuls share one kern_matmul_group (one pool pass, the
 * activations quantized once). */
static void project(bs_batch *b, const bs_batch_item *items, int n_items, int layer, const float *x, int T,
                    const projection *p, int n) {
    kern_matmul_out outs[3] = {{0}};
    for (int i = 0; i < n; i++) outs[i] = (kern_matmul_out){p[i].y, p[i].w->data, p[i].w->dtype, p[i].w->rows};
    kern_matmul_group(b->m->pool, x, T, p[0].w->cols, outs, n);
    for (int i = 0; i < n; i++) {
        int rows = p[i].w->rows;
        if (p[i].bias)
            for (int t = 0; t < T; t++)
                for (int r = 0; r < rows; r++) p[i].y[(size_t)t * rows + r] += p[i].bias[r];
        add_lora(b, items, n_items, layer, &p[i], x);
    }
}

static void add_rows(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* RMSNorm each of n rows of width w, out may alias x. */
static void rmsnorm_rows(float *out, const float *x, const float *weight, int n, int w, float eps) {
    for (int r = 0; r < n; r++) kern_rmsnorm(out + (size_t)r * w, x + (size_t)r * w, weight, w, eps);
}

typedef struct attention_job {
    bs_batch *b;
    const bs_batch_item *items;
    int layer, T;
} attention_job;

/* Causal grouped-query attention of each row over its own sequence's blocks
 * (kern_attn, one span per block); query head h reads key/value head
 * h / (n_heads / n_kv_heads). */
static void attention_worker(void *p, int ith, int nth) {
    const attention_job *job = p;
    bs_batch *b = job->b;
    const bs_model_config *cfg = &b->m->cfg;
    int hd = cfg->head_dim, n_heads = cfg->n_heads, group = cfg->n_heads / cfg->n_kv_heads;
    int bsz = kv_pool_block_size(b->kv);
    size_t q_dim = (size_t)n_heads * hd, kv_dim = (size_t)cfg->n_kv_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    bs_dtype dtype = kv_pool_dtype(b->kv);
    size_t row_bytes = bs_dtype_row_bytes(dtype, (int64_t)kv_dim);
    long begin, end;
    bs_split_range((long)job->T * n_heads, ith, nth, 1, &begin, &end);
    for (long item = begin; item < end; item++) {
        int t = (int)(item / n_heads), h = (int)(item % n_heads);
        const bs_kv_seq *seq = job->items[b->row_item[t]].seq;
        int pos = b->row_pos[t];
        int start = cfg->sliding_window && pos >= cfg->sliding_window ? pos - cfg->sliding_window + 1 : 0;
        size_t head_off = bs_dtype_row_bytes(dtype, (int64_t)(h / group) * hd); /* whole blocks: batch_open */
        const float *q = b->q + t * q_dim + (size_t)h * hd;
        float *out = b->att + t * q_dim + (size_t)h * hd;
        kern_attn a;
        kern_attn_init(&a, out, hd, scale);
        for (int j = start; j <= pos;) {
            int off = j % bsz, cnt = bsz - off < pos + 1 - j ? bsz - off : pos + 1 - j;
            int block = seq->blocks[j / bsz];
            size_t at = off * row_bytes + head_off;
            kern_attn_span_stored(&a, out, q, (const char *)kv_block_k(b->kv, block, job->layer) + at,
                                  (const char *)kv_block_v(b->kv, block, job->layer) + at, dtype, row_bytes, cnt);
            j += cnt;
        }
        kern_attn_finish(&a, out);
    }
}

/* Store the T new K/V rows into their sequences' blocks, in the pool's
 * dtype (kern_quantize: f16 rounded to nearest even; q8_0 blocks scaled by
 * their largest magnitude / 127 and rounded, as llama.cpp stores them). */
static void store_kv(bs_batch *b, const bs_batch_item *items, int layer, int T) {
    const bs_model_config *cfg = &b->m->cfg;
    int bsz = kv_pool_block_size(b->kv);
    bs_dtype dtype = kv_pool_dtype(b->kv);
    size_t kv_dim = (size_t)cfg->n_kv_heads * cfg->head_dim, row = bs_dtype_row_bytes(dtype, (int64_t)kv_dim);
    for (int t = 0; t < T; t++) {
        int block = items[b->row_item[t]].seq->blocks[b->row_pos[t] / bsz], off = b->row_pos[t] % bsz;
        kern_quantize(dtype, b->k + t * kv_dim, (char *)kv_block_k(b->kv, block, layer) + off * row, (int64_t)kv_dim);
        kern_quantize(dtype, b->v + t * kv_dim, (char *)kv_block_v(b->kv, block, layer) + off * row, (int64_t)kv_dim);
    }
}

/* The final norm and LM head for the rows each item asks for.  Per-item
 * outputs come first; then the last rows of every LOGITS_LAST item are
 * gathered into xb so the LM head weights are read once for all of them. */
static void outputs(bs_batch *b, const bs_batch_item *items, int n_items) {
    const bs_model *m = b->m;
    const bs_model_config *cfg = &m->cfg;
    int dim = cfg->dim, n_vocab = cfg->n_vocab;
    int row0 = 0;
    for (int i = 0; i < n_items; i++) {
        const bs_batch_item *it = &items[i];
        const float *x = b->x + (size_t)row0 * dim, *last = x + (size_t)(it->n - 1) * dim;
        float *xb = b->xb + (size_t)row0 * dim;
        switch (it->out_kind) {
        case BATCH_OUT_LOGITS_ALL:
            rmsnorm_rows(xb, x, m->out_norm, it->n, dim, cfg->rms_eps);
            kern_matmul(m->pool, it->out, xb, it->n, m->lm_head.data, m->lm_head.dtype, n_vocab, dim);
            break;
        case BATCH_OUT_HIDDEN_SUM:
            rmsnorm_rows(xb, x, m->out_norm, it->n, dim, cfg->rms_eps);
            for (int t = 0; t < it->n; t++) add_rows(it->out, xb + (size_t)t * dim, (size_t)dim);
            break;
        case BATCH_OUT_HIDDEN_LAST: kern_rmsnorm(it->out, last, m->out_norm, dim, cfg->rms_eps); break;
        case BATCH_OUT_NONE:
        case BATCH_OUT_LOGITS_LAST: break;
        }
        row0 += it->n;
    }
    int rows = 0;
    row0 = 0;
    for (int i = 0; i < n_items; i++) {
        row0 += items[i].n;
        if (items[i].out_kind != BATCH_OUT_LOGITS_LAST) continue;
        kern_rmsnorm(b->xb + (size_t)rows++ * dim, b->x + (size_t)(row0 - 1) * dim, m->out_norm, dim,
                     cfg->rms_eps);
    }
    if (!rows) return;
    kern_matmul(m->pool, b->logits, b->xb, rows, m->lm_head.data, m->lm_head.dtype, n_vocab, dim);
    rows = 0;
    for (int i = 0; i < n_items; i++)
        if (items[i].out_kind == BATCH_OUT_LOGITS_LAST)
            memcpy(items[i].out, b->logits + (size_t)rows++ * n_vocab, (size_t)n_vocab * sizeof(float));
}

static bs_status check_items(const bs_batch *b, const bs_batch_item *items, int n_items, int *T, bs_error *err) {
    int n_vocab = b->m->cfg.n_vocab, bsz = kv_pool_block_size(b->kv);
    if (n_items <= 0 || n_items > b->max_items)
        return bs_fail(err, BS_EINVAL, "batch: %d items (1..%d allowed)", n_items, b->max_items);
    *T = 0;
    for (int i = 0; i < n_items; i++) {
        const bs_batch_item *it = &items[i];
        if (it->n <= 0 || !it->tokens) return bs_fail(err, BS_EINVAL, "batch: item %d has no tokens", i);
        if ((it->out_kind != BATCH_OUT_NONE && !it->out))
            return bs_fail(err, BS_EINVAL, "batch: item %d has no output buffer", i);
        if (it->adapter && adapter_base(it->adapter) != b->m)
            return bs_fail(err, BS_EINVAL, "batch: item %d has an adapter over another model", i);
        if (it->seq->n_pos + it->n > it->seq->n_blocks * bsz || it->seq->n_pos + it->n > b->max_pos)
            return bs_fail(err, BS_EINVAL,
                           "batch: item %d writes positions %d..%d beyond its %d reserved (max %d)", i,
                           it->seq->n_pos, it->seq->n_pos + it->n - 1, it->seq->n_blocks * bsz, b->max_pos);
        for (int t = 0; t < it->n; t++)
            if (it->tokens[t] < 0 || it->tokens[t] >= n_vocab)
                return bs_fail(err, BS_EINVAL, "token id %d at index %d is outside the vocabulary (0..%d)",
                               it->tokens[t], t, n_vocab - 1);
        *T += it->n;
    }
    if (*T > b->max_tokens)
        return bs_fail(err, BS_EINVAL, "batch: %d tokens exceed the step size %d", *T, b->max_tokens);
    return BS_OK;
}

bs_status batch_eval(bs_batch *b, const bs_batch_item *items, int n_items, bs_error *err) {
    int T = 0;
    bs_status st = check_items(b, items, n_items, &T, err);
    if (st) return st;
    const bs_model *m = b->m;
    const bs_model_config *cfg = &m->cfg;
    bs_threadpool *pool = m->pool;
    int dim = cfg->dim, hd = cfg->head_dim;
    size_t q_dim = (size_t)cfg->n_heads * hd, kv_dim = (size_t)cfg->n_kv_heads * hd;

    for (int i = 0, t = 0; i < n_items; i++) {
        b->item_row0[i] = t;
        for (int j = 0; j < items[i].n; j++, t++) {
            b->row_item[t] = i;
            b->row_pos[t] = items[i].seq->n_pos + j;
            kern_dequant_rows(m->tok_embd.dtype, m->tok_embd.data, dim, items[i].tokens[j], 1, b->x + (size_t)t * dim);
        }
    }

    for (int l = 0; l < cfg->n_layers; l++) {
        const bs_layer *L = &m->layers[l];
        rmsnorm_rows(b->xb, b->x, L->attn_norm, T, dim, cfg->rms_eps);
        const projection qkv[] = {{BS_LIN_Q, &L->wq, L->bq, b->q}, {BS_LIN_K, &L->wk, L->bk, b->k},
                                  {BS_LIN_V, &L->wv, L->bv, b->v}};
        project(b, items, n_items, l, b->xb, T, qkv, 3);
        if (cfg->qk_norm) {
            rmsnorm_rows(b->q, b->q, L->q_norm, T * cfg->n_heads, hd, cfg->rms_eps);
            rmsnorm_rows(b->k, b->k, L->k_norm, T * cfg->n_kv_heads, hd, cfg->rms_eps);
        }
        for (int t = 0; t < T; t++) {
            kern_rope(b->q + t * q_dim, cfg->n_heads, hd, b->row_pos[t], m->inv_freq, cfg->rope_neox);
            kern_rope(b->k + t * kv_dim, cfg->n_kv_heads, hd, b->row_pos[t], m->inv_freq, cfg->rope_neox);
        }
        store_kv(b, items, l, T);
        attention_job job = {b, items, l, T};
        bs_threadpool_run(pool, attention_worker, &job);
        project(b, items, n_items, l, b->att, T, &(projection){BS_LIN_O, &L->wo, L->bo, b->xb}, 1);
        add_rows(b->x, b->xb, (size_t)T * dim);

        rmsnorm_rows(b->xb, b->x, L->ffn_norm, T, dim, cfg->rms_eps);
        const projection gate_up[] = {{BS_LIN_GATE, &L->w_gate, L->b_gate, b->hb},
                                      {BS_LIN_UP, &L->w_up, L->b_up, b->hb2}};
        project(b, items, n_items, l, b->xb, T, gate_up, 2);
        kern_swiglu(b->hb, b->hb, b->hb2, T * cfg->ffn_dim);
        project(b, items, n_items, l, b->hb, T, &(projection){BS_LIN_DOWN, &L->w_down, L->b_down, b->xb}, 1);
        add_rows(b->x, b->xb, (size_t)T * dim);
    }
    for (int i = 0; i < n_items; i++) items[i].seq->n_pos += items[i].n;
    outputs(b, items, n_items);
    return BS_OK;
}
