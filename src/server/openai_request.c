#include "server/openai_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

bs_status api_fail(api_error *a, bs_status status, const char *param, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->e.msg, sizeof a->e.msg, fmt, ap);
    va_end(ap);
    a->e.status = status;
    snprintf(a->param, sizeof a->param, "%s", param ? param : "");
    a->code = code;
    return status;
}

bs_status oai_parse_body(const char *body, size_t len, json_t **out, api_error *a) {
    json_error_t je;
    *out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!*out)
        return api_fail(a, BS_EINVAL, NULL, NULL, "We could not parse the JSON body of your request: %s (line %d, column %d)",
                        je.text, je.line, je.column);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return api_fail(a, BS_EINVAL, NULL, NULL, "The request body must be a JSON object");
    }
    return BS_OK;
}

/* ------------------------------------------------------------ field readers
 * Each leaves *out alone when the field is absent or null. */

static const json_t *field(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return v && !json_is_null(v) ? v : NULL;
}

static bs_status opt_number(const json_t *o, const char *key, double lo, double hi, float *out, api_error *a) {
    const json_t *v = field(o, key);
    if (!v) return BS_OK;
    if (!json_is_number(v)) return api_fail(a, BS_EINVAL, key, NULL, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return api_fail(a, BS_EINVAL, key, NULL, "'%s' must be between %g and %g, got %g", key, lo, hi, x);
    *out = (float)x;
    return BS_OK;
}

static bs_status opt_int(const json_t *o, const char *key, long long lo, long long hi, long long *out,
                         api_error *a) {
    const json_t *v = field(o, key);
    if (!v) return BS_OK;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        return api_fail(a, BS_EINVAL, key, NULL, "'%s' must be an integer", key);
    }
    if (x < lo || x > hi)
        return api_fail(a, BS_EINVAL, key, NULL, "'%s' must be between %lld and %lld, got %lld", key, lo, hi, x);
    *out = x;
    return BS_OK;
}

static bs_status opt_int32(const json_t *o, const char *key, long long lo, long long hi, int *out, api_error *a) {
    long long x = *out;
    bs_status st = opt_int(o, key, lo, hi, &x, a);
    *out = (int)x;
    return st;
}

static bs_status opt_bool(const json_t *o, const char *key, int *out, api_error *a) {
    const json_t *v = field(o, key);
    if (!v) return BS_OK;
    if (!json_is_boolean(v)) return api_fail(a, BS_EINVAL, key, NULL, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return BS_OK;
}

static bs_status opt_string(const json_t *o, const char *key, const char **out, api_error *a) {
    const json_t *v = field(o, key);
    if (!v) return BS_OK;
    if (!json_is_string(v)) return api_fail(a, BS_EINVAL, key, NULL, "'%s' must be a string", key);
    *out = json_string_value(v);
    return BS_OK;
}

static bs_status opt_object(const json_t *o, const char *key, const json_t **out, api_error *a) {
    const json_t *v = field(o, key);
    if (!v) return BS_OK;
    if (!json_is_object(v)) return api_fail(a, BS_EINVAL, key, NULL, "'%s' must be an object", key);
    *out = v;
    return BS_OK;
}

static bs_status required_model(const json_t *body, const char **out, api_error *a) {
    *out = NULL;
    if (opt_string(body, "model", out, a) != BS_OK) return a->e.status;
    if (!*out) return api_fail(a, BS_EINVAL, "model", NULL, "you must provide a model parameter");
    return BS_OK;
}

/* ------------------------------------------------------------ shared generation fields */

static bs_status decode_stop(const json_t *body, oai_generation *g, api_error *a) {
    const json_t *v = field(body, "stop");
    if (!v) return BS_OK;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return BS_OK;
        g->stop[g->n_stop++] = json_string_value(v);
        return BS_OK;
    }
    if (!json_is_array(v)) return api_fail(a, BS_EINVAL, "stop", NULL, "'stop' must be a string or an array of strings");
    if (json_array_size(v) > OAI_MAX_STOP)
        return api_fail(a, BS_EINVAL, "stop", NULL, "'stop' may hold at most %d strings", OAI_MAX_STOP);
    size_t i;
    const json_t *s;
    json_array_foreach(v, i, s) {
        char param[32];
        snprintf(param, sizeof param, "stop[%zu]", i);
        if (!json_is_string(s)) return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be a string", param);
        if (json_string_length(s) == 0) return api_fail(a, BS_EINVAL, param, NULL, "'%s' must not be empty", param);
        g->stop[g->n_stop++] = json_string_value(s);
    }
    return BS_OK;
}

