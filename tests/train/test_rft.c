/* train/rft.c on a tiny random model with the byte-level tokenizer and the
 * ChatML fallback template: prompt data validation (rows must end in a user
 * turn), the "auto" rules, GRPO raising the reward of a regex grader (the
 * completion starts with a lower-case letter: about 1 in 10 at first), the
 * failure cutoff on unscorable samples, and checkpoints (resume state,
 * refusal of another run's, keeping the best by valid reward, exporting the
 * best). */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "../support/test.h"
#include "engine/model.h"
#include "engine/scheduler.h"
#include "reward/reward.h"
#include "template/chat_template.h"
#include "train/rft.h"
#include "tiny_run.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static bs_reward_grader *grader(const char *json) {
    json_t *j = json_loads(json, 0, NULL);
    bs_reward_grader *g = NULL;
    bs_error err = {0};
    CHECK_OK(reward_grader_parse(j, &g, &err), &err);
    json_decref(j);
    return g;
}

typedef struct fixture {
    bs_model *m;
    chat_template *tmpl;
    bs_scheduler *sched;
    rft_data *data;
} fixture;

static const char *const PROMPTS = "{\"messages\":[{\"role\":\"user\",\"content\":\"a?\"}],"
                                   "\"reference_answer\":\"x\"}\n"
                                   "{\"messages\":[{\"role\":\"user\",\"content\":\"b?\"}]}\n"
                                   "\n"
                                   "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                                   "{\"role\":\"user\",\"content\":\"c?\"}]}\n"
                                   "{\"messages\":[{\"role\":\"user\",\"content\":\"d?\"}]}\n";

static void fixture_open(fixture *f) {
    bs_error err = {0};
    f->m = tiny_model(256);
    CHECK_OK(chat_template_from_model(NULL, NULL, &f->tmpl, &err), &err);
    bs_scheduler_params sp;
    scheduler_params_default(&sp);
    sp.n_ctx = 256;
    sp.max_running = 32;
    sp.step_tokens = 256;
    CHECK_OK(scheduler_open(f->m, &sp, &f->sched, &err), &err);
    write_file(path_in("prompts.jsonl"), PROMPTS);
    CHECK_OK(rft_data_open(path_in("prompts.jsonl"), model_tokenizer(f->m), f->tmpl, 0, &f->data, NULL, &err), &err);
}

static void fixture_close(fixture *f) {
    rft_data_close(f->data);
    scheduler_close(f->sched);
    chat_template_close(f->tmpl);
    model_close(f->m);
}

static rft_config small_config(void) {
    rft_config c;
    rft_config_default(&c);
    c.n_epochs = 24;
    c.batch_size = 4;
    c.lr = 3e-3;
    c.lora.rank = 8;
    c.grpo.group_size = 8;
    c.grpo.max_completion_len = 2;
    c.max_length = 64;
    c.seed = 11;
    c.threads = 1;
    c.checkpoint_every = -1;
    return c;
}

static void test_data_validation(void) {
    bs_error err = {0};
    fixture f;
    fixture_open(&f);
    CHECK_INT(rft_data_count(f.data), 4);
    write_file(path_in("bad.jsonl"), "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n"
                                     "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                                     "{\"role\":\"assistant\",\"content\":\"yo\"}]}\n"
                                     "not json\n");
    rft_data *d = NULL;
    char *report = NULL;
    CHECK_INT(rft_data_open(path_in("bad.jsonl"), model_tokenizer(f.m), f.tmpl, 0, &d, &report, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "2 problems") != NULL);
    CHECK(report && strstr(report, "line 2: the last message must be a user turn") != NULL);
    CHECK(report && strstr(report, "line 3: invalid JSON") != NULL);
    free(report);
    CHECK_INT(rft_data_open(path_in("prompts.jsonl"), model_tokenizer(f.m), f.tmpl, 5, &d, NULL, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "max_length 5") != NULL);
    fixture_close(&f);
}

static void test_auto_rules(void) {
    bs_error err = {0};
    rft_config c;
    rft_config_default(&c);
    CHECK_OK(rft_resolve(&c, 20, &err), &err);
    CHECK_INT(c.n_epochs, 1);
    CHECK_INT(c.batch_size, 8);
    CHECK_INT(c.grpo.group_size, 8);
    CHECK_INT(c.grpo.max_completion_len, 256);
    CHECK_INT(c.eval_samples, 8);
    CHECK_NEAR(c.lr, 1e-5, 1e-12);
    CHECK_INT(c.lora.rank, 16);
    rft_config_default(&c);
    c.lora.dropout = 0.1f;
    CHECK_INT(rft_resolve(&c, 20, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "lora_dropout") != NULL);
    rft_config_default(&c);
    c.grpo.group_size = 1;
    CHECK_INT(rft_resolve(&c, 20, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "group_size") != NULL);
}

typedef struct rewards_seen {
    double r[64];
    int n;
    int bad_metrics;
} rewards_seen;

static int record(void *user, const rft_progress *p) {
    rewards_seen *s = user;
    if (s->n < 64) s->r[s->n++] = p->train_reward_mean;
    if (p->n_samples != 32 || p->completion_len_max > 2 || p->completion_len_mean <= 0 || p->n_unscored != 0 ||
        !(p->sample_s >= 0 && p->grade_s >= 0 && p->train_s > 0) || !(p->clip_ratio >= 0 && p->clip_ratio <= 1))
        s->bad_metrics++;
    return 0;
}

static void test_reward_rises(void) {
    bs_error err = {0};
    fixture f;
    fixture_open(&f);
    bs_reward_grader *g = grader("{\"type\":\"regex\",\"name\":\"lower\",\"pattern\":\"^[0-9]\"}");
    rft_config c = small_config();
    CHECK_OK(rft_resolve(&c, rft_data_count(f.data), &err), &err);
    rft_run *r = NULL;
    CHECK_OK(rft_open(f.m, f.sched, g, &c, f.data, f.data, &r, &err), &err);
    CHECK_INT(rft_total_steps(r), 24);
    rewards_seen seen = {0};
    rft_hooks h = {.user = &seen, .on_step = record};
    int finished = 0;
    CHECK_OK(rft_train(r, NULL, &h, &finished, &err), &err);
    CHECK_INT(finished, 1);
    CHECK_INT(seen.n, 24);
    CHECK_INT(seen.bad_metrics, 0);
    double first = 0, last = 0;
    for (int i = 0; i < 5; i++) {
        first += seen.r[i] / 5;
        last += seen.r[seen.n - 5 + i] / 5;
    }
    printf("  reward: first steps %.3f, last steps %.3f\n", first, last);
    CHECK(last > first + 0.3);
    double valid = 0;
    CHECK_OK(rft_eval(r, &valid, &err), &err);
    CHECK(valid > first + 0.3);

    /* A checkpoint loads back into a run of the same config and is refused
     * by another. */
    CHECK_OK(rft_save_checkpoint(r, path_in("ckpt"), &err), &err);
    rft_run *again = NULL;
    CHECK_OK(rft_open(f.m, f.sched, g, &c, f.data, NULL, &again, &err), &err);
    CHECK_OK(rft_load_checkpoint(again, path_in("ckpt"), &err), &err);
    CHECK_INT(rft_step(again), 24);
    rft_close(again);
    rft_config other = c;
    other.seed = 12;
    CHECK_OK(rft_open(f.m, f.sched, g, &other, f.data, NULL, &again, &err), &err);
    CHECK_INT(rft_load_checkpoint(again, path_in("ckpt"), &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "different run") != NULL);
    rft_close(again);
    CHECK_OK(rft_export(r, NULL, "tiny", path_in("out"), &err), &err);
    CHECK(access(path_in("out/adapter_model.safetensors"), F_OK) == 0);
    rft_close(r);
    reward_grader_free(g);
    fixture_close(&f);
}

typedef struct valid_seen {
    double valid[16];
    int n_removed, bad;
} valid_seen;

static int record_valid(void *user, const rft_progress *p) {
    valid_seen *s = user;
    if (p->step < 16) s->valid[p->step] = p->valid_reward_mean;
    /* the step's metrics: entropy from the update; multi's only sub-grader
     * scores as the whole grader does, in training and validation */
    const json_t *train = json_object_get(p->grader_scores, "digit"), *valid =
                                                                          json_object_get(p->valid_grader_scores, "digit");
    if (!(p->entropy > 0 && p->entropy < log(257)) || !(p->eval_s > 0) ||
        fabs(json_number_value(train) - p->train_reward_mean) > 1e-6 ||
        fabs(json_number_value(valid) - p->valid_reward_mean) > 1e-9)
        s->bad++;
    return 0;
}

static bs_status count_removed(void *user, const char *dir, bs_error *err) {
    (void)err;
    valid_seen *s = user;
    s->n_removed++;
    if (access(dir, F_OK) == 0) s->bad++; /* the directory goes first */
    return BS_OK;
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb, ca, cb;
    while (same && ((ca = fgetc(fa)) != EOF) | ((cb = fgetc(fb)) != EOF)) same = ca == cb;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* eval_interval 1, keep 2: after 6 steps the root holds the two best
 * checkpoints by valid reward (older on ties) and the latest; the export
 * is the best one's adapter, byte for byte. */
static void test_keep_best(void) {
    bs_error err = {0};
    fixture f;
    fixture_open(&f);
    bs_reward_grader *g = grader("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"digit\":{\"type\":\"regex\","
                                 "\"name\":\"d\",\"pattern\":\"^[0-9]\"}},\"calculate_output\":\"digit\"}");
    rft_config c = small_config();
    c.n_epochs = 6;
    c.eval_every = 1;
    c.checkpoint_every = 1;
    c.keep_checkpoints = 2;
    CHECK_OK(rft_resolve(&c, rft_data_count(f.data), &err), &err);
    rft_run *r = NULL;
    CHECK_OK(rft_open(f.m, f.sched, g, &c, f.data, f.data, &r, &err), &err);
    valid_seen seen = {0};
    rft_hooks h = {.user = &seen, .on_step = record_valid, .on_checkpoint_removed = count_removed};
    int finished = 0;
    if (r) CHECK_OK(rft_train(r, path_in("keep"), &h, &finished, &err), &err);
    CHECK_INT(finished, 1);
    CHECK_INT(seen.bad, 0);
    /* the expected survivors: rank steps 1..6 as prune does */
    int order[6] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            if (seen.valid[order[j]] > seen.valid[order[i]] ||
                (seen.valid[order[j]] == seen.valid[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    int kept = 0;
    for (int step = 1; step <= 6; step++) {
        char name[64];
        snprintf(name, sizeof name, "keep/checkpoint-%d", step);
        int want = step == order[0] || step == order[1] || step == 6;
        CHECK_INT(access(path_in(name), F_OK) == 0, want);
        kept += want;
    }
    printf("  valid rewards %.3f %.3f %.3f %.3f %.3f %.3f: kept %d, %d, 6\n", seen.valid[1], seen.valid[2],
           seen.valid[3], seen.valid[4], seen.valid[5], seen.valid[6], order[0], order[1]);
    CHECK_INT(seen.n_removed, 6 - kept);
    double best_valid = 0;
    CHECK_INT(r ? rft_best(r, &best_valid) : 0, order[0]);
    CHECK(best_valid == seen.valid[order[0]]);
    if (r) CHECK_OK(rft_export(r, NULL, "tiny", path_in("best"), &err), &err);
    char best[64];
    snprintf(best, sizeof best, "keep/checkpoint-%d/adapter_model.safetensors", order[0]);
    CHECK(same_file(path_in("best/adapter_model.safetensors"), path_in(best)));
    /* resuming from the latest brings the best weights back from their checkpoint */
    rft_run *again = NULL;
    CHECK_OK(rft_open(f.m, f.sched, g, &c, f.data, f.data, &again, &err), &err);
    if (again) CHECK_OK(rft_load_checkpoint(again, path_in("keep/checkpoint-6"), &err), &err);
    if (again) CHECK_OK(rft_export(again, NULL, "tiny", path_in("best2"), &err), &err);
    CHECK(same_file(path_in("best2/adapter_model.safetensors"), path_in(best)));
    rft_close(again);
    rft_close(r);
    reward_grader_free(g);
    fixture_close(&f);
}

static void test_unscorable_cutoff(void) {
    bs_error err = {0};
    fixture f;
    fixture_open(&f);
    bs_reward_grader *g = grader("{\"type\":\"command\",\"argv\":[\"/nonexistent/grader\"]}");
    rft_config c = small_config();
    c.n_epochs = 1;
    CHECK_OK(rft_resolve(&c, rft_data_count(f.data), &err), &err);
    rft_run *r = NULL;
    CHECK_OK(rft_open(f.m, f.sched, g, &c, f.data, NULL, &r, &err), &err);
    int finished = 0;
    CHECK_INT(rft_train(r, NULL, NULL, &finished, &err), BS_ERANGE);
    CHECK(strstr(err.msg, "could not score 32 of 32 samples") != NULL);
    CHECK(strstr(err.msg, "command 32") != NULL);
    CHECK_INT(finished, 0);
    rft_close(r);
    reward_grader_free(g);
    fixture_close(&f);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/basalt_rft_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_data_validation);
    RUN(test_auto_rules);
    RUN(test_reward_rises);
    RUN(test_keep_best);
    RUN(test_unscorable_cutoff);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    TEST_MAIN_END();
}
