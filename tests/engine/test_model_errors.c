/* Bad model files fail with one clear line naming the file and the problem.
 *
 * A tiny valid llama (dim 8, 1 layer) is written by hand as a Hugging Face
 * directory and as a GGUF file, then broken one way per test: unknown
 * architecture, missing / extra / misshapen tensor, truncated file, malformed
 * or incomplete config.json, inconsistent dimensions. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/test.h"
#include "engine/context.h"
#include "engine/model.h"

enum { D = 8, H = 2, KV = 1, HD = 4, F = 16, V = 16 };

typedef struct spec {
    char name[96];
    int ndim;
    int64_t shape[2];
} spec;

/* The tensors of the tiny model, named for HF or GGUF. */
static int model_specs(int gguf, spec *out) {
    static const struct { const char *hf, *gg; int rows, cols; } t[] = {
        {"model.embed_tokens.weight", "token_embd.weight", V, D},
        {"model.norm.weight", "output_norm.weight", D, 0},
        {"lm_head.weight", "output.weight", V, D},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight", D, 0},
        {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", H * HD, D},
        {"model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", KV * HD, D},
        {"model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight", KV * HD, D},
        {"model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight", D, H * HD},
        {"model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight", D, 0},
        {"model.layers.0.mlp.gate_proj.weight", "blk.0.ffn_gate.weight", F, D},
        {"model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight", F, D},
        {"model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight", D, F},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    for (int i = 0; i < n; i++) {
        snprintf(out[i].name, sizeof out[i].name, "%s", gguf ? t[i].gg : t[i].hf);
        out[i].ndim = t[i].cols ? 2 : 1;
        out[i].shape[0] = t[i].rows;
        out[i].shape[1] = t[i].cols;
    }
    return n;
}

static int64_t numel(const spec *s) { return s->shape[0] * (s->ndim == 2 ? s->shape[1] : 1); }

static void remove_spec(spec *s, int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (strcmp(s[i].name, name) == 0) {
            memmove(&s[i], &s[i + 1], (size_t)(*n - i - 1) * sizeof *s);
            (*n)--;
            return;
        }
}

static void write_values(FILE *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float x = 0.01f * (float)(i % 7);
        fwrite(&x, 4, 1, f);
    }
}

static void write_safetensors(const char *path, const spec *s, int n) {
    char header[8192];
    size_t len = (size_t)snprintf(header, sizeof header, "{");
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t bytes = numel(&s[i]) * 4;
        len += (size_t)snprintf(header + len, sizeof header - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld",
                                i ? "," : "", s[i].name, (long long)s[i].shape[0]);
        if (s[i].ndim == 2) len += (size_t)snprintf(header + len, sizeof header - len, ",%lld", (long long)s[i].shape[1]);
        len += (size_t)snprintf(header + len, sizeof header - len, "],\"data_offsets\":[%lld,%lld]}",
                                (long long)off, (long long)(off + bytes));
        off += bytes;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    while (len % 8) header[len++] = ' ';
    FILE *f = fopen(path, "wb");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, f);
    fwrite(header, 1, len, f);
    for (int i = 0; i < n; i++) write_values(f, numel(&s[i]));
    fclose(f);
}

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void put_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void put_str(FILE *f, const char *s) {
    put_u64(f, strlen(s));
    fwrite(s, 1, strlen(s), f);
}

/* GGUF v3, F32 tensors; skip_key names a metadata key to leave out. */
static void write_gguf(const char *path, const char *arch, const spec *s, int n, const char *skip_key) {
    const struct { const char *key; uint32_t value; } ints[] = {
        {"context_length", 64}, {"embedding_length", D}, {"block_count", 1}, {"feed_forward_length", F},
        {"attention.head_count", H}, {"attention.head_count_kv", KV},
    };
    int n_ints = (int)(sizeof ints / sizeof ints[0]), n_kv = 0;
    for (int i = 0; i < n_ints; i++) n_kv += !(skip_key && strcmp(ints[i].key, skip_key) == 0);
    FILE *f = fopen(path, "wb");
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, (uint64_t)n);
    put_u64(f, (uint64_t)n_kv + 2);
    put_str(f, "general.architecture");
    put_u32(f, 8);
    put_str(f, arch);
    char key[128];
    for (int i = 0; i < n_ints; i++) {
        if (skip_key && strcmp(ints[i].key, skip_key) == 0) continue;
        snprintf(key, sizeof key, "%s.%s", arch, ints[i].key);
        put_str(f, key);
        put_u32(f, 4);
        put_u32(f, ints[i].value);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    put_str(f, key);
    put_u32(f, 6);
    float eps = 1e-5f;
    fwrite(&eps, 4, 1, f);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        put_str(f, s[i].name);
        put_u32(f, (uint32_t)s[i].ndim);
        for (int d = s[i].ndim - 1; d >= 0; d--) put_u64(f, (uint64_t)s[i].shape[d]); /* innermost first */
        put_u32(f, 0);
        put_u64(f, off);
        off += (uint64_t)(numel(&s[i]) * 4 + 31) / 32 * 32;
    }
    static const char zeros[32];
    fwrite(zeros, 1, (size_t)(32 - ftell(f) % 32) % 32, f);
    for (int i = 0; i < n; i++) {
        write_values(f, numel(&s[i]));
        fwrite(zeros, 1, (size_t)(32 - numel(&s[i]) * 4 % 32) % 32, f);
    }
    fclose(f);
}

