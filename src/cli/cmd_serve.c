/* cli/cmd_serve.c — `basalt serve`: flags -> server_config, then wait for
 * SIGINT/SIGTERM and shut down within a bounded grace period. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/file.h"
#include "base/log.h"
#include "base/paths.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "engine/scheduler.h"
#include "gateway/config.h"
#include "hub/hub.h"
#include "server/resp_store.h"
#include "server/server.h"
#include "train/default_model.h"

static const cli_command serve_cmd = {
    "serve", "[--model NAME=SPEC]... [--lora NAME=DIR[@BASE]]... [--random] [--host H] [--port P] [--ctx N] [--parallel N]",
    "Serve models behind the OpenAI API (chat/completions, responses,\n"
    "completions, embeddings, models) plus /tokenize, /detokenize, /health\n"
    "and /metrics.",
    "SPEC is a Hugging Face model directory or a .gguf file, or a model that\n"
    "`basalt pull` downloaded, by the same name (ORG/REPO[@REV][:FILE]); NAME\n"
    "is the id clients send as \"model\" (a bare hub name is served under\n"
    "itself, a bare path under its last component).\n"
    "Without --model the embedded default model (\"basalt-default\", built\n"
    "once by `basalt build-default` or `basalt run`) is served; before it is\n"
    "built, or with --random, a small RANDOM-weight demo model\n"
    "(\"basalt-demo-random\"): the whole path works, the text is noise.\n"
    "--lora serves a Hugging Face PEFT LoRA adapter directory as NAME over the\n"
    "model served as BASE (default: the first); clients pick it with\n"
    "\"model\": NAME, and POST /v1/load_lora_adapter / unload_lora_adapter\n"
    "({\"lora_name\", \"lora_path\"}, as vLLM) change the set at run time.\n"
    "--config FILE adds the gateway configuration (docs/gateway.md): upstream\n"
    "providers, aliases, routes, guardrails; its local models are served too,\n"
    "and SIGHUP (or POST /v1/admin/reload) reloads it while serving.\n"
    "--port 0 picks a free port; the URL is logged.  SIGINT/SIGTERM stop\n"
    "accepting, let running requests finish for up to 5 s, then end them.",
};

#define GRACE_SECONDS 5.0

/* "NAME=SPEC"; a bare hub spec is served under itself (as vLLM names
 * models), a bare local path under its last component. */
static int parse_model_spec(const char *arg, server_model_spec *spec) {
    const char *eq = strchr(arg, '=');
    hub_spec hs;
    struct stat st;
    if (eq) {
        if (eq == arg || eq[1] == '\0') return 2;
        spec->name = strndup(arg, (size_t)(eq - arg));
        spec->path = eq + 1;
    } else if (stat(arg, &st) != 0 && hub_parse_spec(arg, &hs, NULL) == BS_OK) {
        spec->name = strdup(arg);
        spec->path = arg;
    } else {
        size_t n = strlen(arg);
        while (n > 1 && arg[n - 1] == '/') n--;
        const char *base = arg + n;
        while (base > arg && base[-1] != '/') base--;
        spec->name = strndup(base, (size_t)(arg + n - base));
        spec->path = arg;
    }
    return spec->name ? 0 : 1;
}

/* "NAME=DIR[@BASE]" split in a copy (*buf, freed by the caller); a DIR
 * that exists as written keeps any '@' in it. */
