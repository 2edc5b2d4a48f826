/* tokenizer/tok_hf.c — build a tokenizer from a Hugging Face tokenizer.json
 * (model.type BPE; normalizer NFC / Prepend / Replace; pre_tokenizer
 * ByteLevel / Split / Digits / Metaspace / Sequence; decoder; TemplateProcessing
 * post-processor), plus tokenizer_config.json and generation_config.json for
 * BOS/EOS rules and stop tokens.  Unsupported components fail with a message
 * naming them rather than tokenizing differently from the original. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "tokenizer/tok_internal.h"

#define MARKER "\xE2\x96\x81"

static bs_status load_json(const char *path, json_t **out, bs_error *err) {
    char *data;
    size_t size;
    *out = NULL;
    bs_status s = bs_file_read(path, &data, &size, err);
    if (s) return s;
    json_error_t jerr;
    *out = json_loadb(data, size, 0, &jerr);
    free(data);
    if (!*out)
        return bs_fail(err, BS_EFORMAT, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
    return BS_OK;
}

static const char *type_of(const json_t *node) { return json_string_value(json_object_get(node, "type")); }

static int is_type(const json_t *node, const char *type) {
    const char *t = type_of(node);
    return t && strcmp(t, type) == 0;
}

static int flag(const json_t *obj, const char *key, int dflt) {
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* Whether a ByteLevel component appears anywhere under node. */
static int has_byte_level(const json_t *node) {
    if (is_type(node, "ByteLevel")) return 1;
    const char *lists[] = {"pretokenizers", "decoders", "processors"};
    for (int k = 0; k < 3; k++) {
        const json_t *arr = json_object_get(node, lists[k]);
        size_t i;
        const json_t *child;
        json_array_foreach(arr, i, child) if (has_byte_level(child)) return 1;
    }
    return 0;
}

static bs_status walk_normalizer(bs_tokenizer *t, const json_t *n, const char *path, bs_error *err) {
    if (!n || json_is_null(n)) return BS_OK;
    const char *type = type_of(n);
    if (!type) return bs_fail(err, BS_EFORMAT, "%s: normalizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        const json_t *child;
        json_array_foreach(json_object_get(n, "normalizers"), i, child) {
            bs_status s = walk_normalizer(t, child, path, err);
            if (s) return s;
        }
        return BS_OK;
    }
    if (strcmp(type, "NFC") == 0) {
        t->nfc = 1;
        return BS_OK;
    }
    const char *prepend = json_string_value(json_object_get(n, "prepend"));
    if (strcmp(type, "Prepend") == 0 && prepend && strcmp(prepend, MARKER) == 0) {
        t->prefix = TOK_PREFIX_EVERY_PIECE;
        return BS_OK;
    }
    const char *from = json_string_value(json_object_get(json_object_get(n, "pattern"), "String"));
    const char *to = json_string_value(json_object_get(n, "content"));
    if (strcmp(type, "Replace") == 0 && from && to && strcmp(from, " ") == 0 && strcmp(to, MARKER) == 0) {
        t->space_marker = 1;
        return BS_OK;
    }
    return bs_fail(err, BS_EUNSUPPORTED, "%s: normalizer %s is not supported (only NFC, Prepend \"\xE2\x96\x81\", Replace \" \" -> \"\xE2\x96\x81\")",
                   path, type);
}

