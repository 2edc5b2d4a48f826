/* train/sft.c — the supervised fine-tuning loop over train/trainer.h: the
 * "auto" rules, the seeded data order, micro-batching, validation,
 * checkpoints that resume exactly, and export (PEFT adapter or HF weights). */
#include "train/sft.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/log.h"
#include "base/paths.h"
#include "base/threadpool.h"
#include "engine/adapter.h"
#include "train/train_state.h"

/* The bases the learning-rate multiplier scales (see sft.h). */
#define SFT_LORA_LR 1e-4
#define SFT_FULL_LR 2e-5
#define SFT_DEFAULT_MAX_LENGTH 1024
#define SFT_DEFAULT_RANK 16
/* Intervals "auto" picks: about this many checkpoints / evaluations a run. */
#define SFT_AUTO_INTERVALS 10

struct sft_run {
    bs_model *model;
    sft_config c;
    bs_trainer *trainer;
    const dataset *train, *valid;
    train_order order;      /* the seeded data order */
    int total_steps;
    int step;               /* updates done */
    int64_t trained_tokens;
    int capacity;           /* tokens per micro-batch */
    float *masks;           /* [capacity] the current micro-batch's loss weights */
    const int32_t **tokens; /* [batch] micro-batch views */
    const float **mask_ptrs;
    int *lengths;
    size_t *valid_idx;      /* 0..n_valid-1, for sft_eval */
};

/* ---- config ---------------------------------------------------------------- */

void sft_config_default(sft_config *c) { *c = (sft_config){0}; }

