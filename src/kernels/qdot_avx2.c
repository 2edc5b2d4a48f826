/* kernels/qdot_avx2.c — the quantized tile kernel (qdot.h) on AVX2: the 16
 * tile rows are two vectors of 8 lanes, and each lane's 4-byte dot product is
 * vpmaddubsw (u8 x s8 pairs to s16) then vpmaddwd against ones.  The pair
 * sums cannot saturate for weights below 64 (Q4_0, Q4_K, Q6_K); Q8_0's
 * signed weights use |w| and x with w's sign instead, which stays in range
 * because activations never reach -128.  Two tokens share each loaded weight
 * vector.  The repackers decode 32 weights of a row into a vector and
 * transpose eight rows at a time into the tile's interleaved layout; the
 * AVX-512 table uses them too.  Also the decode kernel of qmatvec_impl.h
 * over 8-row groups.  Compiled for AVX2 per function; only called when the
 * CPU has it. */
#include <immintrin.h>
#include <string.h>

#include "kernels/blocks.h"
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

/* ---- activations ---------------------------------------------------------- */

AVX2 static float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

AVX2 static int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1)));
}

/* The reference's operations on 8 lanes: the product x * id rounded by
 * vcvtps2dq (to nearest even, as nearest_int). */
AVX2 void kern_avx2_quantize_x(const float *x, int K, kern_xblock *out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < K / 32; b++, x += 32) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
        }
        float amax = hmax(m), id = amax > 0 ? 127.0f / amax : 0.0f;
        out[b].d = amax / 127.0f;
        __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], idv));
        out[b].sum[0] = (int16_t)hsum_i32(_mm256_add_epi32(q[0], q[1]));
        out[b].sum[1] = (int16_t)hsum_i32(_mm256_add_epi32(q[2], q[3]));
        /* int32 -> int8 (no saturation happens: |q| <= 127); packs interleave lanes. */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].q, p);
    }
}

/* ---- repacking ----------------------------------------------------------- */

AVX2 static inline float f16c_to_f32(uint16_t h) { return _cvtsh_ss(h); }

/* The unsigned weights u of 32 consecutive columns of one block: columns
 * [32v, 32v + 32) of block b of row (type is a constant after inlining). */
AVX2 INLINE __m256i decode32(bs_dtype type, const void *row, int b, int v) {
    const __m256i low4 = _mm256_set1_epi8(0xF);
    if (type == BS_DTYPE_Q8_0) {
        const block_q8_0 *blk = (const block_q8_0 *)row + b;
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)blk->qs), _mm256_set1_epi8((char)0x80));
    }
    if (type == BS_DTYPE_Q4_0) {
        const block_q4_0 *blk = (const block_q4_0 *)row + b;
        __m128i q = _mm_loadu_si128((const __m128i *)blk->qs);
        __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
        return _mm256_and_si256(both, low4);
    }
    if (type == BS_DTYPE_Q4_K) {
        const block_q4_k *blk = (const block_q4_k *)row + b;
        __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * (v / 2)));
        return _mm256_and_si256(v % 2 ? _mm256_srli_epi16(q, 4) : q, low4);
    }
    /* Q6_K: v = 4*half + s, see kern_ref_qrepack_q6_k. */
    const block_q6_k *blk = (const block_q6_k *)row + b;
    int half = v / 4, s = v % 4;
    __m256i ql = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * half + 32 * (s % 2)));
    __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * half));
    __m256i lo = _mm256_and_si256(s / 2 ? _mm256_srli_epi16(ql, 4) : ql, low4);
    __m256i hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * s)), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/* Rows r0..r0+7 of tile columns [e0, e0 + 32) from v[r]: an 8x8 transpose of
 * 4-byte groups, so out[g] holds group g of the eight rows. */
