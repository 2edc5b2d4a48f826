/* JSON Schema -> grammar: compile errors with their paths, accept/reject
 * tables, the token mask against per-token brute force, and random
 * generation under the mask on a byte-level and real vocabularies, every
 * output checked by the independent Python validator
 * (tests/oracle/validate_json_schema.py). */
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "../support/oracle.h"
#include "../support/test.h"
#include "engine/grammar.h"
#include "engine/json_schema.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

static const char *const VALIDATOR = "tests/oracle/validate_json_schema.py";

/* Schemas of the generation tests: every supported feature appears. */
static const char *const GEN_SCHEMAS[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},\"age\":{\"type\":"
    "\"integer\",\"minimum\":0,\"maximum\":150},\"email\":{\"type\":\"string\",\"format\":\"email\"}},"
    "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"color\":{\"enum\":[\"red\",\"green\",\"greed\",1,null,{\"a\":[1,2]}]},"
    "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"color\",\"ok\"],\"additionalProperties\":false}",
    "{\"anyOf\":[{\"type\":\"string\",\"pattern\":\"^[a-z]{1,5}$\"},{\"type\":\"integer\",\"minimum\":-20,"
    "\"exclusiveMaximum\":20},{\"type\":\"null\"}]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"number\",\"minimum\":-1.0,\"maximum\":1},\"minItems\":2,"
    "\"maxItems\":4}",
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"kids\":{\"type\":"
    "\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},\"required\":[\"v\"],"
    "\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
    "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}(-[a-z]+)?$\"},"
    "\"tag\":{\"type\":\"string\",\"pattern\":\"x\\\\.y\\\\s[^a-z\\\"]\"}},\"required\":[\"code\",\"tag\"],"
    "\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"format\":\"date\"},\"t\":{\"type\":\"string\","
    "\"format\":\"date-time\"},\"u\":{\"type\":\"string\",\"format\":\"uuid\"},\"tm\":{\"type\":\"string\","
    "\"format\":\"time\"}},\"required\":[\"d\",\"t\",\"u\",\"tm\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":[\"string\",\"null\"],\"minLength\":2},\"b\":{\"type\":"
    "[\"integer\",\"boolean\"]}},\"required\":[\"a\",\"b\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"}},\"required\":[\"id\"]}",
    "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"boolean\"}},\"additionalProperties\":{\"type\":"
    "\"integer\",\"minimum\":0,\"maximum\":9}}",
    "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\",\"const\":\"point\"},{\"type\":\"number\"},"
    "{\"type\":\"number\"}],\"items\":false,\"minItems\":3}",
    "{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},\"center\":{\"type\":\"object\","
    "\"properties\":{\"x\":{\"type\":\"number\",\"exclusiveMinimum\":0},\"y\":{\"type\":\"number\",\"maximum\":-2}},"
    "\"required\":[\"x\",\"y\"],\"additionalProperties\":false}},\"required\":[\"kind\",\"center\"],"
    "\"additionalProperties\":false}",
    "{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"t\":{\"const\":\"a\"},\"n\":{\"type\":\"integer\"}},"
    "\"required\":[\"t\",\"n\"],\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"t\":"
    "{\"const\":\"b\"},\"s\":{\"type\":\"string\"}},\"required\":[\"t\",\"s\"],\"additionalProperties\":false}]}",
    "{\"type\":\"object\"}",
    "{\"type\":\"object\",\"properties\":{\"w\":{\"enum\":[\"café\",\"cafe\",\"naïve\",\"日本\"]},\"s\":{\"type\":"
    "\"string\",\"minLength\":1,\"maxLength\":3}},\"required\":[\"w\",\"s\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"val\":{\"type\":\"integer\",\"minimum\":100,\"maximum\":1000},"
    "\"next\":{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}},\"required\":[\"val\",\"next\"],"
    "\"additionalProperties\":false}",
};
#define N_GEN_SCHEMAS (int)(sizeof GEN_SCHEMAS / sizeof GEN_SCHEMAS[0])

static json_t *load(const char *text) {
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);
    if (!j) {
        fprintf(stderr, "  bad test JSON: %s: %s\n", je.text, text);
        test_failed_ = 1;
    }
    return j;
}

static bs_grammar *compile(const char *schema) {
    json_t *j = load(schema);
    bs_grammar *g = NULL;
    bs_error err = {0};
    if (j) CHECK_OK(grammar_from_json_schema(j, "schema", &g, &err), &err);
    json_decref(j);
    return g;
}

/* ---- compile errors --------------------------------------------------------------- */

