/* cli/cmd_bench.c — `basalt bench`: prompt-processing and generation speed,
 * measured the way llama-bench does (pp: one batched prefill of P tokens;
 * tg: G single-token decode steps from an empty context). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/context.h"
#include "kernels/kernels.h"

static const cli_command bench_cmd = {
    "bench", "MODEL [--prompt-tokens 128] [--gen-tokens 64] [--threads N] [--reps R] [--json]",
    "Measure prefill (pp) and decode (tg) speed in tokens/s.",
    "Token ids are drawn at random (seeded) so no tokenizer is needed.  Each\n"
    "measurement runs R times after one warm-up; the mean is reported.\n"
    "model_bytes is the weight bytes read per generated token.",
};

static double mean(const double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += v[i];
    return n ? s / n : 0;
}

static json_t *json_doubles(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

int cmd_bench(int argc, char **argv) {
    const char *path = NULL, *quant = NULL;
    int pp = 128, tg = 64, threads = 0, reps = 3, as_json = 0, plain = 0;
    const cli_opt opts[] = {
        {"--prompt-tokens", "-p", OPT_INT, &pp, "N", "tokens in the prefill batch (default 128; 0 skips)"},
        {"--gen-tokens", "-n", OPT_INT, &tg, "N", "tokens to decode one by one (default 64; 0 skips)"},
        {"--threads", "-t", OPT_INT, &threads, "N", "compute threads (default: all cores)"},
        {"--reps", "-r", OPT_INT, &reps, "R", "repetitions per measurement (default 3)"},
        {"--json", NULL, OPT_FLAG, &as_json, NULL, "print one JSON object instead of a table"},
        {"--quantize", NULL, OPT_STRING, &quant, "TYPE", "convert a Hugging Face model's matrices at load (q8_0, q4_0, q4_k, q6_k, ...)"},
        {"--plain-layout", NULL, OPT_FLAG, &plain, NULL, "keep weight matrices in the file's layout (to compare with the interleaved one)"},
        {0},
    };
    int rc = cli_parse(&bench_cmd, opts, argc, argv, &path, 1, 1);
    if (rc) return rc == 1 ? 0 : 2;
    if (pp < 0 || tg < 0 || reps < 1 || pp + tg == 0) {
        fprintf(stderr, "basalt bench: need --prompt-tokens >= 0, --gen-tokens >= 0 (not both 0), --reps >= 1\n");
        return 2;
    }
    bs_error err = {0};
    bs_model *model = NULL;
    bs_context *ctx = NULL;
    bs_model_params mp = {.n_threads = threads, .plain_layout = plain};
    if (quant && quant_parse(quant, &mp.quantize, &err) != BS_OK) {
        fprintf(stderr, "basalt bench: --quantize: %s\n", err.msg);
        return 2;
    }
    if (model_open(path, &mp, &model, &err) != BS_OK) return cli_report("bench", &err);
    const bs_model_config *cfg = model_config(model);
    int n_ctx = (pp > tg ? pp : tg) + 1;
    int32_t *ids = malloc((size_t)(n_ctx) * sizeof *ids);
    float *logits = malloc((size_t)cfg->n_vocab * sizeof *logits);
    double *pp_runs = calloc((size_t)reps, sizeof *pp_runs), *tg_runs = calloc((size_t)reps, sizeof *tg_runs);
    int status = 0;
    if (!ids || !logits || !pp_runs || !tg_runs) {
        bs_fail(&err, BS_ENOMEM, "out of memory");
        status = cli_report("bench", &err);
        goto done;
    }
    if (context_open(model, n_ctx, &ctx, &err) != BS_OK) {
        status = cli_report("bench", &err);
        goto done;
    }
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n_ctx; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        ids[i] = (int32_t)(state % (uint64_t)cfg->n_vocab);
    }
    /* Warm-up touches every weight page once so runs measure compute, not page faults. */
    if (context_eval(ctx, ids, pp > 0 ? (pp < 8 ? pp : 8) : 1, logits, 0, &err) != BS_OK) {
        status = cli_report("bench", &err);
        goto done;
    }
    for (int r = 0; r < reps; r++) {
        if (pp > 0) {
            context_reset(ctx);
            double t0 = bs_now();
            if (context_eval(ctx, ids, pp, logits, 0, &err) != BS_OK) break;
            pp_runs[r] = pp / (bs_now() - t0);
        }
        if (tg > 0) {
            context_reset(ctx);
            double t0 = bs_now();
            for (int i = 0; i < tg && err.status == BS_OK; i++) context_eval(ctx, &ids[i], 1, logits, 0, &err);
            if (err.status != BS_OK) break;
            tg_runs[r] = tg / (bs_now() - t0);
        }
    }
    if (err.status != BS_OK) {
        status = cli_report("bench", &err);
        goto done;
    }
    int n_threads = threads > 0 ? threads : bs_cpu_count();
    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(path));
        json_object_set_new(o, "description", json_string(model_describe(model)));
        json_object_set_new(o, "model_bytes", json_integer((json_int_t)model_weight_bytes(model)));
        json_object_set_new(o, "threads", json_integer(n_threads));
        json_object_set_new(o, "prompt_tokens", json_integer(pp));
        json_object_set_new(o, "gen_tokens", json_integer(tg));
        json_object_set_new(o, "reps", json_integer(reps));
        json_object_set_new(o, "pp_tok_s", json_real(mean(pp_runs, pp ? reps : 0)));
        json_object_set_new(o, "tg_tok_s", json_real(mean(tg_runs, tg ? reps : 0)));
        json_object_set_new(o, "pp_tok_s_runs", json_doubles(pp_runs, pp ? reps : 0));
        json_object_set_new(o, "tg_tok_s_runs", json_doubles(tg_runs, tg ? reps : 0));
        char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        printf("model       %s\n            %s\n", path, model_describe(model));
        printf("model_bytes %zu (%.1f MiB)\nthreads     %d\n", model_weight_bytes(model),
               model_weight_bytes(model) / 1048576.0, n_threads);
        if (pp) printf("pp%-4d      %.2f tok/s\n", pp, mean(pp_runs, reps));
        if (tg) printf("tg%-4d      %.2f tok/s\n", tg, mean(tg_runs, reps));
    }
done:
    free(pp_runs);
    free(tg_runs);
    free(logits);
    free(ids);
    context_close(ctx);
    model_close(model);
    return status;
}
