/* kernels/qdot_avx512.c — the quantized tile kernel (qdot.h) on AVX-512 VNNI:
 * one 32-bit lane per tile row, vpdpbusd multiplies four unsigned weight
 * bytes of each of the 16 rows by four broadcast int8 activations.  Up to
 * four tokens share each loaded weight vector.  Also the decode kernel of
 * qmatvec_impl.h over 16-row groups.  Compiled for those features per
 * function; only called when the CPU has them (qdot.c checks VNNI). */
#include <immintrin.h>
#include <string.h>

#include "kernels/isa.h"

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE __attribute__((always_inline)) static inline

/* Tokens per register tile: 4 accumulators, 8 weight vectors and the
 * per-token integer sums fit the 32 vector registers. */
enum { COLS = 4 };

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* C tokens (x + c*x_stride, y + c*y_stride) against the tile; sub, has_min and
 * C are constants after inlining, so the loops unroll into registers. */
VNNI INLINE void qgemm_cols(const kern_qtile *tile, int nsub, const kern_xblock *x, size_t x_stride, float *y,
                            size_t y_stride, __mmask16 m, int accumulate, int off, const int C, const int sub,
                            const int has_min) {
    __m512 acc[COLS];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
        acc[c] = accumulate ? _mm512_maskz_loadu_ps(m, y + (size_t)c * y_stride) : _mm512_setzero_ps();
    for (int j = 0; j < nsub; j++) {
        const __m512i *wq = (const __m512i *)(tile->q + (size_t)j * sub * KERN_QROWS);
        __m512i w[8];
#pragma GCC unroll 8
        for (int g = 0; g < sub / 4; g++) w[g] = _mm512_load_si512(wq + g);
        __m512 ws = _mm512_load_ps(tile->scale[j]);
        int e0 = j * sub;
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            const kern_xblock *xb = x + (size_t)c * x_stride + e0 / 32;
            const int8_t *xq = xb->q + e0 % 32;
            int sum = sub == 32 ? xb->sum[0] + xb->sum[1] : xb->sum[e0 % 32 / 16];
            /* Two chains of dot products halve the wait on vpdpbusd's latency. */
            __m512i s0 = _mm512_set1_epi32(-off * sum), s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int g = 0; g < sub / 4; g += 2) {
                s0 = _mm512_dpbusd_epi32(s0, w[g], _mm512_set1_epi32(load_i32(xq + 4 * g)));
                s1 = _mm512_dpbusd_epi32(s1, w[g + 1], _mm512_set1_epi32(load_i32(xq + 4 * g + 4)));
            }
            __m512 dx = _mm512_set1_ps(xb->d);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(ws, dx), acc[c]);
            if (has_min)
                acc[c] = _mm512_fnmadd_ps(_mm512_set1_ps((float)sum), _mm512_mul_ps(_mm512_load_ps(tile->min[j]), dx),
                                          acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) _mm512_mask_storeu_ps(y + (size_t)c * y_stride, m, acc[c]);
}

VNNI INLINE void qgemm_layout(const kern_qtile *tile, int nsub, const kern_xblock *x, size_t x_stride, int T,
                              float *y, size_t y_stride, __mmask16 m, int accumulate, int off, const int sub,
                              const int has_min) {
    int t = 0;
    for (; t + COLS <= T; t += COLS)
        qgemm_cols(tile, nsub, x + t * x_stride, x_stride, y + t * y_stride, y_stride, m, accumulate, off, COLS,
                   sub, has_min);
    const kern_xblock *xt = x + t * x_stride;
    float *yt = y + t * y_stride;
    switch (T - t) {
    case 3: qgemm_cols(tile, nsub, xt, x_stride, yt, y_stride, m, accumulate, off, 3, sub, has_min); break;
    case 2: qgemm_cols(tile, nsub, xt, x_stride, yt, y_stride, m, accumulate, off, 2, sub, has_min); break;
    case 1: qgemm_cols(tile, nsub, xt, x_stride, yt, y_stride, m, accumulate, off, 1, sub, has_min); break;
    default: break;
    }
}

VNNI void kern_avx512_qgemm(const kern_qlayout *L, const kern_qtile *tile, int nsub, const kern_xblock *x,
                            size_t x_stride, int T, float *y, size_t y_stride, int rows, int accumulate) {
    __mmask16 m = (__mmask16)((1u << rows) - 1);
    if (L->sub == 16)
        qgemm_layout(tile, nsub, x, x_stride, T, y, y_stride, m, accumulate, L->off, 16, 0);
    else if (L->has_min)
        qgemm_layout(tile, nsub, x, x_stride, T, y, y_stride, m, accumulate, L->off, 32, 1);
    else
        qgemm_layout(tile, nsub, x, x_stride, T, y, y_stride, m, accumulate, L->off, 32, 0);
}

/* ---- the decode kernel (qmatvec_impl.h): 16 rows, VNNI ------------------- */

#define QMV_TARGET VNNI
#define QMV_ROWS 16
#define QMV_Q8_OFF 128 /* Q8_0 codes are made unsigned by + 128 for vpdpbusd */
#define QMV_NAME kern_avx512_qmatvec
#define QV(op) _mm512_##op
typedef __m512i qv_i;
typedef __m512 qv_f;

VNNI INLINE qv_i qv_zero(void) { return _mm512_setzero_si512(); }
VNNI INLINE qv_i qv_and(qv_i a, qv_i b) { return _mm512_and_si512(a, b); }
VNNI INLINE qv_i qv_or(qv_i a, qv_i b) { return _mm512_or_si512(a, b); }
VNNI INLINE qv_i qv_loadi(const int32_t *v) { return _mm512_loadu_si512(v); }

VNNI INLINE qv_i qv_load(const unsigned char *const p[QMV_ROWS], int k, size_t off) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p[k] + off)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[k + 4] + off)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[k + 8] + off)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[k + 12] + off)), 3);
}

VNNI INLINE qv_i qv_bcast(const int8_t *x) { return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)x)); }
VNNI INLINE qv_i qv_dot(qv_i acc, qv_i u, qv_i x) { return _mm512_dpbusd_epi32(acc, u, x); }
VNNI INLINE qv_i qv_q8_prep(qv_i w) { return _mm512_xor_si512(w, _mm512_set1_epi8((char)0x80)); }
VNNI INLINE qv_i qv_dot_q8(qv_i acc, qv_i u, qv_i x) { return _mm512_dpbusd_epi32(acc, u, x); }
VNNI INLINE qv_i qv_gather(const unsigned char *base, qv_i idx) { return _mm512_i32gather_epi32(idx, base, 1); }
VNNI INLINE qv_f qv_f16(qv_i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
VNNI INLINE qv_i qv_loadw(const unsigned char *p) { return _mm512_loadu_si512(p); }
VNNI INLINE qv_i qv_bcast4(const int8_t *x) { return _mm512_set1_epi32(load_i32(x)); }
VNNI INLINE qv_f qv_f16s(const unsigned char *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
VNNI INLINE void qv_store(float *y, qv_f v, int rows) {
    _mm512_mask_storeu_ps(y, (__mmask16)((1u << rows) - 1), v);
}

#include "kernels/qmatvec_impl.h"
