/* format/safetensors_write.c — see safetensors_write.h. */
#include "format/safetensors_write.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *st_dtype_name(bs_dtype t) {
    switch (t) {
    case BS_DTYPE_F32: return "F32";
    case BS_DTYPE_F16: return "F16";
    case BS_DTYPE_BF16: return "BF16";
    default: return NULL;
    }
}

static size_t tensor_bytes(const st_write_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n * (t->dtype == BS_DTYPE_F32 ? 4 : 2);
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const st_write_tensor *const *)a)->name, (*(const st_write_tensor *const *)b)->name);
}

/* The padded header of the tensors in order. */
static bs_status make_header(const char *path, const st_write_tensor *const *order, size_t n, char **out,
                             size_t *len, bs_error *err) {
    json_t *h = json_object(), *meta = json_pack("{s:s}", "format", "pt");
    if (!h || !meta || json_object_set_new(h, "__metadata__", meta)) {
        json_decref(h);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const st_write_tensor *t = order[i];
        const char *dt = st_dtype_name(t->dtype);
        if (!dt || t->ndim < 1 || t->ndim > BS_TENSOR_MAX_DIMS) {
            json_decref(h);
            return bs_fail(err, BS_EINVAL, "%s: tensor %s: dtype %s / %d dims cannot be written", path, t->name,
                           bs_dtype_name(t->dtype), t->ndim);
        }
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        size_t b = tensor_bytes(t);
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", dt, "shape", shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + b));
        if (!e || json_object_get(h, t->name) || json_object_set_new(h, t->name, e)) {
            json_decref(h);
            return bs_fail(err, BS_EINVAL, "%s: tensor %s: duplicate name or out of memory", path, t->name);
        }
        off += b;
    }
    char *s = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!s) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    size_t n_s = strlen(s), padded = (n_s + 7) / 8 * 8;
    *out = realloc(s, padded + 1);
    if (!*out) {
        free(s);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    }
    memset(*out + n_s, ' ', padded - n_s);
    (*out)[padded] = 0;
    *len = padded;
    return BS_OK;
}

static bs_status write_all(FILE *f, const char *path, const void *p, size_t n, bs_error *err) {
    if (n && fwrite(p, 1, n, f) != n) return bs_fail(err, BS_EIO, "%s: write failed: %s", path, strerror(errno));
    return BS_OK;
}

bs_status st_write_file(const char *path, const st_write_tensor *tensors, size_t n, st_fill_fn fill, void *ctx,
                        bs_error *err) {
    const st_write_tensor **order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    size_t max_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        order[i] = &tensors[i];
        if (tensor_bytes(&tensors[i]) > max_bytes) max_bytes = tensor_bytes(&tensors[i]);
    }
    qsort(order, n, sizeof *order, by_name);
    char *header = NULL, *tmp = NULL;
    size_t header_len = 0;
    void *buf = NULL;
    FILE *f = NULL;
    bs_status st = make_header(path, order, n, &header, &header_len, err);
    if (!st && (!(buf = malloc(max_bytes ? max_bytes : 1)) || asprintf(&tmp, "%s.tmp", path) < 0)) {
        tmp = NULL;
        st = bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    }
    if (!st && !(f = fopen(tmp, "wb"))) st = bs_fail(err, BS_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    uint64_t hl = header_len; /* little-endian hosts only, as the readers */
    if (!st) st = write_all(f, tmp, &hl, sizeof hl, err);
    if (!st) st = write_all(f, tmp, header, header_len, err);
    for (size_t i = 0; !st && i < n; i++) {
        st = fill(ctx, order[i], buf, err);
        if (!st) st = write_all(f, tmp, buf, tensor_bytes(order[i]), err);
    }
    if (f && fclose(f) != 0 && !st) st = bs_fail(err, BS_EIO, "%s: write failed: %s", tmp, strerror(errno));
    if (!st && rename(tmp, path) != 0) st = bs_fail(err, BS_EIO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st && tmp) remove(tmp);
    free(tmp);
    free(buf);
    free(header);
    free(order);
    return st;
}
