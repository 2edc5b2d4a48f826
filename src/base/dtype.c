#include "base/dtype.h"

static const struct {
    const char *name;
    int block_elems, block_bytes;
} dtype_info[BS_DTYPE_COUNT] = {
    [BS_DTYPE_F32] = {"F32", 1, 4},       [BS_DTYPE_F16] = {"F16", 1, 2},
    [BS_DTYPE_BF16] = {"BF16", 1, 2},     [BS_DTYPE_Q8_0] = {"Q8_0", 32, 34},
    [BS_DTYPE_Q4_0] = {"Q4_0", 32, 18},   [BS_DTYPE_Q4_K] = {"Q4_K", 256, 144},
    [BS_DTYPE_Q6_K] = {"Q6_K", 256, 210},
    [BS_DTYPE_Q8_0_R16] = {"Q8_0_R16", 32, 34},   [BS_DTYPE_Q4_0_R16] = {"Q4_0_R16", 32, 18},
    [BS_DTYPE_Q4_K_R16] = {"Q4_K_R16", 256, 144}, [BS_DTYPE_Q6_K_R16] = {"Q6_K_R16", 256, 210},
    [BS_DTYPE_F32_R16] = {"F32_R16", 1, 4},       [BS_DTYPE_F16_R16] = {"F16_R16", 1, 2},
    [BS_DTYPE_BF16_R16] = {"BF16_R16", 1, 2},
};

bs_dtype bs_dtype_interleaved(bs_dtype t) {
    switch (t) {
    case BS_DTYPE_Q8_0: return BS_DTYPE_Q8_0_R16;
    case BS_DTYPE_Q4_0: return BS_DTYPE_Q4_0_R16;
    case BS_DTYPE_Q4_K: return BS_DTYPE_Q4_K_R16;
    case BS_DTYPE_Q6_K: return BS_DTYPE_Q6_K_R16;
    case BS_DTYPE_F32: return BS_DTYPE_F32_R16;
    case BS_DTYPE_F16: return BS_DTYPE_F16_R16;
    case BS_DTYPE_BF16: return BS_DTYPE_BF16_R16;
    default: return BS_DTYPE_COUNT;
    }
}

bs_dtype bs_dtype_block_type(bs_dtype t) {
    switch (t) {
    case BS_DTYPE_Q8_0_R16: return BS_DTYPE_Q8_0;
    case BS_DTYPE_Q4_0_R16: return BS_DTYPE_Q4_0;
    case BS_DTYPE_Q4_K_R16: return BS_DTYPE_Q4_K;
    case BS_DTYPE_Q6_K_R16: return BS_DTYPE_Q6_K;
    case BS_DTYPE_F32_R16: return BS_DTYPE_F32;
    case BS_DTYPE_F16_R16: return BS_DTYPE_F16;
    case BS_DTYPE_BF16_R16: return BS_DTYPE_BF16;
    default: return t;
    }
}

int bs_dtype_block_elems(bs_dtype t) { return dtype_info[t].block_elems; }
int bs_dtype_block_bytes(bs_dtype t) { return dtype_info[t].block_bytes; }
const char *bs_dtype_name(bs_dtype t) { return (unsigned)t < BS_DTYPE_COUNT ? dtype_info[t].name : "?"; }

size_t bs_dtype_row_bytes(bs_dtype t, int64_t n) {
    int64_t be = dtype_info[t].block_elems;
    if (n < 0 || n % be != 0) return 0;
    return (size_t)(n / be) * (size_t)dtype_info[t].block_bytes;
}
