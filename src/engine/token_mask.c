/* engine/token_mask.c — the per-tokenizer byte trie, the incremental grammar
 * matcher and the per-step token mask.
 *
 * Matcher: a set of parse stacks as in llama.cpp.  A stack is a chain of
 * nodes (grammar position, parent node); its top always sits on a byte-set
 * element, the nodes below hold return positions.  Nodes are hash-consed, so
 * equal stacks are equal ids, a state is a short sorted id list, and old
 * states (history for rollback) stay valid for free.  A reference in tail
 * position pushes no return node, so repetitions (right-recursive helper
 * rules) run in constant stack depth. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar_impl.h"

/* ---- token trie ------------------------------------------------------------ */

enum { TK_NONE, TK_TEXT, TK_EOG };

struct bs_token_trie {
    int32_t n_vocab;
    uint8_t *kind;   /* TK_* per token id */
    char *bytes;     /* every TK_TEXT token's bytes, back to back */
    size_t *off;     /* token id -> offset in bytes */
    uint32_t *len;   /* token id -> length */
    int32_t *eog;    /* end-of-generation token ids */
    int32_t n_eog;
    int32_t n_nodes; /* node 0 is the root; nodes are numbered in preorder */
    int32_t *first_child, *next_sib;
    uint8_t *byte;
    /* order[] lists TK_TEXT ids sorted by bytes; a node's subtree holds
     * order[lo .. sub_hi), of which order[lo .. hi) end exactly at it. */
    int32_t *order;
    int32_t *lo, *hi, *sub_hi;
    /* Bytes on the edges below a node, kept for nodes with at least
     * BIG_SUBTREE tokens (-1 otherwise): a subtree whose bytes all leave the
     * matcher state unchanged is allowed whole, without walking it. */
    int32_t *below;
    uint64_t (*below_sets)[4];
    int32_t n_below;
};

#define BIG_SUBTREE 16

void token_trie_free(bs_token_trie *t) {
    if (!t) return;
    free(t->kind), free(t->bytes), free(t->off), free(t->len), free(t->eog);
    free(t->first_child), free(t->next_sib), free(t->byte);
    free(t->order), free(t->lo), free(t->hi), free(t->sub_hi);
    free(t->below), free(t->below_sets);
    free(t);
}

const char *token_trie_bytes(const bs_token_trie *t, int32_t id, size_t *n) {
    *n = 0;
    if (id < 0 || id >= t->n_vocab || t->kind[id] != TK_TEXT) return NULL;
    *n = t->len[id];
    return t->bytes + t->off[id];
}

