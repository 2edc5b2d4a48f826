/* GRPO: advantages and loss statistics on hand-made inputs, exactly; and
 * the gradient of every loss_type x scale_rewards x truncation policy
 * through the trainer against PyTorch autograd (tests/oracle/grpo_ref.py):
 * max |grad - ref| / max |ref| <= 1e-4 for every LoRA A/B, in one batch
 * and split into two micro-batches with the step's totals (grpo_step then
 * updates with the one-batch gradient's norm). */
#include <stdint.h>
#include <stdlib.h>

#include "../support/oracle.h"
#include "../support/test.h"
#include "engine/model.h"
#include "train/grpo.h"
#include "train/trainer.h"

/* As in grpo_ref.py. */
#define BETA 0.04f
#define EPSILON 0.2f
#define EPSILON_HIGH 0.28f
#define TRUNCATED_REWARD -1.0f
enum { GROUP = 3, MAX_COMPLETION = 6, RANK = 4, MAX_N = 16, SPLIT = 4 };
#define ALPHA 8.0f

/* ---- hand-made ----------------------------------------------------------- */

static void test_advantages_exact(void) {
    /* group 0: {1, NAN, 3} mean 2, std sqrt(2); group 1: {2, 2, 2} no spread.
     * Batch over the five scored: mean 2, std sqrt(2/4). */
    const float r[6] = {1, NAN, 3, 2, 2, 2};
    float adv[6];
    bs_grpo_config c;
    grpo_config_default(&c);
    c.group_size = 3;
    bs_grpo_reward_stats st;
    bs_error err = {0};
    CHECK_OK(grpo_advantages(&c, r, NULL, 6, adv, &st, &err), &err);
    CHECK_NEAR(adv[0], -1 / (sqrt(2) + 1e-4), 1e-6);
    CHECK(adv[1] == 0);
    CHECK_NEAR(adv[2], 1 / (sqrt(2) + 1e-4), 1e-6);
    CHECK(adv[3] == 0 && adv[4] == 0 && adv[5] == 0);
    CHECK_NEAR(st.reward_mean, 2, 1e-7);
    CHECK_NEAR(st.reward_std, sqrt(0.5), 1e-7);
    CHECK_NEAR(st.frac_reward_zero_std, 0.5, 0);
    CHECK_INT(st.n_unscored, 1);

    c.scale_rewards = BS_GRPO_SCALE_BATCH;
    CHECK_OK(grpo_advantages(&c, r, NULL, 6, adv, &st, &err), &err);
    CHECK_NEAR(adv[0], -1 / (sqrt(0.5) + 1e-4), 1e-6);
    CHECK_NEAR(adv[2], 1 / (sqrt(0.5) + 1e-4), 1e-6);

    c.scale_rewards = BS_GRPO_SCALE_NONE;
    const int trunc[6] = {0, 0, 1, 0, 0, 0};
    c.truncation = BS_GRPO_TRUNC_PENALIZE;
    c.truncated_reward = -2;
    CHECK_OK(grpo_advantages(&c, r, trunc, 6, adv, &st, &err), &err); /* group 0 is {1, NAN, -2} */
    CHECK_NEAR(adv[0], 1.5, 1e-7);
    CHECK_NEAR(adv[2], -1.5, 1e-7);
    CHECK_INT(st.n_truncated, 1);

    CHECK(grpo_advantages(&c, r, NULL, 5, adv, &st, &err) == BS_EINVAL); /* not whole groups */
    const float inf[3] = {1, INFINITY, 0};
    CHECK(grpo_advantages(&c, inf, NULL, 3, adv, &st, &err) == BS_EINVAL);
    const float none[3] = {NAN, NAN, NAN}; /* nothing scored: no signal */
    CHECK_OK(grpo_advantages(&c, none, NULL, 3, adv, &st, &err), &err);
    CHECK(adv[0] == 0 && adv[1] == 0 && adv[2] == 0 && st.frac_reward_zero_std == 1);
}

