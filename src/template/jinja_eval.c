/* template/jinja_eval.c — parse and render entry points, and the evaluator:
 * scopes, statements, operators, attribute/item access and calls with
 * jinja2's semantics under the immutable sandbox (mutating methods refused,
 * undefined values that fail only when used). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_impl.h"

struct jinja_template {
    jarena arena;
    jnode *root;
    char *name;
};

enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

#define RENDER_MEMORY_LIMIT ((size_t)256 << 20)

/* ---- failure ------------------------------------------------------------ */

void jr_fail(jrender *r, const jnode *at, const char *fmt, ...) {
    char msg[BS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jfail_at(&r->fail, BS_EINVAL, at ? at->line : 0, at ? at->col : 0, "%s", msg);
}

void jr_fail_undef(jrender *r, const jnode *at, jv u) {
    jr_fail(r, at, "%s", u.u.undef ? u.u.undef : "value is undefined");
}

static void check_depth(jrender *r, const jnode *at) {
    if (r->depth > r->opt.max_depth) jr_fail(r, at, "maximum recursion depth exceeded (%d nested calls)", r->opt.max_depth);
}

static void count_iteration(jrender *r, const jnode *at) {
    if (++r->iterations > r->opt.max_iterations)
        jr_fail(r, at, "more than %ld loop iterations", r->opt.max_iterations);
}

static void emit_out(jrender *r, const jnode *at, const char *s, size_t n) {
    r->out_total += n;
    if (r->out_total > r->opt.max_output) jr_fail(r, at, "output larger than %zu bytes", r->opt.max_output);
    jb_put(r->out, s, n);
}

/* ---- scopes ------------------------------------------------------------- */

static jframe *push_frame(jrender *r, jframe *parent) {
    jframe *f = ja_alloc(&r->arena, sizeof *f);
    f->parent = parent;
    return f;
}

static jv lookup(jrender *r, jframe *f, const char *name) {
    jv v;
    for (; f; f = f->parent)
        if (jd_get_str(&f->vars, name, &v)) return v;
    return jv_undef(ja_printf(&r->arena, "'%s' is undefined", name));
}

static void assign(jrender *r, jframe *f, const char *name, jv value) { jd_set_str(&r->arena, &f->vars, name, value); }

/* ---- attribute and item access ------------------------------------------ */

static const char *object_repr(jrender *r, jv obj) {
    if (obj.kind == JV_NONE) return "None";
    if (obj.kind == JV_NS) return "jinja2.utils.Namespace object";
    if (obj.kind == JV_LOOP) return "jinja2.runtime.LoopContext object";
    return ja_printf(&r->arena, "%s object", jv_type_name(obj));
}

jv jr_missing(jrender *r, jv obj, jv key) {
    if (key.kind == JV_STR)
        return jv_undef(ja_printf(&r->arena, "'%s' has no attribute '%s'", object_repr(r, obj), key.u.s->p));
    jbuf b = {.arena = &r->arena};
    if (key.kind == JV_UNDEF) jb_puts(&b, "Undefined");
    else jv_write_repr(&b, key);
    return jv_undef(ja_printf(&r->arena, "%s has no element %s", object_repr(r, obj), b.p));
}

static jv loop_attr(jrender *r, const jnode *at, jloop *l, const char *name) {
    int64_t n = (int64_t)l->items->n, i = (int64_t)l->index0;
    if (!strcmp(name, "index")) return jv_int(i + 1);
    if (!strcmp(name, "index0")) return jv_int(i);
    if (!strcmp(name, "revindex")) return jv_int(n - i);
    if (!strcmp(name, "revindex0")) return jv_int(n - i - 1);
    if (!strcmp(name, "first")) return jv_bool(i == 0);
    if (!strcmp(name, "last")) return jv_bool(i == n - 1);
    if (!strcmp(name, "length")) return jv_int(n);
    if (!strcmp(name, "depth")) return jv_int(1);
    if (!strcmp(name, "depth0")) return jv_int(0);
    if (!strcmp(name, "previtem")) return i > 0 ? l->items->v[i - 1] : jv_undef("there is no previous item");
    if (!strcmp(name, "nextitem")) return i + 1 < n ? l->items->v[i + 1] : jv_undef("there is no next item");
    jv m;
    if (jb_method(r, at, (jv){.kind = JV_LOOP, .u.loop = l}, name, &m)) return m;
    return jr_missing(r, (jv){.kind = JV_LOOP}, jv_cstr(&r->arena, name));
}

jv jr_getattr(jrender *r, const jnode *at, jv obj, const char *name) {
    if (obj.kind == JV_UNDEF) jr_fail_undef(r, at, obj);
    if (obj.kind == JV_LOOP) return loop_attr(r, at, obj.u.loop, name);
    jv v;
    if (obj.kind == JV_NS) return jd_get_str(obj.u.d, name, &v) ? v : jr_missing(r, obj, jv_cstr(&r->arena, name));
    if (jb_method(r, at, obj, name, &v)) return v;
    if (obj.kind == JV_DICT && jd_get_str(obj.u.d, name, &v)) return v;
    return jr_missing(r, obj, jv_cstr(&r->arena, name));
}

/* 1 with *out set, 0 when key is not an integer, -1 when out of range. */
static int index_of(jv key, size_t n, size_t *out) {
    if (key.kind != JV_INT && key.kind != JV_BOOL) return 0;
    int64_t i = key.kind == JV_INT ? key.u.i : key.u.b;
    if (i < 0) i += (int64_t)n;
    if (i < 0 || i >= (int64_t)n) return -1;
    *out = (size_t)i;
    return 1;
}

jv jr_getitem(jrender *r, const jnode *at, jv obj, jv key) {
    if (obj.kind == JV_UNDEF) jr_fail_undef(r, at, obj);
    size_t i;
    switch (obj.kind) {
    case JV_DICT: {
        int k = jd_find(obj.u.d, key);
        if (k >= 0) return obj.u.d->v[k];
        break;
    }
    case JV_LIST:
    case JV_TUPLE: {
        int found = index_of(key, obj.u.l->n, &i);
        if (found > 0) return obj.u.l->v[i];
        if (found < 0) return jr_missing(r, obj, key);
        break;
    }
    case JV_STR: {
        size_t n = ju_count(obj.u.s->p, obj.u.s->len);
        int found = index_of(key, n, &i);
        if (found > 0) {
            size_t a = ju_offset(obj.u.s->p, obj.u.s->len, i), b = ju_offset(obj.u.s->p, obj.u.s->len, i + 1);
            return jv_str(&r->arena, obj.u.s->p + a, b - a);
        }
        if (found < 0) return jr_missing(r, obj, key);
        break;
    }
    default: break;
    }
    if (key.kind == JV_STR) {
        if (obj.kind == JV_LOOP || obj.kind == JV_NS) return jr_getattr(r, at, obj, key.u.s->p);
        jv m;
        if (jb_method(r, at, obj, key.u.s->p, &m)) return m;
    }
    return jr_missing(r, obj, key);
}

static int64_t slice_bound(jrender *r, const jnode *at, jv v) {
    if (v.kind == JV_INT) return v.u.i;
    if (v.kind == JV_BOOL) return v.u.b;
    jr_fail(r, at, "slice indices must be integers or None or have an __index__ method");
}

static jv slice(jrender *r, const jnode *at, jv obj, jv start_v, jv stop_v, jv step_v) {
    if (obj.kind == JV_UNDEF) jr_fail_undef(r, at, obj);
    if (obj.kind != JV_LIST && obj.kind != JV_TUPLE && obj.kind != JV_STR)
        jr_fail(r, at, "'%s' object is not subscriptable", jv_type_name(obj));
    int64_t len = obj.kind == JV_STR ? (int64_t)ju_count(obj.u.s->p, obj.u.s->len) : (int64_t)obj.u.l->n;
    int64_t step = step_v.kind == JV_NONE ? 1 : slice_bound(r, at, step_v);
    if (step == 0) jr_fail(r, at, "slice step cannot be zero");
    int64_t start, stop;
    if (start_v.kind == JV_NONE) start = step > 0 ? 0 : len - 1;
    else {
        start = slice_bound(r, at, start_v);
        if (start < 0) start = start + len < 0 ? (step < 0 ? -1 : 0) : start + len;
        else if (start >= len) start = step < 0 ? len - 1 : len;
    }
    if (stop_v.kind == JV_NONE) stop = step > 0 ? len : -1;
    else {
        stop = slice_bound(r, at, stop_v);
        if (stop < 0) stop = stop + len < 0 ? (step < 0 ? -1 : 0) : stop + len;
        else if (stop >= len) stop = step < 0 ? len - 1 : len;
    }
    int64_t count = step > 0 ? (start < stop ? (stop - start - 1) / step + 1 : 0)
                             : (stop < start ? (start - stop - 1) / (-step) + 1 : 0);
    if (obj.kind == JV_STR) {
        const char *s = obj.u.s->p;
        size_t n = obj.u.s->len;
        size_t *off = ja_alloc(&r->arena, ((size_t)len + 1) * sizeof *off);
        for (size_t b = 0, k = 0; b < n; b++)
            if (((unsigned char)s[b] & 0xc0) != 0x80) off[k++] = b;
        off[len] = n;
        jbuf out = {.arena = &r->arena};
        jb_put(&out, "", 0);
        for (int64_t k = 0, i = start; k < count; k++, i += step)
            jb_put(&out, s + off[i], off[i + 1] - off[i]);
        return jv_str(&r->arena, out.p, out.len);
    }
    jv res = jv_list(&r->arena, (size_t)count);
    res.kind = obj.kind;
    for (int64_t k = 0, i = start; k < count; k++, i += step) res.u.l->v[res.u.l->n++] = obj.u.l->v[i];
    return res;
}

/* ---- iteration, comparison, arithmetic ---------------------------------- */

jlist *jr_iterate(jrender *r, const jnode *at, jv x) {
    switch (x.kind) {
    case JV_UNDEF: return jv_list(&r->arena, 0).u.l;
    case JV_LIST:
    case JV_TUPLE: return x.u.l;
    case JV_DICT: {
        jlist *l = jv_list(&r->arena, x.u.d->n).u.l;
        for (size_t i = 0; i < x.u.d->n; i++) l->v[l->n++] = x.u.d->k[i];
        return l;
    }
    case JV_STR: {
        jlist *l = jv_list(&r->arena, x.u.s->len).u.l;
        const char *s = x.u.s->p;
        for (size_t i = 0; i < x.u.s->len;) {
            size_t j = i + 1;
            while (j < x.u.s->len && ((unsigned char)s[j] & 0xc0) == 0x80) j++;
            l->v[l->n++] = jv_str(&r->arena, s + i, j - i);
            i = j;
        }
        return l;
    }
    default: jr_fail(r, at, "'%s' object is not iterable", jv_type_name(x));
    }
}

static int is_num(jv x) { return x.kind == JV_INT || x.kind == JV_FLOAT || x.kind == JV_BOOL; }
static double num(jv x) { return x.kind == JV_FLOAT ? x.u.f : x.kind == JV_INT ? (double)x.u.i : x.u.b; }
static int is_intlike(jv x) { return x.kind == JV_INT || x.kind == JV_BOOL; }
static int64_t ival(jv x) { return x.kind == JV_INT ? x.u.i : x.u.b; }

static const char *op_symbol(jop op) {
    static const char *s[] = {"+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return s[op];
}

static int order(jrender *r, const jnode *at, jop op, jv a, jv b) {
    if (a.kind == JV_UNDEF) jr_fail_undef(r, at, a);
    if (b.kind == JV_UNDEF) jr_fail_undef(r, at, b);
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) return ival(a) < ival(b) ? -1 : ival(a) > ival(b);
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.kind == JV_STR && b.kind == JV_STR) {
        size_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->p, b.u.s->p, n);
        if (c) return c < 0 ? -1 : 1;
        return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
    }
    if ((a.kind == JV_LIST || a.kind == JV_TUPLE) && a.kind == b.kind) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i])) return order(r, at, op, a.u.l->v[i], b.u.l->v[i]);
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    }
    jr_fail(r, at, "'%s' not supported between instances of '%s' and '%s'", op_symbol(op), jv_type_name(a),
            jv_type_name(b));
}

