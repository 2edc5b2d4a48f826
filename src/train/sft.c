/* train/sft.c — the supervised fine-tuning loop over train/trainer.h: the
 * "auto" rules, the seeded data order, micro-batching, validation,
 * checkpoints that resume exactly, and export (PEFT adapter or HF weights). */
#include "train/sft.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/log.h"
#include "base/paths.h"
#include "base/threadpool.h"
#include "engine/adapter.h"
#include "format/safetensors_write.h"

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
    size_t n_train;
    int steps_per_epoch, total_steps;
    int step;               /* updates done */
    int64_t trained_tokens;
    int capacity;           /* tokens per micro-batch */
    size_t *perm;           /* the order of perm_epoch */
    int perm_epoch;         /* -1: none yet */
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
    r->n_train = n;
    r->perm_epoch = -1;
    r->steps_per_epoch = (int)((n + (size_t)c->batch_size - 1) / (size_t)c->batch_size);
    r->total_steps = r->steps_per_epoch * c->n_epochs;
    size_t cap = longest(train), vcap = longest(r->valid);
    if (vcap > cap) cap = vcap;
    if ((size_t)c->max_length > cap) cap = (size_t)c->max_length;
    r->capacity = (int)cap;
    size_t nv = r->valid ? dataset_count(r->valid) : 0, nb = (size_t)c->batch_size > nv ? (size_t)c->batch_size : nv;
    r->perm = malloc(n * sizeof *r->perm);
    r->masks = malloc(cap * sizeof *r->masks);
    r->tokens = malloc(nb * sizeof *r->tokens);
    r->mask_ptrs = malloc(nb * sizeof *r->mask_ptrs);
    r->lengths = malloc(nb * sizeof *r->lengths);
    r->valid_idx = malloc((nv ? nv : 1) * sizeof *r->valid_idx);
    if (!r->perm || !r->masks || !r->tokens || !r->mask_ptrs || !r->lengths || !r->valid_idx) {
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
    free(r->perm);
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

/* ---- data order ------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fisher-Yates from a generator keyed by (seed, epoch) alone, so any epoch's
 * order can be rebuilt on resume without replaying earlier ones. */
static void shuffle_for(sft_run *r, int epoch) {
    if (r->perm_epoch == epoch) return;
    uint64_t s = r->c.seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(epoch + 1));
    for (size_t i = 0; i < r->n_train; i++) r->perm[i] = i;
    for (size_t i = r->n_train; i > 1; i--) {
        size_t j = (size_t)(splitmix(&s) % i);
        size_t t = r->perm[i - 1];
        r->perm[i - 1] = r->perm[j];
        r->perm[j] = t;
    }
    r->perm_epoch = epoch;
}

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

#define CKPT_STATE "trainer_state.bin"
#define CKPT_MAGIC 0x54465342u /* "BSFT" */
#define CKPT_VERSION 1u

/* What a checkpoint must agree on with the run loading it, then where the
 * run stood.  Followed by the trained values and the moments (f32). */
typedef struct ckpt_header {
    uint32_t magic, version;
    uint64_t n_params, n_train, seed;
    int32_t n_epochs, batch_size, full, rank;
    int32_t step, trainer_steps;
    uint64_t micro_batches;
    int64_t trained_tokens;
} ckpt_header;

static void ckpt_expect(const sft_run *r, ckpt_header *h) {
    *h = (ckpt_header){.magic = CKPT_MAGIC, .version = CKPT_VERSION, .n_params = trainer_n_params(r->trainer),
                       .n_train = r->n_train, .seed = r->c.seed, .n_epochs = r->c.n_epochs,
                       .batch_size = r->c.batch_size, .full = r->c.full, .rank = r->c.full ? 0 : r->c.lora.rank};
}

static bs_status write_all(FILE *f, const void *p, size_t n, const char *path, bs_error *err) {
    if (n && fwrite(p, 1, n, f) != n) return bs_fail(err, BS_EIO, "%s: write failed: %s", path, strerror(errno));
    return BS_OK;
}

/* The trained values are one block in tensor order (trainer.h), so the
 * first tensor's data pointer starts it. */
static float *params_of(sft_run *r) { return trainer_tensor(r->trainer, 0)->data; }

