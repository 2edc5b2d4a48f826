/* Tests for gateway/limits: 1000 parallel admissions against one key's TPM
 * and budget admit exactly the limit and settle to the exact sum of actual
 * usage; concurrency never exceeds its cap; windows reset with the clock;
 * per-model limits span keys (a model's concurrency cap included: N parallel
 * reservations admit exactly K); denial headers are exact; settle counts once.
 * Each scenario runs on the in-process backend and, when
 * BASALT_TEST_REDIS_URL is set, on Redis with two handles ("replicas")
 * sharing one quota. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "../support/test.h"
#include "gateway/limits.h"

#define N_REQ 1000
#define N_THREADS 16

static int64_t fixed_clock(void *ctx) { return *(int64_t *)ctx; }

/* A clock frozen 1.5 s into the current minute: Redis expires keys by its
 * own real clock, so the frozen time must be close to the real one. */
static int64_t frozen_now(void) {
    return (int64_t)time(NULL) / 60 * 60000 + 1500;
}

/* Key ids unique per run, so Redis counters of earlier runs never count. */
static void unique_id(char *buf, size_t size, const char *what) {
    static atomic_int seq;
    snprintf(buf, size, "%s-%d-%lld-%d", what, (int)getpid(), (long long)time(NULL), atomic_fetch_add(&seq, 1));
}

typedef struct backend {
    limits *a, *b; /* b: a second replica (Redis) or a itself */
    int64_t now;
} backend;

static int open_backend(backend *be, int redis) {
    bs_error err = {0};
    const char *url = redis ? getenv("BASALT_TEST_REDIS_URL") : NULL;
    memset(be, 0, sizeof *be);
    be->now = frozen_now();
    if (limits_open(url, &be->a, &err) != BS_OK) {
        fprintf(stderr, "  limits_open: %s\n", err.msg);
        test_failed_ = 1;
        return 0;
    }
    be->b = be->a;
    if (redis && limits_open(url, &be->b, &err) != BS_OK) {
        fprintf(stderr, "  limits_open (second replica): %s\n", err.msg);
        test_failed_ = 1;
        limits_close(be->a);
        return 0;
    }
    limits_set_clock(be->a, fixed_clock, &be->now);
    limits_set_clock(be->b, fixed_clock, &be->now);
    return 1;
}

static void close_backend(backend *be) {
    if (be->b != be->a) limits_close(be->b);
    limits_close(be->a);
}

/* ------------------------------------------------------------ 1000 parallel requests */

typedef struct par {
    backend *be;
    limit_request req;
    limit_kind expect_denial;
    atomic_int next, admitted, wrong_denials, errors, settle_errors;
    limit_ticket *tickets[N_REQ];
    int64_t actual[N_REQ];
} par;

static void *admit_worker(void *arg) {
    par *p = arg;
    for (int i; (i = atomic_fetch_add(&p->next, 1)) < N_REQ;) {
        limits *l = i % 2 ? p->be->b : p->be->a;
        limit_denial d;
        bs_error err = {0};
        bs_status st = limits_admit(l, &p->req, &p->tickets[i], &d, &err);
        if (st == BS_OK) atomic_fetch_add(&p->admitted, 1);
        else if (st == BS_EBUSY) {
            if (d.kind != p->expect_denial || d.exceeds_limit) atomic_fetch_add(&p->wrong_denials, 1);
        } else {
            fprintf(stderr, "  admit: %s\n", err.msg);
            atomic_fetch_add(&p->errors, 1);
        }
    }
    return NULL;
}

static void *settle_worker(void *arg) {
    par *p = arg;
    for (int i; (i = atomic_fetch_add(&p->next, 1)) < N_REQ;) {
        if (!p->tickets[i]) continue;
        limits *l = i % 2 ? p->be->b : p->be->a;
        bs_error err = {0};
        int tokens = p->req.key_tpm > 0, cost = p->req.key_budget_micros > 0;
        if ((tokens && limits_settle(l, p->tickets[i], p->actual[i], 0, &err) != BS_OK) ||
            (cost && limits_settle(l, p->tickets[i], 0, p->actual[i], &err) != BS_OK)) {
            fprintf(stderr, "  settle: %s\n", err.msg);
            atomic_fetch_add(&p->settle_errors, 1);
        }
        limit_ticket_free(l, p->tickets[i]);
    }
    return NULL;
}