static void expect_error(const char *schema, bs_status status, const char *msg) {
    json_t *j = load(schema);
    if (!j) return;
    bs_grammar *g = NULL;
    bs_error err = {0};
    bs_status st = grammar_from_json_schema(j, "response_format.json_schema.schema", &g, &err);
    json_decref(j);
    CHECK(g == NULL);
    grammar_free(g);
    if (st != status || !strstr(err.msg, msg)) {
        fprintf(stderr, "  %s\n    -> %s \"%s\"\n    expected %s \"%s\"\n", schema, bs_status_name(st), err.msg,
                bs_status_name(status), msg);
        test_failed_ = 1;
    }
}

#define P "response_format.json_schema.schema"

static void test_unsupported_keywords(void) {
    expect_error("{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"multipleOf\":2}}}",
                 BS_EUNSUPPORTED, P ".properties.age: keyword 'multipleOf' is not supported");
    expect_error("{\"type\":\"array\",\"uniqueItems\":true}", BS_EUNSUPPORTED,
                 P ": keyword 'uniqueItems' is not supported");
    expect_error("{\"type\":\"object\",\"patternProperties\":{\"^x\":{}}}", BS_EUNSUPPORTED,
                 P ": keyword 'patternProperties' is not supported");
    expect_error("{\"not\":{\"type\":\"null\"}}", BS_EUNSUPPORTED, P ": keyword 'not' is not supported");
    expect_error("{\"type\":\"object\",\"minProperties\":1}", BS_EUNSUPPORTED,
                 P ": keyword 'minProperties' is not supported");
    expect_error("{\"type\":\"array\",\"items\":{\"if\":{}}}", BS_EUNSUPPORTED,
                 P ".items: keyword 'if' is not supported");
    expect_error("{\"type\":\"string\",\"format\":\"ipv4\"}", BS_EUNSUPPORTED, P ": format 'ipv4' is not supported");
    expect_error("{\"type\":\"string\",\"pattern\":\"(?=a)b\"}", BS_EUNSUPPORTED,
                 P ".pattern: pattern: a group with '(?' is not supported");
    expect_error("{\"type\":\"string\",\"pattern\":\"\\\\bword\"}", BS_EUNSUPPORTED,
                 P ".pattern: pattern: escape '\\b' is not supported");
    expect_error("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", BS_EUNSUPPORTED,
                 P ".pattern: pattern: escape '\\1' is not supported");
    expect_error("{\"type\":\"string\",\"pattern\":\"a^b\"}", BS_EUNSUPPORTED,
                 "pattern: an anchor inside the pattern is not supported");
    expect_error("{\"type\":\"string\",\"pattern\":\"^a|b$\"}", BS_EUNSUPPORTED,
                 "an anchor with a top-level '|' is not supported");
    expect_error("{\"type\":\"string\",\"pattern\":\"a*+\"}", BS_EUNSUPPORTED, "a possessive quantifier");
    expect_error("{\"type\":\"string\",\"pattern\":\"^a\",\"maxLength\":3}", BS_EUNSUPPORTED,
                 "combining pattern, format and minLength/maxLength is not supported");
    expect_error("{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", BS_EUNSUPPORTED,
                 "'allOf' with more than one schema is not supported");
    expect_error("{\"$ref\":\"http://example.com/s.json\"}", BS_EUNSUPPORTED, "only local references");
    expect_error("{\"type\":\"number\",\"minimum\":0.5}", BS_EUNSUPPORTED,
                 P ": non-integer bound 0.5 for 'minimum' is not supported");
    expect_error("{\"type\":\"integer\",\"maximum\":1e20}", BS_EUNSUPPORTED, "beyond +-10^15");
    expect_error("{\"type\":\"string\",\"minimum\":1}", BS_EUNSUPPORTED,
                 P ": keyword 'minimum' does not apply to the schema's type");
    expect_error("{\"enum\":[1,2],\"minimum\":1}", BS_EUNSUPPORTED, "keyword 'minimum' beside enum/const");
    expect_error("{\"$ref\":\"#/$defs/a\",\"type\":\"string\",\"$defs\":{\"a\":{}}}", BS_EUNSUPPORTED,
                 P ": keyword 'type' beside '$ref' is not supported");
    expect_error("{\"type\":\"object\",\"required\":[\"x\"]}", BS_EUNSUPPORTED,
                 "required property 'x' is not in 'properties'");
    expect_error("{\"type\":\"array\",\"maxItems\":100000}", BS_EUNSUPPORTED, "'maxItems' above 4096");
    expect_error("false", BS_EUNSUPPORTED, P ": schema 'false' accepts nothing");
}

