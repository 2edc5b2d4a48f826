/* store/store.c — store.h written once against the db.h driver layer
 * (SQLite or PostgreSQL).  Every public function takes the store's mutex,
 * runs statements with bound parameters, and copies results into
 * caller-owned records before releasing it. */
#include "store/store.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/paths.h"
#include "store/db.h"

struct bs_store {
    db *db;
    pthread_mutex_t mu;
    char *files_dir;
    int version;
};

/* ------------------------------------------------------------ schema */

/* migrations[v] takes the schema from version v to v + 1.  Append only:
 * a released step never changes, so every database converges on one schema.
 * Written in SQLite's dialect; db_ddl() translates for PostgreSQL.  JSON
 * columns are checked by json_valid (PostgreSQL gets one from the driver),
 * and enums by CHECK, so a bad value is refused whichever process writes it. */
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

    /* 2: documents, aggregated usage (indexed by key and time from the
     * start), and owner indexes for per-tenant lists. */
    "CREATE TABLE docs ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  body TEXT NOT NULL CHECK (json_valid(body)),"
    "  UNIQUE (kind, id));"
    "CREATE INDEX docs_by_owner ON docs (kind, owner, seq);"
    "CREATE TABLE usage ("
    "  minute INTEGER NOT NULL CHECK (minute % 60 = 0),"
    "  key_id TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  route TEXT NOT NULL,"
    "  target TEXT NOT NULL,"
    "  requests INTEGER NOT NULL,"
    "  errors INTEGER NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL,"
    "  completion_tokens INTEGER NOT NULL,"
    "  guardrail_interventions INTEGER NOT NULL,"
    "  cost_usd REAL NOT NULL,"
    "  latency_ms_sum REAL NOT NULL,"
    "  PRIMARY KEY (minute, key_id, model, route, target));"
    "CREATE INDEX usage_by_key ON usage (key_id, minute);"
    "CREATE INDEX files_by_owner ON files (owner, seq);"
    "CREATE INDEX jobs_by_owner ON fine_tuning_jobs (owner, seq);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ------------------------------------------------------------ helpers */

static void bind_nullable_int(db_stmt *st, int i, int64_t v) {
    if (v == STORE_NULL_INT) db_bind_null_int(st, i);
    else db_bind_int(st, i, v);
}

/* Run a statement that returns no rows and finalize it; *changes (when
 * non-NULL) gets the number of rows it changed. */
static bs_status run_stmt(db_stmt *st, int64_t *changes, bs_error *err) {
    int row;
    bs_status out = db_step(st, &row, err);
    if (out == BS_OK && changes) *changes = db_changes(st);
    db_finalize(st);
    return out;
}

/* Column copies; *oom records a failed allocation so readers check once. */
static char *col_text(db_stmt *st, int i, int *oom) {
    const char *v = db_col_text(st, i);
    if (!v) return NULL;
    char *c = strdup(v);
    if (!c) *oom = 1;
    return c;
}

static int64_t col_nullable_int(db_stmt *st, int i) {
    return db_col_is_null(st, i) ? STORE_NULL_INT : db_col_int(st, i);
}

/* ------------------------------------------------------------ tables */

/* What the generic get/list need to know about one table. */
typedef struct table {
    const char *name;
    const char *what;    /* the record's name in messages */
    const char *columns; /* SELECT list, in the order read() expects */
    const char *filter;  /* column a list may be restricted on */
    int has_owner;       /* lists honour store_page.owner */
    size_t size;         /* sizeof the record */
    void (*read)(db_stmt *st, void *rec, int *oom);
    void (*clear)(void *rec);
} table;

static void free_records(const table *t, void *items, size_t n) {
    for (size_t i = 0; i < n; i++) t->clear((char *)items + i * t->size);
    free(items);
}

/* The row with this id (and filter value, when given: docs are keyed by
 * kind and id). */