static int cmp_tokens(const void *a, const void *b, void *ctx) {
    const bs_token_trie *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = t->len[x], ly = t->len[y];
    int c = memcmp(t->bytes + t->off[x], t->bytes + t->off[y], lx < ly ? lx : ly);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Bytes a token contributes inside a text.  Decoding [id, id] and keeping
 * the second copy sidesteps SentencePiece's leading-space rule, which applies
 * only to the first piece. */
static bs_status token_bytes(const bs_tokenizer *tok, int32_t id, char **text, size_t *n, size_t *skip,
                             bs_error *err) {
    char *one;
    size_t n1;
    bs_status st = tok_decode(tok, &id, 1, 0, &one, &n1, err);
    if (st != BS_OK) return st;
    free(one);
    *skip = 0;
    *n = 0;
    *text = NULL;
    if (n1 == 0) return BS_OK; /* special, control or unused: never generated under a grammar */
    int32_t two[2] = {id, id};
    size_t n2;
    st = tok_decode(tok, two, 2, 0, text, &n2, err);
    if (st != BS_OK) return st;
    *n = n2 - n1;
    *skip = n1;
    return BS_OK;
}

/* Fill set with the bytes below node; record it for big subtrees. */
static void collect_below(bs_token_trie *t, int32_t node, uint64_t set[4]) {
    memset(set, 0, 4 * sizeof *set);
    for (int32_t c = t->first_child[node]; c >= 0; c = t->next_sib[c]) {
        uint64_t sub[4];
        collect_below(t, c, sub);
        for (int w = 0; w < 4; w++) set[w] |= sub[w];
        set[t->byte[c] >> 6] |= 1ull << (t->byte[c] & 63);
    }
    t->below[node] = -1;
    if (t->sub_hi[node] - t->lo[node] >= BIG_SUBTREE) {
        t->below[node] = t->n_below;
        memcpy(t->below_sets[t->n_below++], set, 4 * sizeof *set);
    }
}

bs_status token_trie_build(const bs_tokenizer *tok, bs_token_trie **out, bs_error *err) {
    *out = NULL;
    int32_t nv = tok_vocab_size(tok);
    bs_token_trie *t = calloc(1, sizeof *t);
    if (!t) return bs_fail(err, BS_ENOMEM, "token trie: out of memory");
    t->n_vocab = nv;
    t->kind = calloc((size_t)nv + 1, 1);
    t->off = calloc((size_t)nv + 1, sizeof *t->off);
    t->len = calloc((size_t)nv + 1, sizeof *t->len);
    t->eog = malloc(((size_t)nv + 1) * sizeof *t->eog);
    t->order = malloc(((size_t)nv + 1) * sizeof *t->order);
    bs_status st = BS_OK;
    if (!t->kind || !t->off || !t->len || !t->eog || !t->order) st = bs_fail(err, BS_ENOMEM, "token trie: out of memory");
    size_t total = 0, cap = 0;
    int32_t n_text = 0;
    int32_t eos = tok_eos_id(tok);
    for (int32_t id = 0; id < nv && st == BS_OK; id++) {
        if (id == eos || tok_is_eog(tok, id)) {
            t->kind[id] = TK_EOG;
            t->eog[t->n_eog++] = id;
            continue;
        }
        char *text;
        size_t n, skip;
        if ((st = token_bytes(tok, id, &text, &n, &skip, err)) != BS_OK) break;
        if (n > 0) {
            if (total + n > cap) {
                size_t ncap = cap ? cap * 2 : 1 << 16;
                while (ncap < total + n) ncap *= 2;
                char *nb = realloc(t->bytes, ncap);
                if (!nb) {
                    free(text);
                    st = bs_fail(err, BS_ENOMEM, "token trie: out of memory");
                    break;
                }
                t->bytes = nb, cap = ncap;
            }
            memcpy(t->bytes + total, text + skip, n);
            t->kind[id] = TK_TEXT;
            t->off[id] = total;
            t->len[id] = (uint32_t)n;
            total += n;
            t->order[n_text++] = id;
        }
        free(text);
    }
    size_t max_nodes = total + 1;
    if (st == BS_OK) {
        t->first_child = malloc(max_nodes * sizeof *t->first_child);
        t->next_sib = malloc(max_nodes * sizeof *t->next_sib);
        t->byte = malloc(max_nodes);
        t->lo = malloc(max_nodes * sizeof *t->lo);
        t->hi = malloc(max_nodes * sizeof *t->hi);
        t->sub_hi = malloc(max_nodes * sizeof *t->sub_hi);
        if (!t->first_child || !t->next_sib || !t->byte || !t->lo || !t->hi || !t->sub_hi)
            st = bs_fail(err, BS_ENOMEM, "token trie: out of memory");
    }
    int32_t *path = NULL, *last_child = NULL;
    uint32_t max_len = 0;
    for (int32_t i = 0; i < n_text; i++)
        if (t->len[t->order[i]] > max_len) max_len = t->len[t->order[i]];
    if (st == BS_OK) {
        path = malloc(((size_t)max_len + 1) * sizeof *path);
        last_child = malloc(max_nodes * sizeof *last_child);
        if (!path || !last_child) st = bs_fail(err, BS_ENOMEM, "token trie: out of memory");
    }
    if (st == BS_OK) {
        qsort_r(t->order, (size_t)n_text, sizeof *t->order, cmp_tokens, t);
        t->n_nodes = 1;
        t->first_child[0] = t->next_sib[0] = last_child[0] = -1;
        t->byte[0] = 0;
        t->lo[0] = t->hi[0] = 0;
        t->sub_hi[0] = n_text;
        path[0] = 0;
        uint32_t prev_len = 0;
        const char *prev = NULL;
        for (int32_t i = 0; i < n_text; i++) {
            int32_t id = t->order[i];
            const char *s = t->bytes + t->off[id];
            uint32_t n = t->len[id], d = 0;
            while (prev && d < n && d < prev_len && s[d] == prev[d]) d++;
            for (uint32_t k = d; k < n; k++) { /* new nodes for the unshared suffix */
                int32_t c = t->n_nodes++, p = path[k];
                t->first_child[c] = t->next_sib[c] = last_child[c] = -1;
                t->byte[c] = (uint8_t)s[k];
                t->lo[c] = t->hi[c] = i;
                if (last_child[p] < 0) t->first_child[p] = c;
                else t->next_sib[last_child[p]] = c;
                last_child[p] = c;
                path[k + 1] = c;
            }
            for (uint32_t k = 1; k <= n; k++) t->sub_hi[path[k]] = i + 1;
            t->hi[path[n]] = i + 1;
            prev = s, prev_len = n;
        }
    }
    free(path), free(last_child);
    if (st == BS_OK) {
        int32_t n_big = 0;
        for (int32_t i = 0; i < t->n_nodes; i++) n_big += t->sub_hi[i] - t->lo[i] >= BIG_SUBTREE;
        t->below = malloc((size_t)t->n_nodes * sizeof *t->below);
        t->below_sets = malloc(((size_t)n_big + 1) * sizeof *t->below_sets);
        if (!t->below || !t->below_sets) st = bs_fail(err, BS_ENOMEM, "token trie: out of memory");
        else {
            uint64_t set[4];
            collect_below(t, 0, set);
        }
    }
    if (st != BS_OK) {
        token_trie_free(t);
        return st;
    }
    *out = t;
    return BS_OK;
}

/* ---- matcher ----------------------------------------------------------------- */

typedef struct snode {
    uint32_t pos;   /* grammar element index */
    int32_t parent; /* node below, -1 at the bottom */
} snode;

enum { ST_ACCEPT = 1, ST_DONE = 2 };
enum { T_UNKNOWN = -2, T_DEAD = -1 };

/* An interned state: a sorted set of stack tops.  Transitions are filled
 * in on first use, so the matcher becomes a lazily built DFA and a trie walk
 * that revisits a state (inside a JSON string: after every character) costs
 * a table lookup per byte. */
typedef struct dstate {
    size_t off;       /* tops are ids[off .. off+n) */
    int32_t n, flags;
    uint32_t hash;
    uint64_t can[4];  /* bytes some top accepts */
    uint64_t loop[4]; /* bytes leading back to this state, valid when loop_known */
    int loop_known;
} dstate;

#define KEEP_STATES 1024 /* interned states kept before a collection */

struct bs_grammar_matcher {
    const bs_grammar *g;
    const bs_token_trie *trie;
    snode *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *nht; /* node hash table: open addressing over node ids, -1 empty */
    uint32_t nht_mask;
    dstate *st;
    int32_t n_st, cap_st;
    int32_t *trans; /* 256 per state */
    size_t cap_trans;
    int32_t *sht;   /* state hash table */
    uint32_t sht_mask;
    int32_t *ids; /* tops of all states */
    size_t n_ids, cap_ids;
    int32_t *scr; /* tops of the state being built */
    size_t n_scr, cap_scr;
    int scr_flags;
    int32_t *hist; /* state after each accept; hist[n_hist-1] is current */
    int n_hist, cap_hist;
    uint64_t *allowed; /* scratch bitmap over token ids */
    int oom;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q, *cap = c;
    return 0;
}

static uint32_t node_hash(uint32_t pos, int32_t parent) {
    uint64_t h = ((uint64_t)pos << 32 | (uint32_t)parent) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32);
}

