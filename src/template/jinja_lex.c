/* template/jinja_lex.c — template source to tokens, with jinja2's
 * whitespace rules: trim_blocks (drop the newline after a block or comment
 * tag), lstrip_blocks (drop spaces before a block or comment tag that starts
 * a line), "-" / "+" modifiers, raw blocks, comments, and the end of a tag
 * recognised only when brackets inside it are balanced. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_impl.h"

typedef struct lexer {
    jarena *a;
    jfail *f;
    const char *src;
    size_t n;
    jtoks *out;
    size_t cur; /* line/col cursor, only moves forward */
    int line, col;
} lexer;

static void position(lexer *L, size_t pos, int *line, int *col) {
    for (; L->cur < pos; L->cur++) {
        if (L->src[L->cur] == '\n') {
            L->line++;
            L->col = 1;
        } else if (((unsigned char)L->src[L->cur] & 0xc0) != 0x80) {
            L->col++;
        }
    }
    *line = L->line;
    *col = L->col;
}

_Noreturn static void lex_fail(lexer *L, size_t pos, const char *msg) {
    int line, col;
    position(L, pos, &line, &col);
    jfail_at(L->f, BS_EFORMAT, line, col, "%s", msg);
}

static jtok *emit(lexer *L, jtok_kind kind, size_t pos, const char *s, size_t len) {
    jtoks *t = L->out;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        jtok *v = ja_alloc(L->a, cap * sizeof *v);
        if (t->n) memcpy(v, t->v, t->n * sizeof *v);
        t->v = v;
        t->cap = cap;
    }
    jtok *k = &t->v[t->n++];
    memset(k, 0, sizeof *k);
    k->kind = kind;
    position(L, pos, &k->line, &k->col);
    k->s = s ? ja_strndup(L->a, s, len) : "";
    k->len = len;
    return k;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static size_t skip_space(const lexer *L, size_t p) {
    while (p < L->n && is_space(L->src[p])) p++;
    return p;
}

static int at(const lexer *L, size_t p, const char *s) {
    size_t k = strlen(s);
    return p + k <= L->n && memcmp(L->src + p, s, k) == 0;
}

/* Emit the text before a tag, applying the tag's "-" (strip all trailing
 * whitespace) or lstrip_blocks (strip spaces between the line start and a
 * block/comment tag, unless "+"). */
static void emit_text(lexer *L, size_t start, size_t end, char sign, int is_variable, int line_starting) {
    size_t len = end - start;
    const char *s = L->src + start;
    if (sign == '-') {
        while (len && is_space(s[len - 1])) len--;
    } else if (sign != '+' && !is_variable) {
        size_t l_pos = len;
        while (l_pos && s[l_pos - 1] != '\n') l_pos--;
        if ((l_pos > 0 || line_starting) && l_pos < len) {
            size_t k = l_pos;
            while (k < len && is_space(s[k])) k++;
            if (k == len) len = l_pos;
        }
    }
    if (len) emit(L, T_TEXT, start, s, len);
}

/* After "%}": the trim_blocks newline, or after "-%}" all whitespace. */
static size_t block_end_suffix(const lexer *L, size_t p, char sign) {
    if (sign == '-') return skip_space(L, p);
    if (sign != '+' && p < L->n && L->src[p] == '\n') return p + 1;
    return p;
}

/* "{%" [-+]? ws "raw" ws ("-%}" | "%}"): returns the end, or 0. */
static size_t match_raw(const lexer *L, size_t p, const char *word, char *end_sign) {
    p += 2;
    if (p < L->n && (L->src[p] == '-' || L->src[p] == '+')) p++;
    p = skip_space(L, p);
    if (!at(L, p, word)) return 0;
    p = skip_space(L, p + strlen(word));
    *end_sign = 0;
    if (at(L, p, "-%}") || at(L, p, "+%}")) {
        *end_sign = L->src[p];
        return p + 3;
    }
    return at(L, p, "%}") ? p + 2 : 0;
}

