/* server/guard.c — guardrails in the request path (guard.h).  A request's
 * policies are chosen at admission (key, route, model); its input texts are
 * gathered from whichever endpoint shape it has into one messages array, so
 * every endpoint gets guardrail_apply_messages' semantics (one length count,
 * prompt attacks on user turns), and written back masked into the shared
 * body.  Output goes through guard_filter, which sits in the http layer and
 * therefore sees local and proxied responses, whole or streamed, alike. */
#include "server/guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "server/openai_response.h"
#include "server/server_impl.h"

/* guardrail.h exposes a policy's blocked message only through a result; a
 * regex that runs past its limit leaves no result, and must still answer
 * something: the policies' own default. */
#define FAIL_CLOSED_MESSAGE "Sorry, the model cannot answer this question."

/* ------------------------------------------------------------ the set */

typedef struct guard_entry {
    const char *name; /* the policy's own */
    gr_policy *policy;
    int in, out;      /* its apply_to */
} guard_entry;

struct guard_set {
    guard_entry *v;
    int n;
};

void guard_set_free(guard_set *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) guardrail_free(g->v[i].policy);
    free(g->v);
    free(g);
}

/* apply_to as guardrail_compile accepted it: absent means both. */
static int applies_to(const json_t *spec, const char *which) {
    const json_t *a = json_object_get(spec, "apply_to"), *e;
    size_t i;
    if (!a) return 1;
    json_array_foreach(a, i, e) if (json_is_string(e) && strcmp(json_string_value(e), which) == 0) return 1;
    return 0;
}

