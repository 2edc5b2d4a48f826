/* engine/grammar_impl.h — the compiled grammar layout shared by the GBNF
 * compiler (grammar.c) and the matcher / token mask (token_mask.c).
 *
 * Rules are stored back to back in one element array: each rule is its
 * alternatives separated by G_ALT and closed by G_END.  Terminals are byte
 * sets (G_BYTES, 256-bit maps), so the matcher works on bytes and needs no
 * UTF-8 state of its own; character classes were expanded to UTF-8 byte
 * sequences at compile time.  A validated grammar has no undefined rules, no
 * left recursion and no rule that can never finish. */
#ifndef BASALT_ENGINE_GRAMMAR_IMPL_H
#define BASALT_ENGINE_GRAMMAR_IMPL_H

#include <stdint.h>

#include "engine/grammar.h"

enum { G_END, G_ALT, G_REF, G_BYTES };

typedef struct gelem {
    uint8_t type;
    uint32_t v; /* rule id (G_REF) or set id (G_BYTES) */
} gelem;

struct bs_grammar {
    gelem *elems;
    size_t n_elems;
    uint64_t (*sets)[4];
    int n_sets;
    int n_rules, root;
    uint32_t *alt_off; /* rule r's alternatives are alts[alt_off[r] .. alt_off[r+1]) */
    uint32_t *alts;    /* element index where each alternative starts */
    char **names;      /* NULL for helper rules (groups, repetitions, classes) */
};

static inline int g_is_seq_end(const bs_grammar *g, uint32_t pos) {
    return g->elems[pos].type == G_END || g->elems[pos].type == G_ALT;
}

#endif
