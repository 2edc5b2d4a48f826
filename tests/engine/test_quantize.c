/* GGUF export (quantize_to_gguf) and quantizing at load.
 *
 * (a) The oracle's HF models (tests/oracle/make_model.py) written as F16
 *     GGUF give the reference logits within the oracle tolerance, and their
 *     tensors are byte-identical to the Python-written GGUF of the same
 *     weights (names, llama Q/K permutation, rope_freqs).
 * (b) A model with 256-wide rows, written here as an F32 HF directory, in
 *     every quantized mix: each tensor's type follows llama-quantize's rules,
 *     its bytes equal kern_quantize of the (permuted) f32 weights, and the
 *     logits stay close to the f32 model's (relative L2 bounds per type).
 * (c) --quantize at load equals loading the quantized GGUF.
 * (d) Tokenizer metadata: a GGUF written from an HF tokenizer, and from each
 *     llama.cpp vocab fixture, tokenizes like the original.
 * (e) Bad input fails with one line and leaves no file behind. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../format/scratch.h"
#include "../support/oracle.h"
#include "../support/test.h"
#include "engine/context.h"
#include "engine/model.h"
#include "engine/quantize.h"
#include "format/gguf.h"
#include "kernels/kernels.h"

/* ---- the oracle's models ------------------------------------------------- */

static const char *oracle_dir; /* make_model.py's output once ready */
static int32_t *tokens;
static int n_tokens;

/* 1 ready, -1 skip (no torch), -2 failed. */
static int oracle(void) {
    const char *skip = NULL;
    if (!tokens) {
        oracle_dir = test_oracle_models(&skip);
        if (!oracle_dir) return skip ? -1 : -2;
        char path[600];
        snprintf(path, sizeof path, "%s/tokens.bin", oracle_dir);
        long size = 0;
        tokens = test_read_file(path, &size);
        n_tokens = (int)(size / 4);
    }
    return tokens ? 1 : -2;
}

#define NEED_ORACLE()                                                                         \
    do {                                                                                      \
        int s_ = oracle();                                                                    \
        if (s_ == -1) SKIP("PyTorch/numpy not importable by $BASALT_PYTHON");                 \
        CHECK(s_ == 1);                                                                       \
        if (s_ != 1) return;                                                                  \
    } while (0)

/* Logits at every position of toks, or NULL (after a failed CHECK). */
static float *model_logits(const char *path, const bs_model_params *p, const int32_t *toks, int n, int *n_vocab) {
    bs_error err = {0};
    bs_model *m = NULL;
    bs_context *ctx = NULL;
    float *logits = NULL;
    CHECK_OK(model_open(path, p, &m, &err), &err);
    /* quantized matrices are interleaved at load unless asked not to */
    const char *d = m ? model_describe(m) : "";
    if ((strstr(d, "Q8_0") || strstr(d, "Q4_") || strstr(d, "Q6_K")) && kern_reads_interleaved(BS_DTYPE_Q8_0))
        CHECK((strstr(d, "_R16") != NULL) == !p->plain_layout);
    if (m) CHECK_OK(context_open(m, n, &ctx, &err), &err);
    if (ctx) {
        *n_vocab = model_config(m)->n_vocab;
        logits = malloc((size_t)n * (size_t)*n_vocab * sizeof *logits);
        if (context_eval(ctx, toks, n, logits, 1, &err) != BS_OK) {
            CHECK_OK(err.status, &err);
            free(logits);
            logits = NULL;
        }
    }
    context_close(ctx);
    model_close(m);
    return logits;
}

/* The oracle's measure: worst |got - ref| relative to the row's spread. */
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
            if (!(diff <= d)) d = diff;
        }
        if (!(d / (hi - lo) <= worst)) worst = d / (hi - lo);
    }
    return worst;
}

/* ||got - ref|| / ||ref|| over all logits. */
static double rel_l2(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / den);
}

