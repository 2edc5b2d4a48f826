/* Tests for gateway/router: weighted, sticky, pinned and rule choices, the
 * retry / fallback state machine, breaker skipping and the attempt chain.
 * Configs are built by hand (no YAML loader); random values come from a
 * seeded SplitMix64 and time is passed in, so every run is the same. */
#include <stdint.h>
#include <strings.h>

#include "../support/test.h"
#include "gateway/breaker.h"
#include "gateway/router.h"

/* χ² critical values at p = 0.001 for 1 and 2 degrees of freedom. */
#define CHI2_DF1 10.828
#define CHI2_DF2 13.816

enum { A, B, C, D, E, N_MODELS };
static const char *const model_names[N_MODELS] = {"a", "b", "c", "d", "e"};
static gw_model models[N_MODELS];
static gw_route route;
static gw_config cfg;

static const gw_retry default_retry = {.max_retries = 2, .backoff_base_s = 0.25, .backoff_max_s = 8, .retry_after_max_s = 30};
static const gw_breaker default_breaker = {.min_requests = 5, .failure_rate = 0.5, .window_s = 60, .cooldown_s = 30, .half_open_probes = 1};

/* A one-route config "chat" over models a..e with the given targets; the
 * route's other fields are left for each test to fill. */
static void setup(gw_target *targets, int n) {
    memset(models, 0, sizeof models);
    for (int i = 0; i < N_MODELS; i++) models[i].name = (char *)model_names[i];
    route = (gw_route){.name = "chat", .targets = targets, .n_targets = n, .retry = default_retry, .breaker = default_breaker};
    cfg = (gw_config){.models = models, .n_models = N_MODELS, .routes = &route, .n_routes = 1,
                      .retry = default_retry, .breaker = default_breaker};
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static double chi2(const int *counts, const double *probs, int k) {
    int total = 0;
    for (int i = 0; i < k; i++) total += counts[i];
    double x = 0;
    for (int i = 0; i < k; i++) {
        double e = probs[i] * total;
        x += (counts[i] - e) * (counts[i] - e) / e;
    }
    return x;
}

/* Request headers as name/value pairs, looked up case-insensitively. */
typedef struct headers {
    const char *kv[8];
    int n;
} headers;

static const char *header_lookup(void *ctx, const char *name) {
    const headers *h = ctx;
    for (int i = 0; i + 1 < h->n; i += 2)
        if (strcasecmp(h->kv[i], name) == 0) return h->kv[i + 1];
    return NULL;
}

/* The primary model for req, or -1 (with the error in err) when refused. */
static int primary_of(const router_request *req, uint64_t rnd, router_why *why, bs_error *err) {
    router_plan *p = NULL;
    if (router_plan_route(&cfg, 0, req, rnd, NULL, &p, err) != BS_OK) return -1;
    int m = router_plan_primary(p, why);
    router_plan_free(p);
    return m;
}

static void test_weights_90_10(void) {
    gw_target t[] = {{A, 0.9, 9}, {B, 0.1, 1}, {C, 0, 0}};
    setup(t, 3);
    uint64_t s = 42;
    int counts[3] = {0};
    for (int i = 0; i < 1000; i++) {
        router_why why;
        bs_error err = {0};
        int m = primary_of(&(router_request){.model = "chat"}, rng_next(&s), &why, &err);
        CHECK(m >= 0 && m <= C);
        CHECK_INT(why, ROUTER_WHY_WEIGHTED);
        if (m >= 0 && m <= C) counts[m]++;
    }
    CHECK_INT(counts[C], 0); /* the dark target */
    double x = chi2(counts, (double[]){0.9, 0.1}, 2);
    if (x >= CHI2_DF1) fprintf(stderr, "  counts %d/%d chi2 %.2f\n", counts[0], counts[1], x);
    CHECK(x < CHI2_DF1);
}

static void test_weights_50_30_20(void) {
    gw_target t[] = {{A, 0.5, 5}, {B, 0.3, 3}, {C, 0.2, 2}};
    setup(t, 3);
    uint64_t s = 7;
    int counts[3] = {0};
    for (int i = 0; i < 1000; i++) {
        int m = primary_of(&(router_request){0}, rng_next(&s), NULL, NULL);
        CHECK(m >= 0 && m <= C);
        if (m >= 0 && m <= C) counts[m]++;
    }
    double x = chi2(counts, (double[]){0.5, 0.3, 0.2}, 3);
    if (x >= CHI2_DF2) fprintf(stderr, "  counts %d/%d/%d chi2 %.2f\n", counts[0], counts[1], counts[2], x);
    CHECK(x < CHI2_DF2);
    /* The extremes of the random range land on the first and last target. */
    CHECK_INT(primary_of(&(router_request){0}, 0, NULL, NULL), A);
    CHECK_INT(primary_of(&(router_request){0}, UINT64_MAX, NULL, NULL), C);
}

static void test_pin(void) {
    gw_target t[] = {{A, 0.9, 9}, {B, 0.1, 1}, {C, 0, 0}};
    setup(t, 3);
    router_why why;
    bs_error err = {0};
    CHECK_INT(primary_of(&(router_request){.pin = "c"}, 0, &why, &err), C);
    CHECK_INT(why, ROUTER_WHY_PINNED);
    CHECK_INT(primary_of(&(router_request){.pin = "b"}, 0, &why, &err), B);
    /* An empty header is no pin. */
    CHECK_INT(primary_of(&(router_request){.pin = ""}, 0, &why, &err), A);
    CHECK_INT(why, ROUTER_WHY_WEIGHTED);

    CHECK_INT(primary_of(&(router_request){.pin = "nope"}, 0, NULL, &err), -1);
    CHECK_INT(err.status, BS_EINVAL);
    CHECK_STR(err.msg, "x-basalt-target: \"nope\" is not a target of route chat (targets: a, b, c)");
    /* d is a model of the config but not a target of this route. */
    CHECK_INT(primary_of(&(router_request){.pin = "d"}, 0, NULL, &err), -1);
    CHECK(strstr(err.msg, "\"d\" is not a target of route chat") != NULL);
}

static void test_all_weights_zero(void) {
    gw_target t[] = {{A, 0, 0}, {B, 0, 0}};
    setup(t, 2);
    bs_error err = {0};
    CHECK_INT(primary_of(&(router_request){0}, 123, NULL, &err), -1);
    CHECK_INT(err.status, BS_EINVAL);
    CHECK_STR(err.msg, "route chat has no target with weight > 0; pin one with x-basalt-target");
    router_why why;
    CHECK_INT(primary_of(&(router_request){.pin = "b"}, 0, &why, &err), B);
    CHECK_INT(why, ROUTER_WHY_PINNED);
}

static int sticky_primary(const char *user) {
    router_why why;
    int m = primary_of(&(router_request){.user = user}, 0, &why, NULL);
    CHECK_INT(why, ROUTER_WHY_STICKY);
    return m;
}

static void test_sticky_stable(void) {
    gw_target t[] = {{A, 0.9, 9}, {B, 0.1, 1}};
    setup(t, 2);
    route.sticky_user = 1;
    uint64_t s = 99;
    int counts[2] = {0}, unstable = 0;
    for (int u = 0; u < 200; u++) {
        char user[32];
        snprintf(user, sizeof user, "user-%d", u);
        int first = -1;
        for (int r = 0; r < 20; r++) {
            /* The random value changes every request; the sticky key wins. */
            router_why why;
            int m = primary_of(&(router_request){.user = user}, rng_next(&s), &why, NULL);
            CHECK_INT(why, ROUTER_WHY_STICKY);
            if (r == 0) first = m;
            else if (m != first) unstable++;
        }
        if (first == A || first == B) counts[first]++;
    }
    CHECK_INT(unstable, 0);
    CHECK_INT(counts[A] + counts[B], 200);
    double x = chi2(counts, (double[]){0.9, 0.1}, 2);
    if (x >= CHI2_DF1) fprintf(stderr, "  users %d/%d chi2 %.2f\n", counts[A], counts[B], x);
    CHECK(x < CHI2_DF1);

    /* Without a user and with sticky_user set the choice is random again. */
    router_why why;
    primary_of(&(router_request){0}, 5, &why, NULL);
    CHECK_INT(why, ROUTER_WHY_WEIGHTED);
}

static void test_sticky_header(void) {
    gw_target t[] = {{A, 0.5, 1}, {B, 0.5, 1}};
    setup(t, 2);
    route.sticky_header = "x-session";
    route.sticky_user = 1;
    int agree = 0, user_differs = 0;
    for (int k = 0; k < 64; k++) {
        char key[32], other[32];
        snprintf(key, sizeof key, "session-%d", k);
        snprintf(other, sizeof other, "someone-%d", k);
        headers h = {{"X-Session", key}, 2};
        router_why why;
        int by_header = primary_of(&(router_request){.header = header_lookup, .header_ctx = &h, .user = other}, 0, &why, NULL);
        CHECK_INT(why, ROUTER_WHY_STICKY);
        /* The header's value is the key even with a user present: the same
         * as a request whose user is that value. */
        if (by_header == sticky_primary(key)) agree++;
        if (sticky_primary(other) != by_header) user_differs++;
    }
    CHECK_INT(agree, 64);
    CHECK(user_differs > 0); /* the user really was ignored, not coincidentally equal */
}

static void test_sticky_weight_change(void) {
    gw_target t[] = {{A, 0.9, 9}, {B, 0.1, 1}};
    setup(t, 2);
    route.sticky_user = 1;
    enum { USERS = 2000 };
    static int before[USERS];
    for (int u = 0; u < USERS; u++) {
        char user[32];
        snprintf(user, sizeof user, "u%d", u);
        before[u] = sticky_primary(user);
    }
    t[0].weight = 0.8;
    t[1].weight = 0.2;
    int a_to_b = 0, b_to_a = 0, in_b = 0;
    for (int u = 0; u < USERS; u++) {
        char user[32];
        snprintf(user, sizeof user, "u%d", u);
        int after = sticky_primary(user);
        if (before[u] == A && after == B) a_to_b++;
        if (before[u] == B && after == A) b_to_a++;
        if (after == B) in_b++;
    }
    CHECK_INT(b_to_a, 0);
    /* About 10 % of users cross the boundary that moved from 0.9 to 0.8. */
    double x = chi2((int[]){USERS - a_to_b, a_to_b}, (double[]){0.9, 0.1}, 2);
    CHECK(x < CHI2_DF1);
    x = chi2((int[]){USERS - in_b, in_b}, (double[]){0.8, 0.2}, 2);
    CHECK(x < CHI2_DF1);
}

static void test_rules(void) {
    gw_target t[] = {{A, 1, 1}, {B, 0, 0}};
    gw_rule rules[] = {
        {GW_MATCH_HEADER, "x-tier", "gold", B}, /* B has weight 0: rules beat weights */
        {GW_MATCH_METADATA, "team", "ml-*", C},
        {GW_MATCH_MODEL, NULL, "chat-v?", D},
        {GW_MATCH_METADATA, "team", "*", E},
    };
    setup(t, 2);
    route.rules = rules;
    route.n_rules = 4;
    json_t *ml = json_pack("{s:s}", "team", "ml-vision");
    json_t *ops = json_pack("{s:s}", "team", "ops");
    json_t *num = json_pack("{s:i}", "team", 7);
    headers gold = {{"X-Tier", "gold"}, 2}, silver = {{"x-tier", "silver"}, 2};
    router_why why;
    bs_error err = {0};
#define PRIMARY(...) primary_of(&(router_request){__VA_ARGS__}, 0, &why, &err)
    CHECK_INT(PRIMARY(.header = header_lookup, .header_ctx = &gold), B);
    CHECK_INT(why, ROUTER_WHY_RULE);
    /* First match wins: gold and ml-* both match, rule 0 is first. */
    CHECK_INT(PRIMARY(.header = header_lookup, .header_ctx = &gold, .metadata = ml), B);
    CHECK_INT(PRIMARY(.header = header_lookup, .header_ctx = &silver, .metadata = ml), C);
    CHECK_INT(PRIMARY(.metadata = ml, .model = "chat-v2"), C);
    CHECK_INT(PRIMARY(.model = "chat-v2"), D);
    CHECK_INT(why, ROUTER_WHY_RULE);
    CHECK_INT(PRIMARY(.model = "chat-v10"), A); /* '?' is exactly one character */
    CHECK_INT(why, ROUTER_WHY_WEIGHTED);
    CHECK_INT(PRIMARY(.metadata = ops), E);
    CHECK_INT(PRIMARY(.metadata = num), A); /* only string values match */
    CHECK_INT(PRIMARY(.model = "chat"), A);
    CHECK_INT(why, ROUTER_WHY_WEIGHTED);
    /* The chain names the rule that chose the target. */
    router_plan *p = NULL;
    CHECK_OK(router_plan_route(&cfg, 0, &(router_request){.metadata = ml}, 0, NULL, &p, &err), &err);
    int m;
    double d;
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_NONE, -1, 0, 0, &m, &d), ROUTER_GO);
    CHECK_INT(m, C);
    json_t *chain = router_plan_chain_json(p);
    CHECK_INT(json_integer_value(json_object_get(json_array_get(chain, 0), "rule")), 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(chain, 0), "why")), "rule");
    json_decref(chain);
    router_plan_free(p);
