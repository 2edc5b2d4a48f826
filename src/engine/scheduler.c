/* engine/scheduler.c — the scheduler thread: admission, cancellation,
 * step planning over the paged KV pool, one batched forward per step,
 * sampling and event delivery.
 *
 * Each choice of a request is a sequence (seq): its token ids (prompt, then
 * generated), its block table and its sampler.  A sequence's tokens past
 * kv.n_pos are pending: a prompt (or a recompute after preemption) has many,
 * a decoding sequence exactly one (the token it sampled last).  A step
 * computes some pending tokens of every scheduled sequence; when a sequence
 * has none left its logits are sampled.
 *
 * Locks: mu guards what submit/cancel/stats share with the thread (inbox,
 * live-request registry, client cancel flags, published stats); cb_mu is
 * held while events are delivered, and client cancels take it too, so once
 * scheduler_cancel returns no delivery can still see the old flag.  Order:
 * cb_mu, then mu.  Everything else is private to the scheduler thread. */
#include "engine/scheduler.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "engine/batch.h"
#include "engine/kv_cache.h"

enum { MAX_TOP_LOGPROBS = 20 };

typedef enum { SEQ_PENDING_FORK, SEQ_WAITING, SEQ_RUNNING, SEQ_DONE } seq_state;

typedef struct request request;

typedef struct seq {
    request *req;
    int choice;
    seq_state state;
    int32_t *tokens; /* [n_prompt + max_tokens] */
    int n_tokens, n_generated;
    bs_kv_seq kv;
    bs_sampler *sampler;
    uint64_t age;    /* admission order; the largest is preempted first */
    int chunk;       /* tokens scheduled in the current step */
    float *embed;    /* [dim] embeddings: running sum (mean) or last hidden state */
    struct seq *next; /* inbox / waiting list */
} seq;

struct request {
    uint64_t id;
    bs_request_kind kind;
    int n, n_prompt, max_tokens, ignore_eos, logprobs, top_logprobs, pooling_last;
    bs_logits_hook hook;
    bs_adapter *adapter; /* a reference, or NULL */
    bs_request_cb cb;
    void *user;
    seq *choices;   /* [n]; choices[0] prefills the prompt, the others fork from it */
    int n_live;     /* choices not done */
    int forked;
    int started;    /* admitted at least once */
    int n_cached;
    double t_submit, queue_seconds;
    /* Client cancellation: written under cb_mu and mu. */
    int cancelled;
    unsigned char *choice_cancelled; /* [n] */
    request *next;  /* live registry */
    request *next_finished;
};

typedef struct pending_event {
    request *req;
    bs_request_event ev;
} pending_event;

struct bs_scheduler {
    bs_model *m;
    bs_scheduler_params p;
    int n_vocab, dim;
    bs_kv_pool *kv;
    bs_batch *batch;
    pthread_t thread;
    pthread_mutex_t mu, cb_mu;
    pthread_cond_t cv;

    /* Under mu. */
    int stop;
    request *live;
    seq *inbox_head, *inbox_tail;
    int n_fresh; /* submitted, not yet admitted: what max_queue bounds */
    uint64_t next_id;
    bs_scheduler_stats stats;

    /* Scheduler thread only. */
    seq *wait_head, *wait_tail;
    int n_waiting;
    seq **running; /* [max_running], oldest first */
    seq **order;   /* [max_running] plan's snapshot of running */
    int n_running, n_reserved; /* reserved: slots held for choices not yet forked */
    uint64_t next_age;
    bs_scheduler_stats counters;
    request *finished;
    bs_batch_item *items; /* [max_running] */
    seq **item_seq;       /* [max_running] */
    float *logits;        /* [max_running][n_vocab] */
    float *work;          /* [n_vocab] the logits one choice samples from */
    pending_event *events; /* [max_running] */
    int n_events;
    bs_token_logprob *tops; /* [max_running][MAX_TOP_LOGPROBS] */
};

/* The scheduler whose thread this is, so callbacks may cancel without
 * taking cb_mu, which the thread already holds. */
static _Thread_local const bs_scheduler *current_scheduler;

void scheduler_params_default(bs_scheduler_params *p) {
    *p = (bs_scheduler_params){
        .kv_tokens = 0, .n_ctx = 0, .max_running = 16, .max_queue = 64, .step_tokens = 256, .block_size = 16,
        .kv_dtype = BS_DTYPE_F32};
}

