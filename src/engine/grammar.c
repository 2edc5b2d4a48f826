/* engine/grammar.c — GBNF parsing into a byte-level grammar, validation
 * (undefined rules, left recursion, rules that can never finish), and the
 * grammar representation shared with the matcher (grammar_impl.h). */
#include "engine/grammar_impl.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPEAT 4096   /* {m,n} bound: keeps a hostile grammar's size linear in its text */
#define MAX_RULES (1 << 20)

/* ---- building ------------------------------------------------------------ */

typedef struct ebuf {
    gelem *p;
    size_t n, cap;
} ebuf;

typedef struct rdef {
    char *name; /* NULL for generated helper rules */
    ebuf body;  /* alternatives separated by G_ALT, no trailing G_END yet */
    int defined;
} rdef;

typedef struct builder {
    rdef *rules;
    int n_rules, cap_rules;
    uint64_t (*sets)[4];
    int n_sets, cap_sets;
    int byte_set[256]; /* set id of each single-byte set, -1 until made */
    const char *text;  /* GBNF source, for error positions */
    bs_error *err;
    bs_status st;
} builder;

static int fail(builder *b, bs_status st, const char *at, const char *fmt, ...) {
    if (b->st != BS_OK) return -1;
    char msg[BS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at && b->text) {
        int line = 1, col = 1;
        for (const char *p = b->text; p < at && *p; p++) {
            if (*p == '\n') line++, col = 1;
            else col++;
        }
        bs_fail(b->err, st, "grammar: line %d col %d: %s", line, col, msg);
    } else {
        bs_fail(b->err, st, "grammar: %s", msg);
    }
    b->st = st;
    return -1;
}

static int oom(builder *b) { return fail(b, BS_ENOMEM, NULL, "out of memory"); }

static int ebuf_push(builder *b, ebuf *e, uint8_t type, uint32_t v) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        gelem *p = realloc(e->p, cap * sizeof *p);
        if (!p) return oom(b);
        e->p = p, e->cap = cap;
    }
    e->p[e->n++] = (gelem){type, v};
    return 0;
}

static int ebuf_append(builder *b, ebuf *e, const gelem *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ebuf_push(b, e, src[i].type, src[i].v) < 0) return -1;
    return 0;
}

static int new_rule(builder *b, const char *name, size_t len) {
    if (b->n_rules >= MAX_RULES) return fail(b, BS_ERANGE, NULL, "more than %d rules", MAX_RULES);
    if (b->n_rules == b->cap_rules) {
        int cap = b->cap_rules ? b->cap_rules * 2 : 32;
        rdef *r = realloc(b->rules, (size_t)cap * sizeof *r);
        if (!r) return oom(b);
        b->rules = r, b->cap_rules = cap;
    }
    rdef *r = &b->rules[b->n_rules];
    memset(r, 0, sizeof *r);
    if (name) {
        r->name = strndup(name, len);
        if (!r->name) return oom(b);
    }
    return b->n_rules++;
}

static int rule_id(builder *b, const char *name, size_t len) {
    for (int i = 0; i < b->n_rules; i++)
        if (b->rules[i].name && strlen(b->rules[i].name) == len && memcmp(b->rules[i].name, name, len) == 0)
            return i;
    return new_rule(b, name, len);
}

static int add_set(builder *b, const uint64_t set[4]) {
    for (int i = 0; i < b->n_sets; i++)
        if (memcmp(b->sets[i], set, sizeof b->sets[i]) == 0) return i;
    if (b->n_sets == b->cap_sets) {
        int cap = b->cap_sets ? b->cap_sets * 2 : 64;
        uint64_t(*s)[4] = realloc(b->sets, (size_t)cap * sizeof *s);
        if (!s) return oom(b);
        b->sets = s, b->cap_sets = cap;
    }
    memcpy(b->sets[b->n_sets], set, sizeof b->sets[0]);
    return b->n_sets++;
}

