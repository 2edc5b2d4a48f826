/* engine/quantize.c — type mixes, in-memory conversion at load, and the
 * GGUF export behind `basalt quantize`.
 *
 * Both paths convert a matrix the same way: rows in their stored dtype are
 * dequantized to f32 and quantized with kern_quantize, split across the
 * model's thread pool; a row already in the target dtype is copied as is.
 * The export visits the loaded model (so HF and GGUF sources share one
 * path), converts one chunk of rows at a time and streams it to the writer. */
#include "engine/quantize.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/file.h"
#include "base/log.h"
#include "engine/model_impl.h"
#include "format/gguf_write.h"
#include "kernels/kernels.h"

/* ---- mixes --------------------------------------------------------------- */

static const struct {
    const char *name;
    bs_quant q;
    bs_dtype base;
    uint32_t file_type; /* llama_ftype */
} mixes[] = {
    {"f32", BS_QUANT_F32, BS_DTYPE_F32, 0},     {"f16", BS_QUANT_F16, BS_DTYPE_F16, 1},
    {"bf16", BS_QUANT_BF16, BS_DTYPE_BF16, 32}, {"q8_0", BS_QUANT_Q8_0, BS_DTYPE_Q8_0, 7},
    {"q4_0", BS_QUANT_Q4_0, BS_DTYPE_Q4_0, 2},  {"q4_k", BS_QUANT_Q4_K, BS_DTYPE_Q4_K, 14},
    {"q6_k", BS_QUANT_Q6_K, BS_DTYPE_Q6_K, 18}, {"q4_k_m", BS_QUANT_Q4_K_M, BS_DTYPE_Q4_K, 15},
};
enum { N_MIXES = sizeof mixes / sizeof mixes[0] };

static int mix_index(bs_quant q) {
    for (int i = 0; i < N_MIXES; i++)
        if (mixes[i].q == q) return i;
    return -1;
}

bs_status quant_parse(const char *name, bs_quant *out, bs_error *err) {
    for (int i = 0; i < N_MIXES; i++) {
        if (strcasecmp(name, mixes[i].name) == 0) {
            *out = mixes[i].q;
            return BS_OK;
        }
    }
    return bs_fail(err, BS_EINVAL, "unknown quantization type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m)",
                   name);
}

const char *quant_name(bs_quant q) {
    int i = mix_index(q);
    return i < 0 ? "none" : mixes[i].name;
}

uint32_t quant_file_type(bs_quant q) {
    int i = mix_index(q);
    return i < 0 ? 0 : mixes[i].file_type;
}

static int is_block_type(bs_dtype t) { return bs_dtype_block_elems(t) > 1; }

