/* tests/gateway/mock_upstream.c — a fault-injecting OpenAI-compatible
 * upstream for the gateway tests and benchmarks.
 *
 *   mock_upstream [--port N] [--name NAME] [--raw-stream]
 *
 * Prints "listening on PORT" as its first line and serves until killed:
 *   POST /v1/chat/completions, /v1/completions   text "hello from NAME (model M)",
 *        plus " more" per max_tokens above 5; stream and
 *        stream_options.include_usage as OpenAI does them ("usage":null on
 *        every chunk, then a usage chunk with empty choices).  Usage:
 *        prompt = characters of the prompt / 4, completion = content chunks.
 *   POST /v1/embeddings, GET /v1/models
 *   POST /mock/faults    [step, ...] consumed one per API request, or
 *                        {"always": step} until cleared; a step has any of
 *                        status, code, message, retry_after, hang, hang_ms,
 *                        delay_ms, chunk_delay_ms, cut_after_chunks, raw
 *   DELETE /mock/faults  clears both
 *   GET /mock/stats      {"requests","connections","by_path","last_headers","last_body"}
 *   GET /mock/blob?kb=N  N KiB of bytes i % 251, streamed in 16 KiB pieces
 *
 * "raw" (or --raw-stream for every request) writes the JSON with unusual
 * spacing and key order and "data:" without its space, so relays can be
 * checked byte for byte; the same request without include_usage is the
 * text with include_usage minus each `<blanks>,<blanks>"usage" : null`. */
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/buf.h"

static const char *g_name = "mock";
static int g_raw_default;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *g_steps;  /* array of pending fault steps */
static json_t *g_always; /* NULL or a step for every request */
static json_t *g_stats;  /* requests, connections, by_path, last_headers, last_body */

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long step_int(const json_t *step, const char *key, long dflt) {
    const json_t *v = json_object_get(step, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : json_is_true(v) ? 1 : dflt;
}

/* ------------------------------------------------------------ responses */

static enum MHD_Result reply(struct MHD_Connection *conn, int status, const char *type, const char *body,
                             const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result reply_json(struct MHD_Connection *conn, int status, json_t *body) {
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    enum MHD_Result rc = reply(conn, status, "application/json", s ? s : "{}", NULL);
    free(s);
    return rc;
}

static enum MHD_Result reply_fault(struct MHD_Connection *conn, const json_t *step) {
    int status = (int)step_int(step, "status", 500);
    const char *code = json_string_value(json_object_get(step, "code"));
    const char *message = json_string_value(json_object_get(step, "message"));
    const char *type = status == 429 ? "rate_limit_error" : status >= 500 ? "server_error" : "invalid_request_error";
    if (!message) {
        if (code && strcmp(code, "context_length_exceeded") == 0)
            message = "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.";
        else if (code && (strcmp(code, "content_filter") == 0 || strcmp(code, "content_policy_violation") == 0))
            message = "The response was filtered due to the prompt triggering the content management policy.";
        else
            message = status == 429 ? "Rate limit reached" : "injected failure";
    }
    json_t *err = json_pack("{s:{s:s,s:s,s:n,s:o}}", "error", "message", message, "type", type, "param", "code",
                            code ? json_string(code) : json_null());
    char *s = json_dumps(err, JSON_COMPACT);
    json_decref(err);
    char ra[32];
    long retry = step_int(step, "retry_after", -1);
    snprintf(ra, sizeof ra, "%ld", retry);
    enum MHD_Result rc = reply(conn, status, "application/json", s ? s : "{}", retry >= 0 ? ra : NULL);
    free(s);
    return rc;
}

/* A streamed body: the events in order, one per reader call, with a pause
 * before each after the first and an abort after cut_after of them. */
typedef struct stream {
    char **events;
    int n, idx;
    size_t pos;
    long delay_ms, cut_after;
    /* blob mode: total bytes of the i % 251 pattern */
    size_t blob, sent;
} stream;

static ssize_t stream_read(void *cls, uint64_t off, char *out, size_t max) {
    (void)off;
    stream *s = cls;
    if (s->blob) {
        if (s->sent == s->blob) return MHD_CONTENT_READER_END_OF_STREAM;
        size_t k = s->blob - s->sent < max ? s->blob - s->sent : max;
        if (k > 16384) k = 16384;
        for (size_t i = 0; i < k; i++) out[i] = (char)((s->sent + i) % 251);
        s->sent += k;
        return (ssize_t)k;
    }
    if (s->idx == s->n) return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->pos == 0) {
        if (s->cut_after >= 0 && s->idx >= s->cut_after) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->idx > 0 && s->delay_ms > 0) sleep_ms(s->delay_ms);
    }
    const char *e = s->events[s->idx];
    size_t len = strlen(e) - s->pos, k = len < max ? len : max;
    memcpy(out, e + s->pos, k);
    s->pos += k;
    if (s->pos == strlen(e)) {
        s->idx++;
        s->pos = 0;
    }
    return (ssize_t)k;
}