static int push_byte(builder *b, ebuf *e, unsigned char c) {
    if (b->byte_set[c] < 0) {
        uint64_t set[4] = {0};
        set[c >> 6] |= 1ull << (c & 63);
        int id = add_set(b, set);
        if (id < 0) return -1;
        b->byte_set[c] = id;
    }
    return ebuf_push(b, e, G_BYTES, (uint32_t)b->byte_set[c]);
}

static size_t utf8_encode(uint32_t cp, unsigned char *out) {
    if (cp < 0x80) return out[0] = (unsigned char)cp, 1;
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 63));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        out[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
    out[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* ---- character classes: code point ranges -> UTF-8 byte sequences ---------- */

typedef struct cprange {
    uint32_t lo, hi;
} cprange;

typedef struct useq { /* one UTF-8 byte-range sequence */
    int n;
    unsigned char lo[4], hi[4];
} useq;

typedef struct useqs {
    useq *p;
    int n, cap;
} useqs;

static int useqs_push(builder *b, useqs *s, const useq *q) {
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        useq *p = realloc(s->p, (size_t)cap * sizeof *p);
        if (!p) return oom(b);
        s->p = p, s->cap = cap;
    }
    s->p[s->n++] = *q;
    return 0;
}

/* Split [lo, hi] (no surrogates) until each piece's UTF-8 encodings form a
 * rectangle of byte ranges (the classic utf8-ranges construction). */
static int utf8_split(builder *b, uint32_t lo, uint32_t hi, useqs *out) {
    static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= bounds[i] && hi > bounds[i])
            return utf8_split(b, lo, bounds[i], out) < 0 ? -1 : utf8_split(b, bounds[i] + 1, hi, out);
    unsigned char el[4], eh[4];
    size_t n = utf8_encode(lo, el);
    utf8_encode(hi, eh);
    for (size_t i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0)
                return utf8_split(b, lo, lo | m, out) < 0 ? -1 : utf8_split(b, (lo | m) + 1, hi, out);
            if ((hi & m) != m)
                return utf8_split(b, lo, (hi & ~m) - 1, out) < 0 ? -1 : utf8_split(b, hi & ~m, hi, out);
        }
    }
    useq q = {.n = (int)n};
    memcpy(q.lo, el, n);
    memcpy(q.hi, eh, n);
    return useqs_push(b, out, &q);
}