/* llama-quantize's choice of layers that get more bits in the _M mixes. */
static int use_more_bits(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

bs_dtype quant_matrix_dtype(bs_quant q, quant_role role, int layer, int n_layers, int tied, int64_t cols) {
    int i = mix_index(q);
    bs_dtype t = i < 0 ? BS_DTYPE_F32 : mixes[i].base;
    if (!is_block_type(t)) return t; /* converter outtypes: one type for every matrix */
    if (role == QUANT_ROLE_OUTPUT || (tied && role == QUANT_ROLE_EMBED)) {
        if (cols % 256 != 0) t = BS_DTYPE_Q8_0;
        else if (t != BS_DTYPE_Q8_0) t = BS_DTYPE_Q6_K;
    } else if (q == BS_QUANT_Q4_K_M && (role == QUANT_ROLE_ATTN_V || role == QUANT_ROLE_FFN_DOWN) &&
               use_more_bits(layer, n_layers)) {
        t = BS_DTYPE_Q6_K;
    }
    if (bs_dtype_row_bytes(t, cols) == 0) t = BS_DTYPE_Q8_0;
    if (bs_dtype_row_bytes(t, cols) == 0) t = BS_DTYPE_F16;
    return t;
}

static quant_role role_of(weight_role r) {
    switch (r) {
    case W_EMBED: return QUANT_ROLE_EMBED;
    case W_LM_HEAD: return QUANT_ROLE_OUTPUT;
    case W_V: return QUANT_ROLE_ATTN_V;
    case W_DOWN: return QUANT_ROLE_FFN_DOWN;
    default: return QUANT_ROLE_OTHER;
    }
}

/* ---- row conversion ------------------------------------------------------ */

/* Rows [row0, row0 + n) of src, as dtype, into dst.  perm_heads > 0 takes
 * the rows in convert_hf_to_gguf's LlamaModel.permute order for that many
 * heads: within each head, output rows (2i, 2i+1) come from rows (i, i+hd/2). */
typedef struct convert_job {
    const void *src;
    bs_dtype src_type, dst_type;
    size_t src_row_bytes, dst_row_bytes;
    int64_t cols, row0, n_rows, total_rows;
    int perm_heads;
    unsigned char *dst;
    float *scratch; /* cols floats per thread */
} convert_job;

static int64_t source_row(const convert_job *j, int64_t r) {
    if (j->perm_heads <= 0) return r;
    int64_t hd = j->total_rows / j->perm_heads, h = r / hd, o = r % hd;
    return h * hd + (o % 2) * (hd / 2) + o / 2;
}

static void convert_rows(void *ctx, int ith, int nth) {
    const convert_job *j = ctx;
    long begin, end;
    bs_split_range((long)j->n_rows, ith, nth, 1, &begin, &end);
    float *tmp = j->scratch + (size_t)ith * (size_t)j->cols;
    for (long r = begin; r < end; r++) {
        const unsigned char *in = (const unsigned char *)j->src + (size_t)source_row(j, j->row0 + r) * j->src_row_bytes;
        unsigned char *out = j->dst + (size_t)r * j->dst_row_bytes;
        if (j->src_type == j->dst_type) {
            memcpy(out, in, j->dst_row_bytes);
        } else {
            kern_dequant(j->src_type, in, tmp, j->cols);
            kern_quantize(j->dst_type, tmp, out, j->cols);
        }
    }
}

/* ---- quantizing at load -------------------------------------------------- */

typedef struct load_plan {
    bs_model *m;
    bs_quant q;
    size_t total;           /* bytes of converted matrices */
    unsigned char *next;    /* bump pointer into m->quant_weights */
    float *scratch;
} load_plan;

static bs_dtype load_dtype(const load_plan *lp, weight_role r, int layer, const bs_matrix *w) {
    return quant_matrix_dtype(lp->q, role_of(r), layer, lp->m->cfg.n_layers, lp->m->cfg.tied_embeddings, w->cols);
}

static bs_status size_matrix(void *ctx, weight_role r, int layer, void *slot, int64_t rows, int64_t cols, bs_error *err) {
    (void)err;
    load_plan *lp = ctx;
    if (!cols) return BS_OK;
    bs_dtype t = load_dtype(lp, r, layer, slot);
    if (t != ((bs_matrix *)slot)->dtype) lp->total += (size_t)rows * bs_dtype_row_bytes(t, cols);
    return BS_OK;
}

static bs_status convert_matrix(void *ctx, weight_role r, int layer, void *slot, int64_t rows, int64_t cols,
                                bs_error *err) {
    (void)err;
    load_plan *lp = ctx;
    bs_matrix *w = slot;
    if (!cols) return BS_OK;
    bs_dtype t = load_dtype(lp, r, layer, w);
    if (t == w->dtype) return BS_OK;
    convert_job j = {.src = w->data, .src_type = w->dtype, .dst_type = t, .src_row_bytes = w->row_bytes,
                     .dst_row_bytes = bs_dtype_row_bytes(t, cols), .cols = cols, .n_rows = rows, .total_rows = rows,
                     .dst = lp->next, .scratch = lp->scratch};
    bs_threadpool_run(lp->m->pool, convert_rows, &j);
    *w = (bs_matrix){lp->next, t, w->rows, w->cols, j.dst_row_bytes};
    lp->next += (size_t)rows * j.dst_row_bytes;
    return BS_OK;
}

bs_status model_quantize_weights(bs_model *m, bs_quant q, bs_error *err) {
    if (m->gguf)
        return bs_fail(err, BS_EUNSUPPORTED,
                       "%s: --quantize applies to Hugging Face checkpoints; a GGUF file keeps its own types "
                       "(use basalt quantize to write another)",
                       gguf_path(m->gguf));
    load_plan lp = {.m = m, .q = q};
    model_visit_weights(m, size_matrix, &lp, err);
    if (lp.total == 0) return BS_OK;
    int64_t widest = m->cfg.dim > m->cfg.ffn_dim ? m->cfg.dim : m->cfg.ffn_dim;
    if ((int64_t)m->cfg.n_heads * m->cfg.head_dim > widest) widest = (int64_t)m->cfg.n_heads * m->cfg.head_dim;
    m->quant_weights = malloc(lp.total);
    m->quant_bytes = lp.total;
    lp.scratch = malloc((size_t)bs_threadpool_size(m->pool) * (size_t)widest * sizeof(float));
    bs_status st = BS_OK;
    if (!m->quant_weights || !lp.scratch) {
        st = bs_fail(err, BS_ENOMEM, "out of memory converting weights to %s (%zu bytes)", quant_name(q), lp.total);
    } else {
        lp.next = m->quant_weights;
        st = model_visit_weights(m, convert_matrix, &lp, err);
        if (m->cfg.tied_embeddings) m->lm_head = m->tok_embd;
    }
    free(lp.scratch);
    return st;
}

/* ---- GGUF export: the tensor list ---------------------------------------- */

/* A tensor to write: vectors are viewed as [rows][1] f32 matrices so that
 * permuted Q/K biases take the same path as the weights. */
typedef struct out_tensor {
    char name[64];
    bs_dtype dtype;
    int perm_heads;
    int ndim;
    bs_matrix src;
} out_tensor;

static out_tensor vector_tensor(const float *v, int64_t n) {
    return (out_tensor){.dtype = BS_DTYPE_F32, .ndim = 1, .src = {v, BS_DTYPE_F32, (int)n, 1, sizeof(float)}};
}

typedef struct export_ctx {
    bs_model *m;
    bs_quant q;
    int permute; /* llama-arch GGUF wants adjacent RoPE pairs and the source has rotate-half rows */
    out_tensor *t;
    int n;
} export_ctx;

static bs_status list_tensor(void *ctx, weight_role r, int layer, void *slot, int64_t rows, int64_t cols,
                             bs_error *err) {
    (void)err;
    export_ctx *x = ctx;
    const bs_model_config *c = &x->m->cfg;
    out_tensor *t = &x->t[x->n++];
    if (cols) {
        *t = (out_tensor){.dtype = quant_matrix_dtype(x->q, role_of(r), layer, c->n_layers, c->tied_embeddings, cols),
                          .ndim = 2, .src = *(const bs_matrix *)slot};
    } else {
        *t = vector_tensor(*(const float **)slot, rows);
    }
    if (layer < 0) snprintf(t->name, sizeof t->name, "%s", gguf_weight_names[r]);
    else snprintf(t->name, sizeof t->name, gguf_weight_names[r], layer);
    if (x->permute && (r == W_Q || r == W_Q_BIAS)) t->perm_heads = c->n_heads;
    if (x->permute && (r == W_K || r == W_K_BIAS)) t->perm_heads = c->n_kv_heads;
    return BS_OK;
}

static bs_status count_tensor(void *ctx, weight_role r, int layer, void *slot, int64_t rows, int64_t cols,
                              bs_error *err) {
    (void)r, (void)layer, (void)slot, (void)rows, (void)cols, (void)err;
    ((export_ctx *)ctx)->n++;
    return BS_OK;
}

/* llama.cpp's rope_freqs for llama3 scaling: per-frequency divisors of the
 * unscaled inverse frequencies (LlamaModel.generate_extra_tensors). */
static void llama3_rope_factors(const bs_model_config *c, float *out) {
    double lo_wl = c->rope_orig_max_pos / c->rope_low_freq_factor;
    double hi_wl = c->rope_orig_max_pos / c->rope_high_freq_factor;
    for (int i = 0; i < c->head_dim / 2; i++) {
        double freq = 1.0 / pow(c->rope_theta, 2.0 * i / c->head_dim), wl = 2 * M_PI / freq;
        if (wl < hi_wl) {
            out[i] = 1.0f;
        } else if (wl > lo_wl) {
            out[i] = c->rope_factor;
        } else {
            double smooth = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
            out[i] = (float)(1.0 / ((1 - smooth) / c->rope_factor + smooth));
        }
    }
}

/* ---- GGUF export: metadata ----------------------------------------------- */

static const char *gguf_arch(bs_arch a) {
    switch (a) {
    case BS_ARCH_LLAMA: case BS_ARCH_MISTRAL: return "llama";
    case BS_ARCH_QWEN2: return "qwen2";
    case BS_ARCH_QWEN3: return "qwen3";
    }
    return "llama";
}

static bs_status add_arch_u32(gguf_writer *w, const char *arch, const char *key, int v, bs_error *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_writer_add_u32(w, full, (uint32_t)v, err);
}

static bs_status add_arch_f32(gguf_writer *w, const char *arch, const char *key, float v, bs_error *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_writer_add_f32(w, full, v, err);
}

/* The keys convert_hf_to_gguf writes for these architectures. */
static bs_status write_model_keys(gguf_writer *w, const bs_model *m, const char *name, bs_quant q, bs_error *err) {
    const bs_model_config *c = &m->cfg;
    const char *arch = gguf_arch(c->arch);
    bs_status st = gguf_writer_add_str(w, "general.architecture", arch, err);
    if (!st) st = gguf_writer_add_str(w, "general.type", "model", err);
    if (!st) st = gguf_writer_add_str(w, "general.name", name, err);
    if (!st) st = gguf_writer_add_u32(w, "general.file_type", quant_file_type(q), err);
    if (!st && is_block_type(mixes[mix_index(q)].base)) st = gguf_writer_add_u32(w, "general.quantization_version", 2, err);
    const struct { const char *key; int v; } ints[] = {
        {"context_length", c->max_pos}, {"embedding_length", c->dim}, {"block_count", c->n_layers},
        {"feed_forward_length", c->ffn_dim}, {"attention.head_count", c->n_heads},
        {"attention.head_count_kv", c->n_kv_heads}, {"attention.key_length", c->head_dim},
        {"attention.value_length", c->head_dim}, {"rope.dimension_count", c->head_dim},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !st; i++) st = add_arch_u32(w, arch, ints[i].key, ints[i].v, err);
    if (!st && strcmp(arch, "llama") == 0) st = add_arch_u32(w, arch, "vocab_size", c->n_vocab, err);
    if (!st) st = add_arch_f32(w, arch, "rope.freq_base", c->rope_theta, err);
    if (!st) st = add_arch_f32(w, arch, "attention.layer_norm_rms_epsilon", c->rms_eps, err);
    return st;
}

bs_status quantize_write_tokenizer(gguf_writer *w, const bs_tokenizer *tok, int n_vocab, const char *path,
                                   bs_error *err) {
    tok_gguf_info info;
    tok_gguf_describe(tok, &info);
    int32_t n_tok = tok_vocab_size(tok);
    if (n_tok > n_vocab)
        return bs_fail(err, BS_EFORMAT, "%s: the tokenizer has %d tokens, more than the model's vocab of %d", path, n_tok,
                       n_vocab);
    if (strcmp(info.model, "gpt2") == 0 && !info.pre)
        return bs_fail(err, BS_EUNSUPPORTED,
                       "%s: the tokenizer's pre-tokenizer matches none that llama.cpp knows (tokenizer.ggml.pre); "
                       "a GGUF would tokenize differently", path);
    const char **texts = calloc((size_t)n_vocab, sizeof *texts);
    size_t *lens = calloc((size_t)n_vocab, sizeof *lens);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    char (*pads)[24] = calloc((size_t)n_vocab, sizeof *pads);
    int32_t *pairs = NULL;
    size_t n_pairs = 0;
    char **merges = NULL;
    bs_status st = BS_OK;
    if (!texts || !lens || !types || !scores || !pads) {
        st = bs_fail(err, BS_ENOMEM, "%s: out of memory writing the vocabulary", path);
        goto done;
    }
    for (int32_t id = 0; id < n_vocab; id++) {
        size_t len = tok_token_len(tok, id);
        if (len == 0) { /* beyond the tokenizer, or an id it leaves unassigned */
            snprintf(pads[id], sizeof pads[id], "[PAD%d]", id);
            texts[id] = pads[id], lens[id] = strlen(pads[id]), types[id] = 5;
        } else {
            texts[id] = tok_token_text(tok, id), lens[id] = len, types[id] = tok_token_type(tok, id);
        }
        scores[id] = tok_token_score(tok, id);
    }
    st = tok_merges(tok, &pairs, &n_pairs, err);
    if (st) goto done;
    if (info.scores_from_merges) {
        /* A tokenizer.json ranks merges; llama's SentencePiece merging takes
         * the best-scored token instead, so a token scores -(rank of the
         * first merge that makes it) and tokens no merge makes score lowest. */
        for (int32_t id = 0; id < n_vocab; id++) scores[id] = -(float)n_pairs - 1.0f;
        for (size_t r = n_pairs; r-- > 0;) {
            const char *a = tok_token_text(tok, pairs[2 * r]), *b = tok_token_text(tok, pairs[2 * r + 1]);
            size_t la = tok_token_len(tok, pairs[2 * r]), lb = tok_token_len(tok, pairs[2 * r + 1]);
            char *joined = malloc(la + lb + 1);
            if (!joined) {
                st = bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            memcpy(joined, a, la);
            memcpy(joined + la, b, lb);
            int32_t id = tok_token_id(tok, joined, la + lb);
            free(joined);
            if (id >= 0) scores[id] = -(float)r;
        }
    }
    st = gguf_writer_add_str(w, "tokenizer.ggml.model", info.model, err);
    if (!st && info.pre) st = gguf_writer_add_str(w, "tokenizer.ggml.pre", info.pre, err);
    if (!st) st = gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", texts, lens, (uint64_t)n_vocab, err);
    if (!st && strcmp(info.model, "llama") == 0)
        st = gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n_vocab, err);
    if (!st) st = gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n_vocab, err);
    if (!st && strcmp(info.model, "gpt2") == 0) {
        merges = calloc(n_pairs ? n_pairs : 1, sizeof *merges);
        if (!merges) st = bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
        for (size_t r = 0; r < n_pairs && !st; r++) {
            const char *a = tok_token_text(tok, pairs[2 * r]), *b = tok_token_text(tok, pairs[2 * r + 1]);
            if (asprintf(&merges[r], "%s %s", a, b) < 0) {
                merges[r] = NULL;
                st = bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
            }
        }
        if (!st) st = gguf_writer_add_str_array(w, "tokenizer.ggml.merges", (const char *const *)merges, NULL, n_pairs, err);
    }
    const struct { const char *key; int32_t id; } ids[] = {
        {"tokenizer.ggml.bos_token_id", info.bos}, {"tokenizer.ggml.eos_token_id", info.eos},
        {"tokenizer.ggml.eot_token_id", info.eot}, {"tokenizer.ggml.eom_token_id", info.eom},
        {"tokenizer.ggml.unknown_token_id", info.unk},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && !st; i++)
        if (ids[i].id >= 0) st = gguf_writer_add_u32(w, ids[i].key, (uint32_t)ids[i].id, err);
    if (!st) st = gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", info.add_bos, err);
    if (!st) st = gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", info.add_eos, err);
    if (!st && strcmp(info.model, "llama") == 0)
        st = gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", info.add_space_prefix, err);
done:
    for (size_t r = 0; merges && r < n_pairs; r++) free(merges[r]);
    free(merges);
    free(pairs);
    free(texts), free(lens), free(types), free(scores), free(pads);
    return st;
}

