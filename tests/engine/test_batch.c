/* The multi-sequence forward pass: logits of sequences evaluated together in
 * one batched step (different lengths, prefill chunks and decode tokens
 * mixed, a fork sharing its parent's blocks, a prefix-cache hit) equal the
 * logits of each sequence run alone through context_eval; the hidden-state
 * outputs do not depend on chunking; bad items are rejected. */
#include <stdlib.h>

#include "../support/test.h"
#include "engine/batch.h"
#include "engine/context.h"

enum { BLOCK = 4, MAX_POS = 96, N_VOCAB = 260 };

static bs_model *open_model_hd(bs_arch arch, int qk_norm, int qkv_bias, int window, int head_dim) {
    bs_model_config cfg = {
        .arch = arch, .n_vocab = N_VOCAB, .dim = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2,
        .head_dim = head_dim, .ffn_dim = 96, .max_pos = 256, .rms_eps = 1e-5f, .rope_theta = 10000.0f,
        .rope_neox = 1, .qk_norm = qk_norm, .qkv_bias = qkv_bias, .sliding_window = window,
    };
    bs_model *m = NULL;
    bs_error err = {0};
    bs_model_params mp = {.n_threads = 2};
    CHECK_OK(model_open_random(&cfg, 7, &mp, &m, &err), &err);
    return m;
}

static bs_model *open_model(bs_arch arch, int qk_norm, int qkv_bias, int window) {
    return open_model_hd(arch, qk_norm, qkv_bias, window, 16);
}

/* Logits of every position of tokens[0..n) run alone. */
static float *reference(bs_model *m, const int32_t *tokens, int n) {
    bs_context *c = NULL;
    bs_error err = {0};
    float *ref = malloc((size_t)n * N_VOCAB * sizeof *ref);
    CHECK_OK(context_open(m, MAX_POS, &c, &err), &err);
    CHECK_OK(context_eval(c, tokens, n, ref, 1, &err), &err);
    context_close(c);
    return ref;
}

static double worst = 0;
/* How far a row may be from the f32 reference, relative to its range: the
 * f32 cache's operations differ only in summation order; an f16 cache also
 * rounds every key and value (2^-11 relative). */
static double tolerance = 1e-4;

/* Compare rows [n][N_VOCAB] with reference rows, relative to each row's range. */
static void compare(const float *got, const float *ref, int n) {
    for (int r = 0; r < n; r++) {
        const float *g = got + (size_t)r * N_VOCAB, *e = ref + (size_t)r * N_VOCAB;
        float lo = e[0], hi = e[0];
        double d = 0;
        for (int i = 0; i < N_VOCAB; i++) {
            lo = e[i] < lo ? e[i] : lo;
            hi = e[i] > hi ? e[i] : hi;
            double diff = fabs((double)g[i] - e[i]);
            if (!(diff <= d)) d = diff;
        }
        double rel = d / (hi - lo);
        if (!(rel <= worst)) worst = rel;
        CHECK(rel <= tolerance);
    }
}

static void reserve(bs_kv_seq *s, bs_kv_pool *p, int n) { CHECK_INT(kv_seq_reserve(s, p, s->n_pos + n), 0); }

