/* cli/cmd_tune.c — `basalt tune`: supervised fine-tuning (train/sft.h) or
 * reinforcement fine-tuning (--method rft, train/rft.h) in this process, the
 * loops the server's jobs run, with a live progress line on stderr, then the
 * adapter (PEFT) or the full weights (HF) in --out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/scheduler.h"
#include "hub/hub.h"
#include "reward/reward.h"
#include "template/chat_template.h"
#include "train/rft.h"
#include "train/sft.h"

static const cli_command tune_cmd = {
    "tune", "--model M --train DATA.jsonl [--method rft --grader G.json] [--valid V.jsonl] [--out DIR] [options]",
    "Fine-tune a model on a JSONL dataset (LoRA by default) and write the result.",
    "DATA is OpenAI's chat fine-tuning format ({\"messages\": [...]}), or\n"
    "{\"prompt\", \"completion\"} or {\"text\"} lines; every line is checked\n"
    "first and all problems are listed with their line numbers.  Unset\n"
    "hyperparameters follow OpenAI's \"auto\" rules (docs: train/sft.h):\n"
    "epochs from the dataset size, batch size about 0.2% of the examples,\n"
    "learning rate 1e-4 for LoRA (2e-5 with --full), linear decay.\n"
    "LoRA writes DIR/adapter_config.json + adapter_model.safetensors (PEFT,\n"
    "servable with `basalt serve --lora`); --full writes a Hugging Face model\n"
    "directory (f32 safetensors, config and tokenizer files copied).\n"
    "\n"
    "--method rft: reinforcement fine-tuning (GRPO, LoRA only; docs:\n"
    "train/rft.h).  DATA rows are {\"messages\": [...]} ending with a user\n"
    "turn, plus any fields the grader reads as item.* (reference_answer, ...).\n"
    "G.json is a grader in OpenAI's vocabulary (string_check, text_similarity,\n"
    "multi) or basalt's (regex, json_schema, http, command); docs/rewards.md.\n"
    "Each step samples --group-size completions per prompt with the current\n"
    "adapter, scores them and updates; the progress line shows the reward.",
};

typedef struct bar {
    int tty;
    int every; /* plain lines: one per this many steps */
} bar;

