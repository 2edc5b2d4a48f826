/* Tests for gateway/usage, gateway/invocation_log and gateway/audit: exact
 * sums under concurrent recording (also past the hot table's capacity),
 * grouping by day/model/route/target with injected timestamps, the writer
 * flushing on its own, counts surviving a failing store, CSV quoting,
 * parameter errors, spend seeding; invocation log fields, bodies, size
 * rotation and retention, its lines byte for byte what jansson wrote
 * before they were formatted as text; json_text against json_dumps; the
 * audit log's order and details.  The usage
 * part also runs against PostgreSQL when BASALT_TEST_PG_URL is set. */
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/file.h"
#include "base/log.h"
#include "gateway/audit.h"
#include "gateway/invocation_log.h"
#include "gateway/json_text.h"
#include "gateway/usage.h"
#include "store/store.h"

static char *make_dir(void) {
    char tmpl[] = "/tmp/basalt_usage_XXXXXX";
    return strdup(mkdtemp(tmpl));
}

static void remove_dir(char *dir) {
    bs_error err = {0};
    CHECK_OK(bs_remove_tree(dir, &err), &err);
    free(dir);
}

/* A store in a fresh directory and a usage recorder over it (flushing every
 * flush_s seconds), and their teardown. */
typedef struct {
    char *dir;
    bs_store *s;
    usage_recorder *rec;
} recorder_fx;

static recorder_fx fx_open(double flush_s) {
    recorder_fx f = {.dir = make_dir()};
    bs_error err = {0};
    CHECK_OK(store_open(f.dir, &f.s, &err), &err);
    if (f.s) CHECK_OK(usage_open(f.s, flush_s, &f.rec, &err), &err);
    return f;
}

static void fx_close(recorder_fx *f) {
    usage_close(f->rec);
    store_close(f->s);
    remove_dir(f->dir);
}

/* A unique suffix so runs against a shared PostgreSQL never see each
 * other's rows. */
static const char *run_tag(void) {
    static char tag[32];
    if (!tag[0]) snprintf(tag, sizeof tag, "%ld-%ld", (long)getpid(), (long)time(NULL));
    return tag;
}

static json_t *find_row(json_t *list, const char *field, const char *value) {
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(list, "data"), i, row) {
        if (strcmp(json_string_value(json_object_get(row, field)), value) == 0) return row;
    }
    return NULL;
}

static long long jint(json_t *row, const char *f) { return (long long)json_integer_value(json_object_get(row, f)); }
static double jreal(json_t *row, const char *f) { return json_real_value(json_object_get(row, f)); }

/* ------------------------------------------------------------ concurrent sums */

enum { N_THREADS = 16, N_PER_THREAD = 10000, N_KEYS = 3 };
static const int64_t T0 = 1700000000; /* 2023-11-14T22:13:20Z */

typedef struct worker {
    usage_recorder *rec;
    char keys[N_KEYS][64];
    int n_distinct; /* 0: the 3x2 keys/models; else that many distinct keys */
} worker;

/* Event i (the same in every thread): its counts are a function of i. */
static usage_event event_for(const worker *w, int i, char *keybuf) {
    usage_event e = {.ts = T0 + (i % 4) * 60, .model = i % 2 ? "m-big" : "m-small", .route = "",
                     .target = i % 2 ? "m-big" : "m-small", .error = i % 10 == 0,
                     .prompt_tokens = 1 + i % 7, .completion_tokens = 2 + i % 5,
                     .latency_ms = 10 + i % 3, .guardrail_intervened = i % 50 == 0};
    e.cost_usd = (double)e.prompt_tokens * 1e-6 + (double)e.completion_tokens * 2e-6;
    if (w->n_distinct) {
        snprintf(keybuf, 64, "%s-%d", w->keys[0], i % w->n_distinct);
        e.key_id = keybuf;
    } else {
        e.key_id = w->keys[i % N_KEYS];
    }
    return e;
}

static void *record_loop(void *arg) {
    worker *w = arg;
    char keybuf[64];
    for (int i = 0; i < N_PER_THREAD; i++) {
        usage_event e = event_for(w, i, keybuf);
        usage_record(w->rec, &e);
    }
    return NULL;
}

static void run_workers(worker *w) {
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) CHECK_INT(pthread_create(&th[t], NULL, record_loop, w), 0);
    for (int t = 0; t < N_THREADS; t++) pthread_join(th[t], NULL);
}

