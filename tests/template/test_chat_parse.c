/* Chat output parsing: recorded outputs of every family, fed whole, one byte
 * at a time and in random chunks; the assembled message, the event stream
 * and the absence of partial markup in content are checked each time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "template/chat_parse.h"
#include "../support/test.h"

#define DS_CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define DS_CALLS_END   "<｜tool▁calls▁end｜>"
#define DS_CALL_BEGIN  "<｜tool▁call▁begin｜>"
#define DS_CALL_END    "<｜tool▁call▁end｜>"
#define DS_SEP         "<｜tool▁sep｜>"

static const char *TOOLS_JSON =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": "
    "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": "
    "{\"type\": \"integer\"}, \"metric\": {\"type\": \"boolean\"}, \"opts\": {\"type\": "
    "\"object\"}, \"tags\": {\"type\": \"array\"}, \"zip\": {\"type\": [\"string\", "
    "\"null\"]}}}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"search\", \"parameters\": {\"type\": "
    "\"object\", \"properties\": {\"query\": {\"type\": \"string\"}, \"limit\": {\"type\": "
    "\"number\"}}}}}]";

/* Markers whose partial forms must never reach content unless the final
 * content really holds them. */
static const char *MARKERS[] = {"<tool_call>", "<think>", "</think>", "<|python_tag|>",
                                "[TOOL_CALLS]", DS_CALLS_BEGIN, "<minimax:tool_call>",
                                "<function=", NULL};

typedef struct expect {
    const char *content; /* NULL: content is null */
    const char *reasoning; /* NULL: no reasoning_content */
    int ncalls;
    const char *names[3];
    const char *args[3];
} expect;

typedef struct rec_call {
    char id[64], name[128];
    char *args;
    size_t args_len;
} rec_call;

/* What the events said, reassembled. */
typedef struct recorder {
    char *content, *reasoning;
    size_t clen, rlen;
    rec_call calls[8];
    int ncalls;
    int bad_event;
    char *deltas[4096]; /* content deltas, for the partial-marker check */
    int ndeltas;
} recorder;

static void append(char **dst, size_t *len, const char *s, size_t n) {
    *dst = realloc(*dst, *len + n + 1);
    memcpy(*dst + *len, s, n);
    *len += n;
    (*dst)[*len] = '\0';
}

static void record(void *user, const chat_event *ev) {
    recorder *r = user;
    switch (ev->kind) {
    case CHAT_EVENT_CONTENT:
        append(&r->content, &r->clen, ev->text, ev->len);
        if (r->ndeltas < 4096) r->deltas[r->ndeltas++] = strndup(ev->text, ev->len);
        break;
    case CHAT_EVENT_REASONING: append(&r->reasoning, &r->rlen, ev->text, ev->len); break;
    case CHAT_EVENT_TOOL_BEGIN:
        if (ev->tool_index != r->ncalls || r->ncalls == 8) {
            r->bad_event = 1;
            break;
        }
        snprintf(r->calls[r->ncalls].id, 64, "%s", ev->tool_id);
        snprintf(r->calls[r->ncalls].name, 128, "%s", ev->tool_name);
        r->ncalls++;
        break;
    case CHAT_EVENT_TOOL_ARGS:
        if (ev->tool_index != r->ncalls - 1) {
            r->bad_event = 1;
            break;
        }
        append(&r->calls[ev->tool_index].args, &r->calls[ev->tool_index].args_len, ev->text,
               ev->len);
        break;
    }
}