/* Every tensor of a equals (name, dtype, shape, bytes) one of b. */
static void check_same_tensors(const char *path_a, const char *path_b) {
    bs_error err = {0};
    gguf_file *a = NULL, *b = NULL;
    CHECK_OK(gguf_open(path_a, &a, &err), &err);
    CHECK_OK(gguf_open(path_b, &b, &err), &err);
    if (a && b) {
        CHECK_INT(gguf_tensor_count(a), gguf_tensor_count(b));
        for (uint64_t i = 0; i < gguf_tensor_count(a); i++) {
            const bs_tensor *x = gguf_tensor(a, i), *y = gguf_find_tensor(b, x->name);
            CHECK(y != NULL);
            if (!y) continue;
            int same = x->dtype == y->dtype && x->ndim == y->ndim && x->nbytes == y->nbytes &&
                       memcmp(x->shape, y->shape, sizeof x->shape) == 0 && memcmp(x->data, y->data, x->nbytes) == 0;
            if (!same) fprintf(stderr, "  tensor %s differs from %s's\n", x->name, path_b);
            CHECK(same);
        }
    }
    gguf_close(a);
    gguf_close(b);
}

/* HF case -> F16 GGUF; logits vs ref_case over the first rows positions. */
static void check_f16_export(const char *hf_case, const char *ref_case, const char *python_gguf, int rows) {
    NEED_ORACLE();
    char in[600], out[600], ref_path[600];
    snprintf(in, sizeof in, "%s/%s", oracle_dir, hf_case);
    snprintf(out, sizeof out, "%s/%s.basalt-f16.gguf", oracle_dir, hf_case);
    snprintf(ref_path, sizeof ref_path, "%s/%s.ref", oracle_dir, ref_case);
    bs_error err = {0};
    quantize_params qp = {.n_threads = 2};
    CHECK_OK(quantize_to_gguf(in, out, BS_QUANT_F16, &qp, &err), &err);
    long ref_size = 0;
    float *ref = test_read_file(ref_path, &ref_size);
    int V = 0;
    bs_model_params mp = {.n_threads = 2};
    float *got = model_logits(out, &mp, tokens, n_tokens, &V);
    CHECK(ref && got);
    if (ref && got) {
        CHECK_INT(ref_size, (long)n_tokens * V * 4);
        double e = max_rel_error(got, ref, rows, V);
        if (!(e <= 1e-3)) fprintf(stderr, "  %s: max relative logit error %.3g\n", hf_case, e);
        CHECK(e <= 1e-3);
    }
    if (python_gguf) {
        char py[600];
        snprintf(py, sizeof py, "%s/%s", oracle_dir, python_gguf);
        check_same_tensors(out, py);
    }
    free(ref);
    free(got);
}

/* f32 sources: the Python F16 GGUF holds the same rounded weights, byte for byte. */
static void test_f16_llama(void) { check_f16_export("llama-hf-f32", "llama-gguf-f16", "llama-f16.gguf", 300); }
static void test_f16_llama_bias(void) {
    check_f16_export("llama_bias-hf-f32", "llama_bias-gguf-f16", "llama_bias-f16.gguf", 300);
}
static void test_f16_qwen2(void) { check_f16_export("qwen2-hf-f32", "qwen2-gguf-f16", "qwen2-f16.gguf", 300); }
/* bf16 sources: bf16 values are exact in f16, so the HF reference applies;
 * Mistral's 24-token window is dropped, so only positions inside it agree. */
static void test_f16_qwen3(void) { check_f16_export("qwen3-hf-bf16", "qwen3-hf-bf16", NULL, 300); }
static void test_f16_mistral(void) { check_f16_export("mistral-hf-bf16", "mistral-hf-bf16", NULL, 24); }

