/* train/dataset.c — JSONL fine-tuning data to token sequences with loss
 * masks (see dataset.h).  One pass over the file: each line is parsed,
 * validated and tokenized into the growing token/mask arrays, or becomes a
 * problem in the report; only a file without problems becomes a dataset.
 * Examples and packed sequences are contiguous ranges of those arrays. */
#include "train/dataset.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dataset {
    dataset_format format;
    dataset_stats stats;
    int32_t *tokens;
    uint8_t *mask;
    int32_t *segment, *position;
    size_t n_tokens, cap_tokens, cap_mask;
    size_t *ex_start; /* example e is tokens [ex_start[e], ex_start[e + 1]) */
    size_t n_ex, cap_ex;
    size_t *seq_ex; /* sequence s is examples [seq_ex[s], seq_ex[s + 1]) */
};

const char *dataset_format_name(dataset_format f) {
    switch (f) {
    case DATASET_AUTO: return "auto";
    case DATASET_CHAT: return "chat";
    case DATASET_PROMPT_COMPLETION: return "prompt-completion";
    case DATASET_TEXT: return "text";
    }
    return "unknown";
}

void dataset_opts_default(dataset_opts *o) {
    *o = (dataset_opts){.max_length = 1024, .truncate = 0, .assistant_only = 1, .pack = 0, .max_problems = 50};
}

/* ------------------------------------------------------------ problems */

typedef struct problems {
    FILE *out; /* the report, an open_memstream */
    char *text;
    size_t size;
    int count, listed, max;
    char first[256];
} problems;

static void problem(problems *p, long line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void problem(problems *p, long line, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->count++ == 0) snprintf(p->first, sizeof p->first, "line %ld: %s", line, msg);
    if (p->listed < p->max) {
        p->listed++;
        fprintf(p->out, "line %ld: %s\n", line, msg);
    }
}

/* ------------------------------------------------------------ building */

typedef struct span {
    size_t a, b; /* bytes [a, b) of the text are trained */
} span;

static bs_status grow(void **p, size_t *cap, size_t need, size_t elem, bs_error *err) {
    if (need <= *cap) return BS_OK;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < need) ncap *= 2;
    void *q = realloc(*p, ncap * elem);
    if (!q) return bs_fail(err, BS_ENOMEM, "dataset: out of memory");
    *p = q;
    *cap = ncap;
    return BS_OK;
}

/* Append one tokenized example, applying the length rule. */
static bs_status add_example(dataset *ds, const dataset_opts *o, const int32_t *ids, const uint8_t *mask, size_t n,
                             long line, problems *pr, bs_error *err) {
    if (n > (size_t)o->max_length) {
        if (!o->truncate) {
            problem(pr, line, "%zu tokens, more than max_length %d (raise it or turn truncation on)", n, o->max_length);
            return BS_OK;
        }
        n = (size_t)o->max_length;
        ds->stats.truncated++;
    }
    size_t trained = 0;
    for (size_t i = 0; i < n; i++) trained += mask[i];
    if (trained == 0) {
        problem(pr, line, "no trained tokens within the first %d", o->max_length);
        return BS_OK;
    }
    if (grow((void **)&ds->tokens, &ds->cap_tokens, ds->n_tokens + n, sizeof *ds->tokens, err) != BS_OK ||
        grow((void **)&ds->mask, &ds->cap_mask, ds->n_tokens + n, sizeof *ds->mask, err) != BS_OK ||
        grow((void **)&ds->ex_start, &ds->cap_ex, ds->n_ex + 2, sizeof *ds->ex_start, err) != BS_OK)
        return err->status;
    memcpy(ds->tokens + ds->n_tokens, ids, n * sizeof *ids);
    memcpy(ds->mask + ds->n_tokens, mask, n);
    ds->ex_start[ds->n_ex] = ds->n_tokens;
    ds->n_tokens += n;
    ds->ex_start[++ds->n_ex] = ds->n_tokens;
    ds->stats.examples++;
    ds->stats.tokens += n;
    ds->stats.loss_tokens += trained;
    return BS_OK;
}

