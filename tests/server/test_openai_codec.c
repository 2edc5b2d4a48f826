/* Unit tests of the OpenAI codecs: request decoding (types, defaults, the
 * param named in errors, message normalization) and the response encoders
 * (errors, chunk and tool-call deltas, SSE framing, base64 embeddings). */
#include <jansson.h>

#include "server/openai_request.h"
#include "server/openai_response.h"
#include "../support/test.h"

static json_t *parse(const char *s) {
    json_t *j = json_loads(s, 0, NULL);
    if (!j) fprintf(stderr, "  bad test JSON: %s\n", s);
    return j;
}

/* Decode a chat body expected to fail; returns the param named. */
static const char *chat_error_param(const char *body, api_error *a) {
    json_t *j = parse(body);
    chat_request q;
    bs_status st = chat_request_decode(j, &q, a);
    CHECK(st != BS_OK);
    chat_request_free(&q);
    json_decref(j);
    return a->param;
}

static void test_body_must_be_object(void) {
    api_error a = {0};
    json_t *j = NULL;
    CHECK(oai_parse_body("{\"a\":", 5, &j, &a) == BS_EINVAL);
    CHECK(strstr(a.e.msg, "parse") != NULL);
    CHECK(oai_parse_body("[1]", 3, &j, &a) == BS_EINVAL);
    CHECK(oai_parse_body("{\"a\":1,\"a\":2}", 13, &j, &a) == BS_EINVAL); /* duplicate keys */
    CHECK_OK(oai_parse_body("{\"a\":1}", 7, &j, &a), &a.e);
    json_decref(j);
}

static void test_chat_defaults(void) {
    json_t *j = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"unknown\":{\"x\":1},"
                      "\"temperature\":null}");
    chat_request q;
    api_error a = {0};
    CHECK_OK(chat_request_decode(j, &q, &a), &a.e);
    CHECK_STR(q.gen.model, "m");
    CHECK_INT(q.gen.n, 1);
    CHECK_INT(q.gen.max_tokens, -1);
    CHECK_NEAR(q.gen.sampling.temperature, 1.0, 0);
    CHECK_NEAR(q.gen.sampling.top_p, 1.0, 0);
    CHECK_INT(q.gen.stream, 0);
    CHECK_INT(q.tool_choice, TOOL_CHOICE_NONE);
    CHECK_INT(q.response_kind, RESPONSE_TEXT);
    CHECK_INT(q.parallel_tool_calls, 1);
    chat_request_free(&q);
    json_decref(j);
}

static void test_chat_fields(void) {
    json_t *j = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5,"
                      "\"top_p\":0.9,\"top_k\":-1,\"min_p\":0.1,\"n\":3,\"stop\":[\"a\",\"bc\"],\"max_tokens\":7,"
                      "\"max_completion_tokens\":9,\"seed\":42,\"logprobs\":true,\"top_logprobs\":2,"
                      "\"logit_bias\":{\"5\":-100,\"7\":3.5},\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                      "\"repetition_penalty\":1.1,\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,"
                      "\"chat_template_kwargs\":{\"enable_thinking\":false}}");
    chat_request q;
    api_error a = {0};
    CHECK_OK(chat_request_decode(j, &q, &a), &a.e);
    CHECK_NEAR(q.gen.sampling.temperature, 0.5, 1e-6);
    CHECK_NEAR(q.gen.sampling.top_p, 0.9, 1e-6);
    CHECK_INT(q.gen.sampling.top_k, 0);
    CHECK_NEAR(q.gen.sampling.min_p, 0.1, 1e-6);
    CHECK_INT(q.gen.n, 3);
    CHECK_INT(q.gen.n_stop, 2);
    CHECK_STR(q.gen.stop[1], "bc");
    CHECK_INT(q.gen.max_tokens, 9); /* max_completion_tokens wins */
    CHECK_INT(q.gen.sampling.seed, 42);
    CHECK_INT(q.logprobs, 1);
    CHECK_INT(q.top_logprobs, 2);
    CHECK_INT(q.gen.sampling.n_logit_bias, 2);
    CHECK_INT(q.gen.sampling.logit_bias[0].token, 5);
    CHECK_NEAR(q.gen.sampling.logit_bias[1].bias, 3.5, 1e-6);
    CHECK_INT(q.gen.stream, 1);
    CHECK_INT(q.gen.include_usage, 1);
    CHECK_NEAR(q.gen.sampling.repetition_penalty, 1.1, 1e-6);
    CHECK_NEAR(q.gen.sampling.frequency_penalty, -0.5, 1e-6);
    CHECK(json_is_object(q.template_kwargs));
    chat_request_free(&q);
    json_decref(j);
    j = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":\"END\"}");
    CHECK_OK(chat_request_decode(j, &q, &a), &a.e);
    CHECK_INT(q.gen.n_stop, 1);
    CHECK_STR(q.gen.stop[0], "END");
    chat_request_free(&q);
    json_decref(j);
}

