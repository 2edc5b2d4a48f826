/* engine/json_schema.c — JSON Schema -> GBNF text (see json_schema.h for the
 * subset), plus grammar_from_json_schema / grammar_json_object, which hand
 * the text to grammar_parse_gbnf.
 *
 * Every schema becomes a rule `sN`; a $ref compiles its target once and
 * refers to its rule, so recursive schemas become recursive rules and $ref
 * cycles terminate.  Shared primitives (ws, value, string, ...) follow. */
#include "engine/json_schema.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/grammar.h"

#define MAX_DEPTH 128          /* nesting of schemas inside one another */
#define MAX_COUNT 4096         /* minLength/maxLength/minItems/maxItems */
#define MAX_BOUND 1000000000000000LL /* |numeric bound| enforced exactly */

#define PRIMITIVES \
    "ws ::= \"\" | \" \" | \"\\n\" [ \\t]{0,20}\n" \
    "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n" \
    "object ::= \"{\" ws ( member ( \",\" ws member )* )? \"}\"\n" \
    "member ::= string ws \":\" ws value ws\n" \
    "array ::= \"[\" ws ( value ws ( \",\" ws value ws )* )? \"]\"\n" \
    "string ::= \"\\\"\" char* \"\\\"\"\n" \
    "char ::= plainchar | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" hex4 )\n" \
    "plainchar ::= [^\"\\\\\\x00-\\x1F]\n" \
    "hex4 ::= [0-9a-cA-C] hex hex hex | [dD] [0-7] hex hex | [eEfF] hex hex hex\n" \
    "hex ::= [0-9a-fA-F]\n" \
    "number ::= \"-\"? int ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?\n" \
    "int ::= \"0\" | [1-9] [0-9]{0,15}\n" \
    "integer ::= \"-\"? int\n" \
    "boolean ::= \"true\" | \"false\"\n" \
    "null ::= \"null\"\n" \
    "frac ::= ( \".\" [0-9]{1,16} )?\n" \
    "zerofrac ::= ( \".\" \"0\"{1,16} )?\n" \
    "nzfrac ::= \".\" [0-9]{0,15} [1-9]\n" \
    "d2 ::= [0-9] [0-9]\n" \
    "date ::= ( d2 d2 \"-\" ( ( \"01\" | \"03\" | \"05\" | \"07\" | \"08\" | \"10\" | \"12\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )" \
    " | ( \"04\" | \"06\" | \"09\" | \"11\" ) \"-\" ( \"0\" [1-9] | [12] [0-9] | \"30\" )" \
    " | \"02-\" ( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] ) ) )" \
    " | ( d2 ( \"0\" [48] | [2468] [048] | [13579] [26] ) | ( \"0\" [048] | [2468] [048] | [13579] [26] ) \"00\" ) \"-02-29\"\n" \
    "time ::= ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,9} )?" \
    " ( \"Z\" | [+-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )\n" \
    "datetime ::= date \"T\" time\n" \
    "uuid ::= hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}\n" \
    "email ::= [a-zA-Z0-9_%+-] ( [a-zA-Z0-9._%+-]{0,62} [a-zA-Z0-9_%+-] )? \"@\" label ( \".\" label ){1,8}\n" \
    "label ::= [a-zA-Z0-9] ( [a-zA-Z0-9-]{0,61} [a-zA-Z0-9] )?\n"


static const char OBJECT_GBNF[] = "root ::= object\n" PRIMITIVES;

/* ---- text buffer ------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof tmp) sb_add(b, tmp, (size_t)n);
    else b->oom = 1; /* callers format short fragments only */
}

/* A GBNF literal matching exactly the bytes s[0..n) (valid UTF-8). */
static void sb_lit(sbuf *b, const char *s, size_t n) {
    sb_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[3] = {'\\', (char)c, 0};
            sb_puts(b, esc);
        } else if (c < 0x20 || c == 0x7F) {
            sb_printf(b, "\\x%02X", c);
        } else {
            sb_add(b, (const char *)&c, 1);
        }
    }
    sb_puts(b, "\"");
}

/* ---- compiler state ---------------------------------------------------------- */

typedef struct refent {
    char *ref;
    int rule;
} refent;

typedef struct sc {
    sbuf out;
    const json_t *root;
    const char *root_path;
    refent *refs;
    int n_refs, cap_refs;
    int n_rules;
    int depth;
    bs_error *err;
    bs_status st;
} sc;

static int sfail(sc *c, bs_status st, const char *path, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int sfail(sc *c, bs_status st, const char *path, const char *fmt, ...) {
    if (c->st != BS_OK) return -1;
    char msg[BS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bs_fail(c->err, st, "%s: %s", path, msg);
    c->st = st;
    return -1;
}

static int compile(sc *c, const json_t *s, const char *path);

/* ---- literals (enum/const) ----------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4; }

/* Alternation of sorted, distinct strings factored on common prefixes, so
 * the matcher follows one path instead of one stack per string. */
static void emit_factored(sbuf *e, char **lits, int n, size_t d) {
    if (n == 1) {
        sb_lit(e, lits[0] + d, strlen(lits[0] + d));
        return;
    }
    size_t p = d;
    while (lits[0][p] && lits[0][p] == lits[n - 1][p]) p++;
    while (p > d && ((unsigned char)lits[0][p] & 0xC0) == 0x80) p--; /* split between characters */
    if (p > d) {
        sb_lit(e, lits[0] + d, p - d);
        sb_puts(e, " ");
    }
    sb_puts(e, "( ");
    for (int i = 0; i < n;) {
        if (i) sb_puts(e, " | ");
        size_t cl = lits[i][p] ? utf8_len((unsigned char)lits[i][p]) : 0;
        int j = i + 1;
        while (j < n && cl && strncmp(lits[j] + p, lits[i] + p, cl) == 0) j++;
        emit_factored(e, lits + i, j - i, p);
        i = j;
    }
    sb_puts(e, " )");
}

static void emit_literals(sbuf *e, char **lits, int n) {
    qsort(lits, (size_t)n, sizeof *lits, cmp_str);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k && strcmp(lits[k - 1], lits[i]) == 0) free(lits[i]);
        else lits[k++] = lits[i];
    }
    emit_factored(e, lits, k, 0);
    for (int i = 0; i < k; i++) free(lits[i]);
}

/* ---- types and keywords ----------------------------------------------------------- */

enum { T_OBJECT = 1, T_ARRAY = 2, T_STRING = 4, T_NUMBER = 8, T_INTEGER = 16, T_BOOLEAN = 32, T_NULL = 64 };
static const char *const type_names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};

static int is_annotation(const char *k) {
    static const char *const a[] = {"title", "description", "default", "examples", "$comment", "$schema", "$id",
                                     "deprecated", "readOnly", "writeOnly", "$defs", "definitions", NULL};
    for (int i = 0; a[i]; i++)
        if (strcmp(k, a[i]) == 0) return 1;
    return 0;
}