/* Tokenize text and mark the tokens that overlap any span.  Token offsets
 * come from the streaming decoder (exact text per token, SentencePiece's
 * leading space included); a token that ends inside a UTF-8 character emits
 * nothing and belongs where its character starts.  bos_rule applies the
 * model's BOS rule (skipped in the offsets: it is not in text); add_eos
 * appends EOS, trained. */
static bs_status encode_spans(const bs_tokenizer *tok, const char *text, size_t len, int flags, const span *spans,
                              int n_spans, int add_eos, int32_t **ids_out, uint8_t **mask_out, size_t *n_out,
                              bs_error *err) {
    int32_t *ids;
    size_t n;
    if (tok_encode(tok, text, len, flags, &ids, &n, err) != BS_OK) return err->status;
    int32_t eos = tok_eos_id(tok);
    int append = add_eos && eos >= 0 && (n == 0 || ids[n - 1] != eos);
    int32_t *grown = append ? realloc(ids, (n + 1) * sizeof *ids) : ids;
    uint8_t *mask = calloc(n + 1, 1);
    if (!grown || !mask) {
        free(grown ? grown : ids);
        free(mask);
        return bs_fail(err, BS_ENOMEM, "dataset: out of memory");
    }
    ids = grown;
    size_t first = (flags & TOK_ADD_SPECIAL) && n > 0 && ids[0] == tok_bos_id(tok) ? 1 : 0;
    tok_stream st;
    tok_stream_init(&st);
    char piece[1024];
    size_t off = 0;
    int s = 0;
    for (size_t i = first; i < n; i++) {
        size_t start = off;
        off += tok_stream_push(tok, &st, ids[i], TOK_DECODE_SPECIAL, piece, sizeof piece);
        while (s < n_spans && spans[s].b <= start) s++;
        /* Here spans[s].b > start: a token overlaps the span when it ends
         * past its start, an empty one when its character starts inside. */
        if (s < n_spans && (start == off ? spans[s].a <= start : off > spans[s].a)) mask[i] = 1;
    }
    if (append) {
        ids[n] = eos;
        mask[n++] = 1;
    }
    *ids_out = ids;
    *mask_out = mask;
    *n_out = n;
    return BS_OK;
}

static bs_status add_text(dataset *ds, const dataset_opts *o, const bs_tokenizer *tok, const char *text, size_t len,
                          int flags, const span *spans, int n_spans, int add_eos, long line, problems *pr,
                          bs_error *err) {
    int32_t *ids;
    uint8_t *mask;
    size_t n;
    if (encode_spans(tok, text, len, flags, spans, n_spans, add_eos, &ids, &mask, &n, err) != BS_OK)
        return err->status;
    bs_status st = add_example(ds, o, ids, mask, n, line, pr, err);
    free(ids);
    free(mask);
    return st;
}

/* ------------------------------------------------------------ chat */

static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function"};

/* Check one conversation; on success *clean is the messages without
 * "weight" (what the template sees) and weights[k] the loss weight of
 * message k (1 for non-assistant messages, unused).  Returns 0 after
 * recording a problem. */
