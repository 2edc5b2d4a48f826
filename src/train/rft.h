/* train/rft.h — reinforcement fine-tuning (GRPO) as a library: the loop
 * that both `basalt tune --method rft` and the server's reinforcement jobs
 * run, structured like train/sft.h and sharing its checkpoints and export
 * (train/train_state.h).
 *
 *     rft_data_open (prompts) -> rft_config_default -> rft_resolve -> rft_open
 *         [-> rft_load_checkpoint] -> rft_train (hooks per step) -> rft_export -> rft_close
 *
 * Data: chat JSONL whose rows' "messages" END WITH A USER TURN; each is
 * rendered with the model's chat template and the generation prompt.  The
 * whole row (reference_answer and any other field) is the grader's "item".
 *
 * One step (docs/design.md "One RFT step"): batch_size prompts in the
 * seeded epoch order of train/sft.h -> rollouts: group_size samples per
 * prompt, one scheduler request with n = group_size over the base and the
 * current LoRA adapter (adapter_from_tensors of the trainer's A/B, rebuilt
 * every step) -> rewards by reward_score_batch (NAN = unscorable) ->
 * grpo_advantages -> old log-probs with the trainer's own forward
 * (trainer_token_logprobs, adapter on), so sampler and trainer agree, and
 * reference log-probs (adapter off) when beta != 0 -> grpo_forward_backward
 * over micro-batches of at most max_length tokens -> grpo_step.  One
 * update per generation (num_iterations 1), so the ratio is 1 at the
 * update; the loss reduction's denominators (grpo_totals) count the whole
 * step, so the micro-batches' gradients add up to the one-batch gradient.
 * A step whose advantages are all 0 (and beta 0) leaves no gradient and
 * makes no update.
 *
 * Checkpoints (with a checkpoint root): every checkpoint_every steps, at
 * every evaluation and at the end.  After each, the root keeps only the
 * latest checkpoint (to resume from) and the best keep_checkpoints by
 * valid_reward_mean (the older on ties; checkpoints without one rank last,
 * newer first); the
 * others are removed.  With validation prompts the exported model is the
 * best evaluated one (rft_best), not the last step's; without, the last.
 *
 * LoRA only: rollouts sample through the adapter, so full-parameter
 * training (which the serving engine cannot apply per step) is refused.
 *
 * Failure cutoff: a step with more than max_unscored_frac of its samples
 * unscorable fails the run (BS_ERANGE) with the error counts by kind and
 * the grader's first message.
 *
 * "auto" hyperparameters (N = training prompts): n_epochs 1; batch_size
 * min(8, N) prompts; learning rate 1e-5 x learning_rate_multiplier; group_size 8;
 * max_completion_tokens 256; max_length (prompt tokens) 1024; eval_samples
 * = group_size; checkpoint and evaluation intervals about ten per run.
 * temperature and top_p default to 1 (TRL), beta 0, epsilon 0.2 both sides,
 * loss dapo, scale_rewards group (train/grpo.h).
 *
 * Determinism: for a given seed and thread count the prompts, sampling
 * seeds and updates are fixed; rollouts depend on the scheduler's batching
 * only through float rounding. */
#ifndef BASALT_TRAIN_RFT_H
#define BASALT_TRAIN_RFT_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/model.h"
#include "engine/scheduler.h"
#include "reward/reward.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/grpo.h"
#include "train/trainer.h"

/* ---- prompts --------------------------------------------------------------- */

typedef struct rft_data rft_data;

/* Read, validate and tokenize path (every problem reported with its line
 * number, as train/dataset.h; *report gets the list on BS_EFORMAT).  A
 * prompt longer than max_prompt_length tokens (<= 0: 1024) is a problem. */
bs_status rft_data_open(const char *path, const bs_tokenizer *tok, const chat_template *tmpl, int max_prompt_length,
                        rft_data **out, char **report, bs_error *err);
void rft_data_close(rft_data *d);
size_t rft_data_count(const rft_data *d);

/* ---- config ---------------------------------------------------------------- */

typedef struct rft_config {
    /* OpenAI's hyperparameters; 0 is "auto" */
    int n_epochs;             /* 1..50 */
    int batch_size;           /* prompts per optimizer step, 1..256 */
    double lr_multiplier;     /* > 0 */
    int eval_every;           /* eval_interval: steps between validation rewards */
    int eval_samples;         /* samples per validation prompt */
    /* basalt extensions */
    double lr;                /* > 0: the learning rate itself */
    bs_lora_config lora;      /* rank 0: 16; alpha 0: 2 x rank; targets 0: all linear; dropout must be 0 */
    float warmup_ratio, weight_decay;
    bs_grpo_config grpo;      /* group_size 0 and max_completion_len 0 are auto */
    float temperature, top_p; /* rollouts' sampling (rft_config_default: 1, 1) */
    int max_length;           /* prompt tokens, and tokens per micro-batch at least; 0: 1024 */
    float max_unscored_frac;  /* [0, 1]; rft_config_default: 0.2 */
    uint64_t seed;
    int threads;              /* OpenBLAS threads while training; <= 0: every core */
    int checkpoint_every;     /* 0: auto; < 0: none */
    int keep_checkpoints;     /* 1..100; 0: auto (3, OpenAI's) */
} rft_config;

