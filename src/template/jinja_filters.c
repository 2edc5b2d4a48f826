/* template/jinja_filters.c — jinja2's built-in filters and tests, with HF's
 * tojson (json.dumps with ensure_ascii=False, insertion-ordered keys). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unictype.h>
#include <unistr.h>

#include "template/jinja_impl.h"

int jb_arg(const jargs *a, int index, const char *kw, jv *out) {
    if (index >= 0 && index < a->n) {
        *out = a->pos[index];
        return 1;
    }
    for (int i = 0; kw && i < a->nkw; i++)
        if (!strcmp(a->kwname[i], kw)) {
            *out = a->kw[i];
            return 1;
        }
    return 0;
}

static jv arg_or(const jargs *a, int index, const char *kw, jv fallback) {
    jv v;
    return jb_arg(a, index, kw, &v) ? v : fallback;
}

static int64_t int_arg(jrender *r, const jnode *at, const jargs *a, int index, const char *kw, int64_t fallback) {
    jv v;
    if (!jb_arg(a, index, kw, &v) || v.kind == JV_NONE) return fallback;
    if (v.kind == JV_INT) return v.u.i;
    if (v.kind == JV_BOOL) return v.u.b;
    jr_fail(r, at, "'%s' object cannot be interpreted as an integer", jv_type_name(v));
}

static jstr *str_arg(jrender *r, const jnode *at, const jargs *a, int index, const char *kw) {
    jv v;
    if (!jb_arg(a, index, kw, &v) || v.kind == JV_NONE) return NULL;
    if (v.kind != JV_STR) jr_fail(r, at, "expected a string argument, got '%s'", jv_type_name(v));
    return v.u.s;
}

jv jb_attribute(jrender *r, const jnode *at, jv x, jv path) {
    if (path.kind != JV_STR) return jr_getitem(r, at, x, path);
    const char *p = path.u.s->p;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        char *part = ja_strndup(&r->arena, p, n);
        char *end;
        long long idx = strtoll(part, &end, 10);
        x = n && !*end ? jr_getitem(r, at, x, jv_int(idx)) : jr_getitem(r, at, x, jv_cstr(&r->arena, part));
        if (!dot) return x;
        p = dot + 1;
    }
}

/* ---- tojson ------------------------------------------------------------- */

static void json_str_escaped(jbuf *b, const char *p, size_t n, int ensure_ascii) {
    jb_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"') jb_puts(b, "\\\""), i++;
        else if (c == '\\') jb_puts(b, "\\\\"), i++;
        else if (c == '\n') jb_puts(b, "\\n"), i++;
        else if (c == '\r') jb_puts(b, "\\r"), i++;
        else if (c == '\t') jb_puts(b, "\\t"), i++;
        else if (c == '\b') jb_puts(b, "\\b"), i++;
        else if (c == '\f') jb_puts(b, "\\f"), i++;
        else if (c < 0x20 || (ensure_ascii && c == 0x7f)) jb_printf(b, "\\u%04x", c), i++;
        else if (c < 0x80 || !ensure_ascii) {
            size_t j = i + 1;
            while (j < n && (unsigned char)p[j] >= 0x20 && p[j] != '"' && p[j] != '\\' &&
                   !(ensure_ascii && (unsigned char)p[j] >= 0x7f))
                j++;
            jb_put(b, p + i, j - i);
            i = j;
        } else {
            ucs4_t cp;
            int k = u8_mbtouc(&cp, (const uint8_t *)p + i, n - i);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                jb_printf(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                jb_printf(b, "\\u%04x", cp);
            }
            i += k > 0 ? (size_t)k : 1;
        }
    }
    jb_put(b, "\"", 1);
}

static void json_float(jbuf *b, double f) {
    if (isnan(f)) jb_puts(b, "NaN");
    else if (isinf(f)) jb_puts(b, f < 0 ? "-Infinity" : "Infinity");
    else jv_write_float(b, f);
}

static void json_newline(jbuf *b, const jjson_style *st, int level) {
    jb_put(b, "\n", 1);
    for (int i = 0; i < level; i++) jb_puts(b, st->indent);
}