static void stream_free(void *cls) {
    stream *s = cls;
    for (int i = 0; i < s->n; i++) free(s->events[i]);
    free(s->events);
    free(s);
}

static enum MHD_Result reply_stream(struct MHD_Connection *conn, stream *s, const char *type) {
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, stream_read, s, stream_free);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

/* ------------------------------------------------------------ completions */

static char *dump(const json_t *v) { return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY); }

static size_t prompt_chars(const json_t *body) {
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(json_object_get(body, "messages"), i, m) n += json_string_length(json_object_get(m, "content"));
    const json_t *p = json_object_get(body, "prompt");
    if (json_is_string(p)) n += json_string_length(p);
    return n;
}

/* One chunk's text.  choice is the choices array's text; usage is NULL
 * (member absent), "null", or the usage object's text. */
static char *chunk_text(int raw, int chat, const char *model_json, const char *choices, const char *usage) {
    srv_buf b = {0};
    const char *object = chat ? "chat.completion.chunk" : "text_completion";
    char id[128];
    snprintf(id, sizeof id, "%s-%s", chat ? "chatcmpl" : "cmpl", g_name);
    if (!raw) {
        buf_printf(&b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":1700000000,\"model\":%s,\"choices\":%s", id,
                   object, model_json, choices);
        if (usage) buf_printf(&b, ",\"usage\":%s", usage);
        buf_puts(&b, "}\n\n");
    } else {
        buf_printf(&b, "data:{ \"choices\" :  %s ,\"object\":\"%s\" ,  \"model\" :%s", choices, object, model_json);
        if (usage) buf_printf(&b, "  ,  \"usage\" : %s", usage);
        buf_printf(&b, " , \"id\": \"%s\",\"created\" :1700000000 }\n\n", id);
    }
    return b.data;
}

static enum MHD_Result completions(struct MHD_Connection *conn, const json_t *body, int chat, const json_t *step) {
    const char *model = json_string_value(json_object_get(body, "model"));
    if (!model) model = "unknown";
    int stream_on = json_is_true(json_object_get(body, "stream"));
    int include_usage = json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
    int raw = (int)step_int(step, "raw", g_raw_default);
    long max_tokens = step_int(body, "max_tokens", 0);
    /* the words, one content chunk each */
    char head[512];
    snprintf(head, sizeof head, "hello| from| %s| (model| %s)", g_name, model);
    json_t *words = json_array();
    for (char *save, *w = strtok_r(head, "|", &save); w; w = strtok_r(NULL, "|", &save))
        json_array_append_new(words, json_string(w));
    for (long i = 5; i < max_tokens; i++) json_array_append_new(words, json_string(" more"));
    /* raw: a chunk whose text looks like the members a relay rewrites */
    if (raw && stream_on) json_array_append_new(words, json_string(" {\"model\": \"x\", \"usage\":null}"));
    size_t n_words = json_array_size(words);
    json_t *usage = json_pack("{s:i,s:i,s:i}", "prompt_tokens", (int)(prompt_chars(body) / 4), "completion_tokens",
                              (int)n_words, "total_tokens", (int)(prompt_chars(body) / 4 + n_words));
    json_t *jmodel = json_string(model);
    char *model_json = dump(jmodel);
    json_decref(jmodel);
    enum MHD_Result rc;
    if (!stream_on) {
        srv_buf text = {0};
        size_t i;
        json_t *w;
        json_array_foreach(words, i, w) buf_puts(&text, json_string_value(w));
        json_t *choice = chat ? json_pack("{s:i,s:{s:s,s:s},s:n,s:s}", "index", 0, "message", "role", "assistant",
                                          "content", text.data, "logprobs", "finish_reason", "stop")
                              : json_pack("{s:i,s:s,s:n,s:s}", "index", 0, "text", text.data, "logprobs",
                                          "finish_reason", "stop");
        buf_free(&text);
        char *choice_s = dump(choice), *usage_s = dump(usage);
        srv_buf b = {0};
        if (!raw)
            buf_printf(&b, "{\"id\":\"%s-%s\",\"object\":\"%s\",\"created\":1700000000,\"model\":%s,\"choices\":[%s],\"usage\":%s}",
                       chat ? "chatcmpl" : "cmpl", g_name, chat ? "chat.completion" : "text_completion", model_json,
                       choice_s, usage_s);
        else
            buf_printf(&b, "{\n  \"usage\" : %s,\n  \"choices\": [ %s ] ,\"model\"   :  %s,\n\"id\":\"%s-%s\" }\n", usage_s,
                       choice_s, model_json, chat ? "chatcmpl" : "cmpl", g_name);
        rc = reply(conn, 200, "application/json", b.data, NULL);
        buf_free(&b);
        free(choice_s);
        free(usage_s);
        json_decref(choice);
    } else {
        stream *s = calloc(1, sizeof *s);
        s->events = calloc(n_words + 4, sizeof *s->events);
        s->delay_ms = step_int(step, "chunk_delay_ms", 0);
        s->cut_after = step_int(step, "cut_after_chunks", -1);
        const char *unull = include_usage ? "null" : NULL;
        for (size_t i = 0; i <= n_words + 1; i++) {
            json_t *delta = i == 0             ? json_pack("{s:s,s:s}", "role", "assistant", "content", "")
                            : i <= n_words ? json_pack("{s:O}", "content", json_array_get(words, i - 1))
                                              : json_object();
            json_t *choice = chat ? json_pack("{s:i,s:o,s:n,s:o}", "index", 0, "delta", delta, "logprobs",
                                              "finish_reason", i > n_words ? json_string("stop") : json_null())
                                  : json_pack("{s:i,s:s,s:n,s:o}", "index", 0, "text",
                                              json_string_value(json_object_get(delta, "content"))
                                                  ? json_string_value(json_object_get(delta, "content"))
                                                  : "",
                                              "logprobs", "finish_reason",
                                              i > n_words ? json_string("stop") : json_null());
            if (!chat) json_decref(delta);
            json_t *arr = json_pack("[o]", choice);
            char *arr_s = dump(arr);
            json_decref(arr);
            s->events[s->n++] = chunk_text(raw, chat, model_json, arr_s, unull);
            free(arr_s);
        }
        if (include_usage) {
            char *usage_s = dump(usage);
            s->events[s->n++] = chunk_text(raw, chat, model_json, raw ? "[ ]" : "[]", usage_s);
            free(usage_s);
        }
        s->events[s->n++] = strdup(raw ? "data:[DONE]\n\n" : "data: [DONE]\n\n");
        rc = reply_stream(conn, s, "text/event-stream");
    }
    free(model_json);
    json_decref(usage);
    json_decref(words);
    return rc;
}

