/* template/jinja_value.c — the arena, failure unwinding, and Python-like
 * values: construction from JSON, truthiness, equality, str() and repr(). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unictype.h>
#include <unistr.h>

#include "template/jinja_impl.h"

/* ---- arena -------------------------------------------------------------- */

struct jarena_block {
    jarena_block *next;
    size_t used, cap;
    max_align_t data[];
};

#define JA_BLOCK (64 * 1024)

void *ja_alloc(jarena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (n == 0) n = sizeof(max_align_t);
    jarena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > JA_BLOCK ? n : JA_BLOCK;
        if (a->limit && a->total + cap > a->limit)
            jfail_at(a->fail, BS_ERANGE, 0, 0, "render needs more than %zu MiB of memory", a->limit >> 20);
        b = malloc(sizeof *b + cap);
        if (!b) jfail_at(a->fail, BS_ENOMEM, 0, 0, "out of memory");
        b->used = 0;
        b->cap = cap;
        a->total += cap;
        if (a->head && n > JA_BLOCK) { /* keep filling the current block */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    return p;
}

char *ja_printf(jarena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = ja_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void ja_free(jarena *a) {
    for (jarena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->total = 0;
}

void jfail_at(jfail *f, bs_status status, int line, int col, const char *fmt, ...) {
    char msg[BS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        bs_fail(f->err, status, "%s:%d:%d: %s", f->name, line, col, msg);
    else
        bs_fail(f->err, status, "%s: %s", f->name, msg);
    longjmp(f->jump, 1);
}

/* ---- byte buffer -------------------------------------------------------- */

void jb_put(jbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = ja_alloc(b->arena, cap);
        if (b->len) memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }

void jb_printf(jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if ((size_t)n < sizeof tmp) {
        jb_put(b, tmp, (size_t)n);
        return;
    }
    char *p = ja_alloc(b->arena, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    jb_put(b, p, (size_t)n);
}

/* ---- construction ------------------------------------------------------- */

const jv JV_NONE_V = {.kind = JV_NONE};

jv jv_bool(int b) { return (jv){.kind = JV_BOOL, .u.b = !!b}; }
jv jv_int(int64_t i) { return (jv){.kind = JV_INT, .u.i = i}; }
jv jv_float(double f) { return (jv){.kind = JV_FLOAT, .u.f = f}; }
jv jv_undef(const char *message) { return (jv){.kind = JV_UNDEF, .u.undef = message}; }

jv jv_str(jarena *a, const char *s, size_t n) {
    jstr *str = ja_alloc(a, sizeof *str + n + 1);
    str->len = n;
    if (n) memcpy(str->p, s, n);
    return (jv){.kind = JV_STR, .u.s = str};
}

jv jv_cstr(jarena *a, const char *s) { return jv_str(a, s, strlen(s)); }

jv jv_list(jarena *a, size_t cap) {
    jlist *l = ja_alloc(a, sizeof *l);
    l->cap = cap;
    if (cap) l->v = ja_alloc(a, cap * sizeof(jv));
    return (jv){.kind = JV_LIST, .u.l = l};
}

jv jv_dict(jarena *a, size_t cap) {
    jdict *d = ja_alloc(a, sizeof *d);
    d->cap = cap;
    if (cap) {
        d->k = ja_alloc(a, cap * sizeof(jv));
        d->v = ja_alloc(a, cap * sizeof(jv));
    }
    return (jv){.kind = JV_DICT, .u.d = d};
}

void jl_push(jarena *a, jlist *l, jv x) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *v = ja_alloc(a, cap * sizeof(jv));
        if (l->n) memcpy(v, l->v, l->n * sizeof(jv));
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
}

int jd_find(const jdict *d, jv key) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->k[i], key)) return (int)i;
    return -1;
}

int jd_get_str(const jdict *d, const char *key, jv *out) {
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].kind == JV_STR && d->k[i].u.s->len == n && memcmp(d->k[i].u.s->p, key, n) == 0) {
            *out = d->v[i];
            return 1;
        }
    return 0;
}

void jd_set(jarena *a, jdict *d, jv key, jv val) {
    int i = jd_find(d, key);
    if (i >= 0) {
        d->v[i] = val;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *k = ja_alloc(a, cap * sizeof(jv)), *v = ja_alloc(a, cap * sizeof(jv));
        if (d->n) {
            memcpy(k, d->k, d->n * sizeof(jv));
            memcpy(v, d->v, d->n * sizeof(jv));
        }
        d->k = k;
        d->v = v;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n++] = val;
}