/* Everything auto, the GRPO defaults of train/grpo.h, temperature/top_p 1. */
void rft_config_default(rft_config *c);

/* Replace every auto value for n_prompts training prompts; BS_EINVAL names
 * the first out-of-range value. */
bs_status rft_resolve(rft_config *c, size_t n_prompts, bs_error *err);

/* ---- the run --------------------------------------------------------------- */

/* Metrics of one step (the RFT reference's names where they exist). */
typedef struct rft_progress {
    int step, total_steps, epoch, n_epochs;
    double train_reward_mean, train_reward_std; /* over scored samples */
    double frac_reward_zero_std;
    double valid_reward_mean;    /* NAN unless evaluated at this step */
    double loss, kl, clip_ratio; /* clip_ratio: fraction of tokens clipped (either side) */
    double entropy;              /* mean over loss tokens, from the update's forward (0 without update) */
    double completion_len_mean;
    int completion_len_max;
    double truncated_frac;       /* completions cut at max_completion_tokens */
    int n_samples, n_unscored;
    reward_errors grader_errors; /* of this step, by kind */
    /* Mean per-sample grader metric by name (multi's sub-scores by key, an
     * external grader's metrics_list, "passed"; booleans as 0/1), of the
     * step's samples and (when evaluated) the validation samples; NULL
     * when none.  Borrowed, valid during on_step. */
    const json_t *grader_scores, *valid_grader_scores;
    double lr, grad_norm;
    double sample_s, grade_s, train_s; /* this step's rollouts, grading, log-probs + update */
    double eval_s;                     /* its validation (0 when not evaluated) */
    double elapsed_s, eta_s;
} rft_progress;

typedef struct rft_hooks {
    void *user;
    /* After every step; nonzero stops at this step boundary.  May be NULL. */
    int (*on_step)(void *user, const rft_progress *p);
    /* After a checkpoint was written to dir.  May be NULL. */
    bs_status (*on_checkpoint)(void *user, const rft_progress *p, const char *dir, bs_error *err);
    /* After the checkpoint dir was removed (not among those kept).  May be NULL. */
    bs_status (*on_checkpoint_removed)(void *user, const char *dir, bs_error *err);
} rft_hooks;

typedef struct rft_run rft_run;

/* c must be resolved.  sched rolls out over base (scheduler_open'ed on it by
 * the caller; the server's own scheduler serves requests meanwhile); the
 * grader, data (valid may be NULL), tokenizer, base and scheduler must
 * outlive the run. */
bs_status rft_open(bs_model *base, bs_scheduler *sched, const bs_reward_grader *grader, const rft_config *c,
                   const rft_data *train, const rft_data *valid, rft_run **out, bs_error *err);
void rft_close(rft_run *r);

bs_status rft_save_checkpoint(rft_run *r, const char *dir, bs_error *err);
/* BS_EFORMAT naming what differs for another run's checkpoint.  The best
 * weights so far come back from the sibling checkpoint-<best step>. */
bs_status rft_load_checkpoint(rft_run *r, const char *dir, bs_error *err);

/* Run steps until the last (*finished = 1) or until on_step stops it; with
 * checkpoint_root a checkpoint every checkpoint_every steps and at the end. */
bs_status rft_train(rft_run *r, const char *checkpoint_root, const rft_hooks *h, int *finished, bs_error *err);

/* Mean reward of eval_samples samples per validation prompt (BS_EINVAL
 * without validation prompts). */
bs_status rft_eval(rft_run *r, double *reward_mean, bs_error *err);

/* The step whose weights rft_export writes: the best valid_reward_mean so
 * far (*valid; the earliest on ties), or 0 (*valid NAN) when never
 * evaluated: then the current weights. */
int rft_best(const rft_run *r, double *valid);

int rft_step(const rft_run *r);
int rft_total_steps(const rft_run *r);
int64_t rft_trained_tokens(const rft_run *r);
const rft_config *rft_run_config(const rft_run *r);

/* As sft_export, of the weights rft_best names. */
bs_status rft_export(rft_run *r, const char *base_path, const char *base_name, const char *out_dir, bs_error *err);

#endif