#undef PRIMARY
    json_decref(ml);
    json_decref(ops);
    json_decref(num);
}

/* Glob semantics through a model rule: does pattern match name? */
static int glob(const char *pattern, const char *name) {
    gw_target t[] = {{A, 1, 1}};
    gw_rule r = {GW_MATCH_MODEL, NULL, (char *)pattern, B};
    setup(t, 1);
    route.rules = &r;
    route.n_rules = 1;
    return primary_of(&(router_request){.model = name}, 0, NULL, NULL) == B;
}

static void test_glob(void) {
    CHECK(glob("*", ""));
    CHECK(glob("*", "anything"));
    CHECK(glob("abc", "abc"));
    CHECK(!glob("abc", "abcd"));
    CHECK(!glob("abc", "ABC")); /* case-sensitive */
    CHECK(glob("a*c", "ac"));
    CHECK(glob("a*c", "abbbc"));
    CHECK(!glob("a*c", "abbbd"));
    CHECK(glob("a*b*c", "axxbyyc"));
    CHECK(glob("a*b*c", "abcbc"));
    CHECK(!glob("a*b*c", "acb"));
    CHECK(glob("??", "xy"));
    CHECK(!glob("??", "x"));
    CHECK(glob("*x?", "aaxb"));
    CHECK(glob("*a*a*a*", "aaa"));
    CHECK(!glob("*a*a*a*", "aa"));
    CHECK(!glob("?", ""));
}

