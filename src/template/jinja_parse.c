/* template/jinja_parse.c — tokens to a syntax tree, following jinja2's
 * grammar and operator precedence (loosest first): inline if-else, or, and,
 * not, comparisons and in (chained), + -, ~, * / // %, **, unary - +, then
 * filters / tests / calls, then attribute, item and slice postfixes. */
#include <string.h>

#include "template/jinja_impl.h"

typedef struct parser {
    jarena *a;
    jfail *f;
    const jtoks *toks;
    size_t pos;
    int loop_depth;
    int nesting;
} parser;

#define MAX_NESTING 200

static const jtok *cur(parser *P) { return &P->toks->v[P->pos]; }
static const jtok *peek(parser *P, size_t k) {
    size_t i = P->pos + k;
    return &P->toks->v[i < P->toks->n ? i : P->toks->n - 1];
}
static const jtok *prev(parser *P) { return &P->toks->v[P->pos ? P->pos - 1 : 0]; }
static void advance(parser *P) {
    if (P->pos + 1 < P->toks->n) P->pos++;
}

static const char *describe(const jtok *t) {
    switch (t->kind) {
    case T_TEXT: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "end of print statement '}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "end of statement block '%}'";
    case T_EOF: return "end of template";
    default: return t->s;
    }
}

_Noreturn static void parse_fail(parser *P, const jtok *t, const char *fmt, const char *arg) {
    jfail_at(P->f, BS_EFORMAT, t->line, t->col, fmt, arg);
}

static int is_op(parser *P, const char *op) { return cur(P)->kind == T_OP && strcmp(cur(P)->s, op) == 0; }
static int is_name(parser *P, const char *name) {
    return cur(P)->kind == T_NAME && strcmp(cur(P)->s, name) == 0;
}
static int skip_op(parser *P, const char *op) {
    if (!is_op(P, op)) return 0;
    advance(P);
    return 1;
}
static int skip_name(parser *P, const char *name) {
    if (!is_name(P, name)) return 0;
    advance(P);
    return 1;
}
static void expect_op(parser *P, const char *op) {
    if (!skip_op(P, op)) {
        char msg[64];
        snprintf(msg, sizeof msg, "expected '%s', got %%s", op);
        parse_fail(P, cur(P), msg, describe(cur(P)));
    }
}
static const char *expect_name(parser *P) {
    if (cur(P)->kind != T_NAME) parse_fail(P, cur(P), "expected a name, got %s", describe(cur(P)));
    const char *s = cur(P)->s;
    advance(P);
    return s;
}
static void expect_block_end(parser *P) {
    if (cur(P)->kind != T_BLOCK_END) parse_fail(P, cur(P), "expected end of statement block '%%}', got %s", describe(cur(P)));
    advance(P);
}

void jn_push(jarena *a, jnodes *l, jnode *n) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        jnode **v = ja_alloc(a, (size_t)cap * sizeof *v);
        if (l->n) memcpy(v, l->v, (size_t)l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
}

static jnode *node(parser *P, jnode_kind kind, const jtok *t) {
    jnode *n = ja_alloc(P->a, sizeof *n);
    n->kind = kind;
    n->line = t->line;
    n->col = t->col;
    return n;
}

static void enter(parser *P) {
    if (++P->nesting > MAX_NESTING) parse_fail(P, cur(P), "%s", "template nested too deeply");
}

static jnode *parse_expression(parser *P, int with_condexpr);
static jnode *parse_unary(parser *P, int with_filter);
static jnode *parse_or(parser *P);

/* ---- calls, filters, tests ---------------------------------------------- */

static void parse_call_args(parser *P, jnode *n) {
    expect_op(P, "(");
    int nkw = 0;
    const char *names[64];
    while (!is_op(P, ")")) {
        if (n->args.n + nkw) expect_op(P, ",");
        if (is_op(P, ")")) break;
        if (is_op(P, "*") || is_op(P, "**")) parse_fail(P, cur(P), "%s", "*args and **kwargs in calls are not supported");
        if (cur(P)->kind == T_NAME && peek(P, 1)->kind == T_OP && strcmp(peek(P, 1)->s, "=") == 0) {
            if (nkw == 64) parse_fail(P, cur(P), "%s", "too many keyword arguments");
            names[nkw++] = cur(P)->s;
            advance(P);
            advance(P);
            jn_push(P->a, &n->kwargs, parse_expression(P, 1));
        } else {
            if (nkw) parse_fail(P, cur(P), "%s", "positional argument follows keyword argument");
            jn_push(P->a, &n->args, parse_expression(P, 1));
        }
    }
    advance(P);
    if (nkw) {
        n->kwnames = ja_alloc(P->a, (size_t)nkw * sizeof *n->kwnames);
        memcpy(n->kwnames, names, (size_t)nkw * sizeof *names);
    }
}