static int key_is(jv k, const char *key, size_t n) {
    return k.kind == JV_STR && k.u.s->len == n && memcmp(k.u.s->p, key, n) == 0;
}

void jd_set_str(jarena *a, jdict *d, const char *key, jv val) {
    size_t n = strlen(key);
    for (size_t i = 0; i < d->n; i++)
        if (key_is(d->k[i], key, n)) {
            d->v[i] = val;
            return;
        }
    if (d->n < d->cap && key_is(d->k[d->n], key, n)) {
        d->v[d->n++] = val;
        return;
    }
    jd_set(a, d, jv_str(a, key, n), val);
}

jv jv_from_json(jarena *a, const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jv d = jv_dict(a, json_object_size(j));
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)j, key, val) {
            jv k = jv_cstr(a, key);
            d.u.d->k[d.u.d->n] = k;
            d.u.d->v[d.u.d->n++] = jv_from_json(a, val);
        }
        return d;
    }
    case JSON_ARRAY: {
        jv l = jv_list(a, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++) l.u.l->v[l.u.l->n++] = jv_from_json(a, json_array_get(j, i));
        return l;
    }
    case JSON_STRING: return jv_str(a, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jv_int(json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_TRUE: return jv_bool(1);
    case JSON_FALSE: return jv_bool(0);
    case JSON_NULL: break;
    }
    return JV_NONE_V;
}

/* ---- UTF-8 ------------------------------------------------------------- */

size_t ju_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

size_t ju_offset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    for (; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80 && k-- == 0) return i;
    return n;
}

/* ---- predicates --------------------------------------------------------- */

int jv_truthy(jv x) {
    switch (x.kind) {
    case JV_UNDEF:
    case JV_NONE: return 0;
    case JV_BOOL: return x.u.b;
    case JV_INT: return x.u.i != 0;
    case JV_FLOAT: return x.u.f != 0;
    case JV_STR: return x.u.s->len != 0;
    case JV_LIST:
    case JV_TUPLE: return x.u.l->n != 0;
    case JV_DICT: return x.u.d->n != 0;
    default: return 1;
    }
}

static int jv_is_number(jv x) { return x.kind == JV_BOOL || x.kind == JV_INT || x.kind == JV_FLOAT; }
static double jv_num(jv x) { return x.kind == JV_FLOAT ? x.u.f : x.kind == JV_INT ? (double)x.u.i : x.u.b; }

int jv_equal(jv a, jv b) {
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT)
            return (a.kind == JV_INT ? a.u.i : a.u.b) == (b.kind == JV_INT ? b.u.i : b.u.b);
        return jv_num(a) == jv_num(b);
    }
    if (a.kind != b.kind) return 0;
    switch (a.kind) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->p, b.u.s->p, a.u.s->len) == 0;
    case JV_LIST:
    case JV_TUPLE:
        if (a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            int j = jd_find(b.u.d, a.u.d->k[i]);
            if (j < 0 || !jv_equal(a.u.d->v[i], b.u.d->v[j])) return 0;
        }
        return 1;
    case JV_NS: return a.u.d == b.u.d;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_LOOP: return a.u.loop == b.u.loop;
    default: return 0;
    }
}

const char *jv_type_name(jv x) {
    static const char *names[] = {"Undefined", "NoneType", "bool", "int", "float", "str", "list", "tuple",
                                  "dict", "Namespace", "function", "LoopContext"};
    return names[x.kind];
}

/* ---- str() and repr() --------------------------------------------------- */

/* Python's float repr: the shortest digits that round-trip, positional
 * between 1e-4 and 1e16, else d.ddde+XX. */
