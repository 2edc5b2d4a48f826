/* server/handlers_completions.c — POST /v1/completions (legacy text
 * completions: several prompts, echo, logprobs in the old shape) and
 * POST /v1/embeddings.  Both encode their prompts the same way. */
#include <stdlib.h>
#include <string.h>

#include "server/openai_response.h"
#include "server/server_impl.h"

/* Encoded prompts of a request, checked against the vocabulary. */
typedef struct encoded_prompts {
    int32_t **ids;
    int *n_ids;
    int n;
} encoded_prompts;

static void encoded_free(encoded_prompts *e) {
    for (int i = 0; e->ids && i < e->n; i++) free(e->ids[i]);
    free(e->ids);
    free(e->n_ids);
}

static bs_status encode_prompts(const srv_model *m, const oai_prompt *p, int n, const char *param, encoded_prompts *e,
                                api_error *a) {
    e->n = n;
    e->ids = calloc((size_t)n, sizeof *e->ids);
    e->n_ids = calloc((size_t)n, sizeof *e->n_ids);
    if (!e->ids || !e->n_ids) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    int32_t vocab = tok_vocab_size(m->tok);
    for (int i = 0; i < n; i++) {
        if (p[i].text) {
            size_t len = 0;
            if (tok_encode(m->tok, p[i].text, strlen(p[i].text), TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL, &e->ids[i], &len,
                           &a->e) != BS_OK)
                return a->e.status;
            e->n_ids[i] = (int)len;
        } else {
            for (int k = 0; k < p[i].n_ids; k++)
                if (p[i].ids[k] >= vocab)
                    return api_fail(a, BS_EINVAL, param, NULL, "token id %d in '%s' is outside the vocabulary (%d)",
                                    p[i].ids[k], param, vocab);
            e->ids[i] = malloc((size_t)p[i].n_ids * sizeof **e->ids);
            if (!e->ids[i]) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
            memcpy(e->ids[i], p[i].ids, (size_t)p[i].n_ids * sizeof **e->ids);
            e->n_ids[i] = p[i].n_ids;
        }
        if (e->n_ids[i] == 0) return api_fail(a, BS_EINVAL, param, NULL, "'%s' encodes to no tokens", param);
    }
    return BS_OK;
}

/* ------------------------------------------------------------ completions */

typedef struct cmpl_choice {
    srv_buf text;
    json_t *tokens, *token_logprobs, *top_logprobs, *text_offset;
    const char *finish;
} cmpl_choice;

typedef struct cmpl_run {
    srv_model *m;
    http_request *r;
    json_t *body;
    completion_request q;
    encoded_prompts enc;
    gen_job *job;
    cmpl_choice *ch;
    int n_choices;
    char id[48];
    long long created;
    srv_buf *out;
    int started, finished;
} cmpl_run;

static void cmpl_run_free(cmpl_run *c) {
    if (!c) return;
    job_free(c->job);
    for (int i = 0; c->ch && i < c->n_choices; i++) {
        cmpl_choice *ch = &c->ch[i];
        buf_free(&ch->text);
        json_decref(ch->tokens);
        json_decref(ch->token_logprobs);
        json_decref(ch->top_logprobs);
        json_decref(ch->text_offset);
    }
    free(c->ch);
    encoded_free(&c->enc);
    completion_request_free(&c->q);
    json_decref(c->body);
    free(c);
}

static json_t *token_text(const bs_tokenizer *tok, int32_t id) {
    char *s = NULL;
    size_t n = 0;
    json_t *j = NULL;
    if (tok_decode(tok, &id, 1, TOK_DECODE_SPECIAL, &s, &n, NULL) == BS_OK) j = json_stringn(s, n);
    free(s);
    return j ? j : json_string("\xef\xbf\xbd");
}

static void chunk(cmpl_run *c, int choice, const char *text, size_t n, const char *finish) {
    sse_data(c->out, json_pack("{s:s,s:s,s:I,s:s,s:[{s:s%,s:i,s:n,s:s?}]}", "id", c->id, "object", "text_completion",
                               "created", (json_int_t)c->created, "model", c->m->name, "choices", "text", text, n,
                               "index", choice, "logprobs", "finish_reason", finish));
}

static void cmpl_token(void *user, int choice, const bs_request_event *ev) {
    cmpl_run *c = user;
    cmpl_choice *ch = &c->ch[choice];
    if (c->q.logprobs < 0 || c->q.gen.stream) return;
    json_array_append_new(ch->tokens, token_text(c->m->tok, ev->token));
    json_array_append_new(ch->token_logprobs, json_real(ev->logprob));
    json_t *top = json_object();
    for (int i = 0; i < ev->n_top; i++) {
        json_t *t = token_text(c->m->tok, ev->top[i].token);
        json_object_set_new(top, json_string_value(t), json_real(ev->top[i].logprob));
        json_decref(t);
    }
    json_array_append_new(ch->top_logprobs, top);
    json_array_append_new(ch->text_offset, json_integer((json_int_t)ch->text.len));
}

