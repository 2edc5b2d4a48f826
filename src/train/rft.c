/* train/rft.c — the reinforcement fine-tuning (GRPO) loop over
 * train/trainer.h, train/grpo.h, the engine's scheduler and reward/: prompt
 * data, rollouts, grading, the update, validation rewards and checkpoints
 * (train/train_state.h, shared with SFT). */
#include "train/rft.h"

#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file.h"
#include "base/log.h"
#include "base/threadpool.h"
#include "engine/adapter.h"
#include "train/dataset.h"
#include "train/train_state.h"

#define RFT_LORA_LR 1e-5
#define RFT_DEFAULT_MAX_LENGTH 1024
#define RFT_DEFAULT_RANK 16
#define RFT_DEFAULT_BATCH 8
#define RFT_DEFAULT_COMPLETION 256
#define RFT_AUTO_INTERVALS 10
#define RFT_DEFAULT_KEEP 3 /* OpenAI keeps the 3 best by valid_reward_mean */
#define RFT_MAX_PROBLEMS 50

/* ---- prompts --------------------------------------------------------------- */

typedef struct rft_prompt {
    json_t *row;            /* the whole line: the grader's item */
    const json_t *messages; /* in row */
    int32_t *ids;
    int n;
} rft_prompt;

struct rft_data {
    rft_prompt *p;
    size_t n;
};

void rft_data_close(rft_data *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) {
        json_decref(d->p[i].row);
        free(d->p[i].ids);
    }
    free(d->p);
    free(d);
}

size_t rft_data_count(const rft_data *d) { return d ? d->n : 0; }

/* Why a line cannot be a prompt, or NULL (then *out is filled). */
static const char *read_prompt(const char *line, size_t len, const bs_tokenizer *tok, const chat_template *tmpl,
                               int max_len, rft_prompt *out, char *why, size_t cap) {
    json_error_t je;
    json_t *row = json_loadb(line, len, 0, &je);
    if (!row) {
        snprintf(why, cap, "invalid JSON: %s", je.text);
        return why;
    }
    const json_t *msgs = json_object_get(row, "messages");
    size_t n = json_array_size(msgs);
    const char *last = n ? json_string_value(json_object_get(json_array_get(msgs, n - 1), "role")) : NULL;
    const char *bad = NULL;
    if (!json_is_object(row)) bad = "expected a JSON object";
    else if (!json_is_array(msgs) || n == 0) bad = "\"messages\" must be a non-empty array";
    else if (!last || strcmp(last, "user") != 0) bad = "the last message must be a user turn (the model answers it)";
    if (bad) {
        json_decref(row);
        snprintf(why, cap, "%s", bad);
        return why;
    }
    char *text = NULL;
    size_t tlen = 0;
    bs_error err = {0};
    const json_t *tools = json_object_get(row, "tools");
    bs_status st = chat_template_render(tmpl, msgs, json_is_array(tools) ? tools : NULL, 1, NULL, &text, &tlen, &err);
    size_t n_ids = 0;
    int32_t *ids = NULL;
    if (st == BS_OK) st = tok_encode(tok, text, tlen, dataset_chat_flags(tok, text), &ids, &n_ids, &err);
    free(text);
    if (st == BS_OK && (int)n_ids > max_len) {
        snprintf(err.msg, sizeof err.msg, "the prompt has %zu tokens, more than max_length %d", n_ids, max_len);
        st = BS_ERANGE;
    }
    if (st != BS_OK) {
        free(ids);
        json_decref(row);
        snprintf(why, cap, "%s", err.msg);
        return why;
    }
    *out = (rft_prompt){.row = row, .messages = msgs, .ids = ids, .n = (int)n_ids};
    return NULL;
}