static void test_loss_exact(void) {
    /* Two sequences: prompt token 0, completions of 2 and 1 tokens.  Sequence
     * 0 at ratio 1 (A = 1): loss -1 per token, gradient -A.  Sequence 1 at
     * ratio 2 > 1.28: with A = 1 clipped (loss -1.28, no gradient). */
    const float m0[3] = {0, 1, 1}, m1[2] = {0, 1};
    const float o0[3] = {0, -1, -2}, o1[2] = {0, -1 - logf(2)};
    const float l0[3] = {0, -1, -2}, l1[2] = {0, -1};
    const float *mask[2] = {m0, m1}, *old[2] = {o0, o1}, *logp[2] = {l0, l1};
    float d0[3], d1[2], *dlogp[2] = {d0, d1};
    const int lengths[2] = {3, 2};
    float adv[2] = {1, 1};
    bs_grpo_batch b = {.n = 2, .lengths = lengths, .mask = mask, .adv = adv, .old_logp = old};
    bs_grpo_config c;
    grpo_config_default(&c);
    c.epsilon_high = 0.28f;
    c.loss_type = BS_GRPO_LOSS_GRPO;
    bs_grpo_loss_stats st;
    bs_error err = {0};
    CHECK_OK(grpo_loss(&c, &b, logp, dlogp, &st, &err), &err);
    CHECK_NEAR(st.loss, (-1 + -1.28) / 2, 1e-6); /* mean of sequence means */
    CHECK_NEAR(d0[1], -0.25, 1e-7);             /* 1/(B n_0) */
    CHECK(d0[0] == 0 && d1[0] == 0 && d1[1] == 0);
    CHECK_NEAR(st.clip_high, 1.0 / 3, 1e-7);
    CHECK(st.clip_low == 0);
    CHECK_NEAR(st.completion_len_mean, 1.5, 0);
    CHECK_INT(st.completion_len_max, 2);

    adv[1] = -1; /* the min now takes rho A: loss 2, gradient -A rho = 2 */
    c.loss_type = BS_GRPO_LOSS_DAPO;
    CHECK_OK(grpo_loss(&c, &b, logp, dlogp, &st, &err), &err);
    CHECK_NEAR(st.loss, (-1 - 1 + 2) / 3.0, 1e-6);
    CHECK_NEAR(d1[1], 2 / 3.0, 1e-6);
    CHECK(st.clip_high == 0 && st.clip_region == 0);

    c.loss_type = BS_GRPO_LOSS_DR_GRPO;
    c.max_completion_len = 4;
    const int trunc[2] = {0, 1};
    b.truncated = trunc;
    c.truncation = BS_GRPO_TRUNC_MASK;
    CHECK_OK(grpo_loss(&c, &b, logp, dlogp, &st, &err), &err);
    CHECK_NEAR(st.loss, -2 / 8.0, 1e-6);
    CHECK(d1[1] == 0);
    CHECK_INT(st.n_tokens, 2);

    /* k3: ref - logp = log 2 on every token -> 2 - log 2 - 1, gradient 1 - 2 */
    const float r0[3] = {0, -1 + logf(2), -2 + logf(2)}, r1[2] = {0, -1 + logf(2)};
    const float *ref[2] = {r0, r1};
    b.ref_logp = ref;
    b.truncated = NULL;
    adv[0] = adv[1] = 0;
    c.beta = 0.5f;
    CHECK_OK(grpo_loss(&c, &b, logp, dlogp, &st, &err), &err);
    CHECK_NEAR(st.kl, 1 - logf(2), 1e-6);
    CHECK_NEAR(st.loss, 3 * 0.5 * (1 - log(2)) / 8, 1e-6);
    CHECK_NEAR(d0[2], 0.5 * (1 - 2) / 8, 1e-7);

    bs_grpo_loss_type lt;
    bs_grpo_scale sc;
    CHECK(grpo_parse_loss_type("dr_grpo", &lt, &err) == BS_OK && lt == BS_GRPO_LOSS_DR_GRPO);
    CHECK(grpo_parse_scale("none", &sc, &err) == BS_OK && sc == BS_GRPO_SCALE_NONE);
    CHECK(grpo_parse_loss_type("ppo", &lt, &err) == BS_EINVAL);
}

