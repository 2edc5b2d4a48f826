/* store/store.c — the SQLite backend of store.h.  Every public function
 * takes the store's mutex, runs prepared statements with bound parameters,
 * and copies results into caller-owned records before releasing it. */
#include "store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/paths.h"

struct bs_store {
    sqlite3 *db;
    pthread_mutex_t mu;
    char *db_path;
    char *files_dir;
    int version;
};

/* ------------------------------------------------------------ schema */

/* migrations[v] takes the schema from version v to v + 1.  Append only:
 * a released step never changes, so every database converges on one schema.
 * JSON columns are checked by SQLite's json_valid, and enums by CHECK, so a
 * bad value is refused whichever process writes it. */
static const char *const migrations[] = {
    "CREATE TABLE files ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  filename TEXT NOT NULL,"
    "  purpose TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL CHECK (bytes >= 0),"
    "  created_at INTEGER NOT NULL,"
    "  sha256 TEXT,"
    "  path TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('uploaded', 'processed', 'error')));"
    "CREATE INDEX files_by_purpose ON files (purpose, seq);"
    "CREATE TABLE fine_tuning_jobs ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  model TEXT NOT NULL,"
    "  training_file TEXT NOT NULL,"
    "  validation_file TEXT,"
    "  hyperparameters TEXT NOT NULL CHECK (json_valid(hyperparameters)),"
    "  method TEXT NOT NULL CHECK (json_valid(method)),"
    "  suffix TEXT,"
    "  seed INTEGER NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('validating_files', 'queued', 'running', 'succeeded', 'failed',"
    "                                         'cancelled', 'paused')),"
    "  created_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  fine_tuned_model TEXT,"
    "  error TEXT CHECK (error IS NULL OR json_valid(error)),"
    "  trained_tokens INTEGER);"
    "CREATE INDEX jobs_by_status ON fine_tuning_jobs (status, seq);"
    "CREATE TABLE fine_tuning_events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  job_id TEXT NOT NULL REFERENCES fine_tuning_jobs (id) ON DELETE CASCADE,"
    "  created_at INTEGER NOT NULL,"
    "  level TEXT NOT NULL CHECK (level IN ('info', 'warn', 'error')),"
    "  message TEXT NOT NULL,"
    "  type TEXT NOT NULL CHECK (type IN ('message', 'metrics')),"
    "  data TEXT CHECK (data IS NULL OR json_valid(data)));"
    "CREATE INDEX events_by_job ON fine_tuning_events (job_id, seq);"
    "CREATE TABLE fine_tuning_checkpoints ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  job_id TEXT NOT NULL REFERENCES fine_tuning_jobs (id) ON DELETE CASCADE,"
    "  created_at INTEGER NOT NULL,"
    "  step INTEGER NOT NULL CHECK (step >= 0),"
    "  metrics TEXT NOT NULL CHECK (json_valid(metrics)),"
    "  path TEXT NOT NULL);"
    "CREATE INDEX checkpoints_by_job ON fine_tuning_checkpoints (job_id, seq);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ------------------------------------------------------------ helpers */

/* The failure of the last statement as a bs_error: constraint violations
 * are the caller's bad input (a foreign key means the parent is missing). */
static bs_status db_fail(bs_store *s, bs_error *err, const char *what) {
    int code = sqlite3_extended_errcode(s->db);
    bs_status st = BS_EIO;
    if (code == SQLITE_CONSTRAINT_FOREIGNKEY) st = BS_ENOTFOUND;
    else if ((code & 0xff) == SQLITE_CONSTRAINT) st = BS_EINVAL;
    else if ((code & 0xff) == SQLITE_NOMEM) st = BS_ENOMEM;
    else if ((code & 0xff) == SQLITE_BUSY) st = BS_EBUSY;
    return bs_fail(err, st, "%s: %s: %s", s->db_path, what, sqlite3_errmsg(s->db));
}

static bs_status prepare(bs_store *s, const char *sql, sqlite3_stmt **st, const char *what, bs_error *err) {
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) return db_fail(s, err, what);
    return BS_OK;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) {
    if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i);
}

static void bind_nullable_int(sqlite3_stmt *st, int i, int64_t v) {
    if (v == STORE_NULL_INT) sqlite3_bind_null(st, i);
    else sqlite3_bind_int64(st, i, v);
}