static void test_chat_errors_name_param(void) {
    api_error a = {0};
    CHECK_STR(chat_error_param("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &a), "model");
    CHECK_STR(chat_error_param("{\"model\":\"m\"}", &a), "messages");
    CHECK_STR(chat_error_param("{\"model\":\"m\",\"messages\":[]}", &a), "messages");
    const char *base = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],";
    char body[512];
    static const struct {
        const char *field, *param;
    } cases[] = {
        {"\"temperature\":\"hot\"", "temperature"},
        {"\"temperature\":3", "temperature"},
        {"\"top_p\":true", "top_p"},
        {"\"n\":1.5", "n"},
        {"\"n\":0", "n"},
        {"\"max_tokens\":\"10\"", "max_tokens"},
        {"\"stop\":5", "stop"},
        {"\"stop\":[\"a\",7]", "stop[1]"},
        {"\"logprobs\":1", "logprobs"},
        {"\"top_logprobs\":21", "top_logprobs"},
        {"\"logit_bias\":{\"x\":1}", "logit_bias"},
        {"\"logit_bias\":{\"3\":500}", "logit_bias"},
        {"\"stream\":\"yes\"", "stream"},
        {"\"stream_options\":{\"include_usage\":1}", "stream_options.include_usage"},
        {"\"seed\":\"s\"", "seed"},
        {"\"tools\":{}", "tools"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{}}]", "tools[0].function"},
        {"\"tool_choice\":\"sometimes\"", "tool_choice"},
        {"\"tool_choice\":\"required\"", "tool_choice"},
        {"\"response_format\":{\"type\":\"xml\"}", "response_format.type"},
        {"\"chat_template_kwargs\":[]", "chat_template_kwargs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(body, sizeof body, "%s%s}", base, cases[i].field);
        const char *p = chat_error_param(body, &a);
        if (strcmp(p, cases[i].param) != 0) {
            fprintf(stderr, "  %s: param \"%s\", expected \"%s\" (%s)\n", cases[i].field, p, cases[i].param, a.e.msg);
            test_failed_ = 1;
        }
    }
    CHECK_STR(chat_error_param("{\"model\":\"m\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", &a),
              "messages[0].role");
    CHECK_STR(chat_error_param("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", &a),
              "messages[0].content[0]");
    CHECK_STR(chat_error_param("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", &a), "messages[0].content");
    CHECK_STR(chat_error_param("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":"
                               "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":"
                               "\"function\",\"function\":{\"name\":\"g\"}}}", &a),
              "tool_choice");
}

static void test_normalize_messages(void) {
    json_t *m = parse("[{\"role\":\"system\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
                      "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}},{\"id\":\"c2\",\"type\":\"function\","
                      "\"function\":{\"name\":\"g\",\"arguments\":\"not json\"}}]},"
                      "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"3\"}]");
    json_t *out = NULL;
    api_error a = {0};
    CHECK_OK(oai_normalize_messages(m, &out, &a), &a.e);
    CHECK_STR(json_string_value(json_object_get(json_array_get(out, 0), "content")), "a\nb");
    json_t *asst = json_array_get(out, 1);
    CHECK_STR(json_string_value(json_object_get(asst, "content")), "");
    json_t *fn0 = json_object_get(json_array_get(json_object_get(asst, "tool_calls"), 0), "function");
    CHECK(json_is_object(json_object_get(fn0, "arguments")));
    CHECK_INT(json_integer_value(json_object_get(json_object_get(fn0, "arguments"), "x")), 1);
    json_t *fn1 = json_object_get(json_array_get(json_object_get(asst, "tool_calls"), 1), "function");
    CHECK_STR(json_string_value(json_object_get(fn1, "arguments")), "not json");
    CHECK_STR(json_string_value(json_object_get(json_array_get(out, 2), "tool_call_id")), "c1");
    /* the request's own JSON is left as it was */
    CHECK(json_is_null(json_object_get(json_array_get(m, 1), "content")));
    json_decref(out);
    json_decref(m);
}