static jstr *json_key(jrender *r, const jnode *at, jv k) {
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    switch (k.kind) {
    case JV_STR: return k.u.s;
    case JV_INT: jb_printf(&b, "%lld", (long long)k.u.i); break;
    case JV_FLOAT: json_float(&b, k.u.f); break;
    case JV_BOOL: jb_puts(&b, k.u.b ? "true" : "false"); break;
    case JV_NONE: jb_puts(&b, "null"); break;
    default: jr_fail(r, at, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
    return jv_str(&r->arena, b.p, b.len).u.s;
}

static int key_before(const jstr *a, const jstr *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    return c ? c < 0 : a->len < b->len;
}

void jb_tojson(jrender *r, const jnode *at, jbuf *b, jv x, const jjson_style *st, int level) {
    if (level > r->opt.max_depth) jr_fail(r, at, "value nested too deeply for tojson");
    switch (x.kind) {
    case JV_NONE: return jb_puts(b, "null");
    case JV_BOOL: return jb_puts(b, x.u.b ? "true" : "false");
    case JV_INT: return jb_printf(b, "%lld", (long long)x.u.i);
    case JV_FLOAT: return json_float(b, x.u.f);
    case JV_STR: return json_str_escaped(b, x.u.s->p, x.u.s->len, st->ensure_ascii);
    case JV_LIST:
    case JV_TUPLE:
        if (!x.u.l->n) return jb_puts(b, "[]");
        jb_put(b, "[", 1);
        for (size_t i = 0; i < x.u.l->n; i++) {
            if (i) jb_puts(b, st->item_sep);
            if (st->indent) json_newline(b, st, level + 1);
            jb_tojson(r, at, b, x.u.l->v[i], st, level + 1);
        }
        if (st->indent) json_newline(b, st, level);
        return jb_put(b, "]", 1);
    case JV_DICT: {
        size_t n = x.u.d->n;
        if (!n) return jb_puts(b, "{}");
        jstr **keys = ja_alloc(&r->arena, n * sizeof *keys);
        size_t *order = ja_alloc(&r->arena, n * sizeof *order);
        for (size_t i = 0; i < n; i++) {
            keys[i] = json_key(r, at, x.u.d->k[i]);
            order[i] = i;
        }
        if (st->sort_keys) /* insertion sort keeps it stable; dicts here are small */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && key_before(keys[order[j]], keys[order[j - 1]]); j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        jb_put(b, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) jb_puts(b, st->item_sep);
            if (st->indent) json_newline(b, st, level + 1);
            json_str_escaped(b, keys[order[i]]->p, keys[order[i]]->len, st->ensure_ascii);
            jb_puts(b, st->key_sep);
            jb_tojson(r, at, b, x.u.d->v[order[i]], st, level + 1);
        }
        if (st->indent) json_newline(b, st, level);
        return jb_put(b, "}", 1);
    }
    default:
        jr_fail(r, at, "Object of type %s is not JSON serializable",
                x.kind == JV_FUNC ? (x.u.fn->kind == JF_MACRO ? "Macro" : "function") : jv_type_name(x));
    }
}

/* HF's tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False). */
static jv f_tojson(jrender *r, const jnode *at, jv x, const jargs *a) {
    jjson_style st = {0};
    st.ensure_ascii = jv_truthy(arg_or(a, 0, "ensure_ascii", jv_bool(0)));
    st.sort_keys = jv_truthy(arg_or(a, 3, "sort_keys", jv_bool(0)));
    jv indent = arg_or(a, 1, "indent", JV_NONE_V);
    if (indent.kind == JV_INT || indent.kind == JV_BOOL) {
        int64_t n = indent.kind == JV_INT ? indent.u.i : indent.u.b;
        if (n > 64) jr_fail(r, at, "tojson indent too large");
        st.indent = ja_printf(&r->arena, "%*s", n > 0 ? (int)n : 0, "");
    } else if (indent.kind == JV_STR) {
        st.indent = indent.u.s->p;
    } else if (indent.kind != JV_NONE) {
        jr_fail(r, at, "tojson indent must be an integer or a string");
    }
    st.item_sep = st.indent ? "," : ", ";
    st.key_sep = ": ";
    jv seps = arg_or(a, 2, "separators", JV_NONE_V);
    if (seps.kind == JV_LIST || seps.kind == JV_TUPLE) {
        if (seps.u.l->n != 2 || seps.u.l->v[0].kind != JV_STR || seps.u.l->v[1].kind != JV_STR)
            jr_fail(r, at, "tojson separators must be two strings");
        st.item_sep = seps.u.l->v[0].u.s->p;
        st.key_sep = seps.u.l->v[1].u.s->p;
    }
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    jb_tojson(r, at, &b, x, &st, 0);
    return jv_str(&r->arena, b.p, b.len);
}

/* ---- string filters ----------------------------------------------------- */

static jstr *soft_str(jrender *r, jv x) { return jv_to_str(&r->arena, x); }

static jv f_trim(jrender *r, const jnode *at, jv x, const jargs *a) {
    return js_strip(r, soft_str(r, x), str_arg(r, at, a, 0, "chars"), 1, 1);
}
static jv f_upper(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    return js_case(r, soft_str(r, x), JS_UPPER);
}
static jv f_lower(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    return js_case(r, soft_str(r, x), JS_LOWER);
}
static jv f_capitalize(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    return js_case(r, soft_str(r, x), JS_CAPITALIZE);
}

/* jinja's title: split before runs of [-\s({[<], uppercase each piece's first
 * character and lowercase the rest. */
static jv f_title(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    jstr *s = soft_str(r, x);
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    int at_start = 1;
    for (size_t i = 0; i < s->len;) {
        ucs4_t c;
        int k = u8_mbtouc(&c, (const uint8_t *)s->p + i, s->len - i);
        if (k < 1) k = 1;
        int sep = js_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        jv one = jv_str(&r->arena, s->p + i, (size_t)k);
        jv m = sep ? one : js_case(r, one.u.s, at_start ? JS_UPPER : JS_LOWER);
        jb_put(&b, m.u.s->p, m.u.s->len);
        at_start = sep;
        i += (size_t)k;
    }
    return jv_str(&r->arena, b.p, b.len);
}

static jv f_replace(jrender *r, const jnode *at, jv x, const jargs *a) {
    jstr *old = str_arg(r, at, a, 0, "old"), *rep = str_arg(r, at, a, 1, "new");
    if (!old || !rep) jr_fail(r, at, "replace needs two string arguments");
    return js_replace(r, soft_str(r, x), old, rep, int_arg(r, at, a, 2, "count", -1));
}

static jv f_string(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    return (jv){.kind = JV_STR, .u.s = soft_str(r, x)};
}

static jv f_escape(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    jstr *s = soft_str(r, x);
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    for (size_t i = 0; i < s->len; i++) {
        switch (s->p[i]) {
        case '&': jb_puts(&b, "&amp;"); break;
        case '<': jb_puts(&b, "&lt;"); break;
        case '>': jb_puts(&b, "&gt;"); break;
        case '"': jb_puts(&b, "&#34;"); break;
        case '\'': jb_puts(&b, "&#39;"); break;
        default: jb_put(&b, s->p + i, 1);
        }
    }
    return jv_str(&r->arena, b.p, b.len);
}

static jv f_safe(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)r, (void)at, (void)a;
    return x;
}

