/* Tests for store/: schema creation and migration bookkeeping, each record
 * type's insert/get/list/update round trip, OpenAI cursor paging (after,
 * limit, order, has_more, owner), documents with compare-and-set, usage
 * aggregation, constraint failures as values, and concurrent writers.
 *
 * The *_body tests run twice: on SQLite, and on PostgreSQL when
 * BASALT_TEST_PG_URL names a server (tests/support/services.sh starts one);
 * each PostgreSQL run gets a database of its own, dropped at the end. */
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/file.h"
#include "store/store.h"

static char *make_dir(void) {
    char tmpl[] = "/tmp/basalt_store_XXXXXX";
    return strdup(mkdtemp(tmpl));
}

static void remove_dir(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

/* ------------------------------------------------------------ backends */

/* One store under test: a data directory and, for PostgreSQL, a database
 * made for this test. */
typedef struct fixture {
    char *dir;
    char dbname[64];
    char url[512];
    int pg;
} fixture;

/* url with its database (the path) replaced by name, query kept. */
static void url_with_db(const char *url, const char *name, char *out, size_t cap) {
    const char *auth = strstr(url, "://");
    const char *path = auth ? auth + 3 + strcspn(auth + 3, "/?") : url + strlen(url);
    const char *query = strchr(path, '?');
    snprintf(out, cap, "%.*s/%s%s", (int)(path - url), url, name, query ? query : "");
}

/* Runs sql on the server's maintenance connection (BASALT_TEST_PG_URL). */
static int pg_admin(const char *sql) {
    PGconn *c = PQconnectdb(getenv("BASALT_TEST_PG_URL"));
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    int ok = r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK);
    if (!ok) fprintf(stderr, "  %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok;
}

static int fixture_init(fixture *fx, int pg) {
    memset(fx, 0, sizeof *fx);
    fx->dir = make_dir();
    fx->pg = pg;
    if (!pg) return 1;
    static unsigned counter;
    snprintf(fx->dbname, sizeof fx->dbname, "basalt_t%ld_%ld_%u", (long)getpid(), (long)time(NULL), counter++);
    url_with_db(getenv("BASALT_TEST_PG_URL"), fx->dbname, fx->url, sizeof fx->url);
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", fx->dbname);
    return pg_admin(sql);
}

/* Another handle on the fixture's store (a second replica for PostgreSQL). */
static bs_store *fixture_open(fixture *fx) {
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open_url(fx->pg ? fx->url : NULL, fx->dir, &s, &err), &err);
    return s;
}

static void fixture_done(fixture *fx) {
    if (fx->pg && fx->dbname[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", fx->dbname);
        CHECK(pg_admin(sql));
    }
    remove_dir(fx->dir);
    free(fx->dir);
}

/* body on a fresh fixture of one backend; with open, on a store opened on
 * it (else s is NULL and the body opens its own). */
static void run_on(int pg, int open, void (*body)(bs_store *s, fixture *fx)) {
    fixture fx;
    if (fixture_init(&fx, pg)) {
        bs_store *s = open ? fixture_open(&fx) : NULL;
        if (s || !open) body(s, &fx);
        store_close(s);
    } else {
        test_failed_ = 1;
    }
    fixture_done(&fx);
}

/* test_<body>_sqlite and test_<body>_postgres. */
#define ON_BOTH_(body, open)                                                                             \
    static void test_##body##_sqlite(void) { run_on(0, open, body); }                                    \
    static void test_##body##_postgres(void) {                                                           \
        if (!getenv("BASALT_TEST_PG_URL"))                                                               \
            SKIP("BASALT_TEST_PG_URL unset: no PostgreSQL server (tests/support/services.sh starts one)"); \
        run_on(1, open, body);                                                                           \
    }
#define ON_BOTH(body) ON_BOTH_(body, 1)
#define ON_BOTH_FRESH(body) ON_BOTH_(body, 0)

static store_file file_rec(const char *id, const char *purpose, int64_t bytes) {
    return (store_file){.id = (char *)id, .filename = "data.jsonl", .purpose = (char *)purpose, .bytes = bytes,
                        .created_at = 1700000000, .sha256 = NULL, .path = "/nowhere", .status = STORE_FILE_PROCESSED};
}

