/* train/default_model.h — basalt's embedded default model: a small Llama
 * that basalt builds itself, with nothing downloaded.
 *
 *     corpus (train/corpus.h, seeded)  ->  byte-level BPE trained on it
 *     (train/bpe.h)  ->  a randomly initialised Hugging Face directory
 *     (config.json, tokenizer files, ChatML template, model.safetensors)  ->
 *     full-parameter SFT over the chat JSONL (train/sft.h, through the same
 *     dataset path as users' data)  ->  greedy exact-match accuracy per task
 *     family on the held-out split  ->  OUT, an ordinary HF directory that
 *     `basalt serve --model` (or transformers) loads.
 *
 * Everything is a function of the config, so one build gives the same
 * corpus and tokenizer, and for a given thread count the same weights.  The
 * directory is written beside OUT and renamed into place when complete;
 * OUT/basalt_build.json records the recipe fingerprint, the measured
 * accuracies and timings, and whether training ran to its last step. */
#ifndef BASALT_TRAIN_DEFAULT_MODEL_H
#define BASALT_TRAIN_DEFAULT_MODEL_H

#include <stdint.h>

#include "base/error.h"
#include "train/corpus.h"

#define DEFAULT_MODEL_NAME "basalt-default"

typedef struct default_model_config {
    int dim, n_layers, n_heads, ffn_dim, ctx; /* Llama shape; head_dim = dim / n_heads, tied embeddings */
    int n_merges;                             /* BPE merges (vocab = 256 + merges + 3 specials, at most) */
    int steps, batch_size;                    /* one epoch of steps x batch_size fresh examples */
    int micro_tokens;                         /* tokens per forward/backward pass (a step's examples packed) */
    double lr;                                /* peak; 5% linear warmup, linear decay to 0, no weight decay */
    uint64_t seed;                            /* corpus, initialisation and data order */
    int eval_per_family;                      /* held-out examples scored per family */
} default_model_config;

/* The shipped model: sized to train in about 3 minutes of one core (the
 * 5-minute budget on 2 cores, with room for a busy machine). */
void default_model_config_default(default_model_config *c);
/* A tiny variant that builds in seconds, for tests: its loss falls and it
 * names itself, garbled; it scores close to nothing. */
void default_model_config_tiny(default_model_config *c);

/* One line naming the recipe version and every config value: equal
 * fingerprints build equal models.  Caller frees. */
char *default_model_fingerprint(const default_model_config *c);

typedef struct default_model_report {
    int n_eval[CORPUS_N_FAMILIES], n_correct[CORPUS_N_FAMILIES];
    int vocab;                 /* tokens, specials included */
    int64_t n_params;
    int steps_done, total_steps;
    int64_t trained_tokens;
    double final_loss;         /* mean over the last 20 steps */
    double seconds_data, seconds_train, seconds_eval;
} default_model_report;

typedef struct default_model_opts {
    int threads;        /* OpenBLAS and inference threads; <= 0: every core.  Part of what
                         * determines the weights (summation order) */
    double max_seconds; /* > 0: stop training after this long (the model is then marked incomplete) */
    /* Progress lines ("step 100/900 loss 1.234 ..."); may be NULL. */
    void (*progress)(void *user, const char *line);
    void *user;
} default_model_opts;

/* Build into out_dir (replacing it).  *rep is filled on success. */
bs_status default_model_build(const char *out_dir, const default_model_config *c, const default_model_opts *o,
                              default_model_report *rep, bs_error *err);

/* Greedy exact-match accuracy of the model in model_dir on c's held-out
 * split, eval_per_family examples per family (counts go into rep). */
bs_status default_model_eval(const char *model_dir, const default_model_config *c, int threads,
                             default_model_report *rep, bs_error *err);

/* DATA/models/basalt-default (base/paths.h's data directory rule).  Caller frees. */
bs_status default_model_dir(const char *data_override, char **out, bs_error *err);

/* 1 when dir holds a complete build with c's fingerprint. */
int default_model_is_current(const char *dir, const default_model_config *c);

#endif
