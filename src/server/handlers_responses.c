/* server/handlers_responses.c — POST /v1/responses: the chat pipeline
 * (chat_run.h) with the Responses wire format.
 *
 * The request becomes a chat request (responses_request_decode).  Parser
 * events drive one state machine, streaming or not, that opens and closes
 * output items — reasoning (as a summary), message (one output_text part),
 * function_call — in the order the model produced them; streaming sends its
 * named events as it goes, and the final response object is the same items,
 * so the two modes cannot disagree.
 *
 * store (default true, as OpenAI's) keeps the finished response with the
 * input items it answered (resp_store.h: bounded, in memory, per process);
 * previous_response_id and item_reference inputs are resolved from there
 * into plain input items before decoding, and GET / DELETE
 * /v1/responses/{id} read and drop entries. */
#include <stdlib.h>
#include <string.h>

#include "server/chat_run.h"
#include "server/openai_response.h"

typedef enum { ITEM_NONE, ITEM_REASONING, ITEM_MESSAGE, ITEM_CALL } item_kind;

typedef struct resp_state {
    json_t *items;  /* the conversation as input items, references resolved (for the store) */
    int store;
    json_t *output; /* the closed items */
    item_kind open;
    char item_id[48];
    char call_id[48];
    json_t *call_name;
    srv_buf text; /* the open item's text: summary, message text or call arguments */
    int seq;
} resp_state;

static resp_state *state_of(chat_run *c) { return c->state; }

static const char *text_of(const srv_buf *b) { return b->data ? b->data : ""; }

/* One streamed event: {"type","sequence_number",...fields} (fields stolen). */
static void emit(chat_run *c, const char *type, json_t *fields) {
    resp_state *st = state_of(c);
    if (!c->q.gen.stream) {
        json_decref(fields);
        return;
    }
    json_t *ev = json_pack("{s:s,s:i}", "type", type, "sequence_number", st->seq++);
    json_object_update(ev, fields);
    json_decref(fields);
    sse_event(c->out, type, ev);
}

static json_t *text_part(const srv_buf *text) {
    return json_pack("{s:s,s:s%,s:[],s:[]}", "type", "output_text", "text", text_of(text), text->len, "annotations",
                     "logprobs");
}

static json_t *summary_part(const srv_buf *text) {
    return json_pack("{s:s,s:s%}", "type", "summary_text", "text", text_of(text), text->len);
}

/* The open item as it stands; done: with its text, else as just opened. */
static json_t *open_item_json(const resp_state *st, const char *status, int done) {
    switch (st->open) {
    case ITEM_REASONING:
        return json_pack("{s:s,s:s,s:o}", "id", st->item_id, "type", "reasoning", "summary",
                         done ? json_pack("[o]", summary_part(&st->text)) : json_array());
    case ITEM_MESSAGE:
        return json_pack("{s:s,s:s,s:s,s:s,s:o}", "id", st->item_id, "type", "message", "status", status, "role",
                         "assistant", "content", done ? json_pack("[o]", text_part(&st->text)) : json_array());
    case ITEM_CALL:
        return json_pack("{s:s,s:s,s:s,s:s%,s:s,s:O}", "id", st->item_id, "type", "function_call", "status", status,
                         "arguments", done ? text_of(&st->text) : "", done ? st->text.len : 0, "call_id", st->call_id,
                         "name", st->call_name);
    case ITEM_NONE: break;
    }
    return json_object();
}

static void close_item(chat_run *c, const char *status) {
    resp_state *st = state_of(c);
    if (st->open == ITEM_NONE) return;
    int index = (int)json_array_size(st->output);
    const char *id = st->item_id;
    switch (st->open) {
    case ITEM_REASONING:
        emit(c, "response.reasoning_summary_text.done",
             json_pack("{s:s,s:i,s:i,s:s%}", "item_id", id, "output_index", index, "summary_index", 0, "text",
                       text_of(&st->text), st->text.len));
        emit(c, "response.reasoning_summary_part.done",
             json_pack("{s:s,s:i,s:i,s:o}", "item_id", id, "output_index", index, "summary_index", 0, "part",
                       summary_part(&st->text)));
        break;
    case ITEM_MESSAGE:
        emit(c, "response.output_text.done",
             json_pack("{s:s,s:i,s:i,s:s%,s:[]}", "item_id", id, "output_index", index, "content_index", 0, "text",
                       text_of(&st->text), st->text.len, "logprobs"));
        emit(c, "response.content_part.done",
             json_pack("{s:s,s:i,s:i,s:o}", "item_id", id, "output_index", index, "content_index", 0, "part",
                       text_part(&st->text)));
        break;
    case ITEM_CALL:
        emit(c, "response.function_call_arguments.done",
             json_pack("{s:s,s:i,s:O,s:s%}", "item_id", id, "output_index", index, "name", st->call_name, "arguments",
                       text_of(&st->text), st->text.len));
        break;
    case ITEM_NONE: break;
    }
    json_t *item = open_item_json(st, status, 1);
    emit(c, "response.output_item.done", json_pack("{s:i,s:O}", "output_index", index, "item", item));
    json_array_append_new(st->output, item);
    st->open = ITEM_NONE;
    buf_free(&st->text);
    json_decref(st->call_name);
    st->call_name = NULL;
}

