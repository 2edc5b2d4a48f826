/* train/optim.c: the schedules of transformers (get_*_schedule_with_warmup),
 * torch.nn.utils.clip_grad_norm_ and torch.optim.AdamW, against values
 * worked out by hand or printed by PyTorch 1.13 (float64). */
#include "../support/test.h"
#include "train/optim.h"

static void test_schedule_cosine(void) {
    /* warmup 2, total 10: linear ramp, then half a cosine over 8 steps */
    CHECK_NEAR(lr_at(BS_SCHEDULE_COSINE, 1, 0, 2, 10), 0.0, 0);
    CHECK_NEAR(lr_at(BS_SCHEDULE_COSINE, 1, 1, 2, 10), 0.5, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_COSINE, 1, 2, 2, 10), 1.0, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_COSINE, 1, 4, 2, 10), 0.5 * (1 + cos(M_PI / 4)), 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_COSINE, 1, 6, 2, 10), 0.5, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_COSINE, 3e-4f, 8, 2, 10), 3e-4 * 0.5 * (1 + cos(M_PI * 0.75)), 1e-11);
    CHECK_NEAR(lr_at(BS_SCHEDULE_COSINE, 1, 10, 2, 10), 0.0, 1e-7);
}

static void test_schedule_linear_constant(void) {
    CHECK_NEAR(lr_at(BS_SCHEDULE_LINEAR, 2, 1, 4, 12), 0.5, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_LINEAR, 2, 4, 4, 12), 2.0, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_LINEAR, 2, 8, 4, 12), 1.0, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_LINEAR, 2, 12, 4, 12), 0.0, 0);
    CHECK_NEAR(lr_at(BS_SCHEDULE_LINEAR, 2, 15, 4, 12), 0.0, 0); /* past the end: 0, not negative */
    CHECK_NEAR(lr_at(BS_SCHEDULE_LINEAR, 1, 0, 0, 4), 1.0, 0);   /* no warmup: full lr at once */
    CHECK_NEAR(lr_at(BS_SCHEDULE_LINEAR, 1, 3, 0, 4), 0.25, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_CONSTANT, 2, 1, 4, 12), 0.5, 1e-7);
    CHECK_NEAR(lr_at(BS_SCHEDULE_CONSTANT, 2, 9, 4, 12), 2.0, 0);
    CHECK_NEAR(lr_at(BS_SCHEDULE_CONSTANT, 2, 99, 4, 12), 2.0, 0);
}

static void test_clip(void) {
    float g[3] = {3, 4, 0};
    double s = 0;
    grad_sumsq(g, 3, &s);
    CHECK_NEAR(s, 25.0, 0);
    grad_clip(g, 3, sqrt(s), 10); /* under the limit: untouched */
    CHECK(g[0] == 3 && g[1] == 4);
    grad_clip(g, 3, sqrt(s), 1); /* torch: 0.599999880000024, 0.799999840000032 */
    CHECK_NEAR(g[0], 0.599999880000024, 1e-7);
    CHECK_NEAR(g[1], 0.799999840000032, 1e-7);
    CHECK(g[2] == 0);
}

/* torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
 * on p = [1, -2, 0.5] with three gradients. */
static void test_adamw_matches_torch(void) {
    float p[3] = {1, -2, 0.5f}, m[3] = {0}, v[3] = {0};
    const float g[3][3] = {{0.5f, -1, 0}, {-0.25f, 3, 1e-3f}, {0.1f, 0.2f, -0.3f}};
    const double want[3][3] = {{0.899000002, -1.898000001, 0.499500000},
                               {0.871467299, -1.945520984, 0.424587870},
                               {0.839071476, -1.985734589, 0.487852641}};
    for (int t = 0; t < 3; t++) {
        adamw_update(p, g[t], m, v, 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, t + 1);
        for (int i = 0; i < 3; i++) CHECK_NEAR(p[i], want[t][i], 2e-6);
    }
}

/* Without decay and with lr 0 nothing moves, but the moments do. */
static void test_adamw_zero_lr(void) {
    float p[2] = {1, 2}, m[2] = {0}, v[2] = {0}, g[2] = {1, -2};
    adamw_update(p, g, m, v, 2, 0, 0.9f, 0.999f, 1e-8f, 0.1f, 1);
    CHECK(p[0] == 1 && p[1] == 2);
    CHECK_NEAR(m[1], -0.2, 1e-7);
    CHECK_NEAR(v[1], 0.004, 1e-7);
}

int main(void) {
    RUN(test_schedule_cosine);
    RUN(test_schedule_linear_constant);
    RUN(test_clip);
    RUN(test_adamw_matches_torch);
    RUN(test_adamw_zero_lr);
    TEST_MAIN_END();
}
