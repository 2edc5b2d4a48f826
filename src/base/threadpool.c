/* base/threadpool.c — the fork-join pool: a generation counter workers spin
 * on (then sleep on a condition variable), a pending count the caller spins
 * on, and optional pinning of thread i to the i-th CPU the process may use
 * (BASALT_PIN=1), which keeps each thread's weight rows in its own caches
 * and, on NUMA machines, its first-touched pages on its own node. */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Waiting is spin (cheap when every thread has a core), then yield (so an
 * oversubscribed machine — server threads, clients, other processes — gets
 * the core to the thread we wait for), then for workers a condvar sleep. */
enum { SPIN_ITERATIONS = 2000, YIELD_ITERATIONS = 20000 };

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

struct bs_threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation; /* bumped once per run */
    atomic_int pending;     /* workers still running the current fn */
    atomic_int stop;
    atomic_int sleeping;    /* workers waiting on `wake`: only then does a run take the mutex */
    bs_parallel_fn fn;
    void *ctx;
};

typedef struct {
    bs_threadpool *pool;
    int ith;
} worker_arg;

static void *worker_main(void *p) {
    worker_arg arg = *(worker_arg *)p;
    free(p);
    bs_threadpool *pool = arg.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < SPIN_ITERATIONS) {
                cpu_relax();
                continue;
            }
            if (spins < SPIN_ITERATIONS + YIELD_ITERATIONS) {
                sched_yield();
                continue;
            }
            /* Announce the sleep before the last look at generation; run()
             * bumps generation before it looks at sleeping, so one of the
             * two sees the other (both sequentially consistent). */
            pthread_mutex_lock(&pool->mutex);
            atomic_fetch_add(&pool->sleeping, 1);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->wake, &pool->mutex);
            atomic_fetch_sub(&pool->sleeping, 1);
            pthread_mutex_unlock(&pool->mutex);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = gen;
        pool->fn(pool->ctx, arg.ith, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

/* Pin thread to the ith CPU in the process's affinity mask (wrapping). */
static void pin_thread(pthread_t thread, int ith) {
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    int n = CPU_COUNT(&allowed);
    if (n <= 0) return;
    int want = ith % n;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || want-- > 0) continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pthread_setaffinity_np(thread, sizeof one, &one);
        return;
    }
}

static int pin_requested(void) {
    const char *env = getenv("BASALT_PIN");
    return env && strcmp(env, "1") == 0;
}

int bs_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

bs_status bs_threadpool_open(int n_threads, bs_threadpool **out, bs_error *err) {
    *out = NULL;
    if (n_threads <= 0) n_threads = bs_cpu_count();
    bs_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool) return bs_fail(err, BS_ENOMEM, "thread pool: out of memory");
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    if (!pool->threads) {
        bs_threadpool_close(pool);
        return bs_fail(err, BS_ENOMEM, "thread pool: out of memory");
    }
    int pin = pin_requested();
    if (pin) pin_thread(pthread_self(), 0);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        if (arg) *arg = (worker_arg){.pool = pool, .ith = i};
        if (!arg || pthread_create(&pool->threads[i], NULL, worker_main, arg) != 0) {
            free(arg);
            pool->n_threads = i; /* close joins only the started ones */
            bs_threadpool_close(pool);
            return bs_fail(err, BS_ENOMEM, "thread pool: cannot start thread %d of %d", i, n_threads);
        }
        if (pin) pin_thread(pool->threads[i], i);
    }
    *out = pool;
    return BS_OK;
}

void bs_threadpool_close(bs_threadpool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++)
        if (pool->threads && pool->threads[i]) pthread_join(pool->threads[i], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->threads);
    free(pool);
}

int bs_threadpool_size(const bs_threadpool *pool) { return pool ? pool->n_threads : 1; }

void bs_threadpool_run(bs_threadpool *pool, bs_parallel_fn fn, void *ctx) {
    if (!pool || pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->pending, pool->n_threads - 1);
    atomic_fetch_add(&pool->generation, 1);
    /* Spinning workers see the new generation by themselves: back-to-back
     * runs (one per matmul) cost no lock and no system call. */
    if (atomic_load(&pool->sleeping) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    fn(ctx, 0, pool->n_threads);
    for (int spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; spins++) {
        if (spins < SPIN_ITERATIONS)
            cpu_relax();
        else
            sched_yield();
    }
}

void bs_split_range(long n, int ith, int nth, long align, long *begin, long *end) {
    if (align < 1) align = 1;
    long units = (n + align - 1) / align;
    long per = units / nth, extra = units % nth;
    long b = ith * per + (ith < extra ? ith : extra);
    long e = b + per + (ith < extra ? 1 : 0);
    b *= align;
    e *= align;
    *begin = b < n ? b : n;
    *end = e < n ? e : n;
}
