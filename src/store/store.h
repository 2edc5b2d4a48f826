/* store/store.h — basalt's persistent state behind one narrow interface:
 * uploaded files (metadata; the bytes live under DATA/files/), fine-tuning
 * jobs, their events and their checkpoints, small JSON documents of the
 * later layers, and aggregated usage.
 *
 * Two backends behind one set of queries (store.c over the db.h driver
 * layer): SQLite, DATA/basalt.db in WAL mode with a busy timeout; or
 * PostgreSQL (store_open_url), which several replicas share.  Either has a
 * schema_version table that migrations advance one step at a time, under a
 * lock so two processes starting together do not both migrate.
 *
 * Threads: one bs_store may be shared by any number of threads (the server's
 * connection threads, a trainer).  It holds one connection behind a mutex:
 * every call is one short statement or transaction, so serializing them
 * costs less than a connection per thread.  Other processes may open the
 * same database concurrently.
 *
 * Records own their strings (malloc'ed); the *_clear / *_free functions
 * release them.  Ids ("file-…", "ftjob-…", "ftevent-…", "ftckpt-…") are made
 * by the caller.  Lists page like OpenAI's cursor lists: newest first unless
 * asked otherwise, `after` is the id of the last item of the previous page,
 * and has_more says whether another page follows. */
#ifndef BASALT_STORE_STORE_H
#define BASALT_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct bs_store bs_store;

/* Creates data_dir/basalt.db (and data_dir/files/) when missing and brings
 * the schema to the current version; data_dir must exist.  A database made
 * by a newer basalt (a schema version this build does not know) is refused. */
bs_status store_open(const char *data_dir, bs_store **out, bs_error *err);
/* url NULL or "" : store_open(data_dir); "postgres://…" / "postgresql://…":
 * the PostgreSQL database at url (libpq), same schema and semantics, so
 * several basalt replicas share it; file bytes still live under
 * data_dir/files.  The password never appears in error messages. */
bs_status store_open_url(const char *url, const char *data_dir, bs_store **out, bs_error *err);
/* "sqlite" or "postgres". */
const char *store_backend(const bs_store *s);
void store_close(bs_store *s);
/* The schema version after migrations (for tests and diagnostics). */
int store_schema_version(bs_store *s);
/* DATA/files: where uploaded file bytes are kept, one file per id. */
const char *store_files_dir(const bs_store *s);

/* "int64 or null" columns use this value for null. */
#define STORE_NULL_INT (-1)

/* One page request.  limit >= 1; after NULL for the first page.  An after
 * id that does not exist (in this list) is BS_ENOTFOUND. */
typedef struct store_page {
    int limit;
    const char *after;
    int ascending; /* 0: newest first (OpenAI's default) */
    const char *owner; /* NULL: every owner; else only rows of this tenant */
} store_page;

/* ------------------------------------------------------------ files */

typedef enum { STORE_FILE_UPLOADED, STORE_FILE_PROCESSED, STORE_FILE_ERROR } store_file_status;
const char *store_file_status_name(store_file_status st);

typedef struct store_file {
    char *id;
    char *owner; /* tenant; "" until multi-tenancy lands */
    char *filename;
    char *purpose;
    int64_t bytes;
    int64_t created_at; /* Unix seconds */
    char *sha256;       /* 64 hex digits, or NULL */
    char *path;         /* where the bytes are on disk */
    store_file_status status;
} store_file;

/* BS_EINVAL when the id exists already. */
bs_status store_file_insert(bs_store *s, const store_file *f, bs_error *err);
/* BS_ENOTFOUND for an unknown id; *out is cleared first. */
bs_status store_file_get(bs_store *s, const char *id, store_file *out, bs_error *err);
/* Removes the row only (the caller unlinks f.path); BS_ENOTFOUND when absent. */
bs_status store_file_delete(bs_store *s, const char *id, bs_error *err);
/* purpose NULL lists every purpose.  *items is malloc'ed (free with
 * store_files_free), *n of them. */
bs_status store_file_list(bs_store *s, const char *purpose, const store_page *page, store_file **items, size_t *n,
                          int *has_more, bs_error *err);
void store_file_clear(store_file *f);
void store_files_free(store_file *items, size_t n);

/* ------------------------------------------------------------ fine-tuning jobs */

typedef enum {
    STORE_JOB_VALIDATING_FILES,
    STORE_JOB_QUEUED,
    STORE_JOB_RUNNING,
    STORE_JOB_SUCCEEDED,
    STORE_JOB_FAILED,
    STORE_JOB_CANCELLED,
    STORE_JOB_PAUSED,
    STORE_JOB_STATUS_COUNT
} store_job_status;
const char *store_job_status_name(store_job_status st);
/* BS_EINVAL for a name outside the enum. */
bs_status store_job_status_parse(const char *name, store_job_status *out, bs_error *err);

typedef struct store_job {
    char *id;
    char *owner;
    char *model;
    char *training_file;
    char *validation_file; /* NULL: none */
    char *hyperparameters; /* JSON object text */
    char *method;          /* JSON object text */
    char *suffix;          /* NULL: none */
    int64_t seed;
    store_job_status status;
    int64_t created_at;
    int64_t finished_at;    /* STORE_NULL_INT until finished */
    char *fine_tuned_model; /* NULL until succeeded */
    char *error;            /* JSON {"code","message","param"} text, or NULL */
    int64_t trained_tokens; /* STORE_NULL_INT until known */
} store_job;

