/* train/optim.h — the optimizer's pieces, each a pure function of its
 * arguments so they can be checked against exact values: the learning-rate
 * schedule (transformers' get_{constant,linear,cosine}_schedule_with_warmup),
 * global-norm gradient clipping (torch.nn.utils.clip_grad_norm_) and the
 * AdamW update (torch.optim.AdamW, decoupled decay, bias correction). */
#ifndef BASALT_TRAIN_OPTIM_H
#define BASALT_TRAIN_OPTIM_H

#include <stddef.h>

#include "train/trainer.h"

/* The learning rate of update number `step` (0-based, as a LambdaLR's epoch):
 * lr * step / warmup during warmup, then constant, linear to 0 at `total`,
 * or half a cosine to 0 at `total`. */
float lr_at(bs_lr_schedule schedule, float lr, int step, int warmup, int total);

/* *sumsq += sum of g^2 over n values, accumulated in double. */
void grad_sumsq(const float *g, size_t n, double *sumsq);

/* g *= max_norm / (norm + 1e-6) when that factor is below 1. */
void grad_clip(float *g, size_t n, double norm, float max_norm);

/* One AdamW update of n parameters at step t (1-based):
 * p -= lr*wd*p;  m,v <- moments;  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, int t);

#endif