static int clamp_int(double v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

bs_status sft_resolve(sft_config *c, size_t n, bs_error *err) {
    if (n == 0) return bs_fail(err, BS_EINVAL, "sft: the training set has no sequences");
    if (c->n_epochs == 0) {
        double e = 3;
        if (n * 3 < 100) e = fmin(25, ceil(100.0 / (double)n));
        else if (n * 3 > 25000) e = fmax(1, floor(25000.0 / (double)n));
        c->n_epochs = (int)e;
    }
    if (c->batch_size == 0) c->batch_size = clamp_int(ceil(0.002 * (double)n), 1, c->full ? 256 : 32);
    if (c->lr_multiplier == 0) c->lr_multiplier = 1;
    if (c->lr == 0) c->lr = (c->full ? SFT_FULL_LR : SFT_LORA_LR) * c->lr_multiplier;
    if (c->max_length == 0) c->max_length = SFT_DEFAULT_MAX_LENGTH;
    if (!c->full) {
        if (c->lora.rank == 0) c->lora.rank = SFT_DEFAULT_RANK;
        if (c->lora.alpha == 0) c->lora.alpha = 2.0f * (float)c->lora.rank;
        if (c->lora.targets == 0) c->lora.targets = BS_LORA_ALL_LINEAR;
    }
    if (c->n_epochs < 1 || c->n_epochs > 50) return bs_fail(err, BS_EINVAL, "n_epochs: %d is outside 1..50", c->n_epochs);
    if (c->batch_size < 1 || c->batch_size > 256)
        return bs_fail(err, BS_EINVAL, "batch_size: %d is outside 1..256", c->batch_size);
    if (!(c->lr_multiplier > 0) || !(c->lr > 0) || !isfinite(c->lr))
        return bs_fail(err, BS_EINVAL, "learning_rate_multiplier: must be > 0 (learning rate %g)", c->lr);
    if (!(c->warmup_ratio >= 0 && c->warmup_ratio < 1))
        return bs_fail(err, BS_EINVAL, "warmup_ratio: %g is outside [0, 1)", c->warmup_ratio);
    if (c->max_length < 2 || c->max_length > (1 << 20))
        return bs_fail(err, BS_EINVAL, "max_length: %d is outside 2..%d", c->max_length, 1 << 20);
    if (!c->full && (c->lora.rank < 1 || c->lora.rank > BS_ADAPTER_MAX_RANK))
        return bs_fail(err, BS_EINVAL, "lora_rank: %d is outside 1..%d", c->lora.rank, BS_ADAPTER_MAX_RANK);
    if (!c->full && !(c->lora.alpha > 0)) return bs_fail(err, BS_EINVAL, "lora_alpha: %g must be > 0", c->lora.alpha);
    if (!c->full && !(c->lora.dropout >= 0 && c->lora.dropout < 1))
        return bs_fail(err, BS_EINVAL, "lora_dropout: %g is outside [0, 1)", c->lora.dropout);
    int total = c->n_epochs * (int)((n + (size_t)c->batch_size - 1) / (size_t)c->batch_size);
    int auto_every = total / SFT_AUTO_INTERVALS > 1 ? (total + SFT_AUTO_INTERVALS - 1) / SFT_AUTO_INTERVALS : 1;
    if (c->checkpoint_every == 0) c->checkpoint_every = auto_every;
    if (c->eval_every <= 0) c->eval_every = auto_every;
    return BS_OK;
}

void sft_dataset_opts(const sft_config *c, dataset_opts *o) {
    dataset_opts_default(o);
    o->max_length = c->max_length > 0 ? c->max_length : SFT_DEFAULT_MAX_LENGTH;
    o->pack = 0;
}

/* ---- open / close ---------------------------------------------------------- */

static size_t longest(const dataset *ds) {
    size_t m = 0;
    for (size_t i = 0; ds && i < dataset_count(ds); i++) {
        dataset_seq s;
        dataset_get(ds, i, &s);
        if (s.len > m) m = s.len;
    }
    return m;
}

bs_status sft_open(bs_model *base, const sft_config *c, const dataset *train, const dataset *valid, sft_run **out,
                   bs_error *err) {
    *out = NULL;
    if (c->n_epochs < 1 || c->batch_size < 1 || !(c->lr > 0) || c->max_length < 2 || c->eval_every < 1)
        return bs_fail(err, BS_EINVAL, "sft: the config is not resolved (call sft_resolve)");
    size_t n = dataset_count(train);
    if (n == 0) return bs_fail(err, BS_EINVAL, "sft: the training set has no sequences");
    sft_run *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "sft: out of memory");
    r->model = base;
    r->c = *c;
    r->train = train;
    r->valid = valid && dataset_count(valid) ? valid : NULL;
    train_order_init(&r->order, c->seed, n, c->batch_size);
    r->total_steps = r->order.steps_per_epoch * c->n_epochs;
    size_t cap = longest(train), vcap = longest(r->valid);
    if (vcap > cap) cap = vcap;
    if ((size_t)c->max_length > cap) cap = (size_t)c->max_length;
    r->capacity = (int)cap;
    size_t nv = r->valid ? dataset_count(r->valid) : 0, nb = (size_t)c->batch_size > nv ? (size_t)c->batch_size : nv;
    r->masks = malloc(cap * sizeof *r->masks);
    r->tokens = malloc(nb * sizeof *r->tokens);
    r->mask_ptrs = malloc(nb * sizeof *r->mask_ptrs);
    r->lengths = malloc(nb * sizeof *r->lengths);
    r->valid_idx = malloc((nv ? nv : 1) * sizeof *r->valid_idx);
    if (!r->order.perm || !r->masks || !r->tokens || !r->mask_ptrs || !r->lengths || !r->valid_idx) {
        sft_close(r);
        return bs_fail(err, BS_ENOMEM, "sft: out of memory");
    }
    for (size_t i = 0; i < nv; i++) r->valid_idx[i] = i;
    bs_train_config tc;
    train_config_default(&tc);
    tc.full = c->full;
    if (!c->full) tc.lora = c->lora;
    tc.lr = (float)c->lr;
    tc.weight_decay = c->weight_decay;
    tc.total_steps = r->total_steps;
    tc.warmup_steps = (int)(c->warmup_ratio * (float)r->total_steps);
    tc.seed = c->seed;
    tc.max_tokens = r->capacity;
    bs_status st = trainer_open(base, &tc, &r->trainer, err);
    if (st != BS_OK) {
        sft_close(r);
        return st;
    }
    *out = r;
    return BS_OK;
}

void sft_close(sft_run *r) {
    if (!r) return;
    trainer_close(r->trainer);
    train_order_free(&r->order);
    free(r->masks);
    free(r->tokens);
    free(r->mask_ptrs);
    free(r->lengths);
    free(r->valid_idx);
    free(r);
}