/* GGUF in, GGUF out: the Python Q8_0 file re-exported as q8_0 is unchanged. */
static void test_gguf_source_roundtrip(void) {
    NEED_ORACLE();
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/llama-q8_0.gguf", oracle_dir);
    snprintf(out, sizeof out, "%s/llama-q8_0.again.gguf", oracle_dir);
    bs_error err = {0};
    CHECK_OK(quantize_to_gguf(in, out, BS_QUANT_Q8_0, NULL, &err), &err);
    check_same_tensors(out, in);
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(out, &g, &err), &err);
    const char *name = NULL;
    uint32_t ftype = 0;
    if (g) {
        CHECK_OK(gguf_get_str(g, "general.name", 1, &name, &err), &err);
        CHECK_STR(name, "oracle");
        CHECK_OK(gguf_get_u32(g, "general.file_type", 1, &ftype, &err), &err);
        CHECK_INT(ftype, 7);
    }
    gguf_close(g);
}

/* ---- a model with 256-wide rows ------------------------------------------ */

enum { W_DIM = 256, W_FFN = 512, W_HEADS = 4, W_KV = 2, W_HD = 64, W_LAYERS = 2, W_VOCAB = 320, W_T = 40 };

typedef struct wtensor {
    char name[64];
    int64_t rows, cols; /* cols 0: vector */
    float *data;
} wtensor;

static wtensor wide[64];
static int n_wide;
static char wide_dir[512];

static float frand(uint64_t *s) { return ((float)scratch_rand(s) / 4294967296.0f - 0.5f) * 3.4641f; } /* unit variance */

static void add_wide(const char *name, int64_t rows, int64_t cols, float scale, float base, uint64_t *s) {
    wtensor *t = &wide[n_wide++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows, t->cols = cols;
    size_t n = (size_t)(rows * (cols ? cols : 1));
    t->data = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) t->data[i] = base + scale * frand(s);
}

/* A llama HF directory (F32 safetensors, untied head) written by hand. */
static const char *wide_model(void) {
    if (wide_dir[0]) return wide_dir;
    uint64_t s = 7;
    add_wide("model.embed_tokens.weight", W_VOCAB, W_DIM, 1.0f, 0, &s);
    for (int l = 0; l < W_LAYERS; l++) {
        char n[64];
#define LAYER(suffix, rows, cols, scale, base) \
        snprintf(n, sizeof n, "model.layers.%d." suffix, l), add_wide(n, rows, cols, scale, base, &s)
        LAYER("input_layernorm.weight", W_DIM, 0, 0.1f, 1.0f);
        LAYER("self_attn.q_proj.weight", W_HEADS * W_HD, W_DIM, 3.0f / 16, 0);
        LAYER("self_attn.k_proj.weight", W_KV * W_HD, W_DIM, 3.0f / 16, 0);
        LAYER("self_attn.v_proj.weight", W_KV * W_HD, W_DIM, 1.0f / 16, 0);
        LAYER("self_attn.o_proj.weight", W_DIM, W_HEADS * W_HD, 1.0f / 16, 0);
        LAYER("post_attention_layernorm.weight", W_DIM, 0, 0.1f, 1.0f);
        LAYER("mlp.gate_proj.weight", W_FFN, W_DIM, 1.0f / 16, 0);
        LAYER("mlp.up_proj.weight", W_FFN, W_DIM, 1.0f / 16, 0);
        LAYER("mlp.down_proj.weight", W_DIM, W_FFN, 1.0f / 22.6f, 0);
#undef LAYER
    }
    add_wide("model.norm.weight", W_DIM, 0, 0.1f, 1.0f, &s);
    add_wide("lm_head.weight", W_VOCAB, W_DIM, 4.0f / 16, 0, &s);

    snprintf(wide_dir, sizeof wide_dir, "%s", scratch_path("wide"));
    scratch_mkdir("wide");
    char config[1024];
    int n = snprintf(config, sizeof config,
                     "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": %d, \"hidden_size\": %d, "
                     "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                     "\"num_key_value_heads\": %d, \"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5, "
                     "\"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"hidden_act\": \"silu\"}",
                     W_VOCAB, W_DIM, W_FFN, W_LAYERS, W_HEADS, W_KV);
    scratch_write("wide/config.json", config, (size_t)n);
    bytes header = {0}, data = {0};
    bytes_put(&header, "{", 1);
    for (int i = 0; i < n_wide; i++) {
        const wtensor *t = &wide[i];
        size_t nbytes = (size_t)(t->rows * (t->cols ? t->cols : 1)) * sizeof(float);
        char entry[256];
        int k = t->cols ? snprintf(entry, sizeof entry, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [%lld, %lld], \"data_offsets\": [%zu, %zu]}",
                                   i ? ", " : "", t->name, (long long)t->rows, (long long)t->cols, data.len, data.len + nbytes)
                        : snprintf(entry, sizeof entry, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [%lld], \"data_offsets\": [%zu, %zu]}",
                                   i ? ", " : "", t->name, (long long)t->rows, data.len, data.len + nbytes);
        bytes_put(&header, entry, (size_t)k);
        bytes_put(&data, t->data, nbytes);
    }
    bytes_put(&header, "}", 1);
    while (header.len % 8) bytes_put(&header, " ", 1);
    bytes file = {0};
    bytes_u64(&file, header.len);
    bytes_put(&file, header.p, header.len);
    bytes_put(&file, data.p, data.len);
    scratch_write("wide/model.safetensors", file.p, file.len);
    bytes_free(&header), bytes_free(&data), bytes_free(&file);
    return wide_dir;
}