static void test_open_creates_schema(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
    CHECK_INT(store_schema_version(s), 2);
    char *db = bs_path_join(dir, "basalt.db"), *files = bs_path_join(dir, "files");
    CHECK(bs_file_exists(db));
    CHECK(bs_is_directory(files));
    CHECK(strcmp(store_files_dir(s), files) == 0);
    store_close(s);
    /* Reopening runs no migration again and keeps the rows. */
    CHECK_OK(store_open(dir, &s, &err), &err);
    CHECK_INT(store_schema_version(s), 2);
    store_close(s);

    /* WAL mode sticks to the file. */
    sqlite3 *raw;
    CHECK_INT(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_stmt *st;
    CHECK_INT(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    /* A database from a newer basalt is refused, not "migrated". */
    CHECK_INT(sqlite3_exec(raw, "UPDATE schema_version SET version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    CHECK_INT(store_open(dir, &s, &err), BS_EUNSUPPORTED);
    CHECK(strstr(err.msg, "schema version 99") != NULL);
    CHECK(s == NULL);

    CHECK_INT(store_open("/nonexistent/basalt", &s, &err), BS_ENOTFOUND);
    free(db);
    free(files);
    remove_dir(dir);
    free(dir);
}

static void test_files_roundtrip(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
    store_file f = file_rec("file-a", "fine-tune", 120);
    f.sha256 = "ab12";
    f.owner = "tenant-1";
    CHECK_OK(store_file_insert(s, &f, &err), &err);
    CHECK_INT(store_file_insert(s, &f, &err), BS_EINVAL); /* the id is taken */
    CHECK(strstr(err.msg, "UNIQUE") != NULL);

    store_file got;
    CHECK_OK(store_file_get(s, "file-a", &got, &err), &err);
    CHECK_STR(got.id, "file-a");
    CHECK_STR(got.owner, "tenant-1");
    CHECK_STR(got.filename, "data.jsonl");
    CHECK_STR(got.purpose, "fine-tune");
    CHECK_INT(got.bytes, 120);
    CHECK_INT(got.created_at, 1700000000);
    CHECK_STR(got.sha256, "ab12");
    CHECK_STR(got.path, "/nowhere");
    CHECK_INT(got.status, STORE_FILE_PROCESSED);
    store_file_clear(&got);

    store_file nosha = file_rec("file-b", "batch", 0);
    CHECK_OK(store_file_insert(s, &nosha, &err), &err);
    CHECK_OK(store_file_get(s, "file-b", &got, &err), &err);
    CHECK(got.sha256 == NULL);
    CHECK_STR(got.owner, ""); /* the default tenant */
    store_file_clear(&got);

    store_file bad = file_rec("file-c", "batch", -1);
    CHECK_INT(store_file_insert(s, &bad, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "bytes") != NULL);
    bad = file_rec("file-c", "batch", 1);
    bad.filename = NULL;
    CHECK_INT(store_file_insert(s, &bad, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "files.filename") != NULL);

    CHECK_INT(store_file_get(s, "file-zzz", &got, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "file-zzz") != NULL);
    CHECK_OK(store_file_delete(s, "file-a", &err), &err);
    CHECK_INT(store_file_get(s, "file-a", &got, &err), BS_ENOTFOUND);
    CHECK_INT(store_file_delete(s, "file-a", &err), BS_ENOTFOUND);
    store_close(s);
    remove_dir(dir);
    free(dir);
}

/* ids of one page, joined by commas, for compact checks. */
static void page_ids(const store_file *items, size_t n, char *out, size_t cap) {
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", items[i].id);
}

static void files_paging(bs_store *s, fixture *fx) {
    (void)fx;
    bs_error err = {0};
    const char *ids[] = {"file-1", "file-2", "file-3", "file-4", "file-5"};
    for (int i = 0; i < 5; i++) {
        store_file f = file_rec(ids[i], i % 2 ? "batch" : "fine-tune", i);
        CHECK_OK(store_file_insert(s, &f, &err), &err);
    }
    store_file *items;
    size_t n;
    int more;
    char got[128];
    /* Newest first, two at a time, following the cursor. */
    store_page p = {.limit = 2};
    CHECK_OK(store_file_list(s, NULL, &p, &items, &n, &more, &err), &err);
    page_ids(items, n, got, sizeof got);
    CHECK_STR(got, "file-5,file-4");
    CHECK_INT(more, 1);
    store_files_free(items, n);
    p.after = "file-4";
    CHECK_OK(store_file_list(s, NULL, &p, &items, &n, &more, &err), &err);
    page_ids(items, n, got, sizeof got);
    CHECK_STR(got, "file-3,file-2");
    CHECK_INT(more, 1);
    store_files_free(items, n);
    p.after = "file-2";
    CHECK_OK(store_file_list(s, NULL, &p, &items, &n, &more, &err), &err);
    page_ids(items, n, got, sizeof got);
    CHECK_STR(got, "file-1");
    CHECK_INT(more, 0);
    store_files_free(items, n);
    /* An exact fit has no further page. */
    p = (store_page){.limit = 5};
    CHECK_OK(store_file_list(s, NULL, &p, &items, &n, &more, &err), &err);
    CHECK_INT(n, 5);
    CHECK_INT(more, 0);
    store_files_free(items, n);
    /* Oldest first, filtered by purpose. */
    p = (store_page){.limit = 10, .ascending = 1};
    CHECK_OK(store_file_list(s, "fine-tune", &p, &items, &n, &more, &err), &err);
    page_ids(items, n, got, sizeof got);
    CHECK_STR(got, "file-1,file-3,file-5");
    CHECK_INT(more, 0);
    store_files_free(items, n);
    p.after = "file-3";
    CHECK_OK(store_file_list(s, "fine-tune", &p, &items, &n, &more, &err), &err);
    page_ids(items, n, got, sizeof got);
    CHECK_STR(got, "file-5");
    store_files_free(items, n);
    /* A cursor outside the filtered list, or unknown, is an error. */
    p.after = "file-2";
    CHECK_INT(store_file_list(s, "fine-tune", &p, &items, &n, &more, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "after") != NULL);
    p.after = "file-9";
    CHECK_INT(store_file_list(s, NULL, &p, &items, &n, &more, &err), BS_ENOTFOUND);
    CHECK(items == NULL && n == 0);
    p = (store_page){.limit = 0};
    CHECK_INT(store_file_list(s, NULL, &p, &items, &n, &more, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "limit") != NULL);
    p = (store_page){.limit = 3};
    CHECK_OK(store_file_list(s, "vision", &p, &items, &n, &more, &err), &err);
    CHECK_INT(n, 0);
    CHECK_INT(more, 0);
    store_files_free(items, n);
}
ON_BOTH(files_paging)

static store_job job_rec(const char *id) {
    return (store_job){.id = (char *)id, .model = "tiny", .training_file = "file-t", .validation_file = NULL,
                       .hyperparameters = "{\"n_epochs\":\"auto\"}", .method = "{\"type\":\"supervised\"}",
                       .suffix = NULL, .seed = 42, .status = STORE_JOB_VALIDATING_FILES, .created_at = 1700000100,
                       .finished_at = STORE_NULL_INT, .trained_tokens = STORE_NULL_INT};
}

static void test_jobs_events_checkpoints(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
    store_job j = job_rec("ftjob-1");
    j.suffix = "mine";
    CHECK_OK(store_job_insert(s, &j, &err), &err);
    store_job j2 = job_rec("ftjob-2");
    j2.validation_file = "file-v";
    CHECK_OK(store_job_insert(s, &j2, &err), &err);
    store_job bad = job_rec("ftjob-3");
    bad.method = "{not json";
    CHECK_INT(store_job_insert(s, &bad, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "json_valid(method)") != NULL);

    store_job got;
    CHECK_OK(store_job_get(s, "ftjob-1", &got, &err), &err);
    CHECK_STR(got.model, "tiny");
    CHECK_STR(got.training_file, "file-t");
    CHECK(got.validation_file == NULL);
    CHECK_STR(got.suffix, "mine");
    CHECK_STR(got.method, "{\"type\":\"supervised\"}");
    CHECK_INT(got.seed, 42);
    CHECK_INT(got.status, STORE_JOB_VALIDATING_FILES);
    CHECK_INT(got.finished_at, STORE_NULL_INT);
    CHECK_INT(got.trained_tokens, STORE_NULL_INT);
    CHECK(got.error == NULL && got.fine_tuned_model == NULL);

    /* The fields that change over a job's life. */
    got.status = STORE_JOB_SUCCEEDED;
    got.finished_at = 1700000500;
    got.trained_tokens = 1234;
    free(got.fine_tuned_model);
    got.fine_tuned_model = strdup("ft:tiny::mine:abc");
    free(got.hyperparameters);
    got.hyperparameters = strdup("{\"n_epochs\":3}");
    CHECK_OK(store_job_update(s, &got, &err), &err);
    store_job_clear(&got);
    CHECK_OK(store_job_get(s, "ftjob-1", &got, &err), &err);
    CHECK_INT(got.status, STORE_JOB_SUCCEEDED);
    CHECK_INT(got.finished_at, 1700000500);
    CHECK_INT(got.trained_tokens, 1234);
    CHECK_STR(got.fine_tuned_model, "ft:tiny::mine:abc");
    CHECK_STR(got.hyperparameters, "{\"n_epochs\":3}");
    got.error = strdup("{\"code\":\"x\""); /* not JSON */
    CHECK_INT(store_job_update(s, &got, &err), BS_EINVAL);
    store_job_clear(&got);
    store_job ghost = job_rec("ftjob-ghost");
    CHECK_INT(store_job_update(s, &ghost, &err), BS_ENOTFOUND);

    store_job *jobs;
    size_t n;
    int more;
    store_page p = {.limit = 10};
    CHECK_OK(store_job_list(s, STORE_JOB_VALIDATING_FILES, &p, &jobs, &n, &more, &err), &err);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_STR(jobs[0].id, "ftjob-2");
    if (n == 1) CHECK_STR(jobs[0].validation_file, "file-v");
    store_jobs_free(jobs, n);
    CHECK_OK(store_job_list(s, -1, &p, &jobs, &n, &more, &err), &err);
    CHECK_INT(n, 2);
    if (n == 2) CHECK_STR(jobs[0].id, "ftjob-2");
    store_jobs_free(jobs, n);

    store_job_status st;
    CHECK_OK(store_job_status_parse("paused", &st, &err), &err);
    CHECK_INT(st, STORE_JOB_PAUSED);
    CHECK_INT(store_job_status_parse("done", &st, &err), BS_EINVAL);
    CHECK_STR(store_job_status_name(STORE_JOB_CANCELLED), "cancelled");

    /* Events: a job must exist; level, type and data are checked. */
    store_event e = {.id = "ftevent-1", .job_id = "ftjob-1", .created_at = 1, .level = "info",
                     .message = "Validating training file", .type = "message"};
    CHECK_OK(store_event_insert(s, &e, &err), &err);
    e = (store_event){.id = "ftevent-2", .job_id = "ftjob-1", .created_at = 2, .level = "info", .message = "Step 1",
                      .type = "metrics", .data = "{\"step\":1,\"train_loss\":2.5}"};
    CHECK_OK(store_event_insert(s, &e, &err), &err);
    e.id = "ftevent-3";
    e.job_id = "ftjob-none";
    CHECK_INT(store_event_insert(s, &e, &err), BS_ENOTFOUND);
    e.job_id = "ftjob-1";
    e.level = "loud";
    CHECK_INT(store_event_insert(s, &e, &err), BS_EINVAL);
    e.level = "warn";
    e.data = "[1,";
    CHECK_INT(store_event_insert(s, &e, &err), BS_EINVAL);
    store_event *events;
    CHECK_OK(store_event_list(s, "ftjob-1", &p, &events, &n, &more, &err), &err);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(events[0].id, "ftevent-2");
        CHECK_STR(events[0].type, "metrics");
        CHECK_STR(events[0].data, "{\"step\":1,\"train_loss\":2.5}");
        CHECK_STR(events[1].message, "Validating training file");
        CHECK(events[1].data == NULL);
    }
    store_events_free(events, n);
    CHECK_OK(store_event_list(s, "ftjob-2", &p, &events, &n, &more, &err), &err);
    CHECK_INT(n, 0);
    store_events_free(events, n);

    store_checkpoint c = {.id = "ftckpt-1", .job_id = "ftjob-1", .created_at = 5, .step = 100,
                          .metrics = "{\"train_loss\":1.0}", .path = "/ckpt/100"};
    CHECK_OK(store_checkpoint_insert(s, &c, &err), &err);
    c = (store_checkpoint){.id = "ftckpt-2", .job_id = "ftjob-1", .created_at = 6, .step = 200,
                           .metrics = "{\"train_loss\":0.5}", .path = "/ckpt/200"};
    CHECK_OK(store_checkpoint_insert(s, &c, &err), &err);
    c.id = "ftckpt-3";
    c.step = -1;
    CHECK_INT(store_checkpoint_insert(s, &c, &err), BS_EINVAL);
    store_checkpoint *ckpts;
    p = (store_page){.limit = 1};
    CHECK_OK(store_checkpoint_list(s, "ftjob-1", &p, &ckpts, &n, &more, &err), &err);
    CHECK_INT(n, 1);
    CHECK_INT(more, 1);
    if (n == 1) {
        CHECK_INT(ckpts[0].step, 200);
        CHECK_STR(ckpts[0].path, "/ckpt/200");
        CHECK_STR(ckpts[0].metrics, "{\"train_loss\":0.5}");
    }
    store_checkpoints_free(ckpts, n);
    /* a deleted checkpoint leaves the list; the other stays; twice is not found */
    CHECK_OK(store_checkpoint_delete(s, "ftckpt-2", &err), &err);
    CHECK_INT(store_checkpoint_delete(s, "ftckpt-2", &err), BS_ENOTFOUND);
    p = (store_page){.limit = 10};
    CHECK_OK(store_checkpoint_list(s, "ftjob-1", &p, &ckpts, &n, &more, &err), &err);
    CHECK_INT(n, 1);
    CHECK_INT(more, 0);
    if (n == 1) CHECK_STR(ckpts[0].id, "ftckpt-1");
    store_checkpoints_free(ckpts, n);
    store_close(s);
    remove_dir(dir);
    free(dir);
}

typedef struct writer_arg {
    bs_store *s;
    int thread;
    int failures;
} writer_arg;

static void *writer(void *p) {
    writer_arg *a = p;
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof id, "file-t%d-%d", a->thread, i);
        store_file f = file_rec(id, "user_data", i);
        bs_error err = {0};
        if (store_file_insert(a->s, &f, &err) != BS_OK) a->failures++;
        store_file got;
        if (store_file_get(a->s, id, &got, &err) != BS_OK) a->failures++;
        else store_file_clear(&got);
    }
    return NULL;
}

static void test_concurrent_writers(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
    pthread_t t[4];
    writer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (writer_arg){.s = s, .thread = i};
        pthread_create(&t[i], NULL, writer, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(args[i].failures, 0);
    }
    store_file *items;
    size_t n;
    int more;
    store_page p = {.limit = 1000};
    CHECK_OK(store_file_list(s, "user_data", &p, &items, &n, &more, &err), &err);
    CHECK_INT(n, 200);
    store_files_free(items, n);
    store_close(s);
    remove_dir(dir);
    free(dir);
}

/* ------------------------------------------------------------ both backends */

/* Reopening migrates nothing more; a newer schema is refused. */
static void schema(bs_store *s, fixture *fx) {
    bs_error err = {0};
    CHECK_INT(store_schema_version(s), 2);
    CHECK_STR(store_backend(s), fx->pg ? "postgres" : "sqlite");
    bs_store *again = fixture_open(fx);
    if (!again) return;
    CHECK_INT(store_schema_version(again), 2);
    store_close(again);
    again = fixture_open(fx);
    CHECK_INT(store_schema_version(again), 2);
    /* Rows written by version 1's tables survive the reopen. */
    store_file f = file_rec("file-keep", "batch", 3);
    CHECK_OK(store_file_insert(again, &f, &err), &err);
    store_close(again);
    store_file got;
    CHECK_OK(store_file_get(s, "file-keep", &got, &err), &err);
    CHECK_INT(got.bytes, 3);
    store_file_clear(&got);
}
ON_BOTH(schema)

static void *open_one(void *p) {
    fixture *fx = p;
    return fixture_open(fx);
}

/* Replicas starting together on an empty database: one migrates, the
 * others wait for its lock and find the schema current. */
static void first_open_race(bs_store *unused, fixture *fx) {
    (void)unused;
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, open_one, fx);
    for (int i = 0; i < 4; i++) {
        void *s;
        pthread_join(t[i], &s);
        CHECK(s != NULL);
        if (s) CHECK_INT(store_schema_version(s), 2);
        store_close(s);
    }
}
ON_BOTH_FRESH(first_open_race)

