/* GBNF parsing, validation errors and the byte-level matcher (accept,
 * complete, rollback) on hand-written grammars. */
#include <stdint.h>

#include "../support/test.h"
#include "engine/grammar.h"

/* 1 when text is a complete sentence of g, 0 when rejected or incomplete. */
static int matches(const bs_grammar *g, const char *text) {
    bs_grammar_matcher *m = NULL;
    bs_error err = {0};
    if (grammar_matcher_open(g, NULL, &m, &err) != BS_OK) return -1;
    int ok = grammar_matcher_accept_bytes(m, text, strlen(text), &err) == BS_OK && grammar_matcher_complete(m);
    grammar_matcher_close(m);
    return ok;
}

/* 1 when text is a prefix of some sentence. */
static int viable(const bs_grammar *g, const char *text) {
    bs_grammar_matcher *m = NULL;
    bs_error err = {0};
    if (grammar_matcher_open(g, NULL, &m, &err) != BS_OK) return -1;
    int ok = grammar_matcher_accept_bytes(m, text, strlen(text), &err) == BS_OK;
    grammar_matcher_close(m);
    return ok;
}

static bs_grammar *parse(const char *text) {
    bs_grammar *g = NULL;
    bs_error err = {0};
    CHECK_OK(grammar_parse_gbnf(text, &g, &err), &err);
    return g;
}

static void test_literals_and_classes(void) {
    bs_grammar *g = parse("root ::= \"a\" [b-d]+ ( \"x\" | \"yz\" )? # comment\n");
    if (!g) return;
    CHECK_INT(matches(g, "ab"), 1);
    CHECK_INT(matches(g, "abcdx"), 1);
    CHECK_INT(matches(g, "abyz"), 1);
    CHECK_INT(matches(g, "a"), 0);
    CHECK_INT(matches(g, "abe"), 0);
    CHECK_INT(matches(g, "abxx"), 0);
    CHECK_INT(matches(g, "aby"), 0);
    CHECK_INT(viable(g, "aby"), 1);
    CHECK_INT(viable(g, "b"), 0);
    grammar_free(g);
}

static void test_utf8_classes(void) {
    bs_grammar *g = parse("root ::= [α-ω]+ \"-\" [^a-z\\n]* \".\" . \"\\u00e9\"\n");
    if (!g) return;
    CHECK_INT(matches(g, "αβω-ABC.xé"), 1);
    CHECK_INT(matches(g, "α-日本😀.😀é"), 1);
    CHECK_INT(matches(g, "a-.xé"), 0);   /* a is not Greek */
    CHECK_INT(matches(g, "α-b.xé"), 0);  /* b is excluded */
    CHECK_INT(matches(g, "α-\n.xé"), 0); /* newline excluded */
    CHECK_INT(matches(g, "α-.xe"), 0);
    CHECK_INT(viable(g, "\xce"), 1); /* first byte of a Greek letter */
    CHECK_INT(viable(g, "\xc3"), 0); /* Latin-1 supplement: not Greek */
    CHECK_INT(viable(g, "α-\xed\xa0\x80"), 0); /* a UTF-8 encoded surrogate is no character */
    CHECK_INT(viable(g, "α-\xff"), 0);
    grammar_free(g);
}

static void test_repetition_bounds(void) {
    bs_grammar *g = parse("root ::= \"ab\"{2,3} x{0,2} \"!\"{1,}\nx ::= [0-9]\n");
    if (!g) return;
    CHECK_INT(matches(g, "abab!"), 1);
    CHECK_INT(matches(g, "ababab12!!!"), 1);
    CHECK_INT(matches(g, "ab!"), 0);
    CHECK_INT(matches(g, "abababab!"), 0);
    CHECK_INT(matches(g, "abab123!"), 0);
    CHECK_INT(matches(g, "abab"), 0);
    grammar_free(g);
}

static void test_recursion_and_multiline(void) {
    /* nested parentheses: right recursion through a rule, groups over lines */
    bs_grammar *g = parse("root ::= expr\n"
                          "expr ::= term ( [+*] term )*\n"
                          "term ::= [0-9]+ | \"(\" (\n  expr\n) \")\"\n");
    if (!g) return;
    CHECK_INT(matches(g, "1+2*(3+(4))"), 1);
    CHECK_INT(matches(g, "((((7))))"), 1);
    CHECK_INT(matches(g, "(1+2"), 0);
    CHECK_INT(matches(g, "1+"), 0);
    CHECK_INT(matches(g, "()"), 0);
    grammar_free(g);
}

static void expect_error(const char *text, bs_status status, const char *needle) {
    bs_grammar *g = NULL;
    bs_error err = {0};
    bs_status st = grammar_parse_gbnf(text, &g, &err);
    CHECK_INT(st, status);
    CHECK(g == NULL);
    if (!strstr(err.msg, needle)) {
        fprintf(stderr, "  error \"%s\" lacks \"%s\"\n", err.msg, needle);
        test_failed_ = 1;
    }
    grammar_free(g);
}

