#include "server/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define N_BUCKETS (int)(sizeof latency_buckets / sizeof latency_buckets[0])

typedef struct histogram {
    unsigned long long counts[N_BUCKETS + 1]; /* the last is +Inf */
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

struct srv_metrics {
    pthread_mutex_t mu;
    request_series series[MAX_SERIES];
    int n_series;
    histogram ttft, itl, e2e, queue;
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
    free(m);
}

static void observe(histogram *h, double x) {
    int b = 0;
    while (b < N_BUCKETS && x > latency_buckets[b]) b++;
    h->counts[b]++;
    h->sum += x;
    h->n++;
}

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

static void render_histogram(srv_buf *out, const char *name, const char *help, const histogram *h) {
    buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += h->counts[b];
        buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, latency_buckets[b], cum);
    }
    buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, h->n, name, h->sum, name, h->n);
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
    pthread_mutex_unlock(&m->mu);
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