bs_status scheduler_kv_dtype_parse(const char *name, bs_dtype *out, bs_error *err) {
    if (!strcmp(name, "f32") || !strcmp(name, "float32"))
        *out = BS_DTYPE_F32;
    else if (!strcmp(name, "f16") || !strcmp(name, "float16"))
        *out = BS_DTYPE_F16;
    else if (!strcmp(name, "q8_0") || !strcmp(name, "q8"))
        *out = BS_DTYPE_Q8_0;
    else
        return bs_fail(err, BS_EINVAL, "KV cache dtype \"%s\": expected f32, f16 or q8_0", name);
    return BS_OK;
}

/* ---- requests --------------------------------------------------------------- */

static void request_free(request *r) {
    if (!r) return;
    for (int i = 0; r->choices && i < r->n; i++) {
        seq *q = &r->choices[i];
        free(q->tokens);
        free(q->kv.blocks); /* blocks were released when the choice ended */
        sampler_close(q->sampler);
        free(q->embed);
    }
    free(r->choices);
    free(r->choice_cancelled);
    adapter_close(r->adapter);
    free(r);
}

static int choice_dead(const request *r, int i) { return r->cancelled || r->choice_cancelled[i]; }

static int all_dead(const request *r) {
    for (int i = 0; i < r->n; i++)
        if (!choice_dead(r, i)) return 0;
    return 1;
}

/* ---- queues ----------------------------------------------------------------- */

static void wait_push_front(bs_scheduler *s, seq *q) {
    q->state = SEQ_WAITING;
    q->next = s->wait_head;
    s->wait_head = q;
    if (!s->wait_tail) s->wait_tail = q;
    s->n_waiting++;
}

static void wait_remove(bs_scheduler *s, seq *q) {
    seq *prev = NULL;
    for (seq *it = s->wait_head; it; prev = it, it = it->next) {
        if (it != q) continue;
        if (prev) prev->next = q->next;
        else s->wait_head = q->next;
        if (s->wait_tail == q) s->wait_tail = prev;
        s->n_waiting--;
        q->next = NULL;
        return;
    }
}

static void running_insert(bs_scheduler *s, seq *q) {
    int i = s->n_running++;
    for (; i > 0 && s->running[i - 1]->age > q->age; i--) s->running[i] = s->running[i - 1];
    s->running[i] = q;
    q->state = SEQ_RUNNING;
}

static void running_remove(bs_scheduler *s, seq *q) {
    int i = 0;
    while (s->running[i] != q) i++;
    memmove(s->running + i, s->running + i + 1, (size_t)(s->n_running - i - 1) * sizeof *s->running);
    s->n_running--;
}

/* End a choice: release its KV (full blocks stay in the prefix cache). */
static void seq_finish(bs_scheduler *s, seq *q) {
    request *r = q->req;
    switch (q->state) {
    case SEQ_RUNNING: running_remove(s, q); break;
    case SEQ_WAITING:
        wait_remove(s, q);
        if (!r->started) s->n_fresh--; /* under mu: only cancels end a never-admitted request */
        break;
    case SEQ_PENDING_FORK:
        if (r->started) s->n_reserved--; /* slots are reserved at admission */
        break;
    case SEQ_DONE: return;
    }
    kv_seq_clear(&q->kv, s->kv);
    q->state = SEQ_DONE;
    if (--r->n_live == 0) {
        r->next_finished = s->finished;
        s->finished = r;
    }
}

/* Free the KV of a running sequence and requeue it at the head; it will
 * recompute its tokens (largely from the prefix cache). */
static void preempt(bs_scheduler *s, seq *q) {
    running_remove(s, q);
    kv_seq_clear(&q->kv, s->kv);
    if (q->embed) memset(q->embed, 0, (size_t)s->dim * sizeof *q->embed);
    wait_push_front(s, q);
    s->counters.preemptions++;
}

/* ---- under mu: inbox, cancellations, stats, freeing ------------------------ */

static void absorb_inbox(bs_scheduler *s) {
    if (!s->inbox_head) return;
    if (s->wait_tail) s->wait_tail->next = s->inbox_head;
    else s->wait_head = s->inbox_head;
    s->wait_tail = s->inbox_tail;
    for (seq *q = s->inbox_head; q; q = q->next) s->n_waiting++;
    s->inbox_head = s->inbox_tail = NULL;
}

