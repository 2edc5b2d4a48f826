/* server/proxy.h — forwarding one OpenAI request to one upstream target.
 *
 * proxy_forward sends the request body (with "model" replaced by the
 * upstream id; rewritten textually when the caller passes the client's
 * bytes, else re-encoded) to provider base_url + endpoint and, on a 2xx,
 * answers the
 * client itself: a whole body with its top-level "model" rewritten to the
 * public name, or the SSE stream relayed event by event as each arrives,
 * each event's "model" rewritten the same way.  The rewrites are textual:
 * every other byte is what the upstream sent.  Streams always ask the
 * upstream for stream_options.include_usage so tokens can be counted; when
 * the client did not ask, the usage-only chunk and every `"usage":null`
 * member are cut out, again textually, so the client sees what the upstream
 * sends without include_usage.
 *
 * On a non-2xx or transport failure before any byte went to the client the
 * request is left unanswered and the attempt says why (status, class,
 * Retry-After, the upstream's error object), so the caller can retry or fall
 * back; proxy_error_to_openai makes the final error when it gives up.
 *
 * The provider's API key goes only into the Authorization header: no log
 * line, error message or response carries it (upstream error messages that
 * echo it are scrubbed). */
#ifndef BASALT_SERVER_PROXY_H
#define BASALT_SERVER_PROXY_H

#include <jansson.h>

#include "base/error.h"
#include "gateway/config.h"
#include "gateway/upstream.h"
#include "server/buf.h"
#include "server/http.h"

typedef struct proxy_attempt proxy_attempt;

/* Runs once when a response the proxy started is over (whole body sent,
 * stream ended, or the client gone), with the final outcome.  For streams
 * this is after proxy_forward returned, on the connection's thread, and a
 * is the proxy's own copy: of the inputs only public_model is still set. */
typedef void (*proxy_finished)(void *ctx, const proxy_attempt *a);

struct proxy_attempt {
    /* in */
    upstream_pool *pool;
    const gw_provider *provider;
    const char *upstream_model; /* sent as "model" */
    const char *public_model;   /* what the client sees as "model" */
    const char *endpoint;       /* "/chat/completions", "/completions", "/embeddings" */
    const json_t *body;         /* the client's request; not modified */
    const char *raw;            /* the bytes body was parsed from, while they still say the same; NULL: none */
    size_t raw_len;
    int stream;                 /* the client asked for "stream": true */
    int include_usage;          /* ... and for stream_options.include_usage */
    double idle_timeout_s;      /* a stream silent this long fails as a timeout; 0: none */
    proxy_finished finished;    /* NULL: none */
    void *finished_ctx;
    /* out */
    int responded;         /* a response went to the client: no fallback possible */
    int status;            /* upstream HTTP status; 0 for transport failures */
    upstream_class fail;   /* UPSTREAM_OK, or how the transfer failed */
    int retry_after_s;     /* the upstream's Retry-After in seconds; -1: none */
    json_t *error;         /* the upstream's error object ({message,type,param,code}), owned; NULL: none */
    long prompt_tokens, completion_tokens; /* -1 until the upstream reported usage */
    double ttft_s;         /* until the first event (streams) or the whole body; -1: none */
    double latency_s;      /* until the response ended */
    int client_gone;       /* the client disconnected mid-stream (the upstream transfer was cancelled) */
};

/* Returns BS_OK when a response went out (a->responded; for streams the
 * relay goes on after the return).  Otherwise nothing was answered: err says
 * why in one line and a->status/fail/retry_after_s/error are filled. */
bs_status proxy_forward(http_request *r, proxy_attempt *a, bs_error *err);
/* Frees a->error. */
void proxy_attempt_clear(proxy_attempt *a);

typedef enum {
    PROXY_ERR_NONE,
    PROXY_ERR_CONTEXT,    /* context window exceeded */
    PROXY_ERR_CONTENT,    /* content policy violation */
    PROXY_ERR_RATE_LIMIT, /* 429 */
    PROXY_ERR_SERVER,     /* 5xx (and anything else unexpected from the upstream) */
    PROXY_ERR_TIMEOUT,
    PROXY_ERR_CONNECTION, /* connect failure, cut, cancelled */
    PROXY_ERR_CLIENT,     /* other 4xx: the request itself is wrong */
} proxy_error_class;

const char *proxy_error_class_name(proxy_error_class c);
/* error: the upstream's error object or NULL. */
proxy_error_class proxy_classify(int status, upstream_class fail, const json_t *error);

/* The OpenAI error body ({"error":{message,type,param,code}}, new
 * reference in *body) and HTTP status for a final failure: an upstream 4xx
 * passes through with its message (429 too: the caller adds Retry-After
 * from a->retry_after_s), a 5xx or transport failure becomes 502
 * "upstream_error", a timeout 504. */
int proxy_error_to_openai(const proxy_attempt *a, json_t **body);

/* The textual rewrites, exposed for tests.
 *
 * proxy_rewrite_model appends json (one JSON object's text) to out with the
 * string value of its top-level "model" replaced by public_model; returns 1
 * when it replaced one, 0 when the text was appended unchanged. */
int proxy_rewrite_model(const char *json, size_t len, const char *public_model, srv_buf *out);
/* proxy_rewrite_request appends the upstream's request to out: json (the
 * client's request text) with its top-level "model" string replaced by
 * model and, with stream, stream_options.include_usage set to true (added
 * when absent).  Returns 0, appending nothing, when the text is not an
 * object with exactly one string "model" and unescaped keys: the caller
 * re-encodes instead. */
int proxy_rewrite_request(const char *json, size_t len, const char *model, int stream, srv_buf *out);
/* proxy_relay_event appends one SSE event (its lines and the blank line
 * that ends it) to out as the client should see it: model rewritten, and
 * with strip_usage, "usage" members removed and a usage-only chunk
 * (choices empty) dropped.  Usage found is stored in a's token counts. */
void proxy_relay_event(const char *ev, size_t len, const char *public_model, int strip_usage, srv_buf *out,
                       proxy_attempt *a);

#endif
