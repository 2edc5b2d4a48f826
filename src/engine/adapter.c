/* engine/adapter.c — LoRA adapters: PEFT load/save, construction from
 * tensors, merging into a Hugging Face checkpoint.
 *
 * Every path builds an adapter the same way: the config fixes which
 * (layer, projection) pairs exist, so one allocation is sized and carved
 * into A/B views first; then each tensor is matched by its PEFT name to its
 * view (shape-checked, converted to f32); then a completeness check names
 * the first missing tensor. */
#include "engine/adapter.h"

#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/paths.h"
#include "engine/model_impl.h"
#include "format/safetensors_write.h"
#include "kernels/kernels.h"

#define PEFT_PREFIX "base_model.model.model.layers."

/* PEFT module paths and the base's weight roles, in bs_lin order. */
static const char *const lin_module[BS_LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                     "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                     "mlp.down_proj"};
static const weight_role lin_role[BS_LIN_COUNT] = {W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN};

typedef struct lora_slot {
    float *A, *B; /* NULL when the projection is not adapted */
    unsigned char have[2];
} lora_slot;

struct bs_adapter {
    bs_model *base;
    bs_adapter_config cfg;
    char *base_model;        /* owned string behind cfg.base_model */
    char *source;            /* directory loaded from, or NULL */
    float scale;
    uint64_t id;
    int refs;
    int n_layers;
    unsigned char *layer_on; /* [n_layers]: layers_to_transform */
    lora_slot *slots;        /* [n_layers][BS_LIN_COUNT] */
    float *mem;              /* every A and B */
};

static const char *lin_name(int lin) { return strchr(lin_module[lin], '.') + 1; }

static void lin_dims(const bs_model *m, int layer, int lin, int *out, int *in) {
    bs_layer_weights lw;
    model_layer_weights(m, layer, &lw);
    *out = lw.w[lin].rows;
    *in = lw.w[lin].cols;
}

/* GGUF llama files store Q/K rows of each head as adjacent pairs: engine row
 * h*hd + 2i + j holds Hugging Face row h*hd + j*hd/2 + i. */
static int permuted(const bs_adapter *a, int lin) {
    return !model_config(a->base)->rope_neox && (lin == BS_LIN_Q || lin == BS_LIN_K);
}

static void permute_rows(float *dst, const float *src, int rows, int cols, int hd, int to_engine) {
    for (int r = 0; r < rows; r++) {
        int h = r / hd, k = r % hd, i = k / 2, j = k % 2;
        int hf = h * hd + j * (hd / 2) + i;
        const float *s = src + (size_t)(to_engine ? hf : r) * cols;
        float *d = dst + (size_t)(to_engine ? r : hf) * cols;
        memcpy(d, s, (size_t)cols * sizeof *d);
    }
}

/* ---- construction ---------------------------------------------------------- */

void adapter_close(bs_adapter *a) {
    if (!a || __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    free(a->mem);
    free(a->slots);
    free(a->layer_on);
    free(a->base_model);
    free(a->source);
    free(a);
}

bs_adapter *adapter_retain(bs_adapter *a) {
    __atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
    return a;
}

/* Check c, size and carve the allocation.  layers: which layers carry the
 * adapter (NULL: all). */
static bs_status adapter_new(bs_model *base, const bs_adapter_config *c, const unsigned char *layers, const char *src,
                             bs_adapter **out, bs_error *err) {
    *out = NULL;
    int L = model_config(base)->n_layers;
    if (c->rank < 1 || c->rank > BS_ADAPTER_MAX_RANK)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: r = %d is outside 1..%d", src, c->rank, BS_ADAPTER_MAX_RANK);
    if (!isfinite(c->alpha)) return bs_fail(err, BS_EINVAL, "%s: lora_alpha is not finite", src);
    if (!c->targets || c->targets >> BS_LIN_COUNT)
        return bs_fail(err, BS_EINVAL, "%s: no target modules among q/k/v/o/gate/up/down_proj", src);
    bs_adapter *a = calloc(1, sizeof *a);
    if (!a) return bs_fail(err, BS_ENOMEM, "%s: out of memory", src);
    static uint64_t next_id;
    a->base = base;
    a->cfg = *c;
    a->refs = 1;
    a->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
    a->n_layers = L;
    a->scale = c->rslora ? c->alpha / sqrtf((float)c->rank) : c->alpha / (float)c->rank;
    a->base_model = c->base_model ? strdup(c->base_model) : NULL;
    a->cfg.base_model = a->base_model;
    a->layer_on = malloc((size_t)L);
    a->slots = calloc((size_t)L * BS_LIN_COUNT, sizeof *a->slots);
    if (!a->layer_on || !a->slots || (c->base_model && !a->base_model)) {
        adapter_close(a);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", src);
    }
    size_t total = 0;
    for (int l = 0; l < L; l++) {
        a->layer_on[l] = layers ? layers[l] : 1;
        for (int lin = 0; a->layer_on[l] && lin < BS_LIN_COUNT; lin++) {
            if (!(c->targets >> lin & 1)) continue;
            int o, i;
            lin_dims(base, l, lin, &o, &i);
            total += (size_t)c->rank * (size_t)(i + o);
        }
    }
    a->mem = malloc((total ? total : 1) * sizeof *a->mem);
    if (!a->mem) {
        adapter_close(a);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory for %zu LoRA parameters", src, total);
    }
    float *p = a->mem;
    for (int l = 0; l < L; l++)
        for (int lin = 0; a->layer_on[l] && lin < BS_LIN_COUNT; lin++) {
            if (!(c->targets >> lin & 1)) continue;
            int o, i;
            lin_dims(base, l, lin, &o, &i);
            lora_slot *s = &a->slots[l * BS_LIN_COUNT + lin];
            s->A = p;
            p += (size_t)c->rank * i;
            s->B = p;
            p += (size_t)c->rank * o;
        }
    *out = a;
    return BS_OK;
}

/* "base_model.model.model.layers.N.<module>.lora_{A,B}[.default].weight". */
static int parse_name(const char *name, int *layer, int *lin, int *is_b) {
    size_t n = strlen(PEFT_PREFIX);
    if (strncmp(name, PEFT_PREFIX, n) != 0 || !isdigit((unsigned char)name[n])) return 0;
    char *end;
    long l = strtol(name + n, &end, 10);
    if (*end != '.' || l > INT_MAX) return 0;
    const char *p = end + 1;
    for (int i = 0; i < BS_LIN_COUNT; i++) {
        size_t m = strlen(lin_module[i]);
        if (strncmp(p, lin_module[i], m) != 0 || strncmp(p + m, ".lora_", 6) != 0) continue;
        const char *q = p + m + 6;
        if ((*q != 'A' && *q != 'B') || (strcmp(q + 1, ".weight") != 0 && strcmp(q + 1, ".default.weight") != 0))
            return 0;
        *layer = (int)l;
        *lin = i;
        *is_b = *q == 'B';
        return 1;
    }
    return 0;
}

/* Match one tensor to its view and copy it in as f32.  hf_order: B rows are
 * in Hugging Face order (a PEFT file), to be permuted for a GGUF llama base. */
static bs_status place(bs_adapter *a, const char *src, const char *name, bs_dtype dtype, const void *data,
                       int64_t rows, int64_t cols, int hf_order, bs_error *err) {
    int layer, lin, is_b;
    if (!parse_name(name, &layer, &lin, &is_b))
        return bs_fail(err, BS_EFORMAT,
                       "%s: tensor %s is not the lora_A/lora_B of a q/k/v/o/gate/up/down_proj layer "
                       "(the only tensors basalt serves)", src, name);
    if (layer >= a->n_layers)
        return bs_fail(err, BS_EFORMAT, "%s: tensor %s: layer %d, but the base has %d layers", src, name, layer,
                       a->n_layers);
    if (!(a->cfg.targets >> lin & 1))
        return bs_fail(err, BS_EFORMAT, "%s: tensor %s adapts %s, which target_modules does not list", src, name,
                       lin_name(lin));
    if (!a->layer_on[layer])
        return bs_fail(err, BS_EFORMAT, "%s: tensor %s: layer %d is not in layers_to_transform", src, name, layer);
    lora_slot *s = &a->slots[layer * BS_LIN_COUNT + lin];
    int o, i, r = a->cfg.rank;
    lin_dims(a->base, layer, lin, &o, &i);
    int64_t want_rows = is_b ? o : r, want_cols = is_b ? r : i;
    if (rows != want_rows || cols != want_cols)
        return bs_fail(err, BS_EFORMAT,
                       "%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld] (r = %d; %s is %d -> %d)", src,
                       name, (long long)rows, (long long)cols, (long long)want_rows, (long long)want_cols, r,
                       lin_name(lin), i, o);
    if (s->have[is_b]) return bs_fail(err, BS_EFORMAT, "%s: tensor %s appears twice", src, name);
    float *dst = is_b ? s->B : s->A;
    kern_dequant(dtype, data, dst, rows * cols);
    if (is_b && hf_order && permuted(a, lin)) {
        float *tmp = malloc((size_t)(rows * cols) * sizeof *tmp);
        if (!tmp) return bs_fail(err, BS_ENOMEM, "%s: out of memory", src);
        memcpy(tmp, dst, (size_t)(rows * cols) * sizeof *tmp);
        permute_rows(dst, tmp, (int)rows, (int)cols, model_config(a->base)->head_dim, 1);
        free(tmp);
    }
    s->have[is_b] = 1;
    return BS_OK;
}

static bs_status check_complete(const bs_adapter *a, const char *src, bs_error *err) {
    for (int l = 0; l < a->n_layers; l++)
        for (int lin = 0; lin < BS_LIN_COUNT; lin++) {
            const lora_slot *s = &a->slots[l * BS_LIN_COUNT + lin];
            for (int b = 0; s->A && b < 2; b++)
                if (!s->have[b])
                    return bs_fail(err, BS_EFORMAT, "%s: missing tensor " PEFT_PREFIX "%d.%s.lora_%c.weight", src, l,
                                   lin_module[lin], b ? 'B' : 'A');
        }
    return BS_OK;
}

bs_status adapter_from_tensors(bs_model *base, const bs_adapter_config *c, const bs_adapter_tensor *tensors, int n,
                               bs_adapter **out, bs_error *err) {
    bs_adapter *a;
    bs_status st = adapter_new(base, c, NULL, "adapter", &a, err);
    for (int i = 0; !st && i < n; i++)
        st = place(a, "adapter", tensors[i].name, BS_DTYPE_F32, tensors[i].data, tensors[i].rows, tensors[i].cols, 0,
                   err);
    if (!st) st = check_complete(a, "adapter", err);
    if (st) {
        adapter_close(a);
        return st;
    }
    *out = a;
    return BS_OK;
}

/* ---- adapter_config.json --------------------------------------------------- */

static int json_truthy(const json_t *v) { return v && !json_is_null(v) && !json_is_false(v); }

/* target_modules: a list of projection names, or "all-linear". */
static bs_status parse_targets(const char *path, const json_t *v, unsigned *targets, bs_error *err) {
    *targets = 0;
    if (json_is_string(v)) {
        if (strcmp(json_string_value(v), "all-linear") == 0) {
            *targets = (1u << BS_LIN_COUNT) - 1;
            return BS_OK;
        }
        return bs_fail(err, BS_EUNSUPPORTED,
                       "%s: target_modules \"%s\": a regular expression; basalt takes a list of module names or "
                       "\"all-linear\"", path, json_string_value(v));
    }
    if (!json_is_array(v) || !json_array_size(v))
        return bs_fail(err, BS_EFORMAT, "%s: \"target_modules\" must be a non-empty list or \"all-linear\"", path);
    size_t k;
    const json_t *e;
    json_array_foreach(v, k, e) {
        const char *name = json_string_value(e);
        int found = -1;
        for (int lin = 0; name && lin < BS_LIN_COUNT; lin++) {
            size_t nl = strlen(name), ml = strlen(lin_name(lin));
            /* PEFT matches a name as a suffix of the module path. */
            if (strcmp(name, lin_name(lin)) == 0 ||
                (nl > ml && strcmp(name + nl - ml, lin_name(lin)) == 0 && name[nl - ml - 1] == '.'))
                found = lin;
        }
        if (found < 0)
            return bs_fail(err, BS_EUNSUPPORTED,
                           "%s: target_modules[%zu] \"%s\" is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, "
                           "up_proj, down_proj", path, k, name ? name : "(not a string)");
        *targets |= 1u << found;
    }
    return BS_OK;
}

/* layers_to_transform: null (all), one index or a list. */
static bs_status parse_layers(const char *path, const json_t *v, int n_layers, unsigned char **out, bs_error *err) {
    *out = NULL;
    if (!v || json_is_null(v)) return BS_OK;
    unsigned char *on = calloc((size_t)n_layers, 1);
    if (!on) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t k = 0; k < n; k++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, k) : v;
        json_int_t l = json_is_integer(e) ? json_integer_value(e) : -1;
        if (l < 0 || l >= n_layers) {
            free(on);
            return bs_fail(err, BS_EFORMAT, "%s: layers_to_transform: entry %zu is not a layer index 0..%d", path, k,
                           n_layers - 1);
        }
        on[l] = 1;
    }
    *out = on;
    return BS_OK;
}

