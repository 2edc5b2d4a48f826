/* server/guard.h — guardrails in the request path: the policies a request
 * gets (its key's, its route's, its model's), applied to the input before
 * any model sees it and to the output before the client does (whole bodies
 * and SSE streams alike, through an http body filter), reported as
 * finish_reason "content_filter" plus a basalt_guardrail object; and the
 * standalone POST /v1/guardrails/{name}/apply. */
#ifndef BASALT_SERVER_GUARD_H
#define BASALT_SERVER_GUARD_H

#include <jansson.h>

#include "base/error.h"
#include "gateway/config.h"

typedef struct basalt_server basalt_server;
typedef struct http_request http_request;
typedef struct guard_set guard_set;

/* Compile every guardrail of a config (NULL: none); an error names the
 * guardrail and its line, and rejects the config. */
bs_status guard_set_build(const gw_config *c, guard_set **out, bs_error *err);
void guard_set_free(guard_set *g);

/* An inference request with its parsed body, before it is served: input
 * policies may mask the body in place or block (answered: returns 0); output
 * policies install the response filter.  guards: the set of the config
 * generation the request runs on (NULL: none). */
int guard_admit(basalt_server *s, http_request *r, const char *endpoint, json_t *body, const guard_set *guards);

/* line gets guardrail_action ("NONE", "INTERVENED", "BLOCKED"). */
void guard_request_done(basalt_server *s, http_request *r, json_t *line);

void handle_guardrail_apply(basalt_server *s, http_request *r);

#endif
