/* gateway/limits.c — see limits.h.  A request becomes a short plan of
 * counter operations (up to seven: key RPM/TPM/concurrency/budget, model
 * RPM/TPM/concurrency); a backend checks and applies the whole plan atomically and
 * reports each counter's value, from which the denial and the header state
 * are computed the same way for both backends. */
#include "gateway/limits.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define WINDOW_MS 60000
#define DAY_MS (86400LL * 1000)
/* Key ids and model names are bounded so counter names fit a fixed buffer. */
#define NAME_MAX_BYTES 200
#define COUNTER_NAME_MAX (NAME_MAX_BYTES + 48)
#define MAX_OPS 7
#define STRIPES 64
#define REDIS_CONNS 4
#define REDIS_PREFIX "basalt:rl:"

typedef enum { OP_WINDOW, OP_CONC, OP_BUDGET } op_type;

typedef struct counter_op {
    char name[COUNTER_NAME_MAX];
    op_type type;
    limit_kind kind;
    int model_limit;
    int64_t limit, amount;
    int64_t expire_at_ms; /* when the counter may be dropped */
    int64_t reset_ms;     /* until the limit frees up */
    int64_t value;        /* after admission, or current at a denial */
} counter_op;

struct limit_ticket {
    char id[33];
    counter_op ops[MAX_OPS];
    int n_ops;
    int settled;
    limit_state state;
};

/* ------------------------------------------------------------ in-process table */

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    int64_t value;
    int64_t expire_at_ms; /* 0: never (concurrency, dropped at 0) */
    char name[];
} entry;

typedef struct stripe {
    _Alignas(64) pthread_mutex_t mu;
    entry **buckets;
    size_t n_buckets, count;
    int64_t next_sweep_ms;
} stripe;

/* ------------------------------------------------------------ Redis */

typedef struct redis_conn {
    pthread_mutex_t mu;
    redisContext *ctx;
} redis_conn;

typedef struct redis_backend {
    char *host;
    int port, db;
    char *user, *password;
    redis_conn conns[REDIS_CONNS];
    atomic_uint next;
    pthread_mutex_t sha_mu;
    char sha_admit[41], sha_settle[41];
} redis_backend;

struct limits {
    stripe *stripes;   /* in-process backend */
    redis_backend *rb; /* Redis backend */
    int64_t (*clock)(void *ctx);
    void *clock_ctx;
};

/* ------------------------------------------------------------ small helpers */

const char *limit_period_name(limit_period p) { return p == LIMIT_PERIOD_MONTH ? "month" : "day"; }

bs_status limit_period_parse(const char *name, limit_period *out, bs_error *err) {
    if (name && strcmp(name, "day") == 0) *out = LIMIT_PERIOD_DAY;
    else if (name && strcmp(name, "month") == 0) *out = LIMIT_PERIOD_MONTH;
    else return bs_fail(err, BS_EINVAL, "budget_period: unknown period \"%s\" (known: day, month)", name ? name : "");
    return BS_OK;
}

int64_t limits_period_start(limit_period p, int64_t now_s) {
    int64_t day = now_s - ((now_s % 86400) + 86400) % 86400;
    if (p == LIMIT_PERIOD_DAY) return day;
    time_t t = (time_t)now_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    return day - (int64_t)(tm.tm_mday - 1) * 86400;
}

int64_t limits_period_end(limit_period p, int64_t now_s) {
    int64_t start = limits_period_start(p, now_s);
    if (p == LIMIT_PERIOD_DAY) return start + 86400;
    time_t t = (time_t)start;
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mon += 1; /* timegm normalises December + 1 into January */
    return (int64_t)timegm(&tm);
}

int64_t limits_micros(double usd) { return (int64_t)(usd * 1e6 + (usd >= 0 ? 0.5 : -0.5)); }

const char *limit_kind_name(limit_kind k) {
    switch (k) {
    case LIMIT_REQUESTS: return "requests";
    case LIMIT_TOKENS: return "tokens";
    case LIMIT_CONCURRENCY: return "concurrency";
    case LIMIT_BUDGET: return "budget";
    }
    return "?";
}

static int64_t real_clock(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void limits_set_clock(limits *l, int64_t (*now_ms)(void *ctx), void *ctx) {
    l->clock = now_ms ? now_ms : real_clock;
    l->clock_ctx = now_ms ? ctx : NULL;
}

const char *limits_backend(const limits *l) { return l->rb ? "redis" : "memory"; }

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void random_hex(char *out, size_t bytes) {
    unsigned char b[32];
    if (getrandom(b, bytes, 0) != (ssize_t)bytes) {
        /* Ticket ids only need to be unique, not secret: fall back to the
         * clock and the address mixed together. */
        uint64_t x = (uint64_t)real_clock(NULL) ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < bytes; i++) b[i] = (unsigned char)((x *= 6364136223846793005ull) >> 56);
    }
    for (size_t i = 0; i < bytes; i++) sprintf(out + 2 * i, "%02x", b[i]);
}

/* ------------------------------------------------------------ the plan */

