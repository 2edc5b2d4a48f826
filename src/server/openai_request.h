/* server/openai_request.h — typed decoding of OpenAI / vLLM request bodies.
 *
 * Each decoder checks types and ranges of the fields it knows, ignores the
 * others, treats an explicit null as absent, and on a bad field fails with an
 * api_error whose param names it ("messages[2].content", "temperature").
 * Decoded structs borrow strings from the request's json_t, which must stay
 * alive as long as they do; what they allocate, *_request_free releases. */
#ifndef BASALT_SERVER_OPENAI_REQUEST_H
#define BASALT_SERVER_OPENAI_REQUEST_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/sampler.h"

/* A client-visible failure: the status picks the HTTP code (server.c maps it
 * in one place) unless http is set; param and code fill the error object. */
typedef struct api_error {
    bs_error e;
    char param[128]; /* "" when no single field is at fault */
    const char *code;
    int http; /* 0: derived from e.status */
} api_error;

bs_status api_fail(api_error *a, bs_status status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Parse a request body that must be a JSON object. */
bs_status oai_parse_body(const char *body, size_t len, json_t **out, api_error *a);

#define OAI_MAX_STOP 16

/* Sampling and length fields shared by chat and legacy completions. */
typedef struct oai_generation {
    const char *model;
    int n;
    int max_tokens; /* -1: not given */
    const char *stop[OAI_MAX_STOP];
    int n_stop;
    bs_sampler_params sampling;
    bs_logit_bias *logit_bias; /* owned */
    int stream, include_usage;
    const char *user;
} oai_generation;

typedef enum { TOOL_CHOICE_AUTO, TOOL_CHOICE_NONE, TOOL_CHOICE_REQUIRED, TOOL_CHOICE_NAMED } oai_tool_choice;
typedef enum { RESPONSE_TEXT, RESPONSE_JSON_OBJECT, RESPONSE_JSON_SCHEMA } oai_response_kind;

typedef struct chat_request {
    oai_generation gen;
    json_t *messages;   /* normalized copy (owned), ready for the template */
    const json_t *tools; /* NULL when absent or empty */
    oai_tool_choice tool_choice;
    const char *tool_name; /* TOOL_CHOICE_NAMED */
    const json_t *tool_parameters; /* of the named tool; may be NULL */
    int parallel_tool_calls;
    int any_strict_tool;
    int logprobs, top_logprobs;
    oai_response_kind response_kind;
    const json_t *response_schema; /* RESPONSE_JSON_SCHEMA; NULL: any JSON object */
    const json_t *template_kwargs; /* chat_template_kwargs object or NULL */
    json_t *converted; /* a Responses request's chat-shaped body (owned); the fields above borrow from it */
} chat_request;

bs_status chat_request_decode(const json_t *body, chat_request *out, api_error *a);
void chat_request_free(chat_request *r);

/* POST /v1/responses, decoded as the chat request it amounts to: input items
 * become messages (instructions first, as the system message; function_call
 * items join the assistant message before them; function_call_output items
 * become tool messages), flat function tools and tool_choice take the chat
 * form, max_output_tokens and text.format map to their chat fields.
 * previous_response_id and item_reference inputs must have been resolved
 * into plain items by the caller (handlers_responses.c, from its store) and
 * are refused naming the field otherwise; conversation, hosted tools and
 * non-text inputs are unsupported.  The body's own fields (metadata,
 * instructions, tools...) are echoed from the body by the handler. */
bs_status responses_request_decode(const json_t *body, chat_request *out, api_error *a);

/* One prompt of a legacy completion or embedding: text or token ids. */
typedef struct oai_prompt {
    const char *text; /* NULL when ids */
    int32_t *ids;     /* owned */
    int n_ids;
} oai_prompt;

typedef struct completion_request {
    oai_generation gen;
    oai_prompt *prompts; /* owned */
    int n_prompts;
    int echo;
    int logprobs; /* -1: none; else number of alternatives */
} completion_request;

bs_status completion_request_decode(const json_t *body, completion_request *out, api_error *a);
void completion_request_free(completion_request *r);

typedef struct embedding_request {
    const char *model;
    oai_prompt *inputs; /* owned */
    int n_inputs;
    int base64;
} embedding_request;

bs_status embedding_request_decode(const json_t *body, embedding_request *out, api_error *a);
void embedding_request_free(embedding_request *r);

/* vLLM /tokenize: {"model", "prompt" | "messages", "add_special_tokens"}. */
typedef struct tokenize_request {
    const char *model;
    const char *prompt;      /* NULL when messages */
    json_t *messages;        /* normalized copy (owned) */
    int add_special_tokens;  /* default 1 for prompt; messages go through the template */
    int add_generation_prompt;
} tokenize_request;

bs_status tokenize_request_decode(const json_t *body, tokenize_request *out, api_error *a);
void tokenize_request_free(tokenize_request *r);

/* Messages as the chat template wants them (vLLM's normalization): text
 * parts joined, null content as "", tool-call arguments that are JSON text
 * decoded into objects.  A new array; param prefixes error names. */
bs_status oai_normalize_messages(const json_t *messages, json_t **out, api_error *a);

/* Token ids: a JSON array of integers (for /detokenize and prompts). */
bs_status oai_decode_ids(const json_t *v, const char *param, int32_t **ids, int *n, api_error *a);

#endif
