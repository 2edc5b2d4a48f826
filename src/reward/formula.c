/* reward/formula.c — multi's calculate_output: numbers, the sub-grader
 * names as variables, + - * / ^ (right-associative, binding tighter than
 * unary minus as in math: -2^2 = -4), parentheses and the functions min,
 * max (two or more arguments), abs, floor, ceil, exp, sqrt, log (natural).
 * Parsed once into a tree; evaluation follows IEEE rules, so 0/0 or a NAN
 * sub-score gives NAN (an unscorable sample), never a crash. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reward/reward_impl.h"

typedef enum { F_NUM, F_VAR, F_NEG, F_ADD, F_SUB, F_MUL, F_DIV, F_POW, F_CALL } fnode_kind;

typedef struct fnode {
    fnode_kind kind;
    double num;
    int var, fn, n_args;
    struct fnode **args; /* binary operators use args[0], args[1] */
} fnode;

struct formula {
    fnode *root;
};

static const char *const fn_names[] = {"min", "max", "abs", "floor", "ceil", "exp", "sqrt", "log"};
#define N_FN (int)(sizeof fn_names / sizeof fn_names[0])

typedef struct parser {
    const char *s, *p;
    char *const *vars;
    int n_vars;
    bs_error *err;
    int failed;
} parser;

static void node_free(fnode *n) {
    if (!n) return;
    for (int i = 0; i < n->n_args; i++) node_free(n->args[i]);
    free(n->args);
    free(n);
}

static fnode *node(fnode_kind kind, int n_args) {
    fnode *n = calloc(1, sizeof *n);
    if (n && n_args) n->args = calloc((size_t)n_args, sizeof *n->args);
    if (!n || (n_args && !n->args)) {
        free(n);
        return NULL;
    }
    n->kind = kind;
    n->n_args = n_args;
    return n;
}

static fnode *fail(parser *ps, const char *what) {
    if (!ps->failed)
        bs_fail(ps->err, BS_EINVAL, "grader.calculate_output: %s at offset %d in \"%s\"", what, (int)(ps->p - ps->s),
                ps->s);
    ps->failed = 1;
    return NULL;
}

static void skip(parser *ps) {
    while (isspace((unsigned char)*ps->p)) ps->p++;
}

static fnode *expr(parser *ps);

static fnode *binary(fnode_kind kind, fnode *a, fnode *b) {
    fnode *n = a && b ? node(kind, 2) : NULL;
    if (!n) {
        node_free(a);
        node_free(b);
        return NULL;
    }
    n->args[0] = a;
    n->args[1] = b;
    return n;
}

static fnode *call(parser *ps, int fn) {
    fnode *args[64];
    int n = 0;
    ps->p++; /* '(' */
    for (;;) {
        if (n == 64) break;
        if (!(args[n] = expr(ps))) break;
        n++;
        skip(ps);
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == ')') {
            ps->p++;
            int want_many = fn <= 1;
            if (want_many ? n < 2 : n != 1) {
                fail(ps, want_many ? "min/max need two or more arguments" : "this function takes one argument");
                break;
            }
            fnode *c = node(F_CALL, n);
            if (!c) break;
            c->fn = fn;
            memcpy(c->args, args, (size_t)n * sizeof *args);
            return c;
        }
        fail(ps, "expected ',' or ')'");
        break;
    }
    if (n == 64) fail(ps, "too many arguments");
    for (int i = 0; i < n; i++) node_free(args[i]);
    return NULL;
}

static fnode *primary(parser *ps) {
    skip(ps);
    const char *p = ps->p;
    if (*p == '(') {
        ps->p++;
        fnode *n = expr(ps);
        skip(ps);
        if (n && *ps->p != ')') {
            node_free(n);
            return fail(ps, "expected ')'");
        }
        if (n) ps->p++;
        return n;
    }
    if (isdigit((unsigned char)*p) || *p == '.') {
        char *end;
        double v = strtod(p, &end);
        if (end == p) return fail(ps, "bad number");
        ps->p = end;
        fnode *n = node(F_NUM, 0);
        if (n) n->num = v;
        return n;
    }
    if (isalpha((unsigned char)*p) || *p == '_') {
        const char *e = p;
        while (isalnum((unsigned char)*e) || *e == '_') e++;
        size_t len = (size_t)(e - p);
        ps->p = e;
        skip(ps);
        if (*ps->p == '(') {
            for (int f = 0; f < N_FN; f++)
                if (strlen(fn_names[f]) == len && strncmp(fn_names[f], p, len) == 0) return call(ps, f);
            ps->p = p;
            return fail(ps, "unknown function");
        }
        for (int v = 0; v < ps->n_vars; v++)
            if (strlen(ps->vars[v]) == len && strncmp(ps->vars[v], p, len) == 0) {
                fnode *n = node(F_VAR, 0);
                if (n) n->var = v;
                return n;
            }
        ps->p = p;
        return fail(ps, "unknown variable (not a key of graders)");
    }
    return fail(ps, *p ? "unexpected character" : "unexpected end");
}

