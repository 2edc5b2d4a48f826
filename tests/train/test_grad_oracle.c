/* The trainer against PyTorch autograd.
 *
 * tests/oracle/train_ref.py writes tiny random models of every architecture
 * (llama with llama3 scaling and an untied head, llama with every bias and a
 * tied head, mistral with a sliding window and rsLoRA over bf16, qwen2 with
 * q/k/v biases, qwen3 with q/k norm and head_dim != dim/heads over bf16 and
 * Q8_0, a 256-wide qwen2 over Q4_K), one packed micro-batch of two sequences with loss masks, the LoRA
 * A/B to start from (B non-zero so A's gradient is not trivially zero), the
 * gradients of the first micro-batch's mean loss, and the losses around
 * three AdamW steps.  Each case checks, for every trained tensor,
 * max |grad - ref| / max |ref| <= 1e-4, and every loss to 1e-5 relative. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../support/oracle.h"
#include "../support/test.h"
#include "engine/model.h"
#include "train/trainer.h"

/* As in train_ref.py. */
#define LR 2e-3f
#define WD 0.1f
#define CLIP 1.0f
enum { WARMUP = 1, TOTAL = 4, STEPS = 3, MAX_B = 4 };

static const char *out_dir;
static const char *setup_skip;
static int setup_done, setup_ok;
static int n_seq, lengths[MAX_B];
static int32_t *tokens[MAX_B];
static float *masks[MAX_B];
static void *batch_buf;

static int setup(void) {
    if (setup_done) return setup_ok;
    setup_done = 1;
    if ((setup_skip = test_torch_missing()) || !(out_dir = test_temp_dir("basalt-train"))) return 0;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' tests/oracle/train_ref.py '%s'", test_python(), out_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "  %s failed\n", cmd);
        return 0;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/batch.bin", out_dir);
    long size = 0;
    int32_t *b = batch_buf = test_read_file(path, &size);
    if (!b || b[0] < 1 || b[0] > MAX_B) return 0;
    n_seq = b[0];
    long total = 0;
    for (int i = 0; i < n_seq; i++) total += lengths[i] = b[1 + i];
    if (size != 4 * (1 + n_seq + 2 * total)) return 0;
    int32_t *tok = b + 1 + n_seq;
    float *mask = (float *)(tok + total);
    for (int i = 0; i < n_seq; i++) {
        tokens[i] = tok;
        masks[i] = mask;
        tok += lengths[i];
        mask += lengths[i];
    }
    return setup_ok = 1;
}

enum { MAX_NAMED = 512 };