static int contains(jrender *r, const jnode *at, jv item, jv c) {
    switch (c.kind) {
    case JV_UNDEF: return 0;
    case JV_STR:
        if (item.kind == JV_UNDEF) jr_fail_undef(r, at, item);
        if (item.kind != JV_STR)
            jr_fail(r, at, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        return item.u.s->len == 0 || memmem(c.u.s->p, c.u.s->len, item.u.s->p, item.u.s->len) != NULL;
    case JV_LIST:
    case JV_TUPLE:
        for (size_t i = 0; i < c.u.l->n; i++)
            if (jv_equal(c.u.l->v[i], item)) return 1;
        return 0;
    case JV_DICT: return jd_find(c.u.d, item) >= 0;
    default: jr_fail(r, at, "argument of type '%s' is not iterable", jv_type_name(c));
    }
}

int jr_compare(jrender *r, const jnode *at, jop op, jv a, jv b) {
    switch (op) {
    case OP_EQ: return jv_equal(a, b);
    case OP_NE: return !jv_equal(a, b);
    case OP_LT: return order(r, at, op, a, b) < 0;
    case OP_LE: return order(r, at, op, a, b) <= 0;
    case OP_GT: return order(r, at, op, a, b) > 0;
    case OP_GE: return order(r, at, op, a, b) >= 0;
    case OP_IN: return contains(r, at, a, b);
    case OP_NOTIN: return !contains(r, at, a, b);
    default: return 0;
    }
}

_Noreturn static void unsupported(jrender *r, const jnode *at, jop op, jv a, jv b) {
    if (op == OP_ADD && (a.kind == JV_STR || a.kind == JV_LIST || a.kind == JV_TUPLE))
        jr_fail(r, at, "can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b), jv_type_name(a));
    if (op == OP_MUL && (a.kind == JV_STR || a.kind == JV_LIST || a.kind == JV_TUPLE || b.kind == JV_STR ||
                         b.kind == JV_LIST || b.kind == JV_TUPLE))
        jr_fail(r, at, "can't multiply sequence by non-int of type '%s'",
                jv_type_name(a.kind == JV_STR || a.kind == JV_LIST || a.kind == JV_TUPLE ? b : a));
    jr_fail(r, at, "unsupported operand type(s) for %s: '%s' and '%s'", op_symbol(op), jv_type_name(a), jv_type_name(b));
}

static jv repeat(jrender *r, const jnode *at, jv seq, int64_t times) {
    if (times < 0) times = 0;
    size_t unit = seq.kind == JV_STR ? seq.u.s->len : seq.u.l->n * sizeof(jv);
    if (unit && (uint64_t)times > r->opt.max_output / unit) jr_fail(r, at, "repetition result is too large");
    if (seq.kind == JV_STR) {
        jbuf b = {.arena = &r->arena};
        jb_put(&b, "", 0);
        for (int64_t i = 0; i < times; i++) jb_put(&b, seq.u.s->p, seq.u.s->len);
        return jv_str(&r->arena, b.p, b.len);
    }
    jv l = jv_list(&r->arena, seq.u.l->n * (size_t)times);
    l.kind = seq.kind;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq.u.l->n; k++) l.u.l->v[l.u.l->n++] = seq.u.l->v[k];
    return l;
}

jv jr_binop(jrender *r, const jnode *at, jop op, jv a, jv b) {
    if (op == OP_CONCAT) {
        jstr *x = jv_to_str(&r->arena, a), *y = jv_to_str(&r->arena, b);
        jbuf buf = {.arena = &r->arena};
        jb_put(&buf, x->p, x->len);
        jb_put(&buf, y->p, y->len);
        return jv_str(&r->arena, buf.p, buf.len);
    }
    if (a.kind == JV_UNDEF) jr_fail_undef(r, at, a);
    if (b.kind == JV_UNDEF) jr_fail_undef(r, at, b);
    if (is_intlike(a) && is_intlike(b)) {
        int64_t x = ival(a), y = ival(b), z;
        switch (op) {
        case OP_ADD:
            if (__builtin_add_overflow(x, y, &z)) break;
            return jv_int(z);
        case OP_SUB:
            if (__builtin_sub_overflow(x, y, &z)) break;
            return jv_int(z);
        case OP_MUL:
            if (__builtin_mul_overflow(x, y, &z)) break;
            return jv_int(z);
        case OP_DIV:
            if (y == 0) jr_fail(r, at, "division by zero");
            return jv_float((double)x / (double)y);
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0) jr_fail(r, at, op == OP_MOD ? "integer modulo by zero" : "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) break;
            int64_t q = x / y, m = x % y;
            if (m && ((m < 0) != (y < 0))) {
                q--;
                m += y;
            }
            return jv_int(op == OP_MOD ? m : q);
        }
        case OP_POW: {
            if (y < 0) return jv_float(pow((double)x, (double)y));
            int64_t acc = 1;
            for (int64_t k = 0; k < y; k++) {
                if (__builtin_mul_overflow(acc, x, &acc)) jr_fail(r, at, "integer result of ** is too large");
                if (acc == 0 || acc == 1) break;
            }
            if (acc == 1 && x == -1) acc = y % 2 ? -1 : 1;
            return jv_int(acc);
        }
        default: break;
        }
        if (op <= OP_POW) jr_fail(r, at, "integer result of %s is too large", op_symbol(op));
    }
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        switch (op) {
        case OP_ADD: return jv_float(x + y);
        case OP_SUB: return jv_float(x - y);
        case OP_MUL: return jv_float(x * y);
        case OP_DIV:
            if (y == 0) jr_fail(r, at, "float division by zero");
            return jv_float(x / y);
        case OP_FLOORDIV:
            if (y == 0) jr_fail(r, at, "float floor division by zero");
            return jv_float(floor(x / y));
        case OP_MOD: {
            if (y == 0) jr_fail(r, at, "float modulo");
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return jv_float(m);
        }
        case OP_POW: return jv_float(pow(x, y));
        default: break;
        }
    }
    if (op == OP_ADD && a.kind == b.kind) {
        if (a.kind == JV_STR) {
            jbuf buf = {.arena = &r->arena};
            jb_put(&buf, a.u.s->p, a.u.s->len);
            jb_put(&buf, b.u.s->p, b.u.s->len);
            return jv_str(&r->arena, buf.p, buf.len);
        }
        if (a.kind == JV_LIST || a.kind == JV_TUPLE) {
            jv l = jv_list(&r->arena, a.u.l->n + b.u.l->n);
            l.kind = a.kind;
            for (size_t i = 0; i < a.u.l->n; i++) l.u.l->v[l.u.l->n++] = a.u.l->v[i];
            for (size_t i = 0; i < b.u.l->n; i++) l.u.l->v[l.u.l->n++] = b.u.l->v[i];
            return l;
        }
    }
    if (op == OP_MUL) {
        if ((a.kind == JV_STR || a.kind == JV_LIST || a.kind == JV_TUPLE) && is_intlike(b)) return repeat(r, at, a, ival(b));
        if ((b.kind == JV_STR || b.kind == JV_LIST || b.kind == JV_TUPLE) && is_intlike(a)) return repeat(r, at, b, ival(a));
    }
    if (op == OP_MOD && a.kind == JV_STR) return jb_percent_format(r, at, a, b);
    unsupported(r, at, op, a, b);
}

