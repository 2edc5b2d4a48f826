/* server/openai_response.h — OpenAI response shapes: error objects and the
 * one status -> HTTP mapping, usage, logprobs, chat chunks and their
 * tool-call deltas, SSE framing (plain and named events), base64 embeddings. */
#ifndef BASALT_SERVER_OPENAI_RESPONSE_H
#define BASALT_SERVER_OPENAI_RESPONSE_H

#include <jansson.h>
#include <stdint.h>

#include "engine/scheduler.h"
#include "server/buf.h"
#include "server/openai_request.h"
#include "template/chat_parse.h"
#include "tokenizer/tokenizer.h"

/* The HTTP status of a failure: a->http when set, else by a->e.status. */
int oai_http_status(const api_error *a);
/* {"error":{"message","type","param","code"}} for that status. */
json_t *oai_error_body(const api_error *a, int http);

json_t *oai_usage(int prompt_tokens, int completion_tokens, int cached_tokens);

/* One chat logprobs entry {"token","logprob","bytes","top_logprobs"}. */
json_t *oai_logprob_entry(const bs_tokenizer *tok, int32_t token, float logprob, const bs_token_logprob *top,
                          int n_top);

/* The delta object for one parser event: content, reasoning_content, or a
 * tool_calls entry that carries id/type/name only when the call begins. */
json_t *oai_chat_delta(const chat_event *ev);

/* One chat.completion.chunk with a single choice (delta stolen; logprobs
 * stolen, may be NULL). */
json_t *oai_chat_chunk(const char *id, long long created, const char *model, int index, json_t *delta,
                       const char *finish_reason, json_t *logprobs);

/* "data: <compact json>\n\n" (j stolen) and the terminating "data: [DONE]\n\n". */
void sse_data(srv_buf *out, json_t *j);
/* A named event, as the Responses API streams: "event: NAME\ndata: <json>\n\n" (j stolen). */
void sse_event(srv_buf *out, const char *name, json_t *j);
void sse_done(srv_buf *out);

/* Base64 (standard alphabet, padded) of n little-endian float32 values. */
json_t *oai_base64_floats(const float *v, int n);

#endif