AVX2 INLINE void store8(kern_qtile *tile, int e0, int r0, const __m256i v[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    uint8_t *dst = tile->q + (size_t)e0 * KERN_QROWS + 4 * r0;
    for (int g = 0; g < 4; g++) {
        _mm256_store_si256((__m256i *)(dst + 4 * KERN_QROWS * g), _mm256_permute2x128_si256(u[g], u[g + 4], 0x20));
        _mm256_store_si256((__m256i *)(dst + 4 * KERN_QROWS * (g + 4)),
                           _mm256_permute2x128_si256(u[g], u[g + 4], 0x31));
    }
}

AVX2 INLINE void repack(bs_dtype type, const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    int vecs = bs_dtype_block_elems(type) / 32;
    for (int r0 = 0; r0 < KERN_QROWS; r0 += 8)
        for (int i = 0; i < nb; i++)
            for (int v = 0; v < vecs; v++) {
                __m256i u[8];
                for (int r = 0; r < 8; r++) u[r] = decode32(type, rows[r0 + r], b0 + i, v);
                store8(tile, 32 * (vecs * i + v), r0, u);
            }
    kern_qrepack_scales(f16c_to_f32, type, rows, b0, nb, tile);
}

AVX2 void kern_avx2_qrepack_q8_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    repack(BS_DTYPE_Q8_0, rows, b0, nb, tile);
}
AVX2 void kern_avx2_qrepack_q4_0(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    repack(BS_DTYPE_Q4_0, rows, b0, nb, tile);
}
AVX2 void kern_avx2_qrepack_q4_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    repack(BS_DTYPE_Q4_K, rows, b0, nb, tile);
}
AVX2 void kern_avx2_qrepack_q6_k(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    repack(BS_DTYPE_Q6_K, rows, b0, nb, tile);
}

AVX2 void kern_avx2_qrepack_q8_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(f16c_to_f32, BS_DTYPE_Q8_0_R16, rows, b0, nb, tile);
}
AVX2 void kern_avx2_qrepack_q4_0_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(f16c_to_f32, BS_DTYPE_Q4_0_R16, rows, b0, nb, tile);
}
AVX2 void kern_avx2_qrepack_q4_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(f16c_to_f32, BS_DTYPE_Q4_K_R16, rows, b0, nb, tile);
}
AVX2 void kern_avx2_qrepack_q6_k_r16(const void *const rows[KERN_QROWS], int b0, int nb, kern_qtile *tile) {
    kern_qrepack_r16(f16c_to_f32, BS_DTYPE_Q6_K_R16, rows, b0, nb, tile);
}

/* ---- the tile kernel ------------------------------------------------------ */

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

/* ---- the decode kernel (qmatvec_impl.h): 8 rows ---------------------------- */

#define QMV_TARGET AVX2
#define QMV_ROWS 8
#define QMV_Q8_OFF 0 /* the sign trick below multiplies the signed codes directly */
#define QMV_NAME kern_avx2_qmatvec
#define QV(op) _mm256_##op
typedef __m256i qv_i;
typedef __m256 qv_f;

AVX2 INLINE qv_i qv_zero(void) { return _mm256_setzero_si256(); }
AVX2 INLINE qv_i qv_and(qv_i a, qv_i b) { return _mm256_and_si256(a, b); }
AVX2 INLINE qv_i qv_or(qv_i a, qv_i b) { return _mm256_or_si256(a, b); }
AVX2 INLINE qv_i qv_loadi(const int32_t *v) { return _mm256_loadu_si256((const __m256i *)v); }

AVX2 INLINE qv_i qv_load(const unsigned char *const p[QMV_ROWS], int k, size_t off) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p[k] + off))),
                                   _mm_loadu_si128((const __m128i *)(p[k + 4] + off)), 1);
}

AVX2 INLINE qv_i qv_bcast(const int8_t *x) { return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x)); }
/* u < 64 keeps vpmaddubsw's pair sums (<= 2 * 63 * 128) from saturating. */
AVX2 INLINE qv_i qv_dot(qv_i acc, qv_i u, qv_i x) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
}
AVX2 INLINE qv_i qv_q8_prep(qv_i w) { return w; }
/* |w| times x with w's sign: in range because activations never reach -128. */
AVX2 INLINE qv_i qv_dot_q8(qv_i acc, qv_i w, qv_i x) {
    return qv_dot(acc, _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}
AVX2 INLINE qv_i qv_gather(const unsigned char *base, qv_i idx) {
    return _mm256_i32gather_epi32((const int *)(const void *)base, idx, 1);
}
AVX2 INLINE qv_f qv_f16(qv_i v) {
    const __m256i low16 = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8,
                                           9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i h = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, low16), 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(h));
}
AVX2 INLINE qv_i qv_loadw(const unsigned char *p) { return _mm256_loadu_si256((const __m256i *)p); }
AVX2 INLINE qv_i qv_bcast4(const int8_t *x) { return _mm256_set1_epi32(load_i32(x)); }
AVX2 INLINE qv_f qv_f16s(const unsigned char *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
AVX2 INLINE void qv_store(float *y, qv_f v, int rows) {
    float tmp[QMV_ROWS];
    _mm256_storeu_ps(tmp, v);
    memcpy(y, tmp, (size_t)rows * sizeof(float));
}

#include "kernels/qmatvec_impl.h"