static void check_concurrent_sums(bs_store *s) {
    bs_error err = {0};
    usage_recorder *rec = NULL;
    /* A long interval: the sums must come from usage_flush, not the timer. */
    CHECK_OK(usage_open(s, 3600, &rec, &err), &err);
    if (!rec) return;
    worker w = {.rec = rec};
    for (int k = 0; k < N_KEYS; k++) snprintf(w.keys[k], sizeof w.keys[k], "key%d-%s", k, run_tag());
    run_workers(&w);
    CHECK_OK(usage_flush(rec, &err), &err);

    for (int k = 0; k < N_KEYS; k++) {
        long long req = 0, errs = 0, pt = 0, ct = 0, gr = 0;
        double cost = 0, lat = 0;
        char kb[64];
        for (int i = 0; i < N_PER_THREAD; i++) {
            usage_event e = event_for(&w, i, kb);
            if (strcmp(e.key_id, w.keys[k]) != 0) continue;
            req++, errs += e.error, pt += e.prompt_tokens, ct += e.completion_tokens, gr += e.guardrail_intervened;
            cost += e.cost_usd, lat += e.latency_ms;
        }
        json_t *out = NULL;
        CHECK_OK(usage_query(rec, "key", NULL, NULL, w.keys[k], &out, &err), &err);
        json_t *row = find_row(out, "key_id", w.keys[k]);
        CHECK(row != NULL);
        CHECK_INT(json_array_size(json_object_get(out, "data")), 1);
        if (row) {
            CHECK_INT(jint(row, "requests"), req * N_THREADS);
            CHECK_INT(jint(row, "errors"), errs * N_THREADS);
            CHECK_INT(jint(row, "prompt_tokens"), pt * N_THREADS);
            CHECK_INT(jint(row, "completion_tokens"), ct * N_THREADS);
            CHECK_INT(jint(row, "total_tokens"), (pt + ct) * N_THREADS);
            CHECK_INT(jint(row, "guardrail_interventions"), gr * N_THREADS);
            CHECK_NEAR(jreal(row, "cost_usd"), cost * N_THREADS, cost * N_THREADS * 1e-9);
            CHECK_NEAR(jreal(row, "avg_latency_ms"), lat / (double)req, 1e-9);
        }
        json_decref(out);

        /* By model, for this key only: two rows splitting the requests. */
        CHECK_OK(usage_query(rec, "model", NULL, NULL, w.keys[k], &out, &err), &err);
        json_t *big = find_row(out, "model", "m-big"), *small = find_row(out, "model", "m-small");
        CHECK(big && small);
        if (big && small) CHECK_INT(jint(big, "requests") + jint(small, "requests"), req * N_THREADS);
        json_decref(out);
    }
    usage_close(rec);
}

static void test_concurrent_sums_sqlite(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
    if (s) check_concurrent_sums(s);
    store_close(s);
    remove_dir(dir);
}

static void test_concurrent_sums_postgres(void) {
    const char *url = getenv("BASALT_TEST_PG_URL");
    if (!url || !*url) SKIP("BASALT_TEST_PG_URL not set");
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open_url(url, dir, &s, &err), &err);
    if (s) {
        CHECK_STR(store_backend(s), "postgres");
        check_concurrent_sums(s);
    }
    store_close(s);
    remove_dir(dir);
}

/* More distinct rows than the hot table holds: stripes spill to the writer
 * and every event still counts. */
static void test_overflow_keeps_counts(void) {
    recorder_fx fx = fx_open(3600);
    usage_recorder *rec = fx.rec;
    bs_error err = {0};
    worker w = {.rec = rec, .n_distinct = 5000};
    snprintf(w.keys[0], sizeof w.keys[0], "many");
    run_workers(&w);
    json_t *out = NULL;
    CHECK_OK(usage_query(rec, "day", NULL, NULL, NULL, &out, &err), &err);
    json_t *data = json_object_get(out, "data");
    CHECK_INT(json_array_size(data), 1);
    CHECK_INT(jint(json_array_get(data, 0), "requests"), N_THREADS * N_PER_THREAD);
    json_decref(out);
    CHECK_OK(usage_query(rec, "key", NULL, NULL, NULL, &out, &err), &err);
    CHECK_INT(json_array_size(json_object_get(out, "data")), 5000);
    json_t *one = find_row(out, "key_id", "many-4999");
    CHECK(one && jint(one, "requests") == N_THREADS * 2); /* i = 4999 and 9999 */
    json_decref(out);
    fx_close(&fx);
}

/* ------------------------------------------------------------ grouping */

static void record(usage_recorder *rec, int64_t ts, const char *key, const char *model, const char *route,
                   const char *target, int64_t pt, int64_t ct, double cost) {
    usage_event e = {.ts = ts, .key_id = key, .model = model, .route = route, .target = target,
                     .prompt_tokens = pt, .completion_tokens = ct, .cost_usd = cost, .latency_ms = 100};
    usage_record(rec, &e);
}