static void run_mixed(bs_model *m, bs_dtype kv_dtype) {
    bs_error err = {0};
    int32_t a[40], b[12], c[40], d[40];
    for (int i = 0; i < 40; i++) {
        a[i] = (i * 37 + 5) % N_VOCAB;
        d[i] = i < 20 ? a[i] : (i * 11 + 3) % N_VOCAB; /* shares 20 tokens with a */
        c[i] = i < 10 ? a[i] : (i * 53 + 1) % N_VOCAB; /* forks from a after 10 */
    }
    for (int i = 0; i < 12; i++) b[i] = (i * 29 + 17) % N_VOCAB;
    float *ra = reference(m, a, 40), *rb = reference(m, b, 12), *rc = reference(m, c, 40), *rd = reference(m, d, 40);

    bs_kv_pool *pool = NULL;
    bs_batch *batch = NULL;
    CHECK_OK(kv_pool_open(64, BLOCK, 2, model_config(m)->n_kv_heads * model_config(m)->head_dim, kv_dtype, &pool,
                          &err),
             &err);
    CHECK_OK(batch_open(m, pool, 48, 4, MAX_POS, &batch, &err), &err);
    bs_kv_seq sa, sb, sc, sd;
    bs_kv_seq *seqs[] = {&sa, &sb, &sc, &sd};
    for (int i = 0; i < 4; i++) CHECK_OK(kv_seq_init(seqs[i], pool, MAX_POS, 0, &err), &err);
    float *out = malloc((size_t)40 * N_VOCAB * sizeof *out);
    float *last[4];
    for (int i = 0; i < 4; i++) last[i] = malloc(N_VOCAB * sizeof(float));

    /* Step 1: a prefills 10 tokens, b its whole 7-token prompt. */
    reserve(&sa, pool, 10);
    reserve(&sb, pool, 7);
    bs_batch_item s1[] = {{&sa, a, 10, BATCH_OUT_NONE, NULL, NULL}, {&sb, b, 7, BATCH_OUT_LOGITS_LAST, last[1], NULL}};
    CHECK_OK(batch_eval(batch, s1, 2, &err), &err);
    CHECK_INT(sa.n_pos, 10);
    compare(last[1], rb + 6 * N_VOCAB, 1);
    kv_seq_commit(&sa, pool, a);

    /* c forks from a (two shared full blocks, a copied partial one). */
    CHECK_INT(kv_seq_fork(&sc, &sa, pool), 0);
    CHECK_INT(sc.blocks[0], sa.blocks[0]);

    /* Step 2: a's next 20 tokens (all logits), b decodes, c continues its fork. */
    reserve(&sa, pool, 20);
    reserve(&sb, pool, 1);
    reserve(&sc, pool, 5);
    bs_batch_item s2[] = {{&sa, a + 10, 20, BATCH_OUT_LOGITS_ALL, out, NULL},
                          {&sb, b + 7, 1, BATCH_OUT_LOGITS_LAST, last[1], NULL},
                          {&sc, c + 10, 5, BATCH_OUT_LOGITS_LAST, last[2], NULL}};
    CHECK_OK(batch_eval(batch, s2, 3, &err), &err);
    compare(out, ra + 10 * N_VOCAB, 20);
    compare(last[1], rb + 7 * N_VOCAB, 1);
    compare(last[2], rc + 14 * N_VOCAB, 1);
    kv_seq_commit(&sa, pool, a);

    /* d reuses a's first 20 positions from the prefix cache. */
    CHECK_INT(kv_seq_match_prefix(&sd, pool, d, 40), 20);

    /* Steps 3..: everyone decodes one token at a time while d prefills in
     * chunks of 7 until it too decodes. */
    for (int step = 0; step < 10; step++) {
        bs_batch_item items[4];
        bs_kv_seq *order[] = {&sd, &sa, &sc, &sb}; /* item order differs from seq order */
        const int32_t *toks[] = {d, a, c, b};
        const float *refs[] = {rd, ra, rc, rb};
        int lens[] = {40, 40, 40, 12};
        int n_items = 0;
        for (int i = 0; i < 4; i++) {
            bs_kv_seq *s = order[i];
            int n = s == &sd ? 7 : 1;
            if (s->n_pos + n > lens[i]) n = lens[i] - s->n_pos;
            if (n <= 0) continue;
            reserve(s, pool, n);
            items[n_items++] = (bs_batch_item){s, toks[i] + s->n_pos, n, BATCH_OUT_LOGITS_LAST, last[i], NULL};
        }
        CHECK_OK(batch_eval(batch, items, n_items, &err), &err);
        for (int k = 0; k < n_items; k++) {
            int i = 0;
            while (order[i] != items[k].seq) i++;
            compare(last[i], refs[i] + (size_t)(order[i]->n_pos - 1) * N_VOCAB, 1);
        }
    }
    CHECK_INT(sd.n_pos, 40);
    CHECK_INT(sb.n_pos, 12);

    for (int i = 0; i < 4; i++) {
        kv_seq_free(seqs[i], pool);
        free(last[i]);
    }
    CHECK_INT(kv_pool_n_used(pool), 0);
    free(out);
    free(ra);
    free(rb);
    free(rc);
    free(rd);
    batch_close(batch);
    kv_pool_close(pool);
}

