#include "server/tool_grammar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json_schema.h"
#include "server/buf.h"

/* GBNF literal: "text" with quotes, backslashes and newlines escaped. */
static void gbnf_literal(srv_buf *b, const char *text, size_t n) {
    buf_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        char ch = text[i];
        if (ch == '\n') buf_puts(b, "\\n");
        else buf_printf(b, "%s%c", ch == '"' || ch == '\\' ? "\\" : "", ch);
    }
    buf_puts(b, "\"");
}

static void gbnf_lit(srv_buf *b, const char *text) { gbnf_literal(b, text, strlen(text)); }

static int is_true(const json_t *fn, const char *key) { return json_is_true(json_object_get(fn, key)); }

static int is_annotation(const char *k) {
    static const char *const keys[] = {"title", "description", "default", "examples", "$comment",
                                       "deprecated", "readOnly", "writeOnly", "$schema", "$id"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (strcmp(k, keys[i]) == 0) return 1;
    return 0;
}

/* Text values: rules text0..text{m-1}, a right-linear automaton for "any
 * text without end_tag" (state k: the last k bytes are end_tag's first k;
 * its first byte recurs nowhere else in it, so a mismatch goes back to 0). */
static void text_rules(srv_buf *g, const char *end_tag) {
    size_t m = strlen(end_tag);
    char c0 = end_tag[0];
    for (size_t k = 0; k < m; k++) {
        char ck = end_tag[k];
        buf_printf(g, "text%zu ::= \"\"", k);
        if (k == 0) {
            buf_printf(g, " | [^%c] text0 | \"%c\" text1\n", c0, c0);
            continue;
        }
        buf_printf(g, " | \"%c\" text1 | [^%c%c] text0", c0, c0, ck);
        if (k + 1 < m) buf_printf(g, " | \"%c\" text%zu", ck, k + 1);
        buf_puts(g, "\n");
    }
}

typedef struct tg {
    const json_t *tools;
    const chat_call_syntax *syn;
    const char *family;
    srv_buf g;                 /* the family rules */
    json_schema_entry *json;   /* the JSON values' schemas */
    char **names;              /* their rule names */
    size_t n_json, cap_json;
    json_t *any_object;
    bs_error *err;
} tg;

static bs_status add_json(tg *t, const json_t *schema, const json_t *doc, const char *path, char **rule) {
    if (t->n_json == t->cap_json) {
        size_t cap = t->cap_json ? 2 * t->cap_json : 8;
        json_schema_entry *v = realloc(t->json, cap * sizeof *v);
        if (v) t->json = v;
        char **n = realloc(t->names, cap * sizeof *n);
        if (n) t->names = n;
        if (!v || !n) return bs_fail(t->err, BS_ENOMEM, "out of memory");
        t->cap_json = cap;
    }
    srv_buf b = {0};
    buf_printf(&b, "val%zu", t->n_json);
    char *p = strdup(path);
    if (b.oom || !p) {
        buf_free(&b);
        free(p);
        return bs_fail(t->err, BS_ENOMEM, "out of memory");
    }
    t->names[t->n_json] = b.data;
    t->json[t->n_json++] = (json_schema_entry){schema, doc, p, b.data};
    *rule = b.data;
    return BS_OK;
}

static bs_status cannot(tg *t, size_t i, const char *name, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bs_status cannot(tg *t, size_t i, const char *name, const char *fmt, ...) {
    char why[BS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return bs_fail(t->err, BS_EUNSUPPORTED, "tools[%zu] (%s): strict parameters cannot be enforced in %s tool calls: %s",
                   i, name, t->family, why);
}

/* One XML parameter's value: JSON by its schema, or text (enum/const:
 * those strings). */
static bs_status xml_value(tg *t, size_t i, const char *name, const char *key, const json_t *ps, const json_t *params,
                           const char *path) {
    const char *type = chat_xml_value_type(ps);
    if (type && strcmp(type, "string") != 0) {
        char *rule;
        bs_status st = add_json(t, ps, params, path, &rule);
        if (st == BS_OK) buf_puts(&t->g, rule);
        return st;
    }
    const char *k;
    const json_t *v;
    json_t *lits = NULL;
    json_object_foreach((json_t *)ps, k, v) {
        if (strcmp(k, "enum") == 0 && json_is_array(v)) lits = (json_t *)v;
        else if (strcmp(k, "const") == 0) lits = (json_t *)v;
        else if (strcmp(k, "type") != 0 && !is_annotation(k))
            return cannot(t, i, name, "parameter '%s' is written as text, which '%s' cannot constrain", key, k);
    }
    if (!lits) {
        buf_puts(&t->g, "text0");
        return BS_OK;
    }
    size_t n = json_is_array(lits) ? json_array_size(lits) : 1;
    buf_puts(&t->g, "(");
    for (size_t j = 0; j < n; j++) {
        const json_t *s = json_is_array(lits) ? json_array_get(lits, j) : lits;
        const char *text = json_string_value(s);
        size_t len = json_string_length(s);
        if (!text || memchr(text, 0, len) || (len && (text[0] == '\n' || text[len - 1] == '\n')) ||
            strstr(text, t->syn->end_tag))
            return cannot(t, i, name, "parameter '%s' is written as text, which cannot carry its allowed value %zu",
                          key, j);
        buf_puts(&t->g, j ? " | " : " ");
        gbnf_literal(&t->g, text, len);
    }
    buf_puts(&t->g, " )");
    return BS_OK;
}

/* A strict tool's parameters in XML markup. */
static bs_status xml_params(tg *t, size_t i, const char *name, const json_t *params) {
    if (!json_is_object(params)) return cannot(t, i, name, "parameters must be an object schema");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)params, k, v) {
        if (strcmp(k, "type") == 0 && !(json_is_string(v) && strcmp(json_string_value(v), "object") == 0))
            return cannot(t, i, name, "parameters must be of type object");
        if (strcmp(k, "type") != 0 && strcmp(k, "properties") != 0 && strcmp(k, "required") != 0 &&
            strcmp(k, "additionalProperties") != 0 && strcmp(k, "$defs") != 0 && strcmp(k, "definitions") != 0 &&
            !is_annotation(k))
            return cannot(t, i, name, "'%s' beside the parameters' properties", k);
    }
    const json_t *props = json_object_get(params, "properties"), *req = json_object_get(params, "required"), *r;
    size_t j;
    json_array_foreach(req, j, r) {
        if (!json_object_get(props, json_string_value(r)))
            return cannot(t, i, name, "required[%zu] is not one of the properties", j);
    }
    json_object_foreach((json_t *)props, k, v) {
        int required = 0;
        json_array_foreach(req, j, r) required |= strcmp(json_string_value(r), k) == 0;
        if (!chat_markup_name_ok(k, strlen(k)))
            return cannot(t, i, name, "the parameter name '%s' cannot be written in markup", k);
        srv_buf path = {0};
        buf_printf(&path, "tools[%zu].function.parameters.properties.%s", i, k);
        buf_puts(&t->g, required ? " " : " ( ");
        gbnf_lit(&t->g, t->syn->param_open);
        buf_puts(&t->g, " ");
        gbnf_lit(&t->g, k);
        buf_puts(&t->g, " ");
        gbnf_lit(&t->g, t->syn->key_close);
        buf_puts(&t->g, " ");
        bs_status st = path.oom ? bs_fail(t->err, BS_ENOMEM, "out of memory")
                                : xml_value(t, i, name, k, json_object_get(props, k), params, path.data);
        buf_free(&path);
        if (st != BS_OK) return st;
        buf_puts(&t->g, " ");
        gbnf_lit(&t->g, t->syn->value_close);
        if (!required) buf_puts(&t->g, " )?");
    }
    return BS_OK;
}

/* Rule tool<i> for a NAMED or XML family. */
static bs_status tool_rule(tg *t, size_t i, const json_t *fn) {
    const char *name = json_string_value(json_object_get(fn, "name"));
    const json_t *params = json_object_get(fn, "parameters");
    int strict = is_true(fn, "strict") && params && !json_is_null(params);
    if (!chat_markup_name_ok(name, strlen(name))) return cannot(t, i, name, "the name cannot be written in markup");
    buf_printf(&t->g, "tool%zu ::= ", i);
    gbnf_lit(&t->g, t->syn->call_open);
    buf_puts(&t->g, " ");
    gbnf_lit(&t->g, name);
    buf_puts(&t->g, " ");
    gbnf_lit(&t->g, t->syn->name_close);
    bs_status st = BS_OK;
    if (t->syn->shape == CHAT_CALLS_NAMED) {
        char *rule, path[64];
        snprintf(path, sizeof path, "tools[%zu].function.parameters", i);
        st = add_json(t, strict ? params : t->any_object, NULL, path, &rule);
        if (st == BS_OK) buf_printf(&t->g, " %s", rule);
    } else if (strict) {
        st = xml_params(t, i, name, params);
    } else { /* any parameters */
        buf_puts(&t->g, " ( ");
        gbnf_lit(&t->g, t->syn->param_open);
        buf_puts(&t->g, " [^\\x00-\\x20\\x7F<>\"'\\[\\]{}]+ ");
        gbnf_lit(&t->g, t->syn->key_close);
        buf_puts(&t->g, " text0 ");
        gbnf_lit(&t->g, t->syn->value_close);
        buf_puts(&t->g, " )*");
    }
    buf_puts(&t->g, " ");
    gbnf_lit(&t->g, t->syn->call_close);
    buf_puts(&t->g, "\n");
    return st;
}

/* JSON families: one schema, anyOf the calls (or an array of them). */
static json_t *json_calls_schema(const json_t *tools, int parallel, const chat_call_syntax *syn) {
    json_t *any = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        json_t *params = json_object_get(fn, "parameters");
        json_t *args = is_true(fn, "strict") && params && !json_is_null(params) ? json_incref(params)
                                                                                : json_pack("{s:s}", "type", "object");
        json_array_append_new(any, json_pack("{s:s,s:{s:{s:O},s:o},s:[s,s],s:b}", "type", "object", "properties",
                                             "name", "const", json_object_get(fn, "name"), syn->args_key, args,
                                             "required", "name", syn->args_key, "additionalProperties", 0));
    }
    json_t *schema = json_pack("{s:o}", "anyOf", any);
    if (schema && syn->array) schema = json_pack("{s:s,s:o,s:i}", "type", "array", "items", schema, "minItems", 1);
    if (schema && syn->array && !parallel) json_object_set_new(schema, "maxItems", json_integer(1));
    return schema;
}

