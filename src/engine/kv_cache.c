/* engine/kv_cache.c — block pool, refcounts, LRU of cached blocks, the
 * hash -> block map (linear probing, backward-shift deletion) and the
 * per-sequence block tables. */
#include "engine/kv_cache.h"

#include <stdlib.h>
#include <string.h>

enum { NIL = -1 };

/* Prefix-cache identity of a registered block. */
typedef struct block_meta {
    uint64_t hash, parent, salt;
    int registered;
    int prev, next; /* LRU links while registered with refcount 0 */
} block_meta;

struct bs_kv_pool {
    int n_blocks, block_size, n_layers, kv_dim;
    bs_dtype dtype;      /* F32, F16 or Q8_0 */
    size_t row_bytes;    /* one position's kv_dim keys (or values) in dtype */
    size_t block_bytes;  /* n_layers * block_size * row_bytes */
    unsigned char *k, *v; /* [n_blocks][n_layers][block_size][row_bytes] */
    int *refcount;
    block_meta *meta;
    int32_t *tokens;     /* [n_blocks][block_size] ids of registered blocks */
    int *free_list, n_free; /* unregistered blocks with refcount 0 */
    int lru_head, lru_tail, n_cached;
    int n_used;
    int *map; /* [map_cap] block index or NIL */
    size_t map_cap;
};

bs_status kv_pool_open(int n_blocks, int block_size, int n_layers, int kv_dim, bs_dtype dtype, bs_kv_pool **out,
                       bs_error *err) {
    *out = NULL;
    if (n_blocks <= 0 || block_size <= 0 || n_layers <= 0 || kv_dim <= 0)
        return bs_fail(err, BS_EINVAL, "kv pool: bad geometry (%d blocks of %d positions, %d layers, kv_dim %d)",
                       n_blocks, block_size, n_layers, kv_dim);
    if (dtype != BS_DTYPE_F32 && dtype != BS_DTYPE_F16 && dtype != BS_DTYPE_Q8_0)
        return bs_fail(err, BS_EINVAL, "kv pool: the cache holds f32, f16 or q8_0, not %s", bs_dtype_name(dtype));
    if (bs_dtype_row_bytes(dtype, kv_dim) == 0)
        return bs_fail(err, BS_EINVAL, "kv pool: kv_dim %d is not a whole number of %s blocks", kv_dim,
                       bs_dtype_name(dtype));
    bs_kv_pool *p = calloc(1, sizeof *p);
    if (!p) return bs_fail(err, BS_ENOMEM, "kv pool: out of memory");
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->n_layers = n_layers;
    p->kv_dim = kv_dim;
    p->dtype = dtype;
    p->row_bytes = bs_dtype_row_bytes(dtype, kv_dim);
    p->block_bytes = (size_t)n_layers * block_size * p->row_bytes;
    p->map_cap = 16;
    while (p->map_cap < 2 * (size_t)n_blocks) p->map_cap *= 2;
    size_t bytes = (size_t)n_blocks * p->block_bytes;
    p->k = malloc(bytes);
    p->v = malloc(bytes);
    p->refcount = calloc((size_t)n_blocks, sizeof *p->refcount);
    p->meta = calloc((size_t)n_blocks, sizeof *p->meta);
    p->tokens = malloc((size_t)n_blocks * block_size * sizeof *p->tokens);
    p->free_list = malloc((size_t)n_blocks * sizeof *p->free_list);
    p->map = malloc(p->map_cap * sizeof *p->map);
    if (!p->k || !p->v || !p->refcount || !p->meta || !p->tokens || !p->free_list || !p->map) {
        kv_pool_close(p);
        return bs_fail(err, BS_ENOMEM, "kv pool: out of memory for %d blocks (%.1f MB)", n_blocks,
                       2.0 * bytes / 1e6);
    }
    /* Lowest block first out of the free list. */
    for (int i = 0; i < n_blocks; i++) p->free_list[i] = n_blocks - 1 - i;
    p->n_free = n_blocks;
    p->lru_head = p->lru_tail = NIL;
    for (size_t i = 0; i < p->map_cap; i++) p->map[i] = NIL;
    *out = p;
    return BS_OK;
}

void kv_pool_close(bs_kv_pool *p) {
    if (!p) return;
    free(p->k);
    free(p->v);
    free(p->refcount);
    free(p->meta);
    free(p->tokens);
    free(p->free_list);
    free(p->map);
    free(p);
}