/* indent(width=4, first=False, blank=False), jinja 3.1. */
static jv f_indent(jrender *r, const jnode *at, jv x, const jargs *a) {
    jv w = arg_or(a, 0, "width", jv_int(4));
    const char *ind;
    if (w.kind == JV_STR) ind = w.u.s->p;
    else {
        int64_t n = int_arg(r, at, a, 0, "width", 4);
        if (n > 256) jr_fail(r, at, "indent width too large");
        ind = ja_printf(&r->arena, "%*s", n > 0 ? (int)n : 0, "");
    }
    int first = jv_truthy(arg_or(a, 1, "first", jv_bool(0))), blank = jv_truthy(arg_or(a, 2, "blank", jv_bool(0)));
    jstr *s = soft_str(r, x);
    jbuf tmp = {.arena = &r->arena};
    jb_put(&tmp, s->p, s->len);
    jb_put(&tmp, "\n", 1);
    jlist *lines = js_splitlines(r, jv_str(&r->arena, tmp.p, tmp.len).u.s, 0);
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    if (first) jb_puts(&b, ind);
    for (size_t i = 0; i < lines->n; i++) {
        jstr *line = lines->v[i].u.s;
        if (i) {
            jb_put(&b, "\n", 1);
            if (blank || line->len) jb_puts(&b, ind);
        }
        jb_put(&b, line->p, line->len);
    }
    return jv_str(&r->arena, b.p, b.len);
}

static jv f_center(jrender *r, const jnode *at, jv x, const jargs *a) {
    jstr *s = soft_str(r, x);
    int64_t width = int_arg(r, at, a, 0, "width", 80), len = (int64_t)ju_count(s->p, s->len);
    if (width > (int64_t)r->opt.max_output) jr_fail(r, at, "center width too large");
    if (width <= len) return (jv){.kind = JV_STR, .u.s = s};
    int64_t marg = width - len, left = marg / 2 + (marg & width & 1);
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    for (int64_t i = 0; i < left; i++) jb_put(&b, " ", 1);
    jb_put(&b, s->p, s->len);
    for (int64_t i = 0; i < marg - left; i++) jb_put(&b, " ", 1);
    return jv_str(&r->arena, b.p, b.len);
}

static jv substr(jrender *r, const jstr *s, size_t from, size_t to) {
    size_t a = ju_offset(s->p, s->len, from), b = ju_offset(s->p, s->len, to);
    return jv_str(&r->arena, s->p + a, b - a);
}

/* truncate(length=255, killwords=False, end='...', leeway=5) */
static jv f_truncate(jrender *r, const jnode *at, jv x, const jargs *a) {
    jstr *s = soft_str(r, x);
    int64_t length = int_arg(r, at, a, 0, "length", 255), leeway = int_arg(r, at, a, 3, "leeway", 5);
    int killwords = jv_truthy(arg_or(a, 1, "killwords", jv_bool(0)));
    jstr *end = str_arg(r, at, a, 2, "end");
    jv end_v = end ? (jv){.kind = JV_STR, .u.s = end} : jv_cstr(&r->arena, "...");
    int64_t n = (int64_t)ju_count(s->p, s->len), nend = (int64_t)ju_count(end_v.u.s->p, end_v.u.s->len);
    if (length < nend) jr_fail(r, at, "expected length >= %lld, got %lld", (long long)nend, (long long)length);
    if (leeway < 0) jr_fail(r, at, "expected leeway >= 0, got %lld", (long long)leeway);
    if (n <= length + leeway) return (jv){.kind = JV_STR, .u.s = s};
    jv head = substr(r, s, 0, (size_t)(length - nend));
    if (!killwords) {
        jv space = jv_cstr(&r->arena, " ");
        head = js_split(r, head.u.s, space.u.s, 1, 1)->v[0];
    }
    return jr_binop(r, at, OP_ADD, head, end_v);
}

static jv f_wordcount(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    jstr *s = soft_str(r, x);
    int64_t n = 0;
    int in_word = 0;
    for (size_t i = 0; i < s->len;) {
        ucs4_t c;
        int k = u8_mbtouc(&c, (const uint8_t *)s->p + i, s->len - i);
        int w = c == '_' || uc_is_alnum(c);
        if (w && !in_word) n++;
        in_word = w;
        i += k > 0 ? (size_t)k : 1;
    }
    return jv_int(n);
}