static const wtensor *wide_find(const char *name) {
    for (int i = 0; i < n_wide; i++)
        if (strcmp(wide[i].name, name) == 0) return &wide[i];
    return NULL;
}

/* GGUF name -> HF name and the head count its rows are permuted by. */
static const wtensor *wide_source(const char *gguf_name, int *perm_heads) {
    static const struct { const char *gguf, *hf; int heads; } map[] = {
        {"token_embd.weight", "model.embed_tokens.weight", 0}, {"output.weight", "lm_head.weight", 0},
        {"output_norm.weight", "model.norm.weight", 0}, {"attn_norm.weight", "input_layernorm.weight", 0},
        {"attn_q.weight", "self_attn.q_proj.weight", W_HEADS}, {"attn_k.weight", "self_attn.k_proj.weight", W_KV},
        {"attn_v.weight", "self_attn.v_proj.weight", 0}, {"attn_output.weight", "self_attn.o_proj.weight", 0},
        {"ffn_norm.weight", "post_attention_layernorm.weight", 0}, {"ffn_gate.weight", "mlp.gate_proj.weight", 0},
        {"ffn_up.weight", "mlp.up_proj.weight", 0}, {"ffn_down.weight", "mlp.down_proj.weight", 0},
    };
    int layer = -1;
    const char *rest = gguf_name;
    if (sscanf(gguf_name, "blk.%d.", &layer) == 1) rest = strchr(gguf_name + 4, '.') + 1;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcmp(rest, map[i].gguf) != 0) continue;
        char hf[96];
        if (layer >= 0) snprintf(hf, sizeof hf, "model.layers.%d.%s", layer, map[i].hf);
        else snprintf(hf, sizeof hf, "%s", map[i].hf);
        *perm_heads = map[i].heads;
        return wide_find(hf);
    }
    return NULL;
}

/* Expected type per tensor for the mixes (llama-quantize's rules). */
static bs_dtype expected_type(bs_quant q, const char *name) {
    bs_dtype base = q == BS_QUANT_Q8_0 ? BS_DTYPE_Q8_0 : q == BS_QUANT_Q4_0 ? BS_DTYPE_Q4_0
                  : q == BS_QUANT_Q6_K ? BS_DTYPE_Q6_K : BS_DTYPE_Q4_K;
    if (strcmp(name, "output.weight") == 0) return q == BS_QUANT_Q8_0 ? BS_DTYPE_Q8_0 : BS_DTYPE_Q6_K;
    /* with 2 layers use_more_bits picks layer 1 only */
    if (q == BS_QUANT_Q4_K_M && (strcmp(name, "blk.1.attn_v.weight") == 0 || strcmp(name, "blk.1.ffn_down.weight") == 0))
        return BS_DTYPE_Q6_K;
    return base;
}

