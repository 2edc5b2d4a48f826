#include "server/metrics.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define N_BUCKETS (int)(sizeof latency_buckets / sizeof latency_buckets[0])
/* The gateway's own overhead is tens of microseconds: buckets from 10 µs. */
static const double overhead_buckets[] = {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.1};
#define N_OVERHEAD_BUCKETS (int)(sizeof overhead_buckets / sizeof overhead_buckets[0])
_Static_assert(sizeof overhead_buckets <= sizeof latency_buckets, "histogram counts are sized for latency_buckets");

typedef struct histogram {
    unsigned long long counts[N_BUCKETS + 1]; /* the last is +Inf; sized for the longest bucket table */
    double sum;
    unsigned long long n;
} histogram;

/* Endpoints, statuses and served models are few; a small table keeps
 * labels bounded (requests beyond it are left out of the counters). */
#define MAX_SERIES 256
typedef struct request_series {
    char endpoint[48];
    char model[128]; /* "" when the request named no served model */
    int status;
    unsigned long long n, prompt_tokens, generation_tokens;
} request_series;

/* The gateway's series: per (route, target), and fallbacks per (route,
 * from, to, class).  Error classes are router_class names, a handful. */
#define GW_STATUS_CLASSES 3 /* 2xx (and anything below 400), 4xx, 5xx */
#define GW_ERROR_CLASSES 8
typedef struct gw_series {
    char route[128], target[128];
    unsigned long long requests[GW_STATUS_CLASSES];
    char error_class[GW_ERROR_CLASSES][24];
    unsigned long long errors[GW_ERROR_CLASSES];
    histogram latency, ttft, overhead;
    unsigned long long prompt_tokens, completion_tokens;
    double cost_usd;
} gw_series;

typedef struct gw_fallback {
    char route[128], from[128], to[128], cls[24];
    unsigned long long n;
} gw_fallback;

struct srv_metrics {
    pthread_mutex_t mu;
    request_series series[MAX_SERIES];
    int n_series;
    histogram ttft, itl, e2e, queue;
    gw_series *gw; /* grown on demand up to METRICS_GATEWAY_MAX_SERIES */
    int n_gw, cap_gw;
    gw_fallback *fb;
    int n_fb, cap_fb;
    void (*extra)(void *ctx, srv_buf *out);
    void *extra_ctx;
};

bs_status metrics_open(srv_metrics **out, bs_error *err) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return BS_OK;
}

void metrics_close(srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m->gw);
    free(m->fb);
    free(m);
}

static void observe_le(histogram *h, const double *le, int n_le, double x) {
    int b = 0;
    while (b < n_le && x > le[b]) b++;
    h->counts[b]++;
    h->sum += x;
    h->n++;
}

static void observe(histogram *h, double x) { observe_le(h, latency_buckets, N_BUCKETS, x); }

