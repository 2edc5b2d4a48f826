/* tests/template/test_chat_template.c — chat templates rendered by basalt
 * must be byte-identical to Python's jinja2 under Hugging Face's settings
 * (tests/oracle/render_template.py): the real templates in
 * ../shared/fixtures/templates and our own in tests/template/templates, each
 * over every conversation in tests/template/conversations, with and without
 * the generation prompt and tools, and with template-specific variables.
 * Where the oracle raises, basalt must fail with the same message. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "template/chat_template.h"
#include "../support/oracle.h"
#include "../support/test.h"

#define PINNED_NOW 1700000000 /* 2023-11-14: strftime_now output is reproducible */

typedef struct template_case {
    const char *file;
    const char *bos, *eos;
    const char *var_sets[4]; /* JSON objects of extra variables; NULL ends */
} template_case;

static const template_case FIXTURES[] = {
    {"Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>", {"{}"}},
    {"Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>", {"{}", "{\"enable_thinking\": false}", "{\"enable_thinking\": true}"}},
    {"meta-llama-Llama-3.1-8B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
     {"{}", "{\"date_string\": \"01 Jan 2025\", \"tools_in_user_message\": false}",
      "{\"builtin_tools\": [\"brave_search\", \"wolfram_alpha\", \"code_interpreter\"]}"}},
    {"meta-llama-Llama-3.2-3B-Instruct.jinja", "<|begin_of_text|>", "<|eot_id|>",
     {"{}", "{\"date_string\": \"31 Dec 2024\", \"tools_in_user_message\": false}"}},
    {"mistralai-Mistral-Nemo-Instruct-2407.jinja", "<s>", "</s>", {"{}"}},
    {"deepseek-ai-DeepSeek-V3.1.jinja", "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
     "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", {"{}", "{\"thinking\": true}"}},
    {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "<|begin_of_text|>", "<|im_end|>", {"{}"}},
    {"HuggingFaceTB-SmolLM3-3B.jinja", "", "<|im_end|>", {"{}", "{\"enable_thinking\": false}"}},
};

static const template_case OWN[] = {
    {"chatml_smollm2.jinja", "", "<|im_end|>", {"{}"}},
    {"llama2.jinja", "<s>", "</s>", {"{}"}},
    {"mistral_v03.jinja", "<s>", "</s>", {"{}"}},
    {"gemma.jinja", "<bos>", "<eos>", {"{}"}},
    {"phi3.jinja", "", "<|endoftext|>", {"{}"}},
    {"features.jinja", "", "", {"{}", "{\"x\": 1}"}},
};

#define CONV_DIR "tests/template/conversations"

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Conversation files, sorted: {"messages": [...], "tools": [...]?}. */
static int list_conversations(char **names, int max) {
    DIR *d = opendir(CONV_DIR);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".json")) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    return n;
}

typedef struct run {
    json_t *cases;   /* what the oracle gets */
    json_t *extras;  /* per case: our extra vars */
    const char **labels;
    int n, cap;
} run;

static void add_case(run *R, const char *path, const template_case *tc, const char *conv, json_t *doc, int with_tools,
                     int agp, const char *vars) {
    json_t *extra = json_loads(vars, 0, NULL);
    json_t *oracle_vars = json_pack("{s:s, s:s}", "bos_token", tc->bos, "eos_token", tc->eos);
    json_object_update(oracle_vars, extra);
    json_t *tools = with_tools ? json_object_get(doc, "tools") : NULL;
    json_array_append_new(R->cases, json_pack("{s:s, s:O, s:O, s:b, s:o, s:i}", "template", path, "messages",
                                              json_object_get(doc, "messages"), "tools", tools ? tools : json_null(),
                                              "add_generation_prompt", agp, "vars", oracle_vars, "now", PINNED_NOW));
    json_array_append_new(R->extras, extra);
    if (R->n == R->cap) {
        R->cap = R->cap ? R->cap * 2 : 64;
        R->labels = realloc(R->labels, (size_t)R->cap * sizeof *R->labels);
    }
    char label[512];
    snprintf(label, sizeof label, "%s × %s%s%s %s", tc->file, conv, with_tools ? " +tools" : "", agp ? " +agp" : "", vars);
    R->labels[R->n] = strdup(label);
    R->n++;
}

/* Run the oracle once over all cases; returns its JSON list of results. */
static json_t *run_oracle(const json_t *cases) {
    char path[] = "/tmp/basalt_tmpl_cases_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "w");
    json_dumpf(cases, f, 0);
    fclose(f);
    const char *py = test_python();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s tests/oracle/render_template.py --batch %s", py, path);
    FILE *p = popen(cmd, "r");
    json_t *res = p ? json_loadf(p, 0, NULL) : NULL;
    if (p) pclose(p);
    remove(path);
    return res;
}

