/* tests/gateway/test_upstream.c — gateway/upstream.c against the mock
 * upstream (build/tests/gateway/mock_upstream, next to this binary, or
 * $BASALT_MOCK_UPSTREAM), the textual rewrites and error mapping of
 * server/proxy.c, and proxy_forward inside a minimal http_server. */
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "gateway/upstream.h"
#include "server/proxy.h"
#include "../support/test.h"

static pid_t mock_pid;
static int mock_port;
static upstream_pool *pool;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *mock_path(void) {
    static char path[4096];
    const char *env = getenv("BASALT_MOCK_UPSTREAM");
    if (env) return access(env, X_OK) == 0 ? env : NULL;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return NULL;
    self[n] = '\0';
    snprintf(path, sizeof path, "%s/mock_upstream", dirname(self));
    return access(path, X_OK) == 0 ? path : NULL;
}

static int start_mock(void) {
    const char *bin = mock_path();
    if (!bin) return -1;
    int fd[2];
    if (pipe(fd) != 0) return -1;
    mock_pid = fork();
    if (mock_pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl(bin, bin, "--port", "0", "--name", "A", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char line[128] = {0};
    size_t got = 0;
    while (got < sizeof line - 1 && !strchr(line, '\n')) {
        ssize_t n = read(fd[0], line + got, sizeof line - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fd[0]);
    return sscanf(line, "listening on %d", &mock_port) == 1 ? 0 : -1;
}

static void stop_mock(void) {
    if (mock_pid <= 0) return;
    kill(mock_pid, SIGTERM);
    waitpid(mock_pid, NULL, 0);
}

static char *url_of(const char *path) {
    static char url[8][256];
    static int next;
    char *u = url[next++ % 8];
    snprintf(u, 256, "http://127.0.0.1:%d%s", mock_port, path);
    return u;
}

/* A blocking request through the pool: the status, or -class on failure. */
static int fetch(const char *method, const char *url, const char *body, srv_buf *out, double timeout_s) {
    upstream_req req = {.method = method, .url = url, .body = body, .body_len = body ? strlen(body) : 0,
                        .timeout_s = timeout_s};
    upstream_call *c;
    bs_error err;
    if (upstream_call_open(pool, &req, &c, &err) != BS_OK) return -UPSTREAM_ERROR;
    int status;
    upstream_class cls = upstream_call_wait_headers(c, &status);
    if (cls != UPSTREAM_OK) {
        upstream_call_close(c);
        return -(int)cls;
    }
    char buf[4096];
    size_t n;
    int rc;
    while ((rc = upstream_call_read(c, buf, sizeof buf, &n, -1)) == 1) buf_append(out, buf, n);
    if (rc < 0) status = -(int)upstream_call_failure(c, NULL);
    upstream_call_close(c);
    return status;
}

static void faults(const char *json) {
    srv_buf b = {0};
    fetch("DELETE", url_of("/mock/faults"), NULL, &b, 5);
    if (json) fetch("POST", url_of("/mock/faults"), json, &b, 5);
    buf_free(&b);
}

static json_t *stats(void) {
    srv_buf b = {0};
    fetch("GET", url_of("/mock/stats"), NULL, &b, 5);
    json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    buf_free(&b);
    return j;
}

#define NEED_MOCK() \
    if (!pool) SKIP("mock_upstream not built (build/tests/gateway/mock_upstream)")

static const char *CHAT = "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"12345678\"}]}";
static const char *CHAT_STREAM =
    "{\"model\":\"m1\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"12345678\"}]}";

/* ------------------------------------------------------------ upstream */

static void test_nonstream_call(void) {
    NEED_MOCK();
    upstream_req req = {.url = url_of("/v1/chat/completions"), .body = CHAT, .body_len = strlen(CHAT)};
    upstream_call *c;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &req, &c, &err), &err);
    int status = 0;
    CHECK_INT(upstream_call_wait_headers(c, &status), UPSTREAM_OK);
    CHECK_INT(status, 200);
    CHECK_STR(upstream_call_header(c, "content-type"), "application/json");
    CHECK(upstream_call_header(c, "X-Nope") == NULL);
    srv_buf b = {0};
    char buf[64];
    size_t n;
    int rc;
    while ((rc = upstream_call_read(c, buf, sizeof buf, &n, -1)) == 1) buf_append(&b, buf, n);
    CHECK_INT(rc, 0);
    json_t *doc = json_loadb(b.data, b.len, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(doc, "choices"), 0),
                                                                 "message"),
                                                 "content")),
              "hello from A (model m1)");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(doc, "usage"), "prompt_tokens")), 2);
    json_decref(doc);
    buf_free(&b);
    upstream_call_close(c);
}

