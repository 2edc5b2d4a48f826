/* engine/load_hf.c — Hugging Face model directories: config.json,
 * generation_config.json, safetensors weights (single or sharded) and
 * tokenizer.json.  Defaults follow the transformers config classes. */
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "engine/model_impl.h"

const char *const hf_weight_names[W_COUNT] = {
    [W_EMBED] = "model.embed_tokens.weight",
    [W_OUT_NORM] = "model.norm.weight",
    [W_LM_HEAD] = "lm_head.weight",
    [W_ATTN_NORM] = "model.layers.%d.input_layernorm.weight",
    [W_Q] = "model.layers.%d.self_attn.q_proj.weight",
    [W_K] = "model.layers.%d.self_attn.k_proj.weight",
    [W_V] = "model.layers.%d.self_attn.v_proj.weight",
    [W_O] = "model.layers.%d.self_attn.o_proj.weight",
    [W_Q_BIAS] = "model.layers.%d.self_attn.q_proj.bias",
    [W_K_BIAS] = "model.layers.%d.self_attn.k_proj.bias",
    [W_V_BIAS] = "model.layers.%d.self_attn.v_proj.bias",
    [W_O_BIAS] = "model.layers.%d.self_attn.o_proj.bias",
    [W_Q_NORM] = "model.layers.%d.self_attn.q_norm.weight",
    [W_K_NORM] = "model.layers.%d.self_attn.k_norm.weight",
    [W_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight",
    [W_GATE] = "model.layers.%d.mlp.gate_proj.weight",
    [W_UP] = "model.layers.%d.mlp.up_proj.weight",
    [W_DOWN] = "model.layers.%d.mlp.down_proj.weight",
    [W_GATE_BIAS] = "model.layers.%d.mlp.gate_proj.bias",
    [W_UP_BIAS] = "model.layers.%d.mlp.up_proj.bias",
    [W_DOWN_BIAS] = "model.layers.%d.mlp.down_proj.bias",
};

/* ---- JSON fields (absent or null keeps the default in *out) --------------- */

static bs_status get_int(const char *path, const json_t *obj, const char *key, int required, int *out,
                         bs_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return required ? bs_fail(err, BS_EFORMAT, "%s: missing \"%s\"", path, key) : BS_OK;
    if (!json_is_integer(v)) return bs_fail(err, BS_EFORMAT, "%s: \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < INT_MIN || x > INT_MAX)
        return bs_fail(err, BS_EFORMAT, "%s: \"%s\" = %lld is out of range", path, key, (long long)x);
    *out = (int)x;
    return BS_OK;
}

static bs_status get_float(const char *path, const json_t *obj, const char *key, int required, float *out,
                           bs_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return required ? bs_fail(err, BS_EFORMAT, "%s: missing \"%s\"", path, key) : BS_OK;
    if (!json_is_number(v)) return bs_fail(err, BS_EFORMAT, "%s: \"%s\" must be a number", path, key);
    *out = (float)json_number_value(v);
    return BS_OK;
}

static bs_status get_bool(const char *path, const json_t *obj, const char *key, int *out, bs_error *err) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return BS_OK;
    if (!json_is_boolean(v)) return bs_fail(err, BS_EFORMAT, "%s: \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return BS_OK;
}

static bs_status load_json(const char *path, json_t **out, bs_error *err) {
    json_error_t jerr;
    *out = json_load_file(path, 0, &jerr);
    if (!*out) {
        if (jerr.line < 0) return bs_fail(err, BS_EIO, "%s: %s", path, jerr.text);
        return bs_fail(err, BS_EFORMAT, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return bs_fail(err, BS_EFORMAT, "%s: top level is not an object", path);
    }
    return BS_OK;
}

/* eos_token_id: an integer or a list of integers. */
static bs_status add_eos_ids(bs_model *m, const char *path, const json_t *obj, bs_error *err) {
    const json_t *v = json_object_get(obj, "eos_token_id");
    if (!v || json_is_null(v)) return BS_OK;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT32_MAX)
            return bs_fail(err, BS_EFORMAT, "%s: \"eos_token_id\" must be a token id or a list of them", path);
        bs_status st = model_add_eog(m, (int32_t)json_integer_value(e), err);
        if (st) return st;
    }
    return BS_OK;
}

/* ---- config.json --------------------------------------------------------- */

static bs_status parse_arch(const char *path, const json_t *root, bs_arch *arch, bs_error *err) {
    static const struct { const char *cls, *type; bs_arch arch; } known[] = {
        {"LlamaForCausalLM", "llama", BS_ARCH_LLAMA},
        {"MistralForCausalLM", "mistral", BS_ARCH_MISTRAL},
        {"Qwen2ForCausalLM", "qwen2", BS_ARCH_QWEN2},
        {"Qwen3ForCausalLM", "qwen3", BS_ARCH_QWEN3},
    };
    const json_t *archs = json_object_get(root, "architectures");
    const char *cls = json_string_value(json_array_get(archs, 0));
    const char *type = json_string_value(json_object_get(root, "model_type"));
    if (!cls && !type) return bs_fail(err, BS_EFORMAT, "%s: missing \"architectures\" and \"model_type\"", path);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (cls ? strcmp(cls, known[i].cls) == 0 : strcmp(type, known[i].type) == 0) {
            *arch = known[i].arch;
            return BS_OK;
        }
    }
    return bs_fail(err, BS_EUNSUPPORTED,
                   "%s: architecture %s is not supported (LlamaForCausalLM, MistralForCausalLM, "
                   "Qwen2ForCausalLM, Qwen3ForCausalLM)",
                   path, cls ? cls : type);
}

