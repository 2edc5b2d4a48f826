/* cli/cmd_default.c — `basalt build-default`: build the embedded default
 * model (train/default_model.h) into the model cache or a directory, and
 * print its held-out accuracy per task family. */
#include <stdio.h>
#include <stdlib.h>

#include "base/threadpool.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "train/default_model.h"

static const cli_command build_default_cmd = {
    "build-default", "[--out DIR] [--data DIR] [--threads N] [--steps N] [--seconds S] [--force] [--tiny]",
    "Build basalt's embedded default model from nothing: generate the\n"
    "synthetic instruction corpus, train a byte-level BPE tokenizer on it,\n"
    "train a small Llama full-parameter on it, score it on the held-out\n"
    "split and write a Hugging Face model directory.",
    "The default location is DATA/models/basalt-default, which `basalt run`\n"
    "and `basalt serve` (without --model) use.  A directory already built\n"
    "with the same recipe and config is kept unless --force.  The same\n"
    "config and thread count always give the same model; --seconds stops\n"
    "training early (the result is marked incomplete and is not reused by\n"
    "`basalt run`).  About 3.5 minutes of one core's time (training is\n"
    "single-threaded by default); --tiny builds a toy variant in seconds\n"
    "(for tests).",
};

static void print_progress(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "basalt build-default: %s\n", line);
}

int cmd_build_default(int argc, char **argv) {
    const char *out = NULL, *data = NULL;
    int threads = 1, force = 0, tiny = 0, steps = 0;
    float seconds = 0;
    const cli_opt opts[] = {
        {"--out", "-o", OPT_STRING, &out, "DIR", "where to write the model (default DATA/models/basalt-default)"},
        {"--data", NULL, OPT_STRING, &data, "DIR", "state directory (default $BASALT_DATA, else XDG data dir)"},
        {"--threads", "-t", OPT_INT, &threads, "N",
         "BLAS threads; 0: all cores (default 1: as fast at this size, and the same model on every machine)"},
        {"--seconds", NULL, OPT_FLOAT, &seconds, "S", "stop training after S seconds (default: run every step)"},
        {"--steps", NULL, OPT_INT, &steps, "N", "optimizer steps (default: the recipe's)"},
        {"--tiny", NULL, OPT_FLAG, &tiny, NULL, "the tiny test variant (seconds to build, learns little)"},
        {"--force", "-f", OPT_FLAG, &force, NULL, "rebuild even if an up-to-date build is there"},
        {0},
    };
    int rc = cli_parse(&build_default_cmd, opts, argc, argv, NULL, 0, 0);
    if (rc) return rc == 1 ? 0 : 2;
    if (seconds < 0 || steps < 0) {
        fprintf(stderr, "basalt build-default: --seconds and --steps must not be negative\n");
        return 2;
    }
    default_model_config c;
    if (tiny) default_model_config_tiny(&c);
    else default_model_config_default(&c);
    if (steps) c.steps = steps;
    bs_error err = {0};
    char *dir = NULL;
    if (!out && default_model_dir(data, &dir, &err) != BS_OK) return cli_report("build-default", &err);
    const char *target = out ? out : dir;
    if (!force && default_model_is_current(target, &c)) {
        fprintf(stderr, "basalt build-default: %s is up to date (--force rebuilds it)\n", target);
        free(dir);
        return 0;
    }
    default_model_opts o = {.threads = threads, .max_seconds = seconds, .progress = print_progress};
    default_model_report rep;
    fprintf(stderr, "basalt build-default: building %s with %d threads\n", target, threads > 0 ? threads : bs_cpu_count());
    if (default_model_build(target, &c, &o, &rep, &err) != BS_OK) {
        free(dir);
        return cli_report("build-default", &err);
    }
    printf("model      %s\n", target);
    printf("size       %lld parameters, vocabulary %d, %d layers, dim %d\n", (long long)rep.n_params, rep.vocab,
           c.n_layers, c.dim);
    printf("training   %d/%d steps, %lld tokens, %.1f s (data %.1f s, eval %.1f s), final loss %.3f%s\n",
           rep.steps_done, rep.total_steps, (long long)rep.trained_tokens, rep.seconds_train, rep.seconds_data,
           rep.seconds_eval, rep.final_loss, rep.steps_done < rep.total_steps ? "  (stopped early: INCOMPLETE)" : "");
    printf("held-out exact match per task family:\n");
    int all = 0, all_ok = 0;
    for (int f = 0; f < CORPUS_N_FAMILIES; f++) {
        printf("  %-14s %3d/%-3d %5.1f%%\n", corpus_family_name(f), rep.n_correct[f], rep.n_eval[f],
               rep.n_eval[f] ? 100.0 * rep.n_correct[f] / rep.n_eval[f] : 0.0);
        all += rep.n_eval[f];
        all_ok += rep.n_correct[f];
    }
    printf("  %-14s %3d/%-3d %5.1f%%\n", "all", all_ok, all, all ? 100.0 * all_ok / all : 0.0);
    free(dir);
    return 0;
}
