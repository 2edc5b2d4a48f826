/* server/http.c — libmicrohttpd glue.  Per connection, MHD calls on_request
 * once with the headers, then once per body piece, then once more with an
 * empty piece: that last call runs the handler and queues its response. */
#include "server/http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"

/* basalt's own limits, answered as OpenAI errors; libmicrohttpd's
 * per-connection memory sits above them (request line and headers must fit
 * in it whole), so only requests past that get its HTML 414/431 pages.
 * libmicrohttpd zeroes that whole memory after every request of a
 * keep-alive connection: at 256 KiB the memset was ~5 % of the proxy path's
 * CPU, so it is kept a little above what the limits need. */
#define MAX_URL (8u << 10)      /* the request target: path and query */
#define MAX_HEADERS (32u << 10) /* all header lines together */
#define MHD_CONNECTION_MEMORY ((size_t)64 << 10)

struct http_server {
    struct MHD_Daemon *daemon;
    http_handler handler;
    http_done done;
    void *user;
    size_t max_body;
    http_handler begin;
    int port;
};

typedef struct header_kv {
    char *name, *value;
    struct header_kv *next;
} header_kv;

struct http_request {
    http_server *server;
    struct MHD_Connection *conn;
    char method[16];
    char *path;
    srv_buf body;
    int too_large;
    int over_limit; /* 414 or 431: the body is dropped, the handler not run */
    char id[40];
    double start;
    int status;
    header_kv *headers;
    struct MHD_Response *response;
    void *user_slot;
    /* http_stream_form: the body goes to pp, which calls form_piece */
    struct MHD_PostProcessor *pp;
    http_form_piece form_piece;
    void (*form_release)(void *ctx);
    void *form_ctx;
    http_form_state form_state;
    int form_stopped; /* form_piece asked for the rest to be dropped */
    http_filter filter;
    void (*filter_release)(void *ctx);
    void *filter_ctx;
    http_tap tap;
    void (*tap_release)(void *ctx);
    void *tap_ctx;
};

/* ------------------------------------------------------------ accessors */

const char *http_method(const http_request *r) { return r->method; }
const char *http_path(const http_request *r) { return r->path; }
const char *http_body(const http_request *r) { return r->body.data ? r->body.data : ""; }
size_t http_body_len(const http_request *r) { return r->body.len; }
int http_body_too_large(const http_request *r) { return r->too_large; }
const char *http_request_id(const http_request *r) { return r->id; }
double http_start_time(const http_request *r) { return r->start; }
int http_status(const http_request *r) { return r->status; }
void **http_user_slot(http_request *r) { return &r->user_slot; }

const char *http_header(const http_request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_peer_is_loopback(http_request *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return 0;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

int http_client_gone(http_request *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 1;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 1;
    return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

void http_add_header(http_request *r, const char *name, const char *value) {
    header_kv *h = calloc(1, sizeof *h);
    if (!h) return;
    h->name = strdup(name);
    h->value = strdup(value);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        free(h);
        return;
    }
    h->next = r->headers;
    r->headers = h;
}

/* ------------------------------------------------------------ responses */

void http_set_filter(http_request *r, http_filter filter, void (*release)(void *ctx), void *ctx) {
    if (r->filter_release) r->filter_release(r->filter_ctx);
    r->filter = filter;
    r->filter_release = release;
    r->filter_ctx = ctx;
}

void http_set_tap(http_request *r, http_tap tap, void (*release)(void *ctx), void *ctx) {
    if (r->tap_release) r->tap_release(r->tap_ctx);
    r->tap = tap;
    r->tap_release = release;
    r->tap_ctx = ctx;
}

static void free_headers(http_request *r) {
    for (header_kv *h = r->headers, *next; h; h = next) {
        next = h->next;
        free(h->name);
        free(h->value);
        free(h);
    }
    r->headers = NULL;
}

void http_reset_response(http_request *r) {
    if (r->response) MHD_destroy_response(r->response);
    r->response = NULL;
    r->status = 0;
    free_headers(r);
}

static void set_response(http_request *r, int status, const char *content_type, struct MHD_Response *resp) {
    if (!resp) return; /* out of memory: on_request answers for it */
    if (r->response) MHD_destroy_response(r->response);
    r->response = resp;
    r->status = status;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, "x-request-id", r->id);
    for (header_kv *h = r->headers; h; h = h->next) MHD_add_response_header(resp, h->name, h->value);
}

void http_respond(http_request *r, int status, const char *content_type, const char *body, size_t len) {
    if (r->filter) {
        srv_buf filtered = {0};
        if (r->filter(r->filter_ctx, body, len, 1, &filtered) == 0 && !filtered.oom) {
            if (r->tap) r->tap(r->tap_ctx, content_type, filtered.data ? filtered.data : "", filtered.len);
            set_response(r, status, content_type,
                         MHD_create_response_from_buffer(filtered.len, filtered.data ? filtered.data : (void *)"",
                                                         MHD_RESPMEM_MUST_COPY));
        }
        buf_free(&filtered);
        return;
    }
    if (r->tap) r->tap(r->tap_ctx, content_type, body, len);
    set_response(r, status, content_type,
                 MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY));
}

