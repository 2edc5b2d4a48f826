/* gateway/upstream.h — the HTTP client for upstream providers.
 *
 * A consumed call (upstream_call_open) runs on one of the pool's lanes: a
 * libcurl multi handle with one easy handle and its kept-alive connection,
 * driven by the consumer's own thread inside wait_headers/read, so a
 * request costs no hand-off to another thread; lanes share DNS and TLS
 * sessions.  At most max_host_connections lanes exist; calls beyond them,
 * and fire-and-forget ones, go to the pool's event thread: one multi handle
 * (curl_multi_poll, woken by curl_multi_wakeup) whose transfers share its
 * connection cache, HTTP/2 streams multiplexed (offered over TLS), with the
 * same per-host limit.  TLS peers are always verified.  No thread drives
 * more than its own transfer or non-blocking event-thread work, so one slow
 * or hanging upstream delays no other transfer.  The limits are pool
 * properties: the gateway opens one pool per provider to give each its own
 * max_connections.
 *
 * Connection threads consume a call with blocking functions: wait for the
 * headers, then read body bytes as they arrive.  Flow control: when more
 * than UPSTREAM_BUFFER_MAX unread bytes are buffered the transfer is paused
 * and resumed once the reader has drained half of them, so memory per call
 * stays bounded however slow the client is.
 *
 * Failure messages name the method, URL and what went wrong — never a
 * request or response header value (the API key travels in one). */
#ifndef BASALT_GATEWAY_UPSTREAM_H
#define BASALT_GATEWAY_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define UPSTREAM_BUFFER_MAX ((size_t)1 << 20)

typedef struct upstream_pool upstream_pool;
typedef struct upstream_call upstream_call;

typedef enum {
    UPSTREAM_OK = 0,
    UPSTREAM_CONNECT,   /* resolve, connect or TLS handshake failed */
    UPSTREAM_TIMEOUT,   /* connect, total or idle timeout */
    UPSTREAM_CUT,       /* the connection broke before the response was whole */
    UPSTREAM_CANCELLED, /* closed by the consumer or the pool before the end */
    UPSTREAM_ERROR,     /* anything else: bad URL, protocol error, out of memory */
} upstream_class;

const char *upstream_class_name(upstream_class c);

typedef struct upstream_req {
    const char *method; /* NULL: POST when there is a body, else GET */
    const char *url;
    const char *const *headers; /* "Name: value" lines, copied */
    int n_headers;
    const char *body; /* copied; NULL: none */
    size_t body_len;
    double connect_timeout_s; /* 0: 10 s */
    double timeout_s;         /* the whole transfer; 0: no limit */
    double idle_timeout_s;    /* fail when no byte arrives for this long (not counting flow-control pauses); 0: none */
} upstream_req;

/* max_host_connections: lanes, and event-thread connections per upstream
 * host (0: no limit); event-thread transfers beyond it wait for a free
 * connection. */
bs_status upstream_open(int max_host_connections, upstream_pool **out, bs_error *err);
/* Cancels every running transfer (fire callbacks run with
 * UPSTREAM_CANCELLED), stops the thread and frees the pool.  Every call
 * from upstream_call_open must have been closed first. */
void upstream_close(upstream_pool *p);

/* Starts a transfer; the caller owns *out until upstream_call_close. */
bs_status upstream_call_open(upstream_pool *p, const upstream_req *req, upstream_call **out, bs_error *err);
/* Blocks until the final status line and headers are in (UPSTREAM_OK, with
 * *status) or the transfer failed before them (the failure class; *status 0). */
upstream_class upstream_call_wait_headers(upstream_call *c, int *status);
/* A response header after wait_headers returned UPSTREAM_OK; the name is
 * matched case-insensitively, the value has no surrounding blanks.  NULL
 * when absent. */
const char *upstream_call_header(upstream_call *c, const char *name);
/* Body bytes: blocks until some are buffered, the transfer ended, or wait_s
 * passed (wait_s < 0: no limit).  Returns 1 with *n bytes copied into buf
 * (*n is 0 only when wait_s passed), 0 at the end of a complete body, -1
 * when the transfer failed (see upstream_call_failure).  Bytes that arrived
 * before a failure are all delivered before the -1. */
int upstream_call_read(upstream_call *c, char *buf, size_t cap, size_t *n, double wait_s);
/* How the transfer ended so far: UPSTREAM_OK while running or after a
 * complete body; *msg (when msg is not NULL) is "" or the failure message,
 * valid until close. */
upstream_class upstream_call_failure(upstream_call *c, const char **msg);
/* The most unread bytes the call ever held (flow control's bound, for
 * tests and metrics). */
size_t upstream_call_peak_buffered(upstream_call *c);
/* Cancels the transfer if it still runs and frees the call; NULL is fine. */
void upstream_call_close(upstream_call *c);

/* Fire and forget (shadow traffic): the response is read and discarded,
 * then done runs once, on the pool's event thread — it must not block. */
typedef struct upstream_result {
    int status; /* 0: no response */
    upstream_class cls;
    const char *msg; /* "" or the failure; valid during the callback */
    uint64_t bytes;  /* body bytes received */
    double latency_s;
} upstream_result;
typedef void (*upstream_done)(void *ctx, const upstream_result *r);
bs_status upstream_fire(upstream_pool *p, const upstream_req *req, upstream_done done, void *ctx, bs_error *err);

#endif