/* ---- calls -------------------------------------------------------------- */

static int exec_body(jrender *r, jframe *f, const jnodes *body);
static jv jr_eval(jrender *r, jframe *f, const jnode *n);

static jv capture(jrender *r, jframe *f, const jnodes *body) {
    jbuf buf = {.arena = &r->arena};
    jb_put(&buf, "", 0);
    jbuf *saved = r->out;
    r->out = &buf;
    exec_body(r, f, body);
    r->out = saved;
    return jv_str(&r->arena, buf.p, buf.len);
}

static jv call_macro(jrender *r, const jnode *at, jfunc *fn, const jargs *a) {
    const jnode *m = fn->macro;
    int nparams = m->args.n;
    if (a->n > nparams) jr_fail(r, at, "macro '%s' takes not more than %d argument(s)", m->name, nparams);
    jframe *f = push_frame(r, fn->closure);
    for (int i = 0; i < a->nkw; i++) {
        int k = 0;
        while (k < nparams && strcmp(m->kwnames[k], a->kwname[i]) != 0) k++;
        if (k == nparams) jr_fail(r, at, "macro '%s' takes no keyword argument '%s'", m->name, a->kwname[i]);
        if (k < a->n) jr_fail(r, at, "macro '%s' got multiple values for argument '%s'", m->name, a->kwname[i]);
    }
    for (int i = 0; i < nparams; i++) {
        jv v;
        int found = 0;
        if (i < a->n) {
            v = a->pos[i];
            found = 1;
        }
        for (int k = 0; !found && k < a->nkw; k++)
            if (!strcmp(m->kwnames[i], a->kwname[k])) {
                v = a->kw[k];
                found = 1;
            }
        if (!found) {
            v = m->args.v[i] ? jr_eval(r, f, m->args.v[i])
                             : jv_undef(ja_printf(&r->arena, "parameter '%s' was not provided", m->kwnames[i]));
        }
        assign(r, f, m->kwnames[i], v);
    }
    if (fn->caller.kind == JV_FUNC) assign(r, f, "caller", fn->caller);
    r->depth++;
    check_depth(r, at);
    jv out = capture(r, f, &m->body);
    r->depth--;
    return out;
}