static int cmp_range(const void *a, const void *b) {
    const cprange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Emit a class over code points into e: one G_BYTES when every member is
 * ASCII, else a reference to a helper rule with one alternative per UTF-8
 * shape. */
static int emit_class(builder *b, ebuf *e, cprange *r, int n, int negate) {
    qsort(r, (size_t)n, sizeof *r, cmp_range);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k && r[i].lo <= r[k - 1].hi + 1) {
            if (r[i].hi > r[k - 1].hi) r[k - 1].hi = r[i].hi;
        } else {
            r[k++] = r[i];
        }
    }
    cprange *pos = malloc(((size_t)k + 3) * sizeof *pos);
    if (!pos) return oom(b);
    int np = 0;
    if (negate) {
        uint32_t next = 0;
        for (int i = 0; i < k; i++) {
            if (r[i].lo > next) pos[np++] = (cprange){next, r[i].lo - 1};
            next = r[i].hi + 1;
        }
        if (next <= 0x10FFFF) pos[np++] = (cprange){next, 0x10FFFF};
    } else {
        memcpy(pos, r, (size_t)k * sizeof *r);
        np = k;
    }
    useqs qs = {0};
    for (int i = 0; i < np && b->st == BS_OK; i++) {
        uint32_t lo = pos[i].lo, hi = pos[i].hi > 0x10FFFF ? 0x10FFFF : pos[i].hi;
        if (lo > hi) continue;
        if (lo < 0xD800 && hi > 0xDFFF) { /* surrogates are not characters */
            utf8_split(b, lo, 0xD7FF, &qs);
            utf8_split(b, 0xE000, hi, &qs);
        } else if (lo >= 0xD800 && hi <= 0xDFFF) {
            continue;
        } else {
            if (lo >= 0xD800 && lo <= 0xDFFF) lo = 0xE000;
            if (hi >= 0xD800 && hi <= 0xDFFF) hi = 0xD7FF;
            if (lo <= hi) utf8_split(b, lo, hi, &qs);
        }
    }
    free(pos);
    if (b->st != BS_OK) return free(qs.p), -1;
    if (qs.n == 0) {
        free(qs.p);
        return fail(b, BS_EINVAL, NULL, "character class matches nothing");
    }
    uint64_t ascii[4] = {0};
    int n_multi = 0;
    for (int i = 0; i < qs.n; i++) {
        if (qs.p[i].n == 1) {
            for (unsigned c = qs.p[i].lo[0]; c <= qs.p[i].hi[0]; c++) ascii[c >> 6] |= 1ull << (c & 63);
        } else {
            n_multi++;
        }
    }
    int rc = 0;
    if (n_multi == 0) {
        int id = add_set(b, ascii);
        rc = id < 0 ? -1 : ebuf_push(b, e, G_BYTES, (uint32_t)id);
    } else {
        int rid = new_rule(b, NULL, 0);
        rc = rid < 0 ? -1 : 0;
        int first = 1;
        if (rc == 0 && (ascii[0] | ascii[1])) {
            int id = add_set(b, ascii);
            rc = id < 0 ? -1 : ebuf_push(b, &b->rules[rid].body, G_BYTES, (uint32_t)id);
            first = 0;
        }
        for (int i = 0; i < qs.n && rc == 0; i++) {
            if (qs.p[i].n == 1) continue;
            ebuf *body = &b->rules[rid].body;
            if (!first) rc = ebuf_push(b, body, G_ALT, 0);
            first = 0;
            for (int j = 0; j < qs.p[i].n && rc == 0; j++) {
                uint64_t set[4] = {0};
                for (unsigned c = qs.p[i].lo[j]; c <= qs.p[i].hi[j]; c++) set[c >> 6] |= 1ull << (c & 63);
                int id = add_set(b, set);
                rc = id < 0 ? -1 : ebuf_push(b, body, G_BYTES, (uint32_t)id);
            }
        }
        if (rc == 0) {
            b->rules[rid].defined = 1;
            rc = ebuf_push(b, e, G_REF, (uint32_t)rid);
        }
    }
    free(qs.p);
    return rc;
}

/* ---- GBNF text ------------------------------------------------------------ */

static int is_word(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static const char *skip_space(const char *p, int newline_ok) {
    for (;;) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || (newline_ok && *p == '\n')) {
            p++;
        } else if (*p == '#') {
            while (*p && *p != '\n') p++;
        } else {
            return p;
        }
    }
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One character of a literal or class: an escape or a UTF-8 sequence. */
static const char *parse_char(builder *b, const char *p, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)p;
    if (*s == '\\') {
        int nhex = 0;
        switch (s[1]) {
        case 'x': nhex = 2; break;
        case 'u': nhex = 4; break;
        case 'U': nhex = 8; break;
        case 'n': *cp = '\n'; return p + 2;
        case 'r': *cp = '\r'; return p + 2;
        case 't': *cp = '\t'; return p + 2;
        case '\\': case '"': case '[': case ']': case '-': case '^': case '/':
            *cp = s[1];
            return p + 2;
        default:
            fail(b, BS_EINVAL, p, "unknown escape '\\%c'", s[1] ? s[1] : '0');
            return NULL;
        }
        uint32_t v = 0;
        for (int i = 0; i < nhex; i++) {
            int h = hexval((char)s[2 + i]);
            if (h < 0) {
                fail(b, BS_EINVAL, p, "bad hex escape");
                return NULL;
            }
            v = v * 16 + (uint32_t)h;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
            fail(b, BS_EINVAL, p, "escape is not a Unicode scalar value");
            return NULL;
        }
        *cp = v;
        return p + 2 + nhex;
    }
    int len = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || s[0] == 0) {
        fail(b, BS_EINVAL, p, s[0] ? "invalid UTF-8" : "unexpected end of text");
        return NULL;
    }
    uint32_t v = len == 1 ? s[0] : (uint32_t)(s[0] & (0x7F >> len));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            fail(b, BS_EINVAL, p, "invalid UTF-8");
            return NULL;
        }
        v = (v << 6) | (s[i] & 63u);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_cp[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        fail(b, BS_EINVAL, p, "invalid UTF-8");
        return NULL;
    }
    *cp = v;
    return p + len;
}

