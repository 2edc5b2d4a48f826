/* gateway/upstream.c — libcurl multi transfers, driven by their consumer or
 * by one event thread per pool.
 *
 * A consumed call normally runs on a lane: a multi handle with one easy
 * handle, taken from the pool's idle lanes and driven by the consumer's own
 * thread inside wait_headers/read (poll, perform), so a request costs no
 * thread hand-off.  The lane's multi keeps its kept-alive connection for
 * the next call that takes the lane; lanes share DNS and TLS sessions (a
 * libcurl share; libcurl 7.x cannot share live connections across threads).
 * A lane moves between threads only through the pool's idle list, under
 * its mutex, so one thread at a time uses its handles.  At most
 * max_host_connections lanes exist; calls beyond them, and fire-and-forget
 * ones, run on the event thread as before.
 *
 * Only the event thread touches its multi and the easy handles once a call
 * is queued.  Consumers talk to it through per-call request flags (add,
 * cancel, unpause) put on the pool's op list, then curl_multi_wakeup.  One
 * pool mutex guards the op list and every call's shared state; the write
 * and header callbacks take it briefly, the event thread never holds it
 * across a curl call (curl_easy_pause may run the write callback itself).
 *
 * A call is reference counted: the consumer holds one reference until
 * upstream_call_close, the event thread one while the transfer runs and one
 * for each time the call sits on the op list. */
#include "gateway/upstream.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"

#define IDLE_TICK_MS 100 /* how often idle timeouts are checked while any is armed */

/* A lane keeps its calls' response buffers up to this size for the next
 * call: two fewer large allocations per request, bounded memory per lane. */
#define LANE_KEEP_BUFFER ((size_t)64 << 10)

typedef struct lane {
    CURLM *multi;
    CURL *easy;
    char *hdr, *body; /* the last call's buffers, for the next one */
    size_t hdr_cap, body_cap;
    struct lane *next; /* on the pool's idle list */
} lane;

struct upstream_call {
    upstream_pool *pool;
    lane *lane; /* a driven call's lane; NULL: the event thread runs it */
    CURLM *multi; /* where the transfer runs: the lane's or the pool's */
    CURL *easy;
    struct curl_slist *headers;
    char method[16];
    char errbuf[CURL_ERROR_SIZE];
    pthread_cond_t cond;
    int refs;
    /* op flags; on_ops: linked into pool->ops through op_next */
    int want_add, want_cancel, want_unpause, on_ops;
    upstream_call *op_next;
    /* the pool's running transfers, for upstream_close */
    upstream_call *prev, *next;
    int running;
    /* response */
    int status, headers_done, finished, consumer_gone;
    char *hdr; /* "name\0value\0" pairs of the final response */
    size_t hdr_len, hdr_cap;
    char *body;
    size_t off, len, cap, peak;
    int paused;
    double idle_s, last_io; /* idle timeout; when a byte last came (event thread only) */
    upstream_class cls;
    char msg[300];
    /* fire mode */
    upstream_done done;
    void *done_ctx;
    uint64_t bytes;
    double start;
};

struct upstream_pool {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    upstream_call *ops;     /* pending requests to the event thread */
    upstream_call *running; /* in the multi */
    int stop;
    CURLSH *share; /* DNS and TLS sessions, for the lanes */
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    lane *idle;             /* lanes free to take */
    int lanes, max_lanes;   /* lanes made; their limit (0: none) */
};

const char *upstream_class_name(upstream_class c) {
    switch (c) {
    case UPSTREAM_OK: return "ok";
    case UPSTREAM_CONNECT: return "connect";
    case UPSTREAM_TIMEOUT: return "timeout";
    case UPSTREAM_CUT: return "cut";
    case UPSTREAM_CANCELLED: return "cancelled";
    case UPSTREAM_ERROR: return "error";
    }
    return "error";
}

/* ------------------------------------------------------------ helpers */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_status;
static void curl_init_once(void) { curl_init_status = curl_global_init(CURL_GLOBAL_DEFAULT); }

