/* kernels/qinterleave.c — the _R16 layouts of weight matrices (base/dtype.h):
 * the decode kernels' storage order, made once at load.
 *
 * Rows are taken BS_ROW_GROUP (16) at a time.  Of a float type (F32, F16,
 * BF16) a group is stored transposed: column k of its 16 rows is one
 * 16-element vector at k * 16 * elem, so the group's weights are one stream
 * read front to back, each load a column for 16 rows with no sums across
 * lanes (isa.h, kern_gemm_r16_fn).
 *
 * Of a block-quantized type a group keeps its 16 rows'
 * bytes in the same 16 * row_bytes span, block column by block column: block
 * b of the group's rows is one span of 16 * block_bytes.  Inside it each
 * field of the block struct (blocks.h) is stored in turn, transposed by
 * words: word c of row r's field sits at 16 * field_offset + c * 16 * w +
 * r * w, with w = 2 for a lone f16 and 4 otherwise.  So 16 rows' same word is
 * one 64-byte vector, one 32-bit lane per row: exactly the order vpdpbusd
 * wants, with no gather and no lane shuffling, and the f16 scales of 16 rows
 * are one 32-byte load.  The weights' bytes are unchanged, only moved, so
 * every result stays bit-identical to the plain layout. */
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/isa.h"
#include "kernels/kernels.h"

typedef struct {
    int off, size; /* bytes, in the block struct */
} field;

enum { MAX_FIELDS = 4 };

/* The fields of each block type in struct order, ending at size 0.  Q4_K's
 * d and dmin travel as one 4-byte word. */
static const field *fields_of(bs_dtype base) {
    static const field q8_0[] = {{0, 2}, {2, 32}, {0, 0}};
    static const field q4_0[] = {{0, 2}, {2, 16}, {0, 0}};
    static const field q4_k[] = {{0, 4}, {4, 12}, {16, 128}, {0, 0}};
    static const field q6_k[] = {{0, 128}, {128, 64}, {192, 16}, {208, 2}, {0, 0}};
    switch (base) {
    case BS_DTYPE_Q8_0: return q8_0;
    case BS_DTYPE_Q4_0: return q4_0;
    case BS_DTYPE_Q4_K: return q4_k;
    default: return q6_k;
    }
}

/* One block of row r from src to dst: from the plain block to the group's
 * interleaved block (16 * block_bytes) when to_group, else back. */
static void move_block(bs_dtype base, const unsigned char *src, unsigned char *dst, int r, int to_group) {
    for (const field *f = fields_of(base); f->size; f++) {
        int w = f->size == 2 ? 2 : 4;
        for (int c = 0; c < f->size / w; c++) {
            size_t plain = (size_t)f->off + (size_t)c * w;
            size_t group = (size_t)BS_ROW_GROUP * f->off + (size_t)c * BS_ROW_GROUP * w + (size_t)r * w;
            const unsigned char *from = src + (to_group ? plain : group);
            unsigned char *to = dst + (to_group ? group : plain);
            if (w == 4) /* constant sizes: moves, not calls */
                memcpy(to, from, 4);
            else
                memcpy(to, from, 2);
        }
    }
}

static int is_float(bs_dtype base) { return bs_dtype_block_elems(base) == 1; }

int kern_can_interleave(bs_dtype type, int64_t rows, int cols) {
    return bs_dtype_interleaved(type) != BS_DTYPE_COUNT && rows > 0 && rows % BS_ROW_GROUP == 0 &&
           bs_dtype_row_bytes(type, cols) > 0;
}

int kern_reads_interleaved(bs_dtype type) {
    if (!is_float(type)) return kern_qmatvec_reads_interleaved();
    /* The reference gemm_r16 defines the sums and is as slow as it is plain;
     * the AVX2 table shares it. */
    const kern_isa_ops *isa = kern_isa();
    return isa->gemm_bf16_r16 != kern_isa_ref.gemm_bf16_r16;
}

/* Element k of row r in group g's transposed span: group + (k * 16 + r) * elem. */
static size_t float_offset(int k, int r, size_t elem) { return ((size_t)k * BS_ROW_GROUP + (size_t)r) * elem; }

/* One float element of 2 or 4 bytes: constant sizes, so moves, not calls. */
static inline void copy_elem(unsigned char *to, const unsigned char *from, size_t elem) {
    if (elem == 2)
        memcpy(to, from, 2);
    else
        memcpy(to, from, 4);
}

