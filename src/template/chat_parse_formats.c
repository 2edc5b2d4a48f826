/* template/chat_parse_formats.c — the tool-call block grammar of each family,
 * written with a few monotone cursor primitives (literal, text-until, JSON
 * container) so every family gets the same incremental behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template/chat_parse_impl.h"

/* Longest function or parameter name accepted; longer means "not a call",
 * which lets malformed blocks fail early instead of holding text. */
#define NAME_MAX_LEN 256
/* Deepest JSON nesting the structural scanner follows. */
#define JSON_MAX_DEPTH ((int)sizeof(((json_resume *)0)->closers))

/* Validation only: large integers must not make a call fail. */
#define STRICT_JSON (JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL)

#define TRY(expr)                              \
    do {                                       \
        scan_result r_ = (expr);               \
        if (r_ != SCAN_OK) return r_;          \
    } while (0)

typedef struct cursor {
    const char *s;
    size_t n, i;
    int eof;
} cursor;

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

/* Out of text: undecided, unless the output has ended. */
static scan_result need_more(const cursor *c) { return c->eof ? SCAN_FAIL : SCAN_MORE; }

static void cur_ws(cursor *c) {
    while (c->i < c->n && is_ws(c->s[c->i])) c->i++;
}

/* Consume lit at the cursor.  SCAN_FAIL leaves the cursor in place, so it
 * also serves to test for one of several alternatives. */
static scan_result cur_lit(cursor *c, const char *lit) {
    size_t len = strlen(lit), avail = c->n - c->i;
    size_t k = avail < len ? avail : len;
    if (memcmp(c->s + c->i, lit, k) != 0) return SCAN_FAIL;
    if (k < len) return need_more(c);
    c->i += len;
    return SCAN_OK;
}

/* The text [*b, *e) before the next lit, at most max bytes; lit is consumed. */
static scan_result cur_until(cursor *c, const char *lit, size_t max, size_t *b, size_t *e) {
    size_t len = strlen(lit), avail = c->n - c->i;
    const char *f = memmem(c->s + c->i, avail, lit, len);
    if (f) {
        size_t at = (size_t)(f - c->s);
        if (at - c->i > max) return SCAN_FAIL;
        *b = c->i;
        *e = at;
        c->i = at + len;
        return SCAN_OK;
    }
    /* An occurrence starting within max bytes would already be in view. */
    if (avail >= len && avail - len >= max) return SCAN_FAIL;
    return need_more(c);
}

/* A JSON object or array at the cursor, found structurally (strings,
 * escapes, bracket matching, characters allowed outside strings); the span
 * is [*b, *e).  Callers validate the complete span with jansson.  Rejecting
 * stray characters at once (a '<' outside strings, prose) is what lets a
 * broken call fail early.  When the text runs out, the scan state is kept
 * in *rs so the next attempt on the grown block continues from there. */
static scan_result cur_json(cursor *c, json_resume *rs, size_t *b, size_t *e) {
    if (c->i >= c->n) return need_more(c);
    if (c->s[c->i] != '{' && c->s[c->i] != '[') return SCAN_FAIL;
    json_resume st = {1, 0, 0, 0, c->i, c->i, {0}};
    if (rs->valid && rs->start == c->i && rs->pos <= c->n) st = *rs;
    for (size_t i = st.pos; i < c->n; i++) {
        unsigned char ch = (unsigned char)c->s[i];
        if (st.in_str) {
            if (st.esc) st.esc = 0;
            else if (ch == '\\') st.esc = 1;
            else if (ch == '"') st.in_str = 0;
            else if (ch < 0x20) return SCAN_FAIL;
            continue;
        }
        if (ch == '{' || ch == '[') {
            if (st.depth == JSON_MAX_DEPTH) return SCAN_FAIL;
            st.closers[st.depth++] = ch == '{' ? '}' : ']';
        } else if (ch == '}' || ch == ']') {
            if (st.closers[--st.depth] != (char)ch) return SCAN_FAIL;
            if (st.depth == 0) {
                *b = c->i;
                *e = i + 1;
                c->i = i + 1;
                return SCAN_OK;
            }
        } else if (ch == '"') {
            st.in_str = 1;
        } else if (!(is_ws((char)ch) || ch == ':' || ch == ',' || ch == '-' || ch == '+' ||
                     ch == '.' || ch == 'E' || (ch >= '0' && ch <= '9') ||
                     (ch >= 'a' && ch <= 'z'))) {
            return SCAN_FAIL;
        }
    }
    st.pos = c->n;
    *rs = st;
    return need_more(c);
}