static void cmpl_text(void *user, int choice, const char *s, size_t n) {
    cmpl_run *c = user;
    if (c->q.gen.stream) chunk(c, choice, s, n, NULL);
    else buf_append(&c->ch[choice].text, s, n);
}

static void cmpl_finish(void *user, int choice, const char *reason) {
    cmpl_run *c = user;
    c->ch[choice].finish = reason;
    if (c->q.gen.stream) chunk(c, choice, "", 0, reason);
}

static job_sink cmpl_sink(cmpl_run *c) {
    return (job_sink){.user = c, .token = cmpl_token, .text = cmpl_text, .finish = cmpl_finish};
}

static void cmpl_update_log(cmpl_run *c) {
    req_log *l = request_log(c->r);
    if (!l) return;
    int cached;
    job_usage(c->job, &l->prompt_tokens, &l->completion_tokens, &cached);
    job_timing(c->job, &l->ttft, &l->queue);
}

static json_t *cmpl_usage(const cmpl_run *c) {
    int p, g, cached;
    job_usage(c->job, &p, &g, &cached);
    return oai_usage(p, g, cached);
}

/* The prompt's text for echo: as given, or decoded from its ids. */
static char *echo_text(const cmpl_run *c, int prompt, size_t *len) {
    const oai_prompt *p = &c->q.prompts[prompt];
    if (p->text) {
        *len = strlen(p->text);
        return strdup(p->text);
    }
    char *s = NULL;
    if (tok_decode(c->m->tok, p->ids, (size_t)p->n_ids, 0, &s, len, NULL) != BS_OK) return NULL;
    return s;
}

static int cmpl_pull(void *ctx, srv_buf *out) {
    cmpl_run *c = ctx;
    if (c->finished) return 0;
    c->out = out;
    if (!c->started) {
        c->started = 1;
        for (int i = 0; c->q.echo && i < c->n_choices; i++) {
            size_t len = 0;
            char *s = echo_text(c, i / c->q.gen.n, &len);
            if (s) chunk(c, i, s, len, NULL);
            free(s);
        }
        return 1;
    }
    job_sink sink = cmpl_sink(c);
    int rc = job_pump(c->job, c->r, &sink);
    cmpl_update_log(c);
    if (rc < 0) return -1;
    if (rc == 0) {
        if (c->q.gen.include_usage)
            sse_data(out, json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", c->id, "object", "text_completion", "created",
                                    (json_int_t)c->created, "model", c->m->name, "choices", "usage", cmpl_usage(c)));
        sse_done(out);
        c->finished = 1;
    }
    return 1;
}

static void cmpl_stream_done(void *ctx) { cmpl_run_free(ctx); }

static void cmpl_respond(cmpl_run *c) {
    json_t *choices = json_array();
    for (int i = 0; i < c->n_choices; i++) {
        cmpl_choice *ch = &c->ch[i];
        srv_buf text = {0};
        if (c->q.echo) {
            size_t len = 0;
            char *s = echo_text(c, i / c->q.gen.n, &len);
            if (s) buf_append(&text, s, len);
            free(s);
        }
        buf_append(&text, ch->text.data ? ch->text.data : "", ch->text.len);
        json_t *lp = json_null();
        if (c->q.logprobs >= 0)
            lp = json_pack("{s:O,s:O,s:O,s:O}", "tokens", ch->tokens, "token_logprobs", ch->token_logprobs,
                           "top_logprobs", ch->top_logprobs, "text_offset", ch->text_offset);
        json_t *t = json_stringn(text.data ? text.data : "", text.len);
        json_array_append_new(choices, json_pack("{s:o,s:i,s:o,s:s}", "text", t ? t : json_string(""), "index", i,
                                                 "logprobs", lp, "finish_reason", ch->finish ? ch->finish : "stop"));
        buf_free(&text);
    }
    respond_json(c->r, 200, json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", c->id, "object", "text_completion", "created",
                                      (json_int_t)c->created, "model", c->m->name, "choices", choices, "usage",
                                      cmpl_usage(c)));
}