static void absorb_cancels(bs_scheduler *s) {
    for (request *r = s->live; r; r = r->next) {
        if (!r->cancelled && !memchr(r->choice_cancelled, 1, (size_t)r->n)) continue;
        /* Before the fork choice 0 prefills for every choice. */
        if (!r->forked && !all_dead(r)) continue;
        for (int i = 0; i < r->n; i++)
            if (choice_dead(r, i)) seq_finish(s, &r->choices[i]);
    }
}

static void release_finished(bs_scheduler *s) {
    while (s->finished) {
        request *r = s->finished;
        s->finished = r->next_finished;
        request **pp = &s->live;
        while (*pp != r) pp = &(*pp)->next;
        *pp = r->next;
        request_free(r);
    }
}

static void publish_stats(bs_scheduler *s) {
    s->stats = s->counters;
    s->stats.queued = s->n_waiting;
    s->stats.running = s->n_running;
    s->stats.kv_usage = (double)kv_pool_n_used(s->kv) / kv_pool_n_blocks(s->kv);
}

/* ---- sampling and events ----------------------------------------------------- */

static pending_event *new_event(bs_scheduler *s, seq *q) {
    pending_event *pe = &s->events[s->n_events++];
    const request *r = q->req;
    pe->req = q->req;
    pe->ev = (bs_request_event){.choice = q->choice, .token = -1, .n_prompt = r->n_prompt,
                                .n_cached = r->n_cached, .queue_seconds = r->queue_seconds};
    return pe;
}

/* Log-softmax normaliser of the raw logits and their k best entries. */
static float raw_logprobs(const float *logits, int n_vocab, int k, bs_token_logprob *top) {
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - max));
    float lse = max + (float)log(sum);
    int n = 0;
    for (int i = 0; i < n_vocab && k > 0; i++) {
        if (n == k && logits[i] <= top[k - 1].logprob) continue;
        int j = n < k ? n++ : k - 1;
        for (; j > 0 && top[j - 1].logprob < logits[i]; j--) top[j] = top[j - 1];
        top[j] = (bs_token_logprob){i, logits[i]};
    }
    for (int i = 0; i < n; i++) top[i].logprob -= lse;
    return lse;
}

/* Sample the next token of q from its raw logits and queue the event. */
static void sample_choice(bs_scheduler *s, seq *q, const float *raw) {
    request *r = q->req;
    pending_event *pe = new_event(s, q);
    int slot = (int)(pe - s->events);
    bs_token_logprob *top = s->tops + (size_t)slot * MAX_TOP_LOGPROBS;
    float lse = 0;
    if (r->logprobs || r->top_logprobs) lse = raw_logprobs(raw, s->n_vocab, r->top_logprobs, top);

    memcpy(s->work, raw, (size_t)s->n_vocab * sizeof *s->work);
    if (r->hook.apply) r->hook.apply(r->hook.user, q->choice, s->work, s->n_vocab);
    int32_t tok = sampler_sample(q->sampler, s->work);
    if (r->hook.accept) r->hook.accept(r->hook.user, q->choice, tok);
    sampler_accept(q->sampler, tok);
    q->tokens[q->n_tokens++] = tok;
    q->n_generated++;
    s->counters.tokens_generated++;

    pe->ev.token = tok;
    pe->ev.logprob = raw[tok] - lse;
    pe->ev.top = top;
    pe->ev.n_top = r->top_logprobs;
    if (!r->ignore_eos && model_is_eog(s->m, tok)) pe->ev.finish_reason = "stop";
    else if (q->n_generated >= r->max_tokens) pe->ev.finish_reason = "length";
    if (pe->ev.finish_reason) seq_finish(s, q);
}

/* Choice 0 has read the prompt: the other choices take its KV (sharing the
 * full blocks, copying the partial one) and every choice samples from the
 * same logits with its own sampler.  A choice that finds no block for its
 * copy waits to recompute its prompt from the prefix cache. */
