/* server/guard.h — guardrails in the request path: the policies a request
 * gets (its key's, its route's, its model's), applied to the input before
 * any model sees it and to the output before the client does (whole bodies
 * and SSE streams alike, through an http body filter), reported as
 * finish_reason "content_filter" plus a basalt_guardrail object; and the
 * standalone POST /v1/guardrails/{name}/apply.  docs/guardrails.md, "In the
 * server", is the user-facing description. */
#ifndef BASALT_SERVER_GUARD_H
#define BASALT_SERVER_GUARD_H

#include <jansson.h>

#include "base/error.h"
#include "gateway/config.h"
#include "gateway/guardrail.h"
#include "server/buf.h"

typedef struct basalt_server basalt_server;
typedef struct http_request http_request;
typedef struct guard_set guard_set;

/* Compile every guardrail of a config (c NULL: *out NULL).  An error names
 * the config file and the guardrail's line ("FILE:LINE: guardrail NAME:
 * …") and rejects the config. */
bs_status guard_set_build(const gw_config *c, guard_set **out, bs_error *err);
void guard_set_free(guard_set *g);
/* The compiled policy called name; NULL when the set (or NULL) has none. */
const gr_policy *guard_set_find(const guard_set *g, const char *name);

/* An inference request with its parsed body, before it is served: input
 * policies may mask the body in place or block (answered: returns 0); output
 * policies install the response filter.  guards: the set of the config
 * generation the request runs on (NULL: none). */
int guard_admit(basalt_server *s, http_request *r, const char *endpoint, json_t *body, const guard_set *guards);

/* 1 when guard_admit masked the request's input (the body no longer says
 * what the client's bytes say). */
int guard_input_changed(http_request *r);

/* line gets guardrail_action ("NONE", "ANONYMIZED", "BLOCKED") and
 * guardrails (the policy names applied) for requests guard_admit saw. */
void guard_request_done(basalt_server *s, http_request *r, json_t *line);

void handle_guardrail_apply(basalt_server *s, http_request *r);

/* The output filter (an http_filter over its ctx): OpenAI response bodies —
 * chat.completion, text_completion and response objects, and their SSE
 * streams — get their generated text masked or replaced by the blocked
 * message; anything else (errors, other shapes) passes through unchanged.
 * policies (an array of n, copied; the policies must outlive the filter's
 * use) are applied as GR_OUTPUT. */
typedef struct guard_filter guard_filter;
bs_status guard_filter_open(const gr_policy *const *policies, int n, guard_filter **out, bs_error *err);
int guard_filter_run(void *ctx, const char *data, size_t len, int final, srv_buf *out);
void guard_filter_release(void *ctx);
/* What the filter did so far: anything anonymized or blocked, anything blocked. */
void guard_filter_outcome(const guard_filter *f, int *intervened, int *blocked);

#endif
