#include "gateway/router.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct router_plan {
    const gw_config *cfg;
    const gw_route *route; /* NULL: a plain model */
    breaker_registry *breakers;
    gw_retry retry;
    gw_breaker breaker;
    int primary, primary_rule;
    router_why primary_why;
    /* Sized at creation for the most attempts a plan can make (every model
     * once plus its retries), so driving the plan never allocates. */
    router_attempt *att;
    int n_att;
    unsigned char *visited; /* per model: sent to or skipped already */
    int retries;            /* retries made on the current target */
    breaker_ticket ticket;  /* of the attempt in flight */
    int started, finished;
    router_step final;
};

const char *router_class_name(router_class c) {
    switch (c) {
    case ROUTER_CLASS_NONE: return "none";
    case ROUTER_CLASS_RATE_LIMITED: return "rate_limited";
    case ROUTER_CLASS_SERVER: return "server";
    case ROUTER_CLASS_TIMEOUT: return "timeout";
    case ROUTER_CLASS_CONNECTION: return "connection";
    case ROUTER_CLASS_CONTEXT_WINDOW: return "context_window";
    case ROUTER_CLASS_CONTENT_POLICY: return "content_policy";
    case ROUTER_CLASS_CLIENT: return "client";
    case ROUTER_CLASS_GUARDRAIL: return "guardrail";
    }
    return "unknown";
}

const char *router_why_name(router_why w) {
    switch (w) {
    case ROUTER_WHY_DIRECT: return "direct";
    case ROUTER_WHY_PINNED: return "pinned";
    case ROUTER_WHY_RULE: return "rule";
    case ROUTER_WHY_STICKY: return "sticky";
    case ROUTER_WHY_WEIGHTED: return "weighted";
    case ROUTER_WHY_RETRY: return "retry";
    case ROUTER_WHY_FALLBACK: return "fallback";
    }
    return "unknown";
}

router_class router_class_from_http(int status, const char *error_code) {
    if (error_code && strcmp(error_code, "context_length_exceeded") == 0) return ROUTER_CLASS_CONTEXT_WINDOW;
    if (error_code && (strcmp(error_code, "content_filter") == 0 || strcmp(error_code, "content_policy_violation") == 0))
        return ROUTER_CLASS_CONTENT_POLICY;
    if (status >= 200 && status < 400) return ROUTER_CLASS_NONE;
    if (status == 429) return ROUTER_CLASS_RATE_LIMITED;
    if (status == 408) return ROUTER_CLASS_TIMEOUT;
    if (status >= 400 && status < 500) return ROUTER_CLASS_CLIENT;
    return ROUTER_CLASS_SERVER;
}

int router_class_is_target_failure(router_class c) {
    return c == ROUTER_CLASS_RATE_LIMITED || c == ROUTER_CLASS_SERVER || c == ROUTER_CLASS_TIMEOUT ||
           c == ROUTER_CLASS_CONNECTION;
}

/* ---- choosing the primary target ---- */

/* '*' matches any run (also empty), '?' one character; case-sensitive.  On a
 * mismatch after a '*', the star absorbs one more character and matching
 * resumes: linear backtracking, no recursion. */
static int glob_match(const char *pat, const char *s) {
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = ++pat;
            resume = s;
        } else if (*pat == '?' || *pat == *s) {
            pat++;
            s++;
        } else if (star) {
            pat = star;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*') pat++;
    return *pat == '\0';
}

static const char *header_value(const router_request *req, const char *name) {
    if (!req->header || !name) return NULL;
    const char *v = req->header(req->header_ctx, name);
    return v && *v ? v : NULL;
}

static int rule_matches(const gw_rule *rule, const router_request *req) {
    const char *subject = NULL;
    switch (rule->kind) {
    case GW_MATCH_HEADER: subject = header_value(req, rule->key); break;
    case GW_MATCH_MODEL: subject = req->model; break;
    case GW_MATCH_METADATA: {
        const json_t *v = json_is_object(req->metadata) ? json_object_get(req->metadata, rule->key) : NULL;
        subject = json_is_string(v) ? json_string_value(v) : NULL;
        break;
    }
    }
    return subject && glob_match(rule->value, subject);
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a over "route\0key", then SplitMix64's finalizer so that keys that
 * differ in one character still spread over the whole range. */
static uint64_t sticky_hash(const char *route, const char *key) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = route;; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
        if (!*p) break;
    }
    for (const char *p = key; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return splitmix64(h);
}

/* The top 53 bits as a double in [0, 1). */
static double unit_interval(uint64_t x) {
    return (double)(x >> 11) * 0x1.0p-53;
}

/* The target whose slice of the cumulative weights holds u * total, or -1
 * when no weight is positive.  Targets keep their order, so moving weight
 * between two neighbours moves only the users at their shared boundary. */
static int weighted_target(const gw_route *r, double u) {
    double total = 0;
    for (int i = 0; i < r->n_targets; i++)
        if (r->targets[i].weight > 0) total += r->targets[i].weight;
    if (total <= 0) return -1;
    double x = u * total, cum = 0;
    int last = -1;
    for (int i = 0; i < r->n_targets; i++) {
        if (r->targets[i].weight <= 0) continue;
        cum += r->targets[i].weight;
        last = i;
        if (x < cum) return i;
    }
    return last; /* rounding left x at the very top */
}

