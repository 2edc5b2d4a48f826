#include "gateway/breaker.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The sliding window is cut into this many buckets of window_s/60 each (one
 * second at the default 60 s), so outcomes leave the window in small steps
 * and the memory per breaker is fixed. */
#define BREAKER_BUCKETS 60
#define REGISTRY_SLOTS 64
#define EPOCH_NONE LLONG_MIN

typedef struct bucket {
    long long epoch; /* floor(now / width) of the outcomes in it; EPOCH_NONE: empty */
    int requests, failures;
} bucket;

struct breaker_entry {
    breaker_entry *next; /* registry chain */
    char *name;
    pthread_mutex_t mu;
    gw_breaker cfg; /* from the latest admit */
    breaker_state_kind state;
    unsigned long gen; /* bumped on every state change; stale tickets compare unequal */
    double opened_at;
    int probes; /* half-open probes in flight */
    bucket window[BREAKER_BUCKETS];
    long long admitted, rejected, successes, failures, opened;
};

struct breaker_registry {
    pthread_rwlock_t lock; /* guards the chains only */
    breaker_entry *slot[REGISTRY_SLOTS];
};

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

bs_status breaker_registry_open(breaker_registry **out, bs_error *err) {
    breaker_registry *reg = calloc(1, sizeof *reg);
    if (!reg) return bs_fail(err, BS_ENOMEM, "breaker registry: out of memory");
    if (pthread_rwlock_init(&reg->lock, NULL) != 0) {
        free(reg);
        return bs_fail(err, BS_ENOMEM, "breaker registry: cannot create lock");
    }
    *out = reg;
    return BS_OK;
}

void breaker_registry_close(breaker_registry *reg) {
    if (!reg) return;
    for (int i = 0; i < REGISTRY_SLOTS; i++) {
        breaker_entry *e = reg->slot[i];
        while (e) {
            breaker_entry *next = e->next;
            pthread_mutex_destroy(&e->mu);
            free(e->name);
            free(e);
            e = next;
        }
    }
    pthread_rwlock_destroy(&reg->lock);
    free(reg);
}

static breaker_entry *chain_find(breaker_entry *e, const char *name) {
    for (; e; e = e->next)
        if (strcmp(e->name, name) == 0) return e;
    return NULL;
}

static void window_clear(breaker_entry *e) {
    for (int i = 0; i < BREAKER_BUCKETS; i++) e->window[i] = (bucket){EPOCH_NONE, 0, 0};
}

/* The entry for name, or NULL when absent and create is 0 (or on ENOMEM). */
static breaker_entry *entry_get(breaker_registry *reg, const char *name, int create) {
    size_t slot = name_hash(name) % REGISTRY_SLOTS;
    pthread_rwlock_rdlock(&reg->lock);
    breaker_entry *e = chain_find(reg->slot[slot], name);
    pthread_rwlock_unlock(&reg->lock);
    if (e || !create) return e;

    pthread_rwlock_wrlock(&reg->lock);
    e = chain_find(reg->slot[slot], name); /* another thread may have made it meanwhile */
    if (!e) {
        e = calloc(1, sizeof *e);
        char *copy = strdup(name);
        if (!e || !copy || pthread_mutex_init(&e->mu, NULL) != 0) {
            free(e);
            free(copy);
            e = NULL;
        } else {
            e->name = copy;
            e->state = BREAKER_CLOSED;
            window_clear(e);
            e->next = reg->slot[slot];
            reg->slot[slot] = e;
        }
    }
    pthread_rwlock_unlock(&reg->lock);
    return e;
}

static double bucket_width(const breaker_entry *e) {
    return e->cfg.window_s / BREAKER_BUCKETS;
}

static long long epoch_at(const breaker_entry *e, double now) {
    return (long long)floor(now / bucket_width(e));
}

static void window_sum(const breaker_entry *e, double now, int *requests, int *failures) {
    long long idx = epoch_at(e, now);
    *requests = *failures = 0;
    for (int i = 0; i < BREAKER_BUCKETS; i++) {
        const bucket *b = &e->window[i];
        if (b->epoch != EPOCH_NONE && b->epoch > idx - BREAKER_BUCKETS && b->epoch <= idx) {
            *requests += b->requests;
            *failures += b->failures;
        }
    }
}

static void set_state(breaker_entry *e, breaker_state_kind s, double now) {
    e->state = s;
    e->gen++;
    e->probes = 0;
    if (s == BREAKER_OPEN) {
        e->opened_at = now;
        e->opened++;
    }
    if (s == BREAKER_CLOSED) window_clear(e);
}

/* An open breaker past its cooldown is half-open; applied lazily whenever the
 * entry is looked at. */
static breaker_state_kind state_at(const breaker_entry *e, double now) {
    if (e->state == BREAKER_OPEN && now >= e->opened_at + e->cfg.cooldown_s) return BREAKER_HALF_OPEN;
    return e->state;
}