void kern_interleave(bs_dtype type, const void *src, int64_t rows, int cols, void *dst) {
    size_t rb = bs_dtype_row_bytes(type, cols), bb = (size_t)bs_dtype_block_bytes(type);
    int nb = cols / bs_dtype_block_elems(type);
    for (int64_t g = 0; g < rows / BS_ROW_GROUP; g++) {
        const unsigned char *in = (const unsigned char *)src + (size_t)g * BS_ROW_GROUP * rb;
        unsigned char *out = (unsigned char *)dst + (size_t)g * BS_ROW_GROUP * rb;
        if (is_float(type)) {
            for (int k = 0; k < cols; k++)
                for (int r = 0; r < BS_ROW_GROUP; r++) copy_elem(out + float_offset(k, r, bb), in + r * rb + k * bb, bb);
            continue;
        }
        for (int b = 0; b < nb; b++)
            for (int r = 0; r < BS_ROW_GROUP; r++)
                move_block(type, in + r * rb + b * bb, out + b * BS_ROW_GROUP * bb, r, 1);
    }
}

void kern_deinterleave_blocks(bs_dtype type, const void *W, int cols, int64_t row, int b0, int nb, void *dst) {
    bs_dtype base = bs_dtype_block_type(type);
    size_t rb = bs_dtype_row_bytes(base, cols), bb = (size_t)bs_dtype_block_bytes(base);
    const unsigned char *g = (const unsigned char *)W + (size_t)(row / BS_ROW_GROUP) * BS_ROW_GROUP * rb;
    for (int b = 0; b < nb; b++)
        move_block(base, g + (size_t)(b0 + b) * BS_ROW_GROUP * bb, (unsigned char *)dst + b * bb,
                   (int)(row % BS_ROW_GROUP), 0);
}

void kern_dequant_rows(bs_dtype type, const void *W, int cols, int64_t r0, int64_t n, float *out) {
    bs_dtype base = bs_dtype_block_type(type);
    if (base == type) {
        kern_dequant(type, (const char *)W + (size_t)r0 * bs_dtype_row_bytes(type, cols), out, n * cols);
        return;
    }
    if (is_float(base)) { /* element by element out of the group's columns */
        size_t elem = (size_t)bs_dtype_block_bytes(base), rb = bs_dtype_row_bytes(base, cols);
        uint16_t h[1];
        for (int64_t r = r0; r < r0 + n; r++) {
            const unsigned char *g = (const unsigned char *)W + (size_t)(r / BS_ROW_GROUP) * BS_ROW_GROUP * rb;
            float *o = out + (size_t)(r - r0) * cols;
            for (int k = 0; k < cols; k++) {
                const unsigned char *p = g + float_offset(k, (int)(r % BS_ROW_GROUP), elem);
                if (base == BS_DTYPE_F32) {
                    memcpy(o + k, p, 4);
                    continue;
                }
                memcpy(h, p, 2);
                o[k] = base == BS_DTYPE_F16 ? bs_f16_to_f32(h[0]) : bs_bf16_to_f32(h[0]);
            }
        }
        return;
    }
    /* One block at a time through a plain block: no allocation, and each
     * block's bytes are read once. */
    int be = bs_dtype_block_elems(base), nb = cols / be;
    _Alignas(16) unsigned char block[sizeof(block_q6_k)];
    _Static_assert(sizeof(block_q6_k) >= sizeof(block_q8_0) && sizeof(block_q6_k) >= sizeof(block_q4_k),
                   "the largest block");
    for (int64_t r = r0; r < r0 + n; r++)
        for (int b = 0; b < nb; b++) {
            kern_deinterleave_blocks(type, W, cols, r, b, 1, block);
            kern_dequant(base, block, out + (size_t)(r - r0) * cols + (size_t)b * be, be);
        }
}

/* dst[c][r] = W[r][c]: a group of the _R16 layout is already its rows'
 * transpose, so its columns go out 16 elements at a time; plain rows go in
 * square blocks, so both sides move whole cache lines. */
void kern_transpose_float(bs_dtype type, const void *W, int rows, int cols, void *dst) {
    bs_dtype base = bs_dtype_block_type(type);
    size_t elem = (size_t)bs_dtype_block_bytes(base), rb = bs_dtype_row_bytes(base, cols);
    unsigned char *d = dst;
    const unsigned char *s = W;
    if (base != type) {
        for (int g = 0; g < rows / BS_ROW_GROUP; g++)
            for (int c = 0; c < cols; c++)
                memcpy(d + ((size_t)c * rows + (size_t)g * BS_ROW_GROUP) * elem,
                       s + (size_t)g * BS_ROW_GROUP * rb + float_offset(c, 0, elem), BS_ROW_GROUP * elem);
        return;
    }
    enum { BLK = 32 };
    for (int r0 = 0; r0 < rows; r0 += BLK)
        for (int c0 = 0; c0 < cols; c0 += BLK) {
            int r1 = r0 + BLK < rows ? r0 + BLK : rows, c1 = c0 + BLK < cols ? c0 + BLK : cols;
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++)
                    copy_elem(d + ((size_t)c * rows + (size_t)r) * elem, s + (size_t)r * rb + (size_t)c * elem, elem);
        }
}
