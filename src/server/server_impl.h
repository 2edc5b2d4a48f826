/* server/server_impl.h — what the endpoint handlers share: the loaded
 * models, the per-request log fields, and the response helpers. */
#ifndef BASALT_SERVER_SERVER_IMPL_H
#define BASALT_SERVER_SERVER_IMPL_H

#include <jansson.h>

#include "engine/grammar.h"
#include "engine/model.h"
#include "engine/scheduler.h"
#include "server/batches.h"
#include "server/ft_jobs.h"
#include "server/gateway.h"
#include "server/governance.h"
#include "server/guard.h"
#include "server/http.h"
#include "server/job.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/resp_store.h"
#include "server/server.h"
#include "store/store.h"
#include "template/chat_parse.h"
#include "template/chat_template.h"

typedef struct srv_model {
    char *name;
    bs_model *model;
    const bs_tokenizer *tok;
    bs_scheduler *sched;
    chat_template *tmpl;
    chat_format format;   /* tool-call markup of its template */
    int has_reasoning;    /* its template knows <think> */
    bs_token_trie *trie;  /* for constrained decoding */
    int n_ctx;
    long long created;
    char *root;           /* /v1/models "root": the model's path, an adapter's directory */
    bs_adapter *adapter;  /* LoRA over the base (server/adapters.c); NULL for a base model */
    const char *parent;   /* an adapter's base model name; NULL for a base model */
} srv_model;

typedef struct srv_adapters srv_adapters;
typedef struct eval_runner eval_runner;

struct basalt_server {
    srv_model *models;
    int n_models;
    http_server *http;
    srv_metrics *metrics;
    job_registry *jobs;
    resp_store *responses; /* the Responses API's store: true responses */
    bs_store *store;   /* files, fine-tuning jobs (DATA/basalt.db) */
    char *data_dir;    /* DATA: fine-tuning checkpoints and models live under it */
    ft_runner *ft;     /* the fine-tuning job runner */
    srv_adapters *adapters; /* LoRA adapters served over the models */
    eval_runner *evals;     /* the Evals API's running runs (handlers_evals.c) */
    srv_gateway *gateway;   /* --config: routes, upstreams, breakers (gateway.c) */
    srv_governance *gov;    /* keys, limits, usage, audit (governance.c) */
    batch_runner *batches;  /* the Batch API's worker (batches.c) */
    size_t max_file;   /* largest upload, bytes */
    char url[160];
};

/* Fields of the request's log line, filled as the handler learns them. */
typedef struct req_log {
    const char *endpoint; /* the route pattern, for metric labels */
    char model[128];
    int prompt_tokens, completion_tokens;
    double ttft, queue;
    bs_adapter *adapter; /* a reference while the request uses an adapter */
    char error_code[64]; /* the OpenAI error code respond_error answered with ("" none): the gateway classifies local failures by it */
    json_t *body;        /* the parsed request body once read (request_body); guardrails may mask it */
    /* Per-request state of the layers around the handlers, each freed by
     * its own *_done hook: */
    struct gateway_request *gw;  /* gateway.c: config generation, route, target, attempts */
    struct gov_request *gov;     /* governance.c: the key, the limits reservation */
    struct guard_request *guard; /* guard.c: the policies applied, what they did */
} req_log;

req_log *request_log(http_request *r);

void respond_json(http_request *r, int status, json_t *body); /* body stolen */
void respond_error(http_request *r, const api_error *a);
/* The body as a JSON object (a new reference; parsed once per request and
 * shared, so a masked body is what every later reader sees); on failure
 * answers 400 and returns NULL. */
json_t *request_body(http_request *r);
/* The served model called name; NULL after answering 404. */
srv_model *request_model(basalt_server *s, http_request *r, const char *name);
/* The scheduler of the base model served here as name (NULL: not a local
 * base model), for background work that yields to clients (batches.c). */
bs_scheduler *server_model_scheduler(basalt_server *s, const char *name);
/* "chatcmpl-…" style ids: prefix + 24 random hex digits. */
void random_id(const char *prefix, char *out, size_t cap);
long long unix_now(void);
/* path is prefix + ID [+ "/" ACTION]: ID (non-empty, shorter than cap) to
 * id and ACTION (one segment, "" when absent) to *action; 0 otherwise. */
int split_resource_path(const char *path, const char *prefix, char *id, size_t cap, const char **action);
/* A query integer in [lo, hi]; absent leaves *out as is. */
bs_status query_int(http_request *r, const char *name, long lo, long hi, long *out, api_error *a);
/* Answers a store failure: an unknown id (404) or cursor (400) names param;
 * the rest are the server's 500s and get logged. */
void respond_store_error(http_request *r, const bs_error *err, const char *param);
/* Answer a failed job_start: 429 with Retry-After when the queue is full. */
void respond_job_error(http_request *r, const bs_error *err, const char *param);

