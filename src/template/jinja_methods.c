/* template/jinja_methods.c — methods callable on values (str, dict, list,
 * loop), the global functions (range, dict, namespace, raise_exception,
 * strftime_now), and Python's str.format and % formatting.  As in HF's
 * ImmutableSandboxedEnvironment, methods that would mutate a list or dict
 * resolve to an undefined value that fails with a security error when used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unictype.h>
#include <unistr.h>

#include "template/jinja_impl.h"

static jv bound(jrender *r, const char *name, jv self, jbuiltin_fn fn) {
    jfunc *f = ja_alloc(&r->arena, sizeof *f);
    f->kind = JF_BUILTIN;
    f->name = name;
    f->self = self;
    f->fn = fn;
    return (jv){.kind = JV_FUNC, .u.fn = f};
}

static jv arg(jrender *r, const jnode *at, const jargs *a, int i, const char *kw, const char *method) {
    jv v;
    if (!jb_arg(a, i, kw, &v)) jr_fail(r, at, "%s() missing required argument", method);
    return v;
}

static jstr *str_param(jrender *r, const jnode *at, jv v, const char *method) {
    if (v.kind == JV_UNDEF) jr_fail_undef(r, at, v);
    if (v.kind != JV_STR) jr_fail(r, at, "%s() argument must be str, not %s", method, jv_type_name(v));
    return v.u.s;
}

static jstr *opt_str(jrender *r, const jnode *at, const jargs *a, int i, const char *kw, const char *method) {
    jv v;
    if (!jb_arg(a, i, kw, &v) || v.kind == JV_NONE) return NULL;
    return str_param(r, at, v, method);
}

static int64_t opt_int(jrender *r, const jnode *at, const jargs *a, int i, const char *kw, int64_t fallback) {
    jv v;
    if (!jb_arg(a, i, kw, &v) || v.kind == JV_NONE) return fallback;
    if (v.kind == JV_INT) return v.u.i;
    if (v.kind == JV_BOOL) return v.u.b;
    jr_fail(r, at, "'%s' object cannot be interpreted as an integer", jv_type_name(v));
}

static jv list_value(jlist *l) { return (jv){.kind = JV_LIST, .u.l = l}; }

/* ---- str methods -------------------------------------------------------- */

static jv m_strip(jrender *r, const jnode *at, jv self, const jargs *a) {
    return js_strip(r, self.u.s, opt_str(r, at, a, 0, "chars", "strip"), 1, 1);
}
static jv m_lstrip(jrender *r, const jnode *at, jv self, const jargs *a) {
    return js_strip(r, self.u.s, opt_str(r, at, a, 0, "chars", "lstrip"), 1, 0);
}
static jv m_rstrip(jrender *r, const jnode *at, jv self, const jargs *a) {
    return js_strip(r, self.u.s, opt_str(r, at, a, 0, "chars", "rstrip"), 0, 1);
}
static jv m_split(jrender *r, const jnode *at, jv self, const jargs *a) {
    return list_value(js_split(r, self.u.s, opt_str(r, at, a, 0, "sep", "split"), opt_int(r, at, a, 1, "maxsplit", -1), 0));
}
static jv m_rsplit(jrender *r, const jnode *at, jv self, const jargs *a) {
    return list_value(js_split(r, self.u.s, opt_str(r, at, a, 0, "sep", "rsplit"), opt_int(r, at, a, 1, "maxsplit", -1), 1));
}
static jv m_splitlines(jrender *r, const jnode *at, jv self, const jargs *a) {
    jv keep;
    (void)at;
    return list_value(js_splitlines(r, self.u.s, jb_arg(a, 0, "keepends", &keep) && jv_truthy(keep)));
}
static jv m_upper(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)at, (void)a;
    return js_case(r, self.u.s, JS_UPPER);
}
static jv m_lower(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)at, (void)a;
    return js_case(r, self.u.s, JS_LOWER);
}
static jv m_title(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)at, (void)a;
    return js_case(r, self.u.s, JS_TITLE);
}
static jv m_capitalize(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)at, (void)a;
    return js_case(r, self.u.s, JS_CAPITALIZE);
}
static jv m_replace(jrender *r, const jnode *at, jv self, const jargs *a) {
    jstr *old = str_param(r, at, arg(r, at, a, 0, NULL, "replace"), "replace");
    jstr *rep = str_param(r, at, arg(r, at, a, 1, NULL, "replace"), "replace");
    return js_replace(r, self.u.s, old, rep, opt_int(r, at, a, 2, "count", -1));
}