static void test_stream_call(void) {
    NEED_MOCK();
    srv_buf b = {0};
    CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), CHAT_STREAM, &b, 10), 200);
    int events = 0;
    for (const char *p = b.data; p && (p = strstr(p, "data: ")); p++) events++;
    CHECK_INT(events, 8); /* role, 5 words, finish, [DONE] */
    CHECK(b.len > 14 && strcmp(b.data + b.len - 14, "data: [DONE]\n\n") == 0);
    CHECK(strstr(b.data, "\"usage\"") == NULL);
    buf_free(&b);
}

static void test_connection_reuse(void) {
    NEED_MOCK();
    json_t *before = stats();
    for (int i = 0; i < 20; i++) {
        srv_buf b = {0};
        CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), CHAT, &b, 10), 200);
        buf_free(&b);
    }
    json_t *after = stats();
    long conns = (long)(json_integer_value(json_object_get(after, "connections")) -
                        json_integer_value(json_object_get(before, "connections")));
    /* 20 calls plus one stats call: all on the kept-alive connection */
    CHECK(conns <= 1);
    CHECK_INT(json_integer_value(json_object_get(after, "requests")) - json_integer_value(json_object_get(before, "requests")), 20);
    json_decref(before);
    json_decref(after);
}

static void test_hang_does_not_delay_others(void) {
    NEED_MOCK();
    faults("[{\"hang\":true,\"hang_ms\":10000}]");
    upstream_req slow = {.url = url_of("/v1/chat/completions"), .body = CHAT, .body_len = strlen(CHAT), .timeout_s = 2};
    upstream_call *hung;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &slow, &hung, &err), &err);
    sleep_ms(100); /* so the hang step goes to this call */
    double t0 = bs_now();
    srv_buf b = {0};
    CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), CHAT, &b, 10), 200);
    double fast = bs_now() - t0;
    buf_free(&b);
    /* the fast call finished while the hung one still waits for its timeout */
    CHECK_INT(upstream_call_failure(hung, NULL), UPSTREAM_OK);
    int status = -1;
    CHECK_INT(upstream_call_wait_headers(hung, &status), UPSTREAM_TIMEOUT);
    double hang = bs_now() - t0;
    CHECK_INT(status, 0);
    CHECK(fast < hang);
    const char *msg;
    upstream_call_failure(hung, &msg);
    CHECK(strstr(msg, "timeout") != NULL);
    upstream_call_close(hung);
    faults(NULL);
}

static void test_idle_timeout(void) {
    NEED_MOCK();
    faults("[{\"chunk_delay_ms\":3000}]");
    upstream_req req = {.url = url_of("/v1/chat/completions"), .body = CHAT_STREAM, .body_len = strlen(CHAT_STREAM),
                        .idle_timeout_s = 1};
    upstream_call *c;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &req, &c, &err), &err);
    int status;
    CHECK_INT(upstream_call_wait_headers(c, &status), UPSTREAM_OK);
    char buf[4096];
    size_t n;
    int rc;
    while ((rc = upstream_call_read(c, buf, sizeof buf, &n, -1)) == 1) {}
    CHECK_INT(rc, -1);
    CHECK_INT(upstream_call_failure(c, NULL), UPSTREAM_TIMEOUT);
    upstream_call_close(c);
    faults(NULL);
}

static void test_cut_stream(void) {
    NEED_MOCK();
    faults("[{\"cut_after_chunks\":2}]");
    srv_buf b = {0};
    CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), CHAT_STREAM, &b, 10), -UPSTREAM_CUT);
    int events = 0;
    for (const char *p = b.data; p && (p = strstr(p, "data: ")); p++) events++;
    CHECK_INT(events, 2); /* everything before the cut arrived */
    buf_free(&b);
}

