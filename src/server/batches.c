/* server/batches.c — the Batch API's worker (see batches.h).
 *
 * One thread drives every unfinished batch with one libcurl multi handle
 * (its connection cache keeps the loopback connections alive).  The
 * runner's mutex guards the list of batches, their objects and their cancel
 * flags; the worker holds it except while it polls curl and while it reads
 * an input file to validate it, so GET and cancel see fresh objects and are
 * never held up by a slow request. */
#include "server/batches.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/log.h"
#include "hub/sha256.h"
#include "server/buf.h"
#include "server/internal_auth.h"
#include "server/server_impl.h"

#define MAX_ANSWERED_TRIES 6     /* sends of a line answered 429/502/503/504 before it counts as failed */
#define MAX_BACKOFF_S 60.0
#define MAX_REPORTED_ERRORS 1000 /* validation errors listed in the object (the rest are only counted) */
#define SAVE_EVERY_S 1.0         /* progress is written to the store at most this often */
#define IDLE_POLL_MS 1000        /* the expiry check's period */
#define WAIT_POLL_MS 100         /* while a line waits for its model or a retry */

static const char *const endpoints[] = {"/v1/chat/completions", "/v1/embeddings", "/v1/completions"};

int batch_endpoint_known(const char *endpoint) {
    for (size_t i = 0; endpoint && i < sizeof endpoints / sizeof endpoints[0]; i++)
        if (strcmp(endpoint, endpoints[i]) == 0) return 1;
    return 0;
}

const char *batch_endpoints_text(void) { return "/v1/chat/completions, /v1/embeddings, /v1/completions"; }

/* ------------------------------------------------------------ state */

typedef struct live_batch live_batch;

/* One line on its way: read from the input, maybe sent, not yet written. */
typedef struct batch_call {
    live_batch *b;
    char *payload; /* the line's body as JSON text; NULL: the slot is free */
    char *custom_id;
    const char *url;     /* one of endpoints[] */
    bs_scheduler *sched; /* the local model's scheduler; NULL when the gateway serves the model */
    int n_seq;           /* sequences it runs there (body.n) */
    CURL *easy;          /* while sent */
    struct curl_slist *headers;
    srv_buf resp;
    char request_id[96];
    double retry_after; /* what the answer asked for, seconds; < 0: nothing */
    int tries;          /* answered sends */
    double send_at;     /* not before (backoff) */
} batch_call;

struct live_batch {
    char id[64];
    char *owner;      /* the tenant: who sees the batch and its files */
    char key_id[64];  /* the API key that made it ("" when open): its lines act as that key */
    int64_t created_at;
    char *dir, *out_path, *err_path;
    json_t *obj;  /* the Batch object */
    int cancel;   /* a cancel was asked */
    char *fatal;  /* why the batch cannot go on (I/O); NULL */
    FILE *in;     /* the input, after the lines handed out */
    char *line;
    size_t line_cap;
    json_t *done; /* custom_ids a previous process finished (a set) */
    int out_fd, err_fd;
    long completed, failed;
    json_int_t in_tokens, out_tokens, total_tokens;
    int eof, finished;
    double saved_at;
    batch_call calls[BATCH_CONCURRENCY];
    live_batch *next;
};

struct batch_runner {
    basalt_server *s;
    pthread_mutex_t mu;
    pthread_t thread;
    int have_thread, stop;
    CURLM *multi;
    live_batch *head;
};

static const char *status_of(const live_batch *b) { return json_string_value(json_object_get(b->obj, "status")); }
static int status_is(const live_batch *b, const char *st) { return strcmp(status_of(b), st) == 0; }

/* status and its "<status>_at" stamp. */
static void set_status(live_batch *b, const char *status) {
    char key[32];
    snprintf(key, sizeof key, "%s_at", status);
    json_object_set_new(b->obj, "status", json_string(status));
    json_object_set_new(b->obj, key, json_integer(unix_now()));
}

static void put_counts(live_batch *b) {
    json_t *rc = json_object_get(b->obj, "request_counts");
    json_object_set_new(rc, "completed", json_integer(b->completed));
    json_object_set_new(rc, "failed", json_integer(b->failed));
    json_object_set_new(b->obj, "usage",
                        json_pack("{s:I,s:{s:i},s:I,s:{s:i},s:I}", "input_tokens", b->in_tokens,
                                  "input_tokens_details", "cached_tokens", 0, "output_tokens", b->out_tokens,
                                  "output_tokens_details", "reasoning_tokens", 0, "total_tokens", b->total_tokens));
}

static void save(batch_runner *br, live_batch *b) {
    char *text = json_dumps(b->obj, JSON_COMPACT);
    store_doc d = {.kind = "batch", .id = b->id, .owner = b->owner, .created_at = b->created_at,
                   .updated_at = unix_now(), .body = text};
    bs_error err = {0};
    if (!text || store_doc_update(br->s->store, &d, -1, &err) != BS_OK)
        bs_log_error("batch %s: saving its state: %s", b->id, text ? err.msg : "out of memory");
    free(text);
    b->saved_at = bs_now();
}

