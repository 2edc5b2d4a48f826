/* engine/generate.c — the generation loop and stop-string handling. */
#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "engine/model.h"

enum { PIECE_CAP = 1024 };

/* Text decoded but not yet released to the callback. */
typedef struct held_text {
    char *buf;
    size_t len, cap;
} held_text;

/* Longest suffix of text that is a proper prefix of some stop string. */
static size_t stop_prefix_suffix(const char *text, size_t len, const char *const *stop, int n_stop) {
    size_t best = 0;
    for (int i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = (sl - 1 < len ? sl - 1 : len); k > best; k--) {
            if (memcmp(text + len - k, stop[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

/* Earliest occurrence of any stop string, or -1. */
static long find_stop(const char *text, size_t len, const char *const *stop, int n_stop) {
    long first = -1;
    for (int i = 0; i < n_stop; i++) {
        const char *hit = memmem(text, len, stop[i], strlen(stop[i]));
        if (hit && (first < 0 || hit - text < first)) first = hit - text;
    }
    return first;
}

static bs_status check_params(const bs_context *c, int n_prompt, const bs_generate_params *p, bs_error *err) {
    if (n_prompt <= 0) return bs_fail(err, BS_EINVAL, "generate: empty prompt");
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop)) return bs_fail(err, BS_EINVAL, "generate: bad stop list");
    if (p->n_stop > 0 && !model_tokenizer(context_model(c)))
        return bs_fail(err, BS_EINVAL, "generate: stop strings need a model with a tokenizer");
    for (int i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0]) return bs_fail(err, BS_EINVAL, "generate: stop string %d is empty", i);
    return BS_OK;
}

bs_status generate(bs_context *c, const int32_t *prompt, int n_prompt, const bs_generate_params *p,
                   bs_token_cb cb, void *user, bs_generate_result *res, bs_error *err) {
    memset(res, 0, sizeof *res);
    res->n_prompt = n_prompt;
    bs_status st = check_params(c, n_prompt, p, err);
    if (st) return st;
    const bs_model *m = context_model(c);
    const bs_tokenizer *tok = model_tokenizer(m);
    int n_vocab = model_config(m)->n_vocab;

    size_t max_stop = 0;
    for (int i = 0; i < p->n_stop; i++)
        if (strlen(p->stop[i]) > max_stop) max_stop = strlen(p->stop[i]);
    held_text held = {.cap = max_stop + 2 * PIECE_CAP};
    held.buf = malloc(held.cap);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    bs_sampler *sampler = NULL;
    if (!held.buf || !logits) st = bs_fail(err, BS_ENOMEM, "generate: out of memory");
    if (!st) st = sampler_open(&p->sampling, n_vocab, &sampler, err);
    if (st) goto done;
    for (int i = 0; i < n_prompt; i++) sampler_accept(sampler, prompt[i]);

    double t0 = bs_now();
    st = context_eval(c, prompt, n_prompt, logits, 0, err);
    double t1 = bs_now();
    res->prefill_seconds = t1 - t0;
    if (st) goto done;

    tok_stream stream;
    tok_stream_init(&stream);
    for (;;) {
        int32_t id = sampler_sample(sampler, logits);
        sampler_accept(sampler, id);
        res->n_generated++;
        int eog = !p->ignore_eos && model_is_eog(m, id);
        int full = context_pos(c) >= context_size(c);
        int limit = p->max_tokens > 0 && res->n_generated >= p->max_tokens;
        const char *reason = eog ? "stop" : limit || full ? "length" : NULL;

        size_t release = 0;
        if (tok) {
            if (!eog)
                held.len += tok_stream_push(tok, &stream, id, 0, held.buf + held.len, PIECE_CAP);
            long hit = find_stop(held.buf, held.len, p->stop, p->n_stop);
            if (hit >= 0) {
                release = (size_t)hit;
                reason = "stop";
            } else if (reason) {
                held.len += tok_stream_flush(tok, &stream, held.buf + held.len, PIECE_CAP);
                release = held.len;
            } else {
                release = held.len - stop_prefix_suffix(held.buf, held.len, p->stop, p->n_stop);
            }
        }
        if (cb && cb(user, id, tok ? held.buf : NULL, release)) reason = "stop";
        memmove(held.buf, held.buf + release, held.len - release);
        held.len -= release;
        if (reason) {
            res->finish_reason = reason;
            break;
        }
        st = context_eval(c, &id, 1, logits, 0, err);
        if (st) break;
    }
    res->decode_seconds = bs_now() - t1;
done:
    sampler_close(sampler);
    free(logits);
    free(held.buf);
    return st;
}