static void test_invalid_schemas(void) {
    expect_error("{\"type\":\"strin\"}", BS_EINVAL, P ": unknown type 'strin'");
    expect_error("{\"type\":3}", BS_EINVAL, "'type' must be a string or an array of strings");
    expect_error("{\"type\":\"object\",\"properties\":[1]}", BS_EINVAL, P ": 'properties' must be an object");
    expect_error("{\"type\":\"object\",\"properties\":{\"a\":3}}", BS_EINVAL,
                 P ".properties.a: a schema must be an object or a boolean");
    expect_error("{\"type\":\"object\",\"required\":\"a\"}", BS_EINVAL, "'required' must be an array of strings");
    expect_error("{\"type\":\"string\",\"minLength\":-1}", BS_EINVAL, "'minLength' must be a non-negative integer");
    expect_error("{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", BS_EINVAL, "maxItems is below minItems");
    expect_error("{\"type\":\"integer\",\"minimum\":5,\"exclusiveMaximum\":5}", BS_EINVAL,
                 "the numeric range is empty");
    expect_error("{\"enum\":[]}", BS_EINVAL, "'enum' must be a non-empty array");
    expect_error("{\"type\":\"string\",\"enum\":[1,2]}", BS_EINVAL, "no 'enum' value has the schema's type");
    expect_error("{\"$ref\":\"#/$defs/nope\"}", BS_EINVAL, P ": $ref '#/$defs/nope' not found");
    expect_error("{\"type\":\"string\",\"pattern\":\"(ab\"}", BS_EINVAL, "pattern: missing ')'");
    expect_error("{\"type\":\"string\",\"pattern\":\"[b-a]\"}", BS_EINVAL, "pattern: range out of order");
    expect_error("{\"anyOf\":[]}", BS_EINVAL, "'anyOf' must be a non-empty array");
}

/* $ref cycles terminate: a cycle that never produces text is an error, a
 * recursion with a way out compiles. */
static void test_ref_cycles(void) {
    expect_error("{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}",
                 BS_EINVAL, P ": grammar: rule");
    expect_error("{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#\"}},\"required\":[\"next\"]}",
                 BS_EINVAL, "can never finish");
    bs_grammar *g = compile("{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#\"}}}");
    CHECK(g != NULL);
    grammar_free(g);
    /* deep nesting is bounded instead of overflowing the stack */
    static char deep[8192];
    deep[0] = 0;
    for (int i = 0; i < 200; i++) strcat(deep, "{\"type\":\"array\",\"items\":");
    strcat(deep, "{}");
    for (int i = 0; i < 200; i++) strcat(deep, "}");
    expect_error(deep, BS_EUNSUPPORTED, P ".items.items.items.items"); /* the long path is cut to fit */
}

/* ---- accept / reject tables --------------------------------------------------------- */

typedef struct accept_case {
    const char *text;
    int ok;
} accept_case;

static void check_cases(const char *schema, const accept_case *cases, int n) {
    bs_grammar *g = compile(schema);
    if (!g) return;
    for (int i = 0; i < n; i++) {
        bs_grammar_matcher *m = NULL;
        bs_error err = {0};
        CHECK_OK(grammar_matcher_open(g, NULL, &m, &err), &err);
        if (!m) break;
        int ok = grammar_matcher_accept_bytes(m, cases[i].text, strlen(cases[i].text), &err) == BS_OK &&
                 grammar_matcher_complete(m);
        if (ok != cases[i].ok) {
            fprintf(stderr, "  %s\n    %s: got %d, expected %d\n", schema, cases[i].text, ok, cases[i].ok);
            test_failed_ = 1;
        }
        grammar_matcher_close(m);
    }
    grammar_free(g);
}

#define CASES(schema, ...)                                                   \
    do {                                                                     \
        static const accept_case c_[] = {__VA_ARGS__};                       \
        check_cases(schema, c_, (int)(sizeof c_ / sizeof c_[0]));            \
    } while (0)

