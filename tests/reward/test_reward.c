/* tests/reward/test_reward.c — the built-in graders on hand-computed
 * values: string_check, text_similarity (fuzzy_match, BLEU, GLEU, ROUGE),
 * templates, multi's calculate_output, json_schema, regex, and validation
 * errors naming the field. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reward/reward.h"
#include "../support/test.h"

/* Score one output against item with the grader given as JSON text; NAN on
 * parse failure (reported). */
static double score1(const char *grader_json, const char *output, const char *item_json) {
    json_t *gj = json_loads(grader_json, 0, NULL), *item = item_json ? json_loads(item_json, 0, NULL) : NULL;
    bs_reward_grader *g = NULL;
    bs_error err = {0};
    double s = NAN;
    if (!gj) {
        fprintf(stderr, "  bad grader JSON: %s\n", grader_json);
    } else if (reward_grader_parse(gj, &g, &err) != BS_OK) {
        fprintf(stderr, "  parse: %s\n", err.msg);
    } else {
        reward_sample sm = {.output_text = output, .item = item};
        reward_errors errs = {0};
        if (reward_score_batch(g, &sm, 1, &s, &errs, NULL, &err) != BS_OK) fprintf(stderr, "  score: %s\n", err.msg);
    }
    reward_grader_free(g);
    json_decref(gj);
    json_decref(item);
    return s;
}

/* The parse error of grader_json ("" when it parses). */
static const char *parse_error(const char *grader_json) {
    static bs_error err;
    memset(&err, 0, sizeof err);
    json_t *gj = json_loads(grader_json, 0, NULL);
    bs_reward_grader *g = NULL;
    if (reward_grader_parse(gj, &g, &err) == BS_OK) err.msg[0] = 0;
    reward_grader_free(g);
    json_decref(gj);
    return err.msg;
}

static int contains(const char *s, const char *sub) {
    if (!strstr(s, sub)) {
        fprintf(stderr, "  \"%s\" does not contain \"%s\"\n", s, sub);
        return 0;
    }
    return 1;
}

static void test_string_check(void) {
    const char *item = "{\"answer\":\"Paris\"}";
#define SC(op) "{\"type\":\"string_check\",\"name\":\"s\",\"input\":\"{{sample.output_text}}\",\"reference\":\"{{item.answer}}\",\"operation\":\"" op "\"}"
    CHECK_NEAR(score1(SC("eq"), "Paris", item), 1, 0);
    CHECK_NEAR(score1(SC("eq"), "paris", item), 0, 0);
    CHECK_NEAR(score1(SC("ne"), "paris", item), 1, 0);
    CHECK_NEAR(score1(SC("neq"), "Paris", item), 0, 0);
    CHECK_NEAR(score1(SC("like"), "It is Paris.", item), 1, 0);
    CHECK_NEAR(score1(SC("like"), "It is PARIS.", item), 0, 0);
    CHECK_NEAR(score1(SC("ilike"), "It is PARIS.", item), 1, 0);
    CHECK_NEAR(score1(SC("ilike"), "It is Rome.", item), 0, 0);
#undef SC
}

static void test_templates(void) {
    const char *item = "{\"a\":{\"b\":[10,{\"c\":\"x\"}]},\"n\":2.5,\"flag\":true}";
#define EQ(input, ref) "{\"type\":\"string_check\",\"name\":\"t\",\"input\":\"" input "\",\"reference\":\"" ref "\",\"operation\":\"eq\"}"
    CHECK_NEAR(score1(EQ("{{item.a.b[1].c}}", "x"), "", item), 1, 0);
    CHECK_NEAR(score1(EQ("{{ item.a.b.0 }}", "10"), "", item), 1, 0);
    CHECK_NEAR(score1(EQ("{{item.n}}|{{item.flag}}", "2.5|true"), "", item), 1, 0);
    CHECK_NEAR(score1(EQ("<{{item.missing.deep}}>", "<>"), "", item), 1, 0);
    CHECK_NEAR(score1(EQ("{{sample.output_json.name}}-{{sample.output_json.tags[1]}}", "Ann-b"),
                      "{\"name\":\"Ann\",\"tags\":[\"a\",\"b\"]}", item),
               1, 0);
    CHECK_NEAR(score1(EQ("[{{sample.output_json.name}}]", "[]"), "not json", item), 1, 0);
    CHECK_NEAR(score1(EQ("{{sample.output_text}}!", "hi!"), "hi", NULL), 1, 0);
#undef EQ
    CHECK(contains(parse_error("{\"type\":\"string_check\",\"name\":\"t\",\"input\":\"{{foo.bar}}\",\"reference\":\"\",\"operation\":\"eq\"}"),
                   "grader.input: unsupported variable \"foo.bar\""));
    CHECK(contains(parse_error("{\"type\":\"string_check\",\"name\":\"t\",\"input\":\"{{item.x\",\"reference\":\"\",\"operation\":\"eq\"}"),
                   "grader.input: unterminated"));
}

