/* base/dtype.h — element types of stored tensors and the f16/bf16 scalar
 * conversions every layer needs.  Block-quantized types describe their block
 * geometry here; their (de)quantization lives in kernels/. */
#ifndef BASALT_BASE_DTYPE_H
#define BASALT_BASE_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    BS_DTYPE_F32,
    BS_DTYPE_F16,
    BS_DTYPE_BF16,
    BS_DTYPE_Q8_0, /* 32 weights: f16 d, 32 x int8            (34 bytes) */
    BS_DTYPE_Q4_0, /* 32 weights: f16 d, 16 bytes of nibbles   (18 bytes) */
    BS_DTYPE_Q4_K, /* 256 weights: f16 d, dmin, 12B scales, 128B nibbles (144 bytes) */
    BS_DTYPE_Q6_K, /* 256 weights: 128B ql, 64B qh, 16 x int8 scales, f16 d (210 bytes) */
    /* In-memory only: the same blocks or floats with BS_ROW_GROUP rows
     * interleaved (kernels/qinterleave.c), the decode kernels' layout.  Never
     * in a file. */
    BS_DTYPE_Q8_0_R16,
    BS_DTYPE_Q4_0_R16,
    BS_DTYPE_Q4_K_R16,
    BS_DTYPE_Q6_K_R16,
    BS_DTYPE_F32_R16,
    BS_DTYPE_F16_R16,
    BS_DTYPE_BF16_R16,
    BS_DTYPE_COUNT
} bs_dtype;

/* Rows per interleaved group of the _R16 types. */
enum { BS_ROW_GROUP = 16 };

/* The _R16 twin of a stored type, or BS_DTYPE_COUNT when it has none; and
 * the stored type of an _R16 type (t itself otherwise). */
bs_dtype bs_dtype_interleaved(bs_dtype t);
bs_dtype bs_dtype_block_type(bs_dtype t);

/* Weights per block (1 for plain floats) and bytes per block. */
int bs_dtype_block_elems(bs_dtype t);
int bs_dtype_block_bytes(bs_dtype t);
const char *bs_dtype_name(bs_dtype t);

/* Bytes taken by n elements, or 0 when n is not a multiple of the block size. */
size_t bs_dtype_row_bytes(bs_dtype t, int64_t n);

/* IEEE half <-> float, round-to-nearest-even; bf16 <-> float likewise. */
static inline float bs_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { e++; mant <<= 1; } while (!(mant & 0x400));
            bits = sign | (uint32_t)(112 - e) << 23 | (mant & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13;
    } else {
        bits = sign | (exp + 112) << 23 | mant << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t bs_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (ax < 0x38800000u) { /* subnormal or zero in half */
        if (ax < 0x33000000u) return (uint16_t)sign;
        uint32_t mant = (ax & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(ax >> 23); /* 14..24: half = mant * 2^-shift */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float bs_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t bs_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif
