/* Tests for train/dataset: exact tokens and loss masks for each format on
 * the byte-level tokenizer (token id = byte value, 256 = <|endoftext|>), so
 * a sequence prints back as its text with the trained tokens in [[...]];
 * chat masks through ChatML, a tool-calling template and a template that
 * rewrites earlier turns; the one report of every bad line; truncation and
 * packing with segment ids and positions. */
#include <unistd.h>

#include "../support/test.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"

static const char CHATML[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* Hermes-style: tools in a system block, tool calls as <tool_call> JSON,
 * tool results as user turns wrapped in <tool_response>. */
static const char TOOLS_TEMPLATE[] =
    "{%- if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t.function.name }}{% endfor %}"
    "{{ '<|im_end|>\n' }}{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'tool' %}<|im_start|>user\n<tool_response>{{ m.content }}</tool_response>{{ '<|im_end|>\n' }}"
    "{%- elif m.role == 'assistant' and m.tool_calls %}{{ '<|im_start|>assistant\n' }}"
    "{%- for c in m.tool_calls %}<tool_call>{\"name\": \"{{ c.function.name }}\", \"arguments\": "
    "{{ c.function.arguments }}}</tool_call>{% endfor %}{{ '<|im_end|>\n' }}"
    "{%- else %}<|im_start|>{{ m.role }}\n{{ m.content }}{{ '<|im_end|>\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}";

/* Shows only the last assistant turn's text, like templates that drop old
 * reasoning: earlier turns render differently once more follow. */
static const char REWRITING_TEMPLATE[] =
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and not loop.last %}<a>(earlier)</a>"
    "{%- elif m.role == 'assistant' %}<a>{{ m.content }}</a>"
    "{%- else %}<u>{{ m.content }}</u>{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<a>{%- endif %}";

static bs_tokenizer *tok;

static char *write_tmp(const char *content) {
    char *path = strdup("/tmp/basalt_dataset_XXXXXX");
    int fd = mkstemp(path);
    size_t n = strlen(content);
    if (fd < 0 || write(fd, content, n) != (ssize_t)n) {
        free(path);
        return NULL;
    }
    close(fd);
    return path;
}

/* Open content as a dataset file; the report (if any) goes to *report. */
static bs_status open_text(const char *content, dataset_format hint, const char *tmpl_src, const dataset_opts *o,
                           dataset **ds, char **report, bs_error *err) {
    char *path = write_tmp(content);
    chat_template *t = NULL;
    if (tmpl_src) chat_template_open(tmpl_src, "", "<|endoftext|>", &t, err);
    bs_status st = dataset_open(path, hint, tok, t, o, ds, report, err);
    chat_template_close(t);
    unlink(path);
    free(path);
    return st;
}

/* Sequence i as text: bytes as themselves, 256 as <EOS>, trained runs in [[ ]]. */
static char *marked(const dataset *ds, size_t i) {
    dataset_seq s;
    dataset_get(ds, i, &s);
    char *out = malloc(s.len * 6 + 16), *p = out;
    int in = 0;
    for (size_t k = 0; k < s.len; k++) {
        if (s.loss_mask[k] != in) p += sprintf(p, in ? "]]" : "[[");
        in = s.loss_mask[k];
        if (s.tokens[k] == 256) p += sprintf(p, "<EOS>");
        else *p++ = (char)s.tokens[k];
    }
    if (in) p += sprintf(p, "]]");
    *p = '\0';
    return out;
}

static void check_marked(const dataset *ds, size_t i, const char *want) {
    char *got = marked(ds, i);
    CHECK_STR(got, want);
    free(got);
}

