/* cli/cmd_pull.c — `basalt pull`: download a model from the Hugging Face hub
 * into the model cache, with a progress display, and print its local path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "hub/pull.h"

/* On a terminal, one line redrawn ten times a second; otherwise (logs, CI)
 * a line per file and one every PLAIN_EVERY seconds for long downloads. */
#define TTY_EVERY 0.1
#define PLAIN_EVERY 15.0

typedef struct progress {
    int tty;
    char file[HUB_PATH_MAX + 1];
    uint64_t first_done; /* bytes on disk when this file started (resume) */
    uint64_t last_done;  /* curl reports idle moments too; redraw on change only */
    double started, shown;
} progress;

static void human(char *out, size_t cap, double bytes) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

static void show_progress(void *ctx, const char *file, uint64_t done, uint64_t total) {
    progress *p = ctx;
    double now = bs_now();
    int new_file = strcmp(p->file, file) != 0;
    if (new_file) {
        if (p->tty && p->file[0]) fputc('\n', stderr);
        snprintf(p->file, sizeof p->file, "%s", file);
        p->first_done = done;
        p->started = now;
        p->shown = 0;
    }
    if (!new_file && done == p->last_done) return;
    p->last_done = done;
    int finished = done == total;
    if (!new_file && !finished && now - p->shown < (p->tty ? TTY_EVERY : PLAIN_EVERY)) return;
    if (!p->tty && !new_file && finished) return; /* the summary line says it is done */
    p->shown = now;
    char d[32], t[32], rate[32];
    human(d, sizeof d, (double)done);
    human(t, sizeof t, (double)total);
    double secs = now - p->started;
    human(rate, sizeof rate, secs > 0 ? (double)(done - p->first_done) / secs : 0);
    double pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (p->tty)
        fprintf(stderr, "\r\033[K%s  %5.1f%%  %s / %s  %s/s", file, pct, d, t, rate);
    else if (new_file)
        fprintf(stderr, "basalt pull: %s (%s%s%s)\n", file, t, done ? ", resuming at " : "", done ? d : "");
    else
        fprintf(stderr, "basalt pull: %s %.0f%% (%s of %s)\n", file, pct, d, t);
    fflush(stderr);
}

static const cli_command pull_cmd = {
    "pull",
    "ORG/REPO[@REVISION][:FILE] [--revision R] [--data DIR]",
    "Download a model from the Hugging Face hub into the model cache and print its local path.",
    "Without :FILE, takes the model's config, tokenizer and chat template files\n"
    "and its *.safetensors weights; with :FILE (e.g. a .gguf), only that file.\n"
    "The cache is DIR/models (default $BASALT_DATA, else $XDG_DATA_HOME/basalt,\n"
    "else ~/.local/share/basalt), laid out like huggingface_hub's, where a model\n"
    "named ORG/REPO[@REVISION][:FILE] is then found without the network.\n"
    "Interrupted downloads resume; files are checked against the hub's sha256.\n\n"
    "environment:\n"
    "  HF_TOKEN      access token for gated or private repos\n"
    "  HF_ENDPOINT   hub to use (default https://huggingface.co)",
};

int cmd_pull(int argc, char **argv) {
    const char *spec_arg = NULL, *revision = NULL, *data = NULL;
    const cli_opt opts[] = {
        {"--revision", NULL, OPT_STRING, &revision, "R", "branch, tag or commit (default main)"},
        {"--data", NULL, OPT_STRING, &data, "DIR", "basalt data directory; the cache is DIR/models"},
        {0},
    };
    int rc = cli_parse(&pull_cmd, opts, argc, argv, &spec_arg, 1, 1);
    if (rc) return rc == 1 ? 0 : 2;
    bs_error err = {0};
    hub_spec spec;
    if (hub_parse_spec(spec_arg, &spec, &err) != BS_OK) {
        fprintf(stderr, "basalt pull: %s\n", err.msg);
        return 2;
    }
    if (revision) {
        if (strchr(spec_arg, '@') && strcmp(revision, spec.revision) != 0) {
            fprintf(stderr, "basalt pull: %s names revision %s but --revision says %s\n", spec_arg, spec.revision,
                    revision);
            return 2;
        }
        if (strlen(revision) > HUB_REV_MAX || !hub_path_is_safe(revision)) {
            fprintf(stderr, "basalt pull: --revision: invalid revision '%s'\n", revision);
            return 2;
        }
        strcpy(spec.revision, revision);
    }
    char *cache = NULL;
    if (hub_cache_dir(data, &cache, &err) != BS_OK) return cli_report("pull", &err);
    progress prog = {.tty = isatty(STDERR_FILENO)};
    hub_pull_opts po = {.cache_dir = cache, .progress = show_progress, .progress_ctx = &prog};
    hub_pull_result res;
    bs_status s = hub_pull(&spec, &po, &res, &err);
    if (prog.tty && prog.file[0]) fputc('\n', stderr);
    free(cache);
    if (s != BS_OK) return cli_report("pull", &err);
    char got[32];
    human(got, sizeof got, (double)res.bytes_downloaded);
    fprintf(stderr, "basalt pull: %s@%s is commit %s: %d file%s downloaded (%s), %d already cached\n", spec.repo,
            spec.revision, res.commit, res.files_downloaded, res.files_downloaded == 1 ? "" : "s", got,
            res.files_cached);
    printf("%s\n", res.path);
    hub_pull_result_free(&res);
    return 0;
}