/* Which types a keyword constrains (0: not a type keyword). */
static int keyword_types(const char *k) {
    static const struct {
        const char *k;
        int t;
    } kw[] = {{"properties", T_OBJECT},     {"required", T_OBJECT},          {"additionalProperties", T_OBJECT},
              {"items", T_ARRAY},           {"prefixItems", T_ARRAY},        {"minItems", T_ARRAY},
              {"maxItems", T_ARRAY},        {"minLength", T_STRING},         {"maxLength", T_STRING},
              {"pattern", T_STRING},        {"format", T_STRING},            {"minimum", T_NUMBER | T_INTEGER},
              {"maximum", T_NUMBER | T_INTEGER}, {"exclusiveMinimum", T_NUMBER | T_INTEGER},
              {"exclusiveMaximum", T_NUMBER | T_INTEGER}};
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (strcmp(k, kw[i].k) == 0) return kw[i].t;
    return 0;
}

static int is_structural(const char *k) {
    static const char *const a[] = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", NULL};
    for (int i = 0; a[i]; i++)
        if (strcmp(k, a[i]) == 0) return 1;
    return 0;
}

static int value_has_type(const json_t *v, int types) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return types & T_OBJECT;
    case JSON_ARRAY: return types & T_ARRAY;
    case JSON_STRING: return types & T_STRING;
    case JSON_INTEGER: return types & (T_NUMBER | T_INTEGER);
    case JSON_REAL: {
        double d = json_real_value(v);
        return (types & T_NUMBER) || ((types & T_INTEGER) && d == floor(d));
    }
    case JSON_TRUE:
    case JSON_FALSE: return types & T_BOOLEAN;
    default: return types & T_NULL;
    }
}

/* A count keyword (minLength ...): -1 when absent, -2 after an error. */
static long get_count(sc *c, const json_t *s, const char *key, const char *path) {
    const json_t *v = json_object_get(s, key);
    if (!v) return -1;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return sfail(c, BS_EINVAL, path, "'%s' must be a non-negative integer", key), -2;
    if (json_integer_value(v) > MAX_COUNT)
        return sfail(c, BS_EUNSUPPORTED, path, "'%s' above %d is not supported", key, MAX_COUNT), -2;
    return (long)json_integer_value(v);
}

/* " {m,n}" / " {m,}" suffix for a repetition. */
static void sb_repeat(sbuf *e, long min, long max) {
    if (max < 0) sb_printf(e, "{%ld,}", min);
    else sb_printf(e, "{%ld,%ld}", min, max);
}

/* ---- objects ------------------------------------------------------------------- */

/* Bytes a key may hold unescaped (a NUL ends the name). */
static int plain(unsigned char c) { return c >= 0x20 && c != '"' && c != '\\'; }

/* Plain (escape-free) key text different from every name in names[0..n)
 * (sorted, distinct, the first d bytes shared and already matched). */
static void emit_key_not_in(sbuf *e, char **names, int n, size_t d) {
    sb_puts(e, "( ");
    int first = 1;
    if (names[0][d]) { /* no name ends here: stopping is fine */
        sb_puts(e, "\"\"");
        first = 0;
    }
    sb_puts(e, first ? "" : " | ");
    sb_puts(e, "[^\"\\\\\\x00-\\x1F");
    for (int i = 0; i < n; i++) {
        if (!plain((unsigned char)names[i][d])) continue;
        if (i > 0 && names[i - 1][d] && strncmp(names[i - 1] + d, names[i] + d, utf8_len((unsigned char)names[i][d])) == 0)
            continue;
        const unsigned char *s = (const unsigned char *)names[i] + d;
        size_t l = utf8_len(s[0]);
        uint32_t cp = l == 1 ? s[0] : (uint32_t)(s[0] & (0x7F >> l));
        for (size_t k = 1; k < l; k++) cp = (cp << 6) | (s[k] & 63u);
        sb_printf(e, "\\U%08X", cp);
    }
    sb_puts(e, "] plainchar*");
    for (int i = 0; i < n;) {
        if (!plain((unsigned char)names[i][d])) { /* plain keys never contain it */
            i++;
            continue;
        }
        size_t cl = utf8_len((unsigned char)names[i][d]);
        int j = i + 1;
        while (j < n && strncmp(names[j] + d, names[i] + d, cl) == 0) j++;
        sb_puts(e, " | ");
        sb_lit(e, names[i] + d, cl);
        sb_puts(e, " ");
        emit_key_not_in(e, names + i, j - i, d + cl);
        i = j;
    }
    sb_puts(e, " )");
}

static int emit_rule(sc *c, int id, const sbuf *e) {
    if (e->oom) return sfail(c, BS_ENOMEM, c->root_path, "out of memory");
    sb_printf(&c->out, "s%d ::= ", id);
    sb_puts(&c->out, e->n ? e->p : "\"\"");
    sb_puts(&c->out, "\n");
    return 0;
}

