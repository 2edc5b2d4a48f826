/* server/governance.c — API keys on every route, admission limits reserved
 * before a model runs and settled when its response is over, and the
 * record of each request (usage aggregation, invocation log).
 *
 * Nothing here touches the database on the request path: keys are
 * authenticated against the registry's in-memory copy (refreshed from the
 * store every KEYS_REFRESH_S seconds by one thread, so a key revoked on one
 * replica stops working on the others within seconds), limits live in
 * process memory or Redis, and usage and invocation logs are queued for
 * their writer threads.
 *
 * Reservation: tokens = a prompt estimate + the completion allowance, cost
 * = the same tokens at the price of the most expensive model the request
 * may end up on.  The prompt estimate is one token per byte of the body's
 * text plus PER_MESSAGE_TOKENS per message for the chat template's markup:
 * a byte-level BPE token never covers less than one byte, so the estimate
 * is never below the real count and a limit cannot be overshot by requests
 * in flight; the excess is given back at settle.
 *
 * Settle when the usage is unknown: a client that hangs up mid-stream, or a
 * proxied stream cut before its final usage chunk, leaves no counts (an
 * upstream reports usage at the end).  Settling at 0 would let a client
 * stream and hang up for free, so such a request is charged an estimate
 * and marked usage_estimated: a remote model's whole reservation (the
 * upstream may have generated up to max_tokens and bills them); a local
 * model's prompt estimate alone (its job reports the prompt with the first
 * token, so none was generated).  Where counts did arrive they are the
 * actual usage: a local job counts the tokens it generated up to the
 * cancel, and a proxied stream's usage chunk is final.
 *
 * Every admitted request's response body is teed as it goes out (an http
 * tap, after guardrail masking): with usage.log_bodies at most LOG_BODY_CAP
 * bytes of any body, for the invocation log; without it only the first
 * ERROR_BODY_CAP bytes of a JSON body, read for the error code of a failed
 * request and never written. */
#include "server/server_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file.h"
#include "base/log.h"
#include "gateway/invocation_log.h"
#include "gateway/limits.h"
#include "server/internal_auth.h"

#define KEYS_REFRESH_S 2
/* Template markup allowance per message (role headers, separators). */
#define PER_MESSAGE_TOKENS 32
/* The completion allowance when the request gives no max_tokens. */
#define DEFAULT_MAX_TOKENS 4096
/* The most of a response body kept for the invocation log. */
#define LOG_BODY_CAP ((size_t)1 << 20)
/* Without log_bodies: the most of a JSON body kept for its error object. */
#define ERROR_BODY_CAP ((size_t)4096)
/* http.c's status for a response the client did not take whole (nginx's
 * "client closed request"). */
#define STATUS_CLIENT_CLOSED 499

