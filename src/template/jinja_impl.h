/* template/jinja_impl.h — internals shared by the jinja_*.c files: the arena,
 * Python-like values, tokens, the syntax tree and the render state.
 *
 * Every object made while parsing or rendering lives in an arena freed in one
 * go, so a failure anywhere unwinds with longjmp to the entry point
 * (jinja_parse / jinja_render), which turns it into a bs_status: nothing can
 * leak on the way out and the interpreter needs no error plumbing. */
#ifndef BASALT_TEMPLATE_JINJA_IMPL_H
#define BASALT_TEMPLATE_JINJA_IMPL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "template/jinja.h"

/* ---- arena and failure -------------------------------------------------- */

typedef struct jarena_block jarena_block;
typedef struct jfail {
    jmp_buf jump;
    bs_error *err;
    const char *name; /* template label for messages */
} jfail;

typedef struct jarena {
    jarena_block *head;
    size_t total, limit; /* bytes allocated so far and the cap (0 = none) */
    jfail *fail;         /* where an exhausted arena reports */
} jarena;

void *ja_alloc(jarena *a, size_t n); /* zeroed; fails through a->fail past the limit */
char *ja_strndup(jarena *a, const char *s, size_t n);
char *ja_printf(jarena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ja_free(jarena *a);

/* Record "name:line:col: message" and unwind to the entry point. */
_Noreturn void jfail_at(jfail *f, bs_status status, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Growable byte buffer inside an arena. */
typedef struct jbuf {
    jarena *arena;
    char *p;
    size_t len, cap;
} jbuf;
void jb_put(jbuf *b, const char *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- values ------------------------------------------------------------- */

typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_TUPLE, JV_DICT, JV_NS,
    JV_FUNC, JV_LOOP,
} jv_kind;

typedef struct jstr jstr;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    jv_kind kind;
    union {
        int b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;  /* JV_LIST, JV_TUPLE */
        jdict *d;  /* JV_DICT, JV_NS */
        jfunc *fn;
        jloop *loop;
        const char *undef; /* JV_UNDEF: the message jinja2 gives when it is used */
    } u;
} jv;

struct jstr {
    size_t len;
    char p[]; /* NUL-terminated */
};
struct jlist {
    size_t n, cap;
    jv *v;
};
struct jdict { /* insertion-ordered; linear lookup suits chat-sized dicts */
    size_t n, cap;
    jv *k, *v;
};

typedef struct jargs {
    int n;
    jv *pos;
    int nkw;
    const char **kwname;
    jv *kw;
} jargs;

typedef struct jrender jrender;
typedef struct jnode jnode;
typedef jv (*jbuiltin_fn)(jrender *r, const jnode *at, jv self, const jargs *a);

typedef enum { JF_BUILTIN, JF_MACRO } jfunc_kind;
typedef struct jframe jframe;
struct jfunc {
    jfunc_kind kind;
    const char *name;
    jv self;          /* bound object for methods */
    jbuiltin_fn fn;   /* JF_BUILTIN */
    const jnode *macro; /* JF_MACRO: its definition */
    jframe *closure;  /* JF_MACRO: the frame it was defined in */
    jv caller;        /* JF_MACRO: caller() inside a {% call %} body, or undefined */
};

struct jloop {
    const jlist *items;
    size_t index0;
};

extern const jv JV_NONE_V;
jv jv_bool(int b);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_str(jarena *a, const char *s, size_t n);
jv jv_cstr(jarena *a, const char *s);
jv jv_undef(const char *message);
jv jv_list(jarena *a, size_t cap);
jv jv_dict(jarena *a, size_t cap);
void jl_push(jarena *a, jlist *l, jv x);
void jd_set(jarena *a, jdict *d, jv key, jv val); /* replaces an equal key */
int jd_find(const jdict *d, jv key);               /* index or -1 */
/* Set a string key; reuses the key a cleared dict (n = 0) left in the same
 * slot, so a loop frame re-binding the same names allocates nothing. */
void jd_set_str(jarena *a, jdict *d, const char *key, jv val);
int jd_get_str(const jdict *d, const char *key, jv *out); /* 1 when present */

jv jv_from_json(jarena *a, const json_t *j);
int jv_truthy(jv x);
int jv_equal(jv a, jv b);
const char *jv_type_name(jv x); /* Python's: str, int, dict, NoneType ... */

/* UTF-8 code points: Python indexes, slices and measures strings by them. */
size_t ju_count(const char *s, size_t n);
size_t ju_offset(const char *s, size_t n, size_t k); /* byte offset of code point k, n past the end */

/* Python str algorithms (jinja_strings.c), by code point. */
int js_isspace(uint32_t c);
jv js_strip(jrender *r, const jstr *s, const jstr *chars, int left, int right); /* chars NULL: whitespace */
jlist *js_split(jrender *r, const jstr *s, const jstr *sep, int64_t maxsplit, int from_right); /* sep NULL: runs of whitespace */
jlist *js_splitlines(jrender *r, const jstr *s, int keepends);
typedef enum { JS_UPPER, JS_LOWER, JS_TITLE, JS_CAPITALIZE } js_case_mode;
jv js_case(jrender *r, const jstr *s, js_case_mode mode);
jv js_replace(jrender *r, const jstr *s, const jstr *old, const jstr *rep, int64_t count);
int64_t js_find(const jstr *s, const jstr *sub, int from_right); /* code point index or -1 */
int64_t js_count(const jstr *s, const jstr *sub);

/* Python's str() and repr() of a value, and float repr. */
void jv_write_str(jbuf *b, jv x);
void jv_write_repr(jbuf *b, jv x);
void jv_write_float(jbuf *b, double f);
jstr *jv_to_str(jarena *a, jv x);

/* ---- tokens and syntax tree --------------------------------------------- */

typedef enum {
    T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT,
    T_OP, T_EOF,
} jtok_kind;

typedef struct jtok {
    jtok_kind kind;
    int line, col;
    const char *s; /* text / name / decoded string / operator; NUL-terminated */
    size_t len;
    int64_t i;
    double f;
} jtok;

typedef struct jtoks {
    jtok *v;
    size_t n, cap;
} jtoks;

void jinja_lex(jarena *a, jfail *f, const char *source, jtoks *out);

typedef enum {
    /* statements */
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK, N_BREAK,
    N_CONTINUE, N_BODY,
    /* expressions */
    E_CONST, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_POS, E_NOT, E_BINOP,
    E_AND, E_OR, E_COMPARE, E_COND, E_LIST, E_TUPLE, E_DICT,
} jnode_kind;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN,
} jop;