static bs_status decode_logit_bias(const json_t *body, oai_generation *g, api_error *a) {
    const json_t *v = field(body, "logit_bias");
    if (!v) return BS_OK;
    if (!json_is_object(v)) return api_fail(a, BS_EINVAL, "logit_bias", NULL, "'logit_bias' must be an object");
    size_t n = json_object_size(v);
    if (n == 0) return BS_OK;
    g->logit_bias = calloc(n, sizeof *g->logit_bias);
    if (!g->logit_bias) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    const char *key;
    const json_t *b;
    json_object_foreach((json_t *)v, key, b) {
        char *end;
        long id = strtol(key, &end, 10);
        if (*key == '\0' || *end || id < 0 || id > INT32_MAX)
            return api_fail(a, BS_EINVAL, "logit_bias", NULL, "logit_bias key '%s' is not a token id", key);
        if (!json_is_number(b) || json_number_value(b) < -100 || json_number_value(b) > 100)
            return api_fail(a, BS_EINVAL, "logit_bias", NULL, "logit_bias['%s'] must be a number between -100 and 100", key);
        g->logit_bias[g->sampling.n_logit_bias++] = (bs_logit_bias){(int32_t)id, (float)json_number_value(b)};
    }
    g->sampling.logit_bias = g->logit_bias;
    return BS_OK;
}

static uint64_t random_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = (uint64_t)(uintptr_t)&s ^ 0x9e3779b97f4a7c15ull;
    return s;
}

/* OpenAI's defaults (temperature 1, top_p 1) plus vLLM's extensions. */
static bs_status decode_generation(const json_t *body, oai_generation *g, api_error *a) {
    memset(g, 0, sizeof *g);
    g->n = 1;
    g->max_tokens = -1;
    sampler_params_default(&g->sampling);
    bs_sampler_params *s = &g->sampling;
    long long seed = -1;
    const json_t *opts = NULL;
    int top_k = 0;
    if (required_model(body, &g->model, a) != BS_OK ||
        opt_number(body, "temperature", 0, 2, &s->temperature, a) != BS_OK ||
        opt_number(body, "top_p", 0, 1, &s->top_p, a) != BS_OK ||
        opt_int32(body, "top_k", -1, 1 << 30, &top_k, a) != BS_OK ||
        opt_number(body, "min_p", 0, 1, &s->min_p, a) != BS_OK ||
        opt_number(body, "repetition_penalty", 1e-6, 100, &s->repetition_penalty, a) != BS_OK ||
        opt_number(body, "presence_penalty", -2, 2, &s->presence_penalty, a) != BS_OK ||
        opt_number(body, "frequency_penalty", -2, 2, &s->frequency_penalty, a) != BS_OK ||
        opt_int32(body, "n", 1, 128, &g->n, a) != BS_OK ||
        opt_int(body, "seed", INT64_MIN, INT64_MAX, &seed, a) != BS_OK ||
        opt_bool(body, "stream", &g->stream, a) != BS_OK ||
        opt_object(body, "stream_options", &opts, a) != BS_OK ||
        opt_string(body, "user", &g->user, a) != BS_OK || decode_stop(body, g, a) != BS_OK ||
        decode_logit_bias(body, g, a) != BS_OK)
        return a->e.status;
    s->top_k = top_k < 0 ? 0 : top_k; /* vLLM spells "off" as -1 */
    s->seed = field(body, "seed") ? (uint64_t)seed : random_seed();
    if (opts) {
        const json_t *u = field(opts, "include_usage");
        if (u && !json_is_boolean(u))
            return api_fail(a, BS_EINVAL, "stream_options.include_usage", NULL, "'stream_options.include_usage' must be a boolean");
        g->include_usage = u && json_is_true(u);
    }
    /* max_completion_tokens wins when both are given (LangChain sends it). */
    int mt = -1, mct = -1;
    if (opt_int32(body, "max_tokens", 1, INT32_MAX, &mt, a) != BS_OK ||
        opt_int32(body, "max_completion_tokens", 1, INT32_MAX, &mct, a) != BS_OK)
        return a->e.status;
    g->max_tokens = mct > 0 ? mct : mt;
    return BS_OK;
}

/* ------------------------------------------------------------ messages */