/* Everything but plain LoRA is refused by name rather than served wrong. */
static bs_status parse_config(const char *path, const json_t *j, bs_adapter_config *c, bs_error *err) {
    const json_t *v;
    if (!json_is_object(j)) return bs_fail(err, BS_EFORMAT, "%s: not a JSON object", path);
    v = json_object_get(j, "peft_type");
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA") != 0)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: peft_type is %s; basalt serves only \"LORA\" adapters", path,
                       json_is_string(v) ? json_string_value(v) : "missing");
    v = json_object_get(j, "r");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > BS_ADAPTER_MAX_RANK)
        return bs_fail(err, BS_EFORMAT, "%s: \"r\" must be an integer 1..%d", path, BS_ADAPTER_MAX_RANK);
    c->rank = (int)json_integer_value(v);
    v = json_object_get(j, "lora_alpha");
    if (!json_is_number(v)) return bs_fail(err, BS_EFORMAT, "%s: \"lora_alpha\" must be a number", path);
    c->alpha = (float)json_number_value(v);
    v = json_object_get(j, "use_rslora");
    if (v && !json_is_boolean(v) && !json_is_null(v))
        return bs_fail(err, BS_EFORMAT, "%s: \"use_rslora\" must be a boolean", path);
    c->rslora = json_is_true(v);
    static const char *const refused[] = {"fan_in_fan_out", "use_dora", "lora_bias"};
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
        if (json_truthy(json_object_get(j, refused[k])))
            return bs_fail(err, BS_EUNSUPPORTED, "%s: \"%s\": true is not supported", path, refused[k]);
    v = json_object_get(j, "bias");
    if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "none") != 0))
        return bs_fail(err, BS_EUNSUPPORTED, "%s: \"bias\" must be \"none\" (trained biases are not supported)", path);
    v = json_object_get(j, "modules_to_save");
    if (v && !json_is_null(v) && !(json_is_array(v) && !json_array_size(v)))
        return bs_fail(err, BS_EUNSUPPORTED, "%s: \"modules_to_save\" is not supported (only LoRA A/B are served)",
                       path);
    static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
    for (size_t k = 0; k < 2; k++) {
        v = json_object_get(j, patterns[k]);
        if (v && !json_is_null(v) && !(json_is_object(v) && !json_object_size(v)))
            return bs_fail(err, BS_EUNSUPPORTED, "%s: a non-empty \"%s\" is not supported (one r and alpha for all)",
                           path, patterns[k]);
    }
    v = json_object_get(j, "init_lora_weights");
    static const char *const rewrites_base[] = {"pissa", "olora", "corda", "loftq"};
    for (size_t k = 0; json_is_string(v) && k < 4; k++)
        if (strncasecmp(json_string_value(v), rewrites_base[k], strlen(rewrites_base[k])) == 0)
            return bs_fail(err, BS_EUNSUPPORTED,
                           "%s: init_lora_weights \"%s\" changes the base weights; convert the adapter to plain LoRA",
                           path, json_string_value(v));
    bs_status st = parse_targets(path, json_object_get(j, "target_modules"), &c->targets, err);
    if (st) return st;
    v = json_object_get(j, "base_model_name_or_path");
    c->base_model = json_is_string(v) ? json_string_value(v) : NULL;
    return BS_OK;
}