static bs_status get_row(bs_store *s, const table *t, const char *filter, const char *id, void *rec, bs_error *err) {
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE id = $1 AND ($2 IS NULL OR %s = $2)", t->columns, t->name,
             t->filter);
    memset(rec, 0, t->size);
    db_stmt *st;
    if (db_prepare(s->db, sql, t->what, &st, err) != BS_OK) return err->status;
    db_bind_text(st, 1, id);
    db_bind_text(st, 2, filter);
    int row, oom = 0;
    bs_status out = db_step(st, &row, err);
    if (out == BS_OK && row) {
        t->read(st, rec, &oom);
        if (oom) {
            t->clear(rec);
            out = bs_fail(err, BS_ENOMEM, "out of memory");
        }
    } else if (out == BS_OK) {
        out = bs_fail(err, BS_ENOTFOUND, "no %s with id %s", t->what, id);
    }
    db_finalize(st);
    return out;
}

/* DELETE by id (and filter value), BS_ENOTFOUND when nothing matched. */
static bs_status delete_row(bs_store *s, const table *t, const char *filter, const char *id, bs_error *err) {
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE id = $1 AND ($2 IS NULL OR %s = $2)", t->name, t->filter);
    db_stmt *st;
    if (db_prepare(s->db, sql, t->what, &st, err) != BS_OK) return err->status;
    db_bind_text(st, 1, id);
    db_bind_text(st, 2, filter);
    int64_t changed = 0;
    if (run_stmt(st, &changed, err) != BS_OK) return err->status;
    if (changed == 0) return bs_fail(err, BS_ENOTFOUND, "no %s with id %s", t->what, id);
    return BS_OK;
}

/* The seq of the cursor row, which must pass the same filters as the list. */
static bs_status cursor_seq(bs_store *s, const table *t, const char *filter, const char *owner, const char *after,
                            int64_t *seq, bs_error *err) {
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT seq FROM %s WHERE id = $1 AND ($2 IS NULL OR %s = $2)%s", t->name, t->filter,
             t->has_owner ? " AND ($3 IS NULL OR owner = $3)" : "");
    db_stmt *st;
    if (db_prepare(s->db, sql, t->what, &st, err) != BS_OK) return err->status;
    db_bind_text(st, 1, after);
    db_bind_text(st, 2, filter);
    if (t->has_owner) db_bind_text(st, 3, owner);
    int row;
    bs_status out = db_step(st, &row, err);
    if (out == BS_OK && row) *seq = db_col_int(st, 0);
    else if (out == BS_OK) out = bs_fail(err, BS_ENOTFOUND, "after: no %s with id %s in this list", t->what, after);
    db_finalize(st);
    return out;
}

/* One page in creation order (seq, which never repeats or goes back, unlike
 * created_at seconds), fetching limit + 1 rows to learn has_more.  With
 * allow_all, limit 0 means every row. */
