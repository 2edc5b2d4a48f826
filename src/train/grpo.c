/* train/grpo.c — GRPO advantages and loss (see grpo.h).  Statistics and the
 * per-token loss run in double; results are stored as float. */
#include "train/grpo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STD_EPS 1e-4 /* TRL adds 1e-4 (not 1e-8) to the std */

void grpo_config_default(bs_grpo_config *c) {
    *c = (bs_grpo_config){
        .group_size = 8, .loss_type = BS_GRPO_LOSS_DAPO, .scale_rewards = BS_GRPO_SCALE_GROUP,
        .truncation = BS_GRPO_TRUNC_KEEP, .epsilon = 0.2f, .epsilon_high = 0.2f, .max_completion_len = 512,
    };
}

bs_status grpo_parse_loss_type(const char *s, bs_grpo_loss_type *out, bs_error *err) {
    static const char *const names[] = {"grpo", "dr_grpo", "dapo"};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, names[i])) {
            *out = (bs_grpo_loss_type)i;
            return BS_OK;
        }
    return bs_fail(err, BS_EINVAL, "grpo: loss_type '%s' is not grpo, dr_grpo or dapo", s ? s : "");
}

bs_status grpo_parse_scale(const char *s, bs_grpo_scale *out, bs_error *err) {
    static const char *const names[] = {"group", "batch", "none"};
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, names[i])) {
            *out = (bs_grpo_scale)i;
            return BS_OK;
        }
    return bs_fail(err, BS_EINVAL, "grpo: scale_rewards '%s' is not group, batch or none", s ? s : "");
}

static bs_status check_config(const bs_grpo_config *c, bs_error *err) {
    if (c->group_size < 1) return bs_fail(err, BS_EINVAL, "grpo: group size %d < 1", c->group_size);
    if ((unsigned)c->loss_type > BS_GRPO_LOSS_DAPO || (unsigned)c->scale_rewards > BS_GRPO_SCALE_NONE ||
        (unsigned)c->truncation > BS_GRPO_TRUNC_PENALIZE)
        return bs_fail(err, BS_EINVAL, "grpo: unknown loss type, reward scaling or truncation policy");
    if (!(c->epsilon >= 0 && c->epsilon < 1) || !(c->epsilon_high >= 0) || !(c->beta >= 0) ||
        !isfinite(c->truncated_reward) || !isfinite(c->epsilon_high) || !isfinite(c->beta))
        return bs_fail(err, BS_EINVAL, "grpo: need 0 <= epsilon < 1, epsilon_high >= 0, beta >= 0 (%g, %g, %g)",
                       c->epsilon, c->epsilon_high, c->beta);
    if (c->loss_type == BS_GRPO_LOSS_DR_GRPO && c->max_completion_len < 1)
        return bs_fail(err, BS_EINVAL, "grpo: dr_grpo needs max_completion_len >= 1 (%d)", c->max_completion_len);
    return BS_OK;
}

/* Mean and sample std (Bessel; 0 for fewer than 2) of the non-NAN r[n]. */
static int nan_mean_std(const float *r, int n, double *mean, double *std) {
    int k = 0;
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(r[i])) k++, s += r[i];
    *mean = k ? s / k : 0;
    for (int i = 0; i < n; i++)
        if (!isnan(r[i])) ss += (r[i] - *mean) * (r[i] - *mean);
    *std = k > 1 ? sqrt(ss / (k - 1)) : 0;
    return k;
}

bs_status grpo_advantages(const bs_grpo_config *c, const float *rewards, const int *truncated, int n, float *adv,
                          bs_grpo_reward_stats *stats, bs_error *err) {
    *stats = (bs_grpo_reward_stats){0};
    bs_status st = check_config(c, err);
    if (st) return st;
    int G = c->group_size;
    if (n < 1 || n % G)
        return bs_fail(err, BS_EINVAL, "grpo: %d completions are not whole groups of %d", n, G);
    for (int i = 0; i < n; i++) { /* adv holds the effective rewards until the last loop */
        float r = rewards[i];
        if (truncated && truncated[i]) {
            stats->n_truncated++;
            if (c->truncation == BS_GRPO_TRUNC_PENALIZE) r = c->truncated_reward;
        }
        if (isinf(r)) return bs_fail(err, BS_EINVAL, "grpo: reward %d is %g", i, r);
        stats->n_unscored += isnan(r);
        adv[i] = r;
    }
    double bmean, bstd;
    nan_mean_std(adv, n, &bmean, &bstd);
    stats->reward_mean = (float)bmean;
    stats->reward_std = (float)bstd;
    int zero_std = 0;
    for (int g = 0; g < n / G; g++) {
        float *a = adv + (size_t)g * G;
        double mean, std;
        nan_mean_std(a, G, &mean, &std);
        int flat = std <= 1e-8; /* torch.isclose(std, 0) */
        zero_std += flat;
        double div = c->scale_rewards == BS_GRPO_SCALE_GROUP ? std + STD_EPS
                     : c->scale_rewards == BS_GRPO_SCALE_BATCH ? bstd + STD_EPS
                                                               : 1;
        for (int j = 0; j < G; j++) a[j] = isnan(a[j]) || flat ? 0 : (float)((a[j] - mean) / div);
    }
    stats->frac_reward_zero_std = (float)zero_std / (float)(n / G);
    return BS_OK;
}

