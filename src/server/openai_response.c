#include "server/openai_response.h"

#include <stdlib.h>
#include <string.h>

int oai_http_status(const api_error *a) {
    if (a->http) return a->http;
    switch (a->e.status) {
    case BS_OK: return 200;
    case BS_EINVAL:
    case BS_EFORMAT:
    case BS_EUNSUPPORTED:
    case BS_ERANGE: return 400;
    case BS_ENOTFOUND: return 404;
    case BS_EBUSY: return 429;
    case BS_ENOMEM: return 503;
    case BS_EIO: return 500;
    }
    return 500;
}

static const char *error_type(int http) {
    switch (http) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    default: return http >= 500 ? "server_error" : "invalid_request_error";
    }
}

json_t *oai_error_body(const api_error *a, int http) {
    return json_pack("{s:{s:s,s:s,s:s?,s:s?}}", "error", "message", a->e.msg, "type", error_type(http), "param",
                     a->param[0] ? a->param : NULL, "code", a->code);
}

json_t *oai_usage(int prompt_tokens, int completion_tokens, int cached_tokens) {
    return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", prompt_tokens, "completion_tokens", completion_tokens,
                     "total_tokens", prompt_tokens + completion_tokens, "prompt_tokens_details", "cached_tokens",
                     cached_tokens);
}

/* The token's text and bytes; byte tokens of a partial UTF-8 character have
 * no valid text of their own, so the text is what decoding gives (U+FFFD). */
static json_t *token_fields(const bs_tokenizer *tok, int32_t token, float logprob) {
    char *text = NULL;
    size_t len = 0;
    if (tok_decode(tok, &token, 1, TOK_DECODE_SPECIAL, &text, &len, NULL) != BS_OK) len = 0;
    json_t *bytes = json_array();
    for (size_t i = 0; i < len; i++) json_array_append_new(bytes, json_integer((unsigned char)text[i]));
    json_t *s = json_stringn(text ? text : "", len);
    if (!s) s = json_string("\xef\xbf\xbd"); /* a partial UTF-8 character */
    free(text);
    return json_pack("{s:o,s:f,s:o}", "token", s, "logprob", (double)logprob, "bytes", bytes);
}

json_t *oai_logprob_entry(const bs_tokenizer *tok, int32_t token, float logprob, const bs_token_logprob *top,
                          int n_top) {
    json_t *e = token_fields(tok, token, logprob);
    json_t *alts = json_array();
    for (int i = 0; i < n_top; i++) json_array_append_new(alts, token_fields(tok, top[i].token, top[i].logprob));
    json_object_set_new(e, "top_logprobs", alts);
    return e;
}

json_t *oai_chat_delta(const chat_event *ev) {
    switch (ev->kind) {
    case CHAT_EVENT_CONTENT: return json_pack("{s:s%}", "content", ev->text, ev->len);
    case CHAT_EVENT_REASONING: return json_pack("{s:s%}", "reasoning_content", ev->text, ev->len);
    case CHAT_EVENT_TOOL_BEGIN:
        return json_pack("{s:[{s:i,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls", "index", ev->tool_index, "id", ev->tool_id,
                         "type", "function", "function", "name", ev->tool_name, "arguments", "");
    case CHAT_EVENT_TOOL_ARGS:
        return json_pack("{s:[{s:i,s:{s:s%}}]}", "tool_calls", "index", ev->tool_index, "function", "arguments",
                         ev->text, ev->len);
    }
    return json_object();
}

json_t *oai_chat_chunk(const char *id, long long created, const char *model, int index, json_t *delta,
                       const char *finish_reason, json_t *logprobs) {
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:o,s:s?}]}", "id", id, "object", "chat.completion.chunk",
                     "created", (json_int_t)created, "model", model, "choices", "index", index, "delta", delta,
                     "logprobs", logprobs ? logprobs : json_null(), "finish_reason", finish_reason);
}

void sse_data(srv_buf *out, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!s) {
        out->oom = 1;
    } else {
        buf_puts(out, "data: ");
        buf_puts(out, s);
        buf_puts(out, "\n\n");
    }
    free(s);
    json_decref(j);
}

void sse_event(srv_buf *out, const char *name, json_t *j) {
    buf_printf(out, "event: %s\n", name);
    sse_data(out, j);
}

void sse_done(srv_buf *out) { buf_puts(out, "data: [DONE]\n\n"); }

json_t *oai_base64_floats(const float *v, int n) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = (size_t)n * 4;
    unsigned char *bytes = malloc(nb ? nb : 1);
    char *out = malloc((nb + 2) / 3 * 4 + 1);
    json_t *s = NULL;
    if (bytes && out) {
        for (int i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            for (int k = 0; k < 4; k++) bytes[i * 4 + k] = (unsigned char)(u >> (8 * k));
        }
        size_t w = 0;
        for (size_t i = 0; i < nb; i += 3) {
            uint32_t x = (uint32_t)bytes[i] << 16 | (i + 1 < nb ? (uint32_t)bytes[i + 1] << 8 : 0) |
                         (i + 2 < nb ? bytes[i + 2] : 0);
            out[w++] = alphabet[x >> 18 & 63];
            out[w++] = alphabet[x >> 12 & 63];
            out[w++] = i + 1 < nb ? alphabet[x >> 6 & 63] : '=';
            out[w++] = i + 2 < nb ? alphabet[x & 63] : '=';
        }
        s = json_stringn(out, w);
    }
    free(bytes);
    free(out);
    return s;
}
