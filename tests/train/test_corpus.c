/* train/corpus.c and train/bpe.c: the default model's corpus is
 * deterministic, its answers are exactly right, its splits are disjoint;
 * the BPE tokenizer trained on it is deterministic, loads through
 * tok_open_hf_files and round-trips text. */
#include <ctype.h>
#include <stdint.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/file.h"
#include "tokenizer/tokenizer.h"
#include "train/bpe.h"
#include "train/corpus.h"

static void test_deterministic(void) {
    corpus_gen a, b, c;
    corpus_gen_init(&a, 7, CORPUS_TRAIN);
    corpus_gen_init(&b, 7, CORPUS_TRAIN);
    corpus_gen_init(&c, 8, CORPUS_TRAIN);
    int differ = 0, seen[CORPUS_N_FAMILIES] = {0};
    for (int i = 0; i < 500; i++) {
        corpus_example x, y, z;
        corpus_next(&a, &x);
        corpus_next(&b, &y);
        corpus_next(&c, &z);
        CHECK(x.family == y.family && strcmp(x.prompt, y.prompt) == 0 && strcmp(x.answer, y.answer) == 0);
        differ += strcmp(x.prompt, z.prompt) != 0;
        seen[x.family]++;
    }
    CHECK(differ > 400);
    for (int f = 0; f < CORPUS_N_FAMILIES; f++) CHECK(seen[f] > 0);
    CHECK_STR(corpus_family_name(CORPUS_EXTRACT), "extract_json");
}

/* Recompute the answer from the prompt alone. */
static void expected_answer(const corpus_example *ex, char *out, size_t cap) {
    const char *p = ex->prompt, *body = strchr(p, ':');
    unsigned a, b;
    char name[32], city[32];
    out[0] = '\0';
    switch (ex->family) {
    case CORPUS_ARITHMETIC:
        if (sscanf(p, "What is %u + %u?", &a, &b) == 2 || sscanf(p, "Add %u and %u.", &a, &b) == 2 ||
            sscanf(p, "Compute %u + %u.", &a, &b) == 2)
            snprintf(out, cap, "%u", a + b);
        else if (sscanf(p, "What is %u - %u?", &a, &b) == 2 || sscanf(p, "Compute %u - %u.", &a, &b) == 2)
            snprintf(out, cap, "%u", a - b);
        else if (sscanf(p, "Subtract %u from %u.", &b, &a) == 2)
            snprintf(out, cap, "%u", a - b);
        break;
    case CORPUS_YES_NO:
        if (sscanf(p, "Is %u greater than %u?", &a, &b) == 2) snprintf(out, cap, "%s", a > b ? "yes" : "no");
        else if (sscanf(p, "Is %u less than %u?", &a, &b) == 2) snprintf(out, cap, "%s", a < b ? "yes" : "no");
        else if (sscanf(p, "Is %u an even number?", &a) == 1) snprintf(out, cap, "%s", a % 2 ? "no" : "yes");
        break;
    case CORPUS_UPPERCASE:
        for (size_t i = 0, n = 0; body[2 + i] && n + 1 < cap; i++) out[n++] = (char)toupper(body[2 + i]), out[n] = 0;
        break;
    case CORPUS_COUNT_WORDS: {
        int k = 1;
        for (const char *s = body + 2; *s; s++) k += *s == ' ';
        snprintf(out, cap, "%d", k);
        break;
    }
    case CORPUS_REVERSE: {
        const char *items[8];
        int k = 0;
        char buf[CORPUS_TEXT_MAX];
        snprintf(buf, sizeof buf, "%s", body + 2);
        for (char *s = strtok(buf, ", "); s && k < 8; s = strtok(NULL, ", ")) items[k++] = s;
        size_t n = 0;
        for (int i = k - 1; i >= 0; i--) n += (size_t)snprintf(out + n, cap - n, "%s%s", items[i], i ? ", " : "");
        break;
    }
    case CORPUS_BULLETS: {
        char buf[CORPUS_TEXT_MAX];
        snprintf(buf, sizeof buf, "%s", body + 2);
        size_t n = 0;
        int first = 1;
        for (char *s = strtok(buf, ", "); s; s = strtok(NULL, ", "), first = 0)
            n += (size_t)snprintf(out + n, cap - n, "%s- %s", first ? "" : "\n", s);
        break;
    }
    case CORPUS_EXTRACT:
        if (sscanf(p, "Extract the name and age as JSON: %31s is %u years old.", name, &a) == 2 ||
            sscanf(p, "Extract the name and age as JSON: %31[^,], aged %u,", name, &a) == 2)
            snprintf(out, cap, "{\"name\": \"%s\", \"age\": %u}", name, a);
        else if (sscanf(p, "Extract name, age and city as JSON: %31s (%u) lives in %31[^.].", name, &a, city) == 3)
            snprintf(out, cap, "{\"name\": \"%s\", \"age\": %u, \"city\": \"%s\"}", name, a, city);
        else if (sscanf(p, "Extract the name and city as JSON: %31s moved to %31s last year.", name, city) == 2)
            snprintf(out, cap, "{\"name\": \"%s\", \"city\": \"%s\"}", name, city);
        break;
    default:
        snprintf(out, cap, "%s", ex->answer); /* identity: a fixed table */
        break;
    }
}