/* Sequence s's weight in the reduction, from its loss-token count nb and
 * the step's totals. */
static double seq_norm(const bs_grpo_config *c, const bs_grpo_totals *tot, int nb) {
    switch (c->loss_type) {
    case BS_GRPO_LOSS_GRPO: return 1.0 / ((double)tot->n_seqs * (nb > 1 ? nb : 1));
    case BS_GRPO_LOSS_DR_GRPO: return 1.0 / ((double)tot->n_seqs * c->max_completion_len);
    case BS_GRPO_LOSS_DAPO: break;
    }
    return 1.0 / (double)(tot->n_tokens > 1 ? tot->n_tokens : 1);
}

static int seq_excluded(const bs_grpo_config *c, const bs_grpo_batch *b, int s) {
    return c->truncation == BS_GRPO_TRUNC_MASK && b->truncated && b->truncated[s];
}

/* Checks b and counts its tokens: completion lengths into stats, its own
 * totals into tot. */
static bs_status count_tokens(const bs_grpo_config *c, const bs_grpo_batch *b, bs_grpo_loss_stats *stats,
                              bs_grpo_totals *tot, bs_error *err) {
    *stats = (bs_grpo_loss_stats){0};
    bs_status st = check_config(c, err);
    if (st) return st;
    if (b->n < 1 || !b->lengths || !b->mask)
        return bs_fail(err, BS_EINVAL, "grpo: a batch needs sequences with lengths and masks");
    long total = 0, completion = 0;
    for (int s = 0; s < b->n; s++) {
        int nb = 0;
        for (int i = 1; i < b->lengths[s]; i++) {
            float m = b->mask[s][i];
            if (m != 0 && m != 1) return bs_fail(err, BS_EINVAL, "grpo: sequence %d mask %d is %g, not 0 or 1", s, i, m);
            nb += m == 1;
        }
        completion += nb;
        if (nb > stats->completion_len_max) stats->completion_len_max = nb;
        if (!seq_excluded(c, b, s)) total += nb;
    }
    stats->completion_len_mean = (float)completion / (float)b->n;
    stats->n_tokens = (int)total;
    *tot = (bs_grpo_totals){.n_seqs = b->n, .n_tokens = total};
    return BS_OK;
}

bs_status grpo_totals(const bs_grpo_config *c, const bs_grpo_batch *step, bs_grpo_totals *out, bs_error *err) {
    bs_grpo_loss_stats unused;
    return count_tokens(c, step, &unused, out, err);
}

