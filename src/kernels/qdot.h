/* kernels/qdot.h — internal: matmul over block-quantized weights (Q8_0, Q4_0,
 * Q4_K, Q6_K) with int8 dot products, as llama.cpp does it.
 *
 * The activations x are quantized once per call to kern_xblock (32 int8
 * values, an f32 scale and the sums of each 16).  Weights are read in tiles of
 * KERN_QROWS rows by KERN_QCHUNK columns and repacked into a kern_qtile: every
 * weight becomes an unsigned byte u (the stored code plus a per-type offset)
 * and the bytes of the tile's rows are interleaved four at a time, so one
 * 32-bit lane of a vector is one row and one byte-dot instruction (vpdpbusd)
 * multiplies four weights of each of 16 rows by four broadcast activations.
 * The repacked tile stays in L1 and is applied to every token of the call, so
 * each weight byte is read from memory once per call.  For a few tokens
 * (decode) the repack costs more than the memory read it saves, so those
 * calls use kern_qmatvec_fn, which reads the stored blocks in place.
 *
 * The result is defined exactly, the same on every ISA: for row n and token
 * t, over the row's sub-blocks j (of 16 or 32 weights, see kern_qlayout) in
 * order, with xb the activation block holding sub-block j and xs the sum of
 * its int8 values under j,
 *     isum = sum_i u_i * xq_i - off * xs                      (exact int32)
 *     acc  = fmaf((float)isum, scale_j * xb.d, acc)
 *     acc  = fmaf(-(float)xs, min_j * xb.d, acc)              (Q4_K only)
 * so every kernel variant is bit-identical to the reference and a token's
 * output does not depend on which other tokens share the call. */
#ifndef BASALT_KERNELS_QDOT_H
#define BASALT_KERNELS_QDOT_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/threadpool.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"

/* Rows per tile (one 32-bit lane each in a 512-bit vector) and columns per
 * repacked chunk (a multiple of every block size, 256). */
enum { KERN_QROWS = 16, KERN_QCHUNK = 512 };

/* 32 activations: x[i] ~= d * q[i]; sum[h] = q[16h] + ... + q[16h + 15]. */
typedef struct {
    float d;
    int16_t sum[2];
    int8_t q[32];
} kern_xblock;

/* One tile: sub-block j's byte i of row r (i < sub) sits at
 * q[j*sub*KERN_QROWS + (i/4)*4*KERN_QROWS + 4*r + i%4]; scale[j][r] and
 * min[j][r] are the row's f32 sub-block scale and min (min: Q4_K only). */
typedef struct {
    _Alignas(64) uint8_t q[KERN_QCHUNK * KERN_QROWS];
    _Alignas(64) float scale[KERN_QCHUNK / 16][KERN_QROWS];
    _Alignas(64) float min[KERN_QCHUNK / 32][KERN_QROWS];
} kern_qtile;

/* How a quantized type maps onto the tile: sub-block size (16 or 32 weights),
 * the offset off with weight = scale * (u - off) (- min), and whether it has
 * mins. */
typedef struct {
    int sub, off, has_min;
} kern_qlayout;

/* The layout of a quantized dtype; NULL for plain float types. */
const kern_qlayout *kern_qlayout_of(bs_dtype t);
/* Whether the quantized decode kernels gain from the _R16 layouts. */
int kern_qmatvec_reads_interleaved(void);

/* Repack dtype blocks [b0, b0 + nb) of KERN_QROWS rows (row pointers, which
 * may repeat) into a tile; nb * block_elems <= KERN_QCHUNK. */
typedef void (*kern_qrepack_fn)(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);

/* For T tokens: y[t*y_stride + r] (r < rows) = the definition above over the
 * tile's nsub sub-blocks of layout L, against activation blocks
 * x + t*x_stride; starts from y's current values when accumulate is set, else
 * from 0. */
typedef void (*kern_qgemm_fn)(const kern_qlayout *L, const kern_qtile *tile, int nsub, const kern_xblock *x,
                              size_t x_stride, int T, float *y, size_t y_stride, int rows, int accumulate);

/* Most tokens of the decode kernel kern_qmatvec_fn; calls with more go
 * through the repacked tiles, which amortize the repack over the tokens. */
enum { KERN_QMV_MAX_T = 4 };

/* Rows [0, rows) of W (stored blocks of dtype type, row_bytes apart) over K
 * columns for T <= KERN_QMV_MAX_T tokens: y[t*y_stride + r] = the definition
 * above against activation blocks x + t*x_stride, summed from 0.  The
 * reference (kern_ref_qmatvec) goes through the tiles; the SIMD variants
 * (qmatvec_impl.h) read the blocks in place and are bit-identical to it. */
typedef void (*kern_qmatvec_fn)(bs_dtype type, const void *W, size_t row_bytes, int rows, int K,
                                const kern_xblock *x, size_t x_stride, int T, float *y, size_t y_stride);

/* Quantize K floats (a multiple of 32) to K/32 activation blocks:
 * d = max|x| / 127, q = round-to-nearest-even(x * (127 / max|x|)); the
 * ISA's quantize_x, bit-identical to the reference kern_ref_quantize_x. */