/* Run a statement that returns no rows, finalize it. */
static bs_status exec_stmt(bs_store *s, sqlite3_stmt *st, const char *what, bs_error *err) {
    int rc = sqlite3_step(st);
    bs_status out = rc == SQLITE_DONE ? BS_OK : db_fail(s, err, what);
    sqlite3_finalize(st);
    return out;
}

static bs_status exec_sql(bs_store *s, const char *sql, const char *what, bs_error *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return BS_OK;
    sqlite3_free(msg);
    return db_fail(s, err, what);
}

/* Column copies; *oom records a failed allocation so readers check once. */
static char *col_text(sqlite3_stmt *st, int i, int *oom) {
    const unsigned char *v = sqlite3_column_text(st, i);
    if (!v) return NULL;
    char *c = strdup((const char *)v);
    if (!c) *oom = 1;
    return c;
}

static int64_t col_nullable_int(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? STORE_NULL_INT : sqlite3_column_int64(st, i);
}

/* ------------------------------------------------------------ tables */

/* What the generic get/list need to know about one table. */
typedef struct table {
    const char *name;
    const char *what;    /* the record's name in messages */
    const char *columns; /* SELECT list, in the order read() expects */
    const char *filter;  /* column a list may be restricted on */
    size_t size;         /* sizeof the record */
    void (*read)(sqlite3_stmt *st, void *rec, int *oom);
    void (*clear)(void *rec);
} table;

static void free_records(const table *t, void *items, size_t n) {
    for (size_t i = 0; i < n; i++) t->clear((char *)items + i * t->size);
    free(items);
}

static bs_status get_row(bs_store *s, const table *t, const char *id, void *rec, bs_error *err) {
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE id = ?1", t->columns, t->name);
    memset(rec, 0, t->size);
    sqlite3_stmt *st;
    if (prepare(s, sql, &st, t->what, err) != BS_OK) return err->status;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st), oom = 0;
    bs_status out = BS_OK;
    if (rc == SQLITE_ROW) {
        t->read(st, rec, &oom);
        if (oom) {
            t->clear(rec);
            out = bs_fail(err, BS_ENOMEM, "out of memory");
        }
    } else if (rc == SQLITE_DONE) {
        out = bs_fail(err, BS_ENOTFOUND, "no %s with id %s", t->what, id);
    } else {
        out = db_fail(s, err, t->what);
    }
    sqlite3_finalize(st);
    return out;
}

/* The seq of the cursor row, which must pass the same filter as the list. */
static bs_status cursor_seq(bs_store *s, const table *t, const char *filter, const char *after, int64_t *seq,
                            bs_error *err) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT seq FROM %s WHERE id = ?1 AND (?2 IS NULL OR %s = ?2)", t->name, t->filter);
    sqlite3_stmt *st;
    if (prepare(s, sql, &st, t->what, err) != BS_OK) return err->status;
    bind_text(st, 1, after);
    bind_text(st, 2, filter);
    int rc = sqlite3_step(st);
    bs_status out = BS_OK;
    if (rc == SQLITE_ROW) *seq = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE) out = bs_fail(err, BS_ENOTFOUND, "after: no %s with id %s in this list", t->what, after);
    else out = db_fail(s, err, t->what);
    sqlite3_finalize(st);
    return out;
}

/* One page in creation order (seq, which never repeats or goes back, unlike
 * created_at seconds), fetching limit + 1 rows to learn has_more. */
static bs_status list_rows(bs_store *s, const table *t, const char *filter, const store_page *p, void **items,
                           size_t *n, int *has_more, bs_error *err) {
    *items = NULL;
    *n = 0;
    *has_more = 0;
    if (p->limit < 1) return bs_fail(err, BS_EINVAL, "limit: must be at least 1, got %d", p->limit);
    int64_t after = 0;
    if (p->after && cursor_seq(s, t, filter, p->after, &after, err) != BS_OK) return err->status;
    char sql[768];
    snprintf(sql, sizeof sql,
             "SELECT %s FROM %s WHERE (?1 IS NULL OR %s = ?1) AND (?2 IS NULL OR seq %s ?2) ORDER BY seq %s LIMIT ?3",
             t->columns, t->name, t->filter, p->ascending ? ">" : "<",
             p->ascending ? "ASC" : "DESC");
    sqlite3_stmt *st;
    if (prepare(s, sql, &st, t->what, err) != BS_OK) return err->status;
    bind_text(st, 1, filter);
    if (p->after) sqlite3_bind_int64(st, 2, after);
    else sqlite3_bind_null(st, 2);
    sqlite3_bind_int64(st, 3, (int64_t)p->limit + 1);
    char *out = NULL;
    size_t count = 0, cap = 0;
    int rc, oom = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (count == (size_t)p->limit) {
            *has_more = 1;
            continue;
        }
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char *grown = realloc(out, ncap * t->size);
            if (!grown) {
                oom = 1;
                break;
            }
            out = grown;
            cap = ncap;
        }
        void *rec = out + count * t->size;
        memset(rec, 0, t->size);
        t->read(st, rec, &oom);
        count++;
        if (oom) break;
    }
    bs_status status = BS_OK;
    if (oom) status = bs_fail(err, BS_ENOMEM, "out of memory");
    else if (rc != SQLITE_ROW && rc != SQLITE_DONE) status = db_fail(s, err, t->what);
    sqlite3_finalize(st);
    if (status != BS_OK) {
        free_records(t, out, count);
        *has_more = 0;
        return status;
    }
    *items = out;
    *n = count;
    return BS_OK;
}

