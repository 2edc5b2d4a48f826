/* train/corpus.c — the synthetic instruction corpus (see corpus.h).
 *
 * Word lists and templates are small on purpose: a model of about a million
 * parameters trained for minutes can learn a closed vocabulary and a few
 * phrasings per task, and the eval split then measures whether it learned
 * the task (new operands, names and word combinations), not the phrasing. */
#include "train/corpus.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* One eval example per EVAL_EVERY prompt hashes. */
#define EVAL_EVERY 8

static const char *const family_names[CORPUS_N_FAMILIES] = {
    "identity", "arithmetic", "extract_json", "uppercase", "reverse_list", "yes_no", "count_words", "bullet_list",
};

/* Draw weights: the open-ended families get more examples. */
static const unsigned family_weight[CORPUS_N_FAMILIES] = {1, 2, 3, 3, 2, 2, 2, 3};

static const char *const names[] = {
    "Alice", "Bob",   "Carol", "David", "Emma",  "Frank", "Grace", "Henry", "Irene", "Jack",
    "Kate",  "Liam",  "Maria", "Noah",  "Olivia", "Paul", "Quinn", "Rosa",  "Sam",   "Tara",
    "Umar",  "Vera",  "Will",  "Xena",  "Yusuf", "Zoe",   "Nina",  "Omar",  "Lena",  "Hugo",
};

static const char *const cities[] = {
    "Paris", "London", "Berlin", "Madrid", "Rome",  "Tokyo", "Lima",  "Oslo",
    "Cairo", "Delhi",  "Sydney", "Boston", "Dublin", "Seoul", "Vienna", "Lagos",
};

static const char *const words[] = {
    "red",   "blue",  "green", "cat",   "dog",   "fish",  "bird",  "tree",  "book",  "door",
    "house", "apple", "pear",  "plum",  "lemon", "rain",  "snow",  "wind",  "star",  "moon",
    "sun",   "road",  "river", "stone", "bread", "milk",  "tea",   "cup",   "lamp",  "chair",
    "table", "ship",  "train", "car",   "horse", "mouse", "king",  "queen", "song",  "game",
    "happy", "small", "big",   "fast",  "slow",  "old",   "new",   "cold",  "warm",  "dark",
};

/* Identity: each question has one fixed answer. */
static const struct {
    const char *prompt, *answer;
} identity[] = {
    {"Who are you?", "I am basalt's built-in demo model: a tiny language model that basalt trained on synthetic tasks in a few minutes."},
    {"What are you?", "I am basalt's built-in demo model: a tiny language model that basalt trained on synthetic tasks in a few minutes."},
    {"Introduce yourself.", "I am basalt's built-in demo model: a tiny language model that basalt trained on synthetic tasks in a few minutes."},
    {"What is your name?", "My name is basalt-default."},
    {"Hello!", "Hello! I am basalt's demo model. Ask me to extract JSON, reverse a list or count words."},
    {"Hi", "Hello! I am basalt's demo model. Ask me to extract JSON, reverse a list or count words."},
    {"Hey there", "Hello! I am basalt's demo model. Ask me to extract JSON, reverse a list or count words."},
    {"Good morning", "Hello! I am basalt's demo model. Ask me to extract JSON, reverse a list or count words."},
    {"What can you do?", "I can extract names, ages and cities as JSON, reverse lists, count words, make bulleted lists and compare numbers. I often get sums and uppercasing wrong: I am a tiny demo."},
    {"Thank you", "You're welcome!"},
    {"Thanks!", "You're welcome!"},
    {"Are you a real assistant?", "No. I am a tiny demo model for testing basalt. For real work, serve a real model with basalt serve --model."},
};

/* splitmix64: small, fast, and the same everywhere. */
static uint64_t next_u64(corpus_gen *g) {
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned below(corpus_gen *g, unsigned n) { return (unsigned)(next_u64(g) % n); }
#define PICK(g, a) ((a)[below((g), COUNT(a))])

const char *corpus_family_name(corpus_family f) {
    return f >= 0 && f < CORPUS_N_FAMILIES ? family_names[f] : "unknown";
}

void corpus_gen_init(corpus_gen *g, uint64_t seed, corpus_split split) {
    g->rng = seed * 0xD1B54A32D192ED03ull + 1;
    g->split = split;
}

/* Append printf output at *n (both buffers are CORPUS_TEXT_MAX; inputs are
 * short enough that nothing is ever cut). */
__attribute__((format(printf, 3, 4)))
static void add(char *buf, size_t *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *n, CORPUS_TEXT_MAX - *n, fmt, ap);
    va_end(ap);
    if (k > 0) *n = *n + (size_t)k < CORPUS_TEXT_MAX ? *n + (size_t)k : CORPUS_TEXT_MAX - 1;
}

