/* gateway/usage.c — in-memory usage aggregation and its single writer.
 *
 * Rows move one way: a stripe of the hot table (filled by usage_record) ->
 * `pending` (only when a stripe fills up between flushes) -> `inflight` (the
 * writer's batch) -> the store.  Lock order: stripe -> pending, flush_mu ->
 * pending, flush_mu -> stripe; usage_spend takes flush_mu, every stripe,
 * then pending, which respects both. */
#include "gateway/usage.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

enum {
    N_STRIPES = 16,   /* enough to spread a few hundred request threads */
    STRIPE_CAP = 256, /* slots per stripe; full at 3/4: 3072 hot rows in all */
};

typedef struct agg_counts {
    int64_t requests, errors, prompt_tokens, completion_tokens, guardrail;
    double cost_usd, latency_ms;
} agg_counts;

/* One (minute, key, model, route, target) row.  The four strings share one
 * allocation, `strs`, which key_id points at. */
typedef struct agg_row {
    uint64_t hash;
    int64_t minute;
    char *key_id, *model, *route, *target;
    agg_counts c;
    int used;
} agg_row;

/* Open addressing with linear probing; cap is a power of two.  A fixed map
 * (a stripe) refuses a new row past 3/4 load; a growable one doubles. */
typedef struct agg_map {
    agg_row *slots;
    size_t cap, n;
} agg_map;

typedef struct tuple {
    int64_t minute;
    const char *key_id, *model, *route, *target;
} tuple;

typedef struct stripe {
    pthread_mutex_t mu;
    agg_map map;
} stripe;

struct usage_recorder {
    bs_store *store;
    double flush_s;
    stripe stripes[N_STRIPES];
    pthread_mutex_t pending_mu;
    agg_map pending;
    pthread_mutex_t flush_mu; /* serializes flushes; guards inflight and failing */
    agg_map inflight;
    int failing;
    pthread_mutex_t wake_mu;
    pthread_cond_t wake;
    int stop, early;
    pthread_t writer;
    atomic_ullong lost; /* events whose row could not be allocated */
    unsigned long long lost_logged;
};

static const char *nz(const char *s) { return s ? s : ""; }

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t tuple_hash(const tuple *t) {
    uint64_t h = fnv(14695981039346656037ull, &t->minute, sizeof t->minute);
    /* The terminating NULs separate the fields, so ("ab","c") != ("a","bc"). */
    h = fnv(h, t->key_id, strlen(t->key_id) + 1);
    h = fnv(h, t->model, strlen(t->model) + 1);
    h = fnv(h, t->route, strlen(t->route) + 1);
    return fnv(h, t->target, strlen(t->target) + 1);
}

static int row_is(const agg_row *r, uint64_t hash, const tuple *t) {
    return r->hash == hash && r->minute == t->minute && strcmp(r->key_id, t->key_id) == 0 &&
           strcmp(r->model, t->model) == 0 && strcmp(r->route, t->route) == 0 && strcmp(r->target, t->target) == 0;
}

static void counts_add(agg_counts *d, const agg_counts *s) {
    d->requests += s->requests;
    d->errors += s->errors;
    d->prompt_tokens += s->prompt_tokens;
    d->completion_tokens += s->completion_tokens;
    d->guardrail += s->guardrail;
    d->cost_usd += s->cost_usd;
    d->latency_ms += s->latency_ms;
}

/* The slot holding the tuple, or the empty slot where it belongs. */
static agg_row *map_slot(agg_map *m, uint64_t hash, const tuple *t) {
    size_t i = (size_t)hash & (m->cap - 1);
    while (m->slots[i].used && !row_is(&m->slots[i], hash, t)) i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

static int map_init(agg_map *m, size_t cap) {
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = m->slots ? cap : 0;
    m->n = 0;
    return m->slots ? 0 : -1;
}

/* Makes room for `more` new rows in a growable map; -1 when out of memory. */
static int map_reserve(agg_map *m, size_t more) {
    size_t cap = m->cap ? m->cap : 64;
    while ((m->n + more) * 4 > cap * 3) cap *= 2;
    if (cap == m->cap) return 0;
    agg_map bigger;
    if (map_init(&bigger, cap) != 0) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].used) continue;
        tuple t = {m->slots[i].minute, m->slots[i].key_id, m->slots[i].model, m->slots[i].route, m->slots[i].target};
        *map_slot(&bigger, m->slots[i].hash, &t) = m->slots[i];
    }
    bigger.n = m->n;
    free(m->slots);
    *m = bigger;
    return 0;
}