static int compile_object(sc *c, const json_t *s, const char *path, sbuf *e) {
    const json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required"),
                 *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return sfail(c, BS_EINVAL, path, "'properties' must be an object");
    if (req && !json_is_array(req)) return sfail(c, BS_EINVAL, path, "'required' must be an array of strings");
    size_t i;
    const json_t *r;
    json_array_foreach(req, i, r) {
        if (!json_is_string(r)) return sfail(c, BS_EINVAL, path, "'required' must be an array of strings");
        if (!json_object_get(props, json_string_value(r)))
            return sfail(c, BS_EUNSUPPORTED, path, "required property '%s' is not in 'properties'",
                         json_string_value(r));
    }
    int n = props ? (int)json_object_size(props) : 0;
    int extra = -1; /* rule id of extra values, -1: none allowed */
    char sub[BS_ERROR_MSG_MAX];
    if (!addl || json_is_true(addl)) {
        extra = c->n_rules++;
        sbuf v = {0};
        sb_puts(&v, "value");
        emit_rule(c, extra, &v);
        free(v.p);
    } else if (!json_is_false(addl)) {
        snprintf(sub, sizeof sub, "%s.additionalProperties", path);
        if ((extra = compile(c, addl, sub)) < 0) return -1;
    }
    int *kv = malloc(((size_t)n + 1) * sizeof *kv);
    char **names = malloc(((size_t)n + 1) * sizeof *names);
    int *required = calloc((size_t)n + 1, sizeof *required);
    if (!kv || !names || !required) {
        free(kv), free(names), free(required);
        return sfail(c, BS_ENOMEM, path, "out of memory");
    }
    int k = 0;
    const char *key;
    const json_t *ps;
    json_object_foreach((json_t *)props, key, ps) {
        snprintf(sub, sizeof sub, "%s.properties.%s", path, key);
        int vid = compile(c, ps, sub);
        if (vid < 0) break;
        json_array_foreach(req, i, r) required[k] |= strcmp(json_string_value(r), key) == 0;
        names[k] = (char *)key;
        kv[k] = c->n_rules++;
        sbuf t = {0};
        json_t *js = json_string(key);
        char *enc = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (!enc) {
            free(t.p);
            sfail(c, BS_ENOMEM, path, "out of memory");
            break;
        }
        sb_lit(&t, enc, strlen(enc));
        free(enc);
        sb_printf(&t, " ws \":\" ws s%d ws", vid);
        emit_rule(c, kv[k], &t);
        free(t.p);
        k++;
    }
    if (c->st != BS_OK) {
        free(kv), free(names), free(required);
        return -1;
    }
    /* F_i: properties i.. with none written yet; T_i: at least one written,
     * so each one is preceded by a comma.  Extra keys close both chains. */
    int base = c->n_rules;
    c->n_rules += 2 * (n + 1) + (extra >= 0);
    int xkv = base + 2 * (n + 1);
    sbuf t = {0};
    if (extra >= 0) {
        char **sorted = malloc(((size_t)n + 1) * sizeof *sorted);
        if (!sorted) t.oom = 1;
        else {
            memcpy(sorted, names, (size_t)n * sizeof *names);
            qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
            sb_puts(&t, "\"\\\"\" ");
            if (n) emit_key_not_in(&t, sorted, n, 0);
            else sb_puts(&t, "plainchar*");
            sb_printf(&t, " \"\\\"\" ws \":\" ws s%d ws", extra);
            free(sorted);
        }
        emit_rule(c, xkv, &t);
    }
    for (int j = 0; j <= n; j++) {
        int F = base + 2 * j, T = F + 1;
        t.n = 0;
        if (j == n) {
            if (extra >= 0) sb_printf(&t, "( s%d ( \",\" ws s%d )* )?", xkv, xkv);
        } else {
            sb_printf(&t, "s%d s%d", kv[j], T + 2);
            if (!required[j]) sb_printf(&t, " | s%d", F + 2);
        }
        emit_rule(c, F, &t);
        t.n = 0;
        if (j == n) {
            if (extra >= 0) sb_printf(&t, "( \",\" ws s%d )*", xkv);
        } else {
            sb_printf(&t, "\",\" ws s%d s%d", kv[j], T + 2);
            if (!required[j]) sb_printf(&t, " | s%d", T + 2);
        }
        emit_rule(c, T, &t);
    }
    free(t.p);
    free(kv), free(names), free(required);
    sb_printf(e, "\"{\" ws s%d \"}\"", base);
    return c->st == BS_OK ? 0 : -1;
}

/* ---- arrays -------------------------------------------------------------------- */

static int compile_array(sc *c, const json_t *s, const char *path, sbuf *e) {
    const json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    long min = get_count(c, s, "minItems", path), max = get_count(c, s, "maxItems", path);
    if (min == -2 || max == -2) return -1;
    if (min < 0) min = 0;
    if (max >= 0 && max < min) return sfail(c, BS_EINVAL, path, "maxItems is below minItems");
    if (prefix && !json_is_array(prefix)) return sfail(c, BS_EINVAL, path, "'prefixItems' must be an array");
    char sub[BS_ERROR_MSG_MAX];
    int item = -1; /* -1: no items beyond the prefix */
    if (!items || json_is_true(items)) {
        item = c->n_rules++;
        sbuf v = {0};
        sb_puts(&v, "value");
        emit_rule(c, item, &v);
        free(v.p);
    } else if (!json_is_false(items)) {
        if (json_is_array(items))
            return sfail(c, BS_EUNSUPPORTED, path, "array form of 'items' is not supported (use prefixItems)");
        snprintf(sub, sizeof sub, "%s.items", path);
        if ((item = compile(c, items, sub)) < 0) return -1;
    }
    long k = prefix ? (long)json_array_size(prefix) : 0;
    if (max >= 0 && k > max) k = max;
    int *pre = malloc(((size_t)k + 1) * sizeof *pre);
    if (!pre) return sfail(c, BS_ENOMEM, path, "out of memory");
    for (long j = 0; j < k; j++) {
        snprintf(sub, sizeof sub, "%s.prefixItems[%ld]", path, j);
        if ((pre[j] = compile(c, json_array_get(prefix, (size_t)j), sub)) < 0) return free(pre), -1;
    }
    long rest_min = min > k ? min - k : 0, rest_max = max < 0 ? -1 : max - k;
    if (item < 0 && rest_min > 0) {
        free(pre);
        return sfail(c, BS_EINVAL, path, "minItems %ld cannot be met with items false", min);
    }
    if (item < 0) rest_max = 0;
    /* Element j (0-based) is written as [sep] s ws; elements up to min are
     * required, later ones optional, each nested in the previous. */
    sb_puts(e, "\"[\" ws ");
    int open = 0;
    for (long j = 0; j < k; j++) {
        if (j >= min) sb_puts(e, "( "), open++;
        if (j) sb_puts(e, "\",\" ws ");
        sb_printf(e, "s%d ws ", pre[j]);
    }
    if (rest_max != 0) {
        if (k == 0) { /* first element has no comma */
            if (rest_min == 0) sb_puts(e, "( "), open++;
            sb_printf(e, "s%d ws ", item);
            rest_min = rest_min ? rest_min - 1 : 0;
            if (rest_max > 0) rest_max--;
        }
        if (rest_max != 0) {
            sb_printf(e, "( \",\" ws s%d ws )", item);
            sb_repeat(e, rest_min, rest_max);
            sb_puts(e, " ");
        }
    }
    for (int j = 0; j < open; j++) sb_puts(e, ")? ");
    sb_puts(e, "\"]\"");
    free(pre);
    return 0;
}

/* ---- strings: regex patterns ----------------------------------------------------- */

typedef struct cpr {
    uint32_t lo, hi;
} cpr;

typedef struct cpset {
    cpr r[66]; /* 64 ranges as written, one more after complementing */
    int n;
} cpset;

typedef struct rx {
    sc *c;
    const char *path;
    const char *p, *end;
} rx;

static int rx_fail(rx *x, const char *what) {
    return sfail(x->c, BS_EUNSUPPORTED, x->path, "pattern: %s is not supported", what);
}

static int set_add(rx *x, cpset *s, uint32_t lo, uint32_t hi) {
    if (s->n == 64) return rx_fail(x, "a character class with over 64 ranges");
    s->r[s->n++] = (cpr){lo, hi};
    return 0;
}

