/* engine/batch.h — the forward pass over many sequences at once.
 *
 * A batch concatenates the new tokens of several sequences (each a block
 * table in one paged KV pool) into T rows, so every weight matmul runs once
 * over all T rows; attention then runs per token over its own sequence's
 * cache.  The activations of up to max_tokens rows live in one allocation
 * made at open, so evaluation never allocates.  A batch uses its model's
 * thread pool: evaluate one batch (or context) of a model at a time. */
#ifndef BASALT_ENGINE_BATCH_H
#define BASALT_ENGINE_BATCH_H

#include <stdint.h>

#include "base/error.h"
#include "engine/adapter.h"
#include "engine/kv_cache.h"
#include "engine/model.h"

typedef struct bs_batch bs_batch;

/* What an item wants back from the step. */
typedef enum {
    BATCH_OUT_NONE,        /* nothing (a prefill chunk that is not the last) */
    BATCH_OUT_LOGITS_LAST, /* out: [n_vocab] logits of the item's last token */
    BATCH_OUT_LOGITS_ALL,  /* out: [n][n_vocab] logits of every token */
    BATCH_OUT_HIDDEN_SUM,  /* out: [dim] += final-norm hidden state of every token */
    BATCH_OUT_HIDDEN_LAST, /* out: [dim] final-norm hidden state of the last token */
} bs_batch_out;

typedef struct bs_batch_item {
    bs_kv_seq *seq;        /* tokens go to positions seq->n_pos..; blocks reserved by the caller */
    const int32_t *tokens;
    int n;
    bs_batch_out out_kind;
    float *out;
    /* LoRA adapter over this batch's model, or NULL for the base.  Items
     * with different adapters share the step: each projection runs the base
     * matmul over all rows, then adds every adapter's scale * B (A x) to its
     * items' rows. */
    const bs_adapter *adapter;
} bs_batch_item;

/* max_tokens: rows per step; max_items: sequences per step; max_pos: the
 * longest sequence (sizes the attention scratch). */
bs_status batch_open(bs_model *m, bs_kv_pool *kv, int max_tokens, int max_items, int max_pos, bs_batch **out,
                     bs_error *err);
void batch_close(bs_batch *b);
int batch_max_tokens(const bs_batch *b);

/* Run every item's tokens through the model, write their K/V into their
 * blocks and advance each seq->n_pos by its n.  Items must use distinct
 * sequences.  BS_EINVAL (nothing changed) for ids outside the vocabulary,
 * more than max_tokens rows or max_items items, tokens beyond the blocks
 * a sequence has reserved, or an adapter over another model. */
bs_status batch_eval(bs_batch *b, const bs_batch_item *items, int n_items, bs_error *err);

#endif
