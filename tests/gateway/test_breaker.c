/* Tests for gateway/breaker: the closed -> open -> half-open -> closed/open
 * cycle with time passed in, the sliding window, probe slots, stale
 * outcomes, and a multi-threaded run whose counters must add up. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../support/test.h"
#include "gateway/breaker.h"

static const gw_breaker cfg5 = {.min_requests = 5, .failure_rate = 0.5, .window_s = 60, .cooldown_s = 30, .half_open_probes = 1};

static breaker_registry *open_registry(void) {
    breaker_registry *reg = NULL;
    bs_error err = {0};
    CHECK_OK(breaker_registry_open(&reg, &err), &err);
    return reg;
}

/* Admit one request and record its outcome at now; the admit status. */
static bs_status outcome(breaker_registry *reg, const char *name, const gw_breaker *cfg, int ok, double now) {
    breaker_ticket t;
    bs_status st = breaker_admit(reg, name, cfg, now, &t, NULL, NULL);
    if (st == BS_OK) breaker_record(&t, ok, now);
    return st;
}

/* The snapshot of one breaker (zeroed when absent). */
static breaker_info info_of(breaker_registry *reg, const char *name, double now) {
    breaker_info *all, found = {0};
    int n;
    bs_error err = {0};
    CHECK_OK(breaker_list(reg, now, &all, &n, &err), &err);
    for (int i = 0; i < n; i++)
        if (strcmp(all[i].name, name) == 0) found = all[i];
    free(all);
    return found;
}

static void test_closed_under_min_requests(void) {
    breaker_registry *reg = open_registry();
    for (int i = 0; i < 4; i++) CHECK_INT(outcome(reg, "m", &cfg5, 0, i), BS_OK);
    /* 4 of 4 failed, but fewer than min_requests: still closed. */
    CHECK_INT(breaker_state(reg, "m", 4), BREAKER_CLOSED);
    breaker_info in = info_of(reg, "m", 4);
    CHECK_INT(in.window_requests, 4);
    CHECK_INT(in.window_failures, 4);
    CHECK_INT(in.opened, 0);
    breaker_registry_close(reg);
}

static void test_opens_at_rate(void) {
    breaker_registry *reg = open_registry();
    for (int i = 0; i < 3; i++) outcome(reg, "m", &cfg5, 1, 1);
    outcome(reg, "m", &cfg5, 0, 2);
    outcome(reg, "m", &cfg5, 0, 2);
    CHECK_INT(breaker_state(reg, "m", 2), BREAKER_CLOSED); /* 2 of 5: 40 % */
    outcome(reg, "m", &cfg5, 0, 3);
    CHECK_INT(breaker_state(reg, "m", 3), BREAKER_OPEN); /* 3 of 6: 50 % */

    breaker_ticket t;
    double wait = -1;
    bs_error err = {0};
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 13, &t, &wait, &err), BS_EBUSY);
    CHECK(t.entry == NULL);
    CHECK_NEAR(wait, 20, 1e-9);
    CHECK_STR(err.msg, "circuit breaker for m is open; half-open in 20.0 s");
    CHECK_INT(breaker_state(reg, "m", 32.9), BREAKER_OPEN);
    CHECK_INT(breaker_state(reg, "m", 33), BREAKER_HALF_OPEN);
    /* Other names are untouched. */
    CHECK_INT(breaker_state(reg, "other", 13), BREAKER_CLOSED);
    CHECK_INT(outcome(reg, "other", &cfg5, 1, 13), BS_OK);

    breaker_info in = info_of(reg, "m", 13);
    CHECK_INT(in.state, BREAKER_OPEN);
    CHECK_INT(in.admitted, 6);
    CHECK_INT(in.rejected, 1);
    CHECK_INT(in.successes, 3);
    CHECK_INT(in.failures, 3);
    CHECK_INT(in.opened, 1);
    breaker_registry_close(reg);
}

