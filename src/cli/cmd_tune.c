/* cli/cmd_tune.c — `basalt tune`: supervised fine-tuning in this process
 * (train/sft.h, the loop the server's jobs run) with a live progress line on
 * stderr, then the adapter (PEFT) or the full weights (HF) in --out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "hub/hub.h"
#include "template/chat_template.h"
#include "train/sft.h"

static const cli_command tune_cmd = {
    "tune", "--model M --train DATA.jsonl [--valid V.jsonl] [--out DIR] [options]",
    "Fine-tune a model on a JSONL dataset (LoRA by default) and write the result.",
    "DATA is OpenAI's chat fine-tuning format ({\"messages\": [...]}), or\n"
    "{\"prompt\", \"completion\"} or {\"text\"} lines; every line is checked\n"
    "first and all problems are listed with their line numbers.  Unset\n"
    "hyperparameters follow OpenAI's \"auto\" rules (docs: train/sft.h):\n"
    "epochs from the dataset size, batch size about 0.2% of the examples,\n"
    "learning rate 1e-4 for LoRA (2e-5 with --full), linear decay.\n"
    "LoRA writes DIR/adapter_config.json + adapter_model.safetensors (PEFT,\n"
    "servable with `basalt serve --lora`); --full writes a Hugging Face model\n"
    "directory (f32 safetensors, config and tokenizer files copied).",
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

static int show_progress(void *user, const sft_progress *p) {
    bar *b = user;
    char eta[32], valid[48] = "";
    fmt_time(p->eta_s, eta, sizeof eta);
    if (!isnan(p->valid_loss)) snprintf(valid, sizeof valid, " valid %.4f", p->valid_loss);
    int last = p->step == p->total_steps;
    if (b->tty) {
        int width = 24, filled = (int)((double)width * p->step / p->total_steps);
        char line[32];
        for (int i = 0; i < width; i++) line[i] = i < filled ? '#' : '.';
        line[width] = '\0';
        fprintf(stderr, "\r[%s] step %d/%d epoch %d/%d loss %.4f%s %.0f tok/s ETA %s\033[K%s", line, p->step,
                p->total_steps, p->epoch, p->n_epochs, p->train_loss, valid, p->tokens_per_s, eta, last ? "\n" : "");
    } else if (last || valid[0] || p->step % b->every == 0) {
        fprintf(stderr, "step %d/%d epoch %d/%d loss %.4f%s lr %.3g %.0f tok/s ETA %s\n", p->step, p->total_steps,
                p->epoch, p->n_epochs, p->train_loss, valid, p->lr, p->tokens_per_s, eta);
    }
    return 0;
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
    int rank = 0, epochs = 0, batch = 0, full = 0, max_length = 0, threads = 0;
    float lr = 0;
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