static int nht_rebuild(bs_grammar_matcher *m, uint32_t cap) {
    int32_t *ht = malloc(cap * sizeof *ht);
    if (!ht) return -1;
    memset(ht, -1, cap * sizeof *ht);
    for (int32_t id = 0; id < m->n_nodes; id++) {
        uint32_t i = node_hash(m->nodes[id].pos, m->nodes[id].parent) & (cap - 1);
        while (ht[i] >= 0) i = (i + 1) & (cap - 1);
        ht[i] = id;
    }
    free(m->nht);
    m->nht = ht;
    m->nht_mask = cap - 1;
    return 0;
}

/* The id of node (pos, parent), created if new; -1 when out of memory. */
static int32_t node_get(bs_grammar_matcher *m, uint32_t pos, int32_t parent) {
    uint32_t i = node_hash(pos, parent) & m->nht_mask;
    for (; m->nht[i] >= 0; i = (i + 1) & m->nht_mask) {
        const snode *n = &m->nodes[m->nht[i]];
        if (n->pos == pos && n->parent == parent) return m->nht[i];
    }
    size_t cap = (size_t)m->cap_nodes;
    if (grow((void **)&m->nodes, &cap, (size_t)m->n_nodes + 1, sizeof *m->nodes) < 0) return m->oom = 1, -1;
    m->cap_nodes = (int32_t)cap;
    int32_t id = m->n_nodes++;
    m->nodes[id] = (snode){pos, parent};
    if ((uint32_t)m->n_nodes * 2 > m->nht_mask) {
        if (nht_rebuild(m, (m->nht_mask + 1) * 2) < 0) return m->n_nodes--, m->oom = 1, -1;
        return id;
    }
    m->nht[i] = id;
    return id;
}