static jv f_striptags(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at, (void)a;
    jstr *s = soft_str(r, x);
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    for (size_t i = 0; i < s->len;) {
        if (s->p[i] == '<' && i + 3 < s->len && !memcmp(s->p + i, "<!--", 4)) {
            const char *e = memmem(s->p + i, s->len - i, "-->", 3);
            if (e) {
                i = (size_t)(e - s->p) + 3;
                continue;
            }
        }
        if (s->p[i] == '<') {
            const char *e = memchr(s->p + i, '>', s->len - i);
            if (e) {
                i = (size_t)(e - s->p) + 1;
                continue;
            }
        }
        jb_put(&b, s->p + i, 1);
        i++;
    }
    jlist *words = js_split(r, jv_str(&r->arena, b.p, b.len).u.s, NULL, -1, 0);
    static const char *const ent[][2] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&#34;", "\""},
                                         {"&quot;", "\""}, {"&#39;", "'"}, {"&nbsp;", "\xc2\xa0"}};
    jbuf out = {.arena = &r->arena};
    jb_put(&out, "", 0);
    for (size_t i = 0; i < words->n; i++) {
        if (i) jb_put(&out, " ", 1);
        jv w = words->v[i];
        for (size_t k = 0; k < sizeof ent / sizeof ent[0]; k++)
            w = js_replace(r, w.u.s, jv_cstr(&r->arena, ent[k][0]).u.s, jv_cstr(&r->arena, ent[k][1]).u.s, -1);
        jb_put(&out, w.u.s->p, w.u.s->len);
    }
    return jv_str(&r->arena, out.p, out.len);
}

static jv f_format(jrender *r, const jnode *at, jv x, const jargs *a) {
    jv args;
    if (a->nkw) {
        args = jv_dict(&r->arena, (size_t)a->nkw);
        for (int i = 0; i < a->nkw; i++) jd_set(&r->arena, args.u.d, jv_cstr(&r->arena, a->kwname[i]), a->kw[i]);
    } else {
        args = jv_list(&r->arena, (size_t)a->n);
        args.kind = JV_TUPLE;
        for (int i = 0; i < a->n; i++) args.u.l->v[args.u.l->n++] = a->pos[i];
    }
    return jb_percent_format(r, at, (jv){.kind = JV_STR, .u.s = soft_str(r, x)}, args);
}

/* ---- sequences ---------------------------------------------------------- */

static jv f_length(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)a;
    switch (x.kind) {
    case JV_UNDEF: return jv_int(0);
    case JV_STR: return jv_int((int64_t)ju_count(x.u.s->p, x.u.s->len));
    case JV_LIST:
    case JV_TUPLE: return jv_int((int64_t)x.u.l->n);
    case JV_DICT: return jv_int((int64_t)x.u.d->n);
    default: jr_fail(r, at, "object of type '%s' has no len()", jv_type_name(x));
    }
}

static jlist *items_of(jrender *r, const jnode *at, jv x) { return jr_iterate(r, at, x); }

static jv f_list(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)a;
    jlist *src = items_of(r, at, x);
    jv l = jv_list(&r->arena, src->n);
    for (size_t i = 0; i < src->n; i++) l.u.l->v[l.u.l->n++] = src->v[i];
    return l;
}

static jv f_join(jrender *r, const jnode *at, jv x, const jargs *a) {
    jstr *sep = str_arg(r, at, a, 0, "d");
    jv attr;
    int has_attr = jb_arg(a, 1, "attribute", &attr) && attr.kind != JV_NONE;
    jlist *items = items_of(r, at, x);
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    for (size_t i = 0; i < items->n; i++) {
        if (i && sep) jb_put(&b, sep->p, sep->len);
        jv v = has_attr ? jb_attribute(r, at, items->v[i], attr) : items->v[i];
        jstr *s = soft_str(r, v);
        jb_put(&b, s->p, s->len);
    }
    return jv_str(&r->arena, b.p, b.len);
}

static jv f_first(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)a;
    jlist *items = items_of(r, at, x);
    return items->n ? items->v[0] : jv_undef("No first item, sequence was empty.");
}

static jv f_last(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)a;
    jlist *items = items_of(r, at, x);
    return items->n ? items->v[items->n - 1] : jv_undef("No last item, sequence was empty.");
}

static jv f_reverse(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)a;
    jlist *items = items_of(r, at, x);
    if (x.kind == JV_STR) {
        jbuf b = {.arena = &r->arena};
        jb_put(&b, "", 0);
        for (size_t i = items->n; i-- > 0;) jb_put(&b, items->v[i].u.s->p, items->v[i].u.s->len);
        return jv_str(&r->arena, b.p, b.len);
    }
    jv l = jv_list(&r->arena, items->n);
    for (size_t i = items->n; i-- > 0;) l.u.l->v[l.u.l->n++] = items->v[i];
    return l;
}

static jv f_items(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)a;
    if (x.kind == JV_UNDEF) return jv_list(&r->arena, 0);
    if (x.kind != JV_DICT) jr_fail(r, at, "Can only get item pairs from a mapping.");
    jv l = jv_list(&r->arena, x.u.d->n);
    for (size_t i = 0; i < x.u.d->n; i++) {
        jv t = jv_list(&r->arena, 2);
        t.kind = JV_TUPLE;
        t.u.l->v[0] = x.u.d->k[i];
        t.u.l->v[1] = x.u.d->v[i];
        t.u.l->n = 2;
        l.u.l->v[l.u.l->n++] = t;
    }
    return l;
}

static jv f_batch(jrender *r, const jnode *at, jv x, const jargs *a) {
    int64_t size = int_arg(r, at, a, 0, "linecount", 0);
    if (size <= 0) jr_fail(r, at, "batch size must be positive");
    jv fill;
    int has_fill = jb_arg(a, 1, "fill_with", &fill) && fill.kind != JV_NONE;
    jlist *items = items_of(r, at, x);
    jv out = jv_list(&r->arena, 0);
    jv cur = jv_list(&r->arena, 0);
    for (size_t i = 0; i < items->n; i++) {
        if ((int64_t)cur.u.l->n == size) {
            jl_push(&r->arena, out.u.l, cur);
            cur = jv_list(&r->arena, 0);
        }
        jl_push(&r->arena, cur.u.l, items->v[i]);
    }
    if (cur.u.l->n) {
        while (has_fill && (int64_t)cur.u.l->n < size) jl_push(&r->arena, cur.u.l, fill);
        jl_push(&r->arena, out.u.l, cur);
    }
    return out;
}