static store_doc doc_rec(const char *kind, const char *id, const char *owner, const char *body, int64_t t) {
    return (store_doc){.kind = (char *)kind, .id = (char *)id, .owner = (char *)owner, .created_at = t,
                       .updated_at = t, .body = (char *)body};
}

static void doc_ids(const store_doc *items, size_t n, char *out, size_t cap) {
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "", items[i].id);
}

static void docs(bs_store *s, fixture *fx) {
    (void)fx;
    bs_error err = {0};
    const char *owners[] = {"acme", "zeta", "acme", "acme", ""};
    for (int i = 0; i < 5; i++) {
        char id[16], body[64];
        snprintf(id, sizeof id, "eval-%d", i + 1);
        snprintf(body, sizeof body, "{\"name\":\"e%d\",\"n\":%d}", i + 1, i);
        store_doc d = doc_rec("eval", id, owners[i], body, 1000 + i);
        CHECK_OK(store_doc_insert(s, &d, &err), &err);
    }
    /* Same id, other kind: a different document. */
    store_doc other = doc_rec("batch", "eval-1", "acme", "{\"k\":\"batch\"}", 5);
    CHECK_OK(store_doc_insert(s, &other, &err), &err);
    store_doc dup = doc_rec("eval", "eval-1", "acme", "{}", 7);
    CHECK_INT(store_doc_insert(s, &dup, &err), BS_EINVAL);
    store_doc bad = doc_rec("eval", "eval-9", "", "[1,2]", 7);
    CHECK_INT(store_doc_insert(s, &bad, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "body") != NULL);
    bad.body = "{not json";
    CHECK_INT(store_doc_insert(s, &bad, &err), BS_EINVAL);

    store_doc got;
    CHECK_OK(store_doc_get(s, "eval", "eval-2", &got, &err), &err);
    CHECK_STR(got.kind, "eval");
    CHECK_STR(got.owner, "zeta");
    CHECK_STR(got.body, "{\"name\":\"e2\",\"n\":1}");
    CHECK_INT(got.created_at, 1001);
    CHECK_INT(got.updated_at, 1001);
    store_doc_clear(&got);
    CHECK_OK(store_doc_get(s, "batch", "eval-1", &got, &err), &err);
    CHECK_STR(got.body, "{\"k\":\"batch\"}");
    store_doc_clear(&got);
    CHECK_INT(store_doc_get(s, "eval", "eval-9", &got, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "eval-9") != NULL);

    /* Plain update, then compare-and-set: the stale writer loses. */
    store_doc up = doc_rec("eval", "eval-2", NULL, "{\"name\":\"renamed\"}", 2000);
    CHECK_OK(store_doc_update(s, &up, -1, &err), &err);
    up.body = "{\"name\":\"cas\"}";
    up.updated_at = 2001;
    CHECK_INT(store_doc_update(s, &up, 1001, &err), BS_EBUSY);
    CHECK(strstr(err.msg, "2000") != NULL);
    CHECK_OK(store_doc_update(s, &up, 2000, &err), &err);
    CHECK_OK(store_doc_get(s, "eval", "eval-2", &got, &err), &err);
    CHECK_STR(got.body, "{\"name\":\"cas\"}");
    CHECK_INT(got.updated_at, 2001);
    CHECK_INT(got.created_at, 1001);
    CHECK_STR(got.owner, "zeta"); /* update keeps the owner */
    store_doc_clear(&got);
    store_doc ghost = doc_rec("eval", "eval-9", NULL, "{}", 1);
    CHECK_INT(store_doc_update(s, &ghost, -1, &err), BS_ENOTFOUND);
    CHECK_INT(store_doc_update(s, &ghost, 1, &err), BS_ENOTFOUND);
    up.body = "\"scalar\"";
    CHECK_INT(store_doc_update(s, &up, -1, &err), BS_EINVAL);

    /* Lists: limit 0 is everything; owner filters; cursors stay inside. */
    store_doc *items;
    size_t n;
    int more;
    char ids[128];
    store_page p = {.limit = 0, .ascending = 1};
    CHECK_OK(store_doc_list(s, "eval", &p, &items, &n, &more, &err), &err);
    doc_ids(items, n, ids, sizeof ids);
    CHECK_STR(ids, "eval-1,eval-2,eval-3,eval-4,eval-5");
    CHECK_INT(more, 0);
    store_docs_free(items, n);
    p = (store_page){.limit = 2, .owner = "acme"};
    CHECK_OK(store_doc_list(s, "eval", &p, &items, &n, &more, &err), &err);
    doc_ids(items, n, ids, sizeof ids);
    CHECK_STR(ids, "eval-4,eval-3");
    CHECK_INT(more, 1);
    store_docs_free(items, n);
    p.after = "eval-3";
    CHECK_OK(store_doc_list(s, "eval", &p, &items, &n, &more, &err), &err);
    doc_ids(items, n, ids, sizeof ids);
    CHECK_STR(ids, "eval-1");
    CHECK_INT(more, 0);
    store_docs_free(items, n);
    p.after = "eval-2"; /* zeta's: not in acme's list */
    CHECK_INT(store_doc_list(s, "eval", &p, &items, &n, &more, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "after") != NULL);
    p = (store_page){.limit = 10, .owner = ""};
    CHECK_OK(store_doc_list(s, "eval", &p, &items, &n, &more, &err), &err);
    doc_ids(items, n, ids, sizeof ids);
    CHECK_STR(ids, "eval-5");
    store_docs_free(items, n);
    p = (store_page){.limit = 10};
    CHECK_OK(store_doc_list(s, "audit", &p, &items, &n, &more, &err), &err);
    CHECK_INT(n, 0);
    store_docs_free(items, n);
    p.limit = -1;
    CHECK_INT(store_doc_list(s, "eval", &p, &items, &n, &more, &err), BS_EINVAL);

    CHECK_OK(store_doc_delete(s, "eval", "eval-1", &err), &err);
    CHECK_INT(store_doc_delete(s, "eval", "eval-1", &err), BS_ENOTFOUND);
    CHECK_INT(store_doc_get(s, "eval", "eval-1", &got, &err), BS_ENOTFOUND);
    CHECK_OK(store_doc_get(s, "batch", "eval-1", &got, &err), &err); /* the other kind stays */
    store_doc_clear(&got);
}
ON_BOTH(docs)