/* Chat templates: a GGUF source's tokenizer.chat_template[.NAME] keys as
 * they are; an HF directory's tokenizer_config.json "chat_template" (a
 * string, or a list of {name, template} whose "default" becomes
 * tokenizer.chat_template and the others tokenizer.chat_template.NAME, as
 * llama.cpp's converter writes them), else chat_template.jinja. */
static bs_status write_chat_templates(gguf_writer *w, const bs_model *m, const char *in_path, bs_error *err) {
    if (m->gguf) {
        bs_status st = BS_OK;
        for (uint64_t i = 0; i < gguf_key_count(m->gguf) && !st; i++) {
            const char *key = gguf_key_name(m->gguf, i);
            if (strcmp(key, "tokenizer.chat_template") == 0 || strncmp(key, "tokenizer.chat_template.", 24) == 0)
                st = gguf_writer_add(w, key, gguf_key_value(m->gguf, i), err);
        }
        return st;
    }
    char *config_path = bs_path_join(in_path, "tokenizer_config.json");
    char *jinja_path = bs_path_join(in_path, "chat_template.jinja");
    json_t *config = NULL;
    char *jinja = NULL;
    bs_status st = BS_OK;
    if (!config_path || !jinja_path) {
        st = bs_fail(err, BS_ENOMEM, "out of memory");
        goto done;
    }
    if (bs_file_exists(config_path)) {
        json_error_t jerr;
        config = json_load_file(config_path, 0, &jerr);
        if (!config) {
            st = bs_fail(err, BS_EFORMAT, "%s:%d:%d: %s", config_path, jerr.line, jerr.column, jerr.text);
            goto done;
        }
    }
    const json_t *ct = json_object_get(config, "chat_template");
    if (json_is_string(ct)) {
        st = gguf_writer_add_str(w, "tokenizer.chat_template", json_string_value(ct), err);
    } else if (json_is_array(ct)) {
        size_t i;
        const json_t *item;
        json_array_foreach(ct, i, item) {
            const char *name = json_string_value(json_object_get(item, "name"));
            const char *tmpl = json_string_value(json_object_get(item, "template"));
            if (!name || !tmpl) {
                st = bs_fail(err, BS_EFORMAT, "%s: chat_template[%zu] needs a string name and template", config_path, i);
                break;
            }
            char key[256];
            if (strcmp(name, "default") == 0) snprintf(key, sizeof key, "tokenizer.chat_template");
            else snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
            st = gguf_writer_add_str(w, key, tmpl, err);
            if (st) break;
        }
    } else if (bs_file_exists(jinja_path)) {
        size_t n;
        st = bs_file_read(jinja_path, &jinja, &n, err);
        if (!st) st = gguf_writer_add_str(w, "tokenizer.chat_template", jinja, err);
    }
done:
    json_decref(config);
    free(jinja);
    free(config_path);
    free(jinja_path);
    return st;
}