static fnode *unary(parser *ps);

static fnode *power(parser *ps) {
    fnode *a = primary(ps);
    skip(ps);
    if (!a || *ps->p != '^') return a;
    ps->p++;
    return binary(F_POW, a, unary(ps));
}

static fnode *unary(parser *ps) {
    skip(ps);
    if (*ps->p == '+' || *ps->p == '-') {
        int neg = *ps->p == '-';
        ps->p++;
        fnode *a = unary(ps);
        if (!neg || !a) return a;
        fnode *n = node(F_NEG, 1);
        if (!n) {
            node_free(a);
            return NULL;
        }
        n->args[0] = a;
        return n;
    }
    return power(ps);
}

static fnode *term(parser *ps) {
    fnode *a = unary(ps);
    for (skip(ps); a && (*ps->p == '*' || *ps->p == '/'); skip(ps)) {
        fnode_kind k = *ps->p++ == '*' ? F_MUL : F_DIV;
        a = binary(k, a, unary(ps));
    }
    return a;
}

static fnode *expr(parser *ps) {
    fnode *a = term(ps);
    for (skip(ps); a && (*ps->p == '+' || *ps->p == '-'); skip(ps)) {
        fnode_kind k = *ps->p++ == '+' ? F_ADD : F_SUB;
        a = binary(k, a, term(ps));
    }
    return a;
}

bs_status formula_parse(const char *text, char *const *vars, int n_vars, formula **out, bs_error *err) {
    *out = NULL;
    parser ps = {.s = text, .p = text, .vars = vars, .n_vars = n_vars, .err = err};
    fnode *root = expr(&ps);
    skip(&ps);
    if (root && *ps.p) {
        node_free(root);
        root = fail(&ps, "unexpected text");
    }
    if (!root) return ps.failed ? BS_EINVAL : bs_fail(err, BS_ENOMEM, "grader.calculate_output: out of memory");
    formula *f = malloc(sizeof *f);
    if (!f) {
        node_free(root);
        return bs_fail(err, BS_ENOMEM, "grader.calculate_output: out of memory");
    }
    f->root = root;
    *out = f;
    return BS_OK;
}

static double eval(const fnode *n, const double *v) {
    switch (n->kind) {
    case F_NUM: return n->num;
    case F_VAR: return v[n->var];
    case F_NEG: return -eval(n->args[0], v);
    case F_ADD: return eval(n->args[0], v) + eval(n->args[1], v);
    case F_SUB: return eval(n->args[0], v) - eval(n->args[1], v);
    case F_MUL: return eval(n->args[0], v) * eval(n->args[1], v);
    case F_DIV: return eval(n->args[0], v) / eval(n->args[1], v);
    case F_POW: return pow(eval(n->args[0], v), eval(n->args[1], v));
    case F_CALL: break;
    }
    double x = eval(n->args[0], v);
    switch (n->fn) {
    case 0:
    case 1:
        for (int i = 1; i < n->n_args; i++) {
            double y = eval(n->args[i], v);
            if (isnan(y) || isnan(x)) return NAN; /* fmin would hide an unscorable sub-score */
            x = n->fn == 0 ? fmin(x, y) : fmax(x, y);
        }
        return x;
    case 2: return fabs(x);
    case 3: return floor(x);
    case 4: return ceil(x);
    case 5: return exp(x);
    case 6: return sqrt(x);
    default: return log(x);
    }
}

double formula_eval(const formula *f, const double *values) { return eval(f->root, values); }

void formula_free(formula *f) {
    if (!f) return;
    node_free(f->root);
    free(f);
}