static void recorder_free(recorder *r) {
    free(r->content);
    free(r->reasoning);
    for (int i = 0; i < r->ncalls; i++) free(r->calls[i].args);
    for (int i = 0; i < r->ndeltas; i++) free(r->deltas[i]);
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Feed text in pieces: mode 0 whole, 1 byte by byte, 2+ random chunks of
 * 1..12 bytes seeded by mode; check events against the message. */
static json_t *parse_fed(const chat_parse_options *o, const char *text, int mode) {
    chat_parser *p;
    bs_error err;
    CHECK_OK(chat_parser_open(o, &p, &err), &err);
    recorder r = {0};
    size_t n = strlen(text), i = 0;
    uint64_t seed = (uint64_t)mode;
    while (i < n) {
        size_t step = mode == 0 ? n : mode == 1 ? 1 : 1 + lcg(&seed) % 12;
        if (step > n - i) step = n - i;
        chat_parser_feed(p, text + i, step, record, &r);
        i += step;
    }
    chat_parser_finish(p, record, &r);
    chat_parser_feed(p, "ignored", 7, record, &r); /* after finish: no effect */
    json_t *msg = chat_parser_message(p);
    chat_parser_close(p);

    CHECK(!r.bad_event);
    json_t *content = json_object_get(msg, "content");
    const char *final = json_is_string(content) ? json_string_value(content) : "";
    CHECK_STR(r.content ? r.content : "", final);
    json_t *reasoning = json_object_get(msg, "reasoning_content");
    CHECK_STR(r.reasoning ? r.reasoning : "", reasoning ? json_string_value(reasoning) : "");
    json_t *calls = json_object_get(msg, "tool_calls");
    CHECK_INT(r.ncalls, json_array_size(calls));
    for (int c = 0; c < r.ncalls && c < (int)json_array_size(calls); c++) {
        json_t *call = json_array_get(calls, (size_t)c), *fn = json_object_get(call, "function");
        CHECK_STR(r.calls[c].id, json_string_value(json_object_get(call, "id")));
        CHECK_STR(r.calls[c].name, json_string_value(json_object_get(fn, "name")));
        CHECK_STR(r.calls[c].args ? r.calls[c].args : "",
                  json_string_value(json_object_get(fn, "arguments")));
    }
    /* No partial marker in a content delta unless the content has it. */
    for (int d = 0; d < r.ndeltas; d++) {
        for (int m = 0; MARKERS[m]; m++) {
            char part[64];
            for (size_t len = 2; len < strlen(MARKERS[m]); len++) {
                memcpy(part, MARKERS[m], len);
                part[len] = '\0';
                if (strstr(r.deltas[d], part) && !strstr(final, part)) {
                    fprintf(stderr, "  partial marker \"%s\" leaked in delta \"%s\"\n", part,
                            r.deltas[d]);
                    test_failed_ = 1;
                }
            }
        }
    }
    recorder_free(&r);
    return msg;
}

static void check_message(const json_t *msg, const expect *e) {
    json_t *content = json_object_get(msg, "content");
    if (e->content) CHECK_STR(json_string_value(content), e->content);
    else CHECK(json_is_null(content));
    json_t *reasoning = json_object_get(msg, "reasoning_content");
    if (e->reasoning) CHECK_STR(json_string_value(reasoning), e->reasoning);
    else CHECK(reasoning == NULL);
    json_t *calls = json_object_get(msg, "tool_calls");
    CHECK_INT(json_array_size(calls), e->ncalls);
    for (int i = 0; i < e->ncalls && i < (int)json_array_size(calls); i++) {
        json_t *call = json_array_get(calls, (size_t)i), *fn = json_object_get(call, "function");
        CHECK_STR(json_string_value(json_object_get(call, "type")), "function");
        CHECK_STR(json_string_value(json_object_get(fn, "name")), e->names[i]);
        CHECK_STR(json_string_value(json_object_get(fn, "arguments")), e->args[i]);
    }
}

/* One recorded output, every way of feeding it. */
static void check_case_opts(const chat_parse_options *o, const char *text, const expect *e) {
    int failed_before = test_failed_;
    test_failed_ = 0;
    json_t *whole = parse_fed(o, text, 0);
    check_message(whole, e);
    for (int mode = 1; mode < 6; mode++) {
        json_t *other = parse_fed(o, text, mode);
        if (!json_equal(whole, other)) {
            char *a = json_dumps(whole, 0), *b = json_dumps(other, 0);
            fprintf(stderr, "  feed mode %d differs:\n    whole: %s\n    split: %s\n", mode, a, b);
            free(a);
            free(b);
            test_failed_ = 1;
        }
        json_decref(other);
    }
    if (test_failed_) fprintf(stderr, "  (output: %s)\n", text);
    test_failed_ |= failed_before;
    json_decref(whole);
}

static json_t *tools(void) { return json_loads(TOOLS_JSON, 0, NULL); }

static void check_case(chat_format f, int reasoning, int starts, const char *text,
                       const expect *e) {
    json_t *t = tools();
    chat_parse_options o = {f, reasoning, starts, t, 42};
    check_case_opts(&o, text, e);
    json_decref(t);
}

/* ---- Hermes / Qwen2.5 / Qwen3 ---- */

#define WEATHER_CALL                                                                  \
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"

static void test_hermes(void) {
    chat_format f = CHAT_FORMAT_HERMES;
    check_case(f, 1, 0, "Hello! How can I help you today?",
               &(expect){"Hello! How can I help you today?", NULL, 0, {0}, {0}});
    check_case(f, 1, 0, "<think>\nThe user greets me.\n</think>\n\nHello there.",
               &(expect){"Hello there.", "The user greets me.", 0, {0}, {0}});
    check_case(f, 1, 0, WEATHER_CALL,
               &(expect){NULL, NULL, 1, {"get_weather"}, {"{\"city\": \"Paris\"}"}});
    check_case(f, 1, 0,
               WEATHER_CALL "\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": "
                            "\"louvre hours\", \"limit\": 3}}\n</tool_call>",
               &(expect){NULL, NULL, 2, {"get_weather", "search"},
                         {"{\"city\": \"Paris\"}", "{\"query\": \"louvre hours\", \"limit\": 3}"}});
    check_case(f, 1, 0, "Let me check the weather.\n" WEATHER_CALL,
               &(expect){"Let me check the weather.", NULL, 1, {"get_weather"},
                         {"{\"city\": \"Paris\"}"}});
    check_case(f, 1, 0,
               "Voilà — 東京の天気 🌤️\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
               "{\"city\": \"東京\", \"note\": \"\\u00e9t\\u00e9\"}}\n</tool_call>",
               &(expect){"Voilà — 東京の天気 🌤️", NULL, 1, {"get_weather"},
                         {"{\"city\": \"東京\", \"note\": \"\\u00e9t\\u00e9\"}"}});
    check_case(f, 1, 0,
               "<tool_call>\n{\"name\": \"run\", \"arguments\": {\"cmd\": \"echo \\\"hi\\\" "
               "</tool_call> {x}\", \"env\": {\"A\": [1, {\"b\": null}], \"C\": 2.5e3}}}\n"
               "</tool_call>",
               &(expect){NULL, NULL, 1, {"run"},
                         {"{\"cmd\": \"echo \\\"hi\\\" </tool_call> {x}\", \"env\": {\"A\": "
                          "[1, {\"b\": null}], \"C\": 2.5e3}}"}});
    /* Malformed JSON (bare word) and an unterminated call: raw text. */
    const char *bad = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                      "Paris}}\n</tool_call>";
    check_case(f, 1, 0, bad, &(expect){bad, NULL, 0, {0}, {0}});
    const char *cut = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par";
    check_case(f, 1, 0, cut, &(expect){cut, NULL, 0, {0}, {0}});
    const char *unclosed = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\nok";
    check_case(f, 1, 0, unclosed, &(expect){unclosed, NULL, 0, {0}, {0}});
    /* A broken call does not hide a good one after it. */
    check_case(f, 1, 0, "<tool_call>\n{\"name\": oops}\n</tool_call>\n" WEATHER_CALL,
               &(expect){"<tool_call>\n{\"name\": oops}\n</tool_call>", NULL, 1,
                         {"get_weather"}, {"{\"city\": \"Paris\"}"}});
    /* Looks like markup, is not. */
    const char *lookalike =
        "Use <tool to build, <tool_cal is a typo, [x] {y} and <b>bold</b> <tool_c";
    check_case(f, 1, 0, lookalike, &(expect){lookalike, NULL, 0, {0}, {0}});
    check_case(f, 1, 0, "<thinking>plan</thinking> done",
               &(expect){"<thinking>plan</thinking> done", NULL, 0, {0}, {0}});
    check_case(f, 1, 0, "  <thin", &(expect){"  <thin", NULL, 0, {0}, {0}});
    /* <think> only counts at the start. */
    check_case(f, 1, 0, "Tags like <think> x </think> are shown.",
               &(expect){"Tags like <think> x </think> are shown.", NULL, 0, {0}, {0}});
    /* Qwen3 thinking with a call; text after the call. */
    check_case(f, 1, 0, "<think>\nNeed the weather.\n</think>\n\n" WEATHER_CALL "\nDone.",
               &(expect){"Done.", "Need the weather.", 1, {"get_weather"},
                         {"{\"city\": \"Paris\"}"}});
    /* Arguments as a JSON string; a call without arguments. */
    check_case(f, 1, 0,
               "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}\n</tool_call>"
               "<tool_call>{\"name\": \"now\"}</tool_call>",
               &(expect){NULL, NULL, 2, {"f", "now"}, {"{\"a\": 1}", "{}"}});
}

static void test_reasoning_modes(void) {
    chat_format f = CHAT_FORMAT_HERMES;
    /* The prompt opened <think> (DeepSeek-R1 / Qwen3 thinking prompts). */
    check_case(f, 1, 1, "The user wants weather.\n</think>\n\n" WEATHER_CALL,
               &(expect){NULL, "The user wants weather.", 1, {"get_weather"},
                         {"{\"city\": \"Paris\"}"}});
    check_case(f, 1, 1, "\nStill thinking about it",
               &(expect){"", "Still thinking about it", 0, {0}, {0}});
    check_case(f, 1, 1, "a </thin b", &(expect){"", "a </thin b", 0, {0}, {0}});
    /* A lone <think> at the end of output, and an unterminated think block. */
    check_case(f, 1, 0, "<think>", &(expect){"", NULL, 0, {0}, {0}});
    check_case(f, 1, 0, "\n<think>\nabc ", &(expect){"", "abc ", 0, {0}, {0}});
    /* Extraction off: the think block is content; starts_in_reasoning ignored. */
    const char *t = "<think>\nhmm\n</think>\n\nHi";
    check_case(f, 0, 0, t, &(expect){t, NULL, 0, {0}, {0}});
    check_case(f, 0, 1, "hmm</think>Hi", &(expect){"hmm</think>Hi", NULL, 0, {0}, {0}});
    /* Empty think block (Qwen3 with thinking disabled writes it in the prompt). */
    check_case(f, 1, 0, "<think>\n\n</think>\n\nHi", &(expect){"Hi", NULL, 0, {0}, {0}});
    /* Plain content: passes through untouched, whitespace included. */
    check_case(CHAT_FORMAT_CONTENT, 1, 0, "  Hello\n\n  world\n",
               &(expect){"  Hello\n\n  world\n", NULL, 0, {0}, {0}});
    check_case(CHAT_FORMAT_CONTENT, 1, 0, "<think>\nx\n</think>\ny <tool_call>",
               &(expect){"y <tool_call>", "x", 0, {0}, {0}});
    check_case(CHAT_FORMAT_CONTENT, 1, 0, "", &(expect){"", NULL, 0, {0}, {0}});
}

/* ---- Qwen3-Coder ---- */

static void test_qwen3_coder(void) {
    chat_format f = CHAT_FORMAT_QWEN3_CODER;
    check_case(f, 1, 0,
               "<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco\n"
               "</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
               &(expect){NULL, NULL, 1, {"get_weather"},
                         {"{\"city\":\"San Francisco\",\"days\":3}"}});
    /* Typed by schema; unknown parameters and values that do not parse stay strings. */
    check_case(f, 1, 0,
               "I'll look.\n<tool_call>\n<function=get_weather>\n<parameter=metric>\ntrue\n"
               "</parameter>\n<parameter=opts>\n{\"a\": [1, 2]}\n</parameter>\n<parameter=tags>\n"
               "[\"x\", \"y\"]\n</parameter>\n<parameter=zip>\n02139\n</parameter>\n"
               "<parameter=note>\n42\n</parameter>\n<parameter=days>\nthree\n</parameter>\n"
               "<parameter=city>\na < b > c\n\"quoted\" 東京\n</parameter>\n</function>\n"
               "</tool_call>",
               &(expect){"I'll look.", NULL, 1, {"get_weather"},
                         {"{\"metric\":true,\"opts\":{\"a\":[1,2]},\"tags\":[\"x\",\"y\"],"
                          "\"zip\":\"02139\",\"note\":\"42\",\"days\":\"three\",\"city\":\"a < b "
                          "> c\\n\\\"quoted\\\" 東京\"}"}});
    check_case(f, 1, 0,
               "<think>\nTwo lookups.\n</think>\n\n<tool_call>\n<function=search>\n"
               "<parameter=query>\nrust\n</parameter>\n<parameter=limit>\n0.1\n</parameter>\n"
               "</function>\n</tool_call>\n<tool_call>\n<function=now>\n</function>\n"
               "</tool_call>",
               &(expect){NULL, "Two lookups.", 2, {"search", "now"},
                         {"{\"query\":\"rust\",\"limit\":0.1}", "{}"}});
    const char *bad = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
                      "</function>\n</tool_call>";
    check_case(f, 1, 0, bad, &(expect){bad, NULL, 0, {0}, {0}});
    const char *cut = "Checking.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nPar";
    check_case(f, 1, 0, cut, &(expect){cut, NULL, 0, {0}, {0}});
    const char *fake = "<tool_call> is how I call <function=x> tools";
    check_case(f, 1, 0, fake, &(expect){fake, NULL, 0, {0}, {0}});
}

/* ---- Llama 3.x ---- */

static void test_llama3(void) {
    chat_format f = CHAT_FORMAT_LLAMA3;
    check_case(f, 1, 0, "The capital of France is Paris.",
               &(expect){"The capital of France is Paris.", NULL, 0, {0}, {0}});
    check_case(f, 1, 0, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
               &(expect){NULL, NULL, 1, {"get_weather"}, {"{\"city\": \"Paris\"}"}});
    check_case(f, 1, 0,
               "<|python_tag|>{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": "
               "{\"city\": \"Zürich\", \"opts\": {\"deep\": [\"}\", \"{\"]}}}",
               &(expect){NULL, NULL, 1, {"get_weather"},
                         {"{\"city\": \"Zürich\", \"opts\": {\"deep\": [\"}\", \"{\"]}}"}});
    check_case(f, 1, 0,
               "\n{\"name\": \"now\", \"parameters\": {}}; {\"name\": \"search\", \"parameters\": "
               "{\"query\": \"x\"}}\n",
               &(expect){NULL, NULL, 2, {"now", "search"}, {"{}", "{\"query\": \"x\"}"}});
    check_case(f, 1, 0,
               "Let me look that up.<|python_tag|>{\"name\": \"search\", \"parameters\": "
               "{\"query\": \"llama\"}}",
               &(expect){"Let me look that up.", NULL, 1, {"search"}, {"{\"query\": \"llama\"}"}});
    /* JSON that is not a call, calls followed by text, cut calls, braces in text. */
    const char *answer = "{\"answer\": 42, \"name\": \"x\"}";
    check_case(f, 1, 0, answer, &(expect){answer, NULL, 0, {0}, {0}});
    const char *after = "{\"name\": \"now\", \"parameters\": {}} and then some text";
    check_case(f, 1, 0, after, &(expect){after, NULL, 0, {0}, {0}});
    const char *cut = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}";
    check_case(f, 1, 0, cut, &(expect){cut, NULL, 0, {0}, {0}});
    const char *braces = "Use {braces} like {\"name\": \"a\", \"parameters\": {}}";
    check_case(f, 1, 0, braces, &(expect){braces, NULL, 0, {0}, {0}});
    const char *builtin = "<|python_tag|>brave_search.call(query=\"x\")";
    check_case(f, 1, 0, builtin, &(expect){builtin, NULL, 0, {0}, {0}});
    check_case(f, 1, 0, "<think>\nhm\n</think>\n{\"name\": \"now\", \"parameters\": {}}",
               &(expect){NULL, "hm", 1, {"now"}, {"{}"}});
}