static bs_status pin_target(const gw_config *cfg, const gw_route *r, const char *pin, int *model, bs_error *err) {
    for (int i = 0; i < r->n_targets; i++) {
        if (strcmp(cfg->models[r->targets[i].model].name, pin) == 0) {
            *model = r->targets[i].model;
            return BS_OK;
        }
    }
    char names[256] = "";
    size_t len = 0;
    for (int i = 0; i < r->n_targets && len < sizeof names; i++)
        len += snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "", cfg->models[r->targets[i].model].name);
    return bs_fail(err, BS_EINVAL, "x-basalt-target: \"%s\" is not a target of route %s (targets: %s)", pin,
                   r->name, names);
}

static bs_status choose_primary(router_plan *p, const router_request *req, uint64_t rnd, bs_error *err) {
    const gw_route *r = p->route;
    if (req->pin && *req->pin) {
        p->primary_why = ROUTER_WHY_PINNED;
        return pin_target(p->cfg, r, req->pin, &p->primary, err);
    }
    for (int i = 0; i < r->n_rules; i++) {
        if (rule_matches(&r->rules[i], req)) {
            p->primary = r->rules[i].model;
            p->primary_why = ROUTER_WHY_RULE;
            p->primary_rule = i;
            return BS_OK;
        }
    }
    const char *key = header_value(req, r->sticky_header);
    if (!key && r->sticky_user && req->user && *req->user) key = req->user;
    double u = key ? unit_interval(sticky_hash(r->name, key)) : unit_interval(rnd);
    int t = weighted_target(r, u);
    if (t < 0)
        return bs_fail(err, BS_EINVAL, "route %s has no target with weight > 0; pin one with x-basalt-target",
                       r->name);
    p->primary = r->targets[t].model;
    p->primary_why = key ? ROUTER_WHY_STICKY : ROUTER_WHY_WEIGHTED;
    return BS_OK;
}

/* ---- the plan ---- */

static bs_status plan_alloc(const gw_config *cfg, const gw_route *route, const gw_retry *retry,
                            const gw_breaker *breaker, breaker_registry *breakers, router_plan **out,
                            bs_error *err) {
    router_plan *p = calloc(1, sizeof *p);
    int per_model = 1 + (retry->max_retries > 0 ? retry->max_retries : 0);
    if (p) {
        p->att = calloc((size_t)cfg->n_models * per_model, sizeof *p->att);
        p->visited = calloc(cfg->n_models, 1);
    }
    if (!p || !p->att || !p->visited) {
        router_plan_free(p);
        return bs_fail(err, BS_ENOMEM, "router: out of memory");
    }
    p->cfg = cfg;
    p->route = route;
    p->breakers = breakers;
    p->retry = *retry;
    p->breaker = *breaker;
    p->primary_rule = -1;
    *out = p;
    return BS_OK;
}

bs_status router_plan_route(const gw_config *cfg, int route, const router_request *req, uint64_t rnd,
                            breaker_registry *breakers, router_plan **out, bs_error *err) {
    *out = NULL;
    const gw_route *r = &cfg->routes[route];
    router_plan *p;
    bs_status st = plan_alloc(cfg, r, &r->retry, &r->breaker, breakers, &p, err);
    if (st != BS_OK) return st;
    st = choose_primary(p, req, rnd, err);
    if (st != BS_OK) {
        router_plan_free(p);
        return st;
    }
    p->visited[p->primary] = 1;
    *out = p;
    return BS_OK;
}

bs_status router_plan_model(const gw_config *cfg, int model, const router_request *req,
                            breaker_registry *breakers, router_plan **out, bs_error *err) {
    *out = NULL;
    const char *name = cfg->models[model].name;
    if (req->pin && *req->pin && strcmp(req->pin, name) != 0)
        return bs_fail(err, BS_EINVAL, "x-basalt-target: \"%s\" does not name model %s (only routes have targets)",
                       req->pin, name);
    router_plan *p;
    bs_status st = plan_alloc(cfg, NULL, &cfg->retry, &cfg->breaker, breakers, &p, err);
    if (st != BS_OK) return st;
    p->primary = model;
    p->primary_why = ROUTER_WHY_DIRECT;
    p->visited[model] = 1;
    *out = p;
    return BS_OK;
}

void router_plan_free(router_plan *plan) {
    if (!plan) return;
    breaker_cancel(&plan->ticket);
    free(plan->att);
    free(plan->visited);
    free(plan);
}

int router_plan_primary(const router_plan *plan, router_why *why) {
    if (why) *why = plan->primary_why;
    return plan->primary;
}

const router_attempt *router_plan_attempts(const router_plan *plan, int *n) {
    *n = plan->n_att;
    return plan->att;
}

static router_step finish(router_plan *p, router_step step) {
    p->finished = 1;
    p->final = step;
    return step;
}

/* Record an attempt at model and ask its breaker; 1 when it may be sent.
 * A breaker entry that cannot be allocated lets the request through: losing
 * a breaker must not stop traffic. */
