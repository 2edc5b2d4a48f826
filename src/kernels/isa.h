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

typedef struct kern_isa_ops {
    const char *name;
    void (*f16_to_f32)(const uint16_t *src, float *dst, int64_t n);
    void (*bf16_to_f32)(const uint16_t *src, float *dst, int64_t n);
    float (*dot)(const float *a, const float *b, int n);
    /* out[r] = dot(x, w[r]) for r < KERN_ROW_TILE. */
    void (*dot4)(const float *x, const float *const w[KERN_ROW_TILE], int n, float out[KERN_ROW_TILE]);
} kern_isa_ops;

extern const kern_isa_ops kern_isa_ref;
extern const kern_isa_ops kern_isa_avx2;
extern const kern_isa_ops kern_isa_avx512;

/* The table to use now (honours kern_force_reference and BASALT_KERNELS=ref). */
const kern_isa_ops *kern_isa(void);

/* kern_dequant with the ISA table already chosen (matmul converts row by row). */
void kern_dequant_isa(const kern_isa_ops *isa, bs_dtype type, const void *src, float *dst,
                      int64_t n);

#endif