static void run_phase(par *p, void *(*fn)(void *)) {
    pthread_t th[N_THREADS];
    atomic_store(&p->next, 0);
    for (int i = 0; i < N_THREADS; i++) pthread_create(&th[i], NULL, fn, p);
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
}

/* All admissions first (tickets held, so the settled-back tokens cannot
 * admit more in the same window), then all settles. */
static void parallel_quota(int redis, int budget) {
    backend be;
    if (!open_backend(&be, redis)) return;
    par *p = calloc(1, sizeof *p);
    char key[96];
    unique_id(key, sizeof key, budget ? "budget" : "tpm");
    p->be = &be;
    p->req = (limit_request){.key_id = key, .tokens = 100, .cost_micros = 10000};
    if (budget) {
        p->req.key_budget_micros = 5000000; /* $5 at $0.01 reserved each */
        p->req.budget_period = LIMIT_PERIOD_MONTH;
        p->expect_denial = LIMIT_BUDGET;
    } else {
        p->req.key_tpm = 50000;
        p->expect_denial = LIMIT_TOKENS;
    }
    unsigned seed = 12345;
    int64_t lo = budget ? 4000 : 40, span = budget ? 6001 : 61, sum = 0;
    for (int i = 0; i < N_REQ; i++) p->actual[i] = lo + rand_r(&seed) % span;
    run_phase(p, admit_worker);
    CHECK_INT(atomic_load(&p->admitted), 500);
    CHECK_INT(atomic_load(&p->wrong_denials), 0);
    CHECK_INT(atomic_load(&p->errors), 0);
    for (int i = 0; i < N_REQ; i++)
        if (p->tickets[i]) sum += p->actual[i];
    limit_usage u;
    bs_error err = {0};
    CHECK_OK(limits_usage(be.a, key, LIMIT_PERIOD_MONTH, NULL, &u, &err), &err);
    CHECK_INT(budget ? u.spent_micros : u.tokens, 500 * (budget ? 10000 : 100));
    run_phase(p, settle_worker);
    CHECK_INT(atomic_load(&p->settle_errors), 0);
    CHECK_OK(limits_usage(be.b, key, LIMIT_PERIOD_MONTH, NULL, &u, &err), &err);
    CHECK_INT(budget ? u.spent_micros : u.tokens, sum);
    CHECK_INT(u.in_flight, 0);
    free(p);
    close_backend(&be);
}

/* ------------------------------------------------------------ concurrency */

typedef struct conc {
    backend *be;
    limit_request req;
    atomic_int in_flight, max_in_flight, admitted, refused, bad;
} conc;

static void *conc_worker(void *arg) {
    conc *c = arg;
    for (int i = 0; i < 40; i++) {
        limits *l = i % 2 ? c->be->b : c->be->a;
        limit_ticket *t;
        limit_denial d;
        bs_error err = {0};
        bs_status st = limits_admit(l, &c->req, &t, &d, &err);
        if (st == BS_EBUSY) {
            atomic_fetch_add(&c->refused, 1);
            if (d.kind != LIMIT_CONCURRENCY || d.remaining != 0 || d.retry_after_s != 1) atomic_fetch_add(&c->bad, 1);
            continue;
        }
        if (st != BS_OK) {
            atomic_fetch_add(&c->bad, 1);
            continue;
        }
        int now = atomic_fetch_add(&c->in_flight, 1) + 1;
        for (int m = atomic_load(&c->max_in_flight); now > m && !atomic_compare_exchange_weak(&c->max_in_flight, &m, now);)
            ;
        atomic_fetch_add(&c->admitted, 1);
        usleep(200);
        /* Leave the section before the slot is released, or a newcomer
         * could be counted while this request still looks in flight. */
        atomic_fetch_sub(&c->in_flight, 1);
        if (limits_settle(l, t, 0, 0, &err) != BS_OK) atomic_fetch_add(&c->bad, 1);
        limit_ticket_free(l, t);
    }
    return NULL;
}