bs_status rft_data_open(const char *path, const bs_tokenizer *tok, const chat_template *tmpl, int max_prompt_length,
                        rft_data **out, char **report, bs_error *err) {
    *out = NULL;
    if (report) *report = NULL;
    char *buf = NULL;
    size_t size = 0;
    if (bs_file_read(path, &buf, &size, err) != BS_OK) return err->status;
    rft_data *d = calloc(1, sizeof *d);
    char *rep = NULL;
    size_t rep_len = 0;
    FILE *rf = open_memstream(&rep, &rep_len);
    if (!d || !rf) {
        if (rf) fclose(rf);
        free(rep);
        free(buf);
        free(d);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    int max_len = max_prompt_length > 0 ? max_prompt_length : RFT_DEFAULT_MAX_LENGTH;
    size_t cap = 0, problems = 0;
    char first[256] = "";
    bs_status st = BS_OK;
    long line = 0;
    for (char *p = buf, *end = buf + size; p < end && st == BS_OK; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *s = p;
        p += len + (nl != NULL);
        size_t k = 0;
        while (k < len && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == len) continue;
        if (d->n == cap) {
            cap = cap ? 2 * cap : 64;
            rft_prompt *q = realloc(d->p, cap * sizeof *q);
            if (!q) {
                st = bs_fail(err, BS_ENOMEM, "out of memory");
                break;
            }
            d->p = q;
        }
        char why[BS_ERROR_MSG_MAX];
        if (read_prompt(s, len, tok, tmpl, max_len, &d->p[d->n], why, sizeof why)) {
            if (++problems <= RFT_MAX_PROBLEMS) fprintf(rf, "line %ld: %s\n", line + 1, why);
            if (problems == 1) snprintf(first, sizeof first, "line %ld: %s", line + 1, why);
        } else {
            d->n++;
        }
    }
    free(buf);
    if (problems > RFT_MAX_PROBLEMS) fprintf(rf, "... and %zu more\n", problems - RFT_MAX_PROBLEMS);
    fclose(rf);
    if (st == BS_OK && problems)
        st = bs_fail(err, BS_EFORMAT, "%s: %zu problem%s; the first: %s", path, problems, problems == 1 ? "" : "s",
                     first);
    else if (st == BS_OK && d->n == 0)
        st = bs_fail(err, BS_EFORMAT, "%s: no prompts", path);
    if (st == BS_EFORMAT && problems && report) {
        *report = rep;
        rep = NULL;
    }
    free(rep);
    if (st != BS_OK) {
        rft_data_close(d);
        return st;
    }
    *out = d;
    return BS_OK;
}

/* ---- config ---------------------------------------------------------------- */

void rft_config_default(rft_config *c) {
    *c = (rft_config){.temperature = 1, .top_p = 1, .max_unscored_frac = 0.2f};
    grpo_config_default(&c->grpo);
    c->grpo.group_size = 0;
    c->grpo.max_completion_len = 0;
}

bs_status rft_resolve(rft_config *c, size_t n, bs_error *err) {
    if (n == 0) return bs_fail(err, BS_EINVAL, "rft: the training set has no prompts");
    if (c->n_epochs == 0) c->n_epochs = 1;
    if (c->batch_size == 0) c->batch_size = n < RFT_DEFAULT_BATCH ? (int)n : RFT_DEFAULT_BATCH;
    if (c->lr_multiplier == 0) c->lr_multiplier = 1;
    if (c->lr == 0) c->lr = RFT_LORA_LR * c->lr_multiplier;
    if (c->max_length == 0) c->max_length = RFT_DEFAULT_MAX_LENGTH;
    if (c->grpo.group_size == 0) c->grpo.group_size = 8;
    if (c->grpo.max_completion_len == 0) c->grpo.max_completion_len = RFT_DEFAULT_COMPLETION;
    if (c->eval_samples == 0) c->eval_samples = c->grpo.group_size;
    if (c->lora.rank == 0) c->lora.rank = RFT_DEFAULT_RANK;
    if (c->lora.alpha == 0) c->lora.alpha = 2.0f * (float)c->lora.rank;
    if (c->lora.targets == 0) c->lora.targets = BS_LORA_ALL_LINEAR;
    if (c->keep_checkpoints == 0) c->keep_checkpoints = RFT_DEFAULT_KEEP;
    if (c->n_epochs < 1 || c->n_epochs > 50)
        return bs_fail(err, BS_EINVAL, "n_epochs: %d is outside 1..50", c->n_epochs);
    if (c->batch_size < 1 || c->batch_size > 256)
        return bs_fail(err, BS_EINVAL, "batch_size: %d is outside 1..256", c->batch_size);
    if (!(c->lr_multiplier > 0) || !(c->lr > 0) || !isfinite(c->lr))
        return bs_fail(err, BS_EINVAL, "learning_rate_multiplier: must be > 0 (learning rate %g)", c->lr);
    if (c->grpo.group_size < 2 || c->grpo.group_size > 64)
        return bs_fail(err, BS_EINVAL, "group_size: %d is outside 2..64", c->grpo.group_size);
    if (c->grpo.max_completion_len < 1 || c->grpo.max_completion_len > 32768)
        return bs_fail(err, BS_EINVAL, "max_completion_tokens: %d is outside 1..32768", c->grpo.max_completion_len);
    if (c->eval_samples < 1 || c->eval_samples > 64)
        return bs_fail(err, BS_EINVAL, "eval_samples: %d is outside 1..64", c->eval_samples);
    if (!(c->temperature > 0 && c->temperature <= 2))
        return bs_fail(err, BS_EINVAL, "temperature: %g is outside (0, 2]", c->temperature);
    if (!(c->top_p > 0 && c->top_p <= 1)) return bs_fail(err, BS_EINVAL, "top_p: %g is outside (0, 1]", c->top_p);
    if (!(c->grpo.beta >= 0) || !(c->grpo.epsilon > 0) || !(c->grpo.epsilon_high > 0))
        return bs_fail(err, BS_EINVAL, "beta must be >= 0 and epsilon, epsilon_high > 0");
    if (!(c->max_unscored_frac >= 0 && c->max_unscored_frac <= 1))
        return bs_fail(err, BS_EINVAL, "max_unscored_fraction: %g is outside [0, 1]", c->max_unscored_frac);
    if (!(c->warmup_ratio >= 0 && c->warmup_ratio < 1))
        return bs_fail(err, BS_EINVAL, "warmup_ratio: %g is outside [0, 1)", c->warmup_ratio);
    if (c->max_length < 2 || c->max_length > (1 << 20))
        return bs_fail(err, BS_EINVAL, "max_length: %d is outside 2..%d", c->max_length, 1 << 20);
    if (c->lora.rank < 1 || c->lora.rank > BS_ADAPTER_MAX_RANK)
        return bs_fail(err, BS_EINVAL, "lora_rank: %d is outside 1..%d", c->lora.rank, BS_ADAPTER_MAX_RANK);
    if (!(c->lora.alpha > 0)) return bs_fail(err, BS_EINVAL, "lora_alpha: %g must be > 0", c->lora.alpha);
    if (c->lora.dropout != 0)
        return bs_fail(err, BS_EINVAL, "lora_dropout: must be 0 for RFT (the old and new log-probs must agree)");
    if (c->keep_checkpoints < 1 || c->keep_checkpoints > 100)
        return bs_fail(err, BS_EINVAL, "keep_checkpoints: %d is outside 1..100", c->keep_checkpoints);
    int total = c->n_epochs * (int)((n + (size_t)c->batch_size - 1) / (size_t)c->batch_size);
    int auto_every = total / RFT_AUTO_INTERVALS > 1 ? (total + RFT_AUTO_INTERVALS - 1) / RFT_AUTO_INTERVALS : 1;
    if (c->checkpoint_every == 0) c->checkpoint_every = auto_every;
    if (c->eval_every <= 0) c->eval_every = auto_every;
    return BS_OK;
}

/* ---- open / close ---------------------------------------------------------- */

struct rft_run {
    bs_model *model;
    bs_scheduler *sched;
    const bs_reward_grader *grader;
    const bs_tokenizer *tok;
    rft_config c;
    bs_trainer *trainer;
    const rft_data *train, *valid;
    train_order order; /* the seeded data order */
    int total_steps, step;
    int64_t trained_tokens;
    int capacity;   /* tokens per micro-batch */
    size_t *valid_idx;
    double step_valid;   /* valid_reward_mean at step, NAN unless evaluated there */
    int best_step;       /* rft_best; 0: none */
    double best_valid;
    float *best;         /* the trained values at best_step [trainer_n_params] */
};

static int longest_prompt(const rft_data *d) {
    int m = 0;
    for (size_t i = 0; d && i < d->n; i++)
        if (d->p[i].n > m) m = d->p[i].n;
    return m;
}

bs_status rft_open(bs_model *base, bs_scheduler *sched, const bs_reward_grader *grader, const rft_config *c,
                   const rft_data *train, const rft_data *valid, rft_run **out, bs_error *err) {
    *out = NULL;
    if (c->n_epochs < 1 || c->batch_size < 1 || !(c->lr > 0) || c->grpo.group_size < 2 || c->eval_every < 1 ||
        c->grpo.max_completion_len < 1)
        return bs_fail(err, BS_EINVAL, "rft: the config is not resolved (call rft_resolve)");
    if (!model_tokenizer(base)) return bs_fail(err, BS_EINVAL, "rft: the model has no tokenizer");
    rft_run *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "rft: out of memory");
    *r = (rft_run){.model = base, .sched = sched, .grader = grader, .tok = model_tokenizer(base), .c = *c,
                   .train = train, .valid = valid && valid->n ? valid : NULL, .step_valid = NAN, .best_valid = NAN};
    train_order_init(&r->order, c->seed, train->n, c->batch_size);
    r->total_steps = r->order.steps_per_epoch * c->n_epochs;
    int lp = longest_prompt(train), lv = longest_prompt(r->valid);
    r->capacity = (lp > lv ? lp : lv) + c->grpo.max_completion_len + 1;
    if (c->max_length > r->capacity) r->capacity = c->max_length;
    size_t nv = rft_data_count(r->valid);
    r->valid_idx = malloc((nv ? nv : 1) * sizeof *r->valid_idx);
    if (!r->order.perm || !r->valid_idx) {
        rft_close(r);
        return bs_fail(err, BS_ENOMEM, "rft: out of memory");
    }
    for (size_t i = 0; i < nv; i++) r->valid_idx[i] = i;
    bs_train_config tc;
    train_config_default(&tc);
    tc.lora = c->lora;
    tc.lr = (float)c->lr;
    tc.weight_decay = c->weight_decay;
    tc.total_steps = r->total_steps;
    tc.warmup_steps = (int)(c->warmup_ratio * (float)r->total_steps);
    tc.seed = c->seed;
    tc.max_tokens = r->capacity;
    bs_status st = trainer_open(base, &tc, &r->trainer, err);
    if (st == BS_OK && r->valid && !(r->best = malloc(trainer_n_params(r->trainer) * sizeof *r->best)))
        st = bs_fail(err, BS_ENOMEM, "rft: out of memory");
    if (st != BS_OK) {
        rft_close(r);
        return st;
    }
    *out = r;
    return BS_OK;
}

