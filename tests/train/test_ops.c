/* train/ops.c: every backward against central finite differences of its
 * forward on tiny shapes.  The objective is sum_i c_i * out_i accumulated in
 * double with fixed random c (so dout = c); each input element is moved by
 * +-H and the difference quotient compared with the analytic gradient:
 * max |fd - analytic| / max |analytic| <= TOL per input. */
#include <stdint.h>

#include "../support/test.h"
#include "kernels/kernels.h"
#include "train/ops.h"

#define H 2e-3
#define TOL 1e-3

static uint64_t rng = 42;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) * 0x1.0p-23 - 1.0);
}
static void fill(float *x, int n, float scale) {
    for (int i = 0; i < n; i++) x[i] = scale * frand();
}

static double weighted_sum(const float *out, const float *c, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)c[i] * out[i];
    return s;
}

/* Largest |fd - analytic| relative to the largest |analytic| over x[n]. */
static double fd_error(double (*objective)(void), float *x, int n, const float *analytic) {
    double worst = 0, scale = 0;
    for (int i = 0; i < n; i++) {
        float save = x[i];
        x[i] = save + (float)H;
        double fp = objective();
        x[i] = save - (float)H;
        double fm = objective();
        x[i] = save;
        double fd = (fp - fm) / (2 * H), e = fabs(fd - analytic[i]);
        if (!(e <= worst)) worst = e;
        if (fabs(analytic[i]) > scale) scale = fabs(analytic[i]);
    }
    return worst / (scale > 0 ? scale : 1);
}

#define CHECK_FD(name, objective, x, n, grad)                                        \
    do {                                                                             \
        double e_ = fd_error(objective, x, n, grad);                                 \
        fprintf(stderr, "  %-28s max fd error / max |grad| = %.2e\n", name, e_);    \
        CHECK(e_ <= TOL);                                                            \
    } while (0)

/* ---- RMSNorm ---- */
enum { RN = 3, RC = 8 };
static float rn_x[RN * RC], rn_w[RC], rn_c[RN * RC];
static double rn_obj(void) {
    float out[RN * RC], rstd[RN];
    rmsnorm_forward(out, rstd, rn_x, rn_w, RN, RC, 1e-5f);
    return weighted_sum(out, rn_c, RN * RC);
}
static void test_rmsnorm(void) {
    fill(rn_x, RN * RC, 2), fill(rn_w, RC, 1), fill(rn_c, RN * RC, 1);
    float out[RN * RC], rstd[RN], dx[RN * RC] = {0}, dw[RC] = {0};
    rmsnorm_forward(out, rstd, rn_x, rn_w, RN, RC, 1e-5f);
    rmsnorm_backward(dx, dw, rn_c, rn_x, rn_w, rstd, RN, RC);
    CHECK_FD("rmsnorm dx", rn_obj, rn_x, RN * RC, dx);
    CHECK_FD("rmsnorm dw", rn_obj, rn_w, RC, dw);
}

/* ---- matmul with bias ---- */
enum { MT = 3, MC = 5, MO = 4 };
static float mm_x[MT * MC], mm_w[MO * MC], mm_b[MO], mm_c[MT * MO];
static double mm_obj(void) {
    float out[MT * MO];
    bs_weight W = {mm_w, BS_DTYPE_F32, MO, MC, MC * sizeof(float)};
    matmul_forward(out, mm_x, &W, mm_b, MT, NULL, NULL);
    return weighted_sum(out, mm_c, MT * MO);
}
static void test_matmul(void) {
    fill(mm_x, MT * MC, 1), fill(mm_w, MO * MC, 1), fill(mm_b, MO, 1), fill(mm_c, MT * MO, 1);
    float dx[MT * MC] = {0}, dw[MO * MC] = {0}, db[MO] = {0};
    bs_weight W = {mm_w, BS_DTYPE_F32, MO, MC, MC * sizeof(float)};
    matmul_backward(dx, dw, db, mm_c, mm_x, &W, NULL, MT, NULL, NULL);
    CHECK_FD("matmul dinp", mm_obj, mm_x, MT * MC, dx);
    CHECK_FD("matmul dW", mm_obj, mm_w, MO * MC, dw);
    CHECK_FD("matmul dbias", mm_obj, mm_b, MO, db);
}

