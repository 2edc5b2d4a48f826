/* kernels/isa.h — internal: the per-ISA building blocks the public kernels
 * dispatch to.  One table per instruction set (portable C, AVX2+FMA+F16C,
 * AVX-512); kern_isa() picks the best one the CPU supports unless the
 * reference paths are forced.  Not part of the public API. */
#ifndef BASALT_KERNELS_ISA_H
#define BASALT_KERNELS_ISA_H

#include <stdint.h>

#include "base/dtype.h"

/* Weight rows handled together by kern_isa_ops.dot4: each loaded x vector is
 * reused against this many rows. */
enum { KERN_ROW_TILE = 4 };

/* Convert n elements (a multiple of the block size) of one dtype to f32. */
typedef void (*kern_dequant_fn)(const void *src, float *dst, int64_t n);
/* Dot x with KERN_ROW_TILE f16 or bf16 rows, widening in registers. */
typedef void (*kern_dot4_half_fn)(const float *x, const uint16_t *const w[KERN_ROW_TILE], int n,
                                  float out[KERN_ROW_TILE]);

typedef struct kern_isa_ops {
    const char *name;
    /* Indexed by bs_dtype; every variant is bit-exact with the reference. */
    kern_dequant_fn dequant[BS_DTYPE_COUNT];
    float (*dot)(const float *a, const float *b, int n);
    /* out[r] = dot(x, w[r]) for r < KERN_ROW_TILE. */
    void (*dot4)(const float *x, const float *const w[KERN_ROW_TILE], int n, float out[KERN_ROW_TILE]);
    /* dot4 against f16 / bf16 rows widened in registers, for decode (T = 1)
     * where converting to a buffer first costs more than the dot; NULL in
     * the reference table. */
    kern_dot4_half_fn dot4_f16;
    kern_dot4_half_fn dot4_bf16;
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

/* AVX2 block dequantizers (isa_avx2.c), also used by the AVX-512 table. */
void kern_avx2_dequant_q8_0(const void *src, float *dst, int64_t n);
void kern_avx2_dequant_q4_0(const void *src, float *dst, int64_t n);
void kern_avx2_dequant_q4_k(const void *src, float *dst, int64_t n);
void kern_avx2_dequant_q6_k(const void *src, float *dst, int64_t n);

#endif