static void check_quantized(bs_quant q, double max_l2) {
    const char *dir = wide_model();
    char out[600];
    snprintf(out, sizeof out, "%s/wide-%s.gguf", scratch_dir(), quant_name(q));
    bs_error err = {0};
    quantize_params qp = {.n_threads = 3};
    CHECK_OK(quantize_to_gguf(dir, out, q, &qp, &err), &err);
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(out, &g, &err), &err);
    if (!g) return;
    CHECK_INT(gguf_tensor_count(g), 3 + W_LAYERS * 9);
    uint32_t ftype = 0;
    CHECK_OK(gguf_get_u32(g, "general.file_type", 1, &ftype, &err), &err);
    CHECK_INT(ftype, quant_file_type(q));
    for (uint64_t i = 0; i < gguf_tensor_count(g); i++) {
        const bs_tensor *t = gguf_tensor(g, i);
        int heads = 0;
        const wtensor *src = wide_source(t->name, &heads);
        CHECK(src != NULL);
        if (!src) continue;
        int64_t rows = src->rows, cols = src->cols ? src->cols : 1;
        bs_dtype want = src->cols ? expected_type(q, t->name) : BS_DTYPE_F32;
        if (t->dtype != want) fprintf(stderr, "  %s: %s, expected %s\n", t->name, bs_dtype_name(t->dtype), bs_dtype_name(want));
        CHECK_INT(t->dtype, want);
        CHECK_INT(t->shape[0], rows);
        /* convert_hf_to_gguf's permute, independently: row h*hd + 2i + j <- h*hd + j*hd/2 + i */
        float *permuted = malloc((size_t)(rows * cols) * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            int64_t from = r;
            if (heads) {
                int64_t hd = rows / heads, h = r / hd, o = r % hd;
                from = h * hd + (o & 1) * (hd / 2) + o / 2;
            }
            memcpy(permuted + r * cols, src->data + from * cols, (size_t)cols * sizeof(float));
        }
        size_t nbytes = bs_dtype_row_bytes(want, cols) * (size_t)rows;
        void *expect = malloc(nbytes);
        kern_quantize(want, permuted, expect, rows * cols);
        CHECK_INT(t->nbytes, nbytes);
        int same = t->nbytes == nbytes && memcmp(expect, t->data, nbytes) == 0;
        if (!same) fprintf(stderr, "  %s: bytes differ from kern_quantize of the source\n", t->name);
        CHECK(same);
        free(expect);
        free(permuted);
    }
    gguf_close(g);

    int32_t toks[W_T];
    for (int i = 0; i < W_T; i++) toks[i] = (int32_t)((i * 37 + 11) % W_VOCAB);
    int V = 0, V2 = 0;
    bs_model_params mp = {.n_threads = 2};
    float *ref = model_logits(dir, &mp, toks, W_T, &V);
    float *got = model_logits(out, &mp, toks, W_T, &V2);
    /* the interleaved layout changes no bit of the result */
    bs_model_params mp_plain = {.n_threads = 2, .plain_layout = 1};
    float *plain = model_logits(out, &mp_plain, toks, W_T, &V2);
    CHECK(got && plain && memcmp(got, plain, sizeof(float) * (size_t)W_T * V2) == 0);
    free(plain);
    /* at load: the same mix over the HF rows (rotate-half, unpermuted) */
    bs_model_params mq = {.n_threads = 2, .quantize = q};
    float *loaded = model_logits(dir, &mq, toks, W_T, &V2);
    CHECK(ref && got && loaded);
    if (ref && got && loaded) {
        double e = rel_l2(got, ref, (size_t)W_T * V);
        if (!(e > 0 && e <= max_l2)) fprintf(stderr, "  %s: relative L2 logit error %.4f (bound %.3f)\n", quant_name(q), e, max_l2);
        CHECK(e > 0 && e <= max_l2);
        double same = max_rel_error(loaded, got, W_T, V);
        if (!(same <= 1e-5)) fprintf(stderr, "  --quantize %s at load vs its GGUF: %.3g\n", quant_name(q), same);
        CHECK(same <= 1e-5);
    }
    free(ref);
    free(got);
    free(loaded);
}