bs_status guard_set_build(const gw_config *c, guard_set **out, bs_error *err) {
    *out = NULL;
    if (!c) return BS_OK;
    guard_set *g = calloc(1, sizeof *g);
    if (!g || (c->n_guardrails && !(g->v = calloc((size_t)c->n_guardrails, sizeof *g->v)))) {
        free(g);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    for (int i = 0; i < c->n_guardrails; i++) {
        const gw_guardrail *gr = &c->guardrails[i];
        if (guardrail_compile(gr->name, gr->spec, &g->v[i].policy, err) != BS_OK) {
            guard_set_free(g);
            return bs_wrap(err, "%s:%d", c->path ? c->path : "config", gr->line);
        }
        g->n = i + 1;
        g->v[i].name = guardrail_name(g->v[i].policy);
        g->v[i].in = applies_to(gr->spec, "input");
        g->v[i].out = applies_to(gr->spec, "output");
    }
    *out = g;
    return BS_OK;
}

static const guard_entry *set_entry(const guard_set *g, const char *name) {
    for (int i = 0; g && i < g->n; i++)
        if (strcmp(g->v[i].name, name) == 0) return &g->v[i];
    return NULL;
}

const gr_policy *guard_set_find(const guard_set *g, const char *name) {
    const guard_entry *e = set_entry(g, name);
    return e ? e->policy : NULL;
}

/* ------------------------------------------------------------ results */

static void result_init(gr_result *r, gr_source src) {
    memset(r, 0, sizeof *r);
    r->source = src;
    r->blocked_by = -1;
}

/* Move from's outputs and detections to the end of into's (detections get
 * message = index), so several texts (choices, content blocks) report as
 * one result; from is left empty and freed. */
static bs_status result_absorb(gr_result *into, gr_result *from, int index, bs_error *err) {
    char **o = realloc(into->outputs, (size_t)(into->n_outputs + from->n_outputs + 1) * sizeof *o);
    if (o) into->outputs = o;
    gr_detection *d = realloc(into->dets, (size_t)(into->n_dets + from->n_dets + 1) * sizeof *d);
    if (d) into->dets = d;
    if (!o || !d) {
        gr_result_free(from);
        return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    }
    for (int i = 0; i < from->n_outputs; i++) into->outputs[into->n_outputs++] = from->outputs[i];
    for (int i = 0; i < from->n_dets; i++) {
        into->dets[into->n_dets] = from->dets[i];
        into->dets[into->n_dets++].message = index;
    }
    into->cap_dets = into->n_dets + 1;
    into->intervened |= from->intervened;
    into->blocked |= from->blocked;
    if (from->blocked_by >= 0 && (into->blocked_by < 0 || from->blocked_by < into->blocked_by))
        into->blocked_by = from->blocked_by;
    from->n_outputs = from->n_dets = 0;
    gr_result_free(from);
    return BS_OK;
}

/* A text the policies could not evaluate (a regex past its limit) counts
 * as blocked: nothing unchecked goes out. */
static bs_status result_fail_closed(gr_result *r, gr_source src, bs_error *err) {
    gr_result_free(r);
    result_init(r, src);
    r->intervened = r->blocked = 1;
    if (!(r->outputs = malloc(sizeof *r->outputs)) || !(r->outputs[0] = strdup(FAIL_CLOSED_MESSAGE))) {
        free(r->outputs);
        r->outputs = NULL;
        return bs_fail(err, BS_ENOMEM, "guardrail: out of memory");
    }
    r->n_outputs = 1;
    return BS_OK;
}

/* ------------------------------------------------------------ the output filter */

/* One stream of generated text: a chat/completion choice (a = index) or a
 * Responses output_text part (a = output_index, b = content_index). */
typedef struct text_stream {
    int a, b;
    gr_stream *st;
    int finished, blocked;
} text_stream;

enum { MODE_UNKNOWN, MODE_JSON, MODE_SSE, MODE_PASS };

struct guard_filter {
    const gr_policy **P;
    int n;
    int mode;
    srv_buf in;         /* JSON: the whole body so far; SSE: the unfinished event */
    text_stream *ts;
    int n_ts, cap_ts;
    json_t *tmpl;       /* a chat/completion chunk without choices, for chunks the filter makes */
    int reported;       /* basalt_guardrail went out on a stream */
    int intervened, blocked;
};

bs_status guard_filter_open(const gr_policy *const *policies, int n, guard_filter **out, bs_error *err) {
    guard_filter *f = calloc(1, sizeof *f);
    if (!f || !(f->P = malloc((size_t)(n ? n : 1) * sizeof *f->P))) {
        free(f);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    memcpy(f->P, policies, (size_t)n * sizeof *f->P);
    f->n = n;
    *out = f;
    return BS_OK;
}

void guard_filter_release(void *ctx) {
    guard_filter *f = ctx;
    if (!f) return;
    for (int i = 0; i < f->n_ts; i++) gr_stream_free(f->ts[i].st);
    free(f->ts);
    json_decref(f->tmpl);
    buf_free(&f->in);
    free(f->P);
    free(f);
}

void guard_filter_outcome(const guard_filter *f, int *intervened, int *blocked) {
    *intervened = f->intervened;
    *blocked = f->blocked;
}

static void note(guard_filter *f, const gr_result *r) {
    f->intervened |= r->intervened;
    f->blocked |= r->blocked;
}

/* The report attached to a response, without the matched texts: they are
 * what the output policies kept from the client. */
static json_t *output_report(const gr_result *r, const gr_policy *const *P, int n) {
    json_t *j = gr_result_json(r, P, n), *a, *section, *list, *item;
    size_t i, k;
    const char *sk, *lk;
    json_array_foreach(json_object_get(j, "assessments"), i, a) {
        json_object_foreach(a, sk, section) {
            json_object_foreach(section, lk, list) {
                json_array_foreach(list, k, item) json_object_del(item, "match");
            }
        }
    }
    return j;
}

/* Apply to holder[key] (a string), store the masked text (or the blocked
 * message) there and add the result to agg as text number index.  *changed:
 * the text is not what it was. */
static bs_status mask_field(guard_filter *f, json_t *holder, const char *key, int index, gr_result *agg,
                            int *changed, int *blocked, bs_error *err) {
    const json_t *s = json_object_get(holder, key);
    gr_result r;
    bs_status st = guardrail_apply(f->P, f->n, GR_OUTPUT, json_string_value(s), json_string_length(s), &r, err);
    if (st == BS_ERANGE) st = result_fail_closed(&r, GR_OUTPUT, err);
    if (st != BS_OK) {
        gr_result_free(&r);
        return st;
    }
    note(f, &r);
    *blocked = r.blocked;
    *changed = strcmp(r.outputs[0], json_string_value(s)) != 0;
    if (json_object_set_new(holder, key, json_string(r.outputs[0]))) {
        gr_result_free(&r);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    return result_absorb(agg, &r, index, err);
}

/* The output_text parts of a Responses message item; their logprobs name
 * the unmasked tokens, so a changed part loses them. */
static bs_status mask_item(guard_filter *f, json_t *item, int *index, gr_result *agg, bs_error *err) {
    const char *type = json_string_value(json_object_get(item, "type"));
    json_t *content = json_object_get(item, "content"), *part;
    size_t i;
    if (!type || strcmp(type, "message") != 0 || !json_is_array(content)) return BS_OK;
    json_array_foreach(content, i, part) {
        const char *pt = json_string_value(json_object_get(part, "type"));
        if (!pt || strcmp(pt, "output_text") != 0 || !json_is_string(json_object_get(part, "text"))) continue;
        int changed, blocked;
        if (mask_field(f, part, "text", (*index)++, agg, &changed, &blocked, err) != BS_OK) return err->status;
        if (changed && json_object_get(part, "logprobs")) json_object_set_new(part, "logprobs", json_array());
    }
    return BS_OK;
}

/* A whole chat.completion, text_completion or response object: masks its
 * texts and adds basalt_guardrail when a policy intervened.  0: not a
 * shape the filter knows (left alone). */
static int mask_object(guard_filter *f, json_t *obj, bs_error *err, bs_status *st) {
    json_t *choices = json_object_get(obj, "choices"), *c;
    const char *object = json_string_value(json_object_get(obj, "object"));
    int is_response = object && strcmp(object, "response") == 0;
    if (!json_is_array(choices) && !is_response) return 0;
    gr_result agg;
    result_init(&agg, GR_OUTPUT);
    *st = BS_OK;
    size_t i;
    int index = 0;
    if (is_response) {
        json_t *output = json_object_get(obj, "output");
        json_array_foreach(output, i, c) if (*st == BS_OK) *st = mask_item(f, c, &index, &agg, err);
        if (*st == BS_OK && agg.blocked) {
            /* how OpenAI reports a filtered response */
            json_object_set_new(obj, "status", json_string("incomplete"));
            json_object_set_new(obj, "incomplete_details", json_pack("{s:s}", "reason", "content_filter"));
        }
    } else {
        json_array_foreach(choices, i, c) {
            json_t *msg = json_object_get(c, "message");
            json_t *holder = json_is_string(json_object_get(msg, "content")) ? msg
                             : json_is_string(json_object_get(c, "text")) ? c
                                                                          : NULL;
            if (!holder || *st != BS_OK) continue;
            int changed, blocked;
            *st = mask_field(f, holder, holder == c ? "text" : "content", (int)i, &agg, &changed, &blocked, err);
            if (*st != BS_OK) break;
            if (blocked) json_object_set_new(c, "finish_reason", json_string("content_filter"));
            if (changed && json_object_get(c, "logprobs")) json_object_set_new(c, "logprobs", json_null());
        }
    }
    if (*st == BS_OK && agg.intervened) json_object_set_new(obj, "basalt_guardrail", output_report(&agg, f->P, f->n));
    gr_result_free(&agg);
    return 1;
}

static text_stream *stream_of(guard_filter *f, int a, int b, bs_error *err) {
    for (int i = 0; i < f->n_ts; i++)
        if (f->ts[i].a == a && f->ts[i].b == b) return &f->ts[i];
    if (f->n_ts == f->cap_ts) {
        int cap = f->cap_ts ? 2 * f->cap_ts : 4;
        text_stream *v = realloc(f->ts, (size_t)cap * sizeof *v);
        if (!v) {
            bs_fail(err, BS_ENOMEM, "out of memory");
            return NULL;
        }
        f->ts = v;
        f->cap_ts = cap;
    }
    text_stream *t = &f->ts[f->n_ts];
    *t = (text_stream){.a = a, .b = b};
    if (gr_stream_open(f->P, f->n, &t->st, err) != BS_OK) return NULL;
    f->n_ts++;
    return t;
}

/* Push text (NULL: none) and, when finishing, flush; the released masked
 * text is appended to emit. */
static bs_status stream_feed(guard_filter *f, text_stream *t, const char *text, size_t len, int finish, srv_buf *emit,
                             bs_error *err) {
    char *e = NULL;
    size_t n = 0;
    int blocked = 0;
    bs_status st = BS_OK;
    if (text) {
        st = gr_stream_push(t->st, text, len, &e, &n, &blocked, err);
        buf_append(emit, e ? e : "", n);
        free(e);
        e = NULL;
        n = 0;
    }
    if (st == BS_OK && finish && !blocked) {
        st = gr_stream_finish(t->st, &e, &n, &blocked, err);
        buf_append(emit, e ? e : "", n);
        free(e);
    }
    /* gr_stream fails closed: a failure is a block */
    if (st != BS_OK && st != BS_ENOMEM) blocked = 1, st = BS_OK;
    if (blocked) t->blocked = t->finished = f->blocked = f->intervened = 1;
    if (finish) t->finished = 1;
    if (st == BS_OK && emit->oom) st = bs_fail(err, BS_ENOMEM, "out of memory");
    return st;
}

/* The streams' results as one (text number = stream number). */
static json_t *streams_report(guard_filter *f, bs_error *err) {
    gr_result agg, r;
    result_init(&agg, GR_OUTPUT);
    for (int i = 0; i < f->n_ts; i++) {
        if (gr_stream_result(f->ts[i].st, &r, err) != BS_OK || result_absorb(&agg, &r, i, err) != BS_OK) {
            gr_result_free(&r);
            gr_result_free(&agg);
            return NULL;
        }
    }
    /* a stream's result knows its block only through its detections */
    for (int i = 0; i < f->n_ts; i++) agg.blocked |= f->ts[i].blocked;
    agg.intervened |= agg.blocked;
    if (agg.intervened) f->intervened = 1;
    json_t *j = agg.intervened ? output_report(&agg, f->P, f->n) : NULL;
    gr_result_free(&agg);
    return j;
}

/* After a chunk: when every stream has finished, the first chunk to see it
 * carries the report (when a policy intervened). */
static bs_status maybe_report(guard_filter *f, json_t *chunk, bs_error *err) {
    if (f->reported || f->n_ts == 0) return BS_OK;
    for (int i = 0; i < f->n_ts; i++)
        if (!f->ts[i].finished) return BS_OK;
    f->reported = 1;
    json_t *j = streams_report(f, err);
    if (!j && err->status != BS_OK) return err->status;
    if (j) json_object_set_new(chunk, "basalt_guardrail", j);
    return BS_OK;
}

static void write_event(srv_buf *out, const char *event, json_t *data) {
    char *s = json_dumps(data, JSON_COMPACT);
    if (!s) {
        out->oom = 1;
        return;
    }
    if (event) buf_printf(out, "event: %s\n", event);
    buf_printf(out, "data: %s\n\n", s);
    free(s);
}

/* Non-null members of a chat delta besides content: a delta that carries
 * them (role, tool_calls, reasoning) goes out even with no content left. */
static int delta_has_more(const json_t *delta) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)delta, k, v) if (strcmp(k, "content") != 0 && !json_is_null(v)) return 1;
    return 0;
}