static void test_objects(void) {
    CASES(GEN_SCHEMAS[0], {"{\"name\":\"ann\",\"age\":31}", 1}, {"{\"name\":\"ann\",\"age\":31,\"email\":\"a@b.co\"}", 1},
          {"{ \"name\" : \"ann\" ,\n  \"age\": 0 }", 1}, {"{\"age\":31,\"name\":\"ann\"}", 0},
          {"{\"name\":\"ann\"}", 0}, {"{\"name\":\"ann\",\"age\":151}", 0}, {"{\"name\":\"ann\",\"age\":-1}", 0},
          {"{\"name\":\"ann\",\"age\":31,\"x\":1}", 0}, {"{\"name\":\"abcdefghijklm\",\"age\":1}", 0},
          {"{\"name\":\"ann\",\"age\":31,\"email\":\"nope\"}", 0}, {"{\"name\":\"ann\",\"age\":31} ", 0},
          {"{\"name\":\"ann\",\"age\":31", 0}, {"{\"name\":\"ann\",\"age\":031}", 0},
          {"{\"name\":\"ann\",    \"age\":31}", 0}); /* only one space of whitespace on a line */
    CASES(GEN_SCHEMAS[8], {"{\"id\":1}", 1}, {"{\"id\":1,\"x\":[true,{}],\"y\":null}", 1}, {"{\"x\":1,\"id\":1}", 0},
          {"{\"id\":1,\"id\":2}", 0}, {"{\"id\":1,\"i\":2,\"idx\":3}", 1}, {"{\"id\":1,\"\":2}", 1});
    CASES(GEN_SCHEMAS[9], {"{}", 1}, {"{\"x\":true}", 1}, {"{\"x\":true,\"k\":3}", 1}, {"{\"k\":3}", 1},
          {"{\"k\":10}", 0}, {"{\"k\":3,\"x\":true}", 0}, {"{\"x\":3}", 0});
    CASES(GEN_SCHEMAS[13], {"{}", 1}, {"{\"a\":[1,2.5e3,\"x\\u00e9\\n\"]}", 1}, {"[]", 0}, {"{\"a\":1,}", 0},
          {"{\"a\":01}", 0}, {"{\"a\":\"\\ud800\"}", 0});
}

static void test_scalars(void) {
    CASES(GEN_SCHEMAS[2], {"\"abc\"", 1}, {"\"abcdef\"", 0}, {"\"\"", 0}, {"-20", 1}, {"19", 1}, {"20", 0},
          {"-21", 0}, {"null", 1}, {"true", 0}, {"0", 1}, {"-0", 0});
    CASES("{\"type\":\"integer\",\"minimum\":-1234,\"maximum\":98765}", {"-1234", 1}, {"-1235", 0},
          {"-999", 1}, {"98765", 1}, {"98766", 0}, {"99999", 0}, {"10000", 1}, {"0", 1}, {"7", 1});
    CASES("{\"type\":\"integer\",\"exclusiveMinimum\":7}", {"7", 0}, {"8", 1}, {"123456789", 1}, {"-8", 0});
    CASES("{\"type\":\"number\",\"minimum\":-3,\"exclusiveMaximum\":2}", {"-3", 1}, {"-3.0", 1}, {"-3.01", 0},
          {"-2.99", 1}, {"1.999", 1}, {"2", 0}, {"2.0", 0}, {"0.5", 1}, {"1e0", 0});
    CASES("{\"type\":\"number\"}", {"1.5e-7", 1}, {"-0.0", 1}, {"1.", 0}, {".5", 0}, {"1e1234", 0},
          {"12345678901234567", 0});
    CASES(GEN_SCHEMAS[7], {"{\"a\":null,\"b\":3}", 1}, {"{\"a\":\"xy\",\"b\":true}", 1}, {"{\"a\":\"x\",\"b\":3}", 0},
          {"{\"a\":\"xy\",\"b\":1.5}", 0});
    CASES("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", {"\"ab\"", 1}, {"\"a\\u00e9\"", 1},
          {"\"日本語\"", 1}, {"\"日本語x\"", 0}, {"\"a\"", 0}, {"\"\\n\\t\"", 1});
    CASES("{\"enum\":[\"a\",\"ab\",\"abc\",\"b\",true,[1,{\"k\":null}],2.5]}", {"\"a\"", 1}, {"\"ab\"", 1},
          {"\"abc\"", 1}, {"\"abcd\"", 0}, {"\"c\"", 0}, {"true", 1}, {"[1,{\"k\":null}]", 1},
          {"[1, {\"k\":null}]", 0}, {"2.5", 1}, {"false", 0});
    CASES(GEN_SCHEMAS[14], {"{\"w\":\"café\",\"s\":\"x\"}", 1}, {"{\"w\":\"日本\",\"s\":\"xyz\"}", 1},
          {"{\"w\":\"caf\",\"s\":\"x\"}", 0}, {"{\"w\":\"naïve\",\"s\":\"\"}", 0});
}