static bs_status join_text_parts(const json_t *parts, const char *param, json_t **out, api_error *a) {
    size_t total = 0, i;
    const json_t *p;
    json_array_foreach(parts, i, p) {
        char pp[160];
        snprintf(pp, sizeof pp, "%s[%zu]", param, i);
        const json_t *type = json_object_get(p, "type");
        if (!json_is_object(p) || !json_is_string(type))
            return api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be a content part object with a 'type'", pp);
        const char *t = json_string_value(type);
        const char *key = strcmp(t, "text") == 0 || strcmp(t, "input_text") == 0 || strcmp(t, "output_text") == 0
                              ? "text"
                              : strcmp(t, "refusal") == 0 ? "refusal" : NULL;
        if (!key)
            return api_fail(a, BS_EUNSUPPORTED, pp, NULL, "content part type '%s' is not supported (text only)", t);
        const json_t *text = json_object_get(p, key);
        if (!json_is_string(text)) return api_fail(a, BS_EINVAL, pp, NULL, "'%s.%s' must be a string", pp, key);
        total += json_string_length(text) + 1;
    }
    char *joined = malloc(total + 1), *w = joined;
    if (!joined) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    json_array_foreach(parts, i, p) {
        const json_t *text = json_object_get(p, "text");
        if (!text) text = json_object_get(p, "refusal");
        if (i) *w++ = '\n';
        memcpy(w, json_string_value(text), json_string_length(text));
        w += json_string_length(text);
    }
    *out = json_stringn(joined, (size_t)(w - joined));
    free(joined);
    return *out ? BS_OK : api_fail(a, BS_EINVAL, param, NULL, "'%s' is not valid UTF-8", param);
}

static bs_status normalize_tool_calls(json_t *m, const char *param, api_error *a) {
    json_t *calls = json_object_get(m, "tool_calls");
    if (!calls || json_is_null(calls)) {
        json_object_del(m, "tool_calls");
        return BS_OK;
    }
    if (!json_is_array(calls)) return api_fail(a, BS_EINVAL, param, NULL, "'%s.tool_calls' must be an array", param);
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        char pp[160];
        snprintf(pp, sizeof pp, "%s.tool_calls[%zu].function", param, i);
        json_t *fn = json_is_object(c) ? json_object_get(c, "function") : NULL;
        if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
            return api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be an object with a string 'name'", pp);
        json_t *args = json_object_get(fn, "arguments");
        if (json_is_string(args)) {
            /* Templates render arguments with tojson; a decoded object keeps
             * them from being quoted twice. */
            json_t *obj = json_loadb(json_string_value(args), json_string_length(args), 0, NULL);
            if (json_is_object(obj)) json_object_set_new(fn, "arguments", obj);
            else json_decref(obj);
        }
    }
    return BS_OK;
}

bs_status oai_normalize_messages(const json_t *messages, json_t **out, api_error *a) {
    *out = NULL;
    if (!messages || json_is_null(messages)) return api_fail(a, BS_EINVAL, "messages", NULL, "'messages' is a required property");
    if (!json_is_array(messages)) return api_fail(a, BS_EINVAL, "messages", NULL, "'messages' must be an array");
    if (json_array_size(messages) == 0)
        return api_fail(a, BS_EINVAL, "messages", NULL, "'messages' must contain at least one message");
    json_t *norm = json_deep_copy(messages);
    if (!norm) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function"};
    size_t i;
    json_t *m;
    json_array_foreach(norm, i, m) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) {
            api_fail(a, BS_EINVAL, param, NULL, "'%s' must be an object", param);
            goto fail;
        }
        const json_t *role = json_object_get(m, "role");
        int known = 0;
        for (size_t k = 0; json_is_string(role) && k < sizeof roles / sizeof roles[0]; k++)
            known |= strcmp(json_string_value(role), roles[k]) == 0;
        if (!known) {
            char pp[80];
            snprintf(pp, sizeof pp, "%s.role", param);
            api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be one of system, developer, user, assistant, tool", pp);
            goto fail;
        }
        char pc[80];
        snprintf(pc, sizeof pc, "%s.content", param);
        json_t *content = json_object_get(m, "content");
        if (!content || json_is_null(content)) {
            int is_assistant = strcmp(json_string_value(role), "assistant") == 0;
            if (!is_assistant && !json_object_get(m, "content")) {
                api_fail(a, BS_EINVAL, pc, NULL, "'%s' is a required property", pc);
                goto fail;
            }
            json_object_set_new(m, "content", json_string(""));
        } else if (json_is_array(content)) {
            json_t *joined;
            if (join_text_parts(content, pc, &joined, a) != BS_OK) goto fail;
            json_object_set_new(m, "content", joined);
        } else if (!json_is_string(content)) {
            api_fail(a, BS_EINVAL, pc, NULL, "'%s' must be a string or an array of content parts", pc);
            goto fail;
        }
        const json_t *name = json_object_get(m, "name");
        if (name && !json_is_null(name) && !json_is_string(name)) {
            char pp[80];
            snprintf(pp, sizeof pp, "%s.name", param);
            api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be a string", pp);
            goto fail;
        }
        if (normalize_tool_calls(m, param, a) != BS_OK) goto fail;
    }
    *out = norm;
    return BS_OK;
fail:
    json_decref(norm);
    return a->e.status;
}

/* ------------------------------------------------------------ chat */

