/* cli/cmd_infer.c — commands that run the model: `logits`, `generate` and
 * `run` (the main job of `make run`: serve the default model). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/context.h"
#include "engine/generate.h"
#include "engine/sampler.h"
#include "train/default_model.h"

static const cli_command logits_cmd = {
    "logits", "MODEL --ids \"1 2 3\" [--top K]",
    "Run the ids through the model and print, for the last position, the K\n"
    "highest logits as lines `id logit`, highest first.",
    NULL,
};

typedef struct {
    int32_t id;
    float logit;
} scored_token;

static int by_logit_desc(const void *a, const void *b) {
    const scored_token *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

int cmd_logits(int argc, char **argv) {
    const char *ids_arg = NULL, *path = NULL, *quant = NULL;
    int top = 10, threads = 0;
    const cli_opt opts[] = {
        {"--ids", NULL, OPT_STRING, &ids_arg, "\"ID ...\"", "input token ids (spaces or commas)"},
        {"--top", NULL, OPT_INT, &top, "K", "how many logits to print (default 10)"},
        {"--threads", "-t", OPT_INT, &threads, "N", "compute threads (default: all cores)"},
        {"--quantize", NULL, OPT_STRING, &quant, "TYPE", "convert a Hugging Face model's matrices at load (q8_0, q4_0, q4_k, q6_k, ...)"},
        {0},
    };
    int rc = cli_parse(&logits_cmd, opts, argc, argv, &path, 1, 1);
    if (rc) return rc == 1 ? 0 : 2;
    if (!ids_arg) {
        fprintf(stderr, "basalt logits: --ids is required\n");
        return 2;
    }
    if (top < 1) {
        fprintf(stderr, "basalt logits: --top must be at least 1\n");
        return 2;
    }
    int32_t *ids;
    int n;
    if (cli_parse_ids("--ids", ids_arg, &ids, &n)) return 2;

    bs_error err = {0};
    bs_model *model = NULL;
    bs_context *ctx = NULL;
    float *logits = NULL;
    scored_token *scored = NULL;
    int status = 0;
    bs_model_params mp = {.n_threads = threads};
    if (quant && quant_parse(quant, &mp.quantize, &err) != BS_OK) {
        fprintf(stderr, "basalt logits: --quantize: %s\n", err.msg);
        free(ids);
        return 2;
    }
    if (model_open(path, &mp, &model, &err) != BS_OK || context_open(model, n, &ctx, &err) != BS_OK) {
        status = cli_report("logits", &err);
        goto done;
    }
    int n_vocab = model_config(model)->n_vocab;
    logits = malloc((size_t)n_vocab * sizeof *logits);
    scored = malloc((size_t)n_vocab * sizeof *scored);
    if (!logits || !scored) {
        bs_fail(&err, BS_ENOMEM, "out of memory for %d logits", n_vocab);
        status = cli_report("logits", &err);
        goto done;
    }
    if (context_eval(ctx, ids, n, logits, 0, &err) != BS_OK) {
        status = cli_report("logits", &err);
        goto done;
    }
    for (int i = 0; i < n_vocab; i++) scored[i] = (scored_token){i, logits[i]};
    qsort(scored, (size_t)n_vocab, sizeof *scored, by_logit_desc);
    for (int i = 0; i < top && i < n_vocab; i++) printf("%d %.6f\n", scored[i].id, scored[i].logit);
done:
    free(scored);
    free(logits);
    context_close(ctx);
    model_close(model);
    free(ids);
    return status;
}

/* Sampling and length flags shared by `generate` and `run`. */
typedef struct {
    const char *prompt;
    int max_tokens, threads, ctx, print_ids, ignore_eos;
    int seed_given;
    uint64_t seed;
    cli_string_list stop;
    bs_sampler_params sampling;
} generate_args;