static int try_target(router_plan *p, int model, router_why why, int rule, int retry, double delay, double now) {
    router_attempt *a = &p->att[p->n_att++];
    *a = (router_attempt){.model = model, .why = why, .rule = rule, .retry = retry, .delay_s = delay};
    if (!p->breakers) return 1;
    double wait = 0;
    bs_status st = breaker_admit(p->breakers, p->cfg->models[model].name, &p->breaker, now, &p->ticket, &wait, NULL);
    if (st != BS_EBUSY) return 1;
    a->skipped = 1;
    a->retry_in_s = wait;
    return 0;
}

/* Send to first (when >= 0) or else the next usable entry of the list. */
static router_step go_next(router_plan *p, int first, router_why why, int rule, int retry, double delay,
                           const int *list, int n, double now, int *model, double *delay_s) {
    if (first >= 0 && try_target(p, first, why, rule, retry, delay, now)) {
        *model = first;
        *delay_s = delay;
        return ROUTER_GO;
    }
    for (int i = 0; i < n; i++) {
        int m = list[i];
        if (p->visited[m]) continue;
        p->visited[m] = 1;
        p->retries = 0;
        if (try_target(p, m, ROUTER_WHY_FALLBACK, -1, 0, 0, now)) {
            *model = m;
            return ROUTER_GO;
        }
    }
    return finish(p, ROUTER_GIVE_UP);
}

static void fallback_list(const router_plan *p, router_class c, const int **list, int *n) {
    const gw_route *r = p->route;
    *list = NULL;
    *n = 0;
    if (!r) return;
    if (c == ROUTER_CLASS_CONTEXT_WINDOW) {
        *list = r->context_fallbacks;
        *n = r->n_context_fallbacks;
    } else if (c == ROUTER_CLASS_CONTENT_POLICY) {
        *list = r->content_fallbacks;
        *n = r->n_content_fallbacks;
    } else {
        *list = r->fallbacks;
        *n = r->n_fallbacks;
    }
}

/* Equal jitter: between half and all of the exponential delay, so retries
 * never bunch at zero yet still spread out. */
static double backoff(const gw_retry *r, int n, uint64_t rnd) {
    double d = fmin(r->backoff_max_s, ldexp(r->backoff_base_s, n));
    return d / 2 + unit_interval(rnd) * d / 2;
}

router_step router_plan_next(router_plan *p, router_class last, double retry_after_s, uint64_t rnd, double now,
                             int *model, double *delay_s) {
    *model = -1;
    *delay_s = 0;
    if (p->finished) return p->final;
    const int *list;
    int n;
    if (!p->started) {
        p->started = 1;
        fallback_list(p, ROUTER_CLASS_SERVER, &list, &n); /* an open breaker is a target failure */
        return go_next(p, p->primary, p->primary_why, p->primary_rule, 0, 0, list, n, now, model, delay_s);
    }

    router_attempt *a = &p->att[p->n_att - 1]; /* the one in flight: a GO always ends the list */
    a->done = 1;
    a->class = last;
    breaker_record(&p->ticket, !router_class_is_target_failure(last), now);
    if (last == ROUTER_CLASS_NONE) return finish(p, ROUTER_DONE);
    if (last == ROUTER_CLASS_CLIENT || last == ROUTER_CLASS_GUARDRAIL) return finish(p, ROUTER_GIVE_UP);

    fallback_list(p, last, &list, &n);
    if (router_class_is_target_failure(last) && p->retries < p->retry.max_retries &&
        !(retry_after_s >= 0 && retry_after_s > p->retry.retry_after_max_s)) {
        double d = retry_after_s >= 0 ? retry_after_s : backoff(&p->retry, p->retries, rnd);
        p->retries++;
        return go_next(p, a->model, ROUTER_WHY_RETRY, -1, p->retries, d, list, n, now, model, delay_s);
    }
    return go_next(p, -1, ROUTER_WHY_FALLBACK, -1, 0, 0, list, n, now, model, delay_s);
}

json_t *router_plan_chain_json(const router_plan *p) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (int i = 0; i < p->n_att; i++) {
        const router_attempt *a = &p->att[i];
        json_t *o = json_object();
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(o);
            json_decref(arr);
            return NULL;
        }
        int bad = json_object_set_new(o, "model", json_string(p->cfg->models[a->model].name));
        bad |= json_object_set_new(o, "why", json_string(router_why_name(a->why)));
        if (a->why == ROUTER_WHY_RULE) bad |= json_object_set_new(o, "rule", json_integer(a->rule));
        if (a->why == ROUTER_WHY_RETRY) bad |= json_object_set_new(o, "retry", json_integer(a->retry));
        if (a->delay_s > 0) bad |= json_object_set_new(o, "delay_s", json_real(a->delay_s));
        if (a->skipped) {
            bad |= json_object_set_new(o, "skipped", json_string("breaker_open"));
            bad |= json_object_set_new(o, "retry_in_s", json_real(a->retry_in_s));
        }
        if (a->done) bad |= json_object_set_new(o, "class", json_string(router_class_name(a->class)));
        if (bad) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}