/* startswith/endswith: a str or a tuple of str. */
static int affix(jrender *r, const jnode *at, jv self, const jargs *a, int end) {
    jv p = arg(r, at, a, 0, NULL, end ? "endswith" : "startswith");
    if (p.kind == JV_TUPLE || p.kind == JV_LIST) {
        for (size_t i = 0; i < p.u.l->n; i++) {
            jargs one = {.n = 1, .pos = &p.u.l->v[i]};
            if (affix(r, at, self, &one, end)) return 1;
        }
        return 0;
    }
    if (p.kind != JV_STR)
        jr_fail(r, at, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith",
                jv_type_name(p));
    const jstr *s = self.u.s, *x = p.u.s;
    if (x->len > s->len) return 0;
    return memcmp(end ? s->p + s->len - x->len : s->p, x->p, x->len) == 0;
}
static jv m_startswith(jrender *r, const jnode *at, jv self, const jargs *a) { return jv_bool(affix(r, at, self, a, 0)); }
static jv m_endswith(jrender *r, const jnode *at, jv self, const jargs *a) { return jv_bool(affix(r, at, self, a, 1)); }

static jv m_find(jrender *r, const jnode *at, jv self, const jargs *a) {
    return jv_int(js_find(self.u.s, str_param(r, at, arg(r, at, a, 0, NULL, "find"), "find"), 0));
}
static jv m_rfind(jrender *r, const jnode *at, jv self, const jargs *a) {
    return jv_int(js_find(self.u.s, str_param(r, at, arg(r, at, a, 0, NULL, "rfind"), "rfind"), 1));
}
static jv m_str_count(jrender *r, const jnode *at, jv self, const jargs *a) {
    return jv_int(js_count(self.u.s, str_param(r, at, arg(r, at, a, 0, NULL, "count"), "count")));
}

static jv m_join(jrender *r, const jnode *at, jv self, const jargs *a) {
    jlist *items = jr_iterate(r, at, arg(r, at, a, 0, NULL, "join"));
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    for (size_t i = 0; i < items->n; i++) {
        if (items->v[i].kind != JV_STR)
            jr_fail(r, at, "sequence item %zu: expected str instance, %s found", i, jv_type_name(items->v[i]));
        if (i) jb_put(&b, self.u.s->p, self.u.s->len);
        jb_put(&b, items->v[i].u.s->p, items->v[i].u.s->len);
    }
    return jv_str(&r->arena, b.p, b.len);
}

/* isdigit/isalpha/isalnum/isspace/isupper/islower: all code points match and
 * the string is not empty. */
static int all_chars(jv self, int (*pred)(ucs4_t)) {
    const jstr *s = self.u.s;
    if (!s->len) return 0;
    for (size_t i = 0; i < s->len;) {
        ucs4_t c;
        int k = u8_mbtouc(&c, (const uint8_t *)s->p + i, s->len - i);
        if (!pred(c)) return 0;
        i += k > 0 ? (size_t)k : 1;
    }
    return 1;
}
static int is_digit_cp(ucs4_t c) { return uc_is_general_category(c, UC_CATEGORY_Nd) || (c >= 0xb2 && c <= 0xb3) || c == 0xb9; }
static int is_alpha_cp(ucs4_t c) { return uc_is_general_category(c, UC_CATEGORY_L); }
static int is_alnum_cp(ucs4_t c) { return is_alpha_cp(c) || uc_is_general_category(c, UC_CATEGORY_N); }
static int is_space_cp(ucs4_t c) { return js_isspace(c); }
static jv m_isdigit(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)r, (void)at, (void)a;
    return jv_bool(all_chars(self, is_digit_cp));
}
static jv m_isalpha(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)r, (void)at, (void)a;
    return jv_bool(all_chars(self, is_alpha_cp));
}
static jv m_isalnum(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)r, (void)at, (void)a;
    return jv_bool(all_chars(self, is_alnum_cp));
}
static jv m_isspace(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)r, (void)at, (void)a;
    return jv_bool(all_chars(self, is_space_cp));
}