/* ------------------------------------------------------------ lifecycle */

static bs_status migrate(bs_store *s, bs_error *err) {
    if (exec_sql(s, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", "schema_version", err) !=
        BS_OK)
        return err->status;
    /* One step per IMMEDIATE transaction, re-reading the version inside it,
     * so two processes opening a fresh database do not both migrate. */
    for (;;) {
        if (exec_sql(s, "BEGIN IMMEDIATE", "migration", err) != BS_OK) return err->status;
        sqlite3_stmt *st;
        int version = 0, has_row = 0;
        if (prepare(s, "SELECT version FROM schema_version", &st, "schema_version", err) != BS_OK) goto rollback;
        if (sqlite3_step(st) == SQLITE_ROW) {
            version = sqlite3_column_int(st, 0);
            has_row = 1;
        }
        sqlite3_finalize(st);
        if (version > SCHEMA_VERSION) {
            bs_fail(err, BS_EUNSUPPORTED, "%s: schema version %d is newer than this basalt knows (%d)", s->db_path,
                    version, SCHEMA_VERSION);
            goto rollback;
        }
        if (version == SCHEMA_VERSION) {
            s->version = version;
            return exec_sql(s, "COMMIT", "migration", err);
        }
        char what[64];
        snprintf(what, sizeof what, "migration to schema version %d", version + 1);
        if (exec_sql(s, migrations[version], what, err) != BS_OK) goto rollback;
        if (prepare(s, has_row ? "UPDATE schema_version SET version = ?1" : "INSERT INTO schema_version VALUES (?1)",
                    &st, what, err) != BS_OK)
            goto rollback;
        sqlite3_bind_int(st, 1, version + 1);
        if (exec_stmt(s, st, what, err) != BS_OK) goto rollback;
        if (exec_sql(s, "COMMIT", what, err) != BS_OK) goto rollback;
    }
rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return err->status;
}

bs_status store_open(const char *data_dir, bs_store **out, bs_error *err) {
    *out = NULL;
    if (!bs_is_directory(data_dir)) return bs_fail(err, BS_ENOTFOUND, "%s: data directory does not exist", data_dir);
    bs_store *s = calloc(1, sizeof *s);
    if (!s) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->db_path = bs_path_join(data_dir, "basalt.db");
    s->files_dir = bs_path_join(data_dir, "files");
    if (!s->db_path || !s->files_dir) {
        store_close(s);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    if (bs_make_dirs(s->files_dir, 0700, err) != BS_OK) {
        store_close(s);
        return err->status;
    }
    int rc = sqlite3_open_v2(s->db_path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    bs_status st = BS_OK;
    if (rc != SQLITE_OK) {
        st = bs_fail(err, BS_EIO, "%s: cannot open: %s", s->db_path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    } else {
        /* Another process (a trainer, a second server) may hold the write
         * lock briefly: wait for it instead of failing. */
        sqlite3_busy_timeout(s->db, 5000);
        sqlite3_stmt *wal;
        if (prepare(s, "PRAGMA journal_mode = WAL", &wal, "journal_mode", err) != BS_OK) {
            st = err->status;
        } else {
            const char *mode = sqlite3_step(wal) == SQLITE_ROW ? (const char *)sqlite3_column_text(wal, 0) : NULL;
            if (!mode || strcmp(mode, "wal") != 0)
                st = bs_fail(err, BS_EIO, "%s: cannot switch to WAL mode (got %s)", s->db_path, mode ? mode : "nothing");
            sqlite3_finalize(wal);
        }
        if (st == BS_OK) st = exec_sql(s, "PRAGMA foreign_keys = ON", "foreign_keys", err);
        if (st == BS_OK) st = migrate(s, err);
    }
    if (st != BS_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return BS_OK;
}

void store_close(bs_store *s) {
    if (!s) return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s->db_path);
    free(s->files_dir);
    free(s);
}

int store_schema_version(bs_store *s) { return s->version; }
const char *store_files_dir(const bs_store *s) { return s->files_dir; }

/* ------------------------------------------------------------ files */

static const char *const file_status_names[] = {"uploaded", "processed", "error"};

const char *store_file_status_name(store_file_status st) {
    return (unsigned)st < sizeof file_status_names / sizeof file_status_names[0] ? file_status_names[st] : "error";
}

static void file_read(sqlite3_stmt *st, void *rec, int *oom) {
    store_file *f = rec;
    f->id = col_text(st, 0, oom);
    f->owner = col_text(st, 1, oom);
    f->filename = col_text(st, 2, oom);
    f->purpose = col_text(st, 3, oom);
    f->bytes = sqlite3_column_int64(st, 4);
    f->created_at = sqlite3_column_int64(st, 5);
    f->sha256 = col_text(st, 6, oom);
    f->path = col_text(st, 7, oom);
    const char *status = (const char *)sqlite3_column_text(st, 8);
    f->status = STORE_FILE_ERROR;
    for (int i = 0; status && i < (int)(sizeof file_status_names / sizeof file_status_names[0]); i++)
        if (strcmp(status, file_status_names[i]) == 0) f->status = (store_file_status)i;
}

void store_file_clear(store_file *f) {
    free(f->id);
    free(f->owner);
    free(f->filename);
    free(f->purpose);
    free(f->sha256);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static void file_clear(void *rec) { store_file_clear(rec); }

static const table files_table = {
    "files", "file", "id, owner, filename, purpose, bytes, created_at, sha256, path, status", "purpose",
    sizeof(store_file), file_read, file_clear,
};

bs_status store_file_insert(bs_store *s, const store_file *f, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st;
    bs_status out = prepare(s,
                            "INSERT INTO files (id, owner, filename, purpose, bytes, created_at, sha256, path, status)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                            &st, "file", err);
    if (out == BS_OK) {
        bind_text(st, 1, f->id);
        bind_text(st, 2, f->owner ? f->owner : "");
        bind_text(st, 3, f->filename);
        bind_text(st, 4, f->purpose);
        sqlite3_bind_int64(st, 5, f->bytes);
        sqlite3_bind_int64(st, 6, f->created_at);
        bind_text(st, 7, f->sha256);
        bind_text(st, 8, f->path);
        bind_text(st, 9, store_file_status_name(f->status));
        out = exec_stmt(s, st, "file", err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_file_get(bs_store *s, const char *id, store_file *out, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = get_row(s, &files_table, id, out, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* DELETE by id, BS_ENOTFOUND when nothing matched. */
static bs_status delete_row(bs_store *s, const table *t, const char *id, bs_error *err) {
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = ?1", t->name);
    sqlite3_stmt *st;
    if (prepare(s, sql, &st, t->what, err) != BS_OK) return err->status;
    bind_text(st, 1, id);
    if (exec_stmt(s, st, t->what, err) != BS_OK) return err->status;
    if (sqlite3_changes(s->db) == 0) return bs_fail(err, BS_ENOTFOUND, "no %s with id %s", t->what, id);
    return BS_OK;
}

bs_status store_file_delete(bs_store *s, const char *id, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = delete_row(s, &files_table, id, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

bs_status store_file_list(bs_store *s, const char *purpose, const store_page *page, store_file **items, size_t *n,
                          int *has_more, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &files_table, purpose, page, &out, n, has_more, err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

void store_files_free(store_file *items, size_t n) { free_records(&files_table, items, n); }

/* ------------------------------------------------------------ jobs */

static const char *const job_status_names[STORE_JOB_STATUS_COUNT] = {
    "validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused",
};

const char *store_job_status_name(store_job_status st) {
    return (unsigned)st < STORE_JOB_STATUS_COUNT ? job_status_names[st] : "failed";
}

bs_status store_job_status_parse(const char *name, store_job_status *out, bs_error *err) {
    for (int i = 0; i < STORE_JOB_STATUS_COUNT; i++)
        if (strcmp(name, job_status_names[i]) == 0) {
            *out = (store_job_status)i;
            return BS_OK;
        }
    return bs_fail(err, BS_EINVAL, "status: unknown fine-tuning job status \"%s\"", name);
}

static void job_read(sqlite3_stmt *st, void *rec, int *oom) {
    store_job *j = rec;
    j->id = col_text(st, 0, oom);
    j->owner = col_text(st, 1, oom);
    j->model = col_text(st, 2, oom);
    j->training_file = col_text(st, 3, oom);
    j->validation_file = col_text(st, 4, oom);
    j->hyperparameters = col_text(st, 5, oom);
    j->method = col_text(st, 6, oom);
    j->suffix = col_text(st, 7, oom);
    j->seed = sqlite3_column_int64(st, 8);
    const char *status = (const char *)sqlite3_column_text(st, 9);
    if (!status || store_job_status_parse(status, &j->status, NULL) != BS_OK) j->status = STORE_JOB_FAILED;
    j->created_at = sqlite3_column_int64(st, 10);
    j->finished_at = col_nullable_int(st, 11);
    j->fine_tuned_model = col_text(st, 12, oom);
    j->error = col_text(st, 13, oom);
    j->trained_tokens = col_nullable_int(st, 14);
}

void store_job_clear(store_job *j) {
    free(j->id);
    free(j->owner);
    free(j->model);
    free(j->training_file);
    free(j->validation_file);
    free(j->hyperparameters);
    free(j->method);
    free(j->suffix);
    free(j->fine_tuned_model);
    free(j->error);
    memset(j, 0, sizeof *j);
}

static void job_clear(void *rec) { store_job_clear(rec); }

static const table jobs_table = {
    "fine_tuning_jobs", "fine-tuning job",
    "id, owner, model, training_file, validation_file, hyperparameters, method, suffix, seed, status, created_at,"
    " finished_at, fine_tuned_model, error, trained_tokens",
    "status", sizeof(store_job), job_read, job_clear,
};

bs_status store_job_insert(bs_store *s, const store_job *j, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st;
    bs_status out = prepare(s,
                            "INSERT INTO fine_tuning_jobs (id, owner, model, training_file, validation_file,"
                            " hyperparameters, method, suffix, seed, status, created_at, finished_at, fine_tuned_model,"
                            " error, trained_tokens)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                            &st, "fine-tuning job", err);
    if (out == BS_OK) {
        bind_text(st, 1, j->id);
        bind_text(st, 2, j->owner ? j->owner : "");
        bind_text(st, 3, j->model);
        bind_text(st, 4, j->training_file);
        bind_text(st, 5, j->validation_file);
        bind_text(st, 6, j->hyperparameters);
        bind_text(st, 7, j->method);
        bind_text(st, 8, j->suffix);
        sqlite3_bind_int64(st, 9, j->seed);
        bind_text(st, 10, store_job_status_name(j->status));
        sqlite3_bind_int64(st, 11, j->created_at);
        bind_nullable_int(st, 12, j->finished_at);
        bind_text(st, 13, j->fine_tuned_model);
        bind_text(st, 14, j->error);
        bind_nullable_int(st, 15, j->trained_tokens);
        out = exec_stmt(s, st, "fine-tuning job", err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_job_get(bs_store *s, const char *id, store_job *out, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = get_row(s, &jobs_table, id, out, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

bs_status store_job_update(bs_store *s, const store_job *j, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st;
    bs_status out = prepare(s,
                            "UPDATE fine_tuning_jobs SET status = ?2, hyperparameters = ?3, finished_at = ?4,"
                            " fine_tuned_model = ?5, error = ?6, trained_tokens = ?7 WHERE id = ?1",
                            &st, "fine-tuning job", err);
    if (out == BS_OK) {
        bind_text(st, 1, j->id);
        bind_text(st, 2, store_job_status_name(j->status));
        bind_text(st, 3, j->hyperparameters);
        bind_nullable_int(st, 4, j->finished_at);
        bind_text(st, 5, j->fine_tuned_model);
        bind_text(st, 6, j->error);
        bind_nullable_int(st, 7, j->trained_tokens);
        out = exec_stmt(s, st, "fine-tuning job", err);
        if (out == BS_OK && sqlite3_changes(s->db) == 0)
            out = bs_fail(err, BS_ENOTFOUND, "no fine-tuning job with id %s", j->id);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_job_list(bs_store *s, int status, const store_page *page, store_job **items, size_t *n, int *has_more,
                         bs_error *err) {
    if (status >= STORE_JOB_STATUS_COUNT) return bs_fail(err, BS_EINVAL, "status: %d is no job status", status);
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &jobs_table, status < 0 ? NULL : job_status_names[status], page, &out, n, has_more,
                             err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

void store_jobs_free(store_job *items, size_t n) { free_records(&jobs_table, items, n); }

/* ------------------------------------------------------------ events */

static void event_read(sqlite3_stmt *st, void *rec, int *oom) {
    store_event *e = rec;
    e->id = col_text(st, 0, oom);
    e->job_id = col_text(st, 1, oom);
    e->created_at = sqlite3_column_int64(st, 2);
    e->level = col_text(st, 3, oom);
    e->message = col_text(st, 4, oom);
    e->type = col_text(st, 5, oom);
    e->data = col_text(st, 6, oom);
}

void store_event_clear(store_event *e) {
    free(e->id);
    free(e->job_id);
    free(e->level);
    free(e->message);
    free(e->type);
    free(e->data);
    memset(e, 0, sizeof *e);
}

static void event_clear(void *rec) { store_event_clear(rec); }

static const table events_table = {
    "fine_tuning_events", "fine-tuning event", "id, job_id, created_at, level, message, type, data", "job_id",
    sizeof(store_event), event_read, event_clear,
};

bs_status store_event_insert(bs_store *s, const store_event *e, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st;
    bs_status out = prepare(s,
                            "INSERT INTO fine_tuning_events (id, job_id, created_at, level, message, type, data)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            &st, "fine-tuning event", err);
    if (out == BS_OK) {
        bind_text(st, 1, e->id);
        bind_text(st, 2, e->job_id);
        sqlite3_bind_int64(st, 3, e->created_at);
        bind_text(st, 4, e->level);
        bind_text(st, 5, e->message);
        bind_text(st, 6, e->type);
        bind_text(st, 7, e->data);
        out = exec_stmt(s, st, "fine-tuning event", err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_event_list(bs_store *s, const char *job_id, const store_page *page, store_event **items, size_t *n,
                           int *has_more, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &events_table, job_id, page, &out, n, has_more, err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

void store_events_free(store_event *items, size_t n) { free_records(&events_table, items, n); }

/* ------------------------------------------------------------ checkpoints */

static void checkpoint_read(sqlite3_stmt *st, void *rec, int *oom) {
    store_checkpoint *c = rec;
    c->id = col_text(st, 0, oom);
    c->job_id = col_text(st, 1, oom);
    c->created_at = sqlite3_column_int64(st, 2);
    c->step = sqlite3_column_int64(st, 3);
    c->metrics = col_text(st, 4, oom);
    c->path = col_text(st, 5, oom);
}

void store_checkpoint_clear(store_checkpoint *c) {
    free(c->id);
    free(c->job_id);
    free(c->metrics);
    free(c->path);
    memset(c, 0, sizeof *c);
}

static void checkpoint_clear(void *rec) { store_checkpoint_clear(rec); }

static const table checkpoints_table = {
    "fine_tuning_checkpoints", "fine-tuning checkpoint", "id, job_id, created_at, step, metrics, path", "job_id",
    sizeof(store_checkpoint), checkpoint_read, checkpoint_clear,
};

bs_status store_checkpoint_insert(bs_store *s, const store_checkpoint *c, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st;
    bs_status out = prepare(s,
                            "INSERT INTO fine_tuning_checkpoints (id, job_id, created_at, step, metrics, path)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            &st, "fine-tuning checkpoint", err);
    if (out == BS_OK) {
        bind_text(st, 1, c->id);
        bind_text(st, 2, c->job_id);
        sqlite3_bind_int64(st, 3, c->created_at);
        sqlite3_bind_int64(st, 4, c->step);
        bind_text(st, 5, c->metrics);
        bind_text(st, 6, c->path);
        out = exec_stmt(s, st, "fine-tuning checkpoint", err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_checkpoint_list(bs_store *s, const char *job_id, const store_page *page, store_checkpoint **items,
                                size_t *n, int *has_more, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &checkpoints_table, job_id, page, &out, n, has_more, err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

void store_checkpoints_free(store_checkpoint *items, size_t n) { free_records(&checkpoints_table, items, n); }