/* A bf16 weight taller than one dequantization chunk gives the same forward
 * and input gradient as its f32 dequantization, by chunks and through its
 * transposed copy alike, in the plain layout and the _R16 one the model
 * loader makes (kernels/qinterleave.c), whose transpose is the same. */
static void test_matmul_bf16_chunks(void) {
    enum { T = 2, C = 16, O = MATMUL_CHUNK_ROWS + 48 };
    static float x[T * C], wf[O * C], dy[T * O], y1[T * O], y2[T * O], d1[T * C], d2[T * C], d3[T * C];
    static float scratch[MATMUL_CHUNK_ROWS * C];
    static uint16_t wb[O * C], wbt[C * O], wr[O * C], wrt[C * O];
    fill(x, T * C, 1), fill(dy, T * O, 1);
    for (int i = 0; i < O * C; i++) {
        wb[i] = bs_f32_to_bf16(frand());
        wf[i] = bs_bf16_to_f32(wb[i]);
    }
    kern_transpose_float(BS_DTYPE_BF16, wb, O, C, wbt);
    kern_interleave(BS_DTYPE_BF16, wb, O, C, wr);
    kern_transpose_float(BS_DTYPE_BF16_R16, wr, O, C, wrt);
    CHECK(memcmp(wbt, wrt, sizeof wbt) == 0);
    CHECK(wbt[3 * O + 5] == wb[5 * C + 3]);
    bs_weight Wf = {wf, BS_DTYPE_F32, O, C, C * 4}, WbT = {wbt, BS_DTYPE_BF16, C, O, O * 2};
    bs_weight Wbs[2] = {{wb, BS_DTYPE_BF16, O, C, C * 2}, {wr, BS_DTYPE_BF16_R16, O, C, C * 2}};
    matmul_forward(y2, x, &Wf, NULL, T, NULL, NULL);
    memset(d2, 0, sizeof d2);
    matmul_backward(d2, NULL, NULL, dy, x, &Wf, NULL, T, NULL, NULL);
    for (int layout = 0; layout < 2; layout++) {
        const bs_weight *Wb = &Wbs[layout];
        matmul_forward(y1, x, Wb, NULL, T, NULL, scratch);
        memset(d1, 0, sizeof d1);
        memset(d3, 0, sizeof d3);
        matmul_backward(d1, NULL, NULL, dy, x, Wb, NULL, T, NULL, scratch);
        matmul_backward(d3, NULL, NULL, dy, x, Wb, &WbT, T, NULL, scratch);
        double e = 0;
        for (int i = 0; i < T * O; i++) e = fmax(e, fabs(y1[i] - y2[i]));
        for (int i = 0; i < T * C; i++) e = fmax(e, fmax(fabs(d1[i] - d2[i]), fabs(d3[i] - d2[i])));
        CHECK(e <= 1e-5);
    }
}

/* ---- LoRA ---- */
enum { LT = 3, LC = 5, LO = 4, LR = 2 };
#define LS 1.5f
static float lo_x[LT * LC], lo_a[LR * LC], lo_b[LO * LR], lo_c[LT * LO];
static double lo_obj(void) {
    float y[LT * LO] = {0}, u[LT * LR];
    lora_forward(y, u, lo_x, lo_a, lo_b, LT, LC, LO, LR, LS);
    return weighted_sum(y, lo_c, LT * LO);
}
static void test_lora(void) {
    fill(lo_x, LT * LC, 1), fill(lo_a, LR * LC, 1), fill(lo_b, LO * LR, 1), fill(lo_c, LT * LO, 1);
    float y[LT * LO] = {0}, u[LT * LR], du[LT * LR], dx[LT * LC] = {0}, da[LR * LC] = {0}, db[LO * LR] = {0};
    lora_forward(y, u, lo_x, lo_a, lo_b, LT, LC, LO, LR, LS);
    lora_backward(dx, da, db, du, lo_c, lo_x, u, lo_a, lo_b, LT, LC, LO, LR, LS);
    CHECK_FD("lora dx", lo_obj, lo_x, LT * LC, dx);
    CHECK_FD("lora dA", lo_obj, lo_a, LR * LC, da);
    CHECK_FD("lora dB", lo_obj, lo_b, LO * LR, db);
}

