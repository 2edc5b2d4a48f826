/* gateway/guardrail.h — guardrail policies (Amazon Bedrock Guardrails
 * semantics) applied to chat input and output, including streamed output.
 *
 * A policy is compiled once from its config JSON (schema: docs/guardrails.md)
 * and is immutable afterwards, so one policy serves all requests.  The
 * module owns: sensitive-information filters (pii.h detectors and custom
 * regexes, BLOCK or ANONYMIZE to `{TYPE}` / `{name}` placeholders), word
 * filters (custom words with wildcards, a managed profanity list), denied
 * topics (phrase sets), prompt-attack heuristics and the input length cap;
 * the result in ApplyGuardrail's response shape; and the streaming buffer.
 *
 * Text is evaluated in segments — sentences (after . ! ? and whitespace),
 * lines, or at most GR_WINDOW bytes — the same way for whole texts and for
 * streams, so a stream emits exactly what applying the whole text gives.
 * Prompt-attack and length checks see the whole input (never streamed). */
#ifndef BASALT_GATEWAY_GUARDRAIL_H
#define BASALT_GATEWAY_GUARDRAIL_H

#include <jansson.h>
#include <stddef.h>

#include "base/error.h"

#define GR_WINDOW 512 /* longest segment held back in a stream, bytes */

typedef struct gr_policy gr_policy;
typedef struct gr_stream gr_stream;

typedef enum { GR_INPUT, GR_OUTPUT } gr_source;

typedef enum { GR_ACT_NONE, GR_ACT_ANONYMIZE, GR_ACT_BLOCK } gr_action;

typedef enum {
    GR_DET_PII,           /* name: entity type ("EMAIL") */
    GR_DET_REGEX,         /* name: the custom regex's name */
    GR_DET_WORD,          /* custom denied word; name: NULL */
    GR_DET_PROFANITY,     /* managed list; name: NULL */
    GR_DET_TOPIC,         /* name: topic name (reported once per policy) */
    GR_DET_PROMPT_ATTACK, /* score in 0..1; match: NULL */
    GR_DET_LENGTH,        /* input over max_input_chars; score: the length */
} gr_det_kind;

typedef struct gr_detection {
    gr_det_kind kind;
    int policy;       /* index into the policies passed */
    int message;      /* guardrail_apply_messages: index of the message; else -1 */
    const char *name; /* owned by the policy (or static) */
    char *match;      /* matched text, malloc'd; NULL for attack/length */
    size_t start, end; /* byte offsets in the text as given (of that message part) */
    gr_action action; /* what was done: NONE (detect only), ANONYMIZE, BLOCK */
    double score;
} gr_detection;

typedef struct gr_result {
    int intervened; /* something was anonymized or blocked */
    int blocked;
    int blocked_by; /* index of the first blocking policy, or -1 */
    gr_source source;
    /* Masked texts, one per checked text (one for guardrail_apply); when
     * blocked, a single entry: the blocking policy's blocked message. */
    char **outputs;
    int n_outputs;
    gr_detection *dets;
    int n_dets, cap_dets;
} gr_result;

/* Compile `spec` (an object, see docs/guardrails.md).  Errors name the
 * guardrail and the key: "guardrail strict: pii.EMAILL: unknown entity …". */
bs_status guardrail_compile(const char *name, const json_t *spec, gr_policy **out, bs_error *err);
void guardrail_free(gr_policy *p);
const char *guardrail_name(const gr_policy *p);

/* Apply policies in order to one text; policies whose apply_to omits src
 * are skipped.  Detections of all policies are made on the original text
 * and their anonymizations compose (overlaps: longest, then first, wins).
 * Fails (BS_ERANGE) when a regex hits its execution limit: the caller must
 * treat the text as blocked.  out is initialized here; free with
 * gr_result_free (also after a failure). */
bs_status guardrail_apply(const gr_policy *const *policies, int n, gr_source src,
                          const char *text, size_t len, gr_result *out, bs_error *err);

/* Input check of an OpenAI `messages` array: the text of user, system and
 * developer messages (string content, or the "text" parts of a content
 * array) goes through guardrail_apply semantics, with the prompt-attack
 * check on user turns only and max_input_chars on the total checked length.
 * *masked (new reference) is a copy of messages with masked texts; NULL
 * when blocked.  Detections carry the message index. */
bs_status guardrail_apply_messages(const gr_policy *const *policies, int n, const json_t *messages,
                                   json_t **masked, gr_result *out, bs_error *err);

void gr_result_free(gr_result *r);

/* ApplyGuardrail's response: {"action":"GUARDRAIL_INTERVENED"|"NONE",
 * "outputs":[{"text":…}] (empty when NONE), "assessments":[one object per
 * applied policy, keyed by sensitiveInformationPolicy / wordPolicy /
 * topicPolicy / contentPolicy, plus basalt's lengthPolicy]}. */
json_t *gr_result_json(const gr_result *r, const gr_policy *const *policies, int n);

/* Streaming output.  push appends a delta and returns in *emit (malloc'd,
 * NUL-terminated, possibly empty) the masked text that can no longer
 * change; finish flushes the rest.  Once *blocked is set nothing more is
 * emitted: the caller ends the stream (finish_reason "content_filter")
 * and may send gr_stream_result's JSON as a trailing event. */
bs_status gr_stream_open(const gr_policy *const *policies, int n, gr_stream **out, bs_error *err);
bs_status gr_stream_push(gr_stream *s, const char *delta, size_t len, char **emit,
                         size_t *emit_len, int *blocked, bs_error *err);
bs_status gr_stream_finish(gr_stream *s, char **emit, size_t *emit_len, int *blocked,
                           bs_error *err);
/* The result so far: detections over the whole stream (offsets in the
 * unmasked stream) and outputs[0] = everything emitted, or the blocked
 * message.  out is initialized here. */
bs_status gr_stream_result(const gr_stream *s, gr_result *out, bs_error *err);
void gr_stream_free(gr_stream *s);

#endif