/* A chat.completion.chunk or text_completion chunk: each choice's text goes
 * through its stream and is replaced by what the stream released. */
static bs_status on_chunk(guard_filter *f, json_t *chunk, srv_buf *out, bs_error *err) {
    json_t *choices = json_object_get(chunk, "choices");
    if (!f->tmpl) {
        if (!(f->tmpl = json_deep_copy(chunk))) return bs_fail(err, BS_ENOMEM, "out of memory");
        json_object_del(f->tmpl, "choices");
        json_object_del(f->tmpl, "usage");
        json_object_del(f->tmpl, "basalt_guardrail");
    }
    json_t *kept = json_array();
    if (!kept) return bs_fail(err, BS_ENOMEM, "out of memory");
    size_t i;
    json_t *c;
    bs_status st = BS_OK;
    json_array_foreach(choices, i, c) {
        json_t *idx = json_object_get(c, "index"), *delta = json_object_get(c, "delta");
        json_t *holder = json_is_object(delta) ? delta : c;
        const char *key = holder == delta ? "content" : "text";
        const json_t *text = json_object_get(holder, key);
        const char *fin = json_string_value(json_object_get(c, "finish_reason"));
        text_stream *t = stream_of(f, json_is_integer(idx) ? (int)json_integer_value(idx) : (int)i, 0, err);
        if (!t) {
            st = err->status;
            break;
        }
        if (t->blocked) continue; /* the client was told this choice ended */
        if (t->finished && !json_is_string(text)) {
            json_array_append(kept, c);
            continue;
        }
        srv_buf emit = {0};
        st = stream_feed(f, t, json_string_value(text), json_string_length(text), fin != NULL, &emit, err);
        if (st != BS_OK) {
            buf_free(&emit);
            break;
        }
        int had_text = json_is_string(text);
        int changed = had_text && (emit.len != json_string_length(text) ||
                                   memcmp(emit.data ? emit.data : "", json_string_value(text), emit.len));
        if (had_text || emit.len) /* a finish chunk may carry what was held back */
            json_object_set_new(holder, key, json_stringn(emit.data ? emit.data : "", emit.len));
        if (t->blocked) json_object_set_new(c, "finish_reason", json_string("content_filter"));
        if (changed && json_object_get(c, "logprobs")) json_object_set_new(c, "logprobs", json_null());
        int keep = emit.len > 0 || t->finished || !had_text || (holder == delta && delta_has_more(delta));
        buf_free(&emit);
        if (keep) json_array_append(kept, c);
    }
    const json_t *usage = json_object_get(chunk, "usage");
    if (st == BS_OK && json_array_size(choices) && !json_array_size(kept) && (!usage || json_is_null(usage))) {
        json_decref(kept);
        return BS_OK; /* everything in it is held back */
    }
    json_object_set_new(chunk, "choices", kept);
    if (st == BS_OK) st = maybe_report(f, chunk, err);
    if (st == BS_OK) write_event(out, NULL, chunk);
    return st;
}