/* rope_theta and rope_scaling at top level, or (newer transformers) both
 * inside a rope_parameters dict. */
static bs_status parse_rope(const char *path, const json_t *root, bs_model_config *c, bs_error *err) {
    const json_t *params = json_object_get(root, "rope_parameters");
    const json_t *scaling = json_object_get(root, "rope_scaling");
    bs_status st = get_float(path, root, "rope_theta", 0, &c->rope_theta, err);
    if (!st && json_is_object(params)) st = get_float(path, params, "rope_theta", 0, &c->rope_theta, err);
    if (st) return st;
    if (!json_is_object(scaling)) scaling = params;
    if (!json_is_object(scaling)) return BS_OK;
    const json_t *type_v = json_object_get(scaling, "rope_type");
    if (!type_v) type_v = json_object_get(scaling, "type");
    const char *type = type_v ? json_string_value(type_v) : "default";
    if (!type) return bs_fail(err, BS_EFORMAT, "%s: rope scaling \"rope_type\" must be a string", path);
    if (strcmp(type, "default") == 0) return BS_OK;
    if (strcmp(type, "llama3") != 0)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: rope scaling type \"%s\" is not supported (default, llama3)",
                       path, type);
    c->rope_scaling = BS_ROPE_SCALING_LLAMA3;
    st = get_float(path, scaling, "factor", 1, &c->rope_factor, err);
    if (!st) st = get_float(path, scaling, "low_freq_factor", 1, &c->rope_low_freq_factor, err);
    if (!st) st = get_float(path, scaling, "high_freq_factor", 1, &c->rope_high_freq_factor, err);
    if (!st) st = get_int(path, scaling, "original_max_position_embeddings", 1, &c->rope_orig_max_pos, err);
    return st;
}