static const char *parse_alternates(builder *b, const char *p, int rule, int nested);

/* Wrap e[start..) as a helper rule when it is more than one element, so a
 * repetition applies to the whole last item. */
static int item_as_elem(builder *b, ebuf *e, size_t start, gelem *out) {
    if (e->n - start == 1) {
        *out = e->p[start];
        return 0;
    }
    int rid = new_rule(b, NULL, 0);
    if (rid < 0) return -1;
    if (ebuf_append(b, &b->rules[rid].body, e->p + start, e->n - start) < 0) return -1;
    b->rules[rid].defined = 1;
    *out = (gelem){G_REF, (uint32_t)rid};
    return 0;
}

/* Replace the last item e[start..) with `min` copies followed by up to
 * max - min optional ones (max < 0: unbounded), via right-recursive helper
 * rules as llama.cpp does. */
static int apply_repeat(builder *b, ebuf *e, size_t start, long min, long max) {
    gelem x;
    if (item_as_elem(b, e, start, &x) < 0) return -1;
    e->n = start;
    for (long i = 0; i < min; i++)
        if (ebuf_push(b, e, x.type, x.v) < 0) return -1;
    if (max < 0) { /* star ::= x star | (empty) */
        int rid = new_rule(b, NULL, 0);
        if (rid < 0) return -1;
        ebuf *body = &b->rules[rid].body;
        if (ebuf_push(b, body, x.type, x.v) < 0 || ebuf_push(b, body, G_REF, (uint32_t)rid) < 0 ||
            ebuf_push(b, body, G_ALT, 0) < 0)
            return -1;
        b->rules[rid].defined = 1;
        return ebuf_push(b, e, G_REF, (uint32_t)rid);
    }
    int inner = -1; /* opt_k ::= x opt_{k-1} | (empty) */
    for (long k = 0; k < max - min; k++) {
        int rid = new_rule(b, NULL, 0);
        if (rid < 0) return -1;
        ebuf *body = &b->rules[rid].body;
        if (ebuf_push(b, body, x.type, x.v) < 0) return -1;
        if (inner >= 0 && ebuf_push(b, body, G_REF, (uint32_t)inner) < 0) return -1;
        if (ebuf_push(b, body, G_ALT, 0) < 0) return -1;
        b->rules[rid].defined = 1;
        inner = rid;
    }
    return inner >= 0 ? ebuf_push(b, e, G_REF, (uint32_t)inner) : 0;
}

static const char *parse_int(builder *b, const char *p, long *v) {
    if (*p < '0' || *p > '9') {
        fail(b, BS_EINVAL, p, "expected a number");
        return NULL;
    }
    long x = 0;
    while (*p >= '0' && *p <= '9') {
        x = x * 10 + (*p++ - '0');
        if (x > MAX_REPEAT) {
            fail(b, BS_ERANGE, p, "repetition bound above %d", MAX_REPEAT);
            return NULL;
        }
    }
    *v = x;
    return p;
}