jv jr_call(jrender *r, const jnode *at, jv fn, const jargs *a) {
    if (fn.kind == JV_UNDEF) jr_fail_undef(r, at, fn);
    if (fn.kind != JV_FUNC) jr_fail(r, at, "'%s' object is not callable", jv_type_name(fn));
    if (fn.u.fn->kind == JF_MACRO) return call_macro(r, at, fn.u.fn, a);
    return fn.u.fn->fn(r, at, fn.u.fn->self, a);
}

/* ---- expressions -------------------------------------------------------- */

static void eval_args(jrender *r, jframe *f, const jnode *n, jargs *a) {
    a->n = n->args.n;
    a->pos = ja_alloc(&r->arena, (size_t)(a->n + 1) * sizeof(jv));
    for (int i = 0; i < a->n; i++) a->pos[i] = jr_eval(r, f, n->args.v[i]);
    a->nkw = n->kwargs.n;
    a->kwname = n->kwnames;
    a->kw = ja_alloc(&r->arena, (size_t)(a->nkw + 1) * sizeof(jv));
    for (int i = 0; i < a->nkw; i++) a->kw[i] = jr_eval(r, f, n->kwargs.v[i]);
}

/* A {% filter %} / {% set x | f %} chain: the innermost filter has no
 * operand and applies to input. */