typedef void (*kern_quantize_x_fn)(const float *x, int K, kern_xblock *out);
void kern_quantize_x(const float *x, int K, kern_xblock *out);
void kern_ref_quantize_x(const float *x, int K, kern_xblock *out);
void kern_avx2_quantize_x(const float *x, int K, kern_xblock *out);

/* The f32 scales (and mins) of a repack, shared by every repacker; f16 is the
 * repacker's exact f16 -> f32 conversion (inlined where it is a constant). */
static inline __attribute__((always_inline)) void kern_qrepack_scales(float (*f16)(uint16_t), bs_dtype type,
                                                                      const void *const rows[KERN_QROWS], int b0,
                                                                      int nb, kern_qtile *tile) {
    for (int r = 0; r < KERN_QROWS; r++)
        for (int i = 0; i < nb; i++) {
            int b = b0 + i;
            if (type == BS_DTYPE_Q8_0) {
                tile->scale[i][r] = f16(((const block_q8_0 *)rows[r])[b].d);
            } else if (type == BS_DTYPE_Q4_0) {
                tile->scale[i][r] = f16(((const block_q4_0 *)rows[r])[b].d);
            } else if (type == BS_DTYPE_Q4_K) {
                const block_q4_k *blk = (const block_q4_k *)rows[r] + b;
                float d = f16(blk->d), dmin = f16(blk->dmin);
                for (int j = 0; j < 8; j++) {
                    int sc, m;
                    q4k_scale_min(j, blk->scales, &sc, &m);
                    tile->scale[8 * i + j][r] = d * (float)sc;
                    tile->min[8 * i + j][r] = dmin * (float)m;
                }
            } else {
                const block_q6_k *blk = (const block_q6_k *)rows[r] + b;
                float d = f16(blk->d);
                for (int j = 0; j < 16; j++) tile->scale[16 * i + j][r] = d * (float)blk->scales[j];
            }
        }
}

/* The byte maps of kern_qrepack_r16, restrict-qualified so they vectorize
 * without alias checks. */
#define R16_MAP static inline __attribute__((always_inline)) void
R16_MAP r16_xor80(uint8_t *restrict dst, const uint8_t *restrict src, int n) {
    for (int e = 0; e < n; e++) dst[e] = src[e] ^ 0x80;
}
R16_MAP r16_nibbles(uint8_t *restrict lo, uint8_t *restrict hi, const uint8_t *restrict src, int n) {
    for (int e = 0; e < n; e++) {
        lo[e] = src[e] & 0xF;
        hi[e] = src[e] >> 4;
    }
}
/* Q6_K: the nibble at shift sl of ql with bits sh, sh + 1 of qh above it. */
R16_MAP r16_q6(uint8_t *restrict dst, const uint8_t *restrict ql, const uint8_t *restrict qh, int sl, int sh, int n) {
    for (int e = 0; e < n; e++) dst[e] = (uint8_t)(((ql[e] >> sl) & 0xF) | ((qh[e] >> sh) & 3) << 4);
}
#undef R16_MAP

/* The repack of an _R16 group (qinterleave.c): rows[0] is the group's first
 * byte (the other pointers are ignored), blocks [b0, b0 + nb).  The group
 * already holds each word of 16 rows together, which is the tile's order, so
 * every 64 bytes of weights become 64 tile bytes by a byte-wise map; the
 * scales are computed as kern_qrepack_scales does.  type is the _R16 type;
 * instantiated per ISA (qdot_ref.c, qdot_avx2.c) so the maps vectorize. */