static void fmt_time(double s, char *out, size_t cap) {
    long t = isfinite(s) && s > 0 ? (long)(s + 0.5) : 0;
    if (t >= 3600) snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

/* The tty bar of step of total: BAR_WIDTH '#' or '.' and a NUL. */
#define BAR_WIDTH 24
static void bar_line(char line[BAR_WIDTH + 1], int step, int total) {
    int filled = (int)((double)BAR_WIDTH * step / total);
    for (int i = 0; i < BAR_WIDTH; i++) line[i] = i < filled ? '#' : '.';
    line[BAR_WIDTH] = '\0';
}

static int show_progress(void *user, const sft_progress *p) {
    bar *b = user;
    char eta[32], valid[48] = "";
    fmt_time(p->eta_s, eta, sizeof eta);
    if (!isnan(p->valid_loss)) snprintf(valid, sizeof valid, " valid %.4f", p->valid_loss);
    int last = p->step == p->total_steps;
    if (b->tty) {
        char line[BAR_WIDTH + 1];
        bar_line(line, p->step, p->total_steps);
        fprintf(stderr, "\r[%s] step %d/%d epoch %d/%d loss %.4f%s %.0f tok/s ETA %s\033[K%s", line, p->step,
                p->total_steps, p->epoch, p->n_epochs, p->train_loss, valid, p->tokens_per_s, eta, last ? "\n" : "");
    } else if (last || valid[0] || p->step % b->every == 0) {
        fprintf(stderr, "step %d/%d epoch %d/%d loss %.4f%s lr %.3g %.0f tok/s ETA %s\n", p->step, p->total_steps,
                p->epoch, p->n_epochs, p->train_loss, valid, p->lr, p->tokens_per_s, eta);
    }
    return 0;
}

static int show_rft_progress(void *user, const rft_progress *p) {
    bar *b = user;
    char eta[32], valid[48] = "", errs[48] = "";
    fmt_time(p->eta_s, eta, sizeof eta);
    if (!isnan(p->valid_reward_mean)) snprintf(valid, sizeof valid, " valid %.3f", p->valid_reward_mean);
    if (p->n_unscored) snprintf(errs, sizeof errs, " unscored %d/%d", p->n_unscored, p->n_samples);
    int last = p->step == p->total_steps;
    if (b->tty) {
        char line[BAR_WIDTH + 1];
        bar_line(line, p->step, p->total_steps);
        fprintf(stderr, "\r[%s] step %d/%d reward %.3f±%.3f%s%s len %.1f ETA %s\033[K%s", line, p->step,
                p->total_steps, p->train_reward_mean, p->train_reward_std, valid, errs, p->completion_len_mean, eta,
                last ? "\n" : "");
    } else if (last || valid[0] || p->step % b->every == 0) {
        fprintf(stderr,
                "step %d/%d epoch %d/%d reward %.3f std %.3f zero-std %.2f%s%s kl %.4f clip %.3f len %.1f (max %d) "
                "sample %.1fs grade %.1fs train %.1fs ETA %s\n",
                p->step, p->total_steps, p->epoch, p->n_epochs, p->train_reward_mean, p->train_reward_std,
                p->frac_reward_zero_std, valid, errs, p->kl, p->clip_ratio, p->completion_len_mean,
                p->completion_len_max, p->sample_s, p->grade_s, p->train_s, eta);
    }
    return 0;
}

typedef struct rft_opts {
    const char *grader_path;
    int group_size, max_completion, rank, epochs, batch, max_length, threads;
    float lr, temperature, beta;
    uint64_t seed;
} rft_opts;

/* --method rft: prompts, grader and a scheduler over the model for the
 * rollouts, then the GRPO loop and the adapter in out_dir. */
static bs_status tune_rft(bs_model *model, const chat_template *tmpl, const char *path, const char *model_spec,
                          const char *train_path, const char *valid_path, const char *out_dir, const rft_opts *o,
                          bs_error *err) {
    rft_config c;
    rft_config_default(&c);
    c.lora.rank = o->rank;
    c.n_epochs = o->epochs;
    c.batch_size = o->batch;
    c.max_length = o->max_length;
    c.lr = o->lr;
    c.grpo.group_size = o->group_size;
    c.grpo.max_completion_len = o->max_completion;
    if (o->temperature > 0) c.temperature = o->temperature;
    c.grpo.beta = o->beta;
    c.seed = o->seed;
    c.threads = o->threads;
    c.checkpoint_every = -1;
    json_error_t je;
    json_t *gj = json_load_file(o->grader_path, 0, &je);
    if (!gj) return bs_fail(err, BS_EFORMAT, "%s: line %d: %s", o->grader_path, je.line, je.text);
    bs_reward_grader *g = NULL;
    rft_data *train = NULL, *valid = NULL;
    bs_scheduler *sched = NULL;
    rft_run *run = NULL;
    char *report = NULL;
    bs_status st = reward_grader_parse(gj, &g, err);
    json_decref(gj);
    if (st != BS_OK) bs_wrap(err, "%s", o->grader_path);
    if (st == BS_OK) st = rft_data_open(train_path, model_tokenizer(model), tmpl, 0, &train, &report, err);
    if (report) fprintf(stderr, "%s: problems:\n%s", train_path, report);
    free(report);
    report = NULL;
    if (st == BS_OK && valid_path) {
        st = rft_data_open(valid_path, model_tokenizer(model), tmpl, 0, &valid, &report, err);
        if (report) fprintf(stderr, "%s: problems:\n%s", valid_path, report);
        free(report);
    }
    if (st == BS_OK) st = rft_resolve(&c, rft_data_count(train), err);
    bs_scheduler_params sp;
    scheduler_params_default(&sp);
    sp.max_running = c.batch_size * (c.grpo.group_size > c.eval_samples ? c.grpo.group_size : c.eval_samples);
    if (sp.max_running > 256) sp.max_running = 256;
    if (sp.step_tokens < sp.max_running) sp.step_tokens = sp.max_running;
    if (st == BS_OK) st = scheduler_open(model, &sp, &sched, err);
    if (st == BS_OK) st = rft_open(model, sched, g, &c, train, valid, &run, err);
    if (st == BS_OK) {
        fprintf(stderr,
                "basalt tune: RFT of %s on %zu prompts with the %s grader \"%s\": %d epochs x %d steps, %d prompts x "
                "%d samples a step, %d completion tokens, lr %.3g, LoRA rank %d, seed %llu\n",
                model_describe(model), rft_data_count(train), reward_grader_type(g), reward_grader_name(g), c.n_epochs,
                rft_total_steps(run) / c.n_epochs, c.batch_size, c.grpo.group_size, c.grpo.max_completion_len, c.lr,
                c.lora.rank, (unsigned long long)c.seed);
        bar b = {.tty = isatty(STDERR_FILENO), .every = rft_total_steps(run) / 20 > 1 ? rft_total_steps(run) / 20 : 1};
        rft_hooks hooks = {.user = &b, .on_step = show_rft_progress};
        int finished = 0;
        double t0 = bs_now();
        st = rft_train(run, NULL, &hooks, &finished, err);
        if (st == BS_OK) st = rft_export(run, path, model_spec, out_dir, err);
        if (st == BS_OK)
            fprintf(stderr, "basalt tune: %d steps in %.1f s\nbasalt tune: wrote the adapter to %s\n",
                    rft_total_steps(run), bs_now() - t0, out_dir);
    }
    rft_close(run);
    scheduler_close(sched);
    rft_data_close(train);
    rft_data_close(valid);
    reward_grader_free(g);
    return st;
}

/* Open a dataset; bad data prints the whole line-numbered report. */
static bs_status open_dataset(const char *path, bs_model *m, const chat_template *t, const sft_config *c,
                              dataset **out, bs_error *err) {
    dataset_opts o;
    sft_dataset_opts(c, &o);
    char *report = NULL;
    bs_status st = dataset_open(path, DATASET_AUTO, model_tokenizer(m), t, &o, out, &report, err);
    if (report) fprintf(stderr, "%s: problems:\n%s", path, report);
    free(report);
    return st;
}

int cmd_tune(int argc, char **argv) {
    const char *model_spec = NULL, *train_path = NULL, *valid_path = NULL, *out_dir = NULL;
    const char *method = "sft", *grader_path = NULL;
    int rank = 0, epochs = 0, batch = 0, full = 0, max_length = 0, threads = 0, group_size = 0, max_completion = 0;
    float lr = 0, temperature = 0, beta = 0;
    uint64_t seed = 42;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STRING, &model_spec, "M", "base model: HF directory, .gguf, or a pulled hub name"},
        {"--train", NULL, OPT_STRING, &train_path, "DATA.jsonl", "training data"},
        {"--valid", NULL, OPT_STRING, &valid_path, "V.jsonl", "validation data (loss reported as it trains)"},
        {"--out", "-o", OPT_STRING, &out_dir, "DIR", "where the result goes (default ./tuned)"},
        {"--lora-rank", NULL, OPT_INT, &rank, "R", "LoRA rank (default 16; alpha is 2 x rank)"},
        {"--epochs", NULL, OPT_INT, &epochs, "E", "passes over the data (default: auto)"},
        {"--batch-size", NULL, OPT_INT, &batch, "B", "examples per optimizer step (default: auto)"},
        {"--lr", NULL, OPT_FLOAT, &lr, "LR", "learning rate (default 1e-4 LoRA, 2e-5 full)"},
        {"--full", NULL, OPT_FLAG, &full, NULL, "train every parameter instead of a LoRA adapter"},
        {"--max-length", NULL, OPT_INT, &max_length, "N", "tokens per example (default 1024; longer ones are errors)"},
        {"--seed", NULL, OPT_U64, &seed, "S", "data order, LoRA init and dropout (default 42)"},
        {"--threads", "-t", OPT_INT, &threads, "N", "compute threads (default: all cores)"},
        {"--method", NULL, OPT_STRING, &method, "sft|rft", "supervised (default) or reinforcement fine-tuning"},
        {"--grader", NULL, OPT_STRING, &grader_path, "G.json", "rft: the grader scoring each sample"},
        {"--group-size", NULL, OPT_INT, &group_size, "G", "rft: samples per prompt (default 8)"},
        {"--max-completion-tokens", NULL, OPT_INT, &max_completion, "N", "rft: tokens per sample (default 256)"},
        {"--temperature", NULL, OPT_FLOAT, &temperature, "T", "rft: sampling temperature (default 1)"},
        {"--beta", NULL, OPT_FLOAT, &beta, "B", "rft: KL penalty against the base (default 0)"},
        {0},
    };
    int rc = cli_parse(&tune_cmd, opts, argc, argv, NULL, 0, 0);
    if (rc) return rc == 1 ? 0 : 2;
    if (!model_spec || !train_path) {
        fprintf(stderr, "basalt tune: %s is required (see basalt tune --help)\n", model_spec ? "--train" : "--model");
        return 2;
    }
    if (rank < 0 || epochs < 0 || batch < 0 || max_length < 0 || lr < 0) {
        fprintf(stderr, "basalt tune: --lora-rank, --epochs, --batch-size, --max-length and --lr must be positive\n");
        return 2;
    }
    int rft = strcmp(method, "rft") == 0;
    if (!rft && strcmp(method, "sft") != 0) {
        fprintf(stderr, "basalt tune: --method must be sft or rft, not %s\n", method);
        return 2;
    }
    if (rft && (!grader_path || full)) {
        fprintf(stderr, "basalt tune: --method rft %s\n",
                full ? "trains LoRA only (no --full)" : "needs --grader G.json");
        return 2;
    }
    if (group_size < 0 || max_completion < 0 || temperature < 0 || beta < 0) {
        fprintf(stderr,
                "basalt tune: --group-size, --max-completion-tokens, --temperature and --beta must be positive\n");
        return 2;
    }
    if (!out_dir) out_dir = "tuned";
    sft_config c;
    sft_config_default(&c);
    c.full = full;
    c.lora.rank = rank;
    c.n_epochs = epochs;
    c.batch_size = batch;
    c.lr = lr;
    c.max_length = max_length;
    c.seed = seed;
    c.threads = threads;
    c.checkpoint_every = -1;

    bs_error err = {0};
    char *path = NULL;
    bs_model *model = NULL;
    chat_template *tmpl = NULL;
    dataset *train = NULL, *valid = NULL;
    sft_run *run = NULL;
    int status = 1, finished = 0;
    bs_model_params mp = {.n_threads = threads};
    if (hub_resolve_model(model_spec, &path, &err) != BS_OK || model_open(path, &mp, &model, &err) != BS_OK ||
        chat_template_from_model(path, NULL, &tmpl, &err) != BS_OK)
        goto fail;
    if (!model_tokenizer(model)) {
        bs_fail(&err, BS_EINVAL, "%s: the model files carry no tokenizer", path);
        goto fail;
    }
    if (rft) {
        rft_opts ro = {.grader_path = grader_path, .group_size = group_size, .max_completion = max_completion,
                       .rank = rank, .epochs = epochs, .batch = batch, .max_length = max_length, .threads = threads,
                       .lr = lr, .temperature = temperature, .beta = beta, .seed = seed};
        if (tune_rft(model, tmpl, path, model_spec, train_path, valid_path, out_dir, &ro, &err) != BS_OK) goto fail;
        status = 0;
        goto done;
    }
    if (open_dataset(train_path, model, tmpl, &c, &train, &err) != BS_OK ||
        (valid_path && open_dataset(valid_path, model, tmpl, &c, &valid, &err) != BS_OK) ||
        sft_resolve(&c, dataset_count(train), &err) != BS_OK || sft_open(model, &c, train, valid, &run, &err) != BS_OK)
        goto fail;
    const dataset_stats *ds = dataset_stats_of(train);
    fprintf(stderr,
            "basalt tune: %s on %zu examples (%zu tokens, %s): %s, %d epochs x %d steps, batch %d, lr %.3g, "
            "seed %llu\n",
            model_describe(model), ds->examples, ds->tokens, dataset_format_name(dataset_format_of(train)),
            full ? "full fine-tuning" : "LoRA", c.n_epochs, sft_total_steps(run) / c.n_epochs, c.batch_size, c.lr,
            (unsigned long long)c.seed);
    if (!full)
        fprintf(stderr, "basalt tune: LoRA rank %d, alpha %g, every linear projection\n", c.lora.rank, c.lora.alpha);
    bar b = {.tty = isatty(STDERR_FILENO), .every = sft_total_steps(run) / 20 > 1 ? sft_total_steps(run) / 20 : 1};
    sft_hooks hooks = {.user = &b, .on_step = show_progress};
    double t0 = bs_now(), valid_loss = NAN;
    if (sft_train(run, NULL, &hooks, &finished, &err) != BS_OK ||
        (valid && sft_eval(run, &valid_loss, &err) != BS_OK) ||
        sft_export(run, path, model_spec, out_dir, &err) != BS_OK)
        goto fail;
    double secs = bs_now() - t0;
    fprintf(stderr, "basalt tune: %d steps, %lld tokens in %.1f s (%.0f tok/s)", sft_total_steps(run),
            (long long)sft_trained_tokens(run), secs, secs > 0 ? (double)sft_trained_tokens(run) / secs : 0.0);
    if (valid) fprintf(stderr, ", validation loss %.4f", valid_loss);
    fprintf(stderr, "\nbasalt tune: wrote %s to %s\n", full ? "the model" : "the adapter", out_dir);
    status = 0;
    goto done;
fail:
    status = cli_report("tune", &err);
done:
    sft_close(run);
    dataset_close(train);
    dataset_close(valid);
    chat_template_close(tmpl);
    model_close(model);
    free(path);
    return status;
}