static void concurrency_cap(int redis) {
    backend be;
    if (!open_backend(&be, redis)) return;
    conc *c = calloc(1, sizeof *c);
    char key[96];
    unique_id(key, sizeof key, "conc");
    c->be = &be;
    c->req = (limit_request){.key_id = key, .key_max_concurrent = 4, .tokens = 10};
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) pthread_create(&th[i], NULL, conc_worker, c);
    for (int i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    CHECK(atomic_load(&c->max_in_flight) <= 4);
    CHECK(atomic_load(&c->max_in_flight) >= 1);
    CHECK_INT(atomic_load(&c->admitted) + atomic_load(&c->refused), N_THREADS * 40);
    CHECK_INT(atomic_load(&c->bad), 0);
    limit_usage u;
    bs_error err = {0};
    CHECK_OK(limits_usage(be.a, key, LIMIT_PERIOD_DAY, NULL, &u, &err), &err);
    CHECK_INT(u.in_flight, 0);
    free(c);
    close_backend(&be);
}

/* ------------------------------------------------------------ windows, models, headers */

static bs_status admit_settle(limits *l, const limit_request *r, limit_denial *d) {
    limit_ticket *t;
    bs_error err = {0};
    bs_status st = limits_admit(l, r, &t, d, &err);
    if (st == BS_OK) {
        limits_settle(l, t, r->tokens, r->cost_micros, &err);
        limit_ticket_free(l, t);
    }
    return st;
}

static void rpm_window_reset(int redis) {
    backend be;
    if (!open_backend(&be, redis)) return;
    char key[96];
    unique_id(key, sizeof key, "rpm");
    limit_request r = {.key_id = key, .key_rpm = 3, .tokens = 1};
    limit_denial d;
    for (int i = 0; i < 3; i++) CHECK_INT(admit_settle(i % 2 ? be.b : be.a, &r, &d), BS_OK);
    CHECK_INT(admit_settle(be.b, &r, &d), BS_EBUSY);
    CHECK_INT(d.kind, LIMIT_REQUESTS);
    CHECK_INT(d.limit, 3);
    CHECK_INT(d.remaining, 0);
    CHECK_INT(d.reset_ms, 58500);
    CHECK_INT(d.retry_after_s, 59);
    be.now += 58499; /* still the same window */
    CHECK_INT(admit_settle(be.a, &r, &d), BS_EBUSY);
    CHECK_INT(d.reset_ms, 1);
    be.now += 1; /* the next minute: a fresh window */
    CHECK_INT(admit_settle(be.a, &r, &d), BS_OK);
    close_backend(&be);
}

static void model_limits_span_keys(int redis) {
    backend be;
    if (!open_backend(&be, redis)) return;
    char ka[96], kb[96], model[96];
    unique_id(ka, sizeof ka, "ka");
    unique_id(kb, sizeof kb, "kb");
    unique_id(model, sizeof model, "model");
    limit_request a = {.key_id = ka, .key_rpm = 100, .model = model, .model_rpm = 5, .model_tpm = 1000, .tokens = 100};
    limit_request b = a;
    b.key_id = kb;
    limit_denial d;
    for (int i = 0; i < 3; i++) CHECK_INT(admit_settle(be.a, &a, &d), BS_OK);
    for (int i = 0; i < 2; i++) CHECK_INT(admit_settle(be.b, &b, &d), BS_OK);
    CHECK_INT(admit_settle(be.b, &b, &d), BS_EBUSY);
    CHECK_INT(d.kind, LIMIT_REQUESTS);
    CHECK_INT(d.model_limit, 1);
    CHECK_INT(d.limit, 5);
    /* The headers report the tighter of key (95 left) and model (0 left). */
    CHECK_INT(d.state.requests.limit, 5);
    CHECK_INT(d.state.requests.remaining, 0);
    /* A refusal reserved nothing: key b has used exactly its 2 requests. */
    limit_usage u;
    bs_error err = {0};
    CHECK_OK(limits_usage(be.a, kb, LIMIT_PERIOD_DAY, model, &u, &err), &err);
    CHECK_INT(u.requests, 2);
    CHECK_INT(u.model_requests, 5);
    CHECK_INT(u.model_tokens, 500);
    close_backend(&be);
}

