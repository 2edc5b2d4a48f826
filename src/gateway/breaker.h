/* gateway/breaker.h — circuit breakers, one per target model name.
 *
 * A breaker is keyed by the model's public name, not by an index, so it is
 * shared by every route that sends to that model and survives config reloads
 * (the registry outlives any one gw_config).  States:
 *
 *   closed     requests pass; outcomes are counted in a sliding window of
 *              cfg.window_s (60 buckets).  When the window holds at least
 *              min_requests outcomes and the failure share is >= failure_rate
 *              the breaker opens.
 *   open       requests are refused until cooldown_s has passed since it
 *              opened; then it is half-open.
 *   half_open  at most half_open_probes requests are in flight at once; the
 *              first probe success closes it (window emptied), a probe
 *              failure reopens it with a fresh cooldown.
 *
 * Only target failures should be recorded as failures (rate limits, 5xx,
 * timeouts, connection errors); a client error or guardrail block says
 * nothing about the target's health and is recorded as ok.
 *
 * Time is the caller's monotonic clock in seconds, passed in, so tests drive
 * it.  Thread safety: a registry lock is held only to find or create an
 * entry; each entry has its own mutex, held for a few arithmetic steps and
 * never across I/O.  Entries live until breaker_registry_close. */
#ifndef BASALT_GATEWAY_BREAKER_H
#define BASALT_GATEWAY_BREAKER_H

#include "base/error.h"
#include "gateway/config.h"

typedef struct breaker_registry breaker_registry;
typedef struct breaker_entry breaker_entry;

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state_kind;

/* Permission for one request, returned by breaker_admit; hand it back exactly
 * once to breaker_record (outcome known) or breaker_cancel (abandoned). */
typedef struct breaker_ticket {
    breaker_entry *entry; /* NULL: no ticket outstanding */
    unsigned long gen;    /* the entry's state generation at admission */
    int probe;            /* admitted as a half-open probe */
} breaker_ticket;

/* A snapshot of one breaker for /metrics. name stays valid until the
 * registry is closed. */
typedef struct breaker_info {
    const char *name;
    breaker_state_kind state;
    int window_requests, window_failures; /* outcomes in the current window */
    long long admitted, rejected;         /* admit calls, lifetime */
    long long successes, failures;        /* recorded outcomes, lifetime */
    long long opened;                     /* closed/half-open -> open transitions */
} breaker_info;

bs_status breaker_registry_open(breaker_registry **out, bs_error *err);
void breaker_registry_close(breaker_registry *reg); /* NULL is fine */

/* Ask to send one request to model name under cfg (the route's breaker
 * settings; the latest admit's settings are the ones the entry uses).
 * BS_OK fills *ticket.  BS_EBUSY: the breaker refuses; *retry_in_s (may be
 * NULL) is the seconds until it turns half-open (0 while half-open with all
 * probe slots taken) and err says so.  BS_ENOMEM when a new entry cannot be
 * made. */
bs_status breaker_admit(breaker_registry *reg, const char *name, const gw_breaker *cfg, double now,
                        breaker_ticket *ticket, double *retry_in_s, bs_error *err);

/* Report the outcome of an admitted request (ok: the target answered; 0: a
 * target failure) and clear the ticket.  Outcomes of requests admitted
 * before the breaker last changed state are dropped, except that requests
 * admitted while closed still count while it is closed. */
void breaker_record(breaker_ticket *ticket, int ok, double now);

/* Give an admitted request's slot back without an outcome (the client went
 * away before the target answered) and clear the ticket. */
void breaker_cancel(breaker_ticket *ticket);

/* The state at time now (open past its cooldown reads half-open); a name
 * never admitted reads closed. */
breaker_state_kind breaker_state(breaker_registry *reg, const char *name, double now);
const char *breaker_state_name(breaker_state_kind s);

/* All breakers, sorted by name; free with free(*out). */
bs_status breaker_list(breaker_registry *reg, double now, breaker_info **out, int *n, bs_error *err);

#endif
