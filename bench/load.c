/* bench/load.c — load generator for `basalt serve`: N concurrent streaming
 * chat clients for D seconds, some of which hang up mid-stream on purpose.
 *
 *   load --url http://HOST:PORT [--model NAME] [--streams N] [--duration S]
 *        [--disconnect F] [--min-tokens A] [--max-tokens B] [--drain S]
 *        [--seed X] [--interval]
 *
 * Each client loops POST /v1/chat/completions with stream:true and
 * stream_options.include_usage, a random short prompt and max_tokens in
 * [A, B].  A fraction F of requests is cut (the connection closed) after a
 * random number of content chunks in [0, max_tokens).  Every stream that is
 * not cut is checked: HTTP 200, text/event-stream, every event a JSON
 * chat.completion.chunk, exactly one finish_reason, a usage chunk whose
 * completion_tokens fits max_tokens, then [DONE] and nothing after it.  429
 * (the server's queue is full) is expected under overload: it is counted
 * and the client retries after a short random pause.  Anything else — other
 * statuses, malformed SSE, a missing [DONE], a connection we did not close —
 * is an error.
 *
 * After D seconds no new request starts; the ones in flight run to their
 * end (at most --drain seconds, after which they are errors).  One JSON line
 * on stdout summarizes the run; exit status 1 when there were errors.
 *
 * Figures: tokens = usage.completion_tokens of finished streams plus content
 * chunks received by cut ones, over the whole run including the drain.
 * TTFT = request sent -> first non-empty content delta.  ITL = gaps between
 * consecutive content chunks of one stream, timed when curl hands them to
 * us (chunks that arrive in one read count as a 0 gap, as in vLLM's bench).
 * Per-stream tokens/s = completion_tokens / (end - start) of each finished
 * stream, i.e. what one client sees including its wait for the first token. */
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ERROR_LINES 20 /* errors printed in full; the rest are only counted */

typedef struct samples {
    double *v;
    size_t n, cap;
} samples;

typedef struct options {
    const char *url, *model;
    int streams, min_tokens, max_tokens, interval;
    double duration, disconnect, drain;
    uint64_t seed;
} options;

typedef struct totals {
    long long requests, completed, disconnects, http_429, errors, tokens;
    long long chunks_this_second;
    samples ttft, itl, stream_rate;
} totals;

typedef struct client {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    int running;
    double next_start;
    /* the request in flight */
    int max_tokens, cut_after; /* cut_after < 0: read to the end */
    int cut, failed, done, finishes, finish_length, usage_tokens, content_chunks;
    double t_start, t_last_chunk;
    char *sse;
    size_t sse_len, sse_cap;
    char err[200];
} client;

static options opt;
static totals tot;
static uint64_t rng_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: reproducible runs for a given --seed, no libc state. */
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static double rng_unit(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

static int rng_range(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }

static void die_oom(void) {
    fprintf(stderr, "load: out of memory\n");
    exit(2);
}

static void sample_add(samples *s, double v) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) die_oom();
    }
    s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest rank on sorted samples; -1 when there are none. */
static double percentile(const samples *s, double p) {
    if (s->n == 0) return -1;
    size_t k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    if (k < 1) k = 1;
    if (k > s->n) k = s->n;
    return s->v[k - 1];
}

static double mean(const samples *s) {
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += s->v[i];
    return s->n ? sum / (double)s->n : -1;
}

/* v * scale with fmt, or null where there were no samples (v < 0). */
static void fmt_scaled(char out[32], double v, double scale, const char *fmt) {
    if (v < 0) snprintf(out, 32, "null");
    else snprintf(out, 32, fmt, v * scale);
}

/* The first problem of a request wins; later ones are consequences. */
static void fail(client *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ requests */

static const char *const words[] = {
    "river", "stone", "basalt", "cloud", "engine", "quiet", "orange", "thread", "window", "market",
    "seven", "winter", "garden", "silver", "planet", "copper", "lantern", "harbor", "pencil", "meadow",
    "explain", "describe", "list", "compare", "why", "how", "what", "tell", "me", "about",
};
#define N_WORDS (sizeof words / sizeof words[0])

static char *random_text(int n_words) {
    char buf[512];
    size_t k = 0;
    for (int i = 0; i < n_words; i++) {
        const char *w = words[rng_next() % N_WORDS];
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? " " : "", w);
        if (k >= sizeof buf) k = sizeof buf - 1;
    }
    char *s = strdup(buf);
    if (!s) die_oom();
    return s;
}

/* A question, or question / answer / question, sometimes after a system
 * message: prompts of roughly 5 to 60 tokens. */