int kv_pool_block_size(const bs_kv_pool *p) { return p->block_size; }
int kv_pool_n_blocks(const bs_kv_pool *p) { return p->n_blocks; }
int kv_pool_n_used(const bs_kv_pool *p) { return p->n_used; }
int kv_pool_n_cached(const bs_kv_pool *p) { return p->n_cached; }
int kv_pool_n_available(const bs_kv_pool *p) { return p->n_free + p->n_cached; }
int kv_block_refcount(const bs_kv_pool *p, int block) { return p->refcount[block]; }

bs_dtype kv_pool_dtype(const bs_kv_pool *p) { return p->dtype; }

void *kv_block_k(bs_kv_pool *p, int block, int layer) {
    return p->k + (size_t)block * p->block_bytes + (size_t)layer * p->block_size * p->row_bytes;
}
void *kv_block_v(bs_kv_pool *p, int block, int layer) {
    return p->v + (size_t)block * p->block_bytes + (size_t)layer * p->block_size * p->row_bytes;
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n, uint64_t salt) {
    uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ull) ^ mix64(salt + 0x632be59bd9b4e019ull);
    for (int i = 0; i < n; i++) h = mix64(h ^ (uint32_t)tokens[i]) + (uint64_t)i;
    return h;
}

/* ---- hash map ------------------------------------------------------------ */

static size_t map_slot(const bs_kv_pool *p, uint64_t hash) { return (size_t)mix64(hash) & (p->map_cap - 1); }

/* Slot holding hash, or the empty slot where it would go. */
static size_t map_find(const bs_kv_pool *p, uint64_t hash) {
    size_t i = map_slot(p, hash);
    while (p->map[i] != NIL && p->meta[p->map[i]].hash != hash) i = (i + 1) & (p->map_cap - 1);
    return i;
}

static void map_remove(bs_kv_pool *p, uint64_t hash) {
    size_t mask = p->map_cap - 1, i = map_find(p, hash);
    if (p->map[i] == NIL) return;
    /* Backward shift: pull later entries of the probe run into the hole
     * unless their home slot lies cyclically after the hole. */
    for (size_t j = (i + 1) & mask; p->map[j] != NIL; j = (j + 1) & mask) {
        size_t home = map_slot(p, p->meta[p->map[j]].hash);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            p->map[i] = p->map[j];
            i = j;
        }
    }
    p->map[i] = NIL;
}

/* ---- LRU of cached blocks -------------------------------------------------- */

static void lru_unlink(bs_kv_pool *p, int b) {
    block_meta *m = &p->meta[b];
    if (m->prev != NIL) p->meta[m->prev].next = m->next;
    else p->lru_head = m->next;
    if (m->next != NIL) p->meta[m->next].prev = m->prev;
    else p->lru_tail = m->prev;
    p->n_cached--;
}

static void lru_push_tail(bs_kv_pool *p, int b) {
    block_meta *m = &p->meta[b];
    m->prev = p->lru_tail;
    m->next = NIL;
    if (p->lru_tail != NIL) p->meta[p->lru_tail].next = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_cached++;
}

/* ---- blocks --------------------------------------------------------------- */

int kv_block_alloc(bs_kv_pool *p) {
    int b;
    if (p->n_free > 0) {
        b = p->free_list[--p->n_free];
    } else if (p->lru_head != NIL) {
        b = p->lru_head;
        lru_unlink(p, b);
        map_remove(p, p->meta[b].hash);
        p->meta[b].registered = 0;
    } else {
        return NIL;
    }
    p->refcount[b] = 1;
    p->n_used++;
    return b;
}

void kv_block_ref(bs_kv_pool *p, int block) {
    if (p->refcount[block]++ > 0) return;
    /* Only registered blocks are found with refcount 0 (prefix hits). */
    lru_unlink(p, block);
    p->n_used++;
}

void kv_block_unref(bs_kv_pool *p, int block) {
    if (--p->refcount[block] > 0) return;
    p->n_used--;
    if (p->meta[block].registered) lru_push_tail(p, block);
    else p->free_list[p->n_free++] = block;
}

/* ---- sequences ------------------------------------------------------------ */

bs_status kv_seq_init(bs_kv_seq *s, const bs_kv_pool *p, int max_pos, uint64_t salt, bs_error *err) {
    memset(s, 0, sizeof *s);
    s->cap = (max_pos + p->block_size - 1) / p->block_size;
    s->salt = salt;
    s->blocks = malloc((size_t)(s->cap > 0 ? s->cap : 1) * sizeof *s->blocks);
    if (!s->blocks) return bs_fail(err, BS_ENOMEM, "kv: out of memory for a block table");
    return BS_OK;
}