static bs_status decode_tools(const json_t *body, chat_request *r, api_error *a) {
    const json_t *tools = field(body, "tools");
    if (!tools) return BS_OK;
    if (!json_is_array(tools)) return api_fail(a, BS_EINVAL, "tools", NULL, "'tools' must be an array");
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        char param[48];
        snprintf(param, sizeof param, "tools[%zu].function", i);
        const json_t *fn = json_is_object(t) ? json_object_get(t, "function") : NULL;
        const json_t *type = json_is_object(t) ? json_object_get(t, "type") : NULL;
        if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0) {
            snprintf(param, sizeof param, "tools[%zu].type", i);
            return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be \"function\"", param);
        }
        if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
            return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be an object with a string 'name'", param);
        const json_t *params = json_object_get(fn, "parameters");
        if (params && !json_is_null(params) && !json_is_object(params)) {
            snprintf(param, sizeof param, "tools[%zu].function.parameters", i);
            return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be a JSON Schema object", param);
        }
        r->any_strict_tool |= json_is_true(json_object_get(fn, "strict"));
    }
    if (json_array_size(tools)) r->tools = tools;
    return BS_OK;
}

static const json_t *find_tool(const json_t *tools, const char *name) {
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        if (strcmp(json_string_value(json_object_get(fn, "name")), name) == 0) return fn;
    }
    return NULL;
}

static bs_status decode_tool_choice(const json_t *body, chat_request *r, api_error *a) {
    const json_t *v = field(body, "tool_choice");
    r->tool_choice = r->tools ? TOOL_CHOICE_AUTO : TOOL_CHOICE_NONE;
    if (!v) return BS_OK;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "none") == 0) r->tool_choice = TOOL_CHOICE_NONE;
        else if (strcmp(s, "auto") == 0) r->tool_choice = r->tools ? TOOL_CHOICE_AUTO : TOOL_CHOICE_NONE;
        else if (strcmp(s, "required") == 0) r->tool_choice = TOOL_CHOICE_REQUIRED;
        else return api_fail(a, BS_EINVAL, "tool_choice", NULL, "'tool_choice' must be none, auto, required or a named function, got '%s'", s);
    } else if (json_is_object(v)) {
        const json_t *fn = json_object_get(v, "function");
        const json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
        if (!json_is_string(name))
            return api_fail(a, BS_EINVAL, "tool_choice", NULL, "'tool_choice' must name a function: {\"type\":\"function\",\"function\":{\"name\":...}}");
        r->tool_choice = TOOL_CHOICE_NAMED;
        r->tool_name = json_string_value(name);
    } else {
        return api_fail(a, BS_EINVAL, "tool_choice", NULL, "'tool_choice' must be a string or an object");
    }
    if (r->tool_choice == TOOL_CHOICE_REQUIRED || r->tool_choice == TOOL_CHOICE_NAMED) {
        if (!r->tools) return api_fail(a, BS_EINVAL, "tool_choice", NULL, "'tool_choice' requires 'tools'");
    }
    /* "required" with one tool is that tool named: one call is what the
     * contract asks for, and the grammar skips the [{"name":..}] wrapper. */
    if (r->tool_choice == TOOL_CHOICE_REQUIRED && json_array_size(r->tools) == 1) {
        r->tool_choice = TOOL_CHOICE_NAMED;
        r->tool_name = json_string_value(json_object_get(json_object_get(json_array_get(r->tools, 0), "function"), "name"));
    }
    if (r->tool_choice == TOOL_CHOICE_NAMED) {
        const json_t *fn = find_tool(r->tools, r->tool_name);
        if (!fn)
            return api_fail(a, BS_EINVAL, "tool_choice", NULL, "tool_choice names '%s', which is not in 'tools'", r->tool_name);
        r->tool_parameters = field(fn, "parameters");
    }
    return BS_OK;
}