#define GENERATE_OPTS(a)                                                                               \
    {"--prompt", "-p", OPT_STRING, &(a).prompt, "STR", "the prompt (raw text, no chat template)"},    \
    {"--n-predict", "-n", OPT_INT, &(a).max_tokens, "N", "tokens to generate (default 128)"},         \
    {"--temperature", "--temp", OPT_FLOAT, &(a).sampling.temperature, "T",                             \
     "sampling temperature; 0 is greedy (default 0.8)"},                                             \
    {"--top-k", NULL, OPT_INT, &(a).sampling.top_k, "K", "keep the K most likely tokens; 0 off (default 40)"}, \
    {"--top-p", NULL, OPT_FLOAT, &(a).sampling.top_p, "P", "nucleus sampling mass; 1 off (default 0.95)"}, \
    {"--min-p", NULL, OPT_FLOAT, &(a).sampling.min_p, "P",                                             \
     "drop tokens below P x the top probability; 0 off (default 0.05)"},                             \
    {"--repeat-penalty", NULL, OPT_FLOAT, &(a).sampling.repetition_penalty, "X",                       \
     "repetition penalty over recent tokens; 1 off (default 1)"},                                    \
    {"--presence-penalty", NULL, OPT_FLOAT, &(a).sampling.presence_penalty, "X",                       \
     "OpenAI presence penalty (default 0)"},                                                          \
    {"--frequency-penalty", NULL, OPT_FLOAT, &(a).sampling.frequency_penalty, "X",                     \
     "OpenAI frequency penalty (default 0)"},                                                         \
    {"--repeat-last-n", NULL, OPT_INT, &(a).sampling.penalty_last_n, "N",                              \
     "how many recent tokens the penalties look at (default 64)"},                                   \
    {"--seed", "-s", OPT_U64, &(a).seed, "S", "random seed; same seed, same output (default: random)"}, \
    {"--stop", NULL, OPT_STRING_LIST, &(a).stop, "STR", "stop when STR is generated (repeatable)"},   \
    {"--ignore-eos", NULL, OPT_FLAG, &(a).ignore_eos, NULL, "keep going past end-of-generation tokens"}, \
    {"--ids", NULL, OPT_FLAG, &(a).print_ids, NULL, "print generated token ids instead of text"},     \
    {"--threads", "-t", OPT_INT, &(a).threads, "N", "compute threads (default: all cores)"},         \
    {"--ctx", "-c", OPT_INT, &(a).ctx, "N", "context size in tokens (default: prompt + n-predict)"}

static void generate_args_default(generate_args *a) {
    memset(a, 0, sizeof *a);
    a->max_tokens = 128;
    sampler_params_default(&a->sampling);
    a->sampling.temperature = 0.8f;
    a->sampling.top_k = 40;
    a->sampling.top_p = 0.95f;
    a->sampling.min_p = 0.05f;
    a->sampling.penalty_last_n = 64;
    a->seed = UINT64_MAX; /* sentinel: pick one from the clock */
}

typedef struct {
    int print_ids;
    int n_printed;
} print_state;

static int print_token(void *user, int32_t token, const char *piece, size_t len) {
    print_state *ps = user;
    if (ps->print_ids) {
        printf(ps->n_printed++ ? " %d" : "%d", token);
    } else {
        fwrite(piece, 1, len, stdout);
    }
    fflush(stdout);
    return 0;
}

/* Encode the prompt, generate, print the continuation and the speed. */
static int run_generation(const char *cmd, bs_model *model, generate_args *a) {
    bs_error err = {0};
    const bs_tokenizer *tok = model_tokenizer(model);
    if (!tok) {
        fprintf(stderr, "basalt %s: the model files carry no tokenizer (tokenizer.json or GGUF vocab)\n", cmd);
        return 1;
    }
    if (a->max_tokens < 1) {
        fprintf(stderr, "basalt %s: -n must be at least 1\n", cmd);
        return 2;
    }
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    bs_context *ctx = NULL;
    int status = 0;
    if (tok_encode(tok, a->prompt, strlen(a->prompt), TOK_ADD_SPECIAL, &prompt, &n_prompt, &err) != BS_OK) {
        status = cli_report(cmd, &err);
        goto done;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "basalt %s: the prompt is empty and the model adds no BOS token\n", cmd);
        status = 2;
        goto done;
    }
    int n_ctx = a->ctx > 0 ? a->ctx : (int)n_prompt + a->max_tokens;
    if (context_open(model, n_ctx, &ctx, &err) != BS_OK) {
        status = cli_report(cmd, &err);
        goto done;
    }
    a->sampling.seed = a->seed != UINT64_MAX ? a->seed : (uint64_t)time(NULL);
    bs_generate_params gp = {
        .max_tokens = a->max_tokens, .stop = a->stop.items, .n_stop = a->stop.n,
        .ignore_eos = a->ignore_eos, .sampling = a->sampling,
    };
    print_state ps = {.print_ids = a->print_ids};
    bs_generate_result res = {0};
    if (!a->print_ids) {
        fputs(a->prompt, stdout);
        fflush(stdout);
    }
    if (generate(ctx, prompt, (int)n_prompt, &gp, print_token, &ps, &res, &err) != BS_OK) {
        printf("\n");
        status = cli_report(cmd, &err);
        goto done;
    }
    printf("\n");
    fprintf(stderr, "basalt %s: prompt %d tokens in %.3f s (%.1f tok/s), generated %d tokens in %.3f s (%.1f tok/s), finish: %s, seed %llu\n",
            cmd, res.n_prompt, res.prefill_seconds,
            res.prefill_seconds > 0 ? res.n_prompt / res.prefill_seconds : 0.0, res.n_generated,
            res.decode_seconds, res.decode_seconds > 0 ? res.n_generated / res.decode_seconds : 0.0,
            res.finish_reason, (unsigned long long)a->sampling.seed);
