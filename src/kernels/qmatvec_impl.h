/* kernels/qmatvec_impl.h — internal: the decode kernel kern_qmatvec_fn
 * (qdot.h), written once over a few vector primitives and included by
 * qdot_avx2.c (256-bit, 8 rows per group) and qdot_avx512.c (512-bit VNNI,
 * 16 rows per group), which define the primitives first.
 *
 * It reads the stored GGUF blocks directly, so at T <= KERN_QMV_MAX_T no
 * weight byte is written anywhere (the tile path repacks every weight once
 * per call, which costs more than reading it when only one token uses it).
 * A group of QMV_ROWS rows is walked block by block: 128-bit lane l of the
 * vector z[k] holds 16 weight bytes of row 4l + k, so one byte-dot
 * instruction against 16 broadcast activations gives four partial sums for
 * each of those rows, and qv_reduce adds the four vectors' partials into one
 * vector with row r in int32 lane r.  From there the arithmetic is the
 * definition of qdot.h, lane by lane: the exact integer sum of each
 * sub-block, then the f32 chain over the sub-blocks in order, so the result
 * is bit-identical to the tile path and to the reference.
 *
 * Matrices in the _R16 layouts (qinterleave.c) need none of the gathering:
 * a group's same word of 16 rows is one vector, so one byte-dot gives every
 * row its own sum directly (qmr_rows, below).
 *
 * The including file defines:
 *   QMV_TARGET            the function attribute of its instruction set
 *   QMV_ROWS              rows per group (int32 lanes of qv_i)
 *   QMV_Q8_OFF            what qv_dot_q8 adds per unit of activation sum
 *   QMV_NAME              the name of the exported kern_qmatvec_fn
 *   QV(op)                the intrinsic prefix (_mm256_op / _mm512_op)
 *   qv_i, qv_f            the integer and float vector types
 *   qv_zero, qv_and, qv_or, qv_loadi (QMV_ROWS int32s)
 *   qv_load(p, k, off)    16 bytes at p[4l + k] + off into 128-bit lane l
 *   qv_bcast(x)           16 activation bytes into every 128-bit lane
 *   qv_dot(acc, u, x)     acc + the 4-byte dot products of u (unsigned, < 64)
 *                         and x (signed)
 *   qv_q8_prep, qv_dot_q8 the same for Q8_0's signed codes (prep once per
 *                         load; the dot adds QMV_Q8_OFF * sum(x) extra)
 *   qv_gather(base, idx)  the int32 at base + idx[r] in lane r
 *   qv_f16(v)             the f16 in the low half of each lane, as f32
 *   qv_store(y, v, rows)  the first rows lanes to y
 * and for the _R16 layouts:
 *   qv_loadw(p)           QMV_ROWS contiguous 32-bit words, one per lane
 *   qv_bcast4(x)          4 activation bytes into every lane
 *   qv_f16s(p)            QMV_ROWS contiguous f16s as f32 */

#include "kernels/blocks.h"


QMV_TARGET INLINE qv_i qv_reduce(const qv_i z[4]) {
    qv_i a = QV(add_epi32)(QV(unpacklo_epi32)(z[0], z[1]), QV(unpackhi_epi32)(z[0], z[1]));
    qv_i b = QV(add_epi32)(QV(unpacklo_epi32)(z[2], z[3]), QV(unpackhi_epi32)(z[2], z[3]));
    return QV(add_epi32)(QV(unpacklo_epi64)(a, b), QV(unpackhi_epi64)(a, b));
}

QMV_TARGET INLINE qv_i qv_bits(qv_i v, int shift, int mask) {
    return qv_and(QV(srli_epi32)(v, shift), QV(set1_epi32)(mask));
}

/* The f32 scale (and min) of every sub-block of one block of each lane's row,
 * computed as kern_qrepack_scales does, from d (Q8_0, Q4_0, Q6_K: the f16
 * scale as f32) or w[0] (Q4_K: d | dmin << 16) and the scale bytes in w
 * (Q4_K: w[1..3], Q6_K: w[0..3], four bytes per lane each). */
