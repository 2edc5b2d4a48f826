/* train/trainer.c behaviour on small random models: the forward agrees with
 * the inference engine, PEFT initialisation, determinism, recomputation and
 * dropout, gradient accumulation, full-training decay groups, and errors.
 * (Gradients themselves are checked against PyTorch in test_grad_oracle.c.) */
#include <stdint.h>

#include "../support/test.h"
#include "engine/context.h"
#include "engine/model.h"
#include "train/trainer.h"

enum { T1 = 24, T2 = 11 };
static int32_t seq1[T1], seq2[T2];
static float mask1[T1], mask2[T2];

static bs_model *open_model(int tied, int qk_norm) {
    bs_model_config c = {.arch = qk_norm ? BS_ARCH_QWEN3 : BS_ARCH_LLAMA, .n_vocab = 320, .dim = 32, .n_layers = 2,
                         .n_heads = 4, .n_kv_heads = 2, .head_dim = qk_norm ? 16 : 8, .ffn_dim = 64, .max_pos = 64,
                         .rms_eps = 1e-5f, .rope_theta = 10000, .rope_neox = 1, .tied_embeddings = tied,
                         .qkv_bias = qk_norm, .qk_norm = qk_norm};
    bs_model_params p = {.n_threads = 1};
    bs_model *m = NULL;
    bs_error err = {0};
    CHECK_OK(model_open_random(&c, 11, &p, &m, &err), &err);
    for (int i = 0; i < T1; i++) {
        seq1[i] = (int32_t)((i * 37 + 5) % 320);
        mask1[i] = i >= 4;
    }
    for (int i = 0; i < T2; i++) {
        seq2[i] = (int32_t)((i * 91 + 17) % 320);
        mask2[i] = i % 3 != 0;
    }
    return m;
}

static bs_train_config lora_config(void) {
    bs_train_config tc;
    train_config_default(&tc);
    tc.lora.rank = 4;
    tc.lora.alpha = 8;
    tc.max_tokens = 48;
    tc.lr = 1e-2f;
    tc.total_steps = 10;
    tc.seed = 3;
    return tc;
}

static float fb(bs_trainer *t, int both) {
    const int32_t *toks[2] = {seq1, seq2};
    const float *masks[2] = {mask1, mask2};
    int lens[2] = {T1, T2};
    float loss = 0;
    bs_error err = {0};
    CHECK_OK(trainer_forward_backward(t, toks, masks, lens, both ? 2 : 1, &loss, &err), &err);
    return loss;
}

/* Fresh adapters (B = 0) leave the model as it is: the trainer's loss is
 * the cross-entropy of the inference engine's logits. */
static void test_forward_matches_inference(void) {
    for (int qk = 0; qk <= 1; qk++) {
        bs_model *m = open_model(!qk, qk);
        bs_train_config tc = lora_config();
        bs_trainer *t = NULL;
        bs_context *c = NULL;
        bs_error err = {0};
        static float logits[T1 * 320];
        CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
        CHECK_OK(context_open(m, T1, &c, &err), &err);
        if (!t || !c) return;
        CHECK_OK(context_eval(c, seq1, T1, logits, 1, &err), &err);
        double ref = 0, w = 0;
        for (int i = 0; i + 1 < T1; i++) {
            const float *z = logits + (size_t)i * 320;
            double mx = z[0], s = 0;
            for (int v = 1; v < 320; v++) mx = fmax(mx, z[v]);
            for (int v = 0; v < 320; v++) s += exp(z[v] - mx);
            ref += mask1[i + 1] * (mx + log(s) - z[seq1[i + 1]]);
            w += mask1[i + 1];
        }
        ref /= w;
        const int32_t *toks[1] = {seq1};
        const float *masks[1] = {mask1};
        int len = T1;
        float loss = 0;
        CHECK_OK(trainer_eval_loss(t, toks, masks, &len, 1, &loss, &err), &err);
        fprintf(stderr, "  %s: trainer loss %.6f, inference loss %.6f\n", qk ? "qwen3" : "llama", loss, ref);
        CHECK_NEAR(loss, ref, 1e-4 * ref);
        CHECK_NEAR(fb(t, 0), loss, 1e-6 * loss); /* dropout 0: training forward = eval */
        context_close(c);
        trainer_close(t);
        model_close(m);
    }
}