/* ---- against PyTorch ----------------------------------------------------- */

static const char *out_dir, *setup_skip;
static int setup_done, setup_ok, n_seq, lengths[MAX_N], truncated[MAX_N];
static int32_t *tokens[MAX_N];
static float *rewards, *old_logp[MAX_N], *ref_py[MAX_N], *cur_py[MAX_N];
static void *batch_buf;

static int setup(void) {
    if (setup_done) return setup_ok;
    setup_done = 1;
    if ((setup_skip = test_torch_missing()) || !(out_dir = test_temp_dir("basalt-grpo"))) return 0;
    char cmd[1024], path[512];
    snprintf(cmd, sizeof cmd, "'%s' tests/oracle/grpo_ref.py '%s'", test_python(), out_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "  %s failed\n", cmd);
        return 0;
    }
    snprintf(path, sizeof path, "%s/batch.bin", out_dir);
    long size = 0;
    int32_t *b = batch_buf = test_read_file(path, &size);
    if (!b || b[0] < 1 || b[0] > MAX_N) return 0;
    n_seq = b[0];
    long total = 0;
    for (int i = 0; i < n_seq; i++) {
        total += lengths[i] = b[1 + i];
        truncated[i] = b[1 + n_seq + i];
    }
    if (size != 4 * (1 + 3 * n_seq + 4 * total)) return 0;
    int32_t *tok = b + 1 + 2 * n_seq;
    rewards = (float *)(tok + total);
    float *f = rewards + n_seq;
    for (int i = 0; i < n_seq; i++) {
        tokens[i] = tok;
        old_logp[i] = f;
        ref_py[i] = f + total;
        cur_py[i] = f + 2 * total;
        tok += lengths[i];
        f += lengths[i];
    }
    return setup_ok = 1;
}

/* The oracle's model (setup() first); NULL after marking the test skipped
 * (as SKIP does, from a function with a value) or failed. */
static bs_model *oracle_model(void) {
    if (!setup()) {
        if (setup_skip) test_skip_ = setup_skip;
        else CHECK(!"oracle generation failed");
        return NULL;
    }
    char path[512];
    bs_error err = {0};
    bs_model *m = NULL;
    bs_model_params mp = {.n_threads = 1};
    snprintf(path, sizeof path, "%s/model", out_dir);
    CHECK_OK(model_open(path, &mp, &m, &err), &err);
    return m;
}