static bs_status write_state(sft_run *r, const char *path, bs_error *err) {
    ckpt_header h;
    ckpt_expect(r, &h);
    h.step = r->step;
    trainer_counters(r->trainer, &h.trainer_steps, &h.micro_batches);
    h.trained_tokens = r->trained_tokens;
    FILE *f = fopen(path, "wb");
    if (!f) return bs_fail(err, BS_EIO, "%s: %s", path, strerror(errno));
    size_t n = trainer_n_params(r->trainer);
    bs_status st = write_all(f, &h, sizeof h, path, err);
    if (st == BS_OK) st = write_all(f, params_of(r), n * sizeof(float), path, err);
    if (st == BS_OK) st = write_all(f, trainer_moments(r->trainer), 2 * n * sizeof(float), path, err);
    if (st == BS_OK && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        st = bs_fail(err, BS_EIO, "%s: %s", path, strerror(errno));
    if (fclose(f) != 0 && st == BS_OK) st = bs_fail(err, BS_EIO, "%s: %s", path, strerror(errno));
    return st;
}

/* The LoRA tensors as the adapter module takes them. */
static bs_status make_adapter(sft_run *r, const char *base_name, bs_adapter **out, bs_error *err) {
    int n = trainer_n_tensors(r->trainer);
    bs_adapter_tensor *ts = calloc((size_t)n, sizeof *ts);
    if (!ts) return bs_fail(err, BS_ENOMEM, "sft: out of memory");
    for (int i = 0; i < n; i++) {
        const bs_train_tensor *x = trainer_tensor(r->trainer, i);
        ts[i] = (bs_adapter_tensor){.name = x->name, .data = x->data, .rows = x->rows, .cols = x->cols};
    }
    bs_adapter_config ac = {.rank = r->c.lora.rank, .alpha = r->c.lora.alpha, .rslora = r->c.lora.rslora,
                            .targets = r->c.lora.targets, .base_model = base_name};
    bs_status st = adapter_from_tensors(r->model, &ac, ts, n, out, err);
    free(ts);
    return st;
}

/* Removes dir and the plain files in it (a checkpoint holds nothing else). */
static void remove_tree(const char *dir) {
    static const char *const names[] = {CKPT_STATE, "adapter_config.json", "adapter_model.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = bs_path_join(dir, names[i]);
        if (p) unlink(p);
        free(p);
    }
    rmdir(dir);
}

bs_status sft_save_checkpoint(sft_run *r, const char *dir, bs_error *err) {
    size_t n = strlen(dir);
    char *tmp = malloc(n + 5), *state = NULL;
    if (!tmp) return bs_fail(err, BS_ENOMEM, "sft: out of memory");
    snprintf(tmp, n + 5, "%s.tmp", dir);
    remove_tree(tmp);
    bs_status st = bs_make_dirs(tmp, 0755, err);
    if (st == BS_OK && !(state = bs_path_join(tmp, CKPT_STATE))) st = bs_fail(err, BS_ENOMEM, "sft: out of memory");
    if (st == BS_OK) st = write_state(r, state, err);
    if (st == BS_OK && !r->c.full) {
        bs_adapter *a = NULL;
        st = make_adapter(r, NULL, &a, err);
        if (st == BS_OK) st = adapter_save_peft(a, tmp, NULL, BS_DTYPE_F32, err);
        adapter_close(a);
    }
    if (st == BS_OK) {
        remove_tree(dir);
        if (rename(tmp, dir) != 0) st = bs_fail(err, BS_EIO, "%s: %s", dir, strerror(errno));
    }
    if (st != BS_OK) remove_tree(tmp);
    free(state);
    free(tmp);
    return st;
}

bs_status sft_load_checkpoint(sft_run *r, const char *dir, bs_error *err) {
    char *path = bs_path_join(dir, CKPT_STATE), *data = NULL;
    size_t size = 0;
    if (!path) return bs_fail(err, BS_ENOMEM, "sft: out of memory");
    bs_status st = bs_file_read(path, &data, &size, err);
    size_t n = trainer_n_params(r->trainer);
    ckpt_header want, h;
    ckpt_expect(r, &want);
    if (st == BS_OK && size != sizeof h + 3 * n * sizeof(float))
        st = bs_fail(err, BS_EFORMAT, "%s: %zu bytes, expected %zu for %zu trained values", path, size,
                     sizeof h + 3 * n * sizeof(float), n);
    if (st == BS_OK) {
        memcpy(&h, data, sizeof h);
        if (h.magic != want.magic || h.version != want.version)
            st = bs_fail(err, BS_EFORMAT, "%s: not a basalt SFT checkpoint (version %u)", path, h.version);
        else if (h.n_params != want.n_params || h.n_train != want.n_train || h.seed != want.seed ||
                 h.n_epochs != want.n_epochs || h.batch_size != want.batch_size || h.full != want.full ||
                 h.rank != want.rank)
            st = bs_fail(err, BS_EFORMAT,
                         "%s: made by a different run (parameters %llu, sequences %llu, seed %llu, epochs %d, batch "
                         "%d, rank %d; this run has %llu, %llu, %llu, %d, %d, %d)",
                         path, (unsigned long long)h.n_params, (unsigned long long)h.n_train,
                         (unsigned long long)h.seed, h.n_epochs, h.batch_size, h.rank,
                         (unsigned long long)want.n_params, (unsigned long long)want.n_train,
                         (unsigned long long)want.seed, want.n_epochs, want.batch_size, want.rank);
        else if (h.step < 0 || h.step > r->total_steps)
            st = bs_fail(err, BS_EFORMAT, "%s: step %d is outside 0..%d", path, h.step, r->total_steps);
    }
    if (st == BS_OK) st = trainer_set_counters(r->trainer, h.trainer_steps, h.micro_batches, err);
    if (st == BS_OK) {
        memcpy(params_of(r), data + sizeof h, n * sizeof(float));
        memcpy(trainer_moments(r->trainer), data + sizeof h + n * sizeof(float), 2 * n * sizeof(float));
        r->step = h.step;
        r->trained_tokens = h.trained_tokens;
    }
    free(data);
    free(path);
    return st;
}

/* ---- the loop -------------------------------------------------------------- */

static bs_status checkpoint_at(sft_run *r, const char *root, const sft_hooks *h, const sft_progress *p,
                               bs_error *err) {
    char name[32];
    snprintf(name, sizeof name, "checkpoint-%d", r->step);
    char *dir = bs_path_join(root, name);
    if (!dir) return bs_fail(err, BS_ENOMEM, "sft: out of memory");
    bs_status st = bs_make_dirs(root, 0755, err);
    if (st == BS_OK) st = sft_save_checkpoint(r, dir, err);
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
        int epoch = r->step / r->steps_per_epoch, j = r->step % r->steps_per_epoch;
        shuffle_for(r, epoch);
        size_t first = (size_t)j * (size_t)r->c.batch_size, n = (size_t)r->c.batch_size;
        if (first + n > r->n_train) n = r->n_train - first;
        batch_sums sum = {0};
        bs_status st = run_sequences(r, r->train, r->perm + first, n, 1, &sum, err);
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

static bs_status fill_f32(void *ctx, const st_write_tensor *t, void *dst, bs_error *err) {
    (void)ctx;
    (void)err;
    const bs_train_tensor *x = t->user;
    memcpy(dst, x->data, (size_t)x->rows * (size_t)x->cols * sizeof(float));
    return BS_OK;
}

/* Full training: every parameter is trained, so the trainer's tensors (HF
 * names) are the whole model. */
static bs_status export_full(sft_run *r, const char *base_path, const char *out_dir, bs_error *err) {
    if (!bs_is_directory(base_path))
        return bs_fail(err, BS_EUNSUPPORTED,
                       "%s: full fine-tuning writes a Hugging Face directory and needs one as the base (its config "
                       "and tokenizer files are copied)",
                       base_path);
    int n = trainer_n_tensors(r->trainer);
    st_write_tensor *ts = calloc((size_t)n, sizeof *ts);
    if (!ts) return bs_fail(err, BS_ENOMEM, "sft: out of memory");
    for (int i = 0; i < n; i++) {
        const bs_train_tensor *x = trainer_tensor(r->trainer, i);
        ts[i] = (st_write_tensor){.name = x->name, .dtype = BS_DTYPE_F32, .ndim = x->cols == 1 ? 1 : 2,
                                  .user = (void *)x};
        ts[i].shape[0] = x->rows;
        ts[i].shape[1] = x->cols;
    }
    char *path = bs_path_join(out_dir, "model.safetensors");
    bs_status st = path ? st_write_file(path, ts, (size_t)n, fill_f32, NULL, err)
                        : bs_fail(err, BS_ENOMEM, "sft: out of memory");
    free(path);
    free(ts);
    static const char *const copied[] = {"config.json", "generation_config.json", "tokenizer.json",
                                         "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"};
    for (size_t i = 0; st == BS_OK && i < sizeof copied / sizeof copied[0]; i++) {
        char *src = bs_path_join(base_path, copied[i]), *dst = bs_path_join(out_dir, copied[i]);
        if (!src || !dst) st = bs_fail(err, BS_ENOMEM, "sft: out of memory");
        else if (bs_file_exists(src)) st = bs_file_copy(src, dst, err);
        free(src);
        free(dst);
    }
    return st;
}

bs_status sft_export(sft_run *r, const char *base_path, const char *base_name, const char *out_dir, bs_error *err) {
    bs_status st = bs_make_dirs(out_dir, 0755, err);
    if (st != BS_OK) return st;
    if (r->c.full) return export_full(r, base_path, out_dir, err);
    bs_adapter *a = NULL;
    st = make_adapter(r, base_name, &a, err);
    if (st == BS_OK) st = adapter_save_peft(a, out_dir, base_name, BS_DTYPE_F32, err);
    adapter_close(a);
    return st;
}
