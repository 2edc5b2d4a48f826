/* gateway/config.c — loading the gateway YAML (see config.h and
 * docs/gateway.md for every key).
 *
 * Two passes: libyaml's event parser builds a small tree of scalars,
 * mappings and lists that remembers where each node started, then a
 * validating pass walks that tree over the known keys and fills a gw_config.
 * Keeping the tree means every later error (a wrong type, an undefined
 * reference, a name used twice) can still point at FILE:LINE:COL. */
#include "gateway/config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/file.h"

/* ------------------------------------------------------------ the tree */

typedef enum { NODE_SCALAR, NODE_MAP, NODE_LIST } node_kind;

typedef struct node {
    node_kind kind;
    int line, col; /* 1-based */
    char *text;    /* scalars */
    int plain;     /* unquoted and untagged: may read as a number, boolean or null */
    struct node **kids; /* maps: key, value, key, value, …; lists: the items */
    int n, cap;
} node;

/* Deep enough for any sensible config; bounds the recursion on hostile input. */
#define MAX_DEPTH 64

static void node_free(node *n) {
    if (!n) return;
    for (int i = 0; i < n->n; i++) node_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

typedef struct parser {
    const char *file;
    bs_error *err;
    yaml_parser_t yp;
} parser;

static bs_status at_fail(bs_error *err, const char *file, int line, int col, const char *key, const char *fmt,
                         va_list ap) {
    char msg[BS_ERROR_MSG_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (key) return bs_fail(err, BS_EFORMAT, "%s:%d:%d: %s: %s", file, line, col, key, msg);
    return bs_fail(err, BS_EFORMAT, "%s:%d:%d: %s", file, line, col, msg);
}

__attribute__((format(printf, 4, 5))) static bs_status tree_fail(parser *p, const node *at, const char *key,
                                                                 const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    bs_status s = at_fail(p->err, p->file, at->line, at->col, key, fmt, ap);
    va_end(ap);
    return s;
}

static bs_status next_event(parser *p, yaml_event_t *ev) {
    if (yaml_parser_parse(&p->yp, ev)) return BS_OK;
    const yaml_parser_t *y = &p->yp;
    if (y->error == YAML_MEMORY_ERROR) return bs_fail(p->err, BS_ENOMEM, "%s: out of memory parsing YAML", p->file);
    /* Reader errors (bad encoding) carry no mark, only a byte offset. */
    yaml_mark_t m = y->error == YAML_READER_ERROR ? y->mark : y->problem_mark;
    const char *problem = y->problem ? y->problem : "malformed YAML";
    if (y->context)
        return bs_fail(p->err, BS_EFORMAT, "%s:%zu:%zu: YAML syntax error: %s (%s at line %zu)", p->file,
                       m.line + 1, m.column + 1, problem, y->context, y->context_mark.line + 1);
    return bs_fail(p->err, BS_EFORMAT, "%s:%zu:%zu: YAML syntax error: %s", p->file, m.line + 1, m.column + 1,
                   problem);
}

static bs_status push(parser *p, node *parent, node *kid) {
    if (parent->n == parent->cap) {
        int cap = parent->cap ? 2 * parent->cap : 8;
        node **k = realloc(parent->kids, (size_t)cap * sizeof *k);
        if (!k) return bs_fail(p->err, BS_ENOMEM, "%s: out of memory", p->file);
        parent->kids = k, parent->cap = cap;
    }
    parent->kids[parent->n++] = kid;
    return BS_OK;
}

/* Build the node that ev starts (ev is consumed). */
static bs_status build(parser *p, yaml_event_t *ev, int depth, node **out) {
    *out = NULL;
    node *n = calloc(1, sizeof *n);
    if (!n) {
        yaml_event_delete(ev);
        return bs_fail(p->err, BS_ENOMEM, "%s: out of memory", p->file);
    }
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    bs_status s = BS_OK;
    if (ev->type == YAML_ALIAS_EVENT) {
        s = tree_fail(p, n, NULL, "YAML aliases (*%s) are not supported; repeat the value", ev->data.alias.anchor);
    } else if (depth > MAX_DEPTH) {
        s = tree_fail(p, n, NULL, "nested deeper than %d levels", MAX_DEPTH);
    } else if (ev->type == YAML_SCALAR_EVENT) {
        n->kind = NODE_SCALAR;
        n->plain = ev->data.scalar.plain_implicit;
        n->text = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        if (!n->text) s = bs_fail(p->err, BS_ENOMEM, "%s: out of memory", p->file);
    } else {
        n->kind = ev->type == YAML_MAPPING_START_EVENT ? NODE_MAP : NODE_LIST;
        yaml_event_type_t end = n->kind == NODE_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
        for (;;) {
            yaml_event_t e;
            if ((s = next_event(p, &e)) != BS_OK) break;
            if (e.type == end) {
                yaml_event_delete(&e);
                break;
            }
            node *kid;
            if ((s = build(p, &e, depth + 1, &kid)) != BS_OK) break;
            if ((s = push(p, n, kid)) != BS_OK) {
                node_free(kid);
                break;
            }
            if (n->kind != NODE_MAP || n->n % 2 == 0) continue;
            /* kid is a key */
            if (kid->kind != NODE_SCALAR) {
                s = tree_fail(p, kid, NULL, "a mapping key must be a plain string");
                break;
            }
            for (int i = 0; i + 1 < n->n; i += 2)
                if (strcmp(n->kids[i]->text, kid->text) == 0) {
                    s = tree_fail(p, kid, kid->text, "duplicate key (first at line %d)", n->kids[i]->line);
                    break;
                }
            if (s != BS_OK) break;
        }
    }
    yaml_event_delete(ev);
    if (s != BS_OK) {
        node_free(n);
        return s;
    }
    *out = n;
    return BS_OK;
}

/* The document's root node, or NULL for an empty file. */
static bs_status parse_tree(const char *file, const char *text, size_t len, node **root, bs_error *err) {
    parser p = {.file = file, .err = err};
    *root = NULL;
    if (!yaml_parser_initialize(&p.yp)) return bs_fail(err, BS_ENOMEM, "%s: out of memory", file);
    yaml_parser_set_input_string(&p.yp, (const unsigned char *)text, len);
    bs_status s = BS_OK;
    int documents = 0;
    for (;;) {
        yaml_event_t ev;
        if ((s = next_event(&p, &ev)) != BS_OK) break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && ++documents > 1) {
            s = bs_fail(err, BS_EFORMAT, "%s:%zu:%zu: a config is one YAML document; found a second", file,
                        ev.start_mark.line + 1, ev.start_mark.column + 1);
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_SCALAR_EVENT || t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT ||
            t == YAML_ALIAS_EVENT) {
            if ((s = build(&p, &ev, 0, root)) != BS_OK) break;
        } else {
            yaml_event_delete(&ev);
        }
    }
    yaml_parser_delete(&p.yp);
    if (s != BS_OK) {
        node_free(*root);
        *root = NULL;
    }
    return s;
}

/* ------------------------------------------------------------ typed reads */

typedef struct loader {
    const char *file;
    bs_error *err;
    gw_config *c;
} loader;

__attribute__((format(printf, 4, 5))) static bs_status fail(loader *l, const node *at, const char *key,
                                                            const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    bs_status s = at_fail(l->err, l->file, at->line, at->col, key, fmt, ap);
    va_end(ap);
    return s;
}

static bs_status oom(loader *l) { return bs_fail(l->err, BS_ENOMEM, "%s: out of memory", l->file); }

/* Key paths in messages: "routes[0].retry.max_retries". */
typedef struct keypath {
    char s[160];
} keypath;

static keypath kp_key(const char *parent, const char *key) {
    keypath k;
    snprintf(k.s, sizeof k.s, "%s%s%s", parent, *parent ? "." : "", key);
    return k;
}

static keypath kp_index(const char *parent, int i) {
    keypath k;
    snprintf(k.s, sizeof k.s, "%s[%d]", parent, i);
    return k;
}

static int is_null(const node *n) {
    if (n->kind != NODE_SCALAR || !n->plain) return 0;
    const char *t = n->text;
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

/* YAML 1.2 core-schema booleans; -1 when t is not one. */
static int read_bool_text(const char *t) {
    if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE")) return 1;
    if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE")) return 0;
    return -1;
}

/* A decimal number ("12", "-0.5", "1e-3"); no hex, inf or nan, which strtod
 * alone would accept.  *is_int says it had no fraction or exponent. */
static int read_number_text(const char *t, double *out, int *is_int) {
    const char *q = t;
    if (*q == '+' || *q == '-') q++;
    int digits = 0, integral = 1;
    while (*q >= '0' && *q <= '9') q++, digits++;
    if (*q == '.') {
        integral = 0;
        q++;
        while (*q >= '0' && *q <= '9') q++, digits++;
    }
    if (!digits) return 0;
    if (*q == 'e' || *q == 'E') {
        integral = 0;
        q++;
        if (*q == '+' || *q == '-') q++;
        if (!(*q >= '0' && *q <= '9')) return 0;
        while (*q >= '0' && *q <= '9') q++;
    }
    if (*q) return 0;
    errno = 0;
    double v = strtod(t, NULL);
    if (errno == ERANGE || !isfinite(v)) return 0;
    *out = v;
    *is_int = integral;
    return 1;
}

static const char *describe(const node *n) {
    return n->kind == NODE_MAP ? "a mapping" : n->kind == NODE_LIST ? "a list" : "a scalar";
}

/* The value of key in map, or NULL when absent or null. */
static const node *get(const node *map, const char *key) {
    for (int i = 0; i + 1 < map->n; i += 2)
        if (!strcmp(map->kids[i]->text, key)) return is_null(map->kids[i + 1]) ? NULL : map->kids[i + 1];
    return NULL;
}

/* Refuse keys outside allowed (a NULL-terminated list), naming the allowed ones. */
static bs_status check_keys(loader *l, const node *map, const char *path, const char *const *allowed) {
    for (int i = 0; i < map->n; i += 2) {
        const char *k = map->kids[i]->text;
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = !strcmp(*a, k);
        if (ok) continue;
        char list[320] = "";
        size_t used = 0;
        for (const char *const *a = allowed; *a && used < sizeof list; a++)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", a == allowed ? "" : ", ", *a);
        return fail(l, map->kids[i], kp_key(path, k).s, "unknown key (allowed: %s)", list);
    }
    return BS_OK;
}

static bs_status want(loader *l, const node *n, const char *path, node_kind kind) {
    if (n->kind == kind) return BS_OK;
    const char *what = kind == NODE_MAP ? "a mapping" : kind == NODE_LIST ? "a list" : "a string";
    if (n->kind == NODE_SCALAR) return fail(l, n, path, "expected %s, got '%s'", what, n->text);
    return fail(l, n, path, "expected %s, got %s", what, describe(n));
}

static bs_status missing(loader *l, const node *map, const char *path, const char *key) {
    return fail(l, map, kp_key(path, key).s, "missing (required)");
}

/* A string value; *out stays as it was (NULL) when absent and optional. */
static bs_status read_str(loader *l, const node *map, const char *path, const char *key, int required,
                          char **out) {
    const node *v = get(map, key);
    if (!v) return required ? missing(l, map, path, key) : BS_OK;
    bs_status s = want(l, v, kp_key(path, key).s, NODE_SCALAR);
    if (s != BS_OK) return s;
    if (!*v->text) return fail(l, v, kp_key(path, key).s, "must not be empty");
    return (*out = strdup(v->text)) ? BS_OK : oom(l);
}

/* Ranges for numbers, each with the words its error uses. */
typedef enum { RANGE_POSITIVE, RANGE_NONNEG, RANGE_RATE } range;

static bs_status read_double(loader *l, const node *map, const char *path, const char *key, range r, double *out) {
    const node *v = get(map, key);
    if (!v) return BS_OK;
    keypath k = kp_key(path, key);
    double x;
    int is_int;
    if (v->kind != NODE_SCALAR || !read_number_text(v->text, &x, &is_int)) {
        if (v->kind == NODE_SCALAR) return fail(l, v, k.s, "expected a number, got '%s'", v->text);
        return fail(l, v, k.s, "expected a number, got %s", describe(v));
    }
    if (r == RANGE_POSITIVE && !(x > 0)) return fail(l, v, k.s, "must be > 0, got %s", v->text);
    if (r == RANGE_NONNEG && !(x >= 0)) return fail(l, v, k.s, "must be >= 0, got %s", v->text);
    if (r == RANGE_RATE && !(x > 0 && x <= 1)) return fail(l, v, k.s, "must be in (0, 1], got %s", v->text);
    *out = x;
    return BS_OK;
}

static bs_status read_int(loader *l, const node *map, const char *path, const char *key, int min, int *out) {
    const node *v = get(map, key);
    if (!v) return BS_OK;
    keypath k = kp_key(path, key);
    double x;
    int is_int = 0;
    if (v->kind != NODE_SCALAR || !read_number_text(v->text, &x, &is_int) || !is_int || x > INT_MAX) {
        if (v->kind == NODE_SCALAR) return fail(l, v, k.s, "expected an integer, got '%s'", v->text);
        return fail(l, v, k.s, "expected an integer, got %s", describe(v));
    }
    if (x < min) return fail(l, v, k.s, "must be >= %d, got %s", min, v->text);
    *out = (int)x;
    return BS_OK;
}

static bs_status read_bool(loader *l, const node *map, const char *path, const char *key, int *out) {
    const node *v = get(map, key);
    if (!v) return BS_OK;
    int b = v->kind == NODE_SCALAR && v->plain ? read_bool_text(v->text) : -1;
    if (b < 0) {
        if (v->kind == NODE_SCALAR) return fail(l, v, kp_key(path, key).s, "expected true or false, got '%s'", v->text);
        return fail(l, v, kp_key(path, key).s, "expected true or false, got %s", describe(v));
    }
    *out = b;
    return BS_OK;
}

/* An optional list under key: *items NULL when absent. */
static bs_status get_list(loader *l, const node *map, const char *path, const char *key, const node **items) {
    *items = get(map, key);
    return *items ? want(l, *items, kp_key(path, key).s, NODE_LIST) : BS_OK;
}

/* ------------------------------------------------------------ references */

/* name is a model (not a route): its index. */
static bs_status ref_model(loader *l, const node *v, const char *path, int *out) {
    bs_status s = want(l, v, path, NODE_SCALAR);
    if (s != BS_OK) return s;
    int i = gw_config_model(l->c, v->text);
    if (i >= 0) return *out = i, BS_OK;
    if (gw_config_route(l->c, v->text) >= 0)
        return fail(l, v, path, "'%s' is a route; only models may be named here (routes do not nest)", v->text);
    return fail(l, v, path, "no model named '%s' is defined", v->text);
}

/* A list of model names under key into a fresh index array. */
static bs_status ref_models(loader *l, const node *map, const char *path, const char *key, int **out, int *n) {
    const node *list;
    bs_status s = get_list(l, map, path, key, &list);
    if (s != BS_OK || !list || !list->n) return s;
    keypath k = kp_key(path, key);
    if (!(*out = calloc((size_t)list->n, sizeof **out))) return oom(l);
    for (int i = 0; i < list->n; i++) {
        if ((s = ref_model(l, list->kids[i], kp_index(k.s, i).s, &(*out)[i])) != BS_OK) return s;
        (*n)++;
    }
    return BS_OK;
}

/* A list of defined guardrail names under key. */
static bs_status ref_guardrails(loader *l, const node *map, const char *path, char ***out, int *n) {
    const node *list;
    bs_status s = get_list(l, map, path, "guardrails", &list);
    if (s != BS_OK || !list || !list->n) return s;
    keypath k = kp_key(path, "guardrails");
    if (!(*out = calloc((size_t)list->n, sizeof **out))) return oom(l);
    for (int i = 0; i < list->n; i++) {
        const node *v = list->kids[i];
        keypath ki = kp_index(k.s, i);
        if ((s = want(l, v, ki.s, NODE_SCALAR)) != BS_OK) return s;
        if (!gw_config_guardrail(l->c, v->text)) return fail(l, v, ki.s, "no guardrail named '%s' is defined", v->text);
        if (!((*out)[i] = strdup(v->text))) return oom(l);
        (*n)++;
    }
    return BS_OK;
}

/* ------------------------------------------------------------ sections */

static bs_status read_retry(loader *l, const node *map, const char *path, gw_retry *r) {
    const node *v = get(map, "retry");
    if (!v) return BS_OK;
    keypath k = kp_key(path, "retry");
    static const char *const keys[] = {"max_retries", "backoff_base_s", "backoff_max_s", "retry_after_max_s", NULL};
    bs_status s;
    if ((s = want(l, v, k.s, NODE_MAP)) || (s = check_keys(l, v, k.s, keys)) ||
        (s = read_int(l, v, k.s, "max_retries", 0, &r->max_retries)) ||
        (s = read_double(l, v, k.s, "backoff_base_s", RANGE_NONNEG, &r->backoff_base_s)) ||
        (s = read_double(l, v, k.s, "backoff_max_s", RANGE_NONNEG, &r->backoff_max_s)) ||
        (s = read_double(l, v, k.s, "retry_after_max_s", RANGE_NONNEG, &r->retry_after_max_s)))
        return s;
    if (r->backoff_max_s < r->backoff_base_s)
        return fail(l, v, k.s, "backoff_max_s (%g) is below backoff_base_s (%g)", r->backoff_max_s, r->backoff_base_s);
    return BS_OK;
}

static bs_status read_breaker(loader *l, const node *map, const char *path, gw_breaker *b) {
    const node *v = get(map, "breaker");
    if (!v) return BS_OK;
    keypath k = kp_key(path, "breaker");
    static const char *const keys[] = {"min_requests", "failure_rate", "window_s", "cooldown_s", "half_open_probes",
                                       NULL};
    bs_status s;
    if ((s = want(l, v, k.s, NODE_MAP)) || (s = check_keys(l, v, k.s, keys)) ||
        (s = read_int(l, v, k.s, "min_requests", 1, &b->min_requests)) ||
        (s = read_double(l, v, k.s, "failure_rate", RANGE_RATE, &b->failure_rate)) ||
        (s = read_double(l, v, k.s, "window_s", RANGE_POSITIVE, &b->window_s)) ||
        (s = read_double(l, v, k.s, "cooldown_s", RANGE_POSITIVE, &b->cooldown_s)) ||
        (s = read_int(l, v, k.s, "half_open_probes", 1, &b->half_open_probes)))
        return s;
    return BS_OK;
}

static int has_prefix(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static bs_status read_provider(loader *l, const node *m, const char *path, gw_provider *p) {
    static const char *const keys[] = {"name", "base_url", "api_key_env", "timeout_s", "connect_timeout_s",
                                       "max_connections", NULL};
    p->timeout_s = 600, p->connect_timeout_s = 10, p->max_connections = 64, p->line = m->line;
    bs_status s;
    if ((s = want(l, m, path, NODE_MAP)) || (s = check_keys(l, m, path, keys)) ||
        (s = read_str(l, m, path, "name", 1, &p->name)) || (s = read_str(l, m, path, "base_url", 1, &p->base_url)) ||
        (s = read_str(l, m, path, "api_key_env", 0, &p->api_key_env)) ||
        (s = read_double(l, m, path, "timeout_s", RANGE_POSITIVE, &p->timeout_s)) ||
        (s = read_double(l, m, path, "connect_timeout_s", RANGE_POSITIVE, &p->connect_timeout_s)) ||
        (s = read_int(l, m, path, "max_connections", 1, &p->max_connections)))
        return s;
    const char *rest = has_prefix(p->base_url, "http://")    ? p->base_url + 7
                       : has_prefix(p->base_url, "https://") ? p->base_url + 8
                                                             : NULL;
    if (!rest || !*rest || *rest == '/')
        return fail(l, get(m, "base_url"), kp_key(path, "base_url").s,
                    "'%s' is not an http:// or https:// URL with a host", p->base_url);
    /* Stored without a trailing slash so clients append "/chat/completions". */
    size_t n = strlen(p->base_url);
    while (n && p->base_url[n - 1] == '/') p->base_url[--n] = 0;
    if (p->api_key_env) {
        const char *key = getenv(p->api_key_env);
        if (key && !(p->api_key = strdup(key))) return oom(l);
    }
    return BS_OK;
}

/* Names of models and routes share one namespace (clients send either as
 * "model"): refuse name at v when a model or route defined earlier has it. */
static bs_status unique_public_name(loader *l, const node *v, const char *path, int model_upto, int route_upto) {
    for (int i = 0; i < model_upto; i++)
        if (!strcmp(l->c->models[i].name, v->text))
            return fail(l, v, path, "'%s' is already defined (the model at line %d)", v->text, l->c->models[i].line);
    for (int i = 0; i < route_upto; i++)
        if (!strcmp(l->c->routes[i].name, v->text))
            return fail(l, v, path, "'%s' is already defined (the route at line %d)", v->text, l->c->routes[i].line);
    return BS_OK;
}

static bs_status read_model(loader *l, const node *m, const char *path, int index, gw_model *md) {
    static const char *const keys[] = {"name",  "path", "quantize", "ctx",            "provider",   "model",
                                       "price", "rpm",  "tpm",      "max_concurrent", "guardrails", NULL};
    md->line = m->line;
    md->provider = -1;
    bs_status s;
    if ((s = want(l, m, path, NODE_MAP)) || (s = check_keys(l, m, path, keys)) ||
        (s = read_str(l, m, path, "name", 1, &md->name)) ||
        (s = unique_public_name(l, get(m, "name"), kp_key(path, "name").s, index, 0)) ||
        (s = read_str(l, m, path, "path", 0, &md->path)) ||
        (s = read_str(l, m, path, "quantize", 0, &md->quantize)) || (s = read_int(l, m, path, "ctx", 0, &md->ctx)) ||
        (s = read_str(l, m, path, "model", 0, &md->upstream_model)) ||
        (s = read_int(l, m, path, "rpm", 0, &md->rpm)) || (s = read_int(l, m, path, "tpm", 0, &md->tpm)) ||
        (s = read_int(l, m, path, "max_concurrent", 0, &md->max_concurrent)) ||
        (s = ref_guardrails(l, m, path, &md->guardrails, &md->n_guardrails)))
        return s;
    const node *prov = get(m, "provider");
    if (md->path) {
        md->kind = GW_MODEL_LOCAL;
        const node *extra = prov ? prov : get(m, "model");
        if (extra)
            return fail(l, extra, kp_key(path, extra == prov ? "provider" : "model").s,
                        "a model has either path (local) or provider and model (remote), not both");
        if (md->quantize && strcmp(md->quantize, "q8_0") && strcmp(md->quantize, "q4_0") &&
            strcmp(md->quantize, "q4_k") && strcmp(md->quantize, "q6_k"))
            return fail(l, get(m, "quantize"), kp_key(path, "quantize").s,
                        "'%s' is not one of q8_0, q4_0, q4_k, q6_k", md->quantize);
    } else {
        md->kind = GW_MODEL_REMOTE;
        if (!prov && !md->upstream_model)
            return fail(l, m, path, "a model needs either path (local) or provider and model (remote)");
        if (!prov) return missing(l, m, path, "provider");
        if (!md->upstream_model) return missing(l, m, path, "model");
        if ((s = want(l, prov, kp_key(path, "provider").s, NODE_SCALAR)) != BS_OK) return s;
        if ((md->provider = gw_config_provider(l->c, prov->text)) < 0)
            return fail(l, prov, kp_key(path, "provider").s, "no provider named '%s' is defined", prov->text);
        static const char *const local_only[] = {"quantize", "ctx"};
        for (int i = 0; i < 2; i++)
            if (get(m, local_only[i]))
                return fail(l, get(m, local_only[i]), kp_key(path, local_only[i]).s,
                            "applies only to local models (with path)");
    }
    const node *price = get(m, "price");
    if (price) {
        keypath k = kp_key(path, "price");
        static const char *const pkeys[] = {"input_per_mtok", "output_per_mtok", NULL};
        if ((s = want(l, price, k.s, NODE_MAP)) || (s = check_keys(l, price, k.s, pkeys)) ||
            (s = read_double(l, price, k.s, "input_per_mtok", RANGE_NONNEG, &md->price.input_per_mtok)) ||
            (s = read_double(l, price, k.s, "output_per_mtok", RANGE_NONNEG, &md->price.output_per_mtok)))
            return s;
        md->price.set = 1;
    }
    return BS_OK;
}

static bs_status read_targets(loader *l, const node *m, const char *path, gw_route *r) {
    const node *list = get(m, "targets");
    keypath k = kp_key(path, "targets");
    if (!list) return missing(l, m, path, "targets");
    bs_status s = want(l, list, k.s, NODE_LIST);
    if (s != BS_OK) return s;
    if (!list->n) return fail(l, list, k.s, "must list at least one target");
    if (!(r->targets = calloc((size_t)list->n, sizeof *r->targets))) return oom(l);
    static const char *const keys[] = {"model", "weight", NULL};
    double sum = 0;
    for (int i = 0; i < list->n; i++) {
        const node *t = list->kids[i];
        keypath ki = kp_index(k.s, i);
        gw_target *tg = &r->targets[i];
        tg->raw_weight = 1;
        if ((s = want(l, t, ki.s, NODE_MAP)) || (s = check_keys(l, t, ki.s, keys))) return s;
        if (!get(t, "model")) return missing(l, t, ki.s, "model");
        if ((s = ref_model(l, get(t, "model"), kp_key(ki.s, "model").s, &tg->model)) ||
            (s = read_double(l, t, ki.s, "weight", RANGE_NONNEG, &tg->raw_weight)))
            return s;
        for (int j = 0; j < i; j++)
            if (r->targets[j].model == tg->model)
                return fail(l, get(t, "model"), kp_key(ki.s, "model").s, "'%s' is already a target of this route",
                            l->c->models[tg->model].name);
        sum += tg->raw_weight;
        r->n_targets++;
    }
    if (!isfinite(sum)) return fail(l, list, k.s, "weights are too large to add up");
    /* All weights 0 is allowed: the route then serves only pinned requests. */
    for (int i = 0; i < r->n_targets; i++) r->targets[i].weight = sum > 0 ? r->targets[i].raw_weight / sum : 0;
    return BS_OK;
}

static bs_status read_rule(loader *l, const node *rn, const char *path, gw_rule *rule) {
    static const char *const keys[] = {"match", "target", NULL};
    static const char *const match_keys[] = {"header", "metadata", "model", "value", NULL};
    bs_status s;
    if ((s = want(l, rn, path, NODE_MAP)) || (s = check_keys(l, rn, path, keys))) return s;
    const node *match = get(rn, "match"), *target = get(rn, "target");
    if (!match) return missing(l, rn, path, "match");
    if (!target) return missing(l, rn, path, "target");
    keypath k = kp_key(path, "match");
    if ((s = want(l, match, k.s, NODE_MAP)) || (s = check_keys(l, match, k.s, match_keys))) return s;
    static const char *const kinds[] = {"header", "metadata", "model"};
    static const gw_match_kind kind_of[] = {GW_MATCH_HEADER, GW_MATCH_METADATA, GW_MATCH_MODEL};
    int found = -1;
    for (int i = 0; i < 3; i++) {
        if (!get(match, kinds[i])) continue;
        if (found >= 0)
            return fail(l, match, k.s, "give one of header, metadata or model, not both %s and %s", kinds[found],
                        kinds[i]);
        found = i;
    }
    if (found < 0) return fail(l, match, k.s, "missing one of header, metadata or model");
    rule->kind = kind_of[found];
    if (rule->kind == GW_MATCH_MODEL) {
        if (get(match, "value"))
            return fail(l, get(match, "value"), kp_key(k.s, "value").s,
                        "not used with model: (the model key holds the pattern)");
        if ((s = read_str(l, match, k.s, "model", 1, &rule->value))) return s;
    } else if ((s = read_str(l, match, k.s, kinds[found], 1, &rule->key)) ||
               (s = read_str(l, match, k.s, "value", 1, &rule->value))) {
        return s;
    }
    return ref_model(l, target, kp_key(path, "target").s, &rule->model);
}

static bs_status read_sticky(loader *l, const node *m, const char *path, gw_route *r) {
    const node *v = get(m, "sticky");
    if (!v) return BS_OK;
    keypath k = kp_key(path, "sticky");
    if (v->kind == NODE_SCALAR && !strcmp(v->text, "user")) return r->sticky_user = 1, BS_OK;
    if (v->kind != NODE_MAP) return fail(l, v, k.s, "expected 'user' or {header: NAME}");
    static const char *const keys[] = {"header", NULL};
    bs_status s = check_keys(l, v, k.s, keys);
    if (s != BS_OK) return s;
    /* Requests without the header still stick by "user" when they send one. */
    r->sticky_user = 1;
    return read_str(l, v, k.s, "header", 1, &r->sticky_header);
}

/* Everything but the name, which the first pass over routes read. */
static bs_status read_route(loader *l, const node *m, const char *path, gw_route *r) {
    r->retry = l->c->retry;
    r->breaker = l->c->breaker;
    bs_status s;
    if ((s = read_targets(l, m, path, r)) || (s = read_sticky(l, m, path, r)) ||
        (s = ref_models(l, m, path, "fallbacks", &r->fallbacks, &r->n_fallbacks)) ||
        (s = ref_models(l, m, path, "context_window_fallbacks", &r->context_fallbacks, &r->n_context_fallbacks)) ||
        (s = ref_models(l, m, path, "content_policy_fallbacks", &r->content_fallbacks, &r->n_content_fallbacks)) ||
        (s = ref_models(l, m, path, "shadow", &r->shadows, &r->n_shadows)) ||
        (s = read_retry(l, m, path, &r->retry)) || (s = read_breaker(l, m, path, &r->breaker)) ||
        (s = ref_guardrails(l, m, path, &r->guardrails, &r->n_guardrails)))
        return s;
    const node *rules;
    if ((s = get_list(l, m, path, "rules", &rules)) || !rules || !rules->n) return s;
    keypath k = kp_key(path, "rules");
    if (!(r->rules = calloc((size_t)rules->n, sizeof *r->rules))) return oom(l);
    r->n_rules = rules->n; /* zeroed entries free cleanly if a rule fails */
    for (int i = 0; i < rules->n; i++)
        if ((s = read_rule(l, rules->kids[i], kp_index(k.s, i).s, &r->rules[i])) != BS_OK) return s;
    return BS_OK;
}

/* A guardrail mapping as JSON: plain scalars that read as null, booleans or
 * numbers become those; quoted ones stay strings.  NULL when out of memory. */
static json_t *to_json(const node *n) {
    if (n->kind == NODE_SCALAR) {
        if (n->plain) {
            if (is_null(n)) return json_null();
            int b = read_bool_text(n->text);
            if (b >= 0) return json_boolean(b);
            double x;
            int is_int;
            if (read_number_text(n->text, &x, &is_int)) {
                errno = 0;
                long long i = is_int ? strtoll(n->text, NULL, 10) : 0;
                return is_int && errno != ERANGE ? json_integer(i) : json_real(x);
            }
        }
        return json_string(n->text);
    }
    int is_map = n->kind == NODE_MAP;
    json_t *j = is_map ? json_object() : json_array();
    for (int i = 0; j && i < n->n; i += 1 + is_map) {
        json_t *v = to_json(n->kids[i + is_map]);
        if (!v || (is_map ? json_object_set_new(j, n->kids[i]->text, v) : json_array_append_new(j, v))) {
            json_decref(j);
            j = NULL;
        }
    }
    return j;
}

static bs_status read_guardrail(loader *l, const node *m, const char *path, int index, gw_guardrail *g) {
    g->line = m->line;
    bs_status s;
    if ((s = want(l, m, path, NODE_MAP)) || (s = read_str(l, m, path, "name", 1, &g->name))) return s;
    for (int i = 0; i < index; i++)
        if (!strcmp(l->c->guardrails[i].name, g->name))
            return fail(l, get(m, "name"), kp_key(path, "name").s, "guardrail '%s' is already defined (line %d)",
                        g->name, l->c->guardrails[i].line);
    return (g->spec = to_json(m)) ? BS_OK : oom(l);
}

static bs_status read_url(loader *l, const node *root, const char *key, const char *builtin,
                          const char *const *schemes, char **out) {
    bs_status s = read_str(l, root, "", key, 0, out);
    if (s != BS_OK || !*out) return s;
    /* The builtin backend's name is the same as leaving the key out. */
    if (!strcmp(*out, builtin)) {
        free(*out);
        *out = NULL;
        return BS_OK;
    }
    for (const char *const *sc = schemes; *sc; sc++)
        if (has_prefix(*out, *sc) && (*out)[strlen(*sc)]) return BS_OK;
    return fail(l, get(root, key), key, "expected '%s' or a %s URL", builtin, schemes[0]);
}

static bs_status read_usage(loader *l, const node *root) {
    const node *u = get(root, "usage");
    if (!u) return BS_OK;
    static const char *const keys[] = {"log_dir", "log_max_mb", "log_retention_days", "log_bodies", "flush_s", NULL};
    gw_config *c = l->c;
    bs_status s;
    if ((s = want(l, u, "usage", NODE_MAP)) || (s = check_keys(l, u, "usage", keys)) ||
        (s = read_str(l, u, "usage", "log_dir", 0, &c->log_dir)) ||
        (s = read_int(l, u, "usage", "log_max_mb", 1, &c->log_max_mb)) ||
        (s = read_int(l, u, "usage", "log_retention_days", 1, &c->log_retention_days)) ||
        (s = read_bool(l, u, "usage", "log_bodies", &c->log_bodies)) ||
        (s = read_double(l, u, "usage", "flush_s", RANGE_POSITIVE, &c->flush_s)))
        return s;
    return BS_OK;
}

/* calloc count zeroed elements and set *n to count at once, so the free
 * path handles a section that failed half way. */
static bs_status alloc_section(loader *l, const node *list, void **array, int *n, size_t size) {
    if (!list || !list->n) return BS_OK;
    if (!(*array = calloc((size_t)list->n, size))) return oom(l);
    *n = list->n;
    return BS_OK;
}

static const char *const route_keys[] = {"name",      "targets",  "rules",   "sticky",     "fallbacks",
                                         "context_window_fallbacks", "content_policy_fallbacks", "shadow",
                                         "retry",     "breaker",  "guardrails", NULL};

static bs_status read_config(loader *l, const node *root) {
    static const char *const keys[] = {"providers", "models", "routes", "guardrails", "retry", "breaker",
                                       "store",     "ratelimit", "usage", NULL};
    static const char *const postgres[] = {"postgres://", "postgresql://", NULL};
    static const char *const redis[] = {"redis://", NULL};
    gw_config *c = l->c;
    if (!root || is_null(root)) return BS_OK;
    const node *providers, *models, *routes, *guardrails;
    bs_status s;
    if ((s = want(l, root, "(top level)", NODE_MAP)) || (s = check_keys(l, root, "", keys)) ||
        (s = read_retry(l, root, "", &c->retry)) || (s = read_breaker(l, root, "", &c->breaker)) ||
        (s = read_url(l, root, "store", "sqlite", postgres, &c->store)) ||
        (s = read_url(l, root, "ratelimit", "memory", redis, &c->ratelimit)) || (s = read_usage(l, root)) ||
        (s = get_list(l, root, "", "providers", &providers)) || (s = get_list(l, root, "", "models", &models)) ||
        (s = get_list(l, root, "", "routes", &routes)) || (s = get_list(l, root, "", "guardrails", &guardrails)) ||
        (s = alloc_section(l, providers, (void **)&c->providers, &c->n_providers, sizeof *c->providers)) ||
        (s = alloc_section(l, models, (void **)&c->models, &c->n_models, sizeof *c->models)) ||
        (s = alloc_section(l, routes, (void **)&c->routes, &c->n_routes, sizeof *c->routes)) ||
        (s = alloc_section(l, guardrails, (void **)&c->guardrails, &c->n_guardrails, sizeof *c->guardrails)))
        return s;
    /* Order matters: models refer to providers and guardrails, routes to all three. */
    for (int i = 0; i < c->n_providers; i++) {
        keypath k = kp_index("providers", i);
        if ((s = read_provider(l, providers->kids[i], k.s, &c->providers[i])) != BS_OK) return s;
        for (int j = 0; j < i; j++)
            if (!strcmp(c->providers[j].name, c->providers[i].name))
                return fail(l, get(providers->kids[i], "name"), kp_key(k.s, "name").s,
                            "provider '%s' is already defined (line %d)", c->providers[i].name, c->providers[j].line);
    }
    for (int i = 0; i < c->n_guardrails; i++)
        if ((s = read_guardrail(l, guardrails->kids[i], kp_index("guardrails", i).s, i, &c->guardrails[i])))
            return s;
    for (int i = 0; i < c->n_models; i++)
        if ((s = read_model(l, models->kids[i], kp_index("models", i).s, i, &c->models[i])) != BS_OK) return s;
    /* Routes in two passes: every name first, so a target naming a route
     * defined further down is still recognised as a route. */
    for (int i = 0; i < c->n_routes; i++) {
        const node *m = routes->kids[i];
        keypath k = kp_index("routes", i);
        c->routes[i].line = m->line;
        if ((s = want(l, m, k.s, NODE_MAP)) || (s = check_keys(l, m, k.s, route_keys)) ||
            (s = read_str(l, m, k.s, "name", 1, &c->routes[i].name)) ||
            (s = unique_public_name(l, get(m, "name"), kp_key(k.s, "name").s, c->n_models, i)))
            return s;
    }
    for (int i = 0; i < c->n_routes; i++)
        if ((s = read_route(l, routes->kids[i], kp_index("routes", i).s, &c->routes[i])) != BS_OK) return s;
    return BS_OK;
}

/* ------------------------------------------------------------ lifetime */

static void free_config(gw_config *c) {
    for (int i = 0; i < c->n_providers; i++) {
        gw_provider *p = &c->providers[i];
        if (p->api_key) explicit_bzero(p->api_key, strlen(p->api_key));
        free(p->api_key);
        free(p->name), free(p->base_url), free(p->api_key_env);
    }
    for (int i = 0; i < c->n_models; i++) {
        gw_model *m = &c->models[i];
        free(m->name), free(m->path), free(m->quantize), free(m->upstream_model);
        for (int j = 0; j < m->n_guardrails; j++) free(m->guardrails[j]);
        free(m->guardrails);
    }
    for (int i = 0; i < c->n_routes; i++) {
        gw_route *r = &c->routes[i];
        for (int j = 0; j < r->n_rules; j++) free(r->rules[j].key), free(r->rules[j].value);
        for (int j = 0; j < r->n_guardrails; j++) free(r->guardrails[j]);
        free(r->name), free(r->targets), free(r->rules), free(r->sticky_header), free(r->fallbacks);
        free(r->context_fallbacks), free(r->content_fallbacks), free(r->shadows), free(r->guardrails);
    }
    for (int i = 0; i < c->n_guardrails; i++) free(c->guardrails[i].name), json_decref(c->guardrails[i].spec);
    free(c->providers), free(c->models), free(c->routes), free(c->guardrails);
    free(c->path), free(c->store), free(c->ratelimit), free(c->log_dir);
    free(c);
}

bs_status gw_config_parse(const char *name, const char *text, size_t len, gw_config **out, bs_error *err) {
    *out = NULL;
    gw_config *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(name))) {
        free(c);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", name);
    }
    c->retry = (gw_retry){.max_retries = 2, .backoff_base_s = 0.25, .backoff_max_s = 8, .retry_after_max_s = 30};
    c->breaker = (gw_breaker){
        .min_requests = 5, .failure_rate = 0.5, .window_s = 60, .cooldown_s = 30, .half_open_probes = 1};
    c->log_max_mb = 100, c->log_retention_days = 30, c->flush_s = 5;
    c->refcount = 1;
    node *root;
    bs_status s = parse_tree(name, text, len, &root, err);
    if (s == BS_OK) {
        loader l = {.file = name, .err = err, .c = c};
        s = read_config(&l, root);
        node_free(root);
    }
    if (s != BS_OK) {
        free_config(c);
        return s;
    }
    *out = c;
    return BS_OK;
}

bs_status gw_config_load(const char *path, gw_config **out, bs_error *err) {
    char *text;
    size_t len;
    *out = NULL;
    bs_status s = bs_file_read(path, &text, &len, err);
    if (s != BS_OK) return s;
    s = gw_config_parse(path, text, len, out, err);
    free(text);
    return s;
}

gw_config *gw_config_ref(gw_config *c) {
    if (c) __atomic_add_fetch(&c->refcount, 1, __ATOMIC_RELAXED);
    return c;
}

void gw_config_unref(gw_config *c) {
    if (c && __atomic_sub_fetch(&c->refcount, 1, __ATOMIC_ACQ_REL) == 0) free_config(c);
}

/* ------------------------------------------------------------ lookups */

/* Entries may still be unnamed while a config is being loaded. */
int gw_config_model(const gw_config *c, const char *name) {
    for (int i = 0; i < c->n_models; i++)
        if (c->models[i].name && !strcmp(c->models[i].name, name)) return i;
    return -1;
}

int gw_config_route(const gw_config *c, const char *name) {
    for (int i = 0; i < c->n_routes; i++)
        if (c->routes[i].name && !strcmp(c->routes[i].name, name)) return i;
    return -1;
}

int gw_config_provider(const gw_config *c, const char *name) {
    for (int i = 0; i < c->n_providers; i++)
        if (c->providers[i].name && !strcmp(c->providers[i].name, name)) return i;
    return -1;
}

const gw_guardrail *gw_config_guardrail(const gw_config *c, const char *name) {
    for (int i = 0; i < c->n_guardrails; i++)
        if (c->guardrails[i].name && !strcmp(c->guardrails[i].name, name)) return &c->guardrails[i];
    return NULL;
}