static const char *dotted_name(parser *P) {
    const char *name = expect_name(P);
    while (is_op(P, ".") && peek(P, 1)->kind == T_NAME) {
        advance(P);
        name = ja_printf(P->a, "%s.%s", name, expect_name(P));
    }
    return name;
}

/* One filter application (after '|'); operand may be NULL for {% filter %}. */
static jnode *parse_filter(parser *P, jnode *operand) {
    jnode *n = node(P, E_FILTER, cur(P));
    n->name = dotted_name(P);
    if (!jb_has_filter(n->name)) parse_fail(P, prev(P), "no filter named '%s'", n->name);
    n->a = operand;
    if (is_op(P, "(")) parse_call_args(P, n);
    return n;
}

static jnode *parse_primary(parser *P);
static jnode *parse_postfix(parser *P, jnode *n);

static jnode *parse_test(parser *P, jnode *operand) {
    const jtok *t = cur(P);
    advance(P); /* 'is' */
    jnode *n = node(P, E_TEST, t);
    n->negated = skip_name(P, "not");
    n->name = dotted_name(P);
    if (!jb_has_test(n->name)) parse_fail(P, prev(P), "no test named '%s'", n->name);
    n->a = operand;
    const jtok *c = cur(P);
    if (is_op(P, "(")) {
        parse_call_args(P, n);
    } else if ((c->kind == T_NAME || c->kind == T_STRING || c->kind == T_INT || c->kind == T_FLOAT ||
                is_op(P, "[") || is_op(P, "{")) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is")) parse_fail(P, c, "%s", "you cannot chain multiple tests with is");
        jn_push(P->a, &n->args, parse_postfix(P, parse_primary(P)));
    }
    return n;
}

static jnode *parse_filter_expr(parser *P, jnode *n) {
    for (;;) {
        if (skip_op(P, "|")) {
            n = parse_filter(P, n);
        } else if (is_name(P, "is")) {
            n = parse_test(P, n);
        } else if (is_op(P, "(")) {
            jnode *c = node(P, E_CALL, cur(P));
            c->a = n;
            parse_call_args(P, c);
            n = c;
        } else {
            return n;
        }
    }
}

/* ---- primaries and postfixes -------------------------------------------- */

static jnode *parse_tuple(parser *P, int with_condexpr, int explicit_parens, const char *extra_end);

static jnode *parse_primary(parser *P) {
    const jtok *t = cur(P);
    enter(P);
    jnode *n;
    if (t->kind == T_NAME) {
        advance(P);
        n = node(P, E_CONST, t);
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) n->value = jv_bool(1);
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) n->value = jv_bool(0);
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) n->value = JV_NONE_V;
        else {
            n->kind = E_NAME;
            n->name = t->s;
        }
    } else if (t->kind == T_STRING) {
        jbuf b = {.arena = P->a};
        jb_put(&b, "", 0);
        while (cur(P)->kind == T_STRING) { /* adjacent literals concatenate */
            jb_put(&b, cur(P)->s, cur(P)->len);
            advance(P);
        }
        n = node(P, E_CONST, t);
        n->value = jv_str(P->a, b.p, b.len);
    } else if (t->kind == T_INT || t->kind == T_FLOAT) {
        advance(P);
        n = node(P, E_CONST, t);
        n->value = t->kind == T_INT ? jv_int(t->i) : jv_float(t->f);
    } else if (skip_op(P, "(")) {
        n = parse_tuple(P, 1, 1, NULL);
        expect_op(P, ")");
    } else if (skip_op(P, "[")) {
        n = node(P, E_LIST, t);
        while (!is_op(P, "]")) {
            if (n->args.n) expect_op(P, ",");
            if (is_op(P, "]")) break;
            jn_push(P->a, &n->args, parse_expression(P, 1));
        }
        advance(P);
    } else if (skip_op(P, "{")) {
        n = node(P, E_DICT, t);
        while (!is_op(P, "}")) {
            if (n->args.n) expect_op(P, ",");
            if (is_op(P, "}")) break;
            jn_push(P->a, &n->args, parse_expression(P, 1));
            expect_op(P, ":");
            jn_push(P->a, &n->kwargs, parse_expression(P, 1));
        }
        advance(P);
    } else {
        parse_fail(P, t, "unexpected %s", describe(t));
    }
    P->nesting--;
    return n;
}