static void scr_push(bs_grammar_matcher *m, int32_t v) {
    if (grow((void **)&m->scr, &m->cap_scr, m->n_scr + 1, sizeof *m->scr) < 0) {
        m->oom = 1;
        return;
    }
    m->scr[m->n_scr++] = v;
}

/* Complete the stack (pos, parent) into stacks whose tops are byte sets,
 * adding them to the state being built.  Recursion is bounded by the grammar
 * (no left recursion). */
static void expand(bs_grammar_matcher *m, uint32_t pos, int32_t parent) {
    const bs_grammar *g = m->g;
    for (;;) {
        gelem e = g->elems[pos];
        if (e.type == G_END || e.type == G_ALT) {
            if (parent < 0) {
                m->scr_flags |= ST_ACCEPT;
                return;
            }
            pos = m->nodes[parent].pos;
            parent = m->nodes[parent].parent;
            continue;
        }
        if (e.type == G_BYTES) {
            int32_t id = node_get(m, pos, parent);
            if (id >= 0) scr_push(m, id);
            return;
        }
        int32_t ret = parent;
        if (!g_is_seq_end(g, pos + 1) && (ret = node_get(m, pos + 1, parent)) < 0) return;
        for (uint32_t a = g->alt_off[e.v]; a < g->alt_off[e.v + 1]; a++) expand(m, g->alts[a], ret);
        return;
    }
}