/* Adds counts to the tuple's row.  0 done, 1 the fixed map is full, -1 out
 * of memory. */
static int map_add(agg_map *m, int growable, uint64_t hash, const tuple *t, const agg_counts *c) {
    agg_row *r = map_slot(m, hash, t);
    if (r->used) {
        counts_add(&r->c, c);
        return 0;
    }
    if ((m->n + 1) * 4 > m->cap * 3) {
        if (!growable) return 1;
        if (map_reserve(m, 1) != 0) return -1;
        r = map_slot(m, hash, t);
    }
    size_t lk = strlen(t->key_id) + 1, lm = strlen(t->model) + 1, lr = strlen(t->route) + 1,
           lt = strlen(t->target) + 1;
    char *s = malloc(lk + lm + lr + lt);
    if (!s) return -1;
    memcpy(s, t->key_id, lk);
    memcpy(s + lk, t->model, lm);
    memcpy(s + lk + lm, t->route, lr);
    memcpy(s + lk + lm + lr, t->target, lt);
    *r = (agg_row){.hash = hash, .minute = t->minute, .key_id = s, .model = s + lk, .route = s + lk + lm,
                   .target = s + lk + lm + lr, .c = *c, .used = 1};
    m->n++;
    return 0;
}

static void map_clear(agg_map *m) {
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].used) free(m->slots[i].key_id);
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
}

static void map_free(agg_map *m) {
    map_clear(m);
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
}

/* Moves every row of src into the growable dst (src ends empty, keeping its
 * capacity).  -1 when dst cannot grow: both are left as they were. */
static int map_merge(agg_map *dst, agg_map *src) {
    if (src->n == 0) return 0;
    if (map_reserve(dst, src->n) != 0) return -1;
    for (size_t i = 0; i < src->cap; i++) {
        agg_row *s = &src->slots[i];
        if (!s->used) continue;
        tuple t = {s->minute, s->key_id, s->model, s->route, s->target};
        agg_row *d = map_slot(dst, s->hash, &t);
        if (d->used) {
            counts_add(&d->c, &s->c);
            free(s->key_id);
        } else {
            *d = *s;
            dst->n++;
        }
        memset(s, 0, sizeof *s);
    }
    src->n = 0;
    return 0;
}

static void wake_writer(usage_recorder *r) {
    pthread_mutex_lock(&r->wake_mu);
    r->early = 1;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->wake_mu);
}

void usage_record(usage_recorder *r, const usage_event *e) {
    int64_t ts = e->ts > 0 ? e->ts : (int64_t)time(NULL);
    tuple t = {ts - ts % 60, nz(e->key_id), nz(e->model), nz(e->route), nz(e->target)};
    agg_counts c = {.requests = 1, .errors = e->error != 0, .prompt_tokens = e->prompt_tokens,
                    .completion_tokens = e->completion_tokens, .guardrail = e->guardrail_intervened != 0,
                    .cost_usd = e->cost_usd, .latency_ms = e->latency_ms};
    uint64_t h = tuple_hash(&t);
    stripe *st = &r->stripes[(h >> 32) % N_STRIPES];
    pthread_mutex_lock(&st->mu);
    int rc = map_add(&st->map, 0, h, &t, &c);
    int full = rc == 1;
    if (full) {
        /* Hand the stripe's rows to the writer instead of waiting for it. */
        pthread_mutex_lock(&r->pending_mu);
        rc = map_merge(&r->pending, &st->map) == 0 ? map_add(&st->map, 0, h, &t, &c) : -1;
        pthread_mutex_unlock(&r->pending_mu);
    }
    pthread_mutex_unlock(&st->mu);
    if (rc != 0) atomic_fetch_add(&r->lost, 1); /* the writer logs these; no I/O here */
    if (full) wake_writer(r);
}

