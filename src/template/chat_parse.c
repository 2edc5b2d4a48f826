/* template/chat_parse.c — the incremental scanner shared by every family:
 * content / reasoning / tool-call block states, held-back text, events and
 * the assembled message; format detection and names. */
#include "template/chat_parse.h"

#include <stdlib.h>
#include <string.h>

#include "template/chat_parse_impl.h"

#define THINK_OPEN  "<think>"
#define THINK_CLOSE "</think>"

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

typedef struct tool_call {
    char id[32];
    char *name;
    char *args;
} tool_call;

struct chat_parser {
    const chat_family *fam;
    json_t *tools;
    int extract_reasoning;
    uint64_t rng;

    int in_reasoning; /* inside the think block */
    int think_seen;   /* the think block is over (or never allowed again) */
    int at_start;     /* nothing but whitespace so far, outside the think block */
    int skip_ws;      /* whitespace right after markup is dropped */
    int finished, oom;

    strbuf pending;      /* fed text not yet decided: [off, len) */
    size_t off;
    size_t block_tried;  /* length of the pending block at its last SCAN_MORE, 0 if none */
    size_t block_at, block_opener_len; /* where that block's opener is, its length */
    chat_calls block;    /* scratch for the block parser */

    strbuf content, reasoning;
    tool_call *calls;
    size_t ncalls, capcalls;
};

typedef struct sink {
    chat_event_cb cb;
    void *user;
} sink;

static int is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

static int sb_append(strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return -1;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

/* ---- events ---- */

/* Length of the valid UTF-8 sequence at s (1..4), 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0], cp, len;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (unsigned i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
    return len;
}

/* Text goes out (to the callback and the message) as valid UTF-8: a byte
 * that is not part of a valid sequence becomes U+FFFD.  Emission never cuts
 * a valid sequence (split characters are held back), so this gives the same
 * text whatever the feed granularity. */
static void emit_text(chat_parser *p, const sink *k, chat_event_kind kind, const char *s,
                      size_t n) {
    if (n == 0) return;
    strbuf fixed = {0};
    size_t i = 0, len;
    while (i < n && (len = utf8_seq((const unsigned char *)s + i, n - i)) > 0) i += len;
    if (i < n) {
        for (i = 0; i < n; i += len ? len : 1) {
            len = utf8_seq((const unsigned char *)s + i, n - i);
            if (sb_append(&fixed, len ? s + i : "\xEF\xBF\xBD", len ? len : 3) != 0) p->oom = 1;
        }
        s = fixed.s;
        n = fixed.len;
    }
    if (s && sb_append(kind == CHAT_EVENT_REASONING ? &p->reasoning : &p->content, s, n) != 0)
        p->oom = 1;
    if (kind == CHAT_EVENT_CONTENT) p->at_start = 0;
    if (k->cb && s) {
        chat_event ev = {kind, -1, s, n, NULL, NULL};
        k->cb(k->user, &ev);
    }
    free(fixed.s);
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void make_id(chat_parser *p, char *id) {
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t n = 0, want = p->fam->short_ids ? 9 : 24;
    if (!p->fam->short_ids) n = (size_t)sprintf(id, "call_");
    for (size_t i = 0; i < want; i++) id[n++] = alnum[splitmix64(&p->rng) % 62];
    id[n] = '\0';
}

/* The block's calls become the message's: ids, then events. */
static void commit_calls(chat_parser *p, const sink *k) {
    for (size_t i = 0; i < p->block.n; i++) {
        if (p->ncalls == p->capcalls) {
            size_t cap = p->capcalls ? 2 * p->capcalls : 4;
            tool_call *v = realloc(p->calls, cap * sizeof *v);
            if (!v) {
                p->oom = 1;
                return;
            }
            p->calls = v;
            p->capcalls = cap;
        }
        tool_call *t = &p->calls[p->ncalls];
        make_id(p, t->id);
        t->name = p->block.v[i].name;
        t->args = p->block.v[i].args;
        p->block.v[i].name = p->block.v[i].args = NULL;
        int index = (int)p->ncalls++;
        if (k->cb) {
            chat_event begin = {CHAT_EVENT_TOOL_BEGIN, index, NULL, 0, t->id, t->name};
            k->cb(k->user, &begin);
            chat_event args = {CHAT_EVENT_TOOL_ARGS, index, t->args, strlen(t->args), t->id,
                               t->name};
            k->cb(k->user, &args);
        }
    }
}

/* ---- scanning ---- */

static void consume(chat_parser *p, size_t n) { p->off += n; }

/* Start of the whitespace run that ends at s[end]. */
static size_t ws_run_start(const char *s, size_t end) {
    while (end > 0 && is_ws(s[end - 1])) end--;
    return end;
}

/* Bytes at the end of s..n that begin a UTF-8 sequence not yet complete, so
 * that events carry whole characters when the input does. */
static size_t utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char ch = (unsigned char)s[n - back];
        if ((ch & 0xC0) == 0x80) continue; /* continuation byte */
        size_t want = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
        return want > back ? back : 0;
    }
    return 0;
}