/* Drive one step and check where it goes. */
static void expect_step(router_plan *p, router_class last, double retry_after, router_step want_step, int want_model) {
    int m;
    double d;
    router_step s = router_plan_next(p, last, retry_after, 0, 100, &m, &d);
    CHECK_INT(s, want_step);
    CHECK_INT(m, want_model);
}

static router_plan *new_plan(breaker_registry *reg) {
    router_plan *p = NULL;
    bs_error err = {0};
    CHECK_OK(router_plan_route(&cfg, 0, &(router_request){0}, 0, reg, &p, &err), &err);
    return p;
}

static void fallback_setup(gw_target *t) {
    static int fallbacks[] = {A, B, C}; /* A is the primary: skipped as tried */
    static int context[] = {D, B};
    static int content[] = {E};
    setup(t, 1);
    route.fallbacks = fallbacks;
    route.n_fallbacks = 3;
    route.context_fallbacks = context;
    route.n_context_fallbacks = 2;
    route.content_fallbacks = content;
    route.n_content_fallbacks = 1;
    route.retry.max_retries = 0;
}

static void test_fallback_lists(void) {
    gw_target t[] = {{A, 1, 1}};
    fallback_setup(t);

    router_plan *p = new_plan(NULL);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, A);
    expect_step(p, ROUTER_CLASS_SERVER, -1, ROUTER_GO, B);
    expect_step(p, ROUTER_CLASS_TIMEOUT, -1, ROUTER_GO, C);
    expect_step(p, ROUTER_CLASS_CONNECTION, -1, ROUTER_GIVE_UP, -1);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GIVE_UP, -1); /* finished stays finished */
    router_plan_free(p);

    p = new_plan(NULL);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, A);
    expect_step(p, ROUTER_CLASS_CONTEXT_WINDOW, -1, ROUTER_GO, D);
    expect_step(p, ROUTER_CLASS_CONTEXT_WINDOW, -1, ROUTER_GO, B);
    expect_step(p, ROUTER_CLASS_CONTEXT_WINDOW, -1, ROUTER_GIVE_UP, -1);
    router_plan_free(p);

    /* Each failure picks the list of its own class; tried targets are skipped. */
    p = new_plan(NULL);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, A);
    expect_step(p, ROUTER_CLASS_CONTENT_POLICY, -1, ROUTER_GO, E);
    expect_step(p, ROUTER_CLASS_CONTEXT_WINDOW, -1, ROUTER_GO, D);
    expect_step(p, ROUTER_CLASS_RATE_LIMITED, -1, ROUTER_GO, B);
    expect_step(p, ROUTER_CLASS_CONTEXT_WINDOW, -1, ROUTER_GIVE_UP, -1); /* D and B both tried */
    router_plan_free(p);

    p = new_plan(NULL);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, A);
    expect_step(p, ROUTER_CLASS_SERVER, -1, ROUTER_GO, B);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_DONE, -1);
    expect_step(p, ROUTER_CLASS_SERVER, -1, ROUTER_DONE, -1);
    router_plan_free(p);
}