static bs_status decode_response_format(const json_t *body, chat_request *r, api_error *a) {
    const json_t *v = NULL;
    if (opt_object(body, "response_format", &v, a) != BS_OK) return a->e.status;
    r->response_kind = RESPONSE_TEXT;
    if (!v) return BS_OK;
    const json_t *type = json_object_get(v, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "";
    if (strcmp(t, "text") == 0) return BS_OK;
    if (strcmp(t, "json_object") == 0) {
        r->response_kind = RESPONSE_JSON_OBJECT;
        return BS_OK;
    }
    if (strcmp(t, "json_schema") != 0)
        return api_fail(a, BS_EINVAL, "response_format.type", NULL, "'response_format.type' must be text, json_object or json_schema");
    const json_t *js = json_object_get(v, "json_schema");
    if (!json_is_object(js))
        return api_fail(a, BS_EINVAL, "response_format.json_schema", NULL, "'response_format.json_schema' must be an object");
    const json_t *schema = field(js, "schema");
    if (schema && !json_is_object(schema) && !json_is_boolean(schema))
        return api_fail(a, BS_EINVAL, "response_format.json_schema.schema", NULL, "'response_format.json_schema.schema' must be a JSON Schema object");
    r->response_kind = RESPONSE_JSON_SCHEMA;
    r->response_schema = schema;
    return BS_OK;
}

bs_status chat_request_decode(const json_t *body, chat_request *r, api_error *a) {
    memset(r, 0, sizeof *r);
    r->parallel_tool_calls = 1;
    if (decode_generation(body, &r->gen, a) != BS_OK) return a->e.status;
    if (oai_normalize_messages(field(body, "messages"), &r->messages, a) != BS_OK) return a->e.status;
    if (opt_bool(body, "logprobs", &r->logprobs, a) != BS_OK ||
        opt_int32(body, "top_logprobs", 0, 20, &r->top_logprobs, a) != BS_OK ||
        opt_bool(body, "parallel_tool_calls", &r->parallel_tool_calls, a) != BS_OK ||
        opt_object(body, "chat_template_kwargs", &r->template_kwargs, a) != BS_OK ||
        decode_tools(body, r, a) != BS_OK || decode_tool_choice(body, r, a) != BS_OK ||
        decode_response_format(body, r, a) != BS_OK)
        return a->e.status;
    if (r->top_logprobs && !r->logprobs)
        return api_fail(a, BS_EINVAL, "top_logprobs", NULL, "'top_logprobs' requires 'logprobs' to be true");
    return BS_OK;
}

void chat_request_free(chat_request *r) {
    json_decref(r->messages);
    json_decref(r->converted);
    free(r->gen.logit_bias);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ prompts */

bs_status oai_decode_ids(const json_t *v, const char *param, int32_t **ids, int *n, api_error *a) {
    *ids = NULL;
    *n = 0;
    if (!json_is_array(v)) return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be an array of token ids", param);
    size_t count = json_array_size(v);
    *ids = malloc((count ? count : 1) * sizeof **ids);
    if (!*ids) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT32_MAX) {
            free(*ids);
            *ids = NULL;
            return api_fail(a, BS_EINVAL, param, NULL, "'%s[%zu]' is not a token id", param, i);
        }
        (*ids)[i] = (int32_t)json_integer_value(x);
    }
    *n = (int)count;
    return BS_OK;
}

/* string | string[] | int[] | int[][] */
static bs_status decode_prompts(const json_t *v, const char *param, oai_prompt **out, int *n_out, api_error *a) {
    *out = NULL;
    *n_out = 0;
    if (!v) return api_fail(a, BS_EINVAL, param, NULL, "'%s' is a required property", param);
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    int flat_ids = json_is_array(v) && n > 0 && json_is_integer(json_array_get(v, 0));
    if (flat_ids) n = 1;
    if (n == 0)
        return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be a non-empty string, array of strings, or token ids", param);
    oai_prompt *p = calloc(n, sizeof *p);
    if (!p) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    *out = p;
    *n_out = (int)n;
    if (json_is_string(v)) {
        p[0].text = json_string_value(v);
        return BS_OK;
    }
    if (flat_ids) return oai_decode_ids(v, param, &p[0].ids, &p[0].n_ids, a);
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(v, i);
        char pp[48];
        snprintf(pp, sizeof pp, "%s[%zu]", param, i);
        if (json_is_string(x)) {
            p[i].text = json_string_value(x);
        } else if (json_is_array(x)) {
            if (json_array_size(x) == 0) return api_fail(a, BS_EINVAL, pp, NULL, "'%s' must not be empty", pp);
            if (oai_decode_ids(x, pp, &p[i].ids, &p[i].n_ids, a) != BS_OK) return a->e.status;
        } else {
            return api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be a string or an array of token ids", pp);
        }
    }
    return BS_OK;
}

static void free_prompts(oai_prompt *p, int n) {
    for (int i = 0; p && i < n; i++) free(p[i].ids);
    free(p);
}

bs_status completion_request_decode(const json_t *body, completion_request *r, api_error *a) {
    memset(r, 0, sizeof *r);
    r->logprobs = -1;
    if (decode_generation(body, &r->gen, a) != BS_OK) return a->e.status;
    if (r->gen.max_tokens < 0) r->gen.max_tokens = 16; /* the legacy API's small default */
    const char *suffix = NULL;
    if (decode_prompts(field(body, "prompt"), "prompt", &r->prompts, &r->n_prompts, a) != BS_OK ||
        opt_bool(body, "echo", &r->echo, a) != BS_OK || opt_int32(body, "logprobs", 0, 20, &r->logprobs, a) != BS_OK ||
        opt_string(body, "suffix", &suffix, a) != BS_OK)
        return a->e.status;
    if (suffix && *suffix)
        return api_fail(a, BS_EUNSUPPORTED, "suffix", NULL, "'suffix' (insertion) is not supported");
    return BS_OK;
}

void completion_request_free(completion_request *r) {
    free_prompts(r->prompts, r->n_prompts);
    free(r->gen.logit_bias);
    memset(r, 0, sizeof *r);
}