static void test_grpo_grad_oracle(void) {
    bs_model *m = oracle_model();
    if (!m) return;
    char path[512];
    bs_error err = {0};
    bs_train_config tc;
    train_config_default(&tc);
    tc.lora = (bs_lora_config){.rank = RANK, .alpha = ALPHA, .targets = BS_LORA_ALL_LINEAR};
    tc.max_tokens = 128;
    bs_trainer *t = NULL;
    void *init_buf = NULL, *grad_buf = NULL;
    enum { MAX_NAMED = 64 };
    test_named init[MAX_NAMED], grad[MAX_NAMED];
    float *buf = NULL;
    double last_ref_norm = 0;
    int pending = 0; /* micro-batches since the last update (the trainer's count; grads were zeroed by hand) */
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    if (!t) goto done;
    snprintf(path, sizeof path, "%s/lora.init", out_dir);
    int n_init = test_read_named(path, &init_buf, init, MAX_NAMED);
    CHECK_INT(n_init, trainer_n_tensors(t));
    for (int i = 0; i < trainer_n_tensors(t); i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        const test_named *r = test_find_named(init, n_init, x->name);
        CHECK(r && r->rows == x->rows && r->cols == x->cols);
        if (!r || r->rows != x->rows || r->cols != x->cols) goto done;
        memcpy(x->data, r->data, (size_t)x->rows * x->cols * sizeof(float));
    }

    /* the policy's and the reference's (adapter off) log-probs against PyTorch's */
    long total = 0;
    for (int s = 0; s < n_seq; s++) total += lengths[s];
    buf = calloc(3 * (size_t)total, sizeof *buf);
    float *cur[MAX_N], *ref[MAX_N], *mask[MAX_N];
    for (int s = 0, off = 0; s < n_seq; off += lengths[s++]) {
        cur[s] = buf + off;
        ref[s] = buf + total + off;
        mask[s] = buf + 2 * total + off;
        for (int i = lengths[s] - MAX_COMPLETION; i < lengths[s]; i++) mask[s][i] = old_logp[s][i] != 0;
    }
    const int32_t *const *tok = (const int32_t *const *)tokens;
    CHECK_OK(trainer_token_logprobs(t, tok, lengths, n_seq, 1, cur, NULL, &err), &err);
    CHECK_OK(trainer_token_logprobs(t, tok, lengths, n_seq, 0, ref, NULL, &err), &err);
    double worst_lp = 0;
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < lengths[s]; i++) {
            if (!mask[s][i]) continue;
            double e = fmax(fabs(cur[s][i] - cur_py[s][i]), fabs(ref[s][i] - ref_py[s][i]));
            if (e > worst_lp) worst_lp = e;
        }
    CHECK(worst_lp <= 1e-4);

    snprintf(path, sizeof path, "%s/manifest.txt", out_dir);
    FILE *mf = fopen(path, "r");
    CHECK(mf != NULL);
    char line[256], name[96], lt[16], sc[16], tr[16];
    int n_cases = 0;
    while (mf && fgets(line, sizeof line, mf) && sscanf(line, "%95s %15s %15s %15s", name, lt, sc, tr) == 4) {
        bs_grpo_config c;
        grpo_config_default(&c);
        c.group_size = GROUP;
        c.beta = BETA;
        c.epsilon = EPSILON;
        c.epsilon_high = EPSILON_HIGH;
        c.max_completion_len = MAX_COMPLETION;
        c.truncated_reward = TRUNCATED_REWARD;
        c.truncation = !strcmp(tr, "mask") ? BS_GRPO_TRUNC_MASK
                       : !strcmp(tr, "penalize") ? BS_GRPO_TRUNC_PENALIZE
                                                 : BS_GRPO_TRUNC_KEEP;
        CHECK_OK(grpo_parse_loss_type(lt, &c.loss_type, &err), &err);
        CHECK_OK(grpo_parse_scale(sc, &c.scale_rewards, &err), &err);
        float adv[MAX_N];
        bs_grpo_reward_stats rs;
        CHECK_OK(grpo_advantages(&c, rewards, truncated, n_seq, adv, &rs, &err), &err);
        /* the penalty scores the truncated unscorable one and spreads the flat group */
        int pen = c.truncation == BS_GRPO_TRUNC_PENALIZE;
        CHECK_NEAR(rs.frac_reward_zero_std, pen ? 0 : 1.0 / 3, 1e-7);
        CHECK_INT(rs.n_unscored, !pen);
        bs_grpo_batch b = {.n = n_seq, .lengths = lengths, .mask = (const float *const *)mask,
                           .truncated = truncated, .adv = adv, .old_logp = (const float *const *)old_logp,
                           .ref_logp = (const float *const *)ref};
        for (int i = 0; i < trainer_n_tensors(t); i++) {
            const bs_train_tensor *x = trainer_tensor(t, i);
            memset(x->grad, 0, (size_t)x->rows * x->cols * sizeof(float));
        }
        bs_grpo_loss_stats ls;
        CHECK_OK(grpo_forward_backward(t, &c, tok, &b, &ls, &err), &err);

        snprintf(path, sizeof path, "%s/%s.loss", out_dir, name);
        long lsize = 0;
        double *want = test_read_file(path, &lsize);
        CHECK(want && lsize == 4 * 8);
        snprintf(path, sizeof path, "%s/%s.grad", out_dir, name);
        int n_grad = test_read_named(path, &grad_buf, grad, MAX_NAMED);
        CHECK_INT(n_grad, trainer_n_tensors(t));
        double worst = 0;
        for (int i = 0; i < trainer_n_tensors(t); i++) {
            const bs_train_tensor *x = trainer_tensor(t, i);
            const test_named *r = test_find_named(grad, n_grad, x->name);
            CHECK(r && r->rows == x->rows && r->cols == x->cols);
            if (!r || r->rows != x->rows || r->cols != x->cols) continue;
            double e = test_max_rel(x->grad, r->data, (size_t)x->rows * x->cols);
            if (!(e <= worst)) worst = e;
        }
        if (want && lsize == 4 * 8) {
            fprintf(stderr, "  %-22s loss %.6f (ref %.6f) kl %.4f clip %.3f/%.3f  max grad rel err %.2e\n", name,
                    ls.loss, want[0], ls.kl, ls.clip_low, ls.clip_high, worst);
            CHECK(fabs(ls.loss - want[0]) <= 1e-4 * fabs(want[0]));
            CHECK(fabs(ls.kl - want[1]) <= 1e-4 * fabs(want[1]));
            CHECK_NEAR(ls.clip_low, want[2], 1e-6);
            CHECK_NEAR(ls.clip_high, want[3], 1e-6);
        }
        CHECK(worst <= 1e-4);
        CHECK(ls.entropy > 0 && ls.entropy < logf(320)); /* at most log(vocab) */

        /* the same step in two micro-batches: the shares add up to the loss
         * and the accumulated gradient is the one-batch gradient */
        for (int i = 0; i < trainer_n_tensors(t); i++) {
            const bs_train_tensor *x = trainer_tensor(t, i);
            memset(x->grad, 0, (size_t)x->rows * x->cols * sizeof(float));
        }
        bs_grpo_totals totals;
        CHECK_OK(grpo_totals(&c, &b, &totals, &err), &err);
        CHECK_INT(totals.n_seqs, n_seq);
        float split_loss = 0;
        int n_backward = 0;
        for (int h = 0; h < 2; h++) {
            int first = h ? SPLIT : 0, n = h ? n_seq - SPLIT : SPLIT;
            bs_grpo_batch mb = b;
            mb.n = n;
            mb.lengths += first;
            mb.mask += first;
            mb.truncated += first;
            mb.adv += first;
            mb.old_logp += first;
            mb.ref_logp += first;
            mb.totals = &totals;
            bs_grpo_loss_stats ms;
            CHECK_OK(grpo_forward_backward(t, &c, tok + first, &mb, &ms, &err), &err);
            split_loss += ms.loss;
            n_backward += ms.backward;
        }
        CHECK_INT(n_backward, 2);
        pending += ls.backward + n_backward;
        double worst_split = 0, ref_sq = 0;
        for (int i = 0; i < trainer_n_tensors(t); i++) {
            const bs_train_tensor *x = trainer_tensor(t, i);
            const test_named *r = test_find_named(grad, n_grad, x->name);
            if (!r || r->rows != x->rows || r->cols != x->cols) continue;
            double e = test_max_rel(x->grad, r->data, (size_t)x->rows * x->cols);
            if (!(e <= worst_split)) worst_split = e;
            for (int j = 0; j < r->rows * r->cols; j++) {
                float g; /* unaligned f32 */
                memcpy(&g, r->data + 4 * j, 4);
                ref_sq += (double)g * g;
            }
        }
        fprintf(stderr, "  %-22s split in 2: loss %.6f, max grad rel err %.2e\n", name, split_loss, worst_split);
        if (want && lsize == 4 * 8) CHECK(fabs(split_loss - want[0]) <= 1e-4 * fabs(want[0]));
        CHECK(worst_split <= 1e-4);
        last_ref_norm = sqrt(ref_sq);
        free(want);
        free(grad_buf);
        grad_buf = NULL;
        n_cases++;
    }
    if (mf) fclose(mf);
    CHECK_INT(n_cases, 8);
    /* the last case's two micro-batches hold the gradient: trainer_step
     * would average over every pending micro-batch, grpo_step updates with
     * their sum, the reference's norm */
    float norm = 0, lr = 0;
    CHECK_INT(pending, 24);
    CHECK_OK(grpo_step(t, pending, &norm, &lr, &err), &err);
    fprintf(stderr, "  grpo_step norm %g, reference %g\n", norm, last_ref_norm);
    CHECK(fabs(norm - last_ref_norm) <= 1e-4 * last_ref_norm);
    CHECK_OK(grpo_step(t, 0, &norm, &lr, &err), &err); /* nothing pending: no update */
    CHECK(norm == 0);