static void fork_choices(bs_scheduler *s, seq *leader, const float *raw) {
    request *r = leader->req;
    r->forked = 1;
    for (int i = 1; i < r->n; i++) {
        seq *c = &r->choices[i];
        if (c->state != SEQ_PENDING_FORK) continue;
        s->n_reserved--;
        if (kv_seq_fork(&c->kv, &leader->kv, s->kv) == 0) running_insert(s, c);
        else wait_push_front(s, c);
        sample_choice(s, c, raw);
    }
    sample_choice(s, leader, raw);
}

static void finish_embedding(bs_scheduler *s, seq *q) {
    request *r = q->req;
    float *v = q->embed;
    double norm = 0;
    if (!r->pooling_last)
        for (int i = 0; i < s->dim; i++) v[i] /= (float)r->n_prompt;
    for (int i = 0; i < s->dim; i++) norm += (double)v[i] * v[i];
    if (norm > 0)
        for (int i = 0; i < s->dim; i++) v[i] = (float)(v[i] / sqrt(norm));
    pending_event *pe = new_event(s, q);
    pe->ev.embedding = v;
    pe->ev.n_embd = s->dim;
    pe->ev.finish_reason = "stop";
    seq_finish(s, q);
}

static void deliver(bs_scheduler *s) {
    pthread_mutex_lock(&s->cb_mu);
    for (int i = 0; i < s->n_events; i++) {
        const pending_event *pe = &s->events[i];
        if (!choice_dead(pe->req, pe->ev.choice)) pe->req->cb(pe->req->user, &pe->ev);
    }
    pthread_mutex_unlock(&s->cb_mu);
    s->n_events = 0;
}

/* ---- step planning ------------------------------------------------------------ */

static int pending(const seq *q) { return q->n_tokens - q->kv.n_pos; }

/* The newest running sequence other than q not scheduled in this step. */
static seq *preemption_victim(bs_scheduler *s, const seq *q) {
    for (int i = s->n_running - 1; i >= 0; i--)
        if (s->running[i] != q && s->running[i]->chunk == 0) return s->running[i];
    return NULL;
}

/* Reserve blocks for q's first n_pos positions, preempting newer unscheduled
 * sequences while the pool is short.  Returns 0 when it still cannot. */
static int reserve_or_preempt(bs_scheduler *s, seq *q, int n_pos) {
    while (kv_seq_reserve(&q->kv, s->kv, n_pos) != 0) {
        seq *victim = preemption_victim(s, q);
        if (!victim) return 0;
        preempt(s, victim);
    }
    return 1;
}

/* Positions q can grow to with the blocks available now. */
static int room(const bs_scheduler *s, const seq *q) {
    return (q->kv.n_blocks + kv_pool_n_available(s->kv)) * kv_pool_block_size(s->kv) - q->kv.n_pos;
}

/* Decode tokens of running sequences first (oldest first; one that cannot
 * get a block preempts newer ones, or itself as the newest), then prefill
 * chunks of running sequences, then admissions from the waiting list while
 * slots, budget and blocks last.  Returns the tokens scheduled. */