/* ---- Mistral ---- */

static void test_mistral(void) {
    chat_format f = CHAT_FORMAT_MISTRAL;
    check_case(f, 1, 0,
               "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, "
               "{\"name\": \"search\", \"arguments\": {\"query\": \"Eiffel \\\"tower\\\"]\"}, "
               "\"id\": \"abcDEF123\"}]",
               &(expect){NULL, NULL, 2, {"get_weather", "search"},
                         {"{\"city\": \"Paris\"}", "{\"query\": \"Eiffel \\\"tower\\\"]\"}"}});
    check_case(f, 1, 0,
               "Checking both.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]"
               "search[ARGS]{\"query\": \"x\", \"limit\": 5}",
               &(expect){"Checking both.", NULL, 2, {"get_weather", "search"},
                         {"{\"city\": \"Paris\"}", "{\"query\": \"x\", \"limit\": 5}"}});
    const char *fake = "Use [TOOL to call, [TOOL_CALL is close, [x] ok [TOOL_CA";
    check_case(f, 1, 0, fake, &(expect){fake, NULL, 0, {0}, {0}});
    const char *bad =
        "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}]";
    check_case(f, 1, 0, bad, &(expect){bad, NULL, 0, {0}, {0}});
    const char *cut = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"ci";
    check_case(f, 1, 0, cut, &(expect){cut, NULL, 0, {0}, {0}});
    const char *noname = "[TOOL_CALLS][{\"arguments\": {}}] and [TOOL_CALLS]bad name[ARGS]{}";
    check_case(f, 1, 0, noname, &(expect){noname, NULL, 0, {0}, {0}});
}

