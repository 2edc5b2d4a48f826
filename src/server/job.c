#include "server/job.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "server/buf.h"

#define MAX_TOP 20

typedef struct ev_node {
    struct ev_node *next;
    int choice; /* global: request * n + choice */
    int32_t token;
    float logprob;
    bs_token_logprob top[MAX_TOP];
    int n_top;
    const char *finish;
    int n_prompt, n_cached;
    float *embedding;
    int n_embd;
    double queue_seconds, t;
} ev_node;

typedef struct sub_request {
    gen_job *job;
    int index;
    uint64_t id;
    int submitted, usage_seen;
} sub_request;

typedef struct choice_state {
    tok_stream ts;
    srv_buf held; /* text that may be the start of a stop string */
    const char *finish;
    double last_t;
    float *embedding;
    int n_embd;
    bs_grammar_matcher *matcher;
    /* Lazy grammar, touched by the hook on the scheduler thread only. */
    int armed;     /* the grammar constrains the choice now */
    int seen_text; /* non-whitespace output went by before window */
    srv_buf window; /* the output's last bytes, where a trigger may be starting */
} choice_state;

struct gen_job {
    job_params p;
    sub_request *subs;
    choice_state *ch;
    int n_per, n_choices, n_active;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ev_node *head, *tail;
    int ended; /* shutdown: finish as things stand */
    int lost;  /* an event could not be queued (out of memory) */
    bs_logits_hook hook;
    int prompt_tokens, cached_tokens, completion_tokens;
    double t_start, t_first, queue;
    gen_job *reg_next, *reg_prev;
};

struct job_registry {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gen_job *head;
    int closing;
};

/* ------------------------------------------------------------ registry */

bs_status job_registry_open(job_registry **out, bs_error *err) {
    job_registry *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    *out = r;
    return BS_OK;
}

static struct timespec deadline_after(double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = ts.tv_nsec + (long long)(seconds * 1e9);
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

static void wait_empty(job_registry *r, double seconds) {
    struct timespec until = deadline_after(seconds);
    while (r->head && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT) {
    }
}

void job_registry_drain(job_registry *r, double grace_s) {
    pthread_mutex_lock(&r->mu);
    r->closing = 1;
    wait_empty(r, grace_s);
    for (gen_job *j = r->head; j; j = j->reg_next) {
        pthread_mutex_lock(&j->mu);
        j->ended = 1;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    /* Their connection threads notice within one pump (50 ms). */
    wait_empty(r, 2.0);
    pthread_mutex_unlock(&r->mu);
}

void job_registry_close(job_registry *r) {
    if (!r) return;
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ------------------------------------------------------------ scheduler side */

static const char *finish_name(const char *f) {
    if (!f) return NULL;
    if (strcmp(f, "length") == 0) return "length";
    if (strcmp(f, "embedding") == 0) return "embedding";
    return "stop"; /* "stop", and "cancelled" from a closing scheduler */
}

/* On the scheduler thread: copy and queue, nothing else. */
static void on_event(void *user, const bs_request_event *ev) {
    sub_request *sub = user;
    gen_job *j = sub->job;
    ev_node *n = calloc(1, sizeof *n);
    if (n && ev->embedding && ev->n_embd > 0) {
        n->embedding = malloc((size_t)ev->n_embd * sizeof *n->embedding);
        if (n->embedding) memcpy(n->embedding, ev->embedding, (size_t)ev->n_embd * sizeof *n->embedding);
        else {
            free(n);
            n = NULL;
        }
        if (n) n->n_embd = ev->n_embd;
    }
    pthread_mutex_lock(&j->mu);
    if (!n) {
        j->lost = 1;
    } else {
        n->choice = sub->index * j->n_per + ev->choice;
        n->token = ev->token;
        n->logprob = ev->logprob;
        n->n_top = ev->n_top < MAX_TOP ? ev->n_top : MAX_TOP;
        if (n->n_top > 0) memcpy(n->top, ev->top, (size_t)n->n_top * sizeof *n->top);
        n->finish = finish_name(ev->finish_reason);
        n->n_prompt = ev->n_prompt;
        n->n_cached = ev->n_cached;
        n->queue_seconds = ev->queue_seconds;
        n->t = bs_now();
        if (j->tail) j->tail->next = n;
        else j->head = n;
        j->tail = n;
    }
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void hook_apply(void *user, int choice, float *logits, int n_vocab) {
    gen_job *j = user;
    if (j->p.n_triggers == 0 || j->ch[choice].armed) grammar_matcher_mask(j->ch[choice].matcher, logits, n_vocab);
}

static int all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i])) return 0;
    return 1;
}