/* general.name: the source's own, else the directory or file name. */
static void model_name(const bs_model *m, const char *in_path, char *out, size_t cap) {
    const char *name = NULL;
    if (m->gguf && gguf_get_str(m->gguf, "general.name", 0, &name, NULL) == BS_OK && name) {
        snprintf(out, cap, "%s", name);
        return;
    }
    size_t n = strlen(in_path);
    while (n > 1 && in_path[n - 1] == '/') n--;
    const char *base = in_path + n;
    while (base > in_path && base[-1] != '/') base--;
    size_t len = (size_t)(in_path + n - base);
    if (len > 5 && strncmp(base + len - 5, ".gguf", 5) == 0) len -= 5;
    snprintf(out, cap, "%.*s", (int)len, base);
}

/* ---- GGUF export: data --------------------------------------------------- */

enum { CHUNK_BYTES = 16 << 20 }; /* converted rows buffered per write */

static bs_status write_tensor_data(gguf_writer *w, bs_model *m, const out_tensor *t, unsigned char *chunk,
                                   float *scratch, bs_error *err) {
    const bs_matrix *s = &t->src;
    size_t row_bytes = bs_dtype_row_bytes(t->dtype, s->cols);
    int64_t per_chunk = (int64_t)(CHUNK_BYTES / row_bytes);
    if (per_chunk < 1) per_chunk = 1;
    bs_status st = BS_OK;
    for (int64_t r = 0; r < s->rows && !st; r += per_chunk) {
        int64_t n = s->rows - r < per_chunk ? s->rows - r : per_chunk;
        convert_job j = {.src = s->data, .src_type = s->dtype, .dst_type = t->dtype, .src_row_bytes = s->row_bytes,
                         .dst_row_bytes = row_bytes, .cols = s->cols, .row0 = r, .n_rows = n, .total_rows = s->rows,
                         .perm_heads = t->perm_heads, .dst = chunk, .scratch = scratch};
        bs_threadpool_run(m->pool, convert_rows, &j);
        st = gguf_writer_write(w, chunk, (size_t)n * row_bytes, err);
    }
    return st;
}

