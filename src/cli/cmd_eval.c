/* cli/cmd_eval.c — `basalt eval`: offline evaluation of one or more models
 * on a frozen JSONL set with the RFT graders, through the executor of the
 * Evals API (server/evals.h), printing one row per model so a base and its
 * fine-tuned adapter compare side by side. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/adapter.h"
#include "hub/hub.h"
#include "server/evals.h"
#include "server/server_impl.h"

static const cli_command eval_cmd = {
    "eval", "--model M [--model M2 ...] --data DATA.jsonl --grader G.json [options]",
    "evaluate models on a JSONL set with graders and compare them side by side",
    "M is a model (HF directory, .gguf or a pulled hub name) or ADAPTER_DIR@M, a\n"
    "PEFT LoRA adapter (`basalt tune` output, a job's DATA/models/ft/<id>) over\n"
    "its base.  DATA rows are {\"messages\": [...]} ending with a user turn plus\n"
    "the fields the graders read as item.* (an RFT prompt set), or OpenAI eval\n"
    "rows {\"item\": {...}} whose item holds the messages.  G.json is one grader\n"
    "or an array of graders (docs/rewards.md); a sample passes when every\n"
    "grader scores at least its pass_threshold (1 when absent).  Each model\n"
    "answers every row --samples times; the table shows each grader's mean\n"
    "score, the pass rate and the samples that could not be generated or\n"
    "scored.  Sampling defaults to greedy (--temperature 0), so a rerun gives\n"
    "the same numbers.  docs/evals.md.",
};

typedef struct eval_model {
    char *path;      /* the base's resolved path */
    bs_model *model; /* owned when base_of < 0 */
    int base_of;     /* index of the entry whose model this adapter rides on, or -1 */
    srv_model view;
    eval_totals totals;
} eval_model;

/* Open spec's base (sharing one already open) and its adapter. */
static bs_status open_one(const char *spec, eval_model *ms, int i, int threads, int ctx, bs_error *err) {
    eval_model *e = &ms[i];
    const char *at = strrchr(spec, '@');
    char *base_spec = strdup(at ? at + 1 : spec);
    e->base_of = -1;
    e->view.name = (char *)spec;
    bs_status st = base_spec ? hub_resolve_model(base_spec, &e->path, err) : bs_fail(err, BS_ENOMEM, "out of memory");
    free(base_spec);
    for (int k = 0; st == BS_OK && k < i && e->base_of < 0; k++)
        if (ms[k].base_of < 0 && strcmp(ms[k].path, e->path) == 0) e->base_of = k;
    if (st == BS_OK && e->base_of >= 0) {
        const srv_model *b = &ms[e->base_of].view;
        e->view = *b;
        e->view.name = (char *)spec;
        e->view.adapter = NULL;
    } else if (st == BS_OK) {
        bs_model_params mp = {.n_threads = threads};
        st = model_open(e->path, &mp, &e->model, err);
        if (st == BS_OK) st = chat_template_from_model(e->path, NULL, &e->view.tmpl, err);
        if (st == BS_OK && !(e->view.tok = model_tokenizer(e->model)))
            st = bs_fail(err, BS_EINVAL, "%s: the model files carry no tokenizer", e->path);
        bs_scheduler_params sp;
        scheduler_params_default(&sp);
        if (st == BS_OK) {
            int max_pos = model_config(e->model)->max_pos;
            sp.n_ctx = ctx > 0 ? ctx : max_pos < 4096 ? max_pos : 4096;
            st = scheduler_open(e->model, &sp, &e->view.sched, err);
        }
        e->view.model = e->model;
        e->view.n_ctx = sp.n_ctx;
    }
    if (st == BS_OK && at) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)(at - spec), spec);
        st = adapter_load_peft(e->view.model, dir, &e->view.adapter, err);
    }
    return st == BS_OK ? BS_OK : bs_wrap(err, "--model %s", spec);
}

static void close_one(eval_model *e) {
    adapter_close(e->view.adapter);
    if (e->base_of < 0) {
        scheduler_close(e->view.sched);
        chat_template_close(e->view.tmpl);
        model_close(e->model);
    }
    free(e->path);
    eval_totals_clear(&e->totals);
}

/* Mean over the criteria of each one's mean score (NAN when none scored). */
static double model_mean(const eval_totals *t, int n) {
    double sum = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (t->crit_scored[i]) {
            sum += t->crit_score_sum[i] / t->crit_scored[i];
            k++;
        }
    return k ? sum / k : NAN;
}

static json_t *report_json(const eval_model *ms, int n, const eval_criteria *c) {
    json_t *models = json_array();
    for (int i = 0; i < n; i++) {
        const eval_totals *t = &ms[i].totals;
        json_t *crit = json_array();
        for (int k = 0; k < c->n; k++)
            json_array_append_new(crit, json_pack("{s:s,s:o,s:i,s:i}", "name", reward_grader_name(c->graders[k]),
                                                  "mean_score",
                                                  t->crit_scored[k] ? json_real(t->crit_score_sum[k] / t->crit_scored[k])
                                                                    : json_null(),
                                                  "passed", t->crit_passed[k], "failed", t->crit_failed[k]));
        double mean = model_mean(t, c->n);
        json_array_append_new(models, json_pack("{s:s,s:i,s:i,s:i,s:i,s:o,s:f,s:o}", "model", ms[i].view.name,
                                                "samples", t->total, "passed", t->passed, "failed", t->failed,
                                                "errored", t->errored, "mean_score",
                                                isnan(mean) ? json_null() : json_real(mean), "pass_rate",
                                                t->total ? (double)t->passed / t->total : 0.0, "criteria", crit));
    }
    return json_pack("{s:o}", "models", models);
}