static void test_error_statuses(void) {
    NEED_MOCK();
    faults("[{\"status\":500},{\"status\":429,\"retry_after\":7}]");
    srv_buf b = {0};
    CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), CHAT, &b, 10), 500);
    upstream_req req = {.url = url_of("/v1/chat/completions"), .body = CHAT, .body_len = strlen(CHAT)};
    upstream_call *c;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &req, &c, &err), &err);
    int status;
    CHECK_INT(upstream_call_wait_headers(c, &status), UPSTREAM_OK);
    CHECK_INT(status, 429);
    CHECK_STR(upstream_call_header(c, "Retry-After"), "7");
    upstream_call_close(c);
    buf_free(&b);
    faults(NULL);
}

static void test_connect_error(void) {
    NEED_MOCK();
    srv_buf b = {0};
    CHECK_INT(fetch("GET", "http://127.0.0.1:1/v1/models", NULL, &b, 5), -UPSTREAM_CONNECT);
    buf_free(&b);
}

static void test_flow_control(void) {
    NEED_MOCK();
    const size_t total = (size_t)6 << 20;
    upstream_req req = {.method = "GET", .url = url_of("/mock/blob?kb=6144")};
    upstream_call *c;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &req, &c, &err), &err);
    int status;
    CHECK_INT(upstream_call_wait_headers(c, &status), UPSTREAM_OK);
    sleep_ms(400); /* a slow reader: the buffer fills and the transfer pauses */
    char buf[8192];
    size_t n, got = 0, bad = 0;
    int rc, reads = 0;
    while ((rc = upstream_call_read(c, buf, sizeof buf, &n, -1)) == 1) {
        for (size_t i = 0; i < n; i++) bad += (unsigned char)buf[i] != (got + i) % 251;
        got += n;
        if (++reads % 128 == 0) sleep_ms(20);
    }
    CHECK_INT(rc, 0);
    CHECK_INT(got, total);
    CHECK_INT(bad, 0);
    size_t peak = upstream_call_peak_buffered(c);
    CHECK(peak >= UPSTREAM_BUFFER_MAX);                    /* the limit was reached ... */
    CHECK(peak <= UPSTREAM_BUFFER_MAX + ((size_t)256 << 10)); /* ... and held */
    upstream_call_close(c);
}

static void test_cancel_mid_stream(void) {
    NEED_MOCK();
    faults("[{\"chunk_delay_ms\":200}]");
    const char *body = "{\"model\":\"m1\",\"stream\":true,\"max_tokens\":100,\"messages\":[]}";
    upstream_req req = {.url = url_of("/v1/chat/completions"), .body = body, .body_len = strlen(body)};
    upstream_call *c;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &req, &c, &err), &err);
    int status;
    CHECK_INT(upstream_call_wait_headers(c, &status), UPSTREAM_OK);
    char buf[256];
    size_t n;
    CHECK_INT(upstream_call_read(c, buf, sizeof buf, &n, -1), 1);
    CHECK(n > 0);
    upstream_call_close(c);
    /* the pool goes on serving */
    srv_buf b = {0};
    CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), CHAT, &b, 10), 200);
    buf_free(&b);
    faults(NULL);
}

typedef struct fired {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, status;
    upstream_class cls;
    uint64_t bytes;
    double latency;
} fired;

static void on_fired(void *ctx, const upstream_result *r) {
    fired *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->done = 1;
    f->status = r->status;
    f->cls = r->cls;
    f->bytes = r->bytes;
    f->latency = r->latency_s;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->mu);
}

static void test_fire(void) {
    NEED_MOCK();
    fired f = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    upstream_req req = {.url = url_of("/v1/chat/completions"), .body = CHAT, .body_len = strlen(CHAT)};
    bs_error err;
    CHECK_OK(upstream_fire(pool, &req, on_fired, &f, &err), &err);
    pthread_mutex_lock(&f.mu);
    while (!f.done) pthread_cond_wait(&f.cond, &f.mu);
    pthread_mutex_unlock(&f.mu);
    CHECK_INT(f.status, 200);
    CHECK_INT(f.cls, UPSTREAM_OK);
    CHECK(f.bytes > 100);
    CHECK(f.latency > 0);
}

/* ------------------------------------------------------------ proxy: pure parts */