static void test_q8_0(void) { check_quantized(BS_QUANT_Q8_0, 0.002); }
static void test_q6_k(void) { check_quantized(BS_QUANT_Q6_K, 0.005); }
static void test_q4_k(void) { check_quantized(BS_QUANT_Q4_K, 0.02); }
static void test_q4_k_m(void) { check_quantized(BS_QUANT_Q4_K_M, 0.02); }
static void test_q4_0(void) { check_quantized(BS_QUANT_Q4_0, 0.03); }

/* Rows that are not whole blocks fall back (oracle dims are 64 wide). */
static void test_mix_rules(void) {
    CHECK_INT(quant_matrix_dtype(BS_QUANT_Q4_K, QUANT_ROLE_OTHER, 0, 2, 0, 64), BS_DTYPE_Q8_0);
    CHECK_INT(quant_matrix_dtype(BS_QUANT_Q4_0, QUANT_ROLE_OUTPUT, 0, 2, 0, 64), BS_DTYPE_Q8_0);
    CHECK_INT(quant_matrix_dtype(BS_QUANT_Q4_0, QUANT_ROLE_OUTPUT, 0, 2, 0, 256), BS_DTYPE_Q6_K);
    CHECK_INT(quant_matrix_dtype(BS_QUANT_Q4_0, QUANT_ROLE_EMBED, 0, 2, 1, 256), BS_DTYPE_Q6_K); /* tied */
    CHECK_INT(quant_matrix_dtype(BS_QUANT_Q4_0, QUANT_ROLE_EMBED, 0, 2, 0, 256), BS_DTYPE_Q4_0);
    CHECK_INT(quant_matrix_dtype(BS_QUANT_Q8_0, QUANT_ROLE_OUTPUT, 0, 2, 0, 256), BS_DTYPE_Q8_0);
    CHECK_INT(quant_matrix_dtype(BS_QUANT_F16, QUANT_ROLE_OUTPUT, 0, 2, 0, 256), BS_DTYPE_F16);
    CHECK_INT(quant_matrix_dtype(BS_QUANT_Q8_0, QUANT_ROLE_OTHER, 0, 2, 0, 48), BS_DTYPE_F16);
    /* use_more_bits over 32 layers: first 4, last 4, and every third between */
    int more[32], n_more = 0;
    for (int l = 0; l < 32; l++) {
        more[l] = quant_matrix_dtype(BS_QUANT_Q4_K_M, QUANT_ROLE_FFN_DOWN, l, 32, 0, 4096) == BS_DTYPE_Q6_K;
        n_more += more[l];
        CHECK_INT(quant_matrix_dtype(BS_QUANT_Q4_K_M, QUANT_ROLE_OTHER, l, 32, 0, 4096), BS_DTYPE_Q4_K);
    }
    CHECK(more[0] && more[3] && !more[4] && !more[5] && more[6] && more[9] && more[28] && more[31]);
    CHECK_INT(n_more, 16);
    bs_quant q;
    bs_error err = {0};
    CHECK_OK(quant_parse("Q4_K_M", &q, &err), &err);
    CHECK_INT(q, BS_QUANT_Q4_K_M);
    CHECK_INT(quant_parse("q5_k", &q, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "q5_k") != NULL);
}

/* ---- tokenizers ---------------------------------------------------------- */

static const char *const samples[] = {
    "Hello world", " leading space", "Führer 3333333 ½ months", "tabs\tand\nnewlines\n\n",
    "emoji \xF0\x9F\xA6\x99 and CJK \xE7\x81\xAB\xE5\xB1\xB1", "<|endoftext|> is special", "",
};