void jv_write_float(jbuf *b, double f) {
    if (isnan(f)) return jb_puts(b, "nan");
    if (isinf(f)) return jb_puts(b, f < 0 ? "-inf" : "inf");
    if (f == 0) return jb_puts(b, signbit(f) ? "-0.0" : "0.0");
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    char digits[24];
    int nd = 0;
    const char *p = tmp;
    int neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int decpt = exp10 + 1; /* value = 0.DIGITS x 10^decpt */
    if (neg) jb_put(b, "-", 1);
    if (decpt > 16 || decpt < -3) {
        jb_put(b, digits, 1);
        if (nd > 1) {
            jb_put(b, ".", 1);
            jb_put(b, digits + 1, (size_t)nd - 1);
        }
        jb_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (decpt <= 0) {
        jb_puts(b, "0.");
        for (int i = decpt; i < 0; i++) jb_put(b, "0", 1);
        jb_put(b, digits, (size_t)nd);
    } else if (decpt >= nd) {
        jb_put(b, digits, (size_t)nd);
        for (int i = nd; i < decpt; i++) jb_put(b, "0", 1);
        jb_puts(b, ".0");
    } else {
        jb_put(b, digits, (size_t)decpt);
        jb_put(b, ".", 1);
        jb_put(b, digits + decpt, (size_t)(nd - decpt));
    }
}

/* Python's str.isprintable for one code point. */
static int py_printable(ucs4_t c) {
    if (c == ' ') return 1;
    return !uc_is_general_category(c, UC_CATEGORY_Cc) && !uc_is_general_category(c, UC_CATEGORY_Cf) &&
           !uc_is_general_category(c, UC_CATEGORY_Cs) && !uc_is_general_category(c, UC_CATEGORY_Co) &&
           !uc_is_general_category(c, UC_CATEGORY_Cn) && !uc_is_general_category(c, UC_CATEGORY_Zl) &&
           !uc_is_general_category(c, UC_CATEGORY_Zp) && !uc_is_general_category(c, UC_CATEGORY_Zs);
}

static void write_str_repr(jbuf *b, const jstr *s) {
    int quote = memchr(s->p, '\'', s->len) && !memchr(s->p, '"', s->len) ? '"' : '\'';
    char q = (char)quote;
    jb_put(b, &q, 1);
    const uint8_t *p = (const uint8_t *)s->p, *end = p + s->len;
    while (p < end) {
        ucs4_t c;
        int n = u8_mbtoucr(&c, p, (size_t)(end - p));
        if (n < 0) { /* invalid UTF-8 cannot come from JSON; show the byte */
            jb_printf(b, "\\x%02x", *p);
            p++;
            continue;
        }
        if (c == (ucs4_t)quote || c == '\\') {
            jb_put(b, "\\", 1);
            jb_put(b, (const char *)p, 1);
        } else if (c == '\n') jb_puts(b, "\\n");
        else if (c == '\r') jb_puts(b, "\\r");
        else if (c == '\t') jb_puts(b, "\\t");
        else if (c < 0x7f && c >= 0x20) jb_put(b, (const char *)p, 1);
        else if (c < 0x80 || !py_printable(c)) {
            if (c <= 0xff) jb_printf(b, "\\x%02x", c);
            else if (c <= 0xffff) jb_printf(b, "\\u%04x", c);
            else jb_printf(b, "\\U%08x", c);
        } else jb_put(b, (const char *)p, (size_t)n);
        p += n;
    }
    jb_put(b, &q, 1);
}

static void write_value(jbuf *b, jv x, int repr) {
    switch (x.kind) {
    case JV_UNDEF: return;
    case JV_NONE: return jb_puts(b, "None");
    case JV_BOOL: return jb_puts(b, x.u.b ? "True" : "False");
    case JV_INT: return jb_printf(b, "%lld", (long long)x.u.i);
    case JV_FLOAT: return jv_write_float(b, x.u.f);
    case JV_STR:
        if (repr) return write_str_repr(b, x.u.s);
        return jb_put(b, x.u.s->p, x.u.s->len);
    case JV_LIST:
    case JV_TUPLE:
        jb_puts(b, x.kind == JV_LIST ? "[" : "(");
        for (size_t i = 0; i < x.u.l->n; i++) {
            if (i) jb_puts(b, ", ");
            write_value(b, x.u.l->v[i], 1);
        }
        if (x.kind == JV_TUPLE && x.u.l->n == 1) jb_puts(b, ",");
        return jb_puts(b, x.kind == JV_LIST ? "]" : ")");
    case JV_DICT:
        jb_puts(b, "{");
        for (size_t i = 0; i < x.u.d->n; i++) {
            if (i) jb_puts(b, ", ");
            write_value(b, x.u.d->k[i], 1);
            jb_puts(b, ": ");
            write_value(b, x.u.d->v[i], 1);
        }
        return jb_puts(b, "}");
    case JV_NS: return jb_puts(b, "<Namespace>");
    case JV_FUNC: return jb_printf(b, "<function %s>", x.u.fn->name);
    case JV_LOOP: return jb_puts(b, "<LoopContext>");
    }
}

void jv_write_str(jbuf *b, jv x) { write_value(b, x, 0); }
void jv_write_repr(jbuf *b, jv x) { write_value(b, x, 1); }

jstr *jv_to_str(jarena *a, jv x) {
    if (x.kind == JV_STR) return x.u.s;
    jbuf b = {.arena = a};
    jv_write_str(&b, x);
    return jv_str(a, b.p ? b.p : "", b.len).u.s;
}
