/* kernels/isa.h — internal: the per-ISA building blocks the public kernels
 * dispatch to.  One table per instruction set (portable C, AVX2+FMA+F16C,
 * AVX-512); kern_isa() picks the best one the CPU supports unless the
 * reference paths are forced.  Not part of the public API. */
#ifndef BASALT_KERNELS_ISA_H
#define BASALT_KERNELS_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "kernels/qdot.h"

/* Convert n elements (a multiple of the block size) of one dtype to f32. */
typedef void (*kern_dequant_fn)(const void *src, float *dst, int64_t n);
/* One column chunk of a matmul over float weight rows (F32, F16, BF16):
 *   y[t*ldy + r] = (first ? 0 : y[t*ldy + r]) + sum_{k<n} x[t*ldx + k] * w_r[k]
 * for t < T and r < rows, where row r starts at (const char *)w + r*row_bytes.
 * x is f32 and the weights are widened to f32 exactly, so products are
 * exact before the f32 sums.
 * Each (t, r) sum is formed by the same operations in the same order whatever
 * T and rows are, so a token's output never depends on what shares its batch. */
typedef void (*kern_gemm_fn)(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                             size_t row_bytes, int rows, int n, int first);
/* One token over whole rows: y[r] = x . w_r for r < rows, the K columns
 * summed chunk by chunk (chunk columns each, into y in chunk order) exactly
 * as a kern_gemm_fn call per chunk with T = 1 sums them, so the bits are the
 * same; one call lets the weight stream run ahead across chunk ends. */
typedef void (*kern_gemv_fn)(float *y, const float *x, const void *w, size_t row_bytes, int rows, int K, int chunk);
/* A matmul over whole groups of a float _R16 layout (qinterleave.c: column k
 * of a group's 16 rows is one vector at w + (g * K + k) * 16 * elem):
 *   y[t*ldy + r] = sum_{k<K} x[t*ldx + k] * w_r[k]   for t < T, r < 16 * groups
 * Each sum is defined here, for every table alike: two chains, over the even
 * and the odd columns, each a sequence of fused multiply-adds (fmaf) from
 * zero in column order, then y = c_even + c_odd.  So results are
 * bit-identical across tables, T and the row split. */
typedef void (*kern_gemm_r16_fn)(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups,
                                 int K);

typedef struct kern_isa_ops {
    const char *name;
    /* Indexed by bs_dtype; every variant is bit-exact with the reference. */
    kern_dequant_fn dequant[BS_DTYPE_COUNT];
    float (*dot)(const float *a, const float *b, int n);
    /* Register-tiled matmul chunks, one per float weight type. */
    kern_gemm_fn gemm_f32, gemm_f16, gemm_bf16;
    /* Decode over whole rows; NULL: matmul.c calls gemm chunk by chunk. */
    kern_gemv_fn gemv_f32, gemv_f16, gemv_bf16;
    /* The float _R16 layouts, decode and prefill alike. */
    kern_gemm_r16_fn gemm_f32_r16, gemm_f16_r16, gemm_bf16_r16;
    /* y[i] += a * x[i], and y[i] *= a: attention's running output. */
    void (*axpy)(float *y, float a, const float *x, int n);
    void (*scale)(float *y, float a, int n);
    /* out[i] = silu(gate[i]) * up[i] (kern_swiglu); out may alias gate. */
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
    /* Quantized matmul (qdot.h): a repacker per quantized dtype (NULL for the
     * float types) and the int8 tile kernel.  The AVX-512 qgemm also needs
     * VNNI (so does its qmatvec); qdot.c uses the AVX2 entries on CPUs
     * without it. */
    kern_qrepack_fn qrepack[BS_DTYPE_COUNT];
    kern_qgemm_fn qgemm;
    kern_qmatvec_fn qmatvec; /* T <= KERN_QMV_MAX_T */
    kern_quantize_x_fn quantize_x;
} kern_isa_ops;

extern const kern_isa_ops kern_isa_ref;
extern const kern_isa_ops kern_isa_avx2;
extern const kern_isa_ops kern_isa_avx512;

/* The table to use now (honours kern_force_reference and BASALT_KERNELS=ref). */
const kern_isa_ops *kern_isa(void);

/* Reference converters (quant.c) the tables share. */
void kern_ref_dequant_f32(const void *src, float *dst, int64_t n);
void kern_ref_dequant_q8_0(const void *src, float *dst, int64_t n);
void kern_ref_dequant_q4_0(const void *src, float *dst, int64_t n);
void kern_ref_dequant_q4_k(const void *src, float *dst, int64_t n);
void kern_ref_dequant_q6_k(const void *src, float *dst, int64_t n);

/* The reference SwiGLU and _R16 float matmuls (isa_ref.c), also the AVX2
 * table's. */
void kern_ref_swiglu(float *out, const float *gate, const float *up, int n);
void kern_ref_gemm_f32_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups, int K);
void kern_ref_gemm_f16_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups, int K);
void kern_ref_gemm_bf16_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups, int K);

/* AVX2 block dequantizers (isa_avx2.c), also used by the AVX-512 table. */
void kern_avx2_dequant_q8_0(const void *src, float *dst, int64_t n);
void kern_avx2_dequant_q4_0(const void *src, float *dst, int64_t n);
void kern_avx2_dequant_q4_k(const void *src, float *dst, int64_t n);
void kern_avx2_dequant_q6_k(const void *src, float *dst, int64_t n);

/* The entries the AVX2 and AVX-512 tables share: the AVX2 block dequantizers
 * and repackers serve both (the AVX-512 table differs only in its float paths
 * and int8 tile kernels), so a new quantized type is listed here once.  Each
 * expands to designated initializers inside the table's .dequant / .qrepack. */
#define KERN_AVX2_DEQUANT_BLOCKS              \
    [BS_DTYPE_Q8_0] = kern_avx2_dequant_q8_0, \
    [BS_DTYPE_Q4_0] = kern_avx2_dequant_q4_0, \
    [BS_DTYPE_Q4_K] = kern_avx2_dequant_q4_k, \
    [BS_DTYPE_Q6_K] = kern_avx2_dequant_q6_k
#define KERN_AVX2_QREPACK                             \
    [BS_DTYPE_Q8_0] = kern_avx2_qrepack_q8_0,         \
    [BS_DTYPE_Q4_0] = kern_avx2_qrepack_q4_0,         \
    [BS_DTYPE_Q4_K] = kern_avx2_qrepack_q4_k,         \
    [BS_DTYPE_Q6_K] = kern_avx2_qrepack_q6_k,         \
    [BS_DTYPE_Q8_0_R16] = kern_avx2_qrepack_q8_0_r16, \
    [BS_DTYPE_Q4_0_R16] = kern_avx2_qrepack_q4_0_r16, \
    [BS_DTYPE_Q4_K_R16] = kern_avx2_qrepack_q4_k_r16, \
    [BS_DTYPE_Q6_K_R16] = kern_avx2_qrepack_q6_k_r16

#endif
