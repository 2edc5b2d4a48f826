/* reward/remote.c — external reward functions speaking Bedrock's reward
 * Lambda contract: the event is a JSON array [{id, messages, metadata}],
 * the answer a JSON array [{id, aggregate_reward_score, metrics_list}]
 * matched by id.
 *
 * http: batches are POSTed concurrently through one libcurl multi handle;
 * a 5xx, a timeout or a failed connection is retried after 100 ms · 2^k
 * (at most 2 s) up to `retries` times; a 4xx is final.
 * command: one process per batch, fork/exec without a shell, the event on
 * stdin, the answer on stdout; rlimits on CPU seconds, address space and
 * open files; SIGKILL at timeout_ms; the start of stderr goes into the
 * error message.  Batches run one after another.
 *
 * Every failure makes the batch's (or the sample's) score NAN and is
 * counted by kind; nothing here aborts scoring. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "reward/reward_impl.h"

#define MAX_RESPONSE (64u << 20) /* a reward answer is small; more is a broken endpoint */
#define STDERR_KEEP 400

void remote_fail(reward_errors *errs, reward_error_kind kind, int n, const char *fmt, ...) {
    errs->count[kind] += n;
    if (errs->first[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errs->first, sizeof errs->first, fmt, ap);
    va_end(ap);
}

static void sample_id(const reward_sample *s, int index, char *out, size_t cap) {
    if (s->id)
        snprintf(out, cap, "%s", s->id);
    else
        snprintf(out, cap, "%d", index);
}

json_t *remote_event(const reward_sample *samples, int first, int n) {
    json_t *ev = json_array();
    for (int i = first; i < first + n; i++) {
        const reward_sample *s = &samples[i];
        char id[128];
        sample_id(s, i, id, sizeof id);
        json_t *msgs = s->messages ? json_deep_copy(s->messages)
                                   : json_pack("[{s:s,s:s}]", "role", "assistant", "content",
                                               s->output_text ? s->output_text : "");
        json_t *meta = json_is_object(s->item) ? json_deep_copy(s->item) : json_object();
        /* messages and tools are the prompt, not metadata (OpenAI's reserved keys) */
        json_object_del(meta, "messages");
        json_object_del(meta, "tools");
        json_array_append_new(ev, json_pack("{s:s,s:o,s:o}", "id", id, "messages", msgs, "metadata", meta));
    }
    return ev;
}

/* The result whose id is id ("7" also matches the number 7). */
static const json_t *find_result(const json_t *arr, const char *id) {
    size_t i;
    const json_t *r;
    json_array_foreach(arr, i, r) {
        const json_t *v = json_object_get(r, "id");
        char buf[64];
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (json_is_integer(v)) {
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
            s = buf;
        }
        if (s && strcmp(s, id) == 0) return r;
    }
    return NULL;
}

void remote_read_response(const char *body, size_t len, const reward_sample *samples, int first, int n, double *scores,
                          json_t *metrics, reward_errors *errs, const char *what) {
    json_error_t je;
    json_t *arr = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!json_is_array(arr)) {
        remote_fail(errs, REWARD_ERR_INVALID_JSON, n, "%s: the response is not a JSON array%s%s", what,
                    arr ? "" : ": ", arr ? "" : je.text);
        json_decref(arr);
        return;
    }
    if ((int)json_array_size(arr) != n) {
        /* never guess which result belongs to which sample (TRL #6533's silent broadcast) */
        remote_fail(errs, REWARD_ERR_WRONG_COUNT, n, "%s: %zu results for %d samples", what, json_array_size(arr), n);
        json_decref(arr);
        return;
    }
    for (int i = first; i < first + n; i++) {
        char id[128];
        sample_id(&samples[i], i, id, sizeof id);
        const json_t *r = find_result(arr, id);
        if (!r) {
            remote_fail(errs, REWARD_ERR_MISSING_ID, 1, "%s: no result with id \"%s\"", what, id);
            continue;
        }
        const json_t *v = json_object_get(r, "aggregate_reward_score");
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            remote_fail(errs, REWARD_ERR_NAN, 1, "%s: id \"%s\": aggregate_reward_score is not a finite number", what,
                        id);
            continue;
        }
        scores[i] = json_number_value(v);
        size_t k;
        const json_t *m;
        json_t *out = json_array_get(metrics, (size_t)i);
        json_array_foreach(json_object_get(r, "metrics_list"), k, m) {
            const json_t *name = json_object_get(m, "name"), *val = json_object_get(m, "value");
            if (json_is_string(name) && json_is_number(val))
                json_object_set_new(out, json_string_value(name), json_real(json_number_value(val)));
        }
    }
    json_decref(arr);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct membuf {
    char *p;
    size_t len;
} membuf;