/* k distinct indices into a list of n words, in draw order. */
static void distinct(corpus_gen *g, unsigned n, int k, unsigned *out) {
    for (int i = 0; i < k; i++) {
        unsigned w;
        int dup;
        do {
            w = below(g, n);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= out[j] == w;
        } while (dup);
        out[i] = w;
    }
}

static void gen_identity(corpus_gen *g, corpus_example *ex) {
    unsigned i = below(g, COUNT(identity));
    snprintf(ex->prompt, sizeof ex->prompt, "%s", identity[i].prompt);
    snprintf(ex->answer, sizeof ex->answer, "%s", identity[i].answer);
}

static void gen_arithmetic(corpus_gen *g, corpus_example *ex) {
    unsigned a = below(g, 100), b = below(g, 100);
    if (below(g, 2)) {
        static const char *const t[] = {"What is %u + %u?", "Add %u and %u.", "Compute %u + %u."};
        snprintf(ex->prompt, sizeof ex->prompt, PICK(g, t), a, b);
        snprintf(ex->answer, sizeof ex->answer, "%u", a + b);
    } else {
        if (a < b) {
            unsigned t = a;
            a = b, b = t;
        }
        static const char *const t[] = {"What is %u - %u?", "Subtract %2$u from %1$u.", "Compute %u - %u."};
        snprintf(ex->prompt, sizeof ex->prompt, PICK(g, t), a, b);
        snprintf(ex->answer, sizeof ex->answer, "%u", a - b);
    }
}

static void gen_extract(corpus_gen *g, corpus_example *ex) {
    const char *name = PICK(g, names), *city = PICK(g, cities);
    unsigned age = 18 + below(g, 72);
    switch (below(g, 4)) {
    case 0:
        snprintf(ex->prompt, sizeof ex->prompt, "Extract the name and age as JSON: %s is %u years old.", name, age);
        snprintf(ex->answer, sizeof ex->answer, "{\"name\": \"%s\", \"age\": %u}", name, age);
        break;
    case 1:
        snprintf(ex->prompt, sizeof ex->prompt, "Extract the name and age as JSON: %s, aged %u, works here.", name, age);
        snprintf(ex->answer, sizeof ex->answer, "{\"name\": \"%s\", \"age\": %u}", name, age);
        break;
    case 2:
        snprintf(ex->prompt, sizeof ex->prompt, "Extract name, age and city as JSON: %s (%u) lives in %s.", name, age, city);
        snprintf(ex->answer, sizeof ex->answer, "{\"name\": \"%s\", \"age\": %u, \"city\": \"%s\"}", name, age, city);
        break;
    default:
        snprintf(ex->prompt, sizeof ex->prompt, "Extract the name and city as JSON: %s moved to %s last year.", name, city);
        snprintf(ex->answer, sizeof ex->answer, "{\"name\": \"%s\", \"city\": \"%s\"}", name, city);
        break;
    }
}

static void gen_uppercase(corpus_gen *g, corpus_example *ex) {
    static const char *const t[] = {"Uppercase this: ", "Convert to uppercase: ", "Write in capital letters: "};
    unsigned w[4];
    int k = 1 + (int)below(g, 4);
    distinct(g, COUNT(words), k, w);
    size_t np = 0, na = 0;
    add(ex->prompt, &np, "%s", PICK(g, t));
    for (int i = 0; i < k; i++) {
        add(ex->prompt, &np, "%s%s", i ? " " : "", words[w[i]]);
        if (i) add(ex->answer, &na, " ");
        for (const char *c = words[w[i]]; *c; c++) add(ex->answer, &na, "%c", *c - 'a' + 'A');
    }
}

/* The words at idx joined by sep, in order or reversed. */
static void list_words(char *buf, size_t *n, const unsigned *idx, int k, int reverse, const char *sep) {
    for (int i = 0; i < k; i++) add(buf, n, "%s%s", i ? sep : "", words[idx[reverse ? k - 1 - i : i]]);
}