/* ---- DeepSeek V3 / V3.1 / R1 ---- */

static void test_deepseek(void) {
    chat_format f = CHAT_FORMAT_DEEPSEEK_V3;
    check_case(f, 1, 0,
               DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{\"city\": \"Paris\"}" DS_CALL_END
                   DS_CALL_BEGIN "search" DS_SEP "{\"query\": \"x\"}" DS_CALL_END DS_CALLS_END,
               &(expect){NULL, NULL, 2, {"get_weather", "search"},
                         {"{\"city\": \"Paris\"}", "{\"query\": \"x\"}"}});
    check_case(f, 1, 1,
               "The user wants Paris weather.</think>I'll check." DS_CALLS_BEGIN DS_CALL_BEGIN
               "function" DS_SEP "get_weather\n```json\n{\"city\": \"Paris\", \"days\": 2}\n```"
               DS_CALL_END DS_CALLS_END,
               &(expect){"I'll check.", "The user wants Paris weather.", 1, {"get_weather"},
                         {"{\"city\": \"Paris\", \"days\": 2}"}});
    check_case(f, 1, 1, "2 + 2 = 4, simple.</think>The answer is 4.",
               &(expect){"The answer is 4.", "2 + 2 = 4, simple.", 0, {0}, {0}});
    const char *cut = "Sure." DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{\"city\": \"Pa";
    check_case(f, 1, 0, cut, &(expect){cut, NULL, 0, {0}, {0}});
    const char *bad = DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{city: Paris}" DS_CALL_END
        DS_CALLS_END;
    check_case(f, 1, 0, bad, &(expect){bad, NULL, 0, {0}, {0}});
    const char *fake = "<｜tool▁call▁begin｜> alone and <｜tool▁calls";
    check_case(f, 1, 0, fake, &(expect){fake, NULL, 0, {0}, {0}});
}

/* ---- MiniMax-M2 ---- */

static void test_minimax(void) {
    chat_format f = CHAT_FORMAT_MINIMAX_M2;
    check_case(f, 1, 0,
               "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris"
               "</parameter>\n<parameter name=\"days\">2</parameter>\n</invoke>\n"
               "</minimax:tool_call>",
               &(expect){NULL, NULL, 1, {"get_weather"}, {"{\"city\":\"Paris\",\"days\":2}"}});
    check_case(f, 1, 0,
               "<think>\nplan: weather then search\n</think>\n\nLet me check.\n"
               "<minimax:tool_call>\n"
               "<invoke name=\"get_weather\">\n<parameter name=\"tags\">[\"a\"]</parameter>\n"
               "</invoke>\n<invoke name=\"search\">\n<parameter name=\"query\">café \"crème\""
               "</parameter>\n<parameter name=\"limit\">10</parameter>\n</invoke>\n"
               "</minimax:tool_call>",
               &(expect){"Let me check.", "plan: weather then search", 2, {"get_weather", "search"},
                         {"{\"tags\":[\"a\"]}",
                          "{\"query\":\"café \\\"crème\\\"\",\"limit\":10}"}});
    const char *cut =
        "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Pa";
    check_case(f, 1, 0, cut, &(expect){cut, NULL, 0, {0}, {0}});
    const char *fake = "<minimax:tool is not <minimax:tool_call><invoke>";
    check_case(f, 1, 0, fake, &(expect){fake, NULL, 0, {0}, {0}});
}

/* Random mixes of markup pieces, valid and broken: every way of feeding
 * gives the same message, and the events always add up to it. */
static void test_random_mixes(void) {
    static const char *pieces[] = {
        "<tool_call>", "</tool_call>", "<think>", "</think>", "<|python_tag|>", "[TOOL_CALLS]",
        "[ARGS]", DS_CALLS_BEGIN, DS_CALL_BEGIN, DS_SEP, DS_CALL_END, DS_CALLS_END,
        "<minimax:tool_call>", "</minimax:tool_call>", "<invoke name=\"f\">", "</invoke>",
        "<parameter name=\"a\">", "<function=f>", "<parameter=a>", "</parameter>",
        "</function>", "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
        "{\"name\": \"g\", \"parameters\": {}}", "{", "}", "[", "]", "\"", "\\", ";", ",",
        "<tool", "<thi", "[TOOL_", "<｜tool", "\n", " ", "  \n", "text", "é", "東京", "f", "1",
        "\n```json\n", "function", "```", WEATHER_CALL,
        "<tool_call>\n<function=get_weather>\n<parameter=days>\n2\n</parameter>\n</function>\n"
        "</tool_call>",
        "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": [1]}}",
        "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]", "[TOOL_CALLS]f[ARGS]{\"a\": \"}\"}",
        DS_CALLS_BEGIN DS_CALL_BEGIN "f" DS_SEP "{\"a\": 1}" DS_CALL_END DS_CALLS_END,
        "<minimax:tool_call>\n<invoke name=\"f\">\n<parameter name=\"a\">1</parameter>\n"
        "</invoke>\n</minimax:tool_call>"};
    const size_t np = sizeof pieces / sizeof pieces[0];
    uint64_t seed = 12345;
    json_t *t = tools();
    for (chat_format f = CHAT_FORMAT_CONTENT; f <= CHAT_FORMAT_MINIMAX_M2; f++) {
        for (int iter = 0; iter < 150; iter++) {
            char text[2048];
            size_t len = 0;
            int count = 1 + (int)(lcg(&seed) % 12);
            for (int k = 0; k < count; k++) {
                const char *piece = pieces[lcg(&seed) % np];
                size_t pl = strlen(piece);
                if (len + pl >= sizeof text) break;
                memcpy(text + len, piece, pl);
                len += pl;
            }
            /* Cut short, or lose a byte (splitting characters too). */
            size_t at = len ? lcg(&seed) % len : 0, cut = lcg(&seed) % 3;
            if (cut == 0) len = at;
            if (cut == 1 && len > 0) {
                memmove(text + at, text + at + 1, len - at - 1);
                len--;
            }
            text[len] = '\0';
            chat_parse_options o = {f, (int)(lcg(&seed) % 2), (int)(lcg(&seed) % 2), t, 3};
            int failed_before = test_failed_;
            test_failed_ = 0;
            json_t *whole = parse_fed(&o, text, 0);
            for (int mode = 1; mode < 4; mode++) {
                json_t *other = parse_fed(&o, text, mode == 1 ? 1 : mode + iter + 1);
                if (!json_equal(whole, other)) test_failed_ = 1;
                json_decref(other);
            }
            if (test_failed_) fprintf(stderr, "  %s: differs for: %s\n", chat_format_name(f), text);
            test_failed_ |= failed_before;
            json_decref(whole);
        }
    }
    json_decref(t);
}