void handle_completions(basalt_server *s, http_request *r) {
    cmpl_run *c = calloc(1, sizeof *c);
    api_error a = {0};
    if (!c) {
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        respond_error(r, &a);
        return;
    }
    c->r = r;
    c->created = unix_now();
    random_id("cmpl-", c->id, sizeof c->id);
    if (!(c->body = request_body(r))) goto done;
    if (completion_request_decode(c->body, &c->q, &a) != BS_OK) goto fail;
    if (!(c->m = request_model(s, r, c->q.gen.model))) goto done;
    if (encode_prompts(c->m, c->q.prompts, c->q.n_prompts, "prompt", &c->enc, &a) != BS_OK) goto fail;
    for (int i = 0; i < c->enc.n; i++)
        if ((long long)c->enc.n_ids[i] + c->q.gen.max_tokens > c->m->n_ctx) {
            api_fail(&a, BS_ERANGE, "prompt", "context_length_exceeded",
                     "This model's maximum context length is %d tokens, however you requested %d tokens (%d in your "
                     "prompt; %d for the completion). Please reduce your prompt; or completion length.",
                     c->m->n_ctx, c->enc.n_ids[i] + c->q.gen.max_tokens, c->enc.n_ids[i], c->q.gen.max_tokens);
            goto fail;
        }
    c->n_choices = c->q.n_prompts * c->q.gen.n;
    c->ch = calloc((size_t)c->n_choices, sizeof *c->ch);
    if (!c->ch) {
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        goto fail;
    }
    for (int i = 0; i < c->n_choices; i++) {
        cmpl_choice *ch = &c->ch[i];
        ch->tokens = json_array();
        ch->token_logprobs = json_array();
        ch->top_logprobs = json_array();
        ch->text_offset = json_array();
    }
    job_params jp = {
        .sched = c->m->sched, .tok = c->m->tok, .metrics = s->metrics, .registry = s->jobs,
        .req = {.kind = BS_REQUEST_GENERATE, .n = c->q.gen.n, .max_tokens = c->q.gen.max_tokens,
                .sampling = c->q.gen.sampling, .logprobs = c->q.logprobs >= 0,
                .top_logprobs = c->q.logprobs > 0 ? c->q.logprobs : 0, .adapter = c->m->adapter},
        .prompts = (const int32_t *const *)c->enc.ids, .n_prompts = c->enc.n_ids, .n_requests = c->enc.n,
        .stop = c->q.gen.stop, .n_stop = c->q.gen.n_stop,
    };
    bs_error err = {0};
    if (job_start(&jp, &c->job, &err) != BS_OK) {
        respond_job_error(r, &err, err.status == BS_EINVAL ? "n" : "prompt");
        goto done;
    }
    if (c->q.gen.stream) {
        http_respond_stream(r, 200, "text/event-stream", cmpl_pull, cmpl_stream_done, c);
        return;
    }
    job_sink sink = cmpl_sink(c);
    while (job_pump(c->job, r, &sink) == 1) {
    }
    cmpl_update_log(c);
    cmpl_respond(c);
    cmpl_run_free(c);
    return;
fail:
    respond_error(r, &a);
done:
    cmpl_run_free(c);
}

/* ------------------------------------------------------------ embeddings */

static void ignore_text(void *user, int choice, const char *s, size_t n) {
    (void)user, (void)choice, (void)s, (void)n;
}

void handle_embeddings(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    embedding_request q = {0};
    encoded_prompts enc = {0};
    api_error a = {0};
    gen_job *job = NULL;
    srv_model *m = NULL;
    if (embedding_request_decode(body, &q, &a) != BS_OK) {
        respond_error(r, &a);
        goto done;
    }
    if (!(m = request_model(s, r, q.model))) goto done;
    if (encode_prompts(m, q.inputs, q.n_inputs, "input", &enc, &a) != BS_OK) {
        respond_error(r, &a);
        goto done;
    }
    for (int i = 0; i < enc.n; i++)
        if (enc.n_ids[i] > m->n_ctx) {
            api_fail(&a, BS_ERANGE, "input", "context_length_exceeded",
                     "input[%d] has %d tokens; this model's maximum context length is %d", i, enc.n_ids[i], m->n_ctx);
            respond_error(r, &a);
            goto done;
        }
    job_params jp = {
        .sched = m->sched, .tok = m->tok, .metrics = s->metrics, .registry = s->jobs,
        .req = {.kind = BS_REQUEST_EMBED, .n = 1, .adapter = m->adapter},
        .prompts = (const int32_t *const *)enc.ids, .n_prompts = enc.n_ids, .n_requests = enc.n,
    };
    bs_error err = {0};
    if (job_start(&jp, &job, &err) != BS_OK) {
        respond_job_error(r, &err, "input");
        goto done;
    }
    const job_sink sink = {.text = ignore_text};
    int rc;
    while ((rc = job_pump(job, r, &sink)) == 1) {
    }
    json_t *data = json_array();
    for (int i = 0; rc == 0 && i < enc.n; i++) {
        int n = 0;
        const float *v = job_embedding(job, i, &n);
        json_t *e;
        if (q.base64) {
            e = oai_base64_floats(v, n);
        } else {
            e = json_array();
            for (int k = 0; k < n; k++) json_array_append_new(e, json_real(v[k]));
        }
        json_array_append_new(data, json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", i, "embedding", e));
    }
    int p, g, cached;
    job_usage(job, &p, &g, &cached);
    req_log *l = request_log(r);
    if (l) {
        l->prompt_tokens = p;
        job_timing(job, &l->ttft, &l->queue);
        l->ttft = -1;
    }
    respond_json(r, 200, json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model", m->name, "usage",
                                   "prompt_tokens", p, "total_tokens", p));
done:
    job_free(job);
    encoded_free(&enc);
    embedding_request_free(&q);
    json_decref(body);
}