/* Earliest position h where s[h..n) is a proper prefix of marker m (n if none). */
static size_t tail_prefix(const char *s, size_t n, const char *m) {
    size_t mlen = strlen(m);
    for (size_t h = n > mlen - 1 ? n - (mlen - 1) : 0; h < n; h++)
        if (memcmp(s + h, m, n - h) == 0) return h;
    return n;
}

/* How much of s..n can be released as decided text (held: the longest tail
 * that might begin a marker, the whitespace before it, a split character). */
static size_t release_point(const char *s, size_t n, size_t h) {
    h = ws_run_start(s, h);
    if (h == n) h -= utf8_incomplete_tail(s, n);
    return h;
}

static int step_reasoning(chat_parser *p, const sink *k, const char *s, size_t n, int eof) {
    const char *end = memmem(s, n, THINK_CLOSE, strlen(THINK_CLOSE));
    if (end) {
        size_t at = (size_t)(end - s);
        emit_text(p, k, CHAT_EVENT_REASONING, s, ws_run_start(s, at));
        consume(p, at + strlen(THINK_CLOSE));
        p->in_reasoning = 0;
        p->skip_ws = 1;
        return 1;
    }
    size_t h = eof ? n : release_point(s, n, tail_prefix(s, n, THINK_CLOSE));
    emit_text(p, k, CHAT_EVENT_REASONING, s, h);
    consume(p, h);
    return 0;
}

/* Whether a pending block should be parsed again: a text that can end it
 * arrived, or it doubled since the last try (bounding the work spent on
 * blocks that turn out malformed to linear in their length). */
static int worth_retry(const chat_parser *p, const char *body, size_t n) {
    if (n >= 2 * p->block_tried) return 1;
    for (int i = 0; i < 3 && p->fam->closers[i]; i++) {
        size_t len = strlen(p->fam->closers[i]);
        size_t from = p->block_tried >= len ? p->block_tried - (len - 1) : 0;
        if (memmem(body + from, n - from, p->fam->closers[i], len)) return 1;
    }
    return 0;
}

typedef struct marker {
    const char *text;
    int at_start_only, is_think;
} marker;

/* The markers that can open something here: <think> and the family's openers. */
static size_t markers_now(const chat_parser *p, marker *out) {
    size_t n = 0;
    if (p->extract_reasoning && !p->think_seen && p->at_start)
        out[n++] = (marker){THINK_OPEN, 1, 1};
    for (const chat_opener *o = p->fam ? p->fam->openers : NULL; o && o->text; o++)
        if (!o->at_start_only || p->at_start) out[n++] = (marker){o->text, o->at_start_only, 0};
    return n;
}

/* A tool-call block whose opener starts at s[at] (after whitespace only):
 * parse it, and commit it, release its opener as text, or wait. */
static int step_block(chat_parser *p, const sink *k, const char *s, size_t n, size_t at,
                      size_t opener_len, int eof) {
    const char *body = s + at;
    size_t bn = n - at, used = 0;
    if (!eof && p->block_tried && !worth_retry(p, body, bn)) return 0;
    chat_calls_clear(&p->block);
    scan_result r = p->fam->parse_block(p->tools, body, bn, eof, &used, &p->block);
    if (p->block.oom) p->oom = 1;
    if (r == SCAN_MORE) {
        p->block_tried = bn;
        p->block_at = at;
        p->block_opener_len = opener_len;
        return 0;
    }
    p->block_tried = 0;
    p->block.resume.valid = 0;
    if (r == SCAN_OK) {
        consume(p, at + used);
        commit_calls(p, k);
        p->at_start = 0;
        p->skip_ws = 1;
    } else { /* not a call after all: the opener is text */
        emit_text(p, k, CHAT_EVENT_CONTENT, s, at + opener_len);
        consume(p, at + opener_len);
    }
    return 1;
}