static void test_client_and_guardrail_give_up(void) {
    gw_target t[] = {{A, 1, 1}};
    fallback_setup(t);
    route.retry.max_retries = 3;
    for (int c = ROUTER_CLASS_CLIENT; c <= ROUTER_CLASS_GUARDRAIL; c++) {
        router_plan *p = new_plan(NULL);
        expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, A);
        expect_step(p, (router_class)c, 2, ROUTER_GIVE_UP, -1);
        int n;
        const router_attempt *at = router_plan_attempts(p, &n);
        CHECK_INT(n, 1);
        CHECK_INT(at[0].class, c);
        router_plan_free(p);
    }
}

static void test_retry_backoff(void) {
    gw_target t[] = {{A, 1, 1}};
    fallback_setup(t);
    route.retry = (gw_retry){.max_retries = 3, .backoff_base_s = 0.25, .backoff_max_s = 0.75, .retry_after_max_s = 30};
    /* Delay before retry n (from 0) is min(0.75, 0.25 * 2^n), jittered into
     * [half, all] of it. */
    const double full[3] = {0.25, 0.5, 0.75};
    uint64_t s = 1;
    for (int trial = 0; trial < 200; trial++) {
        router_plan *p = new_plan(NULL);
        int m;
        double d;
        CHECK_INT(router_plan_next(p, ROUTER_CLASS_NONE, -1, 0, 0, &m, &d), ROUTER_GO);
        for (int n = 0; n < 3; n++) {
            /* The extremes of the random range hit the bounds exactly. */
            uint64_t rnd = trial == 0 ? 0 : trial == 1 ? UINT64_MAX : rng_next(&s);
            CHECK_INT(router_plan_next(p, ROUTER_CLASS_SERVER, -1, rnd, n, &m, &d), ROUTER_GO);
            CHECK_INT(m, A);
            CHECK(d >= full[n] / 2 && d <= full[n]);
            if (trial == 0) CHECK_NEAR(d, full[n] / 2, 1e-12);
            if (trial == 1) CHECK_NEAR(d, full[n], 1e-9);
        }
        /* Retries used up: the fallback, at once. */
        CHECK_INT(router_plan_next(p, ROUTER_CLASS_SERVER, -1, 0, 9, &m, &d), ROUTER_GO);
        CHECK_INT(m, B);
        CHECK_NEAR(d, 0, 0);
        int n;
        const router_attempt *at = router_plan_attempts(p, &n);
        CHECK_INT(n, 5);
        CHECK_INT(at[3].why, ROUTER_WHY_RETRY);
        CHECK_INT(at[3].retry, 3);
        CHECK_INT(at[4].why, ROUTER_WHY_FALLBACK);
        /* The fallback gets its own retries. */
        CHECK_INT(router_plan_next(p, ROUTER_CLASS_SERVER, -1, 0, 9, &m, &d), ROUTER_GO);
        CHECK_INT(m, B);
        router_plan_free(p);
    }
}

