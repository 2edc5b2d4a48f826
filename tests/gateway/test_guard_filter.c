/* tests/gateway/test_guard_filter.c — the server's guardrail pieces without
 * a server: guard_set_build on configs (a bad guardrail names file:line),
 * and the output filter on recorded responses — whole JSON bodies, chat and
 * completion SSE streams fed split at every byte position, blocks
 * mid-stream, Responses events, and bodies it must leave alone. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/guard.h"
#include "../support/test.h"

#define CARD "4111 1111 1111 1111"

static const char *config_text =
    "models:\n"
    "  - {name: m, path: /models/m, guardrails: [mask]}\n"
    "guardrails:\n"
    "  - name: mask\n"
    "    pii: {EMAIL: anonymize, CREDIT_DEBIT_CARD_NUMBER: anonymize}\n"
    "  - name: stop\n"
    "    apply_to: [output]\n"
    "    denied_words: [forbidden]\n"
    "    blocked_output_message: \"[blocked]\"\n";

static guard_set *build(const char *yaml, bs_error *err) {
    gw_config *c = NULL;
    guard_set *g = NULL;
    if (gw_config_parse("guard.yaml", yaml, strlen(yaml), &c, err) == BS_OK) guard_set_build(c, &g, err);
    gw_config_unref(c);
    return g;
}

static void test_set_build(void) {
    bs_error err = {0};
    guard_set *g = build(config_text, &err);
    CHECK(g != NULL);
    CHECK(guard_set_find(g, "mask") != NULL);
    CHECK(guard_set_find(g, "stop") != NULL);
    CHECK(guard_set_find(g, "other") == NULL);
    CHECK(guard_set_find(NULL, "mask") == NULL);
    guard_set_free(g);
}

static void test_set_build_error_names_line(void) {
    bs_error err = {0};
    const char *bad = "guardrails:\n"
                      "  - name: ok\n"
                      "    pii: {EMAIL: anonymize}\n"
                      "  - name: broken\n"
                      "    pii: {EMAILL: anonymize}\n";
    guard_set *g = build(bad, &err);
    CHECK(g == NULL);
    CHECK(err.status != BS_OK);
    CHECK(strncmp(err.msg, "guard.yaml:4: guardrail broken: pii.EMAILL", 42) == 0);
    if (strncmp(err.msg, "guard.yaml:4: guardrail broken: pii.EMAILL", 42) != 0) fprintf(stderr, "  %s\n", err.msg);
}

/* A filter over the named policies of config_text; the set stays alive with it. */
typedef struct fixture {
    guard_set *set;
    guard_filter *f;
} fixture;

static fixture open_filter(const char *a, const char *b) {
    fixture x = {0};
    bs_error err = {0};
    x.set = build(config_text, &err);
    const gr_policy *p[2] = {guard_set_find(x.set, a), b ? guard_set_find(x.set, b) : NULL};
    guard_filter_open(p, b ? 2 : 1, &x.f, &err);
    return x;
}

static void close_filter(fixture *x) {
    guard_filter_release(x->f);
    guard_set_free(x->set);
}

/* Run body through a fresh filter in pieces cut at the given offsets (sorted,
 * n_cuts of them), then the final flush as the http layer does for streams;
 * whole: one call with final set (http_respond). */
static char *run(const char *a, const char *b, const char *body, const size_t *cuts, int n_cuts, int whole,
                 int *intervened, int *blocked) {
    fixture x = open_filter(a, b);
    srv_buf out = {0};
    size_t len = strlen(body), at = 0;
    int rc = 0;
    if (whole) {
        rc |= guard_filter_run(x.f, body, len, 1, &out);
    } else {
        for (int i = 0; i <= n_cuts; i++) {
            size_t end = i < n_cuts ? cuts[i] : len;
            rc |= guard_filter_run(x.f, body + at, end - at, 0, &out);
            at = end;
        }
        rc |= guard_filter_run(x.f, "", 0, 1, &out);
    }
    CHECK_INT(rc, 0);
    int iv = 0, bl = 0;
    guard_filter_outcome(x.f, &iv, &bl);
    if (intervened) *intervened = iv;
    if (blocked) *blocked = bl;
    close_filter(&x);
    buf_append(&out, "", 1);
    return out.data;
}

