/* kernels/blocks.h — internal: llama.cpp's block structs for the quantized
 * dtypes (ggml-common.h layouts), shared by the reference and SIMD code. */
#ifndef BASALT_KERNELS_BLOCKS_H
#define BASALT_KERNELS_BLOCKS_H

#include <stdint.h>

typedef struct {
    uint16_t d;
    int8_t qs[32];
} block_q8_0;

typedef struct {
    uint16_t d;
    uint8_t qs[16]; /* element i in the low nibble of qs[i], i+16 in the high one */
} block_q4_0;

typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 six-bit scales and 8 six-bit mins, see q4k_scale_min */
    uint8_t qs[128];
} block_q4_k;

typedef struct {
    uint8_t ql[128]; /* low 4 bits */
    uint8_t qh[64];  /* high 2 bits */
    int8_t scales[16];
    uint16_t d;
} block_q6_k;

_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block size");
_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block size");
_Static_assert(sizeof(block_q4_k) == 144, "Q4_K block size");
_Static_assert(sizeof(block_q6_k) == 210, "Q6_K block size");

/* Sub-block j's 6-bit scale and min: j < 4 sit in the low 6 bits of bytes j
 * and j+4; j >= 4 take their low 4 bits from byte j+4 and their top 2 bits
 * from the spare high bits of bytes j-4 (scale) and j (min). */
static inline void q4k_scale_min(int j, const uint8_t *q, int *scale, int *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

#endif