typedef struct stream_state {
    http_pull pull;
    void (*done)(void *ctx);
    void *ctx;
    srv_buf pending;
    srv_buf raw; /* pulled but not yet filtered (with a filter only) */
    http_request *r;
    int ended;
} stream_state;

/* Pull once; with a filter, the piece goes through it (and the end flushes it). */
static int stream_pull(stream_state *st) {
    http_request *r = st->r;
    if (!r->filter) return st->pull(st->ctx, &st->pending);
    int rc = st->pull(st->ctx, &st->raw);
    if (rc < 0 || st->raw.oom) return -1;
    if (r->filter(r->filter_ctx, st->raw.data, st->raw.len, rc == 0, &st->pending) != 0) return -1;
    buf_consume(&st->raw, st->raw.len);
    return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    stream_state *st = cls;
    while (st->pending.len == 0 && !st->ended) {
        int rc = stream_pull(st);
        if (rc < 0 || st->pending.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == 0) st->ended = 1;
        /* Done as soon as the body is complete: MHD reports the request
         * completed (the done hook: usage, limits) before it releases the
         * response, and what done reports must be in by then. */
        if (rc == 0 && st->done) {
            st->done(st->ctx);
            st->done = NULL;
        }
    }
    if (st->pending.len == 0) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = st->pending.len < max ? st->pending.len : max;
    memcpy(out, st->pending.data, n);
    if (st->r->tap) st->r->tap(st->r->tap_ctx, NULL, out, n);
    buf_consume(&st->pending, n);
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    if (st->done) st->done(st->ctx);
    buf_free(&st->pending);
    buf_free(&st->raw);
    free(st);
}

void http_respond_stream(http_request *r, int status, const char *content_type, http_pull pull,
                         void (*done)(void *ctx), void *ctx) {
    stream_state *st = calloc(1, sizeof *st);
    struct MHD_Response *resp = NULL;
    if (st) {
        *st = (stream_state){.pull = pull, .done = done, .ctx = ctx, .r = r};
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
        if (!resp) free(st);
    }
    if (!resp) {
        if (done) done(ctx);
        return;
    }
    set_response(r, status, content_type, resp);
    if (r->tap) r->tap(r->tap_ctx, content_type, "", 0);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
}

/* ------------------------------------------------------------ streamed forms */