/* Appends to a membuf; returns a short count (an error to curl) past MAX_RESPONSE. */
static int mem_append(membuf *b, const char *data, size_t n) {
    if (b->len + n > MAX_RESPONSE) return -1;
    char *p = realloc(b->p, b->len + n + 1);
    if (!p) return -1;
    memcpy(p + b->len, data, n);
    b->p = p;
    b->len += n;
    p[b->len] = 0;
    return 0;
}

/* ------------------------------------------------------------ http */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_status;
static void curl_init_once(void) { curl_init_status = curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct transfer {
    CURL *h;
    int first, n, attempts, active, done;
    double not_before;
    char *req;
    membuf resp;
} transfer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
    return mem_append(user, data, size * nmemb) == 0 ? size * nmemb : 0;
}

static int is_connection_error(CURLcode rc) {
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
           rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING || rc == CURLE_SSL_CONNECT_ERROR;
}

/* A finished attempt: read it, or decide between retry and failure. */
static void finish(const bs_reward_grader *g, transfer *t, CURLcode rc, const reward_sample *samples, double *scores,
                   json_t *metrics, reward_errors *errs) {
    long code = 0;
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &code);
    char what[BS_ERROR_MSG_MAX];
    snprintf(what, sizeof what, "grader %s: %s", g->name, g->url);
    if (rc == CURLE_OK && code >= 200 && code < 300) {
        remote_read_response(t->resp.p ? t->resp.p : "", t->resp.len, samples, t->first, t->n, scores, metrics, errs,
                             what);
        t->done = 1;
        return;
    }
    reward_error_kind kind = rc == CURLE_OPERATION_TIMEDOUT ? REWARD_ERR_TIMEOUT
                             : is_connection_error(rc)       ? REWARD_ERR_CONNECTION
                             : rc == CURLE_WRITE_ERROR       ? REWARD_ERR_INVALID_JSON
                             : rc != CURLE_OK                ? REWARD_ERR_CONNECTION
                             : code >= 500                   ? REWARD_ERR_HTTP_5XX
                                                             : REWARD_ERR_HTTP_4XX;
    int retryable = kind == REWARD_ERR_TIMEOUT || kind == REWARD_ERR_CONNECTION || kind == REWARD_ERR_HTTP_5XX;
    if (retryable && t->attempts <= g->remote.retries) {
        double backoff = 100.0 * (1 << (t->attempts - 1));
        t->not_before = now_ms() + (backoff > 2000 ? 2000 : backoff);
        return;
    }
    if (rc != CURLE_OK)
        remote_fail(errs, kind, t->n, "%s: %s after %d attempt(s)", what, curl_easy_strerror(rc), t->attempts);
    else
        remote_fail(errs, kind, t->n, "%s: HTTP %ld after %d attempt(s): %.200s", what, code, t->attempts,
                    t->resp.p ? t->resp.p : "");
    t->done = 1;
}