static jv apply_filter(jrender *r, jframe *f, const jnode *n, jv input) {
    jv x = n->a ? apply_filter(r, f, n->a, input) : input;
    jargs a;
    eval_args(r, f, n, &a);
    return jb_filter(r, n, n->name, x, &a);
}

static jv jr_eval(jrender *r, jframe *f, const jnode *n) {
    switch (n->kind) {
    case E_CONST: return n->value;
    case E_NAME: return lookup(r, f, n->name);
    case E_ATTR: return jr_getattr(r, n, jr_eval(r, f, n->a), n->name);
    case E_ITEM: {
        jv obj = jr_eval(r, f, n->a);
        return jr_getitem(r, n, obj, jr_eval(r, f, n->b));
    }
    case E_SLICE: {
        jv obj = jr_eval(r, f, n->a);
        jv s = n->b ? jr_eval(r, f, n->b) : JV_NONE_V, e = n->c ? jr_eval(r, f, n->c) : JV_NONE_V,
           st = n->d ? jr_eval(r, f, n->d) : JV_NONE_V;
        return slice(r, n, obj, s, e, st);
    }
    case E_CALL: {
        jv fn = jr_eval(r, f, n->a);
        jargs a;
        eval_args(r, f, n, &a);
        return jr_call(r, n, fn, &a);
    }
    case E_FILTER: {
        jv x = jr_eval(r, f, n->a);
        jargs a;
        eval_args(r, f, n, &a);
        return jb_filter(r, n, n->name, x, &a);
    }
    case E_TEST: {
        jv x = jr_eval(r, f, n->a);
        jargs a;
        eval_args(r, f, n, &a);
        int t = jb_test(r, n, n->name, x, &a);
        return jv_bool(n->negated ? !t : t);
    }
    case E_NEG:
    case E_POS: {
        jv x = jr_eval(r, f, n->a);
        if (x.kind == JV_UNDEF) jr_fail_undef(r, n, x);
        if (x.kind == JV_FLOAT) return jv_float(n->kind == E_NEG ? -x.u.f : x.u.f);
        if (is_intlike(x)) {
            if (n->kind == E_POS) return jv_int(ival(x));
            if (ival(x) == INT64_MIN) jr_fail(r, n, "integer result of - is too large");
            return jv_int(-ival(x));
        }
        jr_fail(r, n, "bad operand type for unary %s: '%s'", n->kind == E_NEG ? "-" : "+", jv_type_name(x));
    }
    case E_NOT: return jv_bool(!jv_truthy(jr_eval(r, f, n->a)));
    case E_AND: {
        jv a = jr_eval(r, f, n->a);
        return jv_truthy(a) ? jr_eval(r, f, n->b) : a;
    }
    case E_OR: {
        jv a = jr_eval(r, f, n->a);
        return jv_truthy(a) ? a : jr_eval(r, f, n->b);
    }
    case E_BINOP: {
        jv a = jr_eval(r, f, n->a);
        return jr_binop(r, n, n->op, a, jr_eval(r, f, n->b));
    }
    case E_COMPARE: {
        jv left = jr_eval(r, f, n->a);
        for (int i = 0; i < n->args.n; i++) {
            jv right = jr_eval(r, f, n->args.v[i]);
            if (!jr_compare(r, n->args.v[i], n->ops[i], left, right)) return jv_bool(0);
            left = right;
        }
        return jv_bool(1);
    }
    case E_COND:
        if (jv_truthy(jr_eval(r, f, n->a))) return jr_eval(r, f, n->b);
        if (n->c) return jr_eval(r, f, n->c);
        return jv_undef(ja_printf(&r->arena,
                                  "the inline if-expression on line %d evaluated to false and no else section was defined.",
                                  n->line));
    case E_LIST:
    case E_TUPLE: {
        jv l = jv_list(&r->arena, (size_t)n->args.n);
        l.kind = n->kind == E_LIST ? JV_LIST : JV_TUPLE;
        for (int i = 0; i < n->args.n; i++) l.u.l->v[l.u.l->n++] = jr_eval(r, f, n->args.v[i]);
        return l;
    }
    case E_DICT: {
        jv d = jv_dict(&r->arena, (size_t)n->args.n);
        for (int i = 0; i < n->args.n; i++) {
            jv k = jr_eval(r, f, n->args.v[i]);
            if (k.kind == JV_LIST || k.kind == JV_DICT || k.kind == JV_NS)
                jr_fail(r, n->args.v[i], "unhashable type: '%s'", jv_type_name(k));
            jd_set(&r->arena, d.u.d, k, jr_eval(r, f, n->kwargs.v[i]));
        }
        return d;
    }
    default: jr_fail(r, n, "statement used as an expression");
    }
}