static void test_window_slides(void) {
    breaker_registry *reg = open_registry();
    /* Four failures at t=0..3, then successes; by t=65 the failures have
     * left the 60 s window (one-second buckets). */
    for (int i = 0; i < 4; i++) outcome(reg, "m", &cfg5, 0, i);
    breaker_info in = info_of(reg, "m", 59.5);
    CHECK_INT(in.window_requests, 4);
    in = info_of(reg, "m", 61.5); /* t=0 and t=1 are gone */
    CHECK_INT(in.window_requests, 2);
    in = info_of(reg, "m", 65);
    CHECK_INT(in.window_requests, 0);
    /* A fresh failure alongside old ones outside the window does not open. */
    outcome(reg, "m", &cfg5, 0, 65);
    CHECK_INT(breaker_state(reg, "m", 65), BREAKER_CLOSED);
    in = info_of(reg, "m", 65);
    CHECK_INT(in.window_requests, 1);
    CHECK_INT(in.window_failures, 1);
    breaker_registry_close(reg);
}

/* Open "m" at time t with five failures. */
static void open_at(breaker_registry *reg, const gw_breaker *cfg, double t) {
    for (int i = 0; i < cfg->min_requests; i++) outcome(reg, "m", cfg, 0, t);
    CHECK_INT(breaker_state(reg, "m", t), BREAKER_OPEN);
}

static void test_half_open_probes(void) {
    gw_breaker cfg = cfg5;
    cfg.half_open_probes = 2;
    breaker_registry *reg = open_registry();
    open_at(reg, &cfg, 0);
    breaker_ticket p1, p2, p3;
    double wait = -1;
    CHECK_INT(breaker_admit(reg, "m", &cfg, 29.5, &p1, &wait, NULL), BS_EBUSY);
    CHECK_NEAR(wait, 0.5, 1e-9);
    CHECK_INT(breaker_admit(reg, "m", &cfg, 30, &p1, &wait, NULL), BS_OK);
    CHECK_INT(p1.probe, 1);
    CHECK_INT(breaker_admit(reg, "m", &cfg, 30.1, &p2, &wait, NULL), BS_OK);
    CHECK_INT(p2.probe, 1);
    /* Exactly half_open_probes at once. */
    bs_error err = {0};
    CHECK_INT(breaker_admit(reg, "m", &cfg, 30.2, &p3, &wait, &err), BS_EBUSY);
    CHECK_NEAR(wait, 0, 0);
    CHECK_STR(err.msg, "circuit breaker for m is half-open with 2 probe(s) in flight");
    CHECK_INT(breaker_state(reg, "m", 30.2), BREAKER_HALF_OPEN);

    /* A probe success closes it with an empty window. */
    breaker_record(&p1, 1, 31);
    CHECK(p1.entry == NULL);
    CHECK_INT(breaker_state(reg, "m", 31), BREAKER_CLOSED);
    breaker_info in = info_of(reg, "m", 31);
    CHECK_INT(in.window_requests, 0);
    /* The other probe, answering after the close, counts as a closed-state
     * outcome; four more failures would be needed to reopen. */
    breaker_record(&p2, 0, 32);
    in = info_of(reg, "m", 32);
    CHECK_INT(in.window_requests, 1);
    CHECK_INT(in.window_failures, 1);
    CHECK_INT(breaker_state(reg, "m", 32), BREAKER_CLOSED);
    for (int i = 0; i < 3; i++) CHECK_INT(outcome(reg, "m", &cfg, 0, 33), BS_OK);
    CHECK_INT(breaker_state(reg, "m", 33), BREAKER_CLOSED);
    CHECK_INT(outcome(reg, "m", &cfg, 0, 33), BS_OK);
    CHECK_INT(breaker_state(reg, "m", 33), BREAKER_OPEN);
    CHECK_INT(info_of(reg, "m", 33).opened, 2);
    breaker_registry_close(reg);
}