static char *request_body(int max_tokens) {
    json_t *msgs = json_array();
    if (rng_unit() < 0.3) {
        char *t = random_text(rng_range(3, 8));
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", t));
        free(t);
    }
    int turns = rng_unit() < 0.7 ? 1 : 3;
    for (int i = 0; i < turns; i++) {
        char *t = random_text(rng_range(3, 16));
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user", "content", t));
        free(t);
    }
    json_t *body = json_pack("{s:s,s:o,s:i,s:b,s:{s:b}}", "model", opt.model, "messages", msgs, "max_tokens",
                             max_tokens, "stream", 1, "stream_options", "include_usage", 1);
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s) die_oom();
    return s;
}

/* ------------------------------------------------------------ SSE checks */

static void on_chunk(client *c, const char *data) {
    if (c->done) {
        fail(c, "data after [DONE]");
        return;
    }
    if (strcmp(data, "[DONE]") == 0) {
        c->done = 1;
        if (c->finishes != 1) fail(c, "[DONE] after %d finish_reason chunks", c->finishes);
        if (c->usage_tokens < 0) fail(c, "no usage chunk before [DONE]");
        if (c->finish_length && c->usage_tokens != c->max_tokens)
            fail(c, "finish_reason length after %d of max_tokens %d", c->usage_tokens, c->max_tokens);
        return;
    }
    json_error_t je;
    /* A byte-level model can emit byte 0, which JSON writes as \u0000. */
    json_t *j = json_loads(data, JSON_ALLOW_NUL, &je);
    const char *object = json_string_value(json_object_get(j, "object"));
    const json_t *choices = json_object_get(j, "choices");
    if (!j) {
        fail(c, "bad JSON in an event (%s at %d): %.120s", je.text, je.position, data);
        return;
    }
    if (!object || strcmp(object, "chat.completion.chunk") != 0 || !json_is_array(choices)) {
        fail(c, "not a chat.completion.chunk: %.120s", data);
        json_decref(j);
        return;
    }
    const json_t *usage = json_object_get(j, "usage");
    if (json_array_size(choices) == 0) {
        const json_t *ct = json_object_get(usage, "completion_tokens");
        if (!json_is_integer(ct)) fail(c, "chunk without choices or usage: %.120s", data);
        else c->usage_tokens = (int)json_integer_value(ct);
    }
    const json_t *ch = json_array_get(choices, 0);
    const json_t *content = json_object_get(json_object_get(ch, "delta"), "content");
    const json_t *finish = json_object_get(ch, "finish_reason");
    if (json_string_length(content) > 0) {
        double t = now_s();
        if (c->content_chunks == 0) sample_add(&tot.ttft, t - c->t_start);
        else sample_add(&tot.itl, t - c->t_last_chunk);
        c->t_last_chunk = t;
        c->content_chunks++;
        tot.chunks_this_second++;
    }
    if (json_is_string(finish)) {
        c->finishes++;
        c->finish_length = strcmp(json_string_value(finish), "length") == 0;
        if (c->usage_tokens >= 0) fail(c, "finish_reason after the usage chunk");
    } else if (ch && finish && !json_is_null(finish)) {
        fail(c, "finish_reason is neither null nor a string");
    }
    if (c->usage_tokens > c->max_tokens) fail(c, "usage says %d tokens, max_tokens was %d", c->usage_tokens, c->max_tokens);
    json_decref(j);
}

/* Splits the buffered body into events ("\n\n" or "\r\n\r\n" separated);
 * each must be exactly one "data: " line. */
static void parse_events(client *c) {
    size_t start = 0;
    for (;;) {
        char *sep = NULL;
        size_t seplen = 0;
        for (size_t i = start; i + 1 < c->sse_len; i++) {
            if (c->sse[i] == '\n' && c->sse[i + 1] == '\n') {
                sep = c->sse + i, seplen = 2;
                break;
            }
            if (i + 3 < c->sse_len && !memcmp(c->sse + i, "\r\n\r\n", 4)) {
                sep = c->sse + i, seplen = 4;
                break;
            }
        }
        if (!sep) break;
        *sep = '\0';
        const char *ev = c->sse + start;
        if (strncmp(ev, "data: ", 6) != 0 || strpbrk(ev + 6, "\r\n")) fail(c, "not one SSE data line: %.120s", ev);
        else on_chunk(c, ev + 6);
        start = (size_t)(sep - c->sse) + seplen;
    }
    memmove(c->sse, c->sse + start, c->sse_len - start);
    c->sse_len -= start;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *user) {
    client *c = user;
    size_t n = size * nmemb;
    if (c->sse_len + n + 1 > c->sse_cap) {
        c->sse_cap = (c->sse_len + n + 1) * 2;
        c->sse = realloc(c->sse, c->sse_cap);
        if (!c->sse) die_oom();
    }
    memcpy(c->sse + c->sse_len, data, n);
    c->sse_len += n;
    c->sse[c->sse_len] = '\0';
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) return n; /* an error body: kept whole for the report */
    parse_events(c);
    /* Returning short makes curl abort the transfer and close the socket:
     * the client hanging up mid-stream. */
    if (c->cut_after >= 0 && !c->done && c->content_chunks >= c->cut_after) {
        c->cut = 1;
        return 0;
    }
    return n;
}