static void test_rewrite_model(void) {
    const char *in = "{ \"id\" : \"x\", \"choices\":[{\"model\":\"inner\",\"t\":\"\\\"model\\\":\\\"no\\\"\"}] ,  "
                     "\"model\"  :  \"up-m\" , \"z\":1.50}";
    srv_buf out = {0};
    CHECK_INT(proxy_rewrite_model(in, strlen(in), "pub \"1\"", &out), 1);
    CHECK_STR(out.data, "{ \"id\" : \"x\", \"choices\":[{\"model\":\"inner\",\"t\":\"\\\"model\\\":\\\"no\\\"\"}] ,  "
                        "\"model\"  :  \"pub \\\"1\\\"\" , \"z\":1.50}");
    buf_free(&out);
    const char *nested = "{\"a\":{\"model\":\"m\"}}";
    CHECK_INT(proxy_rewrite_model(nested, strlen(nested), "p", &out), 0);
    CHECK_STR(out.data, nested);
    buf_free(&out);
}

/* out for proxy_rewrite_request, "" when it declined (and appended nothing) */
static char *rewrite_request(const char *in, int stream) {
    srv_buf out = {0};
    int ok = proxy_rewrite_request(in, strlen(in), "up \"m\"", stream, &out);
    CHECK(ok ? out.len > 0 : out.len == 0);
    char *s = strdup(ok ? out.data : "");
    buf_free(&out);
    return s;
}

static void test_rewrite_request(void) {
    const char *cases[][3] = {
        /* in, non-stream out, stream out */
        {"{ \"model\" : \"pub\", \"messages\":[{\"model\":\"x\"}], \"n\":1.50 }",
         "{ \"model\" : \"up \\\"m\\\"\", \"messages\":[{\"model\":\"x\"}], \"n\":1.50 }",
         "{ \"model\" : \"up \\\"m\\\"\", \"messages\":[{\"model\":\"x\"}], \"n\":1.50,\"stream_options\":{\"include_usage\":true} }"},
        {"{\"stream_options\":{\"include_usage\":false},\"model\":\"p\"}", NULL,
         "{\"stream_options\":{\"include_usage\":true},\"model\":\"up \\\"m\\\"\"}"},
        {"{\"model\":\"p\",\"stream_options\":{ \"x\":1 }}", NULL,
         "{\"model\":\"up \\\"m\\\"\",\"stream_options\":{ \"include_usage\":true,\"x\":1 }}"},
        {"{\"model\":\"p\",\"stream_options\":null}", NULL,
         "{\"model\":\"up \\\"m\\\"\",\"stream_options\":{\"include_usage\":true}}"},
        /* declined: the caller re-encodes */
        {"{\"model\":\"a\",\"model\":\"b\"}", "", ""},
        {"{\"mod\\u0065l\":\"a\"}", "", ""},
        {"{\"model\":null}", "", ""},
        {"[\"model\"]", "", ""},
        {"{\"model\":\"p\",\"stream_options\":{\"include_usage\":1,\"include_usage\":2}}", NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int stream = 0; stream < 2; stream++) {
            const char *want = cases[i][1 + stream];
            if (!want) continue;
            char *got = rewrite_request(cases[i][0], stream);
            CHECK_STR(got, want);
            if (*got) {
                /* what a parser reads: the same request with the new model */
                json_t *a = json_loads(cases[i][0], 0, NULL), *b = json_loads(got, 0, NULL);
                CHECK(a && b);
                json_object_set_new(a, "model", json_string("up \"m\""));
                if (stream) {
                    json_t *so = json_object_get(a, "stream_options");
                    if (!json_is_object(so)) json_object_set_new(a, "stream_options", so = json_object());
                    json_object_set_new(so, "include_usage", json_true());
                }
                CHECK(json_equal(a, b));
                json_decref(a);
                json_decref(b);
            }
            free(got);
        }
    }
}