static void test_chat_multi_turn_weights(void) {
    const char *jsonl =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U1\"},"
        "{\"role\":\"assistant\",\"content\":\"Hi!\",\"weight\":1},{\"role\":\"user\",\"content\":\"U2\"},"
        "{\"role\":\"assistant\",\"content\":\"skip\",\"weight\":0},{\"role\":\"user\",\"content\":\"U3\"},"
        "{\"role\":\"assistant\",\"content\":\"Bye\"}]}\n";
    dataset *ds = NULL;
    bs_error err = {0};
    CHECK_OK(open_text(jsonl, DATASET_AUTO, CHATML, NULL, &ds, NULL, &err), &err);
    if (!ds) return;
    CHECK_INT(dataset_format_of(ds), DATASET_CHAT);
    CHECK_INT(dataset_count(ds), 1);
    check_marked(ds, 0,
                 "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
                 "[[Hi!<|im_end|>\n]]<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\nskip<|im_end|>\n"
                 "<|im_start|>user\nU3<|im_end|>\n<|im_start|>assistant\n[[Bye<|im_end|>\n]]");
    dataset_seq s;
    dataset_get(ds, 0, &s);
    /* Byte-level: every token is its byte; one segment, positions 0..len-1. */
    CHECK_INT(s.tokens[0], '<');
    CHECK_INT(s.tokens[1], '|');
    int seg_ok = 1;
    for (size_t k = 0; k < s.len; k++) seg_ok &= s.segment[k] == 0 && s.position[k] == (int32_t)k;
    CHECK(seg_ok);
    const dataset_stats *st = dataset_stats_of(ds);
    CHECK_INT(st->lines, 1);
    CHECK_INT(st->examples, 1);
    CHECK_INT(st->tokens, s.len);
    CHECK_INT(st->loss_tokens, strlen("Hi!<|im_end|>\n") + strlen("Bye<|im_end|>\n"));
    dataset_close(ds);

    /* assistant_only off: every token is trained, weights or not. */
    dataset_opts o;
    dataset_opts_default(&o);
    o.assistant_only = 0;
    CHECK_OK(open_text(jsonl, DATASET_CHAT, CHATML, &o, &ds, NULL, &err), &err);
    if (!ds) return;
    dataset_get(ds, 0, &s);
    CHECK_INT(dataset_stats_of(ds)->loss_tokens, s.len);
    dataset_close(ds);
}

