/* tokenizer/tokenizer.c — vocabulary, special-token splitting, pre-tokenization,
 * BPE merging, decoding and the streaming decoder.  Loaders live in
 * tok_gguf.c and tok_hf.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uninorm.h>
#include <unistr.h>

#include "tokenizer/tok_internal.h"

#define SPACE_MARKER "\xE2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK */

/* ---------------------------------------------------------------- utf-8 --- */

/* Length of the valid UTF-8 character at s (strict: no overlongs, surrogates
 * or code points above U+10FFFF), 0 when s[0..n) does not start with one. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* Whether s[0..n) could still become a valid character with more bytes. */
static int utf8_incomplete(const unsigned char *s, size_t n) {
    size_t need = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : 0;
    if (need == 0 || n >= need) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    /* second-byte limits that rule out overlongs, surrogates and > U+10FFFF */
    if (n >= 2) {
        if (s[0] == 0xE0 && s[1] < 0xA0) return 0;
        if (s[0] == 0xED && s[1] > 0x9F) return 0;
        if (s[0] == 0xF0 && s[1] < 0x90) return 0;
        if (s[0] == 0xF4 && s[1] > 0x8F) return 0;
    }
    return 1;
}

static uint32_t utf8_decode(const unsigned char *s, size_t len) {
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes spell themselves, the other
 * 68 bytes map in order to U+0100.. so every byte is a visible character. */
static int byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static uint32_t byte_to_cp(unsigned char b) {
    if (byte_is_printable(b)) return b;
    uint32_t n = 0;
    for (unsigned i = 0; i < b; i++) n += !byte_is_printable(i);
    return 256 + n;
}

/* Inverse of byte_to_cp; -1 for code points that spell no byte. */
static int cp_to_byte(uint32_t cp) {
    static int table[324];
    static int ready;
    if (!ready) {
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (unsigned b = 0; b < 256; b++) table[byte_to_cp((unsigned char)b)] = (int)b;
        ready = 1; /* idempotent: concurrent first calls write the same values */
    }
    return cp < 324 ? table[cp] : -1;
}

/* --------------------------------------------------------------- buffers --- */

typedef struct {
    int32_t *v;
    size_t n, cap;
} id_vec;

static int ids_push(id_vec *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return 0;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = id;
    return 1;
}

typedef struct {
    char *p;
    size_t n, cap;
} byte_buf;

static int buf_put(byte_buf *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

typedef struct {
    size_t off, len;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} span_vec;

static int spans_push(span_vec *a, size_t off, size_t len) {
    if (len == 0) return 1;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 32;
        span *v = realloc(a->v, cap * sizeof *v);
        if (!v) return 0;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = (span){off, len};
    return 1;
}

/* ------------------------------------------------------------ vocabulary --- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t tok_token_id(const bs_tokenizer *t, const char *text, size_t len) {
    if (!t || !t->slots) return -1;
    for (uint32_t i = (uint32_t)hash_bytes(text, len) & t->slot_mask;; i = (i + 1) & t->slot_mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (t->len[id] == len && memcmp(t->text[id], text, len) == 0) return id;
    }
}

bs_status tok_new(int32_t n_vocab, bs_tokenizer **out, bs_error *err) {
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > (1 << 24))
        return bs_fail(err, BS_EFORMAT, "tokenizer: vocabulary size %d out of range", n_vocab);
    bs_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    t->n_vocab = n_vocab;
    t->text = calloc((size_t)n_vocab, sizeof *t->text);
    t->len = calloc((size_t)n_vocab, sizeof *t->len);
    t->score = calloc((size_t)n_vocab, sizeof *t->score);
    t->type = malloc((size_t)n_vocab);
    t->strip = calloc((size_t)n_vocab, 1);
    t->eog = calloc((size_t)n_vocab, 1);
    if (!t->text || !t->len || !t->score || !t->type || !t->strip || !t->eog) {
        tok_close(t);
        return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory for %d tokens", n_vocab);
    }
    memset(t->type, TOK_T_UNUSED, (size_t)n_vocab);
    for (int i = 0; i < 256; i++) t->byte_token[i] = -1, t->trie_root[i] = -1;
    t->bos = t->eos = t->eot = t->eom = t->unk = -1;
    *out = t;
    return BS_OK;
}

bs_status tok_set_token(bs_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type,
                        bs_error *err) {
    if (id < 0 || id >= t->n_vocab)
        return bs_fail(err, BS_EFORMAT, "tokenizer: token id %d out of range [0, %d)", id, t->n_vocab);
    char *copy = malloc(len + 1);
    if (!copy) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    memcpy(copy, text, len);
    copy[len] = 0;
    free(t->text[id]);
    t->text[id] = copy;
    t->len[id] = (uint32_t)len;
    t->score[id] = score;
    t->type[id] = (uint8_t)type;
    if (len > t->max_len) t->max_len = len;
    return BS_OK;
}

bs_status tok_index(bs_tokenizer *t, bs_error *err) {
    uint32_t size = 16;
    while (size < (uint32_t)t->n_vocab * 2u) size *= 2;
    t->slots = malloc(size * sizeof *t->slots);
    if (!t->slots) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    memset(t->slots, 0xFF, size * sizeof *t->slots);
    t->slot_mask = size - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!t->text[id] && !(t->text[id] = calloc(1, 1))) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
        if (t->len[id] == 0) continue;
        /* a duplicate spelling resolves to the last id, as in llama.cpp */
        uint32_t i = (uint32_t)hash_bytes(t->text[id], t->len[id]) & t->slot_mask;
        for (;; i = (i + 1) & t->slot_mask) {
            int32_t o = t->slots[i];
            if (o < 0 || (t->len[o] == t->len[id] && memcmp(t->text[o], t->text[id], t->len[id]) == 0)) break;
        }
        t->slots[i] = id;
    }
    for (unsigned b = 0; b < 256; b++) {
        char s[8];
        size_t n;
        if (t->unit == TOK_UNIT_BYTES) {
            n = utf8_put(byte_to_cp((unsigned char)b), s);
        } else {
            n = (size_t)snprintf(s, sizeof s, "<0x%02X>", b);
        }
        t->byte_token[b] = tok_token_id(t, s, n);
        if (t->byte_token[b] < 0 && t->unit == TOK_UNIT_CHARS && b < 0x80) {
            s[0] = (char)b;
            t->byte_token[b] = tok_token_id(t, s, 1);
        }
    }
    /* A user-defined token may share a byte's spelling (DeepSeek reuses "ÿ" etc.);
     * the byte itself must still encode to the ordinary byte-level token. */
    int shadowed = 0;
    for (unsigned b = 0; b < 256; b++)
        shadowed |= t->unit == TOK_UNIT_BYTES && t->byte_token[b] >= 0 && t->type[t->byte_token[b]] != TOK_T_NORMAL;
    for (int32_t id = 0; shadowed && id < t->n_vocab; id++) {
        const unsigned char *s = (const unsigned char *)t->text[id];
        size_t len = t->len[id] ? utf8_char_len(s, t->len[id]) : 0;
        int b = len && len == t->len[id] && t->type[id] == TOK_T_NORMAL ? cp_to_byte(utf8_decode(s, len)) : -1;
        if (b >= 0 && t->type[t->byte_token[b]] != TOK_T_NORMAL) t->byte_token[b] = id;
    }
    return BS_OK;
}

