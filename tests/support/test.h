/* tests/support/test.h — the unit-test harness.
 *
 * A test binary defines `static void test_x(void)` functions and lists them in
 * main() with RUN(test_x).  Each test prints one line PASS/FAIL/SKIP; the
 * runner (tests/run.sh) counts those lines across all binaries and scripts. */
#ifndef BASALT_TESTS_TEST_H
#define BASALT_TESTS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int test_failed_;      /* set when any CHECK fails in the current test */
extern const char *test_skip_; /* set by SKIP() */
extern int test_pass_count_, test_fail_count_, test_skip_count_;

void test_run_(const char *name, void (*fn)(void));
int test_summary_(const char *binary);

#define RUN(fn) test_run_(#fn, fn)
#define TEST_MAIN_END() return test_summary_(__FILE__)

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            test_failed_ = 1;                                                     \
        }                                                                         \
    } while (0)

#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ != b_) {                                                                    \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, \
                    #a, a_, #b, b_);                                                       \
            test_failed_ = 1;                                                              \
        }                                                                                  \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                               \
    do {                                                                                    \
        double a_ = (double)(a), b_ = (double)(b);                                          \
        if (!(fabs(a_ - b_) <= (tol))) {                                                    \
            fprintf(stderr, "  %s:%d: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, \
                    #a, a_, b_, (double)(tol));                                             \
            test_failed_ = 1;                                                               \
        }                                                                                   \
    } while (0)

#define CHECK_STR(a, b)                                                                       \
    do {                                                                                      \
        const char *a_ = (a), *b_ = (b);                                                      \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                              \
            fprintf(stderr, "  %s:%d: %s = \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                  \
            test_failed_ = 1;                                                                 \
        }                                                                                     \
    } while (0)

/* Check that a bs_status is BS_OK, printing the error message otherwise. */
#define CHECK_OK(expr, errp)                                                                  \
    do {                                                                                      \
        bs_status s_ = (expr);                                                                \
        if (s_ != BS_OK) {                                                                    \
            fprintf(stderr, "  %s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, (errp)->msg); \
            test_failed_ = 1;                                                                 \
        }                                                                                     \
    } while (0)

#define SKIP(reason)            \
    do {                        \
        test_skip_ = (reason);  \
        return;                 \
    } while (0)

/* Directory of ../shared fixtures, or NULL when absent (tests then SKIP). */
const char *test_shared_dir(void);

#endif