/* Back to watching for triggers, with a fresh matcher. */
static void disarm(choice_state *ch) {
    ch->armed = 0;
    ch->seen_text = 1;
    grammar_matcher_rollback(ch->matcher, INT_MAX);
    buf_free(&ch->window);
}

/* Earliest trigger in the window, its offset in *at; -1 when none. */
static int find_trigger(const gen_job *j, const choice_state *ch, size_t *at) {
    const char *w = ch->window.data;
    int best = -1;
    for (int k = 0; k < j->p.n_triggers; k++) {
        const job_trigger *t = &j->p.triggers[k];
        const char *hit = memmem(w, ch->window.len, t->text, strlen(t->text));
        if (!hit || (best >= 0 && (size_t)(hit - w) >= *at)) continue;
        if (t->at_start_only && (ch->seen_text || !all_space(w, (size_t)(hit - w)))) continue;
        best = k;
        *at = (size_t)(hit - w);
    }
    return best;
}

/* An unarmed choice wrote token: arm the grammar at a trigger, feeding it
 * the bytes from the trigger on (a token that straddles the trigger's start
 * contributes only its part after it).  Bytes that cannot follow the
 * trigger in the grammar leave the choice free. */
static void watch_triggers(gen_job *j, int choice, choice_state *ch, int32_t token) {
    size_t n, at = 0;
    const char *bytes = token_trie_bytes(j->p.trie, token, &n);
    if (!bytes) return; /* special and end-of-generation tokens write no text */
    buf_append(&ch->window, bytes, n);
    if (find_trigger(j, ch, &at) >= 0) {
        bs_error err;
        if (grammar_matcher_accept_bytes(ch->matcher, ch->window.data + at, ch->window.len - at, &err) == BS_OK) {
            ch->armed = 1;
            buf_free(&ch->window);
            return;
        }
        bs_log_debug("grammar: choice %d: the text after a tool-call trigger is not a call: %s", choice, err.msg);
        grammar_matcher_rollback(ch->matcher, INT_MAX);
        ch->seen_text = 1;
        buf_consume(&ch->window, at + 1); /* look past this occurrence */
    }
    size_t keep = JOB_TRIGGER_MAX - 1;
    if (ch->window.len > keep) {
        size_t drop = ch->window.len - keep;
        ch->seen_text |= !all_space(ch->window.data, drop);
        buf_consume(&ch->window, drop);
    }
}

static void hook_accept(void *user, int choice, int32_t token) {
    gen_job *j = user;
    choice_state *ch = &j->ch[choice];
    bs_error err;
    if (j->p.n_triggers && !ch->armed) {
        watch_triggers(j, choice, ch, token);
    } else if (grammar_matcher_accept(ch->matcher, token, &err) != BS_OK) {
        bs_log_warn("grammar: choice %d: %s", choice, err.msg);
    }
    if (ch->armed && j->p.release && grammar_matcher_complete(ch->matcher)) disarm(ch);
}

/* ------------------------------------------------------------ lifecycle */

static void cancel_all(gen_job *j) {
    for (int i = 0; i < j->p.n_requests; i++)
        if (j->subs[i].submitted) scheduler_cancel(j->p.sched, j->subs[i].id);
}