/* The end of a chat/completion stream ([DONE], or the body's end): what the
 * unfinished streams still hold goes out in chunks of its own. */
static bs_status flush_choices(guard_filter *f, srv_buf *out, bs_error *err) {
    for (int i = 0; i < f->n_ts; i++) {
        text_stream *t = &f->ts[i];
        if (t->finished || !f->tmpl) continue;
        srv_buf emit = {0};
        bs_status st = stream_feed(f, t, NULL, 0, 1, &emit, err);
        const char *object = json_string_value(json_object_get(f->tmpl, "object"));
        int chat = !object || strcmp(object, "text_completion") != 0;
        json_t *text = json_stringn(emit.data ? emit.data : "", emit.len), *fin = t->blocked ? json_string("content_filter") : json_null();
        buf_free(&emit);
        json_t *choice = chat ? json_pack("{s:i,s:{s:o},s:o}", "index", t->a, "delta", "content", text, "finish_reason", fin)
                              : json_pack("{s:i,s:o,s:o}", "index", t->a, "text", text, "finish_reason", fin);
        json_t *chunk = json_deep_copy(f->tmpl);
        if (st == BS_OK && (!choice || !chunk)) st = bs_fail(err, BS_ENOMEM, "out of memory");
        if (st == BS_OK) json_object_set_new(chunk, "choices", json_pack("[O]", choice));
        if (st == BS_OK) st = maybe_report(f, chunk, err);
        if (st == BS_OK) write_event(out, NULL, chunk);
        json_decref(choice);
        json_decref(chunk);
        if (st != BS_OK) return st;
    }
    return BS_OK;
}

/* A Responses API event (data carries "type"): output_text deltas go
 * through their stream; the events that repeat whole texts (done, part,
 * item, response) are masked whole, which gives what the stream gave. */
static bs_status on_response_event(guard_filter *f, json_t *ev, const char *type, srv_buf *out, bs_error *err) {
    int out_i = (int)json_integer_value(json_object_get(ev, "output_index"));
    int con_i = (int)json_integer_value(json_object_get(ev, "content_index"));
    gr_result agg;
    result_init(&agg, GR_OUTPUT);
    bs_status st = BS_OK;
    int index = 0, changed, blocked;
    if (strcmp(type, "response.output_text.delta") == 0 || strcmp(type, "response.output_text.done") == 0) {
        int done = strcmp(type, "response.output_text.done") == 0;
        text_stream *t = stream_of(f, out_i, con_i, err);
        if (!t) return err->status;
        const json_t *d = json_object_get(ev, "delta");
        if (t->finished && !done) return BS_OK;
        srv_buf emit = {0};
        if (!t->finished) st = stream_feed(f, t, json_string_value(d), json_string_length(d), done, &emit, err);
        if (st == BS_OK && emit.len) {
            json_t *copy = json_deep_copy(ev);
            if (!copy) st = bs_fail(err, BS_ENOMEM, "out of memory");
            else {
                json_object_set_new(copy, "type", json_string("response.output_text.delta"));
                json_object_del(copy, "text");
                json_object_set_new(copy, "delta", json_stringn(emit.data, emit.len));
                write_event(out, "response.output_text.delta", copy);
                json_decref(copy);
            }
        }
        buf_free(&emit);
        if (st != BS_OK || !done) return st;
        if (json_is_string(json_object_get(ev, "text")))
            st = mask_field(f, ev, "text", 0, &agg, &changed, &blocked, err);
    } else if (json_is_object(json_object_get(ev, "response"))) {
        mask_object(f, json_object_get(ev, "response"), err, &st);
        const char *status = json_string_value(json_object_get(json_object_get(ev, "response"), "status"));
        if (st == BS_OK && strcmp(type, "response.completed") == 0 && status && strcmp(status, "incomplete") == 0) {
            type = "response.incomplete";
            json_object_set_new(ev, "type", json_string(type));
        }
    } else if (json_is_object(json_object_get(ev, "item"))) {
        st = mask_item(f, json_object_get(ev, "item"), &index, &agg, err);
    } else if (json_is_object(json_object_get(ev, "part"))) {
        json_t *part = json_object_get(ev, "part");
        const char *pt = json_string_value(json_object_get(part, "type"));
        if (pt && strcmp(pt, "output_text") == 0 && json_is_string(json_object_get(part, "text")))
            st = mask_field(f, part, "text", 0, &agg, &changed, &blocked, err);
    }
    gr_result_free(&agg);
    if (st == BS_OK) write_event(out, json_string_value(json_object_get(ev, "type")), ev);
    return st;
}

