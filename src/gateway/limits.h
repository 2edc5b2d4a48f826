/* gateway/limits.h — admission control with reservations: per-key requests
 * per minute, tokens per minute, concurrent requests and a daily or monthly
 * budget, plus per-model RPM, TPM and concurrent requests across all keys.
 *
 * A request is admitted or refused in ONE atomic step that checks every
 * applicable limit and, only when all pass, reserves on all of them: one
 * request, its reserved tokens (prompt + max_tokens, clamped by the caller),
 * its reserved cost and a concurrency slot.  A refusal reserves nothing.
 * At completion limits_settle moves the reservation to the actual usage
 * (tokens and cost) and frees the slot — exactly once per ticket.  Usage is
 * never charged after the fact, so N parallel requests cannot overshoot a
 * limit the way post-hoc counters do (LiteLLM #18730, #26672).
 *
 * Windows: RPM and TPM use FIXED 60-second windows keyed by the window's
 * start (Unix ms rounded down to the minute), not a sliding approximation —
 * a fixed window is one counter, which keeps the Redis step a single script.
 * A settle adjusts the window the request was admitted in.  Budgets are
 * keyed by the period's start (UTC day or UTC month) and last the period.
 *
 * Backends: in-process (a hash table of counters split over striped
 * mutexes; an admission locks only the stripes of its own counters, in
 * order) or Redis ("redis://[:password@]host[:port][/db]"; hiredis), where
 * one Lua script checks and increments every counter atomically so several
 * replicas enforce one quota together.  Window keys expire shortly after
 * their window, budget keys after their period; concurrency is a sorted set
 * of ticket leases, so slots held by a crashed replica expire after
 * LIMITS_LEASE_MS.  The clock is each replica's own (injectable for tests);
 * replicas are assumed NTP-synchronised.
 *
 * Money is integer micro-dollars throughout (limits_micros converts), so a
 * budget's accounting is exact. */
#ifndef BASALT_GATEWAY_LIMITS_H
#define BASALT_GATEWAY_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* How long a concurrency slot and a ticket's bookkeeping survive without a
 * settle (a crashed replica); longer than any upstream request may run. */
#define LIMITS_LEASE_MS (15 * 60 * 1000)

typedef enum { LIMIT_PERIOD_DAY, LIMIT_PERIOD_MONTH } limit_period;
const char *limit_period_name(limit_period p); /* "day" | "month" */
/* BS_EINVAL naming the value for anything but "day" / "month". */
bs_status limit_period_parse(const char *name, limit_period *out, bs_error *err);
/* The UTC start and end (exclusive) of the period containing now_s. */
int64_t limits_period_start(limit_period p, int64_t now_s);
int64_t limits_period_end(limit_period p, int64_t now_s);

/* USD to micro-dollars, rounded to nearest. */
int64_t limits_micros(double usd);

typedef enum { LIMIT_REQUESTS, LIMIT_TOKENS, LIMIT_CONCURRENCY, LIMIT_BUDGET } limit_kind;
const char *limit_kind_name(limit_kind k); /* "requests", "tokens", "concurrency", "budget" */

/* One admission.  Every limit <= 0 means "none".  Strings are borrowed. */
typedef struct limit_request {
    const char *key_id; /* NULL: no key (only the model's limits apply) */
    int64_t key_rpm, key_tpm, key_max_concurrent;
    int64_t key_budget_micros;
    limit_period budget_period;
    const char *model; /* NULL: no per-model limits */
    int64_t model_rpm, model_tpm, model_max_concurrent;
    int64_t tokens;      /* reserved: prompt + max_tokens */
    int64_t cost_micros; /* reserved cost at the model's price */
} limit_request;

/* The state of one dimension after an admission (or at the refusal), for
 * the x-ratelimit-* headers: of the key's and the model's limits, the one
 * with the least remaining.  set 0 when neither limit applies. */
