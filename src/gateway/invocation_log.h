/* gateway/invocation_log.h — one JSON line per request, written to
 * append-only files by one writer thread (never by the request path).
 *
 * The record follows Amazon Bedrock's model invocation log where it applies
 * (schemaType "ModelInvocationLog", timestamp, requestId, operation,
 * modelId, input/output token counts and bodies) plus the gateway's own
 * fields (key, route, served target, fallback chain, cost, latency,
 * overhead, time to first token, guardrail action):
 *   {"schemaType":"ModelInvocationLog","schemaVersion":"1.0",
 *    "timestamp":"2025-01-02T03:04:05.678Z","requestId":…,"keyId":…,
 *    "keyName":…,"operation":"/v1/chat/completions","modelId":…,"route":…,
 *    "target":…,"fallbacks":[…],"status":200,"errorCode":null,
 *    "input":{"inputTokenCount":…,"inputBodyJson":{…}},
 *    "output":{"outputTokenCount":…,"outputBodyJson":{…}},
 *    "usageEstimated":false,"costUsd":…,"latencyMs":…,"overheadMs":…,
 *    "ttftMs":…,"guardrailAction":"NONE"}
 * errorCode is null for a success; for a failure (status >= 400), the
 * OpenAI error object's code (its type when code is null), where Bedrock
 * logs the exception's name.  usageEstimated is true when no usage was
 * reported and the token counts (and cost) are the admission's
 * reservation.  Bodies appear only when the log was opened with
 * log_bodies.  The caller
 * passes structured fields, never headers, so credentials cannot leak in.
 *
 * The response body is given as the bytes that went out to the client
 * (after guardrail masking), at most a cap of them (the caller's, 1 MiB in
 * the server), and written as
 *   - a JSON body: "outputBodyJson" = the parsed JSON;
 *   - text/event-stream: "outputBodyJson" = the list of its events' data
 *     parsed as JSON (non-JSON data as strings, "[DONE]" left out), as
 *     Bedrock logs a streamed invocation, plus "outputText" = the text the
 *     stream carried (chat choices[0].delta.content, completions
 *     choices[0].text, Responses response.output_text.delta, concatenated);
 *     the final usage is the last chunk's "usage";
 *   - anything else, or a JSON body cut by the cap: "outputBodyText" (as
 *     UTF-8, invalid bytes replaced by U+FFFD);
 * with "outputBodyBytes" (what went out) and "outputBodyTruncated" (true
 * when more went out than was kept; a stream then lists only its events
 * that were kept whole).
 *
 * Files: DIR/invocations-YYYYMMDD-HHMMSS.jsonl (UTC, the time the file was
 * started; "-N" is appended when that name is taken), a new one when the
 * current one would exceed max_mb or the UTC day changes.  Files whose last
 * write is older than retention_days are deleted at open and at each
 * rotation.
 *
 * Back-pressure: invlog_write formats the line on the caller's thread
 * (straight into text, gateway/json_text.h: the bytes json_dumps would
 * write, without building objects) and enqueues it in a bounded queue; when the queue is full the line is dropped
 * and counted (invlog_dropped, for /metrics), and the writer logs a warning
 * at most once a minute.  Lines that fail to be written count as dropped
 * too. */
#ifndef BASALT_GATEWAY_INVOCATION_LOG_H
#define BASALT_GATEWAY_INVOCATION_LOG_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"

typedef struct invlog invlog;

typedef struct invlog_options {
    const char *dir;    /* created when missing */
    int max_mb;         /* rotate past this size; >= 1 */
    int retention_days; /* >= 1 */
    int log_bodies;
    size_t queue_lines; /* queue bound in lines; 0: 8192 */
    size_t queue_bytes; /* queue bound in bytes; 0: 64 MiB */
} invlog_options;

/* One request.  NULL strings are written as null. */
typedef struct invlog_entry {
    int64_t ts_ms; /* Unix milliseconds; <= 0: now */
    const char *request_id, *key_id, *key_name;
    const char *operation; /* the endpoint, e.g. "/v1/chat/completions" */
    const char *model_id;  /* as requested */
    const char *route, *target;
    const json_t *fallbacks; /* array of the models tried before target; NULL: [] */
    int status;              /* HTTP status */
    const char *error_code; /* NULL: none (a success) */
    int64_t input_tokens, output_tokens;
    int usage_estimated; /* the counts are the reservation, no usage was reported */
    const json_t *input_body, *output_body; /* written only with log_bodies */
    /* Without output_body: the response body as it went out (see above),
     * output_len bytes kept of output_total; output_type its Content-Type
     * (NULL: no body went out). */
    const char *output_type, *output_data;
    size_t output_len;
    int64_t output_total;
    double cost_usd, latency_ms, overhead_ms;
    double ttft_ms; /* < 0: not streamed (null) */
    const char *guardrail_action; /* "NONE", "GUARDRAIL_INTERVENED", …; NULL: "NONE" */
} invlog_entry;

bs_status invlog_open(const invlog_options *opt, invlog **out, bs_error *err);
/* Writes what is queued, then stops the writer.  NULL is fine. */
void invlog_close(invlog *l);

/* The request path: formats and enqueues, never waits for I/O. */
void invlog_write(invlog *l, const invlog_entry *e);
/* Waits until every line enqueued before the call has been written (or
 * counted as dropped) and flushed to the file. */
void invlog_sync(invlog *l);
/* Lines lost so far (queue full or write errors). */
uint64_t invlog_dropped(const invlog *l);
/* The file being written now (for tests and diagnostics); caller frees. */
char *invlog_current_path(invlog *l);

#endif
