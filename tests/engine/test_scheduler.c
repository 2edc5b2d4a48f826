/* The scheduler on a random-weight model: batching does not change outputs,
 * n > 1 choices equal single runs with seed + i, cancellation frees KV and
 * silences callbacks, admission errors, prefix-cache reuse, chunked prefill
 * interleaved with decoding, preemption under KV pressure, embeddings,
 * logprobs against context_eval, logits hooks and close. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "../support/test.h"
#include "engine/context.h"
#include "engine/scheduler.h"

enum { N_VOCAB = 260, DIM = 64, MAX_CHOICES = 4, MAX_GEN = 256, TOP = 5 };

static bs_model *model;

typedef struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n; /* choices expected */
    int32_t tokens[MAX_CHOICES][MAX_GEN];
    float logprob[MAX_CHOICES][MAX_GEN];
    bs_token_logprob top[MAX_CHOICES][MAX_GEN][TOP];
    int n_tokens[MAX_CHOICES];
    const char *finish[MAX_CHOICES];
    int n_done, n_events, n_prompt, n_cached;
    float embed[DIM];
    int n_embd;
    int tag;           /* names the request in the global event log */
    int block_at;      /* this event (1-based) holds the scheduler thread until gate_release */
    bs_scheduler *sched; /* with id: cancel choice 1 from inside the callback ... */
    uint64_t id;
    int cancel_at;     /* ... once it has this many tokens */
} collector;

/* Global order of token events across requests (tags). */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int event_log[4096], n_log;

/* A gate lets a test act while the scheduler thread is held in a callback. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_entered;

static void gate_reset(void) {
    pthread_mutex_lock(&gate_mu);
    gate_open = gate_entered = 0;
    pthread_mutex_unlock(&gate_mu);
}

static void gate_wait_entered(void) {
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered) pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void gate_release(void) {
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static collector *collector_new(int n, int tag) {
    collector *c = calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->n = n;
    c->tag = tag;
    return c;
}

static void collector_free(collector *c) {
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static void on_event(void *user, const bs_request_event *ev) {
    collector *c = user;
    if (c->block_at && c->n_events + 1 == c->block_at) {
        pthread_mutex_lock(&gate_mu);
        gate_entered = 1;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open) pthread_cond_wait(&gate_cv, &gate_mu);
        pthread_mutex_unlock(&gate_mu);
    }
    pthread_mutex_lock(&log_mu);
    if (n_log < 4096) event_log[n_log++] = c->tag;
    pthread_mutex_unlock(&log_mu);
    pthread_mutex_lock(&c->mu);
    c->n_events++;
    c->n_prompt = ev->n_prompt;
    c->n_cached = ev->n_cached;
    int i = ev->choice;
    if (ev->token >= 0 && c->n_tokens[i] < MAX_GEN) {
        int k = c->n_tokens[i]++;
        c->tokens[i][k] = ev->token;
        c->logprob[i][k] = ev->logprob;
        for (int j = 0; j < ev->n_top && j < TOP; j++) c->top[i][k][j] = ev->top[j];
    }
    if (ev->embedding) {
        memcpy(c->embed, ev->embedding, (size_t)ev->n_embd * sizeof(float));
        c->n_embd = ev->n_embd;
    }
    if (ev->finish_reason) {
        c->finish[i] = ev->finish_reason;
        c->n_done++;
        pthread_cond_broadcast(&c->cv);
    }
    int cancel = c->cancel_at && i == 1 && c->n_tokens[1] == c->cancel_at;
    pthread_mutex_unlock(&c->mu);
    if (cancel) scheduler_cancel_choice(c->sched, c->id, 1);
}

static void sleep_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait (bounded) until every choice finished. */
static void wait_done(collector *c) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&c->mu);
    while (c->n_done < c->n)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0) break;
    CHECK_INT(c->n_done, c->n);
    pthread_mutex_unlock(&c->mu);
}