int sft_step(const sft_run *r) { return r->step; }
int sft_total_steps(const sft_run *r) { return r->total_steps; }
int64_t sft_trained_tokens(const sft_run *r) { return r->trained_tokens; }
const sft_config *sft_run_config(const sft_run *r) { return &r->c; }
bs_trainer *sft_trainer(sft_run *r) { return r->trainer; }

/* ---- micro-batches --------------------------------------------------------- */

typedef struct batch_sums {
    double loss_x_weight, weight; /* sum of micro-batch loss x its target tokens; target tokens */
    int64_t tokens;
} batch_sums;

/* Runs sequences idx[0..n) of ds through the trainer in micro-batches of at
 * most capacity tokens: forward/backward when train, forward only else. */
static bs_status run_sequences(sft_run *r, const dataset *ds, const size_t *idx, size_t n, int train, batch_sums *sum,
                               bs_error *err) {
    size_t i = 0;
    while (i < n) {
        int B = 0;
        size_t used = 0;
        double weight = 0;
        for (; i < n; i++) {
            dataset_seq s;
            dataset_get(ds, idx[i], &s);
            if (B > 0 && used + s.len > (size_t)r->capacity) break;
            float *m = r->masks + used;
            for (size_t t = 0; t < s.len; t++) {
                m[t] = s.loss_mask[t];
                if (t > 0) weight += s.loss_mask[t];
            }
            r->tokens[B] = s.tokens;
            r->mask_ptrs[B] = m;
            r->lengths[B] = (int)s.len;
            used += s.len;
            sum->tokens += (int64_t)s.len;
            B++;
        }
        float loss = 0;
        bs_status st = train ? trainer_forward_backward(r->trainer, r->tokens, r->mask_ptrs, r->lengths, B, &loss, err)
                             : trainer_eval_loss(r->trainer, r->tokens, r->mask_ptrs, r->lengths, B, &loss, err);
        if (st != BS_OK) return st;
        sum->loss_x_weight += (double)loss * weight;
        sum->weight += weight;
    }
    return BS_OK;
}

bs_status sft_eval(sft_run *r, double *loss, bs_error *err) {
    *loss = NAN;
    if (!r->valid) return bs_fail(err, BS_EINVAL, "sft: no validation set");
    batch_sums sum = {0};
    bs_status st = run_sequences(r, r->valid, r->valid_idx, dataset_count(r->valid), 0, &sum, err);
    if (st == BS_OK) *loss = sum.weight > 0 ? sum.loss_x_weight / sum.weight : 0;
    return st;
}

/* ---- checkpoints ----------------------------------------------------------- */

/* The SFT meta block of a checkpoint (train/train_state.h): what must agree
 * with the run loading it, then where the run stood. */
typedef struct ckpt_meta {
    uint64_t n_train, seed;
    int32_t n_epochs, batch_size, full, rank;
    int32_t step, pad;
    int64_t trained_tokens;
} ckpt_meta;

static void ckpt_expect(const sft_run *r, ckpt_meta *h) {
    *h = (ckpt_meta){.n_train = r->order.n_train, .seed = r->c.seed, .n_epochs = r->c.n_epochs,
                     .batch_size = r->c.batch_size, .full = r->c.full, .rank = r->c.full ? 0 : r->c.lora.rank,
                     .step = r->step, .trained_tokens = r->trained_tokens};
}

bs_status sft_save_checkpoint(sft_run *r, const char *dir, bs_error *err) {
    ckpt_meta h;
    ckpt_expect(r, &h);
    return train_state_save(r->trainer, r->model, &h, sizeof h, dir, err);
}