static void test_relay_event(void) {
    proxy_attempt a = {.prompt_tokens = -1, .completion_tokens = -1};
    srv_buf out = {0};
    /* usage after model, odd spacing, CRLF */
    const char *ev = "data:{ \"choices\" : [ {\"delta\":{\"content\":\"\\\"usage\\\":null\"}} ], \"model\" :\"up\"  ,  "
                     "\"usage\" : null , \"id\":\"c\" }\r\n\r\n";
    proxy_relay_event(ev, strlen(ev), "pub", 1, &out, &a);
    CHECK_STR(out.data, "data:{ \"choices\" : [ {\"delta\":{\"content\":\"\\\"usage\\\":null\"}} ], \"model\" :\"pub\" , "
                        "\"id\":\"c\" }\r\n\r\n");
    buf_consume(&out, out.len);
    /* usage first */
    ev = "data: {\"usage\":null, \"model\":\"up\",\"choices\":[{}]}\n\n";
    proxy_relay_event(ev, strlen(ev), "pub", 1, &out, &a);
    CHECK_STR(out.data, "data: {\"model\":\"pub\",\"choices\":[{}]}\n\n");
    buf_consume(&out, out.len);
    /* kept when the client asked for usage */
    proxy_relay_event(ev, strlen(ev), "pub", 0, &out, &a);
    CHECK_STR(out.data, "data: {\"usage\":null, \"model\":\"pub\",\"choices\":[{}]}\n\n");
    buf_consume(&out, out.len);
    /* the usage-only chunk: dropped or kept, counted either way */
    ev = "data: {\"model\":\"up\",\"choices\":[ ],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n";
    proxy_relay_event(ev, strlen(ev), "pub", 1, &out, &a);
    CHECK_INT(out.len, 0);
    CHECK_INT(a.prompt_tokens, 9);
    CHECK_INT(a.completion_tokens, 2);
    proxy_relay_event(ev, strlen(ev), "pub", 0, &out, &a);
    CHECK_STR(out.data, "data: {\"model\":\"pub\",\"choices\":[ ],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n");
    buf_consume(&out, out.len);
    /* not JSON objects: untouched */
    ev = "data: [DONE]\n\n: ping\n\n";
    proxy_relay_event(ev, strlen(ev), "pub", 1, &out, &a);
    CHECK_STR(out.data, ev);
    buf_free(&out);
}

static void test_classify(void) {
    json_t *ctx = json_pack("{s:s,s:s}", "message", "too long", "code", "context_length_exceeded");
    json_t *ctx2 = json_pack("{s:s}", "message", "This model's maximum context length is 8192 tokens");
    json_t *cf = json_pack("{s:s,s:s}", "message", "filtered", "code", "content_filter");
    json_t *cp = json_pack("{s:s,s:s}", "message", "Your request was rejected by our content policy", "type",
                           "invalid_request_error");
    CHECK_INT(proxy_classify(400, UPSTREAM_OK, ctx), PROXY_ERR_CONTEXT);
    CHECK_INT(proxy_classify(400, UPSTREAM_OK, ctx2), PROXY_ERR_CONTEXT);
    CHECK_INT(proxy_classify(400, UPSTREAM_OK, cf), PROXY_ERR_CONTENT);
    CHECK_INT(proxy_classify(400, UPSTREAM_OK, cp), PROXY_ERR_CONTENT);
    CHECK_INT(proxy_classify(400, UPSTREAM_OK, NULL), PROXY_ERR_CLIENT);
    CHECK_INT(proxy_classify(401, UPSTREAM_OK, NULL), PROXY_ERR_CLIENT);
    CHECK_INT(proxy_classify(429, UPSTREAM_OK, NULL), PROXY_ERR_RATE_LIMIT);
    CHECK_INT(proxy_classify(503, UPSTREAM_OK, NULL), PROXY_ERR_SERVER);
    CHECK_INT(proxy_classify(0, UPSTREAM_TIMEOUT, NULL), PROXY_ERR_TIMEOUT);
    CHECK_INT(proxy_classify(0, UPSTREAM_CONNECT, NULL), PROXY_ERR_CONNECTION);
    CHECK_INT(proxy_classify(200, UPSTREAM_CUT, NULL), PROXY_ERR_CONNECTION);
    CHECK_INT(proxy_classify(200, UPSTREAM_OK, NULL), PROXY_ERR_NONE);
    json_decref(ctx);
    json_decref(ctx2);
    json_decref(cf);
    json_decref(cp);
}

