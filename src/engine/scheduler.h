/* engine/scheduler.h — continuous batching for the server: one scheduler
 * thread owns a paged KV cache (engine/kv_cache.h) and steps every active
 * sequence through one batched forward (engine/batch.h) per step.
 *
 * A step has a token budget (step_tokens): first one decode token for each
 * running sequence, then prefill chunks of sequences still reading their
 * prompt, then newly admitted requests, oldest first.  So a long prompt is
 * prefilled over several steps while running streams keep getting a token
 * per step.  A request with n > 1 choices prefills its prompt once; the
 * choices then fork and share the prompt's KV blocks.
 *
 * Prefix cache: full KV blocks are hashed (parent hash, token ids, cache
 * salt) and kept after their sequences end, evicted least recently used
 * first; a new request reuses the longest cached full-block prefix of its
 * prompt (never the last prompt token, whose logits it needs).  Mean-pooled
 * embeddings need every position's hidden state, so they do not reuse.
 *
 * KV exhaustion: when a running sequence needs a block and the pool (after
 * evicting unreferenced cached blocks) has none, the newest running sequence
 * is preempted: its KV is freed and it goes back to the head of the queue
 * with the tokens it has generated so far, to be recomputed (mostly from
 * the prefix cache) when blocks free up.  Its sampler keeps its state, so
 * preemption does not change what it generates.
 *
 * Threads: submit/cancel/stats may be called from any thread (short
 * critical sections; no lock is held across a step).  Callbacks run on the
 * scheduler thread and must not block; they may call scheduler_submit,
 * scheduler_cancel and scheduler_cancel_choice. */
#ifndef BASALT_ENGINE_SCHEDULER_H
#define BASALT_ENGINE_SCHEDULER_H

#include <stdint.h>

#include "base/error.h"
#include "engine/adapter.h"
#include "engine/model.h"
#include "engine/sampler.h"

typedef struct bs_scheduler bs_scheduler;

typedef struct bs_scheduler_params {
    int kv_tokens;   /* total KV positions in the pool, at least n_ctx; 0 (default): 8 x n_ctx,
                        capped at 4 GiB of K+V */
    int n_ctx;       /* max positions per sequence; 0 (default): min(4096, the model's max) */
    int max_running; /* sequences per step (default 16); a request's n must not exceed it */
    int max_queue;   /* waiting requests (default 64); submit answers BS_EBUSY beyond it */
    int step_tokens; /* token budget per step (default 256); at least max_running */
    int block_size;  /* KV positions per block (default 16) */
    bs_dtype kv_dtype; /* the KV cache's element type: BS_DTYPE_F32 (default), _F16 or _Q8_0 */
} bs_scheduler_params;

void scheduler_params_default(bs_scheduler_params *p);

/* "f32" or "f16" (a --kv-cache-dtype value) to the KV cache's dtype. */
bs_status scheduler_kv_dtype_parse(const char *name, bs_dtype *out, bs_error *err);

/* Validates p against the model, allocates the KV pool and starts the
 * scheduler thread.  Steps run on the model's thread pool, so while a
 * scheduler is open nothing else may evaluate contexts of the same model. */
bs_status scheduler_open(bs_model *m, const bs_scheduler_params *p, bs_scheduler **out, bs_error *err);

/* Stops the thread and frees everything.  Every choice that has not ended
 * and was not cancelled by the client gets a final event with finish_reason
 * "cancelled" (on the scheduler thread, before close returns), so waiting
 * connections can be released. */
void scheduler_close(bs_scheduler *s);

/* Per-request hook for constrained decoding and other logit processors;
 * called on the scheduler thread.  apply may set disallowed tokens to
 * -INFINITY; accept sees each token chosen for that choice. */
typedef struct bs_logits_hook {
    void *user;
    void (*apply)(void *user, int choice, float *logits, int n_vocab);
    void (*accept)(void *user, int choice, int32_t token);
} bs_logits_hook;

typedef enum { BS_REQUEST_GENERATE, BS_REQUEST_EMBED } bs_request_kind;