static int transfer_setup(const bs_reward_grader *g, transfer *t, struct curl_slist *hdrs) {
    if (!(t->h = curl_easy_init())) return -1;
    curl_easy_setopt(t->h, CURLOPT_URL, g->url);
    curl_easy_setopt(t->h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(t->h, CURLOPT_POSTFIELDS, t->req);
    curl_easy_setopt(t->h, CURLOPT_POSTFIELDSIZE, (long)strlen(t->req));
    curl_easy_setopt(t->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->h, CURLOPT_WRITEDATA, &t->resp);
    curl_easy_setopt(t->h, CURLOPT_TIMEOUT_MS, g->remote.timeout_ms);
    curl_easy_setopt(t->h, CURLOPT_CONNECTTIMEOUT_MS, g->remote.timeout_ms < 10000 ? g->remote.timeout_ms : 10000L);
    curl_easy_setopt(t->h, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: scoring runs on worker threads */
    curl_easy_setopt(t->h, CURLOPT_PRIVATE, t);
    return 0;
}

void remote_score_http(const bs_reward_grader *g, const reward_sample *samples, int n, double *scores,
                       json_t *metrics, reward_errors *errs) {
    if (n == 0) return;
    pthread_once(&curl_once, curl_init_once);
    int nb = (n + g->remote.batch_size - 1) / g->remote.batch_size;
    transfer *ts = calloc((size_t)nb, sizeof *ts);
    CURLM *multi = curl_init_status == CURLE_OK ? curl_multi_init() : NULL;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; hdrs && i < g->n_headers; i++) hdrs = curl_slist_append(hdrs, g->headers[i]);
    int ok = ts && multi && hdrs;
    for (int b = 0; ok && b < nb; b++) {
        transfer *t = &ts[b];
        t->first = b * g->remote.batch_size;
        t->n = n - t->first < g->remote.batch_size ? n - t->first : g->remote.batch_size;
        json_t *ev = remote_event(samples, t->first, t->n);
        t->req = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
        json_decref(ev);
        ok = t->req && transfer_setup(g, t, hdrs) == 0;
    }
    if (!ok) remote_fail(errs, REWARD_ERR_CONNECTION, n, "grader %s: cannot set up HTTP requests (out of memory)", g->name);
    for (int left = ok ? nb : 0, running = 0; left > 0;) {
        double now = now_ms(), next = now + 100;
        for (int b = 0; b < nb && running < g->remote.concurrency; b++) {
            transfer *t = &ts[b];
            if (t->active || t->done) continue;
            if (t->not_before > now) {
                if (t->not_before < next) next = t->not_before;
                continue;
            }
            free(t->resp.p);
            t->resp = (membuf){0};
            t->attempts++;
            t->active = 1;
            running++;
            curl_multi_add_handle(multi, t->h);
        }
        int still;
        curl_multi_perform(multi, &still);
        CURLMsg *msg;
        int q;
        while ((msg = curl_multi_info_read(multi, &q))) {
            if (msg->msg != CURLMSG_DONE) continue;
            transfer *t;
            CURL *h = msg->easy_handle;
            CURLcode rc = msg->data.result;
            curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&t);
            curl_multi_remove_handle(multi, h);
            t->active = 0;
            running--;
            finish(g, t, rc, samples, scores, metrics, errs);
            left -= t->done;
        }
        if (left > 0) curl_multi_poll(multi, NULL, 0, (int)(next - now_ms() > 1 ? next - now_ms() : 1), NULL);
    }
    for (int b = 0; ts && b < nb; b++) {
        if (ts[b].h) curl_easy_cleanup(ts[b].h);
        free(ts[b].req);
        free(ts[b].resp.p);
    }
    free(ts);
    curl_slist_free_all(hdrs);
    if (multi) curl_multi_cleanup(multi);
}

/* ------------------------------------------------------------ command */

/* In the child between fork and exec: only async-signal-safe calls. */
static void child_exec(const bs_reward_grader *g, int in, int out, int err) {
    struct rlimit cpu = {(rlim_t)g->cpu_seconds, (rlim_t)g->cpu_seconds};
    struct rlimit as = {(rlim_t)g->memory_mb << 20, (rlim_t)g->memory_mb << 20};
    struct rlimit nofile = {(rlim_t)g->max_files, (rlim_t)g->max_files};
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || setrlimit(RLIMIT_CPU, &cpu) != 0 ||
        setrlimit(RLIMIT_AS, &as) != 0 || setrlimit(RLIMIT_NOFILE, &nofile) != 0)
        _exit(126);
    close_range(3, ~0u, 0); /* the server's sockets and files are not the reward function's */
    /* the server ignores SIGPIPE and its threads may block signals; both would be inherited across exec */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(g->argv[0], g->argv);
    _exit(127);
}

/* Run one batch; returns 0 with the child's stdout in out, or -1 after
 * counting the failure. */