static bs_status walk_pre_tokenizer(bs_tokenizer *t, const json_t *n, const char *path, bs_error *err) {
    if (!n || json_is_null(n)) return BS_OK;
    const char *type = type_of(n);
    if (!type) return bs_fail(err, BS_EFORMAT, "%s: pre_tokenizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        const json_t *child;
        json_array_foreach(json_object_get(n, "pretokenizers"), i, child) {
            bs_status s = walk_pre_tokenizer(t, child, path, err);
            if (s) return s;
        }
        return BS_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        t->byte_prefix_space = flag(n, "add_prefix_space", 0);
        return flag(n, "use_regex", 1) ? tok_add_regex(t, TOK_GPT2_REGEX, 1, 0, path, err) : BS_OK;
    }
    if (strcmp(type, "Digits") == 0)
        return tok_add_regex(t, flag(n, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", 1, 0, path, err);
    if (strcmp(type, "Split") == 0) {
        const json_t *pattern = json_object_get(n, "pattern");
        const char *regex = json_string_value(json_object_get(pattern, "Regex"));
        const char *literal = json_string_value(json_object_get(pattern, "String"));
        const char *behavior = json_string_value(json_object_get(n, "behavior"));
        if (!regex && !literal) return bs_fail(err, BS_EFORMAT, "%s: Split pre_tokenizer without a pattern", path);
        if (flag(n, "invert", 0) || !behavior || (strcmp(behavior, "Isolated") != 0 && strcmp(behavior, "Removed") != 0))
            return bs_fail(err, BS_EUNSUPPORTED, "%s: Split pre_tokenizer behavior %s%s is not supported (Isolated, Removed)",
                           path, behavior ? behavior : "(none)", flag(n, "invert", 0) ? " with invert" : "");
        return tok_add_regex(t, regex ? regex : literal, strcmp(behavior, "Isolated") == 0, regex == NULL, path, err);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *rep = json_string_value(json_object_get(n, "replacement"));
        const char *scheme = json_string_value(json_object_get(n, "prepend_scheme"));
        if (rep && strcmp(rep, MARKER) != 0)
            return bs_fail(err, BS_EUNSUPPORTED, "%s: Metaspace replacement \"%s\" is not supported", path, rep);
        t->space_marker = 1;
        t->split_on_marker = flag(n, "split", 1);
        if (scheme)
            t->prefix = strcmp(scheme, "always") == 0  ? TOK_PREFIX_EVERY_PIECE
                        : strcmp(scheme, "first") == 0 ? TOK_PREFIX_FIRST_PIECE
                                                       : TOK_PREFIX_NONE;
        else
            t->prefix = flag(n, "add_prefix_space", 1) ? TOK_PREFIX_EVERY_PIECE : TOK_PREFIX_NONE;
        return BS_OK;
    }
    return bs_fail(err, BS_EUNSUPPORTED, "%s: pre_tokenizer %s is not supported", path, type);
}

/* Decoders only matter for whether the first piece loses its leading space. */
static void walk_decoder(bs_tokenizer *t, const json_t *n) {
    if (is_type(n, "Sequence")) {
        size_t i;
        const json_t *child;
        json_array_foreach(json_object_get(n, "decoders"), i, child) walk_decoder(t, child);
    } else if (is_type(n, "Strip")) {
        const char *content = json_string_value(json_object_get(n, "content"));
        if (content && strcmp(content, " ") == 0 && json_integer_value(json_object_get(n, "start")) >= 1)
            t->strip_leading_space = 1;
    } else if (is_type(n, "Metaspace")) {
        const char *scheme = json_string_value(json_object_get(n, "prepend_scheme"));
        t->strip_leading_space = scheme ? strcmp(scheme, "never") != 0 : flag(n, "add_prefix_space", 1);
    }
}

static int32_t special_id(const bs_tokenizer *t, const json_t *specials, const char *name) {
    const json_t *ids = json_object_get(json_object_get(specials, name), "ids");
    if (json_is_integer(json_array_get(ids, 0))) {
        json_int_t id = json_integer_value(json_array_get(ids, 0));
        return id >= 0 && id < t->n_vocab ? (int32_t)id : -1;
    }
    return tok_token_id(t, name, strlen(name));
}

/* TemplateProcessing: special tokens before $A are BOS, after it EOS. */
static void walk_post_processor(bs_tokenizer *t, const json_t *n) {
    if (is_type(n, "Sequence")) {
        size_t i;
        const json_t *child;
        json_array_foreach(json_object_get(n, "processors"), i, child) walk_post_processor(t, child);
        return;
    }
    if (!is_type(n, "TemplateProcessing")) return;
    const json_t *specials = json_object_get(n, "special_tokens");
    int seen_sequence = 0;
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(n, "single"), i, item) {
        if (json_object_get(item, "Sequence")) {
            seen_sequence = 1;
            continue;
        }
        const char *name = json_string_value(json_object_get(json_object_get(item, "SpecialToken"), "id"));
        int32_t id = name ? special_id(t, specials, name) : -1;
        if (id < 0) continue;
        if (!seen_sequence && !t->add_bos) t->bos = id, t->add_bos = 1;
        if (seen_sequence && !t->add_eos) t->eos = id, t->add_eos = 1;
    }
}

static bs_status vocab_size(const json_t *vocab, const json_t *added, const char *path, int32_t *n, bs_error *err) {
    json_int_t max = -1;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= (1 << 24))
            return bs_fail(err, BS_EFORMAT, "%s: model.vocab[\"%s\"]: id must be an integer in [0, 2^24)", path, key);
        if (id > max) max = id;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        const json_t *idv = json_object_get(v, "id");
        json_int_t id = json_integer_value(idv);
        if (!json_is_integer(idv) || id < 0 || id >= (1 << 24) || !json_is_string(json_object_get(v, "content")))
            return bs_fail(err, BS_EFORMAT, "%s: added_tokens[%zu]: needs an integer id in [0, 2^24) and a string content",
                           path, i);
        if (id > max) max = id;
    }
    if (max < 0) return bs_fail(err, BS_EFORMAT, "%s: model.vocab is empty", path);
    *n = (int32_t)(max + 1);
    return BS_OK;
}