static int step_content(chat_parser *p, const sink *k, const char *s, size_t n, int eof) {
    /* A pending block: its opener is where it was, only the body grew. */
    if (p->block_tried) return step_block(p, k, s, n, p->block_at, p->block_opener_len, eof);

    marker ms[8];
    size_t nm = markers_now(p, ms), first = 0;
    while (first < n && is_ws(s[first])) first++;

    /* The earliest complete marker. */
    size_t at = n;
    const marker *m = NULL;
    for (size_t i = 0; i < nm; i++) {
        size_t len = strlen(ms[i].text);
        size_t pos = n;
        if (ms[i].at_start_only) {
            if (n - first >= len && memcmp(s + first, ms[i].text, len) == 0) pos = first;
        } else {
            const char *f = memmem(s, n, ms[i].text, len);
            if (f) pos = (size_t)(f - s);
        }
        if (pos < at) at = pos, m = &ms[i];
    }

    if (!m) {
        size_t h = n;
        for (size_t i = 0; i < nm && !eof; i++) {
            size_t len = strlen(ms[i].text), t;
            if (ms[i].at_start_only) /* all of s[first..n) begins the marker */
                t = n - first < len && memcmp(s + first, ms[i].text, n - first) == 0 ? first : n;
            else
                t = tail_prefix(s, n, ms[i].text);
            if (t < h) h = t;
        }
        if (!eof) h = release_point(s, n, h);
        emit_text(p, k, CHAT_EVENT_CONTENT, s, h);
        consume(p, h);
        return 0;
    }

    size_t w = ws_run_start(s, at);
    if (w > 0) { /* text before the marker's whitespace is decided */
        emit_text(p, k, CHAT_EVENT_CONTENT, s, w);
        consume(p, w);
        return 1;
    }
    if (m->is_think) {
        consume(p, at + strlen(m->text));
        p->in_reasoning = p->think_seen = p->skip_ws = 1;
        return 1;
    }
    return step_block(p, k, s, n, at, strlen(m->text), eof);
}

static void run(chat_parser *p, const sink *k, int eof) {
    for (;;) {
        const char *s = p->pending.s + p->off;
        size_t n = p->pending.len - p->off;
        if (p->skip_ws) {
            size_t w = 0;
            while (w < n && is_ws(s[w])) w++;
            consume(p, w);
            s += w, n -= w;
            if (n == 0) break;
            p->skip_ws = 0;
        }
        if (n == 0) break;
        int progress = p->in_reasoning ? step_reasoning(p, k, s, n, eof)
                                       : step_content(p, k, s, n, eof);
        if (!progress) break;
    }
    /* Drop what was decided so the buffer holds only pending text. */
    if (p->off > 0) {
        memmove(p->pending.s, p->pending.s + p->off, p->pending.len - p->off);
        p->pending.len -= p->off;
        p->off = 0;
    }
}

/* ---- API ---- */

bs_status chat_parser_open(const chat_parse_options *o, chat_parser **out, bs_error *err) {
    *out = NULL;
    if ((unsigned)o->format > CHAT_FORMAT_MINIMAX_M2)
        return bs_fail(err, BS_EINVAL, "chat parser: unknown format %d", (int)o->format);
    if (o->tools && !json_is_array(o->tools))
        return bs_fail(err, BS_EINVAL, "chat parser: tools must be a JSON array");
    chat_parser *p = calloc(1, sizeof *p);
    if (!p) return bs_fail(err, BS_ENOMEM, "chat parser: out of memory");
    p->fam = chat_family_of(o->format);
    p->tools = json_incref((json_t *)o->tools);
    p->extract_reasoning = o->extract_reasoning;
    p->rng = o->id_seed;
    p->at_start = 1;
    if (o->extract_reasoning && o->starts_in_reasoning)
        p->in_reasoning = p->think_seen = p->skip_ws = 1;
    *out = p;
    return BS_OK;
}

void chat_parser_close(chat_parser *p) {
    if (!p) return;
    json_decref(p->tools);
    chat_calls_clear(&p->block);
    free(p->block.v);
    free(p->pending.s);
    free(p->content.s);
    free(p->reasoning.s);
    for (size_t i = 0; i < p->ncalls; i++) {
        free(p->calls[i].name);
        free(p->calls[i].args);
    }
    free(p->calls);
    free(p);
}

void chat_parser_feed(chat_parser *p, const char *text, size_t len, chat_event_cb cb,
                      void *user) {
    if (p->finished || len == 0) return;
    if (sb_append(&p->pending, text, len) != 0) {
        p->oom = 1;
        return;
    }
    sink k = {cb, user};
    run(p, &k, 0);
}

void chat_parser_finish(chat_parser *p, chat_event_cb cb, void *user) {
    if (p->finished) return;
    sink k = {cb, user};
    run(p, &k, 1);
    p->finished = 1;
}