bs_status breaker_admit(breaker_registry *reg, const char *name, const gw_breaker *cfg, double now,
                        breaker_ticket *ticket, double *retry_in_s, bs_error *err) {
    *ticket = (breaker_ticket){0};
    if (retry_in_s) *retry_in_s = 0;
    breaker_entry *e = entry_get(reg, name, 1);
    if (!e) return bs_fail(err, BS_ENOMEM, "circuit breaker for %s: out of memory", name);

    pthread_mutex_lock(&e->mu);
    if (e->cfg.window_s != cfg->window_s) window_clear(e); /* bucket epochs change meaning */
    e->cfg = *cfg;
    if (e->state == BREAKER_OPEN && state_at(e, now) == BREAKER_HALF_OPEN) set_state(e, BREAKER_HALF_OPEN, now);

    bs_status st = BS_OK;
    if (e->state == BREAKER_OPEN) {
        double wait = e->opened_at + e->cfg.cooldown_s - now;
        if (retry_in_s) *retry_in_s = wait;
        st = bs_fail(err, BS_EBUSY, "circuit breaker for %s is open; half-open in %.1f s", name, wait);
    } else if (e->state == BREAKER_HALF_OPEN && e->probes >= e->cfg.half_open_probes) {
        st = bs_fail(err, BS_EBUSY, "circuit breaker for %s is half-open with %d probe(s) in flight",
                     name, e->probes);
    } else {
        ticket->entry = e;
        ticket->gen = e->gen;
        ticket->probe = e->state == BREAKER_HALF_OPEN;
        if (ticket->probe) e->probes++;
    }
    if (st == BS_OK) e->admitted++;
    else e->rejected++;
    pthread_mutex_unlock(&e->mu);
    return st;
}

void breaker_record(breaker_ticket *ticket, int ok, double now) {
    breaker_entry *e = ticket->entry;
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    if (ok) e->successes++;
    else e->failures++;
    if (ticket->probe && ticket->gen == e->gen) {
        set_state(e, ok ? BREAKER_CLOSED : BREAKER_OPEN, now);
    } else if (e->state == BREAKER_CLOSED) {
        long long idx = epoch_at(e, now);
        bucket *b = &e->window[((idx % BREAKER_BUCKETS) + BREAKER_BUCKETS) % BREAKER_BUCKETS];
        /* A slightly older clock reading from another thread lands in the
         * newer bucket of its slot rather than wiping it. */
        if (b->epoch == EPOCH_NONE || b->epoch < idx) *b = (bucket){idx, 0, 0};
        b->requests++;
        if (!ok) b->failures++;
        int requests, failures;
        window_sum(e, now, &requests, &failures);
        if (requests >= e->cfg.min_requests && (double)failures >= e->cfg.failure_rate * requests)
            set_state(e, BREAKER_OPEN, now);
    }
    pthread_mutex_unlock(&e->mu);
    *ticket = (breaker_ticket){0};
}

void breaker_cancel(breaker_ticket *ticket) {
    breaker_entry *e = ticket->entry;
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    if (ticket->probe && ticket->gen == e->gen) e->probes--;
    pthread_mutex_unlock(&e->mu);
    *ticket = (breaker_ticket){0};
}

breaker_state_kind breaker_state(breaker_registry *reg, const char *name, double now) {
    breaker_entry *e = entry_get(reg, name, 0);
    if (!e) return BREAKER_CLOSED;
    pthread_mutex_lock(&e->mu);
    breaker_state_kind s = state_at(e, now);
    pthread_mutex_unlock(&e->mu);
    return s;
}

const char *breaker_state_name(breaker_state_kind s) {
    switch (s) {
    case BREAKER_CLOSED: return "closed";
    case BREAKER_OPEN: return "open";
    case BREAKER_HALF_OPEN: return "half_open";
    }
    return "unknown";
}

static int info_by_name(const void *a, const void *b) {
    return strcmp(((const breaker_info *)a)->name, ((const breaker_info *)b)->name);
}

bs_status breaker_list(breaker_registry *reg, double now, breaker_info **out, int *n, bs_error *err) {
    *out = NULL;
    *n = 0;
    /* Entries are never removed, so the pointers gathered under the registry
     * lock stay valid after it is released; each is then read under its own
     * mutex. */
    pthread_rwlock_rdlock(&reg->lock);
    int count = 0;
    for (int i = 0; i < REGISTRY_SLOTS; i++)
        for (breaker_entry *e = reg->slot[i]; e; e = e->next) count++;
    breaker_entry **entries = count ? malloc(sizeof *entries * count) : NULL;
    if (count && !entries) {
        pthread_rwlock_unlock(&reg->lock);
        return bs_fail(err, BS_ENOMEM, "breaker list: out of memory");
    }
    int k = 0;
    for (int i = 0; i < REGISTRY_SLOTS; i++)
        for (breaker_entry *e = reg->slot[i]; e; e = e->next) entries[k++] = e;
    pthread_rwlock_unlock(&reg->lock);
    if (!count) return BS_OK;

    breaker_info *info = calloc(count, sizeof *info);
    if (!info) {
        free(entries);
        return bs_fail(err, BS_ENOMEM, "breaker list: out of memory");
    }
    for (int i = 0; i < count; i++) {
        breaker_entry *e = entries[i];
        breaker_info *b = &info[i];
        pthread_mutex_lock(&e->mu);
        b->name = e->name;
        b->state = state_at(e, now);
        window_sum(e, now, &b->window_requests, &b->window_failures);
        b->admitted = e->admitted;
        b->rejected = e->rejected;
        b->successes = e->successes;
        b->failures = e->failures;
        b->opened = e->opened;
        pthread_mutex_unlock(&e->mu);
    }
    free(entries);
    qsort(info, count, sizeof *info, info_by_name);
    *out = info;
    *n = count;
    return BS_OK;
}