static bs_status export_model(bs_model *m, const char *in_path, gguf_writer *w, bs_quant q, const quantize_params *p,
                              bs_error *err) {
    const bs_model_config *c = &m->cfg;
    export_ctx x = {.m = m, .q = q, .permute = c->rope_neox && (c->arch == BS_ARCH_LLAMA || c->arch == BS_ARCH_MISTRAL)};
    if (c->arch == BS_ARCH_MISTRAL && c->sliding_window > 0)
        bs_log_warn("%s: GGUF's llama architecture has no sliding window; the %d-token window is dropped "
                    "(outputs differ past that many tokens)", in_path, c->sliding_window);
    char name[256];
    model_name(m, in_path, name, sizeof name);
    bs_status st = write_model_keys(w, m, name, q, err);
    if (!st && m->tok) st = quantize_write_tokenizer(w, m->tok, c->n_vocab, in_path, err);
    if (!st) st = write_chat_templates(w, m, in_path, err);
    if (st) return st;

    model_visit_weights(m, count_tensor, &x, err);
    x.t = calloc((size_t)x.n + 1, sizeof *x.t);
    float *rope = calloc((size_t)c->head_dim / 2 + 1, sizeof *rope);
    int64_t widest = c->dim > c->ffn_dim ? c->dim : c->ffn_dim;
    if ((int64_t)c->n_heads * c->head_dim > widest) widest = (int64_t)c->n_heads * c->head_dim;
    float *scratch = malloc((size_t)bs_threadpool_size(m->pool) * (size_t)widest * sizeof(float));
    size_t widest_row = bs_dtype_row_bytes(BS_DTYPE_F32, widest);
    unsigned char *chunk = malloc(widest_row > CHUNK_BYTES ? widest_row : CHUNK_BYTES);
    if (!x.t || !rope || !scratch || !chunk) {
        st = bs_fail(err, BS_ENOMEM, "out of memory");
        goto done;
    }
    /* rope_freqs first, as the converter's generate_extra_tensors does */
    const float *factors = m->rope_freq_factors;
    if (!factors && c->rope_scaling == BS_ROPE_SCALING_LLAMA3) {
        llama3_rope_factors(c, rope);
        factors = rope;
    }
    x.n = 0;
    if (factors) {
        x.t[x.n] = vector_tensor(factors, c->head_dim / 2);
        snprintf(x.t[x.n].name, sizeof x.t[x.n].name, "%s", gguf_weight_names[W_ROPE_FREQS]);
        x.n++;
    }
    model_visit_weights(m, list_tensor, &x, err);
    for (int i = 0; i < x.n && !st; i++) {
        const out_tensor *t = &x.t[i];
        int64_t shape[2] = {t->src.rows, t->src.cols};
        st = gguf_writer_add_tensor(w, t->name, t->dtype, t->ndim, shape, err);
    }
    for (int i = 0; i < x.n && !st; i++) {
        if (p && p->progress) p->progress(p->progress_ctx, i, x.n, x.t[i].name, x.t[i].dtype);
        st = write_tensor_data(w, m, &x.t[i], chunk, scratch, err);
    }
done:
    free(x.t);
    free(rope);
    free(scratch);
    free(chunk);
    return st;
}

bs_status quantize_to_gguf(const char *in_path, const char *out_path, bs_quant q, const quantize_params *p,
                           bs_error *err) {
    if (mix_index(q) < 0) return bs_fail(err, BS_EINVAL, "%s: no quantization type given", out_path);
    bs_model_params mp = {.n_threads = p ? p->n_threads : 0, .plain_layout = 1}; /* blocks are copied out */
    bs_model *m = NULL;
    bs_status st = model_open(in_path, &mp, &m, err);
    if (st) return st;
    gguf_writer *w = NULL;
    st = gguf_writer_open(out_path, 0, &w, err);
    if (!st) st = export_model(m, in_path, w, q, p, err);
    if (!st) st = gguf_writer_finish(w, err);
    else gguf_writer_discard(w);
    model_close(m);
    return st;
}