bs_status adapter_load_peft(bs_model *base, const char *dir, bs_adapter **out, bs_error *err) {
    *out = NULL;
    char *cpath = bs_path_join(dir, "adapter_config.json"), *wpath = bs_path_join(dir, "adapter_model.safetensors");
    char *text = NULL;
    size_t len = 0;
    json_t *j = NULL;
    st_file *f = NULL;
    bs_adapter *a = NULL;
    unsigned char *layers = NULL;
    bs_adapter_config c = {0};
    bs_status st = cpath && wpath ? BS_OK : bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
    if (!st && !bs_is_directory(dir)) st = bs_fail(err, BS_ENOTFOUND, "%s: not a directory", dir);
    if (!st) st = bs_file_read(cpath, &text, &len, err);
    if (!st) {
        json_error_t je;
        j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j) st = bs_fail(err, BS_EFORMAT, "%s:%d:%d: %s", cpath, je.line, je.column, je.text);
    }
    if (!st) st = parse_config(cpath, j, &c, err);
    if (!st) st = parse_layers(cpath, json_object_get(j, "layers_to_transform"), model_config(base)->n_layers, &layers, err);
    if (!st && !bs_file_exists(wpath)) {
        char *bin = bs_path_join(dir, "adapter_model.bin");
        st = bin && bs_file_exists(bin)
                 ? bs_fail(err, BS_EUNSUPPORTED, "%s: adapter_model.bin (a pickle) is not read; save the adapter with "
                                                 "safe_serialization=True", dir)
                 : bs_fail(err, BS_ENOTFOUND, "%s: missing adapter_model.safetensors", dir);
        free(bin);
    }
    if (!st) st = st_open(wpath, &f, err);
    if (!st) st = adapter_new(base, &c, layers, wpath, &a, err);
    for (uint64_t i = 0; !st && i < st_tensor_count(f); i++) {
        const bs_tensor *t = st_tensor(f, i);
        if (t->ndim != 2)
            st = bs_fail(err, BS_EFORMAT, "%s: tensor %s has %d dimensions, expected 2", wpath, t->name, t->ndim);
        else
            st = place(a, wpath, t->name, t->dtype, t->data, t->shape[0], t->shape[1], 1, err);
    }
    if (!st) st = check_complete(a, wpath, err);
    if (!st && !(a->source = strdup(dir))) st = bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
    if (st) {
        adapter_close(a);
        a = NULL;
    }
    st_close(f);
    json_decref(j); /* after adapter_new copied base_model out of it */
    free(layers);
    free(text);
    free(cpath);
    free(wpath);
    *out = a;
    return st;
}