/* N threads reserve at once against a model's max_concurrent K (from two
 * keys, over both replicas) and hold their tickets: exactly K are admitted,
 * the rest refused for the model's concurrency; settling one frees exactly
 * one slot, and settling all leaves nothing in flight. */
#define MODEL_CONC_K 3
#define MODEL_CONC_N 24

typedef struct mconc {
    backend *be;
    limit_request req[2];
    pthread_barrier_t go;
    limit_ticket *tickets[MODEL_CONC_N];
    int refused_right[MODEL_CONC_N], other[MODEL_CONC_N];
} mconc;

typedef struct mconc_arg {
    mconc *m;
    int i;
} mconc_arg;

static void *mconc_worker(void *arg) {
    mconc_arg *a = arg;
    mconc *m = a->m;
    limits *l = a->i % 2 ? m->be->b : m->be->a;
    limit_denial d;
    bs_error err = {0};
    pthread_barrier_wait(&m->go);
    bs_status st = limits_admit(l, &m->req[a->i % 2], &m->tickets[a->i], &d, &err);
    if (st == BS_EBUSY)
        m->refused_right[a->i] = d.kind == LIMIT_CONCURRENCY && d.model_limit == 1 && d.limit == MODEL_CONC_K &&
                                 d.remaining == 0 && d.retry_after_s == 1 && !d.exceeds_limit;
    else if (st != BS_OK) m->other[a->i] = 1;
    return NULL;
}