struct srv_governance {
    keys_registry *keys;
    limits *limits;
    usage_recorder *usage;
    invlog *log;
    int log_bodies;
    pthread_t refresher;
    int refresher_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

/* The response body as it went out: the first cap bytes of it (see the
 * top), and how many there were.  Owned by the http request (its tap),
 * which frees it after governance_done read it. */
typedef struct body_tee {
    int log_bodies;
    char type[128];
    size_t cap; /* of the current body */
    srv_buf kept;
    int64_t total;
} body_tee;

/* Per request: the key (view.key NULL when open), the reservation and
 * what done needs to price and record the request. */
typedef struct gov_request {
    key_view key;
    int admitted;         /* governance_admit let an inference request through */
    limit_ticket *ticket; /* NULL: no limit applied */
    int64_t reserved_prompt, reserved_completion; /* the tokens admission reserved */
    gw_config *cfg;       /* the request's config (a reference), for prices */
    char model[128], endpoint[64];
    const char **guardrails;
    int n_guardrails;
    body_tee *tee; /* NULL: out of memory */
} gov_request;

/* ------------------------------------------------------------ lifecycle */

static void *refresh_main(void *arg) {
    srv_governance *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += KEYS_REFRESH_S;
        pthread_cond_timedwait(&g->cv, &g->mu, &until);
        if (g->stop) break;
        pthread_mutex_unlock(&g->mu);
        bs_error err = {0};
        if (keys_refresh(g->keys, &err) != BS_OK) bs_log_warn("keys: refresh failed (old keys stay): %s", err.msg);
        pthread_mutex_lock(&g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static int is_loopback(const char *host) {
    return strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 || strncmp(host, "127.", 4) == 0;
}

/* Budget counters start from what the stored usage says each key spent in
 * its current period, so a restart does not hand out a fresh budget. */
static bs_status seed_budgets(srv_governance *g, bs_error *err) {
    key_info *keys;
    size_t n;
    if (keys_list(g->keys, NULL, &keys, &n, err) != BS_OK) return err->status;
    int64_t now = (int64_t)time(NULL);
    bs_status st = BS_OK;
    for (size_t i = 0; st == BS_OK && i < n; i++) {
        if (keys[i].budget_usd <= 0 || keys[i].revoked_at) continue;
        int64_t start = limits_period_start(keys[i].budget_period, now);
        double spent = 0;
        st = usage_spend(g->usage, keys[i].id, start, &spent, err);
        if (st == BS_OK)
            st = limits_seed_spend(g->limits, keys[i].id, keys[i].budget_period, start, limits_micros(spent), err);
    }
    key_infos_free(keys, n);
    return st;
}

static bs_status open_parts(srv_governance *g, basalt_server *s, const server_config *c, const gw_config *cfg,
                            bs_error *err) {
    if (keys_open(s->store, &g->keys, err) != BS_OK) return err->status;
    size_t n_keys = keys_count(g->keys);
    if (n_keys == 0 && !is_loopback(c->host) && !c->insecure_open)
        return bs_fail(err, BS_EINVAL,
                       "--host %s: no API keys exist, so anyone who can reach the address could use the server; "
                       "create one first (basalt keys create --name admin --scopes admin) or pass --insecure-open",
                       c->host);
    if (limits_open(cfg ? cfg->ratelimit : NULL, &g->limits, err) != BS_OK ||
        usage_open(s->store, cfg && cfg->flush_s > 0 ? cfg->flush_s : 5.0, &g->usage, err) != BS_OK)
        return err->status;
    char *dir = cfg && cfg->log_dir ? strdup(cfg->log_dir) : bs_path_join(c->data_dir, "logs");
    if (!dir) return bs_fail(err, BS_ENOMEM, "out of memory");
    invlog_options lo = {.dir = dir, .max_mb = cfg && cfg->log_max_mb > 0 ? cfg->log_max_mb : 100,
                         .retention_days = cfg && cfg->log_retention_days > 0 ? cfg->log_retention_days : 30,
                         .log_bodies = cfg ? cfg->log_bodies : 0};
    g->log_bodies = lo.log_bodies;
    bs_status st = invlog_open(&lo, &g->log, err);
    free(dir);
    if (st != BS_OK || seed_budgets(g, err) != BS_OK) return err->status;
    if (pthread_create(&g->refresher, NULL, refresh_main, g) != 0)
        return bs_fail(err, BS_ENOMEM, "cannot start the key refresh thread");
    g->refresher_started = 1;
    if (n_keys > 0)
        bs_log_info("API keys: %zu configured; every route but /health needs one (limits: %s)", n_keys,
                    limits_backend(g->limits));
    else if (is_loopback(c->host))
        bs_log_info("no API keys: open access, loopback only (create one with basalt keys create)");
    else
        bs_log_warn("!!! --insecure-open: no API keys and listening on %s: ANYONE who can reach this address can "
                    "use every route, the admin API included !!!",
                    c->host);
    return BS_OK;
}

bs_status governance_open(basalt_server *s, const server_config *c, srv_governance **out, bs_error *err) {
    *out = NULL;
    srv_governance *g = calloc(1, sizeof *g);
    if (!g) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    gw_config *cfg = gateway_config(s->gateway);
    bs_status st = open_parts(g, s, c, cfg, err);
    gw_config_unref(cfg);
    if (st != BS_OK) {
        governance_close(g);
        return st;
    }
    *out = g;
    return BS_OK;
}

void governance_close(srv_governance *g) {
    if (!g) return;
    if (g->refresher_started) {
        pthread_mutex_lock(&g->mu);
        g->stop = 1;
        pthread_cond_signal(&g->cv);
        pthread_mutex_unlock(&g->mu);
        pthread_join(g->refresher, NULL);
    }
    invlog_close(g->log);
    usage_close(g->usage);
    limits_close(g->limits);
    keys_close(g->keys);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

keys_registry *governance_keys(srv_governance *g) { return g->keys; }
usage_recorder *governance_usage(srv_governance *g) { return g->usage; }

/* ------------------------------------------------------------ answers */

/* OpenAI's error object with the type and code given (respond_error derives
 * the type from the status, which does not match OpenAI for 401 / quota). */
static void respond_gov(http_request *r, int status, const char *type, const char *code, const char *param,
                        const char *msg) {
    respond_json(r, status,
                 json_pack("{s:{s:s,s:s,s:s?,s:s}}", "error", "message", msg, "type", type, "param", param, "code",
                           code));
}

static void add_header(void *ctx, const char *name, const char *value) { http_add_header(ctx, name, value); }

static gov_request *gov_of(http_request *r) {
    req_log *l = request_log(r);
    return l ? l->gov : NULL;
}

/* ------------------------------------------------------------ authentication */

static int scope_bit(const char *scope, key_scope *out) {
    static const struct {
        const char *name;
        key_scope bit;
    } map[] = {{SCOPE_INFERENCE, KEY_SCOPE_INFERENCE},
               {SCOPE_FILES, KEY_SCOPE_FILES},
               {SCOPE_FINE_TUNE, KEY_SCOPE_FINE_TUNE},
               {SCOPE_ADMIN, KEY_SCOPE_ADMIN}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, scope) == 0) {
            *out = map[i].bit;
            return 1;
        }
    return 0;
}

/* The key's guardrail policies: metadata.guardrails, an array of names. */
static void collect_guardrails(gov_request *q) {
    const json_t *a = json_object_get(q->key.key->metadata, "guardrails");
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    if (!n || !(q->guardrails = calloc(n, sizeof *q->guardrails))) return;
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_array_get(a, i));
        if (name) q->guardrails[q->n_guardrails++] = name;
    }
}

int governance_authenticate(basalt_server *s, http_request *r, const char *scope) {
    srv_governance *g = s->gov;
    req_log *l = request_log(r);
    if (!l) {
        api_error a = {0};
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        respond_error(r, &a);
        return 0;
    }
    if (!l->gov && !(l->gov = calloc(1, sizeof *l->gov))) {
        api_error a = {0};
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        respond_error(r, &a);
        return 0;
    }
    gov_request *q = l->gov;
    if (strcmp(scope, SCOPE_PUBLIC) == 0) return 1;
    /* Open access until the first key exists (server_open allowed it). */
    if (!q->key.key && keys_count(g->keys) == 0) return 1;
    if (!q->key.key) { /* the upload's begin hook may have authenticated already */
        /* Work basalt sends itself (batches) acts for the key that created it. */
        int internal = http_peer_is_loopback(r) && internal_auth_check(http_header(r, INTERNAL_TOKEN_HEADER));
        key_auth res = internal ? keys_view_by_id(g->keys, http_header(r, INTERNAL_TENANT_HEADER), (int64_t)time(NULL), &q->key)
                                : keys_authenticate(g->keys, http_header(r, "Authorization"), (int64_t)time(NULL), &q->key);
        if (res != KEY_AUTH_OK) {
            respond_gov(r, 401, "invalid_request_error", "invalid_api_key", NULL, key_auth_message(res));
            return 0;
        }
        collect_guardrails(q);
    }
    key_scope bit;
    if (!scope_bit(scope, &bit) || !key_allows_scope(q->key.key, bit)) {
        char msg[256];
        snprintf(msg, sizeof msg, "This API key (%s) lacks the \"%s\" scope needed for %s %s", q->key.key->id, scope,
                 http_method(r), l->endpoint && strcmp(l->endpoint, "other") ? l->endpoint : http_path(r));
        respond_gov(r, 403, "permission_error", "permission_denied", NULL, msg);
        return 0;
    }
    return 1;
}

const key_info *request_key(http_request *r) {
    gov_request *q = gov_of(r);
    return q ? q->key.key : NULL;
}

const char *request_tenant(http_request *r) {
    const key_info *k = request_key(r);
    if (!k) return "";
    return k->owner && *k->owner ? k->owner : k->id;
}

int request_key_guardrails(http_request *r, const char *const **names) {
    gov_request *q = gov_of(r);
    *names = q ? q->guardrails : NULL;
    return q ? q->n_guardrails : 0;
}

/* ------------------------------------------------------------ body tee */

static void tee_tap(void *ctx, const char *type, const char *data, size_t len) {
    body_tee *t = ctx;
    if (type) { /* a (new) body begins: what an earlier response left goes */
        snprintf(t->type, sizeof t->type, "%s", type);
        buf_consume(&t->kept, t->kept.len);
        t->total = 0;
        t->cap = t->log_bodies ? LOG_BODY_CAP : strncmp(type, "application/json", 16) == 0 ? ERROR_BODY_CAP : 0;
    }
    t->total += (int64_t)len;
    size_t room = t->cap - t->kept.len;
    if (room) buf_append(&t->kept, data, len < room ? len : room);
}

static void tee_release(void *ctx) {
    body_tee *t = ctx;
    buf_free(&t->kept);
    free(t);
}

/* ------------------------------------------------------------ admission */

/* Bytes of every string in v but the model name: what the prompt can be. */
static int64_t text_bytes(const json_t *v) {
    if (json_is_string(v)) return (int64_t)json_string_length(v);
    int64_t n = 0;
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) n += text_bytes(x);
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) if (strcmp(k, "model") != 0) n += text_bytes(x);
    }
    return n;
}

