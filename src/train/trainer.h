/* train/trainer.h — fine-tune a loaded model: LoRA adapters over its frozen
 * weights (f32, f16/bf16 or quantized: gradients flow through the
 * dequantized base, QLoRA-style) or full-parameter training of f32 master
 * copies.  Causal-LM loss with per-token weights, AdamW with a warmup +
 * decay schedule, global-norm clipping, gradient accumulation and optional
 * activation recomputation.  Deterministic for a given seed and BLAS thread
 * count.  The SFT/RFT job runners drive it:
 *
 *     trainer_open -> { trainer_forward_backward x accum ; trainer_step } x N -> trainer_close
 *
 * Trained tensors are exposed by name (PEFT names for LoRA, Hugging Face
 * names for full training) for saving and serving. */
#ifndef BASALT_TRAIN_TRAINER_H
#define BASALT_TRAIN_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/model.h"

#define BS_LORA_TARGET(lin) (1u << (lin)) /* lin: a bs_lin (BS_LIN_Q ... BS_LIN_DOWN) */
#define BS_LORA_ALL_LINEAR ((1u << BS_LIN_COUNT) - 1)

typedef struct bs_lora_config {
    int rank;         /* r >= 1 */
    float alpha;      /* scale = alpha / r, or alpha / sqrt(r) with rslora */
    float dropout;    /* on the adapter's input, 0 <= p < 1 */
    int rslora;
    unsigned targets; /* BS_LORA_TARGET bits; PEFT init: A Kaiming-uniform(a=sqrt(5)), B = 0 */
} bs_lora_config;

typedef enum { BS_SCHEDULE_CONSTANT, BS_SCHEDULE_LINEAR, BS_SCHEDULE_COSINE } bs_lr_schedule;

typedef struct bs_train_config {
    int full;                   /* 1: train every parameter (f32 masters); 0: LoRA */
    bs_lora_config lora;
    float lr, weight_decay;     /* decay skips norms and biases in full training */
    float beta1, beta2, eps;
    float clip_norm;            /* <= 0: no clipping */
    int warmup_steps, total_steps;
    bs_lr_schedule schedule;
    int recompute;              /* keep only each layer's input; recompute the rest in backward */
    uint64_t seed;              /* LoRA init and dropout masks */
    int max_tokens;             /* capacity: most tokens (sum of lengths) in one micro-batch */
} bs_train_config;

/* Defaults in the spirit of transformers/PEFT: LoRA r=16, alpha=32, all
 * linear layers, lr 2e-4, wd 0, betas (0.9, 0.999), eps 1e-8, clip 1.0,
 * linear schedule, 1024 tokens. */
void train_config_default(bs_train_config *c);

typedef struct bs_trainer bs_trainer;

/* The model must outlive the trainer; its weights are never written. */
bs_status trainer_open(bs_model *base, const bs_train_config *c, bs_trainer **out, bs_error *err);
void trainer_close(bs_trainer *t);

/* One micro-batch of B sequences (packed, each attending only to itself).
 * Position t of sequence b predicts tokens[b][t+1] with weight
 * loss_mask[b][t+1] (so loss_mask marks target tokens, as labels != -100 do
 * in transformers; loss_mask[b][0] is unused).  Adds the gradient of the
 * micro-batch's mean loss over weighted tokens and returns that loss.
 * A micro-batch with no weighted target token has loss 0 and no gradient. */
bs_status trainer_forward_backward(bs_trainer *t, const int32_t *const *tokens, const float *const *loss_mask,
                                   const int *lengths, int B, float *loss, bs_error *err);

/* The same loss, forward only (no dropout, gradients untouched). */
bs_status trainer_eval_loss(bs_trainer *t, const int32_t *const *tokens, const float *const *loss_mask,
                            const int *lengths, int B, float *loss, bs_error *err);

/* Reinforcement fine-tuning.  Per-token log-probs, forward only (no
 * dropout, gradients untouched): logprobs[b][i] = log p(tokens[b][i] |
 * tokens[b][<i]) for 1 <= i < lengths[b], [b][0] = 0; entropy (NULL: not
 * wanted) the same for the entropy of the predicting softmax.  adapter_on 0
 * computes them with the LoRA delta switched off: the frozen base, GRPO's
 * reference policy without a second copy of the model (BS_EINVAL in full
 * training, which keeps no frozen base). */
bs_status trainer_token_logprobs(bs_trainer *t, const int32_t *const *tokens, const int *lengths, int B,
                                 int adapter_on, float *const *logprobs, float *const *entropy, bs_error *err);

/* The generalised loss: objective = sum_b sum_{i>=1} token_weights[b][i] ·
 * logprobs[b][i] (any sign; indexed like loss_mask).  Adds its gradient and
 * returns it; trainer_forward_backward is the case -mask/sum(mask).  A
 * policy-gradient loss passes its dLoss/dlogp here.  All-zero weights: 0 and
 * no gradient. */
bs_status trainer_forward_backward_weighted(bs_trainer *t, const int32_t *const *tokens,
                                            const float *const *token_weights, const int *lengths, int B,
                                            float *objective, bs_error *err);

/* One optimizer update from the micro-batches since the last step: average
 * their gradients, clip by global norm, AdamW at the scheduled learning
 * rate, zero the gradients.  Reports the global norm before clipping and the
 * learning rate used.  A non-finite norm skips the update (BS_ERANGE). */
bs_status trainer_step(bs_trainer *t, float *grad_norm, float *lr, bs_error *err);

int trainer_steps_done(const bs_trainer *t);

/* Everything besides the trained tensors that later updates depend on, so a
 * checkpoint can resume bit for bit: the AdamW moments of every trained value
 * (m then v, each laid out like the tensors' data in trainer_tensor order),
 * the updates done (the schedule's position and bias correction) and the
 * micro-batches seen (the key of the next dropout masks).  The moments are
 * writable; set the counters with trainer_set_counters. */
size_t trainer_n_params(const bs_trainer *t); /* sum of rows*cols over the tensors */
float *trainer_moments(bs_trainer *t);        /* [2][trainer_n_params] */
void trainer_counters(const bs_trainer *t, int *steps, uint64_t *micro_batches);
/* Only between steps (no gradients pending).  BS_EINVAL for negative steps. */
bs_status trainer_set_counters(bs_trainer *t, int steps, uint64_t micro_batches, bs_error *err);

/* A trained tensor: f32 [rows][cols] (cols == 1 for vectors), writable (to
 * load a checkpoint), and its accumulated gradient (the sum over the
 * micro-batches since the last step).  Names: LoRA
 * "base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight" (A is
 * [r][in], B [out][r]); full training the model's Hugging Face names. */
typedef struct bs_train_tensor {
    char name[96];
    float *data, *grad;
    int rows, cols;
    int layer;         /* -1 for embedding, final norm and head */
    int lin;           /* the bs_lin projection it belongs to (LoRA A/B, weight, bias); else -1 */
    int decay;         /* weight decay applies */
} bs_train_tensor;

int trainer_n_tensors(const bs_trainer *t);
const bs_train_tensor *trainer_tensor(const bs_trainer *t, int i); /* in data-flow order */
/* LoRA scale applied to B·A (alpha/r or alpha/sqrt(r)); 0 in full training. */
float trainer_lora_scale(const bs_trainer *t);
const bs_train_config *trainer_config(const bs_trainer *t);

#endif
