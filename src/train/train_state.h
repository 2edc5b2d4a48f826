/* train/train_state.h — what the SFT and RFT loops (train/sft.h,
 * train/rft.h) share about a trainer's state on disk: checkpoints that
 * resume bit for bit, the LoRA tensors as a servable adapter, and export.
 *
 * A checkpoint directory holds trainer_state.bin — a header, the loop's own
 * meta block (what must agree with the loading run, and where it stood),
 * the trained values and the AdamW moments (f32, trainer tensor order) —
 * and, for LoRA, the adapter in PEFT format.  It is written atomically
 * (DIR.tmp renamed over DIR). */
#ifndef BASALT_TRAIN_TRAIN_STATE_H
#define BASALT_TRAIN_TRAIN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/adapter.h"
#include "engine/model.h"
#include "train/trainer.h"

/* Write dir (replacing it) with t's state and meta[0..meta_size). */
bs_status train_state_save(bs_trainer *t, bs_model *m, const void *meta, size_t meta_size, const char *dir,
                           bs_error *err);

/* Checks a checkpoint's meta block against the loading run (BS_EFORMAT
 * naming what differs); path is the state file, for messages. */
typedef bs_status (*train_meta_check)(void *user, const void *meta, const char *path, bs_error *err);

/* Read dir's state: the meta block into meta (meta_size bytes, which must
 * match), check(user, meta) and only then the trainer's values, moments and
 * counters.  Nothing changes in t on failure. */
bs_status train_state_load(bs_trainer *t, const char *dir, void *meta, size_t meta_size, train_meta_check check,
                           void *user, bs_error *err);

/* A checkpoint's meta block (meta_size bytes, which must match) and, with
 * values, its n trained values (in trainer tensor order), without a
 * trainer: to rank checkpoints, or to keep another's weights. */
bs_status train_state_peek(const char *dir, void *meta, size_t meta_size, float *values, size_t n, bs_error *err);

/* train_state_save into root/checkpoint-<step> (root created); *dir
 * (malloc'ed) is that path. */
bs_status train_state_checkpoint(bs_trainer *t, bs_model *m, const void *meta, size_t meta_size, const char *root,
                                 int step, char **dir, bs_error *err);

/* The LoRA tensors as a new adapter over m (BS_EINVAL in full training). */
bs_status train_adapter(bs_trainer *t, bs_model *m, const char *base_name, bs_adapter **out, bs_error *err);

/* The trained model in out_dir (created): LoRA as a PEFT adapter; full
 * training as a Hugging Face directory (f32 model.safetensors plus the
 * config and tokenizer files of base_path, which must be one). */
bs_status train_export(bs_trainer *t, bs_model *m, const char *base_path, const char *base_name,
                       const char *out_dir, bs_error *err);

/* The data order of an epoch: a permutation of 0..n-1 from a generator keyed
 * by (seed, epoch) alone, so any epoch's order can be rebuilt on resume
 * without replaying earlier ones. */
void train_epoch_order(uint64_t seed, int epoch, size_t *perm, size_t n);

/* Where global step `step` (0-based) reads in the epoch order: its epoch and
 * the slice [*first, *first + *n) of the permutation (the last batch of an
 * epoch may be short).  steps_per_epoch = ceil(n_train / batch_size). */
void train_step_slice(int step, int steps_per_epoch, int batch_size, size_t n_train, int *epoch, size_t *first,
                      size_t *n);

/* The data order a loop reads, as the SFT and RFT runs both keep it:
 * n_train items, batch_size a step, each epoch in train_epoch_order's
 * permutation, rebuilt only when the epoch changes. */
typedef struct train_order {
    uint64_t seed;
    size_t n_train;
    int batch_size, steps_per_epoch; /* ceil(n_train / batch_size) */
    size_t *perm;                    /* the order of epoch */
    int epoch;                       /* -1: none yet */
} train_order;

/* o for a run; o->perm is NULL when out of memory (the caller reports it). */
void train_order_init(train_order *o, uint64_t seed, size_t n_train, int batch_size);
void train_order_free(train_order *o);

/* Global step `step` (0-based): its epoch and the *n training indices it
 * reads (train_step_slice of the epoch's order). */
const size_t *train_order_step(train_order *o, int step, int *epoch, size_t *n);

#endif
