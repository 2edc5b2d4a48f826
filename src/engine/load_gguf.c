/* engine/load_gguf.c — GGUF model files (llama.cpp's converter output) for
 * the llama, qwen2 and qwen3 architectures; Mistral files say "llama".
 * llama.cpp permutes llama Q/K rows so rotary pairs are adjacent, and stores
 * llama3 rope scaling as per-frequency divisors in rope_freqs.weight. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model_impl.h"

const char *const gguf_weight_names[W_COUNT] = {
    [W_EMBED] = "token_embd.weight",
    [W_OUT_NORM] = "output_norm.weight",
    [W_LM_HEAD] = "output.weight",
    [W_ROPE_FREQS] = "rope_freqs.weight",
    [W_ATTN_NORM] = "blk.%d.attn_norm.weight",
    [W_Q] = "blk.%d.attn_q.weight",
    [W_K] = "blk.%d.attn_k.weight",
    [W_V] = "blk.%d.attn_v.weight",
    [W_O] = "blk.%d.attn_output.weight",
    [W_Q_BIAS] = "blk.%d.attn_q.bias",
    [W_K_BIAS] = "blk.%d.attn_k.bias",
    [W_V_BIAS] = "blk.%d.attn_v.bias",
    [W_O_BIAS] = "blk.%d.attn_output.bias",
    [W_Q_NORM] = "blk.%d.attn_q_norm.weight",
    [W_K_NORM] = "blk.%d.attn_k_norm.weight",
    [W_FFN_NORM] = "blk.%d.ffn_norm.weight",
    [W_GATE] = "blk.%d.ffn_gate.weight",
    [W_UP] = "blk.%d.ffn_up.weight",
    [W_DOWN] = "blk.%d.ffn_down.weight",
    [W_GATE_BIAS] = "blk.%d.ffn_gate.bias",
    [W_UP_BIAS] = "blk.%d.ffn_up.bias",
    [W_DOWN_BIAS] = "blk.%d.ffn_down.bias",
};

/* "{arch}.{key}" as an int; *out keeps its default when absent and optional. */
static bs_status get_int(const gguf_file *g, const char *arch, const char *key, int required, int *out,
                         bs_error *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint32_t v = (uint32_t)*out;
    bs_status st = gguf_get_u32(g, full, required, &v, err);
    if (st) return st;
    if (v > INT_MAX) return bs_fail(err, BS_EFORMAT, "%s: %s = %u is out of range", gguf_path(g), full, v);
    *out = (int)v;
    return BS_OK;
}

static bs_status get_float(const gguf_file *g, const char *arch, const char *key, int required, float *out,
                           bs_error *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_f32(g, full, required, out, err);
}

static int has_tensor(const gguf_file *g, const char *name) { return gguf_find_tensor(g, name) != NULL; }

