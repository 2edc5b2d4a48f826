/* Tests for base/: errors, f16/bf16 conversion, thread pool, range split. */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/dtype.h"
#include "base/error.h"
#include "base/threadpool.h"

static void test_error_wrap(void) {
    bs_error err = {0};
    CHECK_INT(bs_fail(&err, BS_EFORMAT, "%s: bad magic", "x.gguf"), BS_EFORMAT);
    bs_wrap(&err, "loading %s", "model");
    CHECK_STR(err.msg, "loading model: x.gguf: bad magic");
    CHECK_INT(err.status, BS_EFORMAT);
}

static void test_half_roundtrip(void) {
    /* Every finite half converts to float and back unchanged. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (bs_f32_to_f16(bs_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_NEAR(bs_f16_to_f32(0x3c00), 1.0, 0);
    CHECK_NEAR(bs_f16_to_f32(0x0001), 5.960464477539063e-08, 1e-15);
    CHECK_INT(bs_f32_to_f16(65520.0f), 0x7c00);        /* rounds to inf */
    CHECK_INT(bs_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    CHECK_INT(bs_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
}

static void test_bf16(void) {
    CHECK_INT(bs_f32_to_bf16(1.0f), 0x3f80);
    CHECK_NEAR(bs_bf16_to_f32(0xc000), -2.0, 0);
    CHECK_INT(bs_f32_to_bf16(1.00390625f), 0x3f80); /* tie: 1 + 2^-8 rounds to even */
    CHECK_INT(bs_f32_to_bf16(1.01171875f), 0x3f82);
}

static void test_dtype_sizes(void) {
    CHECK_INT(bs_dtype_row_bytes(BS_DTYPE_Q4_K, 512), 288);
    CHECK_INT(bs_dtype_row_bytes(BS_DTYPE_Q8_0, 33), 0);
    CHECK_INT(bs_dtype_row_bytes(BS_DTYPE_BF16, 7), 14);
}

typedef struct {
    atomic_long sum;
    atomic_int calls;
} sum_ctx;

static void sum_range(void *p, int ith, int nth) {
    sum_ctx *c = p;
    long b, e, s = 0;
    bs_split_range(1000, ith, nth, 8, &b, &e);
    for (long i = b; i < e; i++) s += i;
    atomic_fetch_add(&c->sum, s);
    atomic_fetch_add(&c->calls, 1);
}

static void test_threadpool(void) {
    bs_error err = {0};
    for (int n = 1; n <= 4; n++) {
        bs_threadpool *pool;
        CHECK_OK(bs_threadpool_open(n, &pool, &err), &err);
        for (int rep = 0; rep < 200; rep++) {
            sum_ctx c = {0};
            bs_threadpool_run(pool, sum_range, &c);
            CHECK_INT(atomic_load(&c.sum), 999L * 1000 / 2);
            CHECK_INT(atomic_load(&c.calls), n);
        }
        bs_threadpool_close(pool);
    }
}

/* Runs that find the workers asleep (after a pause longer than their spin)
 * and runs right after each other, with the threads pinned (BASALT_PIN=1). */
static void test_threadpool_sleep_and_pin(void) {
    bs_error err = {0};
    setenv("BASALT_PIN", "1", 1);
    bs_threadpool *pool;
    CHECK_OK(bs_threadpool_open(3, &pool, &err), &err);
    unsetenv("BASALT_PIN");
    for (int rep = 0; rep < 6; rep++) {
        if (rep % 2 == 0) usleep(50000);
        sum_ctx c = {0};
        bs_threadpool_run(pool, sum_range, &c);
        CHECK_INT(atomic_load(&c.sum), 999L * 1000 / 2);
        CHECK_INT(atomic_load(&c.calls), 3);
    }
    bs_threadpool_close(pool);
}

static void test_split_range_covers(void) {
    long prev_end = 0;
    for (int i = 0; i < 3; i++) {
        long b, e;
        bs_split_range(100, i, 3, 32, &b, &e);
        CHECK_INT(b, prev_end);
        CHECK(b % 32 == 0);
        prev_end = e;
    }
    CHECK_INT(prev_end, 100);
}

int main(void) {
    RUN(test_error_wrap);
    RUN(test_half_roundtrip);
    RUN(test_bf16);
    RUN(test_dtype_sizes);
    RUN(test_threadpool);
    RUN(test_threadpool_sleep_and_pin);
    RUN(test_split_range_covers);
    TEST_MAIN_END();
}
