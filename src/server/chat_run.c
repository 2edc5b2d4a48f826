#include "server/chat_run.h"

#include <stdlib.h>
#include <string.h>

#include "server/tool_grammar.h"
#include "server/openai_response.h"

/* ------------------------------------------------------------ events */

static void append_args(json_t *call, const char *s, size_t n) {
    json_t *fn = json_object_get(call, "function");
    const json_t *old = json_object_get(fn, "arguments");
    srv_buf b = {0};
    buf_append(&b, json_string_value(old), json_string_length(old));
    buf_append(&b, s, n);
    if (!b.oom) json_object_set_new(fn, "arguments", json_stringn(b.data, b.len));
    buf_free(&b);
}

/* Every event updates the choice's message, then goes to the protocol. */
static void on_chat_event(void *user, const chat_event *ev) {
    chat_run *c = user;
    chat_choice *ch = &c->ch[c->cur];
    switch (ev->kind) {
    case CHAT_EVENT_CONTENT: buf_append(&ch->content, ev->text, ev->len); break;
    case CHAT_EVENT_REASONING: buf_append(&ch->reasoning, ev->text, ev->len); break;
    case CHAT_EVENT_TOOL_BEGIN:
        json_array_append_new(ch->tool_calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", ev->tool_id, "type", "function",
                                                        "function", "name", ev->tool_name, "arguments", ""));
        break;
    case CHAT_EVENT_TOOL_ARGS: append_args(json_array_get(ch->tool_calls, (size_t)ev->tool_index), ev->text, ev->len); break;
    }
    c->proto->event(c, c->cur, ev);
}

static void tool_event(chat_run *c, chat_event_kind kind, int index, const char *name, const char *text, size_t len) {
    char id[40];
    random_id("call_", id, sizeof id);
    chat_event ev = {.kind = kind, .tool_index = index, .text = text, .len = len, .tool_id = id, .tool_name = name};
    on_chat_event(c, &ev);
}

/* tool_choice "required": the grammar made the text an array of calls. */
static void release_required_calls(chat_run *c, chat_choice *ch) {
    json_t *arr = json_loadb(ch->raw.data ? ch->raw.data : "", ch->raw.len, 0, NULL);
    size_t i;
    json_t *call;
    int n = 0;
    json_array_foreach(arr, i, call) {
        const json_t *name = json_object_get(call, "name");
        json_t *params = json_object_get(call, "parameters");
        char *args = params ? json_dumps(params, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (json_is_string(name) && args) {
            tool_event(c, CHAT_EVENT_TOOL_BEGIN, n, json_string_value(name), NULL, 0);
            tool_event(c, CHAT_EVENT_TOOL_ARGS, n, NULL, args, strlen(args));
            n++;
        }
        free(args);
    }
    if (n == 0 && ch->raw.len) { /* cut short by max_tokens: show what came */
        chat_event ev = {.kind = CHAT_EVENT_CONTENT, .text = ch->raw.data, .len = ch->raw.len};
        on_chat_event(c, &ev);
    }
    json_decref(arr);
}

static void sink_token(void *user, int choice, const bs_request_event *ev) {
    chat_run *c = user;
    if (c->q.logprobs)
        json_array_append_new(c->ch[choice].logprobs,
                              oai_logprob_entry(c->m->tok, ev->token, ev->logprob, ev->top, ev->n_top));
}

static void sink_text(void *user, int choice, const char *s, size_t n) {
    chat_run *c = user;
    chat_choice *ch = &c->ch[choice];
    c->cur = choice;
    switch (c->mode) {
    case OUT_PARSER: chat_parser_feed(ch->parser, s, n, on_chat_event, c); break;
    case OUT_NAMED:
        if (json_array_size(ch->tool_calls) == 0) tool_event(c, CHAT_EVENT_TOOL_BEGIN, 0, c->q.tool_name, NULL, 0);
        tool_event(c, CHAT_EVENT_TOOL_ARGS, 0, NULL, s, n);
        break;
    case OUT_REQUIRED: buf_append(&ch->raw, s, n); break;
    }
}

static void sink_finish(void *user, int choice, const char *reason) {
    chat_run *c = user;
    chat_choice *ch = &c->ch[choice];
    c->cur = choice;
    if (c->mode == OUT_PARSER) chat_parser_finish(ch->parser, on_chat_event, c);
    if (c->mode == OUT_REQUIRED) release_required_calls(c, ch);
    ch->finish = json_array_size(ch->tool_calls) && strcmp(reason, "stop") == 0 ? "tool_calls" : reason;
    c->proto->finish(c, choice);
}

static job_sink chat_sink(chat_run *c) {
    return (job_sink){.user = c, .token = sink_token, .text = sink_text, .finish = sink_finish};
}

/* ------------------------------------------------------------ setup */

static void chat_run_free(chat_run *c) {
    if (!c) return;
    if (c->state) c->proto->free_state(c);
    job_free(c->job);
    grammar_free(c->grammar);
    for (int i = 0; c->ch && i < c->n_choices; i++) {
        chat_parser_close(c->ch[i].parser);
        buf_free(&c->ch[i].content);
        buf_free(&c->ch[i].reasoning);
        buf_free(&c->ch[i].raw);
        json_decref(c->ch[i].tool_calls);
        json_decref(c->ch[i].logprobs);
    }
    free(c->ch);
    chat_request_free(&c->q);
    json_decref(c->body);
    free(c);
}

/* tool_choice "required" as vLLM does it: a non-empty array of calls (one
 * when parallel_tool_calls is false), each naming one of the tools with
 * arguments matching its schema. */
static json_t *required_tools_schema(const json_t *tools, int parallel) {
    json_t *any = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        json_t *params = json_object_get(fn, "parameters");
        json_array_append_new(any, json_pack("{s:s,s:{s:{s:O},s:O},s:[s,s]}", "type", "object", "properties", "name",
                                             "const", json_object_get(fn, "name"), "parameters",
                                             params && !json_is_null(params) ? params : json_pack("{s:s}", "type", "object"),
                                             "required", "name", "parameters"));
    }
    json_t *schema = json_pack("{s:s,s:i,s:{s:o}}", "type", "array", "minItems", 1, "items", "anyOf", any);
    if (schema && !parallel) json_object_set_new(schema, "maxItems", json_integer(1));
    return schema;
}