static bs_status parse_config(bs_model *m, const gguf_file *g, bs_error *err) {
    bs_model_config *c = &m->cfg;
    const char *path = gguf_path(g);
    memset(c, 0, sizeof *c);
    const char *arch = NULL;
    bs_status st = gguf_get_str(g, "general.architecture", 1, &arch, err);
    if (st) return st;
    if (strcmp(arch, "llama") == 0) c->arch = BS_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0) c->arch = BS_ARCH_QWEN2;
    else if (strcmp(arch, "qwen3") == 0) c->arch = BS_ARCH_QWEN3;
    else
        return bs_fail(err, BS_EUNSUPPORTED, "%s: architecture \"%s\" is not supported (llama, qwen2, qwen3)",
                       path, arch);

    const struct { const char *key; int *dst; int required; } ints[] = {
        {"embedding_length", &c->dim, 1}, {"block_count", &c->n_layers, 1},
        {"feed_forward_length", &c->ffn_dim, 1}, {"attention.head_count", &c->n_heads, 1},
        {"context_length", &c->max_pos, 1},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !st; i++)
        st = get_int(g, arch, ints[i].key, ints[i].required, ints[i].dst, err);
    if (!st) st = get_float(g, arch, "attention.layer_norm_rms_epsilon", 1, &c->rms_eps, err);
    if (st) return st;
    if (c->n_heads <= 0) return bs_fail(err, BS_EFORMAT, "%s: %s.attention.head_count is 0", path, arch);
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->dim / c->n_heads;
    c->rope_theta = 10000.0f;
    st = get_int(g, arch, "attention.head_count_kv", 0, &c->n_kv_heads, err);
    if (!st) st = get_int(g, arch, "attention.key_length", 0, &c->head_dim, err);
    int value_len = c->head_dim, rope_dims = c->head_dim;
    if (!st) st = get_int(g, arch, "attention.value_length", 0, &value_len, err);
    if (!st) st = get_int(g, arch, "rope.dimension_count", 0, &rope_dims, err);
    if (!st) st = get_float(g, arch, "rope.freq_base", 0, &c->rope_theta, err);
    if (st) return st;
    if (value_len != c->head_dim)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: value length %d differs from key length %d", path, value_len,
                       c->head_dim);
    if (rope_dims != c->head_dim)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: partial rotary embedding (%d of %d dims) is not supported",
                       path, rope_dims, c->head_dim);
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *scaling = NULL;
    st = gguf_get_str(g, key, 0, &scaling, err);
    if (st) return st;
    if (scaling && strcmp(scaling, "none") != 0)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: %s \"%s\" is not supported", path, key, scaling);

    const bs_tensor *embd = gguf_find_tensor(g, gguf_weight_names[W_EMBED]);
    if (!embd) return bs_fail(err, BS_ENOTFOUND, "%s: missing tensor %s", path, gguf_weight_names[W_EMBED]);
    if (embd->ndim != 2 || embd->shape[0] > INT_MAX)
        return bs_fail(err, BS_EFORMAT, "%s: tensor %s is not a [vocab, dim] matrix", path, embd->name);
    c->n_vocab = (int)embd->shape[0];
    int vocab = c->n_vocab;
    st = get_int(g, arch, "vocab_size", 0, &vocab, err);
    if (st) return st;
    if (vocab != c->n_vocab)
        return bs_fail(err, BS_EFORMAT, "%s: %s.vocab_size %d disagrees with %s rows %d", path, arch, vocab,
                       embd->name, c->n_vocab);

    /* Optional tensors are declared by their presence, as llama.cpp does. */
    c->rope_neox = c->arch != BS_ARCH_LLAMA;
    c->tied_embeddings = !has_tensor(g, gguf_weight_names[W_LM_HEAD]);
    c->qkv_bias = has_tensor(g, "blk.0.attn_q.bias");
    c->o_bias = has_tensor(g, "blk.0.attn_output.bias");
    c->mlp_bias = has_tensor(g, "blk.0.ffn_gate.bias");
    c->qk_norm = c->arch == BS_ARCH_QWEN3;
    return model_check_config(c, path, err);
}

bs_status load_gguf(bs_model *m, const char *path, bs_error *err) {
    bs_status st = gguf_open(path, &m->gguf, err);
    if (!st) st = parse_config(m, m->gguf, err);
    if (st) return st;

    size_t n = (size_t)gguf_tensor_count(m->gguf);
    const bs_tensor **views = malloc((n ? n : 1) * sizeof *views);
    if (!views) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) views[i] = gguf_tensor(m->gguf, i);
    weight_source src;
    st = weight_source_init(&src, path, NULL, gguf_weight_names, views, n, err);
    free(views);
    if (st) return st;
    st = model_bind_weights(m, &src, err);
    weight_source_free(&src);
    if (!st && gguf_get(m->gguf, "tokenizer.ggml.model")) st = tok_open_gguf(m->gguf, &m->tok, err);
    return st;
}
