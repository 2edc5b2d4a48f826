/* engine/model.c — model lifecycle, config checks, weight binding shared by
 * both file formats, rotary frequencies, and random-weight models. */
#include "engine/model_impl.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "kernels/kernels.h"

/* ---- weight roles -------------------------------------------------------- */

/* Where a layer role lands in bs_layer (a bs_matrix or a const float *). */
static const size_t layer_field[W_COUNT] = {
    [W_ATTN_NORM] = offsetof(bs_layer, attn_norm), [W_Q] = offsetof(bs_layer, wq),
    [W_K] = offsetof(bs_layer, wk), [W_V] = offsetof(bs_layer, wv), [W_O] = offsetof(bs_layer, wo),
    [W_Q_BIAS] = offsetof(bs_layer, bq), [W_K_BIAS] = offsetof(bs_layer, bk),
    [W_V_BIAS] = offsetof(bs_layer, bv), [W_O_BIAS] = offsetof(bs_layer, bo),
    [W_Q_NORM] = offsetof(bs_layer, q_norm), [W_K_NORM] = offsetof(bs_layer, k_norm),
    [W_FFN_NORM] = offsetof(bs_layer, ffn_norm), [W_GATE] = offsetof(bs_layer, w_gate),
    [W_UP] = offsetof(bs_layer, w_up), [W_DOWN] = offsetof(bs_layer, w_down),
    [W_GATE_BIAS] = offsetof(bs_layer, b_gate), [W_UP_BIAS] = offsetof(bs_layer, b_up),
    [W_DOWN_BIAS] = offsetof(bs_layer, b_down),
};

/* Expected shape of a role: rows x cols for matrices, cols == 0 for vectors.
 * Returns 0 when the config does not call for the role. */
static int role_shape(const bs_model_config *c, weight_role r, int64_t *rows, int64_t *cols) {
    int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t shapes[W_COUNT][2] = {
        [W_EMBED] = {c->n_vocab, c->dim}, [W_OUT_NORM] = {c->dim, 0},
        [W_LM_HEAD] = {c->n_vocab, c->dim}, [W_ROPE_FREQS] = {c->head_dim / 2, 0},
        [W_ATTN_NORM] = {c->dim, 0}, [W_Q] = {q_dim, c->dim}, [W_K] = {kv_dim, c->dim},
        [W_V] = {kv_dim, c->dim}, [W_O] = {c->dim, q_dim}, [W_Q_BIAS] = {q_dim, 0},
        [W_K_BIAS] = {kv_dim, 0}, [W_V_BIAS] = {kv_dim, 0}, [W_O_BIAS] = {c->dim, 0},
        [W_Q_NORM] = {c->head_dim, 0}, [W_K_NORM] = {c->head_dim, 0}, [W_FFN_NORM] = {c->dim, 0},
        [W_GATE] = {c->ffn_dim, c->dim}, [W_UP] = {c->ffn_dim, c->dim}, [W_DOWN] = {c->dim, c->ffn_dim},
        [W_GATE_BIAS] = {c->ffn_dim, 0}, [W_UP_BIAS] = {c->ffn_dim, 0}, [W_DOWN_BIAS] = {c->dim, 0},
    };
    *rows = shapes[r][0];
    *cols = shapes[r][1];
    switch (r) {
    case W_LM_HEAD: return !c->tied_embeddings;
    case W_ROPE_FREQS: return 0; /* optional: bound only when the file has it */
    case W_Q_BIAS: case W_K_BIAS: case W_V_BIAS: return c->qkv_bias;
    case W_O_BIAS: return c->o_bias;
    case W_Q_NORM: case W_K_NORM: return c->qk_norm;
    case W_GATE_BIAS: case W_UP_BIAS: case W_DOWN_BIAS: return c->mlp_bias;
    default: return 1;
    }
}

typedef bs_status (*weight_visit)(void *ctx, weight_role r, int layer, int64_t rows, int64_t cols,
                                  bs_error *err);

/* Visit every weight the config calls for: globals, then layer by layer. */
static bs_status for_each_weight(const bs_model_config *c, weight_visit fn, void *ctx, bs_error *err) {
    int64_t rows, cols;
    for (int r = 0; r < W_FIRST_LAYER_ROLE; r++) {
        if (!role_shape(c, (weight_role)r, &rows, &cols)) continue;
        bs_status st = fn(ctx, (weight_role)r, -1, rows, cols, err);
        if (st) return st;
    }
    for (int l = 0; l < c->n_layers; l++) {
        for (int r = W_FIRST_LAYER_ROLE; r < W_COUNT; r++) {
            if (!role_shape(c, (weight_role)r, &rows, &cols)) continue;
            bs_status st = fn(ctx, (weight_role)r, l, rows, cols, err);
            if (st) return st;
        }
    }
    return BS_OK;
}