QMV_TARGET INLINE void qmv_scales_of(const bs_dtype type, qv_f d, const qv_i *w, qv_f *sc, qv_f *mn) {
    if (type == BS_DTYPE_Q8_0 || type == BS_DTYPE_Q4_0) {
        sc[0] = d;
    } else if (type == BS_DTYPE_Q4_K) {
        qv_f dk = qv_f16(w[0]), dmin = qv_f16(QV(srli_epi32)(w[0], 16));
        for (int j = 0; j < 8; j++) { /* see q4k_scale_min */
            int i = 8 * (j % 4);
            qv_i s = j < 4 ? qv_bits(w[1], i, 63)
                           : qv_or(qv_bits(w[3], i, 0xF), QV(slli_epi32)(qv_bits(w[1], i + 6, 3), 4));
            qv_i m = j < 4 ? qv_bits(w[2], i, 63)
                           : qv_or(qv_bits(w[3], i + 4, 0xF), QV(slli_epi32)(qv_bits(w[2], i + 6, 3), 4));
            sc[j] = QV(mul_ps)(dk, QV(cvtepi32_ps)(s));
            mn[j] = QV(mul_ps)(dmin, QV(cvtepi32_ps)(m));
        }
    } else {
        for (int q = 0; q < 4; q++)
            for (int i = 0; i < 4; i++)
                sc[4 * q + i] = QV(mul_ps)(d, QV(cvtepi32_ps)(QV(srai_epi32)(QV(slli_epi32)(w[q], 24 - 8 * i), 24)));
    }
}

/* The same for the stored blocks in place: the words gathered from the
 * group's rows (block at base in row 0, idx the rows' offsets). */
QMV_TARGET INLINE void qmv_scales(const bs_dtype type, const unsigned char *base, qv_i idx, qv_f *sc, qv_f *mn) {
    qv_i w[4];
    qv_f d = QV(setzero_ps)();
    if (type == BS_DTYPE_Q8_0 || type == BS_DTYPE_Q4_0) {
        d = qv_f16(qv_gather(base, idx));
    } else if (type == BS_DTYPE_Q4_K) {
        for (int q = 0; q < 4; q++) w[q] = qv_gather(base + 4 * q, idx);
    } else { /* Q6_K: int8 scales at 192, f16 d at 208 (read as the high half of 206..209) */
        d = qv_f16(QV(srli_epi32)(qv_gather(base + 206, idx), 16));
        for (int q = 0; q < 4; q++) w[q] = qv_gather(base + 192 + 4 * q, idx);
    }
    qmv_scales_of(type, d, w, sc, mn);
}

/* The exact integer sum of every sub-block of block bo (its u * x minus
 * off * the activations' sum, see kern_qlayout) for one token, whose
 * activation blocks for this weight block start at xb. */
