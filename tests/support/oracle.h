/* tests/support/oracle.h — running the Python test oracles from C tests.
 *
 * The oracles (tests/oracle/ scripts) need Debian's python3 with torch and numpy:
 * $BASALT_PYTHON, else /usr/bin/python3.  Tests SKIP with the reason from
 * test_torch_missing() when those are not importable. */
#ifndef BASALT_TESTS_ORACLE_H
#define BASALT_TESTS_ORACLE_H

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

#endif
