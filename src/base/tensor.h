/* base/tensor.h — a read-only view of one stored tensor, shared by the
 * safetensors and GGUF readers so the engine sees one shape convention:
 * shape[] is outermost-first (PyTorch order); shape[ndim-1] is contiguous. */
#ifndef BASALT_BASE_TENSOR_H
#define BASALT_BASE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"

#define BS_TENSOR_MAX_DIMS 4

typedef struct bs_tensor {
    const char *name;
    bs_dtype dtype;
    int ndim;
    int64_t shape[BS_TENSOR_MAX_DIMS];
    const void *data; /* points into a mapping owned by the reader */
    size_t nbytes;
} bs_tensor;

static inline int64_t bs_tensor_numel(const bs_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

#endif