static void add_op(counter_op *ops, int *n, op_type type, limit_kind kind, int model_limit, int64_t limit,
                   int64_t amount, int64_t expire_at_ms, int64_t reset_ms, const char *fmt, const char *id,
                   int64_t suffix) {
    counter_op *op = &ops[(*n)++];
    memset(op, 0, sizeof *op);
    snprintf(op->name, sizeof op->name, fmt, id, (long long)suffix);
    op->type = type;
    op->kind = kind;
    op->model_limit = model_limit;
    op->limit = limit;
    op->amount = amount;
    op->expire_at_ms = expire_at_ms;
    op->reset_ms = reset_ms;
}

static bs_status check_name(const char *what, const char *s, bs_error *err) {
    if (s && (strlen(s) > NAME_MAX_BYTES || !*s))
        return bs_fail(err, BS_EINVAL, "%s: must be 1 to %d bytes", what, NAME_MAX_BYTES);
    return BS_OK;
}

static bs_status make_plan(const limit_request *r, int64_t now, counter_op *ops, int *n, bs_error *err) {
    bs_status st;
    if ((st = check_name("key_id", r->key_id, err)) || (st = check_name("model", r->model, err))) return st;
    if (r->tokens < 0) return bs_fail(err, BS_EINVAL, "tokens: must be >= 0, got %lld", (long long)r->tokens);
    if (r->cost_micros < 0)
        return bs_fail(err, BS_EINVAL, "cost_micros: must be >= 0, got %lld", (long long)r->cost_micros);
    int64_t ws = now / WINDOW_MS * WINDOW_MS, wreset = ws + WINDOW_MS - now;
    /* Windows outlive themselves by the lease so a late settle still lands. */
    int64_t wexp = ws + WINDOW_MS + LIMITS_LEASE_MS;
    *n = 0;
    if (r->key_id) {
        if (r->key_rpm > 0)
            add_op(ops, n, OP_WINDOW, LIMIT_REQUESTS, 0, r->key_rpm, 1, wexp, wreset, "rq:%s:%lld", r->key_id, ws);
        if (r->key_tpm > 0)
            add_op(ops, n, OP_WINDOW, LIMIT_TOKENS, 0, r->key_tpm, r->tokens, wexp, wreset, "tk:%s:%lld", r->key_id,
                   ws);
        if (r->key_max_concurrent > 0)
            add_op(ops, n, OP_CONC, LIMIT_CONCURRENCY, 0, r->key_max_concurrent, 1, 0, 1000, "cc:%s", r->key_id,
                   0);
        if (r->key_budget_micros > 0) {
            int64_t ps = limits_period_start(r->budget_period, now / 1000);
            int64_t pe = limits_period_end(r->budget_period, now / 1000);
            add_op(ops, n, OP_BUDGET, LIMIT_BUDGET, 0, r->key_budget_micros, r->cost_micros, pe * 1000 + DAY_MS,
                   pe * 1000 - now, r->budget_period == LIMIT_PERIOD_MONTH ? "bm:%s:%lld" : "bd:%s:%lld",
                   r->key_id, ps);
        }
    }
    if (r->model) {
        if (r->model_rpm > 0)
            add_op(ops, n, OP_WINDOW, LIMIT_REQUESTS, 1, r->model_rpm, 1, wexp, wreset, "mrq:%s:%lld", r->model, ws);
        if (r->model_tpm > 0)
            add_op(ops, n, OP_WINDOW, LIMIT_TOKENS, 1, r->model_tpm, r->tokens, wexp, wreset, "mtk:%s:%lld",
                   r->model, ws);
        if (r->model_max_concurrent > 0)
            add_op(ops, n, OP_CONC, LIMIT_CONCURRENCY, 1, r->model_max_concurrent, 1, 0, 1000, "mcc:%s", r->model,
                   0);
    }
    return BS_OK;
}

/* A budget is also spent when it is exactly used up, even by a request the
 * price table prices at 0. */
static int op_refuses(const counter_op *op) {
    return op->value + op->amount > op->limit || (op->type == OP_BUDGET && op->value >= op->limit);
}

/* Of the key's and the model's limit of one kind, the one with least left.
 * admitted: values already include this request. */
static limit_window window_state(const counter_op *ops, int n, limit_kind kind) {
    limit_window w = {0};
    for (int i = 0; i < n; i++) {
        if (ops[i].kind != kind) continue;
        int64_t left = ops[i].limit - ops[i].value;
        if (left < 0) left = 0;
        if (!w.set || left < w.remaining) w = (limit_window){1, ops[i].limit, left, ops[i].reset_ms};
    }
    return w;
}

static limit_state plan_state(const counter_op *ops, int n) {
    return (limit_state){window_state(ops, n, LIMIT_REQUESTS), window_state(ops, n, LIMIT_TOKENS)};
}

/* ------------------------------------------------------------ in-process backend */

static entry **mem_find(stripe *s, const char *name, uint64_t h, int64_t now) {
    entry **pp = &s->buckets[(h >> 6) % s->n_buckets];
    while (*pp) {
        entry *e = *pp;
        if (e->expire_at_ms && e->expire_at_ms <= now) { /* drop expired on the way */
            *pp = e->next;
            free(e);
            s->count--;
            continue;
        }
        if (e->hash == h && strcmp(e->name, name) == 0) return pp;
        pp = &e->next;
    }
    return pp;
}