/* ---- events, ids, API ---- */

static void count_events(void *user, const chat_event *ev) {
    int *counts = user;
    counts[ev->kind]++;
    if (ev->kind == CHAT_EVENT_TOOL_BEGIN) {
        const char *id = ev->tool_id;
        size_t len = strlen(id);
        int alnum = 1;
        for (size_t i = len > 9 ? 5 : 0; i < len; i++)
            if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
                  (id[i] >= '0' && id[i] <= '9')))
                alnum = 0;
        CHECK(alnum);
        CHECK(len == 9 || (len == 29 && strncmp(id, "call_", 5) == 0));
    }
}

static void test_ids_and_events(void) {
    bs_error err;
    chat_parse_options o = {CHAT_FORMAT_HERMES, 1, 0, NULL, 7};
    json_t *a, *b, *c;
    const char *text = WEATHER_CALL WEATHER_CALL;
    CHECK_OK(chat_parse_message(&o, text, strlen(text), &a, &err), &err);
    CHECK_OK(chat_parse_message(&o, text, strlen(text), &b, &err), &err);
    o.id_seed = 8;
    CHECK_OK(chat_parse_message(&o, text, strlen(text), &c, &err), &err);
    CHECK(json_equal(a, b));
    CHECK(!json_equal(a, c));
    json_t *calls = json_object_get(a, "tool_calls");
    const char *id0 = json_string_value(json_object_get(json_array_get(calls, 0), "id"));
    const char *id1 = json_string_value(json_object_get(json_array_get(calls, 1), "id"));
    CHECK(id0 && id1 && strcmp(id0, id1) != 0);
    CHECK_INT(strlen(id0), 29);
    CHECK(json_is_null(json_object_get(a, "content")));
    CHECK_STR(json_string_value(json_object_get(a, "role")), "assistant");
    json_decref(a);
    json_decref(b);
    json_decref(c);

    int counts[4] = {0};
    chat_parser *p;
    o.format = CHAT_FORMAT_MISTRAL;
    CHECK_OK(chat_parser_open(&o, &p, &err), &err);
    const char *m = "Ok.[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", "
                    "\"arguments\": {}}]";
    chat_parser_feed(p, m, strlen(m), count_events, counts);
    chat_parser_finish(p, count_events, counts);
    CHECK_INT(counts[CHAT_EVENT_TOOL_BEGIN], 2);
    CHECK_INT(counts[CHAT_EVENT_TOOL_ARGS], 2);
    CHECK_INT(counts[CHAT_EVENT_CONTENT], 1);
    chat_parser_close(p);
}