static int grow(char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    char *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void lane_free(lane *l) {
    if (!l) return;
    if (l->easy) curl_easy_cleanup(l->easy);
    if (l->multi) curl_multi_cleanup(l->multi);
    free(l->hdr);
    free(l->body);
    free(l);
}

/* An idle lane, or a new one while fewer than max_lanes exist; NULL when
 * every lane is busy (or out of memory): the event thread takes the call. */
static lane *lane_take(upstream_pool *p) {
    pthread_mutex_lock(&p->mu);
    lane *l = p->idle;
    if (l) p->idle = l->next;
    else if (!p->max_lanes || p->lanes < p->max_lanes) p->lanes++;
    else {
        pthread_mutex_unlock(&p->mu);
        return NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (l) return l;
    l = calloc(1, sizeof *l);
    if (l && (l->multi = curl_multi_init()) && (l->easy = curl_easy_init())) {
        curl_easy_setopt(l->easy, CURLOPT_SHARE, p->share);
        return l;
    }
    lane_free(l);
    pthread_mutex_lock(&p->mu);
    p->lanes--;
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void lane_put(upstream_pool *p, lane *l) {
    pthread_mutex_lock(&p->mu);
    l->next = p->idle;
    p->idle = l;
    pthread_mutex_unlock(&p->mu);
}

/* Hands a buffer to the lane when it is small enough to keep, else frees it. */
static void lane_keep(char **keep, size_t *keep_cap, char *buf, size_t cap) {
    if (cap > LANE_KEEP_BUFFER) {
        free(buf);
        return;
    }
    *keep = buf;
    *keep_cap = cap;
}

static void call_free(upstream_call *c) {
    if (c->lane) {
        /* back to the defaults (no pointers into c left); the lane's
         * connection, caches and share stay */
        curl_easy_reset(c->easy);
        lane_keep(&c->lane->hdr, &c->lane->hdr_cap, c->hdr, c->hdr_cap);
        lane_keep(&c->lane->body, &c->lane->body_cap, c->body, c->cap);
        lane_put(c->pool, c->lane);
    } else {
        if (c->easy) curl_easy_cleanup(c->easy);
        free(c->hdr);
        free(c->body);
    }
    curl_slist_free_all(c->headers);
    pthread_cond_destroy(&c->cond);
    free(c);
}

/* Drop one reference; the caller holds pool->mu.  Returns 1 when the call
 * is to be freed (after unlocking). */
static int unref_locked(upstream_call *c) { return --c->refs == 0; }

/* Queue c for the event thread; the caller holds pool->mu. */
static void queue_op_locked(upstream_call *c) {
    if (c->on_ops) return;
    c->on_ops = 1;
    c->refs++;
    c->op_next = c->pool->ops;
    c->pool->ops = c;
}

static upstream_class classify(CURLcode rc) {
    switch (rc) {
    case CURLE_OK: return UPSTREAM_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
        return UPSTREAM_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: return UPSTREAM_TIMEOUT;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return UPSTREAM_CUT;
    default: return UPSTREAM_ERROR;
    }
}

/* ------------------------------------------------------------ curl callbacks (event thread) */

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
    upstream_call *c = ud;
    size_t n = size * nmemb, len = n;
    c->last_io = bs_now();
    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r')) len--;
    pthread_mutex_lock(&c->pool->mu);
    if (c->headers_done) {
        /* trailers: the consumer may be reading hdr already */
    } else if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* a new status line: after 1xx or a redirect the block starts over */
        const char *sp = memchr(data, ' ', len);
        c->status = sp ? atoi(sp + 1) : 0;
        c->hdr_len = 0;
    } else if (len == 0) {
        if (c->status >= 200) {
            c->headers_done = 1;
            pthread_cond_broadcast(&c->cond);
        }
    } else if (!c->done) {
        const char *colon = memchr(data, ':', len);
        if (colon && grow(&c->hdr, &c->hdr_cap, c->hdr_len + len + 2) == 0) {
            size_t nl = (size_t)(colon - data);
            const char *v = colon + 1, *end = data + len;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
            memcpy(c->hdr + c->hdr_len, data, nl);
            c->hdr[c->hdr_len + nl] = '\0';
            c->hdr_len += nl + 1;
            memcpy(c->hdr + c->hdr_len, v, (size_t)(end - v));
            c->hdr[c->hdr_len + (size_t)(end - v)] = '\0';
            c->hdr_len += (size_t)(end - v) + 1;
        }
    }
    pthread_mutex_unlock(&c->pool->mu);
    return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
    upstream_call *c = ud;
    size_t n = size * nmemb;
    c->last_io = bs_now();
    pthread_mutex_lock(&c->pool->mu);
    if (c->done || c->consumer_gone) {
        /* discarded: shadow traffic, or a cancel already on its way */
        c->bytes += n;
        pthread_mutex_unlock(&c->pool->mu);
        return n;
    }
    size_t unread = c->len - c->off;
    if (unread >= UPSTREAM_BUFFER_MAX) {
        /* curl keeps these bytes and hands them over again on unpause */
        c->paused = 1;
        pthread_mutex_unlock(&c->pool->mu);
        return CURL_WRITEFUNC_PAUSE;
    }
    if (c->off && c->len + n > c->cap) {
        memmove(c->body, c->body + c->off, unread);
        c->off = 0;
        c->len = unread;
    }
    if (grow(&c->body, &c->cap, c->len + n) != 0) {
        pthread_mutex_unlock(&c->pool->mu);
        return 0; /* CURLE_WRITE_ERROR: reported as UPSTREAM_ERROR */
    }
    memcpy(c->body + c->len, data, n);
    c->len += n;
    c->bytes += n;
    if (c->len - c->off > c->peak) c->peak = c->len - c->off;
    c->headers_done = 1;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->pool->mu);
    return n;
}