static bs_status list_rows(bs_store *s, const table *t, const char *filter, const store_page *p, int allow_all,
                           void **items, size_t *n, int *has_more, bs_error *err) {
    *items = NULL;
    *n = 0;
    *has_more = 0;
    if (p->limit < (allow_all ? 0 : 1))
        return bs_fail(err, BS_EINVAL, "limit: must be at least %d, got %d", allow_all ? 0 : 1, p->limit);
    const char *owner = t->has_owner ? p->owner : NULL;
    int64_t after = 0;
    if (p->after && cursor_seq(s, t, filter, owner, p->after, &after, err) != BS_OK) return err->status;
    char sql[768];
    snprintf(sql, sizeof sql,
             "SELECT %s FROM %s WHERE ($1 IS NULL OR %s = $1) AND ($2 IS NULL OR seq %s $2)%s ORDER BY seq %s LIMIT $3",
             t->columns, t->name, t->filter, p->ascending ? ">" : "<",
             t->has_owner ? " AND ($4 IS NULL OR owner = $4)" : "", p->ascending ? "ASC" : "DESC");
    db_stmt *st;
    if (db_prepare(s->db, sql, t->what, &st, err) != BS_OK) return err->status;
    db_bind_text(st, 1, filter);
    if (p->after) db_bind_int(st, 2, after);
    else db_bind_null_int(st, 2);
    size_t limit = p->limit ? (size_t)p->limit : SIZE_MAX;
    db_bind_int(st, 3, p->limit ? (int64_t)p->limit + 1 : INT64_MAX);
    if (t->has_owner) db_bind_text(st, 4, owner);
    char *out = NULL;
    size_t count = 0, cap = 0;
    int row, oom = 0;
    bs_status status;
    while ((status = db_step(st, &row, err)) == BS_OK && row) {
        if (count == limit) {
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
    if (oom) status = bs_fail(err, BS_ENOMEM, "out of memory");
    db_finalize(st);
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

static bs_status exec_ddl(bs_store *s, const char *ddl, const char *what, bs_error *err) {
    char *text = db_ddl(s->db, ddl);
    if (!text) return bs_fail(err, BS_ENOMEM, "out of memory");
    bs_status st = db_exec(s->db, text, what, err);
    free(text);
    return st;
}

/* Reads the version inside the schema transaction; 0 when unset. */
static bs_status read_version(bs_store *s, int *version, int *has_row, bs_error *err) {
    db_stmt *st;
    if (db_prepare(s->db, "SELECT version FROM schema_version", "schema_version", &st, err) != BS_OK)
        return err->status;
    int row;
    bs_status out = db_step(st, &row, err);
    *version = out == BS_OK && row ? (int)db_col_int(st, 0) : 0;
    *has_row = out == BS_OK && row;
    db_finalize(st);
    return out;
}

static bs_status migrate(bs_store *s, bs_error *err) {
    /* One step per schema transaction (which holds the backend's migration
     * lock), re-reading the version inside it, so two processes opening a
     * fresh database do not both migrate. */
    for (;;) {
        if (db_begin_schema(s->db, err) != BS_OK) return err->status;
        int version = 0, has_row = 0;
        if (exec_ddl(s, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", "schema_version",
                     err) != BS_OK ||
            read_version(s, &version, &has_row, err) != BS_OK)
            goto rollback;
        if (version > SCHEMA_VERSION) {
            bs_fail(err, BS_EUNSUPPORTED, "%s: schema version %d is newer than this basalt knows (%d)",
                    db_where(s->db), version, SCHEMA_VERSION);
            goto rollback;
        }
        if (version == SCHEMA_VERSION) {
            s->version = version;
            return db_exec(s->db, "COMMIT", "migration", err);
        }
        char what[64];
        snprintf(what, sizeof what, "migration to schema version %d", version + 1);
        if (exec_ddl(s, migrations[version], what, err) != BS_OK) goto rollback;
        db_stmt *st;
        if (db_prepare(s->db,
                       has_row ? "UPDATE schema_version SET version = $1" : "INSERT INTO schema_version VALUES ($1)",
                       what, &st, err) != BS_OK)
            goto rollback;
        db_bind_int(st, 1, version + 1);
        if (run_stmt(st, NULL, err) != BS_OK || db_exec(s->db, "COMMIT", what, err) != BS_OK) goto rollback;
    }
rollback:
    db_exec(s->db, "ROLLBACK", "migration", NULL);
    return err->status;
}

/* The store around an opened db: DATA/files and the schema. */
static bs_status open_with(const char *data_dir, const char *url, bs_store **out, bs_error *err) {
    *out = NULL;
    if (!bs_is_directory(data_dir)) return bs_fail(err, BS_ENOTFOUND, "%s: data directory does not exist", data_dir);
    bs_store *s = calloc(1, sizeof *s);
    if (!s) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->files_dir = bs_path_join(data_dir, "files");
    char *db_path = url ? NULL : bs_path_join(data_dir, "basalt.db");
    bs_status st = BS_OK;
    if (!s->files_dir || (!url && !db_path)) st = bs_fail(err, BS_ENOMEM, "out of memory");
    if (st == BS_OK) st = bs_make_dirs(s->files_dir, 0700, err);
    if (st == BS_OK) st = url ? db_open_pg(url, &s->db, err) : db_open_sqlite(db_path, &s->db, err);
    if (st == BS_OK) st = migrate(s, err);
    free(db_path);
    if (st != BS_OK) {
        store_close(s);
        return st;
    }
    *out = s;
    return BS_OK;
}

bs_status store_open(const char *data_dir, bs_store **out, bs_error *err) { return open_with(data_dir, NULL, out, err); }

bs_status store_open_url(const char *url, const char *data_dir, bs_store **out, bs_error *err) {
    *out = NULL;
    if (!url || !*url) return store_open(data_dir, out, err);
    if (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0) {
        /* Name only the scheme: the rest may hold a password. */
        const char *colon = strchr(url, ':');
        return bs_fail(err, BS_EINVAL, "store url: unsupported scheme \"%.*s\" (want postgres://)",
                       colon ? (int)(colon - url) : 0, url);
    }
    return open_with(data_dir, url, out, err);
}

const char *store_backend(const bs_store *s) { return db_backend(s->db); }

void store_close(bs_store *s) {
    if (!s) return;
    db_close(s->db);
    pthread_mutex_destroy(&s->mu);
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

static void file_read(db_stmt *st, void *rec, int *oom) {
    store_file *f = rec;
    f->id = col_text(st, 0, oom);
    f->owner = col_text(st, 1, oom);
    f->filename = col_text(st, 2, oom);
    f->purpose = col_text(st, 3, oom);
    f->bytes = db_col_int(st, 4);
    f->created_at = db_col_int(st, 5);
    f->sha256 = col_text(st, 6, oom);
    f->path = col_text(st, 7, oom);
    const char *status = db_col_text(st, 8);
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
    "files", "file", "id, owner, filename, purpose, bytes, created_at, sha256, path, status", "purpose", 1,
    sizeof(store_file), file_read, file_clear,
};

bs_status store_file_insert(bs_store *s, const store_file *f, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db,
                            "INSERT INTO files (id, owner, filename, purpose, bytes, created_at, sha256, path, status)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                            "file", &st, err);
    if (out == BS_OK) {
        db_bind_text(st, 1, f->id);
        db_bind_text(st, 2, f->owner ? f->owner : "");
        db_bind_text(st, 3, f->filename);
        db_bind_text(st, 4, f->purpose);
        db_bind_int(st, 5, f->bytes);
        db_bind_int(st, 6, f->created_at);
        db_bind_text(st, 7, f->sha256);
        db_bind_text(st, 8, f->path);
        db_bind_text(st, 9, store_file_status_name(f->status));
        out = run_stmt(st, NULL, err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_file_get(bs_store *s, const char *id, store_file *out, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = get_row(s, &files_table, NULL, id, out, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

bs_status store_file_delete(bs_store *s, const char *id, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = delete_row(s, &files_table, NULL, id, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

bs_status store_file_list(bs_store *s, const char *purpose, const store_page *page, store_file **items, size_t *n,
                          int *has_more, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &files_table, purpose, page, 0, &out, n, has_more, err);
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

static void job_read(db_stmt *st, void *rec, int *oom) {
    store_job *j = rec;
    j->id = col_text(st, 0, oom);
    j->owner = col_text(st, 1, oom);
    j->model = col_text(st, 2, oom);
    j->training_file = col_text(st, 3, oom);
    j->validation_file = col_text(st, 4, oom);
    j->hyperparameters = col_text(st, 5, oom);
    j->method = col_text(st, 6, oom);
    j->suffix = col_text(st, 7, oom);
    j->seed = db_col_int(st, 8);
    const char *status = db_col_text(st, 9);
    if (!status || store_job_status_parse(status, &j->status, NULL) != BS_OK) j->status = STORE_JOB_FAILED;
    j->created_at = db_col_int(st, 10);
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
    "status", 1, sizeof(store_job), job_read, job_clear,
};

bs_status store_job_insert(bs_store *s, const store_job *j, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db,
                            "INSERT INTO fine_tuning_jobs (id, owner, model, training_file, validation_file,"
                            " hyperparameters, method, suffix, seed, status, created_at, finished_at, fine_tuned_model,"
                            " error, trained_tokens)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                            "fine-tuning job", &st, err);
    if (out == BS_OK) {
        db_bind_text(st, 1, j->id);
        db_bind_text(st, 2, j->owner ? j->owner : "");
        db_bind_text(st, 3, j->model);
        db_bind_text(st, 4, j->training_file);
        db_bind_text(st, 5, j->validation_file);
        db_bind_text(st, 6, j->hyperparameters);
        db_bind_text(st, 7, j->method);
        db_bind_text(st, 8, j->suffix);
        db_bind_int(st, 9, j->seed);
        db_bind_text(st, 10, store_job_status_name(j->status));
        db_bind_int(st, 11, j->created_at);
        bind_nullable_int(st, 12, j->finished_at);
        db_bind_text(st, 13, j->fine_tuned_model);
        db_bind_text(st, 14, j->error);
        bind_nullable_int(st, 15, j->trained_tokens);
        out = run_stmt(st, NULL, err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_job_get(bs_store *s, const char *id, store_job *out, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = get_row(s, &jobs_table, NULL, id, out, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

bs_status store_job_update(bs_store *s, const store_job *j, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db,
                            "UPDATE fine_tuning_jobs SET status = $2, hyperparameters = $3, finished_at = $4,"
                            " fine_tuned_model = $5, error = $6, trained_tokens = $7 WHERE id = $1",
                            "fine-tuning job", &st, err);
    if (out == BS_OK) {
        db_bind_text(st, 1, j->id);
        db_bind_text(st, 2, store_job_status_name(j->status));
        db_bind_text(st, 3, j->hyperparameters);
        bind_nullable_int(st, 4, j->finished_at);
        db_bind_text(st, 5, j->fine_tuned_model);
        db_bind_text(st, 6, j->error);
        bind_nullable_int(st, 7, j->trained_tokens);
        int64_t changed = 0;
        out = run_stmt(st, &changed, err);
        if (out == BS_OK && changed == 0)
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
    bs_status st = list_rows(s, &jobs_table, status < 0 ? NULL : job_status_names[status], page, 0, &out, n, has_more,
                             err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

void store_jobs_free(store_job *items, size_t n) { free_records(&jobs_table, items, n); }

/* ------------------------------------------------------------ events */

static void event_read(db_stmt *st, void *rec, int *oom) {
    store_event *e = rec;
    e->id = col_text(st, 0, oom);
    e->job_id = col_text(st, 1, oom);
    e->created_at = db_col_int(st, 2);
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
    "fine_tuning_events", "fine-tuning event", "id, job_id, created_at, level, message, type, data", "job_id", 0,
    sizeof(store_event), event_read, event_clear,
};

bs_status store_event_insert(bs_store *s, const store_event *e, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db,
                            "INSERT INTO fine_tuning_events (id, job_id, created_at, level, message, type, data)"
                            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                            "fine-tuning event", &st, err);
    if (out == BS_OK) {
        db_bind_text(st, 1, e->id);
        db_bind_text(st, 2, e->job_id);
        db_bind_int(st, 3, e->created_at);
        db_bind_text(st, 4, e->level);
        db_bind_text(st, 5, e->message);
        db_bind_text(st, 6, e->type);
        db_bind_text(st, 7, e->data);
        out = run_stmt(st, NULL, err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_event_list(bs_store *s, const char *job_id, const store_page *page, store_event **items, size_t *n,
                           int *has_more, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &events_table, job_id, page, 0, &out, n, has_more, err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

void store_events_free(store_event *items, size_t n) { free_records(&events_table, items, n); }

/* ------------------------------------------------------------ checkpoints */

static void checkpoint_read(db_stmt *st, void *rec, int *oom) {
    store_checkpoint *c = rec;
    c->id = col_text(st, 0, oom);
    c->job_id = col_text(st, 1, oom);
    c->created_at = db_col_int(st, 2);
    c->step = db_col_int(st, 3);
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
    "fine_tuning_checkpoints", "fine-tuning checkpoint", "id, job_id, created_at, step, metrics, path", "job_id", 0,
    sizeof(store_checkpoint), checkpoint_read, checkpoint_clear,
};

bs_status store_checkpoint_insert(bs_store *s, const store_checkpoint *c, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db,
                            "INSERT INTO fine_tuning_checkpoints (id, job_id, created_at, step, metrics, path)"
                            " VALUES ($1, $2, $3, $4, $5, $6)",
                            "fine-tuning checkpoint", &st, err);
    if (out == BS_OK) {
        db_bind_text(st, 1, c->id);
        db_bind_text(st, 2, c->job_id);
        db_bind_int(st, 3, c->created_at);
        db_bind_int(st, 4, c->step);
        db_bind_text(st, 5, c->metrics);
        db_bind_text(st, 6, c->path);
        out = run_stmt(st, NULL, err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_checkpoint_list(bs_store *s, const char *job_id, const store_page *page, store_checkpoint **items,
                                size_t *n, int *has_more, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &checkpoints_table, job_id, page, 0, &out, n, has_more, err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

bs_status store_checkpoint_delete(bs_store *s, const char *id, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = delete_row(s, &checkpoints_table, NULL, id, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

void store_checkpoints_free(store_checkpoint *items, size_t n) { free_records(&checkpoints_table, items, n); }

/* ------------------------------------------------------------ documents */

static void doc_read(db_stmt *st, void *rec, int *oom) {
    store_doc *d = rec;
    d->kind = col_text(st, 0, oom);
    d->id = col_text(st, 1, oom);
    d->owner = col_text(st, 2, oom);
    d->created_at = db_col_int(st, 3);
    d->updated_at = db_col_int(st, 4);
    d->body = col_text(st, 5, oom);
}

void store_doc_clear(store_doc *d) {
    free(d->kind);
    free(d->id);
    free(d->owner);
    free(d->body);
    memset(d, 0, sizeof *d);
}

static void doc_clear(void *rec) { store_doc_clear(rec); }

static const table docs_table = {
    "docs", "document", "kind, id, owner, created_at, updated_at, body", "kind", 1,
    sizeof(store_doc), doc_read, doc_clear,
};

/* The database checks that body is JSON; that it is an object is ours. */
static bs_status check_body(const store_doc *d, bs_error *err) {
    json_t *v = d->body ? json_loads(d->body, JSON_DECODE_ANY, NULL) : NULL;
    int object = json_is_object(v);
    json_decref(v);
    if (!object) return bs_fail(err, BS_EINVAL, "document %s/%s: body: not a JSON object", d->kind, d->id);
    return BS_OK;
}

bs_status store_doc_insert(bs_store *s, const store_doc *d, bs_error *err) {
    if (check_body(d, err) != BS_OK) return err->status;
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db,
                               "INSERT INTO docs (kind, id, owner, created_at, updated_at, body)"
                               " VALUES ($1, $2, $3, $4, $5, $6)",
                               "document", &st, err);
    if (out == BS_OK) {
        db_bind_text(st, 1, d->kind);
        db_bind_text(st, 2, d->id);
        db_bind_text(st, 3, d->owner ? d->owner : "");
        db_bind_int(st, 4, d->created_at);
        db_bind_int(st, 5, d->updated_at);
        db_bind_text(st, 6, d->body);
        out = run_stmt(st, NULL, err);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_doc_update(bs_store *s, const store_doc *d, int64_t expect_updated_at, bs_error *err) {
    if (check_body(d, err) != BS_OK) return err->status;
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db,
                               "UPDATE docs SET body = $3, updated_at = $4"
                               " WHERE kind = $1 AND id = $2 AND ($5 < 0 OR updated_at = $5)",
                               "document", &st, err);
    int64_t changed = 0;
    if (out == BS_OK) {
        db_bind_text(st, 1, d->kind);
        db_bind_text(st, 2, d->id);
        db_bind_text(st, 3, d->body);
        db_bind_int(st, 4, d->updated_at);
        db_bind_int(st, 5, expect_updated_at);
        out = run_stmt(st, &changed, err);
    }
    if (out == BS_OK && changed == 0) {
        /* Nothing matched: either the row is gone or the compare failed. */
        store_doc cur;
        out = get_row(s, &docs_table, d->kind, d->id, &cur, err);
        if (out == BS_OK) {
            out = bs_fail(err, BS_EBUSY, "document %s/%s: updated_at is %lld, expected %lld (written concurrently)",
                          d->kind, d->id, (long long)cur.updated_at, (long long)expect_updated_at);
            store_doc_clear(&cur);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

bs_status store_doc_get(bs_store *s, const char *kind, const char *id, store_doc *out, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = get_row(s, &docs_table, kind, id, out, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

bs_status store_doc_delete(bs_store *s, const char *kind, const char *id, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    bs_status st = delete_row(s, &docs_table, kind, id, err);
    pthread_mutex_unlock(&s->mu);
    return st;
}

bs_status store_doc_list(bs_store *s, const char *kind, const store_page *page, store_doc **items, size_t *n,
                         int *has_more, bs_error *err) {
    pthread_mutex_lock(&s->mu);
    void *out;
    bs_status st = list_rows(s, &docs_table, kind, page, 1, &out, n, has_more, err);
    pthread_mutex_unlock(&s->mu);
    *items = out;
    return st;
}

void store_docs_free(store_doc *items, size_t n) { free_records(&docs_table, items, n); }

/* ------------------------------------------------------------ usage */

static bs_status usage_add_rows(bs_store *s, const store_usage *rows, size_t n, bs_error *err) {
    db_stmt *st;
    if (db_prepare(s->db,
                   "INSERT INTO usage (minute, key_id, model, route, target, requests, errors, prompt_tokens,"
                   " completion_tokens, guardrail_interventions, cost_usd, latency_ms_sum)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                   " ON CONFLICT (minute, key_id, model, route, target) DO UPDATE SET"
                   " requests = usage.requests + excluded.requests,"
                   " errors = usage.errors + excluded.errors,"
                   " prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,"
                   " completion_tokens = usage.completion_tokens + excluded.completion_tokens,"
                   " guardrail_interventions = usage.guardrail_interventions + excluded.guardrail_interventions,"
                   " cost_usd = usage.cost_usd + excluded.cost_usd,"
                   " latency_ms_sum = usage.latency_ms_sum + excluded.latency_ms_sum",
                   "usage", &st, err) != BS_OK)
        return err->status;
    bs_status out = BS_OK;
    for (size_t i = 0; i < n && out == BS_OK; i++) {
        const store_usage *u = &rows[i];
        db_reset(st);
        db_bind_int(st, 1, u->minute);
        db_bind_text(st, 2, u->key_id ? u->key_id : "");
        db_bind_text(st, 3, u->model);
        db_bind_text(st, 4, u->route ? u->route : "");
        db_bind_text(st, 5, u->target ? u->target : "");
        db_bind_int(st, 6, u->requests);
        db_bind_int(st, 7, u->errors);
        db_bind_int(st, 8, u->prompt_tokens);
        db_bind_int(st, 9, u->completion_tokens);
        db_bind_int(st, 10, u->guardrail_interventions);
        db_bind_double(st, 11, u->cost_usd);
        db_bind_double(st, 12, u->latency_ms_sum);
        int row;
        out = db_step(st, &row, err);
        if (out != BS_OK) bs_wrap(err, "usage row %zu", i);
    }
    db_finalize(st);
    return out;
}

bs_status store_usage_add(bs_store *s, const store_usage *rows, size_t n, bs_error *err) {
    if (n == 0) return BS_OK;
    pthread_mutex_lock(&s->mu);
    bs_status out = db_exec(s->db, "BEGIN", "usage", err);
    if (out == BS_OK) {
        out = usage_add_rows(s, rows, n, err);
        if (out == BS_OK) out = db_exec(s->db, "COMMIT", "usage", err);
        if (out != BS_OK) db_exec(s->db, "ROLLBACK", "usage", NULL);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

/* The grouped column per store_usage_group, and where its value goes. */
static const char *const usage_group_expr[] = {"key_id", "model", "route", "target", "minute - minute % 86400"};

static void usage_read(db_stmt *st, store_usage_group by, store_usage *u, int *oom) {
    char **field[] = {&u->key_id, &u->model, &u->route, &u->target};
    for (int f = 0; f < 4; f++) {
        *field[f] = strdup(f == (int)by ? (db_col_text(st, 0) ? db_col_text(st, 0) : "") : "");
        if (!*field[f]) *oom = 1;
    }
    u->minute = by == STORE_USAGE_BY_DAY ? db_col_int(st, 0) : 0;
    u->requests = db_col_int(st, 1);
    u->errors = db_col_int(st, 2);
    u->prompt_tokens = db_col_int(st, 3);
    u->completion_tokens = db_col_int(st, 4);
    u->guardrail_interventions = db_col_int(st, 5);
    u->cost_usd = db_col_double(st, 6);
    u->latency_ms_sum = db_col_double(st, 7);
}

bs_status store_usage_query(bs_store *s, store_usage_group by, int64_t from, int64_t to, const char *key_id,
                            store_usage **rows, size_t *n, bs_error *err) {
    *rows = NULL;
    *n = 0;
    if ((unsigned)by >= sizeof usage_group_expr / sizeof usage_group_expr[0])
        return bs_fail(err, BS_EINVAL, "group: %d is no usage grouping", (int)by);
    char sql[640];
    snprintf(sql, sizeof sql,
             "SELECT %s, SUM(requests), SUM(errors), SUM(prompt_tokens), SUM(completion_tokens),"
             " SUM(guardrail_interventions), SUM(cost_usd), SUM(latency_ms_sum) FROM usage"
             " WHERE minute >= $1 AND ($2 <= 0 OR minute < $2) AND ($3 IS NULL OR key_id = $3)"
             " GROUP BY 1 ORDER BY 1",
             usage_group_expr[by]);
    pthread_mutex_lock(&s->mu);
    db_stmt *st;
    bs_status out = db_prepare(s->db, sql, "usage", &st, err);
    store_usage *items = NULL;
    size_t count = 0, cap = 0;
    if (out == BS_OK) {
        db_bind_int(st, 1, from);
        db_bind_int(st, 2, to);
        db_bind_text(st, 3, key_id);
        int row, oom = 0;
        while ((out = db_step(st, &row, err)) == BS_OK && row) {
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                store_usage *grown = realloc(items, ncap * sizeof *items);
                if (!grown) {
                    oom = 1;
                    break;
                }
                items = grown;
                cap = ncap;
            }
            memset(&items[count], 0, sizeof *items);
            usage_read(st, by, &items[count++], &oom);
            if (oom) break;
        }
        if (oom) out = bs_fail(err, BS_ENOMEM, "out of memory");
        db_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    if (out != BS_OK) {
        store_usages_free(items, count);
        return out;
    }
    *rows = items;
    *n = count;
    return BS_OK;
}

void store_usages_free(store_usage *rows, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(rows[i].key_id);
        free(rows[i].model);
        free(rows[i].route);
        free(rows[i].target);
    }
    free(rows);
}
