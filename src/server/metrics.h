/* server/metrics.h — Prometheus counters and histograms of the front door
 * (requests by endpoint and status, tokens, TTFT, inter-token and end-to-end
 * latency) and the text exposition format, scheduler gauges included.
 * Thread-safe: connection threads record, /metrics renders. */
#ifndef BASALT_SERVER_METRICS_H
#define BASALT_SERVER_METRICS_H

#include "base/error.h"
#include "engine/scheduler.h"
#include "server/buf.h"

typedef struct srv_metrics srv_metrics;

bs_status metrics_open(srv_metrics **out, bs_error *err);
void metrics_close(srv_metrics *m);

/* One finished request; model is "" when it named no served model; ttft
 * and queue < 0 when not applicable. */
void metrics_request(srv_metrics *m, const char *model, const char *endpoint, int status, int prompt_tokens,
                     int completion_tokens, double e2e_seconds, double ttft_seconds, double queue_seconds);
void metrics_inter_token(srv_metrics *m, double seconds);

void metrics_render(srv_metrics *m, srv_buf *out);

/* The gateway's series (server/gateway.c), labelled with config names only
 * (routes and models; a plain model's "route" is its own name), so label
 * sets stay few; past METRICS_GATEWAY_MAX_SERIES series new ones are left
 * out.  One finished gateway request: its status class ("2xx", "4xx",
 * "5xx"), latency, TTFT (< 0: none), the overhead basalt added, tokens (< 0:
 * unknown) and cost in US dollars. */
#define METRICS_GATEWAY_MAX_SERIES 1024
typedef struct metrics_gateway_sample {
    const char *route, *target;
    int status;
    double latency_s, ttft_s, overhead_s;
    long prompt_tokens, completion_tokens;
    double cost_usd;
} metrics_gateway_sample;
void metrics_gateway_request(srv_metrics *m, const metrics_gateway_sample *s);
/* One failed attempt (class: router_class_name). */
void metrics_gateway_error(srv_metrics *m, const char *route, const char *target, const char *cls);
/* The plan moved from one target to another after an error of class cls. */
void metrics_gateway_fallback(srv_metrics *m, const char *route, const char *from, const char *to, const char *cls);
/* Gauges rendered at the end of metrics_render by their owner (the
 * gateway's breaker states): fn appends Prometheus text to out. */
void metrics_set_extra(srv_metrics *m, void (*fn)(void *ctx, srv_buf *out), void *ctx);
/* Gauges and counters of the n models' schedulers: each family's HELP and
 * TYPE once, then one sample per model labelled model="name". */
void metrics_render_scheduler(srv_buf *out, int n, const char *const *models, const bs_scheduler_stats *st);

#endif