static store_usage usage_rec(int64_t minute, const char *key, const char *model, const char *route,
                             const char *target, int64_t requests, double cost) {
    return (store_usage){.minute = minute, .key_id = (char *)key, .model = (char *)model, .route = (char *)route,
                         .target = (char *)target, .requests = requests, .errors = requests / 2,
                         .prompt_tokens = 10 * requests, .completion_tokens = 3 * requests,
                         .guardrail_interventions = 1, .cost_usd = cost, .latency_ms_sum = 100.5 * requests};
}

#define DAY 86400
#define T0 (1700006400 - 1700006400 % DAY) /* a day's first second */

static void usage(bs_store *s, fixture *fx) {
    (void)fx;
    bs_error err = {0};
    store_usage first[] = {
        usage_rec(T0, "key-a", "gpt", "", "gpt", 2, 0.25),
        usage_rec(T0 + 60, "key-a", "smart", "smart", "gpt", 1, 0.5),
        usage_rec(T0 + 120, "key-b", "gpt", "", "gpt", 4, 1.0),
    };
    CHECK_OK(store_usage_add(s, first, 3, &err), &err);
    /* The same (minute, key, model, route, target) accumulates. */
    store_usage second[] = {
        usage_rec(T0, "key-a", "gpt", "", "gpt", 3, 0.125),
        usage_rec(T0 + DAY, "key-a", "smart", "smart", "local", 5, 2.0),
        usage_rec(T0 + DAY + 60, "", "gpt", "", "", 1, 0.0),
    };
    CHECK_OK(store_usage_add(s, second, 3, &err), &err);
    CHECK_OK(store_usage_add(s, NULL, 0, &err), &err);

    store_usage *rows;
    size_t n;
    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_KEY, 0, 0, NULL, &rows, &n, &err), &err);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(rows[0].key_id, "");
        CHECK_STR(rows[1].key_id, "key-a");
        CHECK_STR(rows[1].model, "");
        CHECK_INT(rows[1].requests, 2 + 1 + 3 + 5);
        CHECK_INT(rows[1].errors, 1 + 0 + 1 + 2);
        CHECK_INT(rows[1].prompt_tokens, 110);
        CHECK_INT(rows[1].completion_tokens, 33);
        CHECK_INT(rows[1].guardrail_interventions, 4);
        CHECK_NEAR(rows[1].cost_usd, 2.875, 0);
        CHECK_NEAR(rows[1].latency_ms_sum, 100.5 * 11, 1e-9);
        CHECK_STR(rows[2].key_id, "key-b");
        CHECK_INT(rows[2].requests, 4);
    }
    store_usages_free(rows, n);

    /* [from, to) and one key. */
    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_MODEL, T0, T0 + DAY, "key-a", &rows, &n, &err), &err);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(rows[0].model, "gpt");
        CHECK_STR(rows[0].key_id, "");
        CHECK_INT(rows[0].requests, 5);
        CHECK_STR(rows[1].model, "smart");
        CHECK_INT(rows[1].requests, 1);
    }
    store_usages_free(rows, n);
    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_MODEL, T0 + 60, T0 + 120, NULL, &rows, &n, &err), &err);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_INT(rows[0].requests, 1);
    store_usages_free(rows, n);

    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_ROUTE, 0, 0, NULL, &rows, &n, &err), &err);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_STR(rows[0].route, "");
        CHECK_INT(rows[0].requests, 5 + 4 + 1);
        CHECK_STR(rows[1].route, "smart");
        CHECK_INT(rows[1].requests, 6);
    }
    store_usages_free(rows, n);

    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_TARGET, 0, 0, NULL, &rows, &n, &err), &err);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(rows[0].target, "");
        CHECK_STR(rows[1].target, "gpt");
        CHECK_INT(rows[1].requests, 10);
        CHECK_STR(rows[2].target, "local");
        CHECK_NEAR(rows[2].cost_usd, 2.0, 0);
    }
    store_usages_free(rows, n);

    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_DAY, 0, 0, NULL, &rows, &n, &err), &err);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_INT(rows[0].minute, T0);
        CHECK_INT(rows[0].requests, 10);
        CHECK_NEAR(rows[0].cost_usd, 1.875, 0);
        CHECK_STR(rows[0].key_id, "");
        CHECK_INT(rows[1].minute, T0 + DAY);
        CHECK_INT(rows[1].requests, 6);
    }
    store_usages_free(rows, n);
    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_DAY, T0 + DAY, 0, "key-b", &rows, &n, &err), &err);
    CHECK_INT(n, 0);
    store_usages_free(rows, n);
    CHECK_INT(store_usage_query(s, (store_usage_group)9, 0, 0, NULL, &rows, &n, &err), BS_EINVAL);

    /* A bad row fails the whole batch: nothing of it is added. */
    store_usage mixed[] = {usage_rec(T0, "key-b", "gpt", "", "gpt", 100, 0), usage_rec(T0 + 7, "key-b", "gpt", "",
                                                                                       "gpt", 1, 0)};
    CHECK_INT(store_usage_add(s, mixed, 2, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "usage row 1") != NULL);
    CHECK_OK(store_usage_query(s, STORE_USAGE_BY_KEY, 0, 0, "key-b", &rows, &n, &err), &err);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_INT(rows[0].requests, 4);
    store_usages_free(rows, n);
}
ON_BOTH(usage)

