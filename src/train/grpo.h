/* train/grpo.h — the GRPO algorithm core (TRL's GRPOTrainer semantics, see
 * docs/design.md and the RFT reference): group-relative advantages from
 * rewards, the clipped-surrogate loss with an optional k3 KL penalty and its
 * gradient with respect to every completion token's log-prob, which
 * trainer_forward_backward_weighted carries into the model.
 *
 * One step, P prompts x G completions, N = P*G sequences of prompt + completion:
 *
 *     grpo_advantages(rewards)                           -> adv[N]
 *     trainer_token_logprobs(adapter on)  before updates -> old_logp
 *     trainer_token_logprobs(adapter off)                -> ref_logp  (beta != 0)
 *     grpo_totals(the whole step's batch)                -> totals
 *     { grpo_forward_backward(...) x micro-batches ; grpo_step } x num_iterations
 *
 * Per-token arrays are indexed like the trainer's loss_mask: [b][i] is about
 * token i of sequence b (predicted from the tokens before it); the mask is
 * 1 on completion tokens and 0 on the prompt and padding. */
#ifndef BASALT_TRAIN_GRPO_H
#define BASALT_TRAIN_GRPO_H

#include "base/error.h"
#include "train/trainer.h"

typedef enum {
    BS_GRPO_LOSS_GRPO,    /* mean over each sequence's tokens, then over sequences */
    BS_GRPO_LOSS_DR_GRPO, /* sum over tokens / (sequences x max_completion_len) */
    BS_GRPO_LOSS_DAPO,    /* sum over tokens / tokens in the batch */
} bs_grpo_loss_type;

typedef enum {
    BS_GRPO_SCALE_GROUP, /* A = (r - mean_group) / (std_group + 1e-4) */
    BS_GRPO_SCALE_BATCH, /* A = (r - mean_group) / (std_batch + 1e-4) */
    BS_GRPO_SCALE_NONE,  /* A = r - mean_group (Dr. GRPO) */
} bs_grpo_scale;

typedef enum {
    BS_GRPO_TRUNC_KEEP,     /* truncated completions train like the others */
    BS_GRPO_TRUNC_MASK,     /* excluded from the loss (still in the group statistics) */
    BS_GRPO_TRUNC_PENALIZE, /* their reward is replaced by truncated_reward */
} bs_grpo_truncation;

typedef struct bs_grpo_config {
    int group_size;               /* G >= 1 completions per prompt */
    bs_grpo_loss_type loss_type;
    bs_grpo_scale scale_rewards;
    bs_grpo_truncation truncation;
    float truncated_reward;       /* BS_GRPO_TRUNC_PENALIZE */
    float epsilon, epsilon_high;  /* ratio clipped to [1 - epsilon, 1 + epsilon_high] */
    float beta;                   /* KL coefficient; 0: no reference log-probs read */
    int max_completion_len;       /* dr_grpo's constant denominator */
} bs_grpo_config;

/* TRL's current defaults: G 8, dapo, group scaling, keep truncated, epsilon
 * 0.2 both sides, beta 0, 512 completion tokens. */
void grpo_config_default(bs_grpo_config *c);

/* "grpo" | "dr_grpo" | "dapo", "group" | "batch" | "none"; BS_EINVAL otherwise. */
bs_status grpo_parse_loss_type(const char *s, bs_grpo_loss_type *out, bs_error *err);
bs_status grpo_parse_scale(const char *s, bs_grpo_scale *out, bs_error *err);

typedef struct bs_grpo_reward_stats {
    float reward_mean, reward_std; /* over scored completions (std with Bessel's correction) */
    float frac_reward_zero_std;    /* groups with no reward spread (fewer than 2 scored count) */
    int n_unscored;                /* NAN rewards: out of every statistic, advantage 0 */
    int n_truncated;
} bs_grpo_reward_stats;