static void test_error_to_openai(void) {
    proxy_attempt a = {.status = 400, .error = json_pack("{s:s,s:s,s:s,s:n}", "message", "bad thing", "type",
                                                         "invalid_request_error", "code", "context_length_exceeded",
                                                         "param")};
    json_t *body;
    CHECK_INT(proxy_error_to_openai(&a, &body), 400);
    json_t *e = json_object_get(body, "error");
    CHECK_STR(json_string_value(json_object_get(e, "message")), "bad thing");
    CHECK_STR(json_string_value(json_object_get(e, "code")), "context_length_exceeded");
    CHECK(json_is_null(json_object_get(e, "param")));
    json_decref(body);
    proxy_attempt_clear(&a);
    CHECK(a.error == NULL);
    a = (proxy_attempt){.status = 429, .retry_after_s = 3};
    CHECK_INT(proxy_error_to_openai(&a, &body), 429);
    json_decref(body);
    a = (proxy_attempt){.status = 503};
    CHECK_INT(proxy_error_to_openai(&a, &body), 502);
    CHECK_STR(json_string_value(json_object_get(json_object_get(body, "error"), "type")), "upstream_error");
    json_decref(body);
    a = (proxy_attempt){.status = 0, .fail = UPSTREAM_TIMEOUT};
    CHECK_INT(proxy_error_to_openai(&a, &body), 504);
    json_decref(body);
    a = (proxy_attempt){.status = 0, .fail = UPSTREAM_CONNECT};
    CHECK_INT(proxy_error_to_openai(&a, &body), 502);
    json_decref(body);
}

/* ------------------------------------------------------------ proxy through http_server */

#define SECRET "sk-test-SECRET-1234"

typedef struct front {
    gw_provider provider;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int finished;
    proxy_attempt last; /* copied in finished (error not kept) */
    char err[BS_ERROR_MSG_MAX];
    char url[128]; /* the front's /v1/chat/completions */
} front;

static void on_finished(void *ctx, const proxy_attempt *a) {
    front *f = ctx;
    pthread_mutex_lock(&f->mu);
    f->last = *a;
    f->last.error = NULL;
    f->finished++;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
}

static void front_handler(void *user, http_request *r) {
    front *f = user;
    json_t *body = json_loads(http_body(r), 0, NULL);
    proxy_attempt a = {.pool = pool,
                       .provider = &f->provider,
                       .upstream_model = "up-m",
                       .public_model = "pub",
                       .endpoint = strstr(http_path(r), "/chat") ? "/chat/completions" : "/completions",
                       .body = body,
                       .stream = json_is_true(json_object_get(body, "stream")),
                       .include_usage = json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage")),
                       .idle_timeout_s = 5,
                       .finished = on_finished,
                       .finished_ctx = f};
    bs_error err = {0};
    if (proxy_forward(r, &a, &err) != BS_OK) {
        json_t *e;
        int status = proxy_error_to_openai(&a, &e);
        char *s = json_dumps(e, JSON_COMPACT);
        if (a.retry_after_s >= 0) {
            char ra[16];
            snprintf(ra, sizeof ra, "%d", a.retry_after_s);
            http_add_header(r, "Retry-After", ra);
        }
        http_respond(r, status, "application/json", s, strlen(s));
        free(s);
        json_decref(e);
        pthread_mutex_lock(&f->mu);
        snprintf(f->err, sizeof f->err, "%s", err.msg);
        pthread_mutex_unlock(&f->mu);
    }
    proxy_attempt_clear(&a);
    json_decref(body);
}

static http_server *front_open(front *f) {
    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", mock_port);
    *f = (front){.provider = {.name = "mockp", .base_url = strdup(base), .api_key = SECRET, .timeout_s = 30,
                              .connect_timeout_s = 5, .max_connections = 8},
                 .mu = PTHREAD_MUTEX_INITIALIZER,
                 .cond = PTHREAD_COND_INITIALIZER};
    http_config c = {.host = "127.0.0.1", .port = 0, .max_body = 1 << 20, .idle_timeout_s = 30, .max_connections = 64};
    http_server *s = NULL;
    bs_error err;
    CHECK_OK(http_server_open(&c, front_handler, NULL, f, &s, &err), &err);
    if (s) snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/v1/chat/completions", http_server_port(s));
    return s;
}