static const char *parse_sequence(builder *b, const char *p, ebuf *e, int nested) {
    size_t last = (size_t)-1; /* start of the last item, for postfix operators */
    for (;;) {
        const char *at = p;
        if (*p == '"') {
            last = e->n;
            p++;
            while (*p != '"') {
                uint32_t cp;
                if (!*p) return fail(b, BS_EINVAL, at, "unterminated literal"), NULL;
                if (!(p = parse_char(b, p, &cp))) return NULL;
                unsigned char u[4];
                size_t n = utf8_encode(cp, u);
                for (size_t i = 0; i < n; i++)
                    if (push_byte(b, e, u[i]) < 0) return NULL;
            }
            p = skip_space(p + 1, nested);
        } else if (*p == '[') {
            last = e->n;
            p++;
            int negate = 0;
            if (*p == '^') negate = 1, p++;
            cprange *r = NULL;
            int n = 0, cap = 0;
            while (*p != ']') {
                uint32_t lo, hi;
                if (!*p) return free(r), fail(b, BS_EINVAL, at, "unterminated character class"), NULL;
                if (!(p = parse_char(b, p, &lo))) return free(r), NULL;
                hi = lo;
                if (p[0] == '-' && p[1] != ']' && p[1]) {
                    if (!(p = parse_char(b, p + 1, &hi))) return free(r), NULL;
                    if (hi < lo) return free(r), fail(b, BS_EINVAL, at, "character range out of order"), NULL;
                }
                if (n == cap) {
                    cap = cap ? cap * 2 : 8;
                    cprange *nr = realloc(r, (size_t)cap * sizeof *nr);
                    if (!nr) return free(r), oom(b), NULL;
                    r = nr;
                }
                r[n++] = (cprange){lo, hi};
            }
            int rc = emit_class(b, e, r, n, negate);
            free(r);
            if (rc < 0) return NULL;
            p = skip_space(p + 1, nested);
        } else if (*p == '.') {
            last = e->n;
            cprange all = {0, 0x10FFFF};
            if (emit_class(b, e, &all, 1, 0) < 0) return NULL;
            p = skip_space(p + 1, nested);
        } else if (is_word(*p)) {
            last = e->n;
            const char *s = p;
            while (is_word(*p)) p++;
            int id = rule_id(b, s, (size_t)(p - s));
            if (id < 0 || ebuf_push(b, e, G_REF, (uint32_t)id) < 0) return NULL;
            p = skip_space(p, nested);
        } else if (*p == '(') {
            last = e->n;
            int rid = new_rule(b, NULL, 0);
            if (rid < 0) return NULL;
            p = parse_alternates(b, skip_space(p + 1, 1), rid, 1);
            if (!p) return NULL;
            if (*p != ')') return fail(b, BS_EINVAL, p, "expected ')'"), NULL;
            b->rules[rid].defined = 1;
            if (ebuf_push(b, e, G_REF, (uint32_t)rid) < 0) return NULL;
            p = skip_space(p + 1, nested);
        } else if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
            if (last == (size_t)-1) return fail(b, BS_EINVAL, p, "'%c' follows nothing", *p), NULL;
            long min = 0, max = -1;
            if (*p == '+') min = 1;
            if (*p == '?') max = 1;
            if (*p == '{') {
                p = skip_space(p + 1, nested);
                if (!(p = parse_int(b, p, &min))) return NULL;
                p = skip_space(p, nested);
                if (*p == ',') {
                    p = skip_space(p + 1, nested);
                    if (*p != '}') {
                        if (!(p = parse_int(b, p, &max))) return NULL;
                        if (max < min) return fail(b, BS_EINVAL, at, "repetition {%ld,%ld} out of order", min, max), NULL;
                    }
                } else {
                    max = min;
                }
                p = skip_space(p, nested);
                if (*p != '}') return fail(b, BS_EINVAL, p, "expected '}'"), NULL;
            }
            if (apply_repeat(b, e, last, min, max) < 0) return NULL;
            last = (size_t)-1;
            p = skip_space(p + 1, nested);
        } else {
            return p;
        }
    }
}