/* str.format: {} {0} {name} with .attr / [key] lookups and !s / !r; format
 * specs are not supported. */
static jv m_format(jrender *r, const jnode *at, jv self, const jargs *a) {
    const jstr *s = self.u.s;
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    int auto_index = 0;
    for (size_t i = 0; i < s->len; i++) {
        char c = s->p[i];
        if (c == '}') {
            if (i + 1 < s->len && s->p[i + 1] == '}') i++;
            else jr_fail(r, at, "Single '}' encountered in format string");
            jb_put(&b, "}", 1);
            continue;
        }
        if (c != '{') {
            jb_put(&b, &c, 1);
            continue;
        }
        if (i + 1 < s->len && s->p[i + 1] == '{') {
            jb_put(&b, "{", 1);
            i++;
            continue;
        }
        const char *end = memchr(s->p + i, '}', s->len - i);
        if (!end) jr_fail(r, at, "Single '{' encountered in format string");
        char *field = ja_strndup(&r->arena, s->p + i + 1, (size_t)(end - (s->p + i + 1)));
        i = (size_t)(end - s->p);
        char conv = 0;
        char *bang = strchr(field, '!'), *colon = strchr(field, ':');
        if (colon) {
            if (colon[1]) jr_fail(r, at, "format specs in str.format are not supported");
            *colon = 0;
        }
        if (bang) {
            conv = bang[1];
            *bang = 0;
        }
        size_t nlen = strcspn(field, ".[");
        char *rest = field + nlen;
        char *name = ja_strndup(&r->arena, field, nlen);
        jv v;
        if (!*name) {
            if (auto_index >= a->n) jr_fail(r, at, "Replacement index %d out of range for positional args tuple", auto_index);
            v = a->pos[auto_index++];
        } else if (name[0] >= '0' && name[0] <= '9') {
            int k = atoi(name);
            if (k >= a->n) jr_fail(r, at, "Replacement index %d out of range for positional args tuple", k);
            v = a->pos[k];
        } else if (!jb_arg(a, -1, name, &v)) {
            jr_fail(r, at, "'%s'", name);
        }
        while (*rest) {
            if (*rest == '.') {
                size_t k = strcspn(rest + 1, ".[");
                v = jr_getattr(r, at, v, ja_strndup(&r->arena, rest + 1, k));
                rest += 1 + k;
            } else {
                char *close = strchr(rest, ']');
                if (!close) jr_fail(r, at, "Missing ']' in format string");
                char *key = ja_strndup(&r->arena, rest + 1, (size_t)(close - rest - 1));
                char *stop;
                long long idx = strtoll(key, &stop, 10);
                v = jr_getitem(r, at, v, *key && !*stop ? jv_int(idx) : jv_cstr(&r->arena, key));
                rest = close + 1;
            }
        }
        if (conv == 'r') jv_write_repr(&b, v);
        else jv_write_str(&b, v);
    }
    return jv_str(&r->arena, b.p, b.len);
}

/* str % args: %s %r %d %i %f %e %g %x %o %c %% with flags, width and
 * precision; args is a tuple, a dict (for %(name)s) or one value. */