/* One SSE event (its lines, without the blank line that ended it). */
static bs_status on_event(guard_filter *f, const char *ev, size_t len, srv_buf *out, bs_error *err) {
    srv_buf data = {0};
    int n_data = 0;
    for (size_t p = 0; p < len;) {
        const char *nl = memchr(ev + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - ev) : len, l = e - p;
        if (l && ev[p + l - 1] == '\r') l--;
        if (l >= 5 && memcmp(ev + p, "data:", 5) == 0) {
            size_t s = p + 5 + (l > 5 && ev[p + 5] == ' ');
            if (n_data++) buf_append(&data, "\n", 1);
            buf_append(&data, ev + s, p + l - s);
        }
        p = e + 1;
    }
    json_t *j = n_data && !data.oom ? json_loadb(data.data ? data.data : "", data.len, 0, NULL) : NULL;
    int is_done = n_data && data.len == 6 && memcmp(data.data, "[DONE]", 6) == 0;
    buf_free(&data);
    bs_status st = BS_OK;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (is_done) st = flush_choices(f, out, err);
    if (st == BS_OK && json_is_array(json_object_get(j, "choices")))
        st = on_chunk(f, j, out, err);
    else if (st == BS_OK && type && strncmp(type, "response.", 9) == 0)
        st = on_response_event(f, j, type, out, err);
    else if (st == BS_OK) { /* comments, [DONE], errors: as they came */
        buf_append(out, ev, len);
        buf_append(out, "\n\n", 2);
    }
    json_decref(j);
    return st;
}

/* The end of the first blank line in b (an event's end), or 0. */
static size_t event_end(const srv_buf *b, size_t *ev_len) {
    for (size_t i = 0; i + 1 < b->len; i++) {
        if (b->data[i] != '\n') continue;
        size_t k = i + 1;
        if (k < b->len && b->data[k] == '\r') k++;
        if (k < b->len && b->data[k] == '\n') {
            *ev_len = i;
            return k + 1;
        }
    }
    return 0;
}

static bs_status filter_sse(guard_filter *f, int final, srv_buf *out, bs_error *err) {
    size_t used, ev_len;
    bs_status st = BS_OK;
    while (st == BS_OK && (used = event_end(&f->in, &ev_len)) != 0) {
        st = on_event(f, f->in.data, ev_len, out, err);
        buf_consume(&f->in, used);
    }
    if (st == BS_OK && final) {
        size_t n = f->in.len;
        while (n && (f->in.data[n - 1] == '\n' || f->in.data[n - 1] == '\r')) n--;
        if (n) st = on_event(f, f->in.data, n, out, err); /* a body cut without its blank line */
        buf_consume(&f->in, f->in.len);
        if (st == BS_OK) st = flush_choices(f, out, err);
    }
    return st;
}

int guard_filter_run(void *ctx, const char *data, size_t len, int final, srv_buf *out) {
    guard_filter *f = ctx;
    bs_error err = {0};
    buf_append(&f->in, data, len);
    if (f->in.oom) return -1;
    if (f->mode == MODE_UNKNOWN) {
        /* '{' starts a JSON body, an SSE field name a stream; anything else
         * is no response the filter knows */
        size_t i = 0;
        while (i < f->in.len && strchr(" \t\r\n", f->in.data[i])) i++;
        const char *p = f->in.data + i;
        size_t n = f->in.len - i;
        static const char *const fields[] = {"data:", "event:", "id:", "retry:", ":"};
        int sse = 0, undecided = 0;
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
            size_t fl = strlen(fields[k]);
            sse |= n >= fl && memcmp(p, fields[k], fl) == 0;
            undecided |= n < fl && memcmp(p, fields[k], n) == 0;
        }
        if (n && p[0] == '{') f->mode = MODE_JSON;
        else if (sse) f->mode = MODE_SSE;
        else if (final || !undecided) f->mode = MODE_PASS;
    }
    if (f->mode == MODE_PASS || (final && f->mode == MODE_UNKNOWN)) {
        buf_append(out, f->in.data ? f->in.data : "", f->in.len);
        buf_consume(&f->in, f->in.len);
        return out->oom ? -1 : 0;
    }
    bs_status st = BS_OK;
    if (f->mode == MODE_SSE) {
        st = filter_sse(f, final, out, &err);
    } else if (final) {
        /* a whole body (or a body that was never anything): masked when it is
         * a response the filter knows, else as it came */
        json_t *j = json_loadb(f->in.data, f->in.len, 0, NULL);
        char *s = NULL;
        if (j && mask_object(f, j, &err, &st) && st == BS_OK && !(s = json_dumps(j, JSON_COMPACT)))
            st = BS_ENOMEM;
        if (s) buf_puts(out, s);
        else if (st == BS_OK) buf_append(out, f->in.data ? f->in.data : "", f->in.len);
        free(s);
        json_decref(j);
        buf_consume(&f->in, f->in.len);
    }
    if (st != BS_OK) bs_log_error("guardrail filter: %s", err.msg);
    return st == BS_OK && !out->oom ? 0 : -1;
}

/* ------------------------------------------------------------ admission */

typedef struct guard_request {
    json_t *names;        /* the policies applied, in order */
    int intervened, blocked; /* on the input */
    guard_filter *filter; /* owned by the http layer once installed; read in done */
} guard_request;

int guard_input_changed(http_request *r) {
    req_log *l = *http_user_slot(r);
    return l && l->guard && l->guard->intervened;
}

/* The request's policies: its key's, then its route's or model's, each
 * once.  A name the config does not define fails closed (500). */