/* Sort key: the attribute if asked, lowercased when case-insensitive. */
static jv sort_key(jrender *r, const jnode *at, jv item, jv attr, int has_attr, int case_sensitive) {
    jv k = has_attr ? jb_attribute(r, at, item, attr) : item;
    if (!case_sensitive && k.kind == JV_STR) k = js_case(r, k.u.s, JS_LOWER);
    return k;
}

/* Stable merge sort of vals by keys (Python's sorted is stable too). */
static void merge_sort(jrender *r, const jnode *at, jv *keys, jv *vals, size_t n, int reverse) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(r, at, keys, vals, h, reverse);
    merge_sort(r, at, keys + h, vals + h, n - h, reverse);
    jv *tk = ja_alloc(&r->arena, n * sizeof(jv)), *tv = ja_alloc(&r->arena, n * sizeof(jv));
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        int take_right = reverse ? jr_compare(r, at, OP_LT, keys[i], keys[j]) : jr_compare(r, at, OP_LT, keys[j], keys[i]);
        if (take_right) tk[o] = keys[j], tv[o++] = vals[j++];
        else tk[o] = keys[i], tv[o++] = vals[i++];
    }
    while (i < h) tk[o] = keys[i], tv[o++] = vals[i++];
    while (j < n) tk[o] = keys[j], tv[o++] = vals[j++];
    memcpy(keys, tk, n * sizeof(jv));
    memcpy(vals, tv, n * sizeof(jv));
}

static jv sorted(jrender *r, const jnode *at, jlist *items, jv attr, int has_attr, int case_sensitive, int reverse) {
    size_t n = items->n;
    jv *keys = ja_alloc(&r->arena, (n + 1) * sizeof(jv));
    jv out = jv_list(&r->arena, n);
    for (size_t i = 0; i < n; i++) {
        keys[i] = sort_key(r, at, items->v[i], attr, has_attr, case_sensitive);
        out.u.l->v[i] = items->v[i];
    }
    out.u.l->n = n;
    merge_sort(r, at, keys, out.u.l->v, n, reverse);
    return out;
}

static jv f_sort(jrender *r, const jnode *at, jv x, const jargs *a) {
    jv attr;
    int has_attr = jb_arg(a, 2, "attribute", &attr) && attr.kind != JV_NONE;
    return sorted(r, at, items_of(r, at, x), attr, has_attr, jv_truthy(arg_or(a, 1, "case_sensitive", jv_bool(0))),
                  jv_truthy(arg_or(a, 0, "reverse", jv_bool(0))));
}

static jv f_dictsort(jrender *r, const jnode *at, jv x, const jargs *a) {
    jv pairs = f_items(r, at, x, a);
    jv by = arg_or(a, 1, "by", jv_cstr(&r->arena, "key"));
    int by_value = by.kind == JV_STR && !strcmp(by.u.s->p, "value");
    if (by.kind != JV_STR || (!by_value && strcmp(by.u.s->p, "key")))
        jr_fail(r, at, "You can only sort by either \"key\" or \"value\"");
    return sorted(r, at, pairs.u.l, jv_int(by_value), 1, jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(0))),
                  jv_truthy(arg_or(a, 2, "reverse", jv_bool(0))));
}

static jv f_unique(jrender *r, const jnode *at, jv x, const jargs *a) {
    int cs = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(0)));
    jv attr;
    int has_attr = jb_arg(a, 1, "attribute", &attr) && attr.kind != JV_NONE;
    jlist *items = items_of(r, at, x);
    jv out = jv_list(&r->arena, items->n), seen = jv_list(&r->arena, items->n);
    for (size_t i = 0; i < items->n; i++) {
        jv k = sort_key(r, at, items->v[i], attr, has_attr, cs);
        size_t j = 0;
        while (j < seen.u.l->n && !jv_equal(seen.u.l->v[j], k)) j++;
        if (j < seen.u.l->n) continue;
        seen.u.l->v[seen.u.l->n++] = k;
        out.u.l->v[out.u.l->n++] = items->v[i];
    }
    return out;
}

static jv min_max(jrender *r, const jnode *at, jv x, const jargs *a, int want_max) {
    int cs = jv_truthy(arg_or(a, 0, "case_sensitive", jv_bool(0)));
    jv attr;
    int has_attr = jb_arg(a, 1, "attribute", &attr) && attr.kind != JV_NONE;
    jlist *items = items_of(r, at, x);
    if (!items->n) return jv_undef("No aggregated item, sequence was empty.");
    size_t best = 0;
    jv best_key = sort_key(r, at, items->v[0], attr, has_attr, cs);
    for (size_t i = 1; i < items->n; i++) {
        jv k = sort_key(r, at, items->v[i], attr, has_attr, cs);
        if (jr_compare(r, at, OP_LT, want_max ? best_key : k, want_max ? k : best_key)) best = i, best_key = k;
    }
    return items->v[best];
}
static jv f_min(jrender *r, const jnode *at, jv x, const jargs *a) { return min_max(r, at, x, a, 0); }
static jv f_max(jrender *r, const jnode *at, jv x, const jargs *a) { return min_max(r, at, x, a, 1); }