static int plan(bs_scheduler *s) {
    int budget = s->p.step_tokens, admitted = 0, n = s->n_running;
    /* Preemption reorders running, so walk a snapshot and skip the preempted. */
    memcpy(s->order, s->running, (size_t)n * sizeof *s->order);
    for (int i = 0; i < n; i++) s->order[i]->chunk = 0;

    for (int i = 0; i < n && budget > 0; i++) {
        seq *q = s->order[i];
        if (q->state != SEQ_RUNNING || pending(q) != 1) continue;
        if (!reserve_or_preempt(s, q, q->kv.n_pos + 1)) {
            preempt(s, q); /* every newer sequence is scheduled: q is the newest to take */
            continue;
        }
        q->chunk = 1;
        budget--;
    }
    for (int i = 0; i < n && budget > 0; i++) {
        seq *q = s->order[i];
        if (q->state != SEQ_RUNNING || q->chunk || pending(q) <= 1) continue;
        int chunk = pending(q) < budget ? pending(q) : budget;
        if (!reserve_or_preempt(s, q, q->kv.n_pos + chunk)) {
            if (room(s, q) < chunk) chunk = room(s, q);
            if (chunk <= 0) continue;
            kv_seq_reserve(&q->kv, s->kv, q->kv.n_pos + chunk);
        }
        q->chunk = chunk;
        budget -= chunk;
    }
    while (budget > 0 && s->wait_head) {
        seq *q = s->wait_head;
        request *r = q->req;
        int slots = r->started ? 1 : r->n;
        if (s->n_running + s->n_reserved + slots > s->p.max_running) break;
        int reuse = r->kind == BS_REQUEST_GENERATE || r->pooling_last;
        int cached = reuse ? kv_seq_match_prefix(&q->kv, s->kv, q->tokens, q->n_tokens) : 0;
        int chunk = pending(q) < budget ? pending(q) : budget;
        if (room(s, q) < chunk) chunk = room(s, q);
        if (chunk <= 0) {
            kv_seq_clear(&q->kv, s->kv);
            break;
        }
        kv_seq_reserve(&q->kv, s->kv, q->kv.n_pos + chunk);
        wait_remove(s, q);
        if (!r->started) {
            r->started = 1;
            r->queue_seconds = bs_now() - r->t_submit;
            r->n_cached = cached;
            for (int i = 0; i < r->n; i++) r->choices[i].age = s->next_age + (uint64_t)i;
            s->next_age += (uint64_t)r->n;
            s->n_reserved += r->n - 1;
            s->counters.tokens_prompt += (uint64_t)r->n_prompt;
            if (reuse) {
                s->counters.prefix_queries += (uint64_t)r->n_prompt;
                s->counters.prefix_hits += (uint64_t)cached;
            }
            admitted++;
        }
        running_insert(s, q);
        q->chunk = chunk;
        budget -= chunk;
    }
    if (admitted) {
        pthread_mutex_lock(&s->mu);
        s->n_fresh -= admitted;
        pthread_mutex_unlock(&s->mu);
    }
    return s->p.step_tokens - budget;
}

/* One step: plan, one batched forward, then sample / pool / fork the
 * sequences whose pending tokens are all computed, and deliver the events.
 * Returns 0 when nothing could be scheduled. */
static int step(bs_scheduler *s) {
    if (!plan(s)) return 0;
    int n_items = 0;
    for (int i = 0; i < s->n_running; i++) {
        seq *q = s->running[i];
        if (!q->chunk) continue;
        const request *r = q->req;
        int last = q->kv.n_pos + q->chunk == q->n_tokens;
        bs_batch_item *it = &s->items[n_items];
        *it = (bs_batch_item){&q->kv, q->tokens + q->kv.n_pos, q->chunk, BATCH_OUT_NONE, NULL, r->adapter};
        if (r->kind == BS_REQUEST_EMBED && !r->pooling_last) {
            it->out_kind = BATCH_OUT_HIDDEN_SUM;
            it->out = q->embed;
        } else if (last) {
            it->out_kind = r->kind == BS_REQUEST_EMBED ? BATCH_OUT_HIDDEN_LAST : BATCH_OUT_LOGITS_LAST;
            it->out = r->kind == BS_REQUEST_EMBED ? q->embed : s->logits + (size_t)n_items * s->n_vocab;
        }
        s->item_seq[n_items++] = q;
    }
    bs_error err = {0};
    if (batch_eval(s->batch, s->items, n_items, &err)) {
        /* Plans are checked against the same limits, so this is a bug. */
        bs_log_error("scheduler: step failed: %s", err.msg);
        for (int k = 0; k < n_items; k++) {
            pending_event *pe = new_event(s, s->item_seq[k]);
            pe->ev.finish_reason = "error";
            seq_finish(s, s->item_seq[k]);
        }
        deliver(s);
        return 1;
    }
    s->counters.steps++;
    for (int k = 0; k < n_items; k++) {
        seq *q = s->item_seq[k];
        request *r = q->req;
        kv_seq_commit(&q->kv, s->kv, q->tokens);
        if (pending(q) > 0) continue;
        const float *logits = s->logits + (size_t)k * s->n_vocab;
        if (r->kind == BS_REQUEST_EMBED) finish_embedding(s, q);
        else if (q->choice == 0 && !r->forked && r->n > 1) fork_choices(s, q, logits);
        else sample_choice(s, q, logits);
    }
    deliver(s);
    return 1;
}

/* ---- the thread ---------------------------------------------------------------- */