/* A JSON object at the cursor, validated; its span is [*b, *e). */
static scan_result cur_json_object(cursor *c, json_resume *rs, size_t *b, size_t *e) {
    TRY(cur_json(c, rs, b, e));
    json_t *v = json_loadb(c->s + *b, *e - *b, STRICT_JSON, NULL);
    int ok = json_is_object(v);
    json_decref(v);
    return ok ? SCAN_OK : SCAN_FAIL;
}

/* ---- spans inside validated JSON text ---- */

static size_t skip_ws_at(const char *s, size_t n, size_t i) {
    while (i < n && is_ws(s[i])) i++;
    return i;
}

/* End of the (valid) JSON value starting at s[i]. */
static size_t json_value_end(const char *s, size_t n, size_t i) {
    int depth = 0, in_str = 0, esc = 0;
    for (; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc) esc = 0;
            else if (ch == '\\') esc = 1;
            else if (ch == '"') {
                in_str = 0;
                if (depth == 0) return i + 1;
            }
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0) return i;
            if (--depth == 0) return i + 1;
        } else if (depth == 0 && (ch == ',' || is_ws(ch))) {
            return i;
        }
    }
    return n;
}

/* Span of the value of top-level member key in a valid JSON object text. */
static int json_member_span(const char *s, size_t n, const char *key, size_t *b, size_t *e) {
    size_t klen = strlen(key), i = skip_ws_at(s, n, 1);
    while (i < n && s[i] == '"') {
        size_t kend = json_value_end(s, n, i);
        int match = kend - i - 2 == klen && memcmp(s + i + 1, key, klen) == 0;
        i = skip_ws_at(s, n, skip_ws_at(s, n, kend) + 1); /* past ':' */
        size_t vend = json_value_end(s, n, i);
        if (match) {
            *b = i;
            *e = vend;
            return 1;
        }
        i = skip_ws_at(s, n, vend);
        if (i < n && s[i] == ',') i = skip_ws_at(s, n, i + 1);
    }
    return 0;
}

/* ---- calls ---- */

void chat_calls_clear(chat_calls *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].name);
        free(c->v[i].args);
    }
    c->n = 0;
    c->oom = 0;
}

static scan_result push_call(chat_calls *c, const char *name, size_t nlen, const char *args,
                             size_t alen) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4;
        chat_call *v = realloc(c->v, cap * sizeof *v);
        if (!v) {
            c->oom = 1;
            return SCAN_FAIL;
        }
        c->v = v;
        c->cap = cap;
    }
    char *nm = strndup(name, nlen), *ar = strndup(args, alen);
    if (!nm || !ar) {
        free(nm);
        free(ar);
        c->oom = 1;
        return SCAN_FAIL;
    }
    c->v[c->n++] = (chat_call){nm, ar};
    return SCAN_OK;
}

int chat_markup_name_ok(const char *s, size_t n) {
    if (n == 0 || n > NAME_MAX_LEN) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch == 0x7f || strchr("<>\"'[]{}", ch)) return 0;
    }
    json_t *utf8 = json_stringn(s, n);
    json_decref(utf8);
    return utf8 != NULL;
}

/* {"name": N, "arguments"|"parameters": A} (valid JSON text) as a call.
 * A is passed through verbatim when an object; a string holding a JSON
 * object is used decoded; a missing A is "{}" unless args_required. */