static int64_t prompt_estimate(const json_t *body) {
    size_t messages = 1;
    const char *lists[] = {"messages", "input"};
    for (size_t i = 0; i < 2; i++) {
        const json_t *m = json_object_get(body, lists[i]);
        if (json_is_array(m) && json_array_size(m) > messages) messages = json_array_size(m);
    }
    return text_bytes(body) + PER_MESSAGE_TOKENS * (int64_t)(messages + 1);
}

/* The context of a model served here; DEFAULT_MAX_TOKENS for anything else
 * (an upstream's window is not known). */
static int64_t model_context(basalt_server *s, const char *name) {
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return s->models[i].n_ctx;
    return DEFAULT_MAX_TOKENS;
}

/* The completion allowance: the request's max_tokens (under any of its
 * names) clamped to the context, else min(DEFAULT_MAX_TOKENS, context);
 * embeddings complete nothing. */
static int64_t completion_allowance(basalt_server *s, const char *endpoint, const json_t *body, const char *model) {
    if (strcmp(endpoint, "/v1/embeddings") == 0) return 0;
    int64_t ctx = model_context(s, model), allow = ctx < DEFAULT_MAX_TOKENS ? ctx : DEFAULT_MAX_TOKENS;
    static const char *const names[] = {"max_tokens", "max_completion_tokens", "max_output_tokens"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const json_t *v = json_object_get(body, names[i]);
        if (json_is_integer(v) && json_integer_value(v) > 0) {
            int64_t want = (int64_t)json_integer_value(v);
            return want < ctx ? want : ctx;
        }
    }
    return allow;
}

