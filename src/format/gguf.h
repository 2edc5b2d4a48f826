/* format/gguf.h — GGUF v2/v3 reader (llama.cpp's model file format).
 *
 * gguf_open maps the file read-only, validates the whole header (magic,
 * version, every metadata value, every tensor info, alignment, that each
 * tensor's bytes lie inside the file) and builds an index, so later lookups
 * cannot fail on malformed data.  Vocab-only files (no tensors) are valid.
 * Tensor views use basalt's outermost-first shape convention: GGUF stores
 * dims innermost-first, so ne = [K, N] in the file becomes shape = {N, K}. */
#ifndef BASALT_FORMAT_GGUF_H
#define BASALT_FORMAT_GGUF_H

#include <stdint.h>

#include "base/error.h"
#include "base/tensor.h"

typedef enum {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
} gguf_type;

/* A string inside the mapping: not NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_value {
    gguf_type type;
    union {
        uint64_t u;  /* UINT8..UINT64 */
        int64_t i;   /* INT8..INT64 */
        double f;    /* FLOAT32, FLOAT64 */
        int b;       /* BOOL */
        gguf_str s;  /* STRING */
        struct {
            gguf_type elem_type;
            uint64_t count;
            const void *data;       /* numeric/bool elements, little-endian, maybe unaligned */
            const gguf_str *strs;   /* STRING elements (index built at open) */
            const struct gguf_value *items; /* nested ARRAY elements */
        } arr;
    };
} gguf_value;

typedef struct gguf_file gguf_file;

bs_status gguf_open(const char *path, gguf_file **out, bs_error *err);
void gguf_close(gguf_file *g);
/* Tensor bytes in [p, p + len) that were copied elsewhere: see bs_file_drop. */
void gguf_drop(const gguf_file *g, const void *p, size_t len);

const char *gguf_path(const gguf_file *g);
uint32_t gguf_version(const gguf_file *g);

/* Metadata: NULL when the key is absent. */
const gguf_value *gguf_get(const gguf_file *g, const char *key);
uint64_t gguf_key_count(const gguf_file *g);
const char *gguf_key_name(const gguf_file *g, uint64_t i); /* NUL-terminated copy */
const gguf_value *gguf_key_value(const gguf_file *g, uint64_t i);

/* Typed getters.  They fail with a message naming the file and key when the
 * key is absent (unless a default is given through *out and required == 0)
 * or has an incompatible type; integers of any width convert when in range. */
bs_status gguf_get_u32(const gguf_file *g, const char *key, int required, uint32_t *out, bs_error *err);
bs_status gguf_get_f32(const gguf_file *g, const char *key, int required, float *out, bs_error *err);
bs_status gguf_get_bool(const gguf_file *g, const char *key, int required, int *out, bs_error *err);
/* *out is a NUL-terminated copy owned by the file handle; NULL when absent and not required. */
bs_status gguf_get_str(const gguf_file *g, const char *key, int required, const char **out, bs_error *err);

/* Element i of a numeric array as double / int64 (any numeric element type). */
double gguf_array_f64(const gguf_value *v, uint64_t i);
int64_t gguf_array_i64(const gguf_value *v, uint64_t i);

/* Tensors (shape outermost-first; data points into the mapping). */
uint64_t gguf_tensor_count(const gguf_file *g);
const bs_tensor *gguf_tensor(const gguf_file *g, uint64_t i);
const bs_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

#endif