static bs_status build_grammar(chat_run *c, api_error *a) {
    const chat_request *q = &c->q;
    const char *param = NULL;
    bs_status st = BS_OK;
    if (q->tool_choice == TOOL_CHOICE_NAMED) {
        c->mode = OUT_NAMED;
        param = "tool_choice";
        st = q->tool_parameters ? grammar_from_json_schema(q->tool_parameters, "tools.function.parameters", &c->grammar, &a->e)
                                : grammar_json_object(&c->grammar, &a->e);
    } else if (q->tool_choice == TOOL_CHOICE_REQUIRED) {
        c->mode = OUT_REQUIRED;
        param = "tools";
        json_t *schema = required_tools_schema(q->tools, q->parallel_tool_calls);
        st = schema ? grammar_from_json_schema(schema, "tools", &c->grammar, &a->e)
                    : bs_fail(&a->e, BS_ENOMEM, "out of memory");
        json_decref(schema);
    } else if (q->tool_choice == TOOL_CHOICE_AUTO && q->any_strict_tool && chat_format_call_syntax(c->m->format)) {
        param = "tools";
        const chat_call_syntax *syn = chat_format_call_syntax(c->m->format);
        st = tool_grammar_build(q->tools, q->parallel_tool_calls, syn, chat_format_name(c->m->format), &c->grammar,
                                &a->e);
        for (int k = 0; k < 2 && syn->triggers[k]; k++)
            c->triggers[c->n_triggers++] = (job_trigger){syn->triggers[k], syn->at_start_only[k]};
        c->release = q->parallel_tool_calls && !syn->array && !syn->separator && syn->closer;
    } else if (q->response_kind == RESPONSE_JSON_SCHEMA && q->response_schema) {
        param = "response_format.json_schema.schema";
        st = grammar_from_json_schema(q->response_schema, param, &c->grammar, &a->e);
    } else if (q->response_kind != RESPONSE_TEXT) {
        param = "response_format";
        st = grammar_json_object(&c->grammar, &a->e);
    }
    if (st != BS_OK) snprintf(a->param, sizeof a->param, "%s", param);
    return st;
}

static bs_status open_choices(chat_run *c, const char *prompt, api_error *a) {
    c->n_choices = c->q.gen.n;
    c->ch = calloc((size_t)c->n_choices, sizeof *c->ch);
    if (!c->ch) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    const json_t *tools = c->q.tool_choice == TOOL_CHOICE_NONE ? NULL : c->q.tools;
    chat_parse_options po = {
        .format = tools && (!c->grammar || c->n_triggers) ? c->m->format : CHAT_FORMAT_CONTENT,
        .extract_reasoning = c->m->has_reasoning,
        .starts_in_reasoning = c->m->has_reasoning && chat_prompt_opens_reasoning(prompt),
        .tools = tools,
    };
    for (int i = 0; i < c->n_choices; i++) {
        chat_choice *ch = &c->ch[i];
        ch->tool_calls = json_array();
        ch->logprobs = json_array();
        po.id_seed = c->q.gen.sampling.seed + (uint64_t)i * 0x9e3779b97f4a7c15ull;
        if (!ch->tool_calls || !ch->logprobs) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
        if (c->mode == OUT_PARSER && chat_parser_open(&po, &ch->parser, &a->e) != BS_OK) return a->e.status;
    }
    return BS_OK;
}

