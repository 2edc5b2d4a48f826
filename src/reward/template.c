/* reward/template.c — OpenAI grader templates: "{{item.answer}}",
 * "{{item.a.b[0]}}", "{{sample.output_text}}", "{{sample.output_json.x}}".
 * A path step is ".key", ".N" or "[N]" (N indexes arrays).  A missing value
 * renders as "" so that a grader compares against nothing rather than
 * failing the whole batch; the sample then simply does not match. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "reward/reward_impl.h"

/* The expression between "{{" and "}}", trimmed, as [*b, *e). */
static void trim(const char **b, const char **e) {
    while (*b < *e && isspace((unsigned char)**b)) (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
}

bs_status template_check(const char *text, const char *path, bs_error *err) {
    for (const char *p = strstr(text, "{{"); p; p = strstr(p, "{{")) {
        const char *b = p + 2, *e = strstr(b, "}}");
        if (!e) return bs_fail(err, BS_EINVAL, "%s: unterminated \"{{\"", path);
        trim(&b, &e);
        size_t n = (size_t)(e - b);
        int ok = (n > 5 && strncmp(b, "item.", 5) == 0) ||
                 (n == 18 && strncmp(b, "sample.output_text", 18) == 0) ||
                 (n == 18 && strncmp(b, "sample.output_json", 18) == 0) ||
                 (n > 19 && strncmp(b, "sample.output_json", 18) == 0 && (b[18] == '.' || b[18] == '['));
        if (!ok)
            return bs_fail(err, BS_EINVAL,
                           "%s: unsupported variable \"%.*s\" (use item.<key>, sample.output_text or "
                           "sample.output_json.<key>)",
                           path, (int)n, b);
        p = e;
    }
    return BS_OK;
}

/* Walk ".a.b[0]" from v; NULL when a step is missing. */
static const json_t *walk(const json_t *v, const char *p, const char *end) {
    while (v && p < end) {
        if (*p == '.' || *p == '[') p++;
        const char *s = p;
        while (p < end && *p != '.' && *p != '[' && *p != ']') p++;
        size_t n = (size_t)(p - s);
        if (p < end && *p == ']') p++;
        if (json_is_object(v)) {
            char key[256];
            if (n >= sizeof key) return NULL;
            memcpy(key, s, n);
            key[n] = 0;
            v = json_object_get(v, key);
        } else if (json_is_array(v) && n > 0 && strspn(s, "0123456789") >= n) {
            v = json_array_get(v, strtoul(s, NULL, 10));
        } else {
            return NULL;
        }
    }
    return v;
}

typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *t = realloc(b->s, cap);
        if (!t) abort(); /* out of memory in a string builder: as jansson, no recovery */
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void put_value(sbuf *b, const json_t *v) {
    if (!v || json_is_null(v)) return;
    if (json_is_string(v)) {
        put(b, json_string_value(v), json_string_length(v));
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) put(b, s, strlen(s));
    free(s);
}

char *template_render(const char *text, const json_t *item, const char *output_text, const json_t *output_json) {
    sbuf b = {0};
    put(&b, "", 0);
    const char *p = text;
    for (const char *q; (q = strstr(p, "{{"));) {
        const char *be = q + 2, *e = strstr(be, "}}");
        if (!e) break;
        put(&b, p, (size_t)(q - p));
        const char *x = be, *xe = e;
        trim(&x, &xe);
        if (strncmp(x, "item.", 5) == 0) {
            put_value(&b, walk(item, x + 4, xe));
        } else if ((size_t)(xe - x) == 18 && strncmp(x, "sample.output_text", 18) == 0) {
            put(&b, output_text, strlen(output_text));
        } else if (strncmp(x, "sample.output_json", 18) == 0) {
            put_value(&b, walk(output_json, x + 18, xe));
        }
        p = e + 2;
    }
    put(&b, p, strlen(p));
    return b.s;
}
