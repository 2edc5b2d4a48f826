/* The forward pass against an independent PyTorch implementation.
 *
 * tests/oracle/make_model.py writes tiny random models of every architecture
 * (HF F32 / BF16 / sharded, GGUF F16 / Q8_0) and their reference logits at
 * every position; each case loads one and checks (a) one prefill of the whole
 * sequence, (b) a prefill of the first part then token-by-token decode, and
 * (c) prefills that continue a filled cache, mixed with decode:
 * max |logit - ref| <= 1e-3 x (max - min of the reference row) at every
 * position.
 *
 * Block-quantized weights (Q8_0 ...) multiply int8-quantized activations, as
 * in llama.cpp; the reference models that quantization too (act_q8 in
 * make_model.py), but the float64 reference and the f32 engine can round an
 * activation that sits on a .5 step to neighbouring codes, and a few such
 * flips move logits by a few 1e-3 of the range.  Those cases get 1e-2; the
 * int8 arithmetic itself is proven bit-exact in tests/kernels/test_qdot.c. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../support/oracle.h"
#include "../support/test.h"
#include "engine/context.h"
#include "engine/model.h"

enum { SKIP = 50, SPLIT = 130, RESUME = 200 }; /* where cases (b) and (c) switch between prefill and decode */

static const char *out_dir;     /* the oracle's output, NULL until setup succeeds */
static const char *setup_skip; /* reason the oracle cannot run */
static int32_t *tokens;
static int n_tokens;

/* Run the generator once; later cases reuse its output. */
static int setup(void) {
    if (tokens) return 1;
    out_dir = test_oracle_models(&setup_skip);
    if (!out_dir) return 0;
    char path[256];
    snprintf(path, sizeof path, "%s/tokens.bin", out_dir);
    long size = 0;
    tokens = test_read_file(path, &size);
    n_tokens = (int)(size / 4);
    return tokens != NULL;
}

/* Largest per-position error relative to the reference row's spread. */
static double max_rel_error(const float *got, const float *ref, int rows, int n_vocab) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        const float *g = got + (size_t)r * n_vocab, *e = ref + (size_t)r * n_vocab;
        float lo = e[0], hi = e[0];
        double d = 0;
        for (int i = 0; i < n_vocab; i++) {
            if (e[i] < lo) lo = e[i];
            if (e[i] > hi) hi = e[i];
            double diff = fabs((double)g[i] - e[i]);
            if (!(diff <= d)) d = diff; /* NaN counts as the worst */
        }
        double rel = d / (hi - lo);
        if (!(rel <= worst)) worst = rel;
    }
    return worst;
}

static void run_case(const char *name, double tolerance) {
    if (!setup()) {
        if (setup_skip) SKIP(setup_skip);
        CHECK(!"oracle generation failed");
        return;
    }
    char path[256], line[1024], case_name[128], model_path[512] = "", ref_path[512] = "";
    snprintf(path, sizeof path, "%s/manifest.txt", out_dir);
    FILE *mf = fopen(path, "r");
    CHECK(mf != NULL);
    if (!mf) return;
    while (fgets(line, sizeof line, mf)) {
        char mp[512], rp[512];
        if (sscanf(line, "%127s %511s %511s", case_name, mp, rp) == 3 && strcmp(case_name, name) == 0) {
            snprintf(model_path, sizeof model_path, "%s", mp);
            snprintf(ref_path, sizeof ref_path, "%s", rp);
        }
    }
    fclose(mf);
    CHECK(model_path[0] != 0);
    long ref_size = 0;
    float *ref = model_path[0] ? test_read_file(ref_path, &ref_size) : NULL;
    CHECK(ref != NULL);
    if (!ref) return;

    bs_error err = {0};
    bs_model *m = NULL;
    bs_model_params params = {.n_threads = 2};
    CHECK_OK(model_open(model_path, &params, &m, &err), &err);
    if (!m) {
        free(ref);
        return;
    }
    /* Only the qwen2 models carry a tokenizer (byte-level, id = byte value). */
    const bs_tokenizer *tok = model_tokenizer(m);
    int gguf = strstr(name, "gguf") != NULL;
    CHECK_INT(tok != NULL, strncmp(name, "qwen2", 5) == 0);
    if (tok) {
        int32_t *ids = NULL;
        size_t n_ids = 0;
        CHECK_OK(tok_encode(tok, "Hi!", 3, 0, &ids, &n_ids, &err), &err);
        CHECK_INT(n_ids, 3);
        if (n_ids == 3) CHECK(ids[0] == 'H' && ids[1] == 'i' && ids[2] == '!');
        free(ids);
        if (gguf) CHECK(model_is_eog(m, 256)); /* tokenizer.ggml.eos_token_id */
        else CHECK(model_is_eog(m, 2) && model_is_eog(m, 3)); /* generation_config.json */
    }
    int V = model_config(m)->n_vocab, T = n_tokens;
    CHECK_INT((long)T * V * 4, ref_size);
    bs_context *c = NULL;
    CHECK_OK(context_open(m, T, &c, &err), &err);
    float *logits = malloc((size_t)T * V * sizeof *logits);
    if (c && logits && (long)T * V * 4 == ref_size) {
        /* (a) the whole sequence as one batched prefill */
        CHECK_OK(context_eval(c, tokens, T, logits, 1, &err), &err);
        double rel_prefill = max_rel_error(logits, ref, T, V);

        /* (b) prefill SPLIT tokens, then decode one token at a time */
        context_reset(c);
        CHECK_OK(context_eval(c, tokens, SPLIT, logits, 1, &err), &err);
        for (int t = SPLIT; t < T; t++)
            CHECK_OK(context_eval(c, tokens + t, 1, logits + (size_t)t * V, 0, &err), &err);
        double rel_decode = max_rel_error(logits, ref, T, V);

        /* (c) prefills continuing a filled cache, interleaved with decode:
         * [0, SKIP) without logits, [SKIP, SPLIT) batched, decode to
         * RESUME, then the rest batched again. */
        context_reset(c);
        CHECK_OK(context_eval(c, tokens, SKIP, NULL, 0, &err), &err);
        CHECK_OK(context_eval(c, tokens + SKIP, SPLIT - SKIP, logits + (size_t)SKIP * V, 1, &err), &err);
        for (int t = SPLIT; t < RESUME; t++)
            CHECK_OK(context_eval(c, tokens + t, 1, logits + (size_t)t * V, 0, &err), &err);
        CHECK_OK(context_eval(c, tokens + RESUME, T - RESUME, logits + (size_t)RESUME * V, 1, &err), &err);
        double rel_mixed = max_rel_error(logits + (size_t)SKIP * V, ref + (size_t)SKIP * V, T - SKIP, V);

        fprintf(stderr, "  %-20s %s: max error / logit range: prefill %.2e, prefill+decode %.2e, mixed %.2e\n",
                name, model_describe(m), rel_prefill, rel_decode, rel_mixed);
        CHECK(rel_prefill <= tolerance);
        CHECK(rel_decode <= tolerance);
        CHECK(rel_mixed <= tolerance);

        CHECK_INT(context_pos(c), T);
        CHECK_INT(context_eval(c, tokens, 1, logits, 0, &err), BS_ERANGE);
    }
    free(logits);
    context_close(c);
    model_close(m);
    free(ref);
}