static uint32_t pair_slot(const bs_tokenizer *t, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32) & t->pair_mask;
}

static int pair_find(const bs_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *result) {
    if (!t->pair_keys) return 0;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint32_t i = pair_slot(t, key);; i = (i + 1) & t->pair_mask) {
        if (t->pair_keys[i] == 0) return 0;
        if (t->pair_keys[i] == key) {
            *rank = t->pair_rank[i];
            *result = t->pair_result[i];
            return 1;
        }
    }
}

static bs_status pairs_grow(bs_tokenizer *t, bs_error *err) {
    uint32_t size = t->pair_mask ? (t->pair_mask + 1) * 2 : 1024;
    uint64_t *keys = calloc(size, sizeof *keys);
    int32_t *rank = malloc(size * sizeof *rank), *result = malloc(size * sizeof *result);
    if (!keys || !rank || !result) {
        free(keys), free(rank), free(result);
        return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory for merges");
    }
    uint32_t old_size = t->pair_keys ? t->pair_mask + 1 : 0;
    uint64_t *old_keys = t->pair_keys;
    int32_t *old_rank = t->pair_rank, *old_result = t->pair_result;
    t->pair_keys = keys, t->pair_rank = rank, t->pair_result = result, t->pair_mask = size - 1;
    for (uint32_t j = 0; j < old_size; j++) {
        if (!old_keys[j]) continue;
        uint32_t i = pair_slot(t, old_keys[j]);
        while (keys[i]) i = (i + 1) & t->pair_mask;
        keys[i] = old_keys[j], rank[i] = old_rank[j], result[i] = old_result[j];
    }
    free(old_keys), free(old_rank), free(old_result);
    return BS_OK;
}

