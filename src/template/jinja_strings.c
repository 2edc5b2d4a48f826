/* template/jinja_strings.c — Python's str methods on UTF-8 text, by code
 * point: whitespace, strip, split/rsplit, splitlines, case mapping (full
 * Unicode mappings from libunistring), replace, find, count. */
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unictype.h>
#include <unistr.h>

#include "template/jinja_impl.h"

int js_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decode the code point at s[i], returning its byte length. */
static int cp_at(const char *s, size_t n, size_t i, ucs4_t *c) {
    int k = u8_mbtouc(c, (const uint8_t *)s + i, n - i);
    return k > 0 ? k : 1;
}

/* Start of the code point that ends at byte `end`. */
static size_t cp_before(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80) i--;
    return i;
}

static int in_set(ucs4_t c, const jstr *chars) {
    if (!chars) return js_isspace(c);
    for (size_t i = 0; i < chars->len;) {
        ucs4_t d;
        i += (size_t)cp_at(chars->p, chars->len, i, &d);
        if (d == c) return 1;
    }
    return 0;
}

jv js_strip(jrender *r, const jstr *s, const jstr *chars, int left, int right) {
    size_t a = 0, b = s->len;
    ucs4_t c;
    while (left && a < b) {
        int k = cp_at(s->p, s->len, a, &c);
        if (!in_set(c, chars)) break;
        a += (size_t)k;
    }
    while (right && b > a) {
        size_t start = cp_before(s->p, b);
        cp_at(s->p, s->len, start, &c);
        if (!in_set(c, chars)) break;
        b = start;
    }
    return jv_str(&r->arena, s->p + a, b - a);
}

static void push_piece(jrender *r, jlist *l, const char *p, size_t n) { jl_push(&r->arena, l, jv_str(&r->arena, p, n)); }

static void reverse_list(jlist *l) {
    for (size_t i = 0, j = l->n ? l->n - 1 : 0; i < j; i++, j--) {
        jv t = l->v[i];
        l->v[i] = l->v[j];
        l->v[j] = t;
    }
}

jlist *js_split(jrender *r, const jstr *s, const jstr *sep, int64_t maxsplit, int from_right) {
    jlist *l = jv_list(&r->arena, 0).u.l;
    const char *p = s->p;
    size_t n = s->len;
    if (sep) {
        if (sep->len == 0) jr_fail(r, NULL, "empty separator");
        if (!from_right) {
            size_t i = 0;
            while (maxsplit < 0 || (int64_t)l->n < maxsplit) {
                const char *hit = memmem(p + i, n - i, sep->p, sep->len);
                if (!hit) break;
                push_piece(r, l, p + i, (size_t)(hit - (p + i)));
                i = (size_t)(hit - p) + sep->len;
            }
            push_piece(r, l, p + i, n - i);
            return l;
        }
        size_t end = n;
        while (maxsplit < 0 || (int64_t)l->n < maxsplit) {
            size_t k = end;
            int found = 0;
            while (k >= sep->len) {
                if (memcmp(p + k - sep->len, sep->p, sep->len) == 0) {
                    found = 1;
                    break;
                }
                k--;
            }
            if (!found) break;
            push_piece(r, l, p + k, end - k);
            end = k - sep->len;
        }
        push_piece(r, l, p, end);
        reverse_list(l);
        return l;
    }
    /* whitespace split: runs of whitespace separate, ends ignored */
    ucs4_t c;
    if (!from_right) {
        size_t i = 0;
        for (;;) {
            while (i < n) {
                int k = cp_at(p, n, i, &c);
                if (!js_isspace(c)) break;
                i += (size_t)k;
            }
            if (i >= n) break;
            if (maxsplit >= 0 && (int64_t)l->n == maxsplit) {
                size_t e = n;
                while (e > i) {
                    size_t st = cp_before(p, e);
                    cp_at(p, n, st, &c);
                    if (!js_isspace(c)) break;
                    e = st;
                }
                push_piece(r, l, p + i, e - i);
                break;
            }
            size_t j = i;
            while (j < n) {
                int k = cp_at(p, n, j, &c);
                if (js_isspace(c)) break;
                j += (size_t)k;
            }
            push_piece(r, l, p + i, j - i);
            i = j;
        }
        return l;
    }
    size_t e = n;
    for (;;) {
        while (e > 0) {
            size_t st = cp_before(p, e);
            cp_at(p, n, st, &c);
            if (!js_isspace(c)) break;
            e = st;
        }
        if (e == 0) break;
        if (maxsplit >= 0 && (int64_t)l->n == maxsplit) {
            size_t b = 0;
            while (b < e) {
                int k = cp_at(p, n, b, &c);
                if (!js_isspace(c)) break;
                b += (size_t)k;
            }
            push_piece(r, l, p + b, e - b);
            break;
        }
        size_t b = e;
        while (b > 0) {
            size_t st = cp_before(p, b);
            cp_at(p, n, st, &c);
            if (js_isspace(c)) break;
            b = st;
        }
        push_piece(r, l, p + b, e - b);
        e = b;
    }
    reverse_list(l);
    return l;
}