/* Wait until the scheduler holds no sequence and no KV. */
static void wait_idle(bs_scheduler *s, bs_scheduler_stats *st) {
    for (int i = 0; i < 60000; i++) {
        scheduler_stats(s, st);
        if (!st->running && !st->queued && st->kv_usage == 0) return;
        sleep_ms(1);
    }
    CHECK(!"scheduler did not go idle");
}

static bs_scheduler *open_sched(int n_ctx, int kv_tokens, int max_running, int max_queue, int step_tokens) {
    bs_scheduler_params p;
    scheduler_params_default(&p);
    p.n_ctx = n_ctx;
    p.kv_tokens = kv_tokens;
    if (max_running) p.max_running = max_running;
    if (max_queue) p.max_queue = max_queue;
    if (step_tokens) p.step_tokens = step_tokens;
    bs_scheduler *s = NULL;
    bs_error err = {0};
    CHECK_OK(scheduler_open(model, &p, &s, &err), &err);
    return s;
}

static void make_prompt(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++) t[i] = (i * 31 + salt * 17 + 3) % 256;
}

static bs_request_params gen_params(const int32_t *prompt, int n_prompt, int max_tokens) {
    bs_request_params p = {.kind = BS_REQUEST_GENERATE, .prompt = prompt, .n_prompt = n_prompt, .n = 1,
                           .max_tokens = max_tokens, .ignore_eos = 1};
    sampler_params_default(&p.sampling);
    p.sampling.temperature = 0;
    return p;
}

static uint64_t submit(bs_scheduler *s, const bs_request_params *p, collector *c) {
    uint64_t id = 0;
    bs_error err = {0};
    CHECK_OK(scheduler_submit(s, p, on_event, c, &id, &err), &err);
    return id;
}

static collector *run_alone(bs_scheduler *s, const bs_request_params *p) {
    collector *c = collector_new(p->n, 0);
    submit(s, p, c);
    wait_done(c);
    return c;
}

static void check_same(collector *a, int ca, collector *b, int cb) {
    CHECK_INT(a->n_tokens[ca], b->n_tokens[cb]);
    for (int i = 0; i < a->n_tokens[ca] && i < b->n_tokens[cb]; i++) CHECK_INT(a->tokens[ca][i], b->tokens[cb][i]);
}

static void test_batched_equals_alone(void) {
    bs_scheduler *s = open_sched(256, 0, 0, 0, 0);
    enum { N = 8, GEN = 12 };
    int32_t prompts[N][48];
    int lens[N];
    collector *alone[N], *together[N];
    for (int i = 0; i < N; i++) {
        lens[i] = 5 + 6 * i;
        make_prompt(prompts[i], lens[i], i);
        bs_request_params p = gen_params(prompts[i], lens[i], GEN);
        alone[i] = run_alone(s, &p);
        CHECK_STR(alone[i]->finish[0], "length");
        CHECK_INT(alone[i]->n_tokens[0], GEN);
    }
    bs_scheduler_stats st;
    wait_idle(s, &st);
    for (int i = 0; i < N; i++) {
        together[i] = collector_new(1, i);
        bs_request_params p = gen_params(prompts[i], lens[i], GEN);
        p.cache_salt = 1; /* no prefix-cache help: compute everything again, batched */
        submit(s, &p, together[i]);
    }
    for (int i = 0; i < N; i++) {
        wait_done(together[i]);
        check_same(alone[i], 0, together[i], 0);
        CHECK_INT(together[i]->n_cached, 0);
    }
    /* The scheduler's greedy stream equals the single-context path. */
    bs_context *c = NULL;
    bs_error err = {0};
    CHECK_OK(context_open(model, 256, &c, &err), &err);
    float logits[N_VOCAB];
    CHECK_OK(context_eval(c, prompts[3], lens[3], logits, 0, &err), &err);
    for (int k = 0; k < GEN; k++) {
        int best = 0;
        for (int v = 1; v < N_VOCAB; v++)
            if (logits[v] > logits[best]) best = v;
        CHECK_INT(alone[3]->tokens[0][k], best);
        int32_t t = best;
        CHECK_OK(context_eval(c, &t, 1, logits, 0, &err), &err);
    }
    context_close(c);
    wait_idle(s, &st);
    CHECK(st.steps > 0);
    CHECK_INT(st.tokens_generated, 2 * N * GEN);
    for (int i = 0; i < N; i++) {
        collector_free(alone[i]);
        collector_free(together[i]);
    }
    scheduler_close(s);
}