static bs_status parse_config(bs_model *m, const char *path, const json_t *root, bs_error *err) {
    bs_model_config *c = &m->cfg;
    memset(c, 0, sizeof *c);
    bs_status st = parse_arch(path, root, &c->arch, err);
    if (st) return st;
    int qwen = c->arch == BS_ARCH_QWEN2 || c->arch == BS_ARCH_QWEN3;
    c->rms_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->max_pos = qwen ? 32768 : c->arch == BS_ARCH_MISTRAL ? 4096 * 32 : 2048;
    c->sliding_window = c->arch == BS_ARCH_MISTRAL ? 4096 : 0;
    c->rope_neox = 1;
    c->head_dim = -1;
    if (c->arch == BS_ARCH_QWEN3) c->head_dim = 128;

    const struct { const char *key; int *dst; int required; } ints[] = {
        {"vocab_size", &c->n_vocab, 1}, {"hidden_size", &c->dim, 1},
        {"num_hidden_layers", &c->n_layers, 1}, {"num_attention_heads", &c->n_heads, 1},
        {"intermediate_size", &c->ffn_dim, 1}, {"max_position_embeddings", &c->max_pos, 0},
        {"head_dim", &c->head_dim, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !st; i++)
        st = get_int(path, root, ints[i].key, ints[i].required, ints[i].dst, err);
    c->n_kv_heads = c->n_heads;
    if (!st) st = get_int(path, root, "num_key_value_heads", 0, &c->n_kv_heads, err);
    if (!st) st = get_float(path, root, "rms_norm_eps", 0, &c->rms_eps, err);
    if (!st) st = get_bool(path, root, "tie_word_embeddings", &c->tied_embeddings, err);
    if (!st) st = parse_rope(path, root, c, err);
    if (st) return st;

    const json_t *quant = json_object_get(root, "quantization_config");
    if (quant && !json_is_null(quant)) {
        const char *method = json_string_value(json_object_get(quant, "quant_method"));
        return bs_fail(err, BS_EUNSUPPORTED, "%s: quantized checkpoints (quant_method %s) are not supported; "
                       "use F32/F16/BF16 safetensors or a GGUF file", path, method ? method : "unknown");
    }
    const char *act = json_string_value(json_object_get(root, "hidden_act"));
    if (act && strcmp(act, "silu") != 0)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: hidden_act \"%s\" is not supported (silu)", path, act);
    if (c->head_dim < 0) {
        if (c->n_heads <= 0 || c->dim % c->n_heads)
            return bs_fail(err, BS_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                           path, c->dim, c->n_heads);
        c->head_dim = c->dim / c->n_heads;
    }

    int attention_bias = 0, mlp_bias = 0, use_sliding = 0;
    st = get_bool(path, root, "attention_bias", &attention_bias, err);
    if (!st) st = get_bool(path, root, "mlp_bias", &mlp_bias, err);
    if (!st) st = get_bool(path, root, "use_sliding_window", &use_sliding, err);
    if (st) return st;
    switch (c->arch) {
    case BS_ARCH_LLAMA:
        c->qkv_bias = c->o_bias = attention_bias;
        c->mlp_bias = mlp_bias;
        break;
    case BS_ARCH_MISTRAL:
        if (json_is_null(json_object_get(root, "sliding_window"))) c->sliding_window = 0;
        else st = get_int(path, root, "sliding_window", 0, &c->sliding_window, err);
        break;
    case BS_ARCH_QWEN2: c->qkv_bias = 1; break;
    case BS_ARCH_QWEN3:
        c->qkv_bias = c->o_bias = attention_bias;
        c->qk_norm = 1;
        break;
    }
    if (!st && qwen && use_sliding)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: use_sliding_window is not supported for %s", path,
                       model_arch_name(c->arch));
    if (!st) st = add_eos_ids(m, path, root, err);
    return st;
}

/* ---- the directory ------------------------------------------------------- */

static bs_status read_config_files(bs_model *m, const char *dir, bs_error *err) {
    char *path = bs_path_join(dir, "config.json");
    if (!path) return bs_fail(err, BS_ENOMEM, "out of memory");
    json_t *root = NULL;
    bs_status st = bs_file_exists(path) ? load_json(path, &root, err)
                                        : bs_fail(err, BS_ENOTFOUND, "%s: no config.json in the model directory", dir);
    if (!st) st = parse_config(m, path, root, err);
    if (!st) st = model_check_config(&m->cfg, path, err);
    json_decref(root);
    free(path);
    if (st) return st;

    path = bs_path_join(dir, "generation_config.json");
    if (!path) return bs_fail(err, BS_ENOMEM, "out of memory");
    root = NULL;
    if (bs_file_exists(path)) {
        st = load_json(path, &root, err);
        if (!st) st = add_eos_ids(m, path, root, err);
    }
    json_decref(root);
    free(path);
    return st;
}

bs_status load_hf(bs_model *m, const char *dir, bs_error *err) {
    bs_status st = read_config_files(m, dir, err);
    if (!st) st = st_set_open_dir(dir, &m->st, err);
    if (st) return st;

    size_t n = (size_t)st_set_tensor_count(m->st);
    const bs_tensor **views = malloc((n ? n : 1) * sizeof *views);
    if (!views) return bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
    for (size_t i = 0; i < n; i++) views[i] = st_set_tensor(m->st, i);
    weight_source src;
    st = weight_source_init(&src, dir, m->st, hf_weight_names, views, n, err);
    free(views);
    if (st) return st;
    /* transformers ties the head when told to, and leaves it untrained (so no
     * checkpoint omits it) otherwise: an absent lm_head means tied. */
    if (!weight_source_find(&src, hf_weight_names[W_LM_HEAD])) m->cfg.tied_embeddings = 1;
    st = model_bind_weights(m, &src, err);
    weight_source_free(&src);
    if (st) return st;

    char *tok_path = bs_path_join(dir, "tokenizer.json");
    if (!tok_path) return bs_fail(err, BS_ENOMEM, "out of memory");
    if (bs_file_exists(tok_path)) st = tok_open_hf(dir, &m->tok, err);
    free(tok_path);
    return st;
}