jv jb_percent_format(jrender *r, const jnode *at, jv fmt, jv args) {
    const jstr *s = fmt.u.s;
    jbuf b = {.arena = &r->arena};
    jb_put(&b, "", 0);
    size_t next = 0;
    int used_tuple = args.kind == JV_TUPLE;
    for (size_t i = 0; i < s->len; i++) {
        if (s->p[i] != '%') {
            jb_put(&b, s->p + i, 1);
            continue;
        }
        if (++i >= s->len) jr_fail(r, at, "incomplete format");
        jv v;
        int have = 0;
        if (s->p[i] == '(') {
            const char *close = memchr(s->p + i, ')', s->len - i);
            if (!close || args.kind != JV_DICT) jr_fail(r, at, "format requires a mapping");
            jv key = jv_str(&r->arena, s->p + i + 1, (size_t)(close - s->p - i - 1));
            int k = jd_find(args.u.d, key);
            if (k < 0) jr_fail(r, at, "'%s'", key.u.s->p);
            v = args.u.d->v[k];
            have = 1;
            i = (size_t)(close - s->p) + 1;
        }
        char spec[32] = "%";
        size_t sl = 1;
        while (i < s->len && strchr("-+ #0123456789.", s->p[i]) && sl < sizeof spec - 4) spec[sl++] = s->p[i++];
        if (i >= s->len) jr_fail(r, at, "incomplete format");
        char conv = s->p[i];
        if (conv == '%') {
            jb_put(&b, "%", 1);
            continue;
        }
        if (!have) {
            if (used_tuple) {
                if (next >= args.u.l->n) jr_fail(r, at, "not enough arguments for format string");
                v = args.u.l->v[next++];
            } else {
                if (next++) jr_fail(r, at, "not enough arguments for format string");
                v = args;
            }
        }
        if (conv == 's' || conv == 'r' || conv == 'a') {
            jbuf t = {.arena = &r->arena};
            jb_put(&t, "", 0);
            if (conv == 's') jv_write_str(&t, v);
            else jv_write_repr(&t, v);
            spec[sl++] = 's';
            spec[sl] = 0;
            jb_printf(&b, spec, t.p);
        } else if (strchr("diouxXc", conv)) {
            if (v.kind == JV_FLOAT) v = jv_int((int64_t)v.u.f);
            if (v.kind != JV_INT && v.kind != JV_BOOL)
                jr_fail(r, at, "%%%c format: a real number is required, not %s", conv, jv_type_name(v));
            long long n = v.kind == JV_INT ? v.u.i : v.u.b;
            if (conv == 'c') {
                jb_put(&b, (char[]){(char)n}, 1);
                continue;
            }
            spec[sl++] = 'l';
            spec[sl++] = 'l';
            spec[sl++] = conv == 'i' || conv == 'u' ? 'd' : conv;
            spec[sl] = 0;
            jb_printf(&b, spec, n);
        } else if (strchr("eEfFgG", conv)) {
            if (v.kind != JV_INT && v.kind != JV_BOOL && v.kind != JV_FLOAT)
                jr_fail(r, at, "must be real number, not %s", jv_type_name(v));
            double d = v.kind == JV_FLOAT ? v.u.f : v.kind == JV_INT ? (double)v.u.i : v.u.b;
            spec[sl++] = conv;
            spec[sl] = 0;
            jb_printf(&b, spec, d);
        } else {
            jr_fail(r, at, "unsupported format character '%c'", conv);
        }
    }
    if (used_tuple && next < args.u.l->n) jr_fail(r, at, "not all arguments converted during string formatting");
    return jv_str(&r->arena, b.p, b.len);
}

/* ---- dict, list and loop methods ---------------------------------------- */