static enum MHD_Result embeddings(struct MHD_Connection *conn, const json_t *body) {
    const json_t *input = json_object_get(body, "input");
    json_t *inputs = json_is_array(input) ? json_incref((json_t *)input) : json_pack("[O]", input ? input : json_null());
    json_t *data = json_array();
    size_t i, chars = 0;
    json_t *in;
    json_array_foreach(inputs, i, in) {
        size_t len = json_string_length(in);
        chars += len;
        json_t *vec = json_array();
        for (int j = 0; j < 8; j++) json_array_append_new(vec, json_real((double)((i * 31 + j * 7 + len) % 100) / 100));
        json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", (int)i, "embedding", vec));
    }
    json_decref(inputs);
    const char *model = json_string_value(json_object_get(body, "model"));
    return reply_json(conn, 200,
                      json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model",
                                model ? model : "unknown", "usage", "prompt_tokens", (int)(chars / 4), "total_tokens",
                                (int)(chars / 4)));
}

/* ------------------------------------------------------------ dispatch */

typedef struct req_ctx {
    srv_buf body;
} req_ctx;

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    json_object_set_new(cls, key, json_string(value));
    return MHD_YES;
}

static json_t *next_step(void) {
    pthread_mutex_lock(&g_mu);
    json_t *step = g_always ? json_incref(g_always) : NULL;
    if (!step && json_array_size(g_steps)) {
        step = json_incref(json_array_get(g_steps, 0));
        json_array_remove(g_steps, 0);
    }
    pthread_mutex_unlock(&g_mu);
    return step ? step : json_object();
}

