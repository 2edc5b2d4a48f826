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
/* Gauges and counters of the n models' schedulers: each family's HELP and
 * TYPE once, then one sample per model labelled model="name". */
void metrics_render_scheduler(srv_buf *out, int n, const char *const *models, const bs_scheduler_stats *st);

#endif