/* Callers hold flush_mu. */
static bs_status flush_locked(usage_recorder *r, bs_error *err) {
    int merged = 1;
    pthread_mutex_lock(&r->pending_mu);
    merged &= map_merge(&r->inflight, &r->pending) == 0;
    pthread_mutex_unlock(&r->pending_mu);
    for (int i = 0; i < N_STRIPES; i++) {
        pthread_mutex_lock(&r->stripes[i].mu);
        merged &= map_merge(&r->inflight, &r->stripes[i].map) == 0;
        pthread_mutex_unlock(&r->stripes[i].mu);
    }
    bs_status st = BS_OK;
    if (r->inflight.n > 0) {
        store_usage *rows = malloc(r->inflight.n * sizeof *rows);
        if (!rows) return bs_fail(err, BS_ENOMEM, "usage: out of memory flushing %zu rows", r->inflight.n);
        size_t n = 0;
        for (size_t i = 0; i < r->inflight.cap; i++) {
            const agg_row *a = &r->inflight.slots[i];
            if (!a->used) continue;
            rows[n++] = (store_usage){.minute = a->minute, .key_id = a->key_id, .model = a->model, .route = a->route,
                                      .target = a->target, .requests = a->c.requests, .errors = a->c.errors,
                                      .prompt_tokens = a->c.prompt_tokens,
                                      .completion_tokens = a->c.completion_tokens,
                                      .guardrail_interventions = a->c.guardrail, .cost_usd = a->c.cost_usd,
                                      .latency_ms_sum = a->c.latency_ms};
        }
        st = store_usage_add(r->store, rows, n, err);
        free(rows);
        if (st == BS_OK) {
            map_clear(&r->inflight);
            if (r->failing) bs_log_info("usage: store writes recovered; pending rows flushed");
            r->failing = 0;
        } else {
            if (!r->failing) bs_log_error("usage: flush failed, keeping rows for the next try: %s", err->msg);
            r->failing = 1;
            return st;
        }
    }
    if (!merged) return bs_fail(err, BS_ENOMEM, "usage: out of memory merging rows; they stay for the next flush");
    return BS_OK;
}

bs_status usage_flush(usage_recorder *r, bs_error *err) {
    pthread_mutex_lock(&r->flush_mu);
    bs_status st = flush_locked(r, err);
    pthread_mutex_unlock(&r->flush_mu);
    return st;
}

static void *writer_main(void *arg) {
    usage_recorder *r = arg;
    pthread_mutex_lock(&r->wake_mu);
    while (!r->stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        double end = (double)deadline.tv_sec + deadline.tv_nsec * 1e-9 + r->flush_s;
        deadline.tv_sec = (time_t)end;
        deadline.tv_nsec = (long)((end - (double)deadline.tv_sec) * 1e9);
        while (!r->stop && !r->early)
            if (pthread_cond_timedwait(&r->wake, &r->wake_mu, &deadline) == ETIMEDOUT) break;
        r->early = 0;
        if (r->stop) break; /* usage_close does the last flush */
        pthread_mutex_unlock(&r->wake_mu);

        bs_error e = {0};
        pthread_mutex_lock(&r->flush_mu);
        flush_locked(r, &e); /* failures are logged once per streak inside */
        pthread_mutex_unlock(&r->flush_mu);
        unsigned long long lost = atomic_load(&r->lost);
        if (lost > r->lost_logged) {
            bs_log_error("usage: %llu events could not be counted (out of memory)", lost - r->lost_logged);
            r->lost_logged = lost;
        }
        pthread_mutex_lock(&r->wake_mu);
    }
    pthread_mutex_unlock(&r->wake_mu);
    return NULL;
}

static void recorder_free(usage_recorder *r) {
    for (int i = 0; i < N_STRIPES; i++) {
        map_free(&r->stripes[i].map);
        pthread_mutex_destroy(&r->stripes[i].mu);
    }
    map_free(&r->pending);
    map_free(&r->inflight);
    pthread_mutex_destroy(&r->pending_mu);
    pthread_mutex_destroy(&r->flush_mu);
    pthread_mutex_destroy(&r->wake_mu);
    pthread_cond_destroy(&r->wake);
    free(r);
}