static void model_concurrency_cap(int redis) {
    backend be;
    if (!open_backend(&be, redis)) return;
    mconc *m = calloc(1, sizeof *m);
    char ka[96], kb[96], model[96];
    unique_id(ka, sizeof ka, "mcka");
    unique_id(kb, sizeof kb, "mckb");
    unique_id(model, sizeof model, "mcmodel");
    m->be = &be;
    /* The keys' own caps are far above the model's: only the model refuses. */
    m->req[0] = (limit_request){.key_id = ka, .key_max_concurrent = 100, .model = model,
                                .model_max_concurrent = MODEL_CONC_K, .tokens = 10};
    m->req[1] = m->req[0];
    m->req[1].key_id = kb;
    pthread_barrier_init(&m->go, NULL, MODEL_CONC_N);
    pthread_t th[MODEL_CONC_N];
    mconc_arg args[MODEL_CONC_N];
    for (int i = 0; i < MODEL_CONC_N; i++) {
        args[i] = (mconc_arg){m, i};
        pthread_create(&th[i], NULL, mconc_worker, &args[i]);
    }
    for (int i = 0; i < MODEL_CONC_N; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&m->go);
    int admitted = 0, refused_right = 0, other = 0, held = -1;
    for (int i = 0; i < MODEL_CONC_N; i++) {
        if (m->tickets[i]) {
            admitted++;
            held = i;
        }
        refused_right += m->refused_right[i];
        other += m->other[i];
    }
    CHECK_INT(admitted, MODEL_CONC_K);
    CHECK_INT(refused_right, MODEL_CONC_N - MODEL_CONC_K);
    CHECK_INT(other, 0);
    limit_usage u;
    bs_error err = {0};
    CHECK_OK(limits_usage(be.a, NULL, LIMIT_PERIOD_DAY, model, &u, &err), &err);
    CHECK_INT(u.model_in_flight, MODEL_CONC_K);
    /* Full: a newcomer from either key is refused and reserves nothing. */
    limit_ticket *t = NULL;
    limit_denial d;
    CHECK_INT(limits_admit(be.b, &m->req[0], &t, &d, &err), BS_EBUSY);
    CHECK_INT(d.kind, LIMIT_CONCURRENCY);
    CHECK_INT(d.model_limit, 1);
    /* Settling one frees exactly one slot. */
    if (held >= 0) {
        CHECK_OK(limits_settle(be.a, m->tickets[held], 0, 0, &err), &err);
        limit_ticket_free(be.a, m->tickets[held]);
        m->tickets[held] = NULL;
    }
    CHECK_OK(limits_admit(be.b, &m->req[1], &t, &d, &err), &err);
    limit_ticket *t2 = NULL;
    CHECK_INT(limits_admit(be.a, &m->req[0], &t2, &d, &err), BS_EBUSY);
    CHECK_OK(limits_usage(be.b, kb, LIMIT_PERIOD_DAY, model, &u, &err), &err);
    CHECK_INT(u.model_in_flight, MODEL_CONC_K);
    limit_ticket_free(be.b, t); /* dropped unsettled: the slot is still freed */
    for (int i = 0; i < MODEL_CONC_N; i++)
        if (m->tickets[i]) {
            CHECK_OK(limits_settle(i % 2 ? be.b : be.a, m->tickets[i], 0, 0, &err), &err);
            limit_ticket_free(i % 2 ? be.b : be.a, m->tickets[i]);
        }
    CHECK_OK(limits_usage(be.a, ka, LIMIT_PERIOD_DAY, model, &u, &err), &err);
    CHECK_INT(u.model_in_flight, 0);
    CHECK_INT(u.in_flight, 0);
    free(m);
    close_backend(&be);
}

typedef struct hdrs {
    char text[1024];
} hdrs;

static void add_header(void *ctx, const char *name, const char *value) {
    hdrs *h = ctx;
    size_t len = strlen(h->text);
    snprintf(h->text + len, sizeof h->text - len, "%s: %s\n", name, value);
}

static void denial_headers_exact(int redis) {
    backend be;
    if (!open_backend(&be, redis)) return;
    be.now += 14000; /* 15.5 s into the minute: 44.5 s to the reset */
    char key[96];
    unique_id(key, sizeof key, "hdr");
    limit_request r = {.key_id = key, .key_rpm = 10, .key_tpm = 1000, .tokens = 400};
    limit_ticket *first, *t;
    limit_denial d;
    bs_error err = {0};
    CHECK_INT(limits_admit(be.a, &r, &first, &d, &err), BS_OK);
    hdrs h = {{0}};
    limits_headers(limit_ticket_state(first), 0, add_header, &h);
    CHECK_STR(h.text, "x-ratelimit-limit-requests: 10\n"
                      "x-ratelimit-remaining-requests: 9\n"
                      "x-ratelimit-reset-requests: 44.5s\n"
                      "x-ratelimit-limit-tokens: 1000\n"
                      "x-ratelimit-remaining-tokens: 600\n"
                      "x-ratelimit-reset-tokens: 44.5s\n");
    r.tokens = 700;
    CHECK_INT(limits_admit(be.b, &r, &t, &d, &err), BS_EBUSY);
    CHECK_INT(d.kind, LIMIT_TOKENS);
    CHECK_INT(d.exceeds_limit, 0);
    h.text[0] = 0;
    limits_headers(&d.state, d.retry_after_s, add_header, &h);
    CHECK_STR(h.text, "x-ratelimit-limit-requests: 10\n"
                      "x-ratelimit-remaining-requests: 9\n"
                      "x-ratelimit-reset-requests: 44.5s\n"
                      "x-ratelimit-limit-tokens: 1000\n"
                      "x-ratelimit-remaining-tokens: 600\n"
                      "x-ratelimit-reset-tokens: 44.5s\n"
                      "Retry-After: 45\n");
    /* More than the whole limit can never pass: say so. */
    r.tokens = 1001;
    CHECK_INT(limits_admit(be.a, &r, &t, &d, &err), BS_EBUSY);
    CHECK_INT(d.exceeds_limit, 1);
    limit_ticket_free(be.a, first);
    close_backend(&be);
}