static void role_name(const char *const *names, weight_role r, int layer, char *buf, size_t cap) {
    if (layer < 0) snprintf(buf, cap, "%s", names[r]);
    else snprintf(buf, cap, names[r], layer);
}

/* The bs_matrix or const float * a role binds to. */
static void *role_slot(bs_model *m, weight_role r, int layer) {
    switch (r) {
    case W_EMBED: return &m->tok_embd;
    case W_OUT_NORM: return &m->out_norm;
    case W_LM_HEAD: return &m->lm_head;
    case W_ROPE_FREQS: return &m->rope_freq_factors;
    default: return (char *)&m->layers[layer] + layer_field[r];
    }
}

typedef struct visit_ctx {
    bs_model *m;
    model_weight_fn fn;
    void *ctx;
} visit_ctx;

static bs_status visit_slot(void *p, weight_role r, int layer, int64_t rows, int64_t cols, bs_error *err) {
    visit_ctx *v = p;
    return v->fn(v->ctx, r, layer, role_slot(v->m, r, layer), rows, cols, err);
}

bs_status model_visit_weights(bs_model *m, model_weight_fn fn, void *ctx, bs_error *err) {
    visit_ctx v = {m, fn, ctx};
    return for_each_weight(&m->cfg, visit_slot, &v, err);
}

/* ---- weight sources ------------------------------------------------------ */

static int tensor_cmp(const void *a, const void *b) {
    return strcmp((*(const bs_tensor *const *)a)->name, (*(const bs_tensor *const *)b)->name);
}

bs_status weight_source_init(weight_source *src, const char *path, const st_set *st,
                             const char *const *names, const bs_tensor *const *tensors, size_t n,
                             bs_error *err) {
    memset(src, 0, sizeof *src);
    src->path = path;
    src->st = st;
    src->names = names;
    src->tensors = malloc((n ? n : 1) * sizeof *src->tensors);
    src->used = calloc(n ? n : 1, 1);
    if (!src->tensors || !src->used) {
        weight_source_free(src);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory indexing %zu tensors", path, n);
    }
    memcpy(src->tensors, tensors, n * sizeof *tensors);
    src->n = n;
    qsort(src->tensors, n, sizeof *src->tensors, tensor_cmp);
    return BS_OK;
}

void weight_source_free(weight_source *src) {
    free(src->tensors);
    free(src->used);
    memset(src, 0, sizeof *src);
}