bs_status usage_open(bs_store *store, double flush_s, usage_recorder **out, bs_error *err) {
    *out = NULL;
    if (!(flush_s > 0)) return bs_fail(err, BS_EINVAL, "usage: flush_s must be > 0 (got %g)", flush_s);
    usage_recorder *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "usage: out of memory");
    r->store = store;
    r->flush_s = flush_s;
    atomic_init(&r->lost, 0);
    int ok = 1;
    for (int i = 0; i < N_STRIPES; i++) {
        pthread_mutex_init(&r->stripes[i].mu, NULL);
        ok &= map_init(&r->stripes[i].map, STRIPE_CAP) == 0;
    }
    pthread_mutex_init(&r->pending_mu, NULL);
    pthread_mutex_init(&r->flush_mu, NULL);
    pthread_mutex_init(&r->wake_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wall-clock jumps must not stall flushes */
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (!ok) {
        recorder_free(r);
        return bs_fail(err, BS_ENOMEM, "usage: out of memory");
    }
    int rc = pthread_create(&r->writer, NULL, writer_main, r);
    if (rc != 0) {
        recorder_free(r);
        return bs_fail(err, BS_EIO, "usage: cannot start the writer thread: %s", strerror(rc));
    }
    *out = r;
    return BS_OK;
}

void usage_close(usage_recorder *r) {
    if (!r) return;
    pthread_mutex_lock(&r->wake_mu);
    r->stop = 1;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->wake_mu);
    pthread_join(r->writer, NULL);
    bs_error e = {0};
    if (usage_flush(r, &e) != BS_OK) {
        int64_t requests = 0;
        for (size_t i = 0; i < r->inflight.cap; i++)
            if (r->inflight.slots[i].used) requests += r->inflight.slots[i].c.requests;
        bs_log_error("usage: %zu rows (%lld requests) lost at shutdown: %s", r->inflight.n, (long long)requests,
                     e.msg);
    }
    recorder_free(r);
}

/* ------------------------------------------------------------ reads */

static const struct {
    const char *name, *field;
    store_usage_group by;
} GROUPS[] = {
    {"key", "key_id", STORE_USAGE_BY_KEY},     {"model", "model", STORE_USAGE_BY_MODEL},
    {"route", "route", STORE_USAGE_BY_ROUTE},  {"target", "target", STORE_USAGE_BY_TARGET},
    {"day", "day", STORE_USAGE_BY_DAY},
};
enum { N_GROUPS = sizeof GROUPS / sizeof GROUPS[0] };

/* A date YYYY-MM-DD (UTC) -> its first second; -1 when s is not one. */
static int64_t parse_date(const char *s) {
    int y, m, d, used = 0;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &used) != 3 ||
        used != 10)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    /* timegm normalizes 2024-02-30 to March: a round trip rejects it. */
    if (tm.tm_year != y - 1900 || tm.tm_mon != m - 1 || tm.tm_mday != d) return -1;
    return (int64_t)t;
}

/* from/to: "" or NULL leaves *given 0; a date as `to` means the day after. */
static bs_status parse_bound(const char *param, const char *s, int is_to, int64_t *out, int *given, bs_error *err) {
    *given = 0;
    if (!s || !*s) return BS_OK;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0 && v >= 0 && (s[0] >= '0' && s[0] <= '9')) {
        *out = v;
    } else {
        int64_t day = parse_date(s);
        if (day < 0)
            return bs_fail(err, BS_EINVAL, "%s: \"%s\" is neither Unix seconds nor a date YYYY-MM-DD", param, s);
        *out = is_to ? day + 86400 : day;
    }
    *given = 1;
    return BS_OK;
}

typedef struct usage_params {
    int group;
    int64_t from, to;
    int from_given, to_given;
} usage_params;