static int cmp_cpr(const void *a, const void *b) {
    const cpr *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sort, merge and optionally complement over all code points. */
static void set_norm(cpset *s, int negate) {
    qsort(s->r, (size_t)s->n, sizeof s->r[0], cmp_cpr);
    int k = 0;
    for (int i = 0; i < s->n; i++) {
        if (k && s->r[i].lo <= s->r[k - 1].hi + 1) {
            if (s->r[i].hi > s->r[k - 1].hi) s->r[k - 1].hi = s->r[i].hi;
        } else {
            s->r[k++] = s->r[i];
        }
    }
    s->n = k;
    if (!negate) return;
    cpset o = {.n = 0};
    uint32_t next = 0;
    for (int i = 0; i < k; i++) {
        if (s->r[i].lo > next) o.r[o.n++] = (cpr){next, s->r[i].lo - 1};
        next = s->r[i].hi + 1;
    }
    if (next <= 0x10FFFF) o.r[o.n++] = (cpr){next, 0x10FFFF};
    *s = o;
}

static int set_has(const cpset *s, uint32_t c) {
    for (int i = 0; i < s->n; i++)
        if (c >= s->r[i].lo && c <= s->r[i].hi) return 1;
    return 0;
}

/* Class shorthand \d \w \s (upper case: negated); 0 when not one. */
static int class_escape(rx *x, char ch, cpset *s, int *negate) {
    *negate = ch >= 'A' && ch <= 'Z';
    switch (ch | 0x20) {
    case 'd': return set_add(x, s, '0', '9') < 0 ? -1 : 1;
    case 'w':
        if (set_add(x, s, 'a', 'z') < 0 || set_add(x, s, 'A', 'Z') < 0 || set_add(x, s, '0', '9') < 0 ||
            set_add(x, s, '_', '_') < 0)
            return -1;
        return 1;
    case 's':
        if (set_add(x, s, ' ', ' ') < 0 || set_add(x, s, '\t', '\r') < 0) return -1;
        return 1;
    default: return 0;
    }
}

/* One literal character (after a backslash or plain); -1 on error. */
static int64_t rx_char(rx *x) {
    const unsigned char *s = (const unsigned char *)x->p;
    if (*s == '\\') {
        x->p += 2;
        switch (s[1]) {
        case 'n': return '\n';
        case 't': return '\t';
        case 'r': return '\r';
        case 'f': return '\f';
        case 'v': return '\v';
        case 'u':
        case 'x': {
            int n = s[1] == 'u' ? 4 : 2;
            uint32_t v = 0;
            for (int i = 0; i < n; i++) {
                char h = (char)s[2 + i];
                int d = h >= '0' && h <= '9' ? h - '0' : (h | 0x20) >= 'a' && (h | 0x20) <= 'f' ? (h | 0x20) - 'a' + 10 : -1;
                if (d < 0) return rx_fail(x, "this escape"), -1;
                v = v * 16 + (uint32_t)d;
            }
            x->p += n;
            if (v >= 0xD800 && v <= 0xDFFF) return rx_fail(x, "a surrogate escape"), -1;
            return v;
        }
        default:
            if (!s[1] || (s[1] >= '0' && s[1] <= '9') || (s[1] >= 'a' && s[1] <= 'z') || (s[1] >= 'A' && s[1] <= 'Z')) {
                char what[32];
                snprintf(what, sizeof what, "escape '\\%c'", s[1] ? s[1] : ' ');
                return rx_fail(x, what), -1;
            }
            return s[1];
        }
    }
    size_t l = utf8_len(s[0]);
    uint32_t cp = l == 1 ? s[0] : (uint32_t)(s[0] & (0x7F >> l));
    for (size_t k = 1; k < l; k++) cp = (cp << 6) | (s[k] & 63u);
    x->p += l;
    return cp;
}

/* GBNF for one decoded character from set s, written as it appears inside a
 * JSON string: plain where allowed, else its escape. */
static void emit_set(sbuf *e, const cpset *s) {
    sb_puts(e, "( ");
    int any = 0;
    struct {
        cpr r[3 * 66];
        int n;
    } raw = {.n = 0};
    for (int i = 0; i < s->n; i++) {
        uint32_t lo = s->r[i].lo < 0x20 ? 0x20 : s->r[i].lo, hi = s->r[i].hi;
        for (uint32_t cut = 0; cut < 2 && lo <= hi; cut++) { /* carve out '"' and '\\' */
            uint32_t q = cut ? '\\' : '"';
            if (lo <= q && q <= hi) {
                if (lo < q) raw.r[raw.n++] = (cpr){lo, q - 1};
                lo = q + 1;
            }
        }
        if (lo <= hi) raw.r[raw.n++] = (cpr){lo, hi};
    }
    if (raw.n) {
        sb_puts(e, "[");
        for (int i = 0; i < raw.n; i++) sb_printf(e, "\\U%08X-\\U%08X", raw.r[i].lo, raw.r[i].hi);
        sb_puts(e, "]");
        any = 1;
    }
    if (set_has(s, '"')) sb_puts(e, any++ ? " | \"\\\\\\\"\"" : "\"\\\\\\\"\"");
    if (set_has(s, '\\')) sb_puts(e, any++ ? " | \"\\\\\\\\\"" : "\"\\\\\\\\\"");
    static const char short_esc[0x20] = {['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r'};
    for (uint32_t ch = 0; ch < 0x20; ch++) {
        if (!set_has(s, ch)) continue;
        sb_printf(e, "%s\"\\\\u%04x\"", any++ ? " | " : "", ch);
        if (short_esc[ch]) sb_printf(e, " | \"\\\\%c\"", short_esc[ch]);
    }
    sb_puts(e, " )");
}

static int rx_alt(rx *x, sbuf *e);

static int rx_atom(rx *x, sbuf *e) {
    char ch = *x->p;
    if (ch == '(') {
        x->p++;
        if (*x->p == '?') {
            if (x->p[1] != ':') return rx_fail(x, "a group with '(?'");
            x->p += 2;
        }
        sb_puts(e, "( ");
        if (rx_alt(x, e) < 0) return -1;
        if (*x->p != ')') return sfail(x->c, BS_EINVAL, x->path, "pattern: missing ')'");
        x->p++;
        sb_puts(e, " )");
        return 0;
    }
    cpset s = {.n = 0};
    if (ch == '[') {
        x->p++;
        int negate = 0;
        if (*x->p == '^') negate = 1, x->p++;
        int first = 1;
        while (x->p < x->end && (*x->p != ']' || first)) {
            first = 0;
            int neg;
            if (*x->p == '\\') {
                int r = class_escape(x, x->p[1], &s, &neg);
                if (r < 0) return -1;
                if (r) {
                    if (neg) return rx_fail(x, "a negated shorthand inside a class");
                    x->p += 2;
                    continue;
                }
            }
            if (*x->p == '[') return rx_fail(x, "'[' inside a class");
            int64_t lo = rx_char(x), hi = lo;
            if (lo < 0) return -1;
            if (*x->p == '-' && x->p + 1 < x->end && x->p[1] != ']') {
                x->p++;
                if ((hi = rx_char(x)) < 0) return -1;
                if (hi < lo) return sfail(x->c, BS_EINVAL, x->path, "pattern: range out of order");
            }
            if (set_add(x, &s, (uint32_t)lo, (uint32_t)hi) < 0) return -1;
        }
        if (x->p >= x->end) return sfail(x->c, BS_EINVAL, x->path, "pattern: missing ']'");
        x->p++;
        set_norm(&s, negate);
    } else if (ch == '.') {
        x->p++;
        if (set_add(x, &s, '\n', '\n') < 0) return -1;
        set_norm(&s, 1);
    } else if (ch == '\\') {
        int neg, r = class_escape(x, x->p[1], &s, &neg);
        if (r < 0) return -1;
        if (r) {
            x->p += 2;
            set_norm(&s, neg);
        } else {
            int64_t v = rx_char(x);
            if (v < 0 || set_add(x, &s, (uint32_t)v, (uint32_t)v) < 0) return -1;
        }
    } else if (ch == '^' || ch == '$') {
        return rx_fail(x, "an anchor inside the pattern");
    } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
        return sfail(x->c, BS_EINVAL, x->path, "pattern: quantifier '%c' follows nothing", ch);
    } else {
        int64_t v = rx_char(x);
        if (v < 0 || set_add(x, &s, (uint32_t)v, (uint32_t)v) < 0) return -1;
    }
    if (s.n == 0) return sfail(x->c, BS_EINVAL, x->path, "pattern: a class matches nothing");
    emit_set(e, &s);
    return 0;
}

static int rx_seq(rx *x, sbuf *e) {
    sb_puts(e, "\"\"");
    while (x->p < x->end && *x->p != '|' && *x->p != ')') {
        sb_puts(e, " ");
        if (rx_atom(x, e) < 0) return -1;
        char q = x->p < x->end ? *x->p : 0;
        if (q == '*' || q == '+' || q == '?') {
            sb_add(e, &q, 1);
            x->p++;
        } else if (q == '{') {
            long m = 0, n = -1;
            char *endp;
            m = strtol(x->p + 1, &endp, 10);
            if (endp == x->p + 1) return rx_fail(x, "a '{' that is not a quantifier");
            if (*endp == ',') {
                char *e2;
                n = strtol(endp + 1, &e2, 10);
                if (e2 == endp + 1) n = -1;
                endp = e2;
            } else {
                n = m;
            }
            if (*endp != '}') return rx_fail(x, "a '{' that is not a quantifier");
            if (m > MAX_COUNT || n > MAX_COUNT || (n >= 0 && n < m))
                return sfail(x->c, BS_EUNSUPPORTED, x->path, "pattern: repetition {%ld,%ld} out of range", m, n);
            sb_repeat(e, m, n);
            x->p = endp + 1;
        } else {
            continue;
        }
        if (x->p < x->end && *x->p == '?') x->p++; /* lazy: same language */
        else if (x->p < x->end && *x->p == '+') return rx_fail(x, "a possessive quantifier");
        if (x->p < x->end && (*x->p == '*' || *x->p == '+' || *x->p == '?' || *x->p == '{'))
            return rx_fail(x, "a repeated quantifier");
    }
    return 0;
}

static int rx_alt(rx *x, sbuf *e) {
    if (rx_seq(x, e) < 0) return -1;
    while (x->p < x->end && *x->p == '|') {
        x->p++;
        sb_puts(e, " | ");
        if (rx_seq(x, e) < 0) return -1;
    }
    return 0;
}

/* Whether '|' occurs outside groups and classes. */
static int has_top_alt(const char *p) {
    int depth = 0, in_class = 0;
    for (; *p; p++) {
        if (*p == '\\' && p[1]) p++;
        else if (in_class) in_class = *p != ']';
        else if (*p == '[') in_class = 1;
        else if (*p == '(') depth++;
        else if (*p == ')') depth--;
        else if (*p == '|' && depth == 0) return 1;
    }
    return 0;
}

static int compile_pattern(sc *c, const char *pat, const char *path, sbuf *e) {
    char sub[BS_ERROR_MSG_MAX];
    snprintf(sub, sizeof sub, "%s.pattern", path);
    size_t n = strlen(pat);
    int start = n > 0 && pat[0] == '^', end = 0;
    if (n > (size_t)start && pat[n - 1] == '$') {
        size_t bs = 0;
        while (bs + 1 < n && pat[n - 2 - bs] == '\\') bs++;
        end = bs % 2 == 0;
    }
    rx x = {c, sub, pat + start, pat + n - end};
    sbuf body = {0};
    int rc = rx_alt(&x, &body);
    if (rc == 0 && x.p != x.end) rc = sfail(c, BS_EINVAL, sub, "pattern: unbalanced ')'");
    /* ^a|b$ means (^a)|(b$), not ^(a|b)$ */
    if (rc == 0 && (start || end) && has_top_alt(pat)) rc = rx_fail(&x, "an anchor with a top-level '|'");
    if (rc == 0) {
        sb_puts(e, "\"\\\"\" ");
        if (!start) sb_puts(e, "char* ");
        sb_puts(e, "( ");
        sb_add(e, body.p, body.n);
        sb_puts(e, " ) ");
        if (!end) sb_puts(e, "char* ");
        sb_puts(e, "\"\\\"\"");
    }
    free(body.p);
    return rc;
}

static int compile_string(sc *c, const json_t *s, const char *path, sbuf *e) {
    const json_t *pat = json_object_get(s, "pattern"), *fmt = json_object_get(s, "format");
    long min = get_count(c, s, "minLength", path), max = get_count(c, s, "maxLength", path);
    if (min == -2 || max == -2) return -1;
    if (!!pat + !!fmt + (min >= 0 || max >= 0) > 1)
        return sfail(c, BS_EUNSUPPORTED, path, "combining pattern, format and minLength/maxLength is not supported");
    if (pat) {
        if (!json_is_string(pat)) return sfail(c, BS_EINVAL, path, "'pattern' must be a string");
        return compile_pattern(c, json_string_value(pat), path, e);
    }
    if (fmt) {
        static const char *const f[][2] = {
            {"date", "date"}, {"time", "time"}, {"date-time", "datetime"}, {"uuid", "uuid"}, {"email", "email"}};
        if (!json_is_string(fmt)) return sfail(c, BS_EINVAL, path, "'format' must be a string");
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            if (strcmp(json_string_value(fmt), f[i][0]) == 0) {
                sb_printf(e, "\"\\\"\" %s \"\\\"\"", f[i][1]);
                return 0;
            }
        return sfail(c, BS_EUNSUPPORTED, path, "format '%s' is not supported", json_string_value(fmt));
    }
    if (min < 0 && max < 0) {
        sb_puts(e, "string");
        return 0;
    }
    if (max >= 0 && min > max) return sfail(c, BS_EINVAL, path, "maxLength is below minLength");
    sb_puts(e, "\"\\\"\" char");
    sb_repeat(e, min < 0 ? 0 : min, max);
    sb_puts(e, " \"\\\"\"");
    return 0;
}

/* ---- numbers ----------------------------------------------------------------------- */

typedef struct bound {
    int has, excl;
    int64_t v;
} bound;

static void emit_digits(sbuf *e, int n) {
    if (n > 0) sb_printf(e, " [0-9]{%d}", n);
}

/* n-digit strings >= s (ge) or <= s (!ge). */
static void emit_half(sbuf *e, const char *s, int n, int ge) {
    if (n == 0) {
        sb_puts(e, "\"\"");
        return;
    }
    sb_printf(e, "( \"%c\" ", s[0]);
    emit_half(e, s + 1, n - 1, ge);
    if (ge && s[0] < '9') sb_printf(e, " | [%c-9]", s[0] + 1);
    if (!ge && s[0] > '0') sb_printf(e, " | [0-%c]", s[0] - 1);
    if ((ge && s[0] < '9') || (!ge && s[0] > '0')) emit_digits(e, n - 1);
    sb_puts(e, " )");
}

/* n-digit strings in [a, b]. */
static void emit_between(sbuf *e, const char *a, const char *b, int n) {
    if (n == 0) {
        sb_puts(e, "\"\"");
        return;
    }
    if (a[0] == b[0]) {
        sb_printf(e, "\"%c\" ", a[0]);
        emit_between(e, a + 1, b + 1, n - 1);
        return;
    }
    sb_printf(e, "( \"%c\" ", a[0]);
    emit_half(e, a + 1, n - 1, 1);
    if (a[0] + 1 <= b[0] - 1) {
        sb_printf(e, " | [%c-%c]", a[0] + 1, b[0] - 1);
        emit_digits(e, n - 1);
    }
    sb_printf(e, " | \"%c\" ", b[0]);
    emit_half(e, b + 1, n - 1, 0);
    sb_puts(e, " )");
}

/* Decimal integers without leading zeros in [lo, hi] (hi < 0: unbounded,
 * up to 16 digits). */
static void emit_uint_range(sbuf *e, int64_t lo, int64_t hi) {
    char a[24], b[24];
    int la = snprintf(a, sizeof a, "%lld", (long long)lo);
    int lb = hi >= 0 ? snprintf(b, sizeof b, "%lld", (long long)hi) : 16;
    sb_puts(e, "( ");
    for (int L = la; L <= lb; L++) {
        if (L > la) sb_puts(e, " | ");
        char x[24], y[24];
        if (L == la) memcpy(x, a, (size_t)L + 1);
        else {
            x[0] = '1';
            memset(x + 1, '0', (size_t)L - 1);
        }
        if (hi >= 0 && L == lb) memcpy(y, b, (size_t)L + 1);
        else memset(y, '9', (size_t)L);
        if (L > la && (hi < 0 || L < lb)) sb_printf(e, "[1-9] [0-9]{%d}", L - 1);
        else emit_between(e, x, y, L);
    }
    sb_puts(e, " )");
}

/* Non-negative decimals y with lo <(=) y <(=) hi written I("." F)?. */
static int emit_magnitude(sbuf *e, int64_t lo, int lo_excl, int has_hi, int64_t hi, int hi_excl, int real) {
    int alts = 0;
    sb_puts(e, "( ");
    int64_t ilo = lo_excl ? lo + 1 : lo;
    if (!real) {
        int64_t ihi = has_hi ? (hi_excl ? hi - 1 : hi) : -1;
        if (!has_hi || ilo <= ihi) emit_uint_range(e, ilo, ihi), alts++;
        sb_puts(e, " )");
        return alts;
    }
    int64_t ihi = has_hi ? hi - 1 : -1; /* integer parts with any fraction */
    if (!has_hi || ilo <= ihi) {
        emit_uint_range(e, ilo, ihi);
        sb_puts(e, " frac");
        alts++;
    }
    if (lo_excl && (!has_hi || lo < hi)) {
        sb_printf(e, "%s\"%lld\" nzfrac", alts++ ? " | " : "", (long long)lo);
    }
    if (has_hi && !hi_excl && (hi > lo || !lo_excl)) {
        sb_printf(e, "%s\"%lld\" zerofrac", alts++ ? " | " : "", (long long)hi);
    }
    sb_puts(e, " )");
    return alts;
}

static int get_bound(sc *c, const json_t *s, const char *key, const char *excl_key, int lower, const char *path,
                     bound *b) {
    const json_t *v = json_object_get(s, key), *x = json_object_get(s, excl_key);
    memset(b, 0, sizeof *b);
    double d = 0;
    if (x && json_is_number(x)) { /* 2019+: exclusive bound is a number */
        d = json_number_value(x);
        b->has = b->excl = 1;
        if (v && json_is_number(v)) {
            double w = json_number_value(v);
            if (lower ? w > d : w < d) d = w, b->excl = 0;
        }
    } else if (x && !json_is_boolean(x)) {
        return sfail(c, BS_EINVAL, path, "'%s' must be a number", excl_key);
    } else if (v) {
        if (!json_is_number(v)) return sfail(c, BS_EINVAL, path, "'%s' must be a number", key);
        d = json_number_value(v);
        b->has = 1;
        b->excl = json_is_true(x); /* draft 4 */
    } else if (x) {
        return sfail(c, BS_EINVAL, path, "'%s' without '%s'", excl_key, key);
    }
    if (!b->has) return 0;
    if (d != floor(d))
        return sfail(c, BS_EUNSUPPORTED, path, "non-integer bound %g for '%s' is not supported", d, x ? excl_key : key);
    if (fabs(d) > (double)MAX_BOUND)
        return sfail(c, BS_EUNSUPPORTED, path, "bound %g for '%s' is beyond +-10^15", d, x ? excl_key : key);
    b->v = (int64_t)d;
    return 0;
}

static int compile_number(sc *c, const json_t *s, const char *path, int real, sbuf *e) {
    bound lo, hi;
    if (get_bound(c, s, "minimum", "exclusiveMinimum", 1, path, &lo) < 0 ||
        get_bound(c, s, "maximum", "exclusiveMaximum", 0, path, &hi) < 0)
        return -1;
    if (!lo.has && !hi.has) {
        sb_puts(e, real ? "number" : "integer");
        return 0;
    }
    int alts = 0;
    sb_puts(e, "( ");
    /* x >= 0: y = x in [max(lo, 0), hi] */
    if (!hi.has || hi.v > 0 || (hi.v == 0 && !hi.excl)) {
        int64_t l = lo.has && lo.v >= 0 ? lo.v : 0;
        int le = lo.has && lo.v >= 0 ? lo.excl : 0;
        sbuf t = {0};
        if (emit_magnitude(&t, l, le, hi.has, hi.v, hi.excl, real) > 0) {
            sb_add(e, t.p, t.n);
            alts++;
        }
        free(t.p);
    }
    /* x < 0: y = -x > 0 in (max(-hi, 0), -lo] */
    if (!lo.has || lo.v < 0) {
        int64_t l = hi.has && hi.v < 0 ? -hi.v : 0;
        int le = hi.has && hi.v < 0 ? hi.excl : 1;
        sbuf t = {0};
        if (emit_magnitude(&t, l, le, lo.has, -lo.v, lo.excl, real) > 0) {
            sb_puts(e, alts ? " | \"-\" " : "\"-\" ");
            sb_add(e, t.p, t.n);
            alts++;
        }
        free(t.p);
    }
    sb_puts(e, " )");
    if (!alts) return sfail(c, BS_EINVAL, path, "the numeric range is empty");
    return 0;
}

/* ---- schemas --------------------------------------------------------------------- */

static int add_ref(sc *c, const char *ref, int rule, const char *path) {
    if (c->n_refs == c->cap_refs) {
        int cap = c->cap_refs ? c->cap_refs * 2 : 8;
        refent *r = realloc(c->refs, (size_t)cap * sizeof *r);
        if (!r) return sfail(c, BS_ENOMEM, path, "out of memory");
        c->refs = r, c->cap_refs = cap;
    }
    char *dup = strdup(ref);
    if (!dup) return sfail(c, BS_ENOMEM, path, "out of memory");
    c->refs[c->n_refs++] = (refent){dup, rule};
    return 0;
}

static int ref_rule(sc *c, const char *ref, const char *path) {
    for (int i = 0; i < c->n_refs; i++)
        if (strcmp(c->refs[i].ref, ref) == 0) return c->refs[i].rule;
    if (ref[0] != '#') return sfail(c, BS_EUNSUPPORTED, path, "$ref '%s': only local references are supported", ref);
    const json_t *t = c->root;
    char tpath[BS_ERROR_MSG_MAX];
    snprintf(tpath, sizeof tpath, "%s", c->root_path);
    for (const char *p = ref + 1; *p;) {
        if (*p != '/') return sfail(c, BS_EUNSUPPORTED, path, "$ref '%s' is not a JSON pointer", ref);
        p++;
        char seg[256];
        size_t n = 0;
        for (; *p && *p != '/'; p++) {
            char ch = *p;
            if (ch == '~') {
                if (p[1] != '0' && p[1] != '1') return sfail(c, BS_EINVAL, path, "$ref '%s': bad '~' escape", ref);
                ch = p[1] == '0' ? '~' : '/';
                p++;
            }
            if (n + 1 >= sizeof seg) return sfail(c, BS_EUNSUPPORTED, path, "$ref '%s': segment too long", ref);
            seg[n++] = ch;
        }
        seg[n] = 0;
        if (json_is_object(t)) {
            t = json_object_get(t, seg);
        } else if (json_is_array(t)) {
            char *end;
            long i = strtol(seg, &end, 10);
            t = *seg && !*end && i >= 0 ? json_array_get(t, (size_t)i) : NULL;
        } else {
            t = NULL;
        }
        if (!t) return sfail(c, BS_EINVAL, path, "$ref '%s' not found", ref);
        size_t l = strlen(tpath);
        snprintf(tpath + l, sizeof tpath - l, ".%s", seg);
    }
    int id = c->n_rules++;
    /* registered before compiling, so a recursive $ref finds it */
    if (add_ref(c, ref, id, path) < 0) return -1;
    sbuf e = {0};
    int rc = compile(c, t, tpath);
    if (rc >= 0) {
        sb_printf(&e, "s%d", rc);
        emit_rule(c, id, &e);
    }
    free(e.p);
    return rc < 0 ? -1 : id;
}

static int compile_enum(sc *c, const json_t *s, int types, const char *path, sbuf *e) {
    const json_t *en = json_object_get(s, "enum"), *cn = json_object_get(s, "const");
    if (en && cn) return sfail(c, BS_EUNSUPPORTED, path, "'enum' beside 'const' is not supported");
    if (en && (!json_is_array(en) || json_array_size(en) == 0))
        return sfail(c, BS_EINVAL, path, "'enum' must be a non-empty array");
    size_t n = en ? json_array_size(en) : 1;
    char **lits = malloc(n * sizeof *lits);
    if (!lits) return sfail(c, BS_ENOMEM, path, "out of memory");
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = en ? json_array_get(en, i) : cn;
        if (types && !value_has_type(v, types)) continue;
        char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        if (!d) {
            for (int j = 0; j < k; j++) free(lits[j]);
            free(lits);
            return sfail(c, BS_ENOMEM, path, "out of memory");
        }
        lits[k++] = d;
    }
    if (k == 0) {
        free(lits);
        return sfail(c, BS_EINVAL, path, "no '%s' value has the schema's type", en ? "enum" : "const");
    }
    emit_literals(e, lits, k);
    free(lits);
    return 0;
}