static int is_byte_token(const char *s, size_t n) {
    return n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' && strchr("0123456789ABCDEFabcdef", s[3]) &&
           strchr("0123456789ABCDEFabcdef", s[4]) && s[3] && s[4];
}

static bs_status add_merges(bs_tokenizer *t, const json_t *merges, const char *path, bs_error *err) {
    if (!json_is_array(merges)) return bs_fail(err, BS_ENOTFOUND, "%s: model.merges is missing", path);
    size_t i;
    const json_t *m;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(m)) { /* "a b": split at the first space after the first byte */
            const char *s = json_string_value(m);
            size_t n = json_string_length(m);
            const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
            if (!sp) return bs_fail(err, BS_EFORMAT, "%s: model.merges[%zu] \"%s\" has no separating space", path, i, s);
            a = s, alen = (size_t)(sp - s), b = sp + 1, blen = n - alen - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { /* ["a", "b"]: parts may contain spaces */
            a = json_string_value(json_array_get(m, 0)), alen = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)), blen = json_string_length(json_array_get(m, 1));
        } else {
            return bs_fail(err, BS_EFORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
        }
        bs_status s = tok_add_merge(t, a, alen, b, blen, path, err);
        if (s) return s;
    }
    return BS_OK;
}

static int32_t config_token(const bs_tokenizer *t, const json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    const char *s = json_string_value(v);
    return s ? tok_token_id(t, s, json_string_length(v)) : -1;
}

static void apply_config(bs_tokenizer *t, const json_t *cfg) {
    int32_t bos = config_token(t, json_object_get(cfg, "bos_token"));
    int32_t eos = config_token(t, json_object_get(cfg, "eos_token"));
    if (bos >= 0) t->bos = bos;
    if (eos >= 0) t->eos = eos;
    t->add_bos = flag(cfg, "add_bos_token", t->add_bos);
    t->add_eos = flag(cfg, "add_eos_token", t->add_eos);
}

