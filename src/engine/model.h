/* engine/model.h — a loaded decoder-only transformer: its configuration, its
 * weights (mmapped views in their stored dtype, or one owned allocation for
 * random models), its tokenizer and the compute thread pool its contexts use.
 *
 * Architectures: Llama (2, 3.x with llama3 RoPE scaling), Mistral, Qwen2
 * (q/k/v bias), Qwen3 (per-head q/k RMSNorm, explicit head_dim).  Sources: a
 * Hugging Face directory (config.json + safetensors) or a GGUF v3 file. */
#ifndef BASALT_ENGINE_MODEL_H
#define BASALT_ENGINE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "engine/quantize.h"
#include "tokenizer/tokenizer.h"

typedef enum { BS_ARCH_LLAMA, BS_ARCH_MISTRAL, BS_ARCH_QWEN2, BS_ARCH_QWEN3 } bs_arch;

typedef enum {
    BS_ROPE_SCALING_NONE,
    BS_ROPE_SCALING_LLAMA3, /* transformers _compute_llama3_parameters */
} bs_rope_scaling;

typedef struct bs_model_config {
    bs_arch arch;
    int n_vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, max_pos;
    float rms_eps, rope_theta;
    bs_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos;                                          /* llama3 */
    int rope_neox;       /* 1: pair i with i+head_dim/2 (HF); 0: adjacent pairs (GGUF llama) */
    int sliding_window;  /* 0 = full causal attention; else attend to the last n positions */
    int tied_embeddings; /* LM head reuses the token embedding */
    int qkv_bias, o_bias, mlp_bias;
    int qk_norm; /* Qwen3: RMSNorm over head_dim per head, before RoPE */
} bs_model_config;

typedef struct bs_model bs_model;

typedef struct bs_model_params {
    int n_threads; /* <= 0: all cores */
    /* Not BS_QUANT_NONE: convert the weight matrices of a Hugging Face (or
     * random) model to this mix at load, into one allocation the model owns
     * (engine/quantize.h has the per-matrix rules; vectors stay f32).  GGUF
     * files are refused: they are quantized already (basalt quantize). */
    bs_quant quantize;
    /* Keep weight matrices in their file layout.  By default they are
     * interleaved at load, 16 rows at a time (base/dtype.h's _R16 types,
     * kernels/qinterleave.c), when the CPU's kernels gain from that layout;
     * exporters that copy blocks out (basalt quantize, merge) keep it plain. */
    int plain_layout;
} bs_model_params;

/* path: a Hugging Face model directory or a .gguf file.  Loads the config,
 * maps the weights, and opens the tokenizer when the files carry one. */
bs_status model_open(const char *path, const bs_model_params *p, bs_model **out, bs_error *err);

/* Seeded random f32 weights for cfg (rope_neox, flags and all honoured) and
 * the byte-level tokenizer; cfg->n_vocab must cover the tokenizer's vocab. */
bs_status model_open_random(const bs_model_config *cfg, uint64_t seed, const bs_model_params *p,
                            bs_model **out, bs_error *err);
void model_close(bs_model *m);

const bs_model_config *model_config(const bs_model *m);
const bs_tokenizer *model_tokenizer(const bs_model *m); /* NULL when the files carry none */
/* End of generation: the tokenizer's end tokens plus config/generation_config eos ids. */
int model_is_eog(const bs_model *m, int32_t token);
size_t model_weight_bytes(const bs_model *m); /* bytes of weights read per token */
const char *model_describe(const bs_model *m); /* one line: arch, dims, dtype */
const char *model_arch_name(bs_arch arch);

/* ---- read-only weight views (training reads the frozen base through these) */

/* A weight matrix [rows][cols] in its stored dtype; rows are contiguous
 * (row_bytes each, whole quantization blocks). */
typedef struct bs_weight {
    const void *data;
    bs_dtype dtype;
    int rows, cols;
    size_t row_bytes;
} bs_weight;

/* The seven linear projections of a block, in data-flow order. */
typedef enum { BS_LIN_Q, BS_LIN_K, BS_LIN_V, BS_LIN_O, BS_LIN_GATE, BS_LIN_UP, BS_LIN_DOWN, BS_LIN_COUNT } bs_lin;

/* One block.  Vectors are f32; absent ones (bias, q/k norm) are NULL.
 * w[BS_LIN_Q] is [n_heads*head_dim][dim], K/V [n_kv_heads*head_dim][dim],
 * O [dim][n_heads*head_dim], GATE/UP [ffn_dim][dim], DOWN [dim][ffn_dim]. */
typedef struct bs_layer_weights {
    const float *attn_norm, *q_norm, *k_norm, *ffn_norm; /* [dim], [head_dim] x2, [dim] */
    bs_weight w[BS_LIN_COUNT];
    const float *bias[BS_LIN_COUNT]; /* [rows of w[i]] */
} bs_layer_weights;

typedef struct bs_model_weights {
    bs_weight tok_embd;     /* [n_vocab][dim] */
    bs_weight lm_head;      /* [n_vocab][dim]; same data as tok_embd when tied */
    const float *out_norm;  /* [dim] */
    const float *inv_freq;  /* [head_dim/2] rotary frequencies after scaling */
} bs_model_weights;

void model_weights(const bs_model *m, bs_model_weights *out);
void model_layer_weights(const bs_model *m, int layer, bs_layer_weights *out);

#endif