static const gw_price *model_price(const gw_config *cfg, const char *name) {
    int i = cfg ? gw_config_model(cfg, name) : -1;
    return i >= 0 && cfg->models[i].price.set ? &cfg->models[i].price : NULL;
}

static double price_of(const gw_price *p, int64_t in, int64_t out) {
    return p ? ((double)in * p->input_per_mtok + (double)out * p->output_per_mtok) / 1e6 : 0.0;
}

/* The most a request can cost: a model at its price; a route at the price
 * of the dearest model it may try (targets and every fallback list). */
static double max_cost(const gw_config *cfg, const char *name, int64_t in, int64_t out) {
    int ri = cfg ? gw_config_route(cfg, name) : -1;
    if (ri < 0) return price_of(model_price(cfg, name), in, out);
    const gw_route *rt = &cfg->routes[ri];
    double worst = 0;
    const int *lists[] = {NULL, rt->fallbacks, rt->context_fallbacks, rt->content_fallbacks};
    const int sizes[] = {rt->n_targets, rt->n_fallbacks, rt->n_context_fallbacks, rt->n_content_fallbacks};
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < sizes[l]; i++) {
            int m = l == 0 ? rt->targets[i].model : lists[l][i];
            double c = price_of(model_price(cfg, cfg->models[m].name), in, out);
            if (c > worst) worst = c;
        }
    return worst;
}