static int line_break(ucs4_t c) {
    return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

jlist *js_splitlines(jrender *r, const jstr *s, int keepends) {
    jlist *l = jv_list(&r->arena, 0).u.l;
    size_t i = 0, start = 0;
    while (i < s->len) {
        ucs4_t c;
        int k = cp_at(s->p, s->len, i, &c);
        if (!line_break(c)) {
            i += (size_t)k;
            continue;
        }
        size_t eol = i + (size_t)k;
        if (c == '\r' && eol < s->len && s->p[eol] == '\n') eol++;
        push_piece(r, l, s->p + start, (keepends ? eol : i) - start);
        start = i = eol;
    }
    if (start < s->len) push_piece(r, l, s->p + start, s->len - start);
    return l;
}

static jv mapped(jrender *r, const char *p, size_t n,
                 uint8_t *(*map)(const uint8_t *, size_t, const char *, uninorm_t, uint8_t *, size_t *)) {
    size_t len = 0;
    uint8_t *out = map((const uint8_t *)p, n, NULL, NULL, NULL, &len);
    if (!out) jr_fail(r, NULL, "case mapping failed (invalid UTF-8)");
    jv v = jv_str(&r->arena, (const char *)out, len);
    free(out);
    return v;
}

jv js_case(jrender *r, const jstr *s, js_case_mode mode) {
    if (mode == JS_UPPER) return mapped(r, s->p, s->len, u8_toupper);
    if (mode == JS_LOWER) return mapped(r, s->p, s->len, u8_tolower);
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    int prev_cased = 0;
    for (size_t i = 0; i < s->len;) {
        ucs4_t c;
        int k = cp_at(s->p, s->len, i, &c);
        ucs4_t m;
        if (mode == JS_CAPITALIZE) m = i == 0 ? uc_totitle(c) : uc_tolower(c);
        else m = prev_cased ? uc_tolower(c) : uc_totitle(c);
        prev_cased = uc_is_property_cased(c);
        uint8_t enc[6];
        int w = u8_uctomb(enc, m, sizeof enc);
        if (w > 0) jb_put(&b, (const char *)enc, (size_t)w);
        i += (size_t)k;
    }
    return jv_str(&r->arena, b.p, b.len);
}

jv js_replace(jrender *r, const jstr *s, const jstr *old, const jstr *rep, int64_t count) {
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    size_t i = 0;
    int64_t done = 0;
    if (old->len == 0) { /* Python inserts rep between every code point */
        for (;;) {
            if (count < 0 || done < count) {
                jb_put(&b, rep->p, rep->len);
                done++;
            }
            if (i >= s->len) break;
            ucs4_t c;
            int k = cp_at(s->p, s->len, i, &c);
            jb_put(&b, s->p + i, (size_t)k);
            i += (size_t)k;
        }
        return jv_str(&r->arena, b.p, b.len);
    }
    while (count < 0 || done < count) {
        const char *hit = memmem(s->p + i, s->len - i, old->p, old->len);
        if (!hit) break;
        jb_put(&b, s->p + i, (size_t)(hit - (s->p + i)));
        jb_put(&b, rep->p, rep->len);
        i = (size_t)(hit - s->p) + old->len;
        done++;
    }
    jb_put(&b, s->p + i, s->len - i);
    return jv_str(&r->arena, b.p, b.len);
}

int64_t js_find(const jstr *s, const jstr *sub, int from_right) {
    if (sub->len > s->len) return -1;
    const char *hit = NULL;
    if (!from_right) {
        hit = sub->len ? memmem(s->p, s->len, sub->p, sub->len) : s->p;
    } else {
        for (size_t k = s->len - sub->len + 1; k-- > 0;)
            if (memcmp(s->p + k, sub->p, sub->len) == 0) {
                hit = s->p + k;
                break;
            }
    }
    return hit ? (int64_t)ju_count(s->p, (size_t)(hit - s->p)) : -1;
}

int64_t js_count(const jstr *s, const jstr *sub) {
    if (sub->len == 0) return (int64_t)ju_count(s->p, s->len) + 1;
    int64_t n = 0;
    for (const char *p = s->p, *end = s->p + s->len; (p = memmem(p, (size_t)(end - p), sub->p, sub->len)); p += sub->len) n++;
    return n;
}