/* ---- dropout ---- */
static void test_dropout(void) {
    enum { N = 20000 };
    static float x[N], y[N], y2[N], dx[N], dout[N];
    fill(x, N, 1), fill(dout, N, 1);
    const float p = 0.25f;
    dropout_forward(y, x, N, p, 99);
    dropout_forward(y2, x, N, p, 99);
    CHECK(memcmp(y, y2, sizeof y) == 0); /* same key, same mask */
    dropout_forward(y2, x, N, p, 100);
    CHECK(memcmp(y, y2, sizeof y) != 0);
    memset(dx, 0, sizeof dx);
    dropout_backward(dx, dout, N, p, 99);
    int dropped = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        int kept = y[i] != 0;
        dropped += !kept;
        if (kept && fabsf(y[i] - x[i] / (1 - p)) > 1e-6f) bad++;
        if (fabsf(dx[i] - (kept ? dout[i] / (1 - p) : 0)) > 1e-6f) bad++;
    }
    CHECK_INT(bad, 0);
    CHECK_NEAR((double)dropped / N, p, 0.015);
}

/* ---- RoPE, both pairings ---- */
enum { PT = 3, PH = 2, PD = 8 };
static float ro_x[PT * PH * PD], ro_c[PT * PH * PD], ro_cos[8 * PD / 2], ro_sin[8 * PD / 2];
static const int ro_pos[PT] = {0, 5, 2};
static int ro_neox;
static double ro_obj(void) {
    float y[PT * PH * PD];
    memcpy(y, ro_x, sizeof y);
    rope_forward(y, ro_pos, PT, PH, PD, ro_cos, ro_sin, ro_neox);
    return weighted_sum(y, ro_c, PT * PH * PD);
}
static void test_rope(void) {
    for (int p = 0; p < 8; p++)
        for (int i = 0; i < PD / 2; i++) {
            double f = pow(10000.0, -2.0 * i / PD) / (i == 1 ? 8 : 1); /* a scaled band as llama3 makes */
            ro_cos[p * PD / 2 + i] = (float)cos(p * f);
            ro_sin[p * PD / 2 + i] = (float)sin(p * f);
        }
    for (ro_neox = 0; ro_neox <= 1; ro_neox++) {
        fill(ro_x, PT * PH * PD, 1), fill(ro_c, PT * PH * PD, 1);
        float d[PT * PH * PD];
        memcpy(d, ro_c, sizeof d);
        rope_backward(d, ro_pos, PT, PH, PD, ro_cos, ro_sin, ro_neox);
        CHECK_FD(ro_neox ? "rope (neox pairs) dx" : "rope (adjacent pairs) dx", ro_obj, ro_x, PT * PH * PD, d);
    }
}

/* ---- attention: 2 packed sequences, GQA, with and without a window ---- */
enum { AT = 7, AH = 4, AKV = 2, AD = 4 };
static float at_q[AT * AH * AD], at_k[AT * AKV * AD], at_v[AT * AKV * AD], at_c[AT * AH * AD];
static const int at_seq[3] = {0, 4, 7};
static attn_shape at_shape = {at_seq, 2, AH, AKV, AD, 0, NULL, 1};
static double at_obj(void) {
    float out[AT * AH * AD], lse[AT * AH];
    attention_forward(out, lse, at_q, at_k, at_v, &at_shape);
    return weighted_sum(out, at_c, AT * AH * AD);
}
static void test_attention(void) {
    for (int window = 0; window <= 2; window += 2) {
        at_shape.window = window;
        fill(at_q, AT * AH * AD, 2), fill(at_k, AT * AKV * AD, 2), fill(at_v, AT * AKV * AD, 1);
        fill(at_c, AT * AH * AD, 1);
        float out[AT * AH * AD], lse[AT * AH];
        float dq[AT * AH * AD] = {0}, dk[AT * AKV * AD] = {0}, dv[AT * AKV * AD] = {0};
        attention_forward(out, lse, at_q, at_k, at_v, &at_shape);
        attention_backward(dq, dk, dv, at_c, out, lse, at_q, at_k, at_v, &at_shape);
        CHECK_FD(window ? "attention (window 2) dq" : "attention dq", at_obj, at_q, AT * AH * AD, dq);
        CHECK_FD(window ? "attention (window 2) dk" : "attention dk", at_obj, at_k, AT * AKV * AD, dk);
        CHECK_FD(window ? "attention (window 2) dv" : "attention dv", at_obj, at_v, AT * AKV * AD, dv);
        /* the first row of each sequence sees only itself: out = its v */
        for (int h = 0; h < AH; h++)
            for (int d = 0; d < AD; d++)
                CHECK_NEAR(out[(4 * AH + h) * AD + d], at_v[(4 * AKV + h / 2) * AD + d], 1e-6);
    }
}