static void test_fuzzy_match(void) {
    /* LCS("kitten", "sitting") = "ittn" = 4: 2·4 / 13 (rapidfuzz: 61.538…) */
    CHECK_NEAR(reward_similarity("fuzzy_match", "kitten", "sitting"), 8.0 / 13.0, 1e-12);
    CHECK_NEAR(reward_similarity("fuzzy_match", "abc", "abc"), 1, 0);
    CHECK_NEAR(reward_similarity("fuzzy_match", "", ""), 1, 0);
    CHECK_NEAR(reward_similarity("fuzzy_match", "abc", ""), 0, 0);
    /* code points, not bytes: "é" vs "e" share nothing, "café"/"cafe" share 3 of 4+4 */
    CHECK_NEAR(reward_similarity("fuzzy_match", "caf\xc3\xa9", "cafe"), 6.0 / 8.0, 1e-12);
}

static void test_word_metrics(void) {
    const char *c = "The cat sat on the mat.", *r = "the cat sat on a mat";
    /* clipped precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty */
    CHECK_NEAR(reward_similarity("bleu", c, r), pow(1.0 / 12.0, 0.25), 1e-12);
    /* 11 matching 1..4-grams of 18 on each side */
    CHECK_NEAR(reward_similarity("gleu", c, r), 11.0 / 18.0, 1e-12);
    CHECK_NEAR(reward_similarity("rouge_1", c, r), 5.0 / 6.0, 1e-12);
    CHECK_NEAR(reward_similarity("rouge_2", c, r), 3.0 / 5.0, 1e-12);
    CHECK_NEAR(reward_similarity("rouge_3", c, r), 2.0 / 4.0, 1e-12);
    CHECK_NEAR(reward_similarity("rouge_4", c, r), 1.0 / 3.0, 1e-12);
    CHECK_NEAR(reward_similarity("rouge_5", c, r), 0, 0); /* 2 vs 2 five-grams, none shared */
    CHECK_NEAR(reward_similarity("rouge_l", c, r), 5.0 / 6.0, 1e-12);
    /* ROUGE-L with unequal lengths: LCS 2, P = 1, R = 2/3 → 0.8 */
    CHECK_NEAR(reward_similarity("rouge_l", "the cat", "the cat sat"), 0.8, 1e-12);
    /* brevity penalty exp(1 − 8/4) with all precisions 1 */
    CHECK_NEAR(reward_similarity("bleu", "a b c d", "a b c d e f g h"), exp(-1.0), 1e-12);
    CHECK_NEAR(reward_similarity("bleu", "a b c", "a b c"), 0, 0); /* no 4-grams: NLTK without smoothing */
    CHECK_NEAR(reward_similarity("bleu", "x y z w", "x y z w"), 1, 1e-12);
    CHECK(isnan(reward_similarity("meteor", "a", "a")));
    CHECK_NEAR(score1("{\"type\":\"text_similarity\",\"name\":\"s\",\"input\":\"{{sample.output_text}}\","
                      "\"reference\":\"{{item.ref}}\",\"evaluation_metric\":\"rouge_1\",\"pass_threshold\":0.9}",
                      c, "{\"ref\":\"the cat sat on a mat\"}"),
               5.0 / 6.0, 1e-12);
    CHECK(contains(parse_error("{\"type\":\"text_similarity\",\"name\":\"s\",\"input\":\"\",\"reference\":\"\","
                               "\"evaluation_metric\":\"cosine\"}"),
                   "grader.evaluation_metric: \"cosine\" is not supported"));
}

