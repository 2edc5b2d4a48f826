/* gateway/invocation_log.c — the bounded queue, the writer thread, file
 * rotation and retention. */
#include "gateway/invocation_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <unistr.h>

#include "base/file.h"
#include "base/log.h"
#include "base/paths.h"
#include "gateway/json_text.h"

#define FILE_PREFIX "invocations-"
#define FILE_SUFFIX ".jsonl"

/* How long the writer lets lines gather after the first one wakes it. */
enum { BATCH_WINDOW_MS = 20 };

struct invlog {
    char *dir;
    int64_t max_bytes;
    int retention_days;
    int log_bodies;

    pthread_mutex_t mu; /* guards the queue, the counters and `path` */
    pthread_cond_t wake, drained;
    char **ring;        /* queue_lines slots */
    size_t cap, head, count, bytes, max_queue_bytes;
    uint64_t enqueued, done;
    int stop;
    int writer_idle;    /* the writer sleeps until a line arrives */
    int flush_now;      /* invlog_sync waits: drain without the batching window */
    pthread_t writer;
    atomic_ullong dropped;

    /* The writer's own state. */
    char **batch;
    FILE *f;
    char *path;
    int64_t size;
    int day; /* days since the epoch (UTC) the current file belongs to */
    int write_failing;
    unsigned long long drops_warned;
    double last_warn;
};

uint64_t invlog_dropped(const invlog *l) { return atomic_load(&((invlog *)l)->dropped); }

static void format_ts(int64_t ms, char out[32]) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, 32 - k, ".%03dZ", (int)(ms % 1000));
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ response bodies */

/* A JSON string of n bytes of s, invalid UTF-8 (a sequence cut by the cap
 * included) replaced by U+FFFD. */
static json_t *text_json(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s, *end = p + n, *bad = u8_check(p, n);
    if (!bad) return json_stringn(s, n);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) return NULL;
    while (p < end) {
        bad = u8_check(p, (size_t)(end - p));
        const uint8_t *stop = bad ? bad : end;
        memcpy(o, p, (size_t)(stop - p));
        o += stop - p;
        p = stop;
        if (bad) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            int len = u8_mblen(p, (size_t)(end - p));
            p += len > 0 ? len : 1;
        }
    }
    json_t *j = json_stringn(out, (size_t)(o - out));
    free(out);
    return j;
}

static int type_is(const char *type, const char *want) {
    size_t n = strlen(want);
    return type && strncasecmp(type, want, n) == 0 && (type[n] == 0 || type[n] == ';' || type[n] == ' ');
}

typedef struct textbuf {
    char *p;
    size_t n, cap;
    int oom;
} textbuf;

static void text_add(textbuf *t, const char *s, size_t m) {
    if (t->oom || !m) return;
    if (t->n + m > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->n + m) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, m);
    t->n += m;
}

/* The text one streamed chunk adds: chat, completions and Responses API. */
static void chunk_text(const json_t *c, textbuf *text) {
    const char *type = json_string_value(json_object_get(c, "type"));
    const json_t *add = NULL;
    if (type) {
        if (strcmp(type, "response.output_text.delta") == 0) add = json_object_get(c, "delta");
    } else {
        size_t i;
        const json_t *ch;
        json_array_foreach(json_object_get(c, "choices"), i, ch) {
            const json_t *idx = json_object_get(ch, "index");
            if (idx && json_integer_value(idx) != 0) continue;
            const json_t *delta = json_object_get(ch, "delta");
            add = delta ? json_object_get(delta, "content") : json_object_get(ch, "text");
            break;
        }
    }
    if (json_is_string(add)) text_add(text, json_string_value(add), json_string_length(add));
}

/* One event's data (its data lines joined by newlines). */
static void sse_event(const char *data, size_t n, json_t *events, textbuf *text) {
    if (n == 6 && memcmp(data, "[DONE]", 6) == 0) return;
    json_t *j = json_loadb(data, n, JSON_DECODE_ANY, NULL);
    if (j) chunk_text(j, text);
    else j = text_json(data, n);
    if (j) json_array_append_new(events, j);
}

/* The events of a stream; a trailing event without its blank line is
 * parsed only when the stream was kept whole. */
static void sse_parse(const char *s, size_t n, int whole, json_t *events, textbuf *text) {
    char *data = malloc(n + 1);
    if (!data) return;
    size_t dl = 0;
    int have = 0;
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl && !whole) break; /* a line cut by the cap */
        const char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p);
        if (ll && p[ll - 1] == '\r') ll--;
        if (ll == 0) { /* blank line: the event ends */
            if (have) sse_event(data, dl, events, text);
            dl = 0;
            have = 0;
        } else if (ll >= 5 && memcmp(p, "data:", 5) == 0) {
            size_t off = ll > 5 && p[5] == ' ' ? 6 : 5;
            if (have) data[dl++] = '\n';
            memcpy(data + dl, p + off, ll - off);
            dl += ll - off;
            have = 1;
        }
        p = nl ? nl + 1 : end;
    }
    if (have && whole) sse_event(data, dl, events, text);
    free(data);
}