static jv f_sum(jrender *r, const jnode *at, jv x, const jargs *a) {
    jv attr;
    int has_attr = jb_arg(a, 0, "attribute", &attr) && attr.kind != JV_NONE;
    jv total = arg_or(a, 1, "start", jv_int(0));
    jlist *items = items_of(r, at, x);
    for (size_t i = 0; i < items->n; i++)
        total = jr_binop(r, at, OP_ADD, total, has_attr ? jb_attribute(r, at, items->v[i], attr) : items->v[i]);
    return total;
}

/* select/reject/selectattr/rejectattr: args after the optional attribute
 * name are a test name and its arguments; no test means truthiness. */
static jv filter_items(jrender *r, const jnode *at, jv x, const jargs *a, int by_attr, int keep) {
    jlist *items = items_of(r, at, x);
    int first = by_attr ? 1 : 0;
    if (by_attr && a->n < 1) jr_fail(r, at, "missing attribute name");
    jargs targs = {.n = a->n > first + 1 ? a->n - first - 1 : 0, .pos = a->pos + first + 1, .nkw = a->nkw,
                   .kwname = a->kwname, .kw = a->kw};
    const char *test = NULL;
    if (a->n > first) {
        if (a->pos[first].kind != JV_STR) jr_fail(r, at, "test name must be a string");
        test = a->pos[first].u.s->p;
        if (!jb_has_test(test)) jr_fail(r, at, "No test named '%s'.", test);
    }
    jv out = jv_list(&r->arena, items->n);
    for (size_t i = 0; i < items->n; i++) {
        jv v = by_attr ? jb_attribute(r, at, items->v[i], a->pos[0]) : items->v[i];
        int t = test ? jb_test(r, at, test, v, &targs) : jv_truthy(v);
        if (t == keep) out.u.l->v[out.u.l->n++] = items->v[i];
    }
    return out;
}
static jv f_select(jrender *r, const jnode *at, jv x, const jargs *a) { return filter_items(r, at, x, a, 0, 1); }
static jv f_reject(jrender *r, const jnode *at, jv x, const jargs *a) { return filter_items(r, at, x, a, 0, 0); }
static jv f_selectattr(jrender *r, const jnode *at, jv x, const jargs *a) { return filter_items(r, at, x, a, 1, 1); }
static jv f_rejectattr(jrender *r, const jnode *at, jv x, const jargs *a) { return filter_items(r, at, x, a, 1, 0); }

static jv f_map(jrender *r, const jnode *at, jv x, const jargs *a) {
    jlist *items = items_of(r, at, x);
    jv out = jv_list(&r->arena, items->n);
    jv attr;
    if (jb_arg(a, -1, "attribute", &attr)) {
        jv def;
        int has_def = jb_arg(a, -1, "default", &def);
        for (size_t i = 0; i < items->n; i++) {
            jv v = jb_attribute(r, at, items->v[i], attr);
            out.u.l->v[out.u.l->n++] = v.kind == JV_UNDEF && has_def ? def : v;
        }
        return out;
    }
    if (a->n < 1 || a->pos[0].kind != JV_STR) jr_fail(r, at, "map needs a filter name or attribute=");
    const char *name = a->pos[0].u.s->p;
    if (!jb_has_filter(name)) jr_fail(r, at, "No filter named '%s'.", name);
    jargs rest = {.n = a->n - 1, .pos = a->pos + 1, .nkw = a->nkw, .kwname = a->kwname, .kw = a->kw};
    for (size_t i = 0; i < items->n; i++) out.u.l->v[out.u.l->n++] = jb_filter(r, at, name, items->v[i], &rest);
    return out;
}

static jv f_attr(jrender *r, const jnode *at, jv x, const jargs *a) {
    jstr *name = str_arg(r, at, a, 0, "name");
    if (!name) jr_fail(r, at, "attr needs an attribute name");
    /* Python attributes only: unlike x.name, no fallback to dict keys. */
    jv m;
    if (x.kind == JV_UNDEF || x.kind == JV_NS || x.kind == JV_LOOP) return jr_getattr(r, at, x, name->p);
    if (jb_method(r, at, x, name->p, &m)) return m;
    return jr_missing(r, x, (jv){.kind = JV_STR, .u.s = name});
}

static jv f_default(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)at;
    jv def = arg_or(a, 0, "default_value", jv_cstr(&r->arena, ""));
    int boolean = jv_truthy(arg_or(a, 1, "boolean", jv_bool(0)));
    if (x.kind == JV_UNDEF || (boolean && !jv_truthy(x))) return def;
    return x;
}

/* ---- numbers ------------------------------------------------------------ */

/* Python float(str): surrounding whitespace allowed, inf/nan, underscores not. */
static int parse_float(const jstr *s, double *out) {
    const char *p = s->p, *e = s->p + s->len;
    while (p < e && js_isspace((unsigned char)*p)) p++;
    while (e > p && js_isspace((unsigned char)e[-1])) e--;
    if (p == e) return 0;
    char buf[128];
    if ((size_t)(e - p) >= sizeof buf) return 0;
    memcpy(buf, p, (size_t)(e - p));
    buf[e - p] = 0;
    if (strchr(buf, 'x') || strchr(buf, 'X') || strchr(buf, '_')) return 0;
    char *stop;
    *out = strtod(buf, &stop);
    return *stop == 0;
}

