/* LoRA adapters in the serving engine:
 *  - sequences with adapter X, adapter Y and the base in one batched step
 *    give bit-identical logits to each run alone, and greedy outputs through
 *    the scheduler are the same batched or alone; the prefix cache is not
 *    shared across adapters; an adapter closed while a request runs lives on;
 *  - PEFT save -> load gives identical tensors and the config fields PEFT
 *    writes; over a GGUF llama base Q/K B rows are permuted and restored;
 *  - the PyTorch oracle (tests/oracle/adapter_ref.py) applies a saved
 *    adapter as W + scale B A to the base and matches basalt's logits, for a
 *    Hugging Face base and for a GGUF one;
 *  - a merged checkpoint gives the logits of base + adapter;
 *  - malformed adapters fail with one line naming the tensor or key. */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/file.h"
#include "base/paths.h"
#include "engine/adapter.h"
#include "engine/batch.h"
#include "engine/scheduler.h"
#include "format/safetensors.h"
#include "format/safetensors_write.h"

enum { BLOCK = 4, MAX_POS = 96, N_VOCAB = 260, MAX_TENSORS = 64 };
#define ALL_LINEAR ((1u << BS_LIN_COUNT) - 1)
#define PEFT "base_model.model.model.layers."

static const char *const modules[BS_LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                  "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                  "mlp.down_proj"};

static char tmp_dir[64];

static void cleanup(void) {
    if (!tmp_dir[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
}

static const char *scratch(const char *name) {
    static char path[64][256];
    static int k;
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/basalt-adapter-XXXXXX");
        if (!mkdtemp(tmp_dir)) abort();
        atexit(cleanup);
    }
    char *p = path[k++ % 64];
    snprintf(p, 256, "%s/%s", tmp_dir, name);
    return p;
}

static bs_model *open_random(int rope_neox) {
    bs_model_config cfg = {
        .arch = BS_ARCH_LLAMA, .n_vocab = N_VOCAB, .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
        .head_dim = 16, .ffn_dim = 96, .max_pos = 256, .rms_eps = 1e-5f, .rope_theta = 10000.0f,
        .rope_neox = rope_neox, .qkv_bias = 1,
    };
    bs_model *m = NULL;
    bs_error err = {0};
    bs_model_params mp = {.n_threads = 2};
    CHECK_OK(model_open_random(&cfg, 7, &mp, &m, &err), &err);
    return m;
}

/* ---- random adapters --------------------------------------------------------- */

typedef struct lora_set {
    int n;
    bs_adapter_tensor t[MAX_TENSORS];
    char names[MAX_TENSORS][96];
    float *data[MAX_TENSORS];
} lora_set;

static float urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

/* A in (-1, 1) / sqrt(in), B in (-amp, amp), PEFT names, for every layer of m. */
static void lora_set_make(lora_set *s, const bs_model *m, unsigned targets, int rank, uint64_t seed, float amp) {
    memset(s, 0, sizeof *s);
    for (int l = 0; l < model_config(m)->n_layers; l++) {
        bs_layer_weights lw;
        model_layer_weights(m, l, &lw);
        for (int lin = 0; lin < BS_LIN_COUNT; lin++) {
            if (!(targets >> lin & 1)) continue;
            for (int b = 0; b < 2; b++) {
                bs_adapter_tensor *t = &s->t[s->n];
                snprintf(s->names[s->n], 96, PEFT "%d.%s.lora_%c.weight", l, modules[lin], b ? 'B' : 'A');
                t->name = s->names[s->n];
                t->rows = b ? lw.w[lin].rows : rank;
                t->cols = b ? rank : lw.w[lin].cols;
                float *d = s->data[s->n++] = malloc((size_t)t->rows * t->cols * sizeof *d);
                float gain = b ? amp : 1.0f / sqrtf((float)lw.w[lin].cols);
                for (int i = 0; i < t->rows * t->cols; i++) d[i] = gain * urand(&seed);
                t->data = d;
            }
        }
    }
}

static void lora_set_free(lora_set *s) {
    for (int i = 0; i < s->n; i++) free(s->data[i]);
}

static bs_adapter *make_adapter(bs_model *m, unsigned targets, int rank, float alpha, int rslora, uint64_t seed,
                                float amp) {
    lora_set s;
    lora_set_make(&s, m, targets, rank, seed, amp);
    bs_adapter_config c = {.rank = rank, .alpha = alpha, .rslora = rslora, .targets = targets, .base_model = "test/base"};
    bs_adapter *a = NULL;
    bs_error err = {0};
    CHECK_OK(adapter_from_tensors(m, &c, s.t, s.n, &a, &err), &err);
    lora_set_free(&s);
    return a;
}

/* ---- (a) batching ----------------------------------------------------------------- */

typedef struct run_seq {
    const int32_t *tokens;
    int n_prompt;
    const bs_adapter *adapter;
    bs_kv_seq kv;
    int32_t next;
    float logits[4][N_VOCAB]; /* after the prompt, then after each decode token */
} run_seq;

/* Prefill every sequence in one step, then three decode steps feeding fixed
 * tokens; all of seqs[] share each step. */
static void run_steps(bs_model *m, run_seq *seqs, int n) {
    bs_error err = {0};
    bs_kv_pool *pool = NULL;
    bs_batch *batch = NULL;
    CHECK_OK(kv_pool_open(128, BLOCK, 2, 2 * 16, BS_DTYPE_F32, &pool, &err), &err);
    CHECK_OK(batch_open(m, pool, 64, 4, MAX_POS, &batch, &err), &err);
    if (!batch) return;
    bs_batch_item items[4];
    for (int step = 0; step < 4; step++) {
        for (int i = 0; i < n; i++) {
            run_seq *s = &seqs[i];
            if (step == 0) CHECK_OK(kv_seq_init(&s->kv, pool, MAX_POS, 0, &err), &err);
            int k = step == 0 ? s->n_prompt : 1;
            CHECK_INT(kv_seq_reserve(&s->kv, pool, s->kv.n_pos + k), 0);
            s->next = (int32_t)((step * 41 + s->n_prompt * 7 + 11) % N_VOCAB);
            items[i] = (bs_batch_item){&s->kv, step == 0 ? s->tokens : &s->next, k, BATCH_OUT_LOGITS_LAST,
                                       s->logits[step], s->adapter};
        }
        CHECK_OK(batch_eval(batch, items, n, &err), &err);
    }
    for (int i = 0; i < n; i++) kv_seq_free(&seqs[i].kv, pool);
    batch_close(batch);
    kv_pool_close(pool);
}

static void test_batch_mixed(void) {
    bs_model *m = open_random(1), *other = open_random(1);
    bs_adapter *x = make_adapter(m, ALL_LINEAR, 4, 8.0f, 0, 1, 0.5f);
    bs_adapter *y = make_adapter(m, 1u << BS_LIN_Q | 1u << BS_LIN_V | 1u << BS_LIN_DOWN, 2, 4.0f, 1, 2, 0.5f);
    if (!x || !y) goto done;
    CHECK_NEAR(adapter_scale(x), 2.0, 1e-7);
    CHECK_NEAR(adapter_scale(y), 4.0 / sqrt(2.0), 1e-6);
    CHECK(adapter_id(x) != adapter_id(y) && adapter_id(x) != 0);
    int32_t t[4][16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 16; j++) t[i][j] = (int32_t)((j * 37 + i * 101 + 5) % N_VOCAB);
    /* X twice (its rows are not contiguous in the step), the base, Y. */
    const bs_adapter *use[4] = {x, NULL, y, x};
    int len[4] = {12, 15, 9, 7};
    run_seq together[4], alone[4], base0;
    for (int i = 0; i < 4; i++) {
        together[i] = (run_seq){.tokens = t[i], .n_prompt = len[i], .adapter = use[i]};
        alone[i] = together[i];
        run_steps(m, &alone[i], 1);
    }
    run_steps(m, together, 4);
    for (int i = 0; i < 4; i++)
        CHECK(memcmp(together[i].logits, alone[i].logits, sizeof together[i].logits) == 0);
    /* The adapters do change the output. */
    base0 = (run_seq){.tokens = t[0], .n_prompt = len[0]};
    run_steps(m, &base0, 1);
    double diff = 0;
    for (int v = 0; v < N_VOCAB; v++) diff = fmax(diff, fabs(base0.logits[0][v] - alone[0].logits[0][v]));
    CHECK(diff > 0.1);

    /* An adapter over another model is refused. */
    bs_error err = {0};
    bs_kv_pool *pool = NULL;
    bs_batch *batch = NULL;
    CHECK_OK(kv_pool_open(16, BLOCK, 2, 2 * 16, BS_DTYPE_F32, &pool, &err), &err);
    CHECK_OK(batch_open(other, pool, 16, 2, MAX_POS, &batch, &err), &err);
    bs_kv_seq s;
    CHECK_OK(kv_seq_init(&s, pool, MAX_POS, 0, &err), &err);
    CHECK_INT(kv_seq_reserve(&s, pool, 4), 0);
    float out[N_VOCAB];
    bs_batch_item bad = {&s, t[0], 4, BATCH_OUT_LOGITS_LAST, out, x};
    CHECK_INT(batch_eval(batch, &bad, 1, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "adapter") != NULL);
    kv_seq_free(&s, pool);
    batch_close(batch);
    kv_pool_close(pool);
done:
    adapter_close(x);
    adapter_close(y);
    model_close(other);
    model_close(m);
}

/* ---- (a) the scheduler ---------------------------------------------------------------- */

enum { GEN = 8 };

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t tokens[GEN];
    int n, done, n_cached;
} waiter;

static void on_event(void *user, const bs_request_event *ev) {
    waiter *w = user;
    pthread_mutex_lock(&w->mu);
    if (ev->token >= 0 && w->n < GEN) w->tokens[w->n++] = ev->token;
    w->n_cached = ev->n_cached;
    if (ev->finish_reason) w->done = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void submit(bs_scheduler *s, const int32_t *prompt, int n, bs_adapter *a, waiter *w) {
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    bs_request_params p = {.kind = BS_REQUEST_GENERATE, .prompt = prompt, .n_prompt = n, .n = 1,
                           .max_tokens = GEN, .ignore_eos = 1, .adapter = a};
    sampler_params_default(&p.sampling);
    p.sampling.temperature = 0;
    uint64_t id;
    bs_error err = {0};
    CHECK_OK(scheduler_submit(s, &p, on_event, w, &id, &err), &err);
}

static void wait_for(waiter *w) {
    pthread_mutex_lock(&w->mu);
    while (!w->done) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void test_scheduler_mixed(void) {
    bs_model *m = open_random(1);
    bs_adapter *x = make_adapter(m, ALL_LINEAR, 4, 8.0f, 0, 3, 0.8f);
    bs_adapter *y = make_adapter(m, 1u << BS_LIN_O | 1u << BS_LIN_UP, 8, 16.0f, 0, 4, 0.8f);
    bs_scheduler_params sp;
    scheduler_params_default(&sp);
    sp.n_ctx = 128;
    sp.kv_tokens = 1024;
    sp.block_size = 16;
    bs_scheduler *s = NULL;
    bs_error err = {0};
    CHECK_OK(scheduler_open(m, &sp, &s, &err), &err);
    if (!s || !x || !y) goto done;
    int32_t prompt[3][40];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 40; j++) prompt[i][j] = (int32_t)((j * 13 + i * 7 + 1) % 256);
    bs_adapter *use[3] = {x, y, NULL};
    waiter together[3], alone[3];
    for (int i = 0; i < 3; i++) submit(s, prompt[i], 20 + i, use[i], &together[i]);
    for (int i = 0; i < 3; i++) wait_for(&together[i]);
    for (int i = 0; i < 3; i++) {
        submit(s, prompt[i], 20 + i, use[i], &alone[i]);
        wait_for(&alone[i]);
        CHECK_INT(together[i].n, GEN);
        CHECK(memcmp(together[i].tokens, alone[i].tokens, sizeof alone[i].tokens) == 0);
    }
    CHECK(memcmp(together[0].tokens, together[2].tokens, sizeof together[0].tokens) != 0);

    /* Prefix cache: a new 40-token prompt under the base, then X, then X
     * again, then the base again. */
    int32_t fresh[40];
    for (int j = 0; j < 40; j++) fresh[j] = (int32_t)((j * 29 + 200) % 256);
    waiter w;
    submit(s, fresh, 40, NULL, &w);
    wait_for(&w);
    submit(s, fresh, 40, x, &w);
    wait_for(&w);
    CHECK_INT(w.n_cached, 0);
    submit(s, fresh, 40, x, &w);
    wait_for(&w);
    CHECK_INT(w.n_cached, 32);
    submit(s, fresh, 40, NULL, &w);
    wait_for(&w);
    CHECK_INT(w.n_cached, 32);

    /* The caller's reference dropped while the request runs: the request's keeps it. */
    bs_adapter *z = make_adapter(m, ALL_LINEAR, 4, 8.0f, 0, 3, 0.8f);
    submit(s, prompt[0], 20, z, &w);
    adapter_close(z);
    wait_for(&w);
    CHECK_INT(w.n, GEN);
    CHECK(memcmp(w.tokens, together[0].tokens, sizeof w.tokens) == 0); /* same weights as x */

    /* An adapter over another model is refused at submit. */
    bs_model *other = open_random(1);
    bs_adapter *o = make_adapter(other, 1u << BS_LIN_Q, 2, 2.0f, 0, 5, 0.1f);
    bs_request_params p = {.kind = BS_REQUEST_GENERATE, .prompt = prompt[0], .n_prompt = 4, .n = 1, .max_tokens = 2,
                           .adapter = o};
    sampler_params_default(&p.sampling);
    uint64_t id;
    CHECK_INT(scheduler_submit(s, &p, on_event, &w, &id, &err), BS_EINVAL);
    adapter_close(o);
    model_close(other);
done:
    scheduler_close(s);
    adapter_close(x);
    adapter_close(y);
    model_close(m);
}

/* ---- (b) PEFT files ------------------------------------------------------------------- */

static void check_same(const bs_adapter *a, const bs_adapter *b, int bf16) {
    const bs_model_config *c = model_config(adapter_base(a));
    CHECK_INT(adapter_config(a)->rank, adapter_config(b)->rank);
    CHECK_INT(adapter_config(a)->targets, adapter_config(b)->targets);
    CHECK_INT(adapter_config(a)->rslora, adapter_config(b)->rslora);
    CHECK(adapter_scale(a) == adapter_scale(b));
    for (int l = 0; l < c->n_layers; l++)
        for (int lin = 0; lin < BS_LIN_COUNT; lin++) {
            const float *A1, *B1, *A2, *B2;
            int on = adapter_lora(a, l, lin, &A1, &B1);
            CHECK_INT(adapter_lora(b, l, lin, &A2, &B2), on);
            if (!on) continue;
            bs_layer_weights lw;
            model_layer_weights(adapter_base(a), l, &lw);
            int r = adapter_config(a)->rank, na = r * lw.w[lin].cols, nb = r * lw.w[lin].rows, bad = 0;
            for (int i = 0; i < na; i++) bad += (bf16 ? bs_bf16_to_f32(bs_f32_to_bf16(A1[i])) : A1[i]) != A2[i];
            for (int i = 0; i < nb; i++) bad += (bf16 ? bs_bf16_to_f32(bs_f32_to_bf16(B1[i])) : B1[i]) != B2[i];
            CHECK_INT(bad, 0);
        }
}

static json_t *load_json(const char *dir, const char *name) {
    char *path = bs_path_join(dir, name);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    free(path);
    CHECK(j != NULL);
    return j;
}

static void test_peft_roundtrip(void) {
    bs_error err = {0};
    for (int neox = 1; neox >= 0; neox--) {
        bs_model *m = open_random(neox);
        bs_adapter *a = make_adapter(m, ALL_LINEAR & ~(1u << BS_LIN_GATE), 4, 8.0f, 1, 9, 0.3f), *b = NULL, *c = NULL;
        const char *dir = scratch(neox ? "rt-neox" : "rt-pairs"), *dir16 = scratch(neox ? "rt16-neox" : "rt16-pairs");
        CHECK_OK(adapter_save_peft(a, dir, NULL, BS_DTYPE_F32, &err), &err);
        CHECK_OK(adapter_load_peft(m, dir, &b, &err), &err);
        if (b) check_same(a, b, 0);
        CHECK_OK(adapter_save_peft(a, dir16, "org/other-base", BS_DTYPE_BF16, &err), &err);
        CHECK_OK(adapter_load_peft(m, dir16, &c, &err), &err);
        if (c) check_same(a, c, 1);
        CHECK_STR(adapter_config(c)->base_model, "org/other-base");

        json_t *j = load_json(dir, "adapter_config.json");
        CHECK_STR(json_string_value(json_object_get(j, "peft_type")), "LORA");
        CHECK_STR(json_string_value(json_object_get(j, "task_type")), "CAUSAL_LM");
        CHECK_STR(json_string_value(json_object_get(j, "bias")), "none");
        CHECK_STR(json_string_value(json_object_get(j, "base_model_name_or_path")), "test/base");
        CHECK_INT(json_integer_value(json_object_get(j, "r")), 4);
        CHECK_INT(json_integer_value(json_object_get(j, "lora_alpha")), 8);
        CHECK(json_is_true(json_object_get(j, "use_rslora")));
        CHECK(json_is_false(json_object_get(j, "fan_in_fan_out")));
        CHECK(json_is_false(json_object_get(j, "use_dora")));
        CHECK(json_is_null(json_object_get(j, "modules_to_save")));
        const json_t *tm = json_object_get(j, "target_modules");
        CHECK_INT(json_array_size(tm), 6);
        CHECK_STR(json_string_value(json_array_get(tm, 0)), "q_proj");
        CHECK_STR(json_string_value(json_array_get(tm, 5)), "down_proj");
        json_decref(j);

        /* The file holds Hugging Face row order: over adjacent-pair RoPE the
         * engine's q_proj B row h*hd + 2i + j is file row h*hd + j*hd/2 + i. */
        char *path = bs_path_join(dir, "adapter_model.safetensors");
        st_file *f = NULL;
        CHECK_OK(st_open(path, &f, &err), &err);
        free(path);
        const bs_tensor *tb = f ? st_find(f, PEFT "1.self_attn.q_proj.lora_B.weight") : NULL;
        const float *A, *B;
        CHECK(tb && tb->dtype == BS_DTYPE_F32 && tb->shape[0] == 64 && tb->shape[1] == 4);
        CHECK_INT(f ? st_tensor_count(f) : 0, 2 * 2 * 6);
        if (tb && adapter_lora(a, 1, BS_LIN_Q, &A, &B)) {
            const float *fb = tb->data;
            int engine_row = 16 + 2 * 3 + 1, file_row = neox ? engine_row : 16 + 8 + 3;
            CHECK(memcmp(fb + file_row * 4, B + engine_row * 4, 4 * sizeof *B) == 0);
        }
        st_close(f);
        adapter_close(a);
        adapter_close(b);
        adapter_close(c);
        model_close(m);
    }
}

/* ---- (e) bad adapters --------------------------------------------------------------- */

typedef struct rewrite {
    const char *drop;  /* tensor left out */
    const char *extra; /* zero tensor [4][64] added */
    const char *key;   /* config key set to value (JSON text) */
    const char *value;
} rewrite;

static bs_status fill_copy(void *ctx, const st_write_tensor *t, void *dst, bs_error *err) {
    (void)ctx, (void)err;
    const bs_tensor *src = t->user;
    if (src) memcpy(dst, src->data, src->nbytes);
    else memset(dst, 0, (size_t)(t->shape[0] * t->shape[1]) * sizeof(float));
    return BS_OK;
}

/* A copy of the adapter in src with one change; returns its directory. */
static const char *rewritten(const char *src, const char *name, const rewrite *rw) {
    bs_error err = {0};
    const char *dir = scratch(name);
    CHECK_OK(bs_make_dirs(dir, 0755, &err), &err);
    json_t *j = load_json(src, "adapter_config.json");
    if (rw->key) json_object_set_new(j, rw->key, json_loads(rw->value, JSON_DECODE_ANY, NULL));
    char *cpath = bs_path_join(dir, "adapter_config.json");
    CHECK_INT(json_dump_file(j, cpath, JSON_INDENT(2)), 0);
    free(cpath);
    json_decref(j);
    char *in = bs_path_join(src, "adapter_model.safetensors"), *out = bs_path_join(dir, "adapter_model.safetensors");
    st_file *f = NULL;
    CHECK_OK(st_open(in, &f, &err), &err);
    st_write_tensor ts[MAX_TENSORS + 1];
    size_t n = 0;
    for (uint64_t i = 0; f && i < st_tensor_count(f); i++) {
        const bs_tensor *t = st_tensor(f, i);
        if (rw->drop && strcmp(t->name, rw->drop) == 0) continue;
        ts[n] = (st_write_tensor){.name = t->name, .dtype = t->dtype, .ndim = 2, .user = (void *)t};
        memcpy(ts[n++].shape, t->shape, sizeof t->shape);
    }
    if (rw->extra) ts[n++] = (st_write_tensor){.name = rw->extra, .dtype = BS_DTYPE_F32, .ndim = 2, .shape = {4, 64}};
    CHECK_OK(st_write_file(out, ts, n, fill_copy, NULL, &err), &err);
    st_close(f);
    free(in);
    free(out);
    return dir;
}

static void expect_error(bs_model *m, const char *dir, bs_status status, const char *needle) {
    bs_adapter *a = NULL;
    bs_error err = {0};
    CHECK_INT(adapter_load_peft(m, dir, &a, &err), status);
    CHECK(a == NULL);
    if (!strstr(err.msg, needle)) fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err.msg, needle);
    CHECK(strstr(err.msg, needle) != NULL);
    CHECK(strchr(err.msg, '\n') == NULL);
}

static void test_bad_adapters(void) {
    bs_model *m = open_random(1);
    bs_adapter *a = make_adapter(m, 1u << BS_LIN_Q | 1u << BS_LIN_V, 4, 8.0f, 0, 11, 0.3f);
    bs_error err = {0};
    const char *good = scratch("good");
    CHECK_OK(adapter_save_peft(a, good, NULL, BS_DTYPE_F32, &err), &err);
    adapter_close(a);

    expect_error(m, rewritten(good, "rank", &(rewrite){.key = "r", .value = "8"}), BS_EFORMAT,
                 "tensor " PEFT "0.self_attn.q_proj.lora_A.weight has shape [4, 64], expected [8, 64] (r = 8");
    expect_error(m, rewritten(good, "lm_head", &(rewrite){.key = "target_modules", .value = "[\"q_proj\",\"lm_head\"]"}),
                 BS_EUNSUPPORTED, "target_modules[1] \"lm_head\" is not one of");
    expect_error(m, rewritten(good, "unlisted", &(rewrite){.key = "target_modules", .value = "[\"q_proj\"]"}),
                 BS_EFORMAT, "v_proj.lora_A.weight adapts v_proj, which target_modules does not list");
    expect_error(m, rewritten(good, "missing", &(rewrite){.drop = PEFT "1.self_attn.v_proj.lora_B.weight"}),
                 BS_EFORMAT, "missing tensor " PEFT "1.self_attn.v_proj.lora_B.weight");
    expect_error(m, rewritten(good, "extra", &(rewrite){.extra = "base_model.model.lm_head.lora_A.weight"}), BS_EFORMAT,
                 "tensor base_model.model.lm_head.lora_A.weight is not the lora_A/lora_B");
    expect_error(m, rewritten(good, "layer", &(rewrite){.extra = PEFT "5.self_attn.q_proj.lora_A.weight"}), BS_EFORMAT,
                 "layer 5, but the base has 2 layers");
    expect_error(m, rewritten(good, "prefix", &(rewrite){.key = "peft_type", .value = "\"PREFIX_TUNING\""}),
                 BS_EUNSUPPORTED, "peft_type is PREFIX_TUNING");
    expect_error(m, rewritten(good, "dora", &(rewrite){.key = "use_dora", .value = "true"}), BS_EUNSUPPORTED,
                 "\"use_dora\": true is not supported");
    expect_error(m, rewritten(good, "fifo", &(rewrite){.key = "fan_in_fan_out", .value = "true"}), BS_EUNSUPPORTED,
                 "fan_in_fan_out");
    expect_error(m, rewritten(good, "bias", &(rewrite){.key = "bias", .value = "\"all\""}), BS_EUNSUPPORTED,
                 "\"bias\" must be \"none\"");
    expect_error(m, rewritten(good, "regex", &(rewrite){.key = "target_modules", .value = "\".*proj\""}),
                 BS_EUNSUPPORTED, "a regular expression");
    expect_error(m, scratch("nowhere"), BS_ENOTFOUND, "not a directory");

    /* layers_to_transform limits which layers must (and may) be present. */
    bs_adapter *b = NULL;
    const char *one = rewritten(good, "one-layer", &(rewrite){.key = "layers_to_transform", .value = "[1]"});
    expect_error(m, one, BS_EFORMAT, "layer 0 is not in layers_to_transform");
    /* "all-linear" asks for every projection. */
    expect_error(m, rewritten(good, "all", &(rewrite){.key = "target_modules", .value = "\"all-linear\""}), BS_EFORMAT,
                 "missing tensor " PEFT "0.self_attn.k_proj.lora_A.weight");

    /* From tensors: a wrong shape names the tensor. */
    lora_set s;
    lora_set_make(&s, m, 1u << BS_LIN_Q, 4, 1, 0.1f);
    s.t[1].cols = 3;
    bs_adapter_config c = {.rank = 4, .alpha = 4, .targets = 1u << BS_LIN_Q};
    CHECK_INT(adapter_from_tensors(m, &c, s.t, s.n, &b, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "q_proj.lora_B.weight has shape [64, 3], expected [64, 4]") != NULL);
    c.rank = BS_ADAPTER_MAX_RANK + 1;
    CHECK_INT(adapter_from_tensors(m, &c, s.t, s.n, &b, &err), BS_EUNSUPPORTED);
    lora_set_free(&s);
    model_close(m);
}

/* ---- (b, c) the PyTorch oracle and merging ------------------------------------------------ */

static char oracle_dir[256];
static int32_t tokens[64];
static int n_tokens;

static const char *python(void) {
    const char *p = getenv("BASALT_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

static int oracle_setup(void) {
    static int done, ok;
    if (done) return ok;
    done = 1;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", python());
    if (system(cmd) != 0) return 0;
    snprintf(oracle_dir, sizeof oracle_dir, "%s", scratch("oracle"));
    bs_error err = {0};
    CHECK_OK(bs_make_dirs(oracle_dir, 0755, &err), &err);
    snprintf(cmd, sizeof cmd, "'%s' tests/oracle/adapter_ref.py make '%s'", python(), oracle_dir);
    CHECK_INT(system(cmd), 0);
    char *path = bs_path_join(oracle_dir, "tokens.bin"), *data = NULL;
    size_t size = 0;
    CHECK_OK(bs_file_read(path, &data, &size, &err), &err);
    free(path);
    if (!data) return 0;
    n_tokens = (int)(size / 4);
    memcpy(tokens, data, size < sizeof tokens ? size : sizeof tokens);
    free(data);
    return ok = n_tokens == 40;
}

/* Logits of every position of the oracle tokens with adapter a (or none). */
static float *engine_logits(bs_model *m, const bs_adapter *a) {
    int V = model_config(m)->n_vocab;
    bs_error err = {0};
    bs_kv_pool *pool = NULL;
    bs_batch *batch = NULL;
    const bs_model_config *c = model_config(m);
    float *out = malloc((size_t)n_tokens * V * sizeof *out);
    CHECK_OK(kv_pool_open(16, 16, c->n_layers, c->n_kv_heads * c->head_dim, BS_DTYPE_F32, &pool, &err), &err);
    CHECK_OK(batch_open(m, pool, 64, 1, 64, &batch, &err), &err);
    bs_kv_seq s;
    CHECK_OK(kv_seq_init(&s, pool, 64, 0, &err), &err);
    CHECK_INT(kv_seq_reserve(&s, pool, n_tokens), 0);
    bs_batch_item it = {&s, tokens, n_tokens, BATCH_OUT_LOGITS_ALL, out, a};
    CHECK_OK(batch_eval(batch, &it, 1, &err), &err);
    kv_seq_free(&s, pool);
    batch_close(batch);
    kv_pool_close(pool);
    return out;
}

static float *python_ref(const char *arch, const char *model, const char *adapter, int V) {
    char cmd[1024], out[300];
    snprintf(out, sizeof out, "%s/ref-%d.bin", oracle_dir, rand());
    snprintf(cmd, sizeof cmd, "'%s' tests/oracle/adapter_ref.py ref %s '%s/%s' '%s' '%s'", python(), arch, oracle_dir,
             model, adapter, out);
    CHECK_INT(system(cmd), 0);
    char *data = NULL;
    size_t size = 0;
    bs_error err = {0};
    CHECK_OK(bs_file_read(out, &data, &size, &err), &err);
    CHECK_INT(size, (size_t)n_tokens * V * 4);
    return (float *)data;
}

/* Largest |got - ref| over each row's logit range. */
static double rel_error(const float *got, const float *ref, int V) {
    double worst = 0;
    for (int t = 0; t < n_tokens; t++) {
        const float *g = got + (size_t)t * V, *e = ref + (size_t)t * V;
        float lo = e[0], hi = e[0];
        double d = 0;
        for (int i = 0; i < V; i++) {
            lo = fminf(lo, e[i]);
            hi = fmaxf(hi, e[i]);
            if (!(fabs((double)g[i] - e[i]) <= d)) d = fabs((double)g[i] - e[i]);
        }
        if (!(d / (hi - lo) <= worst)) worst = d / (hi - lo);
    }
    return worst;
}

static bs_model *open_oracle_model(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", oracle_dir, name);
    bs_model *m = NULL;
    bs_error err = {0};
    bs_model_params mp = {.n_threads = 2};
    CHECK_OK(model_open(path, &mp, &m, &err), &err);
    return m;
}

static void test_oracle(void) {
    if (!oracle_setup()) SKIP("PyTorch/numpy not importable by $BASALT_PYTHON (default /usr/bin/python3)");
    bs_error err = {0};
    /* Qwen2 (biases, tied head), every projection, rsLoRA. */
    bs_model *q = open_oracle_model("qwen2-hf-f32");
    bs_adapter *a = q ? make_adapter(q, ALL_LINEAR, 4, 8.0f, 1, 21, 0.4f) : NULL;
    const char *qdir = scratch("oracle-qwen2-lora");
    if (a) CHECK_OK(adapter_save_peft(a, qdir, NULL, BS_DTYPE_F32, &err), &err);
    if (a) {
        int V = model_config(q)->n_vocab;
        float *got = engine_logits(q, a), *base = engine_logits(q, NULL), *ref = python_ref("qwen2", "qwen2-hf-f32", qdir, V);
        double rel = rel_error(got, ref, V), moved = rel_error(base, ref, V);
        fprintf(stderr, "  qwen2 + adapter: max error / logit range %.2e (the base is %.2e away)\n", rel, moved);
        CHECK(rel <= 1e-3);
        CHECK(moved > 0.05);
        free(got);
        free(base);
        free(ref);
    }
    adapter_close(a);
    model_close(q);

    /* Llama q/k/v/o + down, saved from the HF base, loaded over the GGUF F16
     * file (Q/K rows permuted) and compared with the oracle on the weights
     * as that file stores them. */
    bs_model *hf = open_oracle_model("llama-hf-f32"), *gg = open_oracle_model("llama-f16.gguf");
    unsigned t = ALL_LINEAR & ~(1u << BS_LIN_GATE | 1u << BS_LIN_UP);
    a = hf ? make_adapter(hf, t, 4, 16.0f, 0, 22, 0.4f) : NULL;
    const char *ldir = scratch("oracle-llama-lora");
    bs_adapter *b = NULL;
    if (a) CHECK_OK(adapter_save_peft(a, ldir, NULL, BS_DTYPE_F32, &err), &err);
    if (a && gg) CHECK_OK(adapter_load_peft(gg, ldir, &b, &err), &err);
    if (b) {
        int V = model_config(gg)->n_vocab;
        float *got = engine_logits(gg, b), *ref = python_ref("llama", "llama-f16-as-hf", ldir, V);
        double rel = rel_error(got, ref, V);
        fprintf(stderr, "  llama GGUF F16 + adapter: max error / logit range %.2e\n", rel);
        CHECK(rel <= 1e-3);
        free(got);
        free(ref);
    }
    adapter_close(a);
    adapter_close(b);
    model_close(hf);
    model_close(gg);
}

static void test_merge(void) {
    if (!oracle_setup()) SKIP("PyTorch/numpy not importable by $BASALT_PYTHON (default /usr/bin/python3)");
    bs_error err = {0};
    const char *bases[] = {"llama-hf-f32", "qwen2-hf-f32"};
    for (int k = 0; k < 2; k++) {
        bs_model *m = open_oracle_model(bases[k]);
        bs_adapter *a = m ? make_adapter(m, ALL_LINEAR, 8, 16.0f, 0, 31 + k, 0.4f) : NULL;
        if (!a) {
            model_close(m);
            continue;
        }
        const char *out = scratch(k ? "merged-qwen2" : "merged-llama");
        CHECK_OK(adapter_merge_hf(a, out, &err), &err);
        char *cfg = bs_path_join(out, "config.json"), *gen = bs_path_join(out, "generation_config.json"),
             *tok = bs_path_join(out, "tokenizer.json");
        CHECK(bs_file_exists(cfg) && bs_file_exists(gen));
        CHECK_INT(bs_file_exists(tok), k == 1);
        free(cfg);
        free(gen);
        free(tok);
        bs_model *merged = open_oracle_model(k ? "../merged-qwen2" : "../merged-llama");
        if (merged) {
            int V = model_config(m)->n_vocab;
            float *want = engine_logits(m, a), *got = engine_logits(merged, NULL);
            double rel = rel_error(got, want, V);
            fprintf(stderr, "  merged %s: max error / logit range %.2e\n", bases[k], rel);
            CHECK(rel <= 1e-5);
            free(want);
            free(got);
        }
        char base_dir[512];
        snprintf(base_dir, sizeof base_dir, "%s/%s", oracle_dir, bases[k]);
        CHECK_INT(adapter_merge_hf(a, base_dir, &err), BS_EINVAL); /* would overwrite the base */
        model_close(merged);
        adapter_close(a);
        model_close(m);
    }
    /* A GGUF base or random weights cannot be merged. */
    bs_model *gg = open_oracle_model("llama-f16.gguf"), *rnd = open_random(1);
    bs_adapter *a = gg ? make_adapter(gg, 1u << BS_LIN_Q, 2, 2.0f, 0, 5, 0.1f) : NULL,
               *b = make_adapter(rnd, 1u << BS_LIN_Q, 2, 2.0f, 0, 5, 0.1f);
    if (a) CHECK_INT(adapter_merge_hf(a, scratch("merged-gguf"), &err), BS_EUNSUPPORTED);
    CHECK(strstr(err.msg, "GGUF") != NULL);
    CHECK_INT(adapter_merge_hf(b, scratch("merged-rnd"), &err), BS_EUNSUPPORTED);
    adapter_close(a);
    adapter_close(b);
    model_close(gg);
    model_close(rnd);
}

int main(void) {
    RUN(test_batch_mixed);
    RUN(test_scheduler_mixed);
    RUN(test_peft_roundtrip);
    RUN(test_bad_adapters);
    RUN(test_oracle);
    RUN(test_merge);
    TEST_MAIN_END();
}