static void test_probe_failure_reopens(void) {
    breaker_registry *reg = open_registry();
    open_at(reg, &cfg5, 0);
    breaker_ticket p;
    double wait;
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 40, &p, &wait, NULL), BS_OK);
    CHECK_INT(p.probe, 1);
    breaker_record(&p, 0, 41);
    CHECK_INT(breaker_state(reg, "m", 41), BREAKER_OPEN);
    /* A fresh cooldown from the probe failure, not from the first opening. */
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 70, &p, &wait, NULL), BS_EBUSY);
    CHECK_NEAR(wait, 1, 1e-9);
    CHECK_INT(breaker_state(reg, "m", 70.9), BREAKER_OPEN);
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 71, &p, &wait, NULL), BS_OK);
    CHECK_INT(p.probe, 1);
    breaker_record(&p, 1, 71.5);
    CHECK_INT(breaker_state(reg, "m", 71.5), BREAKER_CLOSED);
    CHECK_INT(info_of(reg, "m", 72).opened, 2);
    breaker_registry_close(reg);
}

static void test_cancel_and_stale(void) {
    breaker_registry *reg = open_registry();
    /* A request admitted while closed answers after the breaker opened:
     * dropped, so it neither extends the cooldown nor counts twice. */
    breaker_ticket early;
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 0, &early, NULL, NULL), BS_OK);
    open_at(reg, &cfg5, 1);
    breaker_record(&early, 0, 10);
    double wait;
    breaker_ticket t;
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 10, &t, &wait, NULL), BS_EBUSY);
    CHECK_NEAR(wait, 21, 1e-9);
    CHECK_INT(info_of(reg, "m", 10).opened, 1);

    /* A cancelled probe gives its slot back without an outcome. */
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 31, &t, NULL, NULL), BS_OK);
    breaker_ticket t2;
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 31, &t2, NULL, NULL), BS_EBUSY);
    breaker_cancel(&t);
    CHECK(t.entry == NULL);
    CHECK_INT(breaker_state(reg, "m", 31), BREAKER_HALF_OPEN);
    CHECK_INT(breaker_admit(reg, "m", &cfg5, 31, &t2, NULL, NULL), BS_OK);
    CHECK_INT(t2.probe, 1);
    /* Recording or cancelling an empty ticket does nothing. */
    breaker_record(&t, 1, 31);
    breaker_cancel(&t);
    CHECK_INT(breaker_state(reg, "m", 31), BREAKER_HALF_OPEN);
    breaker_record(&t2, 1, 32);
    CHECK_INT(breaker_state(reg, "m", 32), BREAKER_CLOSED);
    breaker_registry_close(reg);
}

static void test_shared_by_name(void) {
    /* Two routes (two configs, as after a reload) share the breaker of a
     * model name; the latest admit's settings apply. */
    gw_breaker other = cfg5;
    other.cooldown_s = 5;
    breaker_registry *reg = open_registry();
    for (int i = 0; i < 5; i++) outcome(reg, "shared", i % 2 ? &other : &cfg5, 0, 0);
    CHECK_INT(breaker_state(reg, "shared", 0), BREAKER_OPEN);
    breaker_ticket t;
    double wait;
    CHECK_INT(breaker_admit(reg, "shared", &other, 1, &t, &wait, NULL), BS_EBUSY);
    CHECK_NEAR(wait, 4, 1e-9);
    CHECK_INT(breaker_admit(reg, "shared", &other, 5, &t, &wait, NULL), BS_OK);
    breaker_record(&t, 1, 5);

    outcome(reg, "b-model", &cfg5, 1, 0);
    outcome(reg, "a-model", &cfg5, 1, 0);
    breaker_info *all;
    int n;
    bs_error err = {0};
    CHECK_OK(breaker_list(reg, 6, &all, &n, &err), &err);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(all[0].name, "a-model");
        CHECK_STR(all[1].name, "b-model");
        CHECK_STR(all[2].name, "shared");
        CHECK_INT(all[2].state, BREAKER_CLOSED);
        CHECK_INT(all[2].admitted, 6);
        CHECK_INT(all[2].rejected, 1);
    }
    free(all);
    CHECK_STR(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    breaker_registry_close(reg);

    /* An empty registry lists nothing. */
    reg = open_registry();
    CHECK_OK(breaker_list(reg, 0, &all, &n, &err), &err);
    CHECK_INT(n, 0);
    CHECK(all == NULL);
    breaker_registry_close(reg);
}