static void mem_sweep(stripe *s, int64_t now) {
    for (size_t b = 0; b < s->n_buckets; b++)
        for (entry **pp = &s->buckets[b]; *pp;) {
            entry *e = *pp;
            if (e->expire_at_ms && e->expire_at_ms <= now) {
                *pp = e->next;
                free(e);
                s->count--;
            } else {
                pp = &e->next;
            }
        }
    s->next_sweep_ms = now + WINDOW_MS;
}

static void mem_grow(stripe *s) {
    size_t nb = s->n_buckets * 2;
    entry **nbk = calloc(nb, sizeof *nbk);
    if (!nbk) return; /* keep the longer chains; still correct */
    for (size_t b = 0; b < s->n_buckets; b++)
        for (entry *e = s->buckets[b], *next; e; e = next) {
            next = e->next;
            size_t i = (e->hash >> 6) % nb;
            e->next = nbk[i];
            nbk[i] = e;
        }
    free(s->buckets);
    s->buckets = nbk;
    s->n_buckets = nb;
}

static entry *mem_create(stripe *s, entry **slot, const char *name, uint64_t h, int64_t value, int64_t expire) {
    size_t len = strlen(name) + 1;
    entry *e = malloc(sizeof *e + len);
    if (!e) return NULL;
    e->next = NULL;
    e->hash = h;
    e->value = value;
    e->expire_at_ms = expire;
    memcpy(e->name, name, len);
    *slot = e;
    if (++s->count > s->n_buckets * 2) mem_grow(s);
    return e;
}

/* Lock the distinct stripes of ops in ascending order (no deadlock between
 * admissions that share stripes); returns how many, indices in locked. */
static int mem_lock(limits *l, const counter_op *ops, int n, int *locked, int64_t now) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        int s = (int)(fnv1a(ops[i].name) & (STRIPES - 1)), j = k;
        int dup = 0;
        for (int m = 0; m < k; m++) dup |= locked[m] == s;
        if (dup) continue;
        while (j > 0 && locked[j - 1] > s) {
            locked[j] = locked[j - 1];
            j--;
        }
        locked[j] = s;
        k++;
    }
    for (int i = 0; i < k; i++) {
        stripe *s = &l->stripes[locked[i]];
        pthread_mutex_lock(&s->mu);
        if (now >= s->next_sweep_ms) mem_sweep(s, now);
    }
    return k;
}

static void mem_unlock(limits *l, const int *locked, int k) {
    for (int i = k - 1; i >= 0; i--) pthread_mutex_unlock(&l->stripes[locked[i]].mu);
}

static entry *mem_lookup(limits *l, const char *name, int64_t now) {
    uint64_t h = fnv1a(name);
    entry **pp = mem_find(&l->stripes[h & (STRIPES - 1)], name, h, now);
    return *pp;
}

/* Returns the index of the refusing op, or -1 when admitted. */
static int mem_admit(limits *l, counter_op *ops, int n, int64_t now, bs_error *err, bs_status *st) {
    int locked[MAX_OPS];
    int k = mem_lock(l, ops, n, locked, now);
    int refused = -1;
    for (int i = 0; i < n; i++) {
        entry *e = mem_lookup(l, ops[i].name, now);
        ops[i].value = e ? e->value : 0;
        if (refused < 0 && op_refuses(&ops[i])) refused = i;
    }
    if (refused < 0) {
        for (int i = 0; i < n; i++) {
            uint64_t h = fnv1a(ops[i].name);
            stripe *s = &l->stripes[h & (STRIPES - 1)];
            entry **slot = mem_find(s, ops[i].name, h, now);
            if (*slot) {
                (*slot)->value += ops[i].amount;
                continue;
            }
            if (mem_create(s, slot, ops[i].name, h, ops[i].amount, ops[i].expire_at_ms)) continue;
            /* Out of memory half way: undo what this admission added. */
            for (int j = 0; j < i; j++) {
                entry *e = mem_lookup(l, ops[j].name, now);
                if (e) e->value -= ops[j].amount;
            }
            mem_unlock(l, locked, k);
            *st = bs_fail(err, BS_ENOMEM, "limits: out of memory for counter %s", ops[i].name);
            return -1;
        }
        for (int i = 0; i < n; i++) ops[i].value += ops[i].amount;
    }
    mem_unlock(l, locked, k);
    *st = BS_OK;
    return refused;
}

static void mem_settle(limits *l, limit_ticket *t, const int64_t *delta, int64_t now) {
    int locked[MAX_OPS];
    int k = mem_lock(l, t->ops, t->n_ops, locked, now);
    for (int i = 0; i < t->n_ops; i++) {
        if (!delta[i]) continue;
        uint64_t h = fnv1a(t->ops[i].name);
        stripe *s = &l->stripes[h & (STRIPES - 1)];
        entry **pp = mem_find(s, t->ops[i].name, h, now);
        entry *e = *pp;
        if (!e) continue; /* the window is long gone: nothing left to correct */
        e->value += delta[i];
        if (t->ops[i].type == OP_CONC && e->value <= 0) {
            *pp = e->next;
            free(e);
            s->count--;
        }
    }
    mem_unlock(l, locked, k);
}