static jv f_int(jrender *r, const jnode *at, jv x, const jargs *a) {
    jv def = arg_or(a, 0, "default", jv_int(0));
    int64_t base = int_arg(r, at, a, 1, "base", 10);
    switch (x.kind) {
    case JV_INT: return x;
    case JV_BOOL: return jv_int(x.u.b);
    case JV_FLOAT:
        if (!isfinite(x.u.f) || fabs(x.u.f) >= 9.2e18) return def;
        return jv_int((int64_t)x.u.f);
    case JV_STR: {
        char *buf = ja_strndup(&r->arena, x.u.s->p, x.u.s->len), *p = buf;
        while (*p && js_isspace((unsigned char)*p)) p++;
        char *stop;
        errno = 0;
        long long v = strtoll(p, &stop, (int)(base >= 2 && base <= 36 ? base : 10));
        while (*stop && js_isspace((unsigned char)*stop)) stop++;
        if (stop != p && !*stop && !errno) return jv_int(v);
        double f;
        if (parse_float(x.u.s, &f) && isfinite(f) && fabs(f) < 9.2e18) return jv_int((int64_t)f);
        return def;
    }
    default: return def;
    }
}

static jv f_float(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)r, (void)at;
    jv def = arg_or(a, 0, "default", jv_float(0));
    double f;
    switch (x.kind) {
    case JV_FLOAT: return x;
    case JV_INT: return jv_float((double)x.u.i);
    case JV_BOOL: return jv_float(x.u.b);
    case JV_STR: return parse_float(x.u.s, &f) ? jv_float(f) : def;
    default: return def;
    }
}

static jv f_abs(jrender *r, const jnode *at, jv x, const jargs *a) {
    (void)a;
    if (x.kind == JV_INT) {
        if (x.u.i == INT64_MIN) jr_fail(r, at, "integer result of abs is too large");
        return jv_int(x.u.i < 0 ? -x.u.i : x.u.i);
    }
    if (x.kind == JV_BOOL) return jv_int(x.u.b);
    if (x.kind == JV_FLOAT) return jv_float(fabs(x.u.f));
    jr_fail(r, at, "bad operand type for abs(): '%s'", jv_type_name(x));
}

/* round(precision=0, method='common'): common is Python's round (correctly
 * rounded, ties to even on the exact binary value, as printf does). */
static jv f_round(jrender *r, const jnode *at, jv x, const jargs *a) {
    int64_t prec = int_arg(r, at, a, 0, "precision", 0);
    jv method = arg_or(a, 1, "method", jv_cstr(&r->arena, "common"));
    if (method.kind != JV_STR ||
        (strcmp(method.u.s->p, "common") && strcmp(method.u.s->p, "ceil") && strcmp(method.u.s->p, "floor")))
        jr_fail(r, at, "method must be common, ceil or floor");
    if (x.kind != JV_INT && x.kind != JV_FLOAT && x.kind != JV_BOOL)
        jr_fail(r, at, "type %s doesn't define __round__ method", jv_type_name(x));
    if (prec > 30 || prec < -30) jr_fail(r, at, "round precision out of range");
    double v = x.kind == JV_FLOAT ? x.u.f : x.kind == JV_INT ? (double)x.u.i : x.u.b;
    if (strcmp(method.u.s->p, "common")) {
        double scale = pow(10, (double)prec);
        return jv_float((method.u.s->p[0] == 'c' ? ceil(v * scale) : floor(v * scale)) / scale);
    }
    if (x.kind != JV_FLOAT) return jv_int(x.kind == JV_INT ? x.u.i : x.u.b);
    if (!isfinite(v)) return x;
    if (prec >= 0) {
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, v);
        return jv_float(strtod(buf, NULL));
    }
    double scale = pow(10, (double)-prec);
    return jv_float(nearbyint(v / scale) * scale);
}

/* ---- the filter table --------------------------------------------------- */

typedef jv (*filter_fn)(jrender *r, const jnode *at, jv x, const jargs *a);
static const struct {
    const char *name;
    filter_fn fn;
} FILTERS[] = {
    {"abs", f_abs},         {"attr", f_attr},         {"batch", f_batch},       {"capitalize", f_capitalize},
    {"center", f_center},   {"count", f_length},      {"d", f_default},         {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape},        {"escape", f_escape},     {"first", f_first},
    {"float", f_float},     {"format", f_format},     {"indent", f_indent},     {"int", f_int},
    {"items", f_items},     {"join", f_join},         {"last", f_last},         {"length", f_length},
    {"list", f_list},       {"lower", f_lower},       {"map", f_map},           {"max", f_max},
    {"min", f_min},         {"reject", f_reject},     {"rejectattr", f_rejectattr}, {"replace", f_replace},
    {"reverse", f_reverse}, {"round", f_round},       {"safe", f_safe},         {"select", f_select},
    {"selectattr", f_selectattr}, {"sort", f_sort},   {"string", f_string},     {"striptags", f_striptags},
    {"sum", f_sum},         {"title", f_title},       {"tojson", f_tojson},     {"trim", f_trim},
    {"truncate", f_truncate}, {"unique", f_unique},   {"upper", f_upper},       {"wordcount", f_wordcount},
};

static filter_fn find_filter(const char *name) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof FILTERS[0]; i++)
        if (!strcmp(FILTERS[i].name, name)) return FILTERS[i].fn;
    return NULL;
}

int jb_has_filter(const char *name) { return find_filter(name) != NULL; }

jv jb_filter(jrender *r, const jnode *at, const char *name, jv x, const jargs *a) {
    filter_fn fn = find_filter(name);
    if (!fn) jr_fail(r, at, "No filter named '%s'.", name);
    return fn(r, at, x, a);
}

/* ---- tests -------------------------------------------------------------- */

static jv test_arg(jrender *r, const jnode *at, const jargs *a, const char *name) {
    jv v;
    if (!jb_arg(a, 0, NULL, &v)) jr_fail(r, at, "test '%s' needs an argument", name);
    return v;
}

