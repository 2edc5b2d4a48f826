/* kernels/isa_avx2.c — AVX2 + FMA + F16C building blocks (8 floats a vector).
 * Compiled for those features per function; only called when the CPU has them. */
#include <immintrin.h>

#include "base/dtype.h"
#include "kernels/blocks.h"
#include "kernels/isa.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static void avx2_f16_to_f32(const void *h, float *dst, int64_t n) {
    const uint16_t *src = h;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = bs_f16_to_f32(src[i]);
}

AVX2 static void avx2_bf16_to_f32(const void *h, float *dst, int64_t n) {
    const uint16_t *src = h;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; i++) dst[i] = bs_bf16_to_f32(src[i]);
}

/* Block dequantizers: the same products in the same order as the reference
 * (no FMA contraction), so results are bit-identical. */

/* 8 bytes at p, sign- or zero-extended, as floats. */
AVX2 static __m256 i8x8_to_ps(const void *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
AVX2 static __m256 u8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

AVX2 void kern_avx2_dequant_q8_0(const void *src, float *y, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        __m256 d = _mm256_set1_ps(bs_f16_to_f32(b[i].d));
        for (int j = 0; j < 32; j += 8) _mm256_storeu_ps(y + j, _mm256_mul_ps(d, i8x8_to_ps(b[i].qs + j)));
    }
}

AVX2 void kern_avx2_dequant_q4_0(const void *src, float *y, int64_t n) {
    const block_q4_0 *b = src;
    const __m128i low4 = _mm_set1_epi8(0xF), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        __m256 d = _mm256_set1_ps(bs_f16_to_f32(b[i].d));
        __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        __m128i lo = _mm_sub_epi8(_mm_and_si128(q, low4), eight);
        __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), low4), eight);
        __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[j]))));
    }
}

/* 32 nibble values (bytes: 16 in lo16, then 16 in hi16) times scale minus offset, stored at y. */
AVX2 static void q4k_store32(float *y, __m128i lo16, __m128i hi16, float scale, float offset) {
    __m256 s = _mm256_set1_ps(scale), o = _mm256_set1_ps(offset);
    __m128i parts[4] = {lo16, _mm_srli_si128(lo16, 8), hi16, _mm_srli_si128(hi16, 8)};
    for (int j = 0; j < 4; j++) _mm256_storeu_ps(y + 8 * j, _mm256_sub_ps(_mm256_mul_ps(s, u8x8_to_ps(parts[j])), o));
}

AVX2 void kern_avx2_dequant_q4_k(const void *src, float *y, int64_t n) {
    const block_q4_k *b = src;
    const __m256i low4 = _mm256_set1_epi8(0xF);
    for (int64_t i = 0; i < n / 256; i++) {
        float d = bs_f16_to_f32(b[i].d), dmin = bs_f16_to_f32(b[i].dmin);
        for (int j = 0; j < 8; j += 2, y += 64) {
            int sc0, m0, sc1, m1;
            q4k_scale_min(j, b[i].scales, &sc0, &m0);
            q4k_scale_min(j + 1, b[i].scales, &sc1, &m1);
            __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 16 * j));
            __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
            q4k_store32(y, _mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1), d * (float)sc0,
                        dmin * (float)m0);
            q4k_store32(y + 32, _mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1), d * (float)sc1,
                        dmin * (float)m1);
        }
    }
}

AVX2 void kern_avx2_dequant_q6_k(const void *src, float *y, int64_t n) {
    const block_q6_k *b = src;
    const __m256i low4 = _mm256_set1_epi32(0xF), low2 = _mm256_set1_epi32(3), bias = _mm256_set1_epi32(32);
    for (int64_t i = 0; i < n / 256; i++) {
        float d = bs_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l += 8) {
                int is = l / 16;
                __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l)));
                __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l + 32)));
                __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qh + l)));
                __m256i q[4] = {
                    _mm256_or_si256(_mm256_and_si256(a, low4), _mm256_slli_epi32(_mm256_and_si256(h, low2), 4)),
                    _mm256_or_si256(_mm256_and_si256(c, low4),
                                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), low2), 4)),
                    _mm256_or_si256(_mm256_srli_epi32(a, 4),
                                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), low2), 4)),
                    _mm256_or_si256(_mm256_srli_epi32(c, 4), _mm256_slli_epi32(_mm256_srli_epi32(h, 6), 4)),
                };
                for (int s = 0; s < 4; s++) {
                    __m256 scale = _mm256_set1_ps(d * (float)sc[is + 2 * s]);
                    __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(q[s], bias));
                    _mm256_storeu_ps(y + l + 32 * s, _mm256_mul_ps(scale, v));
                }
            }
        }
    }
}

