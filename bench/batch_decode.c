/* bench/batch_decode.c — aggregate decode throughput of the scheduler with
 * N concurrent streams (continuous batching), for N in the arguments.
 *
 *   batch_decode MODEL [--prompt P] [--gen G] [--threads T] N...
 *
 * Each stream has its own P-token prompt (no prefix sharing) and generates
 * G tokens greedily with ignore_eos.  Prints one JSON line per N: total
 * wall time, the decode rate measured from the moment every stream has its
 * first token to the end, and what one stream sees: time to first token and
 * the gaps between its tokens (p50 / p95 over every stream's gaps). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "engine/scheduler.h"

typedef struct counter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int streams_started, streams_done, n;
    double t_all_started;
} counter;

typedef struct stream {
    counter *c;
    int tokens;
    double t_submit, t_last, ttft;
    double *gaps; /* [gen - 1] seconds between consecutive tokens */
} stream;

static void on_event(void *user, const bs_request_event *ev) {
    stream *st = user;
    counter *c = st->c;
    pthread_mutex_lock(&c->mu);
    if (ev->token >= 0) {
        double now = bs_now();
        if (st->tokens == 0)
            st->ttft = now - st->t_submit;
        else
            st->gaps[st->tokens - 1] = now - st->t_last;
        st->t_last = now;
        if (st->tokens++ == 0 && ++c->streams_started == c->n) c->t_all_started = now;
    }
    if (ev->finish_reason) {
        c->streams_done++;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL [--prompt P] [--gen G] [--threads T] N...\n", argv[0]);
        return 2;
    }
    int prompt_len = 64, gen = 64, threads = 0, first_n = 2;
    for (; first_n + 1 < argc && strncmp(argv[first_n], "--", 2) == 0; first_n += 2) {
        int v = atoi(argv[first_n + 1]);
        if (!strcmp(argv[first_n], "--prompt")) prompt_len = v;
        else if (!strcmp(argv[first_n], "--gen")) gen = v;
        else if (!strcmp(argv[first_n], "--threads")) threads = v;
    }
    bs_error err = {0};
    bs_model *m = NULL;
    bs_model_params mp = {.n_threads = threads};
    if (model_open(argv[1], &mp, &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    int n_vocab = model_config(m)->n_vocab;
    for (int a = first_n; a < argc; a++) {
        int n = atoi(argv[a]);
        bs_scheduler_params sp;
        scheduler_params_default(&sp);
        sp.n_ctx = prompt_len + gen;
        sp.kv_tokens = n * sp.n_ctx;
        sp.max_running = n;
        sp.step_tokens = n > 256 ? n : 256;
        bs_scheduler *s = NULL;
        if (scheduler_open(m, &sp, &s, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        counter c = {.n = n};
        pthread_mutex_init(&c.mu, NULL);
        pthread_cond_init(&c.cv, NULL);
        stream *streams = calloc((size_t)n, sizeof *streams);
        int32_t *prompts = malloc((size_t)n * prompt_len * sizeof *prompts);
        double t0 = bs_now();
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < prompt_len; k++) prompts[i * prompt_len + k] = (int32_t)((k * 131 + i * 7919 + 1) % n_vocab);
            bs_request_params p = {.kind = BS_REQUEST_GENERATE, .prompt = prompts + (size_t)i * prompt_len,
                                   .n_prompt = prompt_len, .n = 1, .max_tokens = gen, .ignore_eos = 1};
            sampler_params_default(&p.sampling);
            p.sampling.temperature = 0;
            streams[i].c = &c;
            streams[i].gaps = calloc((size_t)gen, sizeof(double));
            streams[i].t_submit = bs_now();
            uint64_t id;
            if (scheduler_submit(s, &p, on_event, &streams[i], &id, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
        }
        pthread_mutex_lock(&c.mu);
        while (c.streams_done < n) pthread_cond_wait(&c.cv, &c.mu);
        pthread_mutex_unlock(&c.mu);
        double t1 = bs_now();
        double *gaps = malloc(sizeof(double) * (size_t)n * gen), ttft = 0;
        int n_gaps = 0;
        for (int i = 0; i < n; i++) {
            for (int k = 0; k + 1 < streams[i].tokens; k++) gaps[n_gaps++] = streams[i].gaps[k];
            ttft += streams[i].ttft / n;
            free(streams[i].gaps);
        }
        qsort(gaps, (size_t)n_gaps, sizeof *gaps, cmp_double);
        printf("{\"streams\": %d, \"prompt\": %d, \"gen\": %d, \"wall_s\": %.3f, \"decode_tok_s\": %.1f, "
               "\"total_tok_s\": %.1f, \"ttft_mean_ms\": %.1f, \"inter_token_p50_ms\": %.1f, "
               "\"inter_token_p95_ms\": %.1f}\n",
               n, prompt_len, gen, t1 - t0, (double)n * (gen - 1) / (t1 - c.t_all_started),
               (double)n * gen / (t1 - t0), 1e3 * ttft, n_gaps ? 1e3 * gaps[n_gaps / 2] : 0,
               n_gaps ? 1e3 * gaps[n_gaps * 95 / 100] : 0);
        free(gaps);
        fflush(stdout);
        scheduler_close(s);
        free(streams);
        free(prompts);
        pthread_mutex_destroy(&c.mu);
        pthread_cond_destroy(&c.cv);
    }
    model_close(m);
    return 0;
}
