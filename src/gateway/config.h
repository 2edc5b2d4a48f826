/* gateway/config.h — the gateway configuration (`basalt serve --config
 * FILE.yaml`, `basalt config check FILE`): upstream providers, public model
 * names (local models and aliases of upstream models, with prices), routes
 * (weighted targets, sticky assignment, rules, fallback lists, retries,
 * circuit breakers, shadow targets), guardrail policies and the storage
 * and rate-limit backends.
 *
 * gw_config_load parses the YAML with libyaml's event parser, checks every
 * key and cross-reference, and either returns a complete immutable config or
 * one error "FILE:LINE:COL: KEY: what is wrong" — nothing half-loaded.  A
 * loaded config is never modified: hot reload loads a new one and swaps the
 * pointer, so requests keep the config they started with (reference
 * counted: gw_config_ref / gw_config_unref).
 *
 * Secrets: a provider's API key is read from the environment variable named
 * by api_key_env at load time and kept only in gw_provider.api_key; nothing
 * in this module prints it. */
#ifndef BASALT_GATEWAY_CONFIG_H
#define BASALT_GATEWAY_CONFIG_H

#include <jansson.h>
#include <stddef.h>

#include "base/error.h"

/* Price per million tokens in US dollars; set is 0 when the config gave
 * none (cost then counts as 0 and /v1/admin/usage reports it unpriced). */
typedef struct gw_price {
    double input_per_mtok, output_per_mtok;
    int set;
} gw_price;

typedef struct gw_provider {
    char *name;
    char *base_url;    /* ".../v1", no trailing slash */
    char *api_key_env; /* NULL: no key sent */
    char *api_key;     /* the variable's value at load; NULL when unset or no api_key_env */
    double timeout_s;         /* whole request; default 600 */
    double connect_timeout_s; /* default 10 */
    int max_connections;      /* per provider host; default 64 */
    int line;                 /* where it was defined, for later messages */
} gw_provider;

typedef enum { GW_MODEL_LOCAL, GW_MODEL_REMOTE } gw_model_kind;

typedef struct gw_model {
    char *name; /* the public name clients send as "model" */
    gw_model_kind kind;
    /* local: a Hugging Face directory or .gguf; quantize is NULL (as
     * stored) or one of q8_0|q4_0|q4_k|q6_k; ctx 0 = default */
    char *path;
    char *quantize;
    int ctx;
    /* remote: the provider (index into gw_config.providers) and the model id
     * the provider knows */
    int provider;
    char *upstream_model;
    gw_price price;
    int rpm, tpm;           /* per-model limits across all keys; 0 = none */
    int max_concurrent;     /* requests in flight on this model across all keys; 0 = none */
    char **guardrails;      /* guardrail names applied to this model */
    int n_guardrails;
    int line;
} gw_model;

typedef struct gw_target {
    int model;     /* index into gw_config.models */
    double weight; /* normalized: weights of a route sum to 1 (all 0: only pinned) */
    double raw_weight;
} gw_target;

typedef enum { GW_MATCH_HEADER, GW_MATCH_MODEL, GW_MATCH_METADATA } gw_match_kind;

/* A rule sends matching requests to one target, ahead of the weights:
 *   {match: {header: x-tier, value: "gold"}, target: remote-a}
 *   {match: {metadata: team, value: "ml-*"}, target: local-tiny}
 * value is a glob ('*' any run, '?' one char), case-sensitive; for
 * GW_MATCH_MODEL the key is NULL and value matches the requested name. */
typedef struct gw_rule {
    gw_match_kind kind;
    char *key;
    char *value;
    int model; /* index into gw_config.models */
} gw_rule;

typedef struct gw_retry {
    int max_retries;       /* per target, after the first try; default 2 */
    double backoff_base_s; /* delay before retry n: base * 2^n, jittered; default 0.25 */
    double backoff_max_s;  /* default 8 */
    double retry_after_max_s; /* Retry-After above this: fall back instead of waiting; default 30 */
} gw_retry;

typedef struct gw_breaker {
    int min_requests;     /* in the window before the rate counts; default 5 */
    double failure_rate;  /* open at or above this; default 0.5 */
    double window_s;      /* default 60 */
    double cooldown_s;    /* open -> half-open after this; default 30 */
    int half_open_probes; /* concurrent probes while half-open; default 1 */
} gw_breaker;

typedef struct gw_route {
    char *name; /* a public name, like a model's; names are unique across both */
    gw_target *targets;
    int n_targets;
    gw_rule *rules;
    int n_rules;
    /* Sticky assignment: hash of this header's value, else of the body's
     * "user", picks the variant (so one user stays on one target while the
     * weights stay the same).  `sticky: user` sets only sticky_user;
     * `sticky: {header: H}` sets sticky_header and sticky_user.
     * sticky_header NULL and sticky_user 0: random. */
    char *sticky_header;
    int sticky_user;
    /* Fallback lists (indices into models), tried in order after the chosen
     * target failed with an error of that class. */
    int *fallbacks, n_fallbacks;                 /* generic: 429, 5xx, timeouts, connection errors */
    int *context_fallbacks, n_context_fallbacks; /* context window exceeded */
    int *content_fallbacks, n_content_fallbacks; /* content policy violations */
    int *shadows, n_shadows;                     /* mirrored, response discarded */
    gw_retry retry;
    gw_breaker breaker;
    char **guardrails;
    int n_guardrails;
    int line;
} gw_route;

/* A guardrail policy as written in the config, converted to JSON (mappings
 * -> objects, sequences -> arrays, plain scalars that read as numbers or
 * booleans -> those, plain null/~/empty -> null, the rest strings; the
 * spec includes "name"); gateway/guardrail.c compiles it. */
typedef struct gw_guardrail {
    char *name;
    json_t *spec;
    int line;
} gw_guardrail;

typedef struct gw_config {
    char *path; /* the file it was loaded from */
    gw_provider *providers;
    int n_providers;
    gw_model *models;
    int n_models;
    gw_route *routes;
    int n_routes;
    gw_guardrail *guardrails;
    int n_guardrails;
    gw_retry retry;     /* defaults for routes (top-level `retry:`) */
    gw_breaker breaker; /* defaults for routes (top-level `breaker:`) */
    char *store;        /* NULL: SQLite in the data directory; or "postgres://…" */
    char *ratelimit;    /* NULL: in-process counters; or "redis://host:port[/db]" */
    /* usage: invocation logs (JSON lines) under log_dir (NULL: DATA/logs),
     * rotated at log_max_mb, kept log_retention_days; bodies only if asked;
     * aggregated usage flushed every flush_s seconds. */
    char *log_dir;
    int log_max_mb;          /* default 100 */
    int log_retention_days;  /* default 30 */
    int log_bodies;          /* default 0 */
    double flush_s;          /* default 5 */
    int refcount;
} gw_config;

/* Load and validate path.  Errors: "FILE:LINE:COL: KEY: message". */
bs_status gw_config_load(const char *path, gw_config **out, bs_error *err);
/* The same from text already in memory; name stands for the file in
 * messages and becomes c->path. */
bs_status gw_config_parse(const char *name, const char *text, size_t len, gw_config **out, bs_error *err);
gw_config *gw_config_ref(gw_config *c);
void gw_config_unref(gw_config *c); /* frees at zero; NULL is fine */

/* Lookups by public name; -1 when absent. */
int gw_config_model(const gw_config *c, const char *name);
int gw_config_route(const gw_config *c, const char *name);
int gw_config_provider(const gw_config *c, const char *name);
const gw_guardrail *gw_config_guardrail(const gw_config *c, const char *name);

#endif