static uint32_t state_hash(const int32_t *v, int32_t n, int flags) {
    uint64_t h = (uint64_t)flags * 0x9E3779B97F4A7C15ull + (uint64_t)n;
    for (int32_t i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 0x100000001B3ull;
    return (uint32_t)(h ^ (h >> 32));
}

static int sht_rebuild(bs_grammar_matcher *m, uint32_t cap) {
    int32_t *ht = malloc(cap * sizeof *ht);
    if (!ht) return -1;
    memset(ht, -1, cap * sizeof *ht);
    for (int32_t s = 0; s < m->n_st; s++) {
        uint32_t i = m->st[s].hash & (cap - 1);
        while (ht[i] >= 0) i = (i + 1) & (cap - 1);
        ht[i] = s;
    }
    free(m->sht);
    m->sht = ht;
    m->sht_mask = cap - 1;
    return 0;
}

/* Sort and deduplicate the scratch tops and intern them: the state's index,
 * T_DEAD when nothing can follow, -3 when out of memory. */
static int32_t intern(bs_grammar_matcher *m) {
    int32_t *v = m->scr;
    int32_t n = (int32_t)m->n_scr, k = 0;
    for (int32_t i = 1; i < n; i++) { /* insertion sort: states are small */
        int32_t x = v[i], j = i;
        while (j > 0 && v[j - 1] > x) v[j] = v[j - 1], j--;
        v[j] = x;
    }
    for (int32_t i = 0; i < n; i++)
        if (k == 0 || v[k - 1] != v[i]) v[k++] = v[i];
    int flags = m->scr_flags;
    if (m->oom) return -3;
    if (k == 0 && !(flags & (ST_ACCEPT | ST_DONE))) return T_DEAD;
    uint32_t h = state_hash(v, k, flags);
    uint32_t i = h & m->sht_mask;
    for (; m->sht[i] >= 0; i = (i + 1) & m->sht_mask) {
        const dstate *d = &m->st[m->sht[i]];
        if (d->hash == h && d->n == k && d->flags == flags && memcmp(m->ids + d->off, v, (size_t)k * sizeof *v) == 0)
            return m->sht[i];
    }
    size_t cap_st = (size_t)m->cap_st;
    if (grow((void **)&m->ids, &m->cap_ids, m->n_ids + (size_t)k, sizeof *m->ids) < 0 ||
        grow((void **)&m->st, &cap_st, (size_t)m->n_st + 1, sizeof *m->st) < 0 ||
        grow((void **)&m->trans, &m->cap_trans, ((size_t)m->n_st + 1) * 256, sizeof *m->trans) < 0)
        return m->oom = 1, -3;
    m->cap_st = (int32_t)cap_st;
    int32_t s = m->n_st++;
    dstate *d = &m->st[s];
    memset(d, 0, sizeof *d);
    d->off = m->n_ids;
    d->n = k;
    d->flags = flags;
    d->hash = h;
    memcpy(m->ids + m->n_ids, v, (size_t)k * sizeof *v);
    m->n_ids += (size_t)k;
    for (int32_t j = 0; j < k; j++) {
        const uint64_t *set = m->g->sets[m->g->elems[m->nodes[v[j]].pos].v];
        for (int w = 0; w < 4; w++) d->can[w] |= set[w];
    }
    for (int j = 0; j < 256; j++) m->trans[(size_t)s * 256 + (size_t)j] = T_UNKNOWN;
    if ((uint32_t)m->n_st * 2 > m->sht_mask) {
        if (sht_rebuild(m, (m->sht_mask + 1) * 2) < 0) return m->oom = 1, -3;
    } else {
        m->sht[i] = s;
    }
    return s;
}

/* The state reached from s by byte c (T_DEAD: rejected; -3: out of memory). */
static int32_t step(bs_grammar_matcher *m, int32_t s, unsigned c) {
    int32_t *t = &m->trans[(size_t)s * 256 + c];
    if (*t != T_UNKNOWN) return *t;
    if (!(m->st[s].can[c >> 6] >> (c & 63) & 1)) return *t = T_DEAD;
    m->n_scr = 0;
    m->scr_flags = 0;
    for (int32_t i = 0; i < m->st[s].n; i++) {
        const snode nd = m->nodes[m->ids[m->st[s].off + (size_t)i]];
        const uint64_t *set = m->g->sets[m->g->elems[nd.pos].v];
        if (set[c >> 6] >> (c & 63) & 1) expand(m, nd.pos + 1, nd.parent);
    }
    int32_t r = intern(m);
    if (r == -3) {
        m->oom = 0;
        return -3; /* not cached: may succeed later */
    }
    m->trans[(size_t)s * 256 + c] = r;
    return r;
}

/* Forget the transition cache: keep the states in the history and the nodes
 * they reach, renumbered, so a long generation does not grow without bound. */
static void collect(bs_grammar_matcher *m) {
    int32_t *map = malloc(((size_t)m->n_nodes + 1) * sizeof *map);
    int32_t *smap = malloc(((size_t)m->n_st + 1) * sizeof *smap);
    int32_t *keep_ids = malloc((m->n_ids + 1) * sizeof *keep_ids);
    dstate *keep = malloc(((size_t)m->n_hist + 1) * sizeof *keep);
    if (!map || !smap || !keep_ids || !keep) {
        free(map), free(smap), free(keep_ids), free(keep);
        return; /* the cache just keeps growing */
    }
    for (int32_t i = 0; i < m->n_nodes; i++) map[i] = 0;
    for (int32_t s = 0; s < m->n_st; s++) smap[s] = -1;
    for (int h = 0; h < m->n_hist; h++) {
        const dstate *d = &m->st[m->hist[h]];
        for (int32_t i = 0; i < d->n; i++)
            for (int32_t id = m->ids[d->off + (size_t)i]; id >= 0 && !map[id]; id = m->nodes[id].parent) map[id] = 1;
    }
    int32_t n = 0; /* parents precede children, so renumbering in order keeps that */
    for (int32_t i = 0; i < m->n_nodes; i++) {
        if (!map[i]) {
            map[i] = -1;
            continue;
        }
        snode nd = m->nodes[i];
        m->nodes[n] = (snode){nd.pos, nd.parent >= 0 ? map[nd.parent] : -1};
        map[i] = n++;
    }
    m->n_nodes = n;
    int nk = 0;
    size_t n_keep_ids = 0;
    for (int h = 0; h < m->n_hist; h++) {
        int32_t s = m->hist[h];
        if (smap[s] < 0) {
            dstate d = m->st[s];
            for (int32_t i = 0; i < d.n; i++) keep_ids[n_keep_ids + (size_t)i] = map[m->ids[d.off + (size_t)i]];
            d.off = n_keep_ids;
            n_keep_ids += (size_t)d.n;
            d.hash = state_hash(keep_ids + d.off, d.n, d.flags);
            d.loop_known = 0;
            keep[nk] = d;
            smap[s] = nk++;
        }
        m->hist[h] = smap[s];
    }
    memcpy(m->st, keep, (size_t)nk * sizeof *keep);
    memcpy(m->ids, keep_ids, n_keep_ids * sizeof *keep_ids);
    m->n_st = nk;
    m->n_ids = n_keep_ids;
    for (size_t i = 0; i < (size_t)nk * 256; i++) m->trans[i] = T_UNKNOWN;
    free(map), free(smap), free(keep_ids), free(keep);
    if (nht_rebuild(m, m->nht_mask + 1) < 0 || sht_rebuild(m, m->sht_mask + 1) < 0) m->oom = 1;
}

static void maybe_collect(bs_grammar_matcher *m) {
    if (m->n_st > KEEP_STATES + 2 * m->n_hist) collect(m);
}

static int32_t current(const bs_grammar_matcher *m) { return m->hist[m->n_hist - 1]; }

static int hist_push(bs_grammar_matcher *m, int32_t s) {
    size_t cap = (size_t)m->cap_hist;
    if (grow((void **)&m->hist, &cap, (size_t)m->n_hist + 1, sizeof *m->hist) < 0) return -1;
    m->cap_hist = (int)cap;
    m->hist[m->n_hist++] = s;
    return 0;
}

bs_status grammar_matcher_open(const bs_grammar *g, const bs_token_trie *trie, bs_grammar_matcher **out,
                               bs_error *err) {
    *out = NULL;
    bs_grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) return bs_fail(err, BS_ENOMEM, "grammar matcher: out of memory");
    m->g = g;
    m->trie = trie;
    if (trie) m->allowed = malloc(((size_t)trie->n_vocab / 64 + 1) * sizeof *m->allowed);
    int ok = (!trie || m->allowed) && nht_rebuild(m, 1024) == 0 && sht_rebuild(m, 256) == 0;
    if (ok) {
        for (uint32_t a = g->alt_off[g->root]; a < g->alt_off[g->root + 1]; a++) expand(m, g->alts[a], -1);
        int32_t s = intern(m);
        ok = s >= 0 && hist_push(m, s) == 0;
    }
    if (!ok) {
        grammar_matcher_close(m);
        return bs_fail(err, BS_ENOMEM, "grammar matcher: out of memory");
    }
    *out = m;
    return BS_OK;
}