static int64_t mem_value(limits *l, const char *name, int64_t now) {
    uint64_t h = fnv1a(name);
    stripe *s = &l->stripes[h & (STRIPES - 1)];
    pthread_mutex_lock(&s->mu);
    entry *e = *mem_find(s, name, h, now);
    int64_t v = e ? e->value : 0;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static bs_status mem_seed(limits *l, const char *name, int64_t value, int64_t expire, int64_t now, bs_error *err) {
    uint64_t h = fnv1a(name);
    stripe *s = &l->stripes[h & (STRIPES - 1)];
    pthread_mutex_lock(&s->mu);
    entry **slot = mem_find(s, name, h, now);
    bs_status st = BS_OK;
    if (!*slot && !mem_create(s, slot, name, h, value, expire))
        st = bs_fail(err, BS_ENOMEM, "limits: out of memory seeding %s", name);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ------------------------------------------------------------ Redis backend */

/* KEYS[1]: the ticket's marker; KEYS[2..]: counters.  ARGV: now, ticket id,
 * lease, then per counter: type (w window, c concurrency, b budget), limit,
 * amount, expire-at (ms).  Reads every counter, refuses on the first that
 * would be exceeded, else applies all.  A marker that already exists means
 * this is the retry of an admission whose reply was lost: it is admitted
 * and nothing is counted twice.  Returns {admitted, refused index, values}. */
static const char ADMIT_LUA[] =
    "local now = tonumber(ARGV[1])\n"
    "local n = #KEYS - 1\n"
    "local vals = {}\n"
    "for i = 1, n do\n"
    "  local k = KEYS[i + 1]\n"
    "  if ARGV[3 + (i - 1) * 4 + 1] == 'c' then\n"
    "    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)\n"
    "    vals[i] = redis.call('ZCARD', k)\n"
    "  else\n"
    "    vals[i] = tonumber(redis.call('GET', k) or '0')\n"
    "  end\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then return {1, 0, unpack(vals)} end\n"
    "for i = 1, n do\n"
    "  local b = 3 + (i - 1) * 4\n"
    "  local t, lim, amt = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])\n"
    "  if vals[i] + amt > lim or (t == 'b' and vals[i] >= lim) then return {0, i, unpack(vals)} end\n"
    "end\n"
    "for i = 1, n do\n"
    "  local b = 3 + (i - 1) * 4\n"
    "  local k, t, amt, exp = KEYS[i + 1], ARGV[b + 1], tonumber(ARGV[b + 3]), ARGV[b + 4]\n"
    "  if t == 'c' then\n"
    "    redis.call('ZADD', k, now + tonumber(ARGV[3]), ARGV[2])\n"
    "    redis.call('PEXPIRE', k, ARGV[3])\n"
    "    vals[i] = vals[i] + 1\n"
    "  else\n"
    "    vals[i] = redis.call('INCRBY', k, amt)\n"
    "    redis.call('PEXPIREAT', k, exp)\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[1], '1', 'PX', ARGV[3])\n"
    "return {1, 0, unpack(vals)}\n";

/* KEYS[1]: the ticket's marker (deleting it makes the settle count once);
 * KEYS[2..]: counters.  ARGV: ticket id, then per counter: type, delta. */
static const char SETTLE_LUA[] =
    "if redis.call('DEL', KEYS[1]) == 0 then return 0 end\n"
    "for i = 2, #KEYS do\n"
    "  local t, d = ARGV[2 * i - 2], tonumber(ARGV[2 * i - 1])\n"
    "  if t == 'c' then redis.call('ZREM', KEYS[i], ARGV[1])\n"
    "  elseif d ~= 0 and redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], d) end\n"
    "end\n"
    "return 1\n";

static bs_status redis_parse_url(redis_backend *rb, const char *url, bs_error *err) {
    const char *p;
    if (strncmp(url, "redis://", 8) == 0) p = url + 8;
    else return bs_fail(err, BS_EINVAL, "ratelimit: expected redis://[:password@]host[:port][/db], got a URL without redis://");
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p) rb->user = strndup(p, (size_t)(colon - p));
            rb->password = strndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            rb->password = strndup(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0) return bs_fail(err, BS_EINVAL, "ratelimit: redis URL has no host");
    rb->host = strndup(p, hl);
    p += hl;
    rb->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535 || (*end && *end != '/'))
            return bs_fail(err, BS_EINVAL, "ratelimit: redis URL port must be 1..65535");
        rb->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end || db < 0) return bs_fail(err, BS_EINVAL, "ratelimit: redis URL database must be a number");
        rb->db = (int)db;
    }
    return BS_OK;
}