/* ---- many threads ---- */

enum { THREADS = 8, OPS = 20000 };
static const char *const mt_names[3] = {"x", "y", "z"};
static const gw_breaker mt_cfg = {.min_requests = 5, .failure_rate = 0.5, .window_s = 1, .cooldown_s = 0.05, .half_open_probes = 2};
static atomic_ulong mt_clock;

typedef struct mt_counts {
    uint64_t seed;
    long long admitted[3], rejected[3], ok[3], failed[3], cancelled[3];
} mt_counts;

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static breaker_registry *mt_reg;

static void *mt_worker(void *arg) {
    mt_counts *c = arg;
    for (int i = 0; i < OPS; i++) {
        uint64_t r = rng_next(&c->seed);
        int k = (int)(r % 3);
        /* A shared clock of 1 ms ticks: windows, openings and cooldowns
         * all happen many times during the run. */
        double now = (double)atomic_fetch_add(&mt_clock, 1) * 1e-3 / THREADS;
        breaker_ticket t;
        if (breaker_admit(mt_reg, mt_names[k], &mt_cfg, now, &t, NULL, NULL) != BS_OK) {
            c->rejected[k]++;
            continue;
        }
        c->admitted[k]++;
        int roll = (int)((r >> 8) % 100);
        if (roll < 5) {
            breaker_cancel(&t);
            c->cancelled[k]++;
        } else {
            /* x fails half the time, y a third, z rarely. */
            int fail = roll < (k == 0 ? 55 : k == 1 ? 38 : 8);
            breaker_record(&t, !fail, now);
            if (fail) c->failed[k]++;
            else c->ok[k]++;
        }
    }
    return NULL;
}

static void test_threads_add_up(void) {
    mt_reg = open_registry();
    atomic_store(&mt_clock, 0);
    pthread_t th[THREADS];
    static mt_counts counts[THREADS];
    for (int i = 0; i < THREADS; i++) {
        counts[i] = (mt_counts){.seed = 1000 + i};
        CHECK_INT(pthread_create(&th[i], NULL, mt_worker, &counts[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);

    double end = (double)atomic_load(&mt_clock) * 1e-3 / THREADS;
    long long total_opened = 0;
    for (int k = 0; k < 3; k++) {
        long long adm = 0, rej = 0, ok = 0, failed = 0, cancelled = 0;
        for (int i = 0; i < THREADS; i++) {
            adm += counts[i].admitted[k];
            rej += counts[i].rejected[k];
            ok += counts[i].ok[k];
            failed += counts[i].failed[k];
            cancelled += counts[i].cancelled[k];
        }
        breaker_info in = info_of(mt_reg, mt_names[k], end);
        CHECK_INT(in.admitted, adm);
        CHECK_INT(in.rejected, rej);
        CHECK_INT(in.successes, ok);
        CHECK_INT(in.failures, failed);
        CHECK_INT(ok + failed + cancelled, adm);
        total_opened += in.opened;
        /* No probe slot leaked: after a cooldown the breaker admits again. */
        breaker_ticket t;
        CHECK_INT(breaker_admit(mt_reg, mt_names[k], &mt_cfg, end + 1, &t, NULL, NULL), BS_OK);
        breaker_record(&t, 1, end + 1);
        CHECK_INT(breaker_state(mt_reg, mt_names[k], end + 1), BREAKER_CLOSED);
    }
    CHECK(total_opened > 0); /* the run really went through the open state */
    long long all = 0;
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < 3; k++) all += counts[i].admitted[k] + counts[i].rejected[k];
    CHECK_INT(all, (long long)THREADS * OPS);
    breaker_registry_close(mt_reg);
}

int main(void) {
    RUN(test_closed_under_min_requests);
    RUN(test_opens_at_rate);
    RUN(test_window_slides);
    RUN(test_half_open_probes);
    RUN(test_probe_failure_reopens);
    RUN(test_cancel_and_stale);
    RUN(test_shared_by_name);
    RUN(test_threads_add_up);
    TEST_MAIN_END();
}