static void test_pass_flag(void) {
    json_t *gj = json_loads("{\"type\":\"text_similarity\",\"name\":\"s\",\"input\":\"{{sample.output_text}}\","
                            "\"reference\":\"abcd\",\"evaluation_metric\":\"fuzzy_match\",\"pass_threshold\":0.7}",
                            0, NULL);
    bs_reward_grader *g = NULL;
    bs_error err = {0};
    CHECK_OK(reward_grader_parse(gj, &g, &err), &err);
    reward_sample s[2] = {{.output_text = "abcd"}, {.output_text = "ab"}};
    double sc[2];
    json_t *m = NULL;
    CHECK_OK(reward_score_batch(g, s, 2, sc, NULL, &m, &err), &err);
    CHECK_NEAR(sc[0], 1, 0);
    CHECK_NEAR(sc[1], 4.0 / 6.0, 1e-12); /* the similarity, not the pass flag */
    CHECK(json_is_true(json_object_get(json_array_get(m, 0), "passed")));
    CHECK(json_is_false(json_object_get(json_array_get(m, 1), "passed")));
    json_decref(m);
    reward_grader_free(g);
    json_decref(gj);
}

/* Evaluate f as calculate_output over a = 1 (a string check that always
 * passes) and b_2 = 0.4 (fuzzy_match of "ab" against "abcdefgh"). */
static double formula(const char *f) {
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"type\":\"multi\",\"name\":\"m\",\"graders\":{"
             "\"a\":{\"type\":\"string_check\",\"name\":\"a\",\"input\":\"x\",\"reference\":\"x\",\"operation\":\"eq\"},"
             "\"b_2\":{\"type\":\"text_similarity\",\"name\":\"b\",\"input\":\"{{sample.output_text}}\","
             "\"reference\":\"abcdefgh\",\"evaluation_metric\":\"fuzzy_match\"}},"
             "\"calculate_output\":\"%s\"}",
             f);
    return score1(buf, "ab", NULL); /* b_2 = 2·2 / 10 = 0.4 */
}

static void test_multi_formula(void) {
    CHECK_NEAR(formula("(a + b_2) / 2"), 0.7, 1e-12);
    CHECK_NEAR(formula("a - b_2 * 2"), 0.2, 1e-12);
    CHECK_NEAR(formula("2 ^ 3 ^ 2"), 512, 0);
    CHECK_NEAR(formula("-2^2"), -4, 0);
    CHECK_NEAR(formula("max(1, 2, 3) - min(4, a)"), 2, 0);
    CHECK_NEAR(formula("sqrt(16) + abs(-3) + floor(2.7) + ceil(2.1) + log(exp(1))"), 13, 1e-12);
    CHECK_NEAR(formula("0.5*a + .5e0 * b_2"), 0.7, 1e-12);
    CHECK(isnan(formula("a / (b_2 - b_2) * 0"))); /* 0·inf: unscorable, not a crash */
    CHECK(contains(parse_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"string_check\","
                               "\"name\":\"a\",\"input\":\"x\",\"reference\":\"x\",\"operation\":\"eq\"}},"
                               "\"calculate_output\":\"a + c\"}"),
                   "grader.calculate_output: unknown variable (not a key of graders) at offset 4"));
    CHECK(contains(parse_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"string_check\","
                               "\"name\":\"a\",\"input\":\"x\",\"reference\":\"x\",\"operation\":\"eq\"}},"
                               "\"calculate_output\":\"(a + 1\"}"),
                   "grader.calculate_output: expected ')'"));
    CHECK(contains(parse_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"string_check\","
                               "\"name\":\"a\",\"input\":\"x\",\"reference\":\"x\",\"operation\":\"eq\"}},"
                               "\"calculate_output\":\"pow(a)\"}"),
                   "unknown function"));
    CHECK(contains(parse_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"string_check\","
                               "\"name\":\"a\",\"input\":\"x\",\"reference\":\"x\"}},\"calculate_output\":\"a\"}"),
                   "grader.graders.a.operation: required"));
    CHECK(contains(parse_error("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{\"a\":{\"type\":\"multi\",\"name\":\"x\"}},"
                               "\"calculate_output\":\"a\"}"),
                   "grader.graders.a.type: multi graders cannot be nested"));
}

