/* server/server.h — `basalt serve`: loads the models, opens one scheduler
 * per model, and answers the OpenAI-compatible API over HTTP until told to
 * stop.  Owns the route table, the request log line and the one mapping
 * from bs_status to OpenAI error objects. */
#ifndef BASALT_SERVER_SERVER_H
#define BASALT_SERVER_SERVER_H

#include <stddef.h>

#include "base/error.h"

typedef struct server_model_spec {
    const char *name; /* the id clients send as "model" */
    const char *path; /* HF directory or .gguf */
} server_model_spec;

typedef struct server_config {
    const char *host;
    int port;      /* 0: any free port */
    int threads;   /* compute threads per model; <= 0 all cores */
    int ctx;       /* positions per sequence; <= 0 the scheduler's default */
    int parallel;  /* sequences per step; <= 0 the scheduler's default */
    size_t max_body;
    size_t max_file;      /* largest file upload in bytes (--max-file-mb) */
    const char *data_dir; /* resolved, existing */
    const server_model_spec *models;
    int n_models; /* 0: the random-weight demo model */
    /* Responses kept for previous_response_id / item_reference / GET, in
     * memory (lost on restart); < 0: RESP_STORE_DEFAULT_COUNT, 0: none. */
    int responses_store;
} server_config;

typedef struct basalt_server basalt_server;

bs_status server_open(const server_config *c, basalt_server **out, bs_error *err);
const char *server_url(const basalt_server *s);
/* Stop accepting, let running requests finish for up to grace_s seconds,
 * end the rest; then server_close. */
void server_shutdown(basalt_server *s, double grace_s);
void server_close(basalt_server *s);

#endif