static void test_mixed_llama(void) {
    bs_model *m = open_model(BS_ARCH_LLAMA, 0, 0, 0);
    worst = 0;
    run_mixed(m, BS_DTYPE_F32);
    printf("  llama: max error / logit range %.2e\n", worst);
    model_close(m);
}

/* The f16 KV cache: the same mixed steps (prefix cache, fork, chunked
 * prefill) against the f32 reference, within f16's rounding. */
static void test_mixed_f16_cache(void) {
    bs_model *m = open_model(BS_ARCH_QWEN3, 1, 1, 6);
    worst = 0;
    tolerance = 2e-3;
    run_mixed(m, BS_DTYPE_F16);
    tolerance = 1e-4;
    printf("  qwen3 + window 6, f16 KV cache: max error / logit range %.2e\n", worst);
    CHECK(worst > 0); /* the cache really rounds */
    model_close(m);
}

/* The q8_0 KV cache (head_dim 32: one block per head and position): the same
 * mixed steps against the f32 reference, within int8 rounding; and a model
 * whose heads would split a block is refused by name. */
static void test_mixed_q8_cache(void) {
    bs_model *m = open_model_hd(BS_ARCH_QWEN3, 1, 1, 6, 32);
    worst = 0;
    tolerance = 1.5e-2;
    run_mixed(m, BS_DTYPE_Q8_0);
    tolerance = 1e-4;
    printf("  qwen3 + window 6, q8_0 KV cache: max error / logit range %.2e\n", worst);
    CHECK(worst > 0);
    model_close(m);

    m = open_model(BS_ARCH_LLAMA, 0, 0, 0); /* head_dim 16 */
    bs_kv_pool *pool = NULL;
    bs_batch *batch = NULL;
    bs_error err = {0};
    CHECK_OK(kv_pool_open(8, BLOCK, 2, 32, BS_DTYPE_Q8_0, &pool, &err), &err);
    CHECK(batch_open(m, pool, 8, 1, MAX_POS, &batch, &err) == BS_EINVAL);
    CHECK(strstr(err.msg, "Q8_0 KV cache needs head_dim (16) a multiple of 32") != NULL);
    kv_pool_close(pool);
    err = (bs_error){0};
    CHECK(kv_pool_open(8, BLOCK, 2, 48, BS_DTYPE_Q8_0, &pool, &err) == BS_EINVAL);
    CHECK(strstr(err.msg, "kv_dim 48 is not a whole number of Q8_0 blocks") != NULL);
    model_close(m);
}

/* Qwen3-style per-head norms with q/k/v bias, and a sliding window that
 * crosses block boundaries. */
static void test_mixed_qk_norm_window(void) {
    bs_model *m = open_model(BS_ARCH_QWEN3, 1, 1, 6);
    worst = 0;
    run_mixed(m, BS_DTYPE_F32);
    printf("  qwen3 + window 6: max error / logit range %.2e\n", worst);
    model_close(m);
}