static void test_group_by_day_and_dims(void) {
    recorder_fx fx = fx_open(3600);
    usage_recorder *rec = fx.rec;
    bs_error err = {0};
    const int64_t jan1 = 1704067200; /* 2024-01-01T00:00:00Z */
    record(rec, jan1 + 86400 - 30, "k1", "chat", "ab", "local-a", 10, 1, 0.5);  /* Jan 1 23:59:30 */
    record(rec, jan1 + 86400 + 10, "k1", "chat", "ab", "remote-b", 20, 2, 0.25); /* Jan 2 00:00:10 */
    record(rec, jan1 + 86400 + 43200, "k2", "chat", "ab", "local-a", 30, 3, 0.125);
    record(rec, jan1 + 2 * 86400 + 5, "k2", "embed", "", "embed", 40, 0, 0);

    json_t *out = NULL;
    CHECK_OK(usage_query(rec, "day", NULL, NULL, NULL, &out, &err), &err);
    json_t *data = json_object_get(out, "data");
    CHECK_INT(json_array_size(data), 3);
    CHECK_STR(json_string_value(json_object_get(json_array_get(data, 0), "day")), "2024-01-01");
    CHECK_STR(json_string_value(json_object_get(json_array_get(data, 1), "day")), "2024-01-02");
    CHECK_STR(json_string_value(json_object_get(json_array_get(data, 2), "day")), "2024-01-03");
    CHECK_INT(jint(json_array_get(data, 0), "prompt_tokens"), 10);
    CHECK_INT(jint(json_array_get(data, 1), "requests"), 2);
    CHECK_INT(jint(json_array_get(data, 1), "prompt_tokens"), 50);
    CHECK_NEAR(jreal(json_array_get(data, 1), "cost_usd"), 0.375, 1e-12);
    CHECK_STR(json_string_value(json_object_get(out, "group_by")), "day");
    CHECK(json_is_null(json_object_get(out, "from")));
    json_decref(out);

    /* A date as `to` includes that day; as `from` it starts at midnight. */
    CHECK_OK(usage_query(rec, "key", "2024-01-02", "2024-01-02", NULL, &out, &err), &err);
    CHECK_INT(jint(out, "from"), jan1 + 86400);
    CHECK_INT(jint(out, "to"), jan1 + 2 * 86400);
    CHECK_INT(json_array_size(json_object_get(out, "data")), 2);
    CHECK_INT(jint(find_row(out, "key_id", "k1"), "prompt_tokens"), 20);
    CHECK_INT(jint(find_row(out, "key_id", "k2"), "prompt_tokens"), 30);
    json_decref(out);

    /* Unix seconds, [from, to): the 23:59:30 minute starts at 23:59:00. */
    char from[32], to[32];
    snprintf(from, sizeof from, "%lld", (long long)(jan1 + 86400 - 60));
    snprintf(to, sizeof to, "%lld", (long long)(jan1 + 86400));
    CHECK_OK(usage_query(rec, "target", from, to, NULL, &out, &err), &err);
    CHECK_INT(json_array_size(json_object_get(out, "data")), 1);
    CHECK_INT(jint(find_row(out, "target", "local-a"), "requests"), 1);
    json_decref(out);

    CHECK_OK(usage_query(rec, "route", NULL, NULL, NULL, &out, &err), &err);
    CHECK_INT(jint(find_row(out, "route", "ab"), "requests"), 3);
    CHECK_INT(jint(find_row(out, "route", ""), "requests"), 1);
    json_decref(out);
    CHECK_OK(usage_query(rec, "target", NULL, NULL, "k2", &out, &err), &err);
    CHECK_INT(json_array_size(json_object_get(out, "data")), 2);
    CHECK_INT(jint(find_row(out, "target", "embed"), "prompt_tokens"), 40);
    json_decref(out);
    CHECK_OK(usage_query(rec, "model", NULL, NULL, NULL, &out, &err), &err);
    CHECK_INT(jint(find_row(out, "model", "chat"), "completion_tokens"), 6);
    CHECK_NEAR(jreal(find_row(out, "model", "chat"), "avg_latency_ms"), 100, 1e-9);
    json_decref(out);
    fx_close(&fx);
}

/* ------------------------------------------------------------ the writer */

static int64_t stored_requests(bs_store *s, const char *key) {
    store_usage *rows = NULL;
    size_t n = 0;
    bs_error err = {0};
    int64_t total = -1;
    if (store_usage_query(s, STORE_USAGE_BY_KEY, 0, 0, key, &rows, &n, &err) == BS_OK) {
        total = 0;
        for (size_t i = 0; i < n; i++) total += rows[i].requests;
        store_usages_free(rows, n);
    }
    return total;
}

/* Polls the store (not the recorder, which would flush) for up to 20 s. */
static int64_t wait_stored(bs_store *s, const char *key, int64_t want) {
    int64_t got = -1;
    for (int i = 0; i < 2000 && got != want; i++) {
        got = stored_requests(s, key);
        if (got != want) usleep(10000);
    }
    return got;
}

static void test_writer_flushes_on_its_own(void) {
    recorder_fx fx = fx_open(0.05);
    bs_store *s = fx.s;
    usage_recorder *rec = fx.rec;
    for (int i = 0; i < 25; i++) record(rec, 0, "auto", "m", "", "m", 1, 1, 0);
    CHECK_INT(wait_stored(s, "auto", 25), 25);
    for (int i = 0; i < 5; i++) record(rec, 0, "auto", "m", "", "m", 1, 1, 0);
    CHECK_INT(wait_stored(s, "auto", 30), 30);
    fx_close(&fx);
}

/* The usage table is renamed away behind the store's back (a real failure
 * of store_usage_add, not a mock), then restored. */