done:
    context_close(ctx);
    free(prompt);
    return status;
}

static const cli_command generate_cmd = {
    "generate", "MODEL --prompt STR [-n N] [--temperature T] [--top-p P] [--seed S] [--ids]",
    "Continue a raw prompt (no chat template) and print the text as it is\n"
    "generated; speed in tokens/s goes to stderr.",
    "MODEL is a Hugging Face model directory or a .gguf file.  Generation stops\n"
    "after N tokens, at an end-of-generation token, or at a --stop string.",
};

int cmd_generate(int argc, char **argv) {
    generate_args a;
    generate_args_default(&a);
    const char *path = NULL, *quant = NULL;
    const cli_opt opts[] = {
        GENERATE_OPTS(a),
        {"--quantize", NULL, OPT_STRING, &quant, "TYPE", "convert a Hugging Face model's matrices at load (q8_0, q4_0, q4_k, q6_k, ...)"},
        {0},
    };
    int rc = cli_parse(&generate_cmd, opts, argc, argv, &path, 1, 1);
    if (rc) return rc == 1 ? 0 : 2;
    if (!a.prompt) {
        fprintf(stderr, "basalt generate: --prompt is required\n");
        return 2;
    }
    bs_error err = {0};
    bs_model *model = NULL;
    bs_model_params mp = {.n_threads = a.threads};
    if (quant && quant_parse(quant, &mp.quantize, &err) != BS_OK) {
        fprintf(stderr, "basalt generate: --quantize: %s\n", err.msg);
        return 2;
    }
    if (model_open(path, &mp, &model, &err) != BS_OK) return cli_report("generate", &err);
    int status = run_generation("generate", model, &a);
    model_close(model);
    return status;
}

static const cli_command run_cmd = {
    "run", "[--host H] [--port P] [--data DIR] [--threads N] | --random [--prompt STR] [-n N] [--seed S]",
    "The main job (what `make run` starts): serve basalt's embedded default\n"
    "model behind the OpenAI API, building it first when it is missing.",
    "The first run builds the default model (`basalt build-default`: a\n"
    "synthetic instruction corpus, a tokenizer and a small Llama trained from\n"
    "scratch, a few minutes on 2 cores) into DATA/models/basalt-default;\n"
    "later runs start at once.  It is a toy that knows a handful of tasks\n"
    "(docs/default-model.md).  For a real model: basalt pull ORG/REPO, then\n"
    "basalt serve --model NAME=ORG/REPO.\n"
    "--random instead generates from a small model with RANDOM weights and a\n"
    "byte-level tokenizer (the output is noise; the generation flags apply):\n"
    "the whole inference path with no training, for tests.",
};

/* The random-weight demo: tokenizer, forward pass, sampler and streaming
 * decode on this machine with nothing to build. */
static int run_random(generate_args *a) {
    /* Llama-shaped, small enough to start instantly. */
    bs_model_config cfg = {
        .arch = BS_ARCH_LLAMA, .n_vocab = 257, .dim = 256, .n_layers = 4, .n_heads = 8,
        .n_kv_heads = 4, .head_dim = 32, .ffn_dim = 768, .max_pos = 4096, .rms_eps = 1e-5f,
        .rope_theta = 10000.0f, .rope_neox = 1, .tied_embeddings = 0,
    };
    fprintf(stderr,
            "basalt run: NOTE: --random: a RANDOM-WEIGHT model (llama shape, 4 layers, dim 256,\n"
            "            byte-level tokenizer). Its output is noise.\n"
            "            For a real model: basalt generate MODEL --prompt \"...\"\n");
    bs_error err = {0};
    bs_model *model = NULL;
    bs_model_params mp = {.n_threads = a->threads};
    if (model_open_random(&cfg, 42, &mp, &model, &err) != BS_OK) return cli_report("run", &err);
    int status = run_generation("run", model, a);
    model_close(model);
    return status;
}

