/* train/sft.c on a tiny random model with the byte-level tokenizer: the
 * "auto" rules, learning a memorised prompt -> completion mapping (loss
 * falls, greedy decoding reproduces the answers), a run interrupted at a
 * checkpoint and resumed ending bit-identical to an uninterrupted one,
 * refusal of another run's checkpoint, and the PEFT export loading back. */
#include <sys/stat.h>
#include <unistd.h>

#include "../support/test.h"
#include "engine/adapter.h"
#include "engine/model.h"
#include "train/dataset.h"
#include "train/sft.h"
#include "tiny_run.h"

#define EOS 256

static const char *const PROMPTS[] = {"cat=", "sun=", "red=", "owl="};
static const char *const ANSWERS[] = {"dog", "moon", "blue", "fox"};
#define N_PAIRS 4

static dataset *pairs_dataset(bs_model *m, const sft_config *c) {
    const char *path = path_in("pairs.jsonl");
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < N_PAIRS; i++) fprintf(f, "{\"prompt\":\"%s\",\"completion\":\"%s\"}\n", PROMPTS[i], ANSWERS[i]);
    if (f) fclose(f);
    dataset_opts o;
    sft_dataset_opts(c, &o);
    dataset *ds = NULL;
    bs_error err = {0};
    CHECK_OK(dataset_open(path, DATASET_AUTO, model_tokenizer(m), NULL, &o, &ds, NULL, &err), &err);
    return ds;
}

static sft_config small_config(void) {
    sft_config c;
    sft_config_default(&c);
    c.n_epochs = 40;
    c.batch_size = 4;
    c.lr = 1e-2;
    c.lora.rank = 8;
    c.max_length = 32;
    c.seed = 7;
    c.threads = 1;
    c.checkpoint_every = -1;
    return c;
}

static void test_auto_rules(void) {
    bs_error err = {0};
    sft_config c;
    sft_config_default(&c);
    CHECK_OK(sft_resolve(&c, 10, &err), &err);
    CHECK_INT(c.n_epochs, 10); /* 10 x 3 < 100: ceil(100 / 10) */
    CHECK_INT(c.batch_size, 1);
    CHECK_NEAR(c.lr, 1e-4, 1e-12);
    CHECK_INT(c.lora.rank, 16);
    CHECK_NEAR(c.lora.alpha, 32, 0);
    CHECK_INT(c.lora.targets, BS_LORA_ALL_LINEAR);
    CHECK_INT(c.max_length, 1024);
    sft_config_default(&c);
    CHECK_OK(sft_resolve(&c, 2, &err), &err);
    CHECK_INT(c.n_epochs, 25); /* capped */
    sft_config_default(&c);
    c.lr_multiplier = 2;
    CHECK_OK(sft_resolve(&c, 1000, &err), &err);
    CHECK_INT(c.n_epochs, 3);
    CHECK_INT(c.batch_size, 2);
    CHECK_NEAR(c.lr, 2e-4, 1e-12);
    CHECK_INT(c.checkpoint_every, 150); /* 3 epochs x 500 steps / 10 */
    sft_config_default(&c);
    CHECK_OK(sft_resolve(&c, 20000, &err), &err);
    CHECK_INT(c.n_epochs, 1);
    CHECK_INT(c.batch_size, 32); /* 0.2% is 40; LoRA caps at 32 */
    sft_config_default(&c);
    c.full = 1;
    CHECK_OK(sft_resolve(&c, 20000, &err), &err);
    CHECK_INT(c.batch_size, 40);
    CHECK_NEAR(c.lr, 2e-5, 1e-12);
    sft_config_default(&c);
    c.n_epochs = 51;
    CHECK_INT(sft_resolve(&c, 10, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "n_epochs") != NULL);
    sft_config_default(&c);
    c.lora.rank = 100000;
    CHECK_INT(sft_resolve(&c, 10, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "lora_rank") != NULL);
    sft_config_default(&c);
    CHECK_INT(sft_resolve(&c, 0, &err), BS_EINVAL);
}

/* Greedy continuation by the trained model itself: at each position the
 * next token is the one whose prediction loss is lowest, i.e. the argmax of
 * the trained logits (LoRA applied, dropout off). */