static int chat_validate(const json_t *line_obj, long line, problems *pr, json_t **clean, int **weights) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)line_obj, key, v) {
        if (strcmp(key, "messages") == 0 || strcmp(key, "tools") == 0 || strcmp(key, "parallel_tool_calls") == 0)
            continue;
        if (strcmp(key, "functions") == 0) problem(pr, line, "functions (legacy) is not supported; use tools");
        else problem(pr, line, "unknown key \"%s\" (a chat example has messages, tools, parallel_tool_calls)", key);
        return 0;
    }
    const json_t *msgs = json_object_get(line_obj, "messages"), *tools = json_object_get(line_obj, "tools");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        problem(pr, line, "messages: expected a non-empty array");
        return 0;
    }
    if (tools && !json_is_array(tools) && !json_is_null(tools)) {
        problem(pr, line, "tools: expected an array");
        return 0;
    }
    const json_t *ptc = json_object_get(line_obj, "parallel_tool_calls");
    if (ptc && !json_is_boolean(ptc)) {
        problem(pr, line, "parallel_tool_calls: expected true or false");
        return 0;
    }
    size_t n = json_array_size(msgs);
    int *w = calloc(n, sizeof *w);
    json_t *out = json_array();
    int trained = 0, assistants = 0, ok = w && out;
    for (size_t k = 0; ok && k < n; k++) {
        const json_t *m = json_array_get(msgs, k);
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content"), *weight = json_object_get(m, "weight");
        int known = 0;
        for (size_t r = 0; role && r < sizeof roles / sizeof roles[0]; r++) known |= strcmp(role, roles[r]) == 0;
        ok = 0;
        if (!json_is_object(m)) problem(pr, line, "messages[%zu]: expected an object", k);
        else if (!role) problem(pr, line, "messages[%zu]: missing role", k);
        else if (!known)
            problem(pr, line, "messages[%zu]: unknown role \"%s\" (system, developer, user, assistant, tool, function)",
                    k, role);
        else if (content && !json_is_string(content) && !json_is_array(content) && !json_is_null(content))
            problem(pr, line, "messages[%zu].content: expected a string, an array of parts or null", k);
        else if (weight && strcmp(role, "assistant") != 0)
            problem(pr, line, "messages[%zu].weight: only assistant messages have a weight", k);
        else if (weight && !(json_is_integer(weight) && (json_integer_value(weight) == 0 ||
                                                          json_integer_value(weight) == 1)))
            problem(pr, line, "messages[%zu].weight: must be 0 or 1", k);
        else ok = 1;
        if (!ok) break;
        w[k] = weight ? (int)json_integer_value(weight) : 1;
        if (strcmp(role, "assistant") == 0) {
            const json_t *calls = json_object_get(m, "tool_calls");
            int has_text = (json_is_string(content) && json_string_length(content) > 0) ||
                           (json_is_array(content) && json_array_size(content) > 0);
            if (!has_text && !(json_is_array(calls) && json_array_size(calls) > 0)) {
                problem(pr, line, "messages[%zu]: empty assistant turn (no content and no tool_calls)", k);
                ok = 0;
                break;
            }
            assistants++;
            trained += w[k];
        }
        json_t *copy = json_copy((json_t *)m);
        if (copy) json_object_del(copy, "weight");
        if (!copy || json_array_append_new(out, copy) != 0) {
            problem(pr, line, "out of memory");
            ok = 0;
        }
    }
    if (ok && assistants == 0) {
        problem(pr, line, "no assistant turn to train on");
        ok = 0;
    } else if (ok && trained == 0) {
        problem(pr, line, "every assistant turn has weight 0: nothing to train on");
        ok = 0;
    }
    if (!ok) {
        free(w);
        json_decref(out);
        return 0;
    }
    *clean = out;
    *weights = w;
    return 1;
}

/* Render messages[0, n) (a new slice array borrows the messages). */
static bs_status render_prefix(const chat_template *t, const json_t *msgs, size_t n, const json_t *tools, int gen,
                               char **text, size_t *len, bs_error *err) {
    json_t *slice = json_array();
    for (size_t i = 0; slice && i < n; i++) json_array_append(slice, json_array_get(msgs, i));
    if (!slice) return bs_fail(err, BS_ENOMEM, "dataset: out of memory");
    bs_status st = chat_template_render(t, slice, tools, gen, NULL, text, len, err);
    json_decref(slice);
    return st;
}

/* The bytes turn k adds: [end of render(0..k-1) + generation prompt, end of
 * render(0..k)), starting where the two renders stop agreeing. */
static bs_status turn_span(const chat_template *t, const json_t *msgs, size_t k, const json_t *tools, char **with,
                           size_t *with_len, span *sp, bs_error *err) {
    char *before;
    size_t before_len;
    if (render_prefix(t, msgs, k, tools, 1, &before, &before_len, err) != BS_OK) return err->status;
    if (render_prefix(t, msgs, k + 1, tools, 0, with, with_len, err) != BS_OK) {
        free(before);
        return err->status;
    }
    size_t a = 0;
    while (a < before_len && a < *with_len && before[a] == (*with)[a]) a++;
    free(before);
    *sp = (span){a, *with_len};
    return BS_OK;
}

int dataset_chat_flags(const bs_tokenizer *tok, const char *text) {
    int32_t bos = tok_bos_id(tok);
    const char *bos_text = bos >= 0 ? tok_token_text(tok, bos) : NULL;
    int has_bos = bos_text && *bos_text && strncmp(text, bos_text, strlen(bos_text)) == 0;
    return TOK_PARSE_SPECIAL | (has_bos ? 0 : TOK_ADD_SPECIAL);
}

