/* server/gateway.c — the gateway in the request path.
 *
 * Generations: a loaded config plus its compiled guardrails and the
 * upstream pools of its providers, reference counted.  gateway_reload builds
 * a new generation and swaps the pointer under a mutex; a request pins the
 * generation it first sees (its admission, guardrails and routing all read
 * that one) and releases it when its response is over, so requests running
 * during a reload finish on the old config and nothing is dropped.
 *
 * Pools and breakers outlive generations: pools are keyed by provider name
 * and connection limit (connections stay warm across reloads), breakers by
 * model name (gateway/breaker.h).
 *
 * Serving: the router's plan names a target; a remote one goes through
 * proxy_forward, a local one runs the endpoint's own handler in-process.  A
 * failure that left the response unsent (any proxy failure; a local error
 * status) goes back to the plan for a retry or fallback; once a byte went
 * out (a proxied 2xx, a local stream) the outcome is final. */
#include "server/server_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/log.h"
#include "gateway/audit.h"
#include "gateway/breaker.h"
#include "gateway/router.h"
#include "gateway/upstream.h"
#include "server/internal_auth.h"
#include "server/proxy.h"

typedef struct generation {
    gw_config *cfg;
    guard_set *guards;
    upstream_pool **pools; /* per provider, borrowed from the gateway */
    long number;           /* 1 for the config loaded at start */
    int refs;
} generation;

typedef struct pool_entry {
    char *provider;
    int max_connections;
    upstream_pool *pool;
} pool_entry;

struct srv_gateway {
    basalt_server *s;
    char *path;
    pthread_mutex_t mu; /* cur, pools, generation count */
    generation *cur;
    long generations;
    pool_entry *pools;
    int n_pools;
    upstream_pool *self_pool; /* local shadows: requests to this server */
    breaker_registry *breakers;
};

/* Per request (req_log->gw); a second reference is held by a proxied
 * response still streaming, whose end reports the usage. */
typedef struct gateway_request {
    int refs;
    generation *gen;
    int shadow;         /* a local shadow copy sent by this server */
    int served;         /* gateway_serve answered it */
    const char *route;  /* the requested public name (a route or model of gen) */
    const gw_model *target; /* served it, or was tried last */
    json_t *chain;
    int fallbacks;
    double overhead_s;
    long prompt_tokens, completion_tokens; /* from the proxy; -1 unknown */
    double ttft_s;
} gateway_request;

/* ------------------------------------------------------------ generations */