static void greedy(bs_trainer *t, const char *prompt, char *out, int cap) {
    int32_t seq[64];
    float mask[64] = {0};
    int n = 0, len = 0;
    for (const char *p = prompt; *p; p++) seq[n++] = (unsigned char)*p;
    bs_error err = {0};
    while (len + 1 < cap && n < 63) {
        int best = -1;
        float best_loss = 0;
        mask[n] = 1;
        for (int v = 0; v < 257; v++) {
            seq[n] = v;
            const int32_t *toks[1] = {seq};
            const float *masks[1] = {mask};
            int lens[1] = {n + 1};
            float loss = 0;
            if (trainer_eval_loss(t, toks, masks, lens, 1, &loss, &err) != BS_OK) return;
            if (best < 0 || loss < best_loss) best = v, best_loss = loss;
        }
        mask[n] = 0;
        if (best == EOS) break;
        seq[n++] = best;
        out[len++] = (char)best;
    }
    out[len] = '\0';
}

static void test_learns_mapping(void) {
    bs_model *m = tiny_model(64);
    sft_config c = small_config();
    bs_error err = {0};
    CHECK_OK(sft_resolve(&c, N_PAIRS, &err), &err);
    dataset *ds = m ? pairs_dataset(m, &c) : NULL;
    sft_run *r = NULL;
    if (ds) CHECK_OK(sft_open(m, &c, ds, ds, &r, &err), &err);
    if (!r) goto out;
    CHECK_INT(sft_total_steps(r), 40);
    double before = 0, after = 0;
    CHECK_OK(sft_eval(r, &before, &err), &err);
    int finished = 0;
    CHECK_OK(sft_train(r, NULL, NULL, &finished, &err), &err);
    CHECK(finished);
    CHECK_INT(sft_step(r), 40);
    CHECK_OK(sft_eval(r, &after, &err), &err);
    CHECK(before > 2.0);
    CHECK(after < 0.05 * before);
    /* Every sequence is 4 prompt + answer + EOS tokens, once per epoch. */
    int64_t tokens = 0;
    for (int i = 0; i < N_PAIRS; i++) tokens += (int64_t)(strlen(PROMPTS[i]) + strlen(ANSWERS[i]) + 1);
    CHECK_INT(sft_trained_tokens(r), tokens * 40);
    for (int i = 0; i < N_PAIRS; i++) {
        char got[16];
        greedy(sft_trainer(r), PROMPTS[i], got, sizeof got);
        CHECK_STR(got, ANSWERS[i]);
    }
out:
    sft_close(r);
    dataset_close(ds);
    model_close(m);
}

typedef struct stopper {
    int stop_at, checkpoints, last_step;
    double last_eta;
} stopper;

static int stop_hook(void *user, const sft_progress *p) {
    stopper *s = user;
    s->last_step = p->step;
    s->last_eta = p->eta_s;
    return p->step == s->stop_at;
}

static bs_status count_checkpoint(void *user, const sft_progress *p, const char *dir, bs_error *err) {
    (void)err;
    stopper *s = user;
    char want[32];
    snprintf(want, sizeof want, "checkpoint-%d", p->step);
    CHECK(strstr(dir, want) != NULL);
    s->checkpoints++;
    return BS_OK;
}

/* The trained values after a whole run of c (optionally stopped and resumed). */
static float *train_values(bs_model *m, const dataset *ds, const sft_config *c, int stop_at, size_t *n_out) {
    bs_error err = {0};
    sft_run *r = NULL;
    float *out = NULL;
    CHECK_OK(sft_open(m, c, ds, NULL, &r, &err), &err);
    if (!r) return NULL;
    stopper s = {.stop_at = stop_at};
    sft_hooks h = {.user = &s, .on_step = stop_hook, .on_checkpoint = count_checkpoint};
    int finished = 0;
    const char *root = path_in(stop_at ? "resumed" : "straight");
    CHECK_OK(sft_train(r, root, &h, &finished, &err), &err);
    if (stop_at) {
        CHECK(!finished);
        CHECK_INT(sft_step(r), stop_at);
        CHECK(s.last_eta > 0);
        sft_close(r);
        /* A new run (as after a restart) continues from the checkpoint. */
        char dir[160];
        snprintf(dir, sizeof dir, "%s/checkpoint-%d", root, stop_at);
        CHECK_OK(sft_open(m, c, ds, NULL, &r, &err), &err);
        if (!r) return NULL;
        CHECK_OK(sft_load_checkpoint(r, dir, &err), &err);
        CHECK_INT(sft_step(r), stop_at);
        CHECK_OK(sft_train(r, root, &h, &finished, &err), &err);
    }
    CHECK(finished);
    CHECK_INT(s.last_step, sft_total_steps(r));
    CHECK_INT(s.checkpoints, sft_total_steps(r) / c->checkpoint_every);
    size_t n = trainer_n_params(sft_trainer(r));
    out = malloc(n * sizeof *out);
    memcpy(out, trainer_tensor(sft_trainer(r), 0)->data, n * sizeof *out);
    *n_out = n;
    sft_close(r);
    return out;
}