typedef struct limit_window {
    int set;
    int64_t limit, remaining;
    int64_t reset_ms; /* until the window restarts */
} limit_window;

typedef struct limit_state {
    limit_window requests, tokens;
} limit_state;

typedef struct limit_denial {
    limit_kind kind;
    int model_limit;  /* 1: the model's limit (across keys), 0: the key's */
    int64_t limit;    /* the refusing limit */
    int64_t remaining; /* what is left of it now */
    int64_t reset_ms; /* until it frees up: window or period end; 1000 for concurrency */
    int retry_after_s; /* ceil(reset_ms / 1000), at least 1 */
    /* The request alone exceeds the limit (e.g. tokens > tpm): waiting will
     * not help, the caller should answer 400 rather than 429. */
    int exceeds_limit;
    limit_state state;
} limit_denial;

typedef struct limits limits;
typedef struct limit_ticket limit_ticket;

/* redis_url NULL or "": in-process counters.  A Redis URL is connected to
 * (and the scripts loaded) now, so a wrong URL fails at start; the password
 * never appears in messages. */
bs_status limits_open(const char *redis_url, limits **out, bs_error *err);
void limits_close(limits *l);
/* "memory" or "redis". */
const char *limits_backend(const limits *l);
/* Replace the clock (Unix milliseconds) — tests drive windows with it.
 * NULL restores the real clock. */
void limits_set_clock(limits *l, int64_t (*now_ms)(void *ctx), void *ctx);

/* Admit or refuse req.  BS_OK with *out set: admitted (settle it).  BS_EBUSY
 * with *denial filled: refused, nothing reserved.  BS_EINVAL for a bad
 * request (negative amounts), BS_EIO when Redis is unreachable. */
bs_status limits_admit(limits *l, const limit_request *req, limit_ticket **out, limit_denial *denial, bs_error *err);

/* Settle t at its actual usage (which may be 0 for a failed request):
 * the reserved tokens and cost become the actual ones in the window and
 * period they were reserved in, and the concurrency slot is freed.  Only
 * the first successful settle of a ticket counts; later ones are no-ops. */
bs_status limits_settle(limits *l, limit_ticket *t, int64_t actual_tokens, int64_t actual_cost_micros, bs_error *err);
/* Free t.  A ticket never settled is settled first at its reservation
 * (never less than it may have used) so its slot is not leaked. */
void limit_ticket_free(limits *l, limit_ticket *t);
const limit_state *limit_ticket_state(const limit_ticket *t);

/* The x-ratelimit-{limit,remaining,reset}-{requests,tokens} headers of st
 * (OpenAI formats: reset as "1s", "6m0s", "250ms") and, when retry_after_s
 * > 0, Retry-After.  add is called once per header. */
void limits_headers(const limit_state *st, int retry_after_s,
                    void (*add)(void *ctx, const char *name, const char *value), void *ctx);
/* OpenAI's duration format for ms ("20ms", "1s", "1.5s", "6m0s", "1h0m0s"). */
void limits_format_duration(int64_t ms, char *buf, size_t size);

/* Seed the budget counter of (key_id, period, period_start) with what the
 * stored usage says was spent, unless that counter already has a value
 * (Redis keeps its own across restarts; seeding twice adds nothing). */
bs_status limits_seed_spend(limits *l, const char *key_id, limit_period period, int64_t period_start,
                            int64_t spent_micros, bs_error *err);

/* Current counters of a key (may be NULL) and a model (may be NULL) at the
 * clock's now: this window's requests and tokens, in-flight requests, this
 * period's spend.  For the admin API and tests. */
typedef struct limit_usage {
    int64_t requests, tokens, in_flight, spent_micros;
    int64_t model_requests, model_tokens, model_in_flight;
} limit_usage;
bs_status limits_usage(limits *l, const char *key_id, limit_period period, const char *model, limit_usage *out,
                       bs_error *err);

#endif
