/* The paged KV pool: block allocation and refcounts, the prefix-cache hash
 * chain, longest full-block prefix reuse, salt isolation, LRU eviction order
 * and forks sharing full blocks. */
#include <string.h>

#include "../support/test.h"
#include "engine/kv_cache.h"

enum { BS = 4, LAYERS = 2, KV_DIM = 3 };

static bs_kv_pool *open_pool(int n_blocks) {
    bs_kv_pool *p = NULL;
    bs_error err = {0};
    CHECK_OK(kv_pool_open(n_blocks, BS, LAYERS, KV_DIM, BS_DTYPE_F32, &p, &err), &err);
    return p;
}

/* A sequence that "computed" n positions of tokens and registered them. */
static void fill(bs_kv_seq *s, bs_kv_pool *p, const int32_t *tokens, int n, uint64_t salt) {
    bs_error err = {0};
    CHECK_OK(kv_seq_init(s, p, 64, salt, &err), &err);
    CHECK_INT(kv_seq_reserve(s, p, n), 0);
    s->n_pos = n;
    kv_seq_commit(s, p, tokens);
}

static void test_alloc_refcount(void) {
    bs_kv_pool *p = open_pool(3);
    int a = kv_block_alloc(p), b = kv_block_alloc(p), c = kv_block_alloc(p);
    CHECK(a >= 0 && b >= 0 && c >= 0 && a != b && b != c && a != c);
    CHECK_INT(kv_block_alloc(p), -1);
    CHECK_INT(kv_pool_n_used(p), 3);
    CHECK_INT(kv_pool_n_available(p), 0);
    kv_block_ref(p, b);
    CHECK_INT(kv_block_refcount(p, b), 2);
    kv_block_unref(p, b);
    CHECK_INT(kv_pool_n_available(p), 0);
    kv_block_unref(p, b);
    CHECK_INT(kv_block_refcount(p, b), 0);
    CHECK_INT(kv_pool_n_available(p), 1);
    CHECK_INT(kv_pool_n_cached(p), 0);
    CHECK_INT(kv_block_alloc(p), b);
    CHECK(kv_block_k(p, a, 1) != kv_block_k(p, a, 0));
    CHECK(kv_block_k(p, a, 0) != kv_block_v(p, a, 0));
    CHECK((char *)kv_block_k(p, b, 0) - (char *)kv_block_k(p, a, 0) != 0);

    /* Reservation is all or nothing. */
    bs_kv_seq s;
    bs_error err = {0};
    CHECK_OK(kv_seq_init(&s, p, 64, 0, &err), &err);
    kv_block_unref(p, a);
    CHECK_INT(kv_seq_blocks_needed(&s, p, 2 * BS), 2);
    CHECK_INT(kv_seq_reserve(&s, p, 2 * BS), -1);
    CHECK_INT(s.n_blocks, 0);
    CHECK_INT(kv_seq_reserve(&s, p, BS), 0);
    CHECK_INT(s.n_blocks, 1);
    CHECK_INT(kv_seq_blocks_needed(&s, p, BS), 0);
    kv_seq_free(&s, p);
    CHECK_INT(kv_pool_n_used(p), 2);
    kv_pool_close(p);
}

static void test_hash_chain(void) {
    int32_t t[BS] = {1, 2, 3, 4}, u[BS] = {1, 2, 3, 5};
    uint64_t h = kv_block_hash(0, t, BS, 0);
    CHECK(h == kv_block_hash(0, t, BS, 0));
    CHECK(h != kv_block_hash(0, u, BS, 0));
    CHECK(h != kv_block_hash(1, t, BS, 0));
    CHECK(h != kv_block_hash(0, t, BS, 7));
    /* The chain: the second block's hash depends on the first block. */
    CHECK(kv_block_hash(h, t, BS, 0) != kv_block_hash(kv_block_hash(0, u, BS, 0), t, BS, 0));
}