bs_status embedding_request_decode(const json_t *body, embedding_request *r, api_error *a) {
    memset(r, 0, sizeof *r);
    const char *fmt = NULL;
    long long dims = 0;
    if (required_model(body, &r->model, a) != BS_OK ||
        decode_prompts(field(body, "input"), "input", &r->inputs, &r->n_inputs, a) != BS_OK ||
        opt_string(body, "encoding_format", &fmt, a) != BS_OK ||
        opt_int(body, "dimensions", 1, INT32_MAX, &dims, a) != BS_OK)
        return a->e.status;
    for (int i = 0; i < r->n_inputs; i++)
        if (r->inputs[i].text && !*r->inputs[i].text)
            return api_fail(a, BS_EINVAL, "input", NULL, "'input' must not contain empty strings");
    if (fmt && strcmp(fmt, "float") != 0 && strcmp(fmt, "base64") != 0)
        return api_fail(a, BS_EINVAL, "encoding_format", NULL, "'encoding_format' must be float or base64, got '%s'", fmt);
    r->base64 = fmt && strcmp(fmt, "base64") == 0;
    if (dims)
        return api_fail(a, BS_EUNSUPPORTED, "dimensions", NULL, "'dimensions' is not supported: this model's embeddings have a fixed size");
    return BS_OK;
}

void embedding_request_free(embedding_request *r) {
    free_prompts(r->inputs, r->n_inputs);
    memset(r, 0, sizeof *r);
}

bs_status tokenize_request_decode(const json_t *body, tokenize_request *r, api_error *a) {
    memset(r, 0, sizeof *r);
    r->add_special_tokens = -1;
    r->add_generation_prompt = 1;
    if (opt_string(body, "model", &r->model, a) != BS_OK || opt_string(body, "prompt", &r->prompt, a) != BS_OK ||
        opt_bool(body, "add_special_tokens", &r->add_special_tokens, a) != BS_OK ||
        opt_bool(body, "add_generation_prompt", &r->add_generation_prompt, a) != BS_OK)
        return a->e.status;
    if (r->prompt) {
        if (r->add_special_tokens < 0) r->add_special_tokens = 1;
        return BS_OK;
    }
    if (!field(body, "messages"))
        return api_fail(a, BS_EINVAL, "prompt", NULL, "either 'prompt' or 'messages' is required");
    /* The template writes the special tokens of a chat itself. */
    if (r->add_special_tokens < 0) r->add_special_tokens = 0;
    return oai_normalize_messages(field(body, "messages"), &r->messages, a);
}