/* Close: every choice still live gets a "cancelled" event, then all goes. */
static void shut_down(bs_scheduler *s) {
    pthread_mutex_lock(&s->cb_mu);
    for (request *r = s->live; r; r = r->next) {
        for (int i = 0; i < r->n; i++) {
            if (r->choices[i].state == SEQ_DONE || choice_dead(r, i)) continue;
            bs_request_event ev = {.choice = i, .token = -1, .finish_reason = "cancelled",
                                   .n_prompt = r->n_prompt, .n_cached = r->n_cached,
                                   .queue_seconds = r->queue_seconds};
            r->cb(r->user, &ev);
        }
    }
    pthread_mutex_unlock(&s->cb_mu);
    pthread_mutex_lock(&s->mu);
    for (request *r = s->live; r; r = r->next)
        for (int i = 0; i < r->n; i++) seq_finish(s, &r->choices[i]);
    s->finished = NULL;
    while (s->live) {
        request *r = s->live;
        s->live = r->next;
        request_free(r);
    }
    pthread_mutex_unlock(&s->mu);
}

static void *scheduler_main(void *arg) {
    bs_scheduler *s = arg;
    current_scheduler = s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        absorb_inbox(s);
        absorb_cancels(s);
        release_finished(s);
        publish_stats(s);
        if (s->stop) break;
        if (!s->n_running && !s->wait_head) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        int worked = step(s);
        pthread_mutex_lock(&s->mu);
        if (!worked) { /* nothing fits until a cancel or submit changes things */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    shut_down(s);
    return NULL;
}

/* ---- public API ------------------------------------------------------------------ */

static void scheduler_free(bs_scheduler *s) {
    batch_close(s->batch);
    kv_pool_close(s->kv);
    free(s->running);
    free(s->order);
    free(s->items);
    free(s->item_seq);
    free(s->logits);
    free(s->work);
    free(s->events);
    free(s->tops);
    free(s);
}

bs_status scheduler_open(bs_model *m, const bs_scheduler_params *params, bs_scheduler **out, bs_error *err) {
    *out = NULL;
    const bs_model_config *cfg = model_config(m);
    bs_scheduler_params p = *params;
    int kv_dim = cfg->n_kv_heads * cfg->head_dim;
    if (p.n_ctx <= 0) p.n_ctx = cfg->max_pos < 4096 ? cfg->max_pos : 4096;
    if (p.kv_tokens <= 0) { /* a row of 0 bytes (kv_dim not whole blocks) is refused by kv_pool_open */
        size_t row = bs_dtype_row_bytes(p.kv_dtype, kv_dim);
        double cap = row ? 4.0 * (1 << 30) / (2.0 * (double)row * cfg->n_layers) : 0;
        p.kv_tokens = 8.0 * p.n_ctx < cap ? 8 * p.n_ctx : (int)cap;
        if (p.kv_tokens < p.n_ctx) p.kv_tokens = p.n_ctx;
    }
    if (p.n_ctx > cfg->max_pos)
        return bs_fail(err, BS_ERANGE, "scheduler: n_ctx %d exceeds the model's %d positions", p.n_ctx,
                       cfg->max_pos);
    if (p.block_size < 1 || p.block_size > 1024)
        return bs_fail(err, BS_EINVAL, "scheduler: block_size %d is outside 1..1024", p.block_size);
    if (p.kv_tokens < p.n_ctx)
        return bs_fail(err, BS_EINVAL, "scheduler: kv_tokens %d is less than n_ctx %d", p.kv_tokens, p.n_ctx);
    if (p.max_running < 1 || p.max_queue < 1)
        return bs_fail(err, BS_EINVAL, "scheduler: max_running %d and max_queue %d must be positive",
                       p.max_running, p.max_queue);
    if (p.step_tokens < p.max_running)
        return bs_fail(err, BS_EINVAL, "scheduler: step_tokens %d is less than max_running %d", p.step_tokens,
                       p.max_running);

    bs_scheduler *s = calloc(1, sizeof *s);
    if (!s) return bs_fail(err, BS_ENOMEM, "scheduler: out of memory");
    s->m = m;
    s->p = p;
    s->n_vocab = cfg->n_vocab;
    s->dim = cfg->dim;
    s->next_id = 1;
    int R = p.max_running;
    bs_status st = kv_pool_open((p.kv_tokens + p.block_size - 1) / p.block_size, p.block_size, cfg->n_layers,
                                kv_dim, p.kv_dtype, &s->kv, err);
    if (!st) st = batch_open(m, s->kv, p.step_tokens, R, p.n_ctx, &s->batch, err);
    if (!st) {
        s->running = malloc((size_t)R * sizeof *s->running);
        s->order = malloc((size_t)R * sizeof *s->order);
        s->items = malloc((size_t)R * sizeof *s->items);
        s->item_seq = malloc((size_t)R * sizeof *s->item_seq);
        s->logits = malloc((size_t)R * s->n_vocab * sizeof *s->logits);
        s->work = malloc((size_t)s->n_vocab * sizeof *s->work);
        s->events = malloc((size_t)R * sizeof *s->events);
        s->tops = malloc((size_t)R * MAX_TOP_LOGPROBS * sizeof *s->tops);
        if (!s->running || !s->order || !s->items || !s->item_seq || !s->logits || !s->work || !s->events || !s->tops)
            st = bs_fail(err, BS_ENOMEM, "scheduler: out of memory");
    }
    if (st) {
        scheduler_free(s);
        return bs_wrap(err, "opening the scheduler");
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->cb_mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_mutex_destroy(&s->cb_mu);
        pthread_cond_destroy(&s->cv);
        scheduler_free(s);
        return bs_fail(err, BS_ENOMEM, "scheduler: cannot start its thread");
    }
    *out = s;
    return BS_OK;
}

void scheduler_close(bs_scheduler *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->cb_mu);
    pthread_cond_destroy(&s->cv);
    scheduler_free(s);
}