static bs_status add_chat(dataset *ds, const dataset_opts *o, const bs_tokenizer *tok, const chat_template *t,
                          const json_t *line_obj, long line, problems *pr, bs_error *err) {
    json_t *msgs;
    int *w;
    if (!chat_validate(line_obj, line, pr, &msgs, &w)) return BS_OK;
    const json_t *tools = json_object_get(line_obj, "tools");
    if (json_is_null(tools)) tools = NULL;
    size_t n = json_array_size(msgs), n_spans = 0, full_len;
    char *full = NULL;
    span *spans = calloc(n, sizeof *spans);
    bs_error rerr = {0};
    bs_status st = BS_OK;
    int consistent = 1;
    if (!spans) {
        st = bs_fail(err, BS_ENOMEM, "dataset: out of memory");
        goto done;
    }
    if (chat_template_render(t, msgs, tools, 0, NULL, &full, &full_len, &rerr) != BS_OK) goto render_failed;
    if (!o->assistant_only) {
        span all = {0, full_len};
        st = add_text(ds, o, tok, full, full_len, dataset_chat_flags(tok, full), &all, 1, 0, line, pr, err);
        goto done;
    }
    for (size_t k = 0; k < n; k++) {
        if (strcmp(json_string_value(json_object_get(json_array_get(msgs, k), "role")), "assistant") != 0 || !w[k])
            continue;
        char *with;
        size_t with_len;
        if (turn_span(t, msgs, k, tools, &with, &with_len, &spans[n_spans], &rerr) != BS_OK) goto render_failed;
        consistent &= with_len <= full_len && memcmp(with, full, with_len) == 0;
        if (n_spans && spans[n_spans].a < spans[n_spans - 1].b) spans[n_spans].a = spans[n_spans - 1].b;
        free(with);
        n_spans++;
    }
    if (consistent) {
        st = add_text(ds, o, tok, full, full_len, dataset_chat_flags(tok, full), spans, (int)n_spans, 0, line, pr, err);
        goto done;
    }
    /* The template rewrites earlier turns: one example per trained turn. */
    for (size_t k = 0; st == BS_OK && k < n; k++) {
        if (strcmp(json_string_value(json_object_get(json_array_get(msgs, k), "role")), "assistant") != 0 || !w[k])
            continue;
        char *with;
        size_t with_len;
        span sp;
        if (turn_span(t, msgs, k, tools, &with, &with_len, &sp, &rerr) != BS_OK) goto render_failed;
        st = add_text(ds, o, tok, with, with_len, dataset_chat_flags(tok, with), &sp, 1, 0, line, pr, err);
        free(with);
    }
    goto done;
render_failed:
    if (rerr.status == BS_ENOMEM) st = bs_fail(err, BS_ENOMEM, "%s", rerr.msg);
    else problem(pr, line, "chat template: %s", rerr.msg);
done:
    free(full);
    free(spans);
    free(w);
    json_decref(msgs);
    return st;
}

/* ------------------------------------------------------------ prompt-completion, text */

/* Only the named string keys; returns 0 after recording a problem. */
static int only_strings(const json_t *obj, const char *const *keys, int n_keys, long line, problems *pr) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        int known = 0;
        for (int i = 0; i < n_keys; i++) known |= strcmp(key, keys[i]) == 0;
        if (!known) {
            problem(pr, line, "unknown key \"%s\"", key);
            return 0;
        }
        if (!json_is_string(v)) {
            problem(pr, line, "%s: expected a string", key);
            return 0;
        }
    }
    return 1;
}

