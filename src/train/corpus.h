/* train/corpus.h — the synthetic instruction corpus the embedded default
 * model learns from: templated prompts with exact answers in a few task
 * families, generated from a seed so that the same build always writes the
 * same corpus (nothing is downloaded).
 *
 * Each example is one user turn and one assistant turn.  A train and a
 * held-out eval split come from the same generator: an example belongs to
 * the eval split when a hash of its prompt says so, so no eval prompt ever
 * appears in training — except in the identity family, whose handful of
 * fixed questions is the whole task (its eval measures recall, not
 * generalisation).  Only ASCII is produced. */
#ifndef BASALT_TRAIN_CORPUS_H
#define BASALT_TRAIN_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum {
    CORPUS_IDENTITY,    /* greetings, "Who are you?" -> fixed answers */
    CORPUS_ARITHMETIC,  /* "What is 17 + 25?" -> "42" (operands 0..99, a - b with a >= b) */
    CORPUS_EXTRACT,     /* "Extract ... as JSON: Alice is 30 years old." -> {"name": "Alice", "age": 30} */
    CORPUS_UPPERCASE,   /* "Uppercase this: red fox" -> "RED FOX" */
    CORPUS_REVERSE,     /* "Reverse this list: a, b, c" -> "c, b, a" */
    CORPUS_YES_NO,      /* "Is 17 greater than 25? Answer yes or no." -> "no" */
    CORPUS_COUNT_WORDS, /* "How many words: red fox runs" -> "3" */
    CORPUS_BULLETS,     /* "Make a bulleted list: a, b" -> "- a\n- b" */
    CORPUS_N_FAMILIES
} corpus_family;

const char *corpus_family_name(corpus_family f); /* "identity", "arithmetic", ... */

typedef enum { CORPUS_TRAIN, CORPUS_EVAL } corpus_split;

enum { CORPUS_TEXT_MAX = 320 };

typedef struct corpus_example {
    corpus_family family;
    char prompt[CORPUS_TEXT_MAX]; /* the user message */
    char answer[CORPUS_TEXT_MAX]; /* the exact assistant reply */
} corpus_example;

/* A generator: a plain struct, keep it on the stack. */
typedef struct corpus_gen {
    uint64_t rng;
    corpus_split split;
} corpus_gen;

void corpus_gen_init(corpus_gen *g, uint64_t seed, corpus_split split);
/* The next example of g's split; families are drawn with fixed weights
 * (harder families more often). */
void corpus_next(corpus_gen *g, corpus_example *ex);

/* n examples of the split as OpenAI chat fine-tuning JSONL
 * ({"messages":[{"role":"user",...},{"role":"assistant",...}]} per line). */
bs_status corpus_write_jsonl(const char *path, uint64_t seed, corpus_split split, size_t n, bs_error *err);

#endif