bs_status grpo_loss(const bs_grpo_config *c, const bs_grpo_batch *b, const float *const *logp, float *const *dlogp,
                    bs_grpo_loss_stats *stats, bs_error *err) {
    bs_grpo_totals own;
    bs_status st = count_tokens(c, b, stats, &own, err);
    if (st) return st;
    if (!b->adv || !b->old_logp || (c->beta != 0 && !b->ref_logp))
        return bs_fail(err, BS_EINVAL, "grpo: a batch needs advantages and old (and reference) log-probs");
    const bs_grpo_totals *tot = b->totals ? b->totals : &own;
    if (tot->n_seqs < b->n || tot->n_tokens < own.n_tokens)
        return bs_fail(err, BS_EINVAL, "grpo: the step's totals (%d sequences, %ld tokens) are smaller than a "
                                       "micro-batch's (%d, %ld)", tot->n_seqs, tot->n_tokens, b->n, own.n_tokens);
    long total = own.n_tokens;

    double loss = 0, kl_sum = 0, ent_sum = 0, lo = 1.0 - c->epsilon, hi = 1.0 + c->epsilon_high;
    long n_low = 0, n_high = 0;
    for (int s = 0; s < b->n; s++) {
        int excluded = seq_excluded(c, b, s), nb = 0;
        for (int i = 1; i < b->lengths[s]; i++) nb += b->mask[s][i] == 1;
        double w = seq_norm(c, tot, nb), A = b->adv[s];
        dlogp[s][0] = 0;
        for (int i = 1; i < b->lengths[s]; i++) {
            dlogp[s][i] = 0;
            if (excluded || b->mask[s][i] == 0) continue;
            /* forward: ratio rho = exp(logp - old), surrogate min(rho A, clip(rho, lo, hi) A),
             * k3 = exp(ref - logp) - (ref - logp) - 1; token loss l = -surrogate + beta k3 */
            double rho = exp((double)logp[s][i] - b->old_logp[s][i]);
            double clipped = rho < lo ? lo : rho > hi ? hi : rho;
            int unclipped = rho * A <= clipped * A; /* the min takes the rho branch */
            double surr = unclipped ? rho * A : clipped * A;
            double k3 = 0, dk3 = 0;
            if (c->beta != 0) {
                double d = (double)b->ref_logp[s][i] - logp[s][i];
                k3 = exp(d) - d - 1;
                dk3 = 1 - exp(d); /* d k3 / d logp */
            }
            loss += w * (-surr + c->beta * k3);
            /* backward: d rho / d logp = rho; the clipped branch is constant in logp */
            dlogp[s][i] = (float)(w * (-(unclipped ? rho * A : 0) + c->beta * dk3));
            kl_sum += k3;
            if (b->entropy) ent_sum += b->entropy[s][i];
            n_low += rho < lo && A < 0;
            n_high += rho > hi && A > 0;
        }
    }
    double per_token = total ? 1.0 / (double)total : 0;
    stats->loss = (float)loss;
    stats->kl = (float)(kl_sum * per_token);
    stats->entropy = (float)(ent_sum * per_token);
    stats->clip_low = (float)(n_low * per_token);
    stats->clip_high = (float)(n_high * per_token);
    stats->clip_region = (float)((n_low + n_high) * per_token);
    return BS_OK;
}

bs_status grpo_forward_backward(bs_trainer *t, const bs_grpo_config *c, const int32_t *const *tokens,
                                const bs_grpo_batch *b, bs_grpo_loss_stats *stats, bs_error *err) {
    *stats = (bs_grpo_loss_stats){0};
    const bs_train_config *tc = trainer_config(t);
    if (!tc->full && tc->lora.dropout > 0)
        return bs_fail(err, BS_EINVAL, "grpo: LoRA dropout %g must be 0 (the loss needs the log-probs it trains)",
                       tc->lora.dropout);
    if (b->n < 1 || !b->lengths) return bs_fail(err, BS_EINVAL, "grpo: a micro-batch needs at least one sequence");
    size_t total = 0;
    for (int s = 0; s < b->n; s++) {
        if (b->lengths[s] < 1) return bs_fail(err, BS_EINVAL, "grpo: sequence %d has length %d", s, b->lengths[s]);
        total += (size_t)b->lengths[s];
    }
    /* one buffer: the row pointers of logp, entropy, dlogp [n] each, then their values [total] each */
    float **rows = malloc(3 * (size_t)b->n * sizeof(float *) + 3 * total * sizeof(float));
    if (!rows) return bs_fail(err, BS_ENOMEM, "grpo: out of memory for %zu tokens", total);
    float *buf = (float *)(rows + 3 * b->n), **logp = rows, **ent = rows + b->n, **dlogp = rows + 2 * b->n;
    for (size_t s = 0, off = 0; s < (size_t)b->n; off += (size_t)b->lengths[s++]) {
        logp[s] = buf + off;
        ent[s] = buf + total + off;
        dlogp[s] = buf + 2 * total + off;
    }
    bs_grpo_batch cur = *b;
    cur.entropy = (const float *const *)ent;
    float objective = 0;
    int steps;
    uint64_t before, after;
    trainer_counters(t, &steps, &before);
    bs_status st = trainer_token_logprobs(t, tokens, b->lengths, b->n, 1, logp, ent, err);
    if (!st) st = grpo_loss(c, &cur, (const float *const *)logp, dlogp, stats, err);
    if (!st)
        st = trainer_forward_backward_weighted(t, tokens, (const float *const *)dlogp, b->lengths, b->n, &objective,
                                               err);
    /* the trainer's own count decides, as it skips all-zero weights */
    trainer_counters(t, &steps, &after);
    stats->backward = after > before;
    free(rows);
    return st;
}

bs_status grpo_step(bs_trainer *t, int n_backward, float *grad_norm, float *lr, bs_error *err) {
    *grad_norm = 0;
    *lr = 0;
    if (n_backward < 1) return BS_OK;
    for (int i = 0; n_backward > 1 && i < trainer_n_tensors(t); i++) {
        const bs_train_tensor *x = trainer_tensor(t, i);
        for (size_t j = 0, n = (size_t)x->rows * (size_t)x->cols; j < n; j++) x->grad[j] *= (float)n_backward;
    }
    return trainer_step(t, grad_norm, lr, err);
}