QMV_TARGET INLINE void qmv_isums(const bs_dtype type, const unsigned char *const p[QMV_ROWS], size_t bo,
                                 const kern_xblock *xb, qv_i *isum) {
    const qv_i low4 = QV(set1_epi8)(0xF);
    qv_i s[4], s2[4];
    if (type == BS_DTYPE_Q8_0) {
        qv_i x0 = qv_bcast(xb->q), x1 = qv_bcast(xb->q + 16);
        for (int k = 0; k < 4; k++)
            s[k] = qv_dot_q8(qv_dot_q8(qv_zero(), qv_q8_prep(qv_load(p, k, bo + 2)), x0),
                             qv_q8_prep(qv_load(p, k, bo + 18)), x1);
        isum[0] = QV(sub_epi32)(qv_reduce(s), QV(set1_epi32)(QMV_Q8_OFF * (xb->sum[0] + xb->sum[1])));
    } else if (type == BS_DTYPE_Q4_0) { /* element i in the low nibble of qs[i], i + 16 in the high one */
        qv_i x0 = qv_bcast(xb->q), x1 = qv_bcast(xb->q + 16);
        for (int k = 0; k < 4; k++) {
            qv_i z = qv_load(p, k, bo + 2);
            s[k] = qv_dot(qv_dot(qv_zero(), qv_and(z, low4), x0), qv_and(QV(srli_epi16)(z, 4), low4), x1);
        }
        isum[0] = QV(sub_epi32)(qv_reduce(s), QV(set1_epi32)(8 * (xb->sum[0] + xb->sum[1])));
    } else if (type == BS_DTYPE_Q4_K) { /* sub-blocks 2i and 2i+1: low and high nibbles of qs[32i..32i+31] */
        for (int i = 0; i < 4; i++) {
            for (int k = 0; k < 4; k++) s[k] = s2[k] = qv_zero();
            for (int h = 0; h < 32; h += 16) {
                qv_i xa = qv_bcast(xb[2 * i].q + h), xc = qv_bcast(xb[2 * i + 1].q + h);
                for (int k = 0; k < 4; k++) {
                    qv_i z = qv_load(p, k, bo + 16 + 32 * i + h);
                    s[k] = qv_dot(s[k], qv_and(z, low4), xa);
                    s2[k] = qv_dot(s2[k], qv_and(QV(srli_epi16)(z, 4), low4), xc);
                }
            }
            isum[2 * i] = qv_reduce(s);
            isum[2 * i + 1] = qv_reduce(s2);
        }
    } else { /* Q6_K, see kern_ref_qrepack_q6_k: 16-weight sub-block 8*half + 2*q + h/16 */
        const qv_i low2 = QV(set1_epi8)(3);
        for (int half = 0; half < 2; half++)
            for (int h = 0; h < 32; h += 16) {
                qv_i ql[2][4], qh[4];
                for (int k = 0; k < 4; k++) {
                    ql[0][k] = qv_load(p, k, bo + 64 * half + h);
                    ql[1][k] = qv_load(p, k, bo + 64 * half + 32 + h);
                    qh[k] = qv_load(p, k, bo + 128 + 32 * half + h);
                }
                for (int q = 0; q < 4; q++) {
                    const kern_xblock *x = xb + 4 * half + q;
                    qv_i xv = qv_bcast(x->q + h);
                    for (int k = 0; k < 4; k++) {
                        qv_i lo = qv_and(QV(srli_epi16)(ql[q % 2][k], 4 * (q / 2)), low4);
                        qv_i hi = qv_and(QV(srli_epi16)(qh[k], 2 * q), low2);
                        s[k] = qv_dot(qv_zero(), qv_or(lo, QV(slli_epi16)(hi, 4)), xv);
                    }
                    isum[8 * half + 2 * q + h / 16] = QV(sub_epi32)(qv_reduce(s), QV(set1_epi32)(32 * x->sum[h / 16]));
                }
            }
    }
}

/* bs_dtype_block_elems and _bytes of the block types, as constants. */
QMV_TARGET INLINE int qmv_block_elems(const bs_dtype type) {
    return type == BS_DTYPE_Q4_K || type == BS_DTYPE_Q6_K ? 256 : 32;
}
QMV_TARGET INLINE int qmv_block_bytes(const bs_dtype type) {
    return type == BS_DTYPE_Q8_0   ? (int)sizeof(block_q8_0)
           : type == BS_DTYPE_Q4_0 ? (int)sizeof(block_q4_0)
           : type == BS_DTYPE_Q4_K ? (int)sizeof(block_q4_k)
                                   : (int)sizeof(block_q6_k);
}

/* The f32 chain of qdot.h over one block's sub-blocks in order, for T
 * tokens whose activation blocks for this weight block start at x. */
QMV_TARGET INLINE void qmv_chain(const bs_dtype type, const qv_f *sc, const qv_f *mn,
                                 qv_i isum[KERN_QMV_MAX_T][16], const kern_xblock *x, size_t x_stride, const int T,
                                 qv_f *acc) {
    const int sub = type == BS_DTYPE_Q6_K ? 16 : 32, has_min = type == BS_DTYPE_Q4_K;
    const int nsub = type == BS_DTYPE_Q4_K || type == BS_DTYPE_Q6_K ? 256 / sub : 1;
    for (int j = 0; j < nsub; j++)
        for (int t = 0; t < T; t++) {
            const kern_xblock *xb = x + t * x_stride + j * sub / 32;
            qv_f dx = QV(set1_ps)(xb->d);
            acc[t] = QV(fmadd_ps)(QV(cvtepi32_ps)(isum[t][j]), QV(mul_ps)(sc[j], dx), acc[t]);
            if (has_min)
                acc[t] = QV(fnmadd_ps)(QV(set1_ps)((float)(xb->sum[0] + xb->sum[1])), QV(mul_ps)(mn[j], dx), acc[t]);
        }
}