static bs_status redis_simple(redisContext *c, bs_error *err, const char *what, int argc, const char **argv) {
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) return bs_fail(err, BS_EIO, "ratelimit: redis %s: %s", what, c->errstr);
    bs_status st = BS_OK;
    if (r->type == REDIS_REPLY_ERROR) st = bs_fail(err, BS_EIO, "ratelimit: redis %s refused: %s", what, r->str);
    freeReplyObject(r);
    return st;
}

static bs_status redis_connect(redis_backend *rb, redis_conn *c, bs_error *err) {
    if (c->ctx && !c->ctx->err) return BS_OK;
    if (c->ctx) redisFree(c->ctx);
    c->ctx = NULL;
    struct timeval ct = {2, 0}, rt = {5, 0};
    redisContext *ctx = redisConnectWithTimeout(rb->host, rb->port, ct);
    if (!ctx || ctx->err) {
        bs_status st = bs_fail(err, BS_EIO, "ratelimit: cannot connect to redis at %s:%d: %s", rb->host, rb->port,
                               ctx ? ctx->errstr : "out of memory");
        if (ctx) redisFree(ctx);
        return st;
    }
    redisSetTimeout(ctx, rt);
    bs_status st = BS_OK;
    if (rb->password) {
        const char *a[3] = {"AUTH", rb->user ? rb->user : rb->password, rb->password};
        st = redis_simple(ctx, err, "AUTH", rb->user ? 3 : 2, a);
    }
    if (!st && rb->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", rb->db);
        const char *a[2] = {"SELECT", db};
        st = redis_simple(ctx, err, "SELECT", 2, a);
    }
    if (st) {
        redisFree(ctx);
        return st;
    }
    c->ctx = ctx;
    return BS_OK;
}