static void open_item(chat_run *c, item_kind kind, const chat_event *ev) {
    resp_state *st = state_of(c);
    close_item(c, "completed");
    static const char *const prefix[] = {"", "rs_", "msg_", "fc_"};
    random_id(prefix[kind], st->item_id, sizeof st->item_id);
    st->open = kind;
    if (kind == ITEM_CALL) {
        snprintf(st->call_id, sizeof st->call_id, "%s", ev->tool_id);
        st->call_name = json_string(ev->tool_name);
    }
    int index = (int)json_array_size(st->output);
    emit(c, "response.output_item.added",
         json_pack("{s:i,s:o}", "output_index", index, "item", open_item_json(st, "in_progress", 0)));
    if (kind == ITEM_MESSAGE)
        emit(c, "response.content_part.added",
             json_pack("{s:s,s:i,s:i,s:o}", "item_id", st->item_id, "output_index", index, "content_index", 0, "part",
                       text_part(&st->text)));
    if (kind == ITEM_REASONING)
        emit(c, "response.reasoning_summary_part.added",
             json_pack("{s:s,s:i,s:i,s:o}", "item_id", st->item_id, "output_index", index, "summary_index", 0, "part",
                       summary_part(&st->text)));
}

static void add_text(chat_run *c, const char *s, size_t n) {
    resp_state *st = state_of(c);
    buf_append(&st->text, s, n);
    int index = (int)json_array_size(st->output);
    const char *id = st->item_id;
    if (st->open == ITEM_MESSAGE)
        emit(c, "response.output_text.delta",
             json_pack("{s:s,s:i,s:i,s:s%,s:[]}", "item_id", id, "output_index", index, "content_index", 0, "delta", s, n,
                       "logprobs"));
    else if (st->open == ITEM_REASONING)
        emit(c, "response.reasoning_summary_text.delta",
             json_pack("{s:s,s:i,s:i,s:s%}", "item_id", id, "output_index", index, "summary_index", 0, "delta", s, n));
    else
        emit(c, "response.function_call_arguments.delta",
             json_pack("{s:s,s:i,s:s%}", "item_id", id, "output_index", index, "delta", s, n));
}

static void resp_event(chat_run *c, int choice, const chat_event *ev) {
    (void)choice; /* one choice: Responses has no n */
    resp_state *st = state_of(c);
    switch (ev->kind) {
    case CHAT_EVENT_CONTENT:
        if (st->open != ITEM_MESSAGE) open_item(c, ITEM_MESSAGE, ev);
        add_text(c, ev->text, ev->len);
        break;
    case CHAT_EVENT_REASONING:
        if (st->open != ITEM_REASONING) open_item(c, ITEM_REASONING, ev);
        add_text(c, ev->text, ev->len);
        break;
    case CHAT_EVENT_TOOL_BEGIN: open_item(c, ITEM_CALL, ev); break;
    case CHAT_EVENT_TOOL_ARGS: add_text(c, ev->text, ev->len); break;
    }
}

/* "incomplete" when the token budget ran out, as OpenAI reports it. */
static int incomplete(const chat_run *c) { return c->ch[0].finish && strcmp(c->ch[0].finish, "length") == 0; }

static void resp_finish(chat_run *c, int choice) {
    (void)choice;
    resp_state *st = state_of(c);
    /* Every response carries at least its (possibly empty) message. */
    if (st->open == ITEM_NONE && json_array_size(st->output) == 0) open_item(c, ITEM_MESSAGE, NULL);
    close_item(c, incomplete(c) ? "incomplete" : "completed");
}

static json_t *echo(const chat_run *c, const char *key, json_t *otherwise) {
    json_t *v = json_object_get(c->body, key);
    if (!v || json_is_null(v)) return otherwise;
    json_decref(otherwise);
    return json_incref(v);
}

