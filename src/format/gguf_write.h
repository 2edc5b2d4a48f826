/* format/gguf_write.h — streaming GGUF v3 writer (the files format/gguf.h and
 * llama.cpp read).
 *
 * Order of use: gguf_writer_open; any number of gguf_writer_add_* (metadata)
 * and gguf_writer_add_tensor (tensor infos: name, dtype, shape); then
 * gguf_writer_write with the tensors' bytes, in the order the tensors were
 * added, in chunks of any size (a tensor may be streamed row by row); then
 * gguf_writer_finish.  Metadata and tensor infos are buffered until the first
 * gguf_writer_write; tensor data goes straight to the file, so a whole model
 * is never held in memory.  Offsets and the zero padding between tensors
 * follow the alignment given at open (general.alignment is written when it
 * is not GGUF's default of 32).  Shapes are outermost-first as everywhere in
 * basalt; the file stores them innermost-first. */
#ifndef BASALT_FORMAT_GGUF_WRITE_H
#define BASALT_FORMAT_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/error.h"
#include "format/gguf.h"

typedef struct gguf_writer gguf_writer;

/* alignment 0 means 32; otherwise a power of two and a multiple of 8.
 * Creates (truncates) path. */
bs_status gguf_writer_open(const char *path, size_t alignment, gguf_writer **out, bs_error *err);

/* Complete the file: fails (and removes it) unless every declared tensor
 * was written in full.  Frees w either way. */
bs_status gguf_writer_finish(gguf_writer *w, bs_error *err);
/* Give up: close and remove the partial file; frees w (NULL is fine). */
void gguf_writer_discard(gguf_writer *w);

/* Metadata.  Keys must be non-empty and unique.  gguf_writer_add takes any
 * value the reader produces (scalars, strings, arrays of any element type
 * including nested arrays), so metadata can be copied between files. */
bs_status gguf_writer_add(gguf_writer *w, const char *key, const gguf_value *v, bs_error *err);
bs_status gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v, bs_error *err);
bs_status gguf_writer_add_f32(gguf_writer *w, const char *key, float v, bs_error *err);
bs_status gguf_writer_add_bool(gguf_writer *w, const char *key, int v, bs_error *err);
bs_status gguf_writer_add_str(gguf_writer *w, const char *key, const char *v, bs_error *err);
/* n numeric elements of elem_type (little-endian, packed) at data. */
bs_status gguf_writer_add_array(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n,
                                bs_error *err);
/* n strings; lens[i] bytes each (lens NULL: NUL-terminated). */
bs_status gguf_writer_add_str_array(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                    uint64_t n, bs_error *err);

/* Declare a tensor (at most 4 dims, innermost a whole number of blocks). */
bs_status gguf_writer_add_tensor(gguf_writer *w, const char *name, bs_dtype dtype, int ndim, const int64_t *shape,
                                 bs_error *err);

/* Append n bytes of tensor data; chunks fill the declared tensors in order
 * and may not run past the last one. */
bs_status gguf_writer_write(gguf_writer *w, const void *data, size_t n, bs_error *err);

/* ggml's type id for a dtype (the tensor info's type field). */
uint32_t gguf_ggml_type(bs_dtype dtype);

#endif