void metrics_request(srv_metrics *m, const char *model, const char *endpoint, int status, int prompt_tokens,
                     int completion_tokens, double e2e_seconds, double ttft_seconds, double queue_seconds) {
    pthread_mutex_lock(&m->mu);
    request_series *s = NULL;
    for (int i = 0; i < m->n_series && !s; i++)
        if (m->series[i].status == status && strcmp(m->series[i].endpoint, endpoint) == 0 &&
            strcmp(m->series[i].model, model) == 0)
            s = &m->series[i];
    if (!s && m->n_series < MAX_SERIES) {
        s = &m->series[m->n_series++];
        snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
        snprintf(s->model, sizeof s->model, "%s", model);
        s->status = status;
    }
    if (s) {
        s->n++;
        s->prompt_tokens += (unsigned long long)(prompt_tokens > 0 ? prompt_tokens : 0);
        s->generation_tokens += (unsigned long long)(completion_tokens > 0 ? completion_tokens : 0);
    }
    observe(&m->e2e, e2e_seconds);
    if (ttft_seconds >= 0) observe(&m->ttft, ttft_seconds);
    if (queue_seconds >= 0) observe(&m->queue, queue_seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_inter_token(srv_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(&m->itl, seconds);
    pthread_mutex_unlock(&m->mu);
}

/* One histogram's samples; labels is "" or `k="v",...` without braces. */
static void render_histogram_samples(srv_buf *out, const char *name, const char *labels, const histogram *h,
                                     const double *le, int n_le) {
    unsigned long long cum = 0;
    const char *sep = *labels ? "," : "";
    for (int b = 0; b < n_le; b++) {
        cum += h->counts[b];
        buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, le[b], cum);
    }
    buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, h->n);
    if (*labels) buf_printf(out, "%s_sum{%s} %.9f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels, h->n);
    else buf_printf(out, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, h->n);
}

static void render_histogram(srv_buf *out, const char *name, const char *help, const histogram *h) {
    buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    render_histogram_samples(out, name, "", h, latency_buckets, N_BUCKETS);
}

/* A token counter per model: the sum over that model's series.  Requests
 * that named no served model have no tokens and no sample. */
static void render_tokens(const srv_metrics *m, srv_buf *out, const char *name, const char *help, int generated) {
    buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (int i = 0; i < m->n_series; i++) {
        const char *model = m->series[i].model;
        int first = 1;
        for (int k = 0; k < i && first; k++) first = strcmp(m->series[k].model, model) != 0;
        if (!first || !*model) continue;
        unsigned long long sum = 0;
        for (int k = i; k < m->n_series; k++)
            if (strcmp(m->series[k].model, model) == 0)
                sum += generated ? m->series[k].generation_tokens : m->series[k].prompt_tokens;
        buf_printf(out, "%s{model=\"%s\"} %llu\n", name, model, sum);
    }
}

/* ------------------------------------------------------------ gateway */

/* The series of (route, target), created when missing; NULL past the cap or
 * out of memory.  Called with m->mu held. */
static gw_series *gw_find(srv_metrics *m, const char *route, const char *target) {
    for (int i = 0; i < m->n_gw; i++)
        if (strcmp(m->gw[i].route, route) == 0 && strcmp(m->gw[i].target, target) == 0) return &m->gw[i];
    if (m->n_gw == METRICS_GATEWAY_MAX_SERIES) return NULL;
    if (m->n_gw == m->cap_gw) {
        int cap = m->cap_gw ? m->cap_gw * 2 : 16;
        gw_series *g = realloc(m->gw, (size_t)cap * sizeof *g);
        if (!g) return NULL;
        m->gw = g;
        m->cap_gw = cap;
    }
    gw_series *g = &m->gw[m->n_gw++];
    memset(g, 0, sizeof *g);
    snprintf(g->route, sizeof g->route, "%s", route);
    snprintf(g->target, sizeof g->target, "%s", target);
    return g;
}

void metrics_gateway_request(srv_metrics *m, const metrics_gateway_sample *s) {
    pthread_mutex_lock(&m->mu);
    gw_series *g = gw_find(m, s->route, s->target);
    if (g) {
        g->requests[s->status >= 500 ? 2 : s->status >= 400 ? 1 : 0]++;
        observe(&g->latency, s->latency_s);
        if (s->ttft_s >= 0) observe(&g->ttft, s->ttft_s);
        observe_le(&g->overhead, overhead_buckets, N_OVERHEAD_BUCKETS, s->overhead_s);
        if (s->prompt_tokens > 0) g->prompt_tokens += (unsigned long long)s->prompt_tokens;
        if (s->completion_tokens > 0) g->completion_tokens += (unsigned long long)s->completion_tokens;
        g->cost_usd += s->cost_usd;
    }
    pthread_mutex_unlock(&m->mu);
}

void metrics_gateway_error(srv_metrics *m, const char *route, const char *target, const char *cls) {
    pthread_mutex_lock(&m->mu);
    gw_series *g = gw_find(m, route, target);
    for (int i = 0; g && i < GW_ERROR_CLASSES; i++) {
        if (!g->error_class[i][0]) snprintf(g->error_class[i], sizeof g->error_class[i], "%s", cls);
        if (strcmp(g->error_class[i], cls) == 0) {
            g->errors[i]++;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

void metrics_gateway_fallback(srv_metrics *m, const char *route, const char *from, const char *to, const char *cls) {
    pthread_mutex_lock(&m->mu);
    gw_fallback *f = NULL;
    for (int i = 0; i < m->n_fb && !f; i++)
        if (strcmp(m->fb[i].route, route) == 0 && strcmp(m->fb[i].from, from) == 0 && strcmp(m->fb[i].to, to) == 0 &&
            strcmp(m->fb[i].cls, cls) == 0)
            f = &m->fb[i];
    if (!f && m->n_fb < METRICS_GATEWAY_MAX_SERIES) {
        if (m->n_fb == m->cap_fb) {
            int cap = m->cap_fb ? m->cap_fb * 2 : 16;
            gw_fallback *nf = realloc(m->fb, (size_t)cap * sizeof *nf);
            if (nf) {
                m->fb = nf;
                m->cap_fb = cap;
            }
        }
        if (m->n_fb < m->cap_fb) {
            f = &m->fb[m->n_fb++];
            memset(f, 0, sizeof *f);
            snprintf(f->route, sizeof f->route, "%s", route);
            snprintf(f->from, sizeof f->from, "%s", from);
            snprintf(f->to, sizeof f->to, "%s", to);
            snprintf(f->cls, sizeof f->cls, "%s", cls);
        }
    }
    if (f) f->n++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_set_extra(srv_metrics *m, void (*fn)(void *ctx, srv_buf *out), void *ctx) {
    pthread_mutex_lock(&m->mu);
    m->extra = fn;
    m->extra_ctx = ctx;
    pthread_mutex_unlock(&m->mu);
}

static void render_gw_histogram(const srv_metrics *m, srv_buf *out, const char *name, const char *help, size_t field,
                                const double *le, int n_le) {
    buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < m->n_gw; i++) {
        char labels[300];
        snprintf(labels, sizeof labels, "route=\"%s\",target=\"%s\"", m->gw[i].route, m->gw[i].target);
        render_histogram_samples(out, name, labels, (const histogram *)((const char *)&m->gw[i] + field), le, n_le);
    }
}

/* Called with m->mu held. */
static void render_gateway(const srv_metrics *m, srv_buf *out) {
    static const char *const status_class[GW_STATUS_CLASSES] = {"2xx", "4xx", "5xx"};
    buf_puts(out, "# HELP basalt_gateway_requests_total Gateway requests by route, serving target and status class.\n"
                  "# TYPE basalt_gateway_requests_total counter\n");
    for (int i = 0; i < m->n_gw; i++)
        for (int c = 0; c < GW_STATUS_CLASSES; c++)
            if (m->gw[i].requests[c])
                buf_printf(out, "basalt_gateway_requests_total{route=\"%s\",target=\"%s\",status_class=\"%s\"} %llu\n",
                           m->gw[i].route, m->gw[i].target, status_class[c], m->gw[i].requests[c]);
    buf_puts(out, "# HELP basalt_gateway_errors_total Failed attempts by route, target and error class.\n"
                  "# TYPE basalt_gateway_errors_total counter\n");
    for (int i = 0; i < m->n_gw; i++)
        for (int c = 0; c < GW_ERROR_CLASSES && m->gw[i].error_class[c][0]; c++)
            buf_printf(out, "basalt_gateway_errors_total{route=\"%s\",target=\"%s\",class=\"%s\"} %llu\n",
                       m->gw[i].route, m->gw[i].target, m->gw[i].error_class[c], m->gw[i].errors[c]);
    buf_puts(out, "# HELP basalt_gateway_fallbacks_total Moves from one target to another after an error.\n"
                  "# TYPE basalt_gateway_fallbacks_total counter\n");
    for (int i = 0; i < m->n_fb; i++)
        buf_printf(out, "basalt_gateway_fallbacks_total{route=\"%s\",from=\"%s\",to=\"%s\",class=\"%s\"} %llu\n",
                   m->fb[i].route, m->fb[i].from, m->fb[i].to, m->fb[i].cls, m->fb[i].n);
    render_gw_histogram(m, out, "basalt_gateway_latency_seconds", "Gateway request latency, arrival to end of response.",
                        offsetof(gw_series, latency), latency_buckets, N_BUCKETS);
    render_gw_histogram(m, out, "basalt_gateway_ttft_seconds", "Time to the first token (streams) or the whole body.",
                        offsetof(gw_series, ttft), latency_buckets, N_BUCKETS);
    render_gw_histogram(m, out, "basalt_gateway_overhead_seconds",
                        "Time spent in basalt itself, excluding upstream and engine time (docs/gateway.md).",
                        offsetof(gw_series, overhead), overhead_buckets, N_OVERHEAD_BUCKETS);
    static const struct {
        const char *name, *help;
        size_t field;
    } counters[] = {
        {"basalt_gateway_prompt_tokens_total", "Prompt tokens of gateway requests.", offsetof(gw_series, prompt_tokens)},
        {"basalt_gateway_completion_tokens_total", "Completion tokens of gateway requests.",
         offsetof(gw_series, completion_tokens)},
    };
    for (size_t c = 0; c < sizeof counters / sizeof counters[0]; c++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", counters[c].name, counters[c].help, counters[c].name);
        for (int i = 0; i < m->n_gw; i++)
            buf_printf(out, "%s{route=\"%s\",target=\"%s\"} %llu\n", counters[c].name, m->gw[i].route,
                       m->gw[i].target, *(const unsigned long long *)((const char *)&m->gw[i] + counters[c].field));
    }
    buf_puts(out, "# HELP basalt_gateway_cost_usd_total Cost from the models' price tables, US dollars.\n"
                  "# TYPE basalt_gateway_cost_usd_total counter\n");
    for (int i = 0; i < m->n_gw; i++)
        buf_printf(out, "basalt_gateway_cost_usd_total{route=\"%s\",target=\"%s\"} %.9g\n", m->gw[i].route,
                   m->gw[i].target, m->gw[i].cost_usd);
}

void metrics_render(srv_metrics *m, srv_buf *out) {
    pthread_mutex_lock(&m->mu);
    buf_puts(out, "# HELP basalt_requests_total HTTP requests by model, endpoint and status.\n"
                  "# TYPE basalt_requests_total counter\n");
    for (int i = 0; i < m->n_series; i++)
        buf_printf(out, "basalt_requests_total{model=\"%s\",endpoint=\"%s\",status=\"%d\"} %llu\n",
                   m->series[i].model, m->series[i].endpoint, m->series[i].status, m->series[i].n);
    render_tokens(m, out, "basalt_prompt_tokens_total", "Prompt tokens of finished requests, by model.", 0);
    render_tokens(m, out, "basalt_generation_tokens_total", "Generated tokens of finished requests, by model.", 1);
    render_histogram(out, "basalt_time_to_first_token_seconds", "Time from request to first generated token.", &m->ttft);
    render_histogram(out, "basalt_inter_token_latency_seconds", "Time between consecutive tokens of a choice.", &m->itl);
    render_histogram(out, "basalt_e2e_request_latency_seconds", "Time from request to the end of its response.", &m->e2e);
    render_histogram(out, "basalt_queue_time_seconds", "Time a request waited for its first scheduler step.", &m->queue);
    render_gateway(m, out);
    pthread_mutex_unlock(&m->mu);
    if (m->extra) m->extra(m->extra_ctx, out);
}

/* One family: its HELP and TYPE once, then a sample per model. */
void metrics_render_scheduler(srv_buf *out, int n, const char *const *models, const bs_scheduler_stats *st) {
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"basalt_num_requests_waiting", "gauge", "Requests waiting for the scheduler (preempted ones included)."},
        {"basalt_num_requests_running", "gauge", "Sequences in the running batch."},
        {"basalt_kv_cache_usage_ratio", "gauge", "Fraction of KV cache blocks referenced by sequences."},
        {"basalt_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache."},
        {"basalt_prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache."},
        {"basalt_scheduler_steps_total", "counter", "Batched forward steps."},
        {"basalt_preemptions_total", "counter", "Sequences preempted for lack of KV blocks."},
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (int i = 0; i < n; i++) {
            const bs_scheduler_stats *s = &st[i];
            const double v[] = {s->queued, s->running, s->kv_usage, (double)s->prefix_queries,
                                (double)s->prefix_hits, (double)s->steps, (double)s->preemptions};
            buf_printf(out, "%s{model=\"%s\"} %.15g\n", fam[f].name, models[i], v[f]);
        }
    }
}