static void front_close(http_server *s, front *f) {
    http_server_close(s);
    free(f->provider.base_url);
}

static int wait_finished(front *f, int n) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&f->mu);
    while (f->finished < n && pthread_cond_timedwait(&f->cond, &f->mu, &dl) != ETIMEDOUT) {}
    int got = f->finished;
    pthread_mutex_unlock(&f->mu);
    return got >= n;
}

static char *replace_all(const char *s, const char *from, const char *to) {
    srv_buf b = {0};
    for (const char *p = s;;) {
        const char *hit = strstr(p, from);
        if (!hit) {
            buf_puts(&b, p);
            return b.data;
        }
        buf_append(&b, p, (size_t)(hit - p));
        buf_puts(&b, to);
        p = hit + strlen(from);
    }
}

/* The client's bytes through the proxy equal the upstream's direct answer
 * to the same request (for model "up-m"), with only "up-m" -> "pub". */
static void check_relay(const char *req_body) {
    front f;
    http_server *s = front_open(&f);
    if (!s) return;
    faults("{\"always\":{\"raw\":true}}");
    char *direct_body = replace_all(req_body, "\"pub\"", "\"up-m\"");
    srv_buf direct = {0}, relayed = {0};
    CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), direct_body, &direct, 10), 200);
    CHECK_INT(fetch("POST", f.url, req_body, &relayed, 10), 200);
    char *expect = replace_all(direct.data, "\"up-m\"", "\"pub\"");
    CHECK(strstr(direct.data, "\"up-m\"") != NULL);
    CHECK_STR(relayed.data, expect);
    CHECK(wait_finished(&f, 1));
    CHECK_INT(f.last.prompt_tokens, 0);
    CHECK(f.last.completion_tokens > 5);
    CHECK(f.last.ttft_s >= 0);
    CHECK_INT(f.last.fail, UPSTREAM_OK);
    CHECK_INT(f.last.responded, 1);
    json_t *st = stats();
    json_t *sent = json_object_get(st, "last_body");
    CHECK_STR(json_string_value(json_object_get(sent, "model")), "up-m");
    CHECK(json_is_true(json_object_get(json_object_get(sent, "stream_options"), "include_usage")));
    CHECK_STR(json_string_value(json_object_get(json_object_get(st, "last_headers"), "Authorization")),
              "Bearer " SECRET);
    json_decref(st);
    free(expect);
    free(direct_body);
    buf_free(&direct);
    buf_free(&relayed);
    faults(NULL);
    front_close(s, &f);
}

static void test_proxy_stream_exact(void) {
    NEED_MOCK();
    check_relay("{\"model\":\"pub\",\"stream\":true,\"messages\":[]}");
}

static void test_proxy_stream_exact_with_usage(void) {
    NEED_MOCK();
    check_relay("{\"model\":\"pub\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[]}");
}

static void test_proxy_nonstream_exact(void) {
    NEED_MOCK();
    front f;
    http_server *s = front_open(&f);
    if (!s) return;
    faults("{\"always\":{\"raw\":true}}");
    srv_buf direct = {0}, relayed = {0};
    CHECK_INT(fetch("POST", url_of("/v1/chat/completions"), "{\"model\":\"up-m\",\"messages\":[]}", &direct, 10), 200);
    CHECK_INT(fetch("POST", f.url, "{\"model\":\"pub\",\"messages\":[]}", &relayed, 10), 200);
    char *expect = replace_all(direct.data, "\"up-m\",", "\"pub\",");
    CHECK_STR(relayed.data, expect);
    CHECK(wait_finished(&f, 1));
    CHECK_INT(f.last.completion_tokens, 5);
    free(expect);
    buf_free(&direct);
    buf_free(&relayed);
    faults(NULL);
    front_close(s, &f);
}