/* ---- statements --------------------------------------------------------- */

static void bind_target(jrender *r, jframe *f, const jnode *target, jv value) {
    if (target->kind == E_NAME) return assign(r, f, target->name, value);
    jlist *items = jr_iterate(r, target, value);
    if (items->n != (size_t)target->args.n) {
        if (items->n < (size_t)target->args.n)
            jr_fail(r, target, "not enough values to unpack (expected %d, got %zu)", target->args.n, items->n);
        jr_fail(r, target, "too many values to unpack (expected %d)", target->args.n);
    }
    for (int i = 0; i < target->args.n; i++) assign(r, f, target->args.v[i]->name, items->v[i]);
}

static int exec_for(jrender *r, jframe *f, const jnode *n) {
    jlist *items = jr_iterate(r, n->b, jr_eval(r, f, n->b));
    /* Each iteration starts with a fresh scope; one frame is cleared and
     * reused so long loops do not grow the arena. */
    jframe *iter = push_frame(r, f);
    if (n->c) {
        jlist *kept = jv_list(&r->arena, items->n).u.l;
        for (size_t i = 0; i < items->n; i++) {
            count_iteration(r, n);
            iter->vars.n = 0;
            bind_target(r, iter, n->a, items->v[i]);
            if (jv_truthy(jr_eval(r, iter, n->c))) kept->v[kept->n++] = items->v[i];
        }
        items = kept;
    }
    if (items->n == 0) return exec_body(r, f, &n->orelse);
    jloop *loop = ja_alloc(&r->arena, sizeof *loop);
    loop->items = items;
    for (size_t i = 0; i < items->n; i++) {
        count_iteration(r, n);
        iter->vars.n = 0;
        bind_target(r, iter, n->a, items->v[i]);
        loop->index0 = i;
        assign(r, iter, "loop", (jv){.kind = JV_LOOP, .u.loop = loop});
        int flow = exec_body(r, iter, &n->body);
        if (flow == FLOW_BREAK) break;
    }
    return FLOW_NEXT;
}

