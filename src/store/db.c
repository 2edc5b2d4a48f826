/* store/db.c — the backend-neutral half of db.h: parameter binding and
 * dispatch to the backend's db_ops. */
#include "store/db_driver.h"

#include <stdlib.h>
#include <string.h>

void db_close(db *d) {
    if (d) d->ops->close(d);
}

const char *db_backend(const db *d) { return d->ops->name; }
const char *db_where(const db *d) { return d->where; }

/* Backends report the bare cause; the file or URL and the record go first. */
static bs_status located(db *d, const char *what, bs_status st, bs_error *err) {
    if (st != BS_OK && err) bs_wrap(err, "%s: %s", d->where, what);
    return st;
}

bs_status db_exec(db *d, const char *sql, const char *what, bs_error *err) {
    return located(d, what, d->ops->exec(d, sql, err), err);
}

bs_status db_begin_schema(db *d, bs_error *err) { return db_exec(d, d->ops->begin_schema_sql, "schema lock", err); }

char *db_ddl(const db *d, const char *ddl) { return d->ops->ddl(ddl); }

bs_status db_prepare(db *d, const char *sql, const char *what, db_stmt **out, bs_error *err) {
    *out = NULL;
    bs_status st = located(d, what, d->ops->prepare(d, sql, out, err), err);
    if (st != BS_OK) return st;
    (*out)->d = d;
    (*out)->what = what;
    return BS_OK;
}

/* Indices are 1-based like the $N they fill; store.c binds only constants
 * below DB_MAX_PARAMS, so an index outside it is a programming error that
 * leaves the parameter unset (and the statement then fails as unbound). */
static db_param *param(db_stmt *st, int i) {
    if (i < 1 || i > DB_MAX_PARAMS) return NULL;
    if (i > st->nparams) st->nparams = i;
    db_param *p = &st->params[i - 1];
    memset(p, 0, sizeof *p);
    return p;
}

void db_bind_text(db_stmt *st, int i, const char *v) {
    db_param *p = param(st, i);
    if (!p) return;
    p->type = DB_PARAM_TEXT;
    p->is_null = v == NULL;
    p->text = v;
}

void db_bind_int(db_stmt *st, int i, int64_t v) {
    db_param *p = param(st, i);
    if (!p) return;
    p->type = DB_PARAM_INT;
    p->i = v;
}

void db_bind_null_int(db_stmt *st, int i) {
    db_param *p = param(st, i);
    if (!p) return;
    p->type = DB_PARAM_INT;
    p->is_null = 1;
}

void db_bind_double(db_stmt *st, int i, double v) {
    db_param *p = param(st, i);
    if (!p) return;
    p->type = DB_PARAM_DOUBLE;
    p->f = v;
}

bs_status db_step(db_stmt *st, int *row, bs_error *err) {
    *row = 0;
    for (int i = 0; i < st->nparams; i++)
        if (st->params[i].type == DB_PARAM_UNSET)
            return bs_fail(err, BS_EINVAL, "%s: %s: parameter $%d is not bound", st->d->where, st->what, i + 1);
    return located(st->d, st->what, st->d->ops->step(st, row, err), err);
}

void db_reset(db_stmt *st) {
    st->d->ops->reset(st);
    st->nparams = 0;
    memset(st->params, 0, sizeof st->params);
}

const char *db_col_text(db_stmt *st, int i) { return st->d->ops->col_text(st, i); }
int db_col_is_null(db_stmt *st, int i) { return st->d->ops->col_is_null(st, i); }
int64_t db_col_int(db_stmt *st, int i) { return st->d->ops->col_int(st, i); }
double db_col_double(db_stmt *st, int i) { return st->d->ops->col_double(st, i); }
int64_t db_changes(db_stmt *st) { return st->d->ops->changes(st); }

void db_finalize(db_stmt *st) {
    if (st) st->d->ops->finalize(st);
}