static void start_request(CURLM *multi, client *c, double now) {
    free(c->body);
    c->max_tokens = rng_range(opt.min_tokens, opt.max_tokens);
    c->body = request_body(c->max_tokens);
    c->cut_after = rng_unit() < opt.disconnect ? rng_range(0, c->max_tokens - 1) : -1;
    c->cut = c->failed = c->done = c->finishes = c->finish_length = c->content_chunks = 0;
    c->usage_tokens = -1;
    c->sse_len = 0;
    c->err[0] = '\0';
    c->t_start = now;
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
    curl_multi_add_handle(multi, c->easy);
    c->running = 1;
    tot.requests++;
}

static void report_error(client *c) {
    if (++tot.errors <= MAX_ERROR_LINES) fprintf(stderr, "load: error: %s\n", c->err);
    else if (tot.errors == MAX_ERROR_LINES + 1) fprintf(stderr, "load: more errors; counting only\n");
}

static void finish_request(CURLM *multi, client *c, CURLcode rc, double now) {
    curl_multi_remove_handle(multi, c->easy);
    c->running = 0;
    c->next_start = now;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    if (c->cut && !c->failed) {
        tot.disconnects++;
        tot.tokens += c->content_chunks;
        return;
    }
    if (rc != CURLE_OK && !c->failed) fail(c, "curl: %s (HTTP %ld)", curl_easy_strerror(rc), status);
    if (!c->failed && status == 429) {
        tot.http_429++;
        c->next_start = now + 0.1 + 0.2 * rng_unit();
        return;
    }
    if (!c->failed && status != 200) fail(c, "HTTP %ld: %.150s", status, c->sse ? c->sse : "");
    char *type = NULL;
    curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &type);
    if (!c->failed && (!type || strncmp(type, "text/event-stream", 17) != 0)) fail(c, "content type %s", type ? type : "(none)");
    if (!c->failed && !c->done) fail(c, "stream ended without [DONE]");
    if (!c->failed && c->sse_len) fail(c, "%zu bytes after the last event", c->sse_len);
    if (!c->failed && c->usage_tokens < 1) fail(c, "usage.completion_tokens %d", c->usage_tokens);
    if (c->failed) {
        report_error(c);
        return;
    }
    tot.completed++;
    tot.tokens += c->usage_tokens;
    if (now > c->t_start) sample_add(&tot.stream_rate, c->usage_tokens / (now - c->t_start));
}

/* ------------------------------------------------------------ main */

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --url http://HOST:PORT [--model NAME] [--streams N] [--duration S] [--disconnect F]\n"
            "          [--min-tokens A] [--max-tokens B] [--drain S] [--seed X] [--interval]\n",
            argv0);
    exit(2);
}