done:
    free(buf);
    free(init_buf);
    trainer_close(t);
    model_close(m);
}

/* Cross-entropy is the weighted objective with weights -mask / sum(mask). */
static void test_weighted_is_cross_entropy(void) {
    bs_model *m = oracle_model();
    if (!m) return;
    bs_error err = {0};
    bs_train_config tc;
    train_config_default(&tc);
    tc.lora.rank = RANK;
    tc.max_tokens = 128;
    bs_trainer *t = NULL;
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    size_t np = t ? trainer_n_params(t) : 0;
    float *ce_grad = calloc(np + 1, sizeof *ce_grad), *mask = calloc(64, sizeof *mask), *w = calloc(64, sizeof *w);
    if (!t || !ce_grad || !mask || !w) goto done;
    for (int i = 0; i < trainer_n_tensors(t); i++) { /* B non-zero so every gradient is */
        const bs_train_tensor *x = trainer_tensor(t, i);
        for (int j = 0; j < x->rows * x->cols; j++) x->data[j] += 0.01f * (float)((j * 7 + i) % 13 - 6);
    }
    int len[2] = {lengths[0], lengths[1]};
    float *masks[2] = {mask, mask + 32}, *ws[2] = {w, w + 32};
    float n = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 2; i < len[s]; i += 1 + s) masks[s][i] = 1, n++;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < len[s]; i++) ws[s][i] = -masks[s][i] / n;
    float loss = 0, objective = 0;
    const int32_t *const *tok = (const int32_t *const *)tokens;
    CHECK_OK(trainer_forward_backward(t, tok, (const float *const *)masks, len, 2, &loss, &err), &err);
    for (int i = 0, off = 0; i < trainer_n_tensors(t); i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        memcpy(ce_grad + off, x->grad, (size_t)x->rows * x->cols * sizeof(float));
        memset(x->grad, 0, (size_t)x->rows * x->cols * sizeof(float));
        off += x->rows * x->cols;
    }
    CHECK_OK(trainer_forward_backward_weighted(t, tok, (const float *const *)ws, len, 2, &objective, &err), &err);
    CHECK_NEAR(objective, loss, 1e-6 * loss);
    double d = 0, r = 0;
    for (int i = 0, off = 0; i < trainer_n_tensors(t); i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        for (int j = 0; j < x->rows * x->cols; j++, off++)
            d = fmax(d, fabs(x->grad[j] - ce_grad[off])), r = fmax(r, fabs(ce_grad[off]));
    }
    CHECK(r > 0 && d <= 1e-6 * r);
