/* server/server.c — lifecycle, routing, the request log line and error
 * responses.  One request: http.c accumulates the body and calls dispatch on
 * the connection thread -> the route's handler decodes, runs a job and
 * answers -> on_done logs one JSON line and records metrics. */
#include "server/server_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/log.h"
#include "gateway/json_text.h"
#include "server/internal_auth.h"
#include "server/openai_response.h"

/* ------------------------------------------------------------ helpers */

long long unix_now(void) { return (long long)time(NULL); }

void random_id(const char *prefix, char *out, size_t cap) {
    unsigned char b[12] = {0};
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        static unsigned long long counter;
        unsigned long long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) ^ (unsigned long long)time(NULL);
        memcpy(b, &c, sizeof c);
    }
    size_t k = (size_t)snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof b && k + 2 < cap; i++) k += (size_t)snprintf(out + k, cap - k, "%02x", b[i]);
}

req_log *request_log(http_request *r) {
    void **slot = http_user_slot(r);
    if (!*slot) {
        req_log *l = calloc(1, sizeof *l);
        if (l) {
            l->ttft = -1;
            l->queue = -1;
        }
        *slot = l;
    }
    return *slot;
}

void respond_json(http_request *r, int status, json_t *body) {
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) return; /* http.c answers 500 for a missing response */
    http_respond(r, status, "application/json", s, strlen(s));
    free(s);
}

void respond_error(http_request *r, const api_error *a) {
    int status = oai_http_status(a);
    req_log *l = request_log(r);
    if (l) snprintf(l->error_code, sizeof l->error_code, "%s", a->code ? a->code : "");
    if (status == 429 || status == 503) http_add_header(r, "Retry-After", "1");
    respond_json(r, status, oai_error_body(a, status));
}

int split_resource_path(const char *path, const char *prefix, char *id, size_t cap, const char **action) {
    const char *rest = path + strlen(prefix), *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    *action = slash ? slash + 1 : "";
    if (n == 0 || n >= cap || strchr(*action, '/')) return 0;
    memcpy(id, rest, n);
    id[n] = '\0';
    return 1;
}

bs_status query_int(http_request *r, const char *name, long lo, long hi, long *out, api_error *a) {
    const char *v = http_query(r, name);
    if (!v) return BS_OK;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < lo || n > hi)
        return api_fail(a, BS_EINVAL, name, NULL, "%s: expected an integer from %ld to %ld, got \"%s\"", name, lo, hi,
                        v);
    *out = n;
    return BS_OK;
}

void respond_store_error(http_request *r, const bs_error *err, const char *param) {
    api_error a = {.e = *err};
    if (err->status == BS_ENOTFOUND || err->status == BS_EINVAL) snprintf(a.param, sizeof a.param, "%s", param);
    else bs_log_error("store: %s", err->msg);
    respond_error(r, &a);
}

void respond_job_error(http_request *r, const bs_error *err, const char *param) {
    api_error a = {.e = *err};
    snprintf(a.param, sizeof a.param, "%s", err->status == BS_EBUSY ? "" : param);
    if (err->status == BS_ERANGE) a.code = "context_length_exceeded";
    if (err->status == BS_EBUSY) a.code = "rate_limit_exceeded";
    respond_error(r, &a);
}

json_t *request_body(http_request *r) {
    req_log *l = request_log(r);
    if (l && l->body) return json_incref(l->body);
    api_error a = {0};
    json_t *body;
    if (oai_parse_body(http_body(r), http_body_len(r), &body, &a) != BS_OK) {
        respond_error(r, &a);
        return NULL;
    }
    if (l) l->body = json_incref(body);
    return body;
}

srv_model *request_model(basalt_server *s, http_request *r, const char *name) {
    srv_model *m = NULL;
    for (int i = 0; !m && i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) m = &s->models[i];
    if (!m) m = adapters_find(s, r, name);
    if (m) {
        req_log *l = request_log(r);
        if (l) snprintf(l->model, sizeof l->model, "%s", name);
        return m;
    }
    api_error a = {.http = 404};
    api_fail(&a, BS_ENOTFOUND, "model", "model_not_found", "The model '%s' does not exist", name);
    respond_error(r, &a);
    return NULL;
}