static void test_chat_multibyte_and_tools(void) {
    /* "é" is two byte tokens: the first emits nothing on its own and still
     * belongs to the assistant turn. */
    dataset *ds = NULL;
    bs_error err = {0};
    CHECK_OK(open_text("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":"
                       "\"\\u00e9\"}]}\n",
                       DATASET_AUTO, CHATML, NULL, &ds, NULL, &err),
             &err);
    if (ds) {
        check_marked(ds, 0, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n[[\xc3\xa9<|im_end|>\n]]");
        dataset_close(ds);
    }
    const char *jsonl =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"SF\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"14C\"},"
        "{\"role\":\"assistant\",\"content\":\"14C in SF.\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{}}}],"
        "\"parallel_tool_calls\":false}\n";
    CHECK_OK(open_text(jsonl, DATASET_AUTO, TOOLS_TEMPLATE, NULL, &ds, NULL, &err), &err);
    if (!ds) return;
    check_marked(ds, 0,
                 "<|im_start|>system\nTools: get_weather<|im_end|>\n<|im_start|>user\nWeather?<|im_end|>\n"
                 "<|im_start|>assistant\n[[<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"SF\"}}"
                 "</tool_call><|im_end|>\n]]<|im_start|>user\n<tool_response>14C</tool_response><|im_end|>\n"
                 "<|im_start|>assistant\n[[14C in SF.<|im_end|>\n]]");
    dataset_close(ds);
}

static void test_chat_rewriting_template(void) {
    const char *jsonl = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":"
                        "\"one\"},{\"role\":\"user\",\"content\":\"b\"},{\"role\":\"assistant\",\"content\":\"two\"}]}\n";
    dataset *ds = NULL;
    bs_error err = {0};
    CHECK_OK(open_text(jsonl, DATASET_AUTO, REWRITING_TEMPLATE, NULL, &ds, NULL, &err), &err);
    if (!ds) return;
    /* One example per turn, each as the model sees it when answering. */
    CHECK_INT(dataset_count(ds), 2);
    CHECK_INT(dataset_stats_of(ds)->examples, 2);
    CHECK_INT(dataset_stats_of(ds)->lines, 1);
    check_marked(ds, 0, "<u>a</u><a>[[one</a>]]");
    check_marked(ds, 1, "<u>a</u><a>(earlier)</a><u>b</u><a>[[two</a>]]");
    dataset_close(ds);
}

static void test_prompt_completion_and_text(void) {
    dataset *ds = NULL;
    bs_error err = {0};
    CHECK_OK(open_text("{\"prompt\":\"Q: 2+2?\\nA:\",\"completion\":\" 4\"}\n\n{\"prompt\":\"\",\"completion\":\"x\"}\n",
                       DATASET_AUTO, NULL, NULL, &ds, NULL, &err),
             &err);
    if (ds) {
        CHECK_INT(dataset_format_of(ds), DATASET_PROMPT_COMPLETION);
        CHECK_INT(dataset_count(ds), 2);
        check_marked(ds, 0, "Q: 2+2?\nA:[[ 4<EOS>]]");
        check_marked(ds, 1, "[[x<EOS>]]");
        CHECK_INT(dataset_stats_of(ds)->lines, 2); /* the blank line is skipped */
        dataset_seq s;
        dataset_get(ds, 0, &s);
        CHECK_INT(s.len, 13);
        CHECK_INT(s.tokens[12], 256);
        dataset_close(ds);
    }
    CHECK_OK(open_text("{\"text\":\"abc\"}\r\n{\"text\":\"de\"}", DATASET_TEXT, NULL, NULL, &ds, NULL, &err), &err);
    if (ds) {
        CHECK_INT(dataset_count(ds), 2);
        check_marked(ds, 0, "[[abc<EOS>]]");
        check_marked(ds, 1, "[[de<EOS>]]");
        CHECK_INT(dataset_stats_of(ds)->loss_tokens, 7);
        dataset_close(ds);
    }
}

static void test_all_problems_at_once(void) {
    const char *jsonl =
        "{\"messages\":[{\"role\":\"user\",\"content\":\"ok\"},{\"role\":\"assistant\",\"content\":\"fine\"}]}\n" /* 1 */
        "{\"messages\": [\n"                                                                               /* 2 */
        "{\"messages\":[{\"content\":\"no role\"},{\"role\":\"assistant\",\"content\":\"x\"}]}\n"            /* 3 */
        "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}\n"                                           /* 4 */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"only a user\"}]}\n"                                  /* 5 */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"\"}]}\n"  /* 6 */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\","
        "\"weight\":2}]}\n"                                                                                /* 7 */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\",\"weight\":1},{\"role\":\"assistant\","
        "\"content\":\"a\"}]}\n"                                                                           /* 8 */
        "{\"prompt\":\"p\",\"completion\":\"c\"}\n"                                                        /* 9 */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\""
        "this answer is far too long for the limit\"}]}\n"                                                 /* 10 */
        "{\"messages\":[],\"extra\":1}\n"                                                                  /* 11 */
        "[1,2]\n"                                                                                          /* 12 */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\","
        "\"weight\":0}]}\n"                                                                                /* 13 */
        "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}],"
        "\"messages\":[]}\n";                                                                              /* 14 */
    dataset_opts o;
    dataset_opts_default(&o);
    o.max_length = 80;
    dataset *ds = NULL;
    char *report = NULL;
    bs_error err = {0};
    CHECK_INT(open_text(jsonl, DATASET_AUTO, CHATML, &o, &ds, &report, &err), BS_EFORMAT);
    CHECK(ds == NULL);
    CHECK(strstr(err.msg, "13 problems, nothing loaded; line 2: invalid JSON") != NULL);
    const char *want[] = {
        "line 2: invalid JSON at column",
        "line 3: messages[0]: missing role\n",
        "line 4: messages[0]: unknown role \"robot\"",
        "line 5: no assistant turn to train on\n",
        "line 6: messages[1]: empty assistant turn (no content and no tool_calls)\n",
        "line 7: messages[1].weight: must be 0 or 1\n",
        "line 8: messages[0].weight: only assistant messages have a weight\n",
        "line 9: a prompt-completion example in a chat dataset (line 1 set the format)\n",
        "line 10: 103 tokens, more than max_length 80 (raise it or turn truncation on)\n",
        "line 11: unknown key \"extra\"",
        "line 12: expected a JSON object\n",
        "line 13: every assistant turn has weight 0: nothing to train on\n",
        "line 14: invalid JSON at column",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!report || !strstr(report, want[i])) {
            fprintf(stderr, "  report lacks \"%s\"\n", want[i]);
            test_failed_ = 1;
        }
    }
    if (report) {
        int lines = 0;
        for (const char *p = report; *p; p++) lines += *p == '\n';
        CHECK_INT(lines, 13);
        CHECK(strstr(report, "line 1:") == NULL);
    }
    free(report);
}