static bs_status add_prompt_completion(dataset *ds, const dataset_opts *o, const bs_tokenizer *tok,
                                       const json_t *obj, long line, problems *pr, bs_error *err) {
    static const char *const keys[] = {"prompt", "completion"};
    if (!only_strings(obj, keys, 2, line, pr)) return BS_OK;
    const json_t *p = json_object_get(obj, "prompt"), *c = json_object_get(obj, "completion");
    if (!p || !c) {
        problem(pr, line, "a prompt-completion example needs both prompt and completion");
        return BS_OK;
    }
    size_t pl = json_string_length(p), cl = json_string_length(c);
    if (cl == 0) {
        problem(pr, line, "completion: empty");
        return BS_OK;
    }
    char *text = malloc(pl + cl + 1);
    if (!text) return bs_fail(err, BS_ENOMEM, "dataset: out of memory");
    memcpy(text, json_string_value(p), pl);
    memcpy(text + pl, json_string_value(c), cl);
    text[pl + cl] = '\0';
    span sp = {pl, pl + cl};
    bs_status st = add_text(ds, o, tok, text, pl + cl, TOK_ADD_SPECIAL, &sp, 1, 1, line, pr, err);
    free(text);
    return st;
}

static bs_status add_plain_text(dataset *ds, const dataset_opts *o, const bs_tokenizer *tok, const json_t *obj,
                                long line, problems *pr, bs_error *err) {
    static const char *const keys[] = {"text"};
    if (!only_strings(obj, keys, 1, line, pr)) return BS_OK;
    const json_t *t = json_object_get(obj, "text");
    size_t len = json_string_length(t);
    if (len == 0) {
        problem(pr, line, "text: empty");
        return BS_OK;
    }
    span all = {0, len};
    return add_text(ds, o, tok, json_string_value(t), len, TOK_ADD_SPECIAL, &all, 1, 1, line, pr, err);
}

/* ------------------------------------------------------------ lines */

static dataset_format line_format(const json_t *obj) {
    if (json_object_get(obj, "messages")) return DATASET_CHAT;
    if (json_object_get(obj, "prompt") || json_object_get(obj, "completion")) return DATASET_PROMPT_COMPLETION;
    if (json_object_get(obj, "text")) return DATASET_TEXT;
    return DATASET_AUTO;
}

static bs_status add_line(dataset *ds, const dataset_opts *o, const bs_tokenizer *tok, const chat_template *t,
                          const char *text, size_t len, long line, long *format_line, problems *pr, bs_error *err) {
    json_error_t jerr;
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) {
        problem(pr, line, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        return BS_OK;
    }
    bs_status st = BS_OK;
    dataset_format f = json_is_object(obj) ? line_format(obj) : DATASET_AUTO;
    if (!json_is_object(obj)) {
        problem(pr, line, "expected a JSON object");
    } else if (f == DATASET_AUTO) {
        problem(pr, line, "no messages, prompt/completion or text key: not a training example");
    } else if (ds->format != DATASET_AUTO && f != ds->format) {
        if (*format_line)
            problem(pr, line, "a %s example in a %s dataset (line %ld set the format)", dataset_format_name(f),
                    dataset_format_name(ds->format), *format_line);
        else
            problem(pr, line, "a %s example, but the dataset was opened as %s", dataset_format_name(f),
                    dataset_format_name(ds->format));
    } else {
        if (ds->format == DATASET_AUTO) {
            ds->format = f;
            *format_line = line;
        }
        if (f == DATASET_CHAT && !t) problem(pr, line, "chat data needs the model's chat template");
        else if (f == DATASET_CHAT) st = add_chat(ds, o, tok, t, obj, line, pr, err);
        else if (f == DATASET_PROMPT_COMPLETION) st = add_prompt_completion(ds, o, tok, obj, line, pr, err);
        else st = add_plain_text(ds, o, tok, obj, line, pr, err);
    }
    json_decref(obj);
    return st;
}

/* Sequences: examples one by one, or packed greedily in file order; then
 * each token's segment and position. */
static bs_status make_sequences(dataset *ds, const dataset_opts *o, bs_error *err) {
    ds->seq_ex = malloc((ds->n_ex + 1) * sizeof *ds->seq_ex);
    ds->segment = malloc((ds->n_tokens ? ds->n_tokens : 1) * sizeof *ds->segment);
    ds->position = malloc((ds->n_tokens ? ds->n_tokens : 1) * sizeof *ds->position);
    if (!ds->seq_ex || !ds->segment || !ds->position) return bs_fail(err, BS_ENOMEM, "dataset: out of memory");
    size_t n_seq = 0;
    for (size_t e = 0; e < ds->n_ex; e++) {
        size_t start = n_seq ? ds->ex_start[ds->seq_ex[n_seq - 1]] : 0;
        if (!o->pack || n_seq == 0 || ds->ex_start[e + 1] - start > (size_t)o->max_length) ds->seq_ex[n_seq++] = e;
    }
    ds->seq_ex[n_seq] = ds->n_ex;
    ds->stats.sequences = n_seq;
    for (size_t s = 0; s < n_seq; s++)
        for (size_t e = ds->seq_ex[s]; e < ds->seq_ex[s + 1]; e++)
            for (size_t i = ds->ex_start[e]; i < ds->ex_start[e + 1]; i++) {
                ds->segment[i] = (int32_t)(e - ds->seq_ex[s]);
                ds->position[i] = (int32_t)(i - ds->ex_start[e]);
            }
    return BS_OK;
}

