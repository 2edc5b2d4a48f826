/* template/chat_parse.h — model output back into an OpenAI assistant message.
 *
 * Owns the per-family output grammars (tool-call markup and <think> blocks)
 * and one incremental scanner shared by all of them: text is fed as the
 * engine produces it and comes out as content, reasoning and tool-call
 * events.  Text that might be the start of markup is held back until it is
 * disambiguated, so no content event ever carries a partial marker.
 *
 * Rules (identical whatever the feed granularity):
 *  - A tool-call block (opener ... closer, per family) is committed when its
 *    closing markup has been seen and its body parsed; only then are its
 *    TOOL_BEGIN and TOOL_ARGS events emitted (a call's arguments as one
 *    fragment).  A block whose body is malformed, or unterminated at
 *    finish, is not an error: its opener is
 *    released as content and scanning resumes after it, so the raw text ends
 *    in content.  This is the choice that keeps "deltas concatenate to the
 *    final message" true: a call is never streamed and then retracted.
 *  - Arguments: JSON families pass the model's JSON text of the arguments
 *    value through verbatim; XML families (Qwen3-Coder, MiniMax-M2) build
 *    compact JSON in parameter order, values typed by the tool's schema.
 *  - <think> is recognized only before any content (after whitespace), once;
 *    starts_in_reasoning begins inside it (the prompt opened it).
 *  - Whitespace directly adjacent to think or tool-call markup is dropped;
 *    all other text is kept verbatim (plain text passes through unchanged).
 *  - Event text is valid UTF-8: characters split across pieces are held
 *    until whole, bytes that are not UTF-8 become U+FFFD. */
#ifndef BASALT_TEMPLATE_CHAT_PARSE_H
#define BASALT_TEMPLATE_CHAT_PARSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum {
    CHAT_FORMAT_CONTENT,     /* no tool calls: everything (bar <think>) is content */
    CHAT_FORMAT_HERMES,      /* Hermes 2/3, Qwen2.5, Qwen3: <tool_call>{json}</tool_call> */
    CHAT_FORMAT_QWEN3_CODER, /* <tool_call><function=NAME><parameter=KEY>v</parameter>... */
    CHAT_FORMAT_LLAMA3,      /* {"name":..,"parameters":..} as the message or after <|python_tag|> */
    CHAT_FORMAT_MISTRAL,     /* [TOOL_CALLS][{...},...] or [TOOL_CALLS]name[ARGS]{...} */
    CHAT_FORMAT_DEEPSEEK_V3, /* <｜tool▁calls▁begin｜>... (V3.1 and V3/R1 forms) */
    CHAT_FORMAT_MINIMAX_M2,  /* <minimax:tool_call><invoke name=".."><parameter name="..">.. */
} chat_format;

/* The family whose tool-call markup a chat template's source text uses;
 * CHAT_FORMAT_CONTENT when none is recognized. */
chat_format chat_format_detect(const char *template_source);

/* Whether the template knows <think> blocks (reasoning models). */
int chat_template_has_reasoning(const char *template_source);

/* Whether a rendered prompt leaves a <think> block open at its end (the
 * generation prompt ends with "<think>" plus optional whitespace), i.e. the
 * output starts inside the reasoning: the value for starts_in_reasoning. */
int chat_prompt_opens_reasoning(const char *prompt);

/* By name: content, hermes, qwen3_coder, llama3, mistral, deepseek_v3,
 * minimax_m2 (also accepted: none, qwen, llama3_json, deepseek_v31). */
bs_status chat_format_from_name(const char *name, chat_format *out, bs_error *err);
const char *chat_format_name(chat_format f);

