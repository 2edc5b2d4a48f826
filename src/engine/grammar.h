/* engine/grammar.h — constrained decoding: grammars, a byte-level matcher and
 * the per-step token mask.
 *
 * A bs_grammar is a context-free grammar over bytes (llama.cpp's GBNF, with
 * character classes compiled to UTF-8 byte sequences), built from GBNF text,
 * from a JSON Schema (json_schema.h describes the supported subset), or as
 * "any JSON object".  It is immutable after construction and may be shared by
 * threads and requests.
 *
 * A bs_token_trie holds every token's bytes in a byte trie (built once per
 * tokenizer, immutable, shareable).  Special/control tokens are left out;
 * end-of-generation tokens are allowed exactly when the grammar is complete.
 *
 * A bs_grammar_matcher follows one sequence: a set of parse stacks (llama.cpp
 * style pushdown matcher, stacks hash-consed so a state is a short id list
 * and rollback is popping a history entry).  States are interned and their
 * byte transitions cached, a lazily built DFA.  grammar_matcher_mask walks
 * the trie once, advancing the matcher byte by byte, pruning a subtree at its
 * first rejected byte and allowing a subtree whole when all its bytes lead
 * back to the same state (plain text inside a JSON string).  A matcher is
 * used by one thread at a time. */
#ifndef BASALT_ENGINE_GRAMMAR_H
#define BASALT_ENGINE_GRAMMAR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

typedef struct bs_grammar bs_grammar; /* compiled, immutable, shareable across threads */

/* JSON Schema -> grammar (see json_schema.h for the subset).  path_for_errors
 * prefixes error messages, e.g. "response_format.json_schema.schema"; an
 * unsupported keyword is BS_EUNSUPPORTED naming it and its path, a malformed
 * schema BS_EINVAL. */
bs_status grammar_from_json_schema(const json_t *schema, const char *path_for_errors, bs_grammar **out,
                                   bs_error *err);
/* Any JSON object (response_format json_object). */
bs_status grammar_json_object(bs_grammar **out, bs_error *err);
/* llama.cpp's GBNF: `name ::= alternatives` rules, "literals", [classes],
 * [^negated], ., ( groups ), ?, *, +, {m}, {m,}, {m,n}, # comments; the start
 * rule is `root`.  Undefined rules and left recursion are errors. */
bs_status grammar_parse_gbnf(const char *text, bs_grammar **out, bs_error *err);
void grammar_free(bs_grammar *g);

typedef struct bs_token_trie bs_token_trie; /* per tokenizer, immutable */

bs_status token_trie_build(const bs_tokenizer *tok, bs_token_trie **out, bs_error *err);
void token_trie_free(bs_token_trie *t);
/* The bytes token id writes inside a text (not NUL-terminated); NULL for
 * special, control and end-of-generation tokens, which write none. */
const char *token_trie_bytes(const bs_token_trie *t, int32_t id, size_t *n);

typedef struct bs_grammar_matcher bs_grammar_matcher; /* per sequence */

/* trie may be NULL for a matcher driven only by grammar_matcher_accept_bytes. */
bs_status grammar_matcher_open(const bs_grammar *g, const bs_token_trie *trie, bs_grammar_matcher **out,
                               bs_error *err);
void grammar_matcher_close(bs_grammar_matcher *m);
/* Sets logits of disallowed tokens to -INFINITY (n_vocab may exceed the
 * tokenizer's vocabulary: the extra ids are disallowed). */
void grammar_matcher_mask(bs_grammar_matcher *m, float *logits, int n_vocab);
/* Advance by one token; BS_EINVAL if the mask would not allow it.  An
 * end-of-generation token is accepted only when complete and ends the
 * sequence (nothing else is accepted after it). */
bs_status grammar_matcher_accept(bs_grammar_matcher *m, int32_t token, bs_error *err);
/* Advance by raw bytes (all or nothing); BS_EINVAL naming the offset of the
 * first rejected byte. */
bs_status grammar_matcher_accept_bytes(bs_grammar_matcher *m, const char *bytes, size_t n, bs_error *err);
/* 1 when the bytes so far form a complete sentence of the grammar. */
int grammar_matcher_complete(const bs_grammar_matcher *m);
/* Undo the last n successful accept/accept_bytes calls (speculative decoding,
 * stop strings); n is clamped to the number of calls recorded. */
void grammar_matcher_rollback(bs_grammar_matcher *m, int n);

#endif
