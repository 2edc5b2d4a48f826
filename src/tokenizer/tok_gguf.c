/* tokenizer/tok_gguf.c — build a tokenizer from GGUF tokenizer.ggml.* metadata,
 * following llama.cpp's llama-vocab.cpp (model "gpt2" = byte-level BPE with a
 * pre-tokenizer chosen by tokenizer.ggml.pre, "llama" = SentencePiece BPE). */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "tokenizer/tok_internal.h"

/* The tokenizer.json regexes use (?i:'s|...); llama.cpp spells the case folding
 * out so that only ASCII letters fold (Unicode folding would also match U+017F). */
#define LLAMA3_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define LLAMA3_REGEX                                                                                      \
    LLAMA3_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
                        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_REGEX                                                                                   \
    LLAMA3_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
                        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* A pre-tokenizer: regexes applied in sequence (llama.cpp's regex_exprs). */
typedef struct {
    const char *const *names; /* tokenizer.ggml.pre values, NULL-terminated */
    const char *regex[7];     /* NULL-terminated */
    int ignore_merges, add_bos;
} pre_preset;

static const char *const names_default[] = {"default", NULL};
/* The first name of each list is what tok_gguf_pre_name reports: the name
 * llama.cpp's converter writes. */
static const char *const names_llama3[] = {"llama-bpe", "llama3", "llama-v3", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe", NULL};
static const char *const names_deepseek_llm[] = {"deepseek-llm", NULL};
static const char *const names_deepseek_coder[] = {"deepseek-coder", NULL};
static const char *const names_deepseek3[] = {"deepseek-v3", NULL};
static const char *const names_falcon[] = {"falcon", NULL};
static const char *const names_digits_gpt2[] = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", NULL};
static const char *const names_gpt2[] = {"gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "gigachat", "jina-es", "jina-de", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", NULL};
static const char *const names_qwen2[] = {"qwen2", "stablelm2", "deepseek-r1-qwen", "megrez", NULL};
static const char *const names_poro[] = {"poro-chat", "bloom", "gpt3-finnish", NULL};
static const char *const names_viking[] = {"viking", NULL};
static const char *const names_tekken[] = {"tekken", NULL};

static const pre_preset presets[] = {
    {names_default,
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", TOK_GPT2_REGEX, "\\p{N}+", "[0-9][0-9][0-9]", NULL}, 0, 0},
    {names_llama3, {LLAMA3_REGEX, NULL}, 1, 1},
    {names_deepseek_llm,
     {"[\r\n]",
      "\\s?[A-Za-z\xC2\xB5\xC3\x80-\xC3\x96\xC3\x98-\xC3\xB6\xC3\xB8-\xC6\xBA\xC6\xBC-\xC6\xBF\xC7\x84-\xCA\x93"
      "\xCA\x95-\xCA\xAF\xCD\xB0-\xCD\xB3\xCD\xB6\xCD\xB7\xCD\xBB-\xCD\xBD\xCD\xBF\xCE\x86\xCE\x88-\xCE\x8A"
      "\xCE\x8C\xCE\x8E-\xCE\xA1\xCE\xA3-\xCF\xB5\xCF\xB7-\xD2\x81\xD2\x8A-\xD4\xAF\xD4\xB1-\xD5\x96"
      "\xE1\x82\xA0-\xE1\x83\x85\xE1\x8E\xA0-\xE1\x8F\xB5\xE1\x8F\xB8-\xE1\x8F\xBD\xE1\xB2\x90-\xE1\xB2\xBA"
      "\xE1\xB2\xBD-\xE1\xB2\xBF\xE1\xB4\x80-\xE1\xB4\xAB\xE1\xB5\xAB-\xE1\xB5\xB7\xE1\xB5\xB9-\xE1\xB6\x9A"
      "\xE1\xB8\x80-\xE1\xBC\x95\xE1\xBC\x98-\xE1\xBC\x9D\xE1\xBC\xA0-\xE1\xBD\x85\xE1\xBD\x88-\xE1\xBD\x8D"
      "\xE1\xBD\x90-\xE1\xBD\x97\xE1\xBD\x99\xE1\xBD\x9B\xE1\xBD\x9D\xE1\xBD\x9F-\xE1\xBD\xBD\xE1\xBE\x80-\xE1\xBE\xB4"
      "\xE1\xBE\xB6-\xE1\xBE\xBC\xE1\xBE\xBE\xE1\xBF\x82-\xE1\xBF\x84\xE1\xBF\x86-\xE1\xBF\x8C\xE1\xBF\x90-\xE1\xBF\x93"
      "\xE1\xBF\x96-\xE1\xBF\x9B\xE1\xBF\xA0-\xE1\xBF\xAC\xE1\xBF\xB2-\xE1\xBF\xB4\xE1\xBF\xB6-\xE1\xBF\xBC"
      "\xE2\x84\x82\xE2\x84\x87\xE2\x84\x8A-\xE2\x84\x93\xE2\x84\x95\xE2\x84\x99-\xE2\x84\x9D\xE2\x84\xA4"
      "\xE2\x84\xA6\xE2\x84\xA8\xE2\x84\xAA-\xE2\x84\xAD\xE2\x84\xAF-\xE2\x84\xB4\xE2\x84\xB9\xE2\x84\xBC-\xE2\x84\xBF"
      "\xE2\x85\x85-\xE2\x85\x89\xE2\x85\x8E\xE2\x86\x83\xE2\x86\x84\xE2\xB0\x80-\xE2\xB1\xBB\xE2\xB1\xBE-\xE2\xB3\xA4"
      "\xE2\xB3\xAB-\xE2\xB3\xAE\xE2\xB3\xB2\xE2\xB3\xB3\xEA\x99\x80-\xEA\x99\xAD\xEA\x9A\x80-\xEA\x9A\x9B"
      "\xEA\x9C\xA2-\xEA\x9D\xAF\xEA\x9D\xB1-\xEA\x9E\x87\xEA\x9E\x8B-\xEA\x9E\x8E\xEA\xAD\xB0-\xEA\xAE\xBF"
      "\xEF\xAC\x80-\xEF\xAC\x86\xEF\xAC\x93-\xEF\xAC\x97\xEF\xBC\xA1-\xEF\xBC\xBA\xEF\xBD\x81-\xEF\xBD\x9A"
      "\xF0\x90\x90\x80-\xF0\x90\x91\x8F\xF0\x90\x92\xB0-\xF0\x90\x93\x93\xF0\x90\x93\x98-\xF0\x90\x93\xBB"
      "\xF0\x90\xB2\x80-\xF0\x90\xB2\xB2\xF0\x90\xB3\x80-\xF0\x90\xB3\xB2\xF0\x91\xA2\xA0-\xF0\x91\xA3\x9F"
      "\xF0\x9E\xA4\x80-\xF0\x9E\xA5\x83]+",
      "\\s?[!-/:-~\xEF\xBC\x81-\xEF\xBC\x8F\xEF\xBC\x9A-\xEF\xBD\x9E\xE2\x80\x98-\xE2\x80\x9F\xE3\x80\x80-\xE3\x80\x82]+",
      "\\s+$", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+", "\\p{N}+", NULL},
     0, 0},
    {names_deepseek_coder,
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE0\xA0\x80-\xE4\xB8\x80\xEA\xB0\x80-\xED\x9F\xBF]+",
      "\\p{N}", NULL},
     0, 0},
    {names_deepseek3,
     {"\\p{N}{1,3}", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
      "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     0, 0},
    {names_falcon, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", TOK_GPT2_REGEX, "[0-9][0-9][0-9]", NULL}, 0, 0},
    {names_digits_gpt2, {"\\p{N}", TOK_GPT2_REGEX, NULL}, 0, 0},
    {names_gpt2, {TOK_GPT2_REGEX, NULL}, 0, 0},
    {names_qwen2, {QWEN2_REGEX, NULL}, 0, 0},
    {names_poro, {" ?[^(\\s|.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C)]+", NULL}, 0, 0},
    {names_viking, {" ?[^(\\s|.,!?\xE2\x80\xA6\xE3\x80\x82\xEF\xBC\x8C\xE3\x80\x81\xE0\xA5\xA4\xDB\x94\xD8\x8C)]+", "\\p{N}", NULL}, 0, 0},
    {names_tekken,
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?"
      "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      NULL},
     1, 1},
};

static const pre_preset *find_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        for (const char *const *n = presets[i].names; *n; n++)
            if (strcmp(*n, name) == 0) return &presets[i];
    return NULL;
}

/* tokenizer.json spells the case-insensitive contractions (?i:...); llama.cpp
 * and basalt's presets spell out the ASCII folding.  Both mean the same here. */
static int same_regex(const char *a, const char *b) {
    static const char hf[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)", spelled[] = LLAMA3_CONTRACTIONS;
    size_t nh = sizeof hf - 1, ns = sizeof spelled - 1;
    if (strncmp(a, hf, nh) == 0) a += nh;
    else if (strncmp(a, spelled, ns) == 0) a += ns;
    else return strcmp(a, b) == 0;
    if (strncmp(b, hf, nh) == 0) b += nh;
    else if (strncmp(b, spelled, ns) == 0) b += ns;
    else return 0;
    return strcmp(a, b) == 0;
}

/* An NFC normalizer (Qwen's tokenizer.json) is not compared: llama.cpp's
 * presets have none, and its converter maps such tokenizers to them anyway. */
const char *tok_gguf_pre_name(const bs_tokenizer *t) {
    for (int i = 0; i < t->n_regex; i++)
        if (!t->regex_keep[i] || t->regex_literal[i]) return NULL;
    if (t->byte_prefix_space) return NULL;
    for (size_t p = 0; p < sizeof presets / sizeof *presets; p++) {
        const pre_preset *pp = &presets[p];
        int n = 0;
        while (pp->regex[n]) n++;
        if (n != t->n_regex || pp->ignore_merges != t->ignore_merges) continue;
        int same = 1;
        for (int i = 0; i < n && same; i++) same = same_regex(t->regex_src[i], pp->regex[i]);
        if (same) return pp->names[0];
    }
    return NULL;
}

static bs_status get_array(const gguf_file *g, const char *key, gguf_type elem, int numeric, uint64_t count,
                           const gguf_value **out, bs_error *err) {
    const gguf_value *v = gguf_get(g, key);
    *out = v;
    if (!v) return BS_OK;
    int ok = v->type == GGUF_TYPE_ARRAY;
    if (ok && numeric)
        ok = v->arr.elem_type != GGUF_TYPE_STRING && v->arr.elem_type != GGUF_TYPE_ARRAY &&
             v->arr.elem_type != GGUF_TYPE_BOOL;
    else if (ok)
        ok = v->arr.elem_type == elem;
    if (!ok) return bs_fail(err, BS_EFORMAT, "%s: %s: expected an array of %s", gguf_path(g), key, numeric ? "numbers" : "strings");
    if (count && v->arr.count != count)
        return bs_fail(err, BS_EFORMAT, "%s: %s has %llu entries, tokenizer.ggml.tokens has %llu", gguf_path(g), key,
                       (unsigned long long)v->arr.count, (unsigned long long)count);
    return BS_OK;
}

/* Optional token id key; ids outside the vocabulary are ignored with a warning. */
static bs_status get_token_id(const gguf_file *g, const bs_tokenizer *t, const char *key, int32_t *id, bs_error *err) {
    if (!gguf_get(g, key)) return BS_OK;
    uint32_t v;
    bs_status s = gguf_get_u32(g, key, 1, &v, err);
    if (s) return s;
    if (v >= (uint32_t)t->n_vocab) {
        bs_log_warn("%s: %s = %u is outside the vocabulary (%d tokens); ignored", gguf_path(g), key, v, t->n_vocab);
        return BS_OK;
    }
    *id = (int32_t)v;
    return BS_OK;
}

static bs_status load(const gguf_file *g, bs_tokenizer **out, bs_error *err) {
    const char *path = gguf_path(g), *model, *pre;
    bs_status s = gguf_get_str(g, "tokenizer.ggml.model", 1, &model, err);
    if (!s) s = gguf_get_str(g, "tokenizer.ggml.pre", 0, &pre, err);
    if (s) return s;
    int spm = strcmp(model, "llama") == 0;
    if (!spm && strcmp(model, "gpt2") != 0)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: tokenizer.ggml.model '%s' is not supported (expected 'gpt2' or 'llama')",
                       path, model);

    const gguf_value *tokens, *scores, *types, *merges = NULL;
    s = get_array(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, 0, 0, &tokens, err);
    if (s) return s;
    if (!tokens) return bs_fail(err, BS_ENOTFOUND, "%s: tokenizer.ggml.tokens is missing", path);
    uint64_t n = tokens->arr.count;
    if (n == 0 || n > (1u << 24))
        return bs_fail(err, BS_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries", path, (unsigned long long)n);
    s = get_array(g, "tokenizer.ggml.scores", 0, 1, n, &scores, err);
    if (!s) s = get_array(g, "tokenizer.ggml.token_type", 0, 1, n, &types, err);
    if (!s && !spm) {
        s = get_array(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING, 0, 0, &merges, err);
        if (!s && !merges) s = bs_fail(err, BS_ENOTFOUND, "%s: tokenizer.ggml.merges is missing", path);
    }
    if (s) return s;

    bs_tokenizer *t;
    s = tok_new((int32_t)n, &t, err);
    if (s) return s;
    *out = t;
    t->unit = spm ? TOK_UNIT_CHARS : TOK_UNIT_BYTES;
    t->policy = spm ? TOK_MERGE_SCORE : TOK_MERGE_RANK;
    for (uint64_t i = 0; i < n && !s; i++) {
        int type = types ? (int)gguf_array_i64(types, i) : TOK_T_NORMAL;
        if (type < TOK_T_NORMAL || type > TOK_T_BYTE) type = TOK_T_NORMAL;
        s = tok_set_token(t, (int32_t)i, tokens->arr.strs[i].ptr, tokens->arr.strs[i].len,
                          scores ? (float)gguf_array_f64(scores, i) : 0.0f, type, err);
    }
    if (!s) s = tok_index(t, err);
    for (uint64_t i = 0; merges && i < merges->arr.count && !s; i++) {
        const gguf_str m = merges->arr.strs[i];
        /* "a b": the separator is the first space after the first byte */
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        if (!sp) {
            s = bs_fail(err, BS_EFORMAT, "%s: tokenizer.ggml.merges[%llu] \"%.*s\" has no separating space", path,
                        (unsigned long long)i, (int)m.len, m.ptr);
            break;
        }
        size_t alen = (size_t)(sp - m.ptr);
        s = tok_add_merge(t, m.ptr, alen, sp + 1, m.len - alen - 1, path, err);
    }
    if (s) return s;

    int add_space_prefix = 1;
    if (spm) {
        t->space_marker = 1;
        t->add_bos = 1;
        t->bos = 1, t->eos = 2, t->unk = 0; /* llama.cpp's defaults for SentencePiece files */
        s = gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", 0, &add_space_prefix, err);
        t->prefix = add_space_prefix ? TOK_PREFIX_EVERY_PIECE : TOK_PREFIX_NONE;
        t->strip_leading_space = add_space_prefix;
    } else {
        const pre_preset *p = pre ? find_preset(pre) : NULL;
        if (!p) {
            if (pre)
                bs_log_warn("%s: unknown tokenizer.ggml.pre '%s'; using the GPT-2 pre-tokenizer (tokens may differ from the original)",
                            path, pre);
            else
                bs_log_warn("%s: tokenizer.ggml.pre is missing; using llama.cpp's default pre-tokenizer", path);
            p = pre ? find_preset("gpt-2") : find_preset("default");
        }
        t->ignore_merges = p->ignore_merges;
        t->add_bos = p->add_bos;
        for (int i = 0; p->regex[i] && !s; i++) s = tok_add_regex(t, p->regex[i], 1, 0, path, err);
    }
    if (!s) s = get_token_id(g, t, "tokenizer.ggml.bos_token_id", &t->bos, err);
    if (!s) s = get_token_id(g, t, "tokenizer.ggml.eos_token_id", &t->eos, err);
    if (!s) s = get_token_id(g, t, "tokenizer.ggml.eot_token_id", &t->eot, err);
    if (!s) s = get_token_id(g, t, "tokenizer.ggml.eom_token_id", &t->eom, err);
    if (!s) s = get_token_id(g, t, "tokenizer.ggml.unknown_token_id", &t->unk, err);
    if (!s) s = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", 0, &t->add_bos, err);
    if (!s) s = gguf_get_bool(g, "tokenizer.ggml.add_eos_token", 0, &t->add_eos, err);
    if (!s) s = tok_finish(t, err);
    return s;
}

bs_status tok_open_gguf(const gguf_file *g, bs_tokenizer **out, bs_error *err) {
    bs_tokenizer *t = NULL;
    *out = NULL;
    bs_status s = load(g, &t, err);
    if (s) {
        tok_close(t);
        return s;
    }
    *out = t;
    return BS_OK;
}