static int select_policies(basalt_server *s, http_request *r, const json_t *body, const guard_set *g,
                           const guard_entry **out, int cap, int *n, json_t *names) {
    const gw_config *cfg = gateway_request_config(s, r);
    const char *model = json_string_value(json_object_get(body, "model"));
    const char *const *lists[2] = {NULL, NULL};
    int counts[2] = {0, 0};
    counts[0] = request_key_guardrails(r, &lists[0]);
    int ri = cfg && model ? gw_config_route(cfg, model) : -1, mi = cfg && model && ri < 0 ? gw_config_model(cfg, model) : -1;
    if (ri >= 0) {
        lists[1] = (const char *const *)cfg->routes[ri].guardrails;
        counts[1] = cfg->routes[ri].n_guardrails;
    } else if (mi >= 0) {
        lists[1] = (const char *const *)cfg->models[mi].guardrails;
        counts[1] = cfg->models[mi].n_guardrails;
    }
    *n = 0;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < counts[l]; i++) {
            const guard_entry *e = set_entry(g, lists[l][i]);
            if (!e) {
                api_error a = {.http = 500};
                api_fail(&a, BS_ENOTFOUND, NULL, "guardrail_not_found",
                         "The guardrail '%s' attached to this %s is not defined in the configuration", lists[l][i],
                         l == 0 ? "API key" : ri >= 0 ? "route" : "model");
                respond_error(r, &a);
                return 0;
            }
            int dup = 0;
            for (int k = 0; k < *n; k++) dup |= out[k] == e;
            if (!dup && *n == cap) { /* never drop a policy silently */
                api_error a = {.http = 500};
                api_fail(&a, BS_ERANGE, NULL, "guardrail_limit", "More than %d guardrails apply to this request", cap);
                respond_error(r, &a);
                return 0;
            }
            if (!dup) {
                out[(*n)++] = e;
                json_array_append_new(names, json_string(e->name));
            }
        }
    return 1;
}

/* Where an input text of a request is: holder[key] of an object, or
 * holder[index] of an array of strings. */
typedef struct input_text {
    json_t *holder;
    const char *key;
    size_t index;
} input_text;

typedef struct inputs {
    json_t *messages; /* {role, content} per text, for guardrail_apply_messages */
    input_text *v;
    int n, cap;
} inputs;

static int add_input(inputs *in, json_t *holder, const char *key, size_t index, const char *role) {
    if (in->n == in->cap) {
        int cap = in->cap ? 2 * in->cap : 8;
        input_text *v = realloc(in->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        in->v = v;
        in->cap = cap;
    }
    in->v[in->n++] = (input_text){holder, key, index};
    json_t *text = key ? json_object_get(holder, key) : json_array_get(holder, index);
    return json_array_append_new(in->messages, json_pack("{s:s,s:O}", "role", role, "content", text));
}

/* A prompt or input that is a string or an array of strings (1; -1: out of
 * memory).  Token-id arrays carry no text a policy could read, so they are
 * refused (0, a set) rather than passed unchecked. */
static int strings_input(inputs *in, json_t *body, const char *key, api_error *a) {
    json_t *v = json_object_get(body, key), *e;
    size_t i;
    if (json_is_string(v)) return add_input(in, body, key, 0, "user") ? -1 : 1;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) {
            api_fail(a, BS_EINVAL, key, "content_filter",
                     "%s[%zu]: token-id input cannot be checked by the guardrails on this request; send text", key, i);
            return 0;
        }
        if (add_input(in, v, NULL, i, "user")) return -1;
    }
    return 1; /* anything else: the handler reports the bad field */
}

/* The Responses API input: instructions (as a system turn), input as a
 * string, or items whose content is a string or has input_text parts. */
static int responses_input(inputs *in, json_t *body) {
    json_t *items = json_object_get(body, "input"), *item, *part;
    size_t i, k;
    if (json_is_string(json_object_get(body, "instructions")) && add_input(in, body, "instructions", 0, "system"))
        return -1;
    if (json_is_string(items)) return add_input(in, body, "input", 0, "user") ? -1 : 1;
    json_array_foreach(items, i, item) {
        const char *role = json_string_value(json_object_get(item, "role"));
        json_t *content = json_object_get(item, "content");
        if (!role || strcmp(role, "assistant") == 0) continue; /* tool outputs and the model's turns, as Bedrock */
        if (json_is_string(content) && add_input(in, item, "content", 0, role)) return -1;
        json_array_foreach(content, k, part) {
            const char *pt = json_string_value(json_object_get(part, "type"));
            if (pt && (strcmp(pt, "input_text") == 0 || strcmp(pt, "text") == 0) &&
                json_is_string(json_object_get(part, "text")) && add_input(in, part, "text", 0, role))
                return -1;
        }
    }
    return 1;
}

/* Write the masked texts back where they came from. */
static void write_back(const inputs *in, const json_t *masked) {
    for (int i = 0; i < in->n; i++) {
        json_t *text = json_object_get(json_array_get(masked, (size_t)i), "content");
        const input_text *t = &in->v[i];
        if (t->key) json_object_set(t->holder, t->key, text);
        else json_array_set(t->holder, t->index, text);
    }
}

/* The answer to a blocked input, in the endpoint's own shape so clients
 * read it as a normal (filtered) result: chat and completions answer 200
 * with the blocked message as the text and finish_reason content_filter
 * (streamed as SSE when asked); responses 200 with status incomplete and
 * incomplete_details.reason content_filter; embeddings, which have no text
 * to put it in, 400 with code content_filter (as Azure OpenAI does).  Each
 * carries basalt_guardrail. */