static void owners(bs_store *s, fixture *fx) {
    (void)fx;
    bs_error err = {0};
    const char *who[] = {"t1", "t2", "t1", "t1"};
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "file-o%d", i + 1);
        store_file f = file_rec(id, "batch", i);
        f.owner = (char *)who[i];
        CHECK_OK(store_file_insert(s, &f, &err), &err);
        snprintf(id, sizeof id, "ftjob-o%d", i + 1);
        store_job j = job_rec(id);
        j.owner = (char *)who[i];
        CHECK_OK(store_job_insert(s, &j, &err), &err);
    }
    store_file *files;
    size_t n;
    int more;
    char ids[128];
    store_page p = {.limit = 2, .owner = "t1"};
    CHECK_OK(store_file_list(s, "batch", &p, &files, &n, &more, &err), &err);
    page_ids(files, n, ids, sizeof ids);
    CHECK_STR(ids, "file-o4,file-o3");
    CHECK_INT(more, 1);
    store_files_free(files, n);
    p.after = "file-o3";
    CHECK_OK(store_file_list(s, NULL, &p, &files, &n, &more, &err), &err);
    page_ids(files, n, ids, sizeof ids);
    CHECK_STR(ids, "file-o1");
    CHECK_INT(more, 0);
    store_files_free(files, n);
    p.after = "file-o2";
    CHECK_INT(store_file_list(s, NULL, &p, &files, &n, &more, &err), BS_ENOTFOUND);
    p = (store_page){.limit = 10, .owner = "t3"};
    CHECK_OK(store_file_list(s, NULL, &p, &files, &n, &more, &err), &err);
    CHECK_INT(n, 0);
    store_files_free(files, n);

    store_job *jobs;
    p = (store_page){.limit = 10, .owner = "t2", .ascending = 1};
    CHECK_OK(store_job_list(s, -1, &p, &jobs, &n, &more, &err), &err);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_STR(jobs[0].id, "ftjob-o2");
    store_jobs_free(jobs, n);
    p = (store_page){.limit = 10, .owner = "t1", .ascending = 1};
    CHECK_OK(store_job_list(s, STORE_JOB_VALIDATING_FILES, &p, &jobs, &n, &more, &err), &err);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(jobs[0].id, "ftjob-o1");
        CHECK_STR(jobs[2].id, "ftjob-o4");
    }
    store_jobs_free(jobs, n);
    p.after = "ftjob-o2";
    CHECK_INT(store_job_list(s, -1, &p, &jobs, &n, &more, &err), BS_ENOTFOUND);
}
ON_BOTH(owners)

