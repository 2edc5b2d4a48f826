/* gateway/json_text.c — see json_text.h. */
#include "gateway/json_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistr.h>

static int reserve(json_text *t, size_t more) {
    if (t->oom) return 0;
    if (t->len + more <= t->cap) return 1;
    size_t cap = t->cap ? t->cap : 1024; /* a log line without bodies fits */
    while (cap < t->len + more) cap *= 2;
    char *p = t->heap ? realloc(t->data, cap) : malloc(cap);
    if (!p) {
        t->oom = 1;
        return 0;
    }
    if (!t->heap && t->len) memcpy(p, t->data, t->len);
    t->data = p;
    t->cap = cap;
    t->heap = 1;
    return 1;
}

void json_text_raw(json_text *t, const char *s, size_t n) {
    if (!reserve(t, n)) return;
    memcpy(t->data + t->len, s, n);
    t->len += n;
}

/* What jansson writes for the characters it escapes; 0: as it is. */
static char short_escape(unsigned char c) {
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    }
    return 0;
}

void json_text_strn(json_text *t, const char *s, size_t n) {
    /* worst case: every byte a \u00XX or a U+FFFD, plus the quotes */
    if (!reserve(t, n * 6 + 2)) return;
    char *o = t->data + t->len;
    const uint8_t *p = (const uint8_t *)s, *end = p + n;
    *o++ = '"';
    while (p < end) {
        uint8_t c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            p++;
        } else if (c < 0x80) {
            char e = short_escape(c);
            *o++ = '\\';
            if (e) *o++ = e;
            else {
                memcpy(o, "u00", 3);
                o[3] = "0123456789ABCDEF"[c >> 4];
                o[4] = "0123456789ABCDEF"[c & 15];
                o += 5;
            }
            p++;
        } else {
            ucs4_t uc;
            int k = u8_mbtoucr(&uc, p, (size_t)(end - p));
            if (k > 0) {
                memcpy(o, p, (size_t)k);
                o += k;
                p += k;
            } else {
                memcpy(o, "\xEF\xBF\xBD", 3);
                o += 3;
                p++;
            }
        }
    }
    *o++ = '"';
    t->len = (size_t)(o - t->data);
}

void json_text_str(json_text *t, const char *s) {
    if (s) json_text_strn(t, s, strlen(s));
    else json_text_lit(t, "null");
}

void json_text_int(json_text *t, int64_t v) {
    char buf[24], *e = buf + sizeof buf, *b = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do *--b = (char)('0' + u % 10);
    while ((u /= 10));
    if (v < 0) *--b = '-';
    json_text_raw(t, b, (size_t)(e - b));
}

/* jansson's jsonp_dtostr at its default precision. */
void json_text_real(json_text *t, double v) {
    if (!isfinite(v)) {
        json_text_lit(t, "null");
        return;
    }
    char buf[40];
    int n = snprintf(buf, sizeof buf - 2, "%.17g", v);
    if (n < 0 || n >= (int)sizeof buf - 2) {
        json_text_lit(t, "null");
        return;
    }
    size_t len = (size_t)n;
    char *exp = memchr(buf, 'e', len);
    if (!exp && !memchr(buf, '.', len)) {
        memcpy(buf + len, ".0", 2);
        len += 2;
    }
    if (exp) {
        char *start = exp + 1, *end = start + 1;
        if (*start == '-') start++;
        while (*end == '0') end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf));
            len -= (size_t)(end - start);
        }
    }
    json_text_raw(t, buf, len);
}

void json_text_bool(json_text *t, int v) {
    if (v) json_text_lit(t, "true");
    else json_text_lit(t, "false");
}

void json_text_value(json_text *t, const json_t *v) {
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT: {
        json_text_lit(t, "{");
        const char *k;
        size_t kn;
        json_t *x;
        int first = 1;
        json_object_keylen_foreach((json_t *)v, k, kn, x) {
            if (!first) json_text_lit(t, ",");
            first = 0;
            json_text_strn(t, k, kn);
            json_text_lit(t, ":");
            json_text_value(t, x);
        }
        json_text_lit(t, "}");
        break;
    }
    case JSON_ARRAY: {
        json_text_lit(t, "[");
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            if (i) json_text_lit(t, ",");
            json_text_value(t, x);
        }
        json_text_lit(t, "]");
        break;
    }
    case JSON_STRING: json_text_strn(t, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: json_text_int(t, (int64_t)json_integer_value(v)); break;
    case JSON_REAL: json_text_real(t, json_real_value(v)); break;
    case JSON_TRUE: json_text_lit(t, "true"); break;
    case JSON_FALSE: json_text_lit(t, "false"); break;
    case JSON_NULL: json_text_lit(t, "null"); break;
    }
}

void json_text_free(json_text *t) {
    if (t->heap) free(t->data);
    *t = (json_text){0};
}