static void parse_args(int argc, char **argv) {
    opt = (options){.model = "basalt-demo-random", .streams = 8, .duration = 30, .disconnect = 0.1,
                    .min_tokens = 32, .max_tokens = 64, .drain = 60, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--interval")) {
            opt.interval = 1;
            continue;
        }
        if (i + 1 >= argc) usage(argv[0]);
        const char *v = argv[++i];
        if (!strcmp(a, "--url")) opt.url = v;
        else if (!strcmp(a, "--model")) opt.model = v;
        else if (!strcmp(a, "--streams")) opt.streams = atoi(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--disconnect")) opt.disconnect = atof(v);
        else if (!strcmp(a, "--min-tokens")) opt.min_tokens = atoi(v);
        else if (!strcmp(a, "--max-tokens")) opt.max_tokens = atoi(v);
        else if (!strcmp(a, "--drain")) opt.drain = atof(v);
        else if (!strcmp(a, "--seed")) opt.seed = strtoull(v, NULL, 10);
        else usage(argv[0]);
    }
    if (!opt.url || opt.streams < 1 || opt.duration <= 0 || opt.min_tokens < 1 || opt.max_tokens < opt.min_tokens ||
        opt.disconnect < 0 || opt.disconnect > 1)
        usage(argv[0]);
    rng_state = opt.seed * 0x9E3779B97F4A7C15ull + 1; /* never 0, which xorshift cannot leave */
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 2;
    char url[512];
    snprintf(url, sizeof url, "%s/v1/chat/completions", opt.url);
    CURLM *multi = curl_multi_init();
    client *cl = calloc((size_t)opt.streams, sizeof *cl);
    if (!multi || !cl) die_oom();
    for (int i = 0; i < opt.streams; i++) {
        client *c = &cl[i];
        c->easy = curl_easy_init();
        c->headers = curl_slist_append(NULL, "Content-Type: application/json");
        c->headers = curl_slist_append(c->headers, "Expect:");
        if (!c->easy || !c->headers) die_oom();
        curl_easy_setopt(c->easy, CURLOPT_URL, url);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT, 10L);
        /* A stream silent for 60 s is a hung server, not a slow one. */
        curl_easy_setopt(c->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c->easy, CURLOPT_LOW_SPEED_TIME, 60L);
    }
    double t0 = now_s(), deadline = t0 + opt.duration, next_tick = t0 + 1, t = t0;
    int active = 0;
    for (;;) {
        t = now_s();
        for (int i = 0; t < deadline && i < opt.streams; i++)
            if (!cl[i].running && cl[i].next_start <= t) start_request(multi, &cl[i], t);
        active = 0;
        for (int i = 0; i < opt.streams; i++) active += cl[i].running;
        if (active == 0 && t >= deadline) break;
        if (t >= deadline + opt.drain) {
            for (int i = 0; i < opt.streams; i++)
                if (cl[i].running) {
                    fail(&cl[i], "still running %.0f s after the end", opt.drain);
                    report_error(&cl[i]);
                    curl_multi_remove_handle(multi, cl[i].easy);
                    cl[i].running = 0;
                }
            break;
        }
        int still, ended = 0;
        curl_multi_perform(multi, &still);
        CURLMsg *m;
        while ((m = curl_multi_info_read(multi, &still)))
            if (m->msg == CURLMSG_DONE) {
                char *c = NULL;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &c);
                finish_request(multi, (client *)c, m->data.result, now_s());
                ended = 1;
            }
        if (opt.interval && t >= next_tick) {
            fprintf(stderr, "t=%3.0fs chunks/s=%4lld active=%2d done=%lld cut=%lld 429=%lld errors=%lld\n",
                    next_tick - t0, tot.chunks_this_second, active, tot.completed, tot.disconnects, tot.http_429,
                    tot.errors);
            tot.chunks_this_second = 0;
            next_tick += 1;
        }
        /* A client whose request just ended starts its next one at once. */
        if (!ended) curl_multi_poll(multi, NULL, 0, 20, NULL);
    }
    double elapsed = t - t0;
    for (int i = 0; i < opt.streams; i++) {
        curl_easy_cleanup(cl[i].easy);
        curl_slist_free_all(cl[i].headers);
        free(cl[i].body);
        free(cl[i].sse);
    }
    free(cl);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    qsort(tot.ttft.v, tot.ttft.n, sizeof(double), cmp_double);
    qsort(tot.itl.v, tot.itl.n, sizeof(double), cmp_double);
    char rate[32], tm[3][32], it[3][32];
    fmt_scaled(rate, mean(&tot.stream_rate), 1, "%.2f");
    fmt_scaled(tm[0], mean(&tot.ttft), 1e3, "%.1f");
    fmt_scaled(tm[1], percentile(&tot.ttft, 50), 1e3, "%.1f");
    fmt_scaled(tm[2], percentile(&tot.ttft, 95), 1e3, "%.1f");
    fmt_scaled(it[0], mean(&tot.itl), 1e3, "%.2f");
    fmt_scaled(it[1], percentile(&tot.itl, 50), 1e3, "%.2f");
    fmt_scaled(it[2], percentile(&tot.itl, 95), 1e3, "%.2f");
    printf("{\"streams\":%d,\"seconds\":%.1f,\"duration\":%.1f,\"disconnect_fraction\":%.2f,\"max_tokens\":[%d,%d],"
           "\"requests\":%lld,\"completed\":%lld,\"disconnects\":%lld,\"http_429\":%lld,\"errors\":%lld,"
           "\"tokens\":%lld,\"tokens_per_s\":%.1f,\"per_stream_tokens_per_s\":%s,"
           "\"ttft_ms\":{\"mean\":%s,\"p50\":%s,\"p95\":%s},\"itl_ms\":{\"mean\":%s,\"p50\":%s,\"p95\":%s}}\n",
           opt.streams, elapsed, opt.duration, opt.disconnect, opt.min_tokens, opt.max_tokens, tot.requests,
           tot.completed, tot.disconnects, tot.http_429, tot.errors, tot.tokens, tot.tokens / elapsed, rate, tm[0],
           tm[1], tm[2], it[0], it[1], it[2]);
    free(tot.ttft.v);
    free(tot.itl.v);
    free(tot.stream_rate.v);
    return tot.errors ? 1 : 0;
}
