/* train/trainer.c — the training loop's state and passes (see trainer.h).
 *
 * Memory: the trained tensors, their gradients, the AdamW moments and the
 * activations are each ONE allocation carved into named views, sized at
 * open from the model config and max_tokens; a step allocates nothing.
 *
 * The forward sees every linear layer as a lin_view: a weight (the frozen
 * base in its stored dtype, or an f32 master in full training), an optional
 * bias and an optional LoRA pair.  Per layer it saves what the backward
 * needs (layer_acts); with recompute only the residual stream entering each
 * layer is kept and one layer_acts is refilled from it during the backward. */
#include "train/trainer.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "kernels/kernels.h"
#include "train/ops.h"
#include "train/optim.h"

typedef struct lin_view {
    bs_weight w;         /* [out][in] */
    bs_weight wt;        /* [in][out] a frozen float w transposed for the backward, or .data NULL */
    float *dw;           /* NULL: frozen */
    const float *b;      /* [out] or NULL */
    float *db;           /* NULL: frozen or no bias */
    float *A, *B;        /* LoRA [r][in], [out][r]; NULL when not adapted */
    float *dA, *dB;
} lin_view;

typedef struct layer_view {
    const float *attn_norm, *q_norm, *k_norm, *ffn_norm;
    float *d_attn_norm, *d_q_norm, *d_k_norm, *d_ffn_norm; /* NULL: frozen */
    lin_view lin[BS_LIN_COUNT];
} layer_view;

/* What one layer's backward reads, for up to max_tokens rows T. */
typedef struct layer_acts {
    float *xn1, *rstd1;          /* [T][dim], [T]          attention RMSNorm */
    float *q_lin, *rstd_q;       /* [T][q_dim], [T*H]      before q norm (qk_norm only) */
    float *k_lin, *rstd_k;       /* [T][kv_dim], [T*KV]    before k norm (qk_norm only) */
    float *q, *k, *v;            /* [T][q_dim], [T][kv_dim] x2: attention inputs (after norm, RoPE) */
    float *lse;                  /* [T][H] */
    float *att;                  /* [T][q_dim] attention output */
    float *x_mid;                /* [T][dim] residual after attention */
    float *xn2, *rstd2;          /* [T][dim], [T]          MLP RMSNorm */
    float *g, *u, *h;            /* [T][ffn] gate, up, silu(gate)*up */
    float *lora_x[BS_LIN_COUNT]; /* [T][in] dropped-out adapter input (dropout > 0) */
    float *lora_u[BS_LIN_COUNT]; /* [T][r]  A·x */
} layer_acts;

typedef enum {
    R_EMBED, R_ATTN_NORM, R_Q_NORM, R_K_NORM, R_FFN_NORM, R_WEIGHT, R_BIAS, R_LORA_A, R_LORA_B, R_OUT_NORM, R_HEAD
} tensor_role;

struct bs_trainer {
    bs_model_config cfg;
    bs_train_config tc;
    float lora_scale;
    int q_dim, kv_dim;

    /* trained tensors: params, grads, moments (m then v) are one allocation each */
    bs_train_tensor *tensors;
    tensor_role *roles;
    int n_tensors;
    size_t n_params;
    float *params, *grads, *moments;

    /* the model as the passes see it */
    bs_weight embed, head;
    float *d_embed, *d_head;
    const float *out_norm;
    float *d_out_norm;
    layer_view *layers;

    /* activations and batch geometry (views into act_mem) */
    int n_act_layers; /* n_layers, or 1 with recompute */
    layer_acts *acts;
    float *xs;                 /* [n_layers+1][max_tokens][dim] residual stream entering each layer, then final */
    float *xf, *rstdf;         /* [T][dim], [T] final RMSNorm */
    float *logits;             /* [logit_rows][n_vocab] one chunk of rows through the head */
    float *dx, *dxn;           /* [T][dim] residual gradient; gradient of a norm's output */
    float *dq, *dk, *dv;       /* [T][q_dim], [T][kv_dim] x2 */
    float *dq_lin, *dk_lin;    /* [T][q_dim], [T][kv_dim] before q/k norm (qk_norm only) */
    float *datt;               /* [T][q_dim] */
    float *dg, *du, *dh;       /* [T][ffn] */
    float *dlora_x, *dlora_u;  /* [T][max in], [T][r] */
    float *scratch;            /* [max(T, MATMUL_CHUNK_ROWS)][max cols] dequantized weight rows or an input gradient */
    float *cos_t, *sin_t;      /* [max_tokens][head_dim/2] */
    float *weight;             /* [T] loss weight of row t's target */
    float *act_mem;
    int32_t *tok, *target;     /* [T] */
    int *pos, *seq_start;      /* [T], [n_seq+1] */
    int n_seq;
    int logit_rows;
    float *head_f32;           /* [n_vocab][dim] a frozen quantized head dequantized once at open, or NULL */
    bs_weight head_t;          /* [dim][n_vocab] a frozen float head transposed, or .data NULL */
    void *wt_mem;              /* the transposed copies (lin_view.wt, head_t), one allocation */
    bs_threadpool *pool;       /* frozen-weight matmuls, attention, SwiGLU, cross-entropy: as many threads as OpenBLAS uses */
    double *thread_loss;       /* [pool size] each thread's share of a chunk's cross-entropy */

    int n_micro;               /* micro-batches accumulated since the last step */
    uint64_t n_batches;        /* forward_backward calls so far: dropout mask keys */
    int steps;
};

static const char *const lin_module[BS_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

void train_config_default(bs_train_config *c) {
    *c = (bs_train_config){
        .lora = {.rank = 16, .alpha = 32, .targets = BS_LORA_ALL_LINEAR},
        .lr = 2e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .clip_norm = 1.0f,
        .total_steps = 1, .schedule = BS_SCHEDULE_LINEAR, .max_tokens = 1024,
    };
}

static bs_status check_config(const bs_train_config *c, bs_error *err) {
    const bs_lora_config *l = &c->lora;
    if (!c->full && (l->rank < 1 || l->rank > 4096))
        return bs_fail(err, BS_EINVAL, "trainer: LoRA rank %d is outside 1..4096", l->rank);
    if (!c->full && (!l->targets || (l->targets & ~BS_LORA_ALL_LINEAR)))
        return bs_fail(err, BS_EINVAL, "trainer: LoRA targets 0x%x name no projection or unknown ones", l->targets);
    if (!c->full && !(l->dropout >= 0 && l->dropout < 1))
        return bs_fail(err, BS_EINVAL, "trainer: LoRA dropout %g is outside [0, 1)", l->dropout);
    if (!(c->lr >= 0) || !(c->weight_decay >= 0) || !(c->eps > 0) || !(c->beta1 >= 0 && c->beta1 < 1) ||
        !(c->beta2 >= 0 && c->beta2 < 1))
        return bs_fail(err, BS_EINVAL,
                       "trainer: need lr >= 0, weight_decay >= 0, eps > 0 and betas in [0, 1) "
                       "(lr %g, wd %g, eps %g, betas %g %g)",
                       c->lr, c->weight_decay, c->eps, c->beta1, c->beta2);
    if (c->warmup_steps < 0 || c->total_steps < 1)
        return bs_fail(err, BS_EINVAL, "trainer: warmup %d must be >= 0 and total steps %d >= 1", c->warmup_steps,
                       c->total_steps);
    if (c->max_tokens < 1 || c->max_tokens > (1 << 24))
        return bs_fail(err, BS_EINVAL, "trainer: max_tokens %d is outside 1..%d", c->max_tokens, 1 << 24);
    return BS_OK;
}

/* ---- trained tensors ----------------------------------------------------- */

static void add_tensor(bs_trainer *t, tensor_role role, int layer, int lin, int rows, int cols, int decay,
                       const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void add_tensor(bs_trainer *t, tensor_role role, int layer, int lin, int rows, int cols, int decay,
                       const char *fmt, ...) {
    bs_train_tensor *x = &t->tensors[t->n_tensors];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->name, sizeof x->name, fmt, ap);
    va_end(ap);
    x->rows = rows;
    x->cols = cols;
    x->layer = layer;
    x->lin = lin;
    x->decay = decay;
    t->roles[t->n_tensors++] = role;
    t->n_params += (size_t)rows * cols;
}

/* The trained tensors in data-flow order.  Full training: every parameter,
 * decay on matrices only (transformers skips biases and norm weights).
 * LoRA: A and B of each adapted projection. */
static void plan_tensors(bs_trainer *t, const bs_model *m) {
    const bs_model_config *c = &t->cfg;
    int r = t->tc.lora.rank;
    if (t->tc.full) add_tensor(t, R_EMBED, -1, -1, c->n_vocab, c->dim, 1, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        bs_layer_weights w;
        model_layer_weights(m, l, &w);
        if (t->tc.full) add_tensor(t, R_ATTN_NORM, l, -1, c->dim, 1, 0, "model.layers.%d.input_layernorm.weight", l);
        for (int i = 0; i < BS_LIN_COUNT; i++) {
            if (t->tc.full && i == BS_LIN_O && c->qk_norm) {
                add_tensor(t, R_Q_NORM, l, -1, c->head_dim, 1, 0, "model.layers.%d.self_attn.q_norm.weight", l);
                add_tensor(t, R_K_NORM, l, -1, c->head_dim, 1, 0, "model.layers.%d.self_attn.k_norm.weight", l);
            }
            if (t->tc.full && i == BS_LIN_GATE)
                add_tensor(t, R_FFN_NORM, l, -1, c->dim, 1, 0, "model.layers.%d.post_attention_layernorm.weight", l);
            if (t->tc.full) {
                add_tensor(t, R_WEIGHT, l, i, w.w[i].rows, w.w[i].cols, 1, "model.layers.%d.%s.weight", l,
                           lin_module[i]);
                if (w.bias[i])
                    add_tensor(t, R_BIAS, l, i, w.w[i].rows, 1, 0, "model.layers.%d.%s.bias", l, lin_module[i]);
            } else if (t->tc.lora.targets & BS_LORA_TARGET(i)) {
                add_tensor(t, R_LORA_A, l, i, r, w.w[i].cols, 1, "base_model.model.model.layers.%d.%s.lora_A.weight",
                           l, lin_module[i]);
                add_tensor(t, R_LORA_B, l, i, w.w[i].rows, r, 1, "base_model.model.model.layers.%d.%s.lora_B.weight",
                           l, lin_module[i]);
            }
        }
    }
    if (t->tc.full) {
        add_tensor(t, R_OUT_NORM, -1, -1, c->dim, 1, 0, "model.norm.weight");
        if (!c->tied_embeddings) add_tensor(t, R_HEAD, -1, -1, c->n_vocab, c->dim, 1, "lm_head.weight");
    }
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* PEFT's init of lora_A: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)). */
static void kaiming_uniform(float *a, size_t n, int fan_in, uint64_t key) {
    float bound = 1.0f / sqrtf((float)fan_in);
    for (size_t i = 0; i < n; i++) {
        double u = (mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull) >> 11) * 0x1.0p-53;
        a[i] = (float)((2 * u - 1) * bound);
    }
}

static bs_weight f32_view(const float *data, int rows, int cols) {
    return (bs_weight){data, BS_DTYPE_F32, rows, cols, (size_t)cols * sizeof(float)};
}

/* A norm weight's master starts as the base's vector; the view moves to it. */
static void bind_norm(const bs_train_tensor *x, const float **w, float **d) {
    memcpy(x->data, *w, (size_t)x->rows * sizeof(float));
    *w = x->data;
    *d = x->grad;
}

/* Place each tensor in the allocations, fill its initial values and point the views
 * (base weights, or masters and their gradients) where the passes read. */
static void bind_tensors(bs_trainer *t, const bs_model *m) {
    const bs_model_config *c = &t->cfg;
    bs_model_weights mw;
    model_weights(m, &mw);
    t->embed = mw.tok_embd;
    t->head = mw.lm_head;
    t->out_norm = mw.out_norm;
    for (int l = 0; l < c->n_layers; l++) {
        bs_layer_weights w;
        model_layer_weights(m, l, &w);
        layer_view *L = &t->layers[l];
        L->attn_norm = w.attn_norm;
        L->q_norm = w.q_norm;
        L->k_norm = w.k_norm;
        L->ffn_norm = w.ffn_norm;
        for (int i = 0; i < BS_LIN_COUNT; i++) L->lin[i] = (lin_view){.w = w.w[i], .b = w.bias[i]};
    }
    size_t off = 0;
    for (int i = 0; i < t->n_tensors; i++) {
        bs_train_tensor *x = &t->tensors[i];
        size_t n = (size_t)x->rows * x->cols;
        x->data = t->params + off;
        x->grad = t->grads + off;
        off += n;
        layer_view *L = x->layer >= 0 ? &t->layers[x->layer] : NULL;
        lin_view *lv = L && x->lin >= 0 ? &L->lin[x->lin] : NULL;
        switch (t->roles[i]) {
        case R_EMBED:
            kern_dequant_rows(t->embed.dtype, t->embed.data, t->embed.cols, 0, t->embed.rows, x->data);
            t->embed = f32_view(x->data, x->rows, x->cols);
            t->d_embed = x->grad;
            if (c->tied_embeddings) {
                t->head = t->embed;
                t->d_head = x->grad;
            }
            break;
        case R_HEAD:
            kern_dequant_rows(t->head.dtype, t->head.data, t->head.cols, 0, t->head.rows, x->data);
            t->head = f32_view(x->data, x->rows, x->cols);
            t->d_head = x->grad;
            break;
        case R_ATTN_NORM: bind_norm(x, &L->attn_norm, &L->d_attn_norm); break;
        case R_Q_NORM: bind_norm(x, &L->q_norm, &L->d_q_norm); break;
        case R_K_NORM: bind_norm(x, &L->k_norm, &L->d_k_norm); break;
        case R_FFN_NORM: bind_norm(x, &L->ffn_norm, &L->d_ffn_norm); break;
        case R_OUT_NORM: bind_norm(x, &t->out_norm, &t->d_out_norm); break;
        case R_WEIGHT:
            kern_dequant_rows(lv->w.dtype, lv->w.data, lv->w.cols, 0, lv->w.rows, x->data);
            lv->w = f32_view(x->data, x->rows, x->cols);
            lv->dw = x->grad;
            break;
        case R_BIAS:
            memcpy(x->data, lv->b, n * sizeof(float));
            lv->b = x->data;
            lv->db = x->grad;
            break;
        case R_LORA_A:
            kaiming_uniform(x->data, n, x->cols, mix64(t->tc.seed ^ mix64((uint64_t)i + 1)));
            lv->A = x->data;
            lv->dA = x->grad;
            break;
        case R_LORA_B:
            memset(x->data, 0, n * sizeof(float));
            lv->B = x->data;
            lv->dB = x->grad;
            break;
        }
    }
}

/* ---- activations --------------------------------------------------------- */

typedef struct carve {
    float ***views;
    size_t *sizes;
    int n;
    size_t total;
} carve;

static void carve_add(carve *c, float **view, size_t n) {
    c->views[c->n] = view;
    c->sizes[c->n++] = n;
    c->total += n;
}

static bs_status alloc_acts(bs_trainer *t, bs_error *err) {
    const bs_model_config *c = &t->cfg;
    size_t T = (size_t)t->tc.max_tokens, D = (size_t)c->dim, F = (size_t)c->ffn_dim;
    size_t qd = (size_t)t->q_dim, kvd = (size_t)t->kv_dim, r = t->tc.full ? 0 : (size_t)t->tc.lora.rank;
    size_t H = (size_t)c->n_heads, KV = (size_t)c->n_kv_heads, qk = c->qk_norm ? 1 : 0;
    size_t max_in = D > qd ? D : qd;
    if (F > max_in) max_in = F; /* widest input of a projection */
    int drop = !t->tc.full && t->tc.lora.dropout > 0;
    t->n_act_layers = t->tc.recompute ? 1 : c->n_layers;
    t->logit_rows = (1 << 24) / c->n_vocab;
    if (t->logit_rows < 32) t->logit_rows = 32;
    if (t->logit_rows > t->tc.max_tokens) t->logit_rows = t->tc.max_tokens;
    t->acts = calloc((size_t)t->n_act_layers, sizeof *t->acts);
    int max_views = 64 + t->n_act_layers * (18 + 2 * BS_LIN_COUNT);
    carve cv = {calloc((size_t)max_views, sizeof *cv.views), calloc((size_t)max_views, sizeof *cv.sizes), 0, 0};
    if (!t->acts || !cv.views || !cv.sizes) {
        free(cv.views);
        free(cv.sizes);
        return bs_fail(err, BS_ENOMEM, "trainer: out of memory");
    }
    for (int l = 0; l < t->n_act_layers; l++) {
        layer_acts *a = &t->acts[l];
        carve_add(&cv, &a->xn1, T * D);
        carve_add(&cv, &a->rstd1, T);
        carve_add(&cv, &a->q_lin, qk * T * qd);
        carve_add(&cv, &a->rstd_q, qk * T * H);
        carve_add(&cv, &a->k_lin, qk * T * kvd);
        carve_add(&cv, &a->rstd_k, qk * T * KV);
        carve_add(&cv, &a->q, T * qd);
        carve_add(&cv, &a->k, T * kvd);
        carve_add(&cv, &a->v, T * kvd);
        carve_add(&cv, &a->lse, T * H);
        carve_add(&cv, &a->att, T * qd);
        carve_add(&cv, &a->x_mid, T * D);
        carve_add(&cv, &a->xn2, T * D);
        carve_add(&cv, &a->rstd2, T);
        carve_add(&cv, &a->g, T * F);
        carve_add(&cv, &a->u, T * F);
        carve_add(&cv, &a->h, T * F);
        for (int i = 0; i < BS_LIN_COUNT; i++) {
            int on = !t->tc.full && (t->tc.lora.targets & BS_LORA_TARGET(i));
            size_t in = i == BS_LIN_O ? qd : i == BS_LIN_DOWN ? F : D;
            carve_add(&cv, &a->lora_x[i], on && drop ? T * in : 0);
            carve_add(&cv, &a->lora_u[i], on ? T * r : 0);
        }
    }
    carve_add(&cv, &t->xs, ((size_t)c->n_layers + 1) * T * D);
    carve_add(&cv, &t->xf, T * D);
    carve_add(&cv, &t->rstdf, T);
    carve_add(&cv, &t->logits, (size_t)t->logit_rows * c->n_vocab);
    carve_add(&cv, &t->dx, T * D);
    carve_add(&cv, &t->dxn, T * D);
    carve_add(&cv, &t->dq, T * qd);
    carve_add(&cv, &t->dk, T * kvd);
    carve_add(&cv, &t->dv, T * kvd);
    carve_add(&cv, &t->dq_lin, qk * T * qd);
    carve_add(&cv, &t->dk_lin, qk * T * kvd);
    carve_add(&cv, &t->datt, T * qd);
    carve_add(&cv, &t->dg, T * F);
    carve_add(&cv, &t->du, T * F);
    carve_add(&cv, &t->dh, T * F);
    carve_add(&cv, &t->dlora_x, drop ? T * max_in : 0);
    carve_add(&cv, &t->dlora_u, T * r);
    carve_add(&cv, &t->scratch, (T > MATMUL_CHUNK_ROWS ? T : MATMUL_CHUNK_ROWS) * max_in);
    carve_add(&cv, &t->cos_t, T * (size_t)c->head_dim / 2);
    carve_add(&cv, &t->sin_t, T * (size_t)c->head_dim / 2);
    carve_add(&cv, &t->weight, T);
    t->act_mem = calloc(cv.total, sizeof(float));
    t->tok = malloc(T * sizeof *t->tok);
    t->target = malloc(T * sizeof *t->target);
    t->pos = malloc(T * sizeof *t->pos);
    t->seq_start = malloc((T + 1) * sizeof *t->seq_start);
    bs_status st = BS_OK;
    if (!t->act_mem || !t->tok || !t->target || !t->pos || !t->seq_start) {
        st = bs_fail(err, BS_ENOMEM, "trainer: out of memory for activations of %d tokens (%.1f MB)",
                     t->tc.max_tokens, (double)cv.total * sizeof(float) / 1e6);
    } else {
        float *p = t->act_mem;
        for (int i = 0; i < cv.n; i++) {
            *cv.views[i] = p;
            p += cv.sizes[i];
        }
    }
    free(cv.views);
    free(cv.sizes);
    return st;
}

/* cos/sin of pos * inv_freq[i] for every position a micro-batch can hold. */
static void fill_rope_tables(bs_trainer *t, const bs_model *m) {
    bs_model_weights mw;
    model_weights(m, &mw);
    int half = t->cfg.head_dim / 2;
    for (int p = 0; p < t->tc.max_tokens; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * mw.inv_freq[i];
            t->cos_t[(size_t)p * half + i] = (float)cos(a);
            t->sin_t[(size_t)p * half + i] = (float)sin(a);
        }
}

/* Largest frozen quantized head kept as an f32 copy (else it is dequantized
 * in chunks for every group of logit rows, forward and backward). */
#define HEAD_CACHE_MAX_BYTES ((size_t)1 << 30)

/* A frozen quantized head, dequantized once here when memory allows (float
 * heads are read in place by kern_matmul). */
static void cache_head(bs_trainer *t) {
    size_t n = (size_t)t->head.rows * t->head.cols;
    if (t->d_head || bs_dtype_block_elems(t->head.dtype) == 1 || n * sizeof(float) > HEAD_CACHE_MAX_BYTES) return;
    t->head_f32 = malloc(n * sizeof(float));
    if (!t->head_f32) return;
    kern_dequant_rows(t->head.dtype, t->head.data, t->head.cols, 0, t->head.rows, t->head_f32);
    t->head = f32_view(t->head_f32, t->head.rows, t->head.cols);
}

/* Most bytes of transposed frozen weights kept (about the bf16 layers and
 * head of a 2B-parameter model); beyond it every backward goes through
 * cblas_sgemm over W, dequantized in chunks. */
#define TRANSPOSED_MAX_BYTES ((size_t)4 << 30)

/* The backward's input gradient dx = dy·W is a matmul over W^T; kern_matmul
 * reads weight rows, so every frozen float weight (the base of each adapted
 * or frozen projection, a frozen head) gets a transposed copy in its own
 * dtype, made once here: exact, and the same fast kernel as the forward. */
static void cache_transposed(bs_trainer *t) {
    bs_weight *w[1 + BS_LIN_COUNT * t->cfg.n_layers], *wt[1 + BS_LIN_COUNT * t->cfg.n_layers];
    int n = 0;
    for (int l = 0; l < t->cfg.n_layers; l++)
        for (int i = 0; i < BS_LIN_COUNT; i++) {
            lin_view *lv = &t->layers[l].lin[i];
            w[n] = &lv->w;
            wt[n++] = lv->dw ? NULL : &lv->wt;
        }
    w[n] = &t->head;
    wt[n++] = t->d_head ? NULL : &t->head_t;
    size_t total = 0;
    for (int k = 0; k < n; k++)
        if (wt[k] && bs_dtype_block_elems(w[k]->dtype) == 1) total += (size_t)w[k]->rows * w[k]->row_bytes;
    if (!total || total > TRANSPOSED_MAX_BYTES || !(t->wt_mem = malloc(total))) return;
    char *p = t->wt_mem;
    for (int k = 0; k < n; k++) {
        if (!wt[k] || bs_dtype_block_elems(w[k]->dtype) != 1) continue;
        size_t elem = w[k]->row_bytes / (size_t)w[k]->cols;
        kern_transpose_float(w[k]->dtype, w[k]->data, w[k]->rows, w[k]->cols, p);
        *wt[k] = (bs_weight){p, bs_dtype_block_type(w[k]->dtype), w[k]->cols, w[k]->rows, (size_t)w[k]->rows * elem};
        p += (size_t)w[k]->rows * w[k]->row_bytes;
    }
}

/* The pool has as many threads as OpenBLAS uses (sft.h: a run held to N
 * cores stays on N), re-opened when that count changed since the last pass. */
static bs_status sync_pool(bs_trainer *t, bs_error *err) {
    int n = openblas_get_num_threads(), cpus = bs_cpu_count();
    if (n > cpus) n = cpus;
    if (n < 1) n = 1;
    if (t->pool && bs_threadpool_size(t->pool) == n) return BS_OK;
    bs_threadpool_close(t->pool);
    t->pool = NULL;
    return bs_threadpool_open(n, &t->pool, err);
}

/* ---- lifecycle ----------------------------------------------------------- */

bs_status trainer_open(bs_model *base, const bs_train_config *c, bs_trainer **out, bs_error *err) {
    *out = NULL;
    bs_status st = check_config(c, err);
    if (st) return st;
    bs_trainer *t = calloc(1, sizeof *t);
    if (!t) return bs_fail(err, BS_ENOMEM, "trainer: out of memory");
    t->cfg = *model_config(base);
    t->tc = *c;
    t->q_dim = t->cfg.n_heads * t->cfg.head_dim;
    t->kv_dim = t->cfg.n_kv_heads * t->cfg.head_dim;
    if (!c->full)
        t->lora_scale = c->lora.rslora ? c->lora.alpha / sqrtf((float)c->lora.rank) : c->lora.alpha / c->lora.rank;
    int max_tensors = 4 + t->cfg.n_layers * (4 + 2 * BS_LIN_COUNT);
    t->tensors = calloc((size_t)max_tensors, sizeof *t->tensors);
    t->roles = calloc((size_t)max_tensors, sizeof *t->roles);
    t->layers = calloc((size_t)t->cfg.n_layers, sizeof *t->layers);
    if (!t->tensors || !t->roles || !t->layers) {
        trainer_close(t);
        return bs_fail(err, BS_ENOMEM, "trainer: out of memory");
    }
    plan_tensors(t, base);
    t->params = malloc(t->n_params * sizeof(float));
    t->grads = calloc(t->n_params, sizeof(float));
    t->moments = calloc(2 * t->n_params, sizeof(float));
    if (!t->params || !t->grads || !t->moments) {
        trainer_close(t);
        return bs_fail(err, BS_ENOMEM, "trainer: out of memory for %zu trained parameters (%.1f MB with state)",
                       t->n_params, (double)t->n_params * 16 / 1e6);
    }
    bind_tensors(t, base);
    st = alloc_acts(t, err);
    if (st) {
        trainer_close(t);
        return st;
    }
    fill_rope_tables(t, base);
    cache_head(t);
    cache_transposed(t);
    st = sync_pool(t, err);
    if (st) {
        trainer_close(t);
        return st;
    }
    t->thread_loss = calloc((size_t)bs_cpu_count(), sizeof *t->thread_loss);
    if (!t->thread_loss) {
        trainer_close(t);
        return bs_fail(err, BS_ENOMEM, "trainer: out of memory");
    }
    *out = t;
    return BS_OK;
}

void trainer_close(bs_trainer *t) {
    if (!t) return;
    free(t->tensors);
    free(t->roles);
    free(t->layers);
    free(t->params);
    free(t->grads);
    free(t->moments);
    free(t->acts);
    free(t->act_mem);
    free(t->tok);
    free(t->target);
    free(t->pos);
    free(t->seq_start);
    free(t->head_f32);
    free(t->wt_mem);
    free(t->thread_loss);
    bs_threadpool_close(t->pool);
    free(t);
}

/* ---- batch geometry ------------------------------------------------------ */

/* Pack the sequences into rows; row t's target is the next token of its
 * sequence with that token's mask as weight (none after the last token;
 * every weight 0 without a mask).  Sets *T and *wsum (the sum of weights). */
static bs_status pack_batch(bs_trainer *t, const int32_t *const *tokens, const float *const *loss_mask,
                            const int *lengths, int B, int *T, double *wsum, bs_error *err) {
    if (B < 1 || !tokens || !lengths)
        return bs_fail(err, BS_EINVAL, "trainer: a micro-batch needs at least one sequence");
    long total = 0;
    for (int b = 0; b < B; b++) {
        if (lengths[b] < 1) return bs_fail(err, BS_EINVAL, "trainer: sequence %d has length %d", b, lengths[b]);
        total += lengths[b];
    }
    if (total > t->tc.max_tokens)
        return bs_fail(err, BS_EINVAL, "trainer: micro-batch of %ld tokens exceeds max_tokens %d", total,
                       t->tc.max_tokens);
    int n = 0;
    *wsum = 0;
    for (int b = 0; b < B; b++) {
        t->seq_start[b] = n;
        for (int i = 0; i < lengths[b]; i++, n++) {
            int32_t id = tokens[b][i];
            if (id < 0 || id >= t->cfg.n_vocab)
                return bs_fail(err, BS_EINVAL, "trainer: sequence %d token %d: id %d is outside the vocabulary (0..%d)",
                               b, i, id, t->cfg.n_vocab - 1);
            int last = i == lengths[b] - 1;
            float w = last || !loss_mask ? 0 : loss_mask[b][i + 1];
            if (!(w >= 0) || !isfinite(w))
                return bs_fail(err, BS_EINVAL, "trainer: sequence %d loss weight %d is %g (must be >= 0)", b, i + 1,
                               w);
            t->tok[n] = id;
            t->pos[n] = i;
            t->target[n] = last ? -1 : tokens[b][i + 1];
            t->weight[n] = w;
            *wsum += w;
        }
    }
    t->seq_start[B] = n;
    t->n_seq = B;
    *T = n;
    return sync_pool(t, err);
}

/* ---- threads ------------------------------------------------------------- */

static int pool_threads(const bs_trainer *t) { return bs_threadpool_size(t->pool); }

typedef struct par_job {
    int nth;                            /* threads taking part */
    int64_t n;                          /* elements (SwiGLU) or rows (cross-entropy) */
    float *h, *dg, *du;                 /* SwiGLU outputs */
    const float *dh, *g, *u;            /* SwiGLU inputs */
    float *logits, dscale;              /* cross-entropy, as crossentropy_forward_backward */
    const int32_t *target;
    const float *w;
    int V;
    double *loss;                       /* [nth] */
} par_job;

static void run_par(const bs_trainer *t, bs_parallel_fn fn, par_job *j) {
    if (j->nth > 1)
        bs_threadpool_run(t->pool, fn, j);
    else
        fn(j, 0, 1);
}

/* Pool callbacks: thread ith of the j->nth taking part (the pool may be larger). */
static void swiglu_forward_part(void *ctx, int ith, int nth) {
    const par_job *j = ctx;
    long b, e;
    (void)nth;
    if (ith >= j->nth) return;
    bs_split_range(j->n, ith, j->nth, 16, &b, &e);
    swiglu_forward(j->h + b, j->g + b, j->u + b, e - b);
}

static void swiglu_backward_part(void *ctx, int ith, int nth) {
    const par_job *j = ctx;
    long b, e;
    (void)nth;
    if (ith >= j->nth) return;
    bs_split_range(j->n, ith, j->nth, 16, &b, &e);
    swiglu_backward(j->dg + b, j->du + b, j->dh + b, j->g + b, j->u + b, e - b);
}

static void crossentropy_part(void *ctx, int ith, int nth) {
    const par_job *j = ctx;
    long b, e;
    (void)nth;
    if (ith >= j->nth) return;
    bs_split_range(j->n, ith, j->nth, 1, &b, &e);
    j->loss[ith] = crossentropy_forward_backward(j->logits + b * j->V, j->target + b, j->w + b, (int)(e - b), j->V,
                                                 j->dscale);
}

/* ---- forward ------------------------------------------------------------- */

static float *xs_at(const bs_trainer *t, int l) { return t->xs + (size_t)l * t->tc.max_tokens * t->cfg.dim; }
static layer_acts *acts_at(const bs_trainer *t, int l) { return &t->acts[t->tc.recompute ? 0 : l]; }

static uint64_t dropout_key(const bs_trainer *t, int l, int i) {
    return mix64(t->tc.seed ^ mix64(t->n_batches * 0x100000001b3ull + (uint64_t)l * BS_LIN_COUNT + (uint64_t)i));
}

/* y[T][out] = x[T][in] W^T + b + scale · B A dropout(x) */
static void lin_forward(bs_trainer *t, layer_acts *a, int l, int i, float *y, const float *x, int T, int train) {
    const lin_view *lv = &t->layers[l].lin[i];
    matmul_forward(y, x, &lv->w, lv->b, T, t->pool, t->scratch);
    if (!lv->A) return;
    int in = lv->w.cols, out = lv->w.rows;
    const float *xd = x;
    if (train && t->tc.lora.dropout > 0) {
        dropout_forward(a->lora_x[i], x, (int64_t)T * in, t->tc.lora.dropout, dropout_key(t, l, i));
        xd = a->lora_x[i];
    }
    lora_forward(y, a->lora_u[i], xd, lv->A, lv->B, T, in, out, t->tc.lora.rank, t->lora_scale);
}

static void add_rows(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* xs[l] -> xs[l+1], saving layer l's activations in a. */
static void layer_forward(bs_trainer *t, int l, layer_acts *a, int T, int train) {
    const bs_model_config *c = &t->cfg;
    const layer_view *L = &t->layers[l];
    int D = c->dim, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    const float *x = xs_at(t, l);
    attn_shape as = {t->seq_start, t->n_seq, H, KV, hd, c->sliding_window, t->pool, pool_threads(t)};

    rmsnorm_forward(a->xn1, a->rstd1, x, L->attn_norm, T, D, c->rms_eps);
    float *ql = c->qk_norm ? a->q_lin : a->q, *kl = c->qk_norm ? a->k_lin : a->k;
    lin_forward(t, a, l, BS_LIN_Q, ql, a->xn1, T, train);
    lin_forward(t, a, l, BS_LIN_K, kl, a->xn1, T, train);
    lin_forward(t, a, l, BS_LIN_V, a->v, a->xn1, T, train);
    if (c->qk_norm) {
        rmsnorm_forward(a->q, a->rstd_q, a->q_lin, L->q_norm, T * H, hd, c->rms_eps);
        rmsnorm_forward(a->k, a->rstd_k, a->k_lin, L->k_norm, T * KV, hd, c->rms_eps);
    }
    rope_forward(a->q, t->pos, T, H, hd, t->cos_t, t->sin_t, c->rope_neox);
    rope_forward(a->k, t->pos, T, KV, hd, t->cos_t, t->sin_t, c->rope_neox);
    attention_forward(a->att, a->lse, a->q, a->k, a->v, &as);
    lin_forward(t, a, l, BS_LIN_O, a->x_mid, a->att, T, train);
    add_rows(a->x_mid, x, (size_t)T * D);

    rmsnorm_forward(a->xn2, a->rstd2, a->x_mid, L->ffn_norm, T, D, c->rms_eps);
    lin_forward(t, a, l, BS_LIN_GATE, a->g, a->xn2, T, train);
    lin_forward(t, a, l, BS_LIN_UP, a->u, a->xn2, T, train);
    par_job sj = {.nth = pool_threads(t), .n = (int64_t)T * c->ffn_dim, .h = a->h, .g = a->g, .u = a->u};
    run_par(t, swiglu_forward_part, &sj);
    float *y = xs_at(t, l + 1);
    lin_forward(t, a, l, BS_LIN_DOWN, y, a->h, T, train);
    add_rows(y, a->x_mid, (size_t)T * D);
}

/* Embedding and every layer; with recompute only xs is kept. */
static void forward(bs_trainer *t, int T, int train) {
    embedding_forward(t->xs, t->tok, T, &t->embed);
    for (int l = 0; l < t->cfg.n_layers; l++) layer_forward(t, l, acts_at(t, l), T, train);
    rmsnorm_forward(t->xf, t->rstdf, xs_at(t, t->cfg.n_layers), t->out_norm, T, t->cfg.dim, t->cfg.rms_eps);
}

/* The LM head and cross-entropy, logit_rows rows at a time.  With
 * dscale != 0 also their backward: dxn = dL/dxf, d_head += (full only). */
static double head_loss(bs_trainer *t, int T, float dscale) {
    int D = t->cfg.dim, V = t->cfg.n_vocab;
    double loss = 0;
    for (int r0 = 0; r0 < T; r0 += t->logit_rows) {
        int n = T - r0 < t->logit_rows ? T - r0 : t->logit_rows;
        const float *xf = t->xf + (size_t)r0 * D;
        matmul_forward(t->logits, xf, &t->head, NULL, n, t->pool, t->scratch);
        par_job cj = {.nth = pool_threads(t), .n = n, .logits = t->logits, .dscale = dscale, .target = t->target + r0,
                      .w = t->weight + r0, .V = V, .loss = t->thread_loss};
        run_par(t, crossentropy_part, &cj);
        for (int i = 0; i < cj.nth; i++) loss += t->thread_loss[i];
        if (dscale != 0)
            matmul_backward(t->dxn + (size_t)r0 * D, t->d_head, NULL, t->logits, xf, &t->head,
                            t->head_t.data ? &t->head_t : NULL, n, t->pool, t->scratch);
    }
    return loss;
}

/* ---- backward ------------------------------------------------------------ */

/* dx[T][in] += dL/dx of lin_forward given dy[T][out]; parameter grads += */
static void lin_backward(bs_trainer *t, layer_acts *a, int l, int i, float *dx, const float *dy, const float *x,
                         int T) {
    const lin_view *lv = &t->layers[l].lin[i];
    matmul_backward(dx, lv->dw, lv->db, dy, x, &lv->w, lv->wt.data ? &lv->wt : NULL, T, t->pool, t->scratch);
    if (!lv->A) return;
    int in = lv->w.cols, out = lv->w.rows, r = t->tc.lora.rank;
    float p = t->tc.lora.dropout;
    if (p > 0) {
        memset(t->dlora_x, 0, (size_t)T * in * sizeof(float));
        lora_backward(t->dlora_x, lv->dA, lv->dB, t->dlora_u, dy, a->lora_x[i], a->lora_u[i], lv->A, lv->B, T, in,
                      out, r, t->lora_scale);
        dropout_backward(dx, t->dlora_x, (int64_t)T * in, p, dropout_key(t, l, i));
    } else {
        lora_backward(dx, lv->dA, lv->dB, t->dlora_u, dy, x, a->lora_u[i], lv->A, lv->B, T, in, out, r,
                      t->lora_scale);
    }
}

static void zero(float *x, size_t n) { memset(x, 0, n * sizeof *x); }

/* dx: dL/dxs[l+1] on entry, dL/dxs[l] on return. */
static void layer_backward(bs_trainer *t, int l, layer_acts *a, int T) {
    const bs_model_config *c = &t->cfg;
    const layer_view *L = &t->layers[l];
    size_t D = (size_t)c->dim, F = (size_t)c->ffn_dim, qd = (size_t)t->q_dim, kvd = (size_t)t->kv_dim;
    int H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    attn_shape as = {t->seq_start, t->n_seq, H, KV, hd, c->sliding_window, t->pool, pool_threads(t)};

    zero(t->dh, T * F);
    zero(t->dg, T * F);
    zero(t->du, T * F);
    zero(t->dxn, T * D);
    lin_backward(t, a, l, BS_LIN_DOWN, t->dh, t->dx, a->h, T);
    par_job sj = {.nth = pool_threads(t), .n = (int64_t)T * F, .dg = t->dg, .du = t->du, .dh = t->dh, .g = a->g,
                  .u = a->u};
    run_par(t, swiglu_backward_part, &sj);
    lin_backward(t, a, l, BS_LIN_GATE, t->dxn, t->dg, a->xn2, T);
    lin_backward(t, a, l, BS_LIN_UP, t->dxn, t->du, a->xn2, T);
    rmsnorm_backward(t->dx, L->d_ffn_norm, t->dxn, a->x_mid, L->ffn_norm, a->rstd2, T, (int)D);

    zero(t->datt, T * qd);
    zero(t->dq, T * qd);
    zero(t->dk, T * kvd);
    zero(t->dv, T * kvd);
    lin_backward(t, a, l, BS_LIN_O, t->datt, t->dx, a->att, T);
    attention_backward(t->dq, t->dk, t->dv, t->datt, a->att, a->lse, a->q, a->k, a->v, &as);
    rope_backward(t->dq, t->pos, T, H, hd, t->cos_t, t->sin_t, c->rope_neox);
    rope_backward(t->dk, t->pos, T, KV, hd, t->cos_t, t->sin_t, c->rope_neox);
    float *dql = t->dq, *dkl = t->dk;
    if (c->qk_norm) {
        dql = t->dq_lin;
        dkl = t->dk_lin;
        zero(dql, T * qd);
        zero(dkl, T * kvd);
        rmsnorm_backward(dql, L->d_q_norm, t->dq, a->q_lin, L->q_norm, a->rstd_q, T * H, hd);
        rmsnorm_backward(dkl, L->d_k_norm, t->dk, a->k_lin, L->k_norm, a->rstd_k, T * KV, hd);
    }
    zero(t->dxn, T * D);
    lin_backward(t, a, l, BS_LIN_Q, t->dxn, dql, a->xn1, T);
    lin_backward(t, a, l, BS_LIN_K, t->dxn, dkl, a->xn1, T);
    lin_backward(t, a, l, BS_LIN_V, t->dxn, t->dv, a->xn1, T);
    rmsnorm_backward(t->dx, L->d_attn_norm, t->dxn, xs_at(t, l), L->attn_norm, a->rstd1, T, (int)D);
}

/* From dxn = dL/dxf (left by head_loss) down to the embedding; counts the micro-batch. */
static void backward(bs_trainer *t, int T) {
    const bs_model_config *c = &t->cfg;
    size_t D = (size_t)c->dim;
    zero(t->dx, T * D);
    rmsnorm_backward(t->dx, t->d_out_norm, t->dxn, xs_at(t, c->n_layers), t->out_norm, t->rstdf, T, (int)D);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        if (t->tc.recompute) layer_forward(t, l, acts_at(t, l), T, 1);
        layer_backward(t, l, acts_at(t, l), T);
    }
    if (t->d_embed) embedding_backward(t->d_embed, t->dx, t->tok, T, (int)D);
    t->n_micro++;
    t->n_batches++;
}

bs_status trainer_forward_backward(bs_trainer *t, const int32_t *const *tokens, const float *const *loss_mask,
                                   const int *lengths, int B, float *loss, bs_error *err) {
    int T = 0;
    double wsum = 0;
    *loss = 0;
    bs_status st = pack_batch(t, tokens, loss_mask, lengths, B, &T, &wsum, err);
    if (st || wsum == 0) return st;
    forward(t, T, 1);
    zero(t->dxn, (size_t)T * t->cfg.dim);
    *loss = (float)(head_loss(t, T, (float)(1.0 / wsum)) / wsum);
    backward(t, T);
    return BS_OK;
}

bs_status trainer_eval_loss(bs_trainer *t, const int32_t *const *tokens, const float *const *loss_mask,
                            const int *lengths, int B, float *loss, bs_error *err) {
    int T = 0;
    double wsum = 0;
    *loss = 0;
    bs_status st = pack_batch(t, tokens, loss_mask, lengths, B, &T, &wsum, err);
    if (st || wsum == 0) return st;
    forward(t, T, 0);
    *loss = (float)(head_loss(t, T, 0) / wsum);
    return BS_OK;
}

/* ---- per-token log-probs and weighted objectives (RFT) ------------------- */

/* log softmax(z)[target] of one row z[V]; *entropy = -sum p log p. */
static float row_logprob(const float *z, int32_t target, int V, float *entropy) {
    float mx = z[0];
    for (int i = 1; i < V; i++)
        if (z[i] > mx) mx = z[i];
    double sum = 0, pz = 0;
    for (int i = 0; i < V; i++) {
        double e = exp((double)z[i] - mx);
        sum += e;
        pz += e * z[i];
    }
    double lse = mx + log(sum);
    *entropy = (float)(lse - pz / sum);
    return (float)(z[target] - lse);
}

bs_status trainer_token_logprobs(bs_trainer *t, const int32_t *const *tokens, const int *lengths, int B,
                                 int adapter_on, float *const *logprobs, float *const *entropy, bs_error *err) {
    if (!adapter_on && t->tc.full)
        return bs_fail(err, BS_EINVAL, "trainer: full training keeps no frozen base to compute log-probs with");
    int T = 0;
    double wsum = 0;
    bs_status st = pack_batch(t, tokens, NULL, lengths, B, &T, &wsum, err);
    if (st) return st;
    float scale = t->lora_scale;
    if (!adapter_on) t->lora_scale = 0; /* B·A·x scaled by zero: exactly the frozen base */
    forward(t, T, 0);
    t->lora_scale = scale;
    int D = t->cfg.dim, V = t->cfg.n_vocab, b = 0;
    for (int r0 = 0; r0 < T; r0 += t->logit_rows) {
        int n = T - r0 < t->logit_rows ? T - r0 : t->logit_rows;
        matmul_forward(t->logits, t->xf + (size_t)r0 * D, &t->head, NULL, n, t->pool, t->scratch);
        for (int row = r0; row < r0 + n; row++) {
            while (row >= t->seq_start[b + 1]) b++;
            int i = t->pos[row];
            float h = 0;
            if (i == 0) {
                logprobs[b][0] = 0;
                if (entropy) entropy[b][0] = 0;
            }
            if (t->target[row] < 0) continue;
            logprobs[b][i + 1] = row_logprob(t->logits + (size_t)(row - r0) * V, t->target[row], V, &h);
            if (entropy) entropy[b][i + 1] = h;
        }
    }
    return BS_OK;
}

bs_status trainer_forward_backward_weighted(bs_trainer *t, const int32_t *const *tokens,
                                            const float *const *token_weights, const int *lengths, int B,
                                            float *objective, bs_error *err) {
    int T = 0;
    double wsum = 0;
    *objective = 0;
    bs_status st = pack_batch(t, tokens, NULL, lengths, B, &T, &wsum, err);
    if (st) return st;
    int any = 0;
    for (int b = 0; b < B; b++)
        for (int i = 1; i < lengths[b]; i++) {
            float w = token_weights[b][i];
            if (!isfinite(w))
                return bs_fail(err, BS_EINVAL, "trainer: sequence %d token weight %d is %g", b, i, w);
            /* cross-entropy with weight -w is w · log p: its gradient is w · (onehot - softmax) */
            t->weight[t->seq_start[b] + i - 1] = -w;
            any |= w != 0;
        }
    if (!any) return BS_OK;
    forward(t, T, 1);
    zero(t->dxn, (size_t)T * t->cfg.dim);
    *objective = (float)head_loss(t, T, 1.0f);
    backward(t, T);
    return BS_OK;
}

/* ---- optimizer step ------------------------------------------------------ */

bs_status trainer_step(bs_trainer *t, float *grad_norm, float *lr, bs_error *err) {
    *grad_norm = 0;
    *lr = 0;
    if (!t->n_micro) return bs_fail(err, BS_EINVAL, "trainer: step without gradients (no weighted tokens seen)");
    if (t->n_micro > 1)
        for (size_t i = 0; i < t->n_params; i++) t->grads[i] /= (float)t->n_micro;
    double sumsq = 0;
    grad_sumsq(t->grads, t->n_params, &sumsq);
    double norm = sqrt(sumsq);
    *grad_norm = (float)norm;
    t->n_micro = 0;
    if (!isfinite(norm)) {
        zero(t->grads, t->n_params);
        return bs_fail(err, BS_ERANGE, "trainer: gradient norm is %g at step %d; update skipped", norm, t->steps);
    }
    if (t->tc.clip_norm > 0) grad_clip(t->grads, t->n_params, norm, t->tc.clip_norm);
    const bs_train_config *c = &t->tc;
    *lr = lr_at(c->schedule, c->lr, t->steps, c->warmup_steps, c->total_steps);
    float *m = t->moments, *v = t->moments + t->n_params;
    for (int i = 0; i < t->n_tensors; i++) {
        bs_train_tensor *x = &t->tensors[i];
        size_t off = (size_t)(x->data - t->params), n = (size_t)x->rows * x->cols;
        adamw_update(x->data, x->grad, m + off, v + off, n, *lr, c->beta1, c->beta2, c->eps,
                     x->decay ? c->weight_decay : 0, t->steps + 1);
    }
    zero(t->grads, t->n_params);
    t->steps++;
    return BS_OK;
}

/* ---- access -------------------------------------------------------------- */

int trainer_steps_done(const bs_trainer *t) { return t->steps; }
size_t trainer_n_params(const bs_trainer *t) { return t->n_params; }
float *trainer_moments(bs_trainer *t) { return t->moments; }
void trainer_counters(const bs_trainer *t, int *steps, uint64_t *micro_batches) {
    *steps = t->steps;
    *micro_batches = t->n_batches;
}
bs_status trainer_set_counters(bs_trainer *t, int steps, uint64_t micro_batches, bs_error *err) {
    if (steps < 0) return bs_fail(err, BS_EINVAL, "trainer: step count %d is negative", steps);
    if (t->n_micro) return bs_fail(err, BS_EINVAL, "trainer: counters set with gradients pending");
    t->steps = steps;
    t->n_batches = micro_batches;
    return BS_OK;
}
int trainer_n_tensors(const bs_trainer *t) { return t->n_tensors; }
const bs_train_tensor *trainer_tensor(const bs_trainer *t, int i) {
    return i >= 0 && i < t->n_tensors ? &t->tensors[i] : NULL;
}
float trainer_lora_scale(const bs_trainer *t) { return t->lora_scale; }
const bs_train_config *trainer_config(const bs_trainer *t) { return &t->tc; }