static void decode_string(lexer *L, size_t start, size_t end, jtok *t) {
    jbuf b = {.arena = L->a};
    for (size_t p = start; p < end; p++) {
        char c = L->src[p];
        if (c != '\\' || p + 1 >= end) {
            jb_put(&b, &c, 1);
            continue;
        }
        char e = L->src[++p];
        const char *simple = strchr("nrtbfva\\'\"", e);
        if (simple && e) {
            static const char to[] = "\n\r\t\b\f\v\a\\'\"";
            jb_put(&b, &to[simple - "nrtbfva\\'\""], 1);
            continue;
        }
        int hex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (hex) {
            if (p + (size_t)hex >= end) lex_fail(L, p, "truncated \\x/\\u escape in string");
            char digits[9] = {0};
            memcpy(digits, L->src + p + 1, (size_t)hex);
            char *stop;
            unsigned long cp = strtoul(digits, &stop, 16);
            if (*stop || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) lex_fail(L, p, "bad \\x/\\u escape in string");
            char u[4];
            int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            if (n == 1) u[0] = (char)cp;
            else if (n == 2) u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f));
            else if (n == 3)
                u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[2] = (char)(0x80 | (cp & 0x3f));
            else
                u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f));
            jb_put(&b, u, (size_t)n);
            p += (size_t)hex;
            continue;
        }
        if (e == '\n') continue; /* line continuation */
        jb_put(&b, "\\", 1);     /* unknown escapes keep their backslash, as in Python */
        jb_put(&b, &e, 1);
    }
    t->s = b.p ? b.p : "";
    t->len = b.len;
}

static size_t lex_number(lexer *L, size_t p) {
    const char *s = L->src;
    size_t q = p;
    int base = 10, is_float = 0;
    if (s[p] == '0' && p + 1 < L->n && strchr("xXoObB", s[p + 1]) && s[p + 1]) {
        base = strchr("xX", s[p + 1]) ? 16 : strchr("oO", s[p + 1]) ? 8 : 2;
        q = p + 2;
        while (q < L->n && (isxdigit((unsigned char)s[q]) || s[q] == '_')) q++;
    } else {
        while (q < L->n && (isdigit((unsigned char)s[q]) || s[q] == '_')) q++;
        if (q + 1 < L->n && s[q] == '.' && isdigit((unsigned char)s[q + 1])) {
            is_float = 1;
            q++;
            while (q < L->n && (isdigit((unsigned char)s[q]) || s[q] == '_')) q++;
        }
        if (q < L->n && (s[q] == 'e' || s[q] == 'E')) {
            size_t r = q + 1;
            if (r < L->n && (s[r] == '+' || s[r] == '-')) r++;
            if (r < L->n && isdigit((unsigned char)s[r])) {
                is_float = 1;
                q = r;
                while (q < L->n && (isdigit((unsigned char)s[q]) || s[q] == '_')) q++;
            }
        }
    }
    char digits[64];
    size_t nd = 0;
    for (size_t k = p + (base == 10 ? 0 : 2); k < q; k++) {
        if (s[k] == '_') continue;
        if (nd + 1 >= sizeof digits) lex_fail(L, p, "number literal too long");
        digits[nd++] = s[k];
    }
    digits[nd] = 0;
    jtok *t = emit(L, is_float ? T_FLOAT : T_INT, p, s + p, q - p);
    if (is_float) {
        t->f = strtod(digits, NULL);
    } else {
        char *stop;
        unsigned long long v = strtoull(digits, &stop, base);
        if (nd == 0 || *stop || v > INT64_MAX) lex_fail(L, p, "bad or out-of-range integer literal");
        t->i = (int64_t)v;
    }
    return q;
}