/* ------------------------------------------------------------ PostgreSQL */

/* No password reaches a message, whether the URL is refused or the server
 * is unreachable. */
static void test_url_errors(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_INT(store_open_url("mysql://root:hunter2@localhost/db", dir, &s, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "mysql") != NULL);
    CHECK(strstr(err.msg, "hunter2") == NULL);
    CHECK_INT(store_open_url("postgres://bob:hunter2@127.0.0.1:1/db?connect_timeout=2", dir, &s, &err), BS_EIO);
    CHECK(strstr(err.msg, "postgres://bob@127.0.0.1:1/db") != NULL);
    CHECK(strstr(err.msg, "hunter2") == NULL);
    CHECK_INT(store_open_url("postgres://bob:hunter2@127.0.0.1:1/db?bogus=%zz", dir, &s, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "hunter2") == NULL);
    CHECK(s == NULL);
    /* No URL is the SQLite store. */
    CHECK_OK(store_open_url("", dir, &s, &err), &err);
    CHECK_STR(store_backend(s), "sqlite");
    store_close(s);
    remove_dir(dir);
    free(dir);
}

typedef struct adder {
    bs_store *s;
    int thread;
    int failures;
} adder;

/* 50 batches, each adding to a shared row and to one of this thread's. */
static void *add_usage(void *p) {
    adder *a = p;
    char key[16];
    snprintf(key, sizeof key, "key-%d", a->thread);
    for (int i = 0; i < 50; i++) {
        store_usage rows[] = {usage_rec(T0, "shared", "gpt", "", "gpt", 1, 0.5),
                              usage_rec(T0 + 60 * (i % 5), key, "gpt", "", "gpt", 2, 0.25)};
        bs_error err = {0};
        if (store_usage_add(a->s, rows, 2, &err) != BS_OK) {
            fprintf(stderr, "  thread %d: %s\n", a->thread, err.msg);
            a->failures++;
        }
    }
    return NULL;
}