static void test_n_choices(void) {
    bs_scheduler *s = open_sched(256, 0, 0, 0, 0);
    int32_t prompt[21];
    make_prompt(prompt, 21, 5);
    bs_request_params p = gen_params(prompt, 21, 16);
    p.sampling.temperature = 0.9f;
    p.sampling.seed = 100;
    p.n = 3;
    collector *all = run_alone(s, &p);
    for (int i = 0; i < 3; i++) CHECK_STR(all->finish[i], "length");
    p.n = 1;
    int differ = 0;
    for (int i = 0; i < 3; i++) {
        p.sampling.seed = 100 + (uint64_t)i;
        p.cache_salt = 10 + (uint64_t)i; /* compute cold, not from the forks' cached blocks */
        collector *one = run_alone(s, &p);
        check_same(all, i, one, 0);
        differ += memcmp(all->tokens[0], all->tokens[i], sizeof all->tokens[0]) != 0;
        collector_free(one);
    }
    CHECK(differ > 0); /* the seeds lead to different samples */
    bs_scheduler_stats st;
    wait_idle(s, &st);
    collector_free(all);
    scheduler_close(s);
}

static void *cancel_thread(void *arg) {
    collector *c = arg;
    scheduler_cancel(c->sched, c->id);
    pthread_mutex_lock(&c->mu);
    c->cancel_at = c->n_events; /* events seen when cancel returned */
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void test_cancel(void) {
    bs_scheduler *s = open_sched(256, 0, 0, 0, 0);
    int32_t prompt[10];
    make_prompt(prompt, 10, 1);
    bs_request_params p = gen_params(prompt, 10, 240);
    p.n = 2;
    /* Cancel from another thread while the scheduler thread is inside the
     * request's 5th callback: the cancel waits for the delivery to end. */
    collector *c = collector_new(2, 0);
    c->block_at = 5;
    c->sched = s;
    gate_reset();
    c->id = submit(s, &p, c);
    gate_wait_entered();
    pthread_t t;
    pthread_create(&t, NULL, cancel_thread, c);
    gate_release();
    pthread_join(t, NULL);
    bs_scheduler_stats st;
    wait_idle(s, &st);
    CHECK_NEAR(st.kv_usage, 0, 0);
    CHECK_INT(st.running, 0);
    pthread_mutex_lock(&c->mu);
    CHECK_INT(c->n_events, c->cancel_at); /* nothing after cancel returned */
    CHECK_INT(c->n_done, 0);
    CHECK(c->n_tokens[0] < 240);
    pthread_mutex_unlock(&c->mu);
    scheduler_cancel(s, c->id); /* finished ids are ignored */

    /* Cancelling one choice (here from inside its callback) ends only that
     * one, without a final event. */
    collector *d = collector_new(1, 0);
    d->block_at = 1; /* hold the first event until d->id is set */
    d->sched = s;
    d->cancel_at = 3;
    p.max_tokens = 40;
    gate_reset();
    d->id = submit(s, &p, d);
    gate_release();
    wait_done(d);
    CHECK_STR(d->finish[0], "length");
    CHECK(d->finish[1] == NULL);
    CHECK_INT(d->n_tokens[0], 40);
    CHECK_INT(d->n_tokens[1], 3);
    wait_idle(s, &st);
    /* The step in flight when c was cancelled may have sampled one more
     * token per choice that was never delivered. */
    int delivered = 40 + 3 + c->n_tokens[0] + c->n_tokens[1];
    CHECK(st.tokens_generated >= (uint64_t)delivered && st.tokens_generated <= (uint64_t)delivered + 2);
    collector_free(c);
    collector_free(d);
    scheduler_close(s);
}

static void test_admission_errors(void) {
    bs_scheduler *s = open_sched(256, 0, 1, 2, 0);
    bs_error err = {0};
    uint64_t id;
    int32_t prompt[20];
    make_prompt(prompt, 20, 2);
    bs_request_params p = gen_params(prompt, 20, 237);
    collector *dummy = collector_new(1, 0);
    CHECK_INT(scheduler_submit(s, &p, on_event, dummy, &id, &err), BS_ERANGE);
    CHECK(strstr(err.msg, "20") && strstr(err.msg, "237") && strstr(err.msg, "257") && strstr(err.msg, "256"));
    p.max_tokens = 0; /* up to the context: 236 */
    p.n = 2;          /* more than max_running */
    CHECK_INT(scheduler_submit(s, &p, on_event, dummy, &id, &err), BS_EINVAL);
    p.n = 1;
    p.top_logprobs = 21;
    CHECK_INT(scheduler_submit(s, &p, on_event, dummy, &id, &err), BS_EINVAL);
    p.top_logprobs = 0;
    int32_t bad = N_VOCAB;
    bs_request_params q = gen_params(&bad, 1, 1);
    CHECK_INT(scheduler_submit(s, &q, on_event, dummy, &id, &err), BS_EINVAL);
    q = p;
    q.kind = BS_REQUEST_EMBED;
    q.n = 2;
    CHECK_INT(scheduler_submit(s, &q, on_event, dummy, &id, &err), BS_EINVAL);

    /* Queue full: A runs (its first callback holds the scheduler thread),
     * B and C wait, D is refused. */
    collector *a = collector_new(1, 0), *b = collector_new(1, 0), *c = collector_new(1, 0);
    a->block_at = 1;
    gate_reset();
    p.max_tokens = 4;
    uint64_t ida = submit(s, &p, a);
    gate_wait_entered();
    submit(s, &p, b);
    submit(s, &p, c);
    CHECK_INT(scheduler_submit(s, &p, on_event, dummy, &id, &err), BS_EBUSY);
    CHECK(strstr(err.msg, "queue full") != NULL);
    gate_release();
    wait_done(a);
    wait_done(b);
    wait_done(c);
    check_same(a, 0, b, 0);
    CHECK(ida > 0);
    collector_free(a);
    collector_free(b);
    collector_free(c);
    collector_free(dummy);
    scheduler_close(s);
}

static void test_prefix_cache(void) {
    bs_scheduler *s = open_sched(256, 0, 0, 0, 0);
    int32_t prompt[40];
    make_prompt(prompt, 40, 3);
    bs_request_params p = gen_params(prompt, 40, 10);
    collector *cold = run_alone(s, &p), *warm = run_alone(s, &p);
    CHECK_INT(cold->n_cached, 0);
    CHECK_INT(warm->n_cached, 32); /* two full blocks of 16; the third holds the last token */
    CHECK_INT(warm->n_prompt, 40);
    check_same(cold, 0, warm, 0);
    bs_scheduler_stats st;
    wait_idle(s, &st);
    CHECK_INT(st.prefix_queries, 80);
    CHECK_INT(st.prefix_hits, 32);
    CHECK_INT(st.tokens_prompt, 80);
    /* Another salt shares nothing. */
    p.cache_salt = 9;
    collector *salted = run_alone(s, &p);
    CHECK_INT(salted->n_cached, 0);
    check_same(cold, 0, salted, 0);
    /* A longer prompt extending a cached one (prompt + generated tokens are cached too). */
    int32_t longer[50];
    memcpy(longer, prompt, sizeof prompt);
    memcpy(longer + 40, cold->tokens[0], 10 * sizeof(int32_t));
    bs_request_params q = gen_params(longer, 50, 5);
    collector *ext = run_alone(s, &q);
    CHECK_INT(ext->n_cached, 48);
    collector_free(cold);
    collector_free(warm);
    collector_free(salted);
    collector_free(ext);
    scheduler_close(s);
}

static void test_chunked_prefill(void) {
    bs_scheduler *s = open_sched(256, 0, 4, 0, 16);
    int32_t short_prompt[4], long_prompt[150];
    make_prompt(short_prompt, 4, 4);
    make_prompt(long_prompt, 150, 6);
    bs_request_params pl = gen_params(long_prompt, 150, 4);
    pl.cache_salt = 2;
    collector *alone = run_alone(s, &pl);

    n_log = 0;
    collector *a = collector_new(1, 1), *b = collector_new(1, 2);
    bs_request_params pa = gen_params(short_prompt, 4, 60);
    a->block_at = 2; /* b arrives while a decodes */
    gate_reset();
    submit(s, &pa, a);
    gate_wait_entered();
    pl.cache_salt = 3;
    submit(s, &pl, b);
    gate_release();
    wait_done(a);
    wait_done(b);
    check_same(alone, 0, b, 0);
    /* 150 prompt tokens at <= 15 per step (one token of the budget goes to
     * a's decode): a keeps getting a token every step meanwhile. */
    pthread_mutex_lock(&log_mu);
    int first_b = -1, a_before = 0, a_total = 0;
    for (int i = 0; i < n_log; i++) {
        if (event_log[i] == 2 && first_b < 0) first_b = i;
        if (event_log[i] == 1) {
            a_total++;
            if (first_b < 0) a_before++;
        }
    }
    pthread_mutex_unlock(&log_mu);
    CHECK_INT(a_total, 60);
    CHECK(first_b >= 0);
    CHECK(a_before >= 2 + 9);
    CHECK(a_before < 60);
    collector_free(alone);
    collector_free(a);
    collector_free(b);
    scheduler_close(s);
}

static void test_preemption(void) {
    /* 4 blocks of 16 positions: each request alone needs all four. */
    bs_scheduler *s = open_sched(64, 64, 0, 0, 0);
    enum { N = 3 };
    int32_t prompts[N][20];
    collector *alone[N], *together[N];
    for (int i = 0; i < N; i++) {
        make_prompt(prompts[i], 20, 20 + i);
        bs_request_params p = gen_params(prompts[i], 20, 40);
        p.cache_salt = 100 + (uint64_t)i;
        alone[i] = run_alone(s, &p);
    }
    for (int i = 0; i < N; i++) {
        together[i] = collector_new(1, 0);
        bs_request_params p = gen_params(prompts[i], 20, 40);
        p.cache_salt = 200 + (uint64_t)i;
        submit(s, &p, together[i]);
    }
    for (int i = 0; i < N; i++) {
        wait_done(together[i]);
        check_same(alone[i], 0, together[i], 0);
        CHECK_STR(together[i]->finish[0], "length");
    }
    bs_scheduler_stats st;
    wait_idle(s, &st);
    CHECK(st.preemptions > 0);
    printf("  %llu preemptions\n", (unsigned long long)st.preemptions);
    for (int i = 0; i < N; i++) {
        collector_free(alone[i]);
        collector_free(together[i]);
    }
    scheduler_close(s);
}

static void test_embeddings(void) {
    bs_scheduler *s = open_sched(256, 0, 4, 0, 8); /* 30-token inputs take 4+ steps */
    int32_t x[30], y[30];
    make_prompt(x, 30, 7);
    make_prompt(y, 30, 8);
    bs_request_params p = {.kind = BS_REQUEST_EMBED, .prompt = x, .n_prompt = 30, .n = 1};
    collector *e[4];
    for (int i = 0; i < 4; i++) e[i] = collector_new(1, 0);
    submit(s, &p, e[0]);
    submit(s, &p, e[1]); /* identical input in the same steps */
    p.prompt = y;
    submit(s, &p, e[2]);
    p.prompt = x;
    p.pooling_last = 1;
    submit(s, &p, e[3]);
    for (int i = 0; i < 4; i++) {
        wait_done(e[i]);
        CHECK_INT(e[i]->n_embd, DIM);
        CHECK_STR(e[i]->finish[0], "stop");
        CHECK_INT(e[i]->n_tokens[0], 0);
        double norm = 0;
        for (int k = 0; k < DIM; k++) norm += (double)e[i]->embed[k] * e[i]->embed[k];
        CHECK_NEAR(norm, 1, 1e-5);
    }
    double d_same = 0, d_other = 0, d_last = 0;
    for (int k = 0; k < DIM; k++) {
        d_same += fabs(e[0]->embed[k] - e[1]->embed[k]);
        d_other += fabs(e[0]->embed[k] - e[2]->embed[k]);
        d_last += fabs(e[0]->embed[k] - e[3]->embed[k]);
    }
    CHECK_NEAR(d_same, 0, 0);
    CHECK(d_other > 1e-3);
    CHECK(d_last > 1e-3);
    for (int i = 0; i < 4; i++) collector_free(e[i]);
    scheduler_close(s);
}

static void test_logprobs(void) {
    bs_scheduler *s = open_sched(256, 0, 0, 0, 0);
    int32_t prompt[12];
    make_prompt(prompt, 12, 9);
    bs_request_params p = gen_params(prompt, 12, 6);
    p.sampling.temperature = 0.7f;
    p.sampling.seed = 5;
    p.sampling.repetition_penalty = 1.3f; /* logprobs ignore sampling transforms */
    p.logprobs = 1;
    p.top_logprobs = TOP;
    collector *c = run_alone(s, &p);
    bs_context *ctx = NULL;
    bs_error err = {0};
    CHECK_OK(context_open(model, 256, &ctx, &err), &err);
    float logits[N_VOCAB];
    CHECK_OK(context_eval(ctx, prompt, 12, logits, 0, &err), &err);
    for (int k = 0; k < 6; k++) {
        double max = logits[0], sum = 0;
        for (int v = 1; v < N_VOCAB; v++) max = logits[v] > max ? logits[v] : max;
        for (int v = 0; v < N_VOCAB; v++) sum += exp(logits[v] - max);
        double lse = max + log(sum);
        int32_t t = c->tokens[0][k];
        CHECK_NEAR(c->logprob[0][k], logits[t] - lse, 1e-4);
        float prev = INFINITY;
        for (int j = 0; j < TOP; j++) {
            const bs_token_logprob *tl = &c->top[0][k][j];
            CHECK_NEAR(tl->logprob, logits[tl->token] - lse, 1e-4);
            CHECK(tl->logprob <= prev);
            prev = tl->logprob;
        }
        int above = 0; /* exactly TOP-1 tokens beat the last of the top list */
        for (int v = 0; v < N_VOCAB; v++) above += logits[v] - lse > c->top[0][k][TOP - 1].logprob + 1e-5;
        CHECK_INT(above, TOP - 1);
        CHECK_OK(context_eval(ctx, &t, 1, logits, 0, &err), &err);
    }
    context_close(ctx);
    collector_free(c);
    scheduler_close(s);
}

typedef struct ban_hook {
    int32_t banned;
    int accepted;
} ban_hook;

static void ban_apply(void *user, int choice, float *logits, int n_vocab) {
    (void)choice;
    (void)n_vocab;
    logits[((ban_hook *)user)->banned] = -INFINITY;
}

static void ban_accept(void *user, int choice, int32_t token) {
    (void)choice;
    (void)token;
    ((ban_hook *)user)->accepted++;
}

static void test_hook_and_eos(void) {
    bs_scheduler *s = open_sched(256, 0, 0, 0, 0);
    int32_t prompt[8];
    make_prompt(prompt, 8, 11);
    bs_request_params p = gen_params(prompt, 8, 8);
    collector *free_run = run_alone(s, &p);
    ban_hook h = {.banned = free_run->tokens[0][0]};
    bs_logits_hook hook = {&h, ban_apply, ban_accept};
    p.hook = &hook;
    collector *banned = run_alone(s, &p);
    CHECK_INT(h.accepted, 8);
    for (int i = 0; i < banned->n_tokens[0]; i++) CHECK(banned->tokens[0][i] != h.banned);
    /* Force the end-of-generation token: finish "stop" after one token. */
    h.banned = -1;
    p.hook = NULL;
    p.ignore_eos = 0;
    p.sampling.logit_bias = &(bs_logit_bias){256, 1000.0f};
    p.sampling.n_logit_bias = 1;
    collector *eos = run_alone(s, &p);
    CHECK_INT(eos->n_tokens[0], 1);
    CHECK_INT(eos->tokens[0][0], 256);
    CHECK_STR(eos->finish[0], "stop");
    collector_free(free_run);
    collector_free(banned);
    collector_free(eos);
    scheduler_close(s);
}

/* Releases the gate once scheduler_close has begun (submit says closing). */
static void *release_when_closing(void *arg) {
    bs_scheduler *s = arg;
    int32_t t = 1;
    bs_request_params p = gen_params(&t, 1, 1);
    collector *dummy = collector_new(1, 0);
    bs_error err = {0};
    uint64_t id;
    for (;;) {
        bs_status st = scheduler_submit(s, &p, on_event, dummy, &id, &err);
        if (st == BS_EINVAL) break;
        CHECK_INT(st, BS_EBUSY); /* max_queue 1, taken by b */
        sleep_ms(1);
    }
    CHECK(strstr(err.msg, "closing") != NULL);
    gate_release();
    collector_free(dummy);
    return NULL;
}

static void test_close_cancels(void) {
    bs_scheduler *s = open_sched(256, 0, 1, 1, 0);
    int32_t prompt[8];
    make_prompt(prompt, 8, 12);
    bs_request_params p = gen_params(prompt, 8, 240);
    collector *a = collector_new(1, 0), *b = collector_new(1, 0);
    a->block_at = 1;
    gate_reset();
    submit(s, &p, a);
    gate_wait_entered();
    submit(s, &p, b); /* waits: max_running is 1 */
    pthread_t t;
    pthread_create(&t, NULL, release_when_closing, s);
    scheduler_close(s);
    pthread_join(t, NULL);
    CHECK_INT(a->n_tokens[0], 1);
    CHECK_STR(a->finish[0], "cancelled");
    CHECK_STR(b->finish[0], "cancelled");
    CHECK_INT(b->n_tokens[0], 0);
    collector_free(a);
    collector_free(b);
}

int main(void) {
    bs_model_config cfg = {
        .arch = BS_ARCH_LLAMA, .n_vocab = N_VOCAB, .dim = DIM, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
        .head_dim = 16, .ffn_dim = 96, .max_pos = 256, .rms_eps = 1e-5f, .rope_theta = 10000.0f,
        .rope_neox = 1,
    };
    bs_error err = {0};
    bs_model_params mp = {.n_threads = 2};
    if (model_open_random(&cfg, 3, &mp, &model, &err) != BS_OK) {
        printf("FAIL model_open_random: %s\n", err.msg);
        return 1;
    }
    RUN(test_batched_equals_alone);
    RUN(test_n_choices);
    RUN(test_cancel);
    RUN(test_admission_errors);
    RUN(test_prefix_cache);
    RUN(test_chunked_prefill);
    RUN(test_preemption);
    RUN(test_embeddings);
    RUN(test_logprobs);
    RUN(test_hook_and_eos);
    RUN(test_close_cancels);
    model_close(model);
    TEST_MAIN_END();
}