static void gen_unref(generation *gen) {
    if (!gen || __atomic_sub_fetch(&gen->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    guard_set_free(gen->guards);
    gw_config_unref(gen->cfg);
    free(gen->pools);
    free(gen);
}

/* The pool for a provider, made on first use; called with g->mu held. */
static bs_status pool_for(srv_gateway *g, const gw_provider *p, upstream_pool **out, bs_error *err) {
    for (int i = 0; i < g->n_pools; i++)
        if (strcmp(g->pools[i].provider, p->name) == 0 && g->pools[i].max_connections == p->max_connections) {
            *out = g->pools[i].pool;
            return BS_OK;
        }
    pool_entry *pe = realloc(g->pools, (size_t)(g->n_pools + 1) * sizeof *pe);
    if (!pe) return bs_fail(err, BS_ENOMEM, "out of memory");
    g->pools = pe;
    pool_entry *e = &pe[g->n_pools];
    if (!(e->provider = strdup(p->name))) return bs_fail(err, BS_ENOMEM, "out of memory");
    if (upstream_open(p->max_connections, &e->pool, err) != BS_OK) {
        free(e->provider);
        return bs_wrap(err, "provider %s", p->name);
    }
    e->max_connections = p->max_connections;
    g->n_pools++;
    *out = e->pool;
    return BS_OK;
}

/* Load the file and compile its guardrails into a generation (refs 1). */
static bs_status gen_build(srv_gateway *g, generation **out, bs_error *err) {
    generation *gen = calloc(1, sizeof *gen);
    if (!gen) return bs_fail(err, BS_ENOMEM, "out of memory");
    gen->refs = 1;
    bs_status st = gw_config_load(g->path, &gen->cfg, err);
    if (st == BS_OK) st = guard_set_build(gen->cfg, &gen->guards, err);
    if (st == BS_OK && gen->cfg->n_providers &&
        !(gen->pools = calloc((size_t)gen->cfg->n_providers, sizeof *gen->pools)))
        st = bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_lock(&g->mu);
    for (int i = 0; st == BS_OK && i < gen->cfg->n_providers; i++)
        st = pool_for(g, &gen->cfg->providers[i], &gen->pools[i], err);
    if (st == BS_OK) gen->number = ++g->generations;
    pthread_mutex_unlock(&g->mu);
    if (st != BS_OK) {
        gen_unref(gen);
        return st;
    }
    *out = gen;
    return BS_OK;
}

static generation *gen_current(srv_gateway *g) {
    pthread_mutex_lock(&g->mu);
    generation *gen = g->cur;
    __atomic_add_fetch(&gen->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&g->mu);
    return gen;
}

/* Breaker states as gauges: 0 closed, 1 half-open, 2 open. */
static void render_breakers(void *ctx, srv_buf *out) {
    srv_gateway *g = ctx;
    breaker_info *info = NULL;
    int n = 0;
    bs_error err = {0};
    if (breaker_list(g->breakers, bs_now(), &info, &n, &err) != BS_OK) return;
    buf_puts(out, "# HELP basalt_gateway_breaker_state Circuit breaker per target: 0 closed, 1 half-open, 2 open.\n"
                  "# TYPE basalt_gateway_breaker_state gauge\n");
    for (int i = 0; i < n; i++)
        buf_printf(out, "basalt_gateway_breaker_state{target=\"%s\"} %d\n", info[i].name,
                   info[i].state == BREAKER_OPEN ? 2 : info[i].state == BREAKER_HALF_OPEN ? 1 : 0);
    free(info);
}

bs_status gateway_open(basalt_server *s, const char *config_path, srv_gateway **out, bs_error *err) {
    *out = NULL;
    if (!config_path) return BS_OK;
    srv_gateway *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(config_path))) {
        free(g);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    g->s = s;
    pthread_mutex_init(&g->mu, NULL);
    bs_status st = breaker_registry_open(&g->breakers, err);
    if (st == BS_OK) st = upstream_open(0, &g->self_pool, err);
    if (st == BS_OK) st = gen_build(g, &g->cur, err);
    if (st != BS_OK) {
        gateway_close(g);
        return st;
    }
    metrics_set_extra(s->metrics, render_breakers, g);
    bs_log_info("gateway: config %s: %d providers, %d models, %d routes", g->path, g->cur->cfg->n_providers,
                g->cur->cfg->n_models, g->cur->cfg->n_routes);
    *out = g;
    return BS_OK;
}

void gateway_close(srv_gateway *g) {
    if (!g) return;
    if (g->s) metrics_set_extra(g->s->metrics, NULL, NULL);
    gen_unref(g->cur);
    for (int i = 0; i < g->n_pools; i++) {
        upstream_close(g->pools[i].pool);
        free(g->pools[i].provider);
    }
    free(g->pools);
    upstream_close(g->self_pool);
    breaker_registry_close(g->breakers);
    pthread_mutex_destroy(&g->mu);
    free(g->path);
    free(g);
}

gw_config *gateway_config(srv_gateway *g) {
    if (!g) return NULL;
    generation *gen = gen_current(g);
    gw_config *c = gw_config_ref(gen->cfg);
    gen_unref(gen);
    return c;
}

/* Loading models is server_open's job: a reload may change everything but
 * the set of local models. */
static int same_local(const gw_model *a, const gw_model *b) {
    return strcmp(a->name, b->name) == 0 && strcmp(a->path, b->path) == 0 &&
           (a->quantize ? b->quantize && strcmp(a->quantize, b->quantize) == 0 : !b->quantize) && a->ctx == b->ctx;
}

static const gw_model *local_change(const gw_config *old, const gw_config *neu) {
    for (int pass = 0; pass < 2; pass++) {
        const gw_config *x = pass ? old : neu, *y = pass ? neu : old;
        for (int i = 0; i < x->n_models; i++) {
            if (x->models[i].kind != GW_MODEL_LOCAL) continue;
            int j = gw_config_model(y, x->models[i].name);
            if (j < 0 || y->models[j].kind != GW_MODEL_LOCAL || !same_local(&x->models[i], &y->models[j]))
                return &x->models[i];
        }
    }
    return NULL;
}

bs_status gateway_reload(basalt_server *s, bs_error *err) {
    srv_gateway *g = s->gateway;
    if (!g) return bs_fail(err, BS_EINVAL, "no --config: nothing to reload");
    generation *gen;
    if (gen_build(g, &gen, err) != BS_OK) return err->status;
    pthread_mutex_lock(&g->mu);
    generation *old = g->cur;
    const gw_model *changed = local_change(old->cfg, gen->cfg);
    if (!changed) g->cur = gen;
    pthread_mutex_unlock(&g->mu);
    if (changed) {
        bs_fail(err, BS_EINVAL, "%s:%d: local model %s changed: local models changed: restart basalt to load them",
                g->path, changed->line, changed->name);
        gen_unref(gen);
        return BS_EINVAL;
    }
    bs_log_info("gateway: config %s reloaded (generation %ld: %d providers, %d models, %d routes)", g->path,
                gen->number, gen->cfg->n_providers, gen->cfg->n_models, gen->cfg->n_routes);
    gen_unref(old);
    return BS_OK;
}

/* ------------------------------------------------------------ per request */

static void gr_unref(gateway_request *gr) {
    if (!gr || __atomic_sub_fetch(&gr->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    gen_unref(gr->gen);
    json_decref(gr->chain);
    free(gr);
}

/* The request's state, pinning the current generation on first use. */
static gateway_request *pin(basalt_server *s, http_request *r) {
    req_log *l = request_log(r);
    if (!s->gateway || !l) return NULL;
    if (!l->gw) {
        gateway_request *gr = calloc(1, sizeof *gr);
        if (!gr) return NULL;
        gr->refs = 1;
        gr->gen = gen_current(s->gateway);
        gr->prompt_tokens = gr->completion_tokens = -1;
        gr->ttft_s = -1;
        l->gw = gr;
    }
    return l->gw;
}

const gw_config *gateway_request_config(basalt_server *s, http_request *r) {
    gateway_request *gr = pin(s, r);
    return gr ? gr->gen->cfg : NULL;
}

const struct guard_set *gateway_guards(basalt_server *s, http_request *r) {
    gateway_request *gr = pin(s, r);
    return gr ? gr->gen->guards : NULL;
}

/* ------------------------------------------------------------ helpers */

/* xorshift64*, one state per thread seeded from getrandom: routing and
 * jitter need speed, not secrecy. */
static uint64_t rnd64(void) {
    static _Thread_local uint64_t x;
    if (!x) {
        if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (uint64_t)(bs_now() * 1e9);
        x |= 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 2685821657736338717ull;
}

static const char *request_header(void *ctx, const char *name) { return http_header(ctx, name); }

static router_class class_of_proxy(const proxy_attempt *a) {
    switch (proxy_classify(a->status, a->fail, a->error)) {
    case PROXY_ERR_CONTEXT: return ROUTER_CLASS_CONTEXT_WINDOW;
    case PROXY_ERR_CONTENT: return ROUTER_CLASS_CONTENT_POLICY;
    case PROXY_ERR_RATE_LIMIT: return ROUTER_CLASS_RATE_LIMITED;
    case PROXY_ERR_TIMEOUT: return ROUTER_CLASS_TIMEOUT;
    case PROXY_ERR_CONNECTION: return ROUTER_CLASS_CONNECTION;
    case PROXY_ERR_CLIENT: return ROUTER_CLASS_CLIENT;
    case PROXY_ERR_NONE:   /* a failure proxy_forward had before sending (out of memory) */
    case PROXY_ERR_SERVER: return ROUTER_CLASS_SERVER;
    }
    return ROUTER_CLASS_SERVER;
}

static int is_shadow_copy(http_request *r) {
    const char *kind = http_header(r, INTERNAL_KIND_HEADER);
    return kind && strcmp(kind, "shadow") == 0 && internal_auth_check(http_header(r, INTERNAL_TOKEN_HEADER));
}

/* Backoff waits never carry a request past the longest provider timeout
 * since it arrived (600 s without providers, the providers' default). */
static double request_budget(const gw_config *cfg) {
    double b = cfg->n_providers ? 0 : 600;
    for (int i = 0; i < cfg->n_providers; i++)
        if (cfg->providers[i].timeout_s > b) b = cfg->providers[i].timeout_s;
    return b;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static void add_target_headers(http_request *r, const char *target, double overhead_s) {
    char v[32];
    snprintf(v, sizeof v, "%.3f", overhead_s * 1e3);
    http_add_header(r, "x-basalt-target", target);
    http_add_header(r, "x-basalt-overhead-ms", v);
}

/* ------------------------------------------------------------ shadows */

typedef struct shadow_ctx {
    char *route, *target, *request_id;
} shadow_ctx;

static void shadow_ctx_free(shadow_ctx *c) {
    free(c->route);
    free(c->target);
    free(c->request_id);
    free(c);
}

/* On the pool's event thread: one log line, nothing that blocks long. */
static void shadow_done(void *ctx, const upstream_result *res) {
    shadow_ctx *c = ctx;
    json_t *line = json_pack("{s:I,s:s,s:s,s:s,s:i,s:f,s:I}", "ts", (json_int_t)unix_now(), "shadow", c->target,
                             "route", c->route, "request_id", c->request_id, "status", res->status, "latency_ms",
                             res->latency_s * 1e3, "bytes", (json_int_t)res->bytes);
    if (line && res->cls != UPSTREAM_OK) json_object_set_new(line, "error", json_string(upstream_class_name(res->cls)));
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    if (text) fprintf(stderr, "%s\n", text);
    free(text);
    json_decref(line);
    shadow_ctx_free(c);
}

/* Mirror the request to each shadow target without waiting: remote ones
 * to their provider, local ones to this server as an internal shadow copy
 * (served by the local handler, marked "shadow" in its log line, never
 * shadowed again). */
static void fire_shadows(basalt_server *s, gateway_request *gr, const gw_route *rt, http_request *r, const json_t *body,
                         const char *endpoint) {
    srv_gateway *g = s->gateway;
    const gw_config *cfg = gr->gen->cfg;
    for (int i = 0; i < rt->n_shadows; i++) {
        const gw_model *m = &cfg->models[rt->shadows[i]];
        int remote = m->kind == GW_MODEL_REMOTE;
        const gw_provider *pv = remote ? &cfg->providers[m->provider] : NULL;
        json_t *copy = json_deep_copy(body);
        json_object_set_new(copy, "model", json_string(remote ? m->upstream_model : m->name));
        char *text = copy ? json_dumps(copy, JSON_COMPACT) : NULL;
        json_decref(copy);
        char *url = NULL, *auth = NULL, *token = NULL, *tenant = NULL;
        int ok = text && asprintf(&url, "%s%s", remote ? pv->base_url : server_url(s), remote ? endpoint + 3 : endpoint) >= 0;
        const char *headers[4] = {"Content-Type: application/json"};
        int nh = 1;
        if (ok && remote && pv->api_key && *pv->api_key) {
            ok = asprintf(&auth, "Authorization: Bearer %s", pv->api_key) >= 0;
            headers[nh++] = auth;
        } else if (ok && !remote) {
            ok = asprintf(&token, "%s: %s", INTERNAL_TOKEN_HEADER, internal_auth_token()) >= 0 &&
                 asprintf(&tenant, "%s: %s", INTERNAL_TENANT_HEADER, request_key(r) ? request_key(r)->id : "") >= 0;
            headers[nh++] = token;
            headers[nh++] = tenant;
            headers[nh++] = INTERNAL_KIND_HEADER ": shadow";
        }
        shadow_ctx *c = ok ? calloc(1, sizeof *c) : NULL;
        if (c && (!(c->route = strdup(gr->route)) || !(c->target = strdup(m->name)) ||
                  !(c->request_id = strdup(http_request_id(r))))) {
            shadow_ctx_free(c);
            c = NULL;
        }
        bs_error err = {0};
        if (!c) {
            bs_log_warn("gateway: route %s: shadow %s: out of memory", gr->route, m->name);
        } else {
            upstream_req req = {.method = "POST", .url = url, .headers = headers, .n_headers = nh, .body = text,
                                .body_len = strlen(text), .connect_timeout_s = remote ? pv->connect_timeout_s : 0,
                                .timeout_s = remote ? pv->timeout_s : 600};
            if (upstream_fire(remote ? gr->gen->pools[m->provider] : g->self_pool, &req, shadow_done, c, &err) != BS_OK) {
                bs_log_warn("gateway: route %s: shadow %s: %s", gr->route, m->name, err.msg);
                shadow_ctx_free(c);
            }
        }
        if (auth) memset(auth, 0, strlen(auth));
        if (token) memset(token, 0, strlen(token));
        free(auth);
        free(token);
        free(tenant);
        free(url);
        free(text);
    }
}

/* ------------------------------------------------------------ serving */

/* A proxied response is over (for streams: after gateway_serve returned). */
static void on_proxy_finished(void *ctx, const proxy_attempt *a) {
    gateway_request *gr = ctx;
    __atomic_store_n(&gr->prompt_tokens, a->prompt_tokens, __ATOMIC_RELAXED);
    __atomic_store_n(&gr->completion_tokens, a->completion_tokens, __ATOMIC_RELAXED);
    gr_unref(gr);
}

/* When every target was skipped (breakers open): 503 with Retry-After. */
static void respond_unavailable(http_request *r, router_plan *plan) {
    int n;
    const router_attempt *at = router_plan_attempts(plan, &n);
    double retry_in = n ? at[n - 1].retry_in_s : 1;
    char v[32];
    snprintf(v, sizeof v, "%.0f", ceil(retry_in > 1 ? retry_in : 1));
    http_add_header(r, "Retry-After", v);
    json_t *body = json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message",
                             "no target is available: their circuit breakers are open", "type", "upstream_error",
                             "param", "code", "circuit_open");
    respond_json(r, 503, body);
}

int gateway_serve(basalt_server *s, http_request *r, const char *endpoint, json_t *body,
                  void (*local)(basalt_server *s, http_request *r)) {
    gateway_request *gr = pin(s, r);
    if (!gr) return 0;
    if (is_shadow_copy(r)) {
        gr->shadow = 1;
        return 0;
    }
    const char *name = json_string_value(json_object_get(body, "model"));
    const gw_config *cfg = gr->gen->cfg;
    int route = name ? gw_config_route(cfg, name) : -1, model = name && route < 0 ? gw_config_model(cfg, name) : -1;
    if (route < 0 && model < 0) return 0;
    srv_gateway *g = s->gateway;
    req_log *l = request_log(r);
    router_request rq = {.model = name, .header = request_header, .header_ctx = r,
                         .user = json_string_value(json_object_get(body, "user")),
                         .metadata = json_object_get(body, "metadata"), .pin = http_header(r, "x-basalt-target")};
    router_plan *plan;
    bs_error err = {0};
    bs_status st = route >= 0 ? router_plan_route(cfg, route, &rq, rnd64(), g->breakers, &plan, &err)
                              : router_plan_model(cfg, model, &rq, g->breakers, &plan, &err);
    if (st != BS_OK) {
        api_error a = {.e = err, .http = 400};
        snprintf(a.param, sizeof a.param, "%s", rq.pin ? "x-basalt-target" : "model");
        respond_error(r, &a);
        return 1;
    }
    gr->served = 1;
    gr->route = route >= 0 ? cfg->routes[route].name : cfg->models[model].name;
    /* The public name: what the client asked for, also shown in proxied responses. */
    snprintf(l->model, sizeof l->model, "%s", gr->route);
    if (route >= 0 && cfg->routes[route].n_shadows) fire_shadows(s, gr, &cfg->routes[route], r, body, endpoint);

    const char *up_endpoint = endpoint + 3; /* "/v1/chat/completions" -> "/chat/completions" */
    const json_t *so = json_object_get(body, "stream_options");
    /* The client's bytes still encode body unless an input guardrail masked
     * it: then proxy_forward rewrites them instead of re-encoding body. */
    int pristine = !guard_input_changed(r);
    proxy_attempt a = {.retry_after_s = -1};
    int remote_failed = 0, prev = -1, attempted = 0;
    double arrival = http_start_time(r), deadline = arrival + request_budget(cfg), outside = 0;
    router_class last = ROUTER_CLASS_NONE;
    double retry_after = -1;
    for (;;) {
        int m;
        double delay;
        router_step step = router_plan_next(plan, last, retry_after, rnd64(), bs_now(), &m, &delay);
        if (step != ROUTER_GO) break;
        if (delay > 0 && bs_now() + delay > deadline) break; /* the answer so far stands */
        const gw_model *gm = &cfg->models[m];
        if (prev >= 0) {
            /* the failed attempt's error response (local) and headers go */
            http_reset_response(r);
            if (m != prev) {
                gr->fallbacks++;
                metrics_gateway_fallback(s->metrics, gr->route, cfg->models[prev].name, gm->name,
                                         router_class_name(last));
            }
        }
        if (delay > 0) {
            sleep_s(delay);
            outside += delay;
        }
        gr->target = gm;
        double t0 = bs_now();
        gr->overhead_s = t0 - arrival - outside;
        add_target_headers(r, gm->name, gr->overhead_s);
        attempted = 1;
        if (gm->kind == GW_MODEL_REMOTE) {
            proxy_attempt_clear(&a);
            a = (proxy_attempt){.pool = gr->gen->pools[gm->provider], .provider = &cfg->providers[gm->provider],
                                .upstream_model = gm->upstream_model, .public_model = gr->route,
                                .endpoint = up_endpoint, .body = body,
                                .raw = pristine ? http_body(r) : NULL, .raw_len = http_body_len(r),
                                .stream = json_is_true(json_object_get(body, "stream")),
                                .include_usage = json_is_true(json_object_get(so, "include_usage")),
                                .finished = on_proxy_finished, .finished_ctx = gr, .retry_after_s = -1};
            __atomic_add_fetch(&gr->refs, 1, __ATOMIC_ACQ_REL); /* for on_proxy_finished */
            st = proxy_forward(r, &a, &err);
            remote_failed = st != BS_OK;
            if (remote_failed) gr_unref(gr); /* nothing went out: no on_proxy_finished */
            last = remote_failed ? class_of_proxy(&a) : ROUTER_CLASS_NONE;
            retry_after = a.retry_after_s;
            if (!remote_failed) gr->ttft_s = a.ttft_s;
            else bs_log_debug("gateway: %s: %s", gr->route, err.msg);
        } else {
            json_object_set_new(body, "model", json_string(gm->name));
            l->error_code[0] = '\0';
            local(s, r);
            int status = http_status(r);
            remote_failed = 0;
            last = status >= 400 ? router_class_from_http(status, l->error_code) : ROUTER_CLASS_NONE;
            retry_after = status == 429 || status == 503 ? 1 : -1; /* respond_error's Retry-After */
        }
        outside += bs_now() - t0;
        if (last != ROUTER_CLASS_NONE) metrics_gateway_error(s->metrics, gr->route, gm->name, router_class_name(last));
        prev = m;
    }
    if (!attempted) {
        respond_unavailable(r, plan);
    } else if (remote_failed) {
        json_t *eb = NULL;
        int status = proxy_error_to_openai(&a, &eb);
        char v[24];
        if (status == 429 && a.retry_after_s >= 0) {
            snprintf(v, sizeof v, "%d", a.retry_after_s);
            http_add_header(r, "Retry-After", v);
        }
        respond_json(r, status, eb);
    }
    proxy_attempt_clear(&a);
    gr->chain = router_plan_chain_json(plan);
    router_plan_free(plan);
    return 1;
}

void gateway_request_done(basalt_server *s, http_request *r, json_t *line) {
    req_log *l = *http_user_slot(r);
    gateway_request *gr = l ? l->gw : NULL;
    if (!gr) return;
    l->gw = NULL;
    if (gr->shadow) json_object_set_new(line, "shadow", json_true());
    if (gr->served) {
        const gw_model *t = gr->target;
        long pt = __atomic_load_n(&gr->prompt_tokens, __ATOMIC_RELAXED);
        long ct = __atomic_load_n(&gr->completion_tokens, __ATOMIC_RELAXED);
        if (t && t->kind == GW_MODEL_REMOTE) {
            /* the proxy counted them; the front door's metrics and governance read these */
            l->prompt_tokens = pt > 0 ? (int)pt : 0;
            l->completion_tokens = ct > 0 ? (int)ct : 0;
            if (gr->ttft_s >= 0) l->ttft = gr->ttft_s;
            json_object_set_new(line, "prompt_tokens", json_integer(l->prompt_tokens));
            json_object_set_new(line, "completion_tokens", json_integer(l->completion_tokens));
            /* whether the upstream's usage arrived at all: 0 tokens reported is not 0 unknown */
            json_object_set_new(line, "usage_reported", json_boolean(pt >= 0 || ct >= 0));
            json_object_set_new(line, "ttft_ms", json_real(l->ttft >= 0 ? l->ttft * 1e3 : 0));
        }
        double cost = t && t->price.set ? (l->prompt_tokens * t->price.input_per_mtok +
                                           l->completion_tokens * t->price.output_per_mtok) / 1e6
                                        : 0;
        json_object_set_new(line, "route", json_string(gr->route));
        if (t) json_object_set_new(line, "target", json_string(t->name));
        json_object_set_new(line, "chain", gr->chain ? json_incref(gr->chain) : json_array());
        json_object_set_new(line, "overhead_ms", json_real(gr->overhead_s * 1e3));
        json_object_set_new(line, "fallbacks_taken", json_integer(gr->fallbacks));
        json_object_set_new(line, "cost_usd", json_real(cost));
        metrics_gateway_sample ms = {.route = gr->route, .target = t ? t->name : "", .status = http_status(r),
                                     .latency_s = bs_now() - http_start_time(r), .ttft_s = l->ttft,
                                     .overhead_s = gr->overhead_s, .prompt_tokens = l->prompt_tokens,
                                     .completion_tokens = l->completion_tokens, .cost_usd = cost};
        metrics_gateway_request(s->metrics, &ms);
    }
    gr_unref(gr);
}

void handle_admin_reload(basalt_server *s, http_request *r) {
    bs_error err = {0};
    bs_status st = gateway_reload(s, &err);
    if (st != BS_OK) bs_log_warn("gateway: reload rejected, the running config stays: %s", err.msg);
    /* The generation serving from now on: the new one, or the old one a
     * rejected reload left in place (0 without --config). */
    generation *gen = s->gateway ? gen_current(s->gateway) : NULL;
    json_int_t number = gen ? (json_int_t)gen->number : 0;
    /* Failed reloads are audited too: an attempt to change the config is an
     * admin action whether or not the file was valid. */
    const key_info *k = request_key(r);
    json_t *details = st == BS_OK ? json_pack("{s:I,s:b}", "generation", number, "ok", 1)
                                  : json_pack("{s:I,s:b,s:s}", "generation", number, "ok", 0, "error", err.msg);
    bs_error aerr = {0};
    bs_status ast = audit_record(s->store, k ? k->id : "", "config.reload", s->gateway ? s->gateway->path : NULL,
                                 details, NULL, &aerr);
    json_decref(details);
    if (ast != BS_OK) {
        /* The reload cannot be undone; say that it went unrecorded. */
        bs_log_error("audit: config.reload: %s", aerr.msg);
        api_error a = {.e = aerr, .http = 500};
        respond_error(r, &a);
    } else if (st != BS_OK) {
        api_error a = {.e = err, .http = 400, .code = "invalid_config"};
        respond_error(r, &a);
    } else {
        respond_json(r, 200,
                     json_pack("{s:s,s:s,s:I,s:i,s:i,s:i}", "status", "reloaded", "config", s->gateway->path,
                               "generation", number, "providers", gen->cfg->n_providers, "models", gen->cfg->n_models,
                               "routes", gen->cfg->n_routes));
    }
    gen_unref(gen);
}