/* Tokens of the reasoning text: the parser separates text, not tokens, so
 * the count is that text encoded again. */
static int reasoning_tokens(const chat_run *c) {
    const srv_buf *r = &c->ch[0].reasoning;
    int32_t *ids = NULL;
    size_t n = 0;
    if (!r->len || tok_encode(c->m->tok, r->data, r->len, 0, &ids, &n, NULL) != BS_OK) n = 0;
    free(ids);
    return (int)n;
}

static json_t *resp_usage(const chat_run *c) {
    int p, g, cached;
    chat_usage(c, &p, &g, &cached);
    return json_pack("{s:i,s:{s:i},s:i,s:{s:i},s:i}", "input_tokens", p, "input_tokens_details", "cached_tokens", cached,
                     "output_tokens", g, "output_tokens_details", "reasoning_tokens", reasoning_tokens(c),
                     "total_tokens", p + g);
}

/* The response object; final: with its output and usage, else as begun. */
static json_t *response_json(chat_run *c, int final) {
    const resp_state *st = c->state;
    const char *status = !final ? "in_progress" : incomplete(c) ? "incomplete" : "completed";
    json_t *details = final && incomplete(c) ? json_pack("{s:s}", "reason", "max_output_tokens") : json_null();
    json_t *r = json_pack("{s:s,s:s,s:I,s:s,s:b,s:n,s:o,s:o,s:o,s:s,s:o}", "id", c->id, "object", "response",
                          "created_at", (json_int_t)c->created, "status", status, "background", 0, "error",
                          "incomplete_details", details, "instructions", echo(c, "instructions", json_null()),
                          "max_output_tokens", echo(c, "max_output_tokens", json_null()), "model", c->m->name,
                          "output", final ? json_deep_copy(st->output) : json_array());
    json_object_set_new(r, "parallel_tool_calls", json_boolean(c->q.parallel_tool_calls));
    json_object_set_new(r, "previous_response_id", echo(c, "previous_response_id", json_null()));
    json_object_set_new(r, "reasoning", echo(c, "reasoning", json_pack("{s:n,s:n}", "effort", "summary")));
    json_object_set_new(r, "service_tier", json_string("default"));
    json_object_set_new(r, "store", json_boolean(st->store));
    json_object_set_new(r, "temperature", echo(c, "temperature", json_real(1.0)));
    json_object_set_new(r, "text", echo(c, "text", json_pack("{s:{s:s}}", "format", "type", "text")));
    json_object_set_new(r, "tool_choice", echo(c, "tool_choice", json_string(c->q.tools ? "auto" : "none")));
    json_object_set_new(r, "tools", echo(c, "tools", json_array()));
    json_object_set_new(r, "top_p", echo(c, "top_p", json_real(1.0)));
    json_object_set_new(r, "truncation", echo(c, "truncation", json_string("disabled")));
    json_object_set_new(r, "usage", final ? resp_usage(c) : json_null());
    json_object_set_new(r, "user", echo(c, "user", json_null()));
    json_object_set_new(r, "metadata", echo(c, "metadata", json_object()));
    return r;
}

static void resp_stream_begin(chat_run *c) {
    emit(c, "response.created", json_pack("{s:o}", "response", response_json(c, 0)));
    emit(c, "response.in_progress", json_pack("{s:o}", "response", response_json(c, 0)));
}

/* The final response object, kept when store asked for it. */
static json_t *final_response(chat_run *c) {
    resp_state *st = state_of(c);
    json_t *r = response_json(c, 1);
    if (st->store && r) resp_store_put(c->s->responses, json_deep_copy(r), json_incref(st->items));
    return r;
}

/* No [DONE]: the Responses stream ends with its terminal event. */
static void resp_stream_end(chat_run *c) {
    emit(c, incomplete(c) ? "response.incomplete" : "response.completed",
         json_pack("{s:o}", "response", final_response(c)));
}

static json_t *resp_complete(chat_run *c) { return final_response(c); }

static void *resp_new(void) {
    resp_state *st = calloc(1, sizeof *st);
    if (st && !(st->output = json_array())) {
        free(st);
        st = NULL;
    }
    return st;
}

static void resp_free(chat_run *c) {
    resp_state *st = c->state;
    if (!st) return;
    json_decref(st->items);
    json_decref(st->output);
    json_decref(st->call_name);
    buf_free(&st->text);
    free(st);
}

/* ------------------------------------------------------------ stored state */