done:
    free(ce_grad);
    free(mask);
    free(w);
    trainer_close(t);
    model_close(m);
}

static void test_adapter_off_errors(void) {
    /* dropout would make the loss's log-probs differ from the trained forward's */
    bs_model *m = oracle_model();
    if (!m) return;
    bs_error err = {0};
    bs_train_config tc;
    train_config_default(&tc);
    tc.lora.dropout = 0.1f;
    tc.max_tokens = 128;
    bs_trainer *t = NULL;
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    bs_grpo_config c;
    grpo_config_default(&c);
    bs_grpo_batch b = {.n = 1, .lengths = lengths};
    bs_grpo_loss_stats ls;
    if (t) CHECK(grpo_forward_backward(t, &c, (const int32_t *const *)tokens, &b, &ls, &err) == BS_EINVAL);
    trainer_close(t);
    tc.full = 1;
    t = NULL;
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    float lp[32], *rows[1] = {lp};
    if (t) CHECK(trainer_token_logprobs(t, (const int32_t *const *)tokens, lengths, 1, 0, rows, NULL, &err) == BS_EINVAL);
    trainer_close(t);
    model_close(m);
}

int main(void) {
    RUN(test_advantages_exact);
    RUN(test_loss_exact);
    RUN(test_grpo_grad_oracle);
    RUN(test_weighted_is_cross_entropy);
    RUN(test_adapter_off_errors);
    free(batch_buf);
    TEST_MAIN_END();
}
