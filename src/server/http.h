/* server/http.h — the HTTP/1.1 transport: a libmicrohttpd daemon with one
 * thread per connection (keep-alive, idle timeout, connection and header
 * memory limits), whole-body accumulation with a size cap, and responses
 * that are either one buffer or a body pulled piece by piece (SSE).
 *
 * The handler runs on the connection's own thread once the body is in, so it
 * may wait for engine events without holding up other connections; it answers
 * with exactly one http_respond* call.  It knows nothing of JSON or OpenAI:
 * server.c routes and formats errors. */
#ifndef BASALT_SERVER_HTTP_H
#define BASALT_SERVER_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "server/buf.h"

typedef struct http_server http_server;
typedef struct http_request http_request;

typedef void (*http_handler)(void *user, http_request *r);

typedef struct http_config {
    const char *host;    /* IPv4 or IPv6 literal, or "localhost" */
    int port;            /* 0: any free port (see http_server_port) */
    size_t max_body;     /* larger bodies are read, dropped, and flagged (413) */
    int idle_timeout_s;  /* close connections silent for this long */
    int max_connections;
    /* NULL, or called once per request as soon as its headers are in,
     * before any body: the place to call http_stream_form. */
    http_handler begin;
} http_config;
/* After the response went out (or the connection broke): logging, metrics. */
typedef void (*http_done)(void *user, http_request *r);

bs_status http_server_open(const http_config *c, http_handler handler, http_done done, void *user,
                           http_server **out, bs_error *err);
int http_server_port(const http_server *s);
/* Stop accepting connections; open ones keep being served. */
void http_server_quiesce(http_server *s);
/* Closes every connection (waiting for their threads) and frees s. */
void http_server_close(http_server *s);

const char *http_method(const http_request *r);
const char *http_path(const http_request *r); /* percent-decoded, no query */
const char *http_body(const http_request *r); /* NUL-terminated */
size_t http_body_len(const http_request *r);
int http_body_too_large(const http_request *r);
const char *http_header(const http_request *r, const char *name); /* NULL when absent */
const char *http_query(const http_request *r, const char *name);  /* a query argument, decoded; NULL when absent */
const char *http_request_id(const http_request *r);
double http_start_time(const http_request *r); /* bs_now() when the headers arrived */
int http_status(const http_request *r);        /* 0 until a response is set */
/* One pointer the layers above may hang per-request state on (log fields). */
void **http_user_slot(http_request *r);

/* Bodies too large to hold (file uploads): from the begin hook, parse the
 * body as form fields (multipart/form-data or urlencoded) while it arrives
 * instead of accumulating it.  piece gets each piece of each field's value
 * in order (off: its offset within the value; filename NULL for plain
 * fields) and returns nonzero to have the rest of the body read and dropped.
 * ctx belongs to r from here on: release(ctx) runs when r ends, however it
 * ends (answered, or the client gone mid-upload). */
typedef int (*http_form_piece)(void *ctx, const char *name, const char *filename, const char *data, size_t len,
                               uint64_t off);
void http_stream_form(http_request *r, http_form_piece piece, void (*release)(void *ctx), void *ctx);
typedef enum {
    HTTP_FORM_NONE,      /* http_stream_form was not called */
    HTTP_FORM_OK,        /* parsed to the end, or stopped by piece */
    HTTP_FORM_NOT_FORM,  /* the Content-Type is no form encoding: the body was dropped */
    HTTP_FORM_MALFORMED, /* the body broke the encoding (bad or missing boundary, cut short) */
} http_form_state;
/* For the handler: how the form parse went, and its ctx (NULL when NONE). */
http_form_state http_form(http_request *r, void **ctx);

/* 1 when the peer's address is a loopback one (127.0.0.0/8, ::1). */
int http_peer_is_loopback(http_request *r);

/* 1 when the peer closed its end; cheap (a non-blocking peek), for loops that
 * wait on the engine and must cancel work nobody will read. */
int http_client_gone(http_request *r);

/* A body filter rewrites whatever response follows before it goes out
 * (guardrails masking model output): a whole body passes once with final
 * set; a streamed body passes piece by piece as pulled, then once more with
 * len 0 and final set to flush what the filter held back.  The filter
 * appends its output to out and returns 0, or -1 to abort the response.
 * release(ctx) runs when the request ends.  At most one per request. */
typedef int (*http_filter)(void *ctx, const char *data, size_t len, int final, srv_buf *out);
void http_set_filter(http_request *r, http_filter filter, void (*release)(void *ctx), void *ctx);

/* A tap sees the response body as it goes out, after any filter, without
 * changing it (invocation logs): content_type set means a body begins (drop
 * whatever an earlier, replaced response passed), with its first bytes in
 * data; NULL means more of the same body.  A whole body passes once; a
 * streamed one piece by piece as the client takes it.  release(ctx) runs
 * when the request ends, after the done hook.  At most one per request. */
typedef void (*http_tap)(void *ctx, const char *content_type, const char *data, size_t len);
void http_set_tap(http_request *r, http_tap tap, void (*release)(void *ctx), void *ctx);

/* Drop a response that was set but not sent yet, with its extra headers:
 * for a gateway that tries another target after a local one answered with
 * an error. */
void http_reset_response(http_request *r);

/* Extra header on whatever response follows (Retry-After, Allow). */
void http_add_header(http_request *r, const char *name, const char *value);
void http_respond(http_request *r, int status, const char *content_type, const char *body, size_t len);

/* Streaming body: pull appends the next bytes to out, blocking as long as it
 * needs; it returns 1 while more may follow, 0 at the end, -1 to abort the
 * connection (the client is gone).  done(ctx) runs once: when pull returned
 * 0 (before the request's done hook), else when the response is released
 * unfinished.  pull is not called after it. */
typedef int (*http_pull)(void *ctx, srv_buf *out);
void http_respond_stream(http_request *r, int status, const char *content_type, http_pull pull,
                         void (*done)(void *ctx), void *ctx);

#endif
