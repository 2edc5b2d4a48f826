/* kernels/isa_avx512.c — AVX-512 (F, BW, VL) building blocks (16 floats a
 * vector); tails use masked loads instead of scalar loops.  Compiled for those
 * features per function; only called when the CPU has them. */
#include <immintrin.h>

#include "kernels/isa.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

AVX512 static __mmask16 tail_mask(int64_t left) { return (__mmask16)((1u << left) - 1); }

AVX512 static void avx512_f16_to_f32(const void *h, float *dst, int64_t n) {
    const uint16_t *src = h;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

AVX512 static __m512 bf16_widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512 static void avx512_bf16_to_f32(const void *h, float *dst, int64_t n) {
    const uint16_t *src = h;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, bf16_widen(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, bf16_widen(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

AVX512 static float avx512_dot(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* ---- register-tiled matmul chunks (kern_gemm_fn) ----------------------
 * A tile is R weight rows x C tokens of accumulators, one zmm per (row,
 * token) pair, so every weight vector loaded is used C times and every x
 * vector R times.  Each pair's accumulator sees the same instructions in the
 * same order whatever the tile shape, which keeps results batch-invariant;
 * tails use masked loads (zeros add nothing).  Rows past `rows` repeat row 0
 * and are not stored. */

#define INLINE __attribute__((always_inline)) static inline

/* Weight kinds of the widening kernels. */
enum { W_F32, W_F16, W_BF16 };
/* Tile shapes (rows in whole reduce4 groups).  Prefill (several tokens) uses
 * TILE_ROWS x TILE_COLS: C x vectors + 1 weight + R*C accumulators fit the 32
 * zmm registers.  A single token (decode, gemv_tiles) is memory-bound:
 * DECODE_ROWS rows keep more loads in flight (16 read 15-20 % faster than 8
 * here; the per-line or two-tiles-ahead prefetch, or the L2 hint, were no
 * better). */
enum { TILE_ROWS = 4, TILE_COLS = 6, DECODE_ROWS = 16 };

/* 16 elements at p[i], widened; m == 0 loads all 16 without a mask (masked
 * 16-bit loads are slow on some cores). */
AVX512 INLINE __m512 widen_load(const void *p, int64_t i, __mmask16 m, int kind) {
    if (kind == W_F32) return m ? _mm512_maskz_loadu_ps(m, (const float *)p + i) : _mm512_loadu_ps((const float *)p + i);
    const uint16_t *h16 = (const uint16_t *)p + i;
    __m256i h = m ? _mm256_maskz_loadu_epi16(m, h16) : _mm256_loadu_si256((const __m256i *)h16);
    return kind == W_F16 ? _mm512_cvtph_ps(h) : bf16_widen(h);
}

/* One 16-column step of a tile. */
AVX512 INLINE void step_widen(__m512 acc[][TILE_COLS], const char *const *wr, const float *const *xc, int64_t i,
                              __mmask16 m, int R, int C, int kind) {
    __m512 xv[TILE_COLS];
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) xv[c] = widen_load(xc[c], i, m, W_F32);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        __m512 wv = widen_load(wr[r], i, m, kind);
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(xv[c], wv, acc[r][c]);
    }
}

/* The horizontal sums of four accumulators, as the four lanes of the result.
 * Every input's lanes are added in the same pattern ((0+2)+(1+3) within each
 * 128-bit block, then the blocks (0+2)+(1+3)), whichever slot it takes, so a
 * sum does not depend on the tile shape.  13 instructions for four sums. */
AVX512 INLINE __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512 abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd), hi);
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* One tile over n columns: y[c][r] (+)= x_c . w_r for r < rows (<= R), c < C.
 * With prefetch, the same columns of the next tile's rows are fetched while
 * this one computes: rows are short (a few KB), too short for the hardware
 * prefetcher to ramp up on, and each row tile's first token tile reads its
 * weights from memory. */
AVX512 INLINE void tile_widen(float *y, size_t ldy, const void *x, size_t ldx, const char *w, size_t row_bytes,
                              int rows, int n, int first, int prefetch, int R, int C, int kind) {
    const char *wr[TILE_ROWS];
    const float *xc[TILE_COLS];
    __m512 acc[TILE_ROWS][TILE_COLS];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) wr[r] = w + (size_t)(r < rows ? r : 0) * row_bytes;
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) xc[c] = (const float *)x + (size_t)c * ldx;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    int i = 0;
    size_t elem = kind == W_F32 ? 4 : 2;
    for (; i + 16 <= n; i += 16) {
        if (prefetch)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) _mm_prefetch(wr[r] + (size_t)R * row_bytes + (size_t)i * elem, _MM_HINT_T0);
        step_widen(acc, wr, xc, i, 0, R, C, kind);
    }
    if (i < n) step_widen(acc, wr, xc, i, tail_mask(n - i), R, C, kind);