static void respond_blocked(http_request *r, const char *endpoint, const json_t *body, const char *msg, json_t *report) {
    const char *model = json_string_value(json_object_get(body, "model"));
    int stream = json_is_true(json_object_get(body, "stream"));
    char id[64];
    long long now = unix_now();
    if (strcmp(endpoint, "/v1/embeddings") == 0) {
        api_error a = {.http = 400};
        api_fail(&a, BS_EINVAL, "input", "content_filter", "%s", msg);
        json_t *err = oai_error_body(&a, 400);
        json_object_set_new(err, "basalt_guardrail", report);
        respond_json(r, 400, err);
        return;
    }
    if (strcmp(endpoint, "/v1/responses") == 0) {
        random_id("resp_", id, sizeof id);
        char item_id[64];
        random_id("msg_", item_id, sizeof item_id);
        json_t *resp = json_pack(
            "{s:s,s:s,s:I,s:s,s:s?,s:{s:s},s:[{s:s,s:s,s:s,s:s,s:[{s:s,s:s,s:[]}]}],s:o,s:{s:i,s:i,s:i}}", "id", id,
            "object", "response", "created_at", (json_int_t)now, "status", "incomplete", "model", model,
            "incomplete_details", "reason", "content_filter", "output", "type", "message", "id", item_id, "status",
            "incomplete", "role", "assistant", "content", "type", "output_text", "text", msg, "annotations",
            "basalt_guardrail", report, "usage", "input_tokens", 0, "output_tokens", 0, "total_tokens", 0);
        if (!stream) {
            respond_json(r, 200, resp);
            return;
        }
        srv_buf out = {0};
        sse_event(&out, "response.incomplete", json_pack("{s:s,s:i,s:o}", "type", "response.incomplete",
                                                          "sequence_number", 0, "response", resp));
        http_respond(r, 200, "text/event-stream", out.data ? out.data : "", out.len);
        buf_free(&out);
        return;
    }
    int chat = strcmp(endpoint, "/v1/chat/completions") == 0;
    random_id(chat ? "chatcmpl-" : "cmpl-", id, sizeof id);
    if (!stream) {
        json_t *choice = chat ? json_pack("{s:i,s:{s:s,s:s},s:n,s:s}", "index", 0, "message", "role", "assistant",
                                          "content", msg, "logprobs", "finish_reason", "content_filter")
                              : json_pack("{s:i,s:s,s:n,s:s}", "index", 0, "text", msg, "logprobs", "finish_reason",
                                          "content_filter");
        respond_json(r, 200,
                     json_pack("{s:s,s:s,s:I,s:s?,s:[o],s:{s:i,s:i,s:i},s:o}", "id", id, "object",
                               chat ? "chat.completion" : "text_completion", "created", (json_int_t)now, "model",
                               model, "choices", choice, "usage", "prompt_tokens", 0, "completion_tokens", 0,
                               "total_tokens", 0, "basalt_guardrail", report));
        return;
    }
    const char *object = chat ? "chat.completion.chunk" : "text_completion";
    json_t *text_choice = chat ? json_pack("{s:i,s:{s:s,s:s},s:n}", "index", 0, "delta", "role", "assistant",
                                           "content", msg, "finish_reason")
                               : json_pack("{s:i,s:s,s:n}", "index", 0, "text", msg, "finish_reason");
    json_t *end_choice = chat ? json_pack("{s:i,s:{},s:s}", "index", 0, "delta", "finish_reason", "content_filter")
                              : json_pack("{s:i,s:s,s:s}", "index", 0, "text", "", "finish_reason", "content_filter");
    srv_buf out = {0};
    sse_data(&out, json_pack("{s:s,s:s,s:I,s:s?,s:[o]}", "id", id, "object", object, "created", (json_int_t)now,
                             "model", model, "choices", text_choice));
    sse_data(&out, json_pack("{s:s,s:s,s:I,s:s?,s:[o],s:o}", "id", id, "object", object, "created", (json_int_t)now,
                             "model", model, "choices", end_choice, "basalt_guardrail", report));
    sse_done(&out);
    http_respond(r, 200, "text/event-stream", out.data ? out.data : "", out.len);
    buf_free(&out);
}

#define MAX_POLICIES 32

int guard_admit(basalt_server *s, http_request *r, const char *endpoint, json_t *body, const guard_set *guards) {
    req_log *l = request_log(r);
    guard_request *gq = calloc(1, sizeof *gq);
    if (!gq || !(gq->names = json_array())) {
        free(gq);
        api_error a = {0};
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        respond_error(r, &a);
        return 0;
    }
    if (l) l->guard = gq;
    const guard_entry *sel[MAX_POLICIES];
    int n = 0;
    if (!select_policies(s, r, body, guards, sel, MAX_POLICIES, &n, gq->names)) return 0;
    const gr_policy *in_p[MAX_POLICIES], *out_p[MAX_POLICIES];
    int n_in = 0, n_out = 0;
    for (int i = 0; i < n; i++) {
        if (sel[i]->in) in_p[n_in++] = sel[i]->policy;
        if (sel[i]->out) out_p[n_out++] = sel[i]->policy;
    }
    api_error a = {0};
    bs_error err = {0};
    if (n_in) {
        inputs in = {.messages = json_array()};
        int ok = in.messages ? 1 : -1;
        json_t *msgs = NULL;
        if (strcmp(endpoint, "/v1/chat/completions") == 0) msgs = json_incref(json_object_get(body, "messages"));
        else if (strcmp(endpoint, "/v1/responses") == 0 && ok > 0) ok = responses_input(&in, body);
        else if (ok > 0) ok = strings_input(&in, body, strcmp(endpoint, "/v1/completions") == 0 ? "prompt" : "input", &a);
        if (!msgs) msgs = json_incref(in.messages);
        json_t *masked = NULL;
        gr_result res;
        result_init(&res, GR_INPUT);
        bs_status st = ok < 0 ? bs_fail(&err, BS_ENOMEM, "out of memory")
                       : ok == 0 || !json_is_array(msgs)
                           ? BS_OK /* refused above, or no messages: the handler answers the bad request */
                           : guardrail_apply_messages(in_p, n_in, msgs, &masked, &res, &err);
        if (st == BS_ERANGE) st = result_fail_closed(&res, GR_INPUT, &err);
        if (st == BS_OK && ok > 0 && res.intervened) {
            gq->intervened = 1;
            gq->blocked = res.blocked;
            if (res.blocked) {
                respond_blocked(r, endpoint, body, res.outputs[0], gr_result_json(&res, in_p, n_in));
            } else if (msgs == in.messages) {
                write_back(&in, masked);
            } else {
                json_object_set(body, "messages", masked);
            }
        }
        json_decref(masked);
        json_decref(msgs);
        json_decref(in.messages);
        free(in.v);
        gr_result_free(&res);
        if (ok == 0) respond_error(r, &a);
        if (st != BS_OK) {
            a.e = err;
            respond_error(r, &a);
        }
        if (ok <= 0 || st != BS_OK || gq->blocked) return 0;
    }
    if (n_out) {
        if (guard_filter_open(out_p, n_out, &gq->filter, &err) != BS_OK) {
            a.e = err;
            respond_error(r, &a);
            return 0;
        }
        http_set_filter(r, guard_filter_run, guard_filter_release, gq->filter);
    }
    return 1;
}

