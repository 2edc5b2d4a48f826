/* store/db_pg.c — db.h over PostgreSQL (libpq): one connection, text-format
 * parameters with explicit types, results read from the PGresult.  Several
 * basalt processes share the database; a migration holds a transaction-
 * scoped advisory lock so replicas starting together do not race. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db_driver.h"

/* pg_type OIDs of the parameter types bound (stable across versions). */
enum { OID_INT8 = 20, OID_TEXT = 25, OID_FLOAT8 = 701 };

typedef struct pg_db {
    db base;
    PGconn *conn;
    /* The URL's password as written and as decoded, scrubbed from every
     * message libpq gives us (its errors may quote connection text). */
    char *secret_raw, *secret;
} pg_db;

typedef struct pg_stmt {
    db_stmt base;
    char *sql;
    PGresult *res; /* NULL until run */
    int cur;       /* current row, -1 before the first */
} pg_stmt;

static pg_db *pg_of(db *d) { return (pg_db *)d; }

/* msg with each occurrence of the secrets replaced by "***", one line. */
static void scrub(const pg_db *d, const char *msg, char *out, size_t cap) {
    size_t o = 0;
    for (const char *p = msg; *p && o + 4 < cap;) {
        const char *secrets[] = {d->secret_raw, d->secret};
        size_t hit = 0;
        for (int k = 0; k < 2; k++) {
            size_t len = secrets[k] ? strlen(secrets[k]) : 0;
            if (len && strncmp(p, secrets[k], len) == 0) hit = len > hit ? len : hit;
        }
        if (hit) {
            memcpy(out + o, "***", 3);
            o += 3;
            p += hit;
            continue;
        }
        out[o++] = *p == '\n' ? ' ' : *p;
        p++;
    }
    while (o > 0 && out[o - 1] == ' ') o--;
    out[o] = '\0';
}

static bs_status conn_fail(const pg_db *d, bs_error *err) {
    char msg[BS_ERROR_MSG_MAX];
    scrub(d, PQerrorMessage(d->conn), msg, sizeof msg);
    return bs_fail(err, BS_EIO, "%s", msg);
}

/* A failed result as a status, by SQLSTATE class: 23 integrity (a foreign
 * key means the parent is missing) and 22 data errors are bad input; 40
 * (serialization, deadlock) and lock_not_available are worth a retry. */