static int parse_types(sc *c, const json_t *t, const char *path) {
    int types = 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    if (json_is_array(t) && n == 0) return sfail(c, BS_EINVAL, path, "'type' is an empty array");
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_is_array(t) ? json_array_get(t, i) : t;
        if (!json_is_string(v)) return sfail(c, BS_EINVAL, path, "'type' must be a string or an array of strings");
        int bit = 0;
        for (int j = 0; j < 7; j++)
            if (strcmp(json_string_value(v), type_names[j]) == 0) bit = 1 << j;
        if (!bit) return sfail(c, BS_EINVAL, path, "unknown type '%s'", json_string_value(v));
        types |= bit;
    }
    return types;
}

static int compile_body(sc *c, const json_t *s, const char *path, sbuf *e) {
    if (json_is_true(s)) {
        sb_puts(e, "value");
        return 0;
    }
    if (json_is_false(s)) return sfail(c, BS_EUNSUPPORTED, path, "schema 'false' accepts nothing");
    if (!json_is_object(s)) return sfail(c, BS_EINVAL, path, "a schema must be an object or a boolean");
    const char *key;
    const json_t *v;
    int kw_types = 0;
    json_object_foreach((json_t *)s, key, v) {
        if (is_annotation(key)) continue;
        int t = keyword_types(key);
        if (!t && !is_structural(key)) return sfail(c, BS_EUNSUPPORTED, path, "keyword '%s' is not supported", key);
        kw_types |= t;
    }
    const json_t *ref = json_object_get(s, "$ref");
    const char *combi[] = {"anyOf", "oneOf", "allOf"};
    const json_t *comb = NULL;
    const char *comb_name = NULL;
    for (int i = 0; i < 3; i++)
        if (json_object_get(s, combi[i])) comb = json_object_get(s, combi[i]), comb_name = combi[i];
    if (ref || comb) {
        const json_t *main_kw = ref ? ref : comb;
        json_object_foreach((json_t *)s, key, v) {
            if (is_annotation(key) || v == main_kw) continue;
            return sfail(c, BS_EUNSUPPORTED, path, "keyword '%s' beside '%s' is not supported", key,
                         ref ? "$ref" : comb_name);
        }
    }
    if (ref) {
        if (!json_is_string(ref)) return sfail(c, BS_EINVAL, path, "'$ref' must be a string");
        int id = ref_rule(c, json_string_value(ref), path);
        if (id < 0) return -1;
        sb_printf(e, "s%d", id);
        return 0;
    }
    if (comb) {
        if (!json_is_array(comb) || json_array_size(comb) == 0)
            return sfail(c, BS_EINVAL, path, "'%s' must be a non-empty array", comb_name);
        if (strcmp(comb_name, "allOf") == 0 && json_array_size(comb) != 1)
            return sfail(c, BS_EUNSUPPORTED, path, "'allOf' with more than one schema is not supported");
        sb_puts(e, "( ");
        for (size_t i = 0; i < json_array_size(comb); i++) {
            char sub[BS_ERROR_MSG_MAX];
            snprintf(sub, sizeof sub, "%s.%s[%zu]", path, comb_name, i);
            int id = compile(c, json_array_get(comb, i), sub);
            if (id < 0) return -1;
            sb_printf(e, "%ss%d", i ? " | " : "", id);
        }
        sb_puts(e, " )");
        return 0;
    }
    const json_t *type = json_object_get(s, "type");
    int types = 0;
    if (type && (types = parse_types(c, type, path)) < 0) return -1;
    if (json_object_get(s, "enum") || json_object_get(s, "const")) {
        json_object_foreach((json_t *)s, key, v) {
            if (keyword_types(key))
                return sfail(c, BS_EUNSUPPORTED, path, "keyword '%s' beside enum/const is not supported", key);
        }
        return compile_enum(c, s, types, path, e);
    }
    if (!type) {
        if (!kw_types) {
            sb_puts(e, "value");
            return 0;
        }
        /* no type: the keywords say which one (integer keywords mean number) */
        types = kw_types & (T_NUMBER | T_INTEGER) ? T_NUMBER : kw_types;
        if (types & (types - 1))
            return sfail(c, BS_EUNSUPPORTED, path, "keywords of several types without 'type' are not supported");
    }
    json_object_foreach((json_t *)s, key, v) {
        int t = keyword_types(key);
        if (t && !(t & types))
            return sfail(c, BS_EUNSUPPORTED, path, "keyword '%s' does not apply to the schema's type", key);
    }
    int n = 0;
    sb_puts(e, "( ");
    for (int j = 0; j < 7; j++) {
        if (!(types & (1 << j))) continue;
        if (n++) sb_puts(e, " | ");
        int rc = 0;
        switch (1 << j) {
        case T_OBJECT: rc = compile_object(c, s, path, e); break;
        case T_ARRAY: rc = compile_array(c, s, path, e); break;
        case T_STRING: rc = compile_string(c, s, path, e); break;
        case T_NUMBER: rc = compile_number(c, s, path, 1, e); break;
        case T_INTEGER: rc = compile_number(c, s, path, 0, e); break;
        case T_BOOLEAN: sb_puts(e, "boolean"); break;
        default: sb_puts(e, "null"); break;
        }
        if (rc < 0) return -1;
    }
    sb_puts(e, " )");
    return 0;
}