/* Render messages with the model's template, then encode the text with
 * special tokens parsed; BOS only when the template did not write it. */
bs_status render_chat_prompt(const srv_model *m, const json_t *messages, const json_t *tools, int add_generation_prompt,
                             const json_t *kwargs, char **text, int32_t **ids, size_t *n_ids, api_error *a);

/* /v1/models entry of a base model or an adapter (with parent and root, as vLLM). */
json_t *model_object(const srv_model *m);

/* Served adapters (adapters.c): the registry, --lora loading, lookup by
 * name (taking a reference for the request into its log), listing, and
 * vLLM's POST /v1/load_lora_adapter and /v1/unload_lora_adapter. */
bs_status adapters_open(srv_adapters **out, bs_error *err);
void adapters_close(srv_adapters *r);
bs_status adapters_load_specs(basalt_server *s, const server_lora_spec *specs, int n, bs_error *err);
srv_model *adapters_find(basalt_server *s, http_request *r, const char *name);
/* The adapters the request's tenant may use (adapters_find hides the rest). */
void adapters_list(basalt_server *s, http_request *r, json_t *data);
void handle_load_lora(basalt_server *s, http_request *r);
void handle_unload_lora(basalt_server *s, http_request *r);

void handle_health(basalt_server *s, http_request *r);
void handle_models(basalt_server *s, http_request *r);
void handle_model_get(basalt_server *s, http_request *r);
void handle_tokenize(basalt_server *s, http_request *r);
void handle_detokenize(basalt_server *s, http_request *r);
void handle_metrics(basalt_server *s, http_request *r);
void handle_chat(basalt_server *s, http_request *r);
void handle_responses(basalt_server *s, http_request *r);
void handle_response_get(basalt_server *s, http_request *r);
void handle_response_delete(basalt_server *s, http_request *r);
void handle_completions(basalt_server *s, http_request *r);
void handle_embeddings(basalt_server *s, http_request *r);
/* Files API (handlers_files.c); begin_file_upload runs when the upload's
 * headers arrive, to stream its body to disk. */
void begin_file_upload(basalt_server *s, http_request *r);
void handle_file_upload(basalt_server *s, http_request *r);
void handle_files_list(basalt_server *s, http_request *r);
void handle_file_get(basalt_server *s, http_request *r);
void handle_file_delete(basalt_server *s, http_request *r);
/* Fine-tuning jobs API (handlers_fine_tuning.c): POST /v1/fine_tuning/jobs,
 * the list, and per job GET {id, id/events, id/checkpoints} and POST
 * id/{cancel, pause, resume}. */
void handle_ft_create(basalt_server *s, http_request *r);
void handle_ft_list(basalt_server *s, http_request *r);
void handle_ft_get(basalt_server *s, http_request *r);
void handle_ft_post(basalt_server *s, http_request *r);
/* Grader test endpoints (handlers_graders.c): POST
 * /v1/fine_tuning/alpha/graders/validate and /run. */
void handle_grader_validate(basalt_server *s, http_request *r);
/* Admin API (handlers_admin.c): keys create/list/get/update/revoke, usage
 * (JSON or CSV), the audit log. */
void handle_admin_key_create(basalt_server *s, http_request *r);
void handle_admin_keys_list(basalt_server *s, http_request *r);
void handle_admin_key_get(basalt_server *s, http_request *r);
void handle_admin_key_update(basalt_server *s, http_request *r);
void handle_admin_key_revoke(basalt_server *s, http_request *r);
void handle_admin_usage(basalt_server *s, http_request *r);
void handle_admin_audit(basalt_server *s, http_request *r);
/* Batch API (handlers_batches.c): POST/GET /v1/batches, GET
 * /v1/batches/{id}, POST /v1/batches/{id}/cancel. */
void handle_batch_create(basalt_server *s, http_request *r);
void handle_batches_list(basalt_server *s, http_request *r);
void handle_batch_get(basalt_server *s, http_request *r);
void handle_batch_post(basalt_server *s, http_request *r);
void handle_grader_run(basalt_server *s, http_request *r);
/* Evals API (handlers_evals.c): POST/GET /v1/evals, and GET/POST/DELETE
 * under /v1/evals/{id} (the eval, its runs, a run's output items).  The
 * runner marks runs a dead process left unfinished failed at open and stops
 * running ones at close (before the models close). */
bs_status eval_runner_open(basalt_server *s, eval_runner **out, bs_error *err);
void eval_runner_close(eval_runner *er);
void handle_evals_create(basalt_server *s, http_request *r);
void handle_evals_list(basalt_server *s, http_request *r);
void handle_eval_get(basalt_server *s, http_request *r);
void handle_eval_post(basalt_server *s, http_request *r);
void handle_eval_delete(basalt_server *s, http_request *r);

#endif