/* ------------------------------------------------------------ event thread */

static void running_unlink(upstream_pool *p, upstream_call *c) {
    if (c->prev) c->prev->next = c->next;
    else p->running = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->running = 0;
}

/* The transfer is over (or never started): record the outcome, wake the
 * consumer, run the fire callback and drop the event thread's reference. */
static void finish(upstream_pool *p, upstream_call *c, upstream_class cls, const char *why) {
    if (c->running) {
        curl_multi_remove_handle(c->multi, c->easy);
        if (c->lane) c->running = 0;
        else running_unlink(p, c);
    }
    char *url = NULL;
    curl_easy_getinfo(c->easy, CURLINFO_EFFECTIVE_URL, &url);
    pthread_mutex_lock(&p->mu);
    c->finished = 1;
    c->headers_done = 1;
    c->cls = cls;
    if (cls != UPSTREAM_OK)
        snprintf(c->msg, sizeof c->msg, "upstream %s %s: %s (%s)", c->method, url ? url : "?",
                 upstream_class_name(cls), why);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&p->mu);
    if (c->done) {
        upstream_result r = {.status = c->status,
                             .cls = cls,
                             .msg = c->msg,
                             .bytes = c->bytes,
                             .latency_s = bs_now() - c->start};
        c->done(c->done_ctx, &r);
    }
    pthread_mutex_lock(&p->mu);
    int last = unref_locked(c);
    pthread_mutex_unlock(&p->mu);
    if (last) call_free(c);
}

/* Ends c as a timeout when no byte came for its idle limit; returns 1 while
 * the limit is armed and not yet reached. */
static int idle_check(upstream_pool *p, upstream_call *c, double now) {
    if (c->idle_s <= 0 || c->paused) return 0;
    if (now - c->last_io < c->idle_s) return 1;
    char why[64];
    snprintf(why, sizeof why, "no data for %.1f s", c->idle_s);
    finish(p, c, UPSTREAM_TIMEOUT, why);
    return 0;
}

/* Finishes the transfers of multi that curl reports done. */
static void reap(upstream_pool *p, CURLM *multi) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        upstream_call *c = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        CURLcode rc = m->data.result;
        finish(p, c, classify(rc), c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    }
}

static void run_ops(upstream_pool *p) {
    pthread_mutex_lock(&p->mu);
    upstream_call *list = p->ops;
    p->ops = NULL;
    pthread_mutex_unlock(&p->mu);
    while (list) {
        upstream_call *c = list;
        list = c->op_next;
        pthread_mutex_lock(&p->mu);
        c->on_ops = 0;
        int add = c->want_add, cancel = c->want_cancel, unpause = c->want_unpause;
        c->want_add = c->want_cancel = c->want_unpause = 0;
        if (unpause) c->paused = 0;
        int started = c->running || c->finished;
        pthread_mutex_unlock(&p->mu);
        if (add && !cancel) {
            CURLMcode mc = curl_multi_add_handle(p->multi, c->easy);
            if (mc == CURLM_OK) {
                c->running = 1;
                c->next = p->running;
                if (p->running) p->running->prev = c;
                p->running = c;
            } else {
                finish(p, c, UPSTREAM_ERROR, curl_multi_strerror(mc));
            }
        } else if (cancel && (c->running || (add && !started))) {
            finish(p, c, UPSTREAM_CANCELLED, "closed before the response ended");
        } else if (unpause && c->running) {
            c->last_io = bs_now(); /* a paused transfer was not idle */
            curl_easy_pause(c->easy, CURLPAUSE_CONT);
        }
        pthread_mutex_lock(&p->mu);
        int last = unref_locked(c);
        pthread_mutex_unlock(&p->mu);
        if (last) call_free(c);
    }
}