/* ------------------------------------------------------------ running */

void chat_usage(const chat_run *c, int *prompt_tokens, int *completion_tokens, int *cached_tokens) {
    job_usage(c->job, prompt_tokens, completion_tokens, cached_tokens);
}

static void update_log(chat_run *c) {
    req_log *l = request_log(c->r);
    if (!l) return;
    int cached;
    job_usage(c->job, &l->prompt_tokens, &l->completion_tokens, &cached);
    job_timing(c->job, &l->ttft, &l->queue);
}

static int chat_pull(void *ctx, srv_buf *out) {
    chat_run *c = ctx;
    if (c->finished) return 0;
    c->out = out;
    if (!c->started) {
        c->started = 1;
        c->proto->stream_begin(c);
        return 1;
    }
    job_sink sink = chat_sink(c);
    int rc = job_pump(c->job, c->r, &sink);
    update_log(c);
    if (rc < 0) return -1;
    if (rc == 0) {
        c->proto->stream_end(c);
        c->finished = 1;
    }
    return 1;
}

static void chat_stream_done(void *ctx) { chat_run_free(ctx); }

void chat_serve(basalt_server *s, http_request *r, const chat_protocol *p) {
    chat_run *c = calloc(1, sizeof *c);
    api_error a = {0};
    char *prompt = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!c) {
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        respond_error(r, &a);
        return;
    }
    c->s = s;
    c->r = r;
    c->proto = p;
    c->created = unix_now();
    random_id(p->id_prefix, c->id, sizeof c->id);
    if (p->new_state && !(c->state = p->new_state())) {
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        goto fail;
    }
    if (!(c->body = request_body(r))) goto done;
    if (p->decode(c, &a) != BS_OK) goto fail;
    if (!(c->m = request_model(s, r, c->q.gen.model))) goto done;
    const json_t *tools = c->q.tool_choice == TOOL_CHOICE_NONE ? NULL : c->q.tools;
    if (render_chat_prompt(c->m, c->q.messages, tools, 1, c->q.template_kwargs, &prompt, &ids, &n_ids, &a) != BS_OK) {
        snprintf(a.param, sizeof a.param, "%s", p->prompt_param);
        goto fail;
    }
    int want = c->q.gen.max_tokens > 0 ? c->q.gen.max_tokens : 1;
    if ((long long)n_ids + want > c->m->n_ctx) {
        api_fail(&a, BS_ERANGE, p->prompt_param, "context_length_exceeded",
                 "This model's maximum context length is %d tokens. However, you requested %lld tokens (%zu in the "
                 "%s, %d in the completion). Please reduce the length of the %s or completion.",
                 c->m->n_ctx, (long long)n_ids + want, n_ids, p->prompt_param, want, p->prompt_param);
        goto fail;
    }
    if (build_grammar(c, &a) != BS_OK || open_choices(c, prompt, &a) != BS_OK) goto fail;
    const int32_t *prompts[1] = {ids};
    int n_prompts[1] = {(int)n_ids};
    job_params jp = {
        .sched = c->m->sched, .tok = c->m->tok, .metrics = s->metrics, .registry = s->jobs,
        .req = {.kind = BS_REQUEST_GENERATE, .n = c->q.gen.n, .max_tokens = c->q.gen.max_tokens > 0 ? c->q.gen.max_tokens : 0,
                .sampling = c->q.gen.sampling, .logprobs = c->q.logprobs, .top_logprobs = c->q.top_logprobs,
                .adapter = c->m->adapter},
        .prompts = prompts, .n_prompts = n_prompts, .n_requests = 1,
        .stop = c->q.gen.stop, .n_stop = c->q.gen.n_stop,
        .grammar = c->grammar, .trie = c->m->trie,
        .triggers = c->triggers, .n_triggers = c->n_triggers, .release = c->release,
    };
    bs_error err = {0};
    if (job_start(&jp, &c->job, &err) != BS_OK) {
        respond_job_error(r, &err, err.status == BS_EINVAL ? "n" : p->prompt_param);
        goto done;
    }
    free(prompt);
    free(ids);
    if (c->q.gen.stream) {
        http_respond_stream(r, 200, "text/event-stream", chat_pull, chat_stream_done, c);
        return;
    }
    job_sink sink = chat_sink(c);
    while (job_pump(c->job, r, &sink) == 1) {
    }
    update_log(c);
    respond_json(r, 200, p->complete(c));
    chat_run_free(c);
    return;
fail:
    respond_error(r, &a);
done:
    free(prompt);
    free(ids);
    chat_run_free(c);
}