void tokenize_request_free(tokenize_request *r) {
    json_decref(r->messages);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ responses */

/* The Responses handler resolves previous_response_id and item_reference
 * inputs from its store before decoding; what reaches here unresolved has
 * no store behind it. */
static bs_status unresolved(const char *param, api_error *a) {
    return api_fail(a, BS_EUNSUPPORTED, param, NULL,
                    "'%s' refers to a stored response or item, which this request cannot read: send the whole "
                    "conversation in 'input'",
                    param);
}

static const char *item_string(const json_t *item, const char *key, const char *param, api_error *a) {
    const json_t *v = json_object_get(item, key);
    if (json_is_string(v)) return json_string_value(v);
    char pp[160];
    snprintf(pp, sizeof pp, "%s.%s", param, key);
    api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be a string", pp);
    return NULL;
}

/* A string, or text parts joined as chat message content is. */
static bs_status item_text(const json_t *v, const char *param, json_t **out, api_error *a) {
    if (json_is_string(v)) {
        *out = json_incref((json_t *)v);
        return BS_OK;
    }
    if (json_is_array(v)) return join_text_parts(v, param, out, a);
    return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be a string or an array of content parts", param);
}

/* The tool_calls of the assistant message a function_call item belongs to:
 * the message just before it when that is the assistant's, else a new one. */
static json_t *calls_of_last_assistant(json_t *msgs) {
    size_t n = json_array_size(msgs);
    json_t *last = n ? json_array_get(msgs, n - 1) : NULL;
    if (!last || strcmp(json_string_value(json_object_get(last, "role")), "assistant") != 0) {
        last = json_pack("{s:s,s:s}", "role", "assistant", "content", "");
        json_array_append_new(msgs, last);
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (!calls) json_object_set_new(last, "tool_calls", calls = json_array());
    return calls;
}

/* The name of the earlier call call_id, for templates that label tool results. */
static const char *call_name(const json_t *msgs, const char *call_id) {
    size_t i, k;
    const json_t *m, *call;
    json_array_foreach(msgs, i, m) {
        json_array_foreach(json_object_get(m, "tool_calls"), k, call) {
            if (strcmp(json_string_value(json_object_get(call, "id")), call_id) == 0)
                return json_string_value(json_object_get(json_object_get(call, "function"), "name"));
        }
    }
    return NULL;
}

static bs_status input_item(const json_t *item, const char *param, json_t *msgs, api_error *a) {
    char pp[160];
    if (!json_is_object(item)) return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be an object", param);
    const json_t *tv = json_object_get(item, "type");
    if (tv && !json_is_string(tv)) {
        snprintf(pp, sizeof pp, "%s.type", param);
        return api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be a string", pp);
    }
    const char *type = tv ? json_string_value(tv) : "message";
    if (strcmp(type, "message") == 0) {
        const char *role = item_string(item, "role", param, a);
        if (!role) return a->e.status;
        if (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") && strcmp(role, "developer")) {
            snprintf(pp, sizeof pp, "%s.role", param);
            return api_fail(a, BS_EINVAL, pp, NULL, "'%s' must be one of user, assistant, system, developer", pp);
        }
        json_t *content;
        snprintf(pp, sizeof pp, "%s.content", param);
        if (item_text(json_object_get(item, "content"), pp, &content, a) != BS_OK) return a->e.status;
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", role, "content", content));
        return BS_OK;
    }
    if (strcmp(type, "function_call") == 0) {
        const char *id = item_string(item, "call_id", param, a), *name = id ? item_string(item, "name", param, a) : NULL;
        const char *args = name ? item_string(item, "arguments", param, a) : NULL;
        if (!args) return a->e.status;
        json_array_append_new(calls_of_last_assistant(msgs), json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", id, "type", "function",
                                                                         "function", "name", name, "arguments", args));
        return BS_OK;
    }
    if (strcmp(type, "function_call_output") == 0) {
        const char *id = item_string(item, "call_id", param, a);
        json_t *output;
        snprintf(pp, sizeof pp, "%s.output", param);
        if (!id || item_text(json_object_get(item, "output"), pp, &output, a) != BS_OK) return a->e.status;
        json_t *m = json_pack("{s:s,s:s,s:o}", "role", "tool", "tool_call_id", id, "content", output);
        const char *name = call_name(msgs, id);
        if (name) json_object_set_new(m, "name", json_string(name));
        json_array_append_new(msgs, m);
        return BS_OK;
    }
    /* Earlier turns' reasoning: chat templates leave it out of the prompt too. */
    if (strcmp(type, "reasoning") == 0) return BS_OK;
    if (strcmp(type, "item_reference") == 0) return unresolved(param, a);
    snprintf(pp, sizeof pp, "%s.type", param);
    return api_fail(a, BS_EUNSUPPORTED, pp, NULL,
                    "input item type '%s' is not supported (message, function_call, function_call_output, reasoning)", type);
}

static bs_status responses_messages(const json_t *body, json_t *msgs, api_error *a) {
    const json_t *instructions = field(body, "instructions"), *input = field(body, "input");
    if (instructions && !json_is_string(instructions))
        return api_fail(a, BS_EINVAL, "instructions", NULL, "'instructions' must be a string");
    if (instructions) json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "system", "content", instructions));
    if (!input) return api_fail(a, BS_EINVAL, "input", NULL, "'input' is a required property");
    if (json_is_string(input)) {
        json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "user", "content", input));
        return BS_OK;
    }
    if (!json_is_array(input) || json_array_size(input) == 0)
        return api_fail(a, BS_EINVAL, "input", NULL, "'input' must be a string or a non-empty array of input items");
    size_t i;
    const json_t *item;
    json_array_foreach(input, i, item) {
        char param[32];
        snprintf(param, sizeof param, "input[%zu]", i);
        if (input_item(item, param, msgs, a) != BS_OK) return a->e.status;
    }
    return BS_OK;
}

/* Flat function tools {type,name,description,parameters,strict} -> chat's
 * {type,function:{...}}. */
static bs_status responses_tools(const json_t *body, json_t *chat, api_error *a) {
    const json_t *tools = field(body, "tools");
    if (!tools) return BS_OK;
    if (!json_is_array(tools)) return api_fail(a, BS_EINVAL, "tools", NULL, "'tools' must be an array");
    json_t *out = json_array();
    json_object_set_new(chat, "tools", out);
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        char param[48];
        snprintf(param, sizeof param, "tools[%zu]", i);
        const json_t *type = json_object_get(t, "type");
        if (!json_is_object(t) || !json_is_string(type))
            return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be a tool object with a 'type'", param);
        if (strcmp(json_string_value(type), "function") != 0) {
            snprintf(param, sizeof param, "tools[%zu].type", i);
            return api_fail(a, BS_EUNSUPPORTED, param, NULL,
                            "tool type '%s' is not supported: basalt runs function tools only (no hosted tools)",
                            json_string_value(type));
        }
        const char *name = item_string(t, "name", param, a);
        if (!name) return a->e.status;
        const json_t *params = field(t, "parameters");
        if (params && !json_is_object(params)) {
            snprintf(param, sizeof param, "tools[%zu].parameters", i);
            return api_fail(a, BS_EINVAL, param, NULL, "'%s' must be a JSON Schema object", param);
        }
        json_t *fn = json_pack("{s:s}", "name", name);
        static const char *const keys[] = {"description", "parameters", "strict"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (field(t, keys[k])) json_object_set(fn, keys[k], json_object_get(t, keys[k]));
        json_array_append_new(out, json_pack("{s:s,s:o}", "type", "function", "function", fn));
    }
    return BS_OK;
}