static int is_cased_as(jrender *r, jv x, js_case_mode mode) {
    jstr *s = soft_str(r, x);
    int cased = 0;
    for (size_t i = 0; i < s->len;) {
        ucs4_t c;
        int k = u8_mbtouc(&c, (const uint8_t *)s->p + i, s->len - i);
        i += k > 0 ? (size_t)k : 1;
        if (mode == JS_LOWER ? (uc_is_property_uppercase(c) || uc_is_general_category(c, UC_CATEGORY_Lt))
                             : (uc_is_property_lowercase(c) || uc_is_general_category(c, UC_CATEGORY_Lt)))
            return 0;
        if (uc_is_property_cased(c)) cased = 1;
    }
    return cased;
}

static int64_t int_operand(jrender *r, const jnode *at, jv x) {
    if (x.kind == JV_UNDEF) jr_fail_undef(r, at, x);
    if (x.kind == JV_INT) return x.u.i;
    if (x.kind == JV_BOOL) return x.u.b;
    if (x.kind == JV_FLOAT && x.u.f == floor(x.u.f) && fabs(x.u.f) < 9e18) return (int64_t)x.u.f;
    jr_fail(r, at, "unsupported operand type(s) for %%: '%s' and 'int'", jv_type_name(x));
}

static const char *const TESTS[] = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "iterable", "sequence",
    "callable", "true", "false", "boolean", "in", "equalto", "eq", "==", "ne", "!=", "lt", "<", "lessthan", "le",
    "<=", "gt", ">", "greaterthan", "ge", ">=", "odd", "even", "divisibleby", "lower", "upper", "sameas", "escaped",
    "filter", "test", NULL,
};

int jb_has_test(const char *name) {
    for (int i = 0; TESTS[i]; i++)
        if (!strcmp(TESTS[i], name)) return 1;
    return 0;
}

int jb_test(jrender *r, const jnode *at, const char *n, jv x, const jargs *a) {
    if (!strcmp(n, "defined")) return x.kind != JV_UNDEF;
    if (!strcmp(n, "undefined")) return x.kind == JV_UNDEF;
    if (!strcmp(n, "none")) return x.kind == JV_NONE;
    if (!strcmp(n, "string")) return x.kind == JV_STR;
    if (!strcmp(n, "number")) return x.kind == JV_INT || x.kind == JV_FLOAT || x.kind == JV_BOOL;
    if (!strcmp(n, "integer")) return x.kind == JV_INT;
    if (!strcmp(n, "float")) return x.kind == JV_FLOAT;
    if (!strcmp(n, "mapping")) return x.kind == JV_DICT;
    if (!strcmp(n, "iterable") || !strcmp(n, "sequence"))
        return x.kind == JV_UNDEF || x.kind == JV_STR || x.kind == JV_LIST || x.kind == JV_TUPLE || x.kind == JV_DICT;
    if (!strcmp(n, "callable")) return x.kind == JV_FUNC;
    if (!strcmp(n, "true")) return x.kind == JV_BOOL && x.u.b;
    if (!strcmp(n, "false")) return x.kind == JV_BOOL && !x.u.b;
    if (!strcmp(n, "boolean")) return x.kind == JV_BOOL;
    if (!strcmp(n, "escaped")) return 0;
    if (!strcmp(n, "filter")) return x.kind == JV_STR && jb_has_filter(x.u.s->p);
    if (!strcmp(n, "test")) return x.kind == JV_STR && jb_has_test(x.u.s->p);
    if (!strcmp(n, "lower")) return is_cased_as(r, x, JS_LOWER);
    if (!strcmp(n, "upper")) return is_cased_as(r, x, JS_UPPER);
    if (!strcmp(n, "odd")) return int_operand(r, at, x) % 2 != 0;
    if (!strcmp(n, "even")) return int_operand(r, at, x) % 2 == 0;
    jv y = test_arg(r, at, a, n);
    if (!strcmp(n, "in")) return jr_compare(r, at, OP_IN, x, y);
    if (!strcmp(n, "sameas")) {
        if (x.kind != y.kind) return 0;
        if (x.kind == JV_NONE || x.kind == JV_UNDEF) return 1;
        if (x.kind == JV_BOOL) return x.u.b == y.u.b;
        if (x.kind == JV_LIST || x.kind == JV_TUPLE) return x.u.l == y.u.l;
        if (x.kind == JV_DICT || x.kind == JV_NS) return x.u.d == y.u.d;
        return jv_equal(x, y);
    }
    if (!strcmp(n, "divisibleby")) {
        int64_t d = int_operand(r, at, y);
        if (d == 0) jr_fail(r, at, "integer modulo by zero");
        return int_operand(r, at, x) % d == 0;
    }
    static const struct {
        const char *name;
        jop op;
    } cmp[] = {{"equalto", OP_EQ}, {"eq", OP_EQ}, {"==", OP_EQ}, {"ne", OP_NE}, {"!=", OP_NE}, {"lt", OP_LT},
               {"<", OP_LT}, {"lessthan", OP_LT}, {"le", OP_LE}, {"<=", OP_LE}, {"gt", OP_GT}, {">", OP_GT},
               {"greaterthan", OP_GT}, {"ge", OP_GE}, {">=", OP_GE}};
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++)
        if (!strcmp(n, cmp[i].name)) return jr_compare(r, at, cmp[i].op, x, y);
    jr_fail(r, at, "No test named '%s'.", n);
}