static const char *const OPERATORS[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
                                        "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";", NULL};

/* Tokens inside {{ }} or {% %} from p; returns the position after the end tag. */
static size_t lex_tag(lexer *L, size_t p, int is_block, int *line_starting) {
    char stack[64];
    int depth = 0;
    for (;;) {
        if (p >= L->n) lex_fail(L, p, is_block ? "unexpected end of template inside a block tag, expected '%}'"
                                               : "unexpected end of template inside '{{', expected '}}'");
        if (depth == 0) {
            size_t end = 0;
            char sign = 0;
            if (is_block) {
                if (at(L, p, "+%}") || at(L, p, "-%}")) sign = L->src[p], end = p + 3;
                else if (at(L, p, "%}")) end = p + 2;
                if (end) {
                    emit(L, T_BLOCK_END, p, NULL, 0);
                    end = block_end_suffix(L, end, sign);
                }
            } else {
                if (at(L, p, "-}}")) end = skip_space(L, p + 3);
                else if (at(L, p, "}}")) end = p + 2;
                if (end) emit(L, T_VAR_END, p, NULL, 0);
            }
            if (end) {
                *line_starting = L->src[end - 1] == '\n';
                return end;
            }
        }
        char c = L->src[p];
        if (is_space(c)) {
            p++;
        } else if (isdigit((unsigned char)c)) {
            p = lex_number(L, p);
        } else if (isalpha((unsigned char)c) || c == '_') {
            size_t q = p;
            while (q < L->n && (isalnum((unsigned char)L->src[q]) || L->src[q] == '_')) q++;
            emit(L, T_NAME, p, L->src + p, q - p);
            p = q;
        } else if (c == '\'' || c == '"') {
            size_t q = p + 1;
            while (q < L->n && L->src[q] != c) q += L->src[q] == '\\' ? 2 : 1;
            if (q >= L->n) lex_fail(L, p, "unterminated string literal");
            jtok *t = emit(L, T_STRING, p, NULL, 0);
            decode_string(L, p + 1, q, t);
            p = q + 1;
        } else {
            const char *op = NULL;
            for (int i = 0; OPERATORS[i]; i++)
                if (at(L, p, OPERATORS[i])) {
                    op = OPERATORS[i];
                    break;
                }
            if (!op) lex_fail(L, p, "unexpected character in tag");
            if (strchr("([{", op[0]) && op[1] == 0) {
                if (depth == (int)sizeof stack) lex_fail(L, p, "brackets nested too deeply");
                stack[depth++] = op[0] == '(' ? ')' : op[0] == '[' ? ']' : '}';
            } else if (strchr(")]}", op[0]) && op[1] == 0) {
                if (depth == 0 || stack[depth - 1] != op[0]) lex_fail(L, p, "unbalanced bracket");
                depth--;
            }
            emit(L, T_OP, p, op, strlen(op));
            p += strlen(op);
        }
    }
}

void jinja_lex(jarena *a, jfail *f, const char *source, jtoks *out) {
    /* jinja2 turns every newline into "\n" and drops one trailing newline. */
    size_t n = strlen(source);
    char *src = ja_alloc(a, n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (source[i] == '\r') {
            src[m++] = '\n';
            if (i + 1 < n && source[i + 1] == '\n') i++;
        } else {
            src[m++] = source[i];
        }
    }
    if (m && src[m - 1] == '\n') m--;
    src[m] = 0;
    lexer L = {.a = a, .f = f, .src = src, .n = m, .out = out, .line = 1, .col = 1};
    size_t pos = 0;
    int line_starting = 1;
    while (pos < L.n) {
        size_t i = pos;
        while (i + 1 < L.n && !(src[i] == '{' && strchr("{%#", src[i + 1]))) i++;
        if (i + 1 >= L.n) {
            emit(&L, T_TEXT, pos, src + pos, L.n - pos);
            break;
        }
        char kind = src[i + 1];
        char sign = i + 2 < L.n && (src[i + 2] == '-' || src[i + 2] == '+') ? src[i + 2] : 0;
        char raw_sign;
        size_t raw_end = kind == '%' ? match_raw(&L, i, "raw", &raw_sign) : 0;
        emit_text(&L, pos, i, sign, kind == '{', line_starting);
        size_t p = i + 2 + (sign ? 1 : 0);
        if (raw_end) {
            size_t body = raw_sign == '-' ? skip_space(&L, raw_end) : raw_end;
            size_t j = body;
            char end_sign = 0;
            size_t after = 0;
            for (; j + 1 < L.n; j++)
                if (src[j] == '{' && src[j + 1] == '%' && (after = match_raw(&L, j, "endraw", &end_sign))) break;
            if (!after) lex_fail(&L, i, "missing end of raw directive");
            char inner_sign = src[j + 2] == '-' || src[j + 2] == '+' ? src[j + 2] : 0;
            int starting = body > 0 && src[body - 1] == '\n';
            emit_text(&L, body, j, inner_sign, 0, starting);
            pos = block_end_suffix(&L, after, end_sign);
            line_starting = src[pos - 1] == '\n';
        } else if (kind == '#') {
            size_t j = p;
            while (j + 1 < L.n && !(src[j] == '#' && src[j + 1] == '}')) j++;
            if (j + 1 >= L.n) lex_fail(&L, i, "missing end of comment tag");
            char end_sign = j > p && (src[j - 1] == '-' || src[j - 1] == '+') ? src[j - 1] : 0;
            pos = block_end_suffix(&L, j + 2, end_sign);
            line_starting = src[pos - 1] == '\n';
        } else {
            emit(&L, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, i, NULL, 0);
            pos = lex_tag(&L, p, kind == '%', &line_starting);
        }
    }
    emit(&L, T_EOF, L.n, NULL, 0);
}
