/* kernels/qdot_avx2.c — the quantized tile kernel (qdot.h) on AVX2: the 16
 * tile rows are two vectors of 8 lanes, and each lane's 4-byte dot product is
 * vpmaddubsw (u8 x s8 pairs to s16) then vpmaddwd against ones.  The pair
 * sums cannot saturate for weights below 64 (Q4_0, Q4_K, Q6_K); Q8_0's
 * signed weights use |w| and x with w's sign instead, which stays in range
 * because activations never reach -128.  Two tokens share each loaded weight
 * vector.  Compiled for AVX2 per function; only called when the CPU has it. */
#include <immintrin.h>
#include <string.h>

#include "kernels/isa.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE __attribute__((always_inline)) static inline

/* Tokens per register tile (16 vector registers). */
enum { COLS = 2 };

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* C tokens against the tile; sub, has_min, is_signed and C are constants
 * after inlining.  is_signed: the bytes are Q8_0 codes + 128 (off = 128),
 * whose exact sum needs no offset term. */
AVX2 INLINE void qgemm_cols(const kern_qtile *tile, int nsub, const kern_xblock *x, size_t x_stride, float *y,
                            size_t y_stride, int rows, int accumulate, int off, const int C, const int sub,
                            const int has_min, const int is_signed) {
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[COLS][2];
    float tmp[KERN_QROWS];
    for (int c = 0; c < C; c++) {
        for (int r = 0; r < KERN_QROWS; r++) tmp[r] = accumulate && r < rows ? y[(size_t)c * y_stride + r] : 0.0f;
        acc[c][0] = _mm256_loadu_ps(tmp);
        acc[c][1] = _mm256_loadu_ps(tmp + 8);
    }
    for (int j = 0; j < nsub; j++) {
        const __m256i *wq = (const __m256i *)(tile->q + (size_t)j * sub * KERN_QROWS);
        int e0 = j * sub;
        const kern_xblock *xb[COLS];
        __m256i s[COLS][2];
#pragma GCC unroll 2
        for (int c = 0; c < C; c++) {
            xb[c] = x + (size_t)c * x_stride + e0 / 32;
            int sum = sub == 32 ? xb[c]->sum[0] + xb[c]->sum[1] : xb[c]->sum[e0 % 32 / 16];
            s[c][0] = s[c][1] = _mm256_set1_epi32(is_signed ? 0 : -off * sum);
        }
#pragma GCC unroll 8
        for (int g = 0; g < sub / 4; g++)
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i u = _mm256_load_si256(wq + 2 * g + h), w = is_signed ? _mm256_xor_si256(u, flip) : u;
                __m256i aw = is_signed ? _mm256_abs_epi8(w) : u;
#pragma GCC unroll 2
                for (int c = 0; c < C; c++) {
                    __m256i xv = _mm256_set1_epi32(load_i32(xb[c]->q + e0 % 32 + 4 * g));
                    if (is_signed) xv = _mm256_sign_epi8(xv, w);
                    s[c][h] = _mm256_add_epi32(s[c][h], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xv), ones));
                }
            }
#pragma GCC unroll 2
        for (int c = 0; c < C; c++) {
            int sum = sub == 32 ? xb[c]->sum[0] + xb[c]->sum[1] : xb[c]->sum[e0 % 32 / 16];
            __m256 dx = _mm256_set1_ps(xb[c]->d);
            for (int h = 0; h < 2; h++) {
                __m256 scale = _mm256_mul_ps(_mm256_load_ps(tile->scale[j] + 8 * h), dx);
                acc[c][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c][h]), scale, acc[c][h]);
                if (has_min)
                    acc[c][h] = _mm256_fnmadd_ps(_mm256_set1_ps((float)sum),
                                                 _mm256_mul_ps(_mm256_load_ps(tile->min[j] + 8 * h), dx), acc[c][h]);
            }
        }
    }
    for (int c = 0; c < C; c++) {
        _mm256_storeu_ps(tmp, acc[c][0]);
        _mm256_storeu_ps(tmp + 8, acc[c][1]);
        memcpy(y + (size_t)c * y_stride, tmp, (size_t)rows * sizeof(float));
    }
}

AVX2 INLINE void qgemm_layout(const kern_qtile *tile, int nsub, const kern_xblock *x, size_t x_stride, int T,
                              float *y, size_t y_stride, int rows, int accumulate, int off, const int sub,
                              const int has_min, const int is_signed) {
    int t = 0;
    for (; t + COLS <= T; t += COLS)
        qgemm_cols(tile, nsub, x + t * x_stride, x_stride, y + t * y_stride, y_stride, rows, accumulate, off, COLS,
                   sub, has_min, is_signed);
    if (t < T)
        qgemm_cols(tile, nsub, x + t * x_stride, x_stride, y + t * y_stride, y_stride, rows, accumulate, off, 1, sub,
                   has_min, is_signed);
}

AVX2 void kern_avx2_qgemm(const kern_qlayout *L, const kern_qtile *tile, int nsub, const kern_xblock *x,
                          size_t x_stride, int T, float *y, size_t y_stride, int rows, int accumulate) {
    if (L->sub == 16)
        qgemm_layout(tile, nsub, x, x_stride, T, y, y_stride, rows, accumulate, L->off, 16, 0, 0);
    else if (L->has_min)
        qgemm_layout(tile, nsub, x, x_stride, T, y, y_stride, rows, accumulate, L->off, 32, 1, 0);
    else if (L->off == 128)
        qgemm_layout(tile, nsub, x, x_stride, T, y, y_stride, rows, accumulate, L->off, 32, 0, 1);
    else
        qgemm_layout(tile, nsub, x, x_stride, T, y, y_stride, rows, accumulate, L->off, 32, 0, 0);
}