static const char *parse_alternates(builder *b, const char *p, int rule, int nested) {
    ebuf seq = {0};
    for (;;) {
        seq.n = 0;
        p = parse_sequence(b, p, &seq, nested);
        /* the rule's body may have moved while helper rules were added */
        ebuf *body = &b->rules[rule].body;
        if (!p || ebuf_append(b, body, seq.p, seq.n) < 0) return free(seq.p), NULL;
        if (*p != '|') break;
        if (ebuf_push(b, &b->rules[rule].body, G_ALT, 0) < 0) return free(seq.p), NULL;
        p = skip_space(p + 1, 1);
    }
    free(seq.p);
    return p;
}

/* ---- validation and flattening -------------------------------------------- */

static const char *rule_label(const bs_grammar *g, int r) { return g->names[r] ? g->names[r] : "(group)"; }

/* Depth-first search for a cycle of leftmost references (left recursion). */
static int left_rec(bs_grammar *g, const uint8_t *nullable, uint8_t *color, int r, int depth, bs_error *err) {
    if (depth > 100000) return bs_fail(err, BS_ERANGE, "grammar: rules nest too deeply"), -1;
    color[r] = 1;
    for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++) {
        for (uint32_t p = g->alts[a];; p++) {
            gelem e = g->elems[p];
            if (e.type != G_REF) break;
            if (color[e.v] == 1) {
                bs_fail(err, BS_EINVAL, "grammar: rule '%s' is left-recursive", rule_label(g, (int)e.v));
                return -1;
            }
            if (color[e.v] == 0 && left_rec(g, nullable, color, (int)e.v, depth + 1, err) < 0) return -1;
            if (!nullable[e.v]) break;
        }
    }
    color[r] = 2;
    return 0;
}

/* Fixpoint over "every element of some alternative has property P" where
 * bytes have it iff bytes_ok: nullable (bytes_ok 0) or productive (1). */
static void fixpoint(const bs_grammar *g, uint8_t *prop, int bytes_ok) {
    for (int changed = 1; changed;) {
        changed = 0;
        for (int r = 0; r < g->n_rules; r++) {
            if (prop[r]) continue;
            for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1] && !prop[r]; a++) {
                int ok = 1;
                for (uint32_t p = g->alts[a]; ok && !g_is_seq_end(g, p); p++)
                    ok = g->elems[p].type == G_BYTES ? bytes_ok : prop[g->elems[p].v];
                if (ok) prop[r] = 1, changed = 1;
            }
        }
    }
}

void grammar_free(bs_grammar *g) {
    if (!g) return;
    if (g->names)
        for (int i = 0; i < g->n_rules; i++) free(g->names[i]);
    free(g->names);
    free(g->elems);
    free(g->sets);
    free(g->alt_off);
    free(g->alts);
    free(g);
}

static void builder_free(builder *b) {
    for (int i = 0; i < b->n_rules; i++) {
        free(b->rules[i].name);
        free(b->rules[i].body.p);
    }
    free(b->rules);
    free(b->sets);
}