static void exec_set(jrender *r, jframe *f, const jnode *n, jv value) {
    if (n->a->kind != E_ATTR) return bind_target(r, f, n->a, value);
    jv ns = lookup(r, f, n->a->a->name);
    if (ns.kind != JV_NS) jr_fail(r, n->a, "can only set attributes on namespaces, '%s' is a %s", n->a->a->name, jv_type_name(ns));
    jd_set_str(&r->arena, ns.u.d, n->a->name, value);
}

static jv make_macro(jrender *r, jframe *f, const jnode *m, jv caller) {
    jfunc *fn = ja_alloc(&r->arena, sizeof *fn);
    fn->kind = JF_MACRO;
    fn->name = m->name;
    fn->macro = m;
    fn->closure = f;
    fn->caller = caller;
    return (jv){.kind = JV_FUNC, .u.fn = fn};
}

static int exec_node(jrender *r, jframe *f, const jnode *n) {
    switch (n->kind) {
    case N_TEXT: emit_out(r, n, n->value.u.s->p, n->value.u.s->len); return FLOW_NEXT;
    case N_OUTPUT: {
        jv v = jr_eval(r, f, n->a);
        if (v.kind == JV_STR) {
            emit_out(r, n, v.u.s->p, v.u.s->len);
        } else {
            jstr *s = jv_to_str(&r->arena, v);
            emit_out(r, n, s->p, s->len);
        }
        return FLOW_NEXT;
    }
    case N_IF:
        if (jv_truthy(jr_eval(r, f, n->a))) return exec_body(r, f, &n->body);
        return exec_body(r, f, &n->orelse);
    case N_FOR: return exec_for(r, f, n);
    case N_SET: exec_set(r, f, n, jr_eval(r, f, n->b)); return FLOW_NEXT;
    case N_SETBLOCK: {
        jv v = capture(r, f, &n->body);
        if (n->b) v = apply_filter(r, f, n->b, v);
        exec_set(r, f, n, v);
        return FLOW_NEXT;
    }
    case N_MACRO: assign(r, f, n->name, make_macro(r, f, n, jv_undef(NULL))); return FLOW_NEXT;
    case N_CALLBLOCK: {
        const jnode *call = n->a;
        jv callee = jr_eval(r, f, call->a);
        jargs a;
        eval_args(r, f, call, &a);
        if (callee.kind == JV_FUNC && callee.u.fn->kind == JF_MACRO) {
            jfunc *copy = ja_alloc(&r->arena, sizeof *copy);
            *copy = *callee.u.fn;
            copy->caller = make_macro(r, f, n->b, jv_undef(NULL));
            callee.u.fn = copy;
        }
        jv v = jr_call(r, call, callee, &a);
        jstr *s = jv_to_str(&r->arena, v);
        emit_out(r, n, s->p, s->len);
        return FLOW_NEXT;
    }
    case N_FILTERBLOCK: {
        jstr *s = jv_to_str(&r->arena, apply_filter(r, f, n->a, capture(r, f, &n->body)));
        emit_out(r, n, s->p, s->len);
        return FLOW_NEXT;
    }
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    case N_BODY: return exec_body(r, f, &n->body);
    default: jr_eval(r, f, n); return FLOW_NEXT;
    }
}

