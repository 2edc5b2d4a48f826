/* format/safetensors.h — Hugging Face safetensors reader, single files and
 * sharded sets (model.safetensors.index.json + model-0000k-of-0000n files).
 *
 * Files are mapped read-only; the JSON header is validated completely at open
 * (dtype, shape, data_offsets inside the buffer and consistent with
 * shape × dtype size, no overlaps, no duplicates).  Supported dtypes: F32, F16,
 * BF16; a tensor of any other legal dtype makes st_open fail with a message
 * naming the tensor and its dtype.  st_tensor(i) iterates in name order. */
#ifndef BASALT_FORMAT_SAFETENSORS_H
#define BASALT_FORMAT_SAFETENSORS_H

#include <stdint.h>

#include "base/error.h"
#include "base/tensor.h"

typedef struct st_file st_file;

bs_status st_open(const char *path, st_file **out, bs_error *err);
void st_close(st_file *f);
uint64_t st_tensor_count(const st_file *f);
const bs_tensor *st_tensor(const st_file *f, uint64_t i);
const bs_tensor *st_find(const st_file *f, const char *name);

/* All weights of a Hugging Face model directory: model.safetensors, or the
 * shards listed in model.safetensors.index.json (every tensor in weight_map
 * must be present in the shard it names). */
typedef struct st_set st_set;

bs_status st_set_open_dir(const char *dir, st_set **out, bs_error *err);
void st_set_close(st_set *s);
uint64_t st_set_tensor_count(const st_set *s);
const bs_tensor *st_set_tensor(const st_set *s, uint64_t i);
const bs_tensor *st_set_find(const st_set *s, const char *name);
/* The file holding a tensor, for error messages. */
const char *st_set_tensor_path(const st_set *s, const char *name);
/* Tensor bytes in [p, p + len) that were copied elsewhere: see bs_file_drop. */
void st_set_drop(const st_set *s, const void *p, size_t len);

#endif