AVX2 static float avx2_dot(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- register-tiled matmul chunks (kern_gemm_fn) ----------------------
 * TILE_ROWS weight rows x up to TILE_COLS tokens of ymm accumulators, one per
 * (row, token) pair; columns past the last multiple of 8 are added one by one
 * after the vector sum.  Each pair sees the same operations whatever the tile
 * shape, so results are batch-invariant.  Rows past `rows` repeat row 0 and
 * are not stored. */

#define INLINE __attribute__((always_inline)) static inline

enum { W_F32, W_F16, W_BF16 };
enum { TILE_ROWS = 4, TILE_COLS = 2 };

AVX2 INLINE __m256 widen_load(const void *p, int i, int kind) {
    if (kind == W_F32) return _mm256_loadu_ps((const float *)p + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    return kind == W_F16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AVX2 INLINE float widen_one(const void *p, int i, int kind) {
    if (kind == W_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return kind == W_F16 ? bs_f16_to_f32(h) : bs_bf16_to_f32(h);
}

AVX2 INLINE void tile(float *y, size_t ldy, const void *x, size_t ldx, const char *w, size_t row_bytes, int rows,
                      int n, int first, int C, int kind) {
    const float *xc[TILE_COLS];
    const char *wr[TILE_ROWS];
    __m256 acc[TILE_ROWS][TILE_COLS];
#pragma GCC unroll 4
    for (int r = 0; r < TILE_ROWS; r++) wr[r] = w + (size_t)(r < rows ? r : 0) * row_bytes;
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) xc[c] = (const float *)x + (size_t)c * ldx;
#pragma GCC unroll 4
    for (int r = 0; r < TILE_ROWS; r++)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv[TILE_COLS];
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) xv[c] = _mm256_loadu_ps(xc[c] + i);
#pragma GCC unroll 4
        for (int r = 0; r < TILE_ROWS; r++) {
            __m256 wv = widen_load(wr[r], i, kind);
#pragma GCC unroll 4
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(xv[c], wv, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
#pragma GCC unroll 4
        for (int r = 0; r < TILE_ROWS; r++) {
            if (r >= rows) break;
            float s = hsum(acc[r][c]), *o = y + (size_t)c * ldy + r;
            for (int k = i; k < n; k++) s += xc[c][k] * widen_one(wr[r], k, kind);
            *o = first ? s : *o + s;
        }
}

AVX2 INLINE void gemm(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w, size_t row_bytes,
                      int rows, int n, int first, int kind) {
    for (int r0 = 0; r0 < rows; r0 += TILE_ROWS) {
        const char *wt = (const char *)w + (size_t)r0 * row_bytes;
        int rr = rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS;
        for (int t0 = 0; t0 < T; t0 += TILE_COLS) {
            float *yt = y + (size_t)t0 * ldy + r0;
            const float *xt = (const float *)x + (size_t)t0 * ldx;
            if (T - t0 == 1)
                tile(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, 1, kind);
            else
                tile(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, 2, kind);
        }
    }
}

AVX2 static void avx2_gemm_f32(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                               size_t row_bytes, int rows, int n, int first) {
    gemm(y, ldy, x, ldx, T, w, row_bytes, rows, n, first, W_F32);
}

AVX2 static void avx2_gemm_f16(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                               size_t row_bytes, int rows, int n, int first) {
    gemm(y, ldy, x, ldx, T, w, row_bytes, rows, n, first, W_F16);
}

AVX2 static void avx2_gemm_bf16(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                                size_t row_bytes, int rows, int n, int first) {
    gemm(y, ldy, x, ldx, T, w, row_bytes, rows, n, first, W_BF16);
}

AVX2 static void avx2_axpy(float *y, float a, const float *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static void avx2_scale(float *y, float a, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(av, _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}

const kern_isa_ops kern_isa_avx2 = {
    .name = "avx2",
    .dequant = {
        [BS_DTYPE_F32] = kern_ref_dequant_f32,
        [BS_DTYPE_F16] = avx2_f16_to_f32,
        [BS_DTYPE_BF16] = avx2_bf16_to_f32,
        KERN_AVX2_DEQUANT_BLOCKS,
    },
    .dot = avx2_dot,
    .gemm_f32 = avx2_gemm_f32,
    .gemm_f16 = avx2_gemm_f16,
    .gemm_bf16 = avx2_gemm_bf16,
    .gemm_f32_r16 = kern_ref_gemm_f32_r16,
    .gemm_f16_r16 = kern_ref_gemm_f16_r16,
    .gemm_bf16_r16 = kern_ref_gemm_bf16_r16,
    .axpy = avx2_axpy,
    .scale = avx2_scale,
    .swiglu = kern_ref_swiglu,
    .qrepack = {KERN_AVX2_QREPACK},
    .qgemm = kern_avx2_qgemm,
    .qmatvec = kern_avx2_qmatvec,
    .quantize_x = kern_avx2_quantize_x,
};
