/* tokenizer/tok_internal.h — the bs_tokenizer representation shared by the
 * core (tokenizer.c) and the two loaders (tok_gguf.c, tok_hf.c).
 *
 * Loaders fill a tokenizer in three steps: tok_new + tok_set_token for every
 * id; tok_index (text -> id map, byte tokens); then merges, regexes and flags;
 * finally tok_finish (special-token trie, end-of-generation set). */
#ifndef BASALT_TOKENIZER_INTERNAL_H
#define BASALT_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

/* GGUF token_type values; HF added tokens map to CONTROL (special) or USER. */
enum { TOK_T_NORMAL = 1, TOK_T_UNKNOWN = 2, TOK_T_CONTROL = 3, TOK_T_USER = 4, TOK_T_UNUSED = 5, TOK_T_BYTE = 6 };
enum { TOK_LSTRIP = 1, TOK_RSTRIP = 2 };

typedef enum {
    TOK_UNIT_BYTES, /* byte-level BPE: symbols are bytes spelled through GPT-2's bytes_to_unicode */
    TOK_UNIT_CHARS, /* SentencePiece-style: symbols are UTF-8 characters, ' ' spelled as U+2581 */
} tok_unit;

typedef enum {
    TOK_MERGE_RANK,  /* merges list: lower index merges first (GPT-2, HF BPE) */
    TOK_MERGE_SCORE, /* any adjacent pair whose concatenation is a token; higher score first (GGUF llama) */
} tok_merge_policy;

typedef enum { TOK_PREFIX_NONE, TOK_PREFIX_EVERY_PIECE, TOK_PREFIX_FIRST_PIECE } tok_prefix;

/* The pre-tokenizer regex that GPT-2 and HF's ByteLevel(use_regex) apply. */
#define TOK_GPT2_REGEX \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct tok_trie_node {
    int32_t child, sibling, token;
    unsigned char byte;
} tok_trie_node;

struct bs_tokenizer {
    int32_t n_vocab;
    char **text;    /* NUL-terminated copies; "" for unassigned ids */
    uint32_t *len;
    float *score;
    uint8_t *type;  /* TOK_T_* */
    uint8_t *strip; /* TOK_LSTRIP | TOK_RSTRIP for added tokens */
    uint8_t *eog;
    size_t max_len;

    int32_t *slots; /* open addressing, text -> id, -1 empty */
    uint32_t slot_mask;

    uint64_t *pair_keys; /* (left id << 32 | right id) + 1, 0 empty */
    int32_t *pair_rank, *pair_result;
    uint32_t pair_mask, n_pairs;

    tok_unit unit;
    tok_merge_policy policy;
    int32_t byte_token[256]; /* byte-level char token, or <0xNN> for byte fallback */
    int nfc;
    int ignore_merges;
    int space_marker;       /* ' ' -> U+2581 before merging */
    tok_prefix prefix;      /* prepend U+2581 (CHARS) to raw-text pieces */
    int split_on_marker;    /* Metaspace split: each word starts at a U+2581 */
    int byte_prefix_space;  /* ByteLevel add_prefix_space: prepend ' ' */
    int byte_fallback;
    int strip_leading_space; /* decoding drops the first piece's leading space */

    pcre2_code **regex;
    uint8_t *regex_keep; /* 0: matches are removed (HF Split "Removed") */
    char **regex_src;    /* the patterns as given, to name the pre-tokenizer when writing GGUF */
    uint8_t *regex_literal;
    int n_regex;

    tok_trie_node *trie;
    int32_t n_trie, cap_trie;
    int32_t trie_root[256];

    int32_t bos, eos, eot, eom, unk;
    int add_bos, add_eos;
};

bs_status tok_new(int32_t n_vocab, bs_tokenizer **out, bs_error *err);
bs_status tok_set_token(bs_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type,
                        bs_error *err);
bs_status tok_index(bs_tokenizer *t, bs_error *err);
/* Rank = call order.  Fails naming the merge when a part or the result is not a token. */
bs_status tok_add_merge(bs_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                        const char *where, bs_error *err);
bs_status tok_add_regex(bs_tokenizer *t, const char *pattern, int keep_matches, int literal,
                        const char *where, bs_error *err);
bs_status tok_finish(bs_tokenizer *t, bs_error *err);

/* tok_gguf.c: the tokenizer.ggml.pre name whose regexes and ignore_merges
 * equal t's (byte-level tokenizers), or NULL. */
const char *tok_gguf_pre_name(const bs_tokenizer *t);

#endif