typedef struct jnodes {
    jnode **v;
    int n, cap;
} jnodes;

struct jnode {
    jnode_kind kind;
    int line, col;
    jop op;
    int negated;       /* E_TEST: "is not" */
    jv value;          /* E_CONST */
    const char *name;  /* E_NAME, E_ATTR, E_FILTER, E_TEST, N_MACRO */
    jnode *a, *b, *c, *d;
    jnodes args;       /* call/filter/test args, list/tuple/dict items, compare operands, macro defaults */
    jnodes kwargs;     /* keyword values, dict values */
    const char **kwnames; /* keyword names, macro parameter names */
    jop *ops;          /* E_COMPARE */
    jnodes body, orelse;
};

void jn_push(jarena *a, jnodes *l, jnode *n);

/* The whole template as one N_BODY node. */
jnode *jinja_parse_tokens(jarena *a, jfail *f, const jtoks *toks);

/* ---- rendering ---------------------------------------------------------- */

struct jframe {
    jframe *parent;
    jdict vars;
};

struct jrender {
    jarena arena;
    jfail fail;
    jinja_options opt;
    long iterations;
    int depth;
    jbuf *out;     /* where output goes now (swapped for captures) */
    size_t out_total;
    jframe *globals;
};

_Noreturn void jr_fail(jrender *r, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Fail with the message carried by an undefined value. */
_Noreturn void jr_fail_undef(jrender *r, const jnode *at, jv u);

jv jr_call(jrender *r, const jnode *at, jv fn, const jargs *a);
jv jr_getattr(jrender *r, const jnode *at, jv obj, const char *name);
jv jr_getitem(jrender *r, const jnode *at, jv obj, jv key);
/* The undefined value jinja2 gives for obj.key / obj[key] that does not exist. */
jv jr_missing(jrender *r, jv obj, jv key);
jlist *jr_iterate(jrender *r, const jnode *at, jv x); /* the items a for loop sees */
int jr_compare(jrender *r, const jnode *at, jop op, jv a, jv b);
jv jr_binop(jrender *r, const jnode *at, jop op, jv a, jv b);

/* Built-in filters, tests, globals and methods (jinja_builtins.c). */
jv jb_filter(jrender *r, const jnode *at, const char *name, jv x, const jargs *a);
int jb_test(jrender *r, const jnode *at, const char *name, jv x, const jargs *a);
int jb_has_test(const char *name);
int jb_has_filter(const char *name);
void jb_install_globals(jrender *r, jdict *globals);
/* obj.name as a bound method (or the sandbox's refusal for mutating ones);
 * 0 when the type has no such method. */
int jb_method(jrender *r, const jnode *at, jv obj, const char *name, jv *out);
/* Argument index (positional) or kw (keyword) of a builtin call; 1 when given. */
int jb_arg(const jargs *a, int index, const char *kw, jv *out);
/* Attribute path "a.b.0" as filters' attribute= arguments resolve it. */
jv jb_attribute(jrender *r, const jnode *at, jv x, jv path);

/* str % args, Python's printf-style formatting. */
jv jb_percent_format(jrender *r, const jnode *at, jv fmt, jv args);
/* json.dumps(x, ensure_ascii, indent, separators, sort_keys); indent NULL = one line. */
typedef struct jjson_style {
    int ensure_ascii, sort_keys;
    const char *indent, *item_sep, *key_sep;
} jjson_style;
void jb_tojson(jrender *r, const jnode *at, jbuf *b, jv x, const jjson_style *style, int level);


#endif