static void print_how_to_call(const char *host, int port) {
    if (port == 0) {
        printf("  the server picks a free port: the URL is in the \"listening on\" line below\n");
        return;
    }
    printf("  OpenAI base URL: http://%s:%d/v1   (any API key)\n"
           "  try it:\n"
           "    curl http://%s:%d/v1/chat/completions -H 'content-type: application/json' \\\n"
           "      -d '{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Reverse this list: red, cat, moon\"}]}'\n"
           "    python3 -c 'from openai import OpenAI; print(OpenAI(base_url=\"http://%s:%d/v1\", api_key=\"-\")"
           ".chat.completions.create(model=\"%s\", messages=[{\"role\": \"user\", \"content\": \"Who are you?\"}])"
           ".choices[0].message.content)'\n",
           host, port, host, port, DEFAULT_MODEL_NAME, host, port, DEFAULT_MODEL_NAME);
}

/* Build the default model when it is missing or stale, then serve it. */
static int serve_default(const char *host, int port, const char *data, int threads) {
    bs_error err = {0};
    char *dir = NULL, *model_arg = NULL;
    if (default_model_dir(data, &dir, &err) != BS_OK) return cli_report("run", &err);
    default_model_config c;
    default_model_config_default(&c);
    char threads_s[16], port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    int status = 0;
    if (!default_model_is_current(dir, &c)) {
        fprintf(stderr, "basalt run: building the default model into %s: a few minutes, once; later runs start at once\n",
                dir);
        /* build-default's own thread default unless asked: the same model everywhere */
        snprintf(threads_s, sizeof threads_s, "%d", threads > 0 ? threads : 1);
        char *build_argv[] = {"--out", dir, "--threads", threads_s, NULL};
        status = cmd_build_default(4, build_argv);
    }
    if (!status && asprintf(&model_arg, "%s=%s", DEFAULT_MODEL_NAME, dir) < 0) {
        model_arg = NULL;
        status = cli_report("run", &(bs_error){.status = BS_ENOMEM, .msg = "out of memory"});
    }
    if (!status) {
        printf("basalt run: serving \"%s\" (%s), a toy model that basalt trained itself:\n"
               "  JSON extraction, list reversal and bullets, word counts, number comparisons; no real knowledge\n"
               "  (what it can and cannot do: docs/default-model.md)\n",
               DEFAULT_MODEL_NAME, dir);
        print_how_to_call(host, port);
        printf("  a real model instead: basalt pull Qwen/Qwen2.5-0.5B-Instruct && "
               "basalt serve --model qwen=Qwen/Qwen2.5-0.5B-Instruct\n"
               "  Ctrl-C stops the server.\n");
        fflush(stdout);
        snprintf(threads_s, sizeof threads_s, "%d", threads);
        char *serve_argv[] = {"--model", model_arg, "--host", (char *)host, "--port", port_s,
                              "--threads", threads_s, "--data", (char *)data, NULL};
        status = cmd_serve(data ? 10 : 8, serve_argv);
    }
    free(model_arg);
    free(dir);
    return status;
}

int cmd_run(int argc, char **argv) {
    generate_args a;
    generate_args_default(&a);
    a.prompt = "Once upon a time";
    a.max_tokens = 64;
    int random_model = 0, port = 8080;
    const char *host = "127.0.0.1", *data = NULL;
    const cli_opt opts[] = {
        {"--host", NULL, OPT_STRING, &host, "HOST", "address to listen on (default 127.0.0.1)"},
        {"--port", NULL, OPT_INT, &port, "PORT", "TCP port; 0 picks a free one (default 8080)"},
        {"--data", NULL, OPT_STRING, &data, "DIR", "state directory (default $BASALT_DATA, else XDG data dir)"},
        {"--random", NULL, OPT_FLAG, &random_model, NULL, "generate from a random-weight model instead (no build, no server)"},
        GENERATE_OPTS(a),
        {0},
    };
    int rc = cli_parse(&run_cmd, opts, argc, argv, NULL, 0, 0);
    if (rc) return rc == 1 ? 0 : 2;
    if (port < 0 || port > 65535) {
        fprintf(stderr, "basalt run: --port must be 0..65535\n");
        return 2;
    }
    return random_model ? run_random(&a) : serve_default(host, port, data, a.threads);
}