static void run_case(const char *name) {
    if (!setup()) {
        if (setup_skip) SKIP(setup_skip);
        CHECK(!"oracle generation failed");
        return;
    }
    char path[512], line[1024], cname[128], model_path[512] = "", mode[16] = "";
    int rank = 0, rslora = 0;
    float alpha = 0;
    snprintf(path, sizeof path, "%s/manifest.txt", out_dir);
    FILE *mf = fopen(path, "r");
    CHECK(mf != NULL);
    if (!mf) return;
    while (fgets(line, sizeof line, mf)) {
        char mp[512], md[16];
        int r, rs;
        float al;
        if (sscanf(line, "%127s %511s %15s %d %f %d", cname, mp, md, &r, &al, &rs) == 6 && !strcmp(cname, name)) {
            snprintf(model_path, sizeof model_path, "%s", mp);
            snprintf(mode, sizeof mode, "%s", md);
            rank = r, alpha = al, rslora = rs;
        }
    }
    fclose(mf);
    CHECK(model_path[0] != 0);
    if (!model_path[0]) return;

    bs_error err = {0};
    bs_model *m = NULL;
    bs_model_params mp = {.n_threads = 1};
    CHECK_OK(model_open(model_path, &mp, &m, &err), &err);
    if (!m) return;
    bs_train_config tc;
    train_config_default(&tc);
    tc.full = strcmp(mode, "full") == 0;
    tc.lora = (bs_lora_config){.rank = rank, .alpha = alpha, .rslora = rslora, .targets = BS_LORA_ALL_LINEAR};
    tc.lr = LR;
    tc.weight_decay = WD;
    tc.clip_norm = CLIP;
    tc.warmup_steps = WARMUP;
    tc.total_steps = TOTAL;
    tc.schedule = BS_SCHEDULE_COSINE;
    tc.max_tokens = 64;
    tc.seed = 7;
    bs_trainer *t = NULL;
    CHECK_OK(trainer_open(m, &tc, &t, &err), &err);
    void *init_buf = NULL, *grad_buf = NULL;
    test_named *init = calloc(MAX_NAMED, sizeof *init), *grad = calloc(MAX_NAMED, sizeof *grad);
    if (!t || !init || !grad) goto done;

    int n_init = 0;
    if (!tc.full) {
        snprintf(path, sizeof path, "%s/%s.init", out_dir, name);
        n_init = test_read_named(path, &init_buf, init, MAX_NAMED);
        CHECK_INT(n_init, trainer_n_tensors(t));
        for (int i = 0; i < trainer_n_tensors(t); i++) {
            const bs_train_tensor *x = trainer_tensor(t, i);
            const test_named *r = test_find_named(init, n_init, x->name);
            CHECK(r && r->rows == x->rows && r->cols == x->cols);
            if (r && r->rows == x->rows && r->cols == x->cols)
                memcpy(x->data, r->data, (size_t)x->rows * x->cols * sizeof(float));
        }
    }
    snprintf(path, sizeof path, "%s/%s.grad", out_dir, name);
    int n_grad = test_read_named(path, &grad_buf, grad, MAX_NAMED);
    CHECK_INT(n_grad, trainer_n_tensors(t));
    snprintf(path, sizeof path, "%s/%s.loss", out_dir, name);
    long lsize = 0;
    double *ref_loss = test_read_file(path, &lsize);
    CHECK_INT(lsize, (STEPS + 1) * 8);
    if (!ref_loss || lsize != (STEPS + 1) * 8) goto done;

    double worst_grad = 0, worst_loss = 0;
    const char *worst_name = "";
    for (int s = 0; s < STEPS; s++) {
        float loss = 0, norm = 0, lr = 0;
        CHECK_OK(trainer_forward_backward(t, (const int32_t *const *)tokens, (const float *const *)masks, lengths,
                                          n_seq, &loss, &err),
                 &err);
        double rl = fabs(loss - ref_loss[s]) / fabs(ref_loss[s]);
        if (rl > worst_loss) worst_loss = rl;
        if (s == 0)
            for (int i = 0; i < trainer_n_tensors(t); i++) {
                const bs_train_tensor *x = trainer_tensor(t, i);
                const test_named *r = test_find_named(grad, n_grad, x->name);
                CHECK(r && r->rows == x->rows && r->cols == x->cols);
                if (!r || r->rows != x->rows || r->cols != x->cols) continue;
                double e = test_max_rel(x->grad, r->data, (size_t)x->rows * x->cols);
                if (!(e <= worst_grad)) {
                    worst_grad = e;
                    worst_name = x->name;
                }
            }
        CHECK_OK(trainer_step(t, &norm, &lr, &err), &err);
    }
    float final = 0;
    CHECK_OK(trainer_eval_loss(t, (const int32_t *const *)tokens, (const float *const *)masks, lengths, n_seq, &final,
                               &err),
             &err);
    double rl = fabs(final - ref_loss[STEPS]) / fabs(ref_loss[STEPS]);
    if (rl > worst_loss) worst_loss = rl;
    fprintf(stderr, "  %-24s %3d tensors: max grad rel err %.2e (%s), loss rel err %.2e (%.6f -> %.6f)\n", name,
            trainer_n_tensors(t), worst_grad, worst_name, worst_loss, ref_loss[0], final);
    CHECK(worst_grad <= 1e-4);
    CHECK(worst_loss <= 1e-5);
    CHECK(final < ref_loss[0]);
    free(ref_loss);
done:
    free(init_buf);
    free(grad_buf);
    free(init);
    free(grad);
    trainer_close(t);
    model_close(m);
}

#define ORACLE_CASE(fn, name) \
    static void fn(void) { run_case(name); }
ORACLE_CASE(test_llama_lora, "llama-hf-f32-lora")
ORACLE_CASE(test_llama_full, "llama-hf-f32-full")
ORACLE_CASE(test_llama_bias_full, "llama_bias-hf-f32-full")
ORACLE_CASE(test_mistral_bf16_rslora, "mistral-hf-bf16-lora")
ORACLE_CASE(test_qwen2_lora, "qwen2-hf-f32-lora")
ORACLE_CASE(test_qwen2_full, "qwen2-hf-f32-full")
ORACLE_CASE(test_qwen3_bf16_lora, "qwen3-hf-bf16-lora")
ORACLE_CASE(test_qwen3_bf16_full, "qwen3-hf-bf16-full")
ORACLE_CASE(test_qwen3_q8_0_lora, "qwen3-gguf-q8_0-lora")
ORACLE_CASE(test_qwen2_q4_k_lora, "qwen2-gguf-q4_k-lora")

int main(void) {
    RUN(test_llama_lora);
    RUN(test_llama_full);
    RUN(test_llama_bias_full);
    RUN(test_mistral_bf16_rslora);
    RUN(test_qwen2_lora);
    RUN(test_qwen2_full);
    RUN(test_qwen3_bf16_lora);
    RUN(test_qwen3_bf16_full);
    RUN(test_qwen3_q8_0_lora);
    RUN(test_qwen2_q4_k_lora);
    free(batch_buf);
    TEST_MAIN_END();
}