static void test_multi_metrics(void) {
    json_t *gj = json_loads("{\"type\":\"multi\",\"name\":\"m\",\"graders\":{"
                            "\"exact\":{\"type\":\"string_check\",\"name\":\"e\",\"input\":\"{{sample.output_text}}\","
                            "\"reference\":\"{{item.answer}}\",\"operation\":\"eq\"},"
                            "\"sim\":{\"type\":\"text_similarity\",\"name\":\"s\",\"input\":\"{{sample.output_text}}\","
                            "\"reference\":\"{{item.answer}}\",\"evaluation_metric\":\"rouge_1\"}},"
                            "\"calculate_output\":\"0.5 * exact + 0.5 * sim\"}",
                            0, NULL);
    json_t *item = json_pack("{s:s}", "answer", "blue sky");
    bs_reward_grader *g = NULL;
    bs_error err = {0};
    CHECK_OK(reward_grader_parse(gj, &g, &err), &err);
    reward_sample s[2] = {{.output_text = "blue sky", .item = item}, {.output_text = "blue sea", .item = item}};
    double sc[2];
    json_t *m = NULL;
    reward_errors errs = {0};
    CHECK_OK(reward_score_batch(g, s, 2, sc, &errs, &m, &err), &err);
    CHECK_NEAR(sc[0], 1, 1e-12);
    CHECK_NEAR(sc[1], 0.25, 1e-12);
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(m, 1), "exact")), 0, 0);
    CHECK_NEAR(json_real_value(json_object_get(json_array_get(m, 1), "sim")), 0.5, 1e-12);
    CHECK_STR(reward_grader_type(g), "multi");
    CHECK_STR(reward_grader_name(g), "m");
    json_decref(m);
    json_decref(item);
    reward_grader_free(g);
    json_decref(gj);
}

static void test_json_schema(void) {
    const char *schema =
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1},"
        "\"age\":{\"type\":\"integer\",\"minimum\":0},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]}}},"
        "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";
    char g[1024], gp[1024];
    snprintf(g, sizeof g, "{\"type\":\"json_schema\",\"name\":\"js\",\"schema\":%s}", schema);
    snprintf(gp, sizeof gp, "{\"type\":\"json_schema\",\"name\":\"js\",\"schema\":%s,\"partial_credit\":true}", schema);
    CHECK_NEAR(score1(g, "{\"name\":\"Ann\",\"age\":3}", NULL), 1, 0);
    CHECK_NEAR(score1(g, "{\"name\":\"Ann\",\"age\":3.0,\"tags\":[\"a\",\"b\"]}", NULL), 1, 0);
    CHECK_NEAR(score1(g, "{\"name\":\"Ann\",\"age\":3,\"tags\":[\"c\"]}", NULL), 0, 0);
    CHECK_NEAR(score1(g, "{\"name\":\"Ann\",\"age\":3,\"extra\":1}", NULL), 0, 0);
    CHECK_NEAR(score1(g, "{\"name\":\"Ann\",\"age\":-1}", NULL), 0, 0);
    CHECK_NEAR(score1(gp, "{\"name\":\"Ann\",\"age\":-1}", NULL), 0.5, 0);
    CHECK_NEAR(score1(gp, "{\"age\":2}", NULL), 0.5, 0);
    CHECK_NEAR(score1(gp, "not json", NULL), 0, 0);
    CHECK_NEAR(score1("{\"type\":\"json_schema\",\"name\":\"p\",\"input\":\"{{item.code}}\","
                      "\"schema\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}$\"}}",
                      "", "{\"code\":\"\\\"ABC\\\"\"}"),
               1, 0);
    CHECK_NEAR(score1("{\"type\":\"json_schema\",\"name\":\"o\",\"schema\":{\"oneOf\":[{\"type\":\"integer\"},"
                      "{\"type\":\"number\",\"maximum\":10}]}}",
                      "5", NULL),
               0, 0); /* matches both branches */
    CHECK(contains(parse_error("{\"type\":\"json_schema\",\"name\":\"js\",\"schema\":{\"type\":\"object\","
                               "\"properties\":{\"a\":{\"$ref\":\"#/x\"}}}}"),
                   "grader.schema.properties.a.$ref: unsupported JSON Schema keyword"));
    CHECK(contains(parse_error("{\"type\":\"json_schema\",\"name\":\"js\"}"), "grader.schema: required"));
}