static void settle_once(int redis) {
    backend be;
    if (!open_backend(&be, redis)) return;
    char key[96];
    unique_id(key, sizeof key, "once");
    limit_request r = {.key_id = key, .key_tpm = 1000, .key_max_concurrent = 2, .key_budget_micros = 1000000,
                       .budget_period = LIMIT_PERIOD_DAY, .tokens = 300, .cost_micros = 3000};
    limit_ticket *t, *failed;
    limit_denial d;
    bs_error err = {0};
    CHECK_OK(limits_admit(be.a, &r, &t, &d, &err), &err);
    CHECK_OK(limits_admit(be.b, &r, &failed, &d, &err), &err);
    CHECK_OK(limits_settle(be.a, t, 120, 1200, &err), &err);
    CHECK_OK(limits_settle(be.a, t, 999, 9999, &err), &err); /* a no-op */
    CHECK_OK(limits_settle(be.b, failed, 0, 0, &err), &err);  /* the request failed: nothing used */
    limit_ticket_free(be.a, t);
    limit_ticket_free(be.b, failed);
    limit_usage u;
    CHECK_OK(limits_usage(be.a, key, LIMIT_PERIOD_DAY, NULL, &u, &err), &err);
    CHECK_INT(u.tokens, 120);
    CHECK_INT(u.spent_micros, 1200);
    CHECK_INT(u.in_flight, 0);
    /* A ticket dropped unsettled is charged its reservation, slot freed. */
    CHECK_OK(limits_admit(be.a, &r, &t, &d, &err), &err);
    limit_ticket_free(be.a, t);
    CHECK_OK(limits_usage(be.b, key, LIMIT_PERIOD_DAY, NULL, &u, &err), &err);
    CHECK_INT(u.tokens, 420);
    CHECK_INT(u.spent_micros, 4200);
    CHECK_INT(u.in_flight, 0);
    close_backend(&be);
}

static void seeded_budget(int redis) {
    backend be;
    if (!open_backend(&be, redis)) return;
    char key[96];
    unique_id(key, sizeof key, "seed");
    bs_error err = {0};
    int64_t start = limits_period_start(LIMIT_PERIOD_MONTH, be.now / 1000);
    CHECK_OK(limits_seed_spend(be.a, key, LIMIT_PERIOD_MONTH, start, limits_micros(4.99), &err), &err);
    /* Seeding again (another replica starting) adds nothing. */
    CHECK_OK(limits_seed_spend(be.b, key, LIMIT_PERIOD_MONTH, start, limits_micros(4.99), &err), &err);
    limit_request r = {.key_id = key, .key_budget_micros = limits_micros(5.0), .budget_period = LIMIT_PERIOD_MONTH,
                       .cost_micros = 10000};
    limit_denial d;
    CHECK_INT(admit_settle(be.a, &r, &d), BS_OK); /* exactly reaches $5.00 */
    r.cost_micros = 0;                             /* even an unpriced request: the budget is spent */
    CHECK_INT(admit_settle(be.b, &r, &d), BS_EBUSY);
    CHECK_INT(d.kind, LIMIT_BUDGET);
    CHECK_INT(d.remaining, 0);
    CHECK_INT(d.reset_ms, limits_period_end(LIMIT_PERIOD_MONTH, be.now / 1000) * 1000 - be.now);
    limit_usage u;
    CHECK_OK(limits_usage(be.a, key, LIMIT_PERIOD_MONTH, NULL, &u, &err), &err);
    CHECK_INT(u.spent_micros, 5000000);
    close_backend(&be);
}