static void show_difference(const char *label, const char *ours, const char *want) {
    size_t i = 0;
    while (ours[i] && ours[i] == want[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "  %s: differs at byte %zu\n    basalt: ...%.80s\n    jinja2: ...%.80s\n", label, i, ours + from,
            want + from);
}

static void compare_family(const char *dir, const template_case *tcs, size_t ntc) {
    char *convs[64];
    int nconv = list_conversations(convs, 64);
    CHECK(nconv >= 8);
    json_t *docs[64];
    for (int c = 0; c < nconv; c++) {
        char *p = bs_path_join(CONV_DIR, convs[c]);
        docs[c] = json_load_file(p, 0, NULL);
        CHECK(docs[c] != NULL);
        free(p);
    }
    for (size_t t = 0; t < ntc; t++) {
        char *path = bs_path_join(dir, tcs[t].file);
        char *source = NULL;
        size_t slen;
        bs_error err = {0};
        chat_template *tmpl = NULL;
        CHECK_OK(bs_file_read(path, &source, &slen, &err), &err);
        CHECK_OK(chat_template_open(source, tcs[t].bos, tcs[t].eos, &tmpl, &err), &err);
        if (!tmpl) {
            free(source);
            free(path);
            continue;
        }
        chat_template_pin_clock(tmpl, PINNED_NOW);
        run R = {.cases = json_array(), .extras = json_array()};
        for (int c = 0; c < nconv; c++) {
            if (!docs[c]) continue;
            int has_tools = json_object_get(docs[c], "tools") != NULL;
            for (int v = 0; v < 4 && tcs[t].var_sets[v]; v++)
                for (int agp = 0; agp < 2; agp++)
                    for (int with_tools = 0; with_tools <= has_tools; with_tools++)
                        add_case(&R, path, &tcs[t], convs[c], docs[c], with_tools, agp, tcs[t].var_sets[v]);
        }
        json_t *results = run_oracle(R.cases);
        CHECK(json_is_array(results) && (int)json_array_size(results) == R.n);
        int same = 0, errors = 0;
        for (int i = 0; results && i < R.n && i < (int)json_array_size(results); i++) {
            json_t *c = json_array_get(R.cases, (size_t)i), *res = json_array_get(results, (size_t)i);
            char *out = NULL;
            size_t len = 0;
            const json_t *tools = json_object_get(c, "tools");
            bs_status s = chat_template_render(tmpl, json_object_get(c, "messages"), json_is_null(tools) ? NULL : tools,
                                               json_is_true(json_object_get(c, "add_generation_prompt")),
                                               json_array_get(R.extras, (size_t)i), &out, &len, &err);
            const json_t *want = json_object_get(res, "output"), *want_err = json_object_get(res, "error");
            if (want && s == BS_OK && len == json_string_length(want) && !memcmp(out, json_string_value(want), len)) {
                same++;
            } else if (want_err && s != BS_OK && strstr(err.msg, json_string_value(want_err))) {
                same++;
                errors++;
            } else {
                test_failed_ = 1;
                if (want && s == BS_OK) show_difference(R.labels[i], out, json_string_value(want));
                else
                    fprintf(stderr, "  %s:\n    basalt: %s\n    jinja2: %s\n", R.labels[i], s == BS_OK ? "(rendered)" : err.msg,
                            want_err ? json_string_value(want_err) : "(rendered)");
            }
            free(out);
        }
        fprintf(stderr, "  %-52s %3d/%3d byte-identical (%d matching errors)\n", tcs[t].file, same, R.n, errors);
        for (int i = 0; i < R.n; i++) free((char *)R.labels[i]);
        free(R.labels);
        json_decref(results);
        json_decref(R.cases);
        json_decref(R.extras);
        chat_template_close(tmpl);
        free(source);
        free(path);
    }
    for (int c = 0; c < nconv; c++) {
        json_decref(docs[c]);
        free(convs[c]);
    }
}

static void test_real_templates_match_jinja2(void) {
    const char *shared = test_shared_dir();
    if (!shared) SKIP("../shared absent: no fixture templates");
    char *dir = bs_path_join(shared, "fixtures/templates");
    compare_family(dir, FIXTURES, sizeof FIXTURES / sizeof FIXTURES[0]);
    free(dir);
}

static void test_own_templates_match_jinja2(void) {
    compare_family("tests/template/templates", OWN, sizeof OWN / sizeof OWN[0]);
}

int main(void) {
    RUN(test_real_templates_match_jinja2);
    RUN(test_own_templates_match_jinja2);
    TEST_MAIN_END();
}