static long source_index(const weight_source *src, const char *name) {
    size_t lo = 0, hi = src->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(src->tensors[mid]->name, name);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

const bs_tensor *weight_source_find(const weight_source *src, const char *name) {
    long i = source_index(src, name);
    return i < 0 ? NULL : src->tensors[i];
}

static const char *tensor_file(const weight_source *src, const char *name) {
    const char *f = src->st ? st_set_tensor_path(src->st, name) : NULL;
    return f ? f : src->path;
}

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* ---- binding ------------------------------------------------------------- */

typedef struct bind_ctx {
    bs_model *m;
    weight_source *src;
    float *next_vec; /* bump pointer into m->vecs */
    size_t n_vec_floats;
} bind_ctx;

static bs_status count_vec(void *p, weight_role r, int layer, int64_t rows, int64_t cols, bs_error *err) {
    (void)r, (void)layer, (void)err;
    if (cols == 0) ((bind_ctx *)p)->n_vec_floats += (size_t)rows;
    return BS_OK;
}

static bs_status bind_one(bind_ctx *b, const bs_tensor *t, weight_role r, int layer, int64_t rows,
                          int64_t cols, bs_error *err) {
    const char *file = tensor_file(b->src, t->name);
    int64_t want[2] = {rows, cols};
    int want_ndim = cols ? 2 : 1;
    if (t->ndim != want_ndim || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
        char got_s[96], want_s[96];
        format_shape(t->shape, t->ndim, got_s, sizeof got_s);
        format_shape(want, want_ndim, want_s, sizeof want_s);
        return bs_fail(err, BS_EFORMAT, "%s: tensor %s has shape %s, expected %s", file, t->name,
                       got_s, want_s);
    }
    int64_t inner = cols ? cols : rows;
    size_t row_bytes = bs_dtype_row_bytes(t->dtype, inner);
    if (row_bytes == 0)
        return bs_fail(err, BS_EFORMAT, "%s: tensor %s: %s rows of %lld elements are not whole blocks",
                       file, t->name, bs_dtype_name(t->dtype), (long long)inner);
    void *slot = role_slot(b->m, r, layer);
    if (cols) {
        bs_matrix *mat = slot;
        *mat = (bs_matrix){t->data, t->dtype, (int)rows, (int)cols, row_bytes};
    } else {
        kern_dequant(t->dtype, t->data, b->next_vec, rows);
        *(const float **)slot = b->next_vec;
        b->next_vec += rows;
    }
    return BS_OK;
}

static bs_status bind_visit(void *p, weight_role r, int layer, int64_t rows, int64_t cols, bs_error *err) {
    bind_ctx *b = p;
    char name[160];
    role_name(b->src->names, r, layer, name, sizeof name);
    long i = source_index(b->src, name);
    if (i < 0) return bs_fail(err, BS_ENOTFOUND, "%s: missing tensor %s", b->src->path, name);
    b->src->used[i] = 1;
    return bind_one(b, b->src->tensors[i], r, layer, rows, cols, err);
}

/* Tensors a checkpoint may carry that no architecture reads. */
static int harmless_tensor(const char *name) {
    static const char suffix[] = "rotary_emb.inv_freq";
    size_t n = strlen(name), s = sizeof suffix - 1;
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

bs_status model_bind_weights(bs_model *m, weight_source *src, bs_error *err) {
    const bs_model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return bs_fail(err, BS_ENOMEM, "%s: out of memory", src->path);

    bind_ctx b = {.m = m, .src = src};
    for_each_weight(c, count_vec, &b, err);
    long rope_freqs = src->names[W_ROPE_FREQS] ? source_index(src, src->names[W_ROPE_FREQS]) : -1;
    if (rope_freqs >= 0) b.n_vec_floats += (size_t)c->head_dim / 2;
    m->vecs = malloc(b.n_vec_floats * sizeof(float) + 1);
    if (!m->vecs) return bs_fail(err, BS_ENOMEM, "%s: out of memory", src->path);
    b.next_vec = m->vecs;

    bs_status st = for_each_weight(c, bind_visit, &b, err);
    if (st) return st;
    if (rope_freqs >= 0) {
        src->used[rope_freqs] = 1;
        st = bind_one(&b, src->tensors[rope_freqs], W_ROPE_FREQS, -1, c->head_dim / 2, 0, err);
        if (st) return st;
        for (int i = 0; i < c->head_dim / 2; i++)
            if (!(m->rope_freq_factors[i] > 0) || !isfinite(m->rope_freq_factors[i]))
                return bs_fail(err, BS_EFORMAT, "%s: %s[%d] = %g is not a positive frequency divisor",
                               src->path, src->names[W_ROPE_FREQS], i, m->rope_freq_factors[i]);
    }
    if (c->tied_embeddings) {
        m->lm_head = m->tok_embd;
        /* Hugging Face ties even when the file also stores lm_head; it is not read. */
        long i = source_index(src, src->names[W_LM_HEAD]);
        if (i >= 0) src->used[i] = 1;
    }
    for (size_t i = 0; i < src->n; i++) {
        const char *name = src->tensors[i]->name;
        if (!src->used[i] && !harmless_tensor(name))
            return bs_fail(err, BS_EFORMAT, "%s: unexpected tensor %s (not part of a %s model with this config)",
                           tensor_file(src, name), name, model_arch_name(c->arch));
    }
    return BS_OK;
}

/* ---- config -------------------------------------------------------------- */

bs_status model_check_config(const bs_model_config *c, const char *path, bs_error *err) {
    enum { MAX_DIM = 1 << 20, MAX_VOCAB = 1 << 24, MAX_LAYERS = 4096 };
    const struct { const char *name; int value, max; } dims[] = {
        {"vocab size", c->n_vocab, MAX_VOCAB}, {"hidden size", c->dim, MAX_DIM},
        {"layer count", c->n_layers, MAX_LAYERS}, {"attention head count", c->n_heads, MAX_DIM},
        {"key/value head count", c->n_kv_heads, MAX_DIM}, {"head dim", c->head_dim, MAX_DIM},
        {"feed-forward size", c->ffn_dim, MAX_DIM}, {"max positions", c->max_pos, 1 << 30},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].value <= 0 || dims[i].value > dims[i].max)
            return bs_fail(err, BS_EFORMAT, "%s: %s %d is outside 1..%d", path, dims[i].name,
                           dims[i].value, dims[i].max);
    if (c->n_heads % c->n_kv_heads)
        return bs_fail(err, BS_EFORMAT, "%s: %d attention heads are not a multiple of %d key/value heads",
                       path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return bs_fail(err, BS_EFORMAT, "%s: head dim %d is odd; rotary embedding needs pairs", path,
                       c->head_dim);
    if ((int64_t)c->n_heads * c->head_dim > MAX_DIM)
        return bs_fail(err, BS_EFORMAT, "%s: %d heads of %d dims are too many", path, c->n_heads, c->head_dim);
    if (!(c->rms_eps > 0) || !isfinite(c->rms_eps))
        return bs_fail(err, BS_EFORMAT, "%s: RMSNorm epsilon %g must be positive", path, c->rms_eps);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return bs_fail(err, BS_EFORMAT, "%s: rope theta %g must be positive", path, c->rope_theta);
    if (c->sliding_window < 0)
        return bs_fail(err, BS_EFORMAT, "%s: sliding window %d is negative", path, c->sliding_window);
    if (c->rope_scaling == BS_ROPE_SCALING_LLAMA3 &&
        (!(c->rope_factor > 0) || !(c->rope_low_freq_factor > 0) ||
         !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_orig_max_pos <= 0))
        return bs_fail(err, BS_EFORMAT,
                       "%s: llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor "
                       "and original_max_position_embeddings > 0",
                       path);
    return BS_OK;
}

const char *model_arch_name(bs_arch arch) {
    switch (arch) {
    case BS_ARCH_LLAMA: return "llama";
    case BS_ARCH_MISTRAL: return "mistral";
    case BS_ARCH_QWEN2: return "qwen2";
    case BS_ARCH_QWEN3: return "qwen3";
    }
    return "unknown";
}

/* ---- finishing ----------------------------------------------------------- */

/* inv_freq[i] = theta^(-2i/d), then llama3 scaling (transformers
 * _compute_llama3_parameters) or GGUF's precomputed per-frequency divisors. */
static void compute_inv_freq(const bs_model *m, float *inv_freq) {
    const bs_model_config *c = &m->cfg;
    for (int i = 0; i < c->head_dim / 2; i++) {
        double f = 1.0 / pow(c->rope_theta, 2.0 * i / c->head_dim);
        if (c->rope_scaling == BS_ROPE_SCALING_LLAMA3) {
            double wavelen = 2 * M_PI / f, orig = c->rope_orig_max_pos;
            double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            if (wavelen > orig / lo) {
                f /= c->rope_factor;
            } else if (wavelen >= orig / hi) {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        if (m->rope_freq_factors) f /= m->rope_freq_factors[i];
        inv_freq[i] = (float)f;
    }
}

static size_t matrix_bytes(const bs_matrix *w) { return (size_t)w->rows * w->row_bytes; }

size_t model_weight_bytes(const bs_model *m) {
    size_t n = matrix_bytes(&m->lm_head);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const bs_layer *L = &m->layers[l];
        n += matrix_bytes(&L->wq) + matrix_bytes(&L->wk) + matrix_bytes(&L->wv) + matrix_bytes(&L->wo) +
             matrix_bytes(&L->w_gate) + matrix_bytes(&L->w_up) + matrix_bytes(&L->w_down);
    }
    return n;
}

/* ---- the decode layout --------------------------------------------------
 * Weight matrices are interleaved 16 rows at a time (the _R16 types) when
 * the CPU's kernels gain from it: the decode kernels then read a group of
 * rows as one stream, every load a vector for 16 rows.
 * Matrices the model owns (converted at load, or random) are rearranged in
 * place, a group at a time; mapped ones are copied into one allocation and
 * their file pages dropped from the process, so it never holds both
 * copies. */

typedef struct {
    bs_model *m;
    size_t copy_bytes;   /* first pass: bytes to copy */
    unsigned char *next; /* second pass: bump pointer into m->interleaved */
    int skip_head;       /* tied: lm_head follows tok_embd */
} interleave_plan;

static int within(const void *p, const void *base, size_t bytes) {
    return base && (const char *)p >= (const char *)base && (const char *)p < (const char *)base + bytes;
}

/* Matrices in memory the model owns (converted at load, or random) are
 * rearranged in place. */
static int owned(const bs_model *m, const void *p) {
    return within(p, m->quant_weights, m->quant_bytes) || within(p, m->random_weights, m->random_bytes);
}

static int interleavable(const interleave_plan *ip, weight_role r, const bs_matrix *w) {
    return !(r == W_LM_HEAD && ip->skip_head) && kern_reads_interleaved(w->dtype) &&
           kern_can_interleave(w->dtype, w->rows, w->cols);
}

static bs_status size_interleaved(void *ctx, weight_role r, int layer, void *slot, int64_t rows, int64_t cols,
                                  bs_error *err) {
    (void)layer, (void)rows, (void)err;
    interleave_plan *ip = ctx;
    bs_matrix *w = slot;
    if (!cols) return BS_OK; /* a vector */
    if (interleavable(ip, r, w) && !owned(ip->m, w->data)) ip->copy_bytes += (size_t)w->rows * w->row_bytes;
    return BS_OK;
}

typedef struct {
    const bs_matrix *w;
    unsigned char *dst;
    unsigned char *scratch; /* in place: BS_ROW_GROUP rows per thread */
} interleave_job;

static void interleave_groups(void *ctx, int ith, int nth) {
    const interleave_job *j = ctx;
    size_t group = (size_t)BS_ROW_GROUP * j->w->row_bytes;
    long begin, end;
    bs_split_range(j->w->rows / BS_ROW_GROUP, ith, nth, 1, &begin, &end);
    for (long g = begin; g < end; g++) {
        const unsigned char *src = (const unsigned char *)j->w->data + g * group;
        if (j->scratch) {
            unsigned char *mine = j->scratch + (size_t)ith * group;
            memcpy(mine, src, group);
            src = mine;
        }
        kern_interleave(j->w->dtype, src, BS_ROW_GROUP, j->w->cols, j->dst + g * group);
    }
}

static bs_status interleave_matrix(void *ctx, weight_role r, int layer, void *slot, int64_t rows, int64_t cols,
                                   bs_error *err) {
    (void)layer, (void)rows;
    interleave_plan *ip = ctx;
    bs_matrix *w = slot;
    if (!cols || !interleavable(ip, r, w)) return BS_OK;
    interleave_job j = {.w = w};
    size_t bytes = (size_t)w->rows * w->row_bytes;
    int copied = !owned(ip->m, w->data);
    if (!copied) {
        j.dst = (unsigned char *)w->data;
        j.scratch = malloc((size_t)bs_threadpool_size(ip->m->pool) * BS_ROW_GROUP * w->row_bytes);
        if (!j.scratch) return bs_fail(err, BS_ENOMEM, "out of memory interleaving a %d x %d matrix", w->rows, w->cols);
    } else {
        j.dst = ip->next;
        ip->next += bytes;
    }
    bs_threadpool_run(ip->m->pool, interleave_groups, &j);
    free(j.scratch);
    if (copied && ip->m->gguf) gguf_drop(ip->m->gguf, w->data, bytes); /* the file's copy is done with */
    if (copied && ip->m->st) st_set_drop(ip->m->st, w->data, bytes);
    *w = (bs_matrix){j.dst, bs_dtype_interleaved(w->dtype), w->rows, w->cols, w->row_bytes};
    return BS_OK;
}

static bs_status model_interleave_weights(bs_model *m, bs_error *err) {
    interleave_plan ip = {.m = m, .skip_head = m->cfg.tied_embeddings};
    bs_status st = model_visit_weights(m, size_interleaved, &ip, err);
    if (st) return st;
    if (ip.copy_bytes) {
        m->interleaved = malloc(ip.copy_bytes);
        if (!m->interleaved)
            return bs_fail(err, BS_ENOMEM, "out of memory for the interleaved weights (%zu bytes)", ip.copy_bytes);
        ip.next = m->interleaved;
    }
    st = model_visit_weights(m, interleave_matrix, &ip, err);
    if (!st && m->cfg.tied_embeddings) m->lm_head = m->tok_embd;
    return st;
}

bs_status model_finish(bs_model *m, const bs_model_params *p, bs_error *err) {
    const bs_model_config *c = &m->cfg;
    m->inv_freq = malloc((size_t)c->head_dim / 2 * sizeof(float));
    if (!m->inv_freq) return bs_fail(err, BS_ENOMEM, "out of memory");
    compute_inv_freq(m, m->inv_freq);
    bs_status st = bs_threadpool_open(p ? p->n_threads : 0, &m->pool, err);
    if (!st && p && p->quantize != BS_QUANT_NONE) st = model_quantize_weights(m, p->quantize, err);
    if (!st && !(p && p->plain_layout)) st = model_interleave_weights(m, err);
    if (st) return st;
    snprintf(m->describe, sizeof m->describe,
             "%s: %d layers, dim %d, %d heads (%d kv) x %d, ffn %d, vocab %d, %s weights (%.1f MB)%s",
             model_arch_name(c->arch), c->n_layers, c->dim, c->n_heads, c->n_kv_heads, c->head_dim,
             c->ffn_dim, c->n_vocab, bs_dtype_name(m->layers[0].wq.dtype),
             (double)model_weight_bytes(m) / 1e6, m->random_weights ? ", random" : "");
    return BS_OK;
}

bs_status model_add_eog(bs_model *m, int32_t id, bs_error *err) {
    for (int i = 0; i < m->n_eog; i++)
        if (m->eog_ids[i] == id) return BS_OK;
    int32_t *ids = realloc(m->eog_ids, (size_t)(m->n_eog + 1) * sizeof *ids);
    if (!ids) return bs_fail(err, BS_ENOMEM, "out of memory");
    m->eog_ids = ids;
    m->eog_ids[m->n_eog++] = id;
    return BS_OK;
}

/* ---- lifecycle ----------------------------------------------------------- */

bs_status model_open(const char *path, const bs_model_params *p, bs_model **out, bs_error *err) {
    *out = NULL;
    bs_model *m = calloc(1, sizeof *m);
    if (!m) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    bs_status st = bs_is_directory(path) ? load_hf(m, path, err) : load_gguf(m, path, err);
    if (!st) st = model_finish(m, p, err);
    if (st) {
        model_close(m);
        return st;
    }
    *out = m;
    return BS_OK;
}

void model_close(bs_model *m) {
    if (!m) return;
    if (m->pool) bs_threadpool_close(m->pool);
    if (m->tok) tok_close(m->tok);
    if (m->st) st_set_close(m->st);
    if (m->gguf) gguf_close(m->gguf);
    free(m->layers);
    free(m->vecs);
    free(m->inv_freq);
    free(m->random_weights);
    free(m->quant_weights);
    free(m->interleaved);
    free(m->eog_ids);
    free(m);
}

const bs_model_config *model_config(const bs_model *m) { return &m->cfg; }
const bs_tokenizer *model_tokenizer(const bs_model *m) { return m->tok; }
const char *model_describe(const bs_model *m) { return m->describe; }

static bs_weight weight_view(const bs_matrix *w) {
    return (bs_weight){w->data, w->dtype, w->rows, w->cols, w->row_bytes};
}

void model_weights(const bs_model *m, bs_model_weights *out) {
    *out = (bs_model_weights){weight_view(&m->tok_embd), weight_view(&m->lm_head), m->out_norm, m->inv_freq};
}

void model_layer_weights(const bs_model *m, int layer, bs_layer_weights *out) {
    const bs_layer *L = &m->layers[layer];
    *out = (bs_layer_weights){
        .attn_norm = L->attn_norm, .q_norm = L->q_norm, .k_norm = L->k_norm, .ffn_norm = L->ffn_norm,
        .w = {weight_view(&L->wq), weight_view(&L->wk), weight_view(&L->wv), weight_view(&L->wo),
              weight_view(&L->w_gate), weight_view(&L->w_up), weight_view(&L->w_down)},
        .bias = {L->bq, L->bk, L->bv, L->bo, L->b_gate, L->b_up, L->b_down},
    };
}

int model_is_eog(const bs_model *m, int32_t token) {
    for (int i = 0; i < m->n_eog; i++)
        if (m->eog_ids[i] == token) return 1;
    return m->tok && tok_is_eog(m->tok, token);
}

/* ---- random models ------------------------------------------------------- */

/* splitmix64 -> Box-Muller normals; the sequence depends only on the seed. */
typedef struct { uint64_t s; } rng64;
static uint64_t rng_next(rng64 *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_uniform(rng64 *r) { return ((rng_next(r) >> 11) + 0.5) * 0x1.0p-53; }
static float rng_normal(rng64 *r) {
    return (float)(sqrt(-2 * log(rng_uniform(r))) * cos(2 * M_PI * rng_uniform(r)));
}

typedef struct random_ctx {
    const char *const *names;
    bs_tensor *tensors;
    char (*tensor_names)[64];
    size_t n, n_floats;
    float *data, *next;
    rng64 rng;
} random_ctx;

static bs_status count_random(void *p, weight_role r, int layer, int64_t rows, int64_t cols, bs_error *err) {
    (void)r, (void)layer, (void)err;
    random_ctx *g = p;
    g->n++;
    g->n_floats += (size_t)(rows * (cols ? cols : 1));
    return BS_OK;
}

/* Matrices ~ N(0, 1/cols) keep activations at unit scale; the token
 * embedding is N(0, 1) and the LM head is scaled up so logits spread over a
 * few units.  Norm weights are near 1, biases small. */
static bs_status fill_random(void *p, weight_role r, int layer, int64_t rows, int64_t cols, bs_error *err) {
    (void)err;
    random_ctx *g = p;
    bs_tensor *t = &g->tensors[g->n];
    role_name(g->names, r, layer, g->tensor_names[g->n], sizeof g->tensor_names[g->n]);
    int64_t n = rows * (cols ? cols : 1);
    float scale = cols ? 1.0f / sqrtf((float)cols) : 0.1f, base = 0;
    if (r == W_EMBED) scale = 1.0f;
    if (r == W_LM_HEAD) scale = 3.0f / sqrtf((float)cols);
    if (r == W_ATTN_NORM || r == W_FFN_NORM || r == W_OUT_NORM || r == W_Q_NORM || r == W_K_NORM) base = 1;
    for (int64_t i = 0; i < n; i++) g->next[i] = base + scale * rng_normal(&g->rng);
    *t = (bs_tensor){.name = g->tensor_names[g->n], .dtype = BS_DTYPE_F32, .ndim = cols ? 2 : 1,
                     .shape = {rows, cols}, .data = g->next, .nbytes = (size_t)n * sizeof(float)};
    g->next += n;
    g->n++;
    return BS_OK;
}

bs_status model_open_random(const bs_model_config *cfg, uint64_t seed, const bs_model_params *p,
                            bs_model **out, bs_error *err) {
    *out = NULL;
    bs_status st = model_check_config(cfg, "random model", err);
    if (st) return st;
    bs_model *m = calloc(1, sizeof *m);
    if (!m) return bs_fail(err, BS_ENOMEM, "random model: out of memory");
    m->cfg = *cfg;
    random_ctx g = {.names = hf_weight_names, .rng = {seed}};
    weight_source src = {0};
    const bs_tensor **views = NULL;
    st = tok_open_byte_level(&m->tok, err);
    if (!st && tok_vocab_size(m->tok) > cfg->n_vocab)
        st = bs_fail(err, BS_EINVAL, "random model: vocab size %d is smaller than the byte-level tokenizer's %d",
                     cfg->n_vocab, tok_vocab_size(m->tok));
    if (!st) {
        for_each_weight(cfg, count_random, &g, err);
        m->random_weights = g.data = malloc(g.n_floats * sizeof(float));
        m->random_bytes = g.n_floats * sizeof(float);
        g.tensors = calloc(g.n, sizeof *g.tensors);
        g.tensor_names = calloc(g.n, sizeof *g.tensor_names);
        views = calloc(g.n, sizeof *views);
        if (!g.data || !g.tensors || !g.tensor_names || !views)
            st = bs_fail(err, BS_ENOMEM, "random model: out of memory for %zu weights", g.n_floats);
    }
    if (!st) {
        g.next = g.data;
        g.n = 0;
        for_each_weight(cfg, fill_random, &g, err);
        for (size_t i = 0; i < g.n; i++) views[i] = &g.tensors[i];
        st = weight_source_init(&src, "random model", NULL, hf_weight_names, views, g.n, err);
    }
    if (!st) st = model_bind_weights(m, &src, err);
    if (!st) st = model_finish(m, p, err);
    weight_source_free(&src);
    free(views);
    free(g.tensors);
    free(g.tensor_names);
    if (st) {
        model_close(m);
        return st;
    }
    *out = m;
    return BS_OK;
}