static int compile(sc *c, const json_t *s, const char *path) {
    if (c->st != BS_OK) return -1;
    if (c->depth >= MAX_DEPTH) return sfail(c, BS_EUNSUPPORTED, path, "schema nests deeper than %d", MAX_DEPTH);
    c->depth++;
    int id = c->n_rules++;
    sbuf e = {0};
    int rc = compile_body(c, s, path, &e);
    if (rc == 0) rc = emit_rule(c, id, &e);
    free(e.p);
    c->depth--;
    return rc < 0 ? -1 : id;
}

bs_status json_schema_to_gbnf_rules(const json_schema_entry *v, size_t n, char **gbnf, bs_error *err) {
    *gbnf = NULL;
    sc c = {.err = err};
    for (size_t k = 0; k < n && c.st == BS_OK; k++) {
        const char *path = v[k].path ? v[k].path : "schema";
        for (int i = 0; i < c.n_refs; i++) free(c.refs[i].ref);
        c.n_refs = 0;
        c.root = v[k].doc ? v[k].doc : v[k].schema;
        c.root_path = path;
        int top = c.n_rules++;
        /* "#" names the value itself: registered so recursion through it
         * finds its rule */
        if (c.root == v[k].schema && add_ref(&c, "#", top, path) < 0) break;
        int id = compile(&c, v[k].schema, path);
        if (id < 0) break;
        sbuf e = {0};
        sb_printf(&e, "s%d", id);
        emit_rule(&c, top, &e);
        free(e.p);
        sb_printf(&c.out, "%s ::= s%d\n", v[k].rule, top);
    }
    sb_puts(&c.out, PRIMITIVES);
    if (c.out.oom) sfail(&c, BS_ENOMEM, "schema", "out of memory");
    for (int i = 0; i < c.n_refs; i++) free(c.refs[i].ref);
    free(c.refs);
    if (c.st != BS_OK) {
        free(c.out.p);
        return c.st;
    }
    *gbnf = c.out.p;
    return BS_OK;
}