static int run_once(const bs_reward_grader *g, const char *event, int n, membuf *out, reward_errors *errs) {
    int in_sv[2], out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
    /* stdin is a socket so that send(MSG_NOSIGNAL) cannot raise SIGPIPE in
     * the server when the child exits without reading */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_sv) != 0) {
        remote_fail(errs, REWARD_ERR_COMMAND, n, "grader %s: socketpair: %s", g->name, strerror(errno));
        return -1;
    }
    if (pipe2(out_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0) {
        remote_fail(errs, REWARD_ERR_COMMAND, n, "grader %s: pipe: %s", g->name, strerror(errno));
        for (int i = 0; i < 2; i++) {
            close(in_sv[i]);
            if (out_p[i] >= 0) close(out_p[i]);
            if (err_p[i] >= 0) close(err_p[i]);
        }
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) child_exec(g, in_sv[1], out_p[1], err_p[1]);
    close(in_sv[1]);
    close(out_p[1]);
    close(err_p[1]);
    int fds[3] = {in_sv[0], out_p[0], err_p[0]};
    if (pid < 0) {
        remote_fail(errs, REWARD_ERR_COMMAND, n, "grader %s: fork: %s", g->name, strerror(errno));
        for (int i = 0; i < 3; i++) close(fds[i]);
        return -1;
    }
    for (int i = 0; i < 3; i++) fcntl(fds[i], F_SETFL, O_NONBLOCK);
    size_t sent = 0, len = strlen(event);
    char errbuf[STDERR_KEEP + 1];
    size_t errlen = 0;
    int too_big = 0;
    double deadline = now_ms() + (double)g->remote.timeout_ms;
    int status = 0, exited = 0, timed_out = 0;
    while (!exited) {
        struct pollfd p[3];
        int np = 0;
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0) p[np++] = (struct pollfd){fds[i], (short)(i == 0 ? POLLOUT : POLLIN), 0};
        double left = deadline - now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        if (np == 0) { /* all streams closed: wait for the exit, still under the deadline */
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid) exited = 1;
            else usleep(2000);
            continue;
        }
        if (poll(p, (nfds_t)np, left > 50 ? 50 : (int)left + 1) < 0 && errno != EINTR) break;
        for (int k = 0; k < np; k++) {
            if (!p[k].revents) continue;
            int i = p[k].fd == fds[0] ? 0 : p[k].fd == fds[1] ? 1 : 2;
            if (i == 0) {
                ssize_t w = send(fds[0], event + sent, len - sent, MSG_NOSIGNAL);
                if (w > 0) sent += (size_t)w;
                if (w < 0 && errno != EAGAIN) sent = len; /* the child stopped reading: its answer will say */
                if (sent == len) {
                    close(fds[0]);
                    fds[0] = -1;
                }
                continue;
            }
            char buf[65536];
            ssize_t r = read(fds[i], buf, sizeof buf);
            if (r > 0 && i == 1 && mem_append(out, buf, (size_t)r) != 0) too_big = 1;
            if (r > 0 && i == 2) {
                size_t keep = (size_t)r < STDERR_KEEP - errlen ? (size_t)r : STDERR_KEEP - errlen;
                memcpy(errbuf + errlen, buf, keep);
                errlen += keep;
            }
            if (r == 0 || (r < 0 && errno != EAGAIN) || too_big) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
    }
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    errbuf[errlen] = 0;
    for (size_t i = 0; i < errlen; i++)
        if (errbuf[i] == '\n' || errbuf[i] == '\r') errbuf[i] = ' '; /* error messages are one line */
    if (timed_out) {
        remote_fail(errs, REWARD_ERR_TIMEOUT, n, "grader %s: %s: killed after %ld ms; stderr: %s", g->name, g->argv[0],
                    g->remote.timeout_ms, errbuf);
        return -1;
    }
    if (too_big) {
        remote_fail(errs, REWARD_ERR_INVALID_JSON, n, "grader %s: %s: more than %u bytes on stdout", g->name, g->argv[0],
                    MAX_RESPONSE);
        return -1;
    }
    if (!exited || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char how[64];
        if (exited && WIFSIGNALED(status))
            snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(status));
        else
            snprintf(how, sizeof how, "exited with status %d", exited ? WEXITSTATUS(status) : -1);
        remote_fail(errs, REWARD_ERR_COMMAND, n, "grader %s: %s %s%s; stderr: %s", g->name, g->argv[0], how,
                    exited && WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (cannot execute)" : "", errbuf);
        return -1;
    }
    return 0;
}

void remote_score_command(const bs_reward_grader *g, const reward_sample *samples, int n, double *scores,
                          json_t *metrics, reward_errors *errs) {
    for (int first = 0; first < n; first += g->remote.batch_size) {
        int m = n - first < g->remote.batch_size ? n - first : g->remote.batch_size;
        json_t *ev = remote_event(samples, first, m);
        char *event = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
        json_decref(ev);
        membuf out = {0};
        char what[BS_ERROR_MSG_MAX];
        snprintf(what, sizeof what, "grader %s: %s", g->name, g->argv[0]);
        if (!event)
            remote_fail(errs, REWARD_ERR_COMMAND, m, "%s: out of memory", what);
        else if (run_once(g, event, m, &out, errs) == 0)
            remote_read_response(out.p ? out.p : "", out.len, samples, first, m, scores, metrics, errs, what);
        free(out.p);
        free(event);
    }
}