static void test_strings_formats_patterns(void) {
    CASES(GEN_SCHEMAS[6], {"{\"d\":\"2024-02-29\",\"t\":\"1999-12-31T23:59:59.123+05:30\",\"u\":"
                           "\"123e4567-e89b-12d3-a456-426614174000\",\"tm\":\"00:00:00Z\"}", 1},
          {"{\"d\":\"2023-02-29\",\"t\":\"1999-12-31T23:59:59Z\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
           "\"tm\":\"00:00:00Z\"}", 0},
          {"{\"d\":\"2024-04-31\",\"t\":\"1999-12-31T23:59:59Z\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
           "\"tm\":\"00:00:00Z\"}", 0},
          {"{\"d\":\"2000-02-29\",\"t\":\"1999-12-31T24:00:00Z\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
           "\"tm\":\"00:00:00Z\"}", 0});
    CASES("{\"type\":\"string\",\"format\":\"date\"}", {"\"1900-02-29\"", 0}, {"\"2000-02-29\"", 1},
          {"\"1904-02-29\"", 1}, {"\"2024-13-01\"", 0});
    CASES(GEN_SCHEMAS[5], {"{\"code\":\"AB-123\",\"tag\":\"x.y 7\"}", 1},
          {"{\"code\":\"AB-123-abc\",\"tag\":\"__x.y\\tQ__\"}", 1}, {"{\"code\":\"AB-12\",\"tag\":\"x.y 7\"}", 0},
          {"{\"code\":\"AB-123\",\"tag\":\"xzy 7\"}", 0}, {"{\"code\":\"AB-123\",\"tag\":\"x.y a\"}", 0},
          {"{\"code\":\"AB-123\",\"tag\":\"x.y \\\"\"}", 0}, {"{\"code\":\"AB-123\",\"tag\":\"x.y \\\\\"}", 1});
    CASES("{\"type\":\"string\",\"pattern\":\"^(?:a|bc)+?\\\\.[\\\\d_]{2}\\\\u00e9?$\"}", {"\"abca.1_\"", 1},
          {"\"a.12é\"", 1}, {"\"a.1\"", 0}, {"\".12\"", 0}, {"\"b.12\"", 0});
    CASES("{\"type\":\"string\",\"pattern\":\"^[^a-z]$\"}", {"\"A\"", 1}, {"\"\\\"\"", 1}, {"\"\\\\\"", 1},
          {"\"\\u000a\"", 1}, {"\"é\"", 1}, {"\"a\"", 0}, {"\"AB\"", 0});
}

static void test_arrays_and_refs(void) {
    CASES(GEN_SCHEMAS[3], {"[0,1]", 1}, {"[ -1, 0.5, 1.0 ]", 1}, {"[0]", 0}, {"[0,0,0,0,0]", 0}, {"[1.5,0]", 0},
          {"[-1.01,0]", 0}, {"[]", 0});
    CASES(GEN_SCHEMAS[10], {"[\"point\",1,2]", 1}, {"[\"point\",1]", 0}, {"[\"point\",1,2,3]", 0},
          {"[\"pt\",1,2]", 0});
    CASES("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"string\"}],\"items\":"
          "{\"type\":\"null\"},\"maxItems\":3}",
          {"[]", 1}, {"[1]", 1}, {"[1,\"a\"]", 1}, {"[1,\"a\",null]", 1}, {"[1,\"a\",null,null]", 0},
          {"[\"a\"]", 0});
    CASES("{\"type\":\"array\",\"maxItems\":0}", {"[]", 1}, {"[ ]", 1}, {"[1]", 0});
    CASES(GEN_SCHEMAS[4], {"{\"v\":1}", 1}, {"{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3}]}", 1},
          {"{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3},{\"v\":4}]}", 0}, {"{\"v\":1,\"kids\":[{\"w\":2}]}", 0});
    CASES(GEN_SCHEMAS[15], {"{\"val\":100,\"next\":null}", 1},
          {"{\"val\":100,\"next\":{\"val\":1000,\"next\":{\"val\":555,\"next\":null}}}", 1},
          {"{\"val\":100,\"next\":{\"val\":1001,\"next\":null}}", 0});
    CASES(GEN_SCHEMAS[12], {"{\"t\":\"a\",\"n\":1}", 1}, {"{\"t\":\"b\",\"s\":\"\"}", 1}, {"{\"t\":\"a\",\"s\":\"\"}", 0});
    CASES("{\"type\":\"object\",\"properties\":{\"p\":{\"$ref\":\"#/definitions/x~1y\"}},\"definitions\":{\"x/y\":"
          "{\"type\":\"boolean\",\"title\":\"t\",\"description\":\"d\",\"default\":true}}}",
          {"{\"p\":true}", 1}, {"{\"p\":1}", 0});
}

/* ---- vocabularies ------------------------------------------------------------------- */