static void test_hidden_outputs(void) {
    bs_model *m = open_model(BS_ARCH_LLAMA, 0, 0, 0);
    bs_error err = {0};
    bs_kv_pool *pool = NULL;
    bs_batch *batch = NULL;
    CHECK_OK(kv_pool_open(32, BLOCK, 2, 32, BS_DTYPE_F32, &pool, &err), &err);
    CHECK_OK(batch_open(m, pool, 32, 2, MAX_POS, &batch, &err), &err);
    int32_t t[13];
    for (int i = 0; i < 13; i++) t[i] = (i * 7 + 2) % N_VOCAB;
    bs_kv_seq x, y;
    CHECK_OK(kv_seq_init(&x, pool, MAX_POS, 0, &err), &err);
    CHECK_OK(kv_seq_init(&y, pool, MAX_POS, 0, &err), &err);
    float sum1[64] = {0}, sum2[64] = {0}, last1[64], last2[64];
    /* x in one step, y in two chunks. */
    reserve(&x, pool, 13);
    bs_batch_item one[] = {{&x, t, 13, BATCH_OUT_HIDDEN_SUM, sum1, NULL}};
    CHECK_OK(batch_eval(batch, one, 1, &err), &err);
    reserve(&y, pool, 13);
    bs_batch_item c1[] = {{&y, t, 5, BATCH_OUT_HIDDEN_SUM, sum2, NULL}};
    bs_batch_item c2[] = {{&y, t + 5, 8, BATCH_OUT_HIDDEN_SUM, sum2, NULL}};
    CHECK_OK(batch_eval(batch, c1, 1, &err), &err);
    CHECK_OK(batch_eval(batch, c2, 1, &err), &err);
    for (int i = 0; i < 64; i++) CHECK_NEAR(sum1[i], sum2[i], 1e-4);
    kv_seq_clear(&x, pool);
    kv_seq_clear(&y, pool);
    reserve(&x, pool, 13);
    reserve(&y, pool, 13);
    bs_batch_item l1[] = {{&x, t, 13, BATCH_OUT_HIDDEN_LAST, last1, NULL}};
    bs_batch_item l2[] = {{&y, t, 12, BATCH_OUT_NONE, NULL, NULL}};
    bs_batch_item l3[] = {{&y, t + 12, 1, BATCH_OUT_HIDDEN_LAST, last2, NULL}};
    CHECK_OK(batch_eval(batch, l1, 1, &err), &err);
    CHECK_OK(batch_eval(batch, l2, 1, &err), &err);
    CHECK_OK(batch_eval(batch, l3, 1, &err), &err);
    double norm = 0;
    for (int i = 0; i < 64; i++) {
        CHECK_NEAR(last1[i], last2[i], 1e-4);
        norm += (double)last1[i] * last1[i];
    }
    CHECK(norm > 0);
    kv_seq_free(&x, pool);
    kv_seq_free(&y, pool);
    batch_close(batch);
    kv_pool_close(pool);
    model_close(m);
}

static void test_bad_items(void) {
    bs_model *m = open_model(BS_ARCH_LLAMA, 0, 0, 0);
    bs_error err = {0};
    bs_kv_pool *pool = NULL;
    bs_batch *batch = NULL;
    CHECK_OK(kv_pool_open(8, BLOCK, 2, 32, BS_DTYPE_F32, &pool, &err), &err);
    CHECK_OK(batch_open(m, pool, 8, 2, 32, &batch, &err), &err);
    bs_kv_seq x, y;
    CHECK_OK(kv_seq_init(&x, pool, 32, 0, &err), &err);
    CHECK_OK(kv_seq_init(&y, pool, 32, 0, &err), &err);
    int32_t t[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    float logits[N_VOCAB];
    bs_batch_item unreserved = {&x, t, 2, BATCH_OUT_LOGITS_LAST, logits, NULL};
    CHECK_INT(batch_eval(batch, &unreserved, 1, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "reserved") != NULL);
    reserve(&x, pool, 4);
    reserve(&y, pool, 10);
    int32_t bad[2] = {1, N_VOCAB};
    bs_batch_item oov = {&x, bad, 2, BATCH_OUT_NONE, NULL, NULL};
    CHECK_INT(batch_eval(batch, &oov, 1, &err), BS_EINVAL);
    bs_batch_item big[] = {{&x, t, 4, BATCH_OUT_NONE, NULL, NULL}, {&y, t, 10, BATCH_OUT_NONE, NULL, NULL}};
    CHECK_INT(batch_eval(batch, big, 2, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "step size") != NULL);
    bs_batch_item no_out = {&x, t, 1, BATCH_OUT_LOGITS_LAST, NULL, NULL};
    CHECK_INT(batch_eval(batch, &no_out, 1, &err), BS_EINVAL);
    CHECK_INT(x.n_pos, 0); /* nothing changed */
    kv_seq_free(&x, pool);
    kv_seq_free(&y, pool);
    batch_close(batch);
    kv_pool_close(pool);
    model_close(m);
}

int main(void) {
    RUN(test_mixed_llama);
    RUN(test_mixed_qk_norm_window);
    RUN(test_mixed_f16_cache);
    RUN(test_mixed_q8_cache);
    RUN(test_hidden_outputs);
    RUN(test_bad_items);
    TEST_MAIN_END();
}