static void check_same_tokens(const bs_tokenizer *a, const bs_tokenizer *b, const char *what) {
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        for (int flags = 0; flags <= (TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL); flags++) {
            bs_error err = {0};
            int32_t *x = NULL, *y = NULL;
            size_t nx = 0, ny = 0;
            CHECK_OK(tok_encode(a, samples[i], strlen(samples[i]), flags, &x, &nx, &err), &err);
            CHECK_OK(tok_encode(b, samples[i], strlen(samples[i]), flags, &y, &ny, &err), &err);
            int same = nx == ny && (nx == 0 || memcmp(x, y, nx * sizeof *x) == 0);
            if (!same) fprintf(stderr, "  %s: \"%s\" (flags %d) tokenizes differently\n", what, samples[i], flags);
            CHECK(same);
            free(x);
            free(y);
        }
    }
}

static void test_tokenizer_from_hf(void) {
    NEED_ORACLE();
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/qwen2-hf-f16", oracle_dir);
    snprintf(out, sizeof out, "%s/qwen2-tok.gguf", oracle_dir);
    bs_error err = {0};
    CHECK_OK(quantize_to_gguf(in, out, BS_QUANT_Q8_0, NULL, &err), &err);
    bs_tokenizer *hf = NULL, *gg = NULL;
    gguf_file *g = NULL;
    CHECK_OK(tok_open_hf(in, &hf, &err), &err);
    CHECK_OK(gguf_open(out, &g, &err), &err);
    if (g) CHECK_OK(tok_open_gguf(g, &gg, &err), &err);
    if (hf && gg) {
        check_same_tokens(hf, gg, "qwen2-hf-f16");
        CHECK_INT(tok_vocab_size(gg), 320); /* padded to the model's vocab */
        CHECK_STR(tok_token_text(gg, 300), "[PAD300]");
        CHECK_INT(tok_eos_id(gg), tok_eos_id(hf));
    }
    const char *pre = NULL;
    if (g) CHECK_OK(gguf_get_str(g, "tokenizer.ggml.pre", 1, &pre, &err), &err);
    CHECK_STR(pre, "gpt-2"); /* ByteLevel with its regex is GPT-2's pre-tokenizer */
    tok_close(hf);
    tok_close(gg);
    gguf_close(g);
}

/* Each llama.cpp vocab, written back out as metadata, tokenizes its test
 * texts as before (byte-level with each pre-tokenizer, and SentencePiece). */