/* ------------------------------------------------------------ the test list */

static void test_memory_tpm_1000_parallel(void) { parallel_quota(0, 0); }
static void test_memory_budget_1000_parallel(void) { parallel_quota(0, 1); }
static void test_memory_concurrency_cap(void) { concurrency_cap(0); }
static void test_memory_rpm_window_reset(void) { rpm_window_reset(0); }
static void test_memory_model_limits_span_keys(void) { model_limits_span_keys(0); }
static void test_memory_model_concurrency_cap(void) { model_concurrency_cap(0); }
static void test_memory_denial_headers(void) { denial_headers_exact(0); }
static void test_memory_settle_once(void) { settle_once(0); }
static void test_memory_seeded_budget(void) { seeded_budget(0); }

#define NEED_REDIS()                                                                                       \
    do {                                                                                                   \
        if (!getenv("BASALT_TEST_REDIS_URL")) SKIP("BASALT_TEST_REDIS_URL not set (tests/support/services.sh starts redis)"); \
    } while (0)

static void test_redis_tpm_two_replicas(void) { NEED_REDIS(); parallel_quota(1, 0); }
static void test_redis_budget_two_replicas(void) { NEED_REDIS(); parallel_quota(1, 1); }
static void test_redis_concurrency_cap(void) { NEED_REDIS(); concurrency_cap(1); }
static void test_redis_rpm_window_reset(void) { NEED_REDIS(); rpm_window_reset(1); }
static void test_redis_model_limits_span_keys(void) { NEED_REDIS(); model_limits_span_keys(1); }
static void test_redis_model_concurrency_cap(void) { NEED_REDIS(); model_concurrency_cap(1); }
static void test_redis_denial_headers(void) { NEED_REDIS(); denial_headers_exact(1); }
static void test_redis_settle_once(void) { NEED_REDIS(); settle_once(1); }
static void test_redis_seeded_budget(void) { NEED_REDIS(); seeded_budget(1); }

/* Redis flushed its scripts (NOSCRIPT) and dropped every connection: the
 * next admission reloads and reconnects without the caller noticing. */
static void test_redis_recovers(void) {
    NEED_REDIS();
    backend be;
    if (!open_backend(&be, 1)) return;
    char key[96];
    unique_id(key, sizeof key, "recover");
    limit_request r = {.key_id = key, .key_rpm = 100, .tokens = 1};
    limit_denial d;
    for (int i = 0; i < 4; i++) CHECK_INT(admit_settle(be.a, &r, &d), BS_OK); /* every pooled connection */
    const char *url = getenv("BASALT_TEST_REDIS_URL");
    const char *hp = strstr(url, "://") + 3;
    char host[64] = {0};
    int port = 6379;
    sscanf(hp, "%63[^:/]:%d", host, &port);
    redisContext *c = redisConnect(host, port);
    CHECK(c && !c->err);
    redisReply *rep = redisCommand(c, "SCRIPT FLUSH");
    CHECK(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    rep = redisCommand(c, "CLIENT KILL TYPE normal");
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer >= 4);
    freeReplyObject(rep);
    redisFree(c);
    for (int i = 0; i < 8; i++) CHECK_INT(admit_settle(i % 2 ? be.b : be.a, &r, &d), BS_OK);
    limit_usage u;
    bs_error err = {0};
    CHECK_OK(limits_usage(be.a, key, LIMIT_PERIOD_DAY, NULL, &u, &err), &err);
    CHECK_INT(u.requests, 12);
    close_backend(&be);
}

static void test_redis_bad_url(void) {
    limits *l = NULL;
    bs_error err = {0};
    CHECK_INT(limits_open("http://localhost:6379", &l, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "redis://") != NULL);
    /* Nothing listens on port 1; the password must not leak into the message. */
    CHECK_INT(limits_open("redis://:hunter2@127.0.0.1:1/0", &l, &err), BS_EIO);
    CHECK(strstr(err.msg, "127.0.0.1:1") != NULL);
    CHECK(strstr(err.msg, "hunter2") == NULL);
    CHECK(l == NULL);
}