static jv m_items(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)a;
    return jb_filter(r, at, "items", self, &(jargs){0});
}
static jv m_keys(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)a;
    return list_value(jr_iterate(r, at, self));
}
static jv m_values(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)at, (void)a;
    jv l = jv_list(&r->arena, self.u.d->n);
    for (size_t i = 0; i < self.u.d->n; i++) l.u.l->v[l.u.l->n++] = self.u.d->v[i];
    return l;
}
static jv m_get(jrender *r, const jnode *at, jv self, const jargs *a) {
    int k = jd_find(self.u.d, arg(r, at, a, 0, NULL, "get"));
    jv def;
    return k >= 0 ? self.u.d->v[k] : jb_arg(a, 1, NULL, &def) ? def : JV_NONE_V;
}
static jv m_copy(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)at, (void)a;
    if (self.kind == JV_DICT) {
        jv d = jv_dict(&r->arena, self.u.d->n);
        for (size_t i = 0; i < self.u.d->n; i++) jd_set(&r->arena, d.u.d, self.u.d->k[i], self.u.d->v[i]);
        return d;
    }
    jv l = jv_list(&r->arena, self.u.l->n);
    for (size_t i = 0; i < self.u.l->n; i++) l.u.l->v[l.u.l->n++] = self.u.l->v[i];
    return l;
}
static jv m_index(jrender *r, const jnode *at, jv self, const jargs *a) {
    jv x = arg(r, at, a, 0, NULL, "index");
    for (size_t i = 0; i < self.u.l->n; i++)
        if (jv_equal(self.u.l->v[i], x)) return jv_int((int64_t)i);
    jbuf b = {.arena = &r->arena};
    jv_write_repr(&b, x);
    jr_fail(r, at, "%s is not in list", b.p ? b.p : "");
}
static jv m_list_count(jrender *r, const jnode *at, jv self, const jargs *a) {
    jv x = arg(r, at, a, 0, NULL, "count");
    int64_t n = 0;
    for (size_t i = 0; i < self.u.l->n; i++) n += jv_equal(self.u.l->v[i], x);
    return jv_int(n);
}
static jv m_cycle(jrender *r, const jnode *at, jv self, const jargs *a) {
    if (a->n == 0) jr_fail(r, at, "no items for cycling given");
    (void)r;
    return a->pos[self.u.loop->index0 % (size_t)a->n];
}

typedef struct method {
    const char *name;
    jbuiltin_fn fn;
} method;

static const method STR_METHODS[] = {
    {"strip", m_strip},     {"lstrip", m_lstrip},   {"rstrip", m_rstrip},       {"split", m_split},
    {"rsplit", m_rsplit},   {"splitlines", m_splitlines}, {"upper", m_upper},   {"lower", m_lower},
    {"title", m_title},     {"capitalize", m_capitalize}, {"replace", m_replace}, {"startswith", m_startswith},
    {"endswith", m_endswith}, {"find", m_find},     {"rfind", m_rfind},         {"count", m_str_count},
    {"join", m_join},       {"format", m_format},   {"isdigit", m_isdigit},     {"isalpha", m_isalpha},
    {"isalnum", m_isalnum}, {"isspace", m_isspace}, {NULL, NULL},
};
static const method DICT_METHODS[] = {
    {"items", m_items}, {"keys", m_keys}, {"values", m_values}, {"get", m_get}, {"copy", m_copy}, {NULL, NULL},
};
static const method LIST_METHODS[] = {{"index", m_index}, {"count", m_list_count}, {"copy", m_copy}, {NULL, NULL}};
static const method LOOP_METHODS[] = {{"cycle", m_cycle}, {NULL, NULL}};

