/* store/db_driver.h — what a backend of db.h provides (internal to store/).
 * db.c keeps the parameters a statement was bound with in a backend-neutral
 * form and dispatches everything else through the backend's db_ops.
 * Backends report only the cause; db.c puts db_where() and what first. */
#ifndef BASALT_STORE_DB_DRIVER_H
#define BASALT_STORE_DB_DRIVER_H

#include "store/db.h"

typedef enum { DB_PARAM_UNSET, DB_PARAM_TEXT, DB_PARAM_INT, DB_PARAM_DOUBLE } db_param_type;

typedef struct db_param {
    db_param_type type;
    int is_null;
    const char *text; /* borrowed: the caller's string outlives the step */
    int64_t i;
    double f;
} db_param;

typedef struct db_ops {
    const char *name;
    void (*close)(db *d);
    bs_status (*exec)(db *d, const char *sql, bs_error *err);
    const char *begin_schema_sql;
    char *(*ddl)(const char *ddl);
    /* Allocates the backend's statement (which starts with a db_stmt). */
    bs_status (*prepare)(db *d, const char *sql, db_stmt **out, bs_error *err);
    bs_status (*step)(db_stmt *st, int *row, bs_error *err);
    void (*reset)(db_stmt *st);
    const char *(*col_text)(db_stmt *st, int i);
    int (*col_is_null)(db_stmt *st, int i);
    int64_t (*col_int)(db_stmt *st, int i);
    double (*col_double)(db_stmt *st, int i);
    int64_t (*changes)(db_stmt *st);
    void (*finalize)(db_stmt *st);
} db_ops;

/* Every backend's connection and statement begin with these. */
struct db {
    const db_ops *ops;
    char *where; /* for messages: the file, or the URL without password */
};

struct db_stmt {
    db *d;
    const char *what;
    int nparams; /* highest index bound */
    db_param params[DB_MAX_PARAMS];
};

#endif