static void test_exact_answers(void) {
    corpus_gen g;
    corpus_gen_init(&g, 3, CORPUS_TRAIN);
    int bad = 0;
    for (int i = 0; i < 3000; i++) {
        corpus_example ex;
        char want[CORPUS_TEXT_MAX];
        corpus_next(&g, &ex);
        expected_answer(&ex, want, sizeof want);
        if (strcmp(want, ex.answer) != 0 && bad++ < 5)
            fprintf(stderr, "  %s: \"%s\" -> \"%s\", expected \"%s\"\n", corpus_family_name(ex.family), ex.prompt,
                    ex.answer, want);
    }
    CHECK_INT(bad, 0);
    /* A known example, so the wording itself is pinned. */
    corpus_example ex = {.family = CORPUS_ARITHMETIC};
    snprintf(ex.prompt, sizeof ex.prompt, "What is 17 + 25?");
    char want[CORPUS_TEXT_MAX];
    expected_answer(&ex, want, sizeof want);
    CHECK_STR(want, "42");
}

/* No eval prompt occurs in training, except for the fixed identity questions. */
static void test_splits_disjoint(void) {
    enum { N_EVAL = 200, N_TRAIN = 20000 };
    static corpus_example eval[N_EVAL];
    corpus_gen g;
    corpus_gen_init(&g, 1, CORPUS_EVAL);
    for (int i = 0; i < N_EVAL; i++) corpus_next(&g, &eval[i]);
    corpus_gen_init(&g, 1, CORPUS_TRAIN);
    int overlap = 0;
    for (int i = 0; i < N_TRAIN; i++) {
        corpus_example ex;
        corpus_next(&g, &ex);
        if (ex.family == CORPUS_IDENTITY) continue;
        for (int j = 0; j < N_EVAL; j++) overlap += strcmp(ex.prompt, eval[j].prompt) == 0;
    }
    CHECK_INT(overlap, 0);
}

static void test_jsonl(void) {
    char path[] = "/tmp/basalt_corpus_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    bs_error err = {0};
    CHECK_OK(corpus_write_jsonl(path, 5, CORPUS_TRAIN, 3, &err), &err);
    char *data = NULL;
    size_t size = 0;
    CHECK_OK(bs_file_read(path, &data, &size, &err), &err);
    corpus_gen g;
    corpus_gen_init(&g, 5, CORPUS_TRAIN);
    corpus_example ex;
    corpus_next(&g, &ex);
    char *first_line = data ? strtok(data, "\n") : NULL;
    CHECK(first_line && strncmp(first_line, "{\"messages\":[{\"role\":\"user\",\"content\":", 38) == 0);
    CHECK(first_line && strstr(first_line, "\"role\":\"assistant\""));
    int lines = 1;
    while (strtok(NULL, "\n")) lines++;
    CHECK_INT(lines, 3);
    free(data);
    unlink(path);
}

static char *train_tokenizer(const char *path, int n_texts) {
    static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    bs_error err = {0};
    bpe_trainer *t = NULL;
    CHECK_OK(bpe_trainer_open(&t, &err), &err);
    if (!t) return NULL;
    corpus_gen g;
    corpus_gen_init(&g, 9, CORPUS_TRAIN);
    for (int i = 0; i < n_texts; i++) {
        corpus_example ex;
        corpus_next(&g, &ex);
        CHECK_OK(bpe_add_text(t, ex.prompt, strlen(ex.prompt), &err), &err);
        CHECK_OK(bpe_add_text(t, ex.answer, strlen(ex.answer), &err), &err);
    }
    CHECK_OK(bpe_train(t, 300, &err), &err);
    CHECK(bpe_vocab_size(t) > 256 && bpe_vocab_size(t) <= 556);
    CHECK_OK(bpe_write_tokenizer_json(t, specials, 3, path, &err), &err);
    CHECK_INT(bpe_add_text(t, "x", 1, &err), BS_EINVAL); /* frozen after training */
    bpe_trainer_close(t);
    char *data = NULL;
    size_t size = 0;
    CHECK_OK(bs_file_read(path, &data, &size, &err), &err);
    return data;
}

static void test_bpe_tokenizer(void) {
    char path[] = "/tmp/basalt_bpe_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    char *first = train_tokenizer(path, 2000), *second = train_tokenizer(path, 2000);
    CHECK(first && second && strcmp(first, second) == 0); /* deterministic */
    free(first);
    free(second);

    bs_error err = {0};
    bs_tokenizer *tok = NULL;
    CHECK_OK(tok_open_hf_files(path, NULL, &tok, &err), &err);
    if (tok) {
        /* Merges learned: a frequent word is one token; digits stay single. */
        int32_t *ids = NULL;
        size_t n = 0;
        const char *text = "What is 17 + 25?";
        CHECK_OK(tok_encode(tok, text, strlen(text), 0, &ids, &n, &err), &err);
        CHECK(n < strlen(text));
        CHECK(n >= 4 && tok_token_text(tok, ids[2]) && strcmp(tok_token_text(tok, ids[n - 2]), "5") == 0);
        free(ids);
        /* Anything round-trips, including bytes the corpus never had. */
        const char *odd = "Zo\xc3\xab said {\"a\": 1}\n\ttab <|im_end|>";
        CHECK_OK(tok_encode(tok, odd, strlen(odd), TOK_PARSE_SPECIAL, &ids, &n, &err), &err);
        CHECK(n > 0 && ids[n - 1] == tok_token_id(tok, "<|im_end|>", 10));
        char *back = NULL;
        size_t len = 0;
        CHECK_OK(tok_decode(tok, ids, n, TOK_DECODE_SPECIAL, &back, &len, &err), &err);
        CHECK_STR(back, odd);
        free(back);
        free(ids);
        tok_close(tok);
    }
    unlink(path);
}

int main(void) {
    RUN(test_deterministic);
    RUN(test_exact_answers);
    RUN(test_splits_disjoint);
    RUN(test_jsonl);
    RUN(test_bpe_tokenizer);
    TEST_MAIN_END();
}