static bs_status build(bs_tokenizer **out, const json_t *root, const char *path, bs_error *err) {
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return bs_fail(err, BS_ENOTFOUND, "%s: missing model", path);
    const char *mtype = type_of(model);
    if (mtype && strcmp(mtype, "BPE") != 0)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: model.type %s is not supported (BPE only)", path, mtype);
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return bs_fail(err, BS_ENOTFOUND, "%s: missing model.vocab", path);
    if (json_string_value(json_object_get(model, "continuing_subword_prefix")) ||
        json_string_value(json_object_get(model, "end_of_word_suffix")))
        return bs_fail(err, BS_EUNSUPPORTED, "%s: BPE continuing_subword_prefix / end_of_word_suffix are not supported", path);
    const json_t *added = json_object_get(root, "added_tokens");
    int32_t n = 0;
    bs_status s = vocab_size(vocab, added, path, &n, err);
    if (s) return s;

    bs_tokenizer *t;
    s = tok_new(n, &t, err);
    if (s) return s;
    *out = t;
    const json_t *pre = json_object_get(root, "pre_tokenizer"), *dec = json_object_get(root, "decoder");
    t->unit = has_byte_level(pre) || has_byte_level(dec) ? TOK_UNIT_BYTES : TOK_UNIT_CHARS;
    t->policy = TOK_MERGE_RANK;
    t->byte_fallback = flag(model, "byte_fallback", 0);
    t->ignore_merges = flag(model, "ignore_merges", 0);

    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v) {
        size_t len = strlen(key);
        int type = t->byte_fallback && is_byte_token(key, len) ? TOK_T_BYTE : TOK_T_NORMAL;
        s = tok_set_token(t, (int32_t)json_integer_value(v), key, len, 0.0f, type, err);
        if (s) return s;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        const json_t *content = json_object_get(v, "content");
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        s = tok_set_token(t, id, json_string_value(content), json_string_length(content), 0.0f,
                          flag(v, "special", 0) ? TOK_T_CONTROL : TOK_T_USER, err);
        if (s) return s;
        t->strip[id] = (uint8_t)((flag(v, "lstrip", 0) ? TOK_LSTRIP : 0) | (flag(v, "rstrip", 0) ? TOK_RSTRIP : 0));
    }
    s = tok_index(t, err);
    if (!s) s = add_merges(t, json_object_get(model, "merges"), path, err);
    if (!s) s = walk_normalizer(t, json_object_get(root, "normalizer"), path, err);
    if (!s) s = walk_pre_tokenizer(t, pre, path, err);
    if (s) return s;
    if (t->prefix != TOK_PREFIX_NONE) t->space_marker = 1;
    t->strip_leading_space = t->prefix != TOK_PREFIX_NONE;
    if (dec && !json_is_null(dec)) {
        t->strip_leading_space = 0;
        walk_decoder(t, dec);
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk) t->unk = tok_token_id(t, unk, strlen(unk));
    walk_post_processor(t, json_object_get(root, "post_processor"));
    return BS_OK;
}

/* generation_config.json eos_token_id: one id or a list; all end generation. */
static void mark_eog(bs_tokenizer *t, const json_t *v) {
    json_int_t id = json_integer_value(v);
    if (!json_is_integer(v) || id < 0 || id >= t->n_vocab) return;
    t->eog[id] = 1;
    if (t->eos < 0) t->eos = (int32_t)id;
}

static void apply_generation_config(bs_tokenizer *t, const json_t *gen) {
    const json_t *eos = json_object_get(gen, "eos_token_id");
    size_t i;
    const json_t *v;
    if (json_is_integer(eos)) mark_eog(t, eos);
    json_array_foreach(eos, i, v) mark_eog(t, v);
}

static bs_status open_files(const char *json_path, const char *config_path, const char *gen_path, bs_tokenizer **out,
                            bs_error *err) {
    json_t *root = NULL, *cfg = NULL, *gen = NULL;
    bs_tokenizer *t = NULL;
    *out = NULL;
    bs_status s = load_json(json_path, &root, err);
    if (!s && config_path) s = load_json(config_path, &cfg, err);
    if (!s && gen_path) s = load_json(gen_path, &gen, err);
    if (!s) s = build(&t, root, json_path, err);
    if (!s && cfg) apply_config(t, cfg);
    if (!s) s = tok_finish(t, err);
    if (!s && gen) apply_generation_config(t, gen);
    json_decref(root), json_decref(cfg), json_decref(gen);
    if (s) {
        tok_close(t);
        return s;
    }
    *out = t;
    return BS_OK;
}

bs_status tok_open_hf_files(const char *json_path, const char *config_path, bs_tokenizer **out, bs_error *err) {
    return open_files(json_path, config_path, NULL, out, err);
}

bs_status tok_open_hf(const char *dir, bs_tokenizer **out, bs_error *err) {
    char *json_path = bs_path_join(dir, "tokenizer.json");
    char *config_path = bs_path_join(dir, "tokenizer_config.json");
    char *gen_path = bs_path_join(dir, "generation_config.json");
    bs_status s;
    if (!json_path || !config_path || !gen_path)
        s = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    else
        s = open_files(json_path, bs_file_exists(config_path) ? config_path : NULL,
                       bs_file_exists(gen_path) ? gen_path : NULL, out, err);
    free(json_path), free(config_path), free(gen_path);
    return s;
}