static jnode *parse_subscript(parser *P, jnode *obj, const jtok *t) {
    jnode *parts[3] = {0};
    int k = 0;
    int is_slice = 0;
    for (;;) {
        if (is_op(P, ":")) {
            is_slice = 1;
            if (++k > 2) parse_fail(P, cur(P), "%s", "too many ':' in slice");
            advance(P);
            continue;
        }
        if (is_op(P, "]")) break;
        if (parts[k]) parse_fail(P, cur(P), "expected ':' or ']', got %s", describe(cur(P)));
        parts[k] = parse_expression(P, 1);
    }
    advance(P);
    jnode *n = node(P, is_slice ? E_SLICE : E_ITEM, t);
    n->a = obj;
    if (!is_slice && !parts[0]) parse_fail(P, t, "%s", "empty subscript");
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static jnode *parse_postfix(parser *P, jnode *n) {
    for (;;) {
        const jtok *t = cur(P);
        if (skip_op(P, ".")) {
            if (cur(P)->kind == T_INT) { /* x.0 is x[0] */
                jnode *k = node(P, E_CONST, cur(P));
                k->value = jv_int(cur(P)->i);
                advance(P);
                jnode *it = node(P, E_ITEM, t);
                it->a = n;
                it->b = k;
                n = it;
                continue;
            }
            jnode *at = node(P, E_ATTR, t);
            at->a = n;
            at->name = expect_name(P);
            n = at;
        } else if (skip_op(P, "[")) {
            n = parse_subscript(P, n, t);
        } else if (is_op(P, "(")) {
            jnode *c = node(P, E_CALL, t);
            c->a = n;
            parse_call_args(P, c);
            n = c;
        } else {
            return n;
        }
    }
}

/* ---- operators ---------------------------------------------------------- */

static jnode *parse_unary(parser *P, int with_filter) {
    const jtok *t = cur(P);
    enter(P);
    jnode *n;
    if (skip_op(P, "-") || skip_op(P, "+")) {
        n = node(P, t->s[0] == '-' ? E_NEG : E_POS, t);
        n->a = parse_unary(P, 0);
    } else {
        n = parse_postfix(P, parse_primary(P));
    }
    if (with_filter) n = parse_filter_expr(P, n);
    P->nesting--;
    return n;
}

static jnode *binop(parser *P, const jtok *t, jop op, jnode *a, jnode *b) {
    jnode *n = node(P, E_BINOP, t);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *n = parse_unary(P, 1);
    while (is_op(P, "**")) {
        const jtok *t = cur(P);
        advance(P);
        n = binop(P, t, OP_POW, n, parse_unary(P, 1));
    }
    return n;
}

static jnode *parse_math2(parser *P) {
    jnode *n = parse_pow(P);
    for (;;) {
        const jtok *t = cur(P);
        jop op;
        if (is_op(P, "*")) op = OP_MUL;
        else if (is_op(P, "/")) op = OP_DIV;
        else if (is_op(P, "//")) op = OP_FLOORDIV;
        else if (is_op(P, "%")) op = OP_MOD;
        else return n;
        advance(P);
        n = binop(P, t, op, n, parse_pow(P));
    }
}

static jnode *parse_concat(parser *P) {
    jnode *n = parse_math2(P);
    while (is_op(P, "~")) {
        const jtok *t = cur(P);
        advance(P);
        n = binop(P, t, OP_CONCAT, n, parse_math2(P));
    }
    return n;
}

static jnode *parse_math1(parser *P) {
    jnode *n = parse_concat(P);
    while (is_op(P, "+") || is_op(P, "-")) {
        const jtok *t = cur(P);
        advance(P);
        n = binop(P, t, t->s[0] == '+' ? OP_ADD : OP_SUB, n, parse_concat(P));
    }
    return n;
}

static jnode *parse_compare(parser *P) {
    const jtok *t = cur(P);
    jnode *first = parse_math1(P);
    jnode *n = NULL;
    jop ops[64];
    for (;;) {
        jop op;
        if (is_op(P, "==")) op = OP_EQ;
        else if (is_op(P, "!=")) op = OP_NE;
        else if (is_op(P, "<")) op = OP_LT;
        else if (is_op(P, "<=")) op = OP_LE;
        else if (is_op(P, ">")) op = OP_GT;
        else if (is_op(P, ">=")) op = OP_GE;
        else if (is_name(P, "in")) op = OP_IN;
        else if (is_name(P, "not") && peek(P, 1)->kind == T_NAME && !strcmp(peek(P, 1)->s, "in")) {
            op = OP_NOTIN;
            advance(P);
        } else break;
        advance(P);
        if (!n) {
            n = node(P, E_COMPARE, t);
            n->a = first;
        }
        if (n->args.n == 64) parse_fail(P, cur(P), "%s", "comparison chain too long");
        ops[n->args.n] = op;
        jn_push(P->a, &n->args, parse_math1(P));
    }
    if (!n) return first;
    n->ops = ja_alloc(P->a, (size_t)n->args.n * sizeof *n->ops);
    memcpy(n->ops, ops, (size_t)n->args.n * sizeof *ops);
    return n;
}

static jnode *parse_not(parser *P) {
    const jtok *t = cur(P);
    if (skip_name(P, "not")) {
        enter(P);
        jnode *n = node(P, E_NOT, t);
        n->a = parse_not(P);
        P->nesting--;
        return n;
    }
    return parse_compare(P);
}

static jnode *parse_and(parser *P) {
    jnode *n = parse_not(P);
    while (is_name(P, "and")) {
        const jtok *t = cur(P);
        advance(P);
        jnode *x = node(P, E_AND, t);
        x->a = n;
        x->b = parse_not(P);
        n = x;
    }
    return n;
}

static jnode *parse_or(parser *P) {
    jnode *n = parse_and(P);
    while (is_name(P, "or")) {
        const jtok *t = cur(P);
        advance(P);
        jnode *x = node(P, E_OR, t);
        x->a = n;
        x->b = parse_and(P);
        n = x;
    }
    return n;
}

static jnode *parse_condexpr(parser *P) {
    jnode *n = parse_or(P);
    while (is_name(P, "if")) {
        const jtok *t = cur(P);
        advance(P);
        jnode *c = node(P, E_COND, t);
        c->b = n;
        c->a = parse_or(P);
        if (skip_name(P, "else")) c->c = parse_condexpr(P);
        n = c;
    }
    return n;
}

static jnode *parse_expression(parser *P, int with_condexpr) {
    enter(P);
    jnode *n = with_condexpr ? parse_condexpr(P) : parse_or(P);
    P->nesting--;
    return n;
}

static int tuple_end(parser *P, const char *extra_end) {
    jtok_kind k = cur(P)->kind;
    return k == T_VAR_END || k == T_BLOCK_END || k == T_EOF || is_op(P, ")") || (extra_end && is_name(P, extra_end));
}

static jnode *parse_tuple(parser *P, int with_condexpr, int explicit_parens, const char *extra_end) {
    const jtok *t = cur(P);
    jnode *n = node(P, E_TUPLE, t);
    int is_tuple = 0;
    for (;;) {
        if (n->args.n) expect_op(P, ",");
        if (tuple_end(P, extra_end)) break;
        jn_push(P->a, &n->args, parse_expression(P, with_condexpr));
        if (is_op(P, ",")) is_tuple = 1;
        else break;
    }
    if (!is_tuple) {
        if (n->args.n) return n->args.v[0];
        if (!explicit_parens) parse_fail(P, cur(P), "expected an expression, got %s", describe(cur(P)));
    }
    return n;
}

/* ---- statements --------------------------------------------------------- */

static jnode *parse_body(parser *P, const char *const *ends, const char **found);

/* Body up to one of ends; consumes the end tag's name, returns which. */
static const char *parse_until(parser *P, jnodes *body, const char *const *ends) {
    const char *found = NULL;
    jnode *b = parse_body(P, ends, &found);
    *body = b->body;
    return found;
}

static jnode *assign_target(parser *P, int with_namespace) {
    const jtok *t = cur(P);
    if (with_namespace && t->kind == T_NAME && peek(P, 1)->kind == T_OP && !strcmp(peek(P, 1)->s, ".")) {
        jnode *n = node(P, E_ATTR, t);
        jnode *ns = node(P, E_NAME, t);
        ns->name = expect_name(P);
        advance(P);
        n->a = ns;
        n->name = expect_name(P);
        return n;
    }
    jnode *tuple = node(P, E_TUPLE, t);
    int parens = skip_op(P, "(");
    for (;;) {
        jnode *nm = node(P, E_NAME, cur(P));
        nm->name = expect_name(P);
        if (!strcmp(nm->name, "true") || !strcmp(nm->name, "false") || !strcmp(nm->name, "none") ||
            !strcmp(nm->name, "True") || !strcmp(nm->name, "False") || !strcmp(nm->name, "None"))
            parse_fail(P, cur(P), "cannot assign to '%s'", nm->name);
        jn_push(P->a, &tuple->args, nm);
        if (!skip_op(P, ",")) break;
        if (cur(P)->kind != T_NAME) break;
    }
    if (parens) expect_op(P, ")");
    return tuple->args.n == 1 && !parens ? tuple->args.v[0] : tuple;
}

static void parse_params(parser *P, jnode *n) {
    const char *names[64];
    int k = 0;
    expect_op(P, "(");
    while (!is_op(P, ")")) {
        if (k) expect_op(P, ",");
        if (is_op(P, ")")) break;
        if (k == 64) parse_fail(P, cur(P), "%s", "too many parameters");
        names[k] = expect_name(P);
        jnode *def = NULL;
        if (skip_op(P, "=")) def = parse_expression(P, 1);
        else if (n->args.n && n->args.v[n->args.n - 1]) parse_fail(P, cur(P), "%s", "non-default parameter follows default parameter");
        jn_push(P->a, &n->args, def);
        k++;
    }
    advance(P);
    n->kwnames = ja_alloc(P->a, (size_t)(k ? k : 1) * sizeof *n->kwnames);
    memcpy(n->kwnames, names, (size_t)k * sizeof *names);
}

static jnode *parse_statement(parser *P) {
    const jtok *t = cur(P);
    if (t->kind != T_NAME) parse_fail(P, t, "expected a statement name, got %s", describe(t));
    const char *kw = t->s;
    advance(P);
    jnode *n;
    enter(P);
    if (!strcmp(kw, "if")) {
        n = node(P, N_IF, t);
        n->a = parse_tuple(P, 0, 0, NULL);
        expect_block_end(P);
        jnode *tail = n;
        for (;;) {
            static const char *const ends[] = {"elif", "else", "endif", NULL};
            const char *e = parse_until(P, &tail->body, ends);
            if (!strcmp(e, "elif")) {
                jnode *elif = node(P, N_IF, prev(P));
                elif->a = parse_tuple(P, 0, 0, NULL);
                expect_block_end(P);
                jn_push(P->a, &tail->orelse, elif);
                tail = elif;
                continue;
            }
            if (!strcmp(e, "else")) {
                static const char *const end_if[] = {"endif", NULL};
                expect_block_end(P);
                parse_until(P, &tail->orelse, end_if);
            }
            break;
        }
    } else if (!strcmp(kw, "for")) {
        n = node(P, N_FOR, t);
        n->a = assign_target(P, 0);
        if (!skip_name(P, "in")) parse_fail(P, cur(P), "expected 'in', got %s", describe(cur(P)));
        n->b = parse_tuple(P, 0, 0, "recursive");
        if (skip_name(P, "if")) n->c = parse_expression(P, 1);
        if (is_name(P, "recursive")) parse_fail(P, cur(P), "%s", "recursive loops are not supported");
        expect_block_end(P);
        static const char *const ends[] = {"endfor", "else", NULL};
        P->loop_depth++;
        const char *e = parse_until(P, &n->body, ends);
        P->loop_depth--;
        if (!strcmp(e, "else")) {
            static const char *const end_for[] = {"endfor", NULL};
            expect_block_end(P);
            parse_until(P, &n->orelse, end_for);
        }
    } else if (!strcmp(kw, "set")) {
        n = node(P, N_SET, t);
        n->a = assign_target(P, 1);
        if (skip_op(P, "=")) {
            n->b = parse_tuple(P, 1, 0, NULL);
        } else {
            n->kind = N_SETBLOCK;
            if (n->a->kind != E_NAME) parse_fail(P, t, "%s", "block set needs a single name");
            if (skip_op(P, "|")) {
                n->b = parse_filter(P, NULL);
                while (skip_op(P, "|")) n->b = parse_filter(P, n->b);
            }
            expect_block_end(P);
            static const char *const ends[] = {"endset", NULL};
            parse_until(P, &n->body, ends);
        }
    } else if (!strcmp(kw, "macro")) {
        n = node(P, N_MACRO, t);
        n->name = expect_name(P);
        parse_params(P, n);
        expect_block_end(P);
        static const char *const ends[] = {"endmacro", NULL};
        int saved = P->loop_depth;
        P->loop_depth = 0;
        parse_until(P, &n->body, ends);
        P->loop_depth = saved;
    } else if (!strcmp(kw, "call")) {
        n = node(P, N_CALLBLOCK, t);
        jnode *caller = node(P, N_MACRO, t);
        caller->name = "caller";
        if (is_op(P, "(")) parse_params(P, caller);
        else caller->kwnames = ja_alloc(P->a, sizeof *caller->kwnames);
        n->a = parse_expression(P, 1);
        if (n->a->kind != E_CALL) parse_fail(P, t, "%s", "expected a call after {% call");
        expect_block_end(P);
        static const char *const ends[] = {"endcall", NULL};
        int saved = P->loop_depth;
        P->loop_depth = 0;
        parse_until(P, &caller->body, ends);
        P->loop_depth = saved;
        n->b = caller;
    } else if (!strcmp(kw, "filter")) {
        n = node(P, N_FILTERBLOCK, t);
        n->a = parse_filter(P, NULL);
        while (skip_op(P, "|")) n->a = parse_filter(P, n->a);
        expect_block_end(P);
        static const char *const ends[] = {"endfilter", NULL};
        parse_until(P, &n->body, ends);
    } else if (!strcmp(kw, "generation")) {
        /* HF's AssistantTracker marks assistant spans; rendering emits the body. */
        n = node(P, N_BODY, t);
        expect_block_end(P);
        static const char *const ends[] = {"endgeneration", NULL};
        parse_until(P, &n->body, ends);
    } else if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        if (!P->loop_depth) parse_fail(P, t, "'%s' outside of a loop", kw);
        n = node(P, kw[0] == 'b' ? N_BREAK : N_CONTINUE, t);
    } else {
        parse_fail(P, t, "unknown tag '%s'", kw);
    }
    expect_block_end(P);
    P->nesting--;
    return n;
}