static void test_tools_and_formats(void) {
    json_t *j = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":"
                      "\"function\",\"function\":{\"name\":\"f\",\"strict\":true,\"parameters\":{\"type\":\"object\"}}}],"
                      "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},\"response_format\":{\"type\":"
                      "\"json_schema\",\"json_schema\":{\"name\":\"s\",\"schema\":{\"type\":\"object\"}}}}");
    chat_request q;
    api_error a = {0};
    CHECK_OK(chat_request_decode(j, &q, &a), &a.e);
    CHECK_INT(q.tool_choice, TOOL_CHOICE_NAMED);
    CHECK_STR(q.tool_name, "f");
    CHECK(json_is_object(q.tool_parameters));
    CHECK_INT(q.any_strict_tool, 1);
    CHECK_INT(q.response_kind, RESPONSE_JSON_SCHEMA);
    CHECK(json_is_object(q.response_schema));
    chat_request_free(&q);
    json_decref(j);
    j = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
              "\"function\":{\"name\":\"f\"}}]}");
    CHECK_OK(chat_request_decode(j, &q, &a), &a.e);
    CHECK_INT(q.tool_choice, TOOL_CHOICE_AUTO); /* auto when tools are given */
    chat_request_free(&q);
    json_decref(j);
}

static void test_completion_and_embedding(void) {
    api_error a = {0};
    json_t *j = parse("{\"model\":\"m\",\"prompt\":[[1,2],\"ab\"],\"echo\":true,\"logprobs\":3}");
    completion_request c;
    CHECK_OK(completion_request_decode(j, &c, &a), &a.e);
    CHECK_INT(c.n_prompts, 2);
    CHECK_INT(c.prompts[0].n_ids, 2);
    CHECK_INT(c.prompts[0].ids[1], 2);
    CHECK_STR(c.prompts[1].text, "ab");
    CHECK_INT(c.gen.max_tokens, 16); /* the legacy default */
    CHECK_INT(c.echo, 1);
    CHECK_INT(c.logprobs, 3);
    completion_request_free(&c);
    json_decref(j);
    j = parse("{\"model\":\"m\",\"prompt\":[5,6,7]}");
    CHECK_OK(completion_request_decode(j, &c, &a), &a.e);
    CHECK_INT(c.n_prompts, 1);
    CHECK_INT(c.prompts[0].n_ids, 3);
    completion_request_free(&c);
    json_decref(j);
    j = parse("{\"model\":\"m\",\"prompt\":[1,-2]}");
    CHECK(completion_request_decode(j, &c, &a) == BS_EINVAL);
    CHECK_STR(a.param, "prompt");
    completion_request_free(&c);
    json_decref(j);
    j = parse("{\"model\":\"m\",\"prompt\":{}}");
    CHECK(completion_request_decode(j, &c, &a) == BS_EINVAL);
    CHECK_STR(a.param, "prompt");
    completion_request_free(&c);
    json_decref(j);

    embedding_request e;
    j = parse("{\"model\":\"m\",\"input\":\"hello\",\"encoding_format\":\"base64\"}");
    CHECK_OK(embedding_request_decode(j, &e, &a), &a.e);
    CHECK_INT(e.n_inputs, 1);
    CHECK_INT(e.base64, 1);
    embedding_request_free(&e);
    json_decref(j);
    j = parse("{\"model\":\"m\",\"input\":\"hello\",\"encoding_format\":\"hex\"}");
    CHECK(embedding_request_decode(j, &e, &a) == BS_EINVAL);
    CHECK_STR(a.param, "encoding_format");
    embedding_request_free(&e);
    json_decref(j);
    j = parse("{\"model\":\"m\",\"input\":[\"a\",\"\"]}");
    CHECK(embedding_request_decode(j, &e, &a) == BS_EINVAL);
    CHECK_STR(a.param, "input");
    embedding_request_free(&e);
    json_decref(j);
}