/* Rows [0, rows) for T tokens (T, type constant after inlining). */
QMV_TARGET INLINE void qmv_rows(const bs_dtype type, const unsigned char *W, size_t row_bytes, int rows, int K,
                                const kern_xblock *x, size_t x_stride, const int T, float *y, size_t y_stride) {
    const int be = qmv_block_elems(type), bb = qmv_block_bytes(type);
    for (int n0 = 0; n0 < rows; n0 += QMV_ROWS) {
        int nr = rows - n0 < QMV_ROWS ? rows - n0 : QMV_ROWS;
        const unsigned char *p[QMV_ROWS];
        int32_t off[QMV_ROWS];
        for (int r = 0; r < QMV_ROWS; r++) { /* a short group repeats its last row */
            p[r] = W + (size_t)(n0 + (r < nr ? r : nr - 1)) * row_bytes;
            off[r] = (int32_t)(p[r] - p[0]);
        }
        qv_i idx = qv_loadi(off);
        /* A group reads QMV_ROWS streams at once, more than the hardware
         * prefetchers follow, and rows as short as 1 KB; so while it runs, the
         * next group's rows (contiguous) are prefetched into L2, the same
         * share of them per block: at most 16 row lengths ahead. */
        int nr_next = rows - n0 - QMV_ROWS < QMV_ROWS ? rows - n0 - QMV_ROWS : QMV_ROWS;
        const unsigned char *next = W + (size_t)(n0 + QMV_ROWS) * row_bytes;
        size_t step = nr_next > 0 ? (size_t)nr_next * bb : 0;
        qv_f acc[KERN_QMV_MAX_T];
        for (int t = 0; t < T; t++) acc[t] = QV(setzero_ps)();
        for (int b = 0; b < K / be; b++) {
            size_t bo = (size_t)b * bb;
            for (size_t o = 0; o < step; o += 64) __builtin_prefetch(next + b * step + o, 0, 2);
            qv_f sc[16], mn[8];
            qv_i isum[KERN_QMV_MAX_T][16];
            qmv_scales(type, p[0] + bo, idx, sc, mn);
            for (int t = 0; t < T; t++) qmv_isums(type, p, bo, x + t * x_stride + b * be / 32, isum[t]);
            qmv_chain(type, sc, mn, isum, x + b * be / 32, x_stride, T, acc);
        }
        for (int t = 0; t < T; t++) qv_store(y + t * y_stride + n0, acc[t], nr);
    }
}

/* ---- the _R16 layouts (qinterleave.c) ------------------------------------
 * One block of a group is 16 * bb bytes at g; word c of a field at offset f
 * for the QMV_ROWS rows from lane h on is QMV_ROWS contiguous words at
 * g + 16 * f + c * 16 * w + h * w.  Each weight vector is unpacked once and
 * dotted with every token's four broadcast activations. */

/* How far ahead of the block being read its bytes are prefetched. */
#define QMR_PREFETCH 4096

/* Word c (4 bytes per row) of the field at byte offset f of the block. */
#define QMR_WORD(g, f, c, h) qv_loadw((g) + 16 * (f) + 64 * (c) + 4 * (h))