static void set_fatal(live_batch *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fatal(live_batch *b, const char *fmt, ...) {
    if (b->fatal) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    b->fatal = strdup(msg);
    if (!b->fatal) b->fatal = strdup("out of memory");
}

/* ------------------------------------------------------------ validation */

/* One entry of the object's errors list; line 0 is null (the whole file). */
static void add_error(json_t *errors, const char *code, long line, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_error(json_t *errors, const char *code, long line, const char *param, const char *fmt, ...) {
    if (json_array_size(errors) >= MAX_REPORTED_ERRORS) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(errors, json_pack("{s:s,s:s,s:s?,s:o}", "code", code, "message", msg, "param", param,
                                            "line", line > 0 ? json_integer(line) : json_null()));
}

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

/* The first problem of input line no (a parsed JSON value or NULL), if any. */
static void check_line(const json_t *j, long no, json_t *seen, char **model, json_t *errors) {
    if (!json_is_object(j)) {
        add_error(errors, "invalid_json_line", no, NULL, "line %ld is not a JSON object", no);
        return;
    }
    const char *cid = json_string_value(json_object_get(j, "custom_id"));
    const char *method = json_string_value(json_object_get(j, "method"));
    const char *url = json_string_value(json_object_get(j, "url"));
    const json_t *body = json_object_get(j, "body");
    const json_t *first = cid ? json_object_get(seen, cid) : NULL;
    const json_t *stream = json_object_get(body, "stream");
    const char *m = json_string_value(json_object_get(body, "model"));
    if (!cid || !*cid)
        add_error(errors, "missing_required_parameter", no, "custom_id", "custom_id: required non-empty string");
    else if (first)
        add_error(errors, "duplicate_custom_id", no, "custom_id",
                  "custom_id: \"%s\" is used more than once in the file (first on line %lld)", cid,
                  (long long)json_integer_value(first));
    else if (!method || strcmp(method, "POST") != 0)
        add_error(errors, "invalid_method", no, "method", "method: expected \"POST\", got %s%s%s",
                  method ? "\"" : "", method ? method : "nothing", method ? "\"" : "");
    else if (!url)
        add_error(errors, "missing_required_parameter", no, "url", "url: required string (one of %s)",
                  batch_endpoints_text());
    else if (!batch_endpoint_known(url))
        add_error(errors, "invalid_url", no, "url", "url: \"%s\" is not an endpoint batches can call (%s)", url,
                  batch_endpoints_text());
    else if (!json_is_object(body))
        add_error(errors, "invalid_request", no, "body", "body: required object (the request to %s)", url);
    else if (!m || !*m)
        add_error(errors, "missing_required_parameter", no, "body.model", "body.model: required non-empty string");
    else if (json_is_true(stream))
        add_error(errors, "invalid_request", no, "body.stream", "body.stream: batch requests cannot stream");
    if (cid && *cid && !first) json_object_set_new(seen, cid, json_integer(no));
    if (json_is_object(body) && m && *m && !*model) *model = strdup(m);
}

/* Every line of the input at path checked, as OpenAI does before a batch
 * starts (a line may call any of endpoints[], not only the batch's
 * endpoint, so one file can mix chat and embeddings): errors gets an entry per bad line; *total counts
 * the requests (non-blank lines), *model is the first line's body.model. */
static bs_status validate_input(const char *path, long *total, char **model, json_t *errors, bs_error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return bs_fail(err, BS_EIO, "input_file_id: cannot read the file's bytes: %s", strerror(errno));
    json_t *seen = json_object();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0;
    *total = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        no++;
        if (blank(line)) continue;
        (*total)++;
        json_t *j = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, NULL);
        check_line(j, no, seen, model, errors);
        json_decref(j);
    }
    bs_status st = ferror(f) ? bs_fail(err, BS_EIO, "input_file_id: reading the file: %s", strerror(errno)) : BS_OK;
    free(line);
    fclose(f);
    json_decref(seen);
    if (st == BS_OK && *total == 0)
        add_error(errors, "empty_file", 0, "input_file_id", "input_file_id: the file holds no requests");
    if (st == BS_OK && *total > BATCH_MAX_REQUESTS)
        add_error(errors, "too_many_requests", 0, "input_file_id",
                  "input_file_id: %ld requests; a batch takes at most %d", *total, BATCH_MAX_REQUESTS);
    return st;
}

/* ------------------------------------------------------------ part files */

static void add_usage(live_batch *b, const json_t *body) {
    const json_t *u = json_object_get(body, "usage");
    json_int_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_int_t c = json_integer_value(json_object_get(u, "completion_tokens"));
    const json_t *t = json_object_get(u, "total_tokens");
    b->in_tokens += p;
    b->out_tokens += c;
    b->total_tokens += json_is_integer(t) ? json_integer_value(t) : p + c;
}