#pragma GCC unroll 8
    for (int c = 0; c < C; c++)
#pragma GCC unroll 2
        for (int g = 0; g < R; g += 4) {
            if (g >= rows) break;
            __m128 s = reduce4(acc[g][c], acc[g + 1][c], acc[g + 2][c], acc[g + 3][c]);
            float *o = y + (size_t)c * ldy + g;
            __mmask8 m = rows - g >= 4 ? 0xF : (__mmask8)((1u << (rows - g)) - 1);
            if (!first) s = _mm_add_ps(_mm_maskz_loadu_ps(m, o), s);
            _mm_mask_storeu_ps(o, m, s);
        }
}

AVX512 INLINE void gemm_widen(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                              size_t row_bytes, int rows, int n, int first, int kind) {
    for (int r0 = 0; r0 < rows; r0 += TILE_ROWS) {
        const char *wt = (const char *)w + (size_t)r0 * row_bytes;
        int rr = rows - r0 < TILE_ROWS ? rows - r0 : TILE_ROWS;
        for (int t0 = 0; t0 < T; t0 += TILE_COLS) {
            float *yt = y + (size_t)t0 * ldy + r0;
            const float *xt = (const float *)x + (size_t)t0 * ldx;
            int pf = t0 == 0;
            switch (T - t0 < TILE_COLS ? T - t0 : TILE_COLS) {
            case 1: tile_widen(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, pf, TILE_ROWS, 1, kind); break;
            case 2: tile_widen(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, pf, TILE_ROWS, 2, kind); break;
            case 3: tile_widen(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, pf, TILE_ROWS, 3, kind); break;
            case 4: tile_widen(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, pf, TILE_ROWS, 4, kind); break;
            case 5: tile_widen(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, pf, TILE_ROWS, 5, kind); break;
            default: tile_widen(yt, ldy, xt, ldx, wt, row_bytes, rr, n, first, pf, TILE_ROWS, 6, kind); break;
            }
        }
    }
}

/* Decode (kern_gemv_fn): tiles of DECODE_ROWS whole rows; per chunk the
 * accumulators start at zero, take the chunk's steps in order and are reduced
 * and added to y as tile_widen does, so the sums are gemm_widen's.  Each row
 * is its own stream and is fetched GEMV_PREFETCH bytes ahead; past the row's
 * end the stream goes on at the same row of the next tile, which is what is
 * read next (a per-chunk call could only fetch the next tile's same chunk,
 * leaving every later chunk of a long row to demand misses). */
enum { GEMV_PREFETCH = 2048 };