static void test_resume_is_exact(void) {
    bs_model *m = tiny_model(64);
    sft_config c = small_config();
    c.n_epochs = 3;
    c.batch_size = 3; /* 2 steps per epoch: the second batch is short, epochs reshuffle */
    c.lora.dropout = 0.1f; /* the dropout keys must resume too */
    c.checkpoint_every = 2;
    c.warmup_ratio = 0.3f;
    bs_error err = {0};
    CHECK_OK(sft_resolve(&c, N_PAIRS, &err), &err);
    dataset *ds = m ? pairs_dataset(m, &c) : NULL;
    if (!ds) goto out;
    size_t n1 = 0, n2 = 0;
    float *a = train_values(m, ds, &c, 0, &n1);
    float *b = train_values(m, ds, &c, 2, &n2); /* stops at the step-2 checkpoint, resumes */
    CHECK(a && b && n1 == n2 && n1 > 0);
    if (a && b && n1 == n2) CHECK(memcmp(a, b, n1 * sizeof *a) == 0);
    free(a);
    free(b);

    /* Another seed's run refuses that checkpoint, naming why. */
    sft_config other = c;
    other.seed = 8;
    sft_run *r = NULL;
    CHECK_OK(sft_open(m, &other, ds, NULL, &r, &err), &err);
    if (r) {
        CHECK_INT(sft_load_checkpoint(r, path_in("straight/checkpoint-2"), &err), BS_EFORMAT);
        CHECK(strstr(err.msg, "different run") != NULL);
        CHECK_INT(sft_load_checkpoint(r, path_in("straight/none"), &err), BS_EIO);
        CHECK_INT(sft_step(r), 0);
    }
    sft_close(r);
out:
    dataset_close(ds);
    model_close(m);
}

static void test_export_peft(void) {
    bs_model *m = tiny_model(64);
    sft_config c = small_config();
    c.n_epochs = 2;
    bs_error err = {0};
    CHECK_OK(sft_resolve(&c, N_PAIRS, &err), &err);
    dataset *ds = m ? pairs_dataset(m, &c) : NULL;
    sft_run *r = NULL;
    if (ds) CHECK_OK(sft_open(m, &c, ds, NULL, &r, &err), &err);
    if (!r) goto out;
    int finished = 0;
    CHECK_OK(sft_train(r, NULL, NULL, &finished, &err), &err);
    const char *dir = path_in("export");
    CHECK_OK(sft_export(r, NULL, "tiny-base", dir, &err), &err);
    bs_adapter *a = NULL;
    CHECK_OK(adapter_load_peft(m, dir, &a, &err), &err);
    if (a) {
        CHECK_INT(adapter_config(a)->rank, 8);
        CHECK_NEAR(adapter_scale(a), 2.0, 1e-6); /* alpha auto = 2 x rank */
        const float *A = NULL, *B = NULL;
        CHECK(adapter_lora(a, 1, BS_LIN_DOWN, &A, &B));
        const bs_trainer *t = sft_trainer(r);
        for (int i = 0; i < trainer_n_tensors(t); i++) {
            const bs_train_tensor *x = trainer_tensor(t, i);
            if (strcmp(x->name, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight") == 0 && B)
                CHECK(memcmp(x->data, B, (size_t)x->rows * x->cols * sizeof(float)) == 0);
        }
    }
    adapter_close(a);
    /* Full training needs a Hugging Face base to copy config and tokenizer from. */
    sft_close(r);
    r = NULL;
    c.full = 1;
    CHECK_OK(sft_open(m, &c, ds, NULL, &r, &err), &err);
    if (r) CHECK_INT(sft_export(r, path_in("pairs.jsonl"), "tiny-base", path_in("full"), &err), BS_EUNSUPPORTED);
out:
    sft_close(r);
    dataset_close(ds);
    model_close(m);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/basalt_sft_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_auto_rules);
    RUN(test_learns_mapping);
    RUN(test_resume_is_exact);
    RUN(test_export_peft);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_MAIN_END();
}