/* Read back a part a previous process wrote: its custom_ids are done, its
 * lines counted; a last line cut short by a crash is dropped (and redone). */
static bs_status scan_part(live_batch *b, int fd, const char *path, int output, bs_error *err) {
    char *data;
    size_t size;
    if (bs_file_read(path, &data, &size, err) != BS_OK) return err->status;
    size_t whole = size;
    while (whole > 0 && data[whole - 1] != '\n') whole--;
    if (whole < size && ftruncate(fd, (off_t)whole) != 0) {
        free(data);
        return bs_fail(err, BS_EIO, "%s: %s", path, strerror(errno));
    }
    for (char *p = data, *end = data + whole; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        json_t *j = json_loadb(p, (size_t)(nl - p), JSON_ALLOW_NUL, NULL);
        const char *cid = json_string_value(json_object_get(j, "custom_id"));
        if (cid) {
            json_object_set_new(b->done, cid, json_true());
            if (output) {
                b->completed++;
                add_usage(b, json_object_get(json_object_get(j, "response"), "body"));
            } else {
                b->failed++;
            }
        }
        json_decref(j);
        p = nl + 1;
    }
    free(data);
    return BS_OK;
}

/* Open DATA/batches/<id>/{output,errors}.part: new (truncated) for a batch
 * that starts, read back for one that resumes. */
static bs_status open_parts(live_batch *b, int resume, bs_error *err) {
    char *parent = strdup(b->dir), *slash = parent ? strrchr(parent, '/') : NULL;
    if (slash) *slash = '\0'; /* DATA/batches */
    int ok = slash && (mkdir(parent, 0700) == 0 || errno == EEXIST) && (mkdir(b->dir, 0700) == 0 || errno == EEXIST);
    free(parent);
    if (!ok) return bs_fail(err, BS_EIO, "%s: %s", b->dir, strerror(errno));
    int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (resume ? 0 : O_TRUNC);
    b->out_fd = open(b->out_path, flags, 0600);
    b->err_fd = open(b->err_path, flags, 0600);
    if (b->out_fd < 0 || b->err_fd < 0) return bs_fail(err, BS_EIO, "%s: %s", b->dir, strerror(errno));
    b->completed = b->failed = 0;
    b->in_tokens = b->out_tokens = b->total_tokens = 0;
    if (resume && (scan_part(b, b->out_fd, b->out_path, 1, err) != BS_OK ||
                   scan_part(b, b->err_fd, b->err_path, 0, err) != BS_OK))
        return err->status;
    put_counts(b);
    return BS_OK;
}

static void close_parts(live_batch *b) {
    if (b->out_fd >= 0) close(b->out_fd);
    if (b->err_fd >= 0) close(b->err_fd);
    b->out_fd = b->err_fd = -1;
}

/* Append one result line with one write, so a crash leaves at most a cut
 * last line (scan_part drops it). */
static void write_result(live_batch *b, const char *custom_id, json_t *response, json_t *error, int ok) {
    char id[64];
    random_id("batch_req_", id, sizeof id);
    json_t *line = json_pack("{s:s,s:s,s:o,s:o}", "id", id, "custom_id", custom_id, "response",
                             response ? response : json_null(), "error", error ? error : json_null());
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (!text) {
        set_fatal(b, "out of memory writing the result of %s", custom_id);
        return;
    }
    size_t n = strlen(text);
    text[n++] = '\n'; /* over the NUL: json_dumps output is written by length */
    int fd = ok ? b->out_fd : b->err_fd;
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            set_fatal(b, "writing %s: %s", ok ? b->out_path : b->err_path, strerror(errno));
            break;
        }
        done += (size_t)w;
    }
    free(text);
    if (ok) b->completed++;
    else b->failed++;
    put_counts(b);
}

/* ------------------------------------------------------------ lines */

static void call_clear(batch_call *c) {
    free(c->payload);
    free(c->custom_id);
    buf_free(&c->resp);
    live_batch *b = c->b;
    *c = (batch_call){.b = b};
}

/* Drop what is in flight: abandoned transfers are sent again after a
 * restart, or never after a cancel. */
static void abandon(batch_runner *br, live_batch *b) {
    for (int i = 0; i < BATCH_CONCURRENCY; i++) {
        batch_call *c = &b->calls[i];
        if (c->easy) {
            curl_multi_remove_handle(br->multi, c->easy);
            curl_easy_cleanup(c->easy);
            curl_slist_free_all(c->headers);
        }
        call_clear(c);
    }
}

static int open_input(batch_runner *br, live_batch *b) {
    store_file f;
    bs_error err = {0};
    const char *fid = json_string_value(json_object_get(b->obj, "input_file_id"));
    if (store_file_get(br->s->store, fid, &f, &err) != BS_OK) {
        set_fatal(b, "input_file_id: %s", err.msg);
        return 0;
    }
    b->in = fopen(f.path, "r");
    if (!b->in) set_fatal(b, "input_file_id: cannot read %s: %s", fid, strerror(errno));
    store_file_clear(&f);
    return b->in != NULL;
}