QMV_TARGET INLINE void qmr_isums(const bs_dtype type, const unsigned char *g, int h, const kern_xblock *x,
                                 size_t x_stride, const int T, qv_i isum[KERN_QMV_MAX_T][16]) {
    const qv_i low4 = QV(set1_epi8)(0xF);
    if (type == BS_DTYPE_Q8_0) {
        for (int t = 0; t < T; t++) isum[t][0] = QV(set1_epi32)(-QMV_Q8_OFF * (x[t * x_stride].sum[0] + x[t * x_stride].sum[1]));
        for (int c = 0; c < 8; c++) {
            qv_i u = qv_q8_prep(QMR_WORD(g, 2, c, h));
            for (int t = 0; t < T; t++) isum[t][0] = qv_dot_q8(isum[t][0], u, qv_bcast4(x[t * x_stride].q + 4 * c));
        }
    } else if (type == BS_DTYPE_Q4_0) { /* word c: weights 4c.. in the low nibbles, 16 + 4c.. in the high */
        for (int t = 0; t < T; t++) isum[t][0] = QV(set1_epi32)(-8 * (x[t * x_stride].sum[0] + x[t * x_stride].sum[1]));
        for (int c = 0; c < 4; c++) {
            qv_i z = QMR_WORD(g, 2, c, h), lo = qv_and(z, low4), hi = qv_and(QV(srli_epi16)(z, 4), low4);
            for (int t = 0; t < T; t++) {
                const int8_t *xq = x[t * x_stride].q;
                isum[t][0] = qv_dot(qv_dot(isum[t][0], lo, qv_bcast4(xq + 4 * c)), hi, qv_bcast4(xq + 16 + 4 * c));
            }
        }
    } else if (type == BS_DTYPE_Q4_K) { /* word 8i + c: sub-block 2i in the low nibbles, 2i + 1 in the high */
        for (int t = 0; t < T; t++)
            for (int j = 0; j < 8; j++) isum[t][j] = qv_zero();
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 8; c++) {
                qv_i z = QMR_WORD(g, 16, 8 * i + c, h), lo = qv_and(z, low4), hi = qv_and(QV(srli_epi16)(z, 4), low4);
                for (int t = 0; t < T; t++) {
                    const kern_xblock *xb = x + t * x_stride + 2 * i;
                    isum[t][2 * i] = qv_dot(isum[t][2 * i], lo, qv_bcast4(xb[0].q + 4 * c));
                    isum[t][2 * i + 1] = qv_dot(isum[t][2 * i + 1], hi, qv_bcast4(xb[1].q + 4 * c));
                }
            }
    } else { /* Q6_K, as qmv_isums: sub-block 8*half + 2*q + k/4 from ql words 16*half (+ 8) + k, qh 8*half + k */
        const qv_i hi2 = QV(set1_epi8)(0x30);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < 16; j++) isum[t][j] = qv_zero();
        for (int half = 0; half < 2; half++)
            for (int k = 0; k < 8; k++) {
                qv_i ql0 = QMR_WORD(g, 0, 16 * half + k, h), ql1 = QMR_WORD(g, 0, 16 * half + 8 + k, h);
                qv_i qh = QMR_WORD(g, 128, 8 * half + k, h);
                /* bits 2q, 2q + 1 of qh moved to 4, 5 (epi16 shifts: bits leaking
                 * across bytes land outside the mask) */
                qv_i u[4] = {
                    qv_or(qv_and(ql0, low4), qv_and(QV(slli_epi16)(qh, 4), hi2)),
                    qv_or(qv_and(ql1, low4), qv_and(QV(slli_epi16)(qh, 2), hi2)),
                    qv_or(qv_and(QV(srli_epi16)(ql0, 4), low4), qv_and(qh, hi2)),
                    qv_or(qv_and(QV(srli_epi16)(ql1, 4), low4), qv_and(QV(srli_epi16)(qh, 2), hi2)),
                };
                for (int q = 0; q < 4; q++) {
                    int j = 8 * half + 2 * q + k / 4;
                    for (int t = 0; t < T; t++)
                        isum[t][j] = qv_dot(isum[t][j], u[q], qv_bcast4(x[t * x_stride + 4 * half + q].q + 4 * k));
                }
            }
        for (int t = 0; t < T; t++)
            for (int j = 0; j < 16; j++) {
                const kern_xblock *xb = x + t * x_stride + j / 2;
                isum[t][j] = QV(sub_epi32)(isum[t][j], QV(set1_epi32)(32 * xb->sum[j % 2]));
            }
    }
}