static bs_status not_found(api_error *a, const char *param, const char *fmt, const char *id) {
    a->http = 404;
    return api_fail(a, BS_ENOTFOUND, param, "not_found", fmt, id);
}

/* One input entry as an input item: item references become the stored item. */
static bs_status resolve_item(chat_run *c, const json_t *item, size_t index, json_t *items, api_error *a) {
    const json_t *type = json_object_get(item, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "item_reference") != 0)
        return json_array_append(items, (json_t *)item) ? api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory") : BS_OK;
    char param[48];
    snprintf(param, sizeof param, "input[%zu].id", index);
    const json_t *id = json_object_get(item, "id");
    if (!json_is_string(id)) return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be a string", param);
    json_t *found = resp_store_item(c->s->responses, json_string_value(id));
    if (!found)
        return not_found(a, param, "Item with id '%s' not found: it was never stored, was deleted, or was evicted "
                                   "from this server's response store", json_string_value(id));
    json_array_append_new(items, found);
    return BS_OK;
}

/* The conversation as plain input items: the previous response's input and
 * output items, then this request's input with references resolved.  Input
 * that is neither a string nor an array is left to the decoder's error. */
static bs_status resolve_input(chat_run *c, json_t *body, api_error *a) {
    resp_state *st = state_of(c);
    const json_t *prev = json_object_get(c->body, "previous_response_id");
    const json_t *input = json_object_get(c->body, "input");
    json_t *items = st->items = json_array();
    if (!items) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    if (prev && !json_is_null(prev)) {
        if (!json_is_string(prev))
            return api_fail(a, BS_EINVAL, "previous_response_id", NULL, "'previous_response_id' must be a string");
        json_t *before = NULL, *r = resp_store_get(c->s->responses, json_string_value(prev), &before);
        if (!r)
            return not_found(a, "previous_response_id",
                             "Previous response with id '%s' not found: it was never stored, was deleted, or was "
                             "evicted from this server's response store", json_string_value(prev));
        json_array_extend(items, before);
        json_array_extend(items, json_object_get(r, "output"));
        json_decref(before);
        json_decref(r);
        json_object_del(body, "previous_response_id");
    }
    if (json_is_string(input)) {
        json_array_append_new(items, json_pack("{s:s,s:s,s:O}", "type", "message", "role", "user", "content", input));
    } else if (json_is_array(input)) {
        size_t i;
        const json_t *item;
        json_array_foreach(input, i, item)
            if (resolve_item(c, item, i, items, a) != BS_OK) return a->e.status;
    } else {
        return BS_OK;
    }
    json_object_set(body, "input", items);
    return BS_OK;
}

static bs_status resp_decode(chat_run *c, api_error *a) {
    /* OpenAI's default is to store; the decoder checks the type. */
    state_of(c)->store = !json_is_false(json_object_get(c->body, "store"));
    json_t *body = json_copy(c->body);
    if (!body) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    bs_status rc = resolve_input(c, body, a);
    if (rc == BS_OK) rc = responses_request_decode(body, &c->q, a);
    json_decref(body);
    return rc;
}

static const chat_protocol responses = {
    .id_prefix = "resp_",
    .prompt_param = "input",
    .decode = resp_decode,
    .event = resp_event,
    .finish = resp_finish,
    .stream_begin = resp_stream_begin,
    .stream_end = resp_stream_end,
    .complete = resp_complete,
    .new_state = resp_new,
    .free_state = resp_free,
};

void handle_responses(basalt_server *s, http_request *r) { chat_serve(s, r, &responses); }

/* The {id} of /v1/responses/{id}. */
static const char *response_id(http_request *r) { return http_path(r) + strlen("/v1/responses/"); }

void handle_response_get(basalt_server *s, http_request *r) {
    json_t *resp = resp_store_get(s->responses, response_id(r), NULL);
    api_error a = {0};
    if (!resp) {
        not_found(&a, "response_id", "Response with id '%s' not found.", response_id(r));
        respond_error(r, &a);
        return;
    }
    respond_json(r, 200, resp);
}

void handle_response_delete(basalt_server *s, http_request *r) {
    api_error a = {0};
    if (resp_store_delete(s->responses, response_id(r)) != 0) {
        not_found(&a, "response_id", "Response with id '%s' not found.", response_id(r));
        respond_error(r, &a);
        return;
    }
    respond_json(r, 200, json_pack("{s:s,s:s,s:b}", "id", response_id(r), "object", "response", "deleted", 1));
}