/* Concatenate rule bodies into one element array and index the alternatives. */
static bs_status flatten(builder *b, int root, bs_grammar **out, bs_error *err) {
    bs_grammar *g = calloc(1, sizeof *g);
    if (!g) return bs_fail(err, BS_ENOMEM, "grammar: out of memory");
    size_t n_elems = 0, n_alts = 0;
    for (int r = 0; r < b->n_rules; r++) {
        n_elems += b->rules[r].body.n + 1;
        n_alts++;
        for (size_t i = 0; i < b->rules[r].body.n; i++) n_alts += b->rules[r].body.p[i].type == G_ALT;
    }
    g->n_rules = b->n_rules;
    g->root = root;
    g->elems = malloc(n_elems * sizeof *g->elems);
    g->alt_off = malloc(((size_t)b->n_rules + 1) * sizeof *g->alt_off);
    g->alts = malloc(n_alts * sizeof *g->alts);
    g->names = calloc((size_t)b->n_rules, sizeof *g->names);
    g->sets = malloc(((size_t)b->n_sets + 1) * sizeof *g->sets);
    if (!g->elems || !g->alt_off || !g->alts || !g->names || !g->sets) {
        grammar_free(g);
        return bs_fail(err, BS_ENOMEM, "grammar: out of memory");
    }
    memcpy(g->sets, b->sets, (size_t)b->n_sets * sizeof *g->sets);
    g->n_sets = b->n_sets;
    size_t pe = 0, pa = 0;
    for (int r = 0; r < b->n_rules; r++) {
        g->names[r] = b->rules[r].name;
        b->rules[r].name = NULL;
        g->alt_off[r] = (uint32_t)pa;
        g->alts[pa++] = (uint32_t)pe;
        for (size_t i = 0; i < b->rules[r].body.n; i++) {
            g->elems[pe++] = b->rules[r].body.p[i];
            if (b->rules[r].body.p[i].type == G_ALT) g->alts[pa++] = (uint32_t)pe;
        }
        g->elems[pe++] = (gelem){G_END, 0};
    }
    g->alt_off[b->n_rules] = (uint32_t)pa;
    g->n_elems = pe;

    uint8_t *nullable = calloc((size_t)g->n_rules, 1), *prod = calloc((size_t)g->n_rules, 1),
            *color = calloc((size_t)g->n_rules, 1);
    bs_status st = BS_OK;
    if (!nullable || !prod || !color) {
        st = bs_fail(err, BS_ENOMEM, "grammar: out of memory");
    } else {
        fixpoint(g, nullable, 0);
        fixpoint(g, prod, 1);
        for (int r = 0; r < g->n_rules && st == BS_OK; r++)
            if (!prod[r])
                st = bs_fail(err, BS_EINVAL, "grammar: rule '%s' can never finish (every alternative recurses)",
                             rule_label(g, r));
        for (int r = 0; r < g->n_rules && st == BS_OK; r++)
            if (!color[r] && left_rec(g, nullable, color, r, 0, err) < 0) st = err ? err->status : BS_EINVAL;
    }
    free(nullable), free(prod), free(color);
    if (st != BS_OK) {
        grammar_free(g);
        return st;
    }
    *out = g;
    return BS_OK;
}

bs_status grammar_parse_gbnf(const char *text, bs_grammar **out, bs_error *err) {
    *out = NULL;
    builder b = {.text = text, .err = err};
    memset(b.byte_set, -1, sizeof b.byte_set);
    const char *p = skip_space(text, 1);
    while (*p && b.st == BS_OK) {
        const char *s = p;
        while (is_word(*p)) p++;
        if (p == s) {
            fail(&b, BS_EINVAL, p, "expected a rule name");
            break;
        }
        int id = rule_id(&b, s, (size_t)(p - s));
        if (id < 0) break;
        if (b.rules[id].defined) {
            fail(&b, BS_EINVAL, s, "rule '%s' defined twice", b.rules[id].name);
            break;
        }
        b.rules[id].defined = 1;
        p = skip_space(p, 0);
        if (strncmp(p, "::=", 3) != 0) {
            fail(&b, BS_EINVAL, p, "expected '::='");
            break;
        }
        p = parse_alternates(&b, skip_space(p + 3, 1), id, 0);
        if (!p) break;
        if (*p && *p != '\n') {
            fail(&b, BS_EINVAL, p, "unexpected '%c'", *p);
            break;
        }
        p = skip_space(p, 1);
    }
    int root = -1;
    for (int i = 0; i < b.n_rules && b.st == BS_OK; i++) {
        if (!b.rules[i].defined) fail(&b, BS_EINVAL, NULL, "rule '%s' is used but not defined", b.rules[i].name);
        if (b.rules[i].name && strcmp(b.rules[i].name, "root") == 0) root = i;
    }
    if (b.st == BS_OK && root < 0) fail(&b, BS_EINVAL, NULL, "no 'root' rule");
    bs_status st = b.st == BS_OK ? flatten(&b, root, out, err) : b.st;
    builder_free(&b);
    return st;
}