static bs_status result_fail(const pg_db *d, const PGresult *res, bs_error *err) {
    if (!res) return conn_fail(d, err);
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    if (!primary) return conn_fail(d, err);
    bs_status st = BS_EIO;
    if (code && strcmp(code, "23503") == 0) st = BS_ENOTFOUND;
    else if (code && (strncmp(code, "23", 2) == 0 || strncmp(code, "22", 2) == 0)) st = BS_EINVAL;
    else if (code && (strncmp(code, "40", 2) == 0 || strcmp(code, "55P03") == 0)) st = BS_EBUSY;
    else if (code && strcmp(code, "53200") == 0) st = BS_ENOMEM;
    char raw[BS_ERROR_MSG_MAX], msg[BS_ERROR_MSG_MAX];
    snprintf(raw, sizeof raw, "%s%s%s%s", primary, detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
    scrub(d, raw, msg, sizeof msg);
    return bs_fail(err, st, "%s", msg);
}

static int result_ok(const PGresult *res) {
    ExecStatusType t = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

/* Runs sql (with params when n >= 0).  A connection found broken is
 * re-established once: before the statement when already known broken,
 * and after a failure outside a transaction (inside one, the transaction is
 * lost with the connection and the caller's error says so). */
static PGresult *run(pg_db *d, const char *sql, int n, const Oid *types, const char *const *values) {
    if (PQstatus(d->conn) == CONNECTION_BAD) PQreset(d->conn);
    for (int attempt = 0;; attempt++) {
        int idle = PQtransactionStatus(d->conn) == PQTRANS_IDLE;
        PGresult *res = n < 0 ? PQexec(d->conn, sql) : PQexecParams(d->conn, sql, n, types, values, NULL, NULL, 0);
        if (result_ok(res) || attempt > 0 || !idle || PQstatus(d->conn) != CONNECTION_BAD) return res;
        PQclear(res);
        PQreset(d->conn);
    }
}

static void pg_close(db *d) {
    pg_db *p = pg_of(d);
    PQfinish(p->conn);
    free(p->secret_raw);
    free(p->secret);
    free(d->where);
    free(d);
}

static bs_status pg_exec(db *d, const char *sql, bs_error *err) {
    PGresult *res = run(pg_of(d), sql, -1, NULL, NULL);
    bs_status st = result_ok(res) ? BS_OK : result_fail(pg_of(d), res, err);
    PQclear(res);
    return st;
}

/* SQLite's type names as PostgreSQL's, whole words only: 64-bit integers
 * throughout, BIGSERIAL for the AUTOINCREMENT keys, float8 for REAL. */
static char *pg_ddl(const char *ddl) {
    static const char *const from[] = {"INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "REAL"};
    static const char *const to[] = {"BIGSERIAL PRIMARY KEY", "BIGINT", "DOUBLE PRECISION"};
    size_t cap = strlen(ddl) * 2 + 1, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    for (const char *p = ddl; *p;) {
        int done = 0;
        int word_start = p == ddl || !(p[-1] == '_' || (p[-1] >= 'A' && p[-1] <= 'Z') || (p[-1] >= 'a' && p[-1] <= 'z'));
        for (size_t k = 0; word_start && !done && k < sizeof from / sizeof from[0]; k++) {
            size_t len = strlen(from[k]);
            if (strncmp(p, from[k], len) != 0) continue; /* p[len] is only readable after a match */
            char next = p[len];
            if (!(next == '_' || (next >= 'A' && next <= 'Z') || (next >= 'a' && next <= 'z'))) {
                memcpy(out + o, to[k], strlen(to[k]));
                o += strlen(to[k]);
                p += len;
                done = 1;
            }
        }
        if (!done) out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

static bs_status pg_prepare(db *d, const char *sql, db_stmt **out, bs_error *err) {
    (void)d;
    pg_stmt *s = calloc(1, sizeof *s);
    if (!s || !(s->sql = strdup(sql))) {
        free(s);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    s->cur = -1;
    *out = &s->base;
    return BS_OK;
}

static bs_status pg_step(db_stmt *st, int *row, bs_error *err) {
    pg_stmt *s = (pg_stmt *)st;
    if (!s->res) {
        Oid types[DB_MAX_PARAMS];
        const char *values[DB_MAX_PARAMS];
        char numbers[DB_MAX_PARAMS][32];
        for (int i = 0; i < st->nparams; i++) {
            const db_param *p = &st->params[i];
            types[i] = p->type == DB_PARAM_TEXT ? OID_TEXT : p->type == DB_PARAM_INT ? OID_INT8 : OID_FLOAT8;
            values[i] = numbers[i];
            if (p->is_null) values[i] = NULL;
            else if (p->type == DB_PARAM_TEXT) values[i] = p->text;
            else if (p->type == DB_PARAM_INT) snprintf(numbers[i], sizeof numbers[i], "%lld", (long long)p->i);
            else snprintf(numbers[i], sizeof numbers[i], "%.17g", p->f);
        }
        s->res = run(pg_of(st->d), s->sql, st->nparams, types, values);
        if (!result_ok(s->res)) {
            bs_status out = result_fail(pg_of(st->d), s->res, err);
            PQclear(s->res);
            s->res = NULL;
            return out;
        }
    }
    if (s->cur + 1 < PQntuples(s->res)) {
        s->cur++;
        *row = 1;
    }
    return BS_OK;
}

static void pg_reset(db_stmt *st) {
    pg_stmt *s = (pg_stmt *)st;
    PQclear(s->res);
    s->res = NULL;
    s->cur = -1;
}

static const char *pg_col_text(db_stmt *st, int i) {
    pg_stmt *s = (pg_stmt *)st;
    return PQgetisnull(s->res, s->cur, i) ? NULL : PQgetvalue(s->res, s->cur, i);
}
static int pg_col_is_null(db_stmt *st, int i) {
    pg_stmt *s = (pg_stmt *)st;
    return PQgetisnull(s->res, s->cur, i);
}
static int64_t pg_col_int(db_stmt *st, int i) {
    const char *v = pg_col_text(st, i);
    return v ? strtoll(v, NULL, 10) : 0;
}
static double pg_col_double(db_stmt *st, int i) {
    const char *v = pg_col_text(st, i);
    return v ? strtod(v, NULL) : 0.0;
}
static int64_t pg_changes(db_stmt *st) {
    pg_stmt *s = (pg_stmt *)st;
    return s->res ? strtoll(PQcmdTuples(s->res), NULL, 10) : 0;
}

static void pg_finalize(db_stmt *st) {
    pg_stmt *s = (pg_stmt *)st;
    PQclear(s->res);
    free(s->sql);
    free(s);
}

static const db_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .exec = pg_exec,
    /* The lock is released by COMMIT/ROLLBACK.  json_valid is SQLite's
     * function the schema's CHECKs use; PostgreSQL gets one that tries the
     * jsonb cast (created under the lock: concurrent CREATE OR REPLACE
     * of one function can fail). */
    .begin_schema_sql =
        "BEGIN; SELECT pg_advisory_xact_lock(7308604897068083572);"
        "CREATE OR REPLACE FUNCTION json_valid(t text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE STRICT AS $$"
        " BEGIN PERFORM t::jsonb; RETURN true; EXCEPTION WHEN invalid_text_representation THEN RETURN false; END $$",
    .ddl = pg_ddl,
    .prepare = pg_prepare,
    .step = pg_step,
    .reset = pg_reset,
    .col_text = pg_col_text,
    .col_is_null = pg_col_is_null,
    .col_int = pg_col_int,
    .col_double = pg_col_double,
    .changes = pg_changes,
    .finalize = pg_finalize,
};

/* The password as written in the URL (between "user:" and "@"). */
static char *raw_password(const char *url) {
    const char *auth = strstr(url, "://");
    if (!auth) return NULL;
    auth += 3;
    size_t end = strcspn(auth, "/?");
    const char *at = NULL;
    for (const char *p = auth; p < auth + end; p++)
        if (*p == '@') at = p;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon || colon + 1 == at) return NULL;
    return strndup(colon + 1, (size_t)(at - colon - 1));
}

/* Notices ("relation already exists, skipping") are not errors. */
static void quiet(void *arg, const char *message) {
    (void)arg;
    (void)message;
}

/* "postgres://user@host:port/db" from the parsed options: what messages name. */
static char *describe(PQconninfoOption *opts, char **secret) {
    const char *user = "", *host = "", *port = "", *dbname = "";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = o->val ? o->val : "";
        if (strcmp(o->keyword, "user") == 0) user = v;
        else if (strcmp(o->keyword, "host") == 0) host = v;
        else if (strcmp(o->keyword, "port") == 0) port = v;
        else if (strcmp(o->keyword, "dbname") == 0) dbname = v;
        else if (strcmp(o->keyword, "password") == 0 && o->val && *o->val) *secret = strdup(o->val);
    }
    size_t len = strlen(user) + strlen(host) + strlen(port) + strlen(dbname) + 32;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "postgres://%s%s%s%s%s/%s", user, *user ? "@" : "", host, *port ? ":" : "", port, dbname);
    return out;
}

bs_status db_open_pg(const char *url, db **out, bs_error *err) {
    *out = NULL;
    pg_db *d = calloc(1, sizeof *d);
    if (!d) return bs_fail(err, BS_ENOMEM, "out of memory");
    d->base.ops = &pg_ops;
    d->secret_raw = raw_password(url);
    char *parse_err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &parse_err);
    bs_status st = BS_OK;
    if (!opts) {
        char msg[BS_ERROR_MSG_MAX];
        scrub(d, parse_err ? parse_err : "out of memory", msg, sizeof msg);
        st = bs_fail(err, BS_EINVAL, "store url: %s", msg);
    } else if (!(d->base.where = describe(opts, &d->secret))) {
        st = bs_fail(err, BS_ENOMEM, "out of memory");
    }
    PQfreemem(parse_err);
    PQconninfoFree(opts);
    if (st == BS_OK) {
        d->conn = PQconnectdb(url);
        if (!d->conn) {
            st = bs_fail(err, BS_ENOMEM, "out of memory");
        } else if (PQstatus(d->conn) != CONNECTION_OK) {
            conn_fail(d, err);
            st = bs_wrap(err, "%s: cannot connect", d->base.where);
        } else {
            PQsetNoticeProcessor(d->conn, quiet, NULL);
        }
    }
    if (st != BS_OK) {
        pg_close(&d->base);
        return st;
    }
    *out = &d->base;
    return BS_OK;
}