bs_status tok_add_merge(bs_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                        const char *where, bs_error *err) {
    int32_t ia = tok_token_id(t, a, alen), ib = tok_token_id(t, b, blen);
    if (ia < 0 || ib < 0)
        return bs_fail(err, BS_EFORMAT, "%s: merge %u (\"%.*s\" \"%.*s\") references unknown token \"%.*s\"",
                       where, t->n_pairs, (int)alen, a, (int)blen, b, ia < 0 ? (int)alen : (int)blen,
                       ia < 0 ? a : b);
    char *joined = malloc(alen + blen + 1);
    if (!joined) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    memcpy(joined, a, alen);
    memcpy(joined + alen, b, blen);
    int32_t ir = tok_token_id(t, joined, alen + blen);
    free(joined);
    if (ir < 0)
        return bs_fail(err, BS_EFORMAT, "%s: merge %u (\"%.*s\" \"%.*s\") produces \"%.*s%.*s\", which is not a token",
                       where, t->n_pairs, (int)alen, a, (int)blen, b, (int)alen, a, (int)blen, b);
    if (!t->pair_keys || (t->n_pairs + 1) * 2 > t->pair_mask + 1) {
        bs_status s = pairs_grow(t, err);
        if (s) return s;
    }
    uint64_t key = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
    uint32_t i = pair_slot(t, key);
    while (t->pair_keys[i] && t->pair_keys[i] != key) i = (i + 1) & t->pair_mask;
    if (!t->pair_keys[i]) { /* a repeated merge keeps its first (best) rank */
        t->pair_keys[i] = key;
        t->pair_rank[i] = (int32_t)t->n_pairs;
        t->pair_result[i] = ir;
    }
    t->n_pairs++;
    return BS_OK;
}

bs_status tok_add_regex(bs_tokenizer *t, const char *pattern, int keep_matches, int literal,
                        const char *where, bs_error *err) {
    int code;
    PCRE2_SIZE offset;
    uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &offset, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return bs_fail(err, BS_EFORMAT, "%s: bad pre-tokenizer regex at offset %zu: %s", where, (size_t)offset,
                       (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter is the fallback */
    pcre2_code **rv = realloc(t->regex, (size_t)(t->n_regex + 1) * sizeof *rv);
    uint8_t *kv = rv ? realloc(t->regex_keep, (size_t)(t->n_regex + 1)) : NULL;
    if (rv) t->regex = rv;
    if (kv) t->regex_keep = kv;
    char **sv = kv ? realloc(t->regex_src, (size_t)(t->n_regex + 1) * sizeof *sv) : NULL;
    if (sv) t->regex_src = sv;
    uint8_t *lv = sv ? realloc(t->regex_literal, (size_t)(t->n_regex + 1)) : NULL;
    if (lv) t->regex_literal = lv;
    char *src = lv ? strdup(pattern) : NULL;
    if (!src) {
        pcre2_code_free(re);
        return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    }
    t->regex[t->n_regex] = re;
    t->regex_keep[t->n_regex] = (uint8_t)(keep_matches != 0);
    t->regex_src[t->n_regex] = src;
    t->regex_literal[t->n_regex] = (uint8_t)(literal != 0);
    t->n_regex++;
    return BS_OK;
}

static bs_status trie_insert(bs_tokenizer *t, int32_t id, bs_error *err) {
    const unsigned char *s = (const unsigned char *)t->text[id];
    int32_t *link = &t->trie_root[s[0]];
    int32_t node = -1;
    for (uint32_t i = 0; i < t->len[id]; i++) {
        node = *link;
        while (node >= 0 && t->trie[node].byte != s[i]) node = t->trie[node].sibling;
        if (node < 0) {
            if (t->n_trie == t->cap_trie) {
                int32_t cap = t->cap_trie ? t->cap_trie * 2 : 256;
                tok_trie_node *v = realloc(t->trie, (size_t)cap * sizeof *v);
                if (!v) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
                t->trie = v, t->cap_trie = cap;
            }
            node = t->n_trie++;
            /* the root level is indexed by byte, deeper levels are sibling lists */
            t->trie[node] = (tok_trie_node){-1, i == 0 ? -1 : *link, -1, s[i]};
            *link = node;
        }
        if (i + 1 < t->len[id]) link = &t->trie[node].child;
    }
    t->trie[node].token = id;
    return BS_OK;
}

static int is_special_type(int type) {
    return type == TOK_T_CONTROL || type == TOK_T_USER || type == TOK_T_UNKNOWN;
}

bs_status tok_finish(bs_tokenizer *t, bs_error *err) {
    /* texts that end generation when the file marks them special (llama.cpp's list) */
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
        "<|end_of_text|>", "<|eom_id|>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    };
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_special_type(t->type[id]) || t->len[id] == 0) continue;
        bs_status s = trie_insert(t, id, err);
        if (s) return s;
        for (size_t k = 0; k < sizeof eog_texts / sizeof *eog_texts; k++)
            if (strcmp(t->text[id], eog_texts[k]) == 0) t->eog[id] = 1;
    }
    const int32_t ends[] = {t->eos, t->eot, t->eom};
    for (int k = 0; k < 3; k++)
        if (ends[k] >= 0 && ends[k] < t->n_vocab) t->eog[ends[k]] = 1;
    return BS_OK;
}