/* amount: what the request reserves of the refusing limit (tokens, or
 * micro-USD for a budget). */
static void deny(http_request *r, const limit_denial *d, int64_t amount, const char *max_param) {
    char msg[384];
    const char *whose = d->model_limit ? "the model's" : "this API key's";
    if (d->exceeds_limit) {
        snprintf(msg, sizeof msg,
                 "%s: this request alone reserves %lld %s (prompt estimate + %s), more than %s %s limit of %lld; "
                 "lower %s",
                 max_param, (long long)amount,
                 d->kind == LIMIT_BUDGET ? "micro-USD" : "tokens", max_param, whose, limit_kind_name(d->kind),
                 (long long)d->limit, max_param);
        respond_gov(r, 400, "invalid_request_error", "request_exceeds_limit", max_param, msg);
        return;
    }
    limits_headers(&d->state, d->retry_after_s, add_header, r);
    if (d->kind == LIMIT_BUDGET) {
        snprintf(msg, sizeof msg, "Budget exceeded: %s budget of %.6f USD for this period is spent (%.6f USD left)",
                 whose, (double)d->limit / 1e6, (double)d->remaining / 1e6);
        respond_gov(r, 429, "insufficient_quota", "budget_exceeded", NULL, msg);
        return;
    }
    snprintf(msg, sizeof msg, "Rate limit reached: %s %s limit of %lld (%lld left); retry after %d s", whose,
             d->kind == LIMIT_CONCURRENCY ? "concurrent-requests" : d->kind == LIMIT_TOKENS ? "tokens-per-minute"
                                                                                            : "requests-per-minute",
             (long long)d->limit, (long long)d->remaining, d->retry_after_s);
    respond_gov(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL, msg);
}

static const char *max_tokens_param(const json_t *body) {
    if (json_object_get(body, "max_completion_tokens")) return "max_completion_tokens";
    if (json_object_get(body, "max_output_tokens")) return "max_output_tokens";
    return "max_tokens";
}