static bs_status check_request(const bs_scheduler *s, const bs_request_params *p, int *max_tokens, bs_error *err) {
    int n_ctx = s->p.n_ctx;
    if (p->kind != BS_REQUEST_GENERATE && p->kind != BS_REQUEST_EMBED)
        return bs_fail(err, BS_EINVAL, "request: unknown kind %d", (int)p->kind);
    if (!p->prompt || p->n_prompt <= 0) return bs_fail(err, BS_EINVAL, "request: empty prompt");
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= s->n_vocab)
            return bs_fail(err, BS_EINVAL, "request: token id %d at index %d is outside the vocabulary (0..%d)",
                           p->prompt[i], i, s->n_vocab - 1);
    if (p->n < 1 || p->n > s->p.max_running)
        return bs_fail(err, BS_EINVAL, "request: n = %d is outside 1..%d", p->n, s->p.max_running);
    if (p->adapter && adapter_base(p->adapter) != s->m)
        return bs_fail(err, BS_EINVAL, "request: the adapter was loaded over another model");
    if (p->top_logprobs < 0 || p->top_logprobs > MAX_TOP_LOGPROBS)
        return bs_fail(err, BS_EINVAL, "request: top_logprobs %d is outside 0..%d", p->top_logprobs,
                       MAX_TOP_LOGPROBS);
    if (p->kind == BS_REQUEST_EMBED) {
        if (p->n != 1) return bs_fail(err, BS_EINVAL, "request: embeddings take n = 1, not %d", p->n);
        if (p->n_prompt > n_ctx)
            return bs_fail(err, BS_ERANGE, "input of %d tokens exceeds the context length %d", p->n_prompt, n_ctx);
        *max_tokens = 0;
        return BS_OK;
    }
    *max_tokens = p->max_tokens > 0 ? p->max_tokens : n_ctx - p->n_prompt;
    if (p->n_prompt >= n_ctx || (long)p->n_prompt + *max_tokens > n_ctx)
        return bs_fail(err, BS_ERANGE,
                       "prompt of %d tokens + max_tokens %d = %ld exceeds the context length %d",
                       p->n_prompt, *max_tokens, (long)p->n_prompt + *max_tokens, n_ctx);
    return BS_OK;
}

/* The tenant salt, mixed with the adapter id (splitmix64 finaliser) so the
 * base and each adapter hash the same tokens to different blocks. */
