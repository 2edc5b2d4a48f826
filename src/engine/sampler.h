/* engine/sampler.h — picks the next token from logits.
 *
 * Order: logit bias, penalties over the last penalty_last_n accepted tokens
 * (repetition: HF/llama.cpp, logit > 0 ? logit / p : logit * p; presence and
 * frequency: OpenAI, logit -= presence * [count > 0] + frequency * count),
 * then greedy when temperature == 0, else logits / temperature, top_k, top_p
 * (smallest set with probability mass >= top_p), min_p (p >= min_p * p_max)
 * on the tempered distribution, and a draw from a seeded xoshiro256** stream:
 * the same seed and inputs give the same tokens. */
#ifndef BASALT_ENGINE_SAMPLER_H
#define BASALT_ENGINE_SAMPLER_H

#include <stdint.h>

#include "base/error.h"

typedef struct bs_logit_bias {
    int32_t token;
    float bias;
} bs_logit_bias;

typedef struct bs_sampler_params {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off */
    float presence_penalty, frequency_penalty; /* 0 = off */
    int penalty_last_n;       /* window of accepted tokens the penalties see; 0 = none */
    const bs_logit_bias *logit_bias; /* copied at sampler_open */
    int n_logit_bias;
    uint64_t seed;
} bs_sampler_params;

/* temperature 1, top_k 0, top_p 1, min_p 0, no penalties (window 64), seed 0. */
void sampler_params_default(bs_sampler_params *p);

typedef struct bs_sampler bs_sampler;

/* Validates the parameters (ranges, bias token ids) against n_vocab. */
bs_status sampler_open(const bs_sampler_params *p, int n_vocab, bs_sampler **out, bs_error *err);
void sampler_close(bs_sampler *s);

/* Returns the chosen token.  On return logits[] holds the final scores: after
 * bias and penalties, and unless greedy divided by the temperature with every
 * token removed by top_k/top_p/min_p set to -INFINITY. */
int32_t sampler_sample(bs_sampler *s, float *logits);

/* Record a token (prompt or generated) for the penalties. */
void sampler_accept(bs_sampler *s, int32_t token);
/* Forget accepted tokens (a new sequence); the random stream continues. */
void sampler_reset(bs_sampler *s);

#endif
