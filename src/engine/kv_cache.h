/* engine/kv_cache.h — the paged KV cache: one pool of fixed-size blocks
 * (block_size positions of K and V for every layer), per-sequence block
 * tables, and the prefix cache over full blocks.
 *
 * Blocks are refcounted: sequences, their forks and prefix-cache hits share
 * full blocks, which are never written again; a sequence's partial last
 * block is private (a fork copies it), so no copy-on-write is needed.
 *
 * Prefix cache (vLLM's automatic prefix caching): a full block's hash chains
 * its parent block's hash, its token ids and a salt (tenant/adapter), so a
 * hash names the whole prefix up to the block's end.  Registered blocks stay
 * cached when their refcount drops to 0, in an LRU list; allocation takes
 * never-registered free blocks first, then evicts the least recently used
 * cached block.  Lookups compare the stored parent hash, salt and tokens, so
 * a 64-bit hash collision cannot alias two prefixes.
 *
 * Not thread-safe: the scheduler thread (or one context) owns a pool. */
#ifndef BASALT_ENGINE_KV_CACHE_H
#define BASALT_ENGINE_KV_CACHE_H

#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"

typedef struct bs_kv_pool bs_kv_pool;

/* dtype: BS_DTYPE_F32; BS_DTYPE_F16 for half the memory (keys and values
 * rounded to f16 when stored); or BS_DTYPE_Q8_0 for 34/128 of it (each 32
 * values of a position's row one llama.cpp Q8_0 block: an f16 scale and 32
 * int8 codes; kv_dim a multiple of 32). */
bs_status kv_pool_open(int n_blocks, int block_size, int n_layers, int kv_dim, bs_dtype dtype, bs_kv_pool **out,
                       bs_error *err);
void kv_pool_close(bs_kv_pool *p);

int kv_pool_block_size(const bs_kv_pool *p);
int kv_pool_n_blocks(const bs_kv_pool *p);
int kv_pool_n_used(const bs_kv_pool *p);      /* blocks with refcount > 0 */
int kv_pool_n_cached(const bs_kv_pool *p);    /* registered blocks with refcount 0 (evictable) */
int kv_pool_n_available(const bs_kv_pool *p); /* blocks kv_block_alloc can still hand out */

/* A block with refcount 1, or -1 when every block is referenced.  Evicting
 * a cached block removes it from the prefix cache. */
int kv_block_alloc(bs_kv_pool *p);
void kv_block_ref(bs_kv_pool *p, int block);
/* Refcount 0: a registered block joins the LRU tail, others the free list. */
void kv_block_unref(bs_kv_pool *p, int block);
int kv_block_refcount(const bs_kv_pool *p, int block);

bs_dtype kv_pool_dtype(const bs_kv_pool *p);

/* [block_size][kv_dim] keys / values of one layer in a block, in the pool's
 * dtype: position i's row at i * bs_dtype_row_bytes(dtype, kv_dim) bytes. */
void *kv_block_k(bs_kv_pool *p, int block, int layer);
void *kv_block_v(bs_kv_pool *p, int block, int layer);

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n, uint64_t salt);

/* A sequence's block table: blocks[i] holds positions i*block_size... */
typedef struct bs_kv_seq {
    int *blocks;
    int n_blocks, cap; /* cap: blocks for the longest sequence */
    int n_pos;         /* positions written */
    int n_hashed;      /* leading full blocks registered or found in the prefix cache */
    uint64_t last_hash; /* hash of block n_hashed-1 (0 before the first) */
    uint64_t salt;
} bs_kv_seq;

/* max_pos: the most positions the sequence will hold. */
bs_status kv_seq_init(bs_kv_seq *s, const bs_kv_pool *p, int max_pos, uint64_t salt, bs_error *err);
/* Drop every block reference and empty the sequence (the table stays). */
void kv_seq_clear(bs_kv_seq *s, bs_kv_pool *p);
/* kv_seq_clear, then free the table. */
void kv_seq_free(bs_kv_seq *s, bs_kv_pool *p);

/* Ensure blocks for n_pos positions (allocating the missing ones).  Returns
 * 0, or -1 with nothing allocated when the pool cannot supply them. */
int kv_seq_reserve(bs_kv_seq *s, bs_kv_pool *p, int n_pos);
/* Blocks kv_seq_reserve(s, p, n_pos) would allocate. */
int kv_seq_blocks_needed(const bs_kv_seq *s, const bs_kv_pool *p, int n_pos);

/* On an empty sequence: take the longest cached chain of full blocks that
 * prefixes tokens[0..n), stopping before the block holding token n-1 so at
 * least one token is left to compute.  Returns the positions reused. */
int kv_seq_match_prefix(bs_kv_seq *s, bs_kv_pool *p, const int32_t *tokens, int n);

/* Register the sequence's newly completed full blocks (tokens: the ids of
 * its positions 0..n_pos) in the prefix cache.  A prefix some other block
 * already caches keeps that block; this one stays private. */
void kv_seq_commit(bs_kv_seq *s, bs_kv_pool *p, const int32_t *tokens);

/* dst (empty, initialised) shares src's full blocks and gets a private copy
 * of src's partial last block.  Returns 0, or -1 (dst left empty) when no
 * block is free for the copy. */
int kv_seq_fork(bs_kv_seq *dst, const bs_kv_seq *src, bs_kv_pool *p);

#endif