/* The data: payloads of an SSE text, parsed (a JSON array; [DONE] as the string). */
static json_t *events(const char *sse) {
    json_t *v = json_array();
    const char *p = sse;
    while ((p = strstr(p, "data: ")) != NULL) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        if (!e) break;
        json_t *j = json_loadb(p, (size_t)(e - p), 0, NULL);
        json_array_append_new(v, j ? j : json_stringn(p, (size_t)(e - p)));
        p = e + 2;
    }
    return v;
}

/* The concatenated delta.content (or text) of choice 0 across chunks. */
static char *streamed_text(const json_t *evs) {
    srv_buf b = {0};
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) {
        json_t *c = json_array_get(json_object_get(e, "choices"), 0);
        const char *t = json_string_value(json_object_get(json_object_get(c, "delta"), "content"));
        if (!t) t = json_string_value(json_object_get(c, "text"));
        if (t) buf_puts(&b, t);
    }
    buf_append(&b, "", 1);
    return b.data;
}

static const char *chunk_fmt =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},\"finish_reason\":null}]}\n\n";

static char *chat_stream(const char *const *pieces, int n) {
    srv_buf b = {0};
    buf_puts(&b, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
                 "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n");
    for (int i = 0; i < n; i++) buf_printf(&b, chunk_fmt, pieces[i]);
    buf_puts(&b, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
                 "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
                 "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
                 "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n"
                 "data: [DONE]\n\n");
    buf_append(&b, "", 1);
    return b.data;
}

static const char *whole_chat =
    "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Card " CARD " ok. Mail a@example.com now.\"},"
    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
    "\"total_tokens\":7}}";

static void test_json_chat_masked(void) {
    int iv, bl;
    char *out = run("mask", NULL, whole_chat, NULL, 0, 1, &iv, &bl);
    json_t *j = json_loads(out, 0, NULL);
    json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    CHECK_STR(json_string_value(json_object_get(json_object_get(c, "message"), "content")),
              "Card {CREDIT_DEBIT_CARD_NUMBER} ok. Mail {EMAIL} now.");
    CHECK_STR(json_string_value(json_object_get(c, "finish_reason")), "stop");
    json_t *g = json_object_get(j, "basalt_guardrail");
    CHECK_STR(json_string_value(json_object_get(g, "action")), "GUARDRAIL_INTERVENED");
    json_t *pii = json_object_get(json_object_get(json_array_get(json_object_get(g, "assessments"), 0),
                                                  "sensitiveInformationPolicy"), "piiEntities");
    CHECK_INT(json_array_size(pii), 2);
    CHECK_STR(json_string_value(json_object_get(json_array_get(pii, 0), "type")), "CREDIT_DEBIT_CARD_NUMBER");
    CHECK(json_object_get(json_array_get(pii, 0), "match") == NULL); /* the client never sees the card */
    CHECK_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 7);
    CHECK_INT(iv, 1);
    CHECK_INT(bl, 0);
    json_decref(j);
    free(out);
}

static void test_json_completion_blocked(void) {
    const char *body = "{\"id\":\"x\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"a "
                       "forbidden word\",\"logprobs\":null,\"finish_reason\":\"length\"},{\"index\":1,\"text\":\"fine\","
                       "\"logprobs\":null,\"finish_reason\":\"stop\"}]}";
    int iv, bl;
    char *out = run("stop", NULL, body, NULL, 0, 1, &iv, &bl);
    json_t *j = json_loads(out, 0, NULL);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0), *c1 = json_array_get(json_object_get(j, "choices"), 1);
    CHECK_STR(json_string_value(json_object_get(c0, "text")), "[blocked]");
    CHECK_STR(json_string_value(json_object_get(c0, "finish_reason")), "content_filter");
    CHECK_STR(json_string_value(json_object_get(c1, "text")), "fine");
    CHECK_STR(json_string_value(json_object_get(c1, "finish_reason")), "stop");
    json_t *assess = json_array_get(json_object_get(json_object_get(j, "basalt_guardrail"), "assessments"), 0);
    json_t *cw = json_array_get(json_object_get(json_object_get(assess, "wordPolicy"), "customWords"), 0);
    CHECK(json_object_get(cw, "match") == NULL);
    CHECK_STR(json_string_value(json_object_get(cw, "action")), "BLOCKED");
    CHECK_INT(iv, 1);
    CHECK_INT(bl, 1);
    json_decref(j);
    free(out);
}