static enum MHD_Result form_iterator(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                     const char *content_type, const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size) {
    (void)kind, (void)content_type, (void)transfer_encoding;
    http_request *r = cls;
    if (r->form_piece(r->form_ctx, key, filename, data, size, off)) {
        r->form_stopped = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

void http_stream_form(http_request *r, http_form_piece piece, void (*release)(void *ctx), void *ctx) {
    r->form_piece = piece;
    r->form_release = release;
    r->form_ctx = ctx;
    r->pp = MHD_create_post_processor(r->conn, 64 * 1024, form_iterator, r);
    if (r->pp) {
        r->form_state = HTTP_FORM_OK;
    } else {
        /* MHD refuses a form type without its boundary, and any other type. */
        const char *type = http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
        int form = type && (strncasecmp(type, "multipart/form-data", 19) == 0 ||
                            strncasecmp(type, "application/x-www-form-urlencoded", 33) == 0);
        r->form_state = form ? HTTP_FORM_MALFORMED : HTTP_FORM_NOT_FORM;
    }
}

http_form_state http_form(http_request *r, void **ctx) {
    *ctx = r->form_ctx;
    return r->form_state;
}

/* Flush the parser's last field; a body that ended mid-part or without its
 * closing boundary makes MHD report failure here. */
static void form_finish(http_request *r) {
    if (!r->pp) return;
    enum MHD_Result rc = MHD_destroy_post_processor(r->pp);
    r->pp = NULL;
    if (rc != MHD_YES && !r->form_stopped && r->form_state == HTTP_FORM_OK) r->form_state = HTTP_FORM_MALFORMED;
}

static void form_feed(http_request *r, const char *data, size_t len) {
    if (!r->pp || r->form_stopped) return;
    if (MHD_post_process(r->pp, data, len) != MHD_YES && !r->form_stopped) {
        r->form_state = HTTP_FORM_MALFORMED;
        form_finish(r);
    }
}

/* ------------------------------------------------------------ MHD callbacks */

/* splitmix64 over a per-thread state seeded once from getrandom: an id
 * needs to be unique, not secret, and a getrandom call per request was one
 * syscall in ten on the proxy path.  A keep-alive connection keeps its
 * thread, so the seed is paid once per connection. */
static uint64_t id_bits(void) {
    static _Thread_local uint64_t state;
    static _Thread_local int seeded;
    if (!seeded) {
        if (getrandom(&state, sizeof state, 0) != (ssize_t)sizeof state) {
            static uint64_t counter;
            state = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) ^ (uint64_t)(bs_now() * 1e9);
        }
        seeded = 1;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* "req_" and 24 hex digits (96 bits). */
static void new_request_id(char *out, size_t cap) {
    static const char hex[] = "0123456789abcdef";
    uint64_t hi = id_bits(), lo = id_bits();
    char id[29] = "req_";
    for (int i = 0; i < 16; i++) id[4 + i] = hex[(hi >> (60 - 4 * i)) & 15];
    for (int i = 0; i < 8; i++) id[20 + i] = hex[(lo >> (28 - 4 * i)) & 15];
    id[28] = '\0';
    snprintf(out, cap, "%s", id);
}

static enum MHD_Result add_len(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* "k: v\r\n", "&k=v" */
    return MHD_YES;
}

/* 414 or 431 when the request line or headers exceed basalt's limits. */
static int over_limit(struct MHD_Connection *conn, const char *url) {
    size_t url_len = strlen(url), headers = 0;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_len, &url_len);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_len, &headers);
    return url_len > MAX_URL ? 414 : headers > MAX_HEADERS ? 431 : 0;
}

static void respond_over_limit(http_request *r) {
    char body[256];
    int n = r->over_limit == 414
                ? snprintf(body, sizeof body,
                           "{\"error\":{\"message\":\"The request URL is longer than %u bytes.\","
                           "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"url_too_long\"}}",
                           MAX_URL)
                : snprintf(body, sizeof body,
                           "{\"error\":{\"message\":\"The request headers are larger than %u bytes.\","
                           "\"type\":\"invalid_request_error\",\"param\":null,"
                           "\"code\":\"request_header_fields_too_large\"}}",
                           MAX_HEADERS);
    http_respond(r, r->over_limit, "application/json", body, (size_t)n);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)version;
    http_server *s = cls;
    http_request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->server = s;
        r->conn = conn;
        r->start = bs_now();
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = strdup(url);
        if (!r->path) {
            free(r);
            return MHD_NO;
        }
        new_request_id(r->id, sizeof r->id);
        r->over_limit = over_limit(conn, url);
        *con_cls = r;
        if (s->begin) s->begin(s->user, r);
        return MHD_YES;
    }
    if (*upload_size && r->over_limit) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size && r->form_state != HTTP_FORM_NONE) {
        form_feed(r, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        /* An oversized body is still read to its end, so the 413 goes out on
         * a connection that stays usable. */
        if (!r->too_large && r->body.len + *upload_size > s->max_body) {
            r->too_large = 1;
            buf_free(&r->body);
        }
        if (!r->too_large) buf_append(&r->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->status == 0) {
        if (r->over_limit) {
            respond_over_limit(r);
        } else {
            form_finish(r);
            s->handler(s->user, r);
        }
        if (!r->response) {
            static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                                      "\"param\":null,\"code\":null}}";
            r->status = 500;
            r->response = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
            if (!r->response) return MHD_NO;
        }
    }
    enum MHD_Result rc = MHD_queue_response(conn, (unsigned)r->status, r->response);
    MHD_destroy_response(r->response);
    r->response = NULL;
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    http_server *s = cls;
    http_request *r = *con_cls;
    if (!r) return;
    /* nginx's "client closed request": the response did not go out whole. */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) r->status = 499;
    if (s->done) s->done(s->user, r);
    if (r->response) MHD_destroy_response(r->response);
    form_finish(r);
    if (r->form_release) r->form_release(r->form_ctx);
    if (r->filter_release) r->filter_release(r->filter_ctx);
    if (r->tap_release) r->tap_release(r->tap_ctx);
    free_headers(r);
    buf_free(&r->body);
    free(r->path);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = '\0';
    bs_log_debug("http: %s", line);
}

/* ------------------------------------------------------------ lifecycle */

bs_status http_server_open(const http_config *c, http_handler handler, http_done done, void *user,
                           http_server **out, bs_error *err) {
    *out = NULL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", c->port);
    int gai = getaddrinfo(c->host, port, &hints, &ai);
    if (gai != 0) return bs_fail(err, BS_EINVAL, "--host %s: %s", c->host, gai_strerror(gai));
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    *s = (http_server){.handler = handler, .done = done, .user = user, .max_body = c->max_body, .begin = c->begin};
    /* A thread per connection: handlers block (a local model's stream, an
     * upstream call driven on this thread), which a pool of event threads
     * cannot allow.  poll, not select: select cannot wait on a descriptor
     * past FD_SETSIZE (1024), which connections reach once upstream
     * connections, files and stores hold the low ones; MHD would drop them. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                                 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->idle_timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, MHD_CONNECTION_MEMORY,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                 MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        free(s);
        return bs_fail(err, BS_EIO, "cannot listen on %s:%d (address in use or not local?)", c->host, c->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : c->port;
    *out = s;
    return BS_OK;
}

int http_server_port(const http_server *s) { return s->port; }

void http_server_quiesce(http_server *s) {
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void http_server_close(http_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->daemon);
    free(s);
}
