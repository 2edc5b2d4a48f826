/* engine/quantize.h — weight type mixes, and writing a model as a GGUF file
 * that llama.cpp reads.
 *
 * A mix names the dtype of every weight matrix.  Plain float types (f32, f16,
 * bf16) behave like llama.cpp's convert_hf_to_gguf --outtype: every matrix
 * gets the type.  Quantized types behave like llama-quantize: every matrix
 * gets the type except the output head (or the token embedding when the head
 * is tied to it), which becomes Q6_K (Q8_0 when its rows are not a multiple
 * of 256 or the type is Q8_0); q4_k_m also raises attn_v and ffn_down to
 * Q6_K on llama-quantize's use_more_bits layers.  A matrix whose rows are not
 * whole blocks of its type falls back to Q8_0, then F16 (llama-quantize
 * would pick Q5_0 for Q4_K, a type basalt does not have).  Norms, biases and
 * rope_freqs stay F32.  Quantizers are kern_quantize's round-to-nearest
 * (llama.cpp's block layouts; no importance matrix). */
#ifndef BASALT_ENGINE_QUANTIZE_H
#define BASALT_ENGINE_QUANTIZE_H

#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "format/gguf_write.h"
#include "tokenizer/tokenizer.h"

typedef enum {
    BS_QUANT_NONE, /* keep the stored dtypes (the load default) */
    BS_QUANT_F32,
    BS_QUANT_F16,
    BS_QUANT_BF16,
    BS_QUANT_Q8_0,
    BS_QUANT_Q4_0,
    BS_QUANT_Q4_K,
    BS_QUANT_Q6_K,
    BS_QUANT_Q4_K_M,
} bs_quant;

/* "f32" "f16" "bf16" "q8_0" "q4_0" "q4_k" "q6_k" "q4_k_m" (any case). */
bs_status quant_parse(const char *name, bs_quant *out, bs_error *err);
const char *quant_name(bs_quant q);
/* llama.cpp's general.file_type for the mix (q4_k writes MOSTLY_Q4_K_S). */
uint32_t quant_file_type(bs_quant q);

/* Which weight a matrix is, for quant_matrix_dtype. */
typedef enum {
    QUANT_ROLE_EMBED, QUANT_ROLE_OUTPUT, QUANT_ROLE_ATTN_V, QUANT_ROLE_FFN_DOWN, QUANT_ROLE_OTHER
} quant_role;

/* The dtype of one matrix under mix q (q != BS_QUANT_NONE): layer and
 * n_layers place layer matrices; tied says the embedding doubles as the
 * output head; cols is the row length. */
bs_dtype quant_matrix_dtype(bs_quant q, quant_role role, int layer, int n_layers, int tied, int64_t cols);

/* Progress of quantize_to_gguf: tensor i (0-based) of n, named name, is
 * about to be written as dtype. */
typedef void (*quantize_progress_fn)(void *ctx, int i, int n, const char *name, bs_dtype dtype);

typedef struct quantize_params {
    int n_threads; /* <= 0: all cores */
    quantize_progress_fn progress; /* may be NULL */
    void *progress_ctx;
} quantize_params;

/* tokenizer.ggml.* metadata for tok, as llama.cpp's converter writes it:
 * tokens padded to n_vocab with [PADn] entries of type UNUSED; byte-level
 * BPE as "gpt2" with its merges and the pre-tokenizer name whose regexes
 * match (fails naming path when none does); SentencePiece-style as "llama"
 * with scores (from merge ranks when the tokenizer came from tokenizer.json);
 * special token ids and add_bos/add_eos flags. */
bs_status quantize_write_tokenizer(gguf_writer *w, const bs_tokenizer *tok, int n_vocab, const char *path,
                                   bs_error *err);

/* Load the model at in_path (a Hugging Face directory or a GGUF file) and
 * write it to out_path as GGUF v3 under mix q: llama.cpp's metadata keys for
 * the architecture (mistral is written as llama; its sliding window cannot
 * be expressed and is dropped with a warning), blk.N tensor names, llama Q/K
 * rows permuted to adjacent RoPE pairs as convert_hf_to_gguf does, llama3
 * rope scaling as rope_freqs.weight, the tokenizer as tokenizer.ggml.* and
 * the chat template(s).  Tensors are converted and written one at a time.
 * On failure out_path is removed. */
bs_status quantize_to_gguf(const char *in_path, const char *out_path, bs_quant q, const quantize_params *p,
                           bs_error *err);

#endif