bs_status dataset_open(const char *path, dataset_format hint, const bs_tokenizer *tok, const chat_template *tmpl,
                       const dataset_opts *opts, dataset **out, char **report, bs_error *err) {
    *out = NULL;
    if (report) *report = NULL;
    dataset_opts o;
    if (opts) o = *opts;
    else dataset_opts_default(&o);
    if (o.max_length < 1) return bs_fail(err, BS_EINVAL, "dataset: max_length must be at least 1, got %d", o.max_length);
    if (o.max_problems < 1) o.max_problems = 1;
    FILE *f = fopen(path, "rb");
    if (!f) return bs_fail(err, errno == ENOENT ? BS_ENOTFOUND : BS_EIO, "%s: %s", path, strerror(errno));
    dataset *ds = calloc(1, sizeof *ds);
    problems pr = {.max = o.max_problems};
    if (ds) pr.out = open_memstream(&pr.text, &pr.size);
    if (!ds || !pr.out) {
        fclose(f);
        free(ds);
        return bs_fail(err, BS_ENOMEM, "dataset: out of memory");
    }
    ds->format = hint;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    long line = 0, format_line = 0;
    bs_status st = BS_OK;
    while (st == BS_OK && (got = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t len = (size_t)got;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
        size_t k = 0;
        while (k < len && (buf[k] == ' ' || buf[k] == '\t')) k++;
        if (k == len) continue;
        ds->stats.lines++;
        st = add_line(ds, &o, tok, tmpl, buf, len, line, &format_line, &pr, err);
    }
    if (st == BS_OK && ferror(f)) st = bs_fail(err, BS_EIO, "%s: read error at line %ld", path, line + 1);
    free(buf);
    fclose(f);
    if (st == BS_OK && pr.count == 0 && ds->n_ex == 0) problem(&pr, line, "no training examples in the file");
    if (pr.count > pr.listed) fprintf(pr.out, "... and %d more\n", pr.count - pr.listed);
    fclose(pr.out);
    if (st == BS_OK && pr.count) {
        st = bs_fail(err, BS_EFORMAT, "%s: %d problem%s, nothing loaded; %s%s", path, pr.count, pr.count == 1 ? "" : "s",
                     pr.first, pr.count > 1 ? " (see the full report)" : "");
    }
    if (st == BS_OK) st = make_sequences(ds, &o, err);
    if (st != BS_OK) {
        if (report && st == BS_EFORMAT) {
            *report = pr.text;
            pr.text = NULL;
        }
        free(pr.text);
        dataset_close(ds);
        return st;
    }
    free(pr.text);
    *out = ds;
    return BS_OK;
}

void dataset_close(dataset *ds) {
    if (!ds) return;
    free(ds->tokens);
    free(ds->mask);
    free(ds->segment);
    free(ds->position);
    free(ds->ex_start);
    free(ds->seq_ex);
    free(ds);
}

dataset_format dataset_format_of(const dataset *ds) { return ds->format; }
const dataset_stats *dataset_stats_of(const dataset *ds) { return &ds->stats; }
size_t dataset_count(const dataset *ds) { return ds->stats.sequences; }

void dataset_get(const dataset *ds, size_t i, dataset_seq *out) {
    size_t a = ds->ex_start[ds->seq_ex[i]], b = ds->ex_start[ds->seq_ex[i + 1]];
    *out = (dataset_seq){.tokens = ds->tokens + a, .loss_mask = ds->mask + a, .segment = ds->segment + a,
                         .position = ds->position + a, .len = b - a};
}