int governance_admit(basalt_server *s, http_request *r, const char *endpoint, json_t *body) {
    gov_request *q = gov_of(r);
    const char *model = json_string_value(json_object_get(body, "model"));
    if (!q || !model) return 1; /* the handler answers for a missing model */
    snprintf(q->model, sizeof q->model, "%s", model);
    snprintf(q->endpoint, sizeof q->endpoint, "%s", endpoint);
    const gw_config *cfg = gateway_request_config(s, r);
    if (cfg && !q->cfg) q->cfg = gw_config_ref((gw_config *)cfg);
    const key_info *k = q->key.key;
    int is_route = cfg && gw_config_route(cfg, model) >= 0;
    /* A shadow copy is the gateway's experiment, not the key's traffic: no
     * limits are reserved for it (its own log line marks it as a shadow). */
    const char *kind = http_header(r, INTERNAL_KIND_HEADER);
    if (kind && strcmp(kind, "shadow") == 0 && http_peer_is_loopback(r) &&
        internal_auth_check(http_header(r, INTERNAL_TOKEN_HEADER)))
        return 1;
    if (k && !key_allows_model(k, model, is_route ? model : NULL)) {
        char msg[320];
        snprintf(msg, sizeof msg, "This API key (%s) may not use the %s '%s'", k->id, is_route ? "route" : "model",
                 model);
        respond_gov(r, 403, "permission_error", "model_not_allowed", "model", msg);
        return 0;
    }
    int mi = cfg ? gw_config_model(cfg, model) : -1;
    int64_t in = prompt_estimate(body), out = completion_allowance(s, endpoint, body, model);
    limit_request lr = {.model = model, .tokens = in + out,
                        .cost_micros = limits_micros(max_cost(cfg, model, in, out))};
    if (mi >= 0) {
        lr.model_rpm = cfg->models[mi].rpm;
        lr.model_tpm = cfg->models[mi].tpm;
        lr.model_max_concurrent = cfg->models[mi].max_concurrent;
    }
    if (k) {
        lr.key_id = k->id;
        lr.key_rpm = k->rpm;
        lr.key_tpm = k->tpm;
        lr.key_max_concurrent = k->max_concurrent;
        lr.key_budget_micros = limits_micros(k->budget_usd);
        lr.budget_period = k->budget_period;
    }
    q->admitted = 1;
    q->reserved_prompt = in;
    q->reserved_completion = out;
    if (!q->tee && (q->tee = calloc(1, sizeof *q->tee))) {
        q->tee->log_bodies = s->gov->log_bodies;
        http_set_tap(r, tee_tap, tee_release, q->tee);
    }
    if (!lr.key_id && lr.model_rpm <= 0 && lr.model_tpm <= 0 && lr.model_max_concurrent <= 0)
        return 1; /* nothing to enforce */
    limit_denial d;
    bs_error err = {0};
    bs_status st = limits_admit(s->gov->limits, &lr, &q->ticket, &d, &err);
    if (st == BS_OK) {
        limits_headers(limit_ticket_state(q->ticket), 0, add_header, r);
        return 1;
    }
    q->ticket = NULL;
    if (st == BS_EBUSY) {
        deny(r, &d, d.kind == LIMIT_BUDGET ? lr.cost_micros : lr.tokens, max_tokens_param(body));
        return 0;
    }
    /* The limiter is down: refusing is the only way not to overspend. */
    bs_log_error("limits: %s", err.msg);
    http_add_header(r, "Retry-After", "1");
    respond_gov(r, 503, "service_unavailable_error", "rate_limiter_unavailable", NULL,
                "The rate limiter is unavailable; retry shortly");
    return 0;
}

/* ------------------------------------------------------------ completion */

static const char *line_string(const json_t *line, const char *name) {
    return json_string_value(json_object_get(line, name));
}

static int64_t line_int(const json_t *line, const char *name) {
    return (int64_t)json_integer_value(json_object_get(line, name));
}

static int is_remote(const gw_config *cfg, const char *name) {
    int i = cfg ? gw_config_model(cfg, name) : -1;
    return i >= 0 && cfg->models[i].kind == GW_MODEL_REMOTE;
}

/* No counts arrived although a model may have run: the client left before
 * any (a local job reports its prompt with its first token, a proxied
 * stream its usage in its last chunk), or an upstream answered 2xx without
 * usage (a stream cut before the usage chunk).  The gateway says whether a
 * remote answer carried usage (reported: 0 tokens reported are exact); a
 * local model that ran reports at least one prompt token, so there 0 + 0
 * means nothing was reported. */
static int usage_unknown(const gw_config *cfg, const char *target, int status, int reported, int64_t in,
                         int64_t out) {
    if (in + out > 0 || reported) return 0;
    return status == STATUS_CLIENT_CLOSED || (status >= 200 && status < 300 && is_remote(cfg, target));
}

/* The error object's code (else its type) of a failed request's JSON body
 * as it went out; "client_closed_request" when the client left.  Into
 * out, "" when there is none. */