static void test_store_failure_keeps_counts(void) {
    recorder_fx fx = fx_open(0.05);
    bs_store *s = fx.s;
    usage_recorder *rec = fx.rec;
    bs_error err = {0};
    char *db = bs_path_join(fx.dir, "basalt.db");
    sqlite3 *raw = NULL;
    CHECK_INT(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_busy_timeout(raw, 10000);

    record(rec, T0, "kf", "m", "", "m", 3, 4, 0.5);
    CHECK_OK(usage_flush(rec, &err), &err);
    CHECK_INT(sqlite3_exec(raw, "ALTER TABLE usage RENAME TO usage_away", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 100; i++) record(rec, T0, "kf", "m", "", "m", 3, 4, 0.5);
    CHECK(usage_flush(rec, &err) != BS_OK);
    CHECK(strstr(err.msg, "usage") != NULL);
    for (int i = 0; i < 50; i++) record(rec, T0 + 120, "kf", "m", "", "m", 3, 4, 0.5);
    usleep(200000); /* a few failing writer ticks */
    /* Spend reads the store too, so it reports the outage rather than a
     * partial number. */
    double spend = 0;
    CHECK(usage_spend(rec, "kf", T0, &spend, &err) != BS_OK);
    CHECK_NEAR(spend, 0, 0);
    CHECK_INT(sqlite3_exec(raw, "ALTER TABLE usage_away RENAME TO usage", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(wait_stored(s, "kf", 151), 151);
    CHECK_OK(usage_spend(rec, "kf", T0, &spend, &err), &err);
    CHECK_NEAR(spend, 151 * 0.5, 1e-9);
    CHECK_OK(usage_spend(rec, "kf", T0 + 61, &spend, &err), &err); /* from the minute T0+60 on */
    CHECK_NEAR(spend, 50 * 0.5, 1e-9);
    json_t *out = NULL;
    CHECK_OK(usage_query(rec, "key", NULL, NULL, NULL, &out, &err), &err);
    CHECK_INT(jint(find_row(out, "key_id", "kf"), "prompt_tokens"), 151 * 3);
    json_decref(out);
    sqlite3_close(raw);
    free(db);
    fx_close(&fx);
}

static void test_spend_includes_unflushed(void) {
    recorder_fx fx = fx_open(3600);
    bs_store *s = fx.s;
    usage_recorder *rec = fx.rec;
    bs_error err = {0};
    record(rec, T0, "ks", "m", "", "m", 1, 1, 1.5);
    record(rec, T0, "other", "m", "", "m", 1, 1, 100);
    CHECK_OK(usage_flush(rec, &err), &err);
    record(rec, T0 + 600, "ks", "m", "", "m", 1, 1, 0.25);
    record(rec, T0 - 3600, "ks", "m", "", "m", 1, 1, 7); /* before `from` */
    double spend = 0;
    CHECK_OK(usage_spend(rec, "ks", T0, &spend, &err), &err);
    CHECK_NEAR(spend, 1.75, 1e-12);
    CHECK_INT(stored_requests(s, "ks"), 1); /* spend did not flush */
    usage_close(rec);
    CHECK_INT(stored_requests(s, "ks"), 3); /* close did */
    store_close(s);
    remove_dir(fx.dir);
}

static void test_csv_exact(void) {
    recorder_fx fx = fx_open(3600);
    usage_recorder *rec = fx.rec;
    bs_error err = {0};
    record(rec, T0, "plain", "m", "", "m", 10, 5, 0.25);
    record(rec, T0, "plain", "m", "", "m", 20, 5, 0.5);
    usage_event e = {.ts = T0, .key_id = "a,\"b\"", .model = "m", .target = "m", .error = 1, .latency_ms = 7,
                     .guardrail_intervened = 1};
    usage_record(rec, &e);
    char *csv = NULL;
    CHECK_OK(usage_csv(rec, "key", NULL, NULL, NULL, &csv, &err), &err);
    CHECK_STR(csv, "key_id,requests,errors,prompt_tokens,completion_tokens,total_tokens,cost_usd,avg_latency_ms,"
                   "guardrail_interventions\r\n"
                   "\"a,\"\"b\"\"\",1,1,0,0,0,0,7,1\r\n"
                   "plain,2,0,30,10,40,0.75,100,0\r\n");
    free(csv);
    CHECK_OK(usage_csv(rec, "day", "2023-11-15", NULL, NULL, &csv, &err), &err);
    CHECK_STR(csv, "day,requests,errors,prompt_tokens,completion_tokens,total_tokens,cost_usd,avg_latency_ms,"
                   "guardrail_interventions\r\n");
    free(csv);
    fx_close(&fx);
}

static void test_parameter_errors(void) {
    recorder_fx fx = fx_open(3600);
    bs_store *s = fx.s;
    usage_recorder *rec = fx.rec;
    bs_error err = {0};
    json_t *out = NULL;
    CHECK_INT(usage_query(rec, "team", NULL, NULL, NULL, &out, &err), BS_EINVAL);
    CHECK_STR(err.msg, "group_by: unknown value \"team\" (expected key, model, route, target or day)");
    CHECK(out == NULL);
    CHECK_INT(usage_query(rec, "key", "yesterday", NULL, NULL, &out, &err), BS_EINVAL);
    CHECK_STR(err.msg, "from: \"yesterday\" is neither Unix seconds nor a date YYYY-MM-DD");
    CHECK_INT(usage_query(rec, "key", NULL, "2024-02-30", NULL, &out, &err), BS_EINVAL);
    CHECK_STR(err.msg, "to: \"2024-02-30\" is neither Unix seconds nor a date YYYY-MM-DD");
    CHECK_INT(usage_query(rec, "key", "-5", NULL, NULL, &out, &err), BS_EINVAL);
    CHECK_STR(err.msg, "from: \"-5\" is neither Unix seconds nor a date YYYY-MM-DD");
    CHECK_INT(usage_query(rec, "key", "12x", NULL, NULL, &out, &err), BS_EINVAL);
    CHECK_STR(err.msg, "from: \"12x\" is neither Unix seconds nor a date YYYY-MM-DD");
    CHECK_INT(usage_query(rec, "key", "200", "100", NULL, &out, &err), BS_EINVAL);
    CHECK_STR(err.msg, "from: 200 is after to (100)");
    char *csv = NULL;
    CHECK_INT(usage_csv(rec, "key", "2024-01-05", "2024-01-03", NULL, &csv, &err), BS_EINVAL);
    CHECK_STR(err.msg, "from: 1704412800 is after to (1704326400)");
    CHECK(csv == NULL);
    usage_recorder *bad = NULL;
    CHECK_INT(usage_open(s, 0, &bad, &err), BS_EINVAL);
    CHECK_STR(err.msg, "usage: flush_s must be > 0 (got 0)");
    /* Defaults: group_by key, no bounds; an empty range is an empty list. */
    CHECK_OK(usage_query(rec, NULL, "100", "100", NULL, &out, &err), &err);
    CHECK_STR(json_string_value(json_object_get(out, "group_by")), "key");
    CHECK_INT(json_array_size(json_object_get(out, "data")), 0);
    json_decref(out);
    fx_close(&fx);
}

/* ------------------------------------------------------------ invocation log */

static json_t *read_lines(const char *path, size_t *n) {
    char *text = NULL;
    size_t size = 0;
    bs_error err = {0};
    *n = 0;
    json_t *arr = json_array();
    if (bs_file_read(path, &text, &size, &err) != BS_OK) return arr;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        CHECK(j != NULL);
        if (j) json_array_append_new(arr, j);
        (*n)++;
    }
    free(text);
    return arr;
}

static invlog_entry sample_entry(json_t *fallbacks, json_t *in, json_t *outb) {
    return (invlog_entry){.ts_ms = 1735787045678, /* 2025-01-02T03:04:05.678Z */
                          .request_id = "req-1", .key_id = "key-abc", .key_name = "ci", .operation =
                                                                                            "/v1/chat/completions",
                          .model_id = "chat", .route = "chat", .target = "remote-b", .fallbacks = fallbacks,
                          .status = 200, .input_tokens = 12, .output_tokens = 34, .input_body = in,
                          .output_body = outb, .cost_usd = 0.5, .latency_ms = 250, .overhead_ms = 1.5,
                          .ttft_ms = 40, .guardrail_action = "GUARDRAIL_INTERVENED"};
}

static void test_invocation_log_fields(void) {
    char *dir = make_dir();
    char *logdir = bs_path_join(dir, "logs/sub"); /* created by open */
    bs_error err = {0};
    json_t *fb = json_pack("[s]", "local-a");
    json_t *in = json_pack("{s:s}", "prompt", "hi"), *outb = json_pack("{s:s}", "text", "hello");
    for (int bodies = 0; bodies < 2; bodies++) {
        invlog *l = NULL;
        invlog_options o = {.dir = logdir, .max_mb = 1, .retention_days = 30, .log_bodies = bodies};
        CHECK_OK(invlog_open(&o, &l, &err), &err);
        if (!l) break;
        invlog_entry e = sample_entry(fb, in, outb);
        invlog_write(l, &e);
        e = (invlog_entry){.operation = "/v1/embeddings", .status = 429, .error_code = "rate_limited",
                           .ttft_ms = -1};
        invlog_write(l, &e);
        invlog_sync(l);
        char *path = invlog_current_path(l);
        CHECK(path && strstr(path, "/invocations-") && strstr(path, ".jsonl"));
        size_t n;
        json_t *lines = read_lines(path, &n);
        CHECK_INT(n, 2);
        json_t *a = json_array_get(lines, 0), *b = json_array_get(lines, 1);
        CHECK_STR(json_string_value(json_object_get(a, "timestamp")), "2025-01-02T03:04:05.678Z");
        CHECK_STR(json_string_value(json_object_get(a, "schemaType")), "ModelInvocationLog");
        CHECK_STR(json_string_value(json_object_get(a, "requestId")), "req-1");
        CHECK_STR(json_string_value(json_object_get(a, "keyId")), "key-abc");
        CHECK_STR(json_string_value(json_object_get(a, "keyName")), "ci");
        CHECK_STR(json_string_value(json_object_get(a, "operation")), "/v1/chat/completions");
        CHECK_STR(json_string_value(json_object_get(a, "modelId")), "chat");
        CHECK_STR(json_string_value(json_object_get(a, "target")), "remote-b");
        CHECK(json_equal(json_object_get(a, "fallbacks"), fb));
        CHECK_INT(jint(a, "status"), 200);
        CHECK(json_is_null(json_object_get(a, "errorCode")));
        json_t *input = json_object_get(a, "input"), *output = json_object_get(a, "output");
        CHECK_INT(jint(input, "inputTokenCount"), 12);
        CHECK_INT(jint(output, "outputTokenCount"), 34);
        if (bodies) {
            CHECK(json_equal(json_object_get(input, "inputBodyJson"), in));
            CHECK(json_equal(json_object_get(output, "outputBodyJson"), outb));
        } else {
            CHECK(json_object_get(input, "inputBodyJson") == NULL);
            CHECK(json_object_get(output, "outputBodyJson") == NULL);
        }
        CHECK_NEAR(jreal(a, "costUsd"), 0.5, 0);
        CHECK_NEAR(jreal(a, "latencyMs"), 250, 0);
        CHECK_NEAR(jreal(a, "overheadMs"), 1.5, 0);
        CHECK_NEAR(jreal(a, "ttftMs"), 40, 0);
        CHECK_STR(json_string_value(json_object_get(a, "guardrailAction")), "GUARDRAIL_INTERVENED");
        CHECK_INT(jint(b, "status"), 429);
        CHECK_STR(json_string_value(json_object_get(b, "errorCode")), "rate_limited");
        CHECK(json_is_null(json_object_get(b, "ttftMs")));
        CHECK(json_is_null(json_object_get(b, "keyId")));
        CHECK_INT(json_array_size(json_object_get(b, "fallbacks")), 0);
        CHECK_STR(json_string_value(json_object_get(b, "guardrailAction")), "NONE");
        json_decref(lines);
        free(path);
        CHECK_INT(invlog_dropped(l), 0);
        invlog_close(l);
    }
    json_decref(fb);
    json_decref(in);
    json_decref(outb);
    invlog_options bad = {.dir = logdir, .max_mb = 0, .retention_days = 30};
    invlog *l = NULL;
    CHECK_INT(invlog_open(&bad, &l, &err), BS_EINVAL);
    CHECK_STR(err.msg, "invocation log: log_max_mb must be >= 1 (got 0)");
    free(logdir);
    remove_dir(dir);
}

/* json_text_value writes what json_dumps(JSON_COMPACT) does. */
static void check_same_text(const json_t *v) {
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), stack[16];
    json_text t = json_text_on(stack, sizeof stack); /* most values outgrow it: the move to the heap is tested */
    json_text_value(&t, v);
    json_text_raw(&t, "", 1);
    CHECK(want && !t.oom);
    if (want && !t.oom) CHECK_STR(t.data, want);
    free(want);
    json_text_free(&t);
}

static void test_json_text_matches_jansson(void) {
    static const char controls[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f\0end";
    json_t *v = json_pack("{s:s,s:s#,s:s,s:[],s:{},s:n,s:b,s:b,s:I,s:I,s:I,s:[f,f,f,f,f,f,f,f,f,f,f,f]}", "plain",
                          "req_4f2a", "controls", controls, (int)sizeof controls - 1, "utf8",
                          "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "empty_a", "empty_o", "null", "t", 1, "f", 0,
                          "zero", (json_int_t)0, "min", (json_int_t)INT64_MIN, "max", (json_int_t)INT64_MAX, "reals",
                          0.0, -0.0, 250.0, 0.1, 1.5, 0.69459800033655483, 1e20, 1e21, 1e-7, 1.2345e-300, 5e-324,
                          -1.7976931348623157e308);
    json_object_set_new(v, "nested", json_pack("[{s:s,s:s,s:s},[1,[2,{}]]]", "model", "a", "why", "direct", "class",
                                               "none"));
    check_same_text(v);
    json_decref(v);
    /* reals from every corner of the double range */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        uint64_t bits = i % 2 ? x : (x >> 12) | 0x3ff0000000000000ull; /* half of them in [1, 2) */
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        json_t *r = json_real(d * (i % 3 ? 1 : 1e-3));
        check_same_text(r);
        json_decref(r);
    }
    /* where jansson refuses, a line still comes out */
    json_text t = {0};
    json_text_str(&t, "a\xff\xc3"); /* an invalid byte, then a sequence cut short */
    json_text_lit(&t, ",");
    json_text_real(&t, NAN);
    json_text_lit(&t, ",");
    json_text_str(&t, NULL);
    json_text_raw(&t, "", 1);
    CHECK_STR(t.data, "\"a\xef\xbf\xbd\xef\xbf\xbd\",null,null");
    json_text_free(&t);
}

/* The invocation log's lines are the bytes the jansson-built record gave
 * (members in the header's order), bodies or not. */
static void test_invocation_log_bytes(void) {
    char *dir = make_dir();
    bs_error err = {0};
    json_t *fb = json_pack("[{s:s,s:s,s:s}]", "model", "local-a", "why", "error", "class", "server");
    json_t *in = json_pack("{s:s,s:[{s:s}]}", "model", "chat", "messages", "content", "h\xc3\xa9\n\"x\"");
    json_t *outb = json_pack("{s:s,s:f}", "text", "hello", "p", 0.25);
    for (int bodies = 0; bodies < 2; bodies++) {
        invlog *l = NULL;
        invlog_options o = {.dir = dir, .max_mb = 1, .retention_days = 30, .log_bodies = bodies};
        CHECK_OK(invlog_open(&o, &l, &err), &err);
        if (!l) break;
        invlog_entry e = sample_entry(fb, in, outb);
        e.latency_ms = 0.69459800033655483;
        e.usage_estimated = 1;
        invlog_write(l, &e);
        invlog_entry e2 = {.ts_ms = 1735787045001, .operation = "/v1/embeddings", .status = 499,
                           .error_code = "client_closed_request", .ttft_ms = -1, .cost_usd = 1e-7};
        invlog_write(l, &e2);
        invlog_sync(l);
        char *path = invlog_current_path(l), *text = NULL;
        size_t size = 0;
        CHECK_OK(bs_file_read(path, &text, &size, &err), &err);
        json_t *input = json_pack("{s:I}", "inputTokenCount", (json_int_t)12);
        json_t *output = json_pack("{s:I}", "outputTokenCount", (json_int_t)34);
        if (bodies) {
            json_object_set(input, "inputBodyJson", in);
            json_object_set(output, "outputBodyJson", outb);
        }
        json_t *a = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:O,s:i,s:n,s:o,s:o,s:b,s:f,s:f,s:f,s:f,s:s}",
                              "schemaType", "ModelInvocationLog", "schemaVersion", "1.0", "timestamp",
                              "2025-01-02T03:04:05.678Z", "requestId", "req-1", "keyId", "key-abc", "keyName", "ci",
                              "operation", "/v1/chat/completions", "modelId", "chat", "route", "chat", "target",
                              "remote-b", "fallbacks", fb, "status", 200, "errorCode", "input", input, "output",
                              output, "usageEstimated", 1, "costUsd", 0.5, "latencyMs", 0.69459800033655483,
                              "overheadMs", 1.5, "ttftMs", 40.0, "guardrailAction", "GUARDRAIL_INTERVENED");
        json_t *b = json_pack("{s:s,s:s,s:s,s:n,s:n,s:n,s:s,s:n,s:n,s:n,s:[],s:i,s:s,s:{s:i},s:{s:i},s:b,s:f,s:f,"
                              "s:f,s:n,s:s}",
                              "schemaType", "ModelInvocationLog", "schemaVersion", "1.0", "timestamp",
                              "2025-01-02T03:04:05.001Z", "requestId", "keyId", "keyName", "operation",
                              "/v1/embeddings", "modelId", "route", "target", "fallbacks", "status", 499, "errorCode",
                              "client_closed_request", "input", "inputTokenCount", 0, "output", "outputTokenCount", 0,
                              "usageEstimated", 0, "costUsd", 1e-7, "latencyMs", 0.0, "overheadMs", 0.0, "ttftMs",
                              "guardrailAction", "NONE");
        char *da = json_dumps(a, JSON_COMPACT), *db = json_dumps(b, JSON_COMPACT), want[4096];
        snprintf(want, sizeof want, "%s\n%s\n", da, db);
        CHECK_STR(text, want);
        free(da);
        free(db);
        json_decref(a);
        json_decref(b);
        free(text);
        free(path);
        invlog_close(l);
    }
    json_decref(fb);
    json_decref(in);
    json_decref(outb);
    remove_dir(dir);
}