static void test_error_objects(void) {
    api_error a = {0};
    api_fail(&a, BS_EINVAL, "temperature", NULL, "bad %s", "value");
    CHECK_INT(oai_http_status(&a), 400);
    json_t *body = oai_error_body(&a, 400);
    json_t *e = json_object_get(body, "error");
    CHECK_STR(json_string_value(json_object_get(e, "message")), "bad value");
    CHECK_STR(json_string_value(json_object_get(e, "type")), "invalid_request_error");
    CHECK_STR(json_string_value(json_object_get(e, "param")), "temperature");
    CHECK(json_is_null(json_object_get(e, "code")));
    json_decref(body);
    api_fail(&a, BS_EBUSY, NULL, "rate_limit_exceeded", "queue full");
    CHECK_INT(oai_http_status(&a), 429);
    body = oai_error_body(&a, 429);
    e = json_object_get(body, "error");
    CHECK(json_is_null(json_object_get(e, "param")));
    CHECK_STR(json_string_value(json_object_get(e, "code")), "rate_limit_exceeded");
    json_decref(body);
    api_fail(&a, BS_ENOTFOUND, "model", "model_not_found", "no");
    CHECK_INT(oai_http_status(&a), 404);
    a.http = 413;
    CHECK_INT(oai_http_status(&a), 413);
}

static char *dump(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

static void test_tool_call_deltas(void) {
    chat_event begin = {.kind = CHAT_EVENT_TOOL_BEGIN, .tool_index = 1, .tool_id = "call_x", .tool_name = "get"};
    char *s = dump(oai_chat_delta(&begin));
    CHECK_STR(s, "{\"tool_calls\":[{\"index\":1,\"id\":\"call_x\",\"type\":\"function\",\"function\":{\"name\":\"get\","
                 "\"arguments\":\"\"}}]}");
    free(s);
    chat_event args = {.kind = CHAT_EVENT_TOOL_ARGS, .tool_index = 1, .text = "{\"a\":1}xx", .len = 7};
    s = dump(oai_chat_delta(&args));
    CHECK_STR(s, "{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}");
    free(s);
    chat_event content = {.kind = CHAT_EVENT_CONTENT, .text = "hi there", .len = 2};
    s = dump(oai_chat_delta(&content));
    CHECK_STR(s, "{\"content\":\"hi\"}");
    free(s);
    chat_event think = {.kind = CHAT_EVENT_REASONING, .text = "hmm", .len = 3};
    s = dump(oai_chat_delta(&think));
    CHECK_STR(s, "{\"reasoning_content\":\"hmm\"}");
    free(s);
}

static void test_chunk_and_sse(void) {
    srv_buf b = {0};
    sse_data(&b, oai_chat_chunk("chatcmpl-1", 1700000000, "m", 0, json_pack("{s:s}", "content", "Hel"), NULL, NULL));
    CHECK_STR(b.data, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                      "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,"
                      "\"finish_reason\":null}]}\n\n");
    buf_consume(&b, b.len);
    sse_data(&b, oai_chat_chunk("c", 1, "m", 2, json_object(), "length", NULL));
    CHECK(strstr(b.data, "\"index\":2,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"") != NULL);
    buf_consume(&b, b.len);
    sse_done(&b);
    CHECK_STR(b.data, "data: [DONE]\n\n");
    buf_consume(&b, b.len);
    sse_event(&b, "response.completed", json_pack("{s:s,s:i}", "type", "response.completed", "sequence_number", 7));
    CHECK_STR(b.data, "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":7}\n\n");
    buf_free(&b);
    char *u = dump(oai_usage(9, 2, 4));
    CHECK_STR(u, "{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11,\"prompt_tokens_details\":"
                 "{\"cached_tokens\":4}}");
    free(u);
}

static void test_base64_floats(void) {
    const float v[3] = {1.0f, -2.5f, 0.0f};
    json_t *s = oai_base64_floats(v, 3);
    /* 00 00 80 3f | 00 00 20 c0 | 00 00 00 00 */
    CHECK_STR(json_string_value(s), "AACAPwAAIMAAAAAA");
    json_decref(s);
    s = oai_base64_floats(v, 1);
    CHECK_STR(json_string_value(s), "AACAPw==");
    json_decref(s);
}

static void test_buf(void) {
    srv_buf b = {0};
    buf_puts(&b, "hello ");
    buf_printf(&b, "%d-%s", 42, "x");
    CHECK_STR(b.data, "hello 42-x");
    buf_consume(&b, 6);
    CHECK_STR(b.data, "42-x");
    CHECK_INT(b.len, 4);
    buf_free(&b);
}

/* A Responses request becomes the chat request it amounts to. */
static void test_responses_to_chat(void) {
    json_t *j = parse(
        "{\"model\":\"m\",\"instructions\":\"Be brief.\",\"max_output_tokens\":9,\"temperature\":0.5,\"store\":true,"
        "\"metadata\":{\"k\":\"v\"},\"include\":[\"x\"],\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"a\","
        "\"schema\":{\"type\":\"object\"},\"strict\":true}},"
        "\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"},{\"type\":\"input_text\",\"text\":\"b\"}]},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"calling\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"},"
        "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"g\",\"arguments\":\"{}\"},"
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[]},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c2\",\"output\":\"done\"}],"
        "\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":{\"type\":\"object\"},\"strict\":true},"
        "{\"type\":\"function\",\"name\":\"g\",\"description\":\"d\"}],\"tool_choice\":{\"type\":\"function\",\"name\":\"g\"}}");
    chat_request q;
    api_error a = {0};
    CHECK_OK(responses_request_decode(j, &q, &a), &a.e);
    CHECK_INT(q.gen.max_tokens, 9);
    CHECK_NEAR(q.gen.sampling.temperature, 0.5, 1e-6);
    CHECK_INT(q.response_kind, RESPONSE_JSON_SCHEMA);
    CHECK_INT(q.tool_choice, TOOL_CHOICE_NAMED);
    CHECK_STR(q.tool_name, "g");
    CHECK_INT(json_array_size(q.tools), 2);
    CHECK_STR(json_string_value(json_object_get(json_object_get(json_array_get(q.tools, 0), "function"), "name")), "f");
    CHECK(json_is_true(json_object_get(json_object_get(json_array_get(q.tools, 0), "function"), "strict")));
    /* system, user (parts joined), assistant with both calls, tool named after its call */
    char *msgs = json_dumps(q.messages, JSON_COMPACT);
    CHECK_STR(msgs, "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"a\\nb\"},"
                    "{\"role\":\"assistant\",\"content\":\"calling\",\"tool_calls\":["
                    "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}},"
                    "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":{}}}]},"
                    "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"done\",\"name\":\"g\"}]");
    free(msgs);
    chat_request_free(&q);
    json_decref(j);

    /* A bare string is one user message; a call with no assistant text before it gets its own message. */
    j = parse("{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"1\"}]}");
    CHECK_OK(responses_request_decode(j, &q, &a), &a.e);
    CHECK_STR(json_string_value(json_object_get(json_array_get(q.messages, 0), "role")), "assistant");
    CHECK_INT(q.tool_choice, TOOL_CHOICE_NONE);
    chat_request_free(&q);
    json_decref(j);
}