/* ---- SwiGLU ---- */
enum { SN = 9 };
static float sw_g[SN], sw_u[SN], sw_c[SN];
static double sw_obj(void) {
    float h[SN];
    swiglu_forward(h, sw_g, sw_u, SN);
    return weighted_sum(h, sw_c, SN);
}
static void test_swiglu(void) {
    fill(sw_g, SN, 3), fill(sw_u, SN, 1), fill(sw_c, SN, 1);
    float dg[SN] = {0}, du[SN] = {0};
    swiglu_backward(dg, du, sw_c, sw_g, sw_u, SN);
    CHECK_FD("swiglu dg", sw_obj, sw_g, SN, dg);
    CHECK_FD("swiglu du", sw_obj, sw_u, SN, du);
}

/* ---- cross-entropy with weights ---- */
enum { CN = 3, CV = 6 };
static float ce_z[CN * CV];
static const int32_t ce_t[CN] = {2, -1, 5};
static const float ce_w[CN] = {1, 0, 0.5f};
static double ce_obj(void) {
    float z[CN * CV];
    memcpy(z, ce_z, sizeof z);
    return crossentropy_forward_backward(z, ce_t, ce_w, CN, CV, 0);
}
static void test_crossentropy(void) {
    fill(ce_z, CN * CV, 3);
    float z[CN * CV];
    memcpy(z, ce_z, sizeof z);
    double loss = crossentropy_forward_backward(z, ce_t, ce_w, CN, CV, 1);
    /* by hand: row 0 and half of row 2 */
    double ref = 0;
    for (int n = 0; n < CN; n += 2) {
        double s = 0;
        for (int i = 0; i < CV; i++) s += exp(ce_z[n * CV + i]);
        ref += ce_w[n] * (log(s) - ce_z[n * CV + ce_t[n]]);
    }
    CHECK_NEAR(loss, ref, 1e-5);
    CHECK_FD("crossentropy dlogits", ce_obj, ce_z, CN * CV, z);
    for (int i = 0; i < CV; i++) CHECK(z[CV + i] == 0); /* weight 0 row */
}

/* ---- embedding ---- */
static void test_embedding(void) {
    enum { V = 5, C = 4, T = 4 };
    float e[V * C], out[T * C], dE[V * C] = {0}, dout[T * C];
    uint16_t eb[V * C];
    for (int i = 0; i < V * C; i++) {
        eb[i] = bs_f32_to_bf16(frand());
        e[i] = bs_bf16_to_f32(eb[i]);
    }
    fill(dout, T * C, 1);
    const int32_t tok[T] = {3, 1, 3, 0};
    bs_weight E = {eb, BS_DTYPE_BF16, V, C, C * 2};
    embedding_forward(out, tok, T, &E);
    for (int t = 0; t < T; t++) CHECK(memcmp(out + t * C, e + tok[t] * C, C * sizeof(float)) == 0);
    embedding_backward(dE, dout, tok, T, C);
    for (int i = 0; i < C; i++) {
        CHECK_NEAR(dE[3 * C + i], dout[i] + dout[2 * C + i], 1e-7);
        CHECK_NEAR(dE[1 * C + i], dout[C + i], 0);
        CHECK_NEAR(dE[2 * C + i], 0, 0);
    }
}

int main(void) {
    RUN(test_embedding);
    RUN(test_rmsnorm);
    RUN(test_matmul);
    RUN(test_matmul_bf16_chunks);
    RUN(test_lora);
    RUN(test_dropout);
    RUN(test_rope);
    RUN(test_attention);
    RUN(test_swiglu);
    RUN(test_crossentropy);
    TEST_MAIN_END();
}
