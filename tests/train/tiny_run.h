/* tests/train/tiny_run.h — what test_sft.c and test_rft.c share: the scratch
 * directory their runs write in and the tiny random Llama (byte-level
 * tokenizer) they train. */
#ifndef BASALT_TESTS_TRAIN_TINY_RUN_H
#define BASALT_TESTS_TRAIN_TINY_RUN_H

#include <stdio.h>

#include "../support/test.h"
#include "engine/model.h"

/* Made by the test's main (mkdtemp) and removed at its end. */
static char tmpdir[64];

/* name inside tmpdir; the last four results stay valid. */
static inline const char *path_in(const char *name) {
    static char buf[4][128];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    return p;
}

static inline bs_model *tiny_model(int max_pos) {
    bs_model_config c = {.arch = BS_ARCH_LLAMA, .n_vocab = 257, .dim = 48, .n_layers = 2, .n_heads = 4,
                         .n_kv_heads = 2, .head_dim = 12, .ffn_dim = 96, .max_pos = max_pos, .rms_eps = 1e-5f,
                         .rope_theta = 10000, .rope_neox = 1};
    bs_model_params p = {.n_threads = 1};
    bs_model *m = NULL;
    bs_error err = {0};
    CHECK_OK(model_open_random(&c, 5, &p, &m, &err), &err);
    return m;
}

#endif