static void test_problem_cap_and_file_errors(void) {
    char *jsonl = malloc(60 * 8 + 1);
    jsonl[0] = '\0';
    for (int i = 0; i < 60; i++) strcat(jsonl, "{bad}\n");
    dataset_opts o;
    dataset_opts_default(&o);
    dataset *ds = NULL;
    char *report = NULL;
    bs_error err = {0};
    CHECK_INT(open_text(jsonl, DATASET_AUTO, CHATML, &o, &ds, &report, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "60 problems") != NULL);
    if (report) {
        int lines = 0;
        for (const char *p = report; *p; p++) lines += *p == '\n';
        CHECK_INT(lines, 51);
        CHECK(strstr(report, "line 50: invalid JSON") != NULL);
        CHECK(strstr(report, "line 51:") == NULL);
        CHECK(strstr(report, "... and 10 more\n") != NULL);
    }
    free(report);
    free(jsonl);

    CHECK_INT(open_text("\n  \n", DATASET_AUTO, CHATML, &o, &ds, &report, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "no training examples") != NULL);
    free(report);
    /* A hint fixes the format. */
    CHECK_INT(open_text("{\"text\":\"t\"}\n", DATASET_CHAT, CHATML, &o, &ds, &report, &err), BS_EFORMAT);
    CHECK(report && strstr(report, "line 1: a text example, but the dataset was opened as chat") != NULL);
    free(report);
    /* Chat data needs a template. */
    CHECK_INT(open_text("{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}]}\n", DATASET_AUTO, NULL, &o, &ds,
                        &report, &err),
              BS_EFORMAT);
    CHECK(report && strstr(report, "needs the model's chat template") != NULL);
    free(report);
    CHECK_INT(dataset_open("/nonexistent/train.jsonl", DATASET_AUTO, tok, NULL, &o, &ds, &report, &err), BS_ENOTFOUND);
    CHECK(report == NULL);
    CHECK(strstr(err.msg, "/nonexistent/train.jsonl") != NULL);
}

static void test_truncation(void) {
    dataset_opts o;
    dataset_opts_default(&o);
    o.max_length = 5;
    o.truncate = 1;
    dataset *ds = NULL;
    bs_error err = {0};
    CHECK_OK(open_text("{\"text\":\"abcdefgh\"}\n{\"text\":\"xy\"}\n", DATASET_AUTO, NULL, &o, &ds, NULL, &err), &err);
    if (ds) {
        check_marked(ds, 0, "[[abcde]]"); /* the start is kept, EOS is cut */
        check_marked(ds, 1, "[[xy<EOS>]]");
        CHECK_INT(dataset_stats_of(ds)->truncated, 1);
        dataset_close(ds);
    }
    /* Truncation that leaves no trained token is a problem, not a silent drop. */
    char *report = NULL;
    CHECK_INT(open_text("{\"prompt\":\"long prompt\",\"completion\":\"c\"}\n", DATASET_AUTO, NULL, &o, &ds, &report,
                        &err),
              BS_EFORMAT);
    CHECK(report && strstr(report, "line 1: no trained tokens within the first 5") != NULL);
    free(report);
}

static void test_packing(void) {
    dataset_opts o;
    dataset_opts_default(&o);
    o.max_length = 9;
    o.pack = 1;
    dataset *ds = NULL;
    bs_error err = {0};
    CHECK_OK(open_text("{\"text\":\"abc\"}\n{\"text\":\"def\"}\n{\"text\":\"ghi\"}\n{\"text\":\"jklmnopq\"}\n",
                       DATASET_AUTO, NULL, &o, &ds, NULL, &err),
             &err);
    if (!ds) return;
    /* Whole examples in file order: 4 + 4 fit in 9, the third starts anew. */
    CHECK_INT(dataset_count(ds), 3);
    CHECK_INT(dataset_stats_of(ds)->examples, 4);
    check_marked(ds, 0, "[[abc<EOS>def<EOS>]]");
    check_marked(ds, 1, "[[ghi<EOS>]]");
    check_marked(ds, 2, "[[jklmnopq<EOS>]]");
    dataset_seq s;
    dataset_get(ds, 0, &s);
    CHECK_INT(s.len, 8);
    const int32_t seg[8] = {0, 0, 0, 0, 1, 1, 1, 1}, pos[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    for (int k = 0; k < 8; k++) {
        CHECK_INT(s.segment[k], seg[k]);
        CHECK_INT(s.position[k], pos[k]);
    }
    dataset_get(ds, 2, &s);
    CHECK_INT(s.len, 9);
    CHECK_INT(s.segment[8], 0);
    CHECK_INT(s.position[8], 8);
    dataset_close(ds);
}

int main(void) {
    bs_error err = {0};
    if (tok_open_byte_level(&tok, &err) != BS_OK) {
        fprintf(stderr, "tok_open_byte_level: %s\n", err.msg);
        return 1;
    }
    RUN(test_chat_multi_turn_weights);
    RUN(test_chat_multibyte_and_tools);
    RUN(test_chat_rewriting_template);
    RUN(test_prompt_completion_and_text);
    RUN(test_all_problems_at_once);
    RUN(test_problem_cap_and_file_errors);
    RUN(test_truncation);
    RUN(test_packing);
    tok_close(tok);
    TEST_MAIN_END();
}
