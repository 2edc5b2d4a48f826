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

AVX512 static void avx512_dot4(const float *x, const float *const w[KERN_ROW_TILE], int n,
                               float out[KERN_ROW_TILE]) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv = _mm512_loadu_ps(x + i);
        s0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[0] + i), s0);
        s1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[1] + i), s1);
        s2 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[2] + i), s2);
        s3 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(w[3] + i), s3);
    }
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        s0 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[0] + i), s0);
        s1 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[1] + i), s1);
        s2 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[2] + i), s2);
        s3 = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w[3] + i), s3);
    }
    out[0] = _mm512_reduce_add_ps(s0);
    out[1] = _mm512_reduce_add_ps(s1);
    out[2] = _mm512_reduce_add_ps(s2);
    out[3] = _mm512_reduce_add_ps(s3);
}

/* 16 halves at p (masked by m) widened to floats. */
AVX512 __attribute__((always_inline)) static inline __m512 half_load(const uint16_t *p, __mmask16 m, int bf16) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return bf16 ? bf16_widen(h) : _mm512_cvtph_ps(h);
}

AVX512 __attribute__((always_inline)) static inline void dot4_half(const float *x, const uint16_t *const w[KERN_ROW_TILE],
                                                                   int n, float out[KERN_ROW_TILE], int bf16) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : tail_mask(n - i);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
        s0 = _mm512_fmadd_ps(xv, half_load(w[0] + i, m, bf16), s0);
        s1 = _mm512_fmadd_ps(xv, half_load(w[1] + i, m, bf16), s1);
        s2 = _mm512_fmadd_ps(xv, half_load(w[2] + i, m, bf16), s2);
        s3 = _mm512_fmadd_ps(xv, half_load(w[3] + i, m, bf16), s3);
    }
    out[0] = _mm512_reduce_add_ps(s0);
    out[1] = _mm512_reduce_add_ps(s1);
    out[2] = _mm512_reduce_add_ps(s2);
    out[3] = _mm512_reduce_add_ps(s3);
}

AVX512 static void avx512_dot4_f16(const float *x, const uint16_t *const w[KERN_ROW_TILE], int n,
                                   float out[KERN_ROW_TILE]) {
    dot4_half(x, w, n, out, 0);
}

AVX512 static void avx512_dot4_bf16(const float *x, const uint16_t *const w[KERN_ROW_TILE], int n,
                                    float out[KERN_ROW_TILE]) {
    dot4_half(x, w, n, out, 1);
}

const kern_isa_ops kern_isa_avx512 = {
    .name = "avx512",
    .dequant = {
        [BS_DTYPE_F32] = kern_ref_dequant_f32,
        [BS_DTYPE_F16] = avx512_f16_to_f32,
        [BS_DTYPE_BF16] = avx512_bf16_to_f32,
        [BS_DTYPE_Q8_0] = kern_avx2_dequant_q8_0,
        [BS_DTYPE_Q4_0] = kern_avx2_dequant_q4_0,
        [BS_DTYPE_Q4_K] = kern_avx2_dequant_q4_k,
        [BS_DTYPE_Q6_K] = kern_avx2_dequant_q6_k,
    },
    .dot = avx512_dot,
    .dot4 = avx512_dot4,
    .dot4_f16 = avx512_dot4_f16,
    .dot4_bf16 = avx512_dot4_bf16,
};