static void test_tokenizer_fixtures(void) {
    const char *shared = test_shared_dir();
    if (!shared) SKIP("../shared fixtures absent");
    static const char *const vocabs[] = {"gpt-2", "falcon", "starcoder", "deepseek-llm", "llama-spm", "phi-3"};
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        char path[600], out[600];
        snprintf(path, sizeof path, "%s/fixtures/vocab/ggml-vocab-%s.gguf", shared, vocabs[v]);
        snprintf(out, sizeof out, "%s/vocab-%s.gguf", scratch_dir(), vocabs[v]);
        bs_error err = {0};
        gguf_file *g = NULL, *g2 = NULL;
        bs_tokenizer *a = NULL, *b = NULL;
        gguf_writer *w = NULL;
        CHECK_OK(gguf_open(path, &g, &err), &err);
        if (g) CHECK_OK(tok_open_gguf(g, &a, &err), &err);
        if (a) CHECK_OK(gguf_writer_open(out, 0, &w, &err), &err);
        if (w) {
            CHECK_OK(quantize_write_tokenizer(w, a, tok_vocab_size(a), path, &err), &err);
            CHECK_OK(gguf_writer_finish(w, &err), &err);
            CHECK_OK(gguf_open(out, &g2, &err), &err);
        }
        if (g2) CHECK_OK(tok_open_gguf(g2, &b, &err), &err);
        if (a && b) {
            check_same_tokens(a, b, vocabs[v]);
            const char *pre_in = NULL, *pre_out = NULL;
            gguf_get_str(g, "tokenizer.ggml.pre", 0, &pre_in, &err);
            gguf_get_str(g2, "tokenizer.ggml.pre", 0, &pre_out, &err);
            if (pre_in && strcmp(pre_in, "default") != 0 && strcmp(pre_in, "llama-spm") != 0) CHECK_STR(pre_out, pre_in);
        }
        /* the fixture's own test cases */
        char inp[600];
        snprintf(inp, sizeof inp, "%s.inp", path);
        long size = 0;
        char *text = test_read_file(inp, &size);
        if (text && a && b) {
            text[size] = 0;
            const char *sep = "\n__ggml_vocab_test__\n";
            for (char *p = text, *q; *p; p = q + strlen(sep)) {
                q = strstr(p, sep);
                if (!q) break;
                int32_t *x = NULL, *y = NULL;
                size_t nx = 0, ny = 0;
                CHECK_OK(tok_encode(a, p, (size_t)(q - p), 0, &x, &nx, &err), &err);
                CHECK_OK(tok_encode(b, p, (size_t)(q - p), 0, &y, &ny, &err), &err);
                int same = nx == ny && (nx == 0 || memcmp(x, y, nx * sizeof *x) == 0);
                if (!same) fprintf(stderr, "  %s: case \"%.*s\" differs\n", vocabs[v], (int)(q - p), p);
                CHECK(same);
                free(x);
                free(y);
            }
        }
        free(text);
        tok_close(a);
        tok_close(b);
        gguf_close(g);
        gguf_close(g2);
    }
}

/* ---- errors -------------------------------------------------------------- */

static void test_errors(void) {
    const char *dir = wide_model();
    bs_error err = {0};
    CHECK_INT(quantize_to_gguf(dir, "/nonexistent-dir/out.gguf", BS_QUANT_Q8_0, NULL, &err), BS_EIO);
    CHECK(strstr(err.msg, "/nonexistent-dir/out.gguf") != NULL && !strchr(err.msg, '\n'));
    const char *out = scratch_path("never.gguf");
    CHECK(quantize_to_gguf(scratch_path("no-such-model"), out, BS_QUANT_Q8_0, NULL, &err) != BS_OK);
    CHECK(strstr(err.msg, "no-such-model") != NULL && !strchr(err.msg, '\n'));
    CHECK(access(out, F_OK) != 0);
    CHECK_INT(quantize_to_gguf(dir, out, BS_QUANT_NONE, NULL, &err), BS_EINVAL);
    /* a GGUF is already quantized: --quantize at load refuses it */
    char gguf[600];
    snprintf(gguf, sizeof gguf, "%s/wide-q8_0.gguf", scratch_dir());
    CHECK_OK(quantize_to_gguf(dir, gguf, BS_QUANT_Q8_0, NULL, &err), &err);
    bs_model *m = NULL;
    bs_model_params mq = {.n_threads = 1, .quantize = BS_QUANT_Q4_0};
    CHECK_INT(model_open(gguf, &mq, &m, &err), BS_EUNSUPPORTED);
    CHECK(strstr(err.msg, "wide-q8_0.gguf") != NULL);
    CHECK(m == NULL);
}

int main(void) {
    RUN(test_mix_rules);
    RUN(test_f16_llama);
    RUN(test_f16_llama_bias);
    RUN(test_f16_qwen2);
    RUN(test_f16_qwen3);
    RUN(test_f16_mistral);
    RUN(test_gguf_source_roundtrip);
    RUN(test_q8_0);
    RUN(test_q6_k);
    RUN(test_q4_k);
    RUN(test_q4_k_m);
    RUN(test_q4_0);
    RUN(test_tokenizer_from_hf);
    RUN(test_tokenizer_fixtures);
    RUN(test_errors);
    TEST_MAIN_END();
}