static void test_passes_through(void) {
    const char *bodies[] = {
        "{\"error\":{\"message\":\"Card " CARD "\",\"type\":\"server_error\",\"param\":null,\"code\":null}}",
        "{\"object\":\"list\",\"data\":[{\"embedding\":[0.5]}]}",
        "not json at all " CARD,
        "",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        int iv;
        char *out = run("mask", NULL, bodies[i], NULL, 0, 1, &iv, NULL);
        CHECK_STR(out, bodies[i]);
        CHECK_INT(iv, 0);
        free(out);
    }
}

/* A card split over three SSE chunks: every split of the byte stream into
 * two pulls, and one byte per pull, give the same events, whose content is
 * the whole response's masked content. */
static void test_sse_every_split(void) {
    const char *pieces[] = {"Card 4111 11", "11 1111 1", "111 ok. Mail a@exa", "mple.com now."};
    char *sse = chat_stream(pieces, 4);
    char *ref = run("mask", NULL, sse, NULL, 0, 0, NULL, NULL);
    json_t *evs = events(ref);
    char *text = streamed_text(evs);
    CHECK_STR(text, "Card {CREDIT_DEBIT_CARD_NUMBER} ok. Mail {EMAIL} now.");
    size_t n = json_array_size(evs);
    CHECK_STR(json_string_value(json_array_get(evs, n - 1)), "[DONE]");
    json_t *usage = json_array_get(evs, n - 2), *fin = json_array_get(evs, n - 3);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(usage, "usage"), "total_tokens")), 7);
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(fin, "choices"), 0), "finish_reason")),
              "stop");
    CHECK_STR(json_string_value(json_object_get(json_object_get(fin, "basalt_guardrail"), "action")),
              "GUARDRAIL_INTERVENED");
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_array_get(json_object_get(json_array_get(evs, 0), "choices"), 0), "delta"), "role")),
              "assistant");
    /* the whole-body result for the same text */
    char *whole = run("mask", NULL, whole_chat, NULL, 0, 1, NULL, NULL);
    json_t *wj = json_loads(whole, 0, NULL);
    CHECK_STR(text, json_string_value(json_object_get(
                        json_object_get(json_array_get(json_object_get(wj, "choices"), 0), "message"), "content")));
    json_decref(wj);
    free(whole);
    size_t len = strlen(sse);
    int bad = 0;
    for (size_t cut = 1; cut < len; cut++) {
        char *out = run("mask", NULL, sse, &cut, 1, 0, NULL, NULL);
        bad += strcmp(out, ref) != 0;
        free(out);
    }
    size_t *bytes = malloc(len * sizeof *bytes);
    for (size_t i = 0; i + 1 < len; i++) bytes[i] = i + 1;
    char *out = run("mask", NULL, sse, bytes, (int)len - 1, 0, NULL, NULL);
    bad += strcmp(out, ref) != 0;
    free(out);
    free(bytes);
    CHECK_INT(bad, 0);
    json_decref(evs);
    free(text);
    free(ref);
    free(sse);
}