static const char *const DICT_MUTATORS[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
static const char *const LIST_MUTATORS[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", NULL};

int jb_method(jrender *r, const jnode *at, jv obj, const char *name, jv *out) {
    (void)at;
    const method *table = obj.kind == JV_STR ? STR_METHODS
                        : obj.kind == JV_DICT ? DICT_METHODS
                        : obj.kind == JV_LIST || obj.kind == JV_TUPLE ? LIST_METHODS
                        : obj.kind == JV_LOOP ? LOOP_METHODS
                                               : NULL;
    for (int i = 0; table && table[i].name; i++)
        if (!strcmp(table[i].name, name)) {
            if (obj.kind == JV_TUPLE && table[i].fn == m_copy) break;
            *out = bound(r, table[i].name, obj, table[i].fn);
            return 1;
        }
    const char *const *mutators = obj.kind == JV_DICT ? DICT_MUTATORS : obj.kind == JV_LIST ? LIST_MUTATORS : NULL;
    for (int i = 0; mutators && mutators[i]; i++)
        if (!strcmp(mutators[i], name)) {
            *out = jv_undef(ja_printf(&r->arena, "access to attribute '%s' of '%s' object is unsafe.", name,
                                      jv_type_name(obj)));
            return 1;
        }
    return 0;
}

/* ---- globals ------------------------------------------------------------ */

#define MAX_RANGE 100000 /* jinja2's sandbox limit */

static jv g_range(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)self;
    if (a->n < 1 || a->n > 3 || a->nkw) jr_fail(r, at, "range expected 1 to 3 integer arguments");
    int64_t v[3];
    for (int i = 0; i < a->n; i++) {
        jv x = a->pos[i];
        if (x.kind == JV_UNDEF) jr_fail_undef(r, at, x);
        if (x.kind != JV_INT && x.kind != JV_BOOL)
            jr_fail(r, at, "'%s' object cannot be interpreted as an integer", jv_type_name(x));
        v[i] = x.kind == JV_INT ? x.u.i : x.u.b;
    }
    int64_t start = a->n > 1 ? v[0] : 0, stop = a->n > 1 ? v[1] : v[0], step = a->n > 2 ? v[2] : 1;
    if (step == 0) jr_fail(r, at, "range() arg 3 must not be zero");
    long double count = step > 0 ? (stop > start ? ((long double)stop - start + step - 1) / step : 0)
                                 : (start > stop ? ((long double)start - stop - step - 1) / -step : 0);
    if (count > MAX_RANGE)
        jr_fail(r, at, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", MAX_RANGE);
    jv l = jv_list(&r->arena, (size_t)count);
    for (int64_t i = 0, x = start; i < (int64_t)count; i++, x += step) l.u.l->v[l.u.l->n++] = jv_int(x);
    return l;
}

static jv kwargs_dict(jrender *r, const jnode *at, const jargs *a, const char *fn) {
    jv d = jv_dict(&r->arena, (size_t)a->nkw);
    if (a->n > 1) jr_fail(r, at, "%s expected at most 1 positional argument, got %d", fn, a->n);
    if (a->n == 1) {
        if (a->pos[0].kind != JV_DICT) jr_fail(r, at, "%s() positional argument must be a mapping", fn);
        for (size_t i = 0; i < a->pos[0].u.d->n; i++) jd_set(&r->arena, d.u.d, a->pos[0].u.d->k[i], a->pos[0].u.d->v[i]);
    }
    for (int i = 0; i < a->nkw; i++) jd_set(&r->arena, d.u.d, jv_cstr(&r->arena, a->kwname[i]), a->kw[i]);
    return d;
}

static jv g_dict(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)self;
    return kwargs_dict(r, at, a, "dict");
}

static jv g_namespace(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)self;
    jv ns = kwargs_dict(r, at, a, "namespace");
    ns.kind = JV_NS;
    return ns;
}

static jv g_raise_exception(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)self;
    jv msg;
    if (!jb_arg(a, 0, "message", &msg)) jr_fail(r, at, "raise_exception() missing 1 required positional argument: 'message'");
    jstr *s = jv_to_str(&r->arena, msg);
    jr_fail(r, at, "%s", s->p);
}

static jv g_strftime_now(jrender *r, const jnode *at, jv self, const jargs *a) {
    (void)self;
    jv fmt;
    if (!jb_arg(a, 0, "format", &fmt) || fmt.kind != JV_STR) jr_fail(r, at, "strftime_now() needs a format string");
    time_t now = r->opt.now ? r->opt.now : time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char buf[512];
    size_t n = fmt.u.s->len ? strftime(buf, sizeof buf, fmt.u.s->p, &tm) : 0;
    if (n == 0 && fmt.u.s->len) jr_fail(r, at, "strftime_now() result too long or empty");
    return jv_str(&r->arena, buf, n);
}

void jb_install_globals(jrender *r, jdict *globals) {
    static const method G[] = {{"range", g_range},
                               {"dict", g_dict},
                               {"namespace", g_namespace},
                               {"raise_exception", g_raise_exception},
                               {"strftime_now", g_strftime_now},
                               {NULL, NULL}};
    for (int i = 0; G[i].name; i++) jd_set(&r->arena, globals, jv_cstr(&r->arena, G[i].name), bound(r, G[i].name, JV_NONE_V, G[i].fn));
}