static void test_responses_errors(void) {
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"resp_1\"}", "previous_response_id"},
        {"{\"model\":\"m\",\"input\":\"x\",\"conversation\":\"conv_1\"}", "conversation"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":\"msg_1\"}]}", "input[0]"},
        {"{\"model\":\"m\",\"input\":[]}", "input"},
        {"{\"model\":\"m\"}", "input"},
        {"{\"model\":\"m\",\"input\":\"x\",\"instructions\":3}", "instructions"},
        {"{\"model\":\"m\",\"input\":[\"x\"]}", "input[0]"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"computer_call\"}]}", "input[0].type"},
        {"{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\"}]}", "input[0].output"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"file_search\"}]}", "tools[0].type"},
        {"{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":1}]}", "tools[0].parameters"},
        {"{\"model\":\"m\",\"input\":\"x\",\"store\":\"yes\"}", "store"},
        {"{\"model\":\"m\",\"input\":\"x\",\"background\":true}", "background"},
        {"{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\"}}}", "text.format.schema"},
        {"{\"model\":\"m\",\"input\":\"x\",\"temperature\":3}", "temperature"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = parse(cases[i].body);
        chat_request q;
        api_error a = {0};
        CHECK(responses_request_decode(j, &q, &a) != BS_OK);
        if (strcmp(a.param, cases[i].param) != 0) fprintf(stderr, "  case %zu: %s\n", i, a.e.msg);
        CHECK_STR(a.param, cases[i].param);
        CHECK(oai_http_status(&a) == 400);
        chat_request_free(&q);
        json_decref(j);
    }
}

int main(void) {
    RUN(test_body_must_be_object);
    RUN(test_chat_defaults);
    RUN(test_chat_fields);
    RUN(test_chat_errors_name_param);
    RUN(test_normalize_messages);
    RUN(test_tools_and_formats);
    RUN(test_completion_and_embedding);
    RUN(test_error_objects);
    RUN(test_tool_call_deltas);
    RUN(test_chunk_and_sse);
    RUN(test_base64_floats);
    RUN(test_buf);
    RUN(test_responses_to_chat);
    RUN(test_responses_errors);
    TEST_MAIN_END();
}