static int count_logs(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '^invocations-.*\\.jsonl$'", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void test_invocation_log_rotation_and_retention(void) {
    char *dir = make_dir();
    bs_error err = {0};
    /* Two old files (by mtime) and one fresh foreign-looking one. */
    const char *old_names[] = {"invocations-20200101-000000.jsonl", "invocations-20200102-000000-1.jsonl"};
    for (int i = 0; i < 2; i++) {
        char *p = bs_path_join(dir, old_names[i]);
        FILE *f = fopen(p, "w");
        fputs("{}\n", f);
        fclose(f);
        struct timeval tv[2] = {{.tv_sec = time(NULL) - 40 * 86400}, {.tv_sec = time(NULL) - 40 * 86400}};
        CHECK_INT(utimes(p, tv), 0);
        free(p);
    }
    char *keep = bs_path_join(dir, "notes.txt");
    FILE *f = fopen(keep, "w");
    fclose(f);
    struct timeval tv[2] = {{.tv_sec = time(NULL) - 40 * 86400}, {.tv_sec = time(NULL) - 40 * 86400}};
    CHECK_INT(utimes(keep, tv), 0);

    invlog *l = NULL;
    invlog_options o = {.dir = dir, .max_mb = 1, .retention_days = 30, .log_bodies = 1};
    CHECK_OK(invlog_open(&o, &l, &err), &err);
    CHECK_INT(count_logs(dir), 1); /* the old ones are gone; the new one exists */
    CHECK(bs_file_exists(keep));
    char *first = invlog_current_path(l);

    /* ~1.2 MiB of lines: past 1 MiB a new file starts. */
    char *big = malloc(10001);
    memset(big, 'x', 10000);
    big[10000] = '\0';
    json_t *in = json_pack("{s:s}", "prompt", big);
    for (int i = 0; i < 120; i++) {
        invlog_entry e = sample_entry(NULL, in, NULL);
        invlog_write(l, &e);
        if (i % 16 == 15) invlog_sync(l); /* stay inside the queue bound */
    }
    invlog_sync(l);
    char *second = invlog_current_path(l);
    CHECK(first && second && strcmp(first, second) != 0);
    CHECK_INT(count_logs(dir), 2);
    size_t n1 = 0, n2 = 0;
    json_t *a = read_lines(first, &n1), *b = read_lines(second, &n2);
    CHECK_INT(n1 + n2, 120);
    struct stat sb;
    CHECK_INT(stat(first, &sb), 0);
    CHECK(sb.st_size <= (1 << 20));
    CHECK(n2 > 0);
    json_decref(a);
    json_decref(b);
    CHECK_INT(invlog_dropped(l), 0);
    invlog_close(l);

    /* A queue of 1 line that is never drained fast enough drops and counts. */
    invlog_options tiny = {.dir = dir, .max_mb = 1, .retention_days = 30, .queue_lines = 1, .queue_bytes = 64};
    CHECK_OK(invlog_open(&tiny, &l, &err), &err);
    invlog_entry e = sample_entry(NULL, NULL, NULL);
    invlog_write(l, &e); /* longer than 64 bytes: refused */
    invlog_sync(l);
    CHECK_INT(invlog_dropped(l), 1);
    invlog_close(l);

    json_decref(in);
    free(big);
    free(first);
    free(second);
    free(keep);
    remove_dir(dir);
}

