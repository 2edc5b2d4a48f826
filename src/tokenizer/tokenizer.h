/* tokenizer/tokenizer.h — exact text <-> token id conversion.
 *
 * A bs_tokenizer owns a copy of a model's vocabulary, merge table, special
 * tokens and pre-tokenizer settings, loaded from GGUF metadata
 * (tokenizer.ggml.*) or from a Hugging Face tokenizer.json.  It reproduces
 * llama.cpp / HF tokenizers exactly for byte-level BPE (GPT-2, Llama 3, Qwen2,
 * DeepSeek, StarCoder, Falcon pre-tokenizers) and SentencePiece-style BPE
 * (Llama 2, Mistral, Phi-3).  A tokenizer is immutable after open and may be
 * shared by threads. */
#ifndef BASALT_TOKENIZER_TOKENIZER_H
#define BASALT_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "format/gguf.h"

typedef struct bs_tokenizer bs_tokenizer;

/* tokenizer.ggml.* metadata; copies what it needs (the gguf may be closed
 * afterwards).  An unknown tokenizer.ggml.pre falls back to the GPT-2 regex
 * with a logged warning (llama.cpp refuses such files). */
bs_status tok_open_gguf(const gguf_file *g, bs_tokenizer **out, bs_error *err);
/* dir/tokenizer.json + dir/tokenizer_config.json and dir/generation_config.json
 * (both optional). */
bs_status tok_open_hf(const char *dir, bs_tokenizer **out, bs_error *err);
/* tok_open_hf on one tokenizer.json file; config_path may be NULL. */
bs_status tok_open_hf_files(const char *json_path, const char *config_path, bs_tokenizer **out,
                            bs_error *err);
/* 256 GPT-2 byte tokens (id = byte value) + "<|endoftext|>" (id 256, eos); no
 * merges: for the random demo model. */
bs_status tok_open_byte_level(bs_tokenizer **out, bs_error *err);
void tok_close(bs_tokenizer *t);

int32_t tok_vocab_size(const bs_tokenizer *t);
int32_t tok_bos_id(const bs_tokenizer *t); /* -1 when none */
int32_t tok_eos_id(const bs_tokenizer *t); /* -1 when none */
/* End of generation: eos, eot, eom, <|im_end|>, <|endoftext|> ... as the model files say. */
int tok_is_eog(const bs_tokenizer *t, int32_t id);

enum {
    TOK_ADD_SPECIAL = 1,   /* apply the model's rule for BOS/EOS (add_bos_token etc.) */
    TOK_PARSE_SPECIAL = 2, /* recognise special/control tokens written in the text; otherwise they are plain text */
};
/* *ids is malloc'ed (never NULL on success), caller frees.  Invalid UTF-8 is
 * encoded byte by byte (byte tokens / byte fallback). */
bs_status tok_encode(const bs_tokenizer *t, const char *text, size_t len, int flags, int32_t **ids,
                     size_t *n_ids, bs_error *err);

enum { TOK_DECODE_SPECIAL = 1 }; /* render special/control tokens' text; otherwise they decode to "" */
/* *text is NUL-terminated and malloc'ed; the bytes are exactly what the tokens
 * spell (which may be invalid UTF-8 for a partial sequence). */
bs_status tok_decode(const bs_tokenizer *t, const int32_t *ids, size_t n, int flags, char **text,
                     size_t *len, bs_error *err);

/* The vocab entry as stored, NULL if out of range. */
const char *tok_token_text(const bs_tokenizer *t, int32_t id);
/* The id of the vocab entry spelled exactly text[0..len), -1 when absent. */
int32_t tok_token_id(const bs_tokenizer *t, const char *text, size_t len);

/* ---- The vocabulary as data, for writing it out (tokenizer.ggml.* in GGUF) ---- */

/* Length in bytes of the vocab entry (texts may hold bytes a C string cannot). */
size_t tok_token_len(const bs_tokenizer *t, int32_t id);
float tok_token_score(const bs_tokenizer *t, int32_t id);
/* GGUF token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
int tok_token_type(const bs_tokenizer *t, int32_t id);
/* The merge table in rank order as (left id, right id) pairs: *pairs holds
 * 2 * *n ids, malloc'ed (never NULL on success), caller frees. */
bs_status tok_merges(const bs_tokenizer *t, int32_t **pairs, size_t *n, bs_error *err);

/* How the tokenizer maps onto llama.cpp's GGUF vocabulary description. */
typedef struct tok_gguf_info {
    const char *model; /* "gpt2" (byte-level BPE, ranked merges) or "llama" (SentencePiece-style, scores) */
    const char *pre;   /* gpt2: llama.cpp's pre-tokenizer name with exactly these regexes and
                        * ignore_merges; NULL when none matches */
    int scores_from_merges; /* llama from tokenizer.json: merge ranks, not scores, order the merges */
    int32_t bos, eos, eot, eom, unk; /* -1 when none */
    int add_bos, add_eos, add_space_prefix;
} tok_gguf_info;
void tok_gguf_describe(const bs_tokenizer *t, tok_gguf_info *out);

/* Streaming decode: feed ids one at a time; only complete UTF-8 characters are
 * emitted (invalid sequences become U+FFFD), so every chunk is valid UTF-8.
 * `started` records whether text was emitted yet (SentencePiece models drop the
 * leading space of the first piece).  A plain struct: keep it on the stack. */
typedef struct tok_stream {
    unsigned char pending[16];
    int n_pending;
    int n_tokens;
    int started;
} tok_stream;
void tok_stream_init(tok_stream *s);
/* Returns bytes written to out (cap >= 256 suffices for any single token plus
 * pending bytes; a longer piece is cut at cap).  Ids out of range emit nothing. */
size_t tok_stream_push(const bs_tokenizer *t, tok_stream *s, int32_t id, int flags, char *out, size_t cap);
/* Emits leftover bytes (invalid UTF-8 replaced by U+FFFD). */
size_t tok_stream_flush(const bs_tokenizer *t, tok_stream *s, char *out, size_t cap);

#endif
