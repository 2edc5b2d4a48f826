/* train/sft.h — supervised fine-tuning as a library: the loop that both
 * `basalt tune` and the server's fine-tuning jobs run.
 *
 *     sft_config_default -> sft_resolve (the "auto" rules) -> sft_open
 *         [-> sft_load_checkpoint] -> sft_train (hooks per step) -> sft_export -> sft_close
 *
 * Data order.  Each epoch visits every training sequence once, in a
 * permutation drawn from (seed, epoch); step s of the run takes the
 * batch_size sequences at s % steps_per_epoch of epoch s / steps_per_epoch
 * (the last batch of an epoch may be shorter).  A step packs its sequences
 * into micro-batches of at most max_length tokens, runs forward/backward on
 * each and makes one optimizer update.  So the data position is a pure
 * function of the step number, and a checkpoint — trained tensors, AdamW
 * moments, the trainer's counters (schedule position, dropout keys) and the
 * step — resumes the run bit for bit: a run interrupted at a checkpoint and
 * resumed ends with the same weights as one never interrupted, for the same
 * seed and thread count.
 *
 * "auto" hyperparameters (OpenAI's names; N = training sequences):
 *   n_epochs        3, raised to ceil(100 / N) (at most 25) when N * 3 < 100
 *                   and lowered to max(1, 25000 / N) when N * 3 > 25000 —
 *                   the rule OpenAI's fine-tuning data-prep cookbook states
 *   batch_size      about 0.2% of N (OpenAI's documented default), at least
 *                   1, at most 32 for LoRA (LoRA tolerates large batches
 *                   badly) and 256 for full training
 *   learning rate   base x learning_rate_multiplier (auto 1): base 1e-4 for
 *                   LoRA, 2e-5 (TRL's default) for full training; linear
 *                   decay to 0 after warmup_ratio x steps of linear warmup
 * basalt extensions: LoRA rank (auto 16) / alpha (auto 2 x rank) / targets
 * (auto all linear) / dropout (0), full training, max_length (auto 1024),
 * warmup_ratio (0), weight decay (0), checkpoint and evaluation intervals
 * (auto: about ten per run), seed, threads.
 *
 * Threads: the trainer's matrix products run in OpenBLAS, whose thread count
 * is process-wide; sft_train sets it to the run's threads before every step,
 * so a job in a server can be held to one core while inference keeps the
 * rest.  The trainer's attention, SwiGLU and cross-entropy run on as many
 * threads of its own pool as OpenBLAS uses; the rest is single-threaded. */
#ifndef BASALT_TRAIN_SFT_H
#define BASALT_TRAIN_SFT_H

#include <stdint.h>

#include "base/error.h"
#include "engine/model.h"
#include "train/dataset.h"
#include "train/trainer.h"

typedef struct sft_config {
    /* OpenAI's hyperparameters; 0 is "auto" */
    int n_epochs;         /* 1..50 */
    int batch_size;       /* sequences per optimizer step, 1..256 */
    double lr_multiplier; /* > 0 */
    /* basalt extensions */
    double lr;            /* > 0: the learning rate itself, ignoring base and multiplier */
    int full;             /* 1: train every parameter; 0: LoRA */
    bs_lora_config lora;  /* rank 0: auto; alpha 0: 2 x rank; targets 0: every linear projection */
    float warmup_ratio;   /* [0, 1) */
    float weight_decay;
    int max_length;       /* tokens per example and per micro-batch; 0: 1024 */
    uint64_t seed;
    int threads;          /* OpenBLAS threads while training; <= 0: every core */
    int checkpoint_every; /* steps between checkpoints; 0: auto; < 0: none */
    int eval_every;       /* steps between validation losses; 0: auto */
} sft_config;

/* Everything "auto", seed 0, all cores. */
void sft_config_default(sft_config *c);

/* Replace every auto value by the rule above for a training set of
 * n_sequences; BS_EINVAL names the first out-of-range value. */
bs_status sft_resolve(sft_config *c, size_t n_sequences, bs_error *err);

/* How datasets must be opened for this config (max_length; one example per
 * sequence, since the trainer's sequences attend only to themselves). */
void sft_dataset_opts(const sft_config *c, dataset_opts *o);

/* Progress after one optimizer step. */
typedef struct sft_progress {
    int step, total_steps;     /* updates done so far (1-based here), of the run */
    int epoch, n_epochs;       /* 1-based epoch of this step */
    double train_loss;         /* this step's mean loss per target token */
    double valid_loss;         /* mean over the whole validation set; NAN unless evaluated at this step */
    double lr, grad_norm;      /* the update's learning rate, gradient norm before clipping */
    int64_t trained_tokens;    /* tokens (every position) through training so far in the run */
    double tokens_per_s;       /* since sft_train began (this process) */
    double elapsed_s, eta_s;   /* wall time since sft_train began; estimate for the rest */
} sft_progress;

typedef struct sft_hooks {
    void *user;
    /* After every step; nonzero stops the run at this step boundary
     * (cancel, pause) with *finished 0.  May be NULL. */
    int (*on_step)(void *user, const sft_progress *p);
    /* After a checkpoint was written to dir; a failure stops the run with
     * that error.  May be NULL. */
    bs_status (*on_checkpoint)(void *user, const sft_progress *p, const char *dir, bs_error *err);
} sft_hooks;

typedef struct sft_run sft_run;

/* c must be resolved.  valid may be NULL.  The model and datasets must
 * outlive the run. */
bs_status sft_open(bs_model *base, const sft_config *c, const dataset *train, const dataset *valid, sft_run **out,
                   bs_error *err);
void sft_close(sft_run *r);

/* Continue from a checkpoint directory that sft_save_checkpoint wrote for
 * the same model, data and config (BS_EFORMAT names what differs). */
bs_status sft_load_checkpoint(sft_run *r, const char *dir, bs_error *err);

/* Write dir (replacing it) with the run's state and, for LoRA, the adapter
 * in PEFT format; atomically: dir is complete or absent. */
bs_status sft_save_checkpoint(sft_run *r, const char *dir, bs_error *err);

/* Run steps until the last one (*finished = 1) or until on_step stops it.
 * With checkpoint_root, every checkpoint_every steps (and at the last step)
 * it writes checkpoint_root/checkpoint-<step> and calls on_checkpoint. */
bs_status sft_train(sft_run *r, const char *checkpoint_root, const sft_hooks *h, int *finished, bs_error *err);

/* Mean loss per target token over the whole validation set (BS_EINVAL
 * without one). */
bs_status sft_eval(sft_run *r, double *loss, bs_error *err);

int sft_step(const sft_run *r);
int sft_total_steps(const sft_run *r);
int64_t sft_trained_tokens(const sft_run *r);
const sft_config *sft_run_config(const sft_run *r);
bs_trainer *sft_trainer(sft_run *r);

/* The trained model in out_dir (created): LoRA as a PEFT adapter
 * (adapter_config.json + adapter_model.safetensors); full training as a
 * Hugging Face model directory (model.safetensors in f32, with config.json,
 * generation_config.json and the tokenizer files copied from base_path,
 * which must then be a Hugging Face directory).  base_name goes into the
 * adapter's base_model_name_or_path. */
bs_status sft_export(sft_run *r, const char *base_path, const char *base_name, const char *out_dir, bs_error *err);

#endif