typedef struct bs_request_params {
    bs_request_kind kind;
    const int32_t *prompt; /* copied at submit */
    int n_prompt;
    int n;                      /* choices sharing the prompt (>= 1; 1 for embeddings) */
    int max_tokens;             /* per choice; <= 0: up to n_ctx - n_prompt */
    bs_sampler_params sampling; /* choice i uses seed + i; penalties also see the prompt */
    int ignore_eos;
    int logprobs;               /* non-zero: token events carry the chosen token's logprob */
    int top_logprobs;           /* 0..20 alternatives per token event */
    const bs_logits_hook *hook; /* may be NULL; copied, hook->user must outlive the request */
    int pooling_last;           /* embeddings: 0 mean over positions, 1 last token */
    uint64_t cache_salt;        /* isolates prefix-cache sharing (tenant) */
    /* LoRA adapter over the scheduler's model, or NULL for the base.  The
     * request holds a reference (adapter_retain) until it is freed, so the
     * caller may close its own while the request runs.  The adapter's id is
     * folded into the prefix-cache salt: KV is never shared across adapters. */
    bs_adapter *adapter;
} bs_request_params;

/* Logprobs are log-softmax of the raw model logits, before the hook, logit
 * bias, penalties and temperature (as vLLM's default and OpenAI report the
 * model's distribution). */
typedef struct bs_token_logprob {
    int32_t token;
    float logprob;
} bs_token_logprob;

/* Valid only during the callback. */
typedef struct bs_request_event {
    int choice;     /* index in [0, n) */
    int32_t token;  /* -1 in a finish-only or embedding event */
    float logprob;  /* of token, when logprobs were asked for */
    const bs_token_logprob *top; /* n_top most likely tokens, best first */
    int n_top;
    /* NULL while running; on the last event of a choice: "stop" (the token is
     * an end-of-generation token; it renders no text), "length" (max_tokens
     * or the context), "cancelled" (scheduler_close), "error" (the step
     * failed; logged).  An embedding request gets exactly one event, with
     * the vector and finish_reason "stop". */
    const char *finish_reason;
    int n_prompt, n_cached; /* usage: prompt tokens and how many came from the prefix cache */
    const float *embedding; /* BS_REQUEST_EMBED: the pooled, L2-normalized final-norm hidden state */
    int n_embd;
    double queue_seconds;   /* time from submit to the request's first scheduled step */
} bs_request_event;

/* Called on the scheduler thread; must not block. */
typedef void (*bs_request_cb)(void *user, const bs_request_event *ev);

/* Queues a request.  BS_EBUSY when max_queue requests are waiting (answer
 * 429 and retry later); BS_ERANGE when n_prompt + max_tokens exceeds n_ctx
 * (the message gives the numbers); BS_EINVAL for bad parameters. */
bs_status scheduler_submit(bs_scheduler *s, const bs_request_params *p, bs_request_cb cb, void *user,
                           uint64_t *request_id, bs_error *err);

/* Ends every choice of the request.  No callback for it runs after this
 * returns; its KV blocks are freed before the next step.  No final event is
 * sent (the client is gone).  Unknown or finished ids are ignored. */
void scheduler_cancel(bs_scheduler *s, uint64_t request_id);
/* Ends one choice the same way (e.g. the server saw a stop string in it). */
void scheduler_cancel_choice(bs_scheduler *s, uint64_t request_id, int choice);

typedef struct bs_scheduler_stats {
    int queued, running;      /* waiting requests (incl. preempted sequences), running sequences */
    double kv_usage;          /* fraction of KV blocks referenced by sequences (cached-only blocks excluded) */
    uint64_t prefix_queries;  /* prompt tokens looked up in the prefix cache */
    uint64_t prefix_hits;     /* of those, tokens found cached */
    uint64_t steps, tokens_generated;
    uint64_t tokens_prompt;   /* prompt tokens of admitted requests */
    uint64_t preemptions;
} bs_scheduler_stats;

void scheduler_stats(bs_scheduler *s, bs_scheduler_stats *out);

#endif
