/* server/chat_run.h — the chat generation pipeline that POST
 * /v1/chat/completions and POST /v1/responses share.
 *
 * decode -> render the template -> encode -> (grammar for tool_choice or a
 * response format; a lazy one, armed by the family's tool-call trigger, for
 * strict tools under tool_choice auto) -> job -> per choice: visible text -> output parser (or
 * the forced-tool path) -> events -> the choice's message state (content,
 * reasoning, tool calls).  The endpoints differ only in wire format, which a
 * chat_protocol supplies: it decodes its body into a chat_request and turns
 * events into its streaming frames and final object. */
#ifndef BASALT_SERVER_CHAT_RUN_H
#define BASALT_SERVER_CHAT_RUN_H

#include "server/server_impl.h"

/* Where a choice's visible text goes. */
typedef enum {
    OUT_PARSER,   /* the model family's output parser: content, reasoning, tool markup */
    OUT_NAMED,    /* tool_choice names a function: the text is its arguments */
    OUT_REQUIRED, /* tool_choice required: the text is [{"name","parameters"}...] */
} output_mode;

typedef struct chat_choice {
    chat_parser *parser;
    srv_buf content, reasoning, raw;
    json_t *tool_calls; /* [{id,type,function:{name,arguments}}] */
    json_t *logprobs;   /* entries the protocol has not taken yet */
    const char *finish; /* "stop", "length" or "tool_calls" once finished */
} chat_choice;

typedef struct chat_run chat_run;

typedef struct chat_protocol {
    const char *id_prefix;    /* "chatcmpl-", "resp_" */
    const char *prompt_param; /* names the prompt in errors: "messages", "input" */
    /* c->body into c->q (c->state is open by then). */
    bs_status (*decode)(chat_run *c, api_error *a);
    /* Each parser event, after the choice's state took it; streaming or not. */
    void (*event)(chat_run *c, int choice, const chat_event *ev);
    /* A choice ended; its finish is set. */
    void (*finish)(chat_run *c, int choice);
    /* Streaming: the first frames, and the last ones once every choice ended. */
    void (*stream_begin)(chat_run *c);
    void (*stream_end)(chat_run *c);
    /* Not streaming: the response body once every choice ended. */
    json_t *(*complete)(chat_run *c);
    /* The protocol's per-request state (chat_run.state), NULL when out of
     * memory; both may be NULL. */
    void *(*new_state)(void);
    void (*free_state)(chat_run *c);
} chat_protocol;

struct chat_run {
    basalt_server *s;
    srv_model *m;
    http_request *r;
    json_t *body;
    chat_request q;
    const chat_protocol *proto;
    void *state; /* the protocol's own */
    output_mode mode;
    bs_grammar *grammar;
    job_trigger triggers[2]; /* a lazy grammar's (strict tools under tool_choice auto) */
    int n_triggers, release;
    gen_job *job;
    chat_choice *ch;
    int n_choices;
    int cur; /* the choice whose parser is calling back */
    char id[48];
    long long created;
    srv_buf *out; /* streaming: where frames go during a pull */
    int started, finished;
};

/* Runs one request of that protocol to its response. */
void chat_serve(basalt_server *s, http_request *r, const chat_protocol *p);

void chat_usage(const chat_run *c, int *prompt_tokens, int *completion_tokens, int *cached_tokens);

#endif
