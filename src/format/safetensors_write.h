/* format/safetensors_write.h — write a safetensors file as the Rust
 * `safetensors` crate (and so PEFT / transformers save_pretrained) lays it
 * out: u64 header length, a JSON header with "__metadata__" {"format":"pt"}
 * then one entry per tensor in name order, padded with spaces to a multiple
 * of 8 bytes, then the tensors' bytes back to back in the same order.
 *
 * Tensor bytes are produced one tensor at a time by a callback, so a merged
 * model is written without holding more than one tensor in memory.  The file
 * is written to PATH.tmp and renamed over PATH when complete. */
#ifndef BASALT_FORMAT_SAFETENSORS_WRITE_H
#define BASALT_FORMAT_SAFETENSORS_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/tensor.h"

typedef struct st_write_tensor {
    const char *name;
    bs_dtype dtype; /* F32, F16 or BF16 */
    int ndim;
    int64_t shape[BS_TENSOR_MAX_DIMS];
    void *user;     /* passed back to the fill callback */
} st_write_tensor;

/* Fill dst (exactly the tensor's numel x dtype size bytes) with tensor t's data. */
typedef bs_status (*st_fill_fn)(void *ctx, const st_write_tensor *t, void *dst, bs_error *err);

bs_status st_write_file(const char *path, const st_write_tensor *tensors, size_t n, st_fill_fn fill, void *ctx,
                        bs_error *err);

#endif