/* The response body's members of "output" (see the header). */
static void output_fields(const invlog_entry *e, json_text *t) {
    int truncated = e->output_total > (int64_t)e->output_len;
    const char *d = e->output_data ? e->output_data : "";
    if (type_is(e->output_type, "text/event-stream")) {
        json_t *events = json_array();
        textbuf text = {0};
        sse_parse(d, e->output_len, !truncated, events, &text);
        json_text_lit(t, ",\"outputBodyJson\":");
        json_text_value(t, events);
        json_text_lit(t, ",\"outputText\":");
        json_text_strn(t, text.p ? text.p : "", text.n);
        json_decref(events);
        free(text.p);
    } else {
        json_t *j = truncated ? NULL : json_loadb(d, e->output_len, JSON_DECODE_ANY, NULL);
        if (j) {
            json_text_lit(t, ",\"outputBodyJson\":");
            json_text_value(t, j);
            json_decref(j);
        } else {
            json_text_lit(t, ",\"outputBodyText\":");
            json_text_strn(t, d, e->output_len);
        }
    }
    json_text_lit(t, ",\"outputBodyBytes\":");
    json_text_int(t, e->output_total);
    json_text_lit(t, ",\"outputBodyTruncated\":");
    json_text_bool(t, truncated);
}

/* The record, written straight as text (no object tree: this runs on the
 * request's thread); the members and their order are the header's. */
static void entry_text(const invlog *l, const invlog_entry *e, json_text *t) {
    char ts[32];
    format_ts(e->ts_ms > 0 ? e->ts_ms : now_ms(), ts);
    json_text_lit(t, "{\"schemaType\":\"ModelInvocationLog\",\"schemaVersion\":\"1.0\",\"timestamp\":");
    json_text_str(t, ts);
    json_text_lit(t, ",\"requestId\":");
    json_text_str(t, e->request_id);
    json_text_lit(t, ",\"keyId\":");
    json_text_str(t, e->key_id);
    json_text_lit(t, ",\"keyName\":");
    json_text_str(t, e->key_name);
    json_text_lit(t, ",\"operation\":");
    json_text_str(t, e->operation);
    json_text_lit(t, ",\"modelId\":");
    json_text_str(t, e->model_id);
    json_text_lit(t, ",\"route\":");
    json_text_str(t, e->route);
    json_text_lit(t, ",\"target\":");
    json_text_str(t, e->target);
    json_text_lit(t, ",\"fallbacks\":");
    if (e->fallbacks) json_text_value(t, e->fallbacks);
    else json_text_lit(t, "[]");
    json_text_lit(t, ",\"status\":");
    json_text_int(t, e->status);
    json_text_lit(t, ",\"errorCode\":");
    json_text_str(t, e->error_code);
    json_text_lit(t, ",\"input\":{\"inputTokenCount\":");
    json_text_int(t, e->input_tokens);
    if (l->log_bodies && e->input_body) {
        json_text_lit(t, ",\"inputBodyJson\":");
        json_text_value(t, e->input_body);
    }
    json_text_lit(t, "},\"output\":{\"outputTokenCount\":");
    json_text_int(t, e->output_tokens);
    if (l->log_bodies && e->output_body) {
        json_text_lit(t, ",\"outputBodyJson\":");
        json_text_value(t, e->output_body);
    } else if (l->log_bodies && e->output_type) {
        output_fields(e, t);
    }
    json_text_lit(t, "},\"usageEstimated\":");
    json_text_bool(t, e->usage_estimated);
    json_text_lit(t, ",\"costUsd\":");
    json_text_real(t, e->cost_usd);
    json_text_lit(t, ",\"latencyMs\":");
    json_text_real(t, e->latency_ms);
    json_text_lit(t, ",\"overheadMs\":");
    json_text_real(t, e->overhead_ms);
    json_text_lit(t, ",\"ttftMs\":");
    if (e->ttft_ms >= 0) json_text_real(t, e->ttft_ms);
    else json_text_lit(t, "null");
    json_text_lit(t, ",\"guardrailAction\":");
    json_text_str(t, e->guardrail_action ? e->guardrail_action : "NONE");
    json_text_lit(t, "}\n");
}