static void test_duration_format(void) {
    struct { int64_t ms; const char *want; } cases[] = {
        {0, "0s"}, {20, "20ms"}, {999, "999ms"}, {1000, "1s"}, {1500, "1.5s"}, {44500, "44.5s"},
        {60000, "1m0s"}, {360000, "6m0s"}, {61250, "1m1.25s"}, {3723000, "1h2m3s"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        limits_format_duration(cases[i].ms, buf, sizeof buf);
        CHECK_STR(buf, cases[i].want);
    }
}

static void test_periods(void) {
    /* 2024-02-29 13:00:00 UTC (a leap day). */
    int64_t t = 1709211600;
    CHECK_INT(limits_period_start(LIMIT_PERIOD_DAY, t), 1709164800);
    CHECK_INT(limits_period_end(LIMIT_PERIOD_DAY, t), 1709251200);
    CHECK_INT(limits_period_start(LIMIT_PERIOD_MONTH, t), 1706745600); /* 2024-02-01 */
    CHECK_INT(limits_period_end(LIMIT_PERIOD_MONTH, t), 1709251200);   /* 2024-03-01 */
    /* December rolls into January of the next year. */
    CHECK_INT(limits_period_end(LIMIT_PERIOD_MONTH, 1703980800), 1704067200); /* 2023-12-31 -> 2024-01-01 */
    limit_period p;
    bs_error err = {0};
    CHECK_INT(limit_period_parse("week", &p, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "budget_period") && strstr(err.msg, "\"week\""));
    CHECK_INT(limits_micros(0.0000015), 2);
    CHECK_INT(limits_micros(4.99), 4990000);
}

static void test_invalid_requests(void) {
    limits *l;
    bs_error err = {0};
    CHECK_OK(limits_open(NULL, &l, &err), &err);
    CHECK_STR(limits_backend(l), "memory");
    limit_ticket *t;
    limit_denial d;
    limit_request r = {.key_id = "k", .key_tpm = 10, .tokens = -1};
    CHECK_INT(limits_admit(l, &r, &t, &d, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "tokens") != NULL);
    r = (limit_request){.key_id = "", .key_rpm = 1};
    CHECK_INT(limits_admit(l, &r, &t, &d, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "key_id") != NULL);
    /* No limits at all: admitted, no headers. */
    r = (limit_request){.key_id = "k", .tokens = 5};
    CHECK_OK(limits_admit(l, &r, &t, &d, &err), &err);
    CHECK_INT(limit_ticket_state(t)->requests.set, 0);
    CHECK_INT(limit_ticket_state(t)->tokens.set, 0);
    limit_ticket_free(l, t);
    limits_close(l);
}

int main(void) {
    RUN(test_duration_format);
    RUN(test_periods);
    RUN(test_invalid_requests);
    RUN(test_memory_tpm_1000_parallel);
    RUN(test_memory_budget_1000_parallel);
    RUN(test_memory_concurrency_cap);
    RUN(test_memory_rpm_window_reset);
    RUN(test_memory_model_limits_span_keys);
    RUN(test_memory_model_concurrency_cap);
    RUN(test_memory_denial_headers);
    RUN(test_memory_settle_once);
    RUN(test_memory_seeded_budget);
    RUN(test_redis_bad_url);
    RUN(test_redis_tpm_two_replicas);
    RUN(test_redis_budget_two_replicas);
    RUN(test_redis_concurrency_cap);
    RUN(test_redis_rpm_window_reset);
    RUN(test_redis_model_limits_span_keys);
    RUN(test_redis_model_concurrency_cap);
    RUN(test_redis_denial_headers);
    RUN(test_redis_settle_once);
    RUN(test_redis_seeded_budget);
    RUN(test_redis_recovers);
    TEST_MAIN_END();
}