static void test_retry_after(void) {
    gw_target t[] = {{A, 1, 1}};
    fallback_setup(t);
    route.retry.max_retries = 2;
    router_plan *p = new_plan(NULL);
    int m;
    double d;
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_NONE, -1, 0, 0, &m, &d), ROUTER_GO);
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_RATE_LIMITED, 3.5, 77, 0, &m, &d), ROUTER_GO);
    CHECK_INT(m, A);
    CHECK_NEAR(d, 3.5, 0);
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_RATE_LIMITED, 30, 77, 0, &m, &d), ROUTER_GO); /* at the limit */
    CHECK_INT(m, A);
    CHECK_NEAR(d, 30, 0);
    router_plan_free(p);

    /* Above retry_after_max_s: fall back now rather than wait. */
    p = new_plan(NULL);
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_NONE, -1, 0, 0, &m, &d), ROUTER_GO);
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_RATE_LIMITED, 31, 0, 0, &m, &d), ROUTER_GO);
    CHECK_INT(m, B);
    CHECK_NEAR(d, 0, 0);
    router_plan_free(p);

    /* Context-window errors are not retried even with Retry-After. */
    p = new_plan(NULL);
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_NONE, -1, 0, 0, &m, &d), ROUTER_GO);
    CHECK_INT(router_plan_next(p, ROUTER_CLASS_CONTEXT_WINDOW, 1, 0, 0, &m, &d), ROUTER_GO);
    CHECK_INT(m, D);
    router_plan_free(p);
}