/* The next line of the input not done yet into c; 0 at the end. */
static int next_line(batch_runner *br, live_batch *b, batch_call *c) {
    ssize_t len;
    while ((len = getline(&b->line, &b->line_cap, b->in)) >= 0) {
        if (blank(b->line)) continue;
        json_t *j = json_loadb(b->line, (size_t)len, JSON_ALLOW_NUL, NULL);
        const char *cid = json_string_value(json_object_get(j, "custom_id"));
        json_t *body = json_object_get(j, "body");
        if (!cid || !json_is_object(body) || !batch_endpoint_known(json_string_value(json_object_get(j, "url")))) {
            /* validated, so the file changed under us */
            set_fatal(b, "input_file_id: the file no longer holds the lines it was validated with");
            json_decref(j);
            return 0;
        }
        if (json_object_get(b->done, cid)) {
            json_decref(j);
            continue;
        }
        json_int_t n = json_integer_value(json_object_get(body, "n"));
        const char *url = json_string_value(json_object_get(j, "url"));
        for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++)
            if (url && strcmp(url, endpoints[i]) == 0) c->url = endpoints[i];
        c->payload = json_dumps(body, JSON_COMPACT);
        c->custom_id = strdup(cid);
        c->sched = server_model_scheduler(br->s, json_string_value(json_object_get(body, "model")));
        c->n_seq = n > 1 ? (int)n : 1;
        json_decref(j);
        if (!c->payload || !c->custom_id) {
            set_fatal(b, "out of memory");
            call_clear(c);
            return 0;
        }
        return 1;
    }
    if (ferror(b->in)) set_fatal(b, "input_file_id: reading the file: %s", strerror(errno));
    return 0;
}

/* Interactive traffic first: a local model takes batch work only while its
 * scheduler queues nothing and runs nothing besides the batches' own lines. */
static int model_free(batch_runner *br, bs_scheduler *sched) {
    bs_scheduler_stats st;
    scheduler_stats(sched, &st);
    int own = 0;
    for (live_batch *b = br->head; b; b = b->next)
        for (int i = 0; i < BATCH_CONCURRENCY; i++)
            if (b->calls[i].easy && b->calls[i].sched == sched) own += b->calls[i].n_seq;
    return st.queued == 0 && st.running <= own;
}

static size_t on_body(char *data, size_t size, size_t n, void *user) {
    batch_call *c = user;
    buf_append(&c->resp, data, size * n);
    return c->resp.oom ? 0 : size * n;
}

/* Keeps x-request-id (the line's request_id) and Retry-After. */
static size_t on_header(char *data, size_t size, size_t n, void *user) {
    batch_call *c = user;
    size_t len = size * n;
    const char *colon = memchr(data, ':', len);
    if (!colon) return len;
    size_t name = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    if (name == 12 && strncasecmp(data, "x-request-id", name) == 0)
        snprintf(c->request_id, sizeof c->request_id, "%.*s", (int)(end - v), v);
    else if (name == 11 && strncasecmp(data, "retry-after", name) == 0)
        c->retry_after = strtod(v, NULL);
    return len;
}

static int send_call(batch_runner *br, live_batch *b, batch_call *c) {
    char url[256], token[128], key[192];
    snprintf(url, sizeof url, "%s%s", server_url(br->s), c->url);
    snprintf(token, sizeof token, "%s: %s", INTERNAL_TOKEN_HEADER, internal_auth_token());
    /* The key, not the tenant: limits, budgets and usage are per key, and
     * keys sharing an owner are still separate keys.  "Name;" is how curl
     * sends a header with an empty value (open mode). */
    if (*b->key_id) snprintf(key, sizeof key, "%s: %s", INTERNAL_TENANT_HEADER, b->key_id);
    else snprintf(key, sizeof key, "%s;", INTERNAL_TENANT_HEADER);
    const char *lines[] = {"Content-Type: application/json", "Expect:", token, key,
                           INTERNAL_KIND_HEADER ": batch"};
    struct curl_slist *h = NULL;
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        struct curl_slist *next = curl_slist_append(h, lines[i]);
        if (!next) break;
        h = next;
    }
    CURL *e = curl_easy_init();
    if (!e || !h) {
        curl_easy_cleanup(e);
        curl_slist_free_all(h);
        set_fatal(b, "out of memory");
        return 0;
    }
    buf_free(&c->resp);
    c->resp = (srv_buf){0};
    c->request_id[0] = '\0';
    c->retry_after = -1;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->payload);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(c->payload));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    if (curl_multi_add_handle(br->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(h);
        set_fatal(b, "cannot start a request");
        return 0;
    }
    c->easy = e;
    c->headers = h;
    return 1;
}