static void test_errors(void) {
    expect_error("root ::= foo\n", BS_EINVAL, "rule 'foo' is used but not defined");
    expect_error("start ::= \"a\"\n", BS_EINVAL, "no 'root' rule");
    expect_error("root ::= root \"a\" | \"b\"\n", BS_EINVAL, "left-recursive");
    expect_error("root ::= x\nx ::= y? x \"a\" | \"b\"\ny ::= \"c\"\n", BS_EINVAL, "rule 'x' is left-recursive");
    expect_error("root ::= \"a\" root\n", BS_EINVAL, "rule 'root' can never finish");
    expect_error("root ::= \"a\\q\"\n", BS_EINVAL, "line 1 col 12: unknown escape '\\q'");
    expect_error("root ::= \"abc\n", BS_EINVAL, "unterminated literal");
    expect_error("root ::= [abc\n", BS_EINVAL, "unterminated character class");
    expect_error("root ::= \"a\"\nroot ::= \"b\"\n", BS_EINVAL, "line 2 col 1: rule 'root' defined twice");
    expect_error("root ::= ( \"a\"\n", BS_EINVAL, "expected ')'");
    expect_error("root ::= * \"a\"\n", BS_EINVAL, "'*' follows nothing");
    expect_error("root ::= \"a\"{3,2}\n", BS_EINVAL, "out of order");
    expect_error("root ::= \"a\"{1,99999}\n", BS_ERANGE, "repetition bound above 4096");
    expect_error("root ::= [z-a]\n", BS_EINVAL, "character range out of order");
    expect_error("root = \"a\"\n", BS_EINVAL, "expected '::='");
}

static void test_rollback_and_complete(void) {
    bs_grammar *g = parse("root ::= \"{\" [a-z]* \"}\"\n");
    if (!g) return;
    bs_grammar_matcher *m = NULL;
    bs_error err = {0};
    CHECK_OK(grammar_matcher_open(g, NULL, &m, &err), &err);
    if (!m) return grammar_free(g);
    CHECK_INT(grammar_matcher_complete(m), 0);
    CHECK_OK(grammar_matcher_accept_bytes(m, "{ab", 3, &err), &err);
    CHECK_INT(grammar_matcher_accept_bytes(m, "c!", 2, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "byte 1 (0x21) is not allowed") != NULL);
    CHECK_OK(grammar_matcher_accept_bytes(m, "c", 1, &err), &err); /* the failed call changed nothing */
    CHECK_OK(grammar_matcher_accept_bytes(m, "}", 1, &err), &err);
    CHECK_INT(grammar_matcher_complete(m), 1);
    CHECK_INT(grammar_matcher_accept_bytes(m, "x", 1, &err), BS_EINVAL);
    grammar_matcher_rollback(m, 2); /* back to "{ab" */
    CHECK_INT(grammar_matcher_complete(m), 0);
    CHECK_OK(grammar_matcher_accept_bytes(m, "}", 1, &err), &err);
    CHECK_INT(grammar_matcher_complete(m), 1);
    grammar_matcher_rollback(m, 100); /* clamps to the start */
    CHECK_INT(grammar_matcher_accept_bytes(m, "}", 1, &err), BS_EINVAL);
    CHECK_OK(grammar_matcher_accept_bytes(m, "{}", 2, &err), &err);
    CHECK_INT(grammar_matcher_complete(m), 1);
    grammar_matcher_close(m);
    grammar_free(g);
}

/* A long history: every accept is recorded, rollback goes far back. */
static void test_long_run(void) {
    bs_grammar *g = parse("root ::= ( [a-z] [0-9]{1,3} \",\" )+\n");
    if (!g) return;
    bs_grammar_matcher *m = NULL;
    bs_error err = {0};
    CHECK_OK(grammar_matcher_open(g, NULL, &m, &err), &err);
    if (!m) return grammar_free(g);
    char piece[8];
    for (int i = 0; i < 5000 && !test_failed_; i++) {
        int n = snprintf(piece, sizeof piece, "%c%d,", 'a' + i % 26, i % 1000);
        CHECK_OK(grammar_matcher_accept_bytes(m, piece, (size_t)n, &err), &err);
    }
    CHECK_INT(grammar_matcher_complete(m), 1);
    grammar_matcher_rollback(m, 4000);
    CHECK_INT(grammar_matcher_accept_bytes(m, "z12", 3, &err), BS_OK);
    CHECK_INT(grammar_matcher_complete(m), 0);
    CHECK_INT(grammar_matcher_accept_bytes(m, "3456", 4, &err), BS_EINVAL);
    grammar_matcher_close(m);
    grammar_free(g);
}

int main(void) {
    RUN(test_literals_and_classes);
    RUN(test_utf8_classes);
    RUN(test_repetition_bounds);
    RUN(test_recursion_and_multiline);
    RUN(test_errors);
    RUN(test_rollback_and_complete);
    RUN(test_long_run);
    TEST_MAIN_END();
}