void tok_close(bs_tokenizer *t) {
    if (!t) return;
    if (t->text)
        for (int32_t i = 0; i < t->n_vocab; i++) free(t->text[i]);
    free(t->text), free(t->len), free(t->score), free(t->type), free(t->strip), free(t->eog);
    free(t->slots);
    free(t->pair_keys), free(t->pair_rank), free(t->pair_result);
    for (int i = 0; i < t->n_regex; i++) pcre2_code_free(t->regex[i]), free(t->regex_src[i]);
    free(t->regex), free(t->regex_keep), free(t->regex_src), free(t->regex_literal);
    free(t->trie);
    free(t);
}

bs_status tok_open_byte_level(bs_tokenizer **out, bs_error *err) {
    bs_tokenizer *t;
    bs_status s = tok_new(257, &t, err);
    if (s) return s;
    t->unit = TOK_UNIT_BYTES;
    t->policy = TOK_MERGE_RANK;
    for (unsigned b = 0; b < 256 && !s; b++) {
        char buf[4];
        size_t n = utf8_put(byte_to_cp((unsigned char)b), buf);
        s = tok_set_token(t, (int32_t)b, buf, n, 0.0f, TOK_T_NORMAL, err);
    }
    if (!s) s = tok_set_token(t, 256, "<|endoftext|>", 13, 0.0f, TOK_T_CONTROL, err);
    if (!s) s = tok_index(t, err);
    if (!s) s = tok_add_regex(t, TOK_GPT2_REGEX, 1, 0, "byte-level tokenizer", err);
    t->eos = 256;
    if (!s) s = tok_finish(t, err);
    if (s) {
        tok_close(t);
        return s;
    }
    *out = t;
    return BS_OK;
}

int32_t tok_vocab_size(const bs_tokenizer *t) { return t->n_vocab; }
int32_t tok_bos_id(const bs_tokenizer *t) { return t->bos; }
int32_t tok_eos_id(const bs_tokenizer *t) { return t->eos; }
int tok_is_eog(const bs_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab && t->eog[id]; }

const char *tok_token_text(const bs_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}

size_t tok_token_len(const bs_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab ? t->len[id] : 0; }
float tok_token_score(const bs_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab ? t->score[id] : 0.0f; }
int tok_token_type(const bs_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab ? t->type[id] : 0; }

bs_status tok_merges(const bs_tokenizer *t, int32_t **pairs, size_t *n, bs_error *err) {
    /* Ranks are call order, so repeated merges leave gaps: place each pair at
     * its rank, then squeeze the gaps out. */
    int32_t *by_rank = malloc(((size_t)t->n_pairs * 2 + 1) * sizeof *by_rank);
    if (!by_rank) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < (size_t)t->n_pairs * 2; i++) by_rank[i] = -1;
    for (uint32_t i = 0; t->pair_keys && i <= t->pair_mask; i++) {
        if (!t->pair_keys[i]) continue;
        uint64_t key = t->pair_keys[i] - 1;
        int32_t r = t->pair_rank[i];
        by_rank[2 * r] = (int32_t)(key >> 32);
        by_rank[2 * r + 1] = (int32_t)(uint32_t)key;
    }
    size_t k = 0;
    for (size_t r = 0; r < t->n_pairs; r++) {
        if (by_rank[2 * r] < 0) continue;
        by_rank[2 * k] = by_rank[2 * r];
        by_rank[2 * k + 1] = by_rank[2 * r + 1];
        k++;
    }
    *pairs = by_rank;
    *n = k;
    return BS_OK;
}

void tok_gguf_describe(const bs_tokenizer *t, tok_gguf_info *out) {
    int bytes = t->unit == TOK_UNIT_BYTES;
    *out = (tok_gguf_info){
        .model = bytes ? "gpt2" : "llama",
        .pre = bytes ? tok_gguf_pre_name(t) : NULL,
        .scores_from_merges = !bytes && t->policy == TOK_MERGE_RANK,
        .bos = t->bos, .eos = t->eos, .eot = t->eot, .eom = t->eom, .unk = t->unk,
        .add_bos = t->add_bos, .add_eos = t->add_eos, .add_space_prefix = t->prefix != TOK_PREFIX_NONE,
    };
}