json_t *chat_parser_message(const chat_parser *p) {
    if (p->oom) return NULL;
    json_t *msg = json_object();
    json_object_set_new(msg, "role", json_string("assistant"));
    if (p->content.len == 0)
        json_object_set_new(msg, "content", p->ncalls > 0 ? json_null() : json_string(""));
    else
        json_object_set_new(msg, "content", json_stringn(p->content.s, p->content.len));
    if (p->reasoning.len > 0)
        json_object_set_new(msg, "reasoning_content",
                            json_stringn(p->reasoning.s, p->reasoning.len));
    if (p->ncalls > 0) {
        json_t *calls = json_array();
        for (size_t i = 0; i < p->ncalls; i++) {
            json_t *call = json_object(), *fn = json_object();
            json_object_set_new(call, "id", json_string(p->calls[i].id));
            json_object_set_new(call, "type", json_string("function"));
            json_object_set_new(fn, "name", json_string(p->calls[i].name));
            json_object_set_new(fn, "arguments", json_string(p->calls[i].args));
            json_object_set_new(call, "function", fn);
            json_array_append_new(calls, call);
        }
        json_object_set_new(msg, "tool_calls", calls);
    }
    return msg;
}

bs_status chat_parse_message(const chat_parse_options *o, const char *text, size_t len,
                             json_t **out, bs_error *err) {
    chat_parser *p;
    *out = NULL;
    bs_status st = chat_parser_open(o, &p, err);
    if (st != BS_OK) return st;
    chat_parser_feed(p, text, len, NULL, NULL);
    chat_parser_finish(p, NULL, NULL);
    *out = chat_parser_message(p);
    chat_parser_close(p);
    if (!*out) return bs_fail(err, BS_ENOMEM, "chat parser: out of memory");
    return BS_OK;
}

/* ---- formats ---- */

static const struct {
    const char *name;
    chat_format format;
} format_names[] = {
    {"content", CHAT_FORMAT_CONTENT},         {"hermes", CHAT_FORMAT_HERMES},
    {"qwen3_coder", CHAT_FORMAT_QWEN3_CODER}, {"llama3", CHAT_FORMAT_LLAMA3},
    {"mistral", CHAT_FORMAT_MISTRAL},         {"deepseek_v3", CHAT_FORMAT_DEEPSEEK_V3},
    {"minimax_m2", CHAT_FORMAT_MINIMAX_M2},   {"none", CHAT_FORMAT_CONTENT},
    {"qwen", CHAT_FORMAT_HERMES},             {"llama3_json", CHAT_FORMAT_LLAMA3},
    {"deepseek_v31", CHAT_FORMAT_DEEPSEEK_V3},
};

bs_status chat_format_from_name(const char *name, chat_format *out, bs_error *err) {
    for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++) {
        if (strcmp(name, format_names[i].name) == 0) {
            *out = format_names[i].format;
            return BS_OK;
        }
    }
    return bs_fail(err, BS_EINVAL,
                   "unknown chat format '%s' (expected content, hermes, qwen3_coder, llama3, "
                   "mistral, deepseek_v3 or minimax_m2)",
                   name);
}

const char *chat_format_name(chat_format f) {
    for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++)
        if (format_names[i].format == f) return format_names[i].name;
    return "unknown";
}

chat_format chat_format_detect(const char *src) {
    /* Most specific first: Qwen3-Coder templates also say <tool_call>. */
    if (strstr(src, "tool▁calls▁begin") || strstr(src, "tool▁call▁begin"))
        return CHAT_FORMAT_DEEPSEEK_V3;
    if (strstr(src, "minimax:tool_call")) return CHAT_FORMAT_MINIMAX_M2;
    if (strstr(src, "<function=")) return CHAT_FORMAT_QWEN3_CODER;
    if (strstr(src, "[TOOL_CALLS]")) return CHAT_FORMAT_MISTRAL;
    if (strstr(src, "<tool_call>")) return CHAT_FORMAT_HERMES;
    if (strstr(src, "<|python_tag|>") || strstr(src, "ipython")) return CHAT_FORMAT_LLAMA3;
    return CHAT_FORMAT_CONTENT;
}

int chat_template_has_reasoning(const char *src) { return strstr(src, THINK_OPEN) != NULL; }

int chat_prompt_opens_reasoning(const char *prompt) {
    size_t n = ws_run_start(prompt, strlen(prompt)), len = strlen(THINK_OPEN);
    return n >= len && memcmp(prompt + n - len, THINK_OPEN, len) == 0;
}
