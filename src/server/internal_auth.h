/* server/internal_auth.h — requests basalt sends to itself (Batch API work,
 * local shadow copies) carry a per-process random token and the tenant they
 * act for, so they pass through the same admission, limits, guardrails and
 * routing as client requests without holding a client's secret.  The token
 * never leaves the process: it is made at start, compared in constant time,
 * and only accepted from the loopback connection's own requests. */
#ifndef BASALT_SERVER_INTERNAL_AUTH_H
#define BASALT_SERVER_INTERNAL_AUTH_H

#include "base/error.h"

#define INTERNAL_TOKEN_HEADER "x-basalt-internal"
#define INTERNAL_TENANT_HEADER "x-basalt-tenant" /* the id of the API key acted for; "" when open */
#define INTERNAL_KIND_HEADER "x-basalt-internal-kind" /* "batch" or "shadow" */

/* Make the process token (once, at server start). */
bs_status internal_auth_init(bs_error *err);
/* The token, 64 hex digits. */
const char *internal_auth_token(void);
/* 1 when value is the process token (constant time); NULL is 0. */
int internal_auth_check(const char *value);

#endif