/* Two handles on one database behave as two replicas: each sees the
 * other's writes, compare-and-set arbitrates between them, and concurrent
 * usage upserts from 8 threads over both add up exactly. */
static void replicas(bs_store *a, fixture *fx) {
    bs_error err = {0};
    bs_store *b = fixture_open(fx);
    if (!b) return;
    store_doc d = doc_rec("api_key", "key-1", "acme", "{\"name\":\"ci\"}", 100);
    CHECK_OK(store_doc_insert(a, &d, &err), &err);
    store_doc got;
    CHECK_OK(store_doc_get(b, "api_key", "key-1", &got, &err), &err);
    CHECK_STR(got.body, "{\"name\":\"ci\"}");
    store_doc_clear(&got);
    store_doc from_a = doc_rec("api_key", "key-1", NULL, "{\"name\":\"a\"}", 101);
    store_doc from_b = doc_rec("api_key", "key-1", NULL, "{\"name\":\"b\"}", 102);
    CHECK_OK(store_doc_update(a, &from_a, 100, &err), &err);
    CHECK_INT(store_doc_update(b, &from_b, 100, &err), BS_EBUSY);
    CHECK_OK(store_doc_get(b, "api_key", "key-1", &got, &err), &err);
    CHECK_STR(got.body, "{\"name\":\"a\"}");
    store_doc_clear(&got);
    if (fx->pg) {
        /* A server-side disconnect (a restart, an idle timeout): the next
         * call reconnects once and goes through. */
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
                 " AND pid <> pg_backend_pid()",
                 fx->dbname);
        CHECK(pg_admin(sql));
        CHECK_OK(store_doc_get(a, "api_key", "key-1", &got, &err), &err);
        store_doc_clear(&got);
        /* b reconnects too: the server itself refuses the duplicate. */
        CHECK_INT(store_doc_insert(b, &d, &err), BS_EINVAL);
    }

    pthread_t t[8];
    adder args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (adder){.s = i % 2 ? b : a, .thread = i};
        pthread_create(&t[i], NULL, add_usage, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(args[i].failures, 0);
    }
    store_usage *rows;
    size_t n;
    CHECK_OK(store_usage_query(b, STORE_USAGE_BY_KEY, 0, 0, NULL, &rows, &n, &err), &err);
    CHECK_INT(n, 9);
    for (size_t i = 0; i < n; i++) {
        int shared = strcmp(rows[i].key_id, "shared") == 0;
        CHECK_INT(rows[i].requests, shared ? 8 * 50 : 2 * 50);
        CHECK_INT(rows[i].guardrail_interventions, shared ? 8 * 50 : 50);
        CHECK_NEAR(rows[i].cost_usd, shared ? 0.5 * 400 : 0.25 * 50, 0);
    }
    store_usages_free(rows, n);
    store_close(b);
}
ON_BOTH(replicas)

int main(void) {
    RUN(test_open_creates_schema);
    RUN(test_files_roundtrip);
    RUN(test_files_paging_sqlite);
    RUN(test_files_paging_postgres);
    RUN(test_jobs_events_checkpoints);
    RUN(test_concurrent_writers);
    RUN(test_schema_sqlite);
    RUN(test_schema_postgres);
    RUN(test_first_open_race_sqlite);
    RUN(test_first_open_race_postgres);
    RUN(test_docs_sqlite);
    RUN(test_docs_postgres);
    RUN(test_usage_sqlite);
    RUN(test_usage_postgres);
    RUN(test_owners_sqlite);
    RUN(test_owners_postgres);
    RUN(test_replicas_sqlite);
    RUN(test_replicas_postgres);
    RUN(test_url_errors);
    TEST_MAIN_END();
}