static jnode *parse_body(parser *P, const char *const *ends, const char **found) {
    jnode *body = node(P, N_BODY, cur(P));
    for (;;) {
        const jtok *t = cur(P);
        if (t->kind == T_EOF) {
            if (!ends) return body;
            jbuf b = {.arena = P->a};
            for (int i = 0; ends[i]; i++) jb_printf(&b, "%s'%s'", i ? " or " : "", ends[i]);
            parse_fail(P, t, "unexpected end of template, expected %s", b.p);
        }
        if (t->kind == T_TEXT) {
            jnode *n = node(P, N_TEXT, t);
            n->value = jv_str(P->a, t->s, t->len);
            jn_push(P->a, &body->body, n);
            advance(P);
        } else if (t->kind == T_VAR_BEGIN) {
            advance(P);
            jnode *n = node(P, N_OUTPUT, t);
            n->a = parse_tuple(P, 1, 0, NULL);
            if (cur(P)->kind != T_VAR_END) parse_fail(P, cur(P), "expected end of print statement '}}', got %s", describe(cur(P)));
            advance(P);
            jn_push(P->a, &body->body, n);
        } else if (t->kind == T_BLOCK_BEGIN) {
            advance(P);
            const jtok *name = cur(P);
            for (int i = 0; ends && ends[i]; i++)
                if (name->kind == T_NAME && !strcmp(name->s, ends[i])) {
                    advance(P);
                    *found = ends[i];
                    return body;
                }
            if (name->kind == T_NAME && !strncmp(name->s, "end", 3) && strlen(name->s) > 3)
                parse_fail(P, name, "unexpected '%s'", name->s);
            jn_push(P->a, &body->body, parse_statement(P));
        } else {
            parse_fail(P, t, "unexpected %s", describe(t));
        }
    }
}

jnode *jinja_parse_tokens(jarena *a, jfail *f, const jtoks *toks) {
    parser P = {.a = a, .f = f, .toks = toks};
    return parse_body(&P, NULL, NULL);
}