bs_scheduler *server_model_scheduler(basalt_server *s, const char *name) {
    for (int i = 0; name && i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return s->models[i].sched;
    return NULL;
}

/* ------------------------------------------------------------ routing */

typedef struct route {
    const char *method;
    const char *path; /* a trailing '*' matches any non-empty rest */
    void (*handler)(basalt_server *s, http_request *r);
    const char *scope; /* what the API key must allow (governance.h) */
    int inference;     /* runs a model named by body.model: admitted, guarded, maybe a gateway route */
} route;

static const route routes[] = {
    {"GET", "/health", handle_health, SCOPE_PUBLIC, 0},
    {"GET", "/v1/models", handle_models, SCOPE_INFERENCE, 0},
    {"GET", "/v1/models/*", handle_model_get, SCOPE_INFERENCE, 0},
    {"POST", "/tokenize", handle_tokenize, SCOPE_INFERENCE, 0},
    {"POST", "/detokenize", handle_detokenize, SCOPE_INFERENCE, 0},
    {"GET", "/metrics", handle_metrics, SCOPE_ADMIN, 0},
    {"POST", "/v1/admin/reload", handle_admin_reload, SCOPE_ADMIN, 0},
    {"POST", "/v1/admin/keys", handle_admin_key_create, SCOPE_ADMIN, 0},
    {"GET", "/v1/admin/keys", handle_admin_keys_list, SCOPE_ADMIN, 0},
    {"GET", "/v1/admin/keys/*", handle_admin_key_get, SCOPE_ADMIN, 0},
    {"POST", "/v1/admin/keys/*", handle_admin_key_update, SCOPE_ADMIN, 0},
    {"DELETE", "/v1/admin/keys/*", handle_admin_key_revoke, SCOPE_ADMIN, 0},
    {"GET", "/v1/admin/usage", handle_admin_usage, SCOPE_ADMIN, 0},
    {"GET", "/v1/admin/audit", handle_admin_audit, SCOPE_ADMIN, 0},
    {"POST", "/v1/guardrails/*", handle_guardrail_apply, SCOPE_INFERENCE, 0},
    {"POST", "/v1/batches", handle_batch_create, SCOPE_INFERENCE, 0},
    {"GET", "/v1/batches", handle_batches_list, SCOPE_INFERENCE, 0},
    {"GET", "/v1/batches/*", handle_batch_get, SCOPE_INFERENCE, 0},
    {"POST", "/v1/batches/*", handle_batch_post, SCOPE_INFERENCE, 0},
    {"POST", "/v1/chat/completions", handle_chat, SCOPE_INFERENCE, 1},
    {"POST", "/v1/responses", handle_responses, SCOPE_INFERENCE, 1},
    {"GET", "/v1/responses/*", handle_response_get, SCOPE_INFERENCE, 0},
    {"DELETE", "/v1/responses/*", handle_response_delete, SCOPE_INFERENCE, 0},
    {"POST", "/v1/completions", handle_completions, SCOPE_INFERENCE, 1},
    {"POST", "/v1/embeddings", handle_embeddings, SCOPE_INFERENCE, 1},
    {"POST", "/v1/files", handle_file_upload, SCOPE_FILES, 0},
    {"GET", "/v1/files", handle_files_list, SCOPE_FILES, 0},
    {"GET", "/v1/files/*", handle_file_get, SCOPE_FILES, 0},
    {"DELETE", "/v1/files/*", handle_file_delete, SCOPE_FILES, 0},
    {"POST", "/v1/load_lora_adapter", handle_load_lora, SCOPE_ADMIN, 0},
    {"POST", "/v1/unload_lora_adapter", handle_unload_lora, SCOPE_ADMIN, 0},
    {"POST", "/v1/fine_tuning/jobs", handle_ft_create, SCOPE_FINE_TUNE, 0},
    {"GET", "/v1/fine_tuning/jobs", handle_ft_list, SCOPE_FINE_TUNE, 0},
    {"GET", "/v1/fine_tuning/jobs/*", handle_ft_get, SCOPE_FINE_TUNE, 0},
    {"POST", "/v1/fine_tuning/jobs/*", handle_ft_post, SCOPE_FINE_TUNE, 0},
    {"POST", "/v1/fine_tuning/alpha/graders/validate", handle_grader_validate, SCOPE_FINE_TUNE, 0},
    {"POST", "/v1/fine_tuning/alpha/graders/run", handle_grader_run, SCOPE_FINE_TUNE, 0},
    {"POST", "/v1/evals", handle_evals_create, SCOPE_INFERENCE, 0},
    {"GET", "/v1/evals", handle_evals_list, SCOPE_INFERENCE, 0},
    {"GET", "/v1/evals/*", handle_eval_get, SCOPE_INFERENCE, 0},
    {"POST", "/v1/evals/*", handle_eval_post, SCOPE_INFERENCE, 0},
    {"DELETE", "/v1/evals/*", handle_eval_delete, SCOPE_INFERENCE, 0},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static int path_matches(const char *pattern, const char *path) {
    size_t n = strlen(pattern);
    if (n && pattern[n - 1] == '*') return strncmp(pattern, path, n - 1) == 0 && path[n - 1] != '\0';
    return strcmp(pattern, path) == 0;
}

/* Routes whose body is streamed rather than held: run when the headers are
 * in, before the body, to set up where it goes. */
static const route begin_routes[] = {
    {"POST", "/v1/files", begin_file_upload, SCOPE_FILES, 0},
};

/* http_form_piece of a refused upload: drop the rest of the body. */
static int drop_form(void *ctx, const char *name, const char *filename, const char *data, size_t len, uint64_t off) {
    (void)ctx, (void)name, (void)filename, (void)data, (void)len, (void)off;
    return 1;
}

/* The key is checked before any of the body is read: an unauthenticated
 * upload is answered (401/403) and its body dropped unread, never written
 * to disk.  A response set here means dispatch never runs the handler. */
static void begin_request(void *user, http_request *r) {
    for (size_t i = 0; i < sizeof begin_routes / sizeof begin_routes[0]; i++) {
        if (strcmp(begin_routes[i].method, http_method(r)) != 0 || !path_matches(begin_routes[i].path, http_path(r)))
            continue;
        if (governance_authenticate(user, r, begin_routes[i].scope)) begin_routes[i].handler(user, r);
        else http_stream_form(r, drop_form, NULL, NULL);
    }
}

/* The key first; then an inference request is admitted (limits), guarded
 * (input policies) and either served by the gateway (a name its config
 * defines) or by the route's local handler. */
static void serve_route(basalt_server *s, http_request *r, const route *rt) {
    if (!governance_authenticate(s, r, rt->scope)) return;
    if (rt->inference) {
        json_t *body = request_body(r);
        if (!body) return;
        int answered = !governance_admit(s, r, rt->path, body) ||
                       !guard_admit(s, r, rt->path, body, gateway_guards(s, r)) ||
                       gateway_serve(s, r, rt->path, body, rt->handler);
        json_decref(body);
        if (answered) return;
    }
    rt->handler(s, r);
}

static void dispatch(void *user, http_request *r) {
    basalt_server *s = user;
    const char *path = http_path(r), *method = http_method(r);
    req_log *l = request_log(r);
    api_error a = {0};
    if (l) l->endpoint = "other";
    const route *found = NULL;
    char allow[64] = "";
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (!path_matches(routes[i].path, path)) continue;
        if (strcmp(routes[i].method, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
            found = &routes[i];
        else
            snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", allow[0] ? ", " : "", routes[i].method);
        if (l) l->endpoint = routes[i].path;
    }
    if (http_body_too_large(r)) {
        a.http = 413;
        api_fail(&a, BS_EINVAL, NULL, "request_too_large", "The request body is larger than the server's limit");
        respond_error(r, &a);
    } else if (found) {
        serve_route(s, r, found);
    } else if (allow[0]) {
        a.http = 405;
        api_fail(&a, BS_EINVAL, NULL, "method_not_allowed", "%s is not allowed on %s (allowed: %s)", method, path, allow);
        http_add_header(r, "Allow", allow);
        respond_error(r, &a);
    } else {
        a.http = 404;
        api_fail(&a, BS_ENOTFOUND, NULL, "not_found", "Unknown route: %s %s", method, path);
        respond_error(r, &a);
    }
}

/* One JSON line per request on stderr, then the metrics. */
static void on_done(void *user, http_request *r) {
    basalt_server *s = user;
    req_log *l = *http_user_slot(r);
    double total = bs_now() - http_start_time(r);
    const char *endpoint = l && l->endpoint ? l->endpoint : "other";
    json_t *line = json_pack("{s:I,s:s,s:s,s:s,s:s,s:i,s:s?,s:i,s:i,s:f,s:f,s:f}", "ts", (json_int_t)unix_now(),
                             "request_id", http_request_id(r), "method", http_method(r), "path", http_path(r),
                             "endpoint", endpoint, "status", http_status(r), "model",
                             l && l->model[0] ? l->model : NULL, "prompt_tokens", l ? l->prompt_tokens : 0,
                             "completion_tokens", l ? l->completion_tokens : 0, "queue_ms",
                             l && l->queue >= 0 ? l->queue * 1e3 : 0.0, "ttft_ms",
                             l && l->ttft >= 0 ? l->ttft * 1e3 : 0.0, "latency_ms", total * 1e3);
    if (line) {
        gateway_request_done(s, r, line);
        guard_request_done(s, r, line);
        governance_done(s, r, line);
    }
    /* json_dumps' bytes, without its callback machinery (a third of the
     * line's cost), in one write as fprintf on the unbuffered stderr did */
    char stack[2048];
    json_text text = json_text_on(stack, sizeof stack);
    if (line) {
        json_text_value(&text, line);
        json_text_lit(&text, "\n");
    }
    if (line && !text.oom) fwrite(text.data, 1, text.len, stderr);
    json_text_free(&text);
    json_decref(line);
    metrics_request(s->metrics, l ? l->model : "", endpoint, http_status(r), l ? l->prompt_tokens : 0,
                    l ? l->completion_tokens : 0,
                    total, l ? l->ttft : -1, l ? l->queue : -1);
    if (l) {
        adapter_close(l->adapter);
        json_decref(l->body);
    }
    free(l);
    *http_user_slot(r) = NULL;
}

/* ------------------------------------------------------------ models */

/* The engine's demo shape (as `basalt run`): llama, 4 layers, dim 256,
 * byte-level tokenizer, random weights. */
static bs_status open_demo_model(const server_config *c, srv_model *m, bs_error *err) {
    bs_model_config cfg = {
        .arch = BS_ARCH_LLAMA, .n_vocab = 257, .dim = 256, .n_layers = 4, .n_heads = 8,
        .n_kv_heads = 4, .head_dim = 32, .ffn_dim = 768, .max_pos = 4096, .rms_eps = 1e-5f,
        .rope_theta = 10000.0f, .rope_neox = 1,
    };
    bs_model_params mp = {.n_threads = c->threads};
    bs_log_warn("no --model given: serving \"basalt-demo-random\", a model with RANDOM weights "
                "(llama shape, 4 layers, dim 256, byte-level tokenizer); its output is noise");
    m->name = strdup("basalt-demo-random");
    if (!m->name) return bs_fail(err, BS_ENOMEM, "out of memory");
    if (model_open_random(&cfg, 42, &mp, &m->model, err) != BS_OK) return err->status;
    return chat_template_from_model(NULL, NULL, &m->tmpl, err);
}

static bs_status open_model(const server_config *c, const server_model_spec *spec, srv_model *m, bs_error *err) {
    m->created = unix_now();
    if (spec) {
        bs_model_params mp = {.n_threads = c->threads, .quantize = c->quantize};
        m->name = strdup(spec->name);
        m->root = strdup(spec->path);
        if (!m->name || !m->root) return bs_fail(err, BS_ENOMEM, "out of memory");
        if (model_open(spec->path, &mp, &m->model, err) != BS_OK ||
            chat_template_from_model(spec->path, NULL, &m->tmpl, err) != BS_OK)
            return err->status;
    } else if (open_demo_model(c, m, err) != BS_OK) {
        return err->status;
    }
    m->tok = model_tokenizer(m->model);
    if (!m->tok) return bs_fail(err, BS_EINVAL, "model %s: the files carry no tokenizer", m->name);
    const char *src = chat_template_source(m->tmpl);
    m->format = chat_format_detect(src);
    m->has_reasoning = chat_template_has_reasoning(src);
    if (token_trie_build(m->tok, &m->trie, err) != BS_OK) return err->status;
    bs_scheduler_params sp;
    scheduler_params_default(&sp);
    int max_pos = model_config(m->model)->max_pos;
    sp.n_ctx = c->ctx > 0 ? c->ctx : max_pos < 4096 ? max_pos : 4096;
    if (c->parallel > 0) sp.max_running = c->parallel;
    sp.kv_dtype = c->kv_dtype;
    if (sp.step_tokens < sp.max_running) sp.step_tokens = sp.max_running;
    if (scheduler_open(m->model, &sp, &m->sched, err) != BS_OK) return bs_wrap(err, "model %s", m->name);
    m->n_ctx = sp.n_ctx;
    bs_log_info("model %s: %s, chat format %s, context %d", m->name, model_describe(m->model),
                chat_format_name(m->format), m->n_ctx);
    return BS_OK;
}

/* A local model of the gateway config: its own quantization and context
 * over the command line's; a name --model already serves is an error. */
static bs_status open_config_model(basalt_server *s, const server_config *c, const gw_model *gm, bs_error *err) {
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, gm->name) == 0)
            return bs_fail(err, BS_EINVAL, "model %s: served by --model and defined in the config (line %d)", gm->name,
                           gm->line);
    server_config mc = *c;
    if (gm->quantize && quant_parse(gm->quantize, &mc.quantize, err) != BS_OK)
        return bs_wrap(err, "model %s (config line %d): quantize", gm->name, gm->line);
    if (gm->ctx > 0) mc.ctx = gm->ctx;
    server_model_spec spec = {.name = gm->name, .path = gm->path};
    s->n_models++;
    return open_model(&mc, &spec, &s->models[s->n_models - 1], err);
}

static void close_model(srv_model *m) {
    scheduler_close(m->sched);
    token_trie_free(m->trie);
    chat_template_close(m->tmpl);
    model_close(m->model);
    free(m->name);
    free(m->root);
}

/* ------------------------------------------------------------ lifecycle */

bs_status server_open(const server_config *c, basalt_server **out, bs_error *err) {
    *out = NULL;
    basalt_server *s = calloc(1, sizeof *s);
    if (!s) return bs_fail(err, BS_ENOMEM, "out of memory");
    bs_status st = internal_auth_init(err);
    if (st == BS_OK) st = metrics_open(&s->metrics, err);
    if (st == BS_OK) st = job_registry_open(&s->jobs, err);
    if (st == BS_OK) st = adapters_open(&s->adapters, err);
    if (st == BS_OK) st = gateway_open(s, c->config_path, &s->gateway, err);
    gw_config *gcfg = st == BS_OK ? gateway_config(s->gateway) : NULL;
    if (st == BS_OK) st = store_open_url(gcfg ? gcfg->store : NULL, c->data_dir, &s->store, err);
    /* The config's local models are served like --model ones, under their
     * public names; the demo model only when neither names any. */
    int n_local = 0;
    for (int i = 0; gcfg && i < gcfg->n_models; i++) n_local += gcfg->models[i].kind == GW_MODEL_LOCAL;
    int n_cli = c->n_models > 0 || n_local > 0 ? c->n_models : 1;
    if (st == BS_OK && !(s->models = calloc((size_t)(n_cli + n_local), sizeof *s->models)))
        st = bs_fail(err, BS_ENOMEM, "out of memory");
    if (st == BS_OK) st = governance_open(s, c, &s->gov, err);
    if (st == BS_OK && !(s->data_dir = strdup(c->data_dir))) st = bs_fail(err, BS_ENOMEM, "out of memory");
    s->max_file = c->max_file;
    if (st == BS_OK)
        st = resp_store_open(c->responses_store < 0 ? RESP_STORE_DEFAULT_COUNT : c->responses_store,
                             RESP_STORE_DEFAULT_BYTES, &s->responses, err);
    for (int i = 0; st == BS_OK && i < n_cli; i++) {
        s->n_models = i + 1;
        st = open_model(c, c->n_models > 0 ? &c->models[i] : NULL, &s->models[i], err);
    }
    for (int i = 0; st == BS_OK && gcfg && i < gcfg->n_models; i++)
        if (gcfg->models[i].kind == GW_MODEL_LOCAL) st = open_config_model(s, c, &gcfg->models[i], err);
    gw_config_unref(gcfg);
    if (st == BS_OK) st = adapters_load_specs(s, c->loras, c->n_loras, err);
    if (st == BS_OK) st = ft_runner_open(s, c->train_threads, &s->ft, err);
    if (st == BS_OK) st = eval_runner_open(s, &s->evals, err);
    if (st == BS_OK) {
        http_config hc = {.host = c->host, .port = c->port, .max_body = c->max_body, .idle_timeout_s = 60,
                          .max_connections = 512, .begin = begin_request};
        st = http_server_open(&hc, dispatch, on_done, s, &s->http, err);
    }
    if (st != BS_OK) {
        server_close(s);
        return st;
    }
    int v6 = strchr(c->host, ':') != NULL;
    snprintf(s->url, sizeof s->url, "http://%s%s%s:%d", v6 ? "[" : "", c->host, v6 ? "]" : "",
             http_server_port(s->http));
    /* The worker sends lines to s->url, so it starts once the URL is known. */
    if ((st = batch_runner_open(s, &s->batches, err)) != BS_OK) {
        server_close(s);
        return st;
    }
    *out = s;
    return BS_OK;
}

const char *server_url(const basalt_server *s) { return s->url; }

bs_status server_reload(basalt_server *s, bs_error *err) { return gateway_reload(s, err); }

void server_shutdown(basalt_server *s, double grace_s) {
    /* Batch lines in flight are abandoned, not drained: a restart sends them again. */
    batch_runner_close(s->batches);
    s->batches = NULL;
    http_server_quiesce(s->http);
    job_registry_drain(s->jobs, grace_s);
}

void server_close(basalt_server *s) {
    if (!s) return;
    batch_runner_close(s->batches); /* it sends its requests through s->http */
    http_server_close(s->http);
    ft_runner_close(s->ft); /* checkpoints a running job while its model is still open */
    eval_runner_close(s->evals); /* stops running evals while their models are still open */
    for (int i = 0; i < s->n_models; i++) close_model(&s->models[i]);
    adapters_close(s->adapters);
    governance_close(s->gov);
    gateway_close(s->gateway);
    job_registry_close(s->jobs);
    store_close(s->store);
    free(s->data_dir);
    resp_store_close(s->responses);
    metrics_close(s->metrics);
    free(s->models);
    free(s);
}
