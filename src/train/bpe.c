/* train/bpe.c — byte-level BPE training and tokenizer.json output (see bpe.h).
 *
 * Words are kept once with their counts (an open-addressing table keyed by
 * their bytes); each merge round counts adjacent pairs over the word types
 * into one dense [vocab][vocab] array, picks the best pair, clears only the
 * cells it touched, and rewrites the words that contain the pair. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "train/bpe.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Qwen2's pre-tokenizer regex (tokenizer.json of Qwen2/2.5). */
static const char split_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct word {
    char *bytes; /* the pre-tokenized piece (owned) */
    size_t len;
    uint64_t count;
    int32_t *sym; /* current token ids */
    int n_sym;
} word;

typedef struct token {
    unsigned char *bytes;
    size_t len;
} token;

struct bpe_trainer {
    pcre2_code *re;
    pcre2_match_data *md;
    word *words;
    size_t n_words, cap_words;
    uint32_t *slots; /* word index + 1; 0 empty */
    size_t slot_mask;
    token *tokens;
    int n_tokens;
    int32_t (*merges)[2];
    int n_merges;
    int trained;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

bs_status bpe_trainer_open(bpe_trainer **out, bs_error *err) {
    *out = NULL;
    bpe_trainer *t = calloc(1, sizeof *t);
    if (!t) return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)split_regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
    t->md = t->re ? pcre2_match_data_create_from_pattern(t->re, NULL) : NULL;
    t->slot_mask = 4095;
    t->slots = calloc(t->slot_mask + 1, sizeof *t->slots);
    if (!t->re || !t->md || !t->slots) {
        bpe_trainer_close(t);
        return bs_fail(err, BS_ENOMEM, "bpe: cannot set up the pre-tokenizer (pcre2 error %d)", ec);
    }
    *out = t;
    return BS_OK;
}

void bpe_trainer_close(bpe_trainer *t) {
    if (!t) return;
    pcre2_match_data_free(t->md);
    pcre2_code_free(t->re);
    for (size_t i = 0; i < t->n_words; i++) free(t->words[i].bytes), free(t->words[i].sym);
    free(t->words);
    free(t->slots);
    for (int i = 0; i < t->n_tokens; i++) free(t->tokens[i].bytes);
    free(t->tokens);
    free(t->merges);
    free(t);
}