AVX512 INLINE void gemv_tiles(float *y, const float *x, const void *w, size_t row_bytes, int rows, int K, int chunk,
                              int R, int kind) {
    size_t elem = kind == W_F32 ? 4 : 2, row_len = (size_t)K * elem;
    const float *xc[1] = {x};
    for (int r0 = 0; r0 < rows; r0 += R) {
        int rr = rows - r0 < R ? rows - r0 : R;
        const char *wr[DECODE_ROWS];
#pragma GCC unroll 16
        for (int r = 0; r < R; r++) wr[r] = (const char *)w + (size_t)(r0 + (r < rr ? r : 0)) * row_bytes;
        for (int k0 = 0; k0 < K; k0 += chunk) {
            int end = K - k0 < chunk ? K : k0 + chunk, i = k0;
            __m512 acc[DECODE_ROWS][TILE_COLS];
#pragma GCC unroll 16
            for (int r = 0; r < R; r++) acc[r][0] = _mm512_setzero_ps();
            for (; i + 16 <= end; i += 16) {
                size_t ahead = (size_t)i * elem + GEMV_PREFETCH;
                size_t off = ahead < row_len ? ahead : (size_t)R * row_bytes + (ahead - row_len);
#pragma GCC unroll 16
                for (int r = 0; r < R; r++) _mm_prefetch(wr[r] + off, _MM_HINT_T0);
                step_widen(acc, wr, xc, i, 0, R, 1, kind);
            }
            if (i < end) step_widen(acc, wr, xc, i, tail_mask(end - i), R, 1, kind);
#pragma GCC unroll 4
            for (int g = 0; g < R; g += 4) {
                if (g >= rr) break;
                __m128 s = reduce4(acc[g][0], acc[g + 1][0], acc[g + 2][0], acc[g + 3][0]);
                float *o = y + r0 + g;
                __mmask8 m = rr - g >= 4 ? 0xF : (__mmask8)((1u << (rr - g)) - 1);
                if (k0 > 0) s = _mm_add_ps(_mm_maskz_loadu_ps(m, o), s);
                _mm_mask_storeu_ps(o, m, s);
            }
        }
    }
}

/* Long rows read better 8 at a time: at 16 rows of 16 KB (Llama-3.2-1B's
 * down projection) the streams ran ~20 % slower than at 8, while rows of up
 * to ~10 KB ran faster at 16. */
enum { GEMV_WIDE_TILE_BYTES = 192 << 10 };

AVX512 INLINE void gemv_widen(float *y, const float *x, const void *w, size_t row_bytes, int rows, int K, int chunk,
                              int kind) {
    if ((size_t)DECODE_ROWS * K * (kind == W_F32 ? 4 : 2) <= GEMV_WIDE_TILE_BYTES)
        gemv_tiles(y, x, w, row_bytes, rows, K, chunk, DECODE_ROWS, kind);
    else
        gemv_tiles(y, x, w, row_bytes, rows, K, chunk, DECODE_ROWS / 2, kind);
}

/* ---- the float _R16 layouts (kern_gemm_r16_fn) --------------------------
 * A group's column k is one vector of its 16 rows, so each row is a lane: no
 * sums across lanes, and a group is read front to back as one stream (the
 * groups of a thread's rows are adjacent, so its whole share is one stream).
 * isa.h's two chains are two accumulators per (group, token), taking the
 * even and odd columns, which keeps two fused multiply-adds in flight when a
 * single token (decode) has nothing else to overlap: enough to outrun
 * memory.  Prefill tiles are R16_GROUPS groups by R16_COLS tokens (24
 * accumulators): each column load serves R16_COLS tokens, each broadcast of
 * x two groups, which ran at ~95 % of the FMA peak per core here against
 * ~75 % for one group by six tokens. */
enum { R16_GROUPS = 2, R16_COLS = 6, R16_PREFETCH = 8192 };

/* One column for G groups (group_bytes apart) and C tokens into chain j. */
AVX512 INLINE void r16_step(__m512 acc[][R16_COLS][2], const char *g, size_t group_bytes, const float *x, size_t ldx,
                            int k, int j, int G, int C, int kind) {
    __m512 w[R16_GROUPS];
#pragma GCC unroll 2
    for (int a = 0; a < G; a++) w[a] = widen_load(g + (size_t)a * group_bytes, (int64_t)k * BS_ROW_GROUP, 0, kind);
#pragma GCC unroll 8
    for (int c = 0; c < C; c++) {
        __m512 xv = _mm512_set1_ps(x[(size_t)c * ldx + k]);
#pragma GCC unroll 2
        for (int a = 0; a < G; a++) acc[a][c][j] = _mm512_fmadd_ps(xv, w[a], acc[a][c][j]);
    }
}