static bs_status redis_load_scripts(redis_backend *rb, redisContext *c, bs_error *err) {
    const char *src[2] = {ADMIT_LUA, SETTLE_LUA};
    char *dst[2] = {rb->sha_admit, rb->sha_settle};
    for (int i = 0; i < 2; i++) {
        const char *a[3] = {"SCRIPT", "LOAD", src[i]};
        redisReply *r = redisCommandArgv(c, 3, a, NULL);
        if (!r) return bs_fail(err, BS_EIO, "ratelimit: redis SCRIPT LOAD: %s", c->errstr);
        bs_status st = BS_OK;
        if (r->type != REDIS_REPLY_STRING || r->len != 40)
            st = bs_fail(err, BS_EIO, "ratelimit: redis SCRIPT LOAD refused: %s",
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        else {
            pthread_mutex_lock(&rb->sha_mu);
            memcpy(dst[i], r->str, 41);
            pthread_mutex_unlock(&rb->sha_mu);
        }
        freeReplyObject(r);
        if (st) return st;
    }
    return BS_OK;
}

/* EVALSHA script (0 admit, 1 settle) with argv[0..2] left for
 * EVALSHA/sha/numkeys.  Both scripts are idempotent per ticket, so a broken
 * connection is reconnected and the call tried once more; NOSCRIPT (Redis
 * restarted or flushed) reloads the scripts.  The reply is the caller's. */
static bs_status redis_eval(limits *l, int script, int argc, const char **argv, redisReply **out, bs_error *err) {
    redis_backend *rb = l->rb;
    redis_conn *c = &rb->conns[atomic_fetch_add(&rb->next, 1) % REDIS_CONNS];
    pthread_mutex_lock(&c->mu);
    bs_status st = BS_OK;
    *out = NULL;
    for (int attempt = 0; attempt < 3 && !*out; attempt++) {
        if ((st = redis_connect(rb, c, err))) continue;
        char sha[41];
        pthread_mutex_lock(&rb->sha_mu);
        memcpy(sha, script ? rb->sha_settle : rb->sha_admit, sizeof sha);
        pthread_mutex_unlock(&rb->sha_mu);
        argv[0] = "EVALSHA";
        argv[1] = sha;
        redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
        if (!r) {
            st = bs_fail(err, BS_EIO, "ratelimit: redis: %s", c->ctx->errstr);
            continue; /* ctx->err is set: the next attempt reconnects */
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r);
            st = redis_load_scripts(rb, c->ctx, err);
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            st = bs_fail(err, BS_EIO, "ratelimit: redis script failed: %s", r->str);
            freeReplyObject(r);
            break;
        }
        *out = r;
        st = BS_OK;
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

static const char *op_letter(op_type t) { return t == OP_CONC ? "c" : t == OP_BUDGET ? "b" : "w"; }

static int redis_admit(limits *l, limit_ticket *t, int64_t now, bs_error *err, bs_status *st) {
    char keys[MAX_OPS + 1][COUNTER_NAME_MAX + 16];
    char nums[MAX_OPS][3][24], snow[24], slease[24];
    const char *argv[3 + MAX_OPS + 1 + 3 + 4 * MAX_OPS];
    int n = t->n_ops, a = 2;
    char nk[8];
    snprintf(nk, sizeof nk, "%d", n + 1);
    argv[a++] = nk;
    snprintf(keys[0], sizeof keys[0], REDIS_PREFIX "t:%s", t->id);
    argv[a++] = keys[0];
    for (int i = 0; i < n; i++) {
        snprintf(keys[i + 1], sizeof keys[i + 1], REDIS_PREFIX "%s", t->ops[i].name);
        argv[a++] = keys[i + 1];
    }
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    snprintf(slease, sizeof slease, "%d", LIMITS_LEASE_MS);
    argv[a++] = snow;
    argv[a++] = t->id;
    argv[a++] = slease;
    for (int i = 0; i < n; i++) {
        snprintf(nums[i][0], 24, "%lld", (long long)t->ops[i].limit);
        snprintf(nums[i][1], 24, "%lld", (long long)t->ops[i].amount);
        snprintf(nums[i][2], 24, "%lld", (long long)t->ops[i].expire_at_ms);
        argv[a++] = op_letter(t->ops[i].type);
        argv[a++] = nums[i][0];
        argv[a++] = nums[i][1];
        argv[a++] = nums[i][2];
    }
    redisReply *r;
    if ((*st = redis_eval(l, 0, a, argv, &r, err))) return -1;
    int refused = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n + 2) {
        *st = bs_fail(err, BS_EIO, "ratelimit: redis admission script gave an unexpected reply");
    } else {
        for (int i = 0; i < n; i++) t->ops[i].value = r->element[i + 2]->integer;
        if (r->element[0]->integer == 0) refused = (int)r->element[1]->integer - 1;
    }
    freeReplyObject(r);
    return refused;
}

static bs_status redis_settle(limits *l, limit_ticket *t, const int64_t *delta, bs_error *err) {
    char keys[MAX_OPS + 1][COUNTER_NAME_MAX + 16], nums[MAX_OPS][24], nk[8];
    const char *argv[3 + MAX_OPS + 1 + 1 + 2 * MAX_OPS];
    int n = t->n_ops, a = 2;
    snprintf(nk, sizeof nk, "%d", n + 1);
    argv[a++] = nk;
    snprintf(keys[0], sizeof keys[0], REDIS_PREFIX "t:%s", t->id);
    argv[a++] = keys[0];
    for (int i = 0; i < n; i++) {
        snprintf(keys[i + 1], sizeof keys[i + 1], REDIS_PREFIX "%s", t->ops[i].name);
        argv[a++] = keys[i + 1];
    }
    argv[a++] = t->id;
    for (int i = 0; i < n; i++) {
        snprintf(nums[i], 24, "%lld", (long long)delta[i]);
        argv[a++] = op_letter(t->ops[i].type);
        argv[a++] = nums[i];
    }
    redisReply *r;
    bs_status st = redis_eval(l, 1, a, argv, &r, err);
    if (!st) freeReplyObject(r);
    return st;
}

/* One plain command on a pooled connection; reply is the caller's. */
static bs_status redis_command(limits *l, int argc, const char **argv, redisReply **out, bs_error *err) {
    redis_backend *rb = l->rb;
    redis_conn *c = &rb->conns[atomic_fetch_add(&rb->next, 1) % REDIS_CONNS];
    pthread_mutex_lock(&c->mu);
    bs_status st = redis_connect(rb, c, err);
    *out = NULL;
    if (!st) {
        redisReply *r = redisCommandArgv(c->ctx, argc, argv, NULL);
        if (!r) st = bs_fail(err, BS_EIO, "ratelimit: redis %s: %s", argv[0], c->ctx->errstr);
        else if (r->type == REDIS_REPLY_ERROR) {
            st = bs_fail(err, BS_EIO, "ratelimit: redis %s refused: %s", argv[0], r->str);
            freeReplyObject(r);
        } else *out = r;
    }
    pthread_mutex_unlock(&c->mu);
    return st;
}

static bs_status redis_value(limits *l, const char *name, int conc, int64_t now, int64_t *out, bs_error *err) {
    char key[COUNTER_NAME_MAX + 16], min[24];
    snprintf(key, sizeof key, REDIS_PREFIX "%s", name);
    snprintf(min, sizeof min, "(%lld", (long long)now);
    const char *get[2] = {"GET", key}, *zc[4] = {"ZCOUNT", key, min, "+inf"};
    redisReply *r;
    bs_status st = conc ? redis_command(l, 4, zc, &r, err) : redis_command(l, 2, get, &r, err);
    if (st) return st;
    *out = r->type == REDIS_REPLY_INTEGER ? r->integer : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return BS_OK;
}

/* ------------------------------------------------------------ open / close */

static void redis_free(redis_backend *rb) {
    if (!rb) return;
    for (int i = 0; i < REDIS_CONNS; i++) {
        if (rb->conns[i].ctx) redisFree(rb->conns[i].ctx);
        pthread_mutex_destroy(&rb->conns[i].mu);
    }
    pthread_mutex_destroy(&rb->sha_mu);
    free(rb->host);
    free(rb->user);
    free(rb->password);
    free(rb);
}

bs_status limits_open(const char *redis_url, limits **out, bs_error *err) {
    *out = NULL;
    limits *l = calloc(1, sizeof *l);
    if (!l) return bs_fail(err, BS_ENOMEM, "limits: out of memory");
    limits_set_clock(l, NULL, NULL);
    bs_status st = BS_OK;
    if (redis_url && *redis_url) {
        redis_backend *rb = calloc(1, sizeof *rb);
        if (!rb) {
            free(l);
            return bs_fail(err, BS_ENOMEM, "limits: out of memory");
        }
        l->rb = rb;
        pthread_mutex_init(&rb->sha_mu, NULL);
        for (int i = 0; i < REDIS_CONNS; i++) pthread_mutex_init(&rb->conns[i].mu, NULL);
        if (!(st = redis_parse_url(rb, redis_url, err)) && !(st = redis_connect(rb, &rb->conns[0], err)))
            st = redis_load_scripts(rb, rb->conns[0].ctx, err);
    } else {
        l->stripes = aligned_alloc(64, sizeof(stripe) * STRIPES);
        if (!l->stripes) st = bs_fail(err, BS_ENOMEM, "limits: out of memory");
        for (int i = 0; !st && i < STRIPES; i++) {
            stripe *s = &l->stripes[i];
            memset(s, 0, sizeof *s);
            pthread_mutex_init(&s->mu, NULL);
            s->n_buckets = 16;
            s->buckets = calloc(s->n_buckets, sizeof *s->buckets);
            if (!s->buckets) st = bs_fail(err, BS_ENOMEM, "limits: out of memory");
        }
    }
    if (st) {
        limits_close(l);
        return st;
    }
    *out = l;
    return BS_OK;
}

void limits_close(limits *l) {
    if (!l) return;
    redis_free(l->rb);
    if (l->stripes) {
        for (int i = 0; i < STRIPES; i++) {
            stripe *s = &l->stripes[i];
            for (size_t b = 0; s->buckets && b < s->n_buckets; b++)
                for (entry *e = s->buckets[b], *next; e; e = next) {
                    next = e->next;
                    free(e);
                }
            free(s->buckets);
            pthread_mutex_destroy(&s->mu);
        }
        free(l->stripes);
    }
    free(l);
}

/* ------------------------------------------------------------ admit / settle */

bs_status limits_admit(limits *l, const limit_request *req, limit_ticket **out, limit_denial *denial, bs_error *err) {
    *out = NULL;
    limit_ticket *t = calloc(1, sizeof *t);
    if (!t) return bs_fail(err, BS_ENOMEM, "limits: out of memory");
    int64_t now = l->clock(l->clock_ctx);
    bs_status st = make_plan(req, now, t->ops, &t->n_ops, err);
    if (st) {
        free(t);
        return st;
    }
    random_hex(t->id, 16);
    int refused = l->rb ? redis_admit(l, t, now, err, &st) : mem_admit(l, t->ops, t->n_ops, now, err, &st);
    if (st) {
        free(t);
        return st;
    }
    t->state = plan_state(t->ops, t->n_ops);
    if (refused >= 0) {
        const counter_op *op = &t->ops[refused];
        memset(denial, 0, sizeof *denial);
        denial->kind = op->kind;
        denial->model_limit = op->model_limit;
        denial->limit = op->limit;
        denial->remaining = op->limit > op->value ? op->limit - op->value : 0;
        denial->reset_ms = op->reset_ms;
        denial->retry_after_s = (int)((op->reset_ms + 999) / 1000);
        if (denial->retry_after_s < 1) denial->retry_after_s = 1;
        denial->exceeds_limit = op->amount > op->limit;
        denial->state = t->state;
        free(t);
        return BS_EBUSY;
    }
    *out = t;
    return BS_OK;
}

bs_status limits_settle(limits *l, limit_ticket *t, int64_t actual_tokens, int64_t actual_cost_micros, bs_error *err) {
    if (!t || t->settled) return BS_OK;
    if (actual_tokens < 0 || actual_cost_micros < 0)
        return bs_fail(err, BS_EINVAL, "limits_settle: actual tokens and cost must be >= 0");
    int64_t delta[MAX_OPS];
    for (int i = 0; i < t->n_ops; i++) {
        const counter_op *op = &t->ops[i];
        delta[i] = op->type == OP_CONC              ? -1
                   : op->type == OP_BUDGET          ? actual_cost_micros - op->amount
                   : op->kind == LIMIT_TOKENS       ? actual_tokens - op->amount
                                                    : 0;
    }
    if (l->rb) {
        bs_status st = redis_settle(l, t, delta, err);
        if (st) return st;
    } else {
        mem_settle(l, t, delta, l->clock(l->clock_ctx));
    }
    t->settled = 1;
    return BS_OK;
}

void limit_ticket_free(limits *l, limit_ticket *t) {
    if (!t) return;
    if (!t->settled) {
        int64_t tokens = 0, cost = 0;
        for (int i = 0; i < t->n_ops; i++) {
            if (t->ops[i].kind == LIMIT_TOKENS) tokens = t->ops[i].amount;
            if (t->ops[i].kind == LIMIT_BUDGET) cost = t->ops[i].amount;
        }
        bs_error err;
        limits_settle(l, t, tokens, cost, &err); /* best effort: Redis leases expire anyway */
    }
    free(t);
}

const limit_state *limit_ticket_state(const limit_ticket *t) { return &t->state; }

/* ------------------------------------------------------------ headers */

void limits_format_duration(int64_t ms, char *buf, size_t size) {
    if (ms < 0) ms = 0;
    if (ms < 1000) {
        snprintf(buf, size, ms ? "%lldms" : "0s", (long long)ms);
        return;
    }
    long long h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    char secs[24];
    if (frac) {
        int len = snprintf(secs, sizeof secs, "%lld.%03lld", s, frac);
        while (secs[len - 1] == '0') secs[--len] = 0;
        strcat(secs, "s");
    } else {
        snprintf(secs, sizeof secs, "%llds", s);
    }
    if (h) snprintf(buf, size, "%lldh%lldm%s", h, m, secs);
    else if (m) snprintf(buf, size, "%lldm%s", m, secs);
    else snprintf(buf, size, "%s", secs);
}

static void window_headers(const limit_window *w, const char *what,
                           void (*add)(void *ctx, const char *name, const char *value), void *ctx) {
    if (!w->set) return;
    char name[48], value[32];
    snprintf(name, sizeof name, "x-ratelimit-limit-%s", what);
    snprintf(value, sizeof value, "%lld", (long long)w->limit);
    add(ctx, name, value);
    snprintf(name, sizeof name, "x-ratelimit-remaining-%s", what);
    snprintf(value, sizeof value, "%lld", (long long)w->remaining);
    add(ctx, name, value);
    snprintf(name, sizeof name, "x-ratelimit-reset-%s", what);
    limits_format_duration(w->reset_ms, value, sizeof value);
    add(ctx, name, value);
}

void limits_headers(const limit_state *st, int retry_after_s,
                    void (*add)(void *ctx, const char *name, const char *value), void *ctx) {
    window_headers(&st->requests, "requests", add, ctx);
    window_headers(&st->tokens, "tokens", add, ctx);
    if (retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after_s);
        add(ctx, "Retry-After", v);
    }
}