typedef struct vocab {
    const char *name;
    bs_tokenizer *tok;
    bs_token_trie *trie;
    int nv;
    float *late; /* bonus late in a sample: close strings and structures, open none, so samples end */
} vocab;

static void vocab_close(vocab *v) {
    token_trie_free(v->trie);
    tok_close(v->tok);
    free(v->late);
}

/* 0: ready; 1: fixture absent (skip); -1: failed. */
static int vocab_open(const char *name, vocab *v) {
    memset(v, 0, sizeof *v);
    v->name = name;
    bs_error err = {0};
    if (strcmp(name, "byte-level") == 0) {
        CHECK_OK(tok_open_byte_level(&v->tok, &err), &err);
    } else {
        const char *shared = test_shared_dir();
        if (!shared) return 1;
        char path[4096];
        snprintf(path, sizeof path, "%s/fixtures/vocab/ggml-vocab-%s.gguf", shared, name);
        if (access(path, R_OK) != 0) return 1;
        gguf_file *g = NULL;
        CHECK_OK(gguf_open(path, &g, &err), &err);
        if (g) CHECK_OK(tok_open_gguf(g, &v->tok, &err), &err);
        gguf_close(g);
    }
    if (!v->tok) return -1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK_OK(token_trie_build(v->tok, &v->trie, &err), &err);
    clock_gettime(CLOCK_MONOTONIC, &b);
    v->nv = tok_vocab_size(v->tok);
    fprintf(stderr, "  %s: %d tokens, trie built in %.1f ms\n", name, v->nv,
            (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) * 1e-6);
    v->late = calloc((size_t)v->nv, sizeof *v->late);
    if (!v->trie || !v->late) return -1;
    for (int i = 0; i < v->nv; i++) {
        const char *t = tok_token_text(v->tok, i);
        if (!t) continue;
        v->late[i] = 3.0f * (t[0] == '"') + 2.0f * (strchr(t, '}') || strchr(t, ']')) + 1.0f * !!strchr(t, '"') -
                     3.0f * (strchr(t, '{') || strchr(t, '[')) + 2.0f * !!strstr(t, "null") +
                     6.0f * (tok_is_eog(v->tok, i) || i == tok_eos_id(v->tok));
    }
    return 0;
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- mask against brute force --------------------------------------------------------- */

/* At each step of a random walk, the mask must allow exactly the tokens that
 * grammar_matcher_accept takes (tried one by one, rolled back). */
static void bruteforce(const char *vocab_name, int walks, int max_steps) {
    vocab v;
    int rc = vocab_open(vocab_name, &v);
    if (rc == 1) SKIP("vocabulary fixture absent");
    if (rc < 0) return vocab_close(&v);
    float *logits = malloc((size_t)v.nv * sizeof *logits);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    long checked = 0;
    const int schemas[] = {0, 5, 6, 13, 14};
    for (int w = 0; w < walks && !test_failed_; w++) {
        bs_grammar *g = compile(GEN_SCHEMAS[schemas[w % 5]]);
        bs_grammar_matcher *m = NULL;
        bs_error err = {0};
        if (g) CHECK_OK(grammar_matcher_open(g, v.trie, &m, &err), &err);
        for (int step = 0; m && step < max_steps && !test_failed_; step++) {
            for (int i = 0; i < v.nv; i++) logits[i] = 0;
            grammar_matcher_mask(m, logits, v.nv);
            int n_allowed = 0, pick = -1;
            for (int i = 0; i < v.nv; i++) {
                int allowed = logits[i] == 0;
                int takes = grammar_matcher_accept(m, i, &err) == BS_OK;
                if (takes) grammar_matcher_rollback(m, 1);
                if (allowed != takes) {
                    fprintf(stderr, "  %s walk %d step %d token %d (%s): mask %d, accept %d\n", vocab_name, w, step,
                            i, tok_token_text(v.tok, i), allowed, takes);
                    test_failed_ = 1;
                    break;
                }
                checked++;
                if (allowed && (pick < 0 || rnd(&seed) % (unsigned)(++n_allowed) == 0)) pick = i;
            }
            if (pick < 0 || tok_is_eog(v.tok, pick) || pick == tok_eos_id(v.tok)) break;
            CHECK_OK(grammar_matcher_accept(m, pick, &err), &err);
        }
        grammar_matcher_close(m);
        grammar_free(g);
    }
    fprintf(stderr, "  %s: %ld token decisions cross-checked\n", vocab_name, checked);
    free(logits);
    vocab_close(&v);
}

static void test_mask_bruteforce_byte_level(void) { bruteforce("byte-level", 10, 120); }
static void test_mask_bruteforce_gpt2(void) { bruteforce("gpt-2", 5, 12); }

/* ---- generation under the mask, validated by the oracle ---------------------------- */

/* Sample one output with random logits (v->late added after soft_cap
 * steps).  1: ended with EOS (text in *out), 0: hit the cap. */
static int sample(vocab *v, const bs_grammar *g, uint64_t *seed, int soft_cap, int cap, float *logits, char **out,
                  double *mask_s, long *mask_n) {
    bs_grammar_matcher *m = NULL;
    bs_error err = {0};
    CHECK_OK(grammar_matcher_open(g, v->trie, &m, &err), &err);
    if (!m) return 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    int n = 0, ended = 0;
    for (int step = 0; step < cap && !test_failed_; step++) {
        for (int i = 0; i < v->nv; i++) {
            logits[i] = (float)(rnd(seed) >> 40) / (float)(1 << 24);
            if (step > soft_cap) logits[i] += v->late[i];
        }
        double t0 = now_s();
        grammar_matcher_mask(m, logits, v->nv);
        *mask_s += now_s() - t0;
        (*mask_n)++;
        int best = -1;
        for (int i = 0; i < v->nv; i++)
            if (logits[i] != -INFINITY && (best < 0 || logits[i] > logits[best])) best = i;
        if (best < 0) {
            fprintf(stderr, "  %s: dead end after %d tokens\n", v->name, n);
            test_failed_ = 1;
            break;
        }
        CHECK_OK(grammar_matcher_accept(m, best, &err), &err);
        if (tok_is_eog(v->tok, best) || best == tok_eos_id(v->tok)) {
            ended = 1;
            break;
        }
        ids[n++] = best;
    }
    if (ended) {
        size_t len;
        CHECK_OK(tok_decode(v->tok, ids, (size_t)n, 0, out, &len, &err), &err);
        CHECK_INT(grammar_matcher_complete(m), 1);
    }
    free(ids);
    grammar_matcher_close(m);
    return ended && *out;
}

/* Runs the oracle on cases (a JSON list of {schema, texts}); returns its
 * verdicts or NULL (reported) when it could not run. */
static json_t *run_oracle(json_t *cases) {
    const char *py = test_python();
    char in[] = "/tmp/basalt-schema-XXXXXX";
    int fd = mkstemp(in);
    if (fd < 0) return NULL;
    close(fd);
    json_dump_file(cases, in, JSON_COMPACT);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s < %s", py, VALIDATOR, in);
    FILE *p = popen(cmd, "r");
    json_error_t je;
    json_t *res = p ? json_loadf(p, 0, &je) : NULL;
    if (p) pclose(p);
    unlink(in);
    if (!res) {
        fprintf(stderr, "  oracle produced no verdicts\n");
        test_failed_ = 1;
    }
    return res;
}

static void generate(const char *vocab_name, int per_schema, int soft_cap, int cap) {
    if (access(VALIDATOR, R_OK) != 0) SKIP("run from the repository root (oracle script not found)");
    vocab v;
    int rc = vocab_open(vocab_name, &v);
    if (rc == 1) SKIP("vocabulary fixture absent");
    if (rc < 0) return vocab_close(&v);
    float *logits = malloc((size_t)v.nv * sizeof *logits);
    uint64_t seed = 0x243F6A8885A308D3ull;
    double mask_s = 0;
    long mask_n = 0;
    int ended = 0, total = 0;
    json_t *cases = json_array();
    for (int s = 0; s < N_GEN_SCHEMAS && !test_failed_; s++) {
        bs_grammar *g = compile(GEN_SCHEMAS[s]);
        if (!g) continue;
        json_t *texts = json_array();
        for (int k = 0; k < per_schema && !test_failed_; k++) {
            char *out = NULL;
            total++;
            if (sample(&v, g, &seed, soft_cap, cap, logits, &out, &mask_s, &mask_n)) {
                ended++;
                json_array_append_new(texts, json_string(out));
            }
            free(out);
        }
        json_t *c = json_object();
        json_object_set_new(c, "schema", load(GEN_SCHEMAS[s]));
        json_object_set_new(c, "texts", texts);
        json_array_append_new(cases, c);
        grammar_free(g);
    }
    json_t *verdicts = test_failed_ ? NULL : run_oracle(cases);
    for (size_t s = 0; s < json_array_size(verdicts); s++) {
        json_t *vs = json_array_get(verdicts, s), *texts = json_object_get(json_array_get(cases, s), "texts");
        for (size_t k = 0; k < json_array_size(vs); k++) {
            if (json_is_null(json_array_get(vs, k))) continue;
            fprintf(stderr, "  schema %zu: %s\n    invalid: %s\n", s, json_string_value(json_array_get(texts, k)),
                    json_string_value(json_array_get(vs, k)));
            test_failed_ = 1;
        }
    }
    CHECK(ended * 10 >= total * 9); /* nearly every sample reaches EOS */
    fprintf(stderr, "  %s: %d/%d samples ended and validated; mask %.3f ms/step over %ld steps\n", vocab_name, ended,
            total, mask_n ? mask_s * 1e3 / (double)mask_n : 0.0, mask_n);
    json_decref(verdicts);
    json_decref(cases);
    free(logits);
    vocab_close(&v);
}

static void test_generate_byte_level(void) { generate("byte-level", 50, 150, 1500); }
static void test_generate_gpt2(void) { generate("gpt-2", 4, 25, 300); }
static void test_generate_llama_spm(void) { generate("llama-spm", 3, 25, 300); }
static void test_generate_deepseek(void) { generate("deepseek-llm", 1, 25, 300); }

static void test_json_object_grammar(void) {
    bs_grammar *g = NULL;
    bs_error err = {0};
    CHECK_OK(grammar_json_object(&g, &err), &err);
    if (!g) return;
    bs_grammar_matcher *m = NULL;
    CHECK_OK(grammar_matcher_open(g, NULL, &m, &err), &err);
    const char *doc = "{\"a\": [1, {\"b\": null}], \"c\": \"\\u1234\"}";
    if (m) CHECK_OK(grammar_matcher_accept_bytes(m, doc, strlen(doc), &err), &err);
    if (m) CHECK_INT(grammar_matcher_complete(m), 1);
    grammar_matcher_close(m);
    grammar_free(g);
}

/* EOS only when complete; special tokens never; nothing after EOS. */
static void test_eos_rules(void) {
    vocab v;
    if (vocab_open("byte-level", &v) != 0) return vocab_close(&v);
    bs_grammar *g = compile("{\"type\":\"boolean\"}");
    bs_grammar_matcher *m = NULL;
    bs_error err = {0};
    if (g) CHECK_OK(grammar_matcher_open(g, v.trie, &m, &err), &err);
    if (m) {
        float logits[300];
        int eos = tok_eos_id(v.tok);
        for (int i = 0; i < 300; i++) logits[i] = 1;
        grammar_matcher_mask(m, logits, 300);
        CHECK(logits['t'] == 1 && logits['f'] == 1 && logits['x'] == -INFINITY);
        CHECK(logits[eos] == -INFINITY && logits[299] == -INFINITY);
        CHECK_INT(grammar_matcher_accept(m, eos, &err), BS_EINVAL);
        CHECK_OK(grammar_matcher_accept(m, 't', &err), &err);
        CHECK_INT(grammar_matcher_accept(m, 'x', &err), BS_EINVAL);
        CHECK(strstr(err.msg, "token 120") != NULL);
        for (const char *p = "rue"; *p; p++) CHECK_OK(grammar_matcher_accept(m, (unsigned char)*p, &err), &err);
        for (int i = 0; i < 300; i++) logits[i] = 1;
        grammar_matcher_mask(m, logits, 300);
        CHECK(logits[eos] == 1);
        for (int i = 0; i < 256; i++) CHECK(logits[i] == -INFINITY);
        CHECK_OK(grammar_matcher_accept(m, eos, &err), &err);
        CHECK_INT(grammar_matcher_accept(m, eos, &err), BS_EINVAL);
        for (int i = 0; i < 300; i++) logits[i] = 1;
        grammar_matcher_mask(m, logits, 300);
        for (int i = 0; i < 300; i++) CHECK(logits[i] == -INFINITY);
        grammar_matcher_rollback(m, 1);
        CHECK_INT(grammar_matcher_complete(m), 1);
    }
    grammar_matcher_close(m);
    grammar_free(g);
    vocab_close(&v);
}

int main(void) {
    RUN(test_unsupported_keywords);
    RUN(test_invalid_schemas);
    RUN(test_ref_cycles);
    RUN(test_objects);
    RUN(test_scalars);
    RUN(test_strings_formats_patterns);
    RUN(test_arrays_and_refs);
    RUN(test_json_object_grammar);
    RUN(test_eos_rules);
    RUN(test_mask_bruteforce_byte_level);
    RUN(test_mask_bruteforce_gpt2);
    RUN(test_generate_byte_level);
    RUN(test_generate_gpt2);
    RUN(test_generate_llama_spm);
    RUN(test_generate_deepseek);
    TEST_MAIN_END();
}