static bs_status parse_params(const char *group_by, const char *from, const char *to, usage_params *p,
                              bs_error *err) {
    const char *g = group_by && *group_by ? group_by : "key";
    p->group = -1;
    for (int i = 0; i < N_GROUPS; i++)
        if (strcmp(g, GROUPS[i].name) == 0) p->group = i;
    if (p->group < 0)
        return bs_fail(err, BS_EINVAL, "group_by: unknown value \"%s\" (expected key, model, route, target or day)",
                       g);
    p->from = 0;
    p->to = 0;
    bs_status st = parse_bound("from", from, 0, &p->from, &p->from_given, err);
    if (st == BS_OK) st = parse_bound("to", to, 1, &p->to, &p->to_given, err);
    if (st != BS_OK) return st;
    if (p->from_given && p->to_given && p->from > p->to)
        return bs_fail(err, BS_EINVAL, "from: %lld is after to (%lld)", (long long)p->from, (long long)p->to);
    return BS_OK;
}

/* Flushes, then reads the grouped rows (*rows NULL and *n 0 for an empty
 * range, which the store would read as unbounded). */
static bs_status query_rows(usage_recorder *r, const char *group_by, const char *from, const char *to,
                            const char *key_id, usage_params *p, store_usage **rows, size_t *n, bs_error *err) {
    *rows = NULL;
    *n = 0;
    bs_status st = parse_params(group_by, from, to, p, err);
    if (st == BS_OK) st = usage_flush(r, err);
    if (st != BS_OK || (p->to_given && p->to <= p->from)) return st;
    return store_usage_query(r->store, GROUPS[p->group].by, p->from, p->to_given ? p->to : 0, key_id, rows, n, err);
}

static void format_day(int64_t t, char out[16]) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(out, 16, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

static const char *group_value(const store_usage *u, int group, char day[16]) {
    switch (GROUPS[group].by) {
    case STORE_USAGE_BY_KEY: return u->key_id;
    case STORE_USAGE_BY_MODEL: return u->model;
    case STORE_USAGE_BY_ROUTE: return u->route;
    case STORE_USAGE_BY_TARGET: return u->target;
    case STORE_USAGE_BY_DAY: format_day(u->minute, day); return day;
    }
    return "";
}

static double avg_latency(const store_usage *u) { return u->requests ? u->latency_ms_sum / (double)u->requests : 0; }

bs_status usage_query(usage_recorder *r, const char *group_by, const char *from, const char *to, const char *key_id,
                      json_t **out, bs_error *err) {
    *out = NULL;
    usage_params p;
    store_usage *rows;
    size_t n;
    bs_status st = query_rows(r, group_by, from, to, key_id, &p, &rows, &n, err);
    if (st != BS_OK) return st;
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        const store_usage *u = &rows[i];
        char day[16];
        json_array_append_new(
            data, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I}", GROUPS[p.group].field,
                            group_value(u, p.group, day), "requests", (json_int_t)u->requests, "errors",
                            (json_int_t)u->errors, "prompt_tokens", (json_int_t)u->prompt_tokens,
                            "completion_tokens", (json_int_t)u->completion_tokens, "total_tokens",
                            (json_int_t)(u->prompt_tokens + u->completion_tokens), "cost_usd", u->cost_usd,
                            "avg_latency_ms", avg_latency(u), "guardrail_interventions",
                            (json_int_t)u->guardrail_interventions));
    }
    store_usages_free(rows, n);
    *out = json_pack("{s:s, s:o, s:s, s:o, s:o}", "object", "list", "data", data, "group_by", GROUPS[p.group].name,
                     "from", p.from_given ? json_integer(p.from) : json_null(), "to",
                     p.to_given ? json_integer(p.to) : json_null());
    return *out ? BS_OK : bs_fail(err, BS_ENOMEM, "usage: out of memory");
}

/* Appends s as one CSV field, quoted when RFC 4180 requires it. */
static int csv_field(char **buf, size_t *len, size_t *cap, const char *s, int last) {
    size_t need = *len + 2 * strlen(s) + 5;
    if (need > *cap) {
        size_t c = *cap * 2 > need ? *cap * 2 : need;
        char *b = realloc(*buf, c);
        if (!b) return -1;
        *buf = b;
        *cap = c;
    }
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    char *w = *buf + *len;
    if (quote) *w++ = '"';
    for (const char *c = s; *c; c++) {
        if (*c == '"') *w++ = '"';
        *w++ = *c;
    }
    if (quote) *w++ = '"';
    if (last) {
        *w++ = '\r';
        *w++ = '\n';
    } else {
        *w++ = ',';
    }
    *w = '\0';
    *len = (size_t)(w - *buf);
    return 0;
}