static enum MHD_Result mock_control(struct MHD_Connection *conn, const char *url, const char *method, json_t *body) {
    if (strcmp(url, "/mock/faults") == 0 && strcmp(method, "DELETE") == 0) {
        pthread_mutex_lock(&g_mu);
        json_array_clear(g_steps);
        json_decref(g_always);
        g_always = NULL;
        pthread_mutex_unlock(&g_mu);
        return reply(conn, 200, "application/json", "{\"ok\":true}", NULL);
    }
    if (strcmp(url, "/mock/faults") == 0 && strcmp(method, "POST") == 0) {
        pthread_mutex_lock(&g_mu);
        int ok = 1;
        if (json_is_array(body)) json_array_extend(g_steps, body);
        else if (json_is_object(json_object_get(body, "always"))) {
            json_decref(g_always);
            g_always = json_incref(json_object_get(body, "always"));
        } else ok = 0;
        pthread_mutex_unlock(&g_mu);
        return ok ? reply(conn, 200, "application/json", "{\"ok\":true}", NULL)
                  : reply(conn, 400, "application/json", "{\"error\":\"want [steps] or {always: step}\"}", NULL);
    }
    if (strcmp(url, "/mock/stats") == 0) {
        pthread_mutex_lock(&g_mu);
        char *s = json_dumps(g_stats, JSON_COMPACT);
        pthread_mutex_unlock(&g_mu);
        enum MHD_Result rc = reply(conn, 200, "application/json", s, NULL);
        free(s);
        return rc;
    }
    if (strcmp(url, "/mock/blob") == 0) {
        const char *kb = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "kb");
        stream *s = calloc(1, sizeof *s);
        s->blob = (size_t)(kb ? atol(kb) : 1) * 1024;
        return reply_stream(conn, s, "application/octet-stream");
    }
    return reply(conn, 404, "application/json", "{\"error\":\"no such mock endpoint\"}", NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **con_cls) {
    (void)cls;
    (void)version;
    req_ctx *rq = *con_cls;
    if (!rq) {
        *con_cls = calloc(1, sizeof *rq);
        return MHD_YES;
    }
    if (*size) {
        buf_append(&rq->body, data, *size);
        *size = 0;
        return MHD_YES;
    }
    json_t *body = rq->body.len ? json_loadb(rq->body.data, rq->body.len, 0, NULL) : NULL;
    enum MHD_Result rc;
    if (strncmp(url, "/mock/", 6) == 0) {
        rc = mock_control(conn, url, method, body);
        json_decref(body);
        return rc;
    }
    json_t *headers = json_object();
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header, headers);
    pthread_mutex_lock(&g_mu);
    json_object_set_new(g_stats, "requests", json_integer(json_integer_value(json_object_get(g_stats, "requests")) + 1));
    json_t *by_path = json_object_get(g_stats, "by_path");
    json_object_set_new(by_path, url, json_integer(json_integer_value(json_object_get(by_path, url)) + 1));
    json_object_set_new(g_stats, "last_headers", headers);
    json_object_set(g_stats, "last_body", body ? body : json_null());
    pthread_mutex_unlock(&g_mu);

    json_t *step = next_step();
    long delay = step_int(step, "delay_ms", 0);
    if (delay > 0) sleep_ms(delay);
    if (json_is_true(json_object_get(step, "hang"))) sleep_ms(step_int(step, "hang_ms", 60000));
    long status = step_int(step, "status", 200);
    if (status != 200) rc = reply_fault(conn, step);
    else if (strcmp(url, "/v1/chat/completions") == 0 && strcmp(method, "POST") == 0)
        rc = completions(conn, body, 1, step);
    else if (strcmp(url, "/v1/completions") == 0 && strcmp(method, "POST") == 0)
        rc = completions(conn, body, 0, step);
    else if (strcmp(url, "/v1/embeddings") == 0 && strcmp(method, "POST") == 0)
        rc = embeddings(conn, body);
    else if (strcmp(url, "/v1/models") == 0 && strcmp(method, "GET") == 0)
        rc = reply_json(conn, 200,
                        json_pack("{s:s,s:[{s:s,s:s,s:i,s:s}]}", "object", "list", "data", "id", "mock-model", "object",
                                  "model", "created", 1700000000, "owned_by", g_name));
    else
        rc = reply(conn, 404, "application/json",
                   "{\"error\":{\"message\":\"unknown path\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}",
                   NULL);
    json_decref(step);
    json_decref(body);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    req_ctx *rq = *con_cls;
    if (!rq) return;
    buf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)cls;
    (void)conn;
    (void)socket_context;
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    pthread_mutex_lock(&g_mu);
    json_object_set_new(g_stats, "connections",
                        json_integer(json_integer_value(json_object_get(g_stats, "connections")) + 1));
    pthread_mutex_unlock(&g_mu);
}

int main(int argc, char **argv) {
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) g_name = argv[++i];
        else if (strcmp(argv[i], "--raw-stream") == 0) g_raw_default = 1;
        else {
            fprintf(stderr, "usage: mock_upstream [--port N] [--name NAME] [--raw-stream]\n");
            return 2;
        }
    }
    g_steps = json_array();
    g_stats = json_pack("{s:i,s:i,s:{},s:{},s:n}", "requests", 0, "connections", 0, "by_path", "last_headers",
                        "last_body");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0, NULL, NULL, on_request,
        NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mock_upstream: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on %d\n", di ? di->port : port);
    fflush(stdout);
    for (;;) pause();
}
