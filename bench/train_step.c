/* bench/train_step.c MODEL_DIR THREADS BATCH SEQ STEPS — time LoRA training
 * steps (r=16, alpha 32, every linear layer, AdamW, no dropout, no
 * recompute) on a model directory: one optimizer step per micro-batch of
 * BATCH x SEQ random tokens, every target weighted.  The first step is a
 * warm-up (page faults, BLAS buffers) and is not timed.  Prints one JSON
 * line: tokens/s over the timed steps and the last loss.
 * Built by bench/train_vs_torch.sh against build/libbasalt.a. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/model.h"
#include "train/trainer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL_DIR THREADS BATCH SEQ STEPS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]), B = atoi(argv[3]), S = atoi(argv[4]), steps = atoi(argv[5]);
    bs_error err = {0};
    bs_model *m = NULL;
    bs_model_params mp = {.n_threads = threads};
    if (model_open(argv[1], &mp, &m, &err) != BS_OK) {
        fprintf(stderr, "train_step: %s\n", err.msg);
        return 1;
    }
    openblas_set_num_threads(threads);
    bs_train_config c;
    train_config_default(&c);
    c.lora.rank = 16;
    c.lora.alpha = 32;
    c.lora.dropout = 0;
    c.lora.targets = BS_LORA_ALL_LINEAR;
    c.clip_norm = 0;
    c.schedule = BS_SCHEDULE_CONSTANT;
    c.total_steps = steps + 1;
    c.max_tokens = B * S;
    bs_trainer *t = NULL;
    if (trainer_open(m, &c, &t, &err) != BS_OK) {
        fprintf(stderr, "train_step: %s\n", err.msg);
        return 1;
    }
    int V = model_config(m)->n_vocab;
    int32_t *tok = malloc((size_t)B * S * sizeof *tok);
    float *mask = malloc((size_t)B * S * sizeof *mask);
    const int32_t **tp = malloc((size_t)B * sizeof *tp);
    const float **mp_ = malloc((size_t)B * sizeof *mp_);
    int *len = malloc((size_t)B * sizeof *len);
    srand(1);
    for (int i = 0; i < B * S; i++) {
        tok[i] = rand() % V;
        mask[i] = 1;
    }
    for (int b = 0; b < B; b++) {
        tp[b] = tok + (size_t)b * S;
        mp_[b] = mask + (size_t)b * S;
        len[b] = S;
    }
    float loss = 0, norm = 0, lr = 0;
    double t0 = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) t0 = now();
        if (trainer_forward_backward(t, tp, mp_, len, B, &loss, &err) != BS_OK ||
            trainer_step(t, &norm, &lr, &err) != BS_OK) {
            fprintf(stderr, "train_step: %s\n", err.msg);
            return 1;
        }
    }
    double dt = now() - t0;
    printf("{\"impl\":\"basalt\",\"threads\":%d,\"batch\":%d,\"seq\":%d,\"steps\":%d,\"tok_s\":%.1f,\"loss\":%.4f}\n",
           threads, B, S, steps, (double)B * S * steps / dt, loss);
    trainer_close(t);
    model_close(m);
    free(tok);
    free(mask);
    free(tp);
    free(mp_);
    free(len);
    return 0;
}