/* Open name's breaker by recording min_requests failures. */
static void force_open(breaker_registry *reg, const char *name, double now) {
    for (int i = 0; i < default_breaker.min_requests; i++) {
        breaker_ticket tk;
        bs_error err = {0};
        CHECK_OK(breaker_admit(reg, name, &default_breaker, now, &tk, NULL, &err), &err);
        breaker_record(&tk, 0, now);
    }
    CHECK_INT(breaker_state(reg, name, now), BREAKER_OPEN);
}

static void test_breaker_skips(void) {
    gw_target t[] = {{A, 1, 1}};
    fallback_setup(t);
    breaker_registry *reg;
    bs_error err = {0};
    CHECK_OK(breaker_registry_open(&reg, &err), &err);
    force_open(reg, "b", 90);

    router_plan *p = new_plan(reg);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, A);
    expect_step(p, ROUTER_CLASS_SERVER, -1, ROUTER_GO, C); /* B's breaker is open */
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_DONE, -1);
    json_t *chain = router_plan_chain_json(p);
    CHECK_INT(json_array_size(chain), 3);
    json_t *b = json_array_get(chain, 1);
    CHECK_STR(json_string_value(json_object_get(b, "model")), "b");
    CHECK_STR(json_string_value(json_object_get(b, "skipped")), "breaker_open");
    CHECK_NEAR(json_real_value(json_object_get(b, "retry_in_s")), 20, 1e-9); /* opened at 90, now 100 */
    CHECK(json_object_get(b, "class") == NULL);
    json_decref(chain);
    router_plan_free(p);

    /* The plan reports outcomes to the breakers: four more failed plans
     * (five failures of A in all) open A, and the next plan starts on the
     * fallback. */
    for (int i = 0; i < 4; i++) {
        p = new_plan(reg);
        expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, A);
        expect_step(p, ROUTER_CLASS_SERVER, -1, ROUTER_GO, C);
        expect_step(p, ROUTER_CLASS_CLIENT, -1, ROUTER_GIVE_UP, -1); /* not a failure of C */
        router_plan_free(p);
    }
    CHECK_INT(breaker_state(reg, "a", 100), BREAKER_OPEN);
    CHECK_INT(breaker_state(reg, "c", 100), BREAKER_CLOSED);
    p = new_plan(reg);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, C);
    int n;
    const router_attempt *at = router_plan_attempts(p, &n);
    CHECK_INT(n, 3);
    CHECK_INT(at[0].model, A);
    CHECK_INT(at[0].skipped, 1);
    CHECK_INT(at[1].model, B);
    CHECK_INT(at[1].skipped, 1);
    CHECK_INT(at[2].model, C);
    CHECK_INT(at[2].why, ROUTER_WHY_FALLBACK);
    router_plan_free(p); /* with C in flight: its slot is given back */

    /* Every target open: give up, and the chain says why. */
    force_open(reg, "c", 100);
    p = new_plan(reg);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GIVE_UP, -1);
    at = router_plan_attempts(p, &n);
    CHECK_INT(n, 3);
    for (int i = 0; i < n; i++) CHECK_INT(at[i].skipped, 1);
    router_plan_free(p);
    breaker_registry_close(reg);
}

static void test_direct_model(void) {
    gw_target t[] = {{A, 1, 1}};
    fallback_setup(t);
    cfg.retry.max_retries = 1;
    router_plan *p = NULL;
    bs_error err = {0};
    CHECK_OK(router_plan_model(&cfg, D, &(router_request){.pin = "d"}, NULL, &p, &err), &err);
    router_why why;
    CHECK_INT(router_plan_primary(p, &why), D);
    CHECK_INT(why, ROUTER_WHY_DIRECT);
    expect_step(p, ROUTER_CLASS_NONE, -1, ROUTER_GO, D);
    expect_step(p, ROUTER_CLASS_SERVER, -1, ROUTER_GO, D); /* the top-level retry settings */
    expect_step(p, ROUTER_CLASS_SERVER, -1, ROUTER_GIVE_UP, -1);
    router_plan_free(p);

    CHECK_INT(router_plan_model(&cfg, D, &(router_request){.pin = "a"}, NULL, &p, &err), BS_EINVAL);
    CHECK(p == NULL);
    CHECK(strstr(err.msg, "\"a\" does not name model d") != NULL);
}