static scan_result json_call(const char *s, size_t n, int args_required, chat_calls *out) {
    json_t *root = json_loadb(s, n, STRICT_JSON, NULL);
    json_t *name = json_object_get(root, "name");
    json_t *args = json_object_get(root, "arguments");
    const char *key = "arguments";
    if (!args) {
        args = json_object_get(root, "parameters");
        key = "parameters";
    }
    scan_result r = SCAN_FAIL;
    if (!json_is_string(name) || json_string_length(name) == 0) goto done;
    const char *nm = json_string_value(name);
    size_t nlen = json_string_length(name);
    if (json_is_object(args)) {
        size_t b = 0, e = 0;
        json_member_span(s, n, key, &b, &e);
        r = push_call(out, nm, nlen, s + b, e - b);
    } else if (json_is_string(args)) {
        json_t *inner = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
        if (json_is_object(inner))
            r = push_call(out, nm, nlen, json_string_value(args), json_string_length(args));
        json_decref(inner);
    } else if (!args && !args_required) {
        r = push_call(out, nm, nlen, "{}", 2);
    }
done:
    json_decref(root);
    return r;
}

/* ---- XML parameters (Qwen3-Coder, MiniMax-M2) ---- */

const char *chat_xml_value_type(const json_t *param_schema) {
    json_t *type = json_object_get(param_schema, "type");
    if (!json_is_array(type)) return json_string_value(type);
    size_t j;
    json_t *t;
    json_array_foreach(type, j, t) {
        if (json_is_string(t) && strcmp(json_string_value(t), "null") != 0) return json_string_value(t);
    }
    return NULL;
}

/* The type parameter key of function fn in an OpenAI tools array is read
 * as (chat_xml_value_type); NULL when unknown. */
static const char *param_type(const json_t *tools, const char *fn, const char *key) {
    size_t i;
    json_t *tool;
    json_array_foreach(tools, i, tool) {
        json_t *f = json_object_get(tool, "function");
        if (!f) f = (json_t *)tool;
        const char *name = json_string_value(json_object_get(f, "name"));
        if (!name || strcmp(name, fn) != 0) continue;
        json_t *props = json_object_get(json_object_get(f, "parameters"), "properties");
        return chat_xml_value_type(json_object_get(props, key));
    }
    return NULL;
}

/* A parameter's text as a JSON value: parsed as JSON when the schema says
 * it is not a string (falling back to the text when it does not parse),
 * otherwise the text itself.  One newline on each side belongs to the
 * markup.  NULL when the text is not valid UTF-8. */
static json_t *typed_value(const char *v, size_t n, const char *type) {
    if (n > 0 && v[0] == '\n') v++, n--;
    if (n > 0 && v[n - 1] == '\n') n--;
    if (type && strcmp(type, "string") != 0) {
        json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
        if (j) return j;
    }
    return json_stringn(v, n);
}

typedef struct xml_syntax {
    const char *param_open, *key_close, *param_close, *call_close;
} xml_syntax;