static bs_status grow_slots(bpe_trainer *t, bs_error *err) {
    size_t mask = t->slot_mask * 2 + 1;
    uint32_t *slots = calloc(mask + 1, sizeof *slots);
    if (!slots) return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
    for (size_t w = 0; w < t->n_words; w++) {
        size_t i = hash_bytes(t->words[w].bytes, t->words[w].len) & mask;
        while (slots[i]) i = (i + 1) & mask;
        slots[i] = (uint32_t)w + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->slot_mask = mask;
    return BS_OK;
}

static bs_status count_word(bpe_trainer *t, const char *s, size_t n, bs_error *err) {
    if (n == 0) return BS_OK;
    size_t i = hash_bytes(s, n) & t->slot_mask;
    for (; t->slots[i]; i = (i + 1) & t->slot_mask) {
        word *w = &t->words[t->slots[i] - 1];
        if (w->len == n && memcmp(w->bytes, s, n) == 0) {
            w->count++;
            return BS_OK;
        }
    }
    if (t->n_words == t->cap_words) {
        size_t cap = t->cap_words ? t->cap_words * 2 : 1024;
        word *words = realloc(t->words, cap * sizeof *words);
        if (!words) return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
        t->words = words;
        t->cap_words = cap;
    }
    word *w = &t->words[t->n_words];
    *w = (word){.bytes = malloc(n), .len = n, .count = 1};
    if (!w->bytes) return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
    memcpy(w->bytes, s, n);
    t->slots[i] = (uint32_t)++t->n_words;
    return (t->n_words + 1) * 2 > t->slot_mask + 1 ? grow_slots(t, err) : BS_OK;
}

bs_status bpe_add_text(bpe_trainer *t, const char *text, size_t len, bs_error *err) {
    if (t->trained) return bs_fail(err, BS_EINVAL, "bpe: text added after training");
    size_t at = 0;
    while (at < len) {
        int rc = pcre2_match(t->re, (PCRE2_SPTR)text, len, at, 0, t->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) return count_word(t, text + at, len - at, err);
        if (rc < 0) return bs_fail(err, BS_EFORMAT, "bpe: pre-tokenizer regex failed (pcre2 error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        /* Isolated split: unmatched stretches are words too. */
        bs_status s = count_word(t, text + at, ov[0] - at, err);
        if (!s) s = count_word(t, text + ov[0], ov[1] - ov[0], err);
        if (s) return s;
        at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    return BS_OK;
}

static int32_t add_token(bpe_trainer *t, const unsigned char *bytes, size_t len) {
    for (int i = 256; i < t->n_tokens; i++) /* the same bytes reached by another merge path keep one id */
        if (t->tokens[i].len == len && memcmp(t->tokens[i].bytes, bytes, len) == 0) return i;
    unsigned char *copy = malloc(len);
    if (!copy) return -1;
    memcpy(copy, bytes, len);
    t->tokens[t->n_tokens] = (token){copy, len};
    return t->n_tokens++;
}

/* Replace every (a, b) in w by m, left to right. */
static void apply_merge(word *w, int32_t a, int32_t b, int32_t m) {
    int o = 0;
    for (int i = 0; i < w->n_sym; i++) {
        if (i + 1 < w->n_sym && w->sym[i] == a && w->sym[i + 1] == b) {
            w->sym[o++] = m;
            i++;
        } else {
            w->sym[o++] = w->sym[i];
        }
    }
    w->n_sym = o;
}

bs_status bpe_train(bpe_trainer *t, int n_merges, bs_error *err) {
    if (t->trained) return bs_fail(err, BS_EINVAL, "bpe: already trained");
    if (n_merges < 0 || n_merges > 65536) return bs_fail(err, BS_EINVAL, "bpe: %d merges is outside 0..65536", n_merges);
    t->trained = 1;
    size_t V = 256 + (size_t)n_merges;
    t->tokens = calloc(V, sizeof *t->tokens);
    t->merges = calloc((size_t)n_merges + 1, sizeof *t->merges);
    uint64_t *pairs = calloc(V * V, sizeof *pairs);
    if (!t->tokens || !t->merges || !pairs) {
        free(pairs);
        return bs_fail(err, BS_ENOMEM, "bpe: out of memory for %zu tokens", V);
    }
    for (int b = 0; b < 256; b++) {
        unsigned char byte = (unsigned char)b;
        if (add_token(t, &byte, 1) < 0) {
            free(pairs);
            return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
        }
    }
    for (size_t i = 0; i < t->n_words; i++) {
        word *w = &t->words[i];
        w->sym = malloc(w->len * sizeof *w->sym);
        if (!w->sym) {
            free(pairs);
            return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
        }
        for (size_t j = 0; j < w->len; j++) w->sym[j] = (unsigned char)w->bytes[j];
        w->n_sym = (int)w->len;
    }
    while (t->n_merges < n_merges) {
        uint64_t best = 0;
        size_t best_key = 0;
        for (size_t i = 0; i < t->n_words; i++) {
            const word *w = &t->words[i];
            for (int j = 0; j + 1 < w->n_sym; j++) {
                size_t key = (size_t)w->sym[j] * V + (size_t)w->sym[j + 1];
                uint64_t c = pairs[key] += w->count;
                if (c > best || (c == best && key < best_key)) best = c, best_key = key;
            }
        }
        for (size_t i = 0; i < t->n_words; i++) {
            const word *w = &t->words[i];
            for (int j = 0; j + 1 < w->n_sym; j++) pairs[(size_t)w->sym[j] * V + (size_t)w->sym[j + 1]] = 0;
        }
        if (best < 2) break; /* a pair seen once teaches nothing */
        int32_t a = (int32_t)(best_key / V), b = (int32_t)(best_key % V);
        size_t la = t->tokens[a].len, lb = t->tokens[b].len;
        unsigned char joined[512];
        if (la + lb > sizeof joined) break; /* no real word is that long; stop rather than truncate */
        memcpy(joined, t->tokens[a].bytes, la);
        memcpy(joined + la, t->tokens[b].bytes, lb);
        int32_t m = add_token(t, joined, la + lb);
        if (m < 0) {
            free(pairs);
            return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
        }
        t->merges[t->n_merges][0] = a;
        t->merges[t->n_merges][1] = b;
        t->n_merges++;
        for (size_t i = 0; i < t->n_words; i++) apply_merge(&t->words[i], a, b, m);
    }
    free(pairs);
    return BS_OK;
}

int bpe_vocab_size(const bpe_trainer *t) { return t->n_tokens; }

/* GPT-2's byte-to-unicode table: printable bytes stand for themselves, the
 * rest map to U+0100 onwards in byte order. */
static unsigned byte_char(unsigned b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) n++;
    return 256 + n;
}

/* The token's vocab string: each byte as its UTF-8 encoded stand-in. */
static char *token_string(const token *tk) {
    char *s = malloc(tk->len * 2 + 1), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < tk->len; i++) {
        unsigned c = byte_char(tk->bytes[i]);
        if (c < 0x80) {
            *p++ = (char)c;
        } else {
            *p++ = (char)(0xC0 | (c >> 6));
            *p++ = (char)(0x80 | (c & 0x3F));
        }
    }
    *p = '\0';
    return s;
}

static json_t *byte_level(void) {
    return json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
}

static bs_status build_json(const bpe_trainer *t, const char *const *specials, int n_specials, json_t *root,
                            bs_error *err) {
    json_t *added = json_array(), *vocab = json_object(), *merges = json_array();
    json_t *model = json_pack("{s:s,s:n,s:n,s:n,s:n,s:b,s:b,s:b,s:o,s:o}", "type", "BPE", "dropout", "unk_token",
                              "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                              "ignore_merges", 0, "vocab", vocab, "merges", merges);
    json_t *pre = json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},o]}", "type", "Sequence", "pretokenizers", "type", "Split",
                            "pattern", "Regex", split_regex, "behavior", "Isolated", "invert", 0, byte_level());
    int bad = !added || !model || !pre;
    bad |= json_object_set_new(root, "version", json_string("1.0"));
    bad |= json_object_set_new(root, "truncation", json_null());
    bad |= json_object_set_new(root, "padding", json_null());
    bad |= json_object_set_new(root, "added_tokens", added);
    bad |= json_object_set_new(root, "normalizer", json_null());
    bad |= json_object_set_new(root, "pre_tokenizer", pre);
    bad |= json_object_set_new(root, "post_processor", byte_level());
    bad |= json_object_set_new(root, "decoder", byte_level());
    bad |= json_object_set_new(root, "model", model);
    for (int i = 0; i < n_specials && !bad; i++)
        bad |= json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", t->n_tokens + i, "content",
                                                      specials[i], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                      "normalized", 0, "special", 1));
    char **strs = calloc((size_t)t->n_tokens, sizeof *strs);
    bad |= !strs;
    for (int i = 0; i < t->n_tokens && !bad; i++) {
        strs[i] = token_string(&t->tokens[i]);
        bad |= !strs[i] || json_object_set_new(vocab, strs[i], json_integer(i));
    }
    for (int i = 0; i < t->n_merges && !bad; i++) {
        const char *a = strs[t->merges[i][0]], *b = strs[t->merges[i][1]];
        size_t la = strlen(a), lb = strlen(b);
        char *m = malloc(la + lb + 2);
        if (m) {
            memcpy(m, a, la);
            m[la] = ' ';
            memcpy(m + la + 1, b, lb + 1);
        }
        bad |= !m || json_array_append_new(merges, json_string(m));
        free(m);
    }
    for (int i = 0; strs && i < t->n_tokens; i++) free(strs[i]);
    free(strs);
    return bad ? bs_fail(err, BS_ENOMEM, "bpe: out of memory building tokenizer.json") : BS_OK;
}

bs_status bpe_write_tokenizer_json(const bpe_trainer *t, const char *const *specials, int n_specials,
                                   const char *path, bs_error *err) {
    if (!t->trained) return bs_fail(err, BS_EINVAL, "bpe: write before training");
    json_t *root = json_object();
    if (!root) return bs_fail(err, BS_ENOMEM, "bpe: out of memory");
    bs_status s = build_json(t, specials, n_specials, root, err);
    if (!s && json_dump_file(root, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0)
        s = bs_fail(err, BS_EIO, "%s: cannot write", path);
    json_decref(root);
    return s;
}