void rft_close(rft_run *r) {
    if (!r) return;
    trainer_close(r->trainer);
    train_order_free(&r->order);
    free(r->valid_idx);
    free(r->best);
    free(r);
}

int rft_best(const rft_run *r, double *valid) {
    *valid = r->best_valid;
    return r->best_step;
}

int rft_step(const rft_run *r) { return r->step; }
int rft_total_steps(const rft_run *r) { return r->total_steps; }
int64_t rft_trained_tokens(const rft_run *r) { return r->trained_tokens; }
const rft_config *rft_run_config(const rft_run *r) { return &r->c; }

/* ---- rollouts -------------------------------------------------------------- */

/* P prompts x G samples: the scheduler's tokens, then the sequences the
 * trainer sees (prompt + completion), texts and rewards. */
typedef struct samples {
    int P, G, n, cap;       /* n = P x G sequences; cap completion tokens */
    int stride;             /* longest prompt + cap */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;            /* choices not finished */
    int32_t *gen;           /* [n][cap] generated tokens */
    int *n_gen, *truncated, *failed;
    int32_t *seq;           /* [n][stride] */
    float *mask, *old, *ref; /* [n][stride] */
    int *lengths;
    const int32_t **seq_p;
    const float **mask_p, **old_p, **ref_p;
    float **old_w, **ref_w;
    char **texts;
    double *scores;
    float *rewards, *adv;
} samples;

typedef struct request_ctx {
    samples *s;
    int base;
} request_ctx;