/* ------------------------------------------------------------ seeding and usage */

static void budget_name(char *buf, size_t size, const char *key_id, limit_period p, int64_t period_start) {
    snprintf(buf, size, p == LIMIT_PERIOD_MONTH ? "bm:%s:%lld" : "bd:%s:%lld", key_id, (long long)period_start);
}

bs_status limits_seed_spend(limits *l, const char *key_id, limit_period period, int64_t period_start,
                            int64_t spent_micros, bs_error *err) {
    bs_status st;
    if (!key_id) return bs_fail(err, BS_EINVAL, "key_id: required");
    if ((st = check_name("key_id", key_id, err))) return st;
    char name[COUNTER_NAME_MAX];
    budget_name(name, sizeof name, key_id, period, period_start);
    int64_t expire = limits_period_end(period, period_start) * 1000 + DAY_MS;
    if (!l->rb) return mem_seed(l, name, spent_micros, expire, l->clock(l->clock_ctx), err);
    char key[COUNTER_NAME_MAX + 16], v[24], e[24];
    snprintf(key, sizeof key, REDIS_PREFIX "%s", name);
    snprintf(v, sizeof v, "%lld", (long long)spent_micros);
    snprintf(e, sizeof e, "%lld", (long long)expire);
    const char *argv[6] = {"SET", key, v, "PXAT", e, "NX"};
    redisReply *r;
    if ((st = redis_command(l, 6, argv, &r, err))) return st;
    freeReplyObject(r);
    return BS_OK;
}

