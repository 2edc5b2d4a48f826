/* server/handlers_chat.c — POST /v1/chat/completions: the chat pipeline
 * (chat_run.h) with the chat.completion wire format — one SSE chunk per
 * parser event when streaming, a chat.completion object otherwise. */
#include <stdlib.h>
#include <string.h>

#include "server/chat_run.h"
#include "server/openai_response.h"

static void emit_chunk(chat_run *c, int choice, json_t *delta, const char *finish) {
    chat_choice *ch = &c->ch[choice];
    json_t *lp = NULL;
    if (ch->logprobs && json_array_size(ch->logprobs)) {
        /* The chunk takes the pending entries; later tokens start a new list. */
        lp = json_pack("{s:o,s:n}", "content", ch->logprobs, "refusal");
        ch->logprobs = json_array();
    }
    sse_data(c->out, oai_chat_chunk(c->id, c->created, c->m->name, choice, delta, finish, lp));
}

static void chat_event_out(chat_run *c, int choice, const chat_event *ev) {
    if (c->q.gen.stream) emit_chunk(c, choice, oai_chat_delta(ev), NULL);
}

static void chat_finish_out(chat_run *c, int choice) {
    if (c->q.gen.stream) emit_chunk(c, choice, json_object(), c->ch[choice].finish);
}

static json_t *usage_of(const chat_run *c) {
    int p, g, cached;
    chat_usage(c, &p, &g, &cached);
    return oai_usage(p, g, cached);
}

static void chat_stream_begin(chat_run *c) {
    for (int i = 0; i < c->n_choices; i++)
        emit_chunk(c, i, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL);
}

static void chat_stream_end(chat_run *c) {
    if (c->q.gen.include_usage)
        sse_data(c->out, json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", c->id, "object", "chat.completion.chunk",
                                   "created", (json_int_t)c->created, "model", c->m->name, "choices", "usage",
                                   usage_of(c)));
    sse_done(c->out);
}

static json_t *final_message(const chat_choice *ch) {
    int calls = json_array_size(ch->tool_calls) > 0;
    json_t *msg = json_pack("{s:s,s:o,s:n}", "role", "assistant", "content",
                            calls && ch->content.len == 0 ? json_null()
                                                          : json_stringn(ch->content.data ? ch->content.data : "", ch->content.len),
                            "refusal");
    if (ch->reasoning.len) json_object_set_new(msg, "reasoning_content", json_stringn(ch->reasoning.data, ch->reasoning.len));
    if (calls) json_object_set(msg, "tool_calls", ch->tool_calls);
    return msg;
}

static json_t *chat_complete(chat_run *c) {
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        chat_choice *ch = &c->ch[i];
        json_t *lp = c->q.logprobs ? json_pack("{s:O,s:n}", "content", ch->logprobs, "refusal") : json_null();
        json_array_append_new(choices, json_pack("{s:i,s:o,s:o,s:s}", "index", i, "message", final_message(ch),
                                                 "logprobs", lp, "finish_reason", ch->finish ? ch->finish : "stop"));
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", c->id, "object", "chat.completion", "created",
                     (json_int_t)c->created, "model", c->m->name, "choices", choices, "usage", usage_of(c));
}

static bs_status chat_decode(chat_run *c, api_error *a) { return chat_request_decode(c->body, &c->q, a); }

static const chat_protocol chat_completions = {
    .id_prefix = "chatcmpl-",
    .prompt_param = "messages",
    .decode = chat_decode,
    .event = chat_event_out,
    .finish = chat_finish_out,
    .stream_begin = chat_stream_begin,
    .stream_end = chat_stream_end,
    .complete = chat_complete,
};

void handle_chat(basalt_server *s, http_request *r) { chat_serve(s, r, &chat_completions); }
