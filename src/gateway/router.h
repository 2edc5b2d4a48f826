/* gateway/router.h — which target serves a request, and what to do when it
 * fails.  Pure decisions: no I/O, time and random numbers passed in.
 *
 * A request to a route gets a router_plan.  Its primary target is chosen in
 * this order:
 *   pinned    the x-basalt-target header names one of the route's targets
 *             (the only way to reach a weight-0 "dark" target); a pin that
 *             names no target of the route is an error;
 *   rule      the first of the route's rules whose header / metadata / model
 *             glob matches;
 *   sticky    the weighted choice made with a hash of the sticky key (the
 *             sticky_header's value, else the body's "user" when sticky_user)
 *             and the route name, so one user keeps one variant while the
 *             weights stay the same, and a weight change moves only the users
 *             near the boundary that moved;
 *   weighted  the weighted choice made with the caller's random number.
 * A request naming a plain model gets a plan of just that model ("direct").
 *
 * The caller then drives the plan as a state machine: router_plan_next gives
 * the first target, and after each attempt it takes the attempt's error class
 * and gives the next step — retry the same target after a backoff (or the
 * Retry-After delay), move to the next target of the fallback list for that
 * class, or give up.  The plan admits every attempt through the circuit
 * breakers (when a registry is given) and records every outcome there, so a
 * target whose breaker is open is skipped.  Every attempt is kept for the
 * invocation log's chain of targets tried (router_plan_chain_json). */
#ifndef BASALT_GATEWAY_ROUTER_H
#define BASALT_GATEWAY_ROUTER_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"
#include "gateway/breaker.h"
#include "gateway/config.h"

/* How an attempt ended. */
typedef enum {
    ROUTER_CLASS_NONE,           /* succeeded */
    ROUTER_CLASS_RATE_LIMITED,   /* 429 */
    ROUTER_CLASS_SERVER,         /* 5xx */
    ROUTER_CLASS_TIMEOUT,        /* no (complete) answer in time, or 408 */
    ROUTER_CLASS_CONNECTION,     /* connect/TLS/reset */
    ROUTER_CLASS_CONTEXT_WINDOW, /* prompt + max_tokens exceed the model's context */
    ROUTER_CLASS_CONTENT_POLICY, /* the provider refused the content */
    ROUTER_CLASS_CLIENT,         /* any other 4xx: the request is wrong; never retried */
    ROUTER_CLASS_GUARDRAIL,      /* a basalt guardrail blocked it; never retried */
} router_class;

const char *router_class_name(router_class c);

/* The class of an upstream answer: HTTP status plus the OpenAI error "code"
 * (may be NULL): context_length_exceeded -> context window,
 * content_filter / content_policy_violation -> content policy. */
router_class router_class_from_http(int status, const char *error_code);

/* Rate limits, 5xx, timeouts and connection errors: the classes that are
 * retried and that count against the target's circuit breaker. */
int router_class_is_target_failure(router_class c);

/* Why an attempt went to its target. */
typedef enum {
    ROUTER_WHY_DIRECT,   /* the request named a plain model */
    ROUTER_WHY_PINNED,
    ROUTER_WHY_RULE,
    ROUTER_WHY_STICKY,
    ROUTER_WHY_WEIGHTED,
    ROUTER_WHY_RETRY,    /* the same target again */
    ROUTER_WHY_FALLBACK, /* next entry of a fallback list */
} router_why;

const char *router_why_name(router_why w);

/* The value of request header name (case-insensitive), or NULL. */
typedef const char *(*router_header_fn)(void *ctx, const char *name);

/* What the router looks at in a request; every field may be NULL. */
typedef struct router_request {
    const char *model; /* the requested name, for model rules */
    router_header_fn header;
    void *header_ctx;
    const char *user;       /* the body's "user" */
    const json_t *metadata; /* the body's "metadata" object; string values only are matched */
    const char *pin;        /* the x-basalt-target header */
} router_request;

typedef struct router_attempt {
    int model; /* index into gw_config.models */
    router_why why;
    int rule;          /* ROUTER_WHY_RULE: index into the route's rules; else -1 */
    int retry;         /* ROUTER_WHY_RETRY: 1 for the first retry of this target */
    double delay_s;    /* waited before sending it */
    int skipped;       /* 1: never sent, its circuit breaker was open */
    double retry_in_s; /* skipped: seconds until the breaker turns half-open */
    int done;          /* the outcome was reported */
    router_class class;
} router_attempt;

typedef enum {
    ROUTER_GO,      /* send to *model after waiting *delay_s */
    ROUTER_DONE,    /* the last attempt succeeded */
    ROUTER_GIVE_UP, /* failed for good: see the last attempt for why */
} router_step;

typedef struct router_plan router_plan;

/* The plan for cfg->routes[route].  rnd is a uniform random 64-bit value
 * used when no sticky key applies.  breakers may be NULL (no breakers).
 * Errors (BS_EINVAL): the pin names no target of the route; no pin or rule
 * applies and every target has weight 0.  cfg must outlive the plan. */
bs_status router_plan_route(const gw_config *cfg, int route, const router_request *req, uint64_t rnd,
                            breaker_registry *breakers, router_plan **out, bs_error *err);

/* The plan for a plain model cfg->models[model]: only that model, with the
 * top-level retry and breaker settings.  A pin other than the model's own
 * name is an error. */
bs_status router_plan_model(const gw_config *cfg, int model, const router_request *req,
                            breaker_registry *breakers, router_plan **out, bs_error *err);

/* Frees the plan; an attempt still in flight gives its breaker slot back. */
void router_plan_free(router_plan *plan);

/* The primary target and how it was chosen (before any attempt is made). */
int router_plan_primary(const router_plan *plan, router_why *why);

/* Drive the plan.  The first call (last = ROUTER_CLASS_NONE) returns the
 * primary target, or its first fallback when its breaker is open.  Each
 * later call reports the class of the attempt last returned and gets the next
 * step.  retry_after_s is the answer's Retry-After in seconds, < 0 when it
 * had none; rnd is a uniform random 64-bit value for the backoff jitter; now
 * is the caller's monotonic clock in seconds.
 *
 * Retryable classes (rate limited, server, timeout, connection) retry the
 * same target up to retry.max_retries times after
 * min(backoff_max_s, backoff_base_s * 2^n) with equal jitter (between half
 * and all of it) for the n-th retry (from 0), or exactly Retry-After when
 * given — unless Retry-After exceeds retry_after_max_s, which falls back at
 * once; retries used up, they fall back through the route's fallbacks.
 * Context-window errors fall back through context_fallbacks and content-
 * policy errors through content_fallbacks without retrying.  Client errors
 * and guardrail blocks give up.  Fallbacks skip targets already tried and
 * targets whose breaker is open. */
router_step router_plan_next(router_plan *plan, router_class last, double retry_after_s, uint64_t rnd,
                             double now, int *model, double *delay_s);

const router_attempt *router_plan_attempts(const router_plan *plan, int *n);

/* The chain for the invocation log: an array with one object per attempt,
 * {"model", "why", "rule"?, "retry"?, "delay_s"?, "class"? (once reported;
 * "none" = succeeded), "skipped": "breaker_open" and "retry_in_s" for
 * targets passed over}.  NULL on allocation failure. */
json_t *router_plan_chain_json(const router_plan *plan);

#endif