bs_status job_start(const job_params *p, gen_job **out, bs_error *err) {
    *out = NULL;
    if (p->grammar && p->n_requests != 1) return bs_fail(err, BS_EINVAL, "constrained decoding takes one prompt");
    for (int k = 0; k < p->n_triggers; k++)
        if (strlen(p->triggers[k].text) >= JOB_TRIGGER_MAX) return bs_fail(err, BS_EINVAL, "grammar trigger too long");
    gen_job *j = calloc(1, sizeof *j);
    if (!j) return bs_fail(err, BS_ENOMEM, "out of memory");
    j->p = *p;
    j->n_per = p->req.n;
    j->n_choices = p->n_requests * p->req.n;
    j->n_active = j->n_choices;
    j->t_start = bs_now();
    j->queue = -1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->subs = calloc((size_t)p->n_requests, sizeof *j->subs);
    j->ch = calloc((size_t)j->n_choices, sizeof *j->ch);
    if (!j->subs || !j->ch) {
        job_free(j);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    for (int c = 0; c < j->n_choices; c++) tok_stream_init(&j->ch[c].ts);
    bs_request_params rp = p->req;
    if (p->grammar) {
        for (int c = 0; c < j->n_choices; c++)
            if (grammar_matcher_open(p->grammar, p->trie, &j->ch[c].matcher, err) != BS_OK) {
                job_free(j);
                return err->status;
            }
        j->hook = (bs_logits_hook){.user = j, .apply = hook_apply, .accept = hook_accept};
        rp.hook = &j->hook;
    }
    job_registry *reg = p->registry;
    pthread_mutex_lock(&reg->mu);
    bs_status st = reg->closing ? bs_fail(err, BS_EBUSY, "the server is shutting down") : BS_OK;
    if (st == BS_OK) {
        j->reg_next = reg->head;
        if (reg->head) reg->head->reg_prev = j;
        reg->head = j;
    }
    pthread_mutex_unlock(&reg->mu);
    if (st != BS_OK) {
        j->p.registry = NULL;
        job_free(j);
        return st;
    }
    for (int i = 0; i < p->n_requests; i++) {
        sub_request *sub = &j->subs[i];
        *sub = (sub_request){.job = j, .index = i};
        rp.prompt = p->prompts[i];
        rp.n_prompt = p->n_prompts[i];
        st = scheduler_submit(p->sched, &rp, on_event, sub, &sub->id, err);
        if (st != BS_OK) {
            job_free(j);
            return st;
        }
        sub->submitted = 1;
    }
    *out = j;
    return BS_OK;
}

void job_free(gen_job *j) {
    if (!j) return;
    if (j->n_active > 0 && j->subs) cancel_all(j);
    job_registry *reg = j->p.registry;
    if (reg) {
        pthread_mutex_lock(&reg->mu);
        if (j->reg_prev) j->reg_prev->reg_next = j->reg_next;
        else if (reg->head == j) reg->head = j->reg_next;
        if (j->reg_next) j->reg_next->reg_prev = j->reg_prev;
        pthread_cond_broadcast(&reg->cv);
        pthread_mutex_unlock(&reg->mu);
    }
    for (ev_node *n = j->head, *next; n; n = next) {
        next = n->next;
        free(n->embedding);
        free(n);
    }
    for (int c = 0; j->ch && c < j->n_choices; c++) {
        buf_free(&j->ch[c].held);
        buf_free(&j->ch[c].window);
        free(j->ch[c].embedding);
        grammar_matcher_close(j->ch[c].matcher);
    }
    free(j->ch);
    free(j->subs);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* ------------------------------------------------------------ text pipeline */

static void end_choice(gen_job *j, int c, const char *reason, const job_sink *sink) {
    j->ch[c].finish = reason;
    j->n_active--;
    if (sink->finish) sink->finish(sink->user, c, reason);
}

/* Longest suffix of s[0..n) that is a proper prefix of some stop string. */
static size_t stop_prefix_len(const gen_job *j, const char *s, size_t n) {
    size_t best = 0;
    for (int k = 0; k < j->p.n_stop; k++) {
        size_t ls = strlen(j->p.stop[k]);
        for (size_t m = ls - 1 < n ? ls - 1 : n; m > best; m--)
            if (memcmp(s + n - m, j->p.stop[k], m) == 0) {
                best = m;
                break;
            }
    }
    return best;
}

static void emit_text(gen_job *j, int c, const char *s, size_t n, const job_sink *sink) {
    choice_state *ch = &j->ch[c];
    if (j->p.n_stop == 0) {
        if (n) sink->text(sink->user, c, s, n);
        return;
    }
    buf_append(&ch->held, s, n);
    const char *h = ch->held.data ? ch->held.data : "";
    size_t cut = SIZE_MAX;
    for (int k = 0; k < j->p.n_stop; k++) {
        const char *at = memmem(h, ch->held.len, j->p.stop[k], strlen(j->p.stop[k]));
        if (at && (size_t)(at - h) < cut) cut = (size_t)(at - h);
    }
    int hit = cut != SIZE_MAX;
    if (hit) {
        if (cut) sink->text(sink->user, c, h, cut);
        buf_free(&ch->held);
        const sub_request *sub = &j->subs[c / j->n_per];
        scheduler_cancel_choice(j->p.sched, sub->id, c % j->n_per);
        end_choice(j, c, "stop", sink);
        return;
    }
    size_t keep = stop_prefix_len(j, h, ch->held.len);
    if (ch->held.len > keep) {
        sink->text(sink->user, c, h, ch->held.len - keep);
        buf_consume(&ch->held, ch->held.len - keep);
    }
}

static void finish_choice(gen_job *j, int c, const char *reason, const job_sink *sink) {
    choice_state *ch = &j->ch[c];
    char tail[64];
    size_t n = tok_stream_flush(j->p.tok, &ch->ts, tail, sizeof tail);
    if (n) emit_text(j, c, tail, n, sink);
    if (ch->finish) return; /* the flushed text completed a stop string */
    if (ch->held.len) sink->text(sink->user, c, ch->held.data, ch->held.len);
    buf_free(&ch->held);
    end_choice(j, c, reason, sink);
}

static void deliver(gen_job *j, ev_node *n, const job_sink *sink) {
    choice_state *ch = &j->ch[n->choice];
    sub_request *sub = &j->subs[n->choice / j->n_per];
    if (!sub->usage_seen) {
        sub->usage_seen = 1;
        j->prompt_tokens += n->n_prompt;
        j->cached_tokens += n->n_cached;
        if (n->queue_seconds > j->queue) j->queue = n->queue_seconds;
    }
    if (ch->finish) return; /* ended by a stop string; late tokens are dropped */
    if (n->token >= 0) {
        j->completion_tokens++;
        if (j->t_first == 0) j->t_first = n->t;
        if (ch->last_t > 0 && j->p.metrics) metrics_inter_token(j->p.metrics, n->t - ch->last_t);
        ch->last_t = n->t;
        if (sink->token) {
            bs_request_event ev = {.choice = n->choice, .token = n->token, .logprob = n->logprob,
                                   .top = n->top, .n_top = n->n_top};
            sink->token(sink->user, n->choice, &ev);
        }
        /* A "stop" token is the end-of-generation token: no text. */
        if (!(n->finish && strcmp(n->finish, "stop") == 0)) {
            char piece[512];
            size_t len = tok_stream_push(j->p.tok, &ch->ts, n->token, 0, piece, sizeof piece);
            emit_text(j, n->choice, piece, len, sink);
        }
    }
    if (n->embedding) {
        free(ch->embedding);
        ch->embedding = n->embedding;
        ch->n_embd = n->n_embd;
        n->embedding = NULL;
    }
    if (n->finish && !ch->finish) finish_choice(j, n->choice, n->finish, sink);
}

int job_pump(gen_job *j, http_request *r, const job_sink *sink) {
    pthread_mutex_lock(&j->mu);
    if (!j->head && !j->ended && !j->lost) {
        struct timespec until = deadline_after(0.05);
        pthread_cond_timedwait(&j->cv, &j->mu, &until);
    }
    ev_node *list = j->head;
    j->head = j->tail = NULL;
    int ended = j->ended || j->lost;
    pthread_mutex_unlock(&j->mu);
    for (ev_node *n = list, *next; n; n = next) {
        next = n->next;
        deliver(j, n, sink);
        free(n->embedding);
        free(n);
    }
    if (j->n_active == 0) return 0;
    if (ended) {
        cancel_all(j);
        for (int c = 0; c < j->n_choices; c++)
            if (!j->ch[c].finish) finish_choice(j, c, "length", sink);
        return 0;
    }
    if (r && http_client_gone(r)) {
        cancel_all(j);
        j->n_active = 0;
        return -1;
    }
    return 1;
}

int job_choices(const gen_job *j) { return j->n_choices; }

void job_usage(const gen_job *j, int *prompt_tokens, int *completion_tokens, int *cached_tokens) {
    *prompt_tokens = j->prompt_tokens;
    *completion_tokens = j->completion_tokens;
    *cached_tokens = j->cached_tokens;
}

void job_timing(const gen_job *j, double *ttft, double *queue) {
    *ttft = j->t_first > 0 ? j->t_first - j->t_start : -1;
    *queue = j->queue;
}

const float *job_embedding(const gen_job *j, int choice, int *n) {
    *n = j->ch[choice].n_embd;
    return j->ch[choice].embedding;
}