static bs_status ckpt_check(void *user, const void *meta, const char *path, bs_error *err) {
    const sft_run *r = user;
    const ckpt_meta *h = meta;
    ckpt_meta want;
    ckpt_expect(r, &want);
    if (h->n_train != want.n_train || h->seed != want.seed || h->n_epochs != want.n_epochs ||
        h->batch_size != want.batch_size || h->full != want.full || h->rank != want.rank)
        return bs_fail(err, BS_EFORMAT,
                       "%s: made by a different run (sequences %llu, seed %llu, epochs %d, batch %d, rank %d; this "
                       "run has %llu, %llu, %d, %d, %d)",
                       path, (unsigned long long)h->n_train, (unsigned long long)h->seed, h->n_epochs, h->batch_size,
                       h->rank, (unsigned long long)want.n_train, (unsigned long long)want.seed, want.n_epochs,
                       want.batch_size, want.rank);
    if (h->step < 0 || h->step > r->total_steps)
        return bs_fail(err, BS_EFORMAT, "%s: step %d is outside 0..%d", path, h->step, r->total_steps);
    return BS_OK;
}

bs_status sft_load_checkpoint(sft_run *r, const char *dir, bs_error *err) {
    ckpt_meta h;
    bs_status st = train_state_load(r->trainer, dir, &h, sizeof h, ckpt_check, r, err);
    if (st == BS_OK) {
        r->step = h.step;
        r->trained_tokens = h.trained_tokens;
    }
    return st;
}

/* ---- the loop -------------------------------------------------------------- */

static bs_status checkpoint_at(sft_run *r, const char *root, const sft_hooks *h, const sft_progress *p,
                               bs_error *err) {
    ckpt_meta m;
    ckpt_expect(r, &m);
    char *dir = NULL;
    bs_status st = train_state_checkpoint(r->trainer, r->model, &m, sizeof m, root, r->step, &dir, err);
    if (st == BS_OK && h && h->on_checkpoint) st = h->on_checkpoint(h->user, p, dir, err);
    free(dir);
    return st;
}

bs_status sft_train(sft_run *r, const char *checkpoint_root, const sft_hooks *h, int *finished, bs_error *err) {
    *finished = r->step >= r->total_steps;
    double t0 = bs_now();
    int64_t tokens0 = r->trained_tokens;
    int step0 = r->step;
    int threads = r->c.threads > 0 ? r->c.threads : bs_cpu_count();
    while (r->step < r->total_steps) {
        /* Set per step: the thread count is process-wide and others may change it. */
        openblas_set_num_threads(threads);
        int epoch;
        size_t n;
        const size_t *idx = train_order_step(&r->order, r->step, &epoch, &n);
        batch_sums sum = {0};
        bs_status st = run_sequences(r, r->train, idx, n, 1, &sum, err);
        float norm = 0, lr = 0;
        /* A batch without target tokens leaves no gradient: nothing to update. */
        if (st == BS_OK && sum.weight > 0) st = trainer_step(r->trainer, &norm, &lr, err);
        if (st != BS_OK) return bs_wrap(err, "step %d", r->step + 1);
        r->step++;
        r->trained_tokens += sum.tokens;
        sft_progress p = {.step = r->step, .total_steps = r->total_steps, .epoch = epoch + 1,
                          .n_epochs = r->c.n_epochs, .train_loss = sum.weight > 0 ? sum.loss_x_weight / sum.weight : 0,
                          .valid_loss = NAN, .lr = lr, .grad_norm = norm, .trained_tokens = r->trained_tokens};
        int last = r->step == r->total_steps;
        if (r->valid && (last || r->step % r->c.eval_every == 0) && sft_eval(r, &p.valid_loss, err) != BS_OK)
            return bs_wrap(err, "validation at step %d", r->step);
        p.elapsed_s = bs_now() - t0;
        p.tokens_per_s = p.elapsed_s > 0 ? (double)(r->trained_tokens - tokens0) / p.elapsed_s : 0;
        p.eta_s = p.elapsed_s / (r->step - step0) * (r->total_steps - r->step);
        int stop = h && h->on_step && h->on_step(h->user, &p);
        if (checkpoint_root && r->c.checkpoint_every > 0 && (last || r->step % r->c.checkpoint_every == 0) &&
            checkpoint_at(r, checkpoint_root, h, &p, err) != BS_OK)
            return err->status;
        if (stop) break;
    }
    *finished = r->step >= r->total_steps;
    return BS_OK;
}

/* ---- export ---------------------------------------------------------------- */

bs_status sft_export(sft_run *r, const char *base_path, const char *base_name, const char *out_dir, bs_error *err) {
    return train_export(r->trainer, r->model, base_path, base_name, out_dir, err);
}