/* How a family writes tool calls, for decoding constrained to the tools'
 * schemas (the server's lazy grammars).  A block opens with one of the
 * triggers (an at_start_only one counts only when nothing but whitespace
 * came before it), then holds calls: one, or several joined by separator
 * (NULL: one call per block; "": whitespace only) or one JSON array of
 * them (array); closer, when not NULL, ends it.  Whitespace may sit around
 * the calls.  A call is, by shape:
 *  - CHAT_CALLS_JSON: an object {"name": N, args_key: {...}}; a trigger
 *    that begins with '{' is the first call's own first byte.
 *  - CHAT_CALLS_NAMED: call_open N name_close {...} call_close.
 *  - CHAT_CALLS_XML: call_open N name_close, then per parameter
 *    param_open K key_close V value_close, then call_close.  V is read as
 *    chat_xml_value_type says; a text V runs up to end_tag (whose first
 *    character occurs nowhere else in it), so it cannot contain end_tag. */
typedef enum { CHAT_CALLS_JSON, CHAT_CALLS_NAMED, CHAT_CALLS_XML } chat_call_shape;

typedef struct chat_call_syntax {
    chat_call_shape shape;
    const char *triggers[2]; /* unused entries NULL */
    int at_start_only[2];
    const char *args_key;    /* JSON: "arguments" or "parameters" */
    const char *separator;
    int array;
    const char *call_open, *name_close, *call_close;             /* NAMED, XML */
    const char *param_open, *key_close, *value_close, *end_tag; /* XML */
    const char *closer; /* NULL: the block runs to the end of the output */
} chat_call_syntax;

/* NULL for CHAT_FORMAT_CONTENT. */
const chat_call_syntax *chat_format_call_syntax(chat_format f);

/* The JSON type an XML family's parameter value is read as, from the
 * parameter's schema: its type (a type list: the first entry not "null").
 * NULL or "string": the text itself; otherwise the text parsed as JSON. */
const char *chat_xml_value_type(const json_t *param_schema);

/* Whether a function or parameter name can be written in markup: 1..256
 * bytes of UTF-8 without whitespace, control characters or <>"'[]{}. */
int chat_markup_name_ok(const char *s, size_t n);

typedef struct chat_parse_options {
    chat_format format;
    int extract_reasoning;   /* 0: <think> text stays in content */
    int starts_in_reasoning; /* the prompt opened <think>; needs extract_reasoning */
    const json_t *tools;     /* OpenAI tools array (schemas type XML values); may be NULL */
    uint64_t id_seed;        /* seeds tool-call ids */
} chat_parse_options;

typedef enum {
    CHAT_EVENT_CONTENT,
    CHAT_EVENT_REASONING,
    CHAT_EVENT_TOOL_BEGIN, /* tool_index, tool_id, tool_name; text NULL */
    CHAT_EVENT_TOOL_ARGS,  /* tool_index, text/len: a fragment of the arguments JSON */
} chat_event_kind;

typedef struct chat_event {
    chat_event_kind kind;
    int tool_index;
    const char *text; /* not NUL-terminated; valid during the callback only */
    size_t len;
    const char *tool_id;
    const char *tool_name;
} chat_event;

typedef void (*chat_event_cb)(void *user, const chat_event *ev);

typedef struct chat_parser chat_parser;

bs_status chat_parser_open(const chat_parse_options *o, chat_parser **out, bs_error *err);
void chat_parser_close(chat_parser *p);

/* Feed a piece of output; cb (may be NULL) receives the events it decides.
 * Pieces may split UTF-8 sequences and markers anywhere. */
void chat_parser_feed(chat_parser *p, const char *text, size_t len, chat_event_cb cb, void *user);

/* End of output: releases held text and resolves open blocks.  Later feeds
 * and finishes are ignored. */
void chat_parser_finish(chat_parser *p, chat_event_cb cb, void *user);

/* The assembled message so far (new reference):
 * {"role":"assistant","content":..,"reasoning_content":..,"tool_calls":[..]}.
 * content is null when empty and there are tool calls ("" otherwise);
 * reasoning_content and tool_calls are present only when non-empty.
 * NULL if memory ran out while parsing. */
json_t *chat_parser_message(const chat_parser *p);

/* Whole output at once: open, feed, finish, message, close. */
bs_status chat_parse_message(const chat_parse_options *o, const char *text, size_t len,
                             json_t **out, bs_error *err);

#endif