/* PEFT: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0; names, shapes and scales. */
static void test_lora_init(void) {
    bs_model *m = open_model(1, 0);
    bs_train_config tc = lora_config();
    tc.lora.targets = BS_LORA_TARGET(BS_LIN_Q) | BS_LORA_TARGET(BS_LIN_DOWN);
    bs_trainer *t = NULL, *t2 = NULL, *t3 = NULL;
    bs_error err = {0};
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    CHECK_OK(trainer_open(m, &tc, &t2, &err), &err);
    tc.seed = 4;
    tc.lora.rslora = 1;
    CHECK_OK(trainer_open(m, &tc, &t3, &err), &err);
    if (!t || !t2 || !t3) return;
    CHECK_INT(trainer_n_tensors(t), 2 * 2 * 2);
    CHECK_STR(trainer_tensor(t, 0)->name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    CHECK_STR(trainer_tensor(t, 3)->name, "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
    CHECK_NEAR(trainer_lora_scale(t), 2.0, 0);
    CHECK_NEAR(trainer_lora_scale(t3), 4.0, 1e-6); /* rsLoRA: 8 / sqrt(4) */
    for (int i = 0; i < trainer_n_tensors(t); i++) {
        const bs_train_tensor *x = trainer_tensor(t, i), *y = trainer_tensor(t2, i), *z = trainer_tensor(t3, i);
        size_t n = (size_t)x->rows * x->cols;
        int is_a = strstr(x->name, "lora_A") != NULL;
        CHECK_INT(x->rows, is_a ? 4 : (x->lin == BS_LIN_Q ? 32 : 32));
        CHECK_INT(x->cols, is_a ? (x->lin == BS_LIN_DOWN ? 64 : 32) : 4);
        float bound = is_a ? 1.0f / sqrtf((float)x->cols) : 0, lo = 0, hi = 0;
        for (size_t k = 0; k < n; k++) {
            lo = fminf(lo, x->data[k]);
            hi = fmaxf(hi, x->data[k]);
        }
        CHECK(lo >= -bound && hi <= bound);
        if (is_a) CHECK(hi > 0.8f * bound && lo < -0.8f * bound);
        CHECK(memcmp(x->data, y->data, n * sizeof(float)) == 0);             /* same seed */
        if (is_a) CHECK(memcmp(x->data, z->data, n * sizeof(float)) != 0);  /* other seed */
    }
    trainer_close(t);
    trainer_close(t2);
    trainer_close(t3);
    model_close(m);
}

/* B non-zero so every LoRA gradient is live. */
static void set_b(bs_trainer *t) {
    for (int i = 0; i < trainer_n_tensors(t); i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        if (!strstr(x->name, "lora_B")) continue;
        for (int k = 0; k < x->rows * x->cols; k++) x->data[k] = 0.05f * (float)((k * 7 + i) % 11 - 5);
    }
}

static int same_state(const bs_trainer *a, const bs_trainer *b, int grads) {
    for (int i = 0; i < trainer_n_tensors(a); i++) {
        const bs_train_tensor *x = trainer_tensor(a, i), *y = trainer_tensor(b, i);
        size_t n = (size_t)x->rows * x->cols * sizeof(float);
        if (memcmp(grads ? x->grad : x->data, grads ? y->grad : y->data, n)) return 0;
    }
    return 1;
}

/* Recomputing layers in the backward (with dropout masks redrawn from their
 * keys) gives bit-identical gradients and updates; runs are reproducible. */
static void test_recompute_and_dropout_deterministic(void) {
    bs_model *m = open_model(0, 1);
    bs_train_config tc = lora_config();
    tc.lora.dropout = 0.2f;
    bs_trainer *a = NULL, *b = NULL, *c = NULL;
    bs_error err = {0};
    CHECK_OK(trainer_open(m, &tc, &a, &err), &err);
    CHECK_OK(trainer_open(m, &tc, &c, &err), &err);
    tc.recompute = 1;
    CHECK_OK(trainer_open(m, &tc, &b, &err), &err);
    if (!a || !b || !c) return;
    set_b(a), set_b(b), set_b(c);
    for (int s = 0; s < 3; s++) {
        float la = fb(a, 1), lb = fb(b, 1), lc = fb(c, 1);
        CHECK(la == lb && la == lc);
        CHECK(same_state(a, b, 1) && same_state(a, c, 1));
        float na, nb, nc, lra, lrb, lrc;
        CHECK_OK(trainer_step(a, &na, &lra, &err), &err);
        CHECK_OK(trainer_step(b, &nb, &lrb, &err), &err);
        CHECK_OK(trainer_step(c, &nc, &lrc, &err), &err);
        CHECK(na == nb && na == nc && na > 0);
        CHECK(same_state(a, b, 0) && same_state(a, c, 0));
    }
    CHECK_INT(trainer_steps_done(a), 3);
    /* dropout is on: the training loss differs from the eval loss */
    const int32_t *toks[2] = {seq1, seq2};
    const float *masks[2] = {mask1, mask2};
    int lens[2] = {T1, T2};
    float eval = 0, train = fb(a, 1);
    CHECK_OK(trainer_eval_loss(a, toks, masks, lens, 2, &eval, &err), &err);
    CHECK(eval != train);
    trainer_close(a);
    trainer_close(b);
    trainer_close(c);
    model_close(m);
}

/* Two micro-batches then a step: the step sees the mean of their gradients. */
static void test_grad_accumulation(void) {
    bs_model *m = open_model(1, 0);
    bs_train_config tc = lora_config();
    tc.clip_norm = 0;
    bs_trainer *t = NULL;
    bs_error err = {0};
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    if (!t) return;
    set_b(t);
    int n = trainer_n_tensors(t);
    float lr, norm;
    fb(t, 0);
    float first = trainer_tensor(t, 0)->grad[0];
    fb(t, 1);
    double sumsq = 0;
    for (int i = 0; i < n; i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        for (int k = 0; k < x->rows * x->cols; k++) {
            double g = x->grad[k] / 2.0;
            sumsq += g * g;
        }
    }
    CHECK(first != trainer_tensor(t, 0)->grad[0]); /* gradients add up */
    CHECK_OK(trainer_step(t, &norm, &lr, &err), &err);
    CHECK_NEAR(norm, sqrt(sumsq), 1e-6 * sqrt(sumsq));
    CHECK_NEAR(lr, 1e-2, 1e-9); /* linear, no warmup: update 0 of 10 at the full lr */
    for (int i = 0; i < n; i++) CHECK(trainer_tensor(t, i)->grad[0] == 0);
    CHECK_INT(trainer_step(t, &norm, &lr, &err), BS_EINVAL); /* nothing accumulated */
    trainer_close(t);
    model_close(m);
}

/* Full training: every parameter, decay only on matrices, tied head shared. */
static void test_full_tensors(void) {
    bs_model *m = open_model(1, 1);
    bs_train_config tc = lora_config();
    tc.full = 1;
    bs_trainer *t = NULL;
    bs_error err = {0};
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    if (!t) return;
    /* embed + 2 x (2 norms + 7 matrices + 3 biases + q/k norm) + final norm; tied: no lm_head */
    CHECK_INT(trainer_n_tensors(t), 1 + 2 * 14 + 1);
    CHECK_STR(trainer_tensor(t, 0)->name, "model.embed_tokens.weight");
    CHECK_STR(trainer_tensor(t, trainer_n_tensors(t) - 1)->name, "model.norm.weight");
    for (int i = 0; i < trainer_n_tensors(t); i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        int vec = x->cols == 1;
        CHECK_INT(x->decay, !vec);
        CHECK(vec == (strstr(x->name, "norm") != NULL || strstr(x->name, "bias") != NULL));
    }
    CHECK_NEAR(trainer_lora_scale(t), 0, 0);
    float l0 = fb(t, 1), norm, lr;
    for (int s = 0; s < 5; s++) {
        CHECK_OK(trainer_step(t, &norm, &lr, &err), &err);
        fb(t, 1);
    }
    float l5 = fb(t, 1);
    CHECK(l5 < l0);
    trainer_close(t);
    model_close(m);
}

static void test_errors(void) {
    bs_model *m = open_model(1, 0);
    bs_train_config tc = lora_config();
    bs_trainer *t = NULL;
    bs_error err = {0};
    tc.lora.rank = 0;
    CHECK_INT(trainer_open(m, &tc, &t, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "rank") != NULL);
    tc = lora_config();
    tc.lora.dropout = 1;
    CHECK_INT(trainer_open(m, &tc, &t, &err), BS_EINVAL);
    tc = lora_config();
    tc.lora.targets = 1u << 9;
    CHECK_INT(trainer_open(m, &tc, &t, &err), BS_EINVAL);
    tc = lora_config();
    tc.max_tokens = 16;
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    if (!t) return;
    const int32_t *toks[1] = {seq1};
    const float *masks[1] = {mask1};
    int len = T1;
    float loss = 1, norm, lr;
    CHECK_INT(trainer_forward_backward(t, toks, masks, &len, 1, &loss, &err), BS_EINVAL); /* 24 > 16 tokens */
    CHECK(strstr(err.msg, "max_tokens") != NULL);
    int32_t bad[3] = {1, 320, 2};
    const int32_t *btoks[1] = {bad};
    len = 3;
    CHECK_INT(trainer_forward_backward(t, btoks, masks, &len, 1, &loss, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "vocabulary") != NULL);
    float zeros[3] = {0, 0, 0};
    const float *zmask[1] = {zeros};
    bad[1] = 7;
    CHECK_OK(trainer_forward_backward(t, btoks, zmask, &len, 1, &loss, &err), &err);
    CHECK(loss == 0);
    CHECK_INT(trainer_step(t, &norm, &lr, &err), BS_EINVAL); /* no weighted tokens, no gradient */
    trainer_close(t);
    model_close(m);
}

int main(void) {
    RUN(test_forward_matches_inference);
    RUN(test_lora_init);
    RUN(test_recompute_and_dropout_deterministic);
    RUN(test_grad_accumulation);
    RUN(test_full_tensors);
    RUN(test_errors);
    TEST_MAIN_END();
}
