/* engine/context.c — one sequence on the batched forward pass: a private
 * KV pool just large enough for n_ctx positions, one block table, and a
 * batch workspace evaluated with a single item.  The forward pass itself is
 * engine/batch.c, shared with the scheduler. */
#include "engine/context.h"

#include <stdlib.h>

#include "engine/batch.h"
#include "engine/model_impl.h"

/* Tokens per forward chunk: large enough that weight reads amortise, small
 * enough that activations stay a few MB for mid-size models. */
enum { MAX_BATCH = 256, BLOCK_SIZE = 16 };

struct bs_context {
    bs_model *m;
    int n_ctx;
    bs_kv_pool *kv;
    bs_kv_seq seq;
    bs_batch *batch;
};

bs_status context_open(bs_model *m, int n_ctx, bs_context **out, bs_error *err) {
    *out = NULL;
    const bs_model_config *cfg = &m->cfg;
    if (n_ctx <= 0 || n_ctx > cfg->max_pos)
        return bs_fail(err, BS_ERANGE, "context size %d is outside 1..%d (the model's max positions)", n_ctx,
                       cfg->max_pos);
    bs_context *c = calloc(1, sizeof *c);
    if (!c) return bs_fail(err, BS_ENOMEM, "out of memory for a context");
    c->m = m;
    c->n_ctx = n_ctx;
    int n_blocks = (n_ctx + BLOCK_SIZE - 1) / BLOCK_SIZE;
    bs_status st = kv_pool_open(n_blocks, BLOCK_SIZE, cfg->n_layers, cfg->n_kv_heads * cfg->head_dim, BS_DTYPE_F32,
                                &c->kv, err);
    if (!st) st = kv_seq_init(&c->seq, c->kv, n_ctx, 0, err);
    if (!st) st = batch_open(m, c->kv, n_ctx < MAX_BATCH ? n_ctx : MAX_BATCH, 1, n_ctx, &c->batch, err);
    if (st) {
        context_close(c);
        return bs_wrap(err, "opening a %d-token context", n_ctx);
    }
    *out = c;
    return BS_OK;
}

void context_close(bs_context *c) {
    if (!c) return;
    batch_close(c->batch);
    kv_seq_free(&c->seq, c->kv);
    kv_pool_close(c->kv);
    free(c);
}

void context_reset(bs_context *c) { kv_seq_clear(&c->seq, c->kv); }
int context_pos(const bs_context *c) { return c->seq.n_pos; }
int context_size(const bs_context *c) { return c->n_ctx; }
bs_model *context_model(const bs_context *c) { return c->m; }

bs_status context_eval(bs_context *c, const int32_t *tokens, int n, float *logits, int all_logits,
                       bs_error *err) {
    int n_vocab = c->m->cfg.n_vocab, pos = c->seq.n_pos;
    if (n <= 0 || !tokens) return bs_fail(err, BS_EINVAL, "context_eval: no tokens");
    if (n > c->n_ctx - pos)
        return bs_fail(err, BS_ERANGE, "context full: %d tokens at position %d exceed the context size %d", n,
                       pos, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return bs_fail(err, BS_EINVAL, "token id %d at index %d is outside the vocabulary (0..%d)",
                           tokens[i], i, n_vocab - 1);
    /* The pool holds exactly n_ctx positions, so this cannot fail. */
    kv_seq_reserve(&c->seq, c->kv, pos + n);
    int step = batch_max_tokens(c->batch);
    for (int done = 0; done < n;) {
        int T = n - done < step ? n - done : step;
        bs_batch_item item = {&c->seq, tokens + done, T, BATCH_OUT_NONE, NULL, NULL};
        if (logits && all_logits) {
            item.out_kind = BATCH_OUT_LOGITS_ALL;
            item.out = logits + (size_t)done * n_vocab;
        } else if (logits && done + T == n) {
            item.out_kind = BATCH_OUT_LOGITS_LAST;
            item.out = logits;
        }
        bs_status st = batch_eval(c->batch, &item, 1, err);
        if (st) return st;
        done += T;
    }
    return BS_OK;
}