/* JSON columns must hold valid JSON (BS_EINVAL names the field otherwise). */
bs_status store_job_insert(bs_store *s, const store_job *j, bs_error *err);
bs_status store_job_get(bs_store *s, const char *id, store_job *out, bs_error *err);
/* Writes what changes over a job's life: status, hyperparameters (resolved
 * "auto" values), finished_at, fine_tuned_model, error, trained_tokens.
 * BS_ENOTFOUND when j->id is absent. */
bs_status store_job_update(bs_store *s, const store_job *j, bs_error *err);
/* status < 0 lists every status; otherwise only jobs in that status. */
bs_status store_job_list(bs_store *s, int status, const store_page *page, store_job **items, size_t *n, int *has_more,
                         bs_error *err);
void store_job_clear(store_job *j);
void store_jobs_free(store_job *items, size_t n);

/* ------------------------------------------------------------ job events */

typedef struct store_event {
    char *id;
    char *job_id;
    int64_t created_at;
    char *level;   /* info | warn | error */
    char *message;
    char *type;    /* message | metrics */
    char *data;    /* JSON text, or NULL */
} store_event;

/* BS_ENOTFOUND when job_id names no job; BS_EINVAL for a bad level/type/data. */
bs_status store_event_insert(bs_store *s, const store_event *e, bs_error *err);
bs_status store_event_list(bs_store *s, const char *job_id, const store_page *page, store_event **items, size_t *n,
                           int *has_more, bs_error *err);
void store_event_clear(store_event *e);
void store_events_free(store_event *items, size_t n);

/* ------------------------------------------------------------ checkpoints */

typedef struct store_checkpoint {
    char *id;
    char *job_id;
    int64_t created_at;
    int64_t step;
    char *metrics; /* JSON object text */
    char *path;    /* the checkpoint's directory on disk */
} store_checkpoint;

bs_status store_checkpoint_insert(bs_store *s, const store_checkpoint *c, bs_error *err);
/* BS_ENOTFOUND when there is no such checkpoint (its directory is the caller's). */
bs_status store_checkpoint_delete(bs_store *s, const char *id, bs_error *err);
bs_status store_checkpoint_list(bs_store *s, const char *job_id, const store_page *page, store_checkpoint **items,
                                size_t *n, int *has_more, bs_error *err);
void store_checkpoint_clear(store_checkpoint *c);
void store_checkpoints_free(store_checkpoint *items, size_t n);

/* ------------------------------------------------------------ documents */

/* Small JSON records of the later layers (API keys, evals and their runs,
 * batches, the admin audit log) in one table keyed by (kind, id), so a new
 * kind needs no migration.  Lists page by insertion order like the rest. */
typedef struct store_doc {
    char *kind;  /* "api_key", "eval", "eval_run", "batch", "audit", … */
    char *id;
    char *owner; /* tenant; "" for none */
    int64_t created_at;
    int64_t updated_at;
    char *body;  /* JSON object text */
} store_doc;

/* Insert d; BS_EINVAL when (kind, id) exists or body is not a JSON object. */
bs_status store_doc_insert(bs_store *s, const store_doc *d, bs_error *err);
/* Replace body and updated_at of (d->kind, d->id); BS_ENOTFOUND when absent.
 * expect_updated_at >= 0 makes it a compare-and-set: BS_EBUSY when the row's
 * updated_at differs (another replica wrote it first). */
bs_status store_doc_update(bs_store *s, const store_doc *d, int64_t expect_updated_at, bs_error *err);
bs_status store_doc_get(bs_store *s, const char *kind, const char *id, store_doc *out, bs_error *err);
bs_status store_doc_delete(bs_store *s, const char *kind, const char *id, bs_error *err);
/* Every doc of kind (page->owner filters), paged; page->limit 0 = all. */
bs_status store_doc_list(bs_store *s, const char *kind, const store_page *page, store_doc **items, size_t *n,
                         int *has_more, bs_error *err);
void store_doc_clear(store_doc *d);
void store_docs_free(store_doc *items, size_t n);

/* ------------------------------------------------------------ usage */

/* Aggregated usage, one row per (minute, key, model, route, target); the
 * gateway adds to it in batches from one writer, never per request. */
typedef struct store_usage {
    int64_t minute; /* Unix seconds, a multiple of 60 */
    char *key_id;   /* "" for unauthenticated */
    char *model;    /* the public name requested */
    char *route;    /* "" when the model was not a route */
    char *target;   /* the model that served it ("" when none did) */
    int64_t requests, errors, prompt_tokens, completion_tokens, guardrail_interventions;
    double cost_usd, latency_ms_sum;
} store_usage;

/* Add each row's counts to the stored row with the same (minute, key_id,
 * model, route, target), creating it when absent; one transaction. */
bs_status store_usage_add(bs_store *s, const store_usage *rows, size_t n, bs_error *err);

typedef enum { STORE_USAGE_BY_KEY, STORE_USAGE_BY_MODEL, STORE_USAGE_BY_ROUTE, STORE_USAGE_BY_TARGET,
               STORE_USAGE_BY_DAY } store_usage_group;
/* Sums over minute in [from, to) (to <= 0: no upper bound), optionally only
 * key_id (NULL: every key), grouped: the group's value is in key_id, model,
 * route, target or (BY_DAY) minute = the day's first second (UTC); the other
 * string fields are "".  Ordered by the group value. */
bs_status store_usage_query(bs_store *s, store_usage_group by, int64_t from, int64_t to, const char *key_id,
                            store_usage **rows, size_t *n, bs_error *err);
void store_usages_free(store_usage *rows, size_t n);

#endif
