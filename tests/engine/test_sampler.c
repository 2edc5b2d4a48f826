/* Sampler rules on hand-made logits: the processed logits are checked value
 * by value, sampled tokens against the allowed set and the distribution. */
#include <math.h>

#include "../support/test.h"
#include "engine/sampler.h"

static bs_sampler *open_sampler(const bs_sampler_params *p, int n_vocab) {
    bs_sampler *s = NULL;
    bs_error err = {0};
    CHECK_OK(sampler_open(p, n_vocab, &s, &err), &err);
    return s;
}

static bs_sampler_params greedy(void) {
    bs_sampler_params p;
    sampler_params_default(&p);
    p.temperature = 0;
    return p;
}

static void test_greedy(void) {
    bs_sampler_params p = greedy();
    bs_sampler *s = open_sampler(&p, 5);
    if (!s) return;
    float l1[] = {0.1f, 2.0f, -1.0f, 1.9f, 0.0f};
    CHECK_INT(sampler_sample(s, l1), 1);
    float l2[] = {3.0f, 1.0f, 3.0f, 1.0f, 0.0f}; /* ties go to the lower id */
    CHECK_INT(sampler_sample(s, l2), 0);
    CHECK_NEAR(l2[2], 3.0, 0); /* greedy leaves the logits as they were */
    sampler_close(s);
}

static void test_logit_bias(void) {
    bs_logit_bias bias[] = {{3, 5.0f}, {1, -100.0f}};
    bs_sampler_params p = greedy();
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    bs_sampler *s = open_sampler(&p, 4);
    if (!s) return;
    float l[] = {1.0f, 4.0f, 2.0f, 0.5f};
    CHECK_INT(sampler_sample(s, l), 3);
    CHECK_NEAR(l[3], 5.5, 1e-6);
    CHECK_NEAR(l[1], -96.0, 1e-5);
    CHECK_NEAR(l[0], 1.0, 0);
    sampler_close(s);
}

static void test_repetition_penalty(void) {
    bs_sampler_params p = greedy();
    p.repetition_penalty = 2.0f;
    bs_sampler *s = open_sampler(&p, 4);
    if (!s) return;
    sampler_accept(s, 1);
    sampler_accept(s, 1);
    sampler_accept(s, 2);
    float l[] = {2.0f, 3.0f, -1.0f, 0.5f};
    CHECK_INT(sampler_sample(s, l), 0);
    CHECK_NEAR(l[1], 1.5, 1e-6);  /* positive: divided, once however often seen */
    CHECK_NEAR(l[2], -2.0, 1e-6); /* negative: multiplied */
    CHECK_NEAR(l[0], 2.0, 0);
    CHECK_NEAR(l[3], 0.5, 0);
    sampler_close(s);
}

static void test_presence_frequency(void) {
    bs_sampler_params p = greedy();
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    bs_sampler *s = open_sampler(&p, 4);
    if (!s) return;
    sampler_accept(s, 1);
    sampler_accept(s, 1);
    sampler_accept(s, 2);
    float l[] = {2.0f, 3.0f, -1.0f, 0.5f};
    sampler_sample(s, l);
    CHECK_NEAR(l[1], 3.0 - 0.5 - 2 * 0.25, 1e-6);
    CHECK_NEAR(l[2], -1.0 - 0.5 - 0.25, 1e-6);
    CHECK_NEAR(l[0], 2.0, 0);
    sampler_close(s);
}

static void test_penalty_window(void) {
    bs_sampler_params p = greedy();
    p.frequency_penalty = 1.0f;
    p.penalty_last_n = 2;
    bs_sampler *s = open_sampler(&p, 4);
    if (!s) return;
    sampler_accept(s, 0);
    sampler_accept(s, 1);
    sampler_accept(s, 1); /* token 0 has left the 2-token window */
    float l[] = {1.0f, 1.0f, 1.0f, 1.0f};
    sampler_sample(s, l);
    CHECK_NEAR(l[0], 1.0, 0);
    CHECK_NEAR(l[1], -1.0, 1e-6);
    sampler_reset(s);
    float l2[] = {1.0f, 1.0f, 1.0f, 1.0f};
    sampler_sample(s, l2);
    CHECK_NEAR(l2[1], 1.0, 0);
    sampler_close(s);
}

static void test_temperature(void) {
    bs_sampler_params p;
    sampler_params_default(&p);
    p.temperature = 2.0f;
    bs_sampler *s = open_sampler(&p, 3);
    if (!s) return;
    float l[] = {1.0f, -3.0f, 4.0f};
    sampler_sample(s, l);
    CHECK_NEAR(l[0], 0.5, 1e-6);
    CHECK_NEAR(l[1], -1.5, 1e-6);
    CHECK_NEAR(l[2], 2.0, 1e-6);
    sampler_close(s);
}

/* Sample n times from fresh copies of base; count each token. */
static void sample_counts(bs_sampler *s, const float *base, int n_vocab, int n, int *counts) {
    float l[16];
    memset(counts, 0, (size_t)n_vocab * sizeof *counts);
    for (int i = 0; i < n; i++) {
        memcpy(l, base, (size_t)n_vocab * sizeof *l);
        counts[sampler_sample(s, l)]++;
    }
}

