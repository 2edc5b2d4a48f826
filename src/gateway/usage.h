/* gateway/usage.h — per-request usage accounting with the database kept off
 * the request path.
 *
 * usage_record adds one request's counts to an in-memory aggregate keyed by
 * (minute, key_id, model, route, target); one writer thread hands all rows
 * to store_usage_add in a single call every flush_s seconds.  Reads
 * (usage_query, usage_csv, usage_spend) see the stored rows plus the ones
 * not yet flushed, so answers never lag by a flush interval.
 *
 * Memory: the hot table is a fixed number of lock-striped, fixed-capacity
 * hash tables (one stripe lock per event, no allocation unless the tuple is
 * new in this interval).  When a stripe fills up, the recording thread moves
 * that stripe's rows into the writer's pending set (memory only, no I/O) and
 * wakes the writer to flush early: the event always counts, nothing waits on
 * the database.  The pending set is cleared by each successful write; while
 * the store fails it keeps every row (one per distinct tuple per minute, not
 * per request) and the writer retries each tick — counts are never dropped,
 * and the failure is logged once per failure streak.
 *
 * Threads: usage_record may be called from any number of threads; the rest
 * may be called from any thread too (flushes are serialized). */
#ifndef BASALT_GATEWAY_USAGE_H
#define BASALT_GATEWAY_USAGE_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"
#include "store/store.h"

/* One finished request.  Strings are copied when needed; NULL reads as "". */
typedef struct usage_event {
    int64_t ts;        /* Unix seconds when it finished; <= 0: now */
    const char *key_id;
    const char *model;  /* the public name requested */
    const char *route;  /* "" when the model was not a route */
    const char *target; /* the model that served it */
    int error;          /* nonzero: counted in errors (still a request) */
    int64_t prompt_tokens, completion_tokens;
    double cost_usd;
    double latency_ms;
    int guardrail_intervened;
} usage_event;

typedef struct usage_recorder usage_recorder;

/* Starts the writer thread; flush_s > 0.  The store must outlive the
 * recorder. */
bs_status usage_open(bs_store *store, double flush_s, usage_recorder **out, bs_error *err);
/* Stops the writer after a last flush; rows the store still refuses then are
 * logged as lost (with their count).  NULL is fine. */
void usage_close(usage_recorder *r);

/* The request path: never blocks on I/O. */
void usage_record(usage_recorder *r, const usage_event *e);
/* Writes every row recorded so far, now; on failure the rows stay pending. */
bs_status usage_flush(usage_recorder *r, bs_error *err);

/* GET /v1/admin/usage: flushes, then sums over [from, to).
 *   group_by  "key" | "model" | "route" | "target" | "day" (NULL/"": "key")
 *   from, to  Unix seconds or a UTC date YYYY-MM-DD; a date as `to` includes
 *             that whole day; NULL/"": no bound
 *   key_id    NULL: every key; else only that key
 * *out = {"object":"list","data":[{<group>:…, "requests", "errors",
 * "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd",
 * "avg_latency_ms", "guardrail_interventions"}], "group_by", "from", "to"}
 * where <group> is key_id, model, route, target or day ("YYYY-MM-DD").
 * BS_EINVAL names the parameter at fault. */
bs_status usage_query(usage_recorder *r, const char *group_by, const char *from, const char *to, const char *key_id,
                      json_t **out, bs_error *err);
/* The same rows as CSV (RFC 4180: CRLF line ends, fields with , " CR LF
 * quoted): a header line, then one line per group.  Caller frees *out. */
bs_status usage_csv(usage_recorder *r, const char *group_by, const char *from, const char *to, const char *key_id,
                    char **out, bs_error *err);
/* Spend of key_id since from (Unix seconds, inclusive of from's minute),
 * stored plus not yet flushed: seeds budget counters at start. */
bs_status usage_spend(usage_recorder *r, const char *key_id, int64_t from, double *cost_usd, bs_error *err);

#endif
