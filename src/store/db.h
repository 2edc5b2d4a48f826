/* store/db.h — the small SQL driver layer store.c is written against, so
 * every query and migration is written once for SQLite and PostgreSQL.
 *
 * SQL uses PostgreSQL's numbered placeholders ($1, $2, …); the SQLite
 * driver reads them as ?1, ?2, ….  Schema text (migrations) is written in
 * SQLite's dialect and db_ddl() translates it for the backend.  A db is one
 * connection and is not thread-safe: store.c serializes calls with its mutex.
 *
 * Errors are values: each failure names db_where() (the database file, or
 * the PostgreSQL URL without its password) and what was being done, and
 * maps the backend's error class onto bs_status (a constraint violation is
 * BS_EINVAL, a missing foreign-key parent BS_ENOTFOUND, lock contention or a
 * serialization failure BS_EBUSY, everything else BS_EIO). */
#ifndef BASALT_STORE_DB_H
#define BASALT_STORE_DB_H

#include <stdint.h>

#include "base/error.h"

typedef struct db db;
typedef struct db_stmt db_stmt;

/* Parameters per statement; the widest insert binds 15. */
#define DB_MAX_PARAMS 16

/* path: the SQLite file (created when missing), WAL mode, foreign keys on. */
bs_status db_open_sqlite(const char *path, db **out, bs_error *err);
/* url: a libpq "postgres://…" URI; the password never reaches a message. */
bs_status db_open_pg(const char *url, db **out, bs_error *err);
void db_close(db *d);
const char *db_backend(const db *d); /* "sqlite" or "postgres" */
const char *db_where(const db *d);

/* Run SQL without parameters or results (DDL, BEGIN, COMMIT); several
 * statements separated by ';' are allowed. */
bs_status db_exec(db *d, const char *sql, const char *what, bs_error *err);
/* Begin the transaction a migration step runs in, holding the lock that
 * keeps two processes from migrating at once: BEGIN IMMEDIATE on SQLite, a
 * transaction-scoped advisory lock on PostgreSQL.  COMMIT/ROLLBACK ends it. */
bs_status db_begin_schema(db *d, bs_error *err);
/* ddl (SQLite dialect) as this backend's text; malloc'ed, NULL when out of
 * memory. */
char *db_ddl(const db *d, const char *ddl);

/* A statement: prepare, bind, step until *row is 0, finalize.  what names
 * the record in messages. */
bs_status db_prepare(db *d, const char *sql, const char *what, db_stmt **out, bs_error *err);
void db_bind_text(db_stmt *st, int i, const char *v); /* NULL binds a text null */
void db_bind_int(db_stmt *st, int i, int64_t v);
void db_bind_null_int(db_stmt *st, int i);
void db_bind_double(db_stmt *st, int i, double v);
/* Runs the statement on the first call; *row = 1 while a row is current. */
bs_status db_step(db_stmt *st, int *row, bs_error *err);
/* Rewind a finished statement to bind and run it again. */
void db_reset(db_stmt *st);
/* Columns of the current row (0-based); text is NULL for SQL null and lives
 * until the next step. */
const char *db_col_text(db_stmt *st, int i);
int db_col_is_null(db_stmt *st, int i);
int64_t db_col_int(db_stmt *st, int i);
double db_col_double(db_stmt *st, int i);
/* Rows an INSERT/UPDATE/DELETE changed, once it has run. */
int64_t db_changes(db_stmt *st);
void db_finalize(db_stmt *st);

#endif
