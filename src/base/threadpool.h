/* base/threadpool.h — a fixed set of compute threads that run one parallel
 * function at a time (fork-join).  The caller takes part as thread 0, so a
 * pool of size 1 has no extra threads and no synchronisation cost.  Workers
 * spin briefly before sleeping so back-to-back ops (one per layer and matmul)
 * do not pay a wake-up each. */
#ifndef BASALT_BASE_THREADPOOL_H
#define BASALT_BASE_THREADPOOL_H

#include "base/error.h"

typedef struct bs_threadpool bs_threadpool;

/* fn is called once per thread with ith in [0, nth). */
typedef void (*bs_parallel_fn)(void *ctx, int ith, int nth);

/* n_threads <= 0 picks the number of online CPUs.  With BASALT_PIN=1 in the
 * environment, thread i (the calling thread is 0) is pinned to the i-th CPU
 * the process may run on. */
bs_status bs_threadpool_open(int n_threads, bs_threadpool **out, bs_error *err);
void bs_threadpool_close(bs_threadpool *pool);
int bs_threadpool_size(const bs_threadpool *pool);

/* Run fn on every thread and return when all have finished.  Not reentrant:
 * one run at a time per pool. */
void bs_threadpool_run(bs_threadpool *pool, bs_parallel_fn fn, void *ctx);

/* Split [0, n) into nth nearly equal contiguous ranges; thread ith gets
 * [*begin, *end).  `align` rounds range edges to multiples of it. */
void bs_split_range(long n, int ith, int nth, long align, long *begin, long *end);

int bs_cpu_count(void);

#endif
