/* engine/context.h — one sequence's state: its KV cache (f32, n_ctx
 * positions) and the activation scratch of the forward pass, all allocated at
 * open so evaluation never allocates.  Contexts of one model share its thread
 * pool, so evaluate one context of a model at a time. */
#ifndef BASALT_ENGINE_CONTEXT_H
#define BASALT_ENGINE_CONTEXT_H

#include <stdint.h>

#include "base/error.h"
#include "engine/model.h"

typedef struct bs_context bs_context;

/* n_ctx: positions the cache holds (1..the model's max positions). */
bs_status context_open(bs_model *m, int n_ctx, bs_context **out, bs_error *err);
void context_close(bs_context *c);
void context_reset(bs_context *c); /* empty the KV cache */
int context_pos(const bs_context *c); /* tokens already in the cache */
int context_size(const bs_context *c); /* n_ctx */
bs_model *context_model(const bs_context *c);

/* Run n tokens through the model at positions pos..pos+n-1, appending to the
 * KV cache; batched so each weight is read once per batch of tokens.
 * logits: [n][n_vocab] when all_logits, else [n_vocab] for the last token;
 * NULL skips the LM head (a prefill whose logits are not needed).
 * BS_ERANGE (cache unchanged) when the tokens do not fit; BS_EINVAL for ids
 * outside the vocabulary. */
bs_status context_eval(bs_context *c, const int32_t *tokens, int n, float *logits, int all_logits,
                       bs_error *err);

#endif