/* ------------------------------------------------------------------- BPE --- */

typedef struct {
    int32_t start, len, prev, next, id;
} bpe_sym;

typedef struct {
    double key; /* rank, or -score: smaller merges first */
    int32_t left, right, size, id;
} bpe_pair;

/* Scratch space reused across the words of one tok_encode call. */
typedef struct {
    bpe_sym *sym;
    size_t cap_sym;
    bpe_pair *heap;
    size_t n_heap, cap_heap;
    byte_buf scratch;
} bpe_work;

static int pair_before(const bpe_pair *a, const bpe_pair *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(bpe_work *w, bpe_pair p) {
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        bpe_pair *v = realloc(w->heap, cap * sizeof *v);
        if (!v) return 0;
        w->heap = v, w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!pair_before(&p, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = p;
    return 1;
}

static bpe_pair heap_pop(bpe_work *w) {
    bpe_pair top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!pair_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int try_pair(const bs_tokenizer *t, bpe_work *w, const char *word, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return 1;
    const bpe_sym *l = &w->sym[left], *r = &w->sym[right];
    bpe_pair p = {0, left, right, l->len + r->len, -1};
    if (t->policy == TOK_MERGE_RANK) {
        int32_t rank;
        if (l->id < 0 || r->id < 0 || !pair_find(t, l->id, r->id, &rank, &p.id)) return 1;
        p.key = rank;
    } else {
        p.id = tok_token_id(t, word + l->start, (size_t)p.size);
        if (p.id < 0) return 1;
        p.key = -(double)t->score[p.id];
    }
    return heap_push(w, p);
}

static int sym_reserve(bpe_work *w, size_t n) {
    if (n <= w->cap_sym) return 1;
    bpe_sym *v = realloc(w->sym, n * sizeof *v);
    if (!v) return 0;
    w->sym = v, w->cap_sym = n;
    return 1;
}

static int push_bytes_fallback(const bs_tokenizer *t, const char *s, size_t n, id_vec *out) {
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_token[(unsigned char)s[i]];
        if (id < 0) id = t->unk;
        if (id >= 0 && !ids_push(out, id)) return 0;
    }
    return 1;
}

/* Merge one pre-tokenized word into tokens.  Returns 0 on allocation failure. */
static int bpe_word(const bs_tokenizer *t, bpe_work *w, const char *word, size_t n, id_vec *out) {
    if (n == 0) return 1;
    if (t->ignore_merges) {
        int32_t whole;
        if (t->unit == TOK_UNIT_BYTES) {
            w->scratch.n = 0;
            for (size_t i = 0; i < n; i++) {
                char c[4];
                if (!buf_put(&w->scratch, c, utf8_put(byte_to_cp((unsigned char)word[i]), c))) return 0;
            }
            whole = tok_token_id(t, w->scratch.p, w->scratch.n);
        } else {
            whole = tok_token_id(t, word, n);
        }
        if (whole >= 0) return ids_push(out, whole);
    }
    if (!sym_reserve(w, n)) return 0;
    size_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 1;
        int32_t id;
        if (t->unit == TOK_UNIT_BYTES) {
            id = t->byte_token[(unsigned char)word[i]];
        } else {
            len = utf8_char_len((const unsigned char *)word + i, n - i);
            if (len == 0) len = 1;
            id = tok_token_id(t, word + i, len);
            if (id < 0 && t->policy == TOK_MERGE_RANK) {
                /* HF BPE: an unknown character becomes byte tokens (or unk) before merging */
                if (t->byte_fallback) {
                    for (size_t k = 0; k < len; k++) {
                        int32_t b = t->byte_token[(unsigned char)word[i + k]];
                        w->sym[ns++] = (bpe_sym){(int32_t)(i + k), 1, -1, -1, b >= 0 ? b : t->unk};
                    }
                } else {
                    w->sym[ns++] = (bpe_sym){(int32_t)i, (int32_t)len, -1, -1, t->unk};
                }
                i += len;
                continue;
            }
        }
        w->sym[ns++] = (bpe_sym){(int32_t)i, (int32_t)len, -1, -1, id};
        i += len;
    }
    for (size_t i = 0; i < ns; i++) {
        w->sym[i].prev = (int32_t)i - 1;
        w->sym[i].next = i + 1 < ns ? (int32_t)(i + 1) : -1;
    }
    w->n_heap = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        if (!try_pair(t, w, word, (int32_t)i, (int32_t)(i + 1))) return 0;
    while (w->n_heap) {
        bpe_pair p = heap_pop(w);
        bpe_sym *l = &w->sym[p.left], *r = &w->sym[p.right];
        if (l->len == 0 || r->len == 0 || l->next != p.right || l->len + r->len != p.size) continue; /* stale */
        l->len += r->len;
        l->id = p.id;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = p.left;
        if (!try_pair(t, w, word, l->prev, p.left) || !try_pair(t, w, word, p.left, l->next)) return 0;
    }
    for (size_t i = 0; i < ns; i++) {
        const bpe_sym *s = &w->sym[i];
        if (s->len == 0) continue;
        if (s->id >= 0) {
            if (!ids_push(out, s->id)) return 0;
        } else if (t->policy == TOK_MERGE_SCORE) {
            if (!push_bytes_fallback(t, word + s->start, (size_t)s->len, out)) return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------- pre-tokenizing --- */

/* Apply the regex sequence as llama.cpp and HF's Split(Isolated) do: every
 * regex splits each current fragment into matches and the gaps between them. */
static bs_status regex_split(const bs_tokenizer *t, const char *s, span_vec *words, span_vec *tmp,
                             bs_error *err) {
    for (int r = 0; r < t->n_regex; r++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->regex[r], NULL);
        if (!md) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
        tmp->n = 0;
        for (size_t k = 0; k < words->n; k++) {
            const span f = words->v[k];
            const char *subject = s + f.off;
            size_t pos = 0, last = 0;
            while (pos < f.len) {
                int rc = pcre2_match(t->regex[r], (PCRE2_SPTR)subject, f.len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    pcre2_match_data_free(md);
                    return bs_fail(err, BS_EINVAL, "tokenizer: pre-tokenizer regex %d failed (pcre2 error %d)", r, rc);
                }
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (me == ms) { /* empty match: step over one character */
                    size_t step = utf8_char_len((const unsigned char *)subject + ms, f.len - ms);
                    pos = ms + (step ? step : 1);
                    continue;
                }
                int ok = spans_push(tmp, f.off + last, ms - last) &&
                         (!t->regex_keep[r] || spans_push(tmp, f.off + ms, me - ms));
                if (!ok) {
                    pcre2_match_data_free(md);
                    return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
                }
                last = pos = me;
            }
            if (!spans_push(tmp, f.off + last, f.len - last)) {
                pcre2_match_data_free(md);
                return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
            }
        }
        pcre2_match_data_free(md);
        span_vec swap = *words;
        *words = *tmp;
        *tmp = swap;
    }
    return BS_OK;
}

/* Split s[0..n) into words: runs of valid UTF-8 go through the regexes (PCRE2
 * needs valid input), each run of invalid bytes is a word of its own. */
static bs_status pre_tokenize(const bs_tokenizer *t, const char *s, size_t n, span_vec *words, bs_error *err) {
    words->n = 0;
    if (t->split_on_marker) {
        size_t start = 0;
        for (size_t i = 1; i + 3 <= n; i++)
            if (memcmp(s + i, SPACE_MARKER, 3) == 0) {
                if (!spans_push(words, start, i - start)) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
                start = i;
            }
        if (!spans_push(words, start, n - start)) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
        return BS_OK;
    }
    if (t->n_regex == 0) {
        if (!spans_push(words, 0, n)) return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
        return BS_OK;
    }
    span_vec valid = {0}, tmp = {0};
    bs_status st = BS_OK;
    for (size_t i = 0; i < n && !st;) {
        size_t j = i;
        while (j < n) {
            size_t len = utf8_char_len((const unsigned char *)s + j, n - j);
            if (!len) break;
            j += len;
        }
        if (j > i) {
            valid.n = 0;
            if (!spans_push(&valid, i, j - i)) st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
            if (!st) st = regex_split(t, s, &valid, &tmp, err);
            for (size_t k = 0; k < valid.n && !st; k++)
                if (!spans_push(words, valid.v[k].off, valid.v[k].len)) st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
            i = j;
            continue;
        }
        while (j < n && utf8_char_len((const unsigned char *)s + j, n - j) == 0) j++;
        if (!spans_push(words, i, j - i)) st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
        i = j;
    }
    free(valid.v), free(tmp.v);
    return st;
}

/* Encode one stretch of raw text between special tokens. */
static bs_status encode_piece(const bs_tokenizer *t, bpe_work *w, const char *s, size_t n, int first_piece,
                              id_vec *out, bs_error *err) {
    if (n == 0) return BS_OK;
    uint8_t *normalized = NULL;
    if (t->nfc && u8_check((const uint8_t *)s, n) == NULL) {
        size_t nn = 0;
        normalized = u8_normalize(UNINORM_NFC, (const uint8_t *)s, n, NULL, &nn);
        if (!normalized) return bs_fail(err, BS_ENOMEM, "tokenizer: NFC normalization failed");
        s = (const char *)normalized, n = nn;
    }
    byte_buf text = {0};
    int ok = 1;
    if (t->unit == TOK_UNIT_CHARS && t->space_marker) {
        if (t->prefix == TOK_PREFIX_EVERY_PIECE || (t->prefix == TOK_PREFIX_FIRST_PIECE && first_piece))
            ok = buf_put(&text, SPACE_MARKER, 3);
        for (size_t i = 0; i < n && ok; i++) ok = s[i] == ' ' ? buf_put(&text, SPACE_MARKER, 3) : buf_put(&text, s + i, 1);
    } else {
        if (t->byte_prefix_space && s[0] != ' ') ok = buf_put(&text, " ", 1);
        if (ok) ok = buf_put(&text, s, n);
    }
    free(normalized);
    if (!ok) {
        free(text.p);
        return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    }
    span_vec words = {0};
    bs_status st = pre_tokenize(t, text.p, text.n, &words, err);
    for (size_t k = 0; k < words.n && !st; k++)
        if (!bpe_word(t, w, text.p + words.v[k].off, words.v[k].len, out))
            st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    free(words.v);
    free(text.p);
    return st;
}

/* Longest special token starting at s that this call may recognise. */
static int32_t match_special(const bs_tokenizer *t, const unsigned char *s, size_t n, int parse_special,
                             size_t *match_len) {
    int32_t best = -1;
    int32_t node = t->trie_root[s[0]];
    for (size_t i = 0; node >= 0;) {
        int32_t id = t->trie[node].token;
        if (id >= 0 && (parse_special || t->type[id] == TOK_T_USER)) best = id, *match_len = i + 1;
        if (++i >= n) break;
        node = t->trie[node].child;
        while (node >= 0 && t->trie[node].byte != s[i]) node = t->trie[node].sibling;
    }
    return best;
}

static int is_ascii_space(char c) { return isspace((unsigned char)c) != 0; }

bs_status tok_encode(const bs_tokenizer *t, const char *text, size_t len, int flags, int32_t **ids,
                     size_t *n_ids, bs_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return bs_fail(err, BS_EINVAL, "tok_encode: NULL text with length %zu", len);
    id_vec out = {0};
    bpe_work w = {0};
    bs_status st = BS_OK;
    int add_special = (flags & TOK_ADD_SPECIAL) != 0, parse_special = (flags & TOK_PARSE_SPECIAL) != 0;
    if (add_special && t->add_bos && t->bos >= 0 && !ids_push(&out, t->bos))
        st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    size_t piece = 0, pos = 0;
    while (pos < len && !st) {
        size_t mlen = 0;
        int32_t id = t->n_trie ? match_special(t, (const unsigned char *)text + pos, len - pos, parse_special, &mlen) : -1;
        if (id < 0) {
            pos++;
            continue;
        }
        size_t end = pos;
        if (t->strip[id] & TOK_LSTRIP)
            while (end > piece && is_ascii_space(text[end - 1])) end--;
        st = encode_piece(t, &w, text + piece, end - piece, piece == 0, &out, err);
        if (!st && !ids_push(&out, id)) st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
        pos += mlen;
        if (t->strip[id] & TOK_RSTRIP)
            while (pos < len && is_ascii_space(text[pos])) pos++;
        piece = pos;
    }
    if (!st) st = encode_piece(t, &w, text + piece, len - piece, piece == 0, &out, err);
    if (!st && add_special && t->add_eos && t->eos >= 0 && !ids_push(&out, t->eos))
        st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    if (!st && !out.v && !(out.v = malloc(sizeof *out.v))) st = bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    free(w.sym), free(w.heap), free(w.scratch.p);
    if (st) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return BS_OK;
}

/* -------------------------------------------------------------- decoding --- */

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Write the bytes token id spells into out (room for t->max_len bytes);
 * *normal says whether it is ordinary text (eligible for the leading-space rule). */
static size_t token_piece(const bs_tokenizer *t, int32_t id, int flags, char *out, int *normal) {
    const char *s = t->text[id];
    size_t n = t->len[id], k = 0;
    *normal = 0;
    switch (t->type[id]) {
    case TOK_T_CONTROL:
    case TOK_T_UNKNOWN:
        if (!(flags & TOK_DECODE_SPECIAL)) return 0;
        memcpy(out, s, n);
        return n;
    case TOK_T_USER:
        memcpy(out, s, n);
        return n;
    case TOK_T_UNUSED:
        return 0;
    case TOK_T_BYTE:
        if (n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && hex_digit(s[3]) >= 0 && hex_digit(s[4]) >= 0) {
            out[0] = (char)(hex_digit(s[3]) * 16 + hex_digit(s[4]));
            return 1;
        }
        memcpy(out, s, n);
        return n;
    default:
        break;
    }
    *normal = 1;
    if (t->unit == TOK_UNIT_BYTES) {
        for (size_t i = 0; i < n;) {
            size_t len = utf8_char_len((const unsigned char *)s + i, n - i);
            int b = len ? cp_to_byte(utf8_decode((const unsigned char *)s + i, len)) : -1;
            if (!len) len = 1;
            if (b >= 0) {
                out[k++] = (char)b;
            } else { /* not a byte-level character: keep it as spelled */
                memcpy(out + k, s + i, len);
                k += len;
            }
            i += len;
        }
        return k;
    }
    for (size_t i = 0; i < n;) {
        if (t->space_marker && i + 3 <= n && memcmp(s + i, SPACE_MARKER, 3) == 0) {
            out[k++] = ' ';
            i += 3;
        } else {
            out[k++] = s[i++];
        }
    }
    return k;
}

/* Apply the leading-space rule to a freshly decoded piece; returns the offset to emit from. */
static size_t piece_start(const bs_tokenizer *t, const char *piece, size_t n, int normal, int *started) {
    size_t skip = 0;
    if (!*started && normal && t->strip_leading_space && n > 0 && piece[0] == ' ') skip = 1;
    if (n > 0) *started = 1;
    return skip;
}

bs_status tok_decode(const bs_tokenizer *t, const int32_t *ids, size_t n, int flags, char **text, size_t *len,
                     bs_error *err) {
    *text = NULL;
    *len = 0;
    char *piece = malloc(t->max_len + 1);
    byte_buf out = {0};
    if (!piece || !buf_put(&out, "", 0)) {
        free(piece), free(out.p);
        return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
    }
    int started = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            free(piece), free(out.p);
            return bs_fail(err, BS_ERANGE, "tok_decode: token id %d at position %zu out of range [0, %d)", ids[i], i,
                           t->n_vocab);
        }
        int normal;
        size_t k = token_piece(t, ids[i], flags, piece, &normal);
        size_t skip = piece_start(t, piece, k, normal, &started);
        if (!buf_put(&out, piece + skip, k - skip)) {
            free(piece), free(out.p);
            return bs_fail(err, BS_ENOMEM, "tokenizer: out of memory");
        }
    }
    free(piece);
    *text = out.p;
    *len = out.n;
    return BS_OK;
}

void tok_stream_init(tok_stream *s) { memset(s, 0, sizeof *s); }

/* Emit the complete characters of pending+data, keep a trailing incomplete one. */
static size_t stream_emit(tok_stream *s, const char *data, size_t n, int final, char *out, size_t cap) {
    unsigned char buf[32];
    size_t w = 0, i = 0;
    const unsigned char *src;
    size_t total;
    unsigned char *joined = NULL;
    if (s->n_pending + n <= sizeof buf) {
        memcpy(buf, s->pending, (size_t)s->n_pending);
        memcpy(buf + s->n_pending, data, n);
        src = buf;
    } else {
        joined = malloc((size_t)s->n_pending + n);
        if (!joined) return 0;
        memcpy(joined, s->pending, (size_t)s->n_pending);
        memcpy(joined + s->n_pending, data, n);
        src = joined;
    }
    total = (size_t)s->n_pending + n;
    s->n_pending = 0;
    while (i < total) {
        size_t len = utf8_char_len(src + i, total - i);
        if (len) {
            if (w + len > cap) break;
            memcpy(out + w, src + i, len);
            w += len, i += len;
            continue;
        }
        if (!final && utf8_incomplete(src + i, total - i)) { /* wait for the rest of the character */
            s->n_pending = (int)(total - i);
            memcpy(s->pending, src + i, total - i);
            i = total;
            break;
        }
        if (w + 3 > cap) break;
        memcpy(out + w, "\xEF\xBF\xBD", 3);
        w += 3, i += 1;
    }
    free(joined);
    return w;
}

size_t tok_stream_push(const bs_tokenizer *t, tok_stream *s, int32_t id, int flags, char *out, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    s->n_tokens++;
    char local[512];
    char *piece = t->max_len <= sizeof local ? local : malloc(t->max_len);
    if (!piece) return 0;
    int normal;
    size_t k = token_piece(t, id, flags, piece, &normal);
    size_t skip = piece_start(t, piece, k, normal, &s->started);
    size_t w = stream_emit(s, piece + skip, k - skip, 0, out, cap);
    if (piece != local) free(piece);
    return w;
}

size_t tok_stream_flush(const bs_tokenizer *t, tok_stream *s, char *out, size_t cap) {
    (void)t;
    return stream_emit(s, "", 0, 1, out, cap);
}
