/* server/server.h — `basalt serve`: loads the models, opens one scheduler
 * per model, and answers the OpenAI-compatible API over HTTP until told to
 * stop.  Owns the route table, the request log line and the one mapping
 * from bs_status to OpenAI error objects. */
#ifndef BASALT_SERVER_SERVER_H
#define BASALT_SERVER_SERVER_H

#include <stddef.h>

#include "base/error.h"
#include "engine/adapter.h"
#include "engine/quantize.h"

typedef struct server_model_spec {
    const char *name; /* the id clients send as "model" */
    const char *path; /* HF directory or .gguf */
} server_model_spec;

/* --lora NAME=DIR[@BASE]: a PEFT adapter directory served as NAME over the
 * base model named BASE (NULL: the first model). */
typedef struct server_lora_spec {
    const char *name, *path, *base;
} server_lora_spec;

typedef struct server_config {
    const char *host;
    int port;      /* 0: any free port */
    int threads;   /* compute threads per model; <= 0 all cores */
    bs_quant quantize; /* --model Hugging Face models' matrices converted at load (BS_QUANT_NONE: as stored) */
    bs_dtype kv_dtype; /* local models' KV cache: BS_DTYPE_F32 (0, the default), _F16 or _Q8_0 */
    int ctx;       /* positions per sequence; <= 0 the scheduler's default */
    int parallel;  /* sequences per step; <= 0 the scheduler's default */
    size_t max_body;
    size_t max_file;      /* largest file upload in bytes (--max-file-mb) */
    const char *data_dir; /* resolved, existing */
    const server_model_spec *models;
    int n_models; /* 0: the random-weight demo model */
    const server_lora_spec *loras;
    int n_loras;
    /* Responses kept for previous_response_id / item_reference / GET, in
     * memory (lost on restart); < 0: RESP_STORE_DEFAULT_COUNT, 0: none. */
    int responses_store;
    int train_threads; /* OpenBLAS threads of a fine-tuning job; <= 0: 1 */
    const char *config_path; /* --config: the gateway configuration (NULL: none) */
    int insecure_open;       /* --insecure-open: serve a non-loopback address without API keys */
} server_config;


typedef struct basalt_server basalt_server;

bs_status server_open(const server_config *c, basalt_server **out, bs_error *err);
const char *server_url(const basalt_server *s);
/* Reload the gateway configuration (SIGHUP); the old one stays on error. */
bs_status server_reload(basalt_server *s, bs_error *err);

/* Serve adapter (over the model served as base; the registry takes its own
 * reference) as name, e.g. a finished fine-tuning job's
 * "ft:<base>:<suffix>:<job-id>", for the tenant owner only ("" or NULL:
 * every client).  BS_EINVAL when the name is taken or the
 * adapter is over another model, BS_ENOTFOUND when base is not served.
 * Thread-safe. */
bs_status server_register_adapter(basalt_server *s, const char *name, bs_adapter *adapter, const char *base,
                                  const char *owner, bs_error *err);
/* Stop serving name; requests already running with it finish with it.
 * BS_ENOTFOUND when no adapter is served as name. */
bs_status server_unregister_adapter(basalt_server *s, const char *name, bs_error *err);
/* Stop accepting, let running requests finish for up to grace_s seconds,
 * end the rest; then server_close. */
void server_shutdown(basalt_server *s, double grace_s);
void server_close(basalt_server *s);

#endif