static void test_regex(void) {
    const char *g = "{\"type\":\"regex\",\"name\":\"r\",\"pattern\":\"answer:\\\\s*(?<n>-?\\\\d+)\","
                    "\"groups\":{\"n\":\"{{item.answer}}\"}}";
    const char *item = "{\"answer\":42}";
    CHECK_NEAR(score1(g, "so the answer: 42", item), 1, 0);
    CHECK_NEAR(score1(g, "so the answer: 41", item), 0, 0);
    CHECK_NEAR(score1(g, "no idea", item), 0, 0);
    CHECK_NEAR(score1("{\"type\":\"regex\",\"name\":\"b\",\"pattern\":\"\\\\\\\\boxed\\\\{\\\\d+\\\\}\"}", "x \\boxed{7}", NULL),
               1, 0);
    CHECK(contains(parse_error("{\"type\":\"regex\",\"name\":\"r\",\"pattern\":\"(a\"}"), "grader.pattern: "));
    CHECK(contains(parse_error("{\"type\":\"regex\",\"name\":\"r\",\"pattern\":\"(?<x>a)\",\"groups\":{\"y\":\"1\"}}"),
                   "grader.groups.y: the pattern has no group named \"y\""));
}

static void test_validation_errors(void) {
    CHECK(contains(parse_error("{\"name\":\"x\"}"), "grader.type: required string"));
    CHECK(contains(parse_error("{\"type\":\"score_model\",\"name\":\"x\"}"), "grader.type: unknown grader type \"score_model\" (not supported"));
    CHECK(contains(parse_error("{\"type\":\"string_check\",\"input\":\"a\",\"reference\":\"b\",\"operation\":\"eq\"}"),
                   "grader.name: required"));
    CHECK(contains(parse_error("{\"type\":\"string_check\",\"name\":\"x\",\"input\":\"a\",\"reference\":\"b\",\"operation\":\"is\"}"),
                   "grader.operation: must be one of eq, ne, like, ilike"));
    CHECK(contains(parse_error("{\"type\":\"string_check\",\"name\":\"x\",\"input\":1,\"reference\":\"b\",\"operation\":\"eq\"}"),
                   "grader.input: must be a string"));
    CHECK(contains(parse_error("{\"type\":\"http\",\"name\":\"h\",\"url\":\"ftp://x\"}"), "grader.url: must be an http"));
    CHECK(contains(parse_error("{\"type\":\"http\",\"name\":\"h\",\"url\":\"http://x\",\"timeout_ms\":0}"),
                   "grader.timeout_ms: must be an integer in [1, 900000]"));
    CHECK(contains(parse_error("{\"type\":\"http\",\"name\":\"h\",\"url\":\"http://x\",\"headers\":{\"A\":\"b\\r\\nX: y\"}}"),
                   "grader.headers.A: invalid header"));
    CHECK(contains(parse_error("{\"type\":\"command\",\"name\":\"c\",\"argv\":[]}"), "grader.argv: required non-empty array"));
    CHECK(contains(parse_error("{\"type\":\"lambda\",\"lambda\":{\"function\":\"arn:aws:lambda:us-east-1:1:function:no-such-fn:prod\"}}"),
                   "set BASALT_LAMBDA_NO_SUCH_FN_URL"));
    CHECK(contains(parse_error("[1]"), "grader: must be an object"));
    CHECK_STR(parse_error("{\"type\":\"http\",\"name\":\"h\",\"url\":\"http://127.0.0.1:1/x\",\"headers\":{\"A\":\"b\"},"
                          "\"batch_size\":2,\"concurrency\":2,\"timeout_ms\":100,\"retries\":0}"),
              "");
}

int main(void) {
    RUN(test_string_check);
    RUN(test_templates);
    RUN(test_fuzzy_match);
    RUN(test_word_metrics);
    RUN(test_pass_flag);
    RUN(test_multi_formula);
    RUN(test_multi_metrics);
    RUN(test_json_schema);
    RUN(test_regex);
    RUN(test_validation_errors);
    TEST_MAIN_END();
}