enum { FLOAT_WEIGHTS, INT8_ACTIVATIONS };
#define ORACLE_CASE(fn, name, kind) \
    static void fn(void) { run_case(name, (kind) == INT8_ACTIVATIONS ? 1e-2 : 1e-3); }
ORACLE_CASE(test_llama_hf_f32, "llama-hf-f32", FLOAT_WEIGHTS)
ORACLE_CASE(test_llama_hf_sharded, "llama-hf-sharded", FLOAT_WEIGHTS)
ORACLE_CASE(test_llama_gguf_f16, "llama-gguf-f16", FLOAT_WEIGHTS)
ORACLE_CASE(test_llama_gguf_q8_0, "llama-gguf-q8_0", INT8_ACTIVATIONS)
ORACLE_CASE(test_llama_bias_hf_f32, "llama_bias-hf-f32", FLOAT_WEIGHTS)
ORACLE_CASE(test_llama_bias_gguf_f16, "llama_bias-gguf-f16", FLOAT_WEIGHTS)
ORACLE_CASE(test_mistral_hf_bf16, "mistral-hf-bf16", FLOAT_WEIGHTS)
ORACLE_CASE(test_mistral_gguf_f16, "mistral-gguf-f16", FLOAT_WEIGHTS)
ORACLE_CASE(test_qwen2_hf_f32, "qwen2-hf-f32", FLOAT_WEIGHTS)
ORACLE_CASE(test_qwen2_hf_f16, "qwen2-hf-f16", FLOAT_WEIGHTS)
ORACLE_CASE(test_qwen2_gguf_f16, "qwen2-gguf-f16", FLOAT_WEIGHTS)
ORACLE_CASE(test_qwen3_hf_bf16, "qwen3-hf-bf16", FLOAT_WEIGHTS)
ORACLE_CASE(test_qwen3_gguf_f16, "qwen3-gguf-f16", FLOAT_WEIGHTS)

int main(void) {
    RUN(test_llama_hf_f32);
    RUN(test_llama_hf_sharded);
    RUN(test_llama_gguf_f16);
    RUN(test_llama_gguf_q8_0);
    RUN(test_llama_bias_hf_f32);
    RUN(test_llama_bias_gguf_f16);
    RUN(test_mistral_hf_bf16);
    RUN(test_mistral_gguf_f16);
    RUN(test_qwen2_hf_f32);
    RUN(test_qwen2_hf_f16);
    RUN(test_qwen2_gguf_f16);
    RUN(test_qwen3_hf_bf16);
    RUN(test_qwen3_gguf_f16);
    free(tokens);
    TEST_MAIN_END();
}