void invlog_write(invlog *l, const invlog_entry *e) {
    /* Formatted on the stack, then copied at its size: the line is freed
     * on the writer's thread, so a buffer sized for growth would come from
     * malloc's slow path on every request. */
    char stack[2048];
    json_text t = json_text_on(stack, sizeof stack);
    entry_text(l, e, &t);
    char *line = t.oom ? NULL : malloc(t.len + 1);
    size_t n = t.len;
    if (line) {
        memcpy(line, t.data, n);
        line[n] = '\0'; /* the writer takes NUL-terminated lines */
    }
    json_text_free(&t);
    if (!line) {
        atomic_fetch_add(&l->dropped, 1);
        return;
    }
    pthread_mutex_lock(&l->mu);
    int full = l->count == l->cap || l->bytes + n > l->max_queue_bytes;
    if (!full) {
        l->ring[(l->head + l->count) % l->cap] = line;
        l->count++;
        l->bytes += n;
        l->enqueued++;
        /* One wake-up per batch, not per line: the first line wakes an idle
         * writer, which then waits out its window; a half-full queue cuts
         * the window short. */
        if (l->writer_idle || l->count >= l->cap / 2 || l->bytes >= l->max_queue_bytes / 2)
            pthread_cond_signal(&l->wake);
    }
    pthread_mutex_unlock(&l->mu);
    if (full) {
        free(line); /* the writer warns about it; no I/O on this path */
        atomic_fetch_add(&l->dropped, 1);
    }
}

void invlog_sync(invlog *l) {
    pthread_mutex_lock(&l->mu);
    uint64_t target = l->enqueued;
    l->flush_now = 1;
    pthread_cond_signal(&l->wake);
    while (l->done < target) pthread_cond_wait(&l->drained, &l->mu);
    l->flush_now = 0;
    pthread_mutex_unlock(&l->mu);
}

char *invlog_current_path(invlog *l) {
    pthread_mutex_lock(&l->mu);
    char *p = l->path ? strdup(l->path) : NULL;
    pthread_mutex_unlock(&l->mu);
    return p;
}

static int is_log_name(const char *name) {
    size_t n = strlen(name), lp = strlen(FILE_PREFIX), ls = strlen(FILE_SUFFIX);
    return n > lp + ls && strncmp(name, FILE_PREFIX, lp) == 0 && strcmp(name + n - ls, FILE_SUFFIX) == 0;
}

/* Deletes log files whose last write is older than the retention. */
static void sweep(invlog *l) {
    DIR *d = opendir(l->dir);
    if (!d) {
        bs_log_warn("invocation log: cannot list %s for retention: %s", l->dir, strerror(errno));
        return;
    }
    time_t cutoff = time(NULL) - (time_t)l->retention_days * 86400;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_log_name(de->d_name)) continue;
        char *p = bs_path_join(l->dir, de->d_name);
        struct stat sb;
        if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_mtime < cutoff) {
            if (unlink(p) == 0)
                bs_log_info("invocation log: deleted %s (older than %d days)", p, l->retention_days);
            else
                bs_log_warn("invocation log: cannot delete %s: %s", p, strerror(errno));
        }
        free(p);
    }
    closedir(d);
}

/* Closes the current file (if any), applies retention and starts a new one
 * named after now. */
static bs_status start_file(invlog *l, bs_error *err) {
    if (l->f) fclose(l->f);
    l->f = NULL;
    sweep(l);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    int fd = -1;
    char *path = NULL;
    for (int k = 0; k < 1000 && fd < 0; k++) {
        char name[96];
        if (k == 0)
            snprintf(name, sizeof name, FILE_PREFIX "%s" FILE_SUFFIX, stamp);
        else
            snprintf(name, sizeof name, FILE_PREFIX "%s-%d" FILE_SUFFIX, stamp, k);
        free(path);
        path = bs_path_join(l->dir, name);
        if (!path) return bs_fail(err, BS_ENOMEM, "invocation log: out of memory");
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0 && errno != EEXIST) break;
    }
    FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (!f) {
        bs_fail(err, BS_EIO, "invocation log: cannot create %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        free(path);
        return BS_EIO;
    }
    pthread_mutex_lock(&l->mu);
    free(l->path);
    l->path = path;
    pthread_mutex_unlock(&l->mu);
    l->f = f;
    l->size = 0;
    l->day = (int)(now / 86400);
    return BS_OK;
}

static void write_line(invlog *l, const char *line) {
    size_t n = strlen(line);
    int today = (int)(time(NULL) / 86400);
    bs_error err = {0};
    bs_status st = BS_OK;
    if (!l->f || today != l->day || (l->size > 0 && l->size + (int64_t)n > l->max_bytes)) st = start_file(l, &err);
    if (st == BS_OK && fwrite(line, 1, n, l->f) != n)
        st = bs_fail(&err, BS_EIO, "invocation log: writing %s: %s", l->path, strerror(errno));
    if (st != BS_OK) {
        atomic_fetch_add(&l->dropped, 1);
        if (!l->write_failing) bs_log_error("%s", err.msg);
        l->write_failing = 1;
        return;
    }
    if (l->write_failing) bs_log_info("invocation log: writing again to %s", l->path);
    l->write_failing = 0;
    l->size += (int64_t)n;
}