static const char base_config[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"hidden_size\": 8,\n"
    "  \"intermediate_size\": 16,\n"
    "  \"num_hidden_layers\": 1,\n"
    "  \"num_attention_heads\": 2,\n"
    "  \"num_key_value_heads\": 1,\n"
    "  \"vocab_size\": 16,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_theta\": 10000.0,\n"
    "  \"max_position_embeddings\": 64,\n"
    "  \"eos_token_id\": [2, 3]\n"
    "}\n";

static char tmp_root[64];
static int case_counter;

/* The config text with `from` replaced by `to` (both NULL: unchanged). */
static char *config_with(const char *from, const char *to) {
    const char *at = from ? strstr(base_config, from) : NULL;
    size_t n = sizeof base_config + (to ? strlen(to) : 0);
    char *s = malloc(n);
    if (!at) {
        snprintf(s, n, "%s", base_config);
        return s;
    }
    snprintf(s, n, "%.*s%s%s", (int)(at - base_config), base_config, to, at + strlen(from));
    return s;
}

/* A fresh HF directory with the given config text and tensors; returns its path. */
static const char *hf_dir(const char *config, const spec *s, int n) {
    static char dir[128];
    snprintf(dir, sizeof dir, "%s/hf%d", tmp_root, case_counter++);
    mkdir(dir, 0755);
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs(config, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, s, n);
    return dir;
}

/* Open the model expecting failure with status and every needle in the message. */
static void expect_fail(const char *path, bs_status status, const char *needle1, const char *needle2) {
    bs_model *m = NULL;
    bs_error err = {0};
    bs_status st = model_open(path, NULL, &m, &err);
    CHECK_INT(st, status);
    CHECK(m == NULL);
    fprintf(stderr, "  %s\n", err.msg);
    CHECK(strchr(err.msg, '\n') == NULL);
    if (needle1 && !strstr(err.msg, needle1)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err.msg, needle1);
        test_failed_ = 1;
    }
    if (needle2 && !strstr(err.msg, needle2)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err.msg, needle2);
        test_failed_ = 1;
    }
    model_close(m);
}

static void expect_config_fail(const char *from, const char *to, bs_status status, const char *needle) {
    spec s[32];
    int n = model_specs(0, s);
    char *cfg = config_with(from, to);
    expect_fail(hf_dir(cfg, s, n), status, "config.json", needle);
    free(cfg);
}

/* ---- valid files --------------------------------------------------------- */

static void test_valid_hf(void) {
    spec s[32];
    int n = model_specs(0, s);
    /* A checkpoint may carry rotary_emb.inv_freq buffers; they are ignored. */
    snprintf(s[n].name, sizeof s[n].name, "model.layers.0.self_attn.rotary_emb.inv_freq");
    s[n].ndim = 1;
    s[n].shape[0] = HD / 2;
    n++;
    bs_model *m = NULL;
    bs_error err = {0};
    CHECK_OK(model_open(hf_dir(base_config, s, n), NULL, &m, &err), &err);
    if (!m) return;
    const bs_model_config *c = model_config(m);
    CHECK_INT(c->arch, BS_ARCH_LLAMA);
    CHECK_INT(c->head_dim, HD);
    CHECK_INT(c->n_kv_heads, KV);
    CHECK_INT(c->tied_embeddings, 0);
    CHECK_INT(c->rope_neox, 1);
    CHECK_NEAR(c->rms_eps, 1e-5, 1e-12);
    CHECK(model_tokenizer(m) == NULL);
    CHECK(model_is_eog(m, 2) && model_is_eog(m, 3) && !model_is_eog(m, 4));
    /* q, k, v, o, gate, up, down and the head, all F32 */
    CHECK_INT(model_weight_bytes(m), 4 * (8 * 8 + 4 * 8 * 2 + 8 * 8 + 16 * 8 * 3 + 16 * 8));
    CHECK(strstr(model_describe(m), "llama") && strstr(model_describe(m), "F32"));

    bs_context *c1 = NULL;
    CHECK_INT(context_open(m, 65, &c1, &err), BS_ERANGE); /* beyond max_position_embeddings */
    CHECK_OK(context_open(m, 4, &c1, &err), &err);
    float logits[V];
    int32_t bad[] = {1, 16};
    CHECK_INT(context_eval(c1, bad, 2, logits, 0, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "16") != NULL);
    int32_t five[] = {1, 2, 3, 4, 5};
    CHECK_INT(context_eval(c1, five, 5, logits, 0, &err), BS_ERANGE);
    CHECK_INT(context_pos(c1), 0);
    CHECK_OK(context_eval(c1, five, 4, logits, 0, &err), &err);
    CHECK_INT(context_pos(c1), 4);
    context_close(c1);
    model_close(m);
}