/* Content is held back only while it could still be markup. */
static void test_release_timing(void) {
    bs_error err;
    chat_parser *p;
    int counts[4] = {0};
    chat_parse_options o = {CHAT_FORMAT_HERMES, 1, 0, NULL, 1};
    CHECK_OK(chat_parser_open(&o, &p, &err), &err);
    chat_parser_feed(p, "Hello <tool", 11, count_events, counts);
    json_t *m = chat_parser_message(p);
    CHECK_STR(json_string_value(json_object_get(m, "content")), "Hello");
    json_decref(m);
    chat_parser_feed(p, "s> ok", 5, count_events, counts);
    m = chat_parser_message(p);
    CHECK_STR(json_string_value(json_object_get(m, "content")), "Hello <tools> ok");
    json_decref(m);
    /* A call is committed as soon as its closing tag is in. */
    chat_parser_feed(p, WEATHER_CALL, strlen(WEATHER_CALL), count_events, counts);
    CHECK_INT(counts[CHAT_EVENT_TOOL_BEGIN], 1);
    chat_parser_close(p);
}

/* Bytes that are not UTF-8 become U+FFFD, the same way in every feed. */
static void test_invalid_utf8(void) {
    check_case(CHAT_FORMAT_HERMES, 1, 0, "a\xff" "b\xe6\x9d<tool_c\xc3(\xed\xa0\x80 \xe6\x9d",
               &(expect){"a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD<tool_c\xEF\xBF\xBD("
                         "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD",
                         NULL, 0, {0}, {0}});
    check_case(CHAT_FORMAT_HERMES, 1, 1, "\xe6\x9d</think>\xf0\x9f\x8c",
               &(expect){"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD",
                         "\xEF\xBF\xBD\xEF\xBF\xBD", 0, {0}, {0}});
}

