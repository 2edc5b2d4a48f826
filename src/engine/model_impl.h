/* engine/model_impl.h — internal to engine/: the model's weight views and the
 * loader plumbing shared by the Hugging Face (load_hf.c) and GGUF
 * (load_gguf.c) readers.  Not part of the public API. */
#ifndef BASALT_ENGINE_MODEL_IMPL_H
#define BASALT_ENGINE_MODEL_IMPL_H

#include "base/dtype.h"
#include "base/tensor.h"
#include "base/threadpool.h"
#include "engine/model.h"
#include "format/gguf.h"
#include "format/safetensors.h"

/* A weight matrix [rows][cols] in its stored dtype; rows are contiguous. */
typedef struct bs_matrix {
    const void *data;
    bs_dtype dtype;
    int rows, cols;
    size_t row_bytes;
} bs_matrix;

/* One transformer block.  q_dim = n_heads*head_dim, kv_dim = n_kv_heads*head_dim.
 * Vectors are f32 (converted at load); optional ones are NULL when absent. */
typedef struct bs_layer {
    const float *attn_norm;       /* [dim] */
    bs_matrix wq;                 /* [q_dim][dim] */
    bs_matrix wk, wv;             /* [kv_dim][dim] */
    bs_matrix wo;                 /* [dim][q_dim] */
    const float *bq;              /* [q_dim] */
    const float *bk, *bv;         /* [kv_dim] */
    const float *bo;              /* [dim] */
    const float *q_norm, *k_norm; /* [head_dim] */
    const float *ffn_norm;        /* [dim] */
    bs_matrix w_gate, w_up;       /* [ffn_dim][dim] */
    bs_matrix w_down;             /* [dim][ffn_dim] */
    const float *b_gate, *b_up;   /* [ffn_dim] */
    const float *b_down;          /* [dim] */
} bs_layer;

struct bs_model {
    bs_model_config cfg;
    bs_matrix tok_embd;     /* [n_vocab][dim] */
    bs_layer *layers;       /* [n_layers] */
    const float *out_norm;  /* [dim] */
    bs_matrix lm_head;      /* [n_vocab][dim]; tok_embd when tied */
    const float *rope_freq_factors; /* [head_dim/2] GGUF rope_freqs divisors, or NULL */
    float *inv_freq;        /* [head_dim/2] rotary frequencies after scaling */
    float *vecs;            /* owns the f32 copies of all small vectors */
    void *random_weights;   /* owns the weights of a random model */
    size_t random_bytes;    /* its size */
    void *quant_weights;    /* owns matrices converted at load (bs_model_params.quantize) */
    size_t quant_bytes;     /* its size */
    void *interleaved;      /* owns the _R16 copies of mapped matrices */
    st_set *st;             /* owns the mapping of a Hugging Face model */
    gguf_file *gguf;        /* owns the mapping of a GGUF model */
    bs_tokenizer *tok;
    int32_t *eog_ids;       /* extra end-of-generation ids from config files */
    int n_eog;
    bs_threadpool *pool;
    char describe[256];
};

/* Weight roles; names[] tables in the loaders are indexed by these.  Layer
 * roles are printf formats taking the layer index. */
typedef enum {
    W_EMBED, W_OUT_NORM, W_LM_HEAD, W_ROPE_FREQS,
    W_ATTN_NORM, W_Q, W_K, W_V, W_O, W_Q_BIAS, W_K_BIAS, W_V_BIAS, W_O_BIAS, W_Q_NORM, W_K_NORM,
    W_FFN_NORM, W_GATE, W_UP, W_DOWN, W_GATE_BIAS, W_UP_BIAS, W_DOWN_BIAS,
    W_COUNT
} weight_role;
enum { W_FIRST_LAYER_ROLE = W_ATTN_NORM };

/* Every tensor of a checkpoint, sorted by name, with a used mark so tensors
 * the architecture does not consume are reported instead of ignored. */
typedef struct weight_source {
    const char *path;          /* directory or file, for messages */
    const st_set *st;          /* per-tensor shard names; NULL for GGUF */
    const char *const *names;  /* [W_COUNT]; NULL where the format has no such tensor */
    const bs_tensor **tensors; /* [n] */
    unsigned char *used;       /* [n] */
    size_t n;
} weight_source;

/* Collect the tensors (array of n pointers, copied) and sort them by name. */
bs_status weight_source_init(weight_source *src, const char *path, const st_set *st,
                             const char *const *names, const bs_tensor *const *tensors, size_t n,
                             bs_error *err);
void weight_source_free(weight_source *src);
const bs_tensor *weight_source_find(const weight_source *src, const char *name);

/* Check the config, bind every weight the config calls for (shape-checked,
 * vectors converted to f32), fail on tensors left over, then compute the
 * rotary frequencies, open the thread pool and write the description. */
bs_status model_check_config(const bs_model_config *c, const char *path, bs_error *err);
bs_status model_bind_weights(bs_model *m, weight_source *src, bs_error *err);
bs_status model_finish(bs_model *m, const bs_model_params *p, bs_error *err);

/* Append ids to m->eog_ids (deduplicated). */
bs_status model_add_eog(bs_model *m, int32_t id, bs_error *err);

/* Visit every weight the config calls for (as model_bind_weights binds
 * them; rope_freqs excluded): slot is the bs_matrix (cols > 0) or the
 * const float * (vectors) the role binds to. */
typedef bs_status (*model_weight_fn)(void *ctx, weight_role r, int layer, void *slot, int64_t rows, int64_t cols,
                                     bs_error *err);
bs_status model_visit_weights(bs_model *m, model_weight_fn fn, void *ctx, bs_error *err);

/* quantize.c: convert m's matrices to mix q in memory (m->quant_weights);
 * Hugging Face and random models only.  Needs m->pool. */
bs_status model_quantize_weights(bs_model *m, bs_quant q, bs_error *err);

/* Tensor names per role in each format (printf formats for layer roles). */
extern const char *const hf_weight_names[W_COUNT];
extern const char *const gguf_weight_names[W_COUNT];

bs_status load_hf(bs_model *m, const char *dir, bs_error *err);
bs_status load_gguf(bs_model *m, const char *path, bs_error *err);

#endif
