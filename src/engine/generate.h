/* engine/generate.h — prompt -> continuation on one context: prefill, then
 * sample / evaluate token by token until an end-of-generation token, a stop
 * string, max_tokens, a full context, or the callback says stop.
 *
 * Text is streamed through the callback, one call per sampled token, with the
 * text that token releases (complete UTF-8 only).  Text that could be the
 * start of a stop string is held back until it is known not to be; a stop
 * string and anything after it are never emitted.  The end-of-generation
 * token itself is counted but renders no text. */
#ifndef BASALT_ENGINE_GENERATE_H
#define BASALT_ENGINE_GENERATE_H

#include <stdint.h>

#include "engine/context.h"
#include "engine/sampler.h"

typedef struct bs_generate_params {
    int max_tokens;           /* <= 0: until the context is full */
    const char *const *stop;  /* stop strings (need a tokenizer) */
    int n_stop;
    int ignore_eos;           /* keep going past end-of-generation tokens */
    bs_sampler_params sampling; /* penalties also see the prompt tokens */
} bs_generate_params;

/* text_piece is NULL when the model has no tokenizer.  Return non-zero to stop. */
typedef int (*bs_token_cb)(void *user, int32_t token, const char *text_piece, size_t len);

typedef struct bs_generate_result {
    int n_prompt, n_generated;
    double prefill_seconds, decode_seconds;
    const char *finish_reason; /* "stop" | "length" */
} bs_generate_result;

/* The prompt is evaluated at the context's current position (context_reset
 * first for a fresh sequence).  cb may be NULL. */
bs_status generate(bs_context *c, const int32_t *prompt, int n_prompt, const bs_generate_params *p,
                   bs_token_cb cb, void *user, bs_generate_result *res, bs_error *err);

#endif