/* Parameters up to and including x->call_close, as one call to name. */
static scan_result xml_call(cursor *c, const json_t *tools, const char *name, size_t nlen,
                            const xml_syntax *x, chat_calls *out) {
    size_t start = c->i;
    if (!chat_markup_name_ok(name, nlen)) return SCAN_FAIL;
    for (;;) {
        cur_ws(c);
        scan_result r = cur_lit(c, x->call_close);
        if (r == SCAN_OK) break;
        if (r == SCAN_MORE) return r;
        size_t kb, ke, vb, ve;
        TRY(cur_lit(c, x->param_open));
        TRY(cur_until(c, x->key_close, NAME_MAX_LEN, &kb, &ke));
        if (!chat_markup_name_ok(c->s + kb, ke - kb)) return SCAN_FAIL;
        TRY(cur_until(c, x->param_close, SIZE_MAX, &vb, &ve));
    }
    /* The block is complete: build the arguments in a second pass over it. */
    json_t *args = json_object();
    char *fn = strndup(name, nlen);
    scan_result r = args && fn ? SCAN_OK : SCAN_FAIL;
    if (r != SCAN_OK) out->oom = 1;
    cursor p = {c->s, c->i, start, 1};
    while (r == SCAN_OK) {
        size_t kb, ke, vb, ve;
        cur_ws(&p);
        if (cur_lit(&p, x->param_open) != SCAN_OK) break;
        cur_until(&p, x->key_close, NAME_MAX_LEN, &kb, &ke);
        cur_until(&p, x->param_close, SIZE_MAX, &vb, &ve);
        char *key = strndup(p.s + kb, ke - kb);
        json_t *val = key ? typed_value(p.s + vb, ve - vb, param_type(tools, fn, key)) : NULL;
        if (!key) out->oom = 1;
        if (!val || json_object_set_new(args, key, val) != 0) r = SCAN_FAIL;
        free(key);
    }
    /* 15 significant digits print every decimal a model writes (up to that
     * precision) as written: 0.1 stays 0.1, not 0.10000000000000001. */
    char *text = r == SCAN_OK ? json_dumps(args, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    if (r == SCAN_OK) r = text ? push_call(out, name, nlen, text, strlen(text)) : SCAN_FAIL;
    free(text);
    free(fn);
    json_decref(args);
    return r;
}

/* ---- families ---- */

#define HERMES_OPEN "<tool_call>"
#define HERMES_CLOSE "</tool_call>"
#define LLAMA3_OPEN "<|python_tag|>"
#define MISTRAL_OPEN "[TOOL_CALLS]"

/* <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call> */
static scan_result hermes_block(const json_t *tools, const char *s, size_t n, int eof,
                                size_t *used, chat_calls *out) {
    (void)tools;
    cursor c = {s, n, 0, eof};
    size_t b, e;
    TRY(cur_lit(&c, HERMES_OPEN));
    cur_ws(&c);
    TRY(cur_json(&c, &out->resume, &b, &e));
    TRY(json_call(s + b, e - b, 0, out));
    cur_ws(&c);
    TRY(cur_lit(&c, HERMES_CLOSE));
    *used = c.i;
    return SCAN_OK;
}

/* <tool_call>\n<function=N>\n<parameter=K>\nV\n</parameter>\n</function>\n</tool_call> */
static scan_result qwen3_coder_block(const json_t *tools, const char *s, size_t n, int eof,
                                     size_t *used, chat_calls *out) {
    static const xml_syntax syntax = {"<parameter=", ">", "</parameter>", "</function>"};
    cursor c = {s, n, 0, eof};
    size_t b, e;
    TRY(cur_lit(&c, HERMES_OPEN));
    cur_ws(&c);
    TRY(cur_lit(&c, "<function="));
    TRY(cur_until(&c, ">", NAME_MAX_LEN, &b, &e));
    TRY(xml_call(&c, tools, s + b, e - b, &syntax, out));
    cur_ws(&c);
    TRY(cur_lit(&c, HERMES_CLOSE));
    *used = c.i;
    return SCAN_OK;
}

/* The whole rest of the output: {"name": N, "parameters": {...}} (or with
 * "type": "function"), several separated by ';', after <|python_tag|> or
 * as the message itself. */
static scan_result llama3_block(const json_t *tools, const char *s, size_t n, int eof,
                                size_t *used, chat_calls *out) {
    (void)tools;
    cursor c = {s, n, 0, eof};
    size_t b, e;
    if (cur_lit(&c, LLAMA3_OPEN) != SCAN_OK) c.i = 0;
    for (;;) {
        cur_ws(&c);
        TRY(cur_json(&c, &out->resume, &b, &e));
        TRY(json_call(s + b, e - b, 1, out));
        cur_ws(&c);
        if (c.i == c.n) {
            if (!eof) return SCAN_MORE;
            break;
        }
        TRY(cur_lit(&c, ";"));
    }
    *used = c.i;
    return SCAN_OK;
}

/* [TOOL_CALLS][{"name": N, "arguments": {...}}, ...] or [TOOL_CALLS]N[ARGS]{...} */
static scan_result mistral_block(const json_t *tools, const char *s, size_t n, int eof,
                                 size_t *used, chat_calls *out) {
    (void)tools;
    cursor c = {s, n, 0, eof};
    size_t b, e;
    TRY(cur_lit(&c, MISTRAL_OPEN));
    cur_ws(&c);
    if (c.i == c.n) return need_more(&c);
    if (s[c.i] == '[') {
        TRY(cur_json(&c, &out->resume, &b, &e));
        json_t *arr = json_loadb(s + b, e - b, STRICT_JSON, NULL);
        int ok = json_is_array(arr) && json_array_size(arr) > 0;
        json_decref(arr);
        if (!ok) return SCAN_FAIL;
        for (size_t i = skip_ws_at(s, e, b + 1); s[i] != ']';) {
            size_t end = json_value_end(s, e, i);
            TRY(json_call(s + i, end - i, 0, out));
            i = skip_ws_at(s, e, end);
            if (s[i] == ',') i = skip_ws_at(s, e, i + 1);
        }
    } else {
        size_t nb, ne;
        TRY(cur_until(&c, "[ARGS]", NAME_MAX_LEN, &nb, &ne));
        if (!chat_markup_name_ok(s + nb, ne - nb)) return SCAN_FAIL;
        TRY(cur_json_object(&c, &out->resume, &b, &e));
        TRY(push_call(out, s + nb, ne - nb, s + b, e - b));
    }
    *used = c.i;
    return SCAN_OK;
}

#define DS_CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define DS_CALLS_END   "<｜tool▁calls▁end｜>"
#define DS_CALL_BEGIN  "<｜tool▁call▁begin｜>"
#define DS_CALL_END    "<｜tool▁call▁end｜>"
#define DS_SEP         "<｜tool▁sep｜>"
#define MINIMAX_OPEN   "<minimax:tool_call>"
#define MINIMAX_CLOSE  "</minimax:tool_call>"

/* V3.1: <｜tool▁call▁begin｜>N<｜tool▁sep｜>{...}<｜tool▁call▁end｜>
 * V3/R1: <｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\n{...}\n```<｜tool▁call▁end｜>
 * one or more inside <｜tool▁calls▁begin｜>...<｜tool▁calls▁end｜>. */
static scan_result deepseek_block(const json_t *tools, const char *s, size_t n, int eof,
                                  size_t *used, chat_calls *out) {
    (void)tools;
    cursor c = {s, n, 0, eof};
    TRY(cur_lit(&c, DS_CALLS_BEGIN));
    for (int k = 0;; k++) {
        size_t nb, ne, b, e;
        cur_ws(&c);
        if (k > 0) {
            scan_result r = cur_lit(&c, DS_CALLS_END);
            if (r == SCAN_OK) break;
            if (r == SCAN_MORE) return r;
        }
        TRY(cur_lit(&c, DS_CALL_BEGIN));
        TRY(cur_until(&c, DS_SEP, NAME_MAX_LEN, &nb, &ne));
        if (c.i == c.n) return need_more(&c);
        if (s[c.i] != '{' && ne - nb == 8 && memcmp(s + nb, "function", 8) == 0) {
            TRY(cur_until(&c, "\n", NAME_MAX_LEN, &nb, &ne));
            TRY(cur_lit(&c, "```json"));
            cur_ws(&c);
            TRY(cur_json_object(&c, &out->resume, &b, &e));
            cur_ws(&c);
            TRY(cur_lit(&c, "```"));
        } else {
            TRY(cur_json_object(&c, &out->resume, &b, &e));
        }
        if (!chat_markup_name_ok(s + nb, ne - nb)) return SCAN_FAIL;
        cur_ws(&c);
        TRY(cur_lit(&c, DS_CALL_END));
        TRY(push_call(out, s + nb, ne - nb, s + b, e - b));
    }
    *used = c.i;
    return SCAN_OK;
}

/* <minimax:tool_call>\n<invoke name="N">\n<parameter name="K">V</parameter>\n</invoke>
 * ... </minimax:tool_call>, one or more invokes. */
static scan_result minimax_block(const json_t *tools, const char *s, size_t n, int eof,
                                 size_t *used, chat_calls *out) {
    static const xml_syntax syntax = {"<parameter name=\"", "\">", "</parameter>", "</invoke>"};
    cursor c = {s, n, 0, eof};
    TRY(cur_lit(&c, MINIMAX_OPEN));
    for (int k = 0;; k++) {
        size_t nb, ne;
        cur_ws(&c);
        if (k > 0) {
            scan_result r = cur_lit(&c, MINIMAX_CLOSE);
            if (r == SCAN_OK) break;
            if (r == SCAN_MORE) return r;
        }
        TRY(cur_lit(&c, "<invoke name=\""));
        TRY(cur_until(&c, "\">", NAME_MAX_LEN, &nb, &ne));
        TRY(xml_call(&c, tools, s + nb, ne - nb, &syntax, out));
    }
    *used = c.i;
    return SCAN_OK;
}

static const chat_opener hermes_openers[] = {{HERMES_OPEN, 0}, {NULL, 0}};
static const chat_opener llama3_openers[] = {{LLAMA3_OPEN, 0}, {"{", 1}, {NULL, 0}};
static const chat_opener mistral_openers[] = {{MISTRAL_OPEN, 0}, {NULL, 0}};
static const chat_opener deepseek_openers[] = {{DS_CALLS_BEGIN, 0}, {NULL, 0}};
static const chat_opener minimax_openers[] = {{MINIMAX_OPEN, 0}, {NULL, 0}};

static const chat_family hermes = {hermes_openers, {HERMES_CLOSE}, 0, hermes_block};
static const chat_family qwen3_coder = {hermes_openers, {HERMES_CLOSE}, 0, qwen3_coder_block};
static const chat_family llama3 = {llama3_openers, {NULL}, 0, llama3_block};
static const chat_family mistral = {mistral_openers, {"]", "}"}, 1, mistral_block};
static const chat_family deepseek = {deepseek_openers, {DS_CALLS_END}, 0, deepseek_block};
static const chat_family minimax = {minimax_openers, {MINIMAX_CLOSE}, 0, minimax_block};

const chat_family *chat_family_of(chat_format f) {
    switch (f) {
    case CHAT_FORMAT_HERMES: return &hermes;
    case CHAT_FORMAT_QWEN3_CODER: return &qwen3_coder;
    case CHAT_FORMAT_LLAMA3: return &llama3;
    case CHAT_FORMAT_MISTRAL: return &mistral;
    case CHAT_FORMAT_DEEPSEEK_V3: return &deepseek;
    case CHAT_FORMAT_MINIMAX_M2: return &minimax;
    case CHAT_FORMAT_CONTENT: break;
    }
    return NULL;
}

/* The JSON families' blocks as the parsers above read them (Mistral in its
 * array form). */
static const chat_call_syntax hermes_syntax = {
    .shape = CHAT_CALLS_JSON, .triggers = {HERMES_OPEN}, .args_key = "arguments", .closer = HERMES_CLOSE};
static const chat_call_syntax llama3_syntax = {
    .shape = CHAT_CALLS_JSON, .triggers = {LLAMA3_OPEN, "{"}, .at_start_only = {0, 1}, .args_key = "parameters",
    .separator = ";"};
static const chat_call_syntax mistral_syntax = {
    .shape = CHAT_CALLS_JSON, .triggers = {MISTRAL_OPEN}, .args_key = "arguments", .array = 1};
static const chat_call_syntax qwen3_coder_syntax = {
    .shape = CHAT_CALLS_XML, .triggers = {HERMES_OPEN}, .call_open = "<function=", .name_close = ">\n",
    .call_close = "</function>", .param_open = "<parameter=", .key_close = ">\n", .value_close = "\n</parameter>\n",
    .end_tag = "</parameter>", .closer = HERMES_CLOSE};
static const chat_call_syntax minimax_syntax = {
    .shape = CHAT_CALLS_XML, .triggers = {MINIMAX_OPEN}, .separator = "", .call_open = "<invoke name=\"",
    .name_close = "\">\n", .call_close = "</invoke>", .param_open = "<parameter name=\"", .key_close = "\">",
    .value_close = "</parameter>\n", .end_tag = "</parameter>", .closer = MINIMAX_CLOSE};
/* The V3.1 form. */
static const chat_call_syntax deepseek_syntax = {
    .shape = CHAT_CALLS_NAMED, .triggers = {DS_CALLS_BEGIN}, .separator = "", .call_open = DS_CALL_BEGIN,
    .name_close = DS_SEP, .call_close = DS_CALL_END, .closer = DS_CALLS_END};

const chat_call_syntax *chat_format_call_syntax(chat_format f) {
    switch (f) {
    case CHAT_FORMAT_HERMES: return &hermes_syntax;
    case CHAT_FORMAT_LLAMA3: return &llama3_syntax;
    case CHAT_FORMAT_MISTRAL: return &mistral_syntax;
    case CHAT_FORMAT_QWEN3_CODER: return &qwen3_coder_syntax;
    case CHAT_FORMAT_DEEPSEEK_V3: return &deepseek_syntax;
    case CHAT_FORMAT_MINIMAX_M2: return &minimax_syntax;
    case CHAT_FORMAT_CONTENT: break;
    }
    return NULL;
}