void kv_seq_clear(bs_kv_seq *s, bs_kv_pool *p) {
    /* Release the tail first so the LRU evicts a chain's later blocks before
     * the prefix they extend (a chain is only reachable from its start). */
    for (int i = s->n_blocks - 1; i >= 0; i--) kv_block_unref(p, s->blocks[i]);
    s->n_blocks = s->n_pos = s->n_hashed = 0;
    s->last_hash = 0;
}

void kv_seq_free(bs_kv_seq *s, bs_kv_pool *p) {
    if (!s->blocks) return;
    kv_seq_clear(s, p);
    free(s->blocks);
    s->blocks = NULL;
}

int kv_seq_blocks_needed(const bs_kv_seq *s, const bs_kv_pool *p, int n_pos) {
    int need = (n_pos + p->block_size - 1) / p->block_size - s->n_blocks;
    return need > 0 ? need : 0;
}

int kv_seq_reserve(bs_kv_seq *s, bs_kv_pool *p, int n_pos) {
    int need = kv_seq_blocks_needed(s, p, n_pos);
    if (s->n_blocks + need > s->cap || need > kv_pool_n_available(p)) return -1;
    for (int i = 0; i < need; i++) s->blocks[s->n_blocks++] = kv_block_alloc(p);
    return 0;
}

/* The registered block caching this exact prefix block, or NIL. */
static int cache_lookup(const bs_kv_pool *p, uint64_t hash, uint64_t parent, const int32_t *tokens,
                        uint64_t salt) {
    int b = p->map[map_find(p, hash)];
    if (b == NIL) return NIL;
    const block_meta *m = &p->meta[b];
    if (m->parent != parent || m->salt != salt ||
        memcmp(p->tokens + (size_t)b * p->block_size, tokens, (size_t)p->block_size * sizeof *tokens) != 0)
        return NIL;
    return b;
}

int kv_seq_match_prefix(bs_kv_seq *s, bs_kv_pool *p, const int32_t *tokens, int n) {
    int bs = p->block_size, max_blocks = (n - 1) / bs;
    if (max_blocks > s->cap) max_blocks = s->cap;
    while (s->n_blocks < max_blocks) {
        const int32_t *t = tokens + (size_t)s->n_blocks * bs;
        uint64_t h = kv_block_hash(s->last_hash, t, bs, s->salt);
        int b = cache_lookup(p, h, s->last_hash, t, s->salt);
        if (b == NIL) break;
        kv_block_ref(p, b);
        s->blocks[s->n_blocks++] = b;
        s->last_hash = h;
    }
    s->n_hashed = s->n_blocks;
    s->n_pos = s->n_blocks * bs;
    return s->n_pos;
}

void kv_seq_commit(bs_kv_seq *s, bs_kv_pool *p, const int32_t *tokens) {
    int bs = p->block_size;
    while ((s->n_hashed + 1) * bs <= s->n_pos) {
        const int32_t *t = tokens + (size_t)s->n_hashed * bs;
        uint64_t h = kv_block_hash(s->last_hash, t, bs, s->salt);
        int b = s->blocks[s->n_hashed];
        if (!p->meta[b].registered && p->map[map_find(p, h)] == NIL) {
            block_meta *m = &p->meta[b];
            m->hash = h;
            m->parent = s->last_hash;
            m->salt = s->salt;
            m->registered = 1;
            memcpy(p->tokens + (size_t)b * bs, t, (size_t)bs * sizeof *t);
            p->map[map_find(p, h)] = b;
        }
        s->last_hash = h;
        s->n_hashed++;
    }
}

int kv_seq_fork(bs_kv_seq *dst, const bs_kv_seq *src, bs_kv_pool *p) {
    int bs = p->block_size, n_full = src->n_pos / bs, partial = src->n_pos % bs;
    int copy = NIL;
    if (partial) {
        copy = kv_block_alloc(p);
        if (copy == NIL) return -1;
        int from = src->blocks[n_full];
        for (int l = 0; l < p->n_layers; l++) {
            size_t bytes = (size_t)partial * p->row_bytes;
            memcpy(kv_block_k(p, copy, l), kv_block_k(p, from, l), bytes);
            memcpy(kv_block_v(p, copy, l), kv_block_v(p, from, l), bytes);
        }
    }
    for (int i = 0; i < n_full; i++) {
        kv_block_ref(p, src->blocks[i]);
        dst->blocks[i] = src->blocks[i];
    }
    dst->n_blocks = n_full;
    if (copy != NIL) dst->blocks[dst->n_blocks++] = copy;
    dst->n_pos = src->n_pos;
    dst->n_hashed = src->n_hashed;
    dst->last_hash = src->last_hash;
    dst->salt = src->salt;
    return 0;
}