static void test_prefix_reuse(void) {
    bs_kv_pool *p = open_pool(16);
    int32_t tok[11] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    bs_kv_seq a, b;
    fill(&a, p, tok, 10, 0); /* two full blocks and a partial one */
    CHECK_INT(a.n_hashed, 2);
    CHECK_INT(kv_pool_n_used(p), 3);
    int a0 = a.blocks[0], a1 = a.blocks[1];
    kv_seq_clear(&a, p);
    CHECK_INT(kv_pool_n_used(p), 0);
    CHECK_INT(kv_pool_n_cached(p), 2); /* the full blocks stay cached */

    bs_error err = {0};
    CHECK_OK(kv_seq_init(&b, p, 64, 0, &err), &err);
    CHECK_INT(kv_seq_match_prefix(&b, p, tok, 11), 8);
    CHECK_INT(b.blocks[0], a0);
    CHECK_INT(b.blocks[1], a1);
    CHECK_INT(kv_block_refcount(p, a0), 1);
    CHECK_INT(kv_pool_n_cached(p), 0);
    kv_seq_clear(&b, p);
    /* The block holding the last token is always recomputed. */
    CHECK_INT(kv_seq_match_prefix(&b, p, tok, 8), 4);
    kv_seq_clear(&b, p);
    CHECK_INT(kv_seq_match_prefix(&b, p, tok, 9), 8);
    kv_seq_clear(&b, p);
    /* A different token in the second block stops the match after the first. */
    int32_t other[11];
    memcpy(other, tok, sizeof tok);
    other[6] = 99;
    CHECK_INT(kv_seq_match_prefix(&b, p, other, 11), 4);
    kv_seq_clear(&b, p);
    /* A different first block breaks the chain even when the second matches. */
    other[6] = tok[6];
    other[0] = 99;
    CHECK_INT(kv_seq_match_prefix(&b, p, other, 11), 0);
    kv_seq_free(&b, p);
    /* Another salt sees nothing. */
    CHECK_OK(kv_seq_init(&b, p, 64, 42, &err), &err);
    CHECK_INT(kv_seq_match_prefix(&b, p, tok, 11), 0);
    kv_seq_free(&b, p);
    kv_seq_free(&a, p);
    kv_pool_close(p);
}

static void test_duplicate_commit(void) {
    bs_kv_pool *p = open_pool(8);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    bs_kv_seq a, b;
    fill(&a, p, tok, 8, 0);
    fill(&b, p, tok, 8, 0); /* computed the same prefix concurrently */
    kv_seq_free(&a, p);
    kv_seq_free(&b, p);
    /* Only a's blocks are cached; b's went back to the free list. */
    CHECK_INT(kv_pool_n_cached(p), 2);
    CHECK_INT(kv_pool_n_available(p), 8);
    kv_pool_close(p);
}

static void test_lru_eviction(void) {
    bs_kv_pool *p = open_pool(4);
    int32_t x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 0}, y[9] = {9, 10, 11, 12, 13, 14, 15, 16, 0};
    bs_kv_seq a, b, c;
    fill(&a, p, x, 8, 0);
    fill(&b, p, y, 8, 0);
    int x0 = a.blocks[0], x1 = a.blocks[1], y1 = b.blocks[1];
    kv_seq_free(&a, p); /* released first: evicted first, its tail before its head */
    kv_seq_free(&b, p);
    CHECK_INT(kv_pool_n_cached(p), 4);
    bs_error err = {0};
    CHECK_OK(kv_seq_init(&c, p, 64, 0, &err), &err);
    CHECK_INT(kv_seq_match_prefix(&c, p, y, 9), 8); /* both chains are whole */
    kv_seq_clear(&c, p); /* y is now the most recently released: y1 then y0 */
    CHECK_INT(kv_block_alloc(p), x1);
    CHECK_INT(kv_seq_match_prefix(&c, p, x, 9), 4); /* x's first block survives */
    kv_seq_clear(&c, p); /* x0 is now the most recently used */
    CHECK_INT(kv_block_alloc(p), y1);
    CHECK_INT(kv_seq_match_prefix(&c, p, y, 9), 4);
    kv_seq_clear(&c, p);
    CHECK_INT(kv_block_alloc(p), x0);
    CHECK_INT(kv_seq_match_prefix(&c, p, x, 9), 0);
    kv_seq_free(&c, p);
    kv_pool_close(p);
}

