/* kern_attn (online-softmax attention over spans) against the two-pass
 * formula in double precision, on every ISA table's axpy and scale, and the
 * spans split at every block size a KV cache might use. */
#include <stdint.h>
#include <string.h>

#include "../support/test.h"
#include "kernels/attention.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"

static uint32_t rng_state = 4242;
static float rand_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1 << 23) - 1.0f;
}

/* One query over n positions fed in spans of `span`, keys and values stride
 * floats apart; `gain` scales the keys so scores range widely. */
static void attn_case(int n, int hd, int span, size_t stride, float gain) {
    enum { MAXN = 300, MAXS = 80 };
    static float k[MAXN * MAXS], v[MAXN * MAXS];
    float q[MAXS], out[MAXS];
    for (int i = 0; i < n * (int)stride; i++) {
        k[i] = rand_uniform() * gain;
        v[i] = rand_uniform();
    }
    for (int d = 0; d < hd; d++) q[d] = rand_uniform();
    float scale = 1.0f / sqrtf((float)hd);
    kern_attn a;
    kern_attn_init(&a, out, hd, scale);
    for (int j = 0; j < n; j += span)
        kern_attn_span(&a, out, q, k + (size_t)j * stride, v + (size_t)j * stride, stride, n - j < span ? n - j : span);
    kern_attn_finish(&a, out);
    double s[MAXN], max = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) {
        s[i] = 0;
        for (int d = 0; d < hd; d++) s[i] += (double)q[d] * k[i * stride + d];
        s[i] *= scale;
        if (s[i] > max) max = s[i];
    }
    for (int i = 0; i < n; i++) sum += exp(s[i] - max);
    for (int d = 0; d < hd; d++) {
        double want = 0;
        for (int i = 0; i < n; i++) want += exp(s[i] - max) / sum * v[i * stride + d];
        if (!(fabs(out[d] - want) <= 2e-6)) {
            fprintf(stderr, "  %s n=%d hd=%d span=%d gain=%g: out[%d] = %.9g, expected %.9g\n", kern_isa_name(), n, hd,
                    span, gain, d, out[d], want);
            test_failed_ = 1;
            return;
        }
    }
}

static void attn_all(void) {
    static const int spans[] = {1, 3, 16, 64, 65, 300};
    for (size_t s = 0; s < sizeof spans / sizeof spans[0]; s++) {
        attn_case(1, 64, spans[s], 64, 1);
        attn_case(37, 64, spans[s], 128, 1);
        attn_case(300, 64, spans[s], 64, 8); /* large scores: rescaling matters */
        attn_case(130, 17, spans[s], 19, 4); /* odd head size: vector tails */
    }
}

static void test_attention_fast(void) { attn_all(); }

static void test_attention_reference(void) {
    kern_force_reference(1);
    attn_all();
    kern_force_reference(0);
}

/* axpy and scale of every SIMD table against the reference. */
static void check_axpy_scale(const kern_isa_ops *isa) {
    enum { N = 37 };
    for (int n = 0; n <= N; n++) {
        float x[N], y[N], want[N];
        for (int i = 0; i < N; i++) {
            x[i] = rand_uniform();
            y[i] = want[i] = rand_uniform();
        }
        isa->axpy(y, 0.75f, x, n);
        kern_isa_ref.axpy(want, 0.75f, x, n);
        for (int i = 0; i < N; i++) CHECK_NEAR(y[i], want[i], 1e-6);
        isa->scale(y, -1.5f, n);
        kern_isa_ref.scale(want, -1.5f, n);
        for (int i = 0; i < N; i++) CHECK_NEAR(y[i], want[i], 2e-6);
    }
}

static void test_axpy_scale(void) {
    const kern_features *f = kern_cpu_features();
    if (f->avx2 && f->fma && f->f16c) check_axpy_scale(&kern_isa_avx2);
    if (f->avx512f && f->avx512bw && f->avx512vl) check_axpy_scale(&kern_isa_avx512);
    check_axpy_scale(&kern_isa_ref);
}

/* The stored caches: kern_attn_span_stored over f16 or q8_0 keys and values
 * is the f32 span over their exact dequantizations, bit for bit, whatever
 * the span split; rows are stride elements apart and the head is the first
 * hd of them. */
static void attn_stored_case(bs_dtype dtype, int n, int hd, int span, int stride) {
    enum { MAXN = 200, MAXSTRIDE = 128, MAXS = 80 };
    static unsigned char kq[MAXN * MAXSTRIDE * 2], vq[MAXN * MAXSTRIDE * 2];
    static float k[MAXN * MAXSTRIDE], v[MAXN * MAXSTRIDE], row[MAXSTRIDE];
    float q[MAXS], want[MAXS], got[MAXS];
    size_t row_bytes = bs_dtype_row_bytes(dtype, stride);
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < stride; d++) row[d] = rand_uniform() * 4;
        kern_quantize(dtype, row, kq + i * row_bytes, stride);
        for (int d = 0; d < stride; d++) row[d] = rand_uniform();
        kern_quantize(dtype, row, vq + i * row_bytes, stride);
        kern_dequant(dtype, kq + i * row_bytes, k + (size_t)i * stride, stride);
        kern_dequant(dtype, vq + i * row_bytes, v + (size_t)i * stride, stride);
    }
    for (int d = 0; d < hd; d++) q[d] = rand_uniform();
    kern_attn a, b;
    kern_attn_init(&a, want, hd, 0.125f);
    kern_attn_init(&b, got, hd, 0.125f);
    for (int j = 0; j < n; j += span) {
        int cnt = n - j < span ? n - j : span;
        kern_attn_span(&a, want, q, k + (size_t)j * stride, v + (size_t)j * stride, (size_t)stride, cnt);
        kern_attn_span_stored(&b, got, q, kq + j * row_bytes, vq + j * row_bytes, dtype, row_bytes, cnt);
    }
    kern_attn_finish(&a, want);
    kern_attn_finish(&b, got);
    if (memcmp(want, got, sizeof(float) * (size_t)hd) != 0) {
        fprintf(stderr, "  %s %s n=%d hd=%d span=%d: differs from the f32 span over the dequantized cache\n",
                kern_isa_name(), bs_dtype_name(dtype), n, hd, span);
        test_failed_ = 1;
    }
}

static void test_attention_stored(void) {
    for (int ref = 0; ref < 2; ref++) {
        kern_force_reference(ref);
        attn_stored_case(BS_DTYPE_F16, 1, 64, 16, 64);
        attn_stored_case(BS_DTYPE_F16, 150, 64, 16, 128);
        attn_stored_case(BS_DTYPE_F16, 130, 17, 65, 19);
        attn_stored_case(BS_DTYPE_Q8_0, 1, 64, 16, 64);
        attn_stored_case(BS_DTYPE_Q8_0, 150, 64, 16, 128);
        attn_stored_case(BS_DTYPE_Q8_0, 130, 32, 65, 96);
    }
    kern_force_reference(0);
}

static void test_attention_empty(void) {
    float out[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    kern_attn a;
    kern_attn_init(&a, out, 8, 1);
    kern_attn_finish(&a, out);
    for (int d = 0; d < 8; d++) CHECK_NEAR(out[d], 0, 0);
}

int main(void) {
    RUN(test_attention_fast);
    RUN(test_attention_reference);
    RUN(test_axpy_scale);
    RUN(test_attention_stored);
    RUN(test_attention_empty);
    TEST_MAIN_END();
}