/* A long call fed one byte at a time stays linear, even with closing
 * characters all through its arguments. */
static void long_call(chat_format f, const char *head, const char *tail) {
    size_t n = 200000;
    char *text = malloc(n + 200);
    size_t len = (size_t)sprintf(text, "%s", head);
    for (size_t i = 0; i < n; i++) text[len++] = "ab<>}]{[ "[i % 9];
    len += (size_t)sprintf(text + len, "%s", tail);
    chat_parse_options o = {f, 1, 0, NULL, 1};
    chat_parser *p;
    bs_error err;
    CHECK_OK(chat_parser_open(&o, &p, &err), &err);
    clock_t t0 = clock();
    for (size_t i = 0; i < len; i++) chat_parser_feed(p, text + i, 1, NULL, NULL);
    chat_parser_finish(p, NULL, NULL);
    double dt = (double)(clock() - t0) / CLOCKS_PER_SEC;
    json_t *m = chat_parser_message(p);
    json_t *call = json_array_get(json_object_get(m, "tool_calls"), 0);
    json_t *args = json_object_get(json_object_get(call, "function"), "arguments");
    CHECK_INT(json_string_length(args), n + 12);
    if (dt > 2.0) {
        fprintf(stderr, "  %s: %.2f s for a %zu-byte call\n", chat_format_name(f), dt, len);
        test_failed_ = 1;
    }
    json_decref(m);
    chat_parser_close(p);
    free(text);
}

static void test_long_call(void) {
    long_call(CHAT_FORMAT_HERMES, "<tool_call>\n{\"name\": \"write\", \"arguments\": {\"data\": \"",
              "\"}}\n</tool_call>");
    long_call(CHAT_FORMAT_MISTRAL, "[TOOL_CALLS]write[ARGS]{\"data\": \"", "\"}");
}

