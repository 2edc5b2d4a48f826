/* server/job.h — one HTTP request's generation work on the engine.
 *
 * A job submits one scheduler request per prompt (n choices each) and
 * carries the events back across threads: the scheduler callback only copies
 * each event into the job's queue and signals; the connection thread drains
 * the queue in job_pump and runs the text pipeline there (streaming decode,
 * stop strings with hold-back, grammar bookkeeping), handing visible text to
 * a sink.  Choices are numbered prompt * n + choice, as the legacy API does.
 *
 * A job_registry tracks running jobs so shutdown can drain or end them. */
#ifndef BASALT_SERVER_JOB_H
#define BASALT_SERVER_JOB_H

#include <stdint.h>

#include "engine/grammar.h"
#include "engine/scheduler.h"
#include "server/http.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

typedef struct job_registry job_registry;
bs_status job_registry_open(job_registry **out, bs_error *err);
/* Waits up to grace_s for running jobs to finish, then ends the rest (their
 * choices finish as they stand) and waits for them to be released. */
void job_registry_drain(job_registry *r, double grace_s);
void job_registry_close(job_registry *r);

typedef struct gen_job gen_job;

typedef struct job_sink {
    void *user;
    /* Each sampled token (for logprobs) before the text it releases; may be NULL. */
    void (*token)(void *user, int choice, const bs_request_event *ev);
    /* Visible text, in order: stop strings and what follows never arrive. */
    void (*text)(void *user, int choice, const char *s, size_t n);
    /* "stop", "length" or "embedding"; exactly once per choice. */
    void (*finish)(void *user, int choice, const char *reason);
} job_sink;

/* Text whose appearance in a choice's output switches its grammar on. */
#define JOB_TRIGGER_MAX 32
typedef struct job_trigger {
    const char *text;  /* shorter than JOB_TRIGGER_MAX */
    int at_start_only; /* counts only when nothing but whitespace came before */
} job_trigger;

typedef struct job_params {
    bs_scheduler *sched;
    const bs_tokenizer *tok;
    srv_metrics *metrics;
    job_registry *registry;
    bs_request_params req; /* prompt/n_prompt are taken from prompts[] */
    const int32_t *const *prompts;
    const int *n_prompts;
    int n_requests;
    const char *const *stop;
    int n_stop;
    const bs_grammar *grammar; /* constrains every choice; needs trie */
    const bs_token_trie *trie;
    /* Lazy grammar, as llama.cpp's grammar triggers: with triggers, a
     * choice writes freely until one appears in its output; from then on
     * the grammar constrains it, its matcher having been fed the output from
     * the trigger's first byte.  With release, a grammar that completes lets
     * go again until the next trigger. */
    const job_trigger *triggers;
    int n_triggers;
    int release;
} job_params;

/* Errors as the scheduler gives them: BS_EBUSY (queue full), BS_ERANGE (too
 * long), BS_EINVAL; already-submitted parts are cancelled. */
bs_status job_start(const job_params *p, gen_job **out, bs_error *err);

/* Waits briefly for events and delivers them.  Returns 1 while choices are
 * running, 0 when all have finished, -1 when r's client went away (the job
 * is cancelled).  r may be NULL. */
int job_pump(gen_job *j, http_request *r, const job_sink *sink);

int job_choices(const gen_job *j);
void job_usage(const gen_job *j, int *prompt_tokens, int *completion_tokens, int *cached_tokens);
/* Seconds from job start to the first token (-1 if none) and time queued (-1 if never scheduled). */
void job_timing(const gen_job *j, double *ttft, double *queue);
/* The embedding of a finished BS_REQUEST_EMBED choice. */
const float *job_embedding(const gen_job *j, int choice, int *n);
/* Cancels what still runs, then frees. */
void job_free(gen_job *j);

#endif