bs_status json_schema_to_gbnf_rule(const json_t *schema, const char *path_for_errors, const char *rule, char **gbnf,
                                   bs_error *err) {
    json_schema_entry e = {schema, NULL, path_for_errors, rule};
    return json_schema_to_gbnf_rules(&e, 1, gbnf, err);
}

bs_status json_schema_to_gbnf(const json_t *schema, const char *path_for_errors, char **gbnf, bs_error *err) {
    return json_schema_to_gbnf_rule(schema, path_for_errors, "root", gbnf, err);
}

const char *json_schema_object_gbnf(void) { return OBJECT_GBNF; }

bs_status grammar_from_json_schema(const json_t *schema, const char *path_for_errors, bs_grammar **out,
                                   bs_error *err) {
    *out = NULL;
    char *text;
    bs_status st = json_schema_to_gbnf(schema, path_for_errors, &text, err);
    if (st != BS_OK) return st;
    st = grammar_parse_gbnf(text, out, err);
    if (st != BS_OK)
        bs_wrap(err, "%s", path_for_errors ? path_for_errors : "schema");
    free(text);
    return st;
}

bs_status grammar_json_object(bs_grammar **out, bs_error *err) {
    return grammar_parse_gbnf(json_schema_object_gbnf(), out, err);
}