static int exec_body(jrender *r, jframe *f, const jnodes *body) {
    for (int i = 0; i < body->n; i++) {
        int flow = exec_node(r, f, body->v[i]);
        if (flow != FLOW_NEXT) return flow;
    }
    return FLOW_NEXT;
}

/* ---- entry points ------------------------------------------------------- */

bs_status jinja_parse(const char *source, const char *name, jinja_template **out, bs_error *err) {
    *out = NULL;
    if (!source) return bs_fail(err, BS_EINVAL, "%s: no template source", name ? name : "template");
    jinja_template *t = calloc(1, sizeof *t);
    if (!t) return bs_fail(err, BS_ENOMEM, "out of memory");
    t->name = strdup(name ? name : "template");
    if (!t->name) {
        free(t);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    jfail fail = {.err = err, .name = t->name};
    t->arena.fail = &fail;
    if (setjmp(fail.jump)) {
        jinja_free(t);
        return err ? err->status : BS_EFORMAT;
    }
    jtoks toks = {0};
    jinja_lex(&t->arena, &fail, source, &toks);
    t->root = jinja_parse_tokens(&t->arena, &fail, &toks);
    t->arena.fail = NULL;
    *out = t;
    return BS_OK;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t->name);
    free(t);
}

bs_status jinja_render(const jinja_template *t, const json_t *vars, const jinja_options *opts, char **out,
                       size_t *len, bs_error *err) {
    *out = NULL;
    if (len) *len = 0;
    if (vars && !json_is_object(vars)) return bs_fail(err, BS_EINVAL, "%s: template variables must be a JSON object", t->name);
    jrender *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "out of memory");
    r->fail.err = err;
    r->fail.name = t->name;
    r->arena.fail = &r->fail;
    r->arena.limit = RENDER_MEMORY_LIMIT;
    if (opts) r->opt = *opts;
    if (!r->opt.max_iterations) r->opt.max_iterations = 1000000;
    if (!r->opt.max_output) r->opt.max_output = (size_t)16 << 20;
    if (!r->opt.max_depth) r->opt.max_depth = 200;
    if (setjmp(r->fail.jump)) {
        bs_status s = err ? err->status : BS_EINVAL;
        ja_free(&r->arena);
        free(r);
        return s;
    }
    r->globals = push_frame(r, NULL);
    jb_install_globals(r, &r->globals->vars);
    if (vars) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)vars, key, val) assign(r, r->globals, key, jv_from_json(&r->arena, val));
    }
    jbuf buf = {.arena = &r->arena};
    jb_put(&buf, "", 0);
    r->out = &buf;
    exec_body(r, push_frame(r, r->globals), &t->root->body);
    char *text = malloc(buf.len + 1);
    if (!text) {
        ja_free(&r->arena);
        free(r);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    memcpy(text, buf.p, buf.len + 1);
    *out = text;
    if (len) *len = buf.len;
    ja_free(&r->arena);
    free(r);
    return BS_OK;
}
