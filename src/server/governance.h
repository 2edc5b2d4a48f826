/* server/governance.h — who may do what, and how much: API keys checked on
 * every route (scopes, model and route allow-lists), tenancy of files, jobs
 * and fine-tuned models, limits reserved at admission and settled at
 * completion, and the record of every request (usage, invocation log) plus
 * the admin API (keys, usage, audit). */
#ifndef BASALT_SERVER_GOVERNANCE_H
#define BASALT_SERVER_GOVERNANCE_H

#include <jansson.h>

#include "base/error.h"
#include "gateway/keys.h"
#include "gateway/usage.h"

typedef struct basalt_server basalt_server;
typedef struct http_request http_request;
typedef struct server_config server_config;
typedef struct srv_governance srv_governance;

bs_status governance_open(basalt_server *s, const server_config *c, srv_governance **out, bs_error *err);
void governance_close(srv_governance *g);

/* Route scopes. */
#define SCOPE_PUBLIC "public" /* no key needed (/health) */
#define SCOPE_INFERENCE "inference"
#define SCOPE_FILES "files"
#define SCOPE_FINE_TUNE "fine-tune"
#define SCOPE_ADMIN "admin"

/* Check the request's key for a route needing scope; 0 after answering
 * 401/403.  With no keys configured every request passes. */
int governance_authenticate(basalt_server *s, http_request *r, const char *scope);

/* An inference request with its parsed body: the key's model/route
 * allow-list (403) and the limits (429 with x-ratelimit-* and Retry-After),
 * reserving tokens and cost until governance_done settles them.  0 after
 * answering. */
int governance_admit(basalt_server *s, http_request *r, const char *endpoint, json_t *body);

/* The tenant of the request ("" when basalt runs open): files, jobs and
 * fine-tuned models belong to it. */
const char *request_tenant(http_request *r);

/* The guardrail policy names attached to the request's key (n = 0: none). */
int request_key_guardrails(http_request *r, const char *const **names);

/* When the response is over (after gateway_request_done and
 * guard_request_done filled line): settle the reservation, record usage,
 * write the invocation log; line gets key_id. */
void governance_done(basalt_server *s, http_request *r, json_t *line);

/* The key that authenticated the request (NULL when basalt runs open): the
 * actor of admin actions. */
const key_info *request_key(http_request *r);

/* For the admin API (handlers_admin.c). */
keys_registry *governance_keys(srv_governance *g);
usage_recorder *governance_usage(srv_governance *g);

#endif
