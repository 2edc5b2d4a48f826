/* engine/adapter.h — a LoRA adapter over a loaded base model, for serving.
 *
 * For each adapted projection W (out x in) of each layer the adapter holds
 * A (r x in) and B (out x r), f32, as named views into one allocation, and
 * the forward pass adds scale * B (A x) to W x (engine/batch.c does it per
 * sequence, so requests for different adapters and the base share a step).
 * scale = alpha / r, or alpha / sqrt(r) with rsLoRA.
 *
 * Interchange is Hugging Face PEFT's directory format: adapter_config.json
 * plus adapter_model.safetensors with tensors named
 *     base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight  [r, in]
 *     base_model.model.model.layers.N.self_attn.q_proj.lora_B.weight  [out, r]
 * (mlp.gate_proj / up_proj / down_proj likewise; a ".default" adapter-name
 * infix before ".weight" is accepted on load).  Only plain LoRA is taken:
 * no DoRA, no biases, no modules_to_save, no per-module rank/alpha patterns,
 * no fan_in_fan_out; lora_dropout only matters in training and is ignored.
 *
 * Row order: the adapter keeps B in the base's stored row order.  GGUF llama
 * files permute Q/K rows for adjacent-pair RoPE (docs/design.md), so loading
 * a PEFT file over such a base permutes those B rows the same way and saving
 * undoes it; adapter_from_tensors takes tensors already in the base's order
 * (as train/trainer.h produces them over that base).
 *
 * Lifetime: reference-counted.  The creator holds one reference; every
 * scheduler request using the adapter holds another, so an adapter a server
 * unloads stays alive until its running requests end.  The base model must
 * outlive every reference. */
#ifndef BASALT_ENGINE_ADAPTER_H
#define BASALT_ENGINE_ADAPTER_H

#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "engine/model.h"

/* Largest rank accepted (vLLM's --max-lora-rank ceiling); sizes the batch's
 * LoRA scratch. */
#define BS_ADAPTER_MAX_RANK 256

typedef struct bs_adapter bs_adapter;

typedef struct bs_adapter_config {
    int rank;               /* r, 1..BS_ADAPTER_MAX_RANK */
    float alpha;            /* lora_alpha */
    int rslora;             /* use_rslora: scale alpha / sqrt(r) */
    unsigned targets;       /* bit (1u << lin) per adapted bs_lin, as train/trainer.h BS_LORA_TARGET */
    const char *base_model; /* base_model_name_or_path written on save; may be NULL */
} bs_adapter_config;

/* An f32 [rows][cols] tensor under its PEFT name. */
typedef struct bs_adapter_tensor {
    const char *name;
    const float *data;
    int rows, cols;
} bs_adapter_tensor;

/* Load DIR/adapter_config.json and DIR/adapter_model.safetensors (F32, F16
 * or BF16) over base.  Every tensor must be the lora_A/lora_B of a targeted
 * projection of an existing layer with the base's dimensions and rank r, and
 * every targeted projection (of the layers in layers_to_transform, default
 * all) must have both; the error names the file and the tensor or key. */
bs_status adapter_load_peft(bs_model *base, const char *dir, bs_adapter **out, bs_error *err);

/* Copy tensors (PEFT names, the base's row order) into a new adapter, with
 * the same checks as adapter_load_peft.  How a finished training job hands
 * its A/B over to the server without a file round trip. */
bs_status adapter_from_tensors(bs_model *base, const bs_adapter_config *c, const bs_adapter_tensor *tensors,
                               int n, bs_adapter **out, bs_error *err);

/* Write DIR/adapter_config.json (PEFT LoraConfig fields, sorted keys,
 * 2-space indent, as save_pretrained) and DIR/adapter_model.safetensors with
 * tensors in dtype (F32, F16 or BF16).  base_model overrides the config's
 * base_model_name_or_path when not NULL.  DIR is created if missing. */
bs_status adapter_save_peft(const bs_adapter *a, const char *dir, const char *base_model, bs_dtype dtype,
                            bs_error *err);

/* Write a merged Hugging Face model to OUT_DIR: every base tensor as stored,
 * adapted projections as W + scale * B A (computed in f32, stored in W's
 * dtype), in one model.safetensors, plus config.json, generation_config.json
 * and the tokenizer files copied from the base's directory.  The base must
 * have been opened from a Hugging Face directory (a GGUF base is refused:
 * merge from the checkpoint it was converted from). */
bs_status adapter_merge_hf(const bs_adapter *a, const char *out_dir, bs_error *err);

/* Take another reference; returns a. */
bs_adapter *adapter_retain(bs_adapter *a);
/* Drop a reference; the last frees the adapter.  NULL is ignored. */
void adapter_close(bs_adapter *a);

const bs_model *adapter_base(const bs_adapter *a);
const bs_adapter_config *adapter_config(const bs_adapter *a);
float adapter_scale(const bs_adapter *a);
/* The directory adapter_load_peft read (vLLM's "root" in /v1/models); NULL
 * for an adapter made from tensors. */
const char *adapter_source(const bs_adapter *a);
/* Distinct for every adapter made in this process (never 0): keys the
 * prefix cache so KV computed under one adapter is not reused by another. */
uint64_t adapter_id(const bs_adapter *a);

/* A [rank][in] and B [out][rank] of projection lin in layer; 0 (and NULLs)
 * when that projection is not adapted. */
int adapter_lora(const bs_adapter *a, int layer, bs_lin lin, const float **A, const float **B);

#endif