/* ------------------------------------------------------------ audit */

static void test_audit_order_and_details(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
    char ids[3][AUDIT_ID_MAX];
    json_t *d0 = json_pack("{s:s, s:f}", "name", "ci", "budget_usd", 10.0);
    CHECK_OK(audit_record(s, "key-admin", "key.create", "key-1", d0, ids[0], &err), &err);
    CHECK_OK(audit_record(s, "key-admin", "key.revoke", "key-1", NULL, ids[1], &err), &err);
    json_t *d2 = json_pack("{s:s}", "path", "/etc/basalt.yaml");
    CHECK_OK(audit_record(s, NULL, "config.reload", NULL, d2, ids[2], &err), &err);
    CHECK(strncmp(ids[0], "audit-", 6) == 0);
    CHECK_INT(audit_record(s, "x", "", NULL, NULL, NULL, &err), BS_EINVAL);
    CHECK_STR(err.msg, "audit: action is required");

    json_t *out = NULL;
    CHECK_OK(audit_list(s, 0, 0, NULL, &out, &err), &err);
    json_t *data = json_object_get(out, "data");
    CHECK_INT(json_array_size(data), 3);
    const char *actions[] = {"key.create", "key.revoke", "config.reload"};
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(data, (size_t)i);
        CHECK_STR(json_string_value(json_object_get(e, "id")), ids[i]);
        CHECK_STR(json_string_value(json_object_get(e, "action")), actions[i]);
        CHECK_STR(json_string_value(json_object_get(e, "object")), "audit_event");
        CHECK(jint(e, "ts") / 1000 == jint(e, "created_at"));
    }
    json_t *e0 = json_array_get(data, 0), *e2 = json_array_get(data, 2);
    CHECK_STR(json_string_value(json_object_get(e0, "actor")), "key-admin");
    CHECK_STR(json_string_value(json_object_get(e0, "target")), "key-1");
    CHECK(json_equal(json_object_get(e0, "details"), d0));
    CHECK(json_equal(json_object_get(e2, "details"), d2));
    CHECK_STR(json_string_value(json_object_get(e2, "actor")), "");
    CHECK(json_is_null(json_object_get(e2, "target")));
    CHECK(json_is_false(json_object_get(out, "has_more")));
    json_decref(out);

    /* Newest first, two per page, then the rest after the cursor. */
    store_page pg = {.limit = 2, .ascending = 0};
    CHECK_OK(audit_list(s, 0, 0, &pg, &out, &err), &err);
    CHECK_INT(json_array_size(json_object_get(out, "data")), 2);
    CHECK_STR(json_string_value(json_object_get(out, "first_id")), ids[2]);
    CHECK_STR(json_string_value(json_object_get(out, "last_id")), ids[1]);
    CHECK(json_is_true(json_object_get(out, "has_more")));
    json_decref(out);
    pg.after = ids[1];
    CHECK_OK(audit_list(s, 0, 0, &pg, &out, &err), &err);
    CHECK_INT(json_array_size(json_object_get(out, "data")), 1);
    CHECK_STR(json_string_value(json_object_get(out, "first_id")), ids[0]);
    CHECK(json_is_false(json_object_get(out, "has_more")));
    json_decref(out);
    pg.after = "audit-nope";
    CHECK_INT(audit_list(s, 0, 0, &pg, &out, &err), BS_ENOTFOUND);
    CHECK_STR(err.msg, "after: no audit entry \"audit-nope\" in this range");

    /* A time range that ends before now holds nothing. */
    CHECK_OK(audit_list(s, 0, 1000, NULL, &out, &err), &err);
    CHECK_INT(json_array_size(json_object_get(out, "data")), 0);
    json_decref(out);
    json_decref(d0);
    json_decref(d2);
    store_close(s);
    remove_dir(dir);
}

int main(void) {
    RUN(test_concurrent_sums_sqlite);
    RUN(test_concurrent_sums_postgres);
    RUN(test_overflow_keeps_counts);
    RUN(test_group_by_day_and_dims);
    RUN(test_writer_flushes_on_its_own);
    RUN(test_store_failure_keeps_counts);
    RUN(test_spend_includes_unflushed);
    RUN(test_csv_exact);
    RUN(test_parameter_errors);
    RUN(test_invocation_log_fields);
    RUN(test_invocation_log_bytes);
    RUN(test_json_text_matches_jansson);
    RUN(test_invocation_log_rotation_and_retention);
    RUN(test_audit_order_and_details);
    TEST_MAIN_END();
}