static void test_fork(void) {
    bs_kv_pool *p = open_pool(4);
    int32_t tok[6] = {1, 2, 3, 4, 5, 6};
    bs_kv_seq a, b;
    fill(&a, p, tok, 6, 0);
    for (int l = 0; l < LAYERS; l++)
        for (int i = 0; i < BS * KV_DIM; i++) {
            ((float *)kv_block_k(p, a.blocks[1], l))[i] = (float)(100 * l + i);
            ((float *)kv_block_v(p, a.blocks[1], l))[i] = (float)(-100 * l - i);
        }
    bs_error err = {0};
    CHECK_OK(kv_seq_init(&b, p, 64, 0, &err), &err);
    CHECK_INT(kv_seq_fork(&b, &a, p), 0);
    CHECK_INT(b.n_pos, 6);
    CHECK_INT(b.n_blocks, 2);
    CHECK_INT(b.blocks[0], a.blocks[0]);
    CHECK_INT(kv_block_refcount(p, a.blocks[0]), 2);
    CHECK(b.blocks[1] != a.blocks[1]);
    CHECK_INT(kv_block_refcount(p, b.blocks[1]), 1);
    for (int l = 0; l < LAYERS; l++)
        for (int i = 0; i < 2 * KV_DIM; i++) {
            CHECK_NEAR(((float *)kv_block_k(p, b.blocks[1], l))[i], 100 * l + i, 0);
            CHECK_NEAR(((float *)kv_block_v(p, b.blocks[1], l))[i], -100 * l - i, 0);
        }
    /* The fork continues the hash chain: its next full block registers. */
    CHECK_INT(b.n_hashed, 1);
    CHECK_INT(kv_seq_reserve(&b, p, 8), 0);
    b.n_pos = 8;
    int32_t more[8] = {1, 2, 3, 4, 5, 6, 70, 80};
    kv_seq_commit(&b, p, more);
    CHECK_INT(b.n_hashed, 2);
    /* No block left for a second fork's partial copy. */
    bs_kv_seq c;
    CHECK_OK(kv_seq_init(&c, p, 64, 0, &err), &err);
    CHECK_INT(kv_block_alloc(p), 3);
    CHECK_INT(kv_seq_fork(&c, &a, p), -1);
    CHECK_INT(c.n_blocks, 0);
    CHECK_INT(kv_block_refcount(p, a.blocks[0]), 2);
    kv_seq_free(&c, p);
    kv_seq_free(&a, p);
    kv_seq_free(&b, p);
    CHECK_INT(kv_pool_n_used(p), 1);
    kv_pool_close(p);
}

/* Each dtype's rows: a position takes bs_dtype_row_bytes(dtype, kv_dim) (34
 * bytes per 32 values for q8_0, a quarter of f32 plus the scales), layers
 * and blocks follow one another, and a fork copies the partial block's
 * rows byte for byte. */
static void test_row_sizes(void) {
    enum { KD = 64 };
    static const bs_dtype types[] = {BS_DTYPE_F32, BS_DTYPE_F16, BS_DTYPE_Q8_0};
    static const size_t row[] = {KD * 4, KD * 2, 2 * 34};
    for (int i = 0; i < 3; i++) {
        bs_kv_pool *p = NULL;
        bs_error err = {0};
        CHECK_OK(kv_pool_open(3, BS, LAYERS, KD, types[i], &p, &err), &err);
        unsigned char *b0 = kv_block_k(p, 0, 0);
        CHECK((size_t)((unsigned char *)kv_block_k(p, 0, 1) - b0) == BS * row[i]);
        CHECK((size_t)((unsigned char *)kv_block_k(p, 1, 0) - b0) == LAYERS * BS * row[i]);
        bs_kv_seq a, b;
        int32_t tok[2] = {7, 8};
        fill(&a, p, tok, 2, 0);
        for (int l = 0; l < LAYERS; l++)
            for (size_t j = 0; j < 2 * row[i]; j++) {
                ((unsigned char *)kv_block_k(p, a.blocks[0], l))[j] = (unsigned char)(j + l);
                ((unsigned char *)kv_block_v(p, a.blocks[0], l))[j] = (unsigned char)(j * 3 + l);
            }
        CHECK_OK(kv_seq_init(&b, p, 64, 0, &err), &err);
        CHECK_INT(kv_seq_fork(&b, &a, p), 0);
        CHECK(b.blocks[0] != a.blocks[0]);
        for (int l = 0; l < LAYERS; l++) {
            CHECK(memcmp(kv_block_k(p, b.blocks[0], l), kv_block_k(p, a.blocks[0], l), 2 * row[i]) == 0);
            CHECK(memcmp(kv_block_v(p, b.blocks[0], l), kv_block_v(p, a.blocks[0], l), 2 * row[i]) == 0);
        }
        kv_seq_free(&a, p);
        kv_seq_free(&b, p);
        kv_pool_close(p);
    }
    bs_kv_pool *p = NULL;
    bs_error err = {0};
    CHECK(kv_pool_open(3, BS, LAYERS, KD, BS_DTYPE_Q4_0, &p, &err) == BS_EINVAL);
    CHECK(strstr(err.msg, "f32, f16 or q8_0, not Q4_0") != NULL);
}

int main(void) {
    RUN(test_alloc_refcount);
    RUN(test_hash_chain);
    RUN(test_prefix_reuse);
    RUN(test_duplicate_commit);
    RUN(test_lru_eviction);
    RUN(test_fork);
    RUN(test_row_sizes);
    TEST_MAIN_END();
}