/* ---- saving ----------------------------------------------------------------- */

typedef struct save_item {
    char name[96];
    int layer, lin, is_b;
} save_item;

typedef struct save_ctx {
    const bs_adapter *a;
    float *tmp; /* [widest B]: un-permuted rows */
} save_ctx;

static void store_f32(bs_dtype dtype, const float *src, void *dst, size_t n) {
    if (dtype == BS_DTYPE_F32) {
        memcpy(dst, src, n * sizeof *src);
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = dtype == BS_DTYPE_BF16 ? bs_f32_to_bf16(src[i]) : bs_f32_to_f16(src[i]);
}

static bs_status fill_lora(void *ctx, const st_write_tensor *t, void *dst, bs_error *err) {
    (void)err;
    const save_ctx *sc = ctx;
    const save_item *it = t->user;
    const lora_slot *s = &sc->a->slots[it->layer * BS_LIN_COUNT + it->lin];
    const float *src = it->is_b ? s->B : s->A;
    size_t n = (size_t)(t->shape[0] * t->shape[1]);
    if (it->is_b && permuted(sc->a, it->lin)) {
        permute_rows(sc->tmp, src, (int)t->shape[0], (int)t->shape[1], model_config(sc->a->base)->head_dim, 0);
        src = sc->tmp;
    }
    store_f32(t->dtype, src, dst, n);
    return BS_OK;
}

static json_t *config_json(const bs_adapter *a, const char *base_model) {
    const bs_adapter_config *c = &a->cfg;
    json_t *targets = json_array(), *layers = json_null();
    for (int lin = 0; lin < BS_LIN_COUNT; lin++)
        if (c->targets >> lin & 1) json_array_append_new(targets, json_string(lin_name(lin)));
    int all = 1;
    for (int l = 0; l < a->n_layers; l++) all &= a->layer_on[l];
    if (!all) {
        layers = json_array();
        for (int l = 0; l < a->n_layers; l++)
            if (a->layer_on[l]) json_array_append_new(layers, json_integer(l));
    }
    /* lora_alpha is an int in PEFT unless it was given as a float. */
    json_t *alpha = c->alpha == floorf(c->alpha) && fabsf(c->alpha) < 1e9f ? json_integer((json_int_t)c->alpha)
                                                                             : json_real(c->alpha);
    return json_pack("{s:{},s:n,s:s?,s:s,s:b,s:b,s:b,s:n,s:o,s:o,s:b,s:f,s:n,s:s,s:n,s:s,s:i,s:{},s:n,s:o,s:s,s:b,s:b}",
                     "alpha_pattern", "auto_mapping", "base_model_name_or_path", base_model, "bias", "none",
                     "fan_in_fan_out", 0, "inference_mode", 1, "init_lora_weights", 1, "layers_pattern",
                     "layers_to_transform", layers, "lora_alpha", alpha, "lora_bias", 0, "lora_dropout", 0.0,
                     "megatron_config", "megatron_core", "megatron.core", "modules_to_save", "peft_type", "LORA", "r",
                     c->rank, "rank_pattern", "revision", "target_modules", targets, "task_type", "CAUSAL_LM",
                     "use_dora", 0, "use_rslora", c->rslora);
}

static bs_status write_text(const char *path, const char *text, bs_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return bs_fail(err, BS_EIO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fputs(text, f) >= 0;
    if (fclose(f) != 0) ok = 0;
    return ok ? BS_OK : bs_fail(err, BS_EIO, "%s: write failed", path);
}

bs_status adapter_save_peft(const bs_adapter *a, const char *dir, const char *base_model, bs_dtype dtype,
                            bs_error *err) {
    if (dtype != BS_DTYPE_F32 && dtype != BS_DTYPE_F16 && dtype != BS_DTYPE_BF16)
        return bs_fail(err, BS_EINVAL, "%s: adapters are saved as F32, F16 or BF16, not %s", dir, bs_dtype_name(dtype));
    bs_status st = bs_make_dirs(dir, 0755, err);
    if (st) return st;
    int n = 0, widest = 0;
    for (int k = 0; k < a->n_layers * BS_LIN_COUNT; k++)
        if (a->slots[k].A) n += 2;
    save_item *items = calloc((size_t)n + 1, sizeof *items);
    st_write_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    save_ctx sc = {a, NULL};
    if (!items || !ts) st = bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
    for (int l = 0, k = 0; !st && l < a->n_layers; l++)
        for (int lin = 0; lin < BS_LIN_COUNT; lin++) {
            if (!a->slots[l * BS_LIN_COUNT + lin].A) continue;
            int o, in;
            lin_dims(a->base, l, lin, &o, &in);
            if (o > widest) widest = o;
            for (int b = 0; b < 2; b++, k++) {
                items[k] = (save_item){.layer = l, .lin = lin, .is_b = b};
                snprintf(items[k].name, sizeof items[k].name, PEFT_PREFIX "%d.%s.lora_%c.weight", l, lin_module[lin],
                         b ? 'B' : 'A');
                ts[k] = (st_write_tensor){.name = items[k].name, .dtype = dtype, .ndim = 2, .user = &items[k]};
                ts[k].shape[0] = b ? o : a->cfg.rank;
                ts[k].shape[1] = b ? a->cfg.rank : in;
            }
        }
    if (!st && !(sc.tmp = malloc(((size_t)widest * a->cfg.rank + 1) * sizeof *sc.tmp)))
        st = bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
    char *wpath = bs_path_join(dir, "adapter_model.safetensors"), *cpath = bs_path_join(dir, "adapter_config.json");
    if (!st && (!wpath || !cpath)) st = bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
    if (!st) st = st_write_file(wpath, ts, (size_t)n, fill_lora, &sc, err);
    if (!st) {
        json_t *j = config_json(a, base_model ? base_model : a->cfg.base_model);
        char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        st = text ? write_text(cpath, text, err) : bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
        free(text);
    }
    free(wpath);
    free(cpath);
    free(sc.tmp);
    free(ts);
    free(items);
    return st;
}

/* ---- merging ----------------------------------------------------------------- */

typedef struct merge_ctx {
    const bs_adapter *a;
    const bs_tensor **adapted; /* [n_layers][BS_LIN_COUNT]: the base tensor of each adapted projection */
    float *w;                  /* [widest matrix] f32 work */
} merge_ctx;

static bs_status fill_merged(void *ctx, const st_write_tensor *t, void *dst, bs_error *err) {
    (void)err;
    const merge_ctx *mc = ctx;
    const bs_adapter *a = mc->a;
    const bs_tensor *src = t->user;
    for (int k = 0; k < a->n_layers * BS_LIN_COUNT; k++) {
        if (mc->adapted[k] != src) continue;
        const lora_slot *s = &a->slots[k];
        int rows = (int)src->shape[0], cols = (int)src->shape[1];
        kern_dequant(src->dtype, src->data, mc->w, (int64_t)rows * cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, a->cfg.rank, a->scale, s->B, a->cfg.rank,
                    s->A, cols, 1.0f, mc->w, cols);
        store_f32(src->dtype, mc->w, dst, (size_t)rows * cols);
        return BS_OK;
    }
    memcpy(dst, src->data, src->nbytes);
    return BS_OK;
}

static bs_status copy_file(const char *from, const char *to, bs_error *err) {
    char *data = NULL;
    size_t n = 0;
    bs_status st = bs_file_read(from, &data, &n, err);
    if (st) return st;
    FILE *f = fopen(to, "wb");
    if (!f) st = bs_fail(err, BS_EIO, "%s: cannot create: %s", to, strerror(errno));
    else if ((n && fwrite(data, 1, n, f) != n) | (fclose(f) != 0)) st = bs_fail(err, BS_EIO, "%s: write failed", to);
    free(data);
    return st;
}

/* What a Hugging Face model directory carries besides weights. */
static const char *const side_files[] = {
    "config.json",          "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "tokenizer.model",     "vocab.json",     "merges.txt",
    "added_tokens.json",    "chat_template.jinja",    "chat_template.json",
};

static bs_status copy_side_files(const char *from_dir, const char *to_dir, bs_error *err) {
    bs_status st = BS_OK;
    for (size_t i = 0; !st && i < sizeof side_files / sizeof side_files[0]; i++) {
        char *from = bs_path_join(from_dir, side_files[i]), *to = bs_path_join(to_dir, side_files[i]);
        if (!from || !to) st = bs_fail(err, BS_ENOMEM, "out of memory");
        else if (bs_file_exists(from)) st = copy_file(from, to, err);
        free(from);
        free(to);
    }
    return st;
}

bs_status adapter_merge_hf(const bs_adapter *a, const char *out_dir, bs_error *err) {
    const bs_model *m = a->base;
    if (!m->st)
        return bs_fail(err, BS_EUNSUPPORTED,
                       m->gguf ? "merge: the base is a GGUF file; merge from the Hugging Face checkpoint it was "
                                 "converted from (basalt writes merged Hugging Face safetensors)"
                               : "merge: the base has no Hugging Face checkpoint (random weights)");
    uint64_t n = st_set_tensor_count(m->st);
    const char *first = st_set_tensor_path(m->st, st_set_tensor(m->st, 0)->name);
    const char *slash = strrchr(first, '/');
    char *base_dir = slash ? strndup(first, (size_t)(slash - first)) : strdup(".");
    char *rb = base_dir ? realpath(base_dir, NULL) : NULL, *ro = NULL;
    merge_ctx mc = {a, calloc((size_t)a->n_layers * BS_LIN_COUNT, sizeof *mc.adapted), NULL};
    st_write_tensor *ts = calloc(n, sizeof *ts);
    char *wpath = bs_path_join(out_dir, "model.safetensors");
    bs_status st = base_dir && mc.adapted && ts && wpath ? BS_OK : bs_fail(err, BS_ENOMEM, "merge: out of memory");
    if (!st) st = bs_make_dirs(out_dir, 0755, err);
    if (!st && rb && (ro = realpath(out_dir, NULL)) && strcmp(rb, ro) == 0)
        st = bs_fail(err, BS_EINVAL, "merge: %s is the base model's own directory; choose another", out_dir);
    size_t widest = 0;
    for (int l = 0; !st && l < a->n_layers; l++)
        for (int lin = 0; lin < BS_LIN_COUNT; lin++) {
            if (!a->slots[l * BS_LIN_COUNT + lin].A) continue;
            char name[128];
            snprintf(name, sizeof name, hf_weight_names[lin_role[lin]], l);
            const bs_tensor *t = st_set_find(m->st, name);
            if (!t) {
                st = bs_fail(err, BS_ENOTFOUND, "merge: the base has no tensor %s", name);
                break;
            }
            mc.adapted[l * BS_LIN_COUNT + lin] = t;
            if ((size_t)bs_tensor_numel(t) > widest) widest = (size_t)bs_tensor_numel(t);
        }
    if (!st && !(mc.w = malloc((widest + 1) * sizeof *mc.w))) st = bs_fail(err, BS_ENOMEM, "merge: out of memory");
    for (uint64_t i = 0; !st && i < n; i++) {
        const bs_tensor *t = st_set_tensor(m->st, i);
        ts[i] = (st_write_tensor){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .user = (void *)t};
        memcpy(ts[i].shape, t->shape, sizeof t->shape);
    }
    if (!st) st = st_write_file(wpath, ts, n, fill_merged, &mc, err);
    if (!st) st = copy_side_files(base_dir, out_dir, err);
    free(wpath);
    free(ts);
    free(mc.w);
    free(mc.adapted);
    free(ro);
    free(rb);
    free(base_dir);
    return st;
}

/* ---- accessors ----------------------------------------------------------------- */

const bs_model *adapter_base(const bs_adapter *a) { return a->base; }
const bs_adapter_config *adapter_config(const bs_adapter *a) { return &a->cfg; }
float adapter_scale(const bs_adapter *a) { return a->scale; }
const char *adapter_source(const bs_adapter *a) { return a->source; }
uint64_t adapter_id(const bs_adapter *a) { return a->id; }

int adapter_lora(const bs_adapter *a, int layer, bs_lin lin, const float **A, const float **B) {
    const lora_slot *s = &a->slots[layer * BS_LIN_COUNT + lin];
    *A = s->A;
    *B = s->B;
    return s->A != NULL;
}
