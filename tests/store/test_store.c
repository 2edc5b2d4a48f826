/* Tests for store/: schema creation and migration bookkeeping, each record
 * type's insert/get/list/update round trip, OpenAI cursor paging (after,
 * limit, order, has_more), constraint failures as values, and concurrent
 * writers sharing one store. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
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

static store_file file_rec(const char *id, const char *purpose, int64_t bytes) {
    return (store_file){.id = (char *)id, .filename = "data.jsonl", .purpose = (char *)purpose, .bytes = bytes,
                        .created_at = 1700000000, .sha256 = NULL, .path = "/nowhere", .status = STORE_FILE_PROCESSED};
}

static void test_open_creates_schema(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
    CHECK_INT(store_schema_version(s), 1);
    char *db = bs_path_join(dir, "basalt.db"), *files = bs_path_join(dir, "files");
    CHECK(bs_file_exists(db));
    CHECK(bs_is_directory(files));
    CHECK(strcmp(store_files_dir(s), files) == 0);
    store_close(s);
    /* Reopening runs no migration again and keeps the rows. */
    CHECK_OK(store_open(dir, &s, &err), &err);
    CHECK_INT(store_schema_version(s), 1);
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

static void test_files_paging(void) {
    char *dir = make_dir();
    bs_error err = {0};
    bs_store *s = NULL;
    CHECK_OK(store_open(dir, &s, &err), &err);
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
    store_close(s);
    remove_dir(dir);
    free(dir);
}

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

int main(void) {
    RUN(test_open_creates_schema);
    RUN(test_files_roundtrip);
    RUN(test_files_paging);
    RUN(test_jobs_events_checkpoints);
    RUN(test_concurrent_writers);
    TEST_MAIN_END();
}