bs_status usage_csv(usage_recorder *r, const char *group_by, const char *from, const char *to, const char *key_id,
                    char **out, bs_error *err) {
    *out = NULL;
    usage_params p;
    store_usage *rows;
    size_t n;
    bs_status st = query_rows(r, group_by, from, to, key_id, &p, &rows, &n, err);
    if (st != BS_OK) return st;
    enum { N_COLS = 9 };
    const char *header[N_COLS] = {GROUPS[p.group].field, "requests",       "errors",
                                  "prompt_tokens",       "completion_tokens", "total_tokens",
                                  "cost_usd",            "avg_latency_ms", "guardrail_interventions"};
    size_t len = 0, cap = 256;
    char *buf = malloc(cap);
    int bad = !buf;
    for (int c = 0; c < N_COLS && !bad; c++) bad = csv_field(&buf, &len, &cap, header[c], c == N_COLS - 1) != 0;
    for (size_t i = 0; i < n && !bad; i++) {
        const store_usage *u = &rows[i];
        char day[16], v[N_COLS - 1][32];
        snprintf(v[0], 32, "%lld", (long long)u->requests);
        snprintf(v[1], 32, "%lld", (long long)u->errors);
        snprintf(v[2], 32, "%lld", (long long)u->prompt_tokens);
        snprintf(v[3], 32, "%lld", (long long)u->completion_tokens);
        snprintf(v[4], 32, "%lld", (long long)(u->prompt_tokens + u->completion_tokens));
        snprintf(v[5], 32, "%.12g", u->cost_usd);
        snprintf(v[6], 32, "%.12g", avg_latency(u));
        snprintf(v[7], 32, "%lld", (long long)u->guardrail_interventions);
        bad = csv_field(&buf, &len, &cap, group_value(u, p.group, day), 0) != 0;
        for (int c = 0; c < N_COLS - 1 && !bad; c++) bad = csv_field(&buf, &len, &cap, v[c], c == N_COLS - 2) != 0;
    }
    store_usages_free(rows, n);
    if (bad) {
        free(buf);
        return bs_fail(err, BS_ENOMEM, "usage: out of memory writing CSV");
    }
    *out = buf;
    return BS_OK;
}

static double map_spend(const agg_map *m, const char *key_id, int64_t from) {
    double sum = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const agg_row *a = &m->slots[i];
        if (a->used && a->minute >= from && strcmp(a->key_id, key_id) == 0) sum += a->c.cost_usd;
    }
    return sum;
}

bs_status usage_spend(usage_recorder *r, const char *key_id, int64_t from, double *cost_usd, bs_error *err) {
    *cost_usd = 0;
    key_id = nz(key_id);
    int64_t from_minute = from - from % 60;
    /* flush_mu keeps inflight out of the store, and holding every stripe
     * with pending keeps rows from moving between the maps while we sum:
     * each row is counted exactly once. */
    pthread_mutex_lock(&r->flush_mu);
    for (int i = 0; i < N_STRIPES; i++) pthread_mutex_lock(&r->stripes[i].mu);
    pthread_mutex_lock(&r->pending_mu);
    double mem = map_spend(&r->inflight, key_id, from_minute) + map_spend(&r->pending, key_id, from_minute);
    for (int i = 0; i < N_STRIPES; i++) mem += map_spend(&r->stripes[i].map, key_id, from_minute);
    pthread_mutex_unlock(&r->pending_mu);
    for (int i = N_STRIPES - 1; i >= 0; i--) pthread_mutex_unlock(&r->stripes[i].mu);

    store_usage *rows = NULL;
    size_t n = 0;
    bs_status st = store_usage_query(r->store, STORE_USAGE_BY_KEY, from_minute, 0, key_id, &rows, &n, err);
    pthread_mutex_unlock(&r->flush_mu);
    if (st != BS_OK) return st;
    for (size_t i = 0; i < n; i++) mem += rows[i].cost_usd;
    store_usages_free(rows, n);
    *cost_usd = mem;
    return BS_OK;
}