static void test_sse_block_mid_stream(void) {
    const char *pieces[] = {"All good here. ", "Now a forb", "idden thing. ", "More text."};
    char *sse = chat_stream(pieces, 4);
    int iv, bl;
    char *out = run("mask", "stop", sse, NULL, 0, 0, &iv, &bl);
    json_t *evs = events(out);
    char *text = streamed_text(evs);
    CHECK_STR(text, "All good here. ");
    size_t n = json_array_size(evs);
    /* the content_filter chunk, the usage chunk, [DONE]; nothing else after the block */
    json_t *blk = json_array_get(evs, n - 3);
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(blk, "choices"), 0), "finish_reason")),
              "content_filter");
    json_t *g = json_object_get(blk, "basalt_guardrail");
    CHECK_STR(json_string_value(json_object_get(g, "action")), "GUARDRAIL_INTERVENED");
    CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(g, "outputs"), 0), "text")), "[blocked]");
    CHECK(json_object_get(json_array_get(evs, n - 2), "usage") != NULL);
    CHECK_STR(json_string_value(json_array_get(evs, n - 1)), "[DONE]");
    CHECK(strstr(out, "More text") == NULL);
    CHECK_INT(iv, 1);
    CHECK_INT(bl, 1);
    json_decref(evs);
    free(text);
    free(out);
    free(sse);
}

/* A stream cut short (no finish chunk, no [DONE]): what was held back goes
 * out at the end, masked. */
static void test_sse_cut_short_flushes(void) {
    const char *sse = "data: {\"id\":\"t\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"mail "
                      "a@example.com\",\"finish_reason\":null}]}\n\n";
    char *out = run("mask", NULL, sse, NULL, 0, 0, NULL, NULL);
    json_t *evs = events(out);
    char *text = streamed_text(evs);
    CHECK_STR(text, "mail {EMAIL}");
    CHECK(strstr(out, "basalt_guardrail") != NULL);
    json_decref(evs);
    free(text);
    free(out);
}

static void test_responses(void) {
    const char *body =
        "{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":\"message\","
        "\"id\":\"msg_1\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"mail a@example.com"
        "\",\"annotations\":[],\"logprobs\":[{\"token\":\"a\"}]}]}]}";
    char *out = run("mask", NULL, body, NULL, 0, 1, NULL, NULL);
    json_t *j = json_loads(out, 0, NULL);
    json_t *part = json_array_get(json_object_get(json_array_get(json_object_get(j, "output"), 0), "content"), 0);
    CHECK_STR(json_string_value(json_object_get(part, "text")), "mail {EMAIL}");
    CHECK_INT(json_array_size(json_object_get(part, "logprobs")), 0);
    CHECK_STR(json_string_value(json_object_get(j, "status")), "completed");
    CHECK(json_object_get(j, "basalt_guardrail") != NULL);
    json_decref(j);
    free(out);
    const char *sse =
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,"
        "\"content_index\":0,\"delta\":\"mail a@exa\"}\n\n"
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,"
        "\"content_index\":0,\"delta\":\"mple.com\"}\n\n"
        "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"output_index\":0,"
        "\"content_index\":0,\"text\":\"mail a@example.com\"}\n\n";
    out = run("mask", NULL, sse, NULL, 0, 0, NULL, NULL);
    json_t *evs = events(out);
    srv_buf deltas = {0};
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) if (json_object_get(e, "delta")) buf_puts(&deltas, json_string_value(json_object_get(e, "delta")));
    buf_append(&deltas, "", 1);
    CHECK_STR(deltas.data, "mail {EMAIL}");
    CHECK_STR(json_string_value(json_object_get(json_array_get(evs, json_array_size(evs) - 1), "text")), "mail {EMAIL}");
    CHECK(strstr(out, "event: response.output_text.done\n") != NULL);
    buf_free(&deltas);
    json_decref(evs);
    free(out);
}

int main(void) {
    RUN(test_set_build);
    RUN(test_set_build_error_names_line);
    RUN(test_json_chat_masked);
    RUN(test_json_completion_blocked);
    RUN(test_passes_through);
    RUN(test_sse_every_split);
    RUN(test_sse_block_mid_stream);
    RUN(test_sse_cut_short_flushes);
    RUN(test_responses);
    TEST_MAIN_END();
}