static void samples_free(samples *s) {
    for (int i = 0; s->texts && i < s->n; i++) free(s->texts[i]);
    free(s->gen);
    free(s->n_gen);
    free(s->truncated);
    free(s->failed);
    free(s->seq);
    free(s->mask);
    free(s->old);
    free(s->ref);
    free(s->lengths);
    free(s->seq_p);
    free(s->mask_p);
    free(s->old_p);
    free(s->ref_p);
    free(s->old_w);
    free(s->ref_w);
    free(s->texts);
    free(s->scores);
    free(s->rewards);
    free(s->adv);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

static bs_status samples_init(samples *s, const rft_data *d, const size_t *idx, int P, int G, int cap,
                              bs_error *err) {
    int lp = 0;
    for (int i = 0; i < P; i++)
        if (d->p[idx[i]].n > lp) lp = d->p[idx[i]].n;
    int n = P * G;
    size_t sn = (size_t)n, stride = (size_t)lp + (size_t)cap;
    *s = (samples){.P = P, .G = G, .n = n, .cap = cap, .stride = (int)stride};
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->gen = malloc(sn * (size_t)cap * sizeof *s->gen);
    s->n_gen = calloc(sn, sizeof *s->n_gen);
    s->truncated = calloc(sn, sizeof *s->truncated);
    s->failed = calloc(sn, sizeof *s->failed);
    s->seq = malloc(sn * stride * sizeof *s->seq);
    s->mask = calloc(sn * stride, sizeof *s->mask);
    s->old = calloc(sn * stride, sizeof *s->old);
    s->ref = calloc(sn * stride, sizeof *s->ref);
    s->lengths = malloc(sn * sizeof *s->lengths);
    s->seq_p = malloc(sn * sizeof *s->seq_p);
    s->mask_p = malloc(sn * sizeof *s->mask_p);
    s->old_p = malloc(sn * sizeof *s->old_p);
    s->ref_p = malloc(sn * sizeof *s->ref_p);
    s->old_w = malloc(sn * sizeof *s->old_w);
    s->ref_w = malloc(sn * sizeof *s->ref_w);
    s->texts = calloc(sn, sizeof *s->texts);
    s->scores = malloc(sn * sizeof *s->scores);
    s->rewards = malloc(sn * sizeof *s->rewards);
    s->adv = malloc(sn * sizeof *s->adv);
    if (!s->gen || !s->n_gen || !s->truncated || !s->failed || !s->seq || !s->mask || !s->old || !s->ref ||
        !s->lengths || !s->seq_p || !s->mask_p || !s->old_p || !s->ref_p || !s->old_w || !s->ref_w || !s->texts ||
        !s->scores || !s->rewards || !s->adv)
        return bs_fail(err, BS_ENOMEM, "rft: out of memory");
    for (int i = 0; i < n; i++) {
        size_t o = (size_t)i * stride;
        s->seq_p[i] = s->seq + o;
        s->mask_p[i] = s->mask + o;
        s->old_p[i] = s->old_w[i] = s->old + o;
        s->ref_p[i] = s->ref_w[i] = s->ref + o;
    }
    return BS_OK;
}

/* On the scheduler thread. */
static void on_token(void *user, const bs_request_event *ev) {
    request_ctx *q = user;
    samples *s = q->s;
    int i = q->base + ev->choice;
    pthread_mutex_lock(&s->mu);
    if (ev->token >= 0 && s->n_gen[i] < s->cap) s->gen[(size_t)i * (size_t)s->cap + (size_t)s->n_gen[i]++] = ev->token;
    if (ev->finish_reason) {
        if (strcmp(ev->finish_reason, "length") == 0) s->truncated[i] = 1;
        else if (strcmp(ev->finish_reason, "stop") != 0) s->failed[i] = 1;
        s->pending--;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

static void wait_a_little(samples *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    pthread_mutex_unlock(&s->mu);
}

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t z = a * 0x9e3779b97f4a7c15ull ^ (b + 0xd1b54a32d192ed03ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The completion's text as the server streams it: valid UTF-8 (invalid
 * bytes become U+FFFD), special tokens rendered as nothing.  NULL when out
 * of memory. */
static char *decode_text(const bs_tokenizer *tok, const int32_t *ids, int n) {
    char *text = NULL, piece[512];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    tok_stream ts;
    tok_stream_init(&ts);
    for (int i = 0; i < n; i++) fwrite(piece, 1, tok_stream_push(tok, &ts, ids[i], 0, piece, sizeof piece), f);
    fwrite(piece, 1, tok_stream_flush(tok, &ts, piece, sizeof piece), f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* G samples for each of the prompts idx[0..P) over the base and the
 * trainer's current adapter; fills s's generations and sequences. */
static bs_status roll_out(rft_run *r, const rft_data *d, const size_t *idx, uint64_t key, samples *s, bs_error *err) {
    bs_adapter *a = NULL;
    request_ctx *ctx = calloc((size_t)s->P, sizeof *ctx);
    uint64_t *ids = calloc((size_t)s->P, sizeof *ids);
    bs_status st = ctx && ids ? train_adapter(r->trainer, r->model, NULL, &a, err)
                              : bs_fail(err, BS_ENOMEM, "rft: out of memory");
    int submitted = 0;
    for (; st == BS_OK && submitted < s->P; submitted++) {
        const rft_prompt *p = &d->p[idx[submitted]];
        bs_request_params rp = {.kind = BS_REQUEST_GENERATE, .prompt = p->ids, .n_prompt = p->n, .n = s->G,
                                .max_tokens = s->cap, .adapter = a};
        sampler_params_default(&rp.sampling);
        rp.sampling.temperature = r->c.temperature;
        rp.sampling.top_p = r->c.top_p;
        rp.sampling.seed = mix(key, (uint64_t)submitted);
        ctx[submitted] = (request_ctx){.s = s, .base = submitted * s->G};
        pthread_mutex_lock(&s->mu);
        s->pending += s->G;
        pthread_mutex_unlock(&s->mu);
        while ((st = scheduler_submit(r->sched, &rp, on_token, &ctx[submitted], &ids[submitted], err)) == BS_EBUSY)
            wait_a_little(s);
        if (st != BS_OK) {
            pthread_mutex_lock(&s->mu);
            s->pending -= s->G;
            pthread_mutex_unlock(&s->mu);
            break;
        }
    }
    adapter_close(a);
    if (st != BS_OK) {
        for (int i = 0; i < submitted; i++) scheduler_cancel(r->sched, ids[i]);
        free(ctx);
        free(ids);
        return st;
    }
    pthread_mutex_lock(&s->mu);
    while (s->pending > 0) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    free(ctx);
    free(ids);
    for (int i = 0; i < s->n; i++) {
        if (s->failed[i]) return bs_fail(err, BS_EIO, "rft: a rollout failed in the engine (see the log)");
        const rft_prompt *p = &d->p[idx[i / s->G]];
        const int32_t *g = s->gen + (size_t)i * (size_t)s->cap;
        int32_t *q = s->seq + (size_t)i * (size_t)s->stride;
        float *m = s->mask + (size_t)i * (size_t)s->stride;
        memcpy(q, p->ids, (size_t)p->n * sizeof *q);
        memcpy(q + p->n, g, (size_t)s->n_gen[i] * sizeof *q);
        for (int t = 0; t < s->n_gen[i]; t++) m[p->n + t] = 1;
        s->lengths[i] = p->n + s->n_gen[i];
        int n_text = s->n_gen[i];
        if (n_text > 0 && !s->truncated[i] && tok_is_eog(r->tok, g[n_text - 1])) n_text--;
        if (!(s->texts[i] = decode_text(r->tok, g, n_text))) return bs_fail(err, BS_ENOMEM, "rft: out of memory");
    }
    return BS_OK;
}

/* Adds the samples' numeric and boolean grader metrics into acc (name ->
 * [sum, count]). */
static void metrics_add(json_t *acc, const json_t *per_sample) {
    size_t i;
    json_t *o, *v;
    const char *k;
    json_array_foreach(per_sample, i, o) json_object_foreach(o, k, v) {
        if (!json_is_number(v) && !json_is_boolean(v)) continue;
        json_t *a = json_object_get(acc, k);
        if (!a) json_object_set_new(acc, k, a = json_pack("[f,i]", 0.0, 0));
        if (!a) continue;
        double x = json_is_boolean(v) ? json_is_true(v) : json_number_value(v);
        json_array_set_new(a, 0, json_real(json_number_value(json_array_get(a, 0)) + x));
        json_array_set_new(a, 1, json_integer(json_integer_value(json_array_get(a, 1)) + 1));
    }
}

/* name -> mean of metrics_add's sums, or NULL when there are none. */
static json_t *metrics_means(const json_t *acc) {
    if (!acc || !json_object_size(acc)) return NULL;
    json_t *out = json_object(), *a;
    const char *k;
    json_object_foreach((json_t *)acc, k, a)
        json_object_set_new(out, k, json_real(json_number_value(json_array_get(a, 0)) /
                                              (double)json_integer_value(json_array_get(a, 1))));
    return out;
}

/* Rewards of every sample; errs counts the unscorable by kind, acc (may be
 * NULL) sums the grader's per-sample metrics. */
static bs_status grade(rft_run *r, const rft_data *d, const size_t *idx, samples *s, reward_errors *errs,
                       json_t *acc, bs_error *err) {
    reward_sample *rs = calloc((size_t)s->n, sizeof *rs);
    json_t **convs = calloc((size_t)s->n, sizeof *convs);
    bs_status st = rs && convs ? BS_OK : bs_fail(err, BS_ENOMEM, "rft: out of memory");
    for (int i = 0; st == BS_OK && i < s->n; i++) {
        const rft_prompt *p = &d->p[idx[i / s->G]];
        convs[i] = json_copy((json_t *)p->messages);
        if (!convs[i] || json_array_append_new(convs[i], json_pack("{s:s,s:s}", "role", "assistant", "content",
                                                                   s->texts[i])) != 0)
            st = bs_fail(err, BS_ENOMEM, "rft: out of memory");
        rs[i] = (reward_sample){.messages = convs[i], .output_text = s->texts[i], .item = p->row};
    }
    json_t *metrics = NULL;
    if (st == BS_OK) st = reward_score_batch(r->grader, rs, s->n, s->scores, errs, acc ? &metrics : NULL, err);
    if (acc) metrics_add(acc, metrics);
    json_decref(metrics);
    for (int i = 0; convs && i < s->n; i++) json_decref(convs[i]);
    free(convs);
    free(rs);
    for (int i = 0; st == BS_OK && i < s->n; i++) s->rewards[i] = (float)s->scores[i];
    return st;
}

/* The end of the micro-batch starting at sequence i: as many sequences as
 * fit in capacity tokens (at least one). */
static int micro_end(const rft_run *r, const samples *s, int i) {
    int j = i, used = 0;
    while (j < s->n && (j == i || used + s->lengths[j] <= r->capacity)) used += s->lengths[j++];
    return j;
}

static bs_status logprobs_all(rft_run *r, samples *s, int adapter_on, float **out, bs_error *err) {
    for (int i = 0; i < s->n;) {
        int j = micro_end(r, s, i);
        bs_status st = trainer_token_logprobs(r->trainer, s->seq_p + i, s->lengths + i, j - i, adapter_on, out + i,
                                              NULL, err);
        if (st != BS_OK) return st;
        i = j;
    }
    return BS_OK;
}

/* Sample, grade and average the validation prompts idx[0..n). */
static bs_status eval_rewards(rft_run *r, const rft_data *d, const size_t *idx, size_t n, uint64_t key,
                              double *sum, int *count, json_t *acc, bs_error *err) {
    for (size_t first = 0; first < n; first += (size_t)r->c.batch_size) {
        int P = (int)(n - first < (size_t)r->c.batch_size ? n - first : (size_t)r->c.batch_size);
        samples s;
        bs_status st = samples_init(&s, d, idx + first, P, r->c.eval_samples, r->c.grpo.max_completion_len, err);
        if (st == BS_OK) st = roll_out(r, d, idx + first, mix(key, first), &s, err);
        if (st == BS_OK) st = grade(r, d, idx + first, &s, NULL, acc, err);
        for (int i = 0; st == BS_OK && i < s.n; i++)
            if (isfinite(s.scores[i])) {
                *sum += s.scores[i];
                ++*count;
            }
        samples_free(&s);
        if (st != BS_OK) return st;
    }
    return BS_OK;
}

/* rft_eval, also summing the grader's metrics into acc (may be NULL). */
static bs_status evaluate(rft_run *r, double *reward_mean, json_t *acc, bs_error *err) {
    *reward_mean = NAN;
    if (!r->valid) return bs_fail(err, BS_EINVAL, "rft: no validation prompts");
    double sum = 0;
    int count = 0;
    bs_status st = eval_rewards(r, r->valid, r->valid_idx, r->valid->n, mix(r->c.seed ^ 0x5eed, (uint64_t)r->step),
                                &sum, &count, acc, err);
    if (st == BS_OK) *reward_mean = count ? sum / count : NAN;
    return st;
}

bs_status rft_eval(rft_run *r, double *reward_mean, bs_error *err) { return evaluate(r, reward_mean, NULL, err); }

/* ---- checkpoints ----------------------------------------------------------- */

#define RFT_META_KIND 0x31544652u /* "RFT1" */

typedef struct ckpt_meta {
    uint32_t kind, pad;
    uint64_t n_train, seed;
    int32_t n_epochs, batch_size, group_size, rank;
    int32_t step, best_step;
    int64_t trained_tokens;
    double valid, best_valid; /* valid_reward_mean at step (NAN: not evaluated) and at best_step */
} ckpt_meta;

static void ckpt_expect(const rft_run *r, ckpt_meta *h) {
    *h = (ckpt_meta){.kind = RFT_META_KIND, .n_train = r->order.n_train, .seed = r->c.seed, .n_epochs = r->c.n_epochs,
                     .batch_size = r->c.batch_size, .group_size = r->c.grpo.group_size, .rank = r->c.lora.rank,
                     .step = r->step, .best_step = r->best_step, .trained_tokens = r->trained_tokens,
                     .valid = r->step_valid, .best_valid = r->best_valid};
}

static bs_status ckpt_check(void *user, const void *meta, const char *path, bs_error *err) {
    const rft_run *r = user;
    const ckpt_meta *h = meta;
    ckpt_meta want;
    ckpt_expect(r, &want);
    if (h->kind != want.kind || h->n_train != want.n_train || h->seed != want.seed || h->n_epochs != want.n_epochs ||
        h->batch_size != want.batch_size || h->group_size != want.group_size || h->rank != want.rank)
        return bs_fail(err, BS_EFORMAT,
                       "%s: made by a different run (prompts %llu, seed %llu, epochs %d, batch %d, group %d, rank %d; "
                       "this run has %llu, %llu, %d, %d, %d, %d)",
                       path, (unsigned long long)h->n_train, (unsigned long long)h->seed, h->n_epochs, h->batch_size,
                       h->group_size, h->rank, (unsigned long long)want.n_train, (unsigned long long)want.seed,
                       want.n_epochs, want.batch_size, want.group_size, want.rank);
    if (h->step < 0 || h->step > r->total_steps || h->best_step < 0 || h->best_step > h->step)
        return bs_fail(err, BS_EFORMAT, "%s: step %d (best %d) is outside 0..%d", path, h->step, h->best_step,
                       r->total_steps);
    return BS_OK;
}

static float *trained_values(rft_run *r) { return trainer_tensor(r->trainer, 0)->data; /* one block (trainer.h) */ }

/* The best weights so far become the current ones (keep) or are read from
 * the checkpoint of their step, a sibling of dir, which pruning keeps. */
static bs_status restore_best(rft_run *r, const char *dir, const ckpt_meta *h, bs_error *err) {
    size_t n = trainer_n_params(r->trainer);
    if (h->best_step == h->step) {
        memcpy(r->best, trained_values(r), n * sizeof *r->best);
        return BS_OK;
    }
    const char *slash = strrchr(dir, '/');
    char name[32], *parent = slash ? strndup(dir, (size_t)(slash - dir)) : strdup(".");
    snprintf(name, sizeof name, "checkpoint-%d", h->best_step);
    char *best_dir = parent ? bs_path_join(parent, name) : NULL;
    free(parent);
    if (!best_dir) return bs_fail(err, BS_ENOMEM, "rft: out of memory");
    ckpt_meta bm;
    bs_status st = train_state_peek(best_dir, &bm, sizeof bm, r->best, n, err);
    if (st == BS_OK && (bm.step != h->best_step || ckpt_check(r, &bm, best_dir, err) != BS_OK))
        st = bs_fail(err, BS_EFORMAT, "%s: not the best checkpoint (step %d) of this run", best_dir, h->best_step);
    free(best_dir);
    return st;
}

bs_status rft_save_checkpoint(rft_run *r, const char *dir, bs_error *err) {
    ckpt_meta h;
    ckpt_expect(r, &h);
    return train_state_save(r->trainer, r->model, &h, sizeof h, dir, err);
}

bs_status rft_load_checkpoint(rft_run *r, const char *dir, bs_error *err) {
    ckpt_meta h;
    bs_status st = train_state_load(r->trainer, dir, &h, sizeof h, ckpt_check, r, err);
    /* a run without validation prompts exports its last weights */
    int best = r->valid ? h.best_step : 0;
    if (st == BS_OK && best > 0) st = restore_best(r, dir, &h, err);
    if (st == BS_OK) {
        r->step = h.step;
        r->trained_tokens = h.trained_tokens;
        r->step_valid = h.valid;
        r->best_step = best;
        r->best_valid = best ? h.best_valid : NAN;
    }
    return st;
}

/* Exchanges the current and the best trained values. */
static void swap_best(rft_run *r) {
    float *v = trained_values(r);
    for (size_t i = 0, n = trainer_n_params(r->trainer); i < n; i++) {
        float t = v[i];
        v[i] = r->best[i];
        r->best[i] = t;
    }
}

bs_status rft_export(rft_run *r, const char *base_path, const char *base_name, const char *out_dir, bs_error *err) {
    if (r->best_step > 0) swap_best(r);
    bs_status st = train_export(r->trainer, r->model, base_path, base_name, out_dir, err);
    if (r->best_step > 0) swap_best(r);
    return st;
}

/* ---- the loop -------------------------------------------------------------- */

/* grpo_forward_backward over every micro-batch with the whole step's
 * totals, then one update; the loss is the sum of the micro-batches'
 * shares, the other statistics are averaged over loss tokens. */
static bs_status update(rft_run *r, samples *s, rft_progress *p, bs_error *err) {
    bs_grpo_batch all = {.n = s->n, .lengths = s->lengths, .mask = s->mask_p, .truncated = s->truncated};
    bs_grpo_totals totals;
    bs_status st = grpo_totals(&r->c.grpo, &all, &totals, err);
    double tokens = 0, loss = 0, kl = 0, clip = 0, entropy = 0;
    int n_backward = 0;
    for (int i = 0; st == BS_OK && i < s->n;) {
        int j = micro_end(r, s, i);
        bs_grpo_batch b = {.n = j - i, .lengths = s->lengths + i, .mask = s->mask_p + i, .truncated = s->truncated + i,
                           .adv = s->adv + i, .old_logp = s->old_p + i, .ref_logp = s->ref_p + i, .totals = &totals};
        bs_grpo_loss_stats ls;
        st = grpo_forward_backward(r->trainer, &r->c.grpo, s->seq_p + i, &b, &ls, err);
        tokens += ls.n_tokens;
        loss += ls.loss;
        kl += (double)ls.kl * ls.n_tokens;
        clip += (double)ls.clip_region * ls.n_tokens;
        entropy += (double)ls.entropy * ls.n_tokens;
        n_backward += ls.backward;
        i = j;
    }
    if (st != BS_OK) return st;
    p->loss = loss;
    if (tokens > 0) {
        p->kl = kl / tokens;
        p->clip_ratio = clip / tokens;
        p->entropy = entropy / tokens;
    }
    float norm = 0, lr = 0;
    st = grpo_step(r->trainer, n_backward, &norm, &lr, err);
    p->grad_norm = norm;
    p->lr = lr;
    return st;
}

/* One step's rollouts, grading, advantages and update into p. */
static bs_status run_step(rft_run *r, const size_t *idx, int P, rft_progress *p, json_t *acc, bs_error *err) {
    samples s;
    const bs_grpo_config *g = &r->c.grpo;
    bs_status st = samples_init(&s, r->train, idx, P, g->group_size, g->max_completion_len, err);
    double t0 = bs_now();
    if (st == BS_OK) st = roll_out(r, r->train, idx, mix(r->c.seed, (uint64_t)r->step), &s, err);
    double t1 = bs_now();
    if (st == BS_OK) st = grade(r, r->train, idx, &s, &p->grader_errors, acc, err);
    double t2 = bs_now();
    p->sample_s = t1 - t0;
    p->grade_s = t2 - t1;
    p->n_samples = s.n;
    bs_grpo_reward_stats rs = {0};
    if (st == BS_OK) {
        for (int i = 0; i < s.n; i++) p->n_unscored += !isfinite(s.scores[i]);
        if (p->n_unscored > (double)r->c.max_unscored_frac * s.n) {
            char kinds[256] = "";
            size_t k = 0;
            for (int e = 0; e < REWARD_ERR_KINDS && k < sizeof kinds; e++)
                if (p->grader_errors.count[e])
                    k += (size_t)snprintf(kinds + k, sizeof kinds - k, "%s%s %d", k ? ", " : "",
                                          reward_error_name((reward_error_kind)e), p->grader_errors.count[e]);
            st = bs_fail(err, BS_ERANGE,
                         "the grader could not score %d of %d samples, more than the allowed %.0f%% (%s); first "
                         "error: %s",
                         p->n_unscored, s.n, 100.0 * r->c.max_unscored_frac, k ? kinds : "no error counted",
                         p->grader_errors.first[0] ? p->grader_errors.first : "none");
        }
    }
    if (st == BS_OK) st = grpo_advantages(g, s.rewards, s.truncated, s.n, s.adv, &rs, err);
    int any = g->beta != 0;
    for (int i = 0; st == BS_OK && i < s.n; i++) any |= s.adv[i] != 0;
    if (st == BS_OK && any) st = logprobs_all(r, &s, 1, s.old_w, err);
    if (st == BS_OK && any && g->beta != 0) st = logprobs_all(r, &s, 0, s.ref_w, err);
    if (st == BS_OK && any) st = update(r, &s, p, err);
    p->train_s = bs_now() - t2;
    if (st == BS_OK) {
        p->train_reward_mean = rs.reward_mean;
        p->train_reward_std = rs.reward_std;
        p->frac_reward_zero_std = rs.frac_reward_zero_std;
        p->truncated_frac = (double)rs.n_truncated / s.n;
        double len = 0;
        for (int i = 0; i < s.n; i++) {
            len += s.n_gen[i];
            if (s.n_gen[i] > p->completion_len_max) p->completion_len_max = s.n_gen[i];
            r->trained_tokens += s.lengths[i];
        }
        p->completion_len_mean = len / s.n;
    }
    samples_free(&s);
    return st;
}

/* A checkpoint in the root, for pruning. */
typedef struct kept {
    int step;
    double valid; /* NAN: not evaluated */
} kept;

/* Best first: evaluated before not; higher valid_reward_mean, on ties the
 * older (as rft_best, whose checkpoint must stay); unevaluated ones newer
 * first. */
static int by_rank(const void *pa, const void *pb) {
    const kept *a = pa, *b = pb;
    if (isnan(a->valid) != isnan(b->valid)) return isnan(a->valid) ? 1 : -1;
    if (isnan(a->valid)) return (b->step > a->step) - (b->step < a->step);
    if (a->valid != b->valid) return a->valid > b->valid ? -1 : 1;
    return (a->step > b->step) - (a->step < b->step);
}

/* Removes every checkpoint in root but the latest and the best
 * keep_checkpoints; the checkpoints' own meta blocks rank them, so
 * checkpoints of earlier sessions (resume) count too. */
static bs_status prune(rft_run *r, const char *root, const rft_hooks *h, bs_error *err) {
    DIR *d = opendir(root);
    if (!d) return bs_fail(err, BS_EIO, "%s: cannot list checkpoints", root);
    kept *k = NULL;
    size_t n = 0, cap = 0;
    bs_status st = BS_OK;
    struct dirent *e;
    while (st == BS_OK && (e = readdir(d))) {
        int step, used = 0;
        if (sscanf(e->d_name, "checkpoint-%d%n", &step, &used) != 1 || e->d_name[used] != '\0') continue;
        char *dir = bs_path_join(root, e->d_name);
        ckpt_meta m;
        bs_error ignored = {0}; /* not one of this run's: not ours to remove */
        if (!dir) st = bs_fail(err, BS_ENOMEM, "rft: out of memory");
        else if (train_state_peek(dir, &m, sizeof m, NULL, 0, &ignored) == BS_OK && m.kind == RFT_META_KIND &&
                 m.step == step) {
            if (n == cap) {
                kept *q = realloc(k, (cap = cap ? 2 * cap : 16) * sizeof *k);
                if (!q) st = bs_fail(err, BS_ENOMEM, "rft: out of memory");
                else k = q;
            }
            if (st == BS_OK) k[n++] = (kept){.step = step, .valid = m.valid};
        }
        free(dir);
    }
    closedir(d);
    int latest = 0;
    for (size_t i = 0; i < n; i++)
        if (k[i].step > latest) latest = k[i].step;
    if (st == BS_OK) qsort(k, n, sizeof *k, by_rank);
    for (size_t i = (size_t)r->c.keep_checkpoints; st == BS_OK && i < n; i++) {
        if (k[i].step == latest) continue;
        char name[32];
        snprintf(name, sizeof name, "checkpoint-%d", k[i].step);
        char *dir = bs_path_join(root, name);
        if (!dir) st = bs_fail(err, BS_ENOMEM, "rft: out of memory");
        else st = bs_remove_tree(dir, err);
        if (st == BS_OK && h && h->on_checkpoint_removed) st = h->on_checkpoint_removed(h->user, dir, err);
        free(dir);
    }
    free(k);
    return st;
}

static bs_status checkpoint_at(rft_run *r, const char *root, const rft_hooks *h, const rft_progress *p,
                               bs_error *err) {
    ckpt_meta m;
    ckpt_expect(r, &m);
    char *dir = NULL;
    bs_status st = train_state_checkpoint(r->trainer, r->model, &m, sizeof m, root, r->step, &dir, err);
    if (st == BS_OK && h && h->on_checkpoint) st = h->on_checkpoint(h->user, p, dir, err);
    free(dir);
    if (st == BS_OK) st = prune(r, root, h, err);
    return st;
}

/* The validation after step r->step into p; a new best keeps its weights. */
static bs_status validate(rft_run *r, rft_progress *p, json_t *acc, bs_error *err) {
    double t0 = bs_now();
    bs_status st = evaluate(r, &p->valid_reward_mean, acc, err);
    p->eval_s = bs_now() - t0;
    r->step_valid = p->valid_reward_mean;
    if (st == BS_OK && isfinite(r->step_valid) && (r->best_step == 0 || r->step_valid > r->best_valid)) {
        r->best_step = r->step;
        r->best_valid = r->step_valid;
        memcpy(r->best, trained_values(r), trainer_n_params(r->trainer) * sizeof *r->best);
    }
    return st;
}

bs_status rft_train(rft_run *r, const char *checkpoint_root, const rft_hooks *h, int *finished, bs_error *err) {
    *finished = r->step >= r->total_steps;
    double t0 = bs_now();
    int step0 = r->step;
    int threads = r->c.threads > 0 ? r->c.threads : bs_cpu_count();
    bs_status st = BS_OK;
    while (st == BS_OK && r->step < r->total_steps) {
        openblas_set_num_threads(threads);
        int epoch;
        size_t n;
        const size_t *idx = train_order_step(&r->order, r->step, &epoch, &n);
        rft_progress p = {.step = r->step + 1, .total_steps = r->total_steps, .epoch = epoch + 1,
                          .n_epochs = r->c.n_epochs, .valid_reward_mean = NAN};
        json_t *acc = json_object(), *vacc = json_object(), *scores = NULL, *vscores = NULL;
        if (!acc || !vacc) st = bs_fail(err, BS_ENOMEM, "rft: out of memory");
        if (st == BS_OK && run_step(r, idx, (int)n, &p, acc, err) != BS_OK)
            st = bs_wrap(err, "step %d", r->step + 1);
        int last = 0, evaluated = 0, stop = 0;
        if (st == BS_OK) {
            r->step++;
            r->step_valid = NAN;
            last = r->step == r->total_steps;
            evaluated = r->valid && (last || r->step % r->c.eval_every == 0);
            if (evaluated && validate(r, &p, vacc, err) != BS_OK) st = bs_wrap(err, "validation at step %d", r->step);
        }
        if (st == BS_OK) {
            p.grader_scores = scores = metrics_means(acc);
            p.valid_grader_scores = vscores = metrics_means(vacc);
            p.elapsed_s = bs_now() - t0;
            p.eta_s = p.elapsed_s / (r->step - step0) * (r->total_steps - r->step);
            stop = h && h->on_step && h->on_step(h->user, &p);
            if (checkpoint_root && r->c.checkpoint_every > 0 &&
                (last || evaluated || r->step % r->c.checkpoint_every == 0))
                st = checkpoint_at(r, checkpoint_root, h, &p, err);
        }
        json_decref(acc);
        json_decref(vacc);
        json_decref(scores);
        json_decref(vscores);
        if (stop) break;
    }
    *finished = r->step >= r->total_steps;
    return st;
}