static int parse_lora_spec(const char *arg, server_lora_spec *spec, char **buf) {
    char *s = *buf = strdup(arg);
    if (!s) return 1;
    char *eq = strchr(s, '='), *at;
    if (!eq || eq == s || eq[1] == '\0') return 2;
    *eq = '\0';
    spec->name = s;
    spec->path = eq + 1;
    if (!bs_is_directory(spec->path) && (at = strrchr(eq + 1, '@')) && at[1]) {
        *at = '\0';
        spec->base = at + 1;
    }
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *host = "127.0.0.1", *data = NULL, *quant = NULL, *config_path = NULL, *kv_cache_dtype = NULL;
    int insecure_open = 0, random_model = 0, port = 8080, threads = 0, train_threads = 0, ctx = 0, parallel = 0, max_body_mib = 32, max_file_mib = 512, responses_store = RESP_STORE_DEFAULT_COUNT;
    cli_string_list models = {0}, loras = {0};
    const cli_opt opts[] = {
        {"--model", "-m", OPT_STRING_LIST, &models, "NAME=SPEC", "a model to serve (repeatable)"},
        {"--lora", NULL, OPT_STRING_LIST, &loras, "NAME=DIR[@BASE]", "a PEFT LoRA adapter to serve over a model (repeatable)"},
        {"--random", NULL, OPT_FLAG, &random_model, NULL, "without --model, serve the random-weight demo model even when the default model is built"},
        {"--host", NULL, OPT_STRING, &host, "HOST", "address to listen on (default 127.0.0.1)"},
        {"--port", "-p", OPT_INT, &port, "PORT", "TCP port; 0 picks a free one (default 8080)"},
        {"--threads", "-t", OPT_INT, &threads, "N", "compute threads per model (default: all cores)"},
        {"--quantize", NULL, OPT_STRING, &quant, "TYPE",
         "convert Hugging Face models' matrices at load (q8_0, q4_0, q4_k, q6_k, ...; not for .gguf files)"},
        {"--train-threads", NULL, OPT_INT, &train_threads, "N", "BLAS threads of each fine-tuning job (default 1)"},
        {"--ctx", "-c", OPT_INT, &ctx, "N", "context positions per sequence (default: min(4096, model))"},
        {"--parallel", NULL, OPT_INT, &parallel, "N", "sequences decoded together (default 16)"},
        {"--kv-cache-dtype", NULL, OPT_STRING, &kv_cache_dtype, "TYPE",
         "KV cache element type: f32 (default), f16 (half the memory) or q8_0 (a quarter; values rounded)"},
        {"--max-body", NULL, OPT_INT, &max_body_mib, "MIB", "largest request body in MiB (default 32)"},
        {"--max-file-mb", NULL, OPT_INT, &max_file_mib, "MIB", "largest file upload in MiB (default 512)"},
        {"--data", NULL, OPT_STRING, &data, "DIR", "state directory (default $BASALT_DATA, else XDG data dir)"},
        {"--config", NULL, OPT_STRING, &config_path, "FILE", "gateway configuration (YAML; docs/gateway.md)"},
        {"--insecure-open", NULL, OPT_FLAG, &insecure_open, NULL,
         "allow a non-loopback --host without API keys (anyone who reaches the port can use it)"},
        {"--responses-store", NULL, OPT_INT, &responses_store, "N",
         "Responses API responses kept in memory for previous_response_id (default 1000, also capped at 64 MiB; 0: none)"},
        {0},
    };
    int rc = cli_parse(&serve_cmd, opts, argc, argv, NULL, 0, 0);
    if (rc) return rc == 1 ? 0 : 2;
    if (port < 0 || port > 65535 || max_body_mib < 1 || responses_store < 0 || max_file_mib < 1) {
        fprintf(stderr, "basalt serve: --port must be 0..65535, --max-body and --max-file-mb at least 1, --responses-store at least 0\n");
        return 2;
    }
    bs_error err = {0};
    bs_quant quantize = BS_QUANT_NONE;
    if (quant && quant_parse(quant, &quantize, &err) != BS_OK) {
        fprintf(stderr, "basalt serve: --quantize: %s\n", err.msg);
        return 2;
    }
    bs_dtype kv_dtype = BS_DTYPE_F32;
    if (kv_cache_dtype && scheduler_kv_dtype_parse(kv_cache_dtype, &kv_dtype, &err) != BS_OK) {
        fprintf(stderr, "basalt serve: --kv-cache-dtype: %s\n", err.msg);
        return 2;
    }
    server_model_spec specs[CLI_LIST_MAX] = {0};
    server_lora_spec lora_specs[CLI_LIST_MAX] = {0};
    char *lora_bufs[CLI_LIST_MAX] = {0};
    char *paths[CLI_LIST_MAX] = {0}, *data_dir = NULL, *cache = NULL, *default_dir = NULL;
    int n_models = models.n;
    int status = 0;
    for (int i = 0; i < models.n; i++) {
        rc = parse_model_spec(models.items[i], &specs[i]);
        if (rc) {
            fprintf(stderr, "basalt serve: --model %s: expected NAME=SPEC\n", models.items[i]);
            status = rc;
            goto done;
        }
    }
    for (int i = 0; i < loras.n; i++) {
        rc = parse_lora_spec(loras.items[i], &lora_specs[i], &lora_bufs[i]);
        if (rc) {
            fprintf(stderr, "basalt serve: --lora %s: expected NAME=DIR[@BASE]\n", loras.items[i]);
            status = rc;
            goto done;
        }
    }
    if (bs_data_dir(data, &data_dir, &err) != BS_OK || bs_make_dirs(data_dir, 0700, &err) != BS_OK ||
        hub_cache_dir(data_dir, &cache, &err) != BS_OK) {
        status = cli_report("serve", &err);
        goto done;
    }
    /* What `basalt pull` downloaded is found by its hub name. */
    for (int i = 0; i < models.n; i++) {
        if (hub_resolve_in(cache, specs[i].path, &paths[i], &err) != BS_OK) {
            status = cli_report("serve", &err);
            goto done;
        }
        if (strcmp(paths[i], specs[i].path) != 0) bs_log_info("model %s: %s is %s", specs[i].name, specs[i].path, paths[i]);
        specs[i].path = paths[i];
    }
    /* A config with local models serves those instead of a default. */
    int config_locals = 0;
    if (config_path) {
        gw_config *gc;
        if (gw_config_load(config_path, &gc, &err) != BS_OK) {
            status = cli_report("serve", &err);
            goto done;
        }
        for (int i = 0; i < gc->n_models; i++) config_locals += gc->models[i].kind == GW_MODEL_LOCAL;
        gw_config_unref(gc);
    }
    /* No --model: the embedded default model once built, else (server.c) the random demo. */
    if (n_models == 0 && !random_model && !config_locals) {
        default_model_config dc;
        default_model_config_default(&dc);
        if (default_model_dir(data_dir, &default_dir, &err) != BS_OK) {
            status = cli_report("serve", &err);
            goto done;
        }
        if (default_model_is_current(default_dir, &dc)) {
            specs[0] = (server_model_spec){.name = DEFAULT_MODEL_NAME, .path = default_dir};
            n_models = 1;
        } else {
            bs_log_warn("no up-to-date default model in %s: `basalt run` or `basalt build-default` builds it "
                        "(a few minutes, once)", default_dir);
        }
    }
    /* Signals go to this thread only (sigwait below); server threads
     * inherit the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    server_config cfg = {
        .host = host, .port = port, .threads = threads, .quantize = quantize, .kv_dtype = kv_dtype, .ctx = ctx,
        .parallel = parallel,
        .max_body = (size_t)max_body_mib << 20, .max_file = (size_t)max_file_mib << 20, .data_dir = data_dir, .models = specs, .n_models = n_models,
        .loras = lora_specs, .n_loras = loras.n, .responses_store = responses_store,
        .train_threads = train_threads, .config_path = config_path, .insecure_open = insecure_open,
    };
    basalt_server *srv = NULL;
    if (server_open(&cfg, &srv, &err) != BS_OK) {
        status = cli_report("serve", &err);
        goto done;
    }
    bs_log_info("data directory %s", data_dir);
    bs_log_info("listening on %s", server_url(srv));
    int sig = 0;
    /* SIGHUP reloads the gateway config; a bad one is logged and the running one stays. */
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
        if (server_reload(srv, &err) != BS_OK) bs_log_warn("SIGHUP: reload rejected, the running config stays: %s", err.msg);
        else bs_log_info("SIGHUP: config reloaded");
    }
    bs_log_info("%s: shutting down (running requests get %.0f s)", sig == SIGINT ? "SIGINT" : "SIGTERM", GRACE_SECONDS);
    server_shutdown(srv, GRACE_SECONDS);
    server_close(srv);
    bs_log_info("stopped");
done:
    for (int i = 0; i < loras.n; i++) free(lora_bufs[i]);
    for (int i = 0; i < models.n; i++) {
        free((char *)specs[i].name);
        free(paths[i]);
    }
    free(data_dir);
    free(cache);
    free(default_dir);
    return status;
}