static void error_code_of(const body_tee *t, int status, char *out, size_t cap) {
    out[0] = '\0';
    if (status < 400) return;
    if (status == STATUS_CLIENT_CLOSED) {
        snprintf(out, cap, "client_closed_request");
        return;
    }
    if (!t || !t->kept.len || t->kept.oom) return;
    json_t *body = json_loadb(t->kept.data, t->kept.len, 0, NULL);
    const json_t *e = json_object_get(body, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    if (!code) code = json_string_value(json_object_get(e, "type"));
    if (code) snprintf(out, cap, "%s", code);
    json_decref(body);
}

static void record(basalt_server *s, http_request *r, gov_request *q, json_t *line) {
    srv_governance *g = s->gov;
    int64_t in = line_int(line, "prompt_tokens"), out = line_int(line, "completion_tokens");
    const char *route = line_string(line, "route"), *target = line_string(line, "target");
    if (!target || !*target) target = q->model;
    int status = http_status(r);
    int reported = json_is_true(json_object_get(line, "usage_reported"));
    int estimated = usage_unknown(q->cfg, target, status, reported, in, out);
    if (estimated) {
        in = q->reserved_prompt;
        out = is_remote(q->cfg, target) ? q->reserved_completion : 0;
        json_object_set_new(line, "prompt_tokens", json_integer(in));
        json_object_set_new(line, "completion_tokens", json_integer(out));
        json_object_set_new(line, "usage_estimated", json_true());
    }
    /* At most the reserved cost: the target is one the reservation priced. */
    double cost = price_of(model_price(q->cfg, target), in, out);
    char error_code[64];
    error_code_of(q->tee, status, error_code, sizeof error_code);
    if (q->ticket) {
        bs_error err = {0};
        if (limits_settle(g->limits, q->ticket, in + out, limits_micros(cost), &err) != BS_OK)
            bs_log_error("limits: settle of request %s: %s", http_request_id(r), err.msg);
        limit_ticket_free(g->limits, q->ticket);
        q->ticket = NULL;
    }
    const char *action = line_string(line, "guardrail_action");
    const key_info *k = q->key.key;
    double latency = json_real_value(json_object_get(line, "latency_ms"));
    usage_event e = {.key_id = k ? k->id : "", .model = q->model, .route = route ? route : "", .target = target,
                     .error = status < 200 || status >= 300, .prompt_tokens = in, .completion_tokens = out,
                     .cost_usd = cost, .latency_ms = latency,
                     .guardrail_intervened = action && strcmp(action, "NONE") != 0};
    usage_record(g->usage, &e);
    const json_t *ttft = json_object_get(line, "ttft_ms");
    invlog_entry le = {.request_id = http_request_id(r), .key_id = k ? k->id : NULL, .key_name = k ? k->name : NULL,
                       .operation = q->endpoint, .model_id = q->model, .route = route, .target = target,
                       .fallbacks = json_object_get(line, "chain"), .status = status,
                       .error_code = error_code[0] ? error_code : NULL, .input_tokens = in, .output_tokens = out,
                       .usage_estimated = estimated, .cost_usd = cost, .latency_ms = latency,
                       .overhead_ms = json_number_value(json_object_get(line, "overhead_ms")),
                       .ttft_ms = json_number_value(ttft) > 0 ? json_number_value(ttft) : -1,
                       .guardrail_action = action};
    req_log *l = request_log(r);
    if (l && g->log) le.input_body = l->body;
    /* A tee whose buffer failed to grow keeps nothing rather than a hole. */
    if (q->tee && q->tee->type[0]) {
        le.output_type = q->tee->type;
        le.output_data = q->tee->kept.oom ? "" : q->tee->kept.data;
        le.output_len = q->tee->kept.oom ? 0 : q->tee->kept.len;
        le.output_total = q->tee->total;
    }
    invlog_write(g->log, &le);
    json_object_set_new(line, "cost_usd", json_real(cost));
}

void governance_done(basalt_server *s, http_request *r, json_t *line) {
    req_log *l = request_log(r);
    gov_request *q = l ? l->gov : NULL;
    if (!q) return;
    l->gov = NULL;
    if (q->key.key) json_object_set_new(line, "key_id", json_string(q->key.key->id));
    if (q->admitted) record(s, r, q, line);
    key_view_release(&q->key);
    gw_config_unref(q->cfg);
    free(q->guardrails);
    free(q);
}