static void test_proxy_errors_hide_key(void) {
    NEED_MOCK();
    front f;
    http_server *s = front_open(&f);
    if (!s) return;
    faults("[{\"status\":401,\"code\":\"invalid_api_key\",\"message\":\"Incorrect API key provided: " SECRET "\"},"
           "{\"status\":429,\"retry_after\":4},{\"status\":503}]");
    srv_buf b = {0};
    CHECK_INT(fetch("POST", f.url, "{\"model\":\"pub\",\"messages\":[]}", &b, 10), 401);
    CHECK(strstr(b.data, "Incorrect API key provided: [redacted]") != NULL);
    CHECK(strstr(b.data, SECRET) == NULL);
    CHECK(strstr(f.err, SECRET) == NULL);
    CHECK(strstr(f.err, "HTTP 401") != NULL);
    buf_consume(&b, b.len);
    /* 429 keeps its Retry-After */
    upstream_req req = {.url = f.url, .body = "{\"model\":\"pub\"}", .body_len = 15};
    upstream_call *c;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &req, &c, &err), &err);
    int status;
    CHECK_INT(upstream_call_wait_headers(c, &status), UPSTREAM_OK);
    CHECK_INT(status, 429);
    CHECK_STR(upstream_call_header(c, "Retry-After"), "4");
    upstream_call_close(c);
    CHECK_INT(fetch("POST", f.url, "{\"model\":\"pub\",\"messages\":[]}", &b, 10), 502);
    CHECK(strstr(b.data, "upstream_error") != NULL);
    buf_free(&b);
    faults(NULL);
    front_close(s, &f);
}

static void test_proxy_cut_mid_stream(void) {
    NEED_MOCK();
    front f;
    http_server *s = front_open(&f);
    if (!s) return;
    faults("[{\"cut_after_chunks\":3}]");
    srv_buf b = {0};
    CHECK_INT(fetch("POST", f.url, "{\"model\":\"pub\",\"stream\":true,\"messages\":[]}", &b, 10), 200);
    CHECK(strstr(b.data, "\"model\":\"pub\"") != NULL);
    CHECK(strstr(b.data, "data: {\"error\":{") != NULL);
    CHECK(strstr(b.data, "[DONE]") == NULL);
    CHECK(wait_finished(&f, 1));
    CHECK_INT(f.last.fail, UPSTREAM_CUT);
    buf_free(&b);
    faults(NULL);
    front_close(s, &f);
}

static void test_proxy_client_gone_cancels(void) {
    NEED_MOCK();
    front f;
    http_server *s = front_open(&f);
    if (!s) return;
    faults("[{\"chunk_delay_ms\":300}]");
    const char *body = "{\"model\":\"pub\",\"stream\":true,\"max_tokens\":200,\"messages\":[]}";
    upstream_req req = {.url = f.url, .body = body, .body_len = strlen(body)};
    upstream_call *c;
    bs_error err;
    CHECK_OK(upstream_call_open(pool, &req, &c, &err), &err);
    int status;
    CHECK_INT(upstream_call_wait_headers(c, &status), UPSTREAM_OK);
    char buf[512];
    size_t n;
    CHECK_INT(upstream_call_read(c, buf, sizeof buf, &n, -1), 1);
    double t0 = bs_now();
    upstream_call_close(c); /* the client leaves after the first event */
    CHECK(wait_finished(&f, 1));
    CHECK(bs_now() - t0 < 5); /* long before the 60 s the stream would take */
    CHECK(f.last.latency_s < 5);
    faults(NULL);
    front_close(s, &f);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    bs_error err;
    if (start_mock() == 0 && upstream_open(16, &pool, &err) != BS_OK) pool = NULL;
    RUN(test_nonstream_call);
    RUN(test_stream_call);
    RUN(test_connection_reuse);
    RUN(test_hang_does_not_delay_others);
    RUN(test_idle_timeout);
    RUN(test_cut_stream);
    RUN(test_error_statuses);
    RUN(test_connect_error);
    RUN(test_flow_control);
    RUN(test_cancel_mid_stream);
    RUN(test_fire);
    RUN(test_rewrite_model);
    RUN(test_rewrite_request);
    RUN(test_relay_event);
    RUN(test_classify);
    RUN(test_error_to_openai);
    RUN(test_proxy_stream_exact);
    RUN(test_proxy_stream_exact_with_usage);
    RUN(test_proxy_nonstream_exact);
    RUN(test_proxy_errors_hide_key);
    RUN(test_proxy_cut_mid_stream);
    RUN(test_proxy_client_gone_cancels);
    upstream_close(pool);
    stop_mock();
    TEST_MAIN_END();
}