/* rewards[n] (n a multiple of group_size, groups contiguous; NAN =
 * unscorable), truncated[n] (NULL: none; 1 = no EOS within the limit) ->
 * adv[n]. */
bs_status grpo_advantages(const bs_grpo_config *c, const float *rewards, const int *truncated, int n, float *adv,
                          bs_grpo_reward_stats *stats, bs_error *err);

/* The reduction's denominators, counted over the WHOLE step batch (every
 * group, every micro-batch) before it is split, so that each micro-batch's
 * loss is its share of the one-batch loss: dapo divides by n_tokens (loss
 * tokens in the step), grpo and dr_grpo by n_seqs (sequences in the step). */
typedef struct bs_grpo_totals {
    int n_seqs;
    long n_tokens;
} bs_grpo_totals;

/* One micro-batch of completions with everything fixed during the update. */
typedef struct bs_grpo_batch {
    int n;                        /* sequences */
    const int *lengths;           /* [n] prompt + completion tokens */
    const float *const *mask;     /* [n][len] 1 on completion tokens, else 0 */
    const int *truncated;         /* [n] or NULL */
    const float *adv;             /* [n] */
    const float *const *old_logp; /* [n][len] the policy that sampled (before this step's updates) */
    const float *const *ref_logp; /* [n][len] adapter off; read only when beta != 0 */
    const float *const *entropy;  /* [n][len] for the statistic, or NULL */
    const bs_grpo_totals *totals; /* the step's (grpo_totals); NULL: this batch is the whole step */
} bs_grpo_batch;

/* The totals of step, the whole step's batch (its masks, lengths and
 * truncation flags are read). */
bs_status grpo_totals(const bs_grpo_config *c, const bs_grpo_batch *step, bs_grpo_totals *out, bs_error *err);

typedef struct bs_grpo_loss_stats {
    float loss;                   /* this batch's share of the step's loss (the shares add up to it) */
    float kl;                     /* mean k3 over this batch's loss tokens (0 when beta == 0) */
    float clip_low, clip_high;    /* fraction of loss tokens clipped below (A < 0) / above (A > 0) */
    float clip_region;            /* either */
    float entropy;                /* mean over loss tokens (0 without entropies) */
    float completion_len_mean;    /* completion tokens per sequence (mask sums, before truncation masking) */
    int completion_len_max;
    int n_tokens;                 /* tokens in the loss */
    int backward;                 /* grpo_forward_backward: 1 when it added a gradient to the trainer */
} bs_grpo_loss_stats;

/* The loss given the current log-probs logp[n][len], and its gradient
 * dlogp[n][len] = dLoss/dlogp (0 off the loss tokens).  Loss tokens: i >= 1
 * with mask 1, of sequences not masked out as truncated. */
bs_status grpo_loss(const bs_grpo_config *c, const bs_grpo_batch *b, const float *const *logp, float *const *dlogp,
                    bs_grpo_loss_stats *stats, bs_error *err);

/* The whole micro-step on the trainer: current log-probs and entropies (the
 * batch's entropy is ignored), grpo_loss, and its gradient added through
 * trainer_forward_backward_weighted.
 * The two forwards must agree, so LoRA dropout must be 0 (TRL's
 * disable_dropout). */
bs_status grpo_forward_backward(bs_trainer *t, const bs_grpo_config *c, const int32_t *const *tokens,
                                const bs_grpo_batch *b, bs_grpo_loss_stats *stats, bs_error *err);

/* The update after the step's micro-batches, n_backward of which added a
 * gradient (their stats' backward summed).  Their gradients are shares of
 * the one-batch gradient, so their SUM is the step's gradient, while
 * trainer_step averages micro-batches: the sum is restored first.  No
 * gradient at all (every advantage 0 and the policy still at the
 * reference): no update, *grad_norm 0. */
bs_status grpo_step(bs_trainer *t, int n_backward, float *grad_norm, float *lr, bs_error *err);

#endif