/* Rows [0, rows) (whole groups) of an _R16 matrix for T tokens. */
QMV_TARGET INLINE void qmr_rows(const bs_dtype type, const unsigned char *W, size_t row_bytes, int rows, int K,
                                const kern_xblock *x, size_t x_stride, const int T, float *y, size_t y_stride) {
    const int be = qmv_block_elems(type), bb = qmv_block_bytes(type);
    for (int g0 = 0; g0 < rows; g0 += 16)
        for (int h = 0; h < 16; h += QMV_ROWS) {
            const unsigned char *G = W + (size_t)g0 * row_bytes;
            qv_f acc[KERN_QMV_MAX_T];
            for (int t = 0; t < T; t++) acc[t] = QV(setzero_ps)();
            for (int b = 0; b < K / be; b++) {
                const unsigned char *g = G + (size_t)b * 16 * bb;
                const kern_xblock *xb = x + b * be / 32;
                /* The words of a K-quant block are not read in address order,
                 * which the hardware prefetchers do not follow from memory:
                 * fetch this block's span QMR_PREFETCH bytes ahead (past the
                 * group's end it runs into the next group, which follows). */
                if (h == 0)
                    for (int o = 0; o < 16 * bb; o += 64) __builtin_prefetch(g + QMR_PREFETCH + o, 0, 0);
                qv_f sc[16], mn[8], d = QV(setzero_ps)();
                qv_i w[4], isum[KERN_QMV_MAX_T][16];
                if (type == BS_DTYPE_Q8_0 || type == BS_DTYPE_Q4_0) {
                    d = qv_f16s(g + 2 * h);
                } else if (type == BS_DTYPE_Q4_K) {
                    for (int q = 0; q < 4; q++) w[q] = QMR_WORD(g, 0, q, h); /* d|dmin, then the 12 scale bytes */
                } else {
                    d = qv_f16s(g + 16 * 208 + 2 * h);
                    for (int q = 0; q < 4; q++) w[q] = QMR_WORD(g, 192, q, h);
                }
                qmv_scales_of(type, d, w, sc, mn);
                qmr_isums(type, g, h, xb, x_stride, T, isum);
                qmv_chain(type, sc, mn, isum, xb, x_stride, T, acc);
            }
            for (int t = 0; t < T; t++) qv_store(y + t * y_stride + g0 + h, acc[t], QMV_ROWS);
        }
}

/* The block type's kernel in either layout, T a constant in each case. */
QMV_TARGET INLINE void qmv_rows_of(const bs_dtype type, const int interleaved, const unsigned char *W,
                                   size_t row_bytes, int rows, int K, const kern_xblock *x, size_t x_stride,
                                   const int T, float *y, size_t y_stride) {
    if (interleaved)
        qmr_rows(type, W, row_bytes, rows, K, x, x_stride, T, y, y_stride);
    else
        qmv_rows(type, W, row_bytes, rows, K, x, x_stride, T, y, y_stride);
}

QMV_TARGET INLINE void qmv_type(const bs_dtype type, const int interleaved, const unsigned char *W,
                                size_t row_bytes, int rows, int K, const kern_xblock *x, size_t x_stride, int T,
                                float *y, size_t y_stride) {
    switch (T) {
    case 1: qmv_rows_of(type, interleaved, W, row_bytes, rows, K, x, x_stride, 1, y, y_stride); break;
    case 2: qmv_rows_of(type, interleaved, W, row_bytes, rows, K, x, x_stride, 2, y, y_stride); break;
    case 3: qmv_rows_of(type, interleaved, W, row_bytes, rows, K, x, x_stride, 3, y, y_stride); break;
    default: qmv_rows_of(type, interleaved, W, row_bytes, rows, K, x, x_stride, 4, y, y_stride); break;
    }
}

QMV_TARGET void QMV_NAME(bs_dtype type, const void *W, size_t row_bytes, int rows, int K, const kern_xblock *x,
                         size_t x_stride, int T, float *y, size_t y_stride) {
    switch (type) {
    case BS_DTYPE_Q8_0: qmv_type(BS_DTYPE_Q8_0, 0, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    case BS_DTYPE_Q4_0: qmv_type(BS_DTYPE_Q4_0, 0, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    case BS_DTYPE_Q4_K: qmv_type(BS_DTYPE_Q4_K, 0, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    case BS_DTYPE_Q6_K: qmv_type(BS_DTYPE_Q6_K, 0, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    case BS_DTYPE_Q8_0_R16: qmv_type(BS_DTYPE_Q8_0, 1, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    case BS_DTYPE_Q4_0_R16: qmv_type(BS_DTYPE_Q4_0, 1, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    case BS_DTYPE_Q4_K_R16: qmv_type(BS_DTYPE_Q4_K, 1, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    default: qmv_type(BS_DTYPE_Q6_K, 1, W, row_bytes, rows, K, x, x_stride, T, y, y_stride); break;
    }
}