static void test_top_k(void) {
    bs_sampler_params p;
    sampler_params_default(&p);
    p.top_k = 2;
    bs_sampler *s = open_sampler(&p, 4);
    if (!s) return;
    float base[] = {1.0f, 5.0f, 3.0f, 4.0f};
    float l[4];
    memcpy(l, base, sizeof l);
    sampler_sample(s, l);
    CHECK(isinf(l[0]) && l[0] < 0);
    CHECK(isinf(l[2]) && l[2] < 0);
    CHECK_NEAR(l[1], 5.0, 0);
    CHECK_NEAR(l[3], 4.0, 0);
    int counts[4];
    sample_counts(s, base, 4, 4000, counts);
    CHECK_INT(counts[0] + counts[2], 0);
    /* p(1) = e / (e + 1) = 0.731 */
    CHECK_NEAR(counts[1] / 4000.0, 0.7311, 0.03);
    sampler_close(s);
}

static void test_top_p(void) {
    float base[] = {logf(0.05f), logf(0.5f), logf(0.15f), logf(0.3f)};
    bs_sampler_params p;
    sampler_params_default(&p);
    p.top_p = 0.75f; /* 0.5 + 0.3 reaches it: keep tokens 1 and 3 */
    bs_sampler *s = open_sampler(&p, 4);
    if (!s) return;
    float l[4];
    memcpy(l, base, sizeof l);
    sampler_sample(s, l);
    CHECK(isinf(l[0]) && isinf(l[2]));
    CHECK_NEAR(l[1], base[1], 1e-6);
    CHECK_NEAR(l[3], base[3], 1e-6);
    int counts[4];
    sample_counts(s, base, 4, 4000, counts);
    CHECK_INT(counts[0] + counts[2], 0);
    CHECK_NEAR(counts[1] / 4000.0, 0.5 / 0.8, 0.03);
    sampler_close(s);

    p.top_p = 0.85f; /* needs the 0.15 token too */
    s = open_sampler(&p, 4);
    if (!s) return;
    memcpy(l, base, sizeof l);
    sampler_sample(s, l);
    CHECK(isinf(l[0]) && !isinf(l[2]));
    sampler_close(s);
}

static void test_min_p(void) {
    float base[] = {logf(0.05f), logf(0.5f), logf(0.15f), logf(0.3f)};
    bs_sampler_params p;
    sampler_params_default(&p);
    p.min_p = 0.2f; /* keeps p >= 0.1 */
    bs_sampler *s = open_sampler(&p, 4);
    if (!s) return;
    float l[4];
    memcpy(l, base, sizeof l);
    sampler_sample(s, l);
    CHECK(isinf(l[0]));
    CHECK(!isinf(l[1]) && !isinf(l[2]) && !isinf(l[3]));
    int counts[4];
    sample_counts(s, base, 4, 4000, counts);
    CHECK_INT(counts[0], 0);
    CHECK_NEAR(counts[2] / 4000.0, 0.15 / 0.95, 0.03);
    sampler_close(s);
}

static void test_distribution(void) {
    float base[] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    bs_sampler_params p;
    sampler_params_default(&p);
    p.seed = 7;
    bs_sampler *s = open_sampler(&p, 3);
    if (!s) return;
    int counts[3];
    sample_counts(s, base, 3, 20000, counts);
    CHECK_NEAR(counts[0] / 20000.0, 0.5, 0.015);
    CHECK_NEAR(counts[1] / 20000.0, 0.3, 0.015);
    CHECK_NEAR(counts[2] / 20000.0, 0.2, 0.015);
    sampler_close(s);
}

static void test_seeded_determinism(void) {
    float base[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    bs_sampler_params p;
    sampler_params_default(&p);
    p.seed = 42;
    p.top_p = 0.95f;
    bs_sampler *a = open_sampler(&p, 8), *b = open_sampler(&p, 8);
    p.seed = 43;
    bs_sampler *c = open_sampler(&p, 8);
    if (!a || !b || !c) return;
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 100; i++) {
        float la[8], lb[8], lc[8];
        memcpy(la, base, sizeof la);
        memcpy(lb, base, sizeof lb);
        memcpy(lc, base, sizeof lc);
        int32_t ta = sampler_sample(a, la), tb = sampler_sample(b, lb), tc = sampler_sample(c, lc);
        same_ab &= ta == tb;
        same_ac &= ta == tc;
    }
    CHECK(same_ab);
    CHECK(!same_ac);
    sampler_close(a);
    sampler_close(b);
    sampler_close(c);
}

static void test_bad_params(void) {
    bs_sampler *s = NULL;
    bs_error err = {0};
    bs_sampler_params p;
    sampler_params_default(&p);
    p.top_p = 0;
    CHECK_INT(sampler_open(&p, 4, &s, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "top_p") != NULL);
    sampler_params_default(&p);
    p.temperature = -1;
    CHECK_INT(sampler_open(&p, 4, &s, &err), BS_EINVAL);
    sampler_params_default(&p);
    bs_logit_bias bad = {4, 1.0f};
    p.logit_bias = &bad;
    p.n_logit_bias = 1;
    CHECK_INT(sampler_open(&p, 4, &s, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "token 4") != NULL);
    sampler_params_default(&p);
    p.penalty_last_n = -1;
    CHECK_INT(sampler_open(&p, 4, &s, &err), BS_EINVAL);
    CHECK(s == NULL);
}

int main(void) {
    RUN(test_greedy);
    RUN(test_logit_bias);
    RUN(test_repetition_penalty);
    RUN(test_presence_frequency);
    RUN(test_penalty_window);
    RUN(test_temperature);
    RUN(test_top_k);
    RUN(test_top_p);
    RUN(test_min_p);
    RUN(test_distribution);
    RUN(test_seeded_determinism);
    RUN(test_bad_params);
    TEST_MAIN_END();
}