static void test_tied_when_head_absent(void) {
    spec s[32];
    int n = model_specs(0, s);
    remove_spec(s, &n, "lm_head.weight");
    bs_model *m = NULL;
    bs_error err = {0};
    CHECK_OK(model_open(hf_dir(base_config, s, n), NULL, &m, &err), &err);
    if (m) CHECK_INT(model_config(m)->tied_embeddings, 1);
    model_close(m);
}

static void test_valid_gguf(void) {
    spec s[32];
    int n = model_specs(1, s);
    char path[128];
    snprintf(path, sizeof path, "%s/ok.gguf", tmp_root);
    write_gguf(path, "llama", s, n, NULL);
    bs_model *m = NULL;
    bs_error err = {0};
    CHECK_OK(model_open(path, NULL, &m, &err), &err);
    if (!m) return;
    CHECK_INT(model_config(m)->rope_neox, 0); /* llama.cpp permuted Q/K */
    CHECK_INT(model_config(m)->n_vocab, V);
    CHECK_INT(model_config(m)->max_pos, 64);
    model_close(m);
}

/* ---- Hugging Face directories ---------------------------------------------- */

static void test_unknown_architecture(void) {
    expect_config_fail("LlamaForCausalLM", "GPT2LMHeadModel", BS_EUNSUPPORTED, "GPT2LMHeadModel");
}

static void test_missing_tensor(void) {
    spec s[32];
    int n = model_specs(0, s);
    remove_spec(s, &n, "model.layers.0.mlp.up_proj.weight");
    expect_fail(hf_dir(base_config, s, n), BS_ENOTFOUND, "missing tensor model.layers.0.mlp.up_proj.weight", NULL);
}

static void test_extra_tensor(void) {
    spec s[32];
    int n = model_specs(0, s);
    s[n] = s[n - 1];
    snprintf(s[n].name, sizeof s[n].name, "model.layers.0.mlp.extra_proj.weight");
    n++;
    expect_fail(hf_dir(base_config, s, n), BS_EFORMAT, "unexpected tensor model.layers.0.mlp.extra_proj.weight",
                "model.safetensors");
}

static void test_wrong_shape(void) {
    spec s[32];
    int n = model_specs(0, s);
    s[4].shape[0] = 9; /* q_proj */
    expect_fail(hf_dir(base_config, s, n), BS_EFORMAT,
                "model.safetensors: tensor model.layers.0.self_attn.q_proj.weight has shape [9, 8]",
                "expected [8, 8]");
}

static void test_truncated_safetensors(void) {
    spec s[32];
    int n = model_specs(0, s);
    const char *dir = hf_dir(base_config, s, n);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat stt;
    stat(path, &stt);
    CHECK(truncate(path, stt.st_size - 100) == 0);
    expect_fail(dir, BS_EFORMAT, "model.safetensors", NULL);
}

static void test_malformed_config(void) {
    expect_config_fail("\"hidden_size\": 8,", "\"hidden_size\": 8,,", BS_EFORMAT, "config.json:3:");
}

static void test_missing_config(void) {
    spec s[32];
    int n = model_specs(0, s);
    const char *dir = hf_dir(base_config, s, n);
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    expect_fail(dir, BS_ENOTFOUND, "no config.json", NULL);
}

static void test_missing_field(void) {
    expect_config_fail("\"num_hidden_layers\": 1,", "", BS_EFORMAT, "missing \"num_hidden_layers\"");
}

static void test_wrong_field_type(void) {
    expect_config_fail("\"hidden_size\": 8", "\"hidden_size\": \"8\"", BS_EFORMAT, "\"hidden_size\" must be an integer");
}