static void test_api(void) {
    bs_error err;
    chat_format f;
    static const chat_format all[] = {CHAT_FORMAT_CONTENT,     CHAT_FORMAT_HERMES,
                                      CHAT_FORMAT_QWEN3_CODER, CHAT_FORMAT_LLAMA3,
                                      CHAT_FORMAT_MISTRAL,     CHAT_FORMAT_DEEPSEEK_V3,
                                      CHAT_FORMAT_MINIMAX_M2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK_OK(chat_format_from_name(chat_format_name(all[i]), &f, &err), &err);
        CHECK_INT(f, all[i]);
    }
    CHECK_OK(chat_format_from_name("llama3_json", &f, &err), &err);
    CHECK_INT(f, CHAT_FORMAT_LLAMA3);
    CHECK_STR(chat_format_name(CHAT_FORMAT_QWEN3_CODER), "qwen3_coder");
    CHECK_INT(chat_format_from_name("gpt5", &f, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "gpt5") != NULL);

    chat_parser *p;
    json_t *notarray = json_object();
    chat_parse_options o = {CHAT_FORMAT_HERMES, 1, 0, notarray, 0};
    CHECK_INT(chat_parser_open(&o, &p, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "tools") != NULL);
    json_decref(notarray);
    o.tools = NULL;
    o.format = (chat_format)99;
    CHECK_INT(chat_parser_open(&o, &p, &err), BS_EINVAL);

    CHECK(chat_prompt_opens_reasoning("<|im_start|>assistant\n<think>\n"));
    CHECK(chat_prompt_opens_reasoning("<｜Assistant｜><think>"));
    CHECK(!chat_prompt_opens_reasoning("<｜Assistant｜><think></think>"));
    CHECK(!chat_prompt_opens_reasoning("<|im_start|>assistant\n"));
    CHECK(!chat_prompt_opens_reasoning(""));
}

/* ---- detection ---- */

static char *read_template(const char *name) {
    const char *dir = test_shared_dir();
    if (!dir) return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/fixtures/templates/%s.jinja", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static void test_detect_fixtures(void) {
    static const struct {
        const char *name;
        chat_format format;
        int reasoning;
    } cases[] = {
        {"Qwen-Qwen2.5-7B-Instruct", CHAT_FORMAT_HERMES, 0},
        {"Qwen-Qwen3-0.6B", CHAT_FORMAT_HERMES, 1},
        {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", CHAT_FORMAT_HERMES, 0},
        {"meta-llama-Llama-3.1-8B-Instruct", CHAT_FORMAT_LLAMA3, 0},
        {"meta-llama-Llama-3.2-3B-Instruct", CHAT_FORMAT_LLAMA3, 0},
        {"mistralai-Mistral-Nemo-Instruct-2407", CHAT_FORMAT_MISTRAL, 0},
        {"deepseek-ai-DeepSeek-V3.1", CHAT_FORMAT_DEEPSEEK_V3, 1},
        /* This SmolLM3 template has no tool markup, only <think>. */
        {"HuggingFaceTB-SmolLM3-3B", CHAT_FORMAT_CONTENT, 1},
    };
    int found = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *src = read_template(cases[i].name);
        if (!src) continue;
        found++;
        if (chat_format_detect(src) != cases[i].format ||
            chat_template_has_reasoning(src) != cases[i].reasoning) {
            fprintf(stderr, "  %s: detected %s (reasoning %d)\n", cases[i].name,
                    chat_format_name(chat_format_detect(src)), chat_template_has_reasoning(src));
            test_failed_ = 1;
        }
        free(src);
    }
    if (!found) SKIP("../shared/fixtures/templates absent");
}

static void test_detect_snippets(void) {
    CHECK_INT(chat_format_detect("{{- '<tool_call>\\n<function=' + tool_call.name + '>\\n' }}"
                                 "{{- '<parameter=' + args_name + '>\\n' }}"),
              CHAT_FORMAT_QWEN3_CODER);
    CHECK_INT(chat_format_detect("{{- '<minimax:tool_call>\\n' }}{{- '<invoke name=\"' + "
                                 "tool_call.name + '\">\\n' }}"),
              CHAT_FORMAT_MINIMAX_M2);
    CHECK_INT(chat_format_detect("{{ '<｜tool▁call▁begin｜>' + name }}"), CHAT_FORMAT_DEEPSEEK_V3);
    CHECK_INT(chat_format_detect("{% for m in messages %}{{ m.content }}{% endfor %}"),
              CHAT_FORMAT_CONTENT);
    CHECK_INT(chat_format_detect(""), CHAT_FORMAT_CONTENT);
}

int main(void) {
    RUN(test_hermes);
    RUN(test_reasoning_modes);
    RUN(test_qwen3_coder);
    RUN(test_llama3);
    RUN(test_mistral);
    RUN(test_deepseek);
    RUN(test_minimax);
    RUN(test_random_mixes);
    RUN(test_ids_and_events);
    RUN(test_release_timing);
    RUN(test_invalid_utf8);
    RUN(test_long_call);
    RUN(test_api);
    RUN(test_detect_fixtures);
    RUN(test_detect_snippets);
    TEST_MAIN_END();
}