static inline __attribute__((always_inline)) void kern_qrepack_r16(float (*f16)(uint16_t), bs_dtype type,
                                                                   const void *const rows[KERN_QROWS], int b0, int nb,
                                                                   kern_qtile *tile) {
    bs_dtype base = bs_dtype_block_type(type);
    size_t span = (size_t)KERN_QROWS * (size_t)bs_dtype_block_bytes(base); /* one block of the group */
    for (int i = 0; i < nb; i++) {
        const uint8_t *g = (const uint8_t *)rows[0] + (size_t)(b0 + i) * span;
        if (base == BS_DTYPE_Q8_0 || base == BS_DTYPE_Q4_0) {
            uint8_t *dst = tile->q + (size_t)i * 32 * KERN_QROWS;
            if (base == BS_DTYPE_Q8_0)
                r16_xor80(dst, g + 32, 32 * KERN_QROWS);
            else
                r16_nibbles(dst, dst + 16 * KERN_QROWS, g + 32, 16 * KERN_QROWS);
            for (int r = 0; r < KERN_QROWS; r++) tile->scale[i][r] = f16((uint16_t)(g[2 * r] | g[2 * r + 1] << 8));
        } else if (base == BS_DTYPE_Q4_K) { /* sub-blocks 2p, 2p + 1: low, high nibbles of words 8p.. */
            for (int p = 0; p < 4; p++) {
                const uint8_t *src = g + 256 + (size_t)p * 32 * KERN_QROWS;
                uint8_t *lo = tile->q + (size_t)(8 * i + 2 * p) * 32 * KERN_QROWS;
                r16_nibbles(lo, lo + 32 * KERN_QROWS, src, 32 * KERN_QROWS);
            }
            for (int r = 0; r < KERN_QROWS; r++) {
                uint8_t sc[12];
                for (int c = 0; c < 3; c++)
                    for (int k = 0; k < 4; k++) sc[4 * c + k] = g[64 + 64 * c + 4 * r + k];
                float d = f16((uint16_t)(g[4 * r] | g[4 * r + 1] << 8));
                float dmin = f16((uint16_t)(g[4 * r + 2] | g[4 * r + 3] << 8));
                for (int j = 0; j < 8; j++) {
                    int s, m;
                    q4k_scale_min(j, sc, &s, &m);
                    tile->scale[8 * i + j][r] = d * (float)s;
                    tile->min[8 * i + j][r] = dmin * (float)m;
                }
            }
        } else { /* Q6_K: word k of half h gives 4 bytes of sub-block 8h + 2q + k/4 for each q, see qmatvec_impl.h */
            for (int h = 0; h < 2; h++)
                for (int k = 0; k < 8; k++) {
                    const uint8_t *ql0 = g + 64 * (16 * h + k), *ql1 = g + 64 * (16 * h + 8 + k);
                    const uint8_t *qh = g + 16 * 128 + 64 * (8 * h + k);
                    for (int q = 0; q < 4; q++) {
                        const uint8_t *ql = q % 2 ? ql1 : ql0;
                        uint8_t *dst = tile->q + (size_t)(16 * i + 8 * h + 2 * q + k / 4) * 16 * KERN_QROWS +
                                       (size_t)(k % 4) * 4 * KERN_QROWS;
                        r16_q6(dst, ql, qh, 4 * (q / 2), 2 * q, 4 * KERN_QROWS);
                    }
                }
            for (int r = 0; r < KERN_QROWS; r++) {
                float d = f16((uint16_t)(g[16 * 208 + 2 * r] | g[16 * 208 + 2 * r + 1] << 8));
                for (int j = 0; j < 16; j++)
                    tile->scale[16 * i + j][r] = d * (float)(int8_t)g[16 * 192 + 64 * (j / 4) + 4 * r + j % 4];
            }
        }
    }
}

/* Reference repackers and kernel (qdot_ref.c). */
void kern_ref_qrepack_q8_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qrepack_q4_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qrepack_q4_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qrepack_q6_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qrepack_q8_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qrepack_q4_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qrepack_q4_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qrepack_q6_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_ref_qgemm(const kern_qlayout *L, const kern_qtile *tile, int nsub, const kern_xblock *x,
                    size_t x_stride, int T, float *y, size_t y_stride, int rows, int accumulate);

/* The tile path for rows [0, rows) of W with the repackers and kernel of
 * table isa (struct kern_isa_ops, isa.h), any T; kern_ref_qmatvec is it with
 * the reference table. */
struct kern_isa_ops;
void kern_qtiles(const struct kern_isa_ops *isa, bs_dtype type, const void *W, size_t row_bytes, int rows, int K,
                 const kern_xblock *x, size_t x_stride, int T, float *y, size_t y_stride);
void kern_ref_qmatvec(bs_dtype type, const void *W, size_t row_bytes, int rows, int K, const kern_xblock *x,
                      size_t x_stride, int T, float *y, size_t y_stride);

/* AVX2 repackers (qdot_avx2.c), also used by the AVX-512 table. */
void kern_avx2_qrepack_q8_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_avx2_qrepack_q4_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_avx2_qrepack_q4_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_avx2_qrepack_q6_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_avx2_qrepack_q8_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_avx2_qrepack_q4_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_avx2_qrepack_q4_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);
void kern_avx2_qrepack_q6_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile);

/* The SIMD tile kernels (qdot_avx2.c; qdot_avx512.c, which needs VNNI). */
void kern_avx2_qgemm(const kern_qlayout *L, const kern_qtile *tile, int nsub, const kern_xblock *x,
                     size_t x_stride, int T, float *y, size_t y_stride, int rows, int accumulate);
void kern_avx512_qgemm(const kern_qlayout *L, const kern_qtile *tile, int nsub, const kern_xblock *x,
                       size_t x_stride, int T, float *y, size_t y_stride, int rows, int accumulate);

/* The in-place decode kernels (qdot_avx2.c; qdot_avx512.c, which needs VNNI). */
void kern_avx2_qmatvec(bs_dtype type, const void *W, size_t row_bytes, int rows, int K, const kern_xblock *x,
                       size_t x_stride, int T, float *y, size_t y_stride);
void kern_avx512_qmatvec(bs_dtype type, const void *W, size_t row_bytes, int rows, int K, const kern_xblock *x,
                         size_t x_stride, int T, float *y, size_t y_stride);

/* kern_matmul_group when every matrix is quantized (matmul.c dispatches
 * here): the activations are quantized once for all of them and one pool
 * run covers every matrix's rows. */
void kern_matmul_quant(bs_threadpool *pool, const float *x, int T, int K, const kern_matmul_out *outs, int n);

#endif
