/* kernels/kernels.h — numeric kernels on f32 activations and stored weights.
 *
 * Weights are rows of any bs_dtype (a row of K elements takes
 * bs_dtype_row_bytes(dtype, K) bytes).  All arithmetic accumulates in f32.
 * Each kernel has a portable C reference; faster variants are chosen at run
 * time from the CPU's features (kern_cpu_features) and are tested against the
 * reference. */
#ifndef BASALT_KERNELS_KERNELS_H
#define BASALT_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/threadpool.h"

typedef struct kern_features {
    int avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
} kern_features;

const kern_features *kern_cpu_features(void);
/* Force the portable reference paths (tests; BASALT_KERNELS=ref does the same). */
void kern_force_reference(int on);
/* Name of the instruction set the kernels use now: "ref", "avx2" or "avx512". */
const char *kern_isa_name(void);

/* Dequantize/convert n elements (a multiple of the block size) to f32; not
 * for the _R16 layouts, whose rows are spread over their group (use
 * kern_dequant_rows). */
void kern_dequant(bs_dtype type, const void *src, float *dst, int64_t n);

/* Rows [r0, r0 + n) of a matrix of cols columns stored in type (plain or
 * _R16) to f32, row after row. */
void kern_dequant_rows(bs_dtype type, const void *W, int cols, int64_t r0, int64_t n, float *out);

/* The _R16 layouts (qinterleave.c): whether a rows x cols matrix of type can
 * be interleaved (a float or quantized type, whole groups of BS_ROW_GROUP
 * rows), and the interleaving itself into dst (as many bytes as src), after
 * which the matrix is of type bs_dtype_interleaved(type).
 * kern_deinterleave_blocks writes blocks [b0, b0 + nb) of one row of a
 * quantized matrix in the plain block layout. */
int kern_can_interleave(bs_dtype type, int64_t rows, int cols);
/* Whether this CPU's kernels gain from type's _R16 layout (every table reads
 * every layout; the portable reference gains nothing, nor does the AVX2
 * table for floats). */
int kern_reads_interleaved(bs_dtype type);
void kern_interleave(bs_dtype type, const void *src, int64_t rows, int cols, void *dst);
void kern_deinterleave_blocks(bs_dtype type, const void *W, int cols, int64_t row, int b0, int nb, void *dst);
/* dst [cols][rows] = W^T for a float matrix W [rows][cols] (F32, F16, BF16,
 * plain or _R16), in W's plain type. */
void kern_transpose_float(bs_dtype type, const void *W, int rows, int cols, void *dst);

/* Quantize/convert n f32 elements (a multiple of the block size) to type, in
 * llama.cpp's block layouts.  A plain round-to-nearest reference quantizer
 * (no error search as in llama-quantize): for tests and writing model files. */
void kern_quantize(bs_dtype type, const float *src, void *dst, int64_t n);

/* y[t][n] = sum_k x[t][k] * W[n][k]   for t < T, n < N   (x: [T][K] f32, y: [T][N] f32)
 * Each weight row is read once per call whatever T is; work is split by
 * rows of W across the pool.  pool may be NULL (single thread).  Row t of y is
 * bit-identical whatever else is in x (batch invariance). */
void kern_matmul(bs_threadpool *pool, float *y, const float *x, int T, const void *W,
                 bs_dtype wtype, int N, int K);

/* One output of kern_matmul_group: y[T][N] = x W^T for W [N][K] of wtype. */
typedef struct {
    float *y;
    const void *W;
    bs_dtype wtype;
    int N;
} kern_matmul_out;

/* kern_matmul of several matrices over the same x [T][K] (q, k and v; gate
 * and up), bit-identical to separate calls.  When all are quantized the
 * activations are quantized once and one pass of the pool covers every
 * matrix: fewer barriers per layer, and small matrices split as evenly as
 * large ones. */
void kern_matmul_group(bs_threadpool *pool, const float *x, int T, int K, const kern_matmul_out *outs, int n);

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; out may alias x. */
void kern_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* Rotary embedding of n_heads heads of head_dim at position pos, in place.
 * inv_freq has head_dim/2 entries.  neox != 0 pairs dim i with i + head_dim/2
 * (Hugging Face rotate_half); neox == 0 pairs 2i with 2i+1 (GGUF llama). */
void kern_rope(float *x, int n_heads, int head_dim, int pos, const float *inv_freq, int neox);

/* out[i] = silu(gate[i]) * up[i]. */
void kern_swiglu(float *out, const float *gate, const float *up, int n);

/* sum_i a[i] * b[i] over f32. */
float kern_dot_f32(const float *a, const float *b, int n);

#endif