static void warn_drops(invlog *l) {
    unsigned long long d = atomic_load(&l->dropped);
    double now = bs_now();
    if (d > l->drops_warned && (l->last_warn == 0 || now - l->last_warn >= 60)) {
        bs_log_warn("invocation log: %llu lines dropped (queue full or write errors)", d - l->drops_warned);
        l->drops_warned = d;
        l->last_warn = now;
    }
}

static void *writer_main(void *arg) {
    invlog *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->count == 0 && !l->stop) {
            /* Wake now and then even when idle, so drops get reported. */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_sec += 5;
            l->writer_idle = 1;
            pthread_cond_timedwait(&l->wake, &l->mu, &until);
            l->writer_idle = 0;
        }
        if (l->count > 0 && l->count < l->cap / 2 && !l->stop && !l->flush_now) {
            /* The batching window: under load lines arrive faster than one
             * write each is worth waking for. */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += BATCH_WINDOW_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&l->wake, &l->mu, &until);
        }
        if (l->count == 0 && l->stop) break;
        size_t n = l->count;
        for (size_t i = 0; i < n; i++) l->batch[i] = l->ring[(l->head + i) % l->cap];
        l->head = (l->head + n) % l->cap;
        l->count = 0;
        l->bytes = 0;
        pthread_mutex_unlock(&l->mu);

        for (size_t i = 0; i < n; i++) {
            write_line(l, l->batch[i]);
            free(l->batch[i]);
        }
        if (n && l->f && fflush(l->f) != 0) {
            if (!l->write_failing) bs_log_error("invocation log: flushing %s: %s", l->path, strerror(errno));
            l->write_failing = 1;
        }
        warn_drops(l);

        pthread_mutex_lock(&l->mu);
        l->done += n;
        pthread_cond_broadcast(&l->drained);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void invlog_free(invlog *l) {
    if (l->f) fclose(l->f);
    for (size_t i = 0; i < l->count; i++) free(l->ring[(l->head + i) % l->cap]);
    free(l->ring);
    free(l->batch);
    free(l->path);
    free(l->dir);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->wake);
    pthread_cond_destroy(&l->drained);
    free(l);
}

bs_status invlog_open(const invlog_options *opt, invlog **out, bs_error *err) {
    *out = NULL;
    if (!opt->dir || !*opt->dir) return bs_fail(err, BS_EINVAL, "invocation log: log_dir is empty");
    if (opt->max_mb < 1) return bs_fail(err, BS_EINVAL, "invocation log: log_max_mb must be >= 1 (got %d)", opt->max_mb);
    if (opt->retention_days < 1)
        return bs_fail(err, BS_EINVAL, "invocation log: log_retention_days must be >= 1 (got %d)",
                       opt->retention_days);
    bs_status st = bs_make_dirs(opt->dir, 0750, err);
    if (st != BS_OK) return bs_wrap(err, "invocation log: log_dir");
    invlog *l = calloc(1, sizeof *l);
    if (!l) return bs_fail(err, BS_ENOMEM, "invocation log: out of memory");
    l->max_bytes = (int64_t)opt->max_mb << 20;
    l->retention_days = opt->retention_days;
    l->log_bodies = opt->log_bodies;
    l->cap = opt->queue_lines ? opt->queue_lines : 8192;
    l->max_queue_bytes = opt->queue_bytes ? opt->queue_bytes : (size_t)64 << 20;
    atomic_init(&l->dropped, 0);
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&l->drained, NULL);
    l->dir = strdup(opt->dir);
    l->ring = calloc(l->cap, sizeof *l->ring);
    l->batch = calloc(l->cap, sizeof *l->batch);
    if (!l->dir || !l->ring || !l->batch) {
        invlog_free(l);
        return bs_fail(err, BS_ENOMEM, "invocation log: out of memory");
    }
    /* Opening the first file here surfaces a bad log_dir at start. */
    st = start_file(l, err);
    int rc = st == BS_OK ? pthread_create(&l->writer, NULL, writer_main, l) : 0;
    if (st != BS_OK || rc != 0) {
        invlog_free(l);
        return st != BS_OK ? st : bs_fail(err, BS_EIO, "invocation log: cannot start the writer: %s", strerror(rc));
    }
    *out = l;
    return BS_OK;
}

void invlog_close(invlog *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->writer, NULL);
    invlog_free(l);
}