static void report_table(const eval_model *ms, int n, const eval_criteria *c) {
    int w = 5;
    for (int i = 0; i < n; i++)
        if ((int)strlen(ms[i].view.name) > w) w = (int)strlen(ms[i].view.name);
    printf("%-*s", w, "model");
    for (int k = 0; k < c->n; k++) printf("  %12.12s", reward_grader_name(c->graders[k]));
    printf("  %10s  %9s  %7s\n", "mean score", "pass rate", "errors");
    for (int i = 0; i < n; i++) {
        const eval_totals *t = &ms[i].totals;
        printf("%-*s", w, ms[i].view.name);
        for (int k = 0; k < c->n; k++)
            printf("  %12.4f", t->crit_scored[k] ? t->crit_score_sum[k] / t->crit_scored[k] : NAN);
        printf("  %10.4f  %8.1f%%  %7d\n", model_mean(t, c->n), t->total ? 100.0 * t->passed / t->total : 0.0,
               t->errored);
    }
}

int cmd_eval(int argc, char **argv) {
    cli_string_list models = {0};
    const char *data = NULL, *grader = NULL;
    int samples = 1, max_tokens = 256, threads = 0, ctx = 0, as_json = 0;
    float temperature = 0;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STRING_LIST, &models, "M", "a model, or ADAPTER_DIR@M (repeatable: one row each)"},
        {"--data", NULL, OPT_STRING, &data, "F", "the JSONL items"},
        {"--grader", NULL, OPT_STRING, &grader, "G", "a grader JSON file (one grader or an array)"},
        {"--samples", NULL, OPT_INT, &samples, "N", "samples per item (default 1)"},
        {"--max-tokens", NULL, OPT_INT, &max_tokens, "N", "tokens per sample at most (default 256)"},
        {"--temperature", NULL, OPT_FLOAT, &temperature, "T", "sampling temperature (default 0: greedy)"},
        {"--seed", NULL, OPT_U64, &seed, "S", "sampling seed (default 0)"},
        {"--threads", "-t", OPT_INT, &threads, "N", "compute threads (default: every core)"},
        {"--ctx", NULL, OPT_INT, &ctx, "N", "context length (default: the model's, at most 4096)"},
        {"--json", NULL, OPT_FLAG, &as_json, NULL, "print the results as JSON"},
        {0},
    };
    int rc = cli_parse(&eval_cmd, opts, argc, argv, NULL, 0, 0);
    if (rc) return rc == 1 ? 0 : rc;
    if (models.n == 0 || !data || !grader) {
        fprintf(stderr, "basalt eval: %s is required (see basalt eval --help)\n",
                models.n == 0 ? "--model" : !data ? "--data" : "--grader");
        return 2;
    }
    if (samples < 1 || max_tokens < 1 || temperature < 0) {
        fprintf(stderr, "basalt eval: --samples and --max-tokens must be >= 1 and --temperature >= 0\n");
        return 2;
    }
    bs_error err = {0};
    json_error_t je;
    json_t *gj = json_load_file(grader, 0, &je), *criteria = NULL, *items = NULL;
    eval_criteria crit = {0};
    eval_input in = {0};
    job_registry *jobs = NULL;
    eval_model ms[CLI_LIST_MAX] = {0};
    int opened = 0;
    rc = 1;
    if (!gj) {
        bs_fail(&err, BS_EFORMAT, "%s:%d: %s", grader, je.line, je.text);
        goto done;
    }
    criteria = json_is_array(gj) ? json_incref(gj) : json_pack("[O]", gj);
    json_t *ref = json_pack("{s:s,s:s}", "type", "item_reference", "item_reference", "item.messages");
    bs_status st = eval_criteria_parse(criteria, grader, &crit, &err);
    if (st == BS_OK) st = eval_input_parse(ref, "input_messages", &in, &err);
    json_decref(ref);
    if (st == BS_OK) st = eval_items_read(data, &items, &err);
    if (st == BS_OK) st = job_registry_open(&jobs, &err);
    for (; st == BS_OK && opened < models.n; opened++) {
        st = open_one(models.items[opened], ms, opened, threads, ctx, &err);
        if (st == BS_OK) st = eval_totals_init(&ms[opened].totals, crit.n, &err);
    }
    eval_sampling sp = {.temperature = temperature, .top_p = 1, .max_tokens = max_tokens, .seed = seed,
                        .samples = samples};
    for (int i = 0; st == BS_OK && i < models.n; i++) {
        fprintf(stderr, "basalt eval: %s on %zu items x %d samples\n", ms[i].view.name, json_array_size(items),
                samples);
        st = eval_execute(&ms[i].view, jobs, &crit, &in, items, &sp, NULL, &ms[i].totals, &err);
    }
    if (st == BS_OK) {
        if (as_json) {
            json_t *j = report_json(ms, models.n, &crit);
            json_dumpf(j, stdout, JSON_INDENT(2));
            printf("\n");
            json_decref(j);
        } else {
            report_table(ms, models.n, &crit);
        }
        rc = 0;
    }
done:
    if (rc) cli_report("eval", &err);
    for (int i = opened; i-- > 0;) close_one(&ms[i]);
    if (jobs) job_registry_close(jobs);
    json_decref(items);
    eval_input_clear(&in);
    eval_criteria_clear(&crit);
    json_decref(criteria);
    json_decref(gj);
    return rc;
}
