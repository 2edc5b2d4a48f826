/* server/proxy.c — one request to one upstream target, relayed to the client.
 *
 * The rewrites never re-encode JSON: a small scanner finds the spans of the
 * top-level members of an object, and the output is the input with at most
 * a few spans replaced, inserted or cut, so spacing, key order and number
 * formatting stay exactly as written.  That holds for the upstream's
 * responses and, when the caller has the client's bytes, for the request
 * (re-encoding it cost more than the rest of the gateway). */
#include "server/proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

#define ERROR_BODY_MAX ((size_t)64 << 10)  /* an error body past this is not worth reading on */
#define WHOLE_BODY_MAX ((size_t)256 << 20) /* a non-stream body past this is refused */
#define MAX_MEMBERS 64
#define PULL_WAIT_S 0.25 /* how often a silent stream checks whether its client left */

/* ------------------------------------------------------------ JSON spans */

typedef struct member {
    size_t key0, key1; /* the key with its quotes */
    size_t val0, val1;
} member;

static size_t skip_ws(const char *s, size_t i, size_t n) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

/* s[i] is '"'; the index after the closing quote, or 0 when unterminated. */
static size_t skip_string(const char *s, size_t i, size_t n) {
    for (i++; i < n; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return 0;
}

static size_t skip_value(const char *s, size_t i, size_t n) {
    if (i >= n) return 0;
    if (s[i] == '"') return skip_string(s, i, n);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        for (; i < n; i++) {
            char c = s[i];
            if (c == '"') {
                size_t e = skip_string(s, i, n);
                if (!e) return 0;
                i = e - 1;
            } else if (c == '{' || c == '[') {
                depth++;
            } else if ((c == '}' || c == ']') && --depth == 0) {
                return i + 1;
            }
        }
        return 0;
    }
    size_t j = i;
    while (j < n && !strchr(",}] \t\r\n", s[j])) j++;
    return j > i ? j : 0;
}

/* The top-level members of the object in s[0..n); -1 when it is not one
 * (or has more than max members). */
