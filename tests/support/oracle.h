/* tests/support/oracle.h — running the Python test oracles from C tests.
 *
 * The oracles (tests/oracle/ scripts) need Debian's python3 with torch and numpy:
 * $BASALT_PYTHON, else /usr/bin/python3.  Tests SKIP with the reason from
 * test_torch_missing() when those are not importable. */
#ifndef BASALT_TESTS_ORACLE_H
#define BASALT_TESTS_ORACLE_H

#include <stddef.h>

const char *test_python(void);

/* NULL when torch and numpy import, else the reason to SKIP. */
const char *test_torch_missing(void);

/* A fresh directory /tmp/PREFIX-XXXXXX removed when the test binary exits;
 * NULL on failure. */
const char *test_temp_dir(const char *prefix);

/* A whole file, malloc'ed with a NUL after it; NULL if unreadable. */
void *test_read_file(const char *path, long *size);

/* tests/oracle/make_model.py run once per process: the directory holding its
 * models, tokens.bin, *.ref and manifest.txt.  NULL when it cannot run;
 * *skip then says why when the reason is a missing torch (else a failure). */
const char *test_oracle_models(const char **skip);

/* A file of named tensors as train_ref.py's write_named writes them:
 * repeated {u32 name length, name, u32 rows, u32 cols, f32 data}.  *buf
 * (free it) holds the file; each entry's data points into it, unaligned.
 * Returns the entries read (at most cap), -1 for a malformed file. */
typedef struct test_named {
    char name[128];
    int rows, cols;
    const unsigned char *data;
} test_named;

int test_read_named(const char *path, void **buf, test_named *out, int cap);
const test_named *test_find_named(const test_named *t, int n, const char *name);

/* max |got - ref| / max |ref| (the absolute error when ref is all zero);
 * ref_bytes is unaligned f32. */
double test_max_rel(const float *got, const unsigned char *ref_bytes, size_t n);

#endif