static void *event_loop(void *arg) {
    upstream_pool *p = arg;
    for (;;) {
        run_ops(p);
        pthread_mutex_lock(&p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        int still = 0;
        curl_multi_perform(p->multi, &still);
        reap(p, p->multi);
        /* curl's low-speed limit averages over seconds, so a stream that
         * sends a little now and then never trips it: time idleness here */
        int idle_watch = 0;
        double now = bs_now();
        for (upstream_call *c = p->running, *next; c; c = next) {
            next = c->next;
            idle_watch |= idle_check(p, c, now);
        }
        curl_multi_poll(p->multi, NULL, 0, idle_watch ? IDLE_TICK_MS : 1000, NULL);
    }
    while (p->running) finish(p, p->running, UPSTREAM_CANCELLED, "the pool was closed");
    run_ops(p); /* closes that raced with the stop */
    return NULL;
}

/* ------------------------------------------------------------ pool */

static void share_lock(CURL *e, curl_lock_data d, curl_lock_access a, void *ud) {
    (void)e, (void)a;
    pthread_mutex_lock(&((upstream_pool *)ud)->share_mu[d]);
}

static void share_unlock(CURL *e, curl_lock_data d, void *ud) {
    (void)e;
    pthread_mutex_unlock(&((upstream_pool *)ud)->share_mu[d]);
}

static void pool_free(upstream_pool *p) {
    while (p->idle) {
        lane *l = p->idle;
        p->idle = l->next;
        lane_free(l);
    }
    curl_share_cleanup(p->share); /* after the lanes' easy handles let go of it */
    curl_multi_cleanup(p->multi);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_destroy(&p->share_mu[i]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

bs_status upstream_open(int max_host_connections, upstream_pool **out, bs_error *err) {
    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_status != CURLE_OK)
        return bs_fail(err, BS_EIO, "upstream: libcurl init failed: %s", curl_easy_strerror(curl_init_status));
    upstream_pool *p = calloc(1, sizeof *p);
    if (!p) return bs_fail(err, BS_ENOMEM, "upstream: out of memory");
    p->multi = curl_multi_init();
    if (!p->multi) {
        free(p);
        return bs_fail(err, BS_ENOMEM, "upstream: curl_multi_init failed");
    }
    curl_multi_setopt(p->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (max_host_connections > 0)
        curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_host_connections);
    p->max_lanes = max_host_connections > 0 ? max_host_connections : 0;
    pthread_mutex_init(&p->mu, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&p->share_mu[i], NULL);
    p->share = curl_share_init();
    if (p->share) {
        curl_share_setopt(p->share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(p->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(p->share, CURLSHOPT_USERDATA, p);
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(p->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    if (!p->share || pthread_create(&p->thread, NULL, event_loop, p) != 0) {
        pool_free(p);
        return bs_fail(err, BS_EIO, "upstream: cannot start the event thread");
    }
    *out = p;
    return BS_OK;
}

void upstream_close(upstream_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    curl_multi_wakeup(p->multi);
    pthread_join(p->thread, NULL);
    pool_free(p);
}

/* ------------------------------------------------------------ calls */

/* l: the lane to run on (its easy handle is reset and reused); NULL: a new
 * easy handle for the event thread. */
static bs_status call_new(upstream_pool *p, lane *l, const upstream_req *req, int refs, upstream_call **out,
                          bs_error *err) {
    *out = NULL;
    if (!req->url) {
        if (l) lane_put(p, l);
        return bs_fail(err, BS_EINVAL, "upstream: request without url");
    }
    const char *method = req->method ? req->method : req->body ? "POST" : "GET";
    upstream_call *c = calloc(1, sizeof *c);
    if (!c) {
        if (l) lane_put(p, l);
        return bs_fail(err, BS_ENOMEM, "upstream: out of memory");
    }
    c->pool = p;
    c->lane = l;
    c->multi = l ? l->multi : p->multi;
    if (l) { /* the lane's buffers, theirs again at call_free */
        c->hdr = l->hdr;
        c->hdr_cap = l->hdr_cap;
        c->body = l->body;
        c->cap = l->body_cap;
        l->hdr = l->body = NULL;
        l->hdr_cap = l->body_cap = 0;
    }
    c->refs = refs;
    c->start = bs_now();
    snprintf(c->method, sizeof c->method, "%s", method);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->easy = l ? l->easy : curl_easy_init();
    if (!c->easy) {
        call_free(c);
        return bs_fail(err, BS_ENOMEM, "upstream: curl_easy_init failed");
    }
    /* no "Expect: 100-continue" round trip before larger bodies */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    for (int i = 0; h && i < req->n_headers; i++) {
        struct curl_slist *nh = curl_slist_append(h, req->headers[i]);
        if (!nh) {
            curl_slist_free_all(h);
            h = NULL;
        }
        h = nh;
    }
    c->headers = h;
    if (!h) {
        call_free(c);
        return bs_fail(err, BS_ENOMEM, "upstream: out of memory");
    }
    CURL *e = c->easy;
    double connect = req->connect_timeout_s > 0 ? req->connect_timeout_s : 10;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L); /* prefer a multiplexed stream over a new connection */
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect * 1000));
    if (req->timeout_s > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(req->timeout_s * 1000));
    c->idle_s = req->idle_timeout_s;
    c->last_io = bs_now();
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    if (req->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body) != CURLE_OK) {
            call_free(c);
            return bs_fail(err, BS_ENOMEM, "upstream: out of memory copying the request body");
        }
    }
    if (strcmp(method, "GET") == 0 && !req->body) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    *out = c;
    return BS_OK;
}

static void submit(upstream_pool *p, upstream_call *c) {
    pthread_mutex_lock(&p->mu);
    c->want_add = 1;
    queue_op_locked(c);
    pthread_mutex_unlock(&p->mu);
    curl_multi_wakeup(p->multi);
}

bs_status upstream_call_open(upstream_pool *p, const upstream_req *req, upstream_call **out, bs_error *err) {
    /* references: the consumer's and the transfer's (dropped by finish) */
    lane *l = lane_take(p);
    bs_status st = call_new(p, l, req, 2, out, err);
    if (st != BS_OK) return st;
    upstream_call *c = *out;
    if (!l) {
        submit(p, c);
        return BS_OK;
    }
    CURLMcode mc = curl_multi_add_handle(c->multi, c->easy);
    if (mc != CURLM_OK) {
        finish(p, c, UPSTREAM_ERROR, curl_multi_strerror(mc));
        return BS_OK;
    }
    c->running = 1;
    /* sends the request when the lane's connection is alive */
    int still;
    curl_multi_perform(c->multi, &still);
    reap(p, c->multi);
    return BS_OK;
}

/* One round of a lane's transfer on the consumer's thread: wait up to
 * until (bs_now() time; < 0: no limit) for its sockets, then let curl work. */
static void drive(upstream_call *c, double until) {
    double now = bs_now();
    int idle = idle_check(c->pool, c, now);
    if (c->finished) return;
    double wait_ms = idle ? IDLE_TICK_MS : 1000;
    if (until >= 0 && (until - now) * 1000 < wait_ms) wait_ms = until > now ? (until - now) * 1000 : 0;
    curl_multi_poll(c->multi, NULL, 0, (int)wait_ms, NULL);
    int still;
    curl_multi_perform(c->multi, &still);
    reap(c->pool, c->multi);
}

bs_status upstream_fire(upstream_pool *p, const upstream_req *req, upstream_done done, void *ctx, bs_error *err) {
    upstream_call *c;
    bs_status st = call_new(p, NULL, req, 1, &c, err);
    if (st != BS_OK) return st;
    c->done = done;
    c->done_ctx = ctx;
    submit(p, c);
    return BS_OK;
}

upstream_class upstream_call_wait_headers(upstream_call *c, int *status) {
    /* a lane's callbacks run on this thread: its fields need no lock here */
    while (c->lane && !c->headers_done) drive(c, -1);
    pthread_mutex_lock(&c->pool->mu);
    while (!c->headers_done) pthread_cond_wait(&c->cond, &c->pool->mu);
    upstream_class cls = c->status >= 200 ? UPSTREAM_OK : c->cls != UPSTREAM_OK ? c->cls : UPSTREAM_ERROR;
    if (cls == UPSTREAM_ERROR && c->cls == UPSTREAM_OK)
        snprintf(c->msg, sizeof c->msg, "upstream %s: the transfer ended without a status line", c->method);
    *status = cls == UPSTREAM_OK ? c->status : 0;
    pthread_mutex_unlock(&c->pool->mu);
    return cls;
}

const char *upstream_call_header(upstream_call *c, const char *name) {
    pthread_mutex_lock(&c->pool->mu);
    const char *found = NULL;
    for (size_t i = 0; c->headers_done && i < c->hdr_len && !found;) {
        const char *k = c->hdr + i, *v = k + strlen(k) + 1;
        if (strcasecmp(k, name) == 0) found = v;
        i = (size_t)(v - c->hdr) + strlen(v) + 1;
    }
    pthread_mutex_unlock(&c->pool->mu);
    return found;
}

int upstream_call_read(upstream_call *c, char *buf, size_t cap, size_t *n, double wait_s) {
    upstream_pool *p = c->pool;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (wait_s > 0) {
        long long ns = deadline.tv_nsec + (long long)(wait_s * 1e9);
        deadline.tv_sec += (time_t)(ns / 1000000000);
        deadline.tv_nsec = (long)(ns % 1000000000);
    }
    *n = 0;
    if (c->lane) {
        double until = wait_s < 0 ? -1 : bs_now() + wait_s;
        while (c->len == c->off && !c->finished) {
            drive(c, until);
            if (until >= 0 && bs_now() >= until) break;
        }
    }
    int wake = 0, rc = 1;
    pthread_mutex_lock(&p->mu);
    while (!c->lane && c->len == c->off && !c->finished) {
        if (wait_s < 0) pthread_cond_wait(&c->cond, &p->mu);
        else if (pthread_cond_timedwait(&c->cond, &p->mu, &deadline) != 0) break;
    }
    if (c->len > c->off) {
        size_t k = c->len - c->off < cap ? c->len - c->off : cap;
        memcpy(buf, c->body + c->off, k);
        c->off += k;
        if (c->off == c->len) c->off = c->len = 0;
        *n = k;
        if (c->paused && !c->want_unpause && c->len - c->off <= UPSTREAM_BUFFER_MAX / 2 && !c->finished) {
            if (c->lane) {
                c->paused = 0;
            } else {
                c->want_unpause = 1;
                queue_op_locked(c);
            }
            wake = 1;
        }
    } else if (c->finished) {
        rc = c->cls == UPSTREAM_OK ? 0 : -1;
    }
    pthread_mutex_unlock(&p->mu);
    if (wake && c->lane) {
        /* may run the write callback at once: not under the lock */
        c->last_io = bs_now();
        curl_easy_pause(c->easy, CURLPAUSE_CONT);
    } else if (wake) {
        curl_multi_wakeup(p->multi);
    }
    return rc;
}

upstream_class upstream_call_failure(upstream_call *c, const char **msg) {
    pthread_mutex_lock(&c->pool->mu);
    upstream_class cls = c->cls;
    if (msg) *msg = c->msg;
    pthread_mutex_unlock(&c->pool->mu);
    return cls;
}

size_t upstream_call_peak_buffered(upstream_call *c) {
    pthread_mutex_lock(&c->pool->mu);
    size_t peak = c->peak;
    pthread_mutex_unlock(&c->pool->mu);
    return peak;
}

void upstream_call_close(upstream_call *c) {
    if (!c) return;
    upstream_pool *p = c->pool;
    if (c->lane && !c->finished) finish(p, c, UPSTREAM_CANCELLED, "closed before the response ended");
    int wake = 0;
    pthread_mutex_lock(&p->mu);
    c->consumer_gone = 1;
    if (!c->finished) {
        c->want_cancel = 1;
        queue_op_locked(c);
        wake = 1;
    }
    int last = unref_locked(c);
    pthread_mutex_unlock(&p->mu);
    if (wake) curl_multi_wakeup(p->multi);
    if (last) call_free(c);
}