bs_status limits_usage(limits *l, const char *key_id, limit_period period, const char *model, limit_usage *out,
                       bs_error *err) {
    memset(out, 0, sizeof *out);
    int64_t now = l->clock(l->clock_ctx), ws = now / WINDOW_MS * WINDOW_MS;
    enum { N = 7 };
    char names[N][COUNTER_NAME_MAX];
    int64_t *dst[N] = {&out->requests,       &out->tokens,       &out->in_flight,       &out->spent_micros,
                       &out->model_requests, &out->model_tokens, &out->model_in_flight};
    const char *fmts[N] = {"rq:%s:%lld", "tk:%s:%lld", "cc:%s", NULL, "mrq:%s:%lld", "mtk:%s:%lld", "mcc:%s"};
    bs_status st;
    if ((st = check_name("key_id", key_id, err)) || (st = check_name("model", model, err))) return st;
    for (int i = 0; i < N; i++) {
        const char *id = i < 4 ? key_id : model;
        int conc = i == 2 || i == 6;
        if (!id) continue;
        if (i == 3) budget_name(names[i], sizeof names[i], key_id, period, limits_period_start(period, now / 1000));
        else if (conc) snprintf(names[i], sizeof names[i], fmts[i], id);
        else snprintf(names[i], sizeof names[i], fmts[i], id, (long long)ws);
        if (!l->rb) *dst[i] = mem_value(l, names[i], now);
        else if ((st = redis_value(l, names[i], conc, now, dst[i], err))) return st;
    }
    return BS_OK;
}