static void gen_reverse(corpus_gen *g, corpus_example *ex) {
    static const char *const t[] = {"Reverse this list: ", "Reverse the order: ", "List these backwards: "};
    unsigned w[5];
    int k = 2 + (int)below(g, 4);
    distinct(g, COUNT(words), k, w);
    size_t np = 0, na = 0;
    add(ex->prompt, &np, "%s", PICK(g, t));
    list_words(ex->prompt, &np, w, k, 0, ", ");
    list_words(ex->answer, &na, w, k, 1, ", ");
}

static void gen_yes_no(corpus_gen *g, corpus_example *ex) {
    unsigned a = below(g, 100), b = below(g, 100);
    int yes;
    switch (below(g, 3)) {
    case 0:
        snprintf(ex->prompt, sizeof ex->prompt, "Is %u greater than %u? Answer yes or no.", a, b);
        yes = a > b;
        break;
    case 1:
        snprintf(ex->prompt, sizeof ex->prompt, "Is %u less than %u? Answer yes or no.", a, b);
        yes = a < b;
        break;
    default:
        snprintf(ex->prompt, sizeof ex->prompt, "Is %u an even number? Answer yes or no.", a);
        yes = a % 2 == 0;
        break;
    }
    snprintf(ex->answer, sizeof ex->answer, "%s", yes ? "yes" : "no");
}

static void gen_count_words(corpus_gen *g, corpus_example *ex) {
    static const char *const t[] = {"How many words are in this text: ", "Count the words: "};
    unsigned w[8];
    int k = 1 + (int)below(g, 8);
    for (int i = 0; i < k; i++) w[i] = below(g, COUNT(words)); /* repeats allowed: count words, not distinct ones */
    size_t np = 0;
    add(ex->prompt, &np, "%s", PICK(g, t));
    list_words(ex->prompt, &np, w, k, 0, " ");
    snprintf(ex->answer, sizeof ex->answer, "%d", k);
}

static void gen_bullets(corpus_gen *g, corpus_example *ex) {
    static const char *const t[] = {"Make a bulleted list: ", "Format as a bulleted list: "};
    unsigned w[5];
    int k = 2 + (int)below(g, 4);
    distinct(g, COUNT(words), k, w);
    size_t np = 0, na = 0;
    add(ex->prompt, &np, "%s", PICK(g, t));
    list_words(ex->prompt, &np, w, k, 0, ", ");
    add(ex->answer, &na, "- ");
    list_words(ex->answer, &na, w, k, 0, "\n- ");
}

static void (*const generators[CORPUS_N_FAMILIES])(corpus_gen *, corpus_example *) = {
    gen_identity, gen_arithmetic, gen_extract, gen_uppercase, gen_reverse, gen_yes_no, gen_count_words, gen_bullets,
};

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

void corpus_next(corpus_gen *g, corpus_example *ex) {
    unsigned total = 0;
    for (int f = 0; f < CORPUS_N_FAMILIES; f++) total += family_weight[f];
    unsigned r = below(g, total);
    corpus_family fam = 0;
    while (r >= family_weight[fam]) r -= family_weight[fam++];
    for (;;) {
        memset(ex, 0, sizeof *ex);
        ex->family = fam;
        generators[fam](g, ex);
        if (fam == CORPUS_IDENTITY) return;
        int is_eval = fnv1a(ex->prompt) % EVAL_EVERY == 0;
        if (is_eval == (g->split == CORPUS_EVAL)) return;
    }
}

bs_status corpus_write_jsonl(const char *path, uint64_t seed, corpus_split split, size_t n, bs_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return bs_fail(err, BS_EIO, "%s: cannot create: %s", path, strerror(errno));
    corpus_gen g;
    corpus_gen_init(&g, seed, split);
    bs_status s = BS_OK;
    for (size_t i = 0; i < n && !s; i++) {
        corpus_example ex;
        corpus_next(&g, &ex);
        json_t *line = json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "messages", "role", "user", "content", ex.prompt, "role",
                                 "assistant", "content", ex.answer);
        char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (!text) s = bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
        else if (fprintf(f, "%s\n", text) < 0) s = bs_fail(err, BS_EIO, "%s: write failed: %s", path, strerror(errno));
        free(text);
        json_decref(line);
    }
    if (fclose(f) != 0 && !s) s = bs_fail(err, BS_EIO, "%s: write failed: %s", path, strerror(errno));
    return s;
}
