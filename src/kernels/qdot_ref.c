/* kernels/qdot_ref.c — portable reference of the quantized matmul's building
 * blocks (qdot.h): repacking each quantized type into a kern_qtile and the
 * int8 tile kernel, written as the definition reads.  Every SIMD variant is
 * tested bit-exact against these. */
#include <math.h>

#include "kernels/blocks.h"
#include "kernels/qdot.h"

/* Byte of chunk column e of row r: groups of four columns interleave the rows. */
static inline size_t tile_index(int e, int r) { return (size_t)(e / 4) * 4 * KERN_QROWS + 4 * (size_t)r + e % 4; }

/* Store n unsigned weights of row r starting at chunk column e0. */
static void tile_put(kern_qtile *tile, int r, int e0, const uint8_t *u, int n) {
    for (int i = 0; i < n; i++) tile->q[tile_index(e0 + i, r)] = u[i];
}

void kern_ref_qrepack_q8_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    for (int r = 0; r < KERN_QROWS; r++) {
        const block_q8_0 *b = (const block_q8_0 *)rows[r] + b0;
        for (int i = 0; i < nb; i++) {
            uint8_t u[32];
            for (int l = 0; l < 32; l++) u[l] = (uint8_t)(b[i].qs[l] + 128);
            tile_put(tile, r, 32 * i, u, 32);
        }
    }
    kern_qrepack_scales(bs_f16_to_f32, BS_DTYPE_Q8_0, rows, b0, nb, tile);
}

void kern_ref_qrepack_q4_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    for (int r = 0; r < KERN_QROWS; r++) {
        const block_q4_0 *b = (const block_q4_0 *)rows[r] + b0;
        for (int i = 0; i < nb; i++) {
            uint8_t u[32];
            for (int l = 0; l < 16; l++) {
                u[l] = b[i].qs[l] & 0xF;
                u[l + 16] = b[i].qs[l] >> 4;
            }
            tile_put(tile, r, 32 * i, u, 32);
        }
    }
    kern_qrepack_scales(bs_f16_to_f32, BS_DTYPE_Q4_0, rows, b0, nb, tile);
}

void kern_ref_qrepack_q4_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    for (int r = 0; r < KERN_QROWS; r++) {
        const block_q4_k *b = (const block_q4_k *)rows[r] + b0;
        for (int i = 0; i < nb; i++)
            for (int j = 0; j < 8; j++) {
                uint8_t u[32];
                const uint8_t *q = b[i].qs + 32 * (j / 2);
                for (int l = 0; l < 32; l++) u[l] = j % 2 ? q[l] >> 4 : q[l] & 0xF;
                tile_put(tile, r, 256 * i + 32 * j, u, 32);
            }
    }
    kern_qrepack_scales(bs_f16_to_f32, BS_DTYPE_Q4_K, rows, b0, nb, tile);
}

/* Element l + 32*s of each 128 (s < 4): nibble s/2 of ql[l + 32*(s%2)] and
 * bits 2s..2s+1 of qh[l], as in dequant_q6_k. */
void kern_ref_qrepack_q6_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    for (int r = 0; r < KERN_QROWS; r++) {
        const block_q6_k *b = (const block_q6_k *)rows[r] + b0;
        for (int i = 0; i < nb; i++) {
            uint8_t u[256];
            for (int half = 0; half < 2; half++) {
                const uint8_t *ql = b[i].ql + 64 * half, *qh = b[i].qh + 32 * half;
                for (int s = 0; s < 4; s++)
                    for (int l = 0; l < 32; l++) {
                        int low = s / 2 ? ql[l + 32 * (s % 2)] >> 4 : ql[l + 32 * (s % 2)] & 0xF;
                        u[128 * half + 32 * s + l] = (uint8_t)(low | ((qh[l] >> (2 * s)) & 3) << 4);
                    }
            }
            tile_put(tile, r, 256 * i, u, 256);
        }
    }
    kern_qrepack_scales(bs_f16_to_f32, BS_DTYPE_Q6_K, rows, b0, nb, tile);
}

void kern_ref_qgemm(const kern_qlayout *L, const kern_qtile *tile, int nsub, const kern_xblock *x,
                    size_t x_stride, int T, float *y, size_t y_stride, int rows, int accumulate) {
    for (int t = 0; t < T; t++) {
        const kern_xblock *xt = x + (size_t)t * x_stride;
        float *yt = y + (size_t)t * y_stride;
        for (int r = 0; r < rows; r++) {
            float acc = accumulate ? yt[r] : 0.0f;
            for (int j = 0; j < nsub; j++) {
                int e0 = j * L->sub;
                const kern_xblock *xb = xt + e0 / 32;
                int xs = L->sub == 32 ? xb->sum[0] + xb->sum[1] : xb->sum[e0 % 32 / 16];
                int32_t isum = -L->off * xs;
                for (int i = 0; i < L->sub; i++) isum += tile->q[tile_index(e0 + i, r)] * xb->q[(e0 + i) % 32];
                acc = fmaf((float)isum, tile->scale[j][r] * xb->d, acc);
                if (L->has_min) acc = fmaf(-(float)xs, tile->min[j][r] * xb->d, acc);
            }
            yt[r] = acc;
        }
    }
}

void kern_ref_qrepack_q8_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(bs_f16_to_f32, BS_DTYPE_Q8_0_R16, rows, b0, nb, tile);
}
void kern_ref_qrepack_q4_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(bs_f16_to_f32, BS_DTYPE_Q4_0_R16, rows, b0, nb, tile);
}
void kern_ref_qrepack_q4_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(bs_f16_to_f32, BS_DTYPE_Q4_K_R16, rows, b0, nb, tile);
}
void kern_ref_qrepack_q6_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(bs_f16_to_f32, BS_DTYPE_Q6_K_R16, rows, b0, nb, tile);
}
