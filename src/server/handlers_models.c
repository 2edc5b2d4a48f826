/* server/handlers_models.c — the small endpoints: health, model list and
 * lookup, vLLM's tokenize/detokenize, Prometheus metrics. */
#include <stdlib.h>
#include <string.h>

#include "server/openai_response.h"
#include "server/server_impl.h"

void handle_health(basalt_server *s, http_request *r) {
    (void)s;
    http_respond(r, 200, "application/json", "{\"status\":\"ok\"}", 15);
}

json_t *model_object(const srv_model *m) {
    return json_pack("{s:s,s:s,s:I,s:s,s:s?,s:s?,s:i}", "id", m->name, "object", "model", "created",
                     (json_int_t)m->created, "owned_by", "basalt", "root", m->root ? m->root : m->name, "parent",
                     m->parent, "max_model_len", m->n_ctx);
}

void handle_models(basalt_server *s, http_request *r) {
    json_t *data = json_array();
    for (int i = 0; i < s->n_models; i++) json_array_append_new(data, model_object(&s->models[i]));
    adapters_list(s, r, data);
    respond_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

void handle_model_get(basalt_server *s, http_request *r) {
    const char *id = http_path(r) + strlen("/v1/models/");
    srv_model *m = request_model(s, r, id);
    if (m) respond_json(r, 200, model_object(m));
}

/* The model named in the body, or the only one when the body names none. */
static srv_model *body_model(basalt_server *s, http_request *r, const char *name) {
    if (name || s->n_models != 1) return request_model(s, r, name ? name : "");
    return request_model(s, r, s->models[0].name);
}

bs_status render_chat_prompt(const srv_model *m, const json_t *messages, const json_t *tools, int add_generation_prompt,
                             const json_t *kwargs, char **text, int32_t **ids, size_t *n_ids, api_error *a) {
    size_t len;
    *text = NULL;
    if (chat_template_render(m->tmpl, messages, tools, add_generation_prompt, kwargs, text, &len, &a->e) != BS_OK) {
        snprintf(a->param, sizeof a->param, "messages");
        if (a->e.status != BS_ENOMEM) a->e.status = BS_EINVAL;
        return a->e.status;
    }
    int32_t bos = tok_bos_id(m->tok);
    const char *bos_text = bos >= 0 ? tok_token_text(m->tok, bos) : NULL;
    int has_bos = bos_text && *bos_text && strncmp(*text, bos_text, strlen(bos_text)) == 0;
    int flags = TOK_PARSE_SPECIAL | (has_bos ? 0 : TOK_ADD_SPECIAL);
    if (tok_encode(m->tok, *text, len, flags, ids, n_ids, &a->e) != BS_OK) {
        free(*text);
        *text = NULL;
        return a->e.status;
    }
    return BS_OK;
}

void handle_tokenize(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    tokenize_request q;
    api_error a = {0};
    srv_model *m = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (tokenize_request_decode(body, &q, &a) != BS_OK) {
        respond_error(r, &a);
    } else if ((m = body_model(s, r, q.model))) {
        bs_status st;
        if (q.messages) {
            st = render_chat_prompt(m, q.messages, NULL, q.add_generation_prompt, NULL, &text, &ids, &n, &a);
        } else {
            int flags = q.add_special_tokens ? TOK_ADD_SPECIAL | TOK_PARSE_SPECIAL : 0;
            st = tok_encode(m->tok, q.prompt, strlen(q.prompt), flags, &ids, &n, &a.e);
        }
        if (st != BS_OK) {
            respond_error(r, &a);
        } else {
            json_t *tokens = json_array();
            for (size_t i = 0; i < n; i++) json_array_append_new(tokens, json_integer(ids[i]));
            respond_json(r, 200, json_pack("{s:o,s:i,s:i}", "tokens", tokens, "count", (int)n, "max_model_len", m->n_ctx));
        }
    }
    free(ids);
    free(text);
    tokenize_request_free(&q);
    json_decref(body);
}

void handle_detokenize(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    api_error a = {0};
    const json_t *model = json_object_get(body, "model");
    int32_t *ids = NULL;
    int n = 0;
    srv_model *m = NULL;
    if (model && !json_is_null(model) && !json_is_string(model)) {
        api_fail(&a, BS_EINVAL, "model", NULL, "'model' must be a string");
        respond_error(r, &a);
    } else if (oai_decode_ids(json_object_get(body, "tokens"), "tokens", &ids, &n, &a) != BS_OK) {
        respond_error(r, &a);
    } else if ((m = body_model(s, r, json_string_value(model)))) {
        char *text = NULL;
        size_t len = 0;
        for (int i = 0; i < n; i++)
            if (ids[i] >= tok_vocab_size(m->tok)) {
                api_fail(&a, BS_EINVAL, "tokens", NULL, "tokens[%d] = %d is outside the vocabulary (%d)", i, ids[i],
                         tok_vocab_size(m->tok));
                break;
            }
        if (a.e.status == BS_OK && tok_decode(m->tok, ids, (size_t)n, 0, &text, &len, &a.e) != BS_OK) a.e.status = BS_EINVAL;
        json_t *p = a.e.status == BS_OK ? json_stringn(text, len) : NULL;
        if (a.e.status == BS_OK && !p) p = json_string(""); /* ids ending mid-character */
        if (a.e.status != BS_OK) respond_error(r, &a);
        else respond_json(r, 200, json_pack("{s:o}", "prompt", p));
        free(text);
    }
    free(ids);
    json_decref(body);
}

void handle_metrics(basalt_server *s, http_request *r) {
    srv_buf out = {0};
    metrics_render(s->metrics, &out);
    bs_scheduler_stats *st = calloc((size_t)s->n_models, sizeof *st);
    const char **names = calloc((size_t)s->n_models, sizeof *names);
    for (int i = 0; st && names && i < s->n_models; i++) {
        scheduler_stats(s->models[i].sched, &st[i]);
        names[i] = s->models[i].name;
    }
    if (st && names) metrics_render_scheduler(&out, s->n_models, names, st);
    else out.oom = 1;
    free(st);
    free(names);
    if (out.oom) {
        api_error a = {0};
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        respond_error(r, &a);
    } else {
        http_respond(r, 200, "text/plain; version=0.0.4", out.data, out.len);
    }
    buf_free(&out);
}
