/* template/chat_parse_impl.h — what the incremental scanner (chat_parse.c)
 * needs from the per-family grammars (chat_parse_formats.c).
 *
 * A family is a list of block openers plus one block parser.  The scanner
 * finds an opener in content, then hands the text from the opener on to the
 * block parser, which answers on the text it has so far: the block is
 * complete (and how long it is, with its calls), malformed, or undecided.
 * Parsers are pure functions of (text, eof) and monotone: a verdict other
 * than SCAN_MORE never changes when more text arrives, which is what makes
 * the result independent of how the output was split into pieces. */
#ifndef BASALT_TEMPLATE_CHAT_PARSE_IMPL_H
#define BASALT_TEMPLATE_CHAT_PARSE_IMPL_H

#include <jansson.h>
#include <stddef.h>

#include "template/chat_parse.h"

typedef enum { SCAN_OK, SCAN_MORE, SCAN_FAIL } scan_result;

typedef struct chat_call {
    char *name; /* NUL-terminated, valid UTF-8 */
    char *args; /* arguments JSON text, NUL-terminated */
} chat_call;

/* Where a JSON container scan of the pending block stopped for lack of
 * text, so the next attempt resumes there instead of rescanning. */
typedef struct json_resume {
    int valid, depth, in_str, esc;
    size_t start, pos;
    char closers[128];
} json_resume;

/* The block parser's scratch: the calls of the block being parsed (oom is
 * set when an allocation failed; the parser then answers SCAN_FAIL) and its
 * resume point, which lives until the block is decided. */
typedef struct chat_calls {
    chat_call *v;
    size_t n, cap;
    int oom;
    json_resume resume;
} chat_calls;

/* Drops the calls (before each attempt); keeps the resume point. */
void chat_calls_clear(chat_calls *c);

typedef struct chat_opener {
    const char *text;
    int at_start_only; /* only before any content (Llama 3's bare JSON) */
} chat_opener;

typedef struct chat_family {
    const chat_opener *openers; /* terminated by a NULL text */
    /* Texts that can end a block: a pending block is parsed again when one
     * arrives (or when it has doubled in length, or at the end). */
    const char *closers[3];
    int short_ids; /* Mistral: 9-character ids instead of "call_" + 24 */
    /* s..n starts with one of the openers. On SCAN_OK, *used is the block's
     * length and its calls were appended to out. */
    scan_result (*parse_block)(const json_t *tools, const char *s, size_t n, int eof,
                               size_t *used, chat_calls *out);
} chat_family;

/* NULL for CHAT_FORMAT_CONTENT. */
const chat_family *chat_family_of(chat_format f);

#endif