static bs_status responses_tool_choice(const json_t *body, json_t *chat, api_error *a) {
    const json_t *v = field(body, "tool_choice");
    if (!v || json_is_string(v)) {
        if (v) json_object_set(chat, "tool_choice", (json_t *)v);
        return BS_OK;
    }
    const json_t *type = json_object_get(v, "type"), *name = json_object_get(v, "name");
    if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 || !json_is_string(name))
        return api_fail(a, BS_EUNSUPPORTED, "tool_choice", NULL,
                        "'tool_choice' must be none, auto, required or {\"type\":\"function\",\"name\":...}");
    json_object_set_new(chat, "tool_choice", json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", name));
    return BS_OK;
}

/* text.format -> response_format. */
static bs_status responses_format(const json_t *body, json_t *chat, api_error *a) {
    const json_t *text = NULL, *format = NULL;
    if (opt_object(body, "text", &text, a) != BS_OK) return a->e.status;
    if (!text || !(format = field(text, "format"))) return BS_OK;
    const json_t *type = json_object_get(format, "type");
    const char *t = json_is_object(format) && json_is_string(type) ? json_string_value(type) : "";
    if (strcmp(t, "text") == 0) return BS_OK;
    if (strcmp(t, "json_object") == 0) {
        json_object_set_new(chat, "response_format", json_pack("{s:s}", "type", "json_object"));
        return BS_OK;
    }
    if (strcmp(t, "json_schema") != 0)
        return api_fail(a, BS_EINVAL, "text.format.type", NULL, "'text.format.type' must be text, json_object or json_schema");
    const json_t *schema = field(format, "schema");
    if (!json_is_object(schema))
        return api_fail(a, BS_EINVAL, "text.format.schema", NULL, "'text.format.schema' must be a JSON Schema object");
    json_t *js = json_pack("{s:O}", "schema", schema);
    if (json_is_string(json_object_get(format, "name"))) json_object_set(js, "name", json_object_get(format, "name"));
    json_object_set_new(chat, "response_format", json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js));
    return BS_OK;
}

bs_status responses_request_decode(const json_t *body, chat_request *r, api_error *a) {
    memset(r, 0, sizeof *r);
    if (field(body, "previous_response_id")) return unresolved("previous_response_id", a);
    if (field(body, "conversation"))
        return api_fail(a, BS_EUNSUPPORTED, "conversation", NULL,
                        "'conversation' is not supported (basalt has no Conversations API): chain responses with "
                        "previous_response_id, or send the whole conversation in 'input'");
    int store = 0, background = 0, max_out = -1;
    const json_t *metadata = NULL;
    if (opt_bool(body, "store", &store, a) != BS_OK || opt_object(body, "metadata", &metadata, a) != BS_OK ||
        opt_int32(body, "max_output_tokens", 1, INT32_MAX, &max_out, a) != BS_OK ||
        opt_bool(body, "background", &background, a) != BS_OK)
        return a->e.status;
    if (background)
        return api_fail(a, BS_EUNSUPPORTED, "background", NULL, "'background' responses are not supported: basalt answers while the client waits");
    json_t *chat = json_pack("{s:[]}", "messages");
    if (!chat) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    /* Sampling fields keep their names; the extensions (seed, top_k...) are
     * basalt's, as in chat completions. */
    static const char *const same[] = {"model", "temperature", "top_p", "top_k", "min_p", "seed", "stream", "user",
                                       "parallel_tool_calls", "logit_bias", "presence_penalty", "frequency_penalty",
                                       "repetition_penalty", "stop", "chat_template_kwargs"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (json_object_get(body, same[i])) json_object_set(chat, same[i], json_object_get(body, same[i]));
    if (max_out > 0) json_object_set_new(chat, "max_completion_tokens", json_integer(max_out));
    bs_status st = responses_messages(body, json_object_get(chat, "messages"), a);
    if (st == BS_OK) st = responses_tools(body, chat, a);
    if (st == BS_OK) st = responses_tool_choice(body, chat, a);
    if (st == BS_OK) st = responses_format(body, chat, a);
    if (st == BS_OK) st = chat_request_decode(chat, r, a);
    r->converted = chat;
    return st;
}