void guard_request_done(basalt_server *s, http_request *r, json_t *line) {
    (void)s;
    req_log *l = request_log(r);
    guard_request *gq = l ? l->guard : NULL;
    if (!gq) return;
    int intervened = gq->intervened, blocked = gq->blocked, fi = 0, fb = 0;
    if (gq->filter) guard_filter_outcome(gq->filter, &fi, &fb);
    intervened |= fi;
    blocked |= fb;
    json_object_set_new(line, "guardrail_action",
                        json_string(blocked ? "BLOCKED" : intervened ? "ANONYMIZED" : "NONE"));
    json_object_set_new(line, "guardrails", gq->names);
    free(gq);
    l->guard = NULL;
}

/* ------------------------------------------------------------ POST /v1/guardrails/{name}/apply */

#define APPLY_PREFIX "/v1/guardrails/"
#define APPLY_SUFFIX "/apply"

/* The texts of an ApplyGuardrail body: content [{text:{text}}] as Bedrock,
 * or a plain "text" string; into a messages array of user turns. */
static int apply_texts(const json_t *body, json_t *msgs, api_error *a) {
    const json_t *text = json_object_get(body, "text"), *content = json_object_get(body, "content"), *c;
    size_t i;
    if (json_is_string(text) && !content)
        return json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "user", "content", text)) == 0;
    if (!json_is_array(content) || json_array_size(content) == 0) {
        api_fail(a, BS_EINVAL, "content", "invalid_value",
                 "content: expected a non-empty array of {\"text\":{\"text\":\"…\"}} (or a \"text\" string)");
        return 0;
    }
    json_array_foreach(content, i, c) {
        const json_t *t = json_object_get(json_object_get(c, "text"), "text");
        if (!json_is_string(t)) {
            char param[64];
            snprintf(param, sizeof param, "content[%zu].text.text", i);
            api_fail(a, BS_EINVAL, param, "invalid_value", "%s: expected a string", param);
            return 0;
        }
        json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "user", "content", t));
    }
    return 1;
}

static void characters(const json_t *msgs, size_t *chars) {
    size_t i;
    const json_t *m;
    *chars = 0;
    json_array_foreach(msgs, i, m) {
        const unsigned char *p = (const unsigned char *)json_string_value(json_object_get(m, "content"));
        for (; p && *p; p++) *chars += (*p & 0xC0) != 0x80;
    }
}

void handle_guardrail_apply(basalt_server *s, http_request *r) {
    const char *path = http_path(r);
    size_t plen = strlen(path), pre = sizeof APPLY_PREFIX - 1, suf = sizeof APPLY_SUFFIX - 1;
    api_error a = {0};
    if (plen <= pre + suf || strcmp(path + plen - suf, APPLY_SUFFIX) != 0) {
        a.http = 404;
        api_fail(&a, BS_ENOTFOUND, NULL, "not_found", "Unknown route: POST %s (expected %s{name}%s)", path,
                 APPLY_PREFIX, APPLY_SUFFIX);
        respond_error(r, &a);
        return;
    }
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(plen - pre - suf), path + pre);
    const gr_policy *p = guard_set_find(gateway_guards(s, r), name);
    if (!p) {
        a.http = 404;
        api_fail(&a, BS_ENOTFOUND, "name", "guardrail_not_found", "The guardrail '%s' is not defined in the configuration",
                 name);
        respond_error(r, &a);
        return;
    }
    json_t *body = request_body(r);
    if (!body) return;
    const char *source = json_string_value(json_object_get(body, "source"));
    int input = source && strcasecmp(source, "INPUT") == 0, output = source && strcasecmp(source, "OUTPUT") == 0;
    json_t *msgs = json_array();
    if (!input && !output) {
        api_fail(&a, BS_EINVAL, "source", "invalid_value", "source: expected \"INPUT\" or \"OUTPUT\"");
    } else if (apply_texts(body, msgs, &a)) {
        gr_result res, one;
        result_init(&res, input ? GR_INPUT : GR_OUTPUT);
        bs_error err = {0};
        json_t *masked = NULL;
        bs_status st = BS_OK;
        if (input) {
            st = guardrail_apply_messages(&p, 1, msgs, &masked, &res, &err);
        } else {
            size_t i;
            json_t *m;
            json_array_foreach(msgs, i, m) {
                const json_t *t = json_object_get(m, "content");
                if (st == BS_OK) st = guardrail_apply(&p, 1, GR_OUTPUT, json_string_value(t), json_string_length(t), &one, &err);
                if (st == BS_OK) st = result_absorb(&res, &one, (int)i, &err);
                else gr_result_free(&one);
            }
        }
        json_decref(masked);
        if (st == BS_ERANGE) st = result_fail_closed(&res, res.source, &err);
        if (st == BS_OK) {
            size_t chars;
            characters(msgs, &chars);
            json_t *j = gr_result_json(&res, &p, 1);
            /* Bedrock bills text units of 1000 characters */
            json_object_set_new(j, "usage", json_pack("{s:I,s:I}", "characters", (json_int_t)chars, "textUnits",
                                                      (json_int_t)((chars + 999) / 1000)));
            respond_json(r, 200, j);
        } else {
            a.e = err;
        }
        gr_result_free(&res);
    }
    json_decref(msgs);
    json_decref(body);
    if (a.e.status != BS_OK) respond_error(r, &a);
}