static int scan_members(const char *s, size_t n, member *m, int max) {
    size_t i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{') return -1;
    i = skip_ws(s, i + 1, n);
    int k = 0;
    if (i < n && s[i] == '}') return 0;
    for (;;) {
        if (k == max || i >= n || s[i] != '"') return -1;
        m[k].key0 = i;
        if (!(i = skip_string(s, i, n))) return -1;
        m[k].key1 = i;
        i = skip_ws(s, i, n);
        if (i >= n || s[i] != ':') return -1;
        i = skip_ws(s, i + 1, n);
        m[k].val0 = i;
        if (!(i = skip_value(s, i, n))) return -1;
        m[k].val1 = i;
        k++;
        i = skip_ws(s, i, n);
        if (i < n && s[i] == '}') return k;
        if (i >= n || s[i] != ',') return -1;
        i = skip_ws(s, i + 1, n);
    }
}

static int key_is(const char *s, const member *m, const char *key) {
    size_t kl = strlen(key);
    return m->key1 - m->key0 == kl + 2 && memcmp(s + m->key0 + 1, key, kl) == 0;
}

static int find_member(const char *s, const member *m, int k, const char *key) {
    for (int i = 0; i < k; i++)
        if (key_is(s, &m[i], key)) return i;
    return -1;
}

/* Like find_member for text a JSON parser also reads: -2 when the key
 * occurs twice or any key has an escape (the parser's view of which member
 * counts could differ from the text's), so the caller falls back. */
static int find_sole_member(const char *s, const member *m, int k, const char *key) {
    int found = -1;
    for (int i = 0; i < k; i++) {
        if (memchr(s + m[i].key0, '\\', m[i].key1 - m[i].key0)) return -2;
        if (!key_is(s, &m[i], key)) continue;
        if (found >= 0) return -2;
        found = i;
    }
    return found;
}

static void append_json_string(srv_buf *out, const char *v) {
    buf_append(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\') buf_printf(out, "\\%c", *p);
        else if (*p < 0x20) buf_printf(out, "\\u%04x", *p);
        else buf_append(out, (const char *)p, 1);
    }
    buf_append(out, "\"", 1);
}

typedef struct edit {
    size_t from, to;
    const char *model; /* a string to write as JSON; NULL: text */
    const char *text;  /* raw JSON to write; both NULL: cut */
} edit;

/* s[0..n) with the edits (in order, not overlapping) applied. */
static void apply_edits(const char *s, size_t n, const edit *e, int ne, srv_buf *out) {
    size_t at = 0;
    for (int i = 0; i < ne; i++) {
        buf_append(out, s + at, e[i].from - at);
        if (e[i].model) append_json_string(out, e[i].model);
        else if (e[i].text) buf_puts(out, e[i].text);
        at = e[i].to;
    }
    buf_append(out, s + at, n - at);
}

/* Parses only the usage member's span: the body around it is never parsed. */
static void capture_usage(const char *s, const member *u, proxy_attempt *a) {
    if (!a || s[u->val0] != '{') return;
    json_t *usage = json_loadb(s + u->val0, u->val1 - u->val0, 0, NULL);
    const json_t *p = json_object_get(usage, "prompt_tokens"), *c = json_object_get(usage, "completion_tokens");
    if (json_is_integer(p)) a->prompt_tokens = (long)json_integer_value(p);
    if (json_is_integer(c)) a->completion_tokens = (long)json_integer_value(c);
    json_decref(usage);
}

/* proxy_rewrite_model, also storing the body's usage in a (NULL: not). */
static int rewrite_whole(const char *json, size_t len, const char *public_model, srv_buf *out, proxy_attempt *a) {
    member m[MAX_MEMBERS];
    int k = scan_members(json, len, m, MAX_MEMBERS);
    int mi = k > 0 ? find_member(json, m, k, "model") : -1, ui = k > 0 ? find_member(json, m, k, "usage") : -1;
    if (ui >= 0) capture_usage(json, &m[ui], a);
    if (mi < 0 || json[m[mi].val0] != '"') {
        buf_append(out, json, len);
        return 0;
    }
    edit e = {m[mi].val0, m[mi].val1, public_model, NULL};
    apply_edits(json, len, &e, 1, out);
    return 1;
}

int proxy_rewrite_model(const char *json, size_t len, const char *public_model, srv_buf *out) {
    return rewrite_whole(json, len, public_model, out, NULL);
}

int proxy_rewrite_request(const char *json, size_t len, const char *model, int stream, srv_buf *out) {
    member m[MAX_MEMBERS], so[MAX_MEMBERS];
    int k = scan_members(json, len, m, MAX_MEMBERS);
    int mi = k > 0 ? find_sole_member(json, m, k, "model") : -1;
    int si = k > 0 ? find_sole_member(json, m, k, "stream_options") : -1;
    if (mi < 0 || si == -2 || json[m[mi].val0] != '"') return 0;
    edit e[2] = {{m[mi].val0, m[mi].val1, model, NULL}};
    int ne = 1;
    if (stream && si < 0) {
        /* after the last member */
        e[ne++] = (edit){m[k - 1].val1, m[k - 1].val1, NULL, ",\"stream_options\":{\"include_usage\":true}"};
    } else if (stream) {
        const char *v = json + m[si].val0;
        size_t vn = m[si].val1 - m[si].val0;
        int ks = *v == '{' ? scan_members(v, vn, so, MAX_MEMBERS) : 0;
        int ii = ks > 0 ? find_sole_member(v, so, ks, "include_usage") : -1;
        if (ks < 0 || ii == -2) return 0;
        if (ii >= 0) /* the value, whatever it was, becomes true */
            e[ne++] = (edit){m[si].val0 + so[ii].val0, m[si].val0 + so[ii].val1, NULL, "true"};
        else if (ks > 0) /* a first member added to the object */
            e[ne++] = (edit){m[si].val0 + so[0].key0, m[si].val0 + so[0].key0, NULL, "\"include_usage\":true,"};
        else /* {} or not an object: replaced */
            e[ne++] = (edit){m[si].val0, m[si].val1, NULL, "{\"include_usage\":true}"};
    }
    if (ne == 2 && e[1].from < e[0].from) {
        edit t = e[0];
        e[0] = e[1];
        e[1] = t;
    }
    apply_edits(json, len, e, ne, out);
    return 1;
}

void proxy_relay_event(const char *ev, size_t len, const char *public_model, int strip_usage, srv_buf *out,
                       proxy_attempt *a) {
    /* the payload of the event's only data line */
    size_t p0 = 0, p1 = 0;
    int data_lines = 0;
    for (size_t ls = 0; ls < len;) {
        const char *nl = memchr(ev + ls, '\n', len - ls);
        size_t le = nl ? (size_t)(nl - ev) : len;
        size_t end = le > ls && ev[le - 1] == '\r' ? le - 1 : le;
        if (end - ls >= 5 && memcmp(ev + ls, "data:", 5) == 0) {
            data_lines++;
            p0 = ls + 5 + (end > ls + 5 && ev[ls + 5] == ' ');
            p1 = end;
        }
        ls = le + 1;
    }
    member m[MAX_MEMBERS];
    int k = data_lines == 1 ? scan_members(ev + p0, p1 - p0, m, MAX_MEMBERS) : -1;
    if (k <= 0) {
        buf_append(out, ev, len);
        return;
    }
    const char *s = ev + p0;
    size_t n = p1 - p0;
    int mi = find_member(s, m, k, "model"), ui = find_member(s, m, k, "usage"), ci = find_member(s, m, k, "choices");
    int usage_obj = ui >= 0 && s[m[ui].val0] == '{';
    if (ui >= 0) capture_usage(s, &m[ui], a);
    int choices_empty = ci >= 0 && s[m[ci].val0] == '[' && skip_ws(s, m[ci].val0 + 1, n) == m[ci].val1 - 1;
    if (strip_usage && usage_obj && choices_empty) return; /* the usage-only chunk the client did not ask for */
    edit e[2];
    int ne = 0;
    if (mi >= 0 && s[m[mi].val0] == '"') e[ne++] = (edit){m[mi].val0, m[mi].val1, public_model, NULL};
    if (strip_usage && ui >= 0) {
        /* the member with the separator before it, or after it when first */
        edit cut = {ui > 0 ? m[ui - 1].val1 : m[ui].key0, ui > 0 ? m[ui].val1 : ui + 1 < k ? m[ui + 1].key0 : m[ui].val1,
                    NULL, NULL};
        if (ne && cut.from < e[0].from) {
            e[1] = e[0];
            e[0] = cut;
        } else {
            e[ne] = cut;
        }
        ne++;
    }
    buf_append(out, ev, p0);
    apply_edits(s, n, e, ne, out);
    buf_append(out, ev + p1, len - p1);
}

/* ------------------------------------------------------------ errors */

const char *proxy_error_class_name(proxy_error_class c) {
    switch (c) {
    case PROXY_ERR_NONE: return "none";
    case PROXY_ERR_CONTEXT: return "context_window";
    case PROXY_ERR_CONTENT: return "content_policy";
    case PROXY_ERR_RATE_LIMIT: return "rate_limit";
    case PROXY_ERR_SERVER: return "server";
    case PROXY_ERR_TIMEOUT: return "timeout";
    case PROXY_ERR_CONNECTION: return "connection";
    case PROXY_ERR_CLIENT: return "client";
    }
    return "server";
}

static int mentions(const char *s, const char *what) { return s && strcasestr(s, what) != NULL; }

proxy_error_class proxy_classify(int status, upstream_class fail, const json_t *error) {
    if (status == 0 || (status < 300 && fail != UPSTREAM_OK)) {
        if (fail == UPSTREAM_OK) return PROXY_ERR_NONE;
        return fail == UPSTREAM_TIMEOUT ? PROXY_ERR_TIMEOUT : PROXY_ERR_CONNECTION;
    }
    if (status < 300) return PROXY_ERR_NONE;
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *type = json_string_value(json_object_get(error, "type"));
    const char *msg = json_string_value(json_object_get(error, "message"));
    if (code && (strcmp(code, "content_filter") == 0 || strcmp(code, "content_policy_violation") == 0))
        return PROXY_ERR_CONTENT;
    if (status == 400) {
        if ((code && strcmp(code, "context_length_exceeded") == 0) || mentions(msg, "maximum context length") ||
            mentions(msg, "context window"))
            return PROXY_ERR_CONTEXT;
        if (mentions(type, "content_policy") || mentions(type, "content policy") || mentions(msg, "content policy") ||
            mentions(msg, "content management policy"))
            return PROXY_ERR_CONTENT;
    }
    if (status == 429) return PROXY_ERR_RATE_LIMIT;
    if (status == 408) return PROXY_ERR_TIMEOUT;
    if (status >= 400 && status < 500) return PROXY_ERR_CLIENT;
    return PROXY_ERR_SERVER;
}

static json_t *openai_error(const char *message, const char *type, const char *code) {
    return json_pack("{s:{s:s,s:s,s:n,s:o}}", "error", "message", message, "type", type, "param", "code",
                     code ? json_string(code) : json_null());
}

int proxy_error_to_openai(const proxy_attempt *a, json_t **body) {
    char msg[256];
    if (a->status >= 400 && a->status < 500) {
        const json_t *e = a->error;
        const char *m = json_string_value(json_object_get(e, "message"));
        snprintf(msg, sizeof msg, "upstream returned HTTP %d", a->status);
        json_t *out = json_object();
        json_object_set_new(out, "message", json_string(m ? m : msg));
        const json_t *type = json_object_get(e, "type");
        json_object_set_new(out, "type", json_is_string(type) ? json_copy((json_t *)type)
                                                               : json_string("invalid_request_error"));
        const json_t *param = json_object_get(e, "param"), *code = json_object_get(e, "code");
        json_object_set_new(out, "param", json_is_string(param) ? json_copy((json_t *)param) : json_null());
        json_object_set_new(out, "code", json_is_string(code) || json_is_integer(code) ? json_copy((json_t *)code)
                                                                                       : json_null());
        *body = json_pack("{s:o}", "error", out);
        return a->status;
    }
    if (a->status == 0 && a->fail == UPSTREAM_TIMEOUT) {
        *body = openai_error("the upstream provider timed out", "upstream_error", "upstream_timeout");
        return 504;
    }
    if (a->status >= 500) snprintf(msg, sizeof msg, "the upstream provider failed (HTTP %d)", a->status);
    else if (a->status == 0) snprintf(msg, sizeof msg, "could not reach the upstream provider (%s)", upstream_class_name(a->fail));
    else snprintf(msg, sizeof msg, "unexpected upstream response (HTTP %d)", a->status);
    *body = openai_error(msg, "upstream_error", "upstream_error");
    return 502;
}

void proxy_attempt_clear(proxy_attempt *a) {
    json_decref(a->error);
    a->error = NULL;
}

/* ------------------------------------------------------------ forwarding */

/* Replace every occurrence of the key in a string: upstreams echo keys back
 * in 401 messages. */
static char *scrub(const char *s, const char *key) {
    srv_buf b = {0};
    size_t kl = key ? strlen(key) : 0;
    for (const char *p = s;;) {
        const char *hit = kl ? strstr(p, key) : NULL;
        if (!hit) {
            buf_puts(&b, p);
            break;
        }
        buf_append(&b, p, (size_t)(hit - p));
        buf_puts(&b, "[redacted]");
        p = hit + kl;
    }
    if (b.oom) {
        buf_free(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

static int parse_retry_after(const char *v) {
    if (!v) return -1;
    char *end;
    long secs = strtol(v, &end, 10);
    if (end != v && *end == '\0') return secs < 0 ? 0 : (int)secs;
    struct tm tm = {0};
    const char *rest = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!rest || *rest) return -1;
    double d = difftime(timegm(&tm), time(NULL));
    return d < 0 ? 0 : (int)d;
}

/* The upstream error object from an error body; never NULL. */
static json_t *error_object(const srv_buf *body, int status, const char *api_key) {
    json_t *doc = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
    json_t *e = json_object_get(doc, "error");
    json_t *out;
    if (json_is_object(e)) {
        out = json_deep_copy(e);
    } else {
        char msg[64];
        snprintf(msg, sizeof msg, "upstream returned HTTP %d", status);
        out = json_pack("{s:s,s:s,s:n,s:n}", "message", json_is_string(e) ? json_string_value(e) : msg, "type",
                        "upstream_error", "param", "code");
    }
    json_decref(doc);
    const char *m = json_string_value(json_object_get(out, "message"));
    if (m && api_key && *api_key) {
        char *clean = scrub(m, api_key);
        json_object_set_new(out, "message", json_string(clean ? clean : "upstream error"));
        free(clean);
    }
    return out;
}

/* Reads the rest of the body into b (up to max bytes): 0 at its end, -1
 * when the transfer failed, 1 when it is larger than max. */
static int read_all(upstream_call *c, srv_buf *b, size_t max) {
    char tmp[16384];
    for (;;) {
        size_t n;
        int rc = upstream_call_read(c, tmp, sizeof tmp, &n, -1);
        if (rc <= 0) return rc;
        if (b->len + n > max) return 1;
        buf_append(b, tmp, n);
    }
}

typedef struct relay {
    upstream_call *call;
    http_request *r;
    proxy_attempt a; /* the caller's, with the inputs it may free cleared */
    char *public_model;
    srv_buf in;    /* received, not yet a whole event */
    srv_buf ready; /* events for the client */
    int ended;
    double t0;
} relay;

/* Moves whatever arrived within wait_s into ready, as whole events. */
static void relay_fill(relay *rl, double wait_s) {
    char tmp[16384];
    size_t n;
    int rc = upstream_call_read(rl->call, tmp, sizeof tmp, &n, wait_s);
    buf_append(&rl->in, tmp, n);
    int strip = !rl->a.include_usage;
    size_t start = 0;
    for (size_t j = 0; j + 1 < rl->in.len; j++) {
        if (rl->in.data[j] != '\n') continue;
        size_t end = rl->in.data[j + 1] == '\n'                                               ? j + 2
                     : j + 2 < rl->in.len && rl->in.data[j + 1] == '\r' && rl->in.data[j + 2] == '\n' ? j + 3
                                                                                                      : 0;
        if (!end) continue;
        proxy_relay_event(rl->in.data + start, end - start, rl->public_model, strip, &rl->ready, &rl->a);
        start = end;
        j = end - 1;
    }
    buf_consume(&rl->in, start);
    if (rc == 0 && rl->in.len) {
        /* a last event without its blank line */
        proxy_relay_event(rl->in.data, rl->in.len, rl->public_model, strip, &rl->ready, &rl->a);
        buf_consume(&rl->in, rl->in.len);
    }
    if (rl->ready.len && rl->a.ttft_s < 0) rl->a.ttft_s = bs_now() - rl->t0;
    if (rc == 0) rl->ended = 1;
    if (rc < 0) {
        rl->ended = 1;
        rl->a.fail = upstream_call_failure(rl->call, NULL);
        /* before anything was ready the caller may still retry: say nothing */
        if (rl->ready.len || rl->a.responded)
            buf_printf(&rl->ready,
                       "data: {\"error\":{\"message\":\"the upstream stream ended early (%s)\",\"type\":"
                       "\"upstream_error\",\"param\":null,\"code\":\"upstream_error\"}}\n\n",
                       upstream_class_name(rl->a.fail));
    }
}

static int relay_pull(void *ctx, srv_buf *out) {
    relay *rl = ctx;
    for (;;) {
        if (rl->ready.len) {
            buf_append(out, rl->ready.data, rl->ready.len);
            buf_consume(&rl->ready, rl->ready.len);
            return 1;
        }
        if (rl->ended) return 0;
        relay_fill(rl, PULL_WAIT_S);
        if (!rl->ready.len && !rl->ended && http_client_gone(rl->r)) {
            rl->a.client_gone = 1;
            return -1;
        }
    }
}

static void relay_free(relay *rl) {
    upstream_call_close(rl->call); /* cancels the transfer when the client left early */
    buf_free(&rl->in);
    buf_free(&rl->ready);
    free(rl->public_model);
    free(rl);
}

static void relay_done(void *ctx) {
    relay *rl = ctx;
    rl->a.latency_s = bs_now() - rl->t0;
    if (rl->a.finished) rl->a.finished(rl->a.finished_ctx, &rl->a);
    relay_free(rl);
}

/* A 2xx stream: relay it once its first event is in; before that a failure
 * is still the caller's to retry. */
static bs_status forward_stream(http_request *r, proxy_attempt *a, upstream_call *call, double t0, bs_error *err) {
    relay *rl = calloc(1, sizeof *rl);
    char *pm = strdup(a->public_model);
    if (!rl || !pm) {
        free(rl);
        free(pm);
        upstream_call_close(call);
        return bs_fail(err, BS_ENOMEM, "provider %s: out of memory", a->provider->name);
    }
    *rl = (relay){.call = call, .r = r, .a = *a, .public_model = pm, .t0 = t0};
    rl->a.pool = NULL;
    rl->a.provider = NULL;
    rl->a.upstream_model = NULL;
    rl->a.endpoint = NULL;
    rl->a.body = NULL;
    rl->a.public_model = pm;
    while (!rl->ready.len && !rl->ended) relay_fill(rl, -1);
    if (rl->a.fail != UPSTREAM_OK && !rl->ready.len) {
        const char *msg;
        a->fail = upstream_call_failure(call, &msg);
        bs_status st = bs_fail(err, BS_EIO, "provider %s: %s", a->provider->name, msg);
        relay_free(rl);
        return st;
    }
    a->ttft_s = rl->a.ttft_s;
    a->responded = rl->a.responded = 1;
    http_respond_stream(r, a->status, "text/event-stream", relay_pull, relay_done, rl);
    return BS_OK;
}

static bs_status forward_whole(http_request *r, proxy_attempt *a, upstream_call *call, double t0, bs_error *err) {
    srv_buf body = {0}, out = {0};
    int rc = read_all(call, &body, WHOLE_BODY_MAX);
    bs_status st = BS_OK;
    if (rc != 0 || body.oom) {
        const char *msg = body.oom ? "out of memory" : "response body too large";
        a->fail = UPSTREAM_ERROR;
        if (rc < 0 && !body.oom) a->fail = upstream_call_failure(call, &msg);
        st = bs_fail(err, BS_EIO, "provider %s: %s", a->provider->name, msg);
    } else {
        rewrite_whole(body.data ? body.data : "", body.len, a->public_model, &out, a);
        const char *ctype = upstream_call_header(call, "Content-Type");
        http_respond(r, a->status, ctype ? ctype : "application/json", out.data ? out.data : "", out.len);
        a->responded = 1;
        a->ttft_s = a->latency_s = bs_now() - t0;
    }
    buf_free(&body);
    buf_free(&out);
    upstream_call_close(call);
    if (a->responded && a->finished) a->finished(a->finished_ctx, a);
    return st;
}

bs_status proxy_forward(http_request *r, proxy_attempt *a, bs_error *err) {
    json_decref(a->error);
    a->error = NULL;
    a->responded = a->status = a->client_gone = 0;
    a->fail = UPSTREAM_OK;
    a->retry_after_s = -1;
    a->prompt_tokens = a->completion_tokens = -1;
    a->ttft_s = -1;
    a->latency_s = 0;
    double t0 = bs_now();
    const gw_provider *pv = a->provider;

    srv_buf text = {0};
    if (!a->raw || !proxy_rewrite_request(a->raw, a->raw_len, a->upstream_model, a->stream, &text)) {
        json_t *copy = json_deep_copy(a->body);
        if (!json_is_object(copy)) {
            json_decref(copy);
            return bs_fail(err, BS_EINVAL, "provider %s: the request body is not a JSON object", pv->name);
        }
        json_object_set_new(copy, "model", json_string(a->upstream_model));
        if (a->stream) {
            json_t *so = json_object_get(copy, "stream_options");
            if (!json_is_object(so)) json_object_set_new(copy, "stream_options", so = json_object());
            json_object_set_new(so, "include_usage", json_true());
        }
        char *dumped = json_dumps(copy, JSON_COMPACT);
        json_decref(copy);
        if (dumped) buf_puts(&text, dumped);
        else text.oom = 1;
        free(dumped);
    }
    size_t url_len = strlen(pv->base_url) + strlen(a->endpoint) + 1;
    char *url = malloc(url_len);
    char *auth = NULL;
    if (pv->api_key && *pv->api_key && asprintf(&auth, "Authorization: Bearer %s", pv->api_key) < 0) auth = NULL;
    if (text.oom || !url || (pv->api_key && *pv->api_key && !auth)) {
        buf_free(&text);
        free(url);
        free(auth);
        return bs_fail(err, BS_ENOMEM, "provider %s: out of memory", pv->name);
    }
    snprintf(url, url_len, "%s%s", pv->base_url, a->endpoint);
    const char *headers[3] = {"Content-Type: application/json",
                              a->stream ? "Accept: text/event-stream" : "Accept: application/json", auth};
    upstream_req req = {.method = "POST",
                        .url = url,
                        .headers = headers,
                        .n_headers = auth ? 3 : 2,
                        .body = text.data ? text.data : "",
                        .body_len = text.len,
                        .connect_timeout_s = pv->connect_timeout_s,
                        .timeout_s = pv->timeout_s,
                        .idle_timeout_s = a->stream ? a->idle_timeout_s : 0};
    upstream_call *call;
    bs_status st = upstream_call_open(a->pool, &req, &call, err);
    if (auth) {
        memset(auth, 0, strlen(auth)); /* curl keeps its own copy */
        free(auth);
    }
    buf_free(&text);
    free(url);
    if (st != BS_OK) return bs_wrap(err, "provider %s", pv->name);

    int status;
    upstream_class cls = upstream_call_wait_headers(call, &status);
    if (cls != UPSTREAM_OK) {
        const char *msg;
        a->fail = upstream_call_failure(call, &msg);
        bs_fail(err, BS_EIO, "provider %s: %s", pv->name, msg);
        upstream_call_close(call);
        return BS_EIO;
    }
    a->status = status;
    a->retry_after_s = parse_retry_after(upstream_call_header(call, "Retry-After"));
    if (status < 200 || status >= 300) {
        srv_buf body = {0};
        if (read_all(call, &body, ERROR_BODY_MAX) < 0) a->fail = upstream_call_failure(call, NULL);
        a->error = error_object(&body, status, pv->api_key);
        buf_free(&body);
        upstream_call_close(call);
        return bs_fail(err, BS_EIO, "provider %s: HTTP %d (%s)", pv->name, status,
                       proxy_error_class_name(proxy_classify(status, UPSTREAM_OK, a->error)));
    }
    const char *ctype = upstream_call_header(call, "Content-Type");
    if (a->stream && ctype && strncmp(ctype, "text/event-stream", 17) == 0)
        return forward_stream(r, a, call, t0, err);
    return forward_whole(r, a, call, t0, err);
}