void grammar_matcher_close(bs_grammar_matcher *m) {
    if (!m) return;
    free(m->nodes), free(m->nht), free(m->st), free(m->trans), free(m->sht), free(m->ids), free(m->scr);
    free(m->hist), free(m->allowed);
    free(m);
}

int grammar_matcher_complete(const bs_grammar_matcher *m) { return (m->st[current(m)].flags & ST_ACCEPT) != 0; }

bs_status grammar_matcher_accept_bytes(bs_grammar_matcher *m, const char *bytes, size_t n, bs_error *err) {
    maybe_collect(m);
    int32_t s = current(m);
    if (m->st[s].flags & ST_DONE) return bs_fail(err, BS_EINVAL, "grammar: nothing may follow the end of generation");
    for (size_t i = 0; i < n; i++) {
        s = step(m, s, (unsigned char)bytes[i]);
        if (s == -3) return bs_fail(err, BS_ENOMEM, "grammar matcher: out of memory");
        if (s == T_DEAD)
            return bs_fail(err, BS_EINVAL, "grammar: byte %zu (0x%02x) is not allowed here", i,
                           (unsigned char)bytes[i]);
    }
    if (hist_push(m, s) < 0) return bs_fail(err, BS_ENOMEM, "grammar matcher: out of memory");
    return BS_OK;
}