static void test_inconsistent_dims(void) {
    expect_config_fail("\"num_attention_heads\": 2", "\"num_attention_heads\": 3", BS_EFORMAT,
                       "hidden_size 8 is not a multiple of num_attention_heads 3");
    expect_config_fail("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3", BS_EFORMAT,
                       "not a multiple of 3 key/value heads");
    expect_config_fail("\"vocab_size\": 16", "\"vocab_size\": 0", BS_EFORMAT, "vocab size 0");
    /* A config that disagrees with the tensors is reported at the tensor. */
    spec s[32];
    int n = model_specs(0, s);
    char *cfg = config_with("\"vocab_size\": 16", "\"vocab_size\": 17");
    expect_fail(hf_dir(cfg, s, n), BS_EFORMAT, "model.safetensors: tensor model.embed_tokens.weight", "expected [17, 8]");
    free(cfg);
}

static void test_quantized_checkpoint(void) {
    expect_config_fail("\"rope_theta\": 10000.0,", "\"quantization_config\": {\"quant_method\": \"gptq\"},",
                       BS_EUNSUPPORTED, "quant_method gptq");
}

static void test_unsupported_rope(void) {
    expect_config_fail("\"rope_theta\": 10000.0,", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4},",
                       BS_EUNSUPPORTED, "\"yarn\"");
    expect_config_fail("\"rope_theta\": 10000.0,", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8},",
                       BS_EFORMAT, "missing \"low_freq_factor\"");
}

/* ---- GGUF files ------------------------------------------------------------ */

static const char *gguf_case(const char *arch, spec *s, int n, const char *skip_key) {
    static char path[128];
    snprintf(path, sizeof path, "%s/case%d.gguf", tmp_root, case_counter++);
    write_gguf(path, arch, s, n, skip_key);
    return path;
}

static void test_gguf_unknown_arch(void) {
    spec s[32];
    int n = model_specs(1, s);
    expect_fail(gguf_case("gpt2", s, n, NULL), BS_EUNSUPPORTED, "\"gpt2\"", ".gguf");
}

static void test_gguf_missing_tensor(void) {
    spec s[32];
    int n = model_specs(1, s);
    remove_spec(s, &n, "blk.0.ffn_up.weight");
    expect_fail(gguf_case("llama", s, n, NULL), BS_ENOTFOUND, "missing tensor blk.0.ffn_up.weight", ".gguf");
}

static void test_gguf_wrong_shape(void) {
    spec s[32];
    int n = model_specs(1, s);
    s[9].shape[0] = 17; /* ffn_gate */
    expect_fail(gguf_case("llama", s, n, NULL), BS_EFORMAT, "blk.0.ffn_gate.weight has shape [17, 8]",
                "expected [16, 8]");
}

static void test_gguf_extra_tensor(void) {
    spec s[32];
    int n = model_specs(1, s);
    s[n] = s[0];
    snprintf(s[n].name, sizeof s[n].name, "blk.0.attn_extra.weight");
    n++;
    expect_fail(gguf_case("llama", s, n, NULL), BS_EFORMAT, "unexpected tensor blk.0.attn_extra.weight", ".gguf");
}

static void test_gguf_missing_key(void) {
    spec s[32];
    int n = model_specs(1, s);
    expect_fail(gguf_case("llama", s, n, "block_count"), BS_ENOTFOUND, "llama.block_count", NULL);
}

static void test_gguf_truncated(void) {
    spec s[32];
    int n = model_specs(1, s);
    const char *path = gguf_case("llama", s, n, NULL);
    struct stat stt;
    stat(path, &stt);
    CHECK(truncate(path, stt.st_size - 64) == 0);
    bs_model *m = NULL;
    bs_error err = {0};
    CHECK(model_open(path, NULL, &m, &err) != BS_OK);
    CHECK(m == NULL);
    CHECK(strstr(err.msg, path) != NULL);
}

static void test_not_a_model(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/nothing-here.gguf", tmp_root);
    bs_model *m = NULL;
    bs_error err = {0};
    CHECK(model_open(path, NULL, &m, &err) != BS_OK);
    CHECK(strstr(err.msg, "nothing-here.gguf") != NULL);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/basalt-model-errors-XXXXXX");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_valid_hf);
    RUN(test_tied_when_head_absent);
    RUN(test_valid_gguf);
    RUN(test_unknown_architecture);
    RUN(test_missing_tensor);
    RUN(test_extra_tensor);
    RUN(test_wrong_shape);
    RUN(test_truncated_safetensors);
    RUN(test_malformed_config);
    RUN(test_missing_config);
    RUN(test_missing_field);
    RUN(test_wrong_field_type);
    RUN(test_inconsistent_dims);
    RUN(test_unsupported_rope);
    RUN(test_quantized_checkpoint);
    RUN(test_gguf_unknown_arch);
    RUN(test_gguf_missing_tensor);
    RUN(test_gguf_wrong_shape);
    RUN(test_gguf_extra_tensor);
    RUN(test_gguf_missing_key);
    RUN(test_gguf_truncated);
    RUN(test_not_a_model);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    TEST_MAIN_END();
}