static void test_chain_json(void) {
    gw_target t[] = {{A, 1, 1}};
    fallback_setup(t);
    route.retry.max_retries = 1;
    router_plan *p = new_plan(NULL);
    int m;
    double d;
    router_plan_next(p, ROUTER_CLASS_NONE, -1, 0, 0, &m, &d);
    router_plan_next(p, ROUTER_CLASS_RATE_LIMITED, 2, 0, 0, &m, &d);
    router_plan_next(p, ROUTER_CLASS_TIMEOUT, -1, 0, 0, &m, &d);
    router_plan_next(p, ROUTER_CLASS_CONTEXT_WINDOW, -1, 0, 0, &m, &d);
    router_plan_next(p, ROUTER_CLASS_NONE, -1, 0, 0, &m, &d);
    json_t *chain = router_plan_chain_json(p);
    char *text = json_dumps(chain, JSON_COMPACT);
    CHECK_STR(text, "[{\"model\":\"a\",\"why\":\"weighted\",\"class\":\"rate_limited\"},"
                    "{\"model\":\"a\",\"why\":\"retry\",\"retry\":1,\"delay_s\":2.0,\"class\":\"timeout\"},"
                    "{\"model\":\"b\",\"why\":\"fallback\",\"class\":\"context_window\"},"
                    "{\"model\":\"d\",\"why\":\"fallback\",\"class\":\"none\"}]");
    free(text);
    json_decref(chain);
    router_plan_free(p);
}

static void test_class_from_http(void) {
    CHECK_INT(router_class_from_http(200, NULL), ROUTER_CLASS_NONE);
    CHECK_INT(router_class_from_http(429, NULL), ROUTER_CLASS_RATE_LIMITED);
    CHECK_INT(router_class_from_http(408, NULL), ROUTER_CLASS_TIMEOUT);
    CHECK_INT(router_class_from_http(500, NULL), ROUTER_CLASS_SERVER);
    CHECK_INT(router_class_from_http(503, NULL), ROUTER_CLASS_SERVER);
    CHECK_INT(router_class_from_http(400, NULL), ROUTER_CLASS_CLIENT);
    CHECK_INT(router_class_from_http(404, "model_not_found"), ROUTER_CLASS_CLIENT);
    CHECK_INT(router_class_from_http(400, "context_length_exceeded"), ROUTER_CLASS_CONTEXT_WINDOW);
    CHECK_INT(router_class_from_http(400, "content_policy_violation"), ROUTER_CLASS_CONTENT_POLICY);
    CHECK_INT(router_class_from_http(400, "content_filter"), ROUTER_CLASS_CONTENT_POLICY);
    int failures = 0;
    for (int c = ROUTER_CLASS_NONE; c <= ROUTER_CLASS_GUARDRAIL; c++) failures += router_class_is_target_failure(c);
    CHECK_INT(failures, 4);
    CHECK(!router_class_is_target_failure(ROUTER_CLASS_CLIENT));
    CHECK(!router_class_is_target_failure(ROUTER_CLASS_GUARDRAIL));
    CHECK_STR(router_class_name(ROUTER_CLASS_CONTENT_POLICY), "content_policy");
}

int main(void) {
    RUN(test_weights_90_10);
    RUN(test_weights_50_30_20);
    RUN(test_pin);
    RUN(test_all_weights_zero);
    RUN(test_sticky_stable);
    RUN(test_sticky_header);
    RUN(test_sticky_weight_change);
    RUN(test_rules);
    RUN(test_glob);
    RUN(test_fallback_lists);
    RUN(test_client_and_guardrail_give_up);
    RUN(test_retry_backoff);
    RUN(test_retry_after);
    RUN(test_breaker_skips);
    RUN(test_direct_model);
    RUN(test_chain_json);
    RUN(test_class_from_http);
    TEST_MAIN_END();
}