static uint64_t prefix_salt(const bs_request_params *p) {
    if (!p->adapter) return p->cache_salt;
    uint64_t z = p->cache_salt + adapter_id(p->adapter) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static bs_status request_new(const bs_scheduler *s, const bs_request_params *p, int max_tokens, bs_request_cb cb,
                             void *user, request **out, bs_error *err) {
    request *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "request: out of memory");
    *r = (request){.kind = p->kind, .n = p->n, .n_prompt = p->n_prompt, .max_tokens = max_tokens,
                   .ignore_eos = p->ignore_eos, .logprobs = p->logprobs, .top_logprobs = p->top_logprobs,
                   .pooling_last = p->pooling_last, .cb = cb, .user = user, .n_live = p->n,
                   .t_submit = bs_now()};
    if (p->hook) r->hook = *p->hook;
    if (p->adapter) r->adapter = adapter_retain(p->adapter);
    uint64_t salt = prefix_salt(p);
    r->choices = calloc((size_t)p->n, sizeof *r->choices);
    r->choice_cancelled = calloc((size_t)p->n, 1);
    bs_status st = r->choices && r->choice_cancelled ? BS_OK : bs_fail(err, BS_ENOMEM, "request: out of memory");
    for (int i = 0; !st && i < p->n; i++) {
        seq *q = &r->choices[i];
        q->req = r;
        q->choice = i;
        q->state = i == 0 ? SEQ_WAITING : SEQ_PENDING_FORK;
        int cap = p->n_prompt + max_tokens;
        q->tokens = malloc((size_t)cap * sizeof *q->tokens);
        if (!q->tokens) {
            st = bs_fail(err, BS_ENOMEM, "request: out of memory");
            break;
        }
        memcpy(q->tokens, p->prompt, (size_t)p->n_prompt * sizeof *q->tokens);
        q->n_tokens = p->n_prompt;
        st = kv_seq_init(&q->kv, s->kv, cap, salt, err);
        if (st) break;
        if (p->kind == BS_REQUEST_EMBED) {
            q->embed = calloc((size_t)s->dim, sizeof *q->embed);
            if (!q->embed) st = bs_fail(err, BS_ENOMEM, "request: out of memory");
            continue;
        }
        bs_sampler_params sp = p->sampling;
        sp.seed += (uint64_t)i;
        st = sampler_open(&sp, s->n_vocab, &q->sampler, err);
        for (int t = 0; !st && t < p->n_prompt; t++) sampler_accept(q->sampler, p->prompt[t]);
    }
    if (st) {
        request_free(r);
        return st;
    }
    *out = r;
    return BS_OK;
}

bs_status scheduler_submit(bs_scheduler *s, const bs_request_params *p, bs_request_cb cb, void *user,
                           uint64_t *request_id, bs_error *err) {
    int max_tokens = 0;
    if (!cb) return bs_fail(err, BS_EINVAL, "request: no callback");
    bs_status st = check_request(s, p, &max_tokens, err);
    request *r = NULL;
    if (!st) st = request_new(s, p, max_tokens, cb, user, &r, err);
    if (st) return st;
    pthread_mutex_lock(&s->mu);
    if (s->stop || s->n_fresh >= s->p.max_queue) {
        int n = s->n_fresh, stopping = s->stop;
        pthread_mutex_unlock(&s->mu);
        request_free(r);
        if (stopping) return bs_fail(err, BS_EINVAL, "request: the scheduler is closing");
        return bs_fail(err, BS_EBUSY, "request queue full (%d waiting)", n);
    }
    r->id = s->next_id++;
    r->next = s->live;
    s->live = r;
    seq *q = &r->choices[0];
    if (s->inbox_tail) s->inbox_tail->next = q;
    else s->inbox_head = q;
    s->inbox_tail = q;
    s->n_fresh++;
    *request_id = r->id;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return BS_OK;
}

/* choice < 0: the whole request. */
static void cancel(bs_scheduler *s, uint64_t request_id, int choice) {
    int inside = current_scheduler == s;
    if (!inside) pthread_mutex_lock(&s->cb_mu);
    pthread_mutex_lock(&s->mu);
    for (request *r = s->live; r; r = r->next) {
        if (r->id != request_id) continue;
        if (choice < 0) r->cancelled = 1;
        else if (choice < r->n) r->choice_cancelled[choice] = 1;
        pthread_cond_signal(&s->cv);
        break;
    }
    pthread_mutex_unlock(&s->mu);
    if (!inside) pthread_mutex_unlock(&s->cb_mu);
}

void scheduler_cancel(bs_scheduler *s, uint64_t request_id) { cancel(s, request_id, -1); }
void scheduler_cancel_choice(bs_scheduler *s, uint64_t request_id, int choice) {
    if (choice >= 0) cancel(s, request_id, choice);
}

void scheduler_stats(bs_scheduler *s, bs_scheduler_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}