/* A transfer ended: write the line's result, or send it again later. */
static void call_done(batch_runner *br, batch_call *c, CURLcode rc) {
    live_batch *b = c->b;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(br->multi, c->easy);
    curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    c->easy = NULL;
    c->headers = NULL;
    /* No answer at all means this server is stopping or restarting: the
     * line is not at fault, so it waits without counting a try. */
    int answered = rc == CURLE_OK && status > 0;
    int transient = !answered || status == 429 || status == 502 || status == 503 || status == 504;
    if (transient && (!answered || ++c->tries < MAX_ANSWERED_TRIES)) {
        double wait = c->retry_after >= 0 ? c->retry_after : (double)(1 << (c->tries < 6 ? c->tries : 6));
        c->send_at = bs_now() + (wait < MAX_BACKOFF_S ? wait : MAX_BACKOFF_S);
        if (!answered) bs_log_warn("batch %s: %s: no answer (%s); sending it again", b->id, c->custom_id,
                                   curl_easy_strerror(rc));
        return;
    }
    json_t *body = c->resp.len ? json_loadb(c->resp.data, c->resp.len, JSON_ALLOW_NUL, NULL) : NULL;
    int ok = status >= 200 && status < 300 && json_is_object(body);
    if (ok) add_usage(b, body);
    json_t *error = NULL;
    if (!ok) {
        const json_t *e = json_object_get(body, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        char fallback[32];
        snprintf(fallback, sizeof fallback, "http_%ld", status);
        error = json_pack("{s:s,s:s}", "code", code ? code : fallback, "message",
                          msg ? msg : status >= 200 && status < 300 ? "the response is not a JSON object"
                                                                    : "the request failed");
    }
    json_t *response = json_pack("{s:i,s:s,s:o}", "status_code", (int)status, "request_id", c->request_id, "body",
                                 body ? body : json_stringn(c->resp.data ? c->resp.data : "", c->resp.len));
    write_result(b, c->custom_id, response, error, ok);
    call_clear(c);
    if (bs_now() - b->saved_at >= SAVE_EVERY_S) save(br, b);
}

/* ------------------------------------------------------------ life cycle */

/* Turn a non-empty part into a file of purpose batch_output named in the
 * object's field.  The part is hard-linked, recorded, then the object
 * saved: a crash in between leaves at most an unreferenced copy, never a
 * lost result. */
static bs_status publish(batch_runner *br, live_batch *b, const char *path, const char *field, const char *kind,
                         bs_error *err) {
    struct stat sb;
    if (json_is_string(json_object_get(b->obj, field)) || stat(path, &sb) != 0 || sb.st_size == 0) return BS_OK;
    char *data;
    size_t size;
    if (bs_file_read(path, &data, &size, err) != BS_OK) return err->status;
    sha256_ctx sha;
    char hex[SHA256_HEX_LEN + 1], id[48], name[128];
    sha256_init(&sha);
    sha256_update(&sha, data, size);
    sha256_final_hex(&sha, hex);
    free(data);
    random_id("file-", id, sizeof id);
    snprintf(name, sizeof name, "%s_%s.jsonl", b->id, kind);
    char *dst = bs_path_join(store_files_dir(br->s->store), id);
    if (!dst) return bs_fail(err, BS_ENOMEM, "out of memory");
    if (link(path, dst) != 0) {
        bs_fail(err, BS_EIO, "%s: %s", dst, strerror(errno));
        free(dst);
        return err->status;
    }
    store_file f = {.id = id, .owner = b->owner, .filename = name, .purpose = "batch_output", .bytes = (int64_t)size,
                    .created_at = unix_now(), .sha256 = hex, .path = dst, .status = STORE_FILE_PROCESSED};
    if (store_file_insert(br->s->store, &f, err) != BS_OK) unlink(dst);
    free(dst);
    if (err->status != BS_OK) return err->status;
    json_object_set_new(b->obj, field, json_string(id));
    save(br, b);
    return BS_OK;
}

static void set_errors(live_batch *b, json_t *data) {
    json_object_set_new(b->obj, "errors", json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/* End b in status final (completed, cancelled, expired, failed): files
 * published from what the parts hold, the object saved, the parts removed. */
static void finish(batch_runner *br, live_batch *b, const char *final) {
    abandon(br, b);
    close_parts(b);
    if (strcmp(final, "completed") == 0 && !status_is(b, "finalizing")) {
        set_status(b, "finalizing");
        save(br, b);
    }
    bs_error err = {0};
    if (publish(br, b, b->out_path, "output_file_id", "output", &err) != BS_OK ||
        publish(br, b, b->err_path, "error_file_id", "error", &err) != BS_OK) {
        bs_log_error("batch %s: publishing its results: %s", b->id, err.msg);
        set_fatal(b, "publishing the results: %s", err.msg);
    }
    if (b->fatal) {
        json_t *data = json_array();
        add_error(data, "internal_error", 0, NULL, "%s", b->fatal);
        set_errors(b, data);
        final = "failed";
    }
    put_counts(b);
    set_status(b, final);
    save(br, b);
    if (bs_remove_tree(b->dir, &err) != BS_OK) bs_log_warn("batch %s: %s", b->id, err.msg);
    b->finished = 1;
    bs_log_info("batch %s: %s (%ld completed, %ld failed)", b->id, final, b->completed, b->failed);
}

/* The 24 h window passed: what did not run fails with batch_expired, as
 * OpenAI reports it. */
static void expire(batch_runner *br, live_batch *b) {
    if (!b->in) open_input(br, b);
    for (int i = 0; i < BATCH_CONCURRENCY; i++) {
        batch_call *c = &b->calls[i];
        if (c->easy) {
            curl_multi_remove_handle(br->multi, c->easy);
            curl_easy_cleanup(c->easy);
            curl_slist_free_all(c->headers);
            c->easy = NULL;
        }
    }
    batch_call rest = {.b = b};
    for (int i = 0; !b->fatal; i++) {
        batch_call *c = i < BATCH_CONCURRENCY ? &b->calls[i] : &rest;
        if (c == &rest && (!b->in || !next_line(br, b, c))) break;
        if (!c->payload) continue;
        write_result(b, c->custom_id, NULL,
                     json_pack("{s:s,s:s}", "code", "batch_expired", "message",
                               "This request could not be executed before the completion window expired."),
                     0);
        call_clear(c);
    }
    finish(br, b, "expired");
}

/* Validation reads the whole input, so it runs without the mutex (only the
 * worker touches b's fields besides obj and cancel). */
static void validate(batch_runner *br, live_batch *b) {
    char *fid = strdup(json_string_value(json_object_get(b->obj, "input_file_id")));
    pthread_mutex_unlock(&br->mu);
    json_t *errors = json_array();
    char *model = NULL;
    long total = 0;
    store_file f = {0};
    bs_error err = {0};
    bs_status st = fid && errors ? BS_OK : bs_fail(&err, BS_ENOMEM, "out of memory");
    if (st == BS_OK) st = store_file_get(br->s->store, fid, &f, &err);
    if (st == BS_OK) st = validate_input(f.path, &total, &model, errors, &err);
    store_file_clear(&f);
    pthread_mutex_lock(&br->mu);
    if (st != BS_OK) add_error(errors, st == BS_ENOTFOUND ? "invalid_file" : "internal_error", 0, "input_file_id",
                               "input_file_id: %s", err.msg);
    json_object_set_new(b->obj, "model", model ? json_string(model) : json_null());
    json_object_set_new(json_object_get(b->obj, "request_counts"), "total", json_integer(total));
    if (b->cancel) {
        json_decref(errors);
        finish(br, b, "cancelled");
    } else if (json_array_size(errors) > 0) {
        set_errors(b, errors);
        finish(br, b, "failed");
    } else {
        json_decref(errors);
        if (open_parts(b, 0, &err) != BS_OK) set_fatal(b, "%s", err.msg);
        set_status(b, "in_progress");
        put_counts(b);
        save(br, b);
    }
    free(model);
    free(fid);
}

/* Feed an in-progress batch: fill free slots from the input, send what may
 * go; *waiting when a line waits for its model or a retry. */
static void run(batch_runner *br, live_batch *b, int *waiting) {
    if (!b->in && !open_input(br, b)) return;
    double now = bs_now();
    int pending = 0;
    for (int i = 0; i < BATCH_CONCURRENCY && !b->fatal; i++) {
        batch_call *c = &b->calls[i];
        if (!c->payload && !b->eof && !next_line(br, b, c)) b->eof = 1;
        if (!c->payload) continue;
        pending = 1;
        if (c->easy) continue;
        if (c->send_at > now || (c->sched && !model_free(br, c->sched))) *waiting = 1;
        else send_call(br, b, c);
    }
    if (!pending && b->eof && !b->fatal) finish(br, b, "completed");
}

static void step(batch_runner *br, live_batch *b, int *waiting) {
    json_int_t expires = json_integer_value(json_object_get(b->obj, "expires_at"));
    if (b->fatal) finish(br, b, "failed");
    else if (status_is(b, "validating") && !b->cancel) validate(br, b);
    else if (b->cancel || status_is(b, "cancelling")) finish(br, b, "cancelled");
    else if (status_is(b, "finalizing")) finish(br, b, "completed");
    else if (unix_now() >= expires) expire(br, b);
    else run(br, b, waiting);
}

static void live_free(batch_runner *br, live_batch *b) {
    abandon(br, b);
    close_parts(b);
    if (b->in) fclose(b->in);
    free(b->line);
    free(b->owner);
    free(b->dir);
    free(b->out_path);
    free(b->err_path);
    free(b->fatal);
    json_decref(b->obj);
    json_decref(b->done);
    free(b);
}

static void *worker(void *arg) {
    batch_runner *br = arg;
    pthread_mutex_lock(&br->mu);
    while (!br->stop) {
        int waiting = 0;
        for (live_batch *b = br->head; b && !br->stop; b = b->next)
            if (!b->finished) step(br, b, &waiting);
        for (live_batch **pp = &br->head; *pp;) {
            live_batch *b = *pp;
            if (b->finished) {
                *pp = b->next;
                live_free(br, b);
            } else {
                pp = &b->next;
            }
        }
        pthread_mutex_unlock(&br->mu);
        int running;
        curl_multi_poll(br->multi, NULL, 0, waiting ? WAIT_POLL_MS : IDLE_POLL_MS, NULL);
        curl_multi_perform(br->multi, &running);
        pthread_mutex_lock(&br->mu);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(br->multi, &left))) {
            batch_call *c = NULL;
            if (m->msg != CURLMSG_DONE) continue;
            CURLcode rc = m->data.result;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            call_done(br, c, rc);
        }
    }
    /* Stopping: progress saved, in-flight lines left for the next start. */
    for (live_batch *b = br->head; b; b = b->next) {
        abandon(br, b);
        if (!b->finished && !status_is(b, "validating")) save(br, b);
    }
    pthread_mutex_unlock(&br->mu);
    return NULL;
}

static live_batch *live_new(batch_runner *br, const char *id, const char *owner, const char *key_id,
                            int64_t created_at, json_t *obj) {
    live_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    snprintf(b->id, sizeof b->id, "%s", id);
    snprintf(b->key_id, sizeof b->key_id, "%s", key_id);
    b->created_at = created_at;
    b->owner = strdup(owner ? owner : "");
    b->done = json_object();
    b->out_fd = b->err_fd = -1;
    char *root = bs_path_join(br->s->data_dir, "batches");
    b->dir = root ? bs_path_join(root, id) : NULL;
    free(root);
    b->out_path = b->dir ? bs_path_join(b->dir, "output.part") : NULL;
    b->err_path = b->dir ? bs_path_join(b->dir, "errors.part") : NULL;
    for (int i = 0; i < BATCH_CONCURRENCY; i++) b->calls[i].b = b;
    b->obj = obj;
    if (!b->owner || !b->done || !b->out_path || !b->err_path) {
        b->obj = NULL;
        live_free(br, b);
        return NULL;
    }
    return b;
}

/* The key a batch acts for lives in its own document (kind "batch_key",
 * the batch's id and owner): the Batch object is what clients read, and
 * the key id is no part of OpenAI's object. */
#define KEY_DOC_KIND "batch_key"

static bs_status store_key_id(bs_store *st, const live_batch *b, bs_error *err) {
    json_t *body = json_pack("{s:s}", "key_id", b->key_id);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return bs_fail(err, BS_ENOMEM, "out of memory");
    store_doc d = {.kind = KEY_DOC_KIND, .id = (char *)b->id, .owner = b->owner, .created_at = b->created_at,
                   .updated_at = b->created_at, .body = text};
    bs_status s = store_doc_insert(st, &d, err);
    free(text);
    return s;
}

/* The stored key of batch id into key_id (cap bytes). */
static bs_status load_key_id(bs_store *st, const char *id, char *key_id, size_t cap, bs_error *err) {
    store_doc d = {0};
    if (store_doc_get(st, KEY_DOC_KIND, id, &d, err) != BS_OK) return err->status;
    json_t *body = json_loads(d.body, 0, NULL);
    const char *k = json_string_value(json_object_get(body, "key_id"));
    bs_status s = k ? BS_OK : bs_fail(err, BS_EFORMAT, "batch %s: its key document has no key_id", id);
    if (k) snprintf(key_id, cap, "%s", k);
    json_decref(body);
    store_doc_clear(&d);
    return s;
}

/* Batches a previous process left unfinished: validating ones start over,
 * the rest read their parts back.  One whose key cannot be read fails
 * rather than run its lines as nobody. */
static bs_status load_unfinished(batch_runner *br, bs_error *err) {
    store_page page = {.limit = 0, .ascending = 1};
    store_doc *docs = NULL;
    size_t n = 0;
    int more = 0;
    if (store_doc_list(br->s->store, "batch", &page, &docs, &n, &more, err) != BS_OK) return err->status;
    live_batch **tail = &br->head;
    for (size_t i = 0; i < n; i++) {
        json_t *obj = json_loads(docs[i].body, 0, NULL);
        const char *st = json_string_value(json_object_get(obj, "status"));
        if (!st || !(strcmp(st, "validating") == 0 || strcmp(st, "in_progress") == 0 ||
                     strcmp(st, "finalizing") == 0 || strcmp(st, "cancelling") == 0)) {
            json_decref(obj);
            continue;
        }
        char key_id[64] = "";
        bs_error kerr = {0};
        bs_status kst = load_key_id(br->s->store, docs[i].id, key_id, sizeof key_id, &kerr);
        live_batch *b = live_new(br, docs[i].id, docs[i].owner, key_id, docs[i].created_at, obj);
        if (!b) {
            json_decref(obj);
            store_docs_free(docs, n);
            return bs_fail(err, BS_ENOMEM, "out of memory");
        }
        bs_error perr = {0};
        if (kst != BS_OK) set_fatal(b, "the API key it acts for: %s", kerr.msg);
        else if (strcmp(st, "validating") != 0 && open_parts(b, 1, &perr) != BS_OK) set_fatal(b, "%s", perr.msg);
        bs_log_info("batch %s: resuming (%s, %ld done)", b->id, st, b->completed + b->failed);
        *tail = b;
        tail = &b->next;
    }
    store_docs_free(docs, n);
    return BS_OK;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

bs_status batch_runner_open(basalt_server *s, batch_runner **out, bs_error *err) {
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) return bs_fail(err, BS_EIO, "batches: libcurl: %s", curl_easy_strerror(curl_init_rc));
    batch_runner *br = calloc(1, sizeof *br);
    if (!br) return bs_fail(err, BS_ENOMEM, "out of memory");
    br->s = s;
    pthread_mutex_init(&br->mu, NULL);
    if (!(br->multi = curl_multi_init())) {
        batch_runner_close(br);
        return bs_fail(err, BS_ENOMEM, "batches: cannot make a curl multi handle");
    }
    if (load_unfinished(br, err) != BS_OK) {
        batch_runner_close(br);
        return bs_wrap(err, "batches");
    }
    if (pthread_create(&br->thread, NULL, worker, br) != 0) {
        batch_runner_close(br);
        return bs_fail(err, BS_EIO, "batches: cannot start the worker thread");
    }
    br->have_thread = 1;
    *out = br;
    return BS_OK;
}

void batch_runner_close(batch_runner *br) {
    if (!br) return;
    pthread_mutex_lock(&br->mu);
    br->stop = 1;
    pthread_mutex_unlock(&br->mu);
    if (br->have_thread) {
        curl_multi_wakeup(br->multi);
        pthread_join(br->thread, NULL);
    }
    while (br->head) {
        live_batch *b = br->head;
        br->head = b->next;
        live_free(br, b);
    }
    if (br->multi) curl_multi_cleanup(br->multi);
    pthread_mutex_destroy(&br->mu);
    free(br);
}

bs_status batch_runner_create(batch_runner *br, const char *owner, const char *key_id, const json_t *batch,
                             bs_error *err) {
    const char *id = json_string_value(json_object_get(batch, "id"));
    int64_t created = json_integer_value(json_object_get(batch, "created_at"));
    char *text = json_dumps(batch, JSON_COMPACT);
    json_t *obj = json_deep_copy(batch);
    live_batch *b = obj ? live_new(br, id, owner, key_id, created, obj) : NULL;
    if (!text || !b) {
        free(text);
        if (!b) json_decref(obj);
        else live_free(br, b);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    store_doc d = {.kind = "batch", .id = b->id, .owner = b->owner, .created_at = created, .updated_at = created,
                   .body = text};
    /* The key first: a batch document never exists without it. */
    bs_status st = store_key_id(br->s->store, b, err);
    if (st == BS_OK) st = store_doc_insert(br->s->store, &d, err);
    free(text);
    if (st != BS_OK) {
        live_free(br, b);
        return st;
    }
    pthread_mutex_lock(&br->mu);
    live_batch **tail = &br->head;
    while (*tail) tail = &(*tail)->next;
    *tail = b;
    pthread_mutex_unlock(&br->mu);
    curl_multi_wakeup(br->multi);
    return BS_OK;
}

static live_batch *find(batch_runner *br, const char *id) {
    for (live_batch *b = br->head; b; b = b->next)
        if (!b->finished && strcmp(b->id, id) == 0) return b;
    return NULL;
}

json_t *batch_runner_object(batch_runner *br, const char *id) {
    pthread_mutex_lock(&br->mu);
    live_batch *b = find(br, id);
    json_t *obj = b ? json_deep_copy(b->obj) : NULL;
    pthread_mutex_unlock(&br->mu);
    return obj;
}

bs_status batch_runner_cancel(batch_runner *br, const char *id, json_t **out, bs_error *err) {
    *out = NULL;
    pthread_mutex_lock(&br->mu);
    live_batch *b = find(br, id);
    bs_status st = BS_OK;
    if (!b) {
        st = bs_fail(err, BS_ENOTFOUND, "No such batch in progress: %s", id);
    } else if (status_is(b, "finalizing")) {
        st = bs_fail(err, BS_EINVAL, "batch %s is finalizing and can no longer be cancelled", id);
    } else {
        b->cancel = 1;
        if (!status_is(b, "cancelling")) {
            set_status(b, "cancelling");
            save(br, b);
        }
        if (!(*out = json_deep_copy(b->obj))) st = bs_fail(err, BS_ENOMEM, "out of memory");
    }
    pthread_mutex_unlock(&br->mu);
    if (st == BS_OK) curl_multi_wakeup(br->multi);
    return st;
}