/* y[c * ldy + 16 a + r] = x_c . w_{a,r} for G groups, their rows r < 16 and
 * tokens c < C.  With prefetch (the first token tile of the groups, which
 * reads them from memory) each group's stream is fetched R16_PREFETCH bytes
 * ahead, on into the next group. */
AVX512 INLINE void r16_tile(float *y, size_t ldy, const float *x, size_t ldx, const char *g, size_t group_bytes, int K,
                            int prefetch, int G, int C, int kind) {
    size_t column = (size_t)BS_ROW_GROUP * (kind == W_F32 ? 4 : 2);
    __m512 acc[R16_GROUPS][R16_COLS][2];
#pragma GCC unroll 2
    for (int a = 0; a < G; a++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++) acc[a][c][0] = acc[a][c][1] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 2 <= K; k += 2) {
        if (prefetch)
#pragma GCC unroll 2
            for (int a = 0; a < G; a++)
#pragma GCC unroll 2
                for (size_t line = 0; line < 2 * column; line += 64)
                    _mm_prefetch(g + (size_t)a * group_bytes + (size_t)k * column + R16_PREFETCH + line, _MM_HINT_T0);
        r16_step(acc, g, group_bytes, x, ldx, k, 0, G, C, kind);
        r16_step(acc, g, group_bytes, x, ldx, k + 1, 1, G, C, kind);
    }
    if (k < K) r16_step(acc, g, group_bytes, x, ldx, k, 0, G, C, kind);
#pragma GCC unroll 2
    for (int a = 0; a < G; a++)
#pragma GCC unroll 8
        for (int c = 0; c < C; c++)
            _mm512_storeu_ps(y + (size_t)c * ldy + (size_t)a * BS_ROW_GROUP, _mm512_add_ps(acc[a][c][0], acc[a][c][1]));
}

/* The token tiles over G adjacent groups. */
AVX512 INLINE void r16_groups(float *y, size_t ldy, const float *x, size_t ldx, int T, const char *g,
                              size_t group_bytes, int K, int G, int kind) {
    for (int t0 = 0; t0 < T; t0 += R16_COLS) {
        float *yt = y + (size_t)t0 * ldy;
        const float *xt = x + (size_t)t0 * ldx;
        int pf = t0 == 0;
        switch (T - t0 < R16_COLS ? T - t0 : R16_COLS) {
        case 1: r16_tile(yt, ldy, xt, ldx, g, group_bytes, K, pf, G, 1, kind); break;
        case 2: r16_tile(yt, ldy, xt, ldx, g, group_bytes, K, pf, G, 2, kind); break;
        case 3: r16_tile(yt, ldy, xt, ldx, g, group_bytes, K, pf, G, 3, kind); break;
        case 4: r16_tile(yt, ldy, xt, ldx, g, group_bytes, K, pf, G, 4, kind); break;
        case 5: r16_tile(yt, ldy, xt, ldx, g, group_bytes, K, pf, G, 5, kind); break;
        default: r16_tile(yt, ldy, xt, ldx, g, group_bytes, K, pf, G, 6, kind); break;
        }
    }
}

/* Decode takes one group at a time (a single stream; two ran no faster);
 * prefill two, and one for an odd last group. */
AVX512 INLINE void gemm_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w, int groups, int K,
                            int kind) {
    size_t group_bytes = (size_t)K * BS_ROW_GROUP * (kind == W_F32 ? 4 : 2);
    int g = 0;
    if (T > 1)
        for (; g + R16_GROUPS <= groups; g += R16_GROUPS)
            r16_groups(y + (size_t)g * BS_ROW_GROUP, ldy, x, ldx, T, (const char *)w + (size_t)g * group_bytes,
                       group_bytes, K, R16_GROUPS, kind);
    for (; g < groups; g++)
        r16_groups(y + (size_t)g * BS_ROW_GROUP, ldy, x, ldx, T, (const char *)w + (size_t)g * group_bytes,
                   group_bytes, K, 1, kind);
}

