/* generate() on a random-weight model with the byte-level tokenizer: finish
 * reasons, stop strings spanning tokens (never emitted, held-back text
 * released at the end), end-of-generation tokens, callbacks, determinism. */
#include <stdlib.h>

#include "../support/test.h"
#include "engine/generate.h"

static bs_model *model;

typedef struct collected {
    char text[4096];
    size_t len;
    int32_t tokens[512];
    int n_tokens, n_calls, stop_after;
} collected;

static int collect(void *user, int32_t token, const char *piece, size_t len) {
    collected *c = user;
    c->tokens[c->n_tokens++] = token;
    c->n_calls++;
    if (piece && c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    return c->stop_after && c->n_calls >= c->stop_after;
}

static const int32_t prompt[] = {'H', 'e', 'l', 'l', 'o', ',', ' ', 'w', 'o', 'r', 'l', 'd'};
enum { N_PROMPT = sizeof prompt / sizeof prompt[0] };

static bs_generate_params greedy_params(int max_tokens) {
    bs_generate_params p = {.max_tokens = max_tokens, .ignore_eos = 1};
    sampler_params_default(&p.sampling);
    p.sampling.temperature = 0;
    return p;
}

/* A fresh context of n_ctx; generate; return status. */
static bs_status run(const bs_generate_params *p, int n_ctx, collected *out, bs_generate_result *res) {
    bs_context *c = NULL;
    bs_error err = {0};
    CHECK_OK(context_open(model, n_ctx, &c, &err), &err);
    if (!c) return BS_ENOMEM;
    memset(out, 0, offsetof(collected, stop_after));
    bs_status st = generate(c, prompt, N_PROMPT, p, collect, out, res, &err);
    if (st) fprintf(stderr, "  generate: %s\n", err.msg);
    context_close(c);
    return st;
}

static void test_random_model(void) {
    const bs_model_config *c = model_config(model);
    CHECK_INT(c->n_vocab, 260);
    CHECK(model_tokenizer(model) != NULL);
    CHECK(model_is_eog(model, 256));
    CHECK(strstr(model_describe(model), "random") != NULL);
    CHECK_INT(model_weight_bytes(model), 4 * (2 * (64 * 64 * 2 + 32 * 64 * 2 + 160 * 64 * 3) + 260 * 64));
}

static void test_length_and_determinism(void) {
    bs_generate_params p = greedy_params(40);
    collected a = {0}, b = {0};
    bs_generate_result ra, rb;
    CHECK_OK(run(&p, 128, &a, &ra), &(bs_error){0});
    CHECK_OK(run(&p, 128, &b, &rb), &(bs_error){0});
    CHECK_STR(ra.finish_reason, "length");
    CHECK_INT(ra.n_prompt, N_PROMPT);
    CHECK_INT(ra.n_generated, 40);
    CHECK_INT(a.n_calls, 40);
    CHECK(memcmp(a.tokens, b.tokens, sizeof a.tokens[0] * 40) == 0);
    CHECK_STR(a.text, b.text);
    /* The streamed text is the decoded token sequence. */
    char *text = NULL;
    size_t len = 0;
    bs_error err = {0};
    CHECK_OK(tok_decode(model_tokenizer(model), a.tokens, 40, 0, &text, &len, &err), &err);
    CHECK(len > 0);
    free(text);
    CHECK(ra.prefill_seconds >= 0 && ra.decode_seconds >= 0);
}

static void test_seeded_sampling(void) {
    bs_generate_params p = greedy_params(30);
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 99;
    collected a = {0}, b = {0}, c = {0};
    bs_generate_result r;
    run(&p, 128, &a, &r);
    run(&p, 128, &b, &r);
    p.sampling.seed = 100;
    run(&p, 128, &c, &r);
    CHECK(memcmp(a.tokens, b.tokens, sizeof a.tokens[0] * 30) == 0);
    CHECK(memcmp(a.tokens, c.tokens, sizeof a.tokens[0] * 30) != 0);
}

static void test_stop_string(void) {
    bs_generate_params p = greedy_params(60);
    collected full = {0}, cut = {0};
    bs_generate_result r;
    CHECK_OK(run(&p, 128, &full, &r), &(bs_error){0});
    CHECK(full.len >= 24);
    if (full.len < 24) return;
    /* A 4-byte stop string spans several byte tokens. */
    char stop[8];
    memcpy(stop, full.text + 20, 4);
    stop[4] = 0;
    size_t before = (size_t)(strstr(full.text, stop) - full.text);
    const char *stops[] = {"never-in-output-\x01", stop};
    p.stop = stops;
    p.n_stop = 2;
    CHECK_OK(run(&p, 128, &cut, &r), &(bs_error){0});
    CHECK_STR(r.finish_reason, "stop");
    CHECK_INT(cut.len, before);
    CHECK(memcmp(cut.text, full.text, before) == 0);
    CHECK(r.n_generated < 60);
}

static void test_held_text_released(void) {
    /* A stop string whose first bytes appear in the output but which never
     * completes: the held-back text must still come out. */
    bs_generate_params p = greedy_params(60);
    collected full = {0}, out = {0};
    bs_generate_result r;
    run(&p, 128, &full, &r);
    char stop[16];
    memcpy(stop, full.text + full.len - 3, 3);
    memcpy(stop + 3, "\x01\x02", 3);
    const char *stops[] = {stop};
    p.stop = stops;
    p.n_stop = 1;
    CHECK_OK(run(&p, 128, &out, &r), &(bs_error){0});
    CHECK_STR(r.finish_reason, "length");
    CHECK_INT(out.len, full.len);
    CHECK_STR(out.text, full.text);
}

static void test_eos(void) {
    bs_logit_bias force_eos = {256, 1000.0f};
    bs_generate_params p = greedy_params(20);
    p.ignore_eos = 0;
    p.sampling.logit_bias = &force_eos;
    p.sampling.n_logit_bias = 1;
    collected out = {0};
    bs_generate_result r;
    CHECK_OK(run(&p, 64, &out, &r), &(bs_error){0});
    CHECK_STR(r.finish_reason, "stop");
    CHECK_INT(r.n_generated, 1);
    CHECK_INT(out.tokens[0], 256);
    CHECK_INT(out.len, 0);
    p.ignore_eos = 1;
    CHECK_OK(run(&p, 64, &out, &r), &(bs_error){0});
    CHECK_STR(r.finish_reason, "length");
    CHECK_INT(r.n_generated, 20);
}

static void test_callback_stop(void) {
    bs_generate_params p = greedy_params(50);
    collected out = {.stop_after = 5};
    bs_generate_result r;
    CHECK_OK(run(&p, 64, &out, &r), &(bs_error){0});
    CHECK_STR(r.finish_reason, "stop");
    CHECK_INT(r.n_generated, 5);
}

static void test_context_full(void) {
    bs_generate_params p = greedy_params(0);
    collected out = {0};
    bs_generate_result r;
    CHECK_OK(run(&p, 20, &out, &r), &(bs_error){0});
    CHECK_STR(r.finish_reason, "length");
    CHECK_INT(r.n_generated, 20 - N_PROMPT + 1); /* the last token is sampled but never evaluated */
}

static void test_bad_input(void) {
    bs_context *c = NULL;
    bs_error err = {0};
    CHECK_OK(context_open(model, 64, &c, &err), &err);
    if (!c) return;
    bs_generate_params p = greedy_params(5);
    bs_generate_result r;
    int32_t bad[] = {1, 999};
    CHECK_INT(generate(c, bad, 2, &p, NULL, NULL, &r, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "999") != NULL);
    const char *empty[] = {""};
    p.stop = empty;
    p.n_stop = 1;
    CHECK_INT(generate(c, prompt, N_PROMPT, &p, NULL, NULL, &r, &err), BS_EINVAL);
    p.n_stop = 0;
    int32_t long_prompt[80] = {0};
    CHECK_INT(generate(c, long_prompt, 80, &p, NULL, NULL, &r, &err), BS_ERANGE);
    context_close(c);
}

int main(void) {
    bs_model_config cfg = {
        .arch = BS_ARCH_LLAMA, .n_vocab = 260, .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
        .head_dim = 16, .ffn_dim = 160, .max_pos = 256, .rms_eps = 1e-5f, .rope_theta = 10000.0f,
        .rope_neox = 1,
    };
    bs_error err = {0};
    bs_model_params mp = {.n_threads = 2};
    if (model_open_random(&cfg, 1, &mp, &model, &err) != BS_OK) {
        printf("FAIL model_open_random: %s\n", err.msg);
        return 1;
    }
    RUN(test_random_model);
    RUN(test_length_and_determinism);
    RUN(test_seeded_sampling);
    RUN(test_stop_string);
    RUN(test_held_text_released);
    RUN(test_eos);
    RUN(test_callback_stop);
    RUN(test_context_full);
    RUN(test_bad_input);
    model_close(model);
    TEST_MAIN_END();
}