bs_status grammar_matcher_accept(bs_grammar_matcher *m, int32_t token, bs_error *err) {
    const bs_token_trie *t = m->trie;
    if (!t) return bs_fail(err, BS_EINVAL, "grammar matcher: opened without a token trie");
    if (token < 0 || token >= t->n_vocab) return bs_fail(err, BS_EINVAL, "grammar: token %d out of range", token);
    if (t->kind[token] == TK_EOG) {
        int flags = m->st[current(m)].flags;
        if (flags & ST_DONE) return bs_fail(err, BS_EINVAL, "grammar: generation already ended");
        if (!(flags & ST_ACCEPT))
            return bs_fail(err, BS_EINVAL, "grammar: end of generation (token %d) before the output is complete",
                           token);
        m->n_scr = 0;
        m->scr_flags = ST_ACCEPT | ST_DONE;
        int32_t s = intern(m);
        if (s < 0 || hist_push(m, s) < 0) {
            m->oom = 0;
            return bs_fail(err, BS_ENOMEM, "grammar matcher: out of memory");
        }
        return BS_OK;
    }
    if (t->kind[token] != TK_TEXT) return bs_fail(err, BS_EINVAL, "grammar: token %d is special", token);
    bs_status st = grammar_matcher_accept_bytes(m, t->bytes + t->off[token], t->len[token], err);
    if (st != BS_OK) bs_wrap(err, "token %d", token);
    return st;
}

void grammar_matcher_rollback(bs_grammar_matcher *m, int n) {
    if (n > m->n_hist - 1) n = m->n_hist - 1;
    if (n > 0) m->n_hist -= n;
}

/* Bytes leading from s back to s (inside a JSON string: every plain ASCII
 * character), computed once per state. */
static const uint64_t *loop_bytes(bs_grammar_matcher *m, int32_t s) {
    if (!m->st[s].loop_known) {
        uint64_t loop[4] = {0};
        for (unsigned c = 0; c < 256; c++)
            if ((m->st[s].can[c >> 6] >> (c & 63) & 1) && step(m, s, c) == s) loop[c >> 6] |= 1ull << (c & 63);
        memcpy(m->st[s].loop, loop, sizeof loop);
        m->st[s].loop_known = 1;
    }
    return m->st[s].loop;
}

static void allow_range(bs_grammar_matcher *m, int32_t from, int32_t to) {
    for (int32_t k = from; k < to; k++) {
        int32_t id = m->trie->order[k];
        m->allowed[id >> 6] |= 1ull << (id & 63);
    }
}

/* Depth-first walk of the trie below `node` with the matcher in state s,
 * marking every token whose bytes the grammar accepts.  A child subtree whose
 * bytes all loop back to s is allowed whole. */
static void walk(bs_grammar_matcher *m, int32_t node, int32_t s) {
    const bs_token_trie *t = m->trie;
    uint64_t loop_copy[4]; /* m->st moves as states are added */
    const uint64_t *loop = NULL;
    if (t->sub_hi[node] - t->lo[node] >= 4 * BIG_SUBTREE) loop = memcpy(loop_copy, loop_bytes(m, s), sizeof loop_copy);
    for (int32_t c = t->first_child[node]; c >= 0; c = t->next_sib[c]) {
        unsigned b = t->byte[c];
        if (!(m->st[s].can[b >> 6] >> (b & 63) & 1)) continue;
        if (loop && (loop[b >> 6] >> (b & 63) & 1)) {
            int whole = t->first_child[c] < 0;
            if (!whole && t->below[c] >= 0) {
                const uint64_t *below = t->below_sets[t->below[c]];
                whole = !(below[0] & ~loop[0]) && !(below[1] & ~loop[1]) && !(below[2] & ~loop[2]) &&
                        !(below[3] & ~loop[3]);
            }
            if (whole) {
                allow_range(m, t->lo[c], t->sub_hi[c]);
                continue;
            }
        }
        int32_t ns = step(m, s, b);
        if (ns < 0) continue; /* out of memory: fewer tokens allowed */
        allow_range(m, t->lo[c], t->hi[c]);
        if (m->st[ns].n > 0 && t->first_child[c] >= 0) walk(m, c, ns);
    }
}

void grammar_matcher_mask(bs_grammar_matcher *m, float *logits, int n_vocab) {
    const bs_token_trie *t = m->trie;
    int32_t nv = t ? t->n_vocab : 0;
    if (t) {
        maybe_collect(m);
        memset(m->allowed, 0, ((size_t)nv / 64 + 1) * sizeof *m->allowed);
        int32_t s = current(m);
        if (!(m->st[s].flags & ST_DONE)) {
            walk(m, 0, s);
            if (m->st[s].flags & ST_ACCEPT)
                for (int32_t i = 0; i < t->n_eog; i++) m->allowed[t->eog[i] >> 6] |= 1ull << (t->eog[i] & 63);
        }
    }
    for (int i = 0; i < n_vocab; i++)
        if (i >= nv || !(m->allowed[i >> 6] >> (i & 63) & 1)) logits[i] = -INFINITY;
}
