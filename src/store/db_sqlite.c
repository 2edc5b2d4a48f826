/* store/db_sqlite.c — db.h over SQLite: one connection in WAL mode with a
 * busy timeout, so other processes may share the file. */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/db_driver.h"

typedef struct sqlite_db {
    db base;
    sqlite3 *conn;
} sqlite_db;

typedef struct sqlite_stmt {
    db_stmt base;
    sqlite3_stmt *st;
    int started; /* parameters bound and stepped at least once */
} sqlite_stmt;

static sqlite3 *conn_of(db *d) { return ((sqlite_db *)d)->conn; }

/* The last failure as a status: constraint violations are the caller's bad
 * input (a foreign key means the parent is missing). */
static bs_status sqlite_fail(sqlite3 *c, bs_error *err) {
    int code = sqlite3_extended_errcode(c);
    bs_status st = BS_EIO;
    if (code == SQLITE_CONSTRAINT_FOREIGNKEY) st = BS_ENOTFOUND;
    else if ((code & 0xff) == SQLITE_CONSTRAINT) st = BS_EINVAL;
    else if ((code & 0xff) == SQLITE_NOMEM) st = BS_ENOMEM;
    else if ((code & 0xff) == SQLITE_BUSY) st = BS_EBUSY;
    return bs_fail(err, st, "%s", sqlite3_errmsg(c));
}

static void sqlite_close(db *d) {
    sqlite3_close(conn_of(d));
    free(d->where);
    free(d);
}

static bs_status sqlite_exec(db *d, const char *sql, bs_error *err) {
    char *msg = NULL;
    if (sqlite3_exec(conn_of(d), sql, NULL, NULL, &msg) == SQLITE_OK) return BS_OK;
    sqlite3_free(msg);
    return sqlite_fail(conn_of(d), err);
}

/* The schema is written in SQLite's dialect already. */
static char *sqlite_ddl(const char *ddl) { return strdup(ddl); }

static bs_status sqlite_prepare(db *d, const char *sql, db_stmt **out, bs_error *err) {
    sqlite_stmt *s = calloc(1, sizeof *s);
    char *text = strdup(sql);
    if (!s || !text) {
        free(s);
        free(text);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    /* $N and ?N number parameters alike; the queries hold no other '$'. */
    for (char *p = text; *p; p++)
        if (p[0] == '$' && p[1] >= '0' && p[1] <= '9') *p = '?';
    int rc = sqlite3_prepare_v2(conn_of(d), text, -1, &s->st, NULL);
    free(text);
    if (rc != SQLITE_OK) {
        free(s);
        return sqlite_fail(conn_of(d), err);
    }
    *out = &s->base;
    return BS_OK;
}

static void bind_all(sqlite_stmt *s) {
    for (int i = 0; i < s->base.nparams; i++) {
        const db_param *p = &s->base.params[i];
        if (p->is_null) sqlite3_bind_null(s->st, i + 1);
        else if (p->type == DB_PARAM_TEXT) sqlite3_bind_text(s->st, i + 1, p->text, -1, SQLITE_TRANSIENT);
        else if (p->type == DB_PARAM_INT) sqlite3_bind_int64(s->st, i + 1, p->i);
        else sqlite3_bind_double(s->st, i + 1, p->f);
    }
}

static bs_status sqlite_step(db_stmt *st, int *row, bs_error *err) {
    sqlite_stmt *s = (sqlite_stmt *)st;
    if (!s->started) {
        bind_all(s);
        s->started = 1;
    }
    int rc = sqlite3_step(s->st);
    if (rc == SQLITE_ROW) *row = 1;
    else if (rc != SQLITE_DONE) return sqlite_fail(conn_of(st->d), err);
    return BS_OK;
}

static void sqlite_reset(db_stmt *st) {
    sqlite_stmt *s = (sqlite_stmt *)st;
    sqlite3_reset(s->st);
    sqlite3_clear_bindings(s->st);
    s->started = 0;
}

static const char *sqlite_col_text(db_stmt *st, int i) {
    return (const char *)sqlite3_column_text(((sqlite_stmt *)st)->st, i);
}
static int sqlite_col_is_null(db_stmt *st, int i) {
    return sqlite3_column_type(((sqlite_stmt *)st)->st, i) == SQLITE_NULL;
}
static int64_t sqlite_col_int(db_stmt *st, int i) { return sqlite3_column_int64(((sqlite_stmt *)st)->st, i); }
static double sqlite_col_double(db_stmt *st, int i) { return sqlite3_column_double(((sqlite_stmt *)st)->st, i); }
static int64_t sqlite_changes(db_stmt *st) { return sqlite3_changes(conn_of(st->d)); }

static void sqlite_finalize(db_stmt *st) {
    sqlite3_finalize(((sqlite_stmt *)st)->st);
    free(st);
}

/* journal_mode = WAL.  Connections opening a new database at the same time
 * can each hold a shared lock while asking for the exclusive one; SQLite
 * then answers BUSY at once instead of waiting (the busy handler would
 * deadlock), so that case is retried here, for up to the busy timeout. */
static bs_status switch_to_wal(db *d, const char *path, bs_error *err) {
    bs_status st = BS_OK;
    for (int attempt = 0; attempt < 100; attempt++) {
        db_stmt *wal;
        st = db_prepare(d, "PRAGMA journal_mode = WAL", "journal_mode", &wal, err);
        if (st == BS_OK) {
            int row;
            st = db_step(wal, &row, err);
            const char *mode = st == BS_OK && row ? db_col_text(wal, 0) : NULL;
            if (st == BS_OK && (!mode || strcmp(mode, "wal") != 0))
                st = bs_fail(err, BS_EIO, "%s: cannot switch to WAL mode (got %s)", path, mode ? mode : "nothing");
            db_finalize(wal);
        }
        if (st != BS_EBUSY) return st;
        usleep(50 * 1000);
    }
    return st;
}

static const db_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .exec = sqlite_exec,
    /* IMMEDIATE takes the write lock now, so a second process waits
     * (busy timeout) instead of migrating the same step. */
    .begin_schema_sql = "BEGIN IMMEDIATE",
    .ddl = sqlite_ddl,
    .prepare = sqlite_prepare,
    .step = sqlite_step,
    .reset = sqlite_reset,
    .col_text = sqlite_col_text,
    .col_is_null = sqlite_col_is_null,
    .col_int = sqlite_col_int,
    .col_double = sqlite_col_double,
    .changes = sqlite_changes,
    .finalize = sqlite_finalize,
};

bs_status db_open_sqlite(const char *path, db **out, bs_error *err) {
    *out = NULL;
    sqlite_db *d = calloc(1, sizeof *d);
    if (!d || !(d->base.where = strdup(path))) {
        free(d);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    d->base.ops = &sqlite_ops;
    int rc = sqlite3_open_v2(path, &d->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        bs_fail(err, BS_EIO, "%s: cannot open: %s", path, d->conn ? sqlite3_errmsg(d->conn) : "out of memory");
        sqlite_close(&d->base);
        return BS_EIO;
    }
    /* Another process (a trainer, a second server) may hold the write lock
     * briefly: wait for it instead of failing. */
    sqlite3_busy_timeout(d->conn, 5000);
    bs_status st = switch_to_wal(&d->base, path, err);
    if (st == BS_OK) st = db_exec(&d->base, "PRAGMA foreign_keys = ON", "foreign_keys", err);
    if (st != BS_OK) {
        sqlite_close(&d->base);
        return st;
    }
    *out = &d->base;
    return BS_OK;
}