AVX512 static void avx512_gemm_f32_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w,
                                       int groups, int K) {
    gemm_r16(y, ldy, x, ldx, T, w, groups, K, W_F32);
}

AVX512 static void avx512_gemm_f16_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w,
                                       int groups, int K) {
    gemm_r16(y, ldy, x, ldx, T, w, groups, K, W_F16);
}

AVX512 static void avx512_gemm_bf16_r16(float *y, size_t ldy, const float *x, size_t ldx, int T, const void *w,
                                        int groups, int K) {
    gemm_r16(y, ldy, x, ldx, T, w, groups, K, W_BF16);
}

AVX512 static void avx512_gemv_f32(float *y, const float *x, const void *w, size_t row_bytes, int rows, int K,
                                   int chunk) {
    gemv_widen(y, x, w, row_bytes, rows, K, chunk, W_F32);
}

AVX512 static void avx512_gemv_f16(float *y, const float *x, const void *w, size_t row_bytes, int rows, int K,
                                   int chunk) {
    gemv_widen(y, x, w, row_bytes, rows, K, chunk, W_F16);
}

AVX512 static void avx512_gemv_bf16(float *y, const float *x, const void *w, size_t row_bytes, int rows, int K,
                                    int chunk) {
    gemv_widen(y, x, w, row_bytes, rows, K, chunk, W_BF16);
}

AVX512 static void avx512_gemm_f32(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                                   size_t row_bytes, int rows, int n, int first) {
    gemm_widen(y, ldy, x, ldx, T, w, row_bytes, rows, n, first, W_F32);
}

AVX512 static void avx512_gemm_f16(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                                   size_t row_bytes, int rows, int n, int first) {
    gemm_widen(y, ldy, x, ldx, T, w, row_bytes, rows, n, first, W_F16);
}

AVX512 static void avx512_gemm_bf16(float *y, size_t ldy, const void *x, size_t ldx, int T, const void *w,
                                    size_t row_bytes, int rows, int n, int first) {
    gemm_widen(y, ldy, x, ldx, T, w, row_bytes, rows, n, first, W_BF16);
}

AVX512 static void avx512_axpy(float *y, float a, const float *x, int n) {
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

AVX512 static void avx512_scale(float *y, float a, int n) {
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(av, _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(av, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* e^x to about 2 ulp: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts so
 * r is exact), e^r by the Cephes degree-7 polynomial, times 2^n by vscalefps,
 * which gives inf and 0 past the float range (x is clamped only to keep n
 * finite for infinite inputs). */
AVX512 static __m512 exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(100.0f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

AVX512 static __m512 swiglu16(__m512 g, __m512 u) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

AVX512 static void avx512_swiglu(float *out, const float *gate, const float *up, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, swiglu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m, swiglu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
    }
}

const kern_isa_ops kern_isa_avx512 = {
    .name = "avx512",
    .dequant = {
        [BS_DTYPE_F32] = kern_ref_dequant_f32,
        [BS_DTYPE_F16] = avx512_f16_to_f32,
        [BS_DTYPE_BF16] = avx512_bf16_to_f32,
        KERN_AVX2_DEQUANT_BLOCKS,
    },
    .dot = avx512_dot,
    .gemm_f32 = avx512_gemm_f32,
    .gemm_f16 = avx512_gemm_f16,
    .gemm_bf16 = avx512_gemm_bf16,
    .gemv_f32 = avx512_gemv_f32,
    .gemv_f16 = avx512_gemv_f16,
    .gemv_bf16 = avx512_gemv_bf16,
    .gemm_f32_r16 = avx512_gemm_f32_r16,
    .gemm_f16_r16 = avx512_gemm_f16_r16,
    .gemm_bf16_r16 = avx512_gemm_bf16_r16,
    .axpy = avx512_axpy,
    .scale = avx512_scale,
    .swiglu = avx512_swiglu,
    .qrepack = {KERN_AVX2_QREPACK},
    .qgemm = kern_avx512_qgemm,
    .qmatvec = kern_avx512_qmatvec,
    .quantize_x = kern_avx2_quantize_x,
};