bs_status tool_grammar_build(const json_t *tools, int parallel, const chat_call_syntax *syn, const char *family,
                             bs_grammar **out, bs_error *err) {
    tg t = {.tools = tools, .syn = syn, .family = family, .err = err};
    json_t *calls = NULL;
    bs_status st = BS_OK;
    if (syn->shape == CHAT_CALLS_JSON) {
        calls = json_calls_schema(tools, parallel, syn);
        char *rule;
        st = calls ? add_json(&t, calls, NULL, "tools", &rule) : bs_fail(err, BS_ENOMEM, "out of memory");
        if (st == BS_OK) buf_printf(&t.g, "call ::= %s\n", rule);
    } else {
        t.any_object = json_pack("{s:s}", "type", "object");
        if (!t.any_object) st = bs_fail(err, BS_ENOMEM, "out of memory");
        size_t i;
        const json_t *tool;
        buf_puts(&t.g, "call ::=");
        json_array_foreach(tools, i, tool) buf_printf(&t.g, "%s tool%zu", i ? " |" : "", i);
        buf_puts(&t.g, "\n");
        json_array_foreach(tools, i, tool) {
            if (st == BS_OK) st = tool_rule(&t, i, json_object_get(tool, "function"));
        }
        if (syn->shape == CHAT_CALLS_XML) text_rules(&t.g, syn->end_tag);
    }
    char *rules = NULL;
    if (st == BS_OK) st = json_schema_to_gbnf_rules(t.json, t.n_json, &rules, err);
    if (st == BS_OK) {
        srv_buf g = {0};
        buf_puts(&g, "root ::= (");
        for (int k = 0; k < 2 && syn->triggers[k]; k++) {
            buf_puts(&g, k ? " | " : " ");
            if (syn->triggers[k][0] == '{') {
                buf_puts(&g, "\"\""); /* the trigger is the call's own first byte */
            } else {
                gbnf_lit(&g, syn->triggers[k]);
                buf_puts(&g, " ws");
            }
        }
        buf_puts(&g, " ) call");
        if (syn->separator && parallel) {
            buf_puts(&g, " ( ws ");
            if (syn->separator[0]) {
                gbnf_lit(&g, syn->separator);
                buf_puts(&g, " ws ");
            }
            buf_puts(&g, "call )*");
        }
        if (syn->closer) {
            buf_puts(&g, " ws ");
            gbnf_lit(&g, syn->closer);
        }
        buf_printf(&g, "\n%s%s", t.g.data ? t.g.data : "", rules);
        st = g.oom || t.g.oom ? bs_fail(err, BS_ENOMEM, "out of memory") : grammar_parse_gbnf(g.data, out, err);
        buf_free(&g);
    }
    free(rules);
    for (size_t k = 0; k < t.n_json; k++) {
        free(t.names[k]);
        free((char *)t.json[k].path);
    }
    free(t.names);
    free(t.json);
    json_decref(t.any_object);
    json_decref(calls);
    buf_free(&t.g);
    return st;
}
