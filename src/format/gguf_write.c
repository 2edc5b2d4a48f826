/* format/gguf_write.c — streaming GGUF v3 writer.
 *
 * Metadata and tensor infos are encoded into one in-memory buffer as they are
 * added (they are small next to the weights); the first data write flushes
 * the header, the buffer and the padding to the data section, after which
 * bytes stream through a buffered FILE.  Anything the reader would reject
 * (duplicate keys or tensor names, long names, partial blocks, bad
 * alignment) is refused here, at the call that introduces it. */
#include "format/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_VERSION 3
#define GGUF_MAX_NAME 64 /* llama.cpp's GGML_MAX_NAME */
#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ARRAY_DEPTH 8 /* the reader's limit */

typedef struct wtensor {
    char *name;
    uint64_t nbytes;
} wtensor;

struct gguf_writer {
    FILE *f;
    char *path;
    size_t alignment;
    unsigned char *buf; /* encoded KVs, then (separately) tensor infos */
    size_t len, cap;
    unsigned char *infos;
    size_t infos_len, infos_cap;
    char **keys;
    uint64_t n_kv, cap_kv;
    wtensor *tensors;
    uint64_t n_tensors, cap_tensors;
    uint64_t data_size;   /* offset of the next tensor, padded */
    uint64_t data_total, data_written; /* unpadded tensor bytes declared / written */
    int started;          /* header written; no more metadata or tensors */
    uint64_t cur;         /* tensor being written */
    uint64_t cur_written; /* bytes of it so far */
};

uint32_t gguf_ggml_type(bs_dtype dtype) {
    switch (dtype) {
    case BS_DTYPE_F32: return 0;
    case BS_DTYPE_F16: return 1;
    case BS_DTYPE_Q4_0: return 2;
    case BS_DTYPE_Q8_0: return 8;
    case BS_DTYPE_Q4_K: return 12;
    case BS_DTYPE_Q6_K: return 14;
    case BS_DTYPE_BF16: return 30;
    default: break; /* the in-memory _R16 layouts have no file type */
    }
    return UINT32_MAX;
}

static size_t scalar_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* ---- in-memory encoding -------------------------------------------------- */

static int grow(unsigned char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    unsigned char *q = realloc(*p, c);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

typedef struct enc {
    unsigned char **p;
    size_t *len, *cap;
    int oom;
} enc;

static void put(enc *e, const void *data, size_t n) {
    if (e->oom || !grow(e->p, e->cap, *e->len + n)) {
        e->oom = 1;
        return;
    }
    if (n) memcpy(*e->p + *e->len, data, n);
    *e->len += n;
}

static void put_u32(enc *e, uint32_t v) { put(e, &v, 4); }
static void put_u64(enc *e, uint64_t v) { put(e, &v, 8); }
static void put_str(enc *e, const char *s, uint64_t n) {
    put_u64(e, n);
    put(e, s, n);
}

/* Little-endian bytes of a scalar value (the reader widened it). */
static void put_scalar(enc *e, const gguf_value *v) {
    unsigned char b[8];
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        memcpy(b, &v->u, 8);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        memcpy(b, &v->i, 8);
        break;
    case GGUF_TYPE_FLOAT32: {
        float f = (float)v->f;
        memcpy(b, &f, 4);
        break;
    }
    case GGUF_TYPE_FLOAT64: memcpy(b, &v->f, 8); break;
    case GGUF_TYPE_BOOL: b[0] = v->b != 0; break;
    default: return;
    }
    put(e, b, scalar_size(v->type)); /* x86/ARM are little-endian: the low bytes come first */
}

static bs_status put_value(gguf_writer *w, enc *e, const gguf_value *v, int depth, const char *key, bs_error *err) {
    if (scalar_size(v->type)) {
        put_scalar(e, v);
        return BS_OK;
    }
    if (v->type == GGUF_TYPE_STRING) {
        put_str(e, v->s.ptr, v->s.len);
        return BS_OK;
    }
    if (v->type != GGUF_TYPE_ARRAY || depth >= GGUF_MAX_ARRAY_DEPTH)
        return bs_fail(err, BS_EINVAL, "%s: key '%s': %s", w->path, key,
                       v->type == GGUF_TYPE_ARRAY ? "arrays nested too deep" : "unknown value type");
    gguf_type et = v->arr.elem_type;
    put_u32(e, (uint32_t)et);
    put_u64(e, v->arr.count);
    if (scalar_size(et)) {
        put(e, v->arr.data, scalar_size(et) * v->arr.count);
    } else if (et == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < v->arr.count; i++) put_str(e, v->arr.strs[i].ptr, v->arr.strs[i].len);
    } else if (et == GGUF_TYPE_ARRAY) {
        for (uint64_t i = 0; i < v->arr.count; i++) {
            if (v->arr.items[i].type != GGUF_TYPE_ARRAY)
                return bs_fail(err, BS_EINVAL, "%s: key '%s': element %llu of an array of arrays is not an array",
                               w->path, key, (unsigned long long)i);
            /* a nested array is encoded without its own type tag */
            bs_status st = put_value(w, e, &v->arr.items[i], depth + 1, key, err);
            if (st) return st;
        }
    } else {
        return bs_fail(err, BS_EINVAL, "%s: key '%s': unknown array element type %d", w->path, key, (int)et);
    }
    return BS_OK;
}

/* ---- lifecycle ----------------------------------------------------------- */

static void free_writer(gguf_writer *w) {
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (uint64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->buf);
    free(w->infos);
    free(w->path);
    free(w);
}

bs_status gguf_writer_open(const char *path, size_t alignment, gguf_writer **out, bs_error *err) {
    *out = NULL;
    if (alignment == 0) alignment = GGUF_DEFAULT_ALIGNMENT;
    if ((alignment & (alignment - 1)) != 0 || alignment % 8 != 0 || alignment > UINT32_MAX)
        return bs_fail(err, BS_EINVAL, "%s: alignment %zu must be a power of two and a multiple of 8", path, alignment);
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->path = strdup(path);
    if (!w || !w->path) {
        free(w);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    }
    w->alignment = alignment;
    w->f = fopen(path, "wb");
    if (!w->f) {
        bs_status st = bs_fail(err, BS_EIO, "%s: cannot create: %s", path, strerror(errno));
        free_writer(w);
        return st;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    bs_status st = alignment == GGUF_DEFAULT_ALIGNMENT
                       ? BS_OK
                       : gguf_writer_add_u32(w, "general.alignment", (uint32_t)alignment, err);
    if (st) {
        gguf_writer_discard(w);
        return st;
    }
    *out = w;
    return BS_OK;
}

void gguf_writer_discard(gguf_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->path);
    free_writer(w);
}

static bs_status io_error(gguf_writer *w, const char *what, bs_error *err) {
    return bs_fail(err, BS_EIO, "%s: %s failed: %s", w->path, what, strerror(errno ? errno : EIO));
}

static bs_status write_bytes(gguf_writer *w, const void *data, size_t n, bs_error *err) {
    errno = 0;
    return n && fwrite(data, 1, n, w->f) != n ? io_error(w, "write", err) : BS_OK;
}

static bs_status write_zeros(gguf_writer *w, size_t n, bs_error *err) {
    static const unsigned char zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        bs_status st = write_bytes(w, zeros, k, err);
        if (st) return st;
        n -= k;
    }
    return BS_OK;
}

static size_t padding(uint64_t pos, size_t alignment) { return (size_t)((alignment - pos % alignment) % alignment); }

/* Header, KVs, tensor infos and the padding up to the data section. */
static bs_status start_data(gguf_writer *w, bs_error *err) {
    unsigned char head[24];
    uint32_t version = GGUF_VERSION;
    memcpy(head, "GGUF", 4);
    memcpy(head + 4, &version, 4);
    memcpy(head + 8, &w->n_tensors, 8);
    memcpy(head + 16, &w->n_kv, 8);
    bs_status st = write_bytes(w, head, sizeof head, err);
    if (!st) st = write_bytes(w, w->buf, w->len, err);
    if (!st) st = write_bytes(w, w->infos, w->infos_len, err);
    if (!st) st = write_zeros(w, padding(sizeof head + w->len + w->infos_len, w->alignment), err);
    w->started = 1;
    return st;
}

/* Pad out finished tensors, stopping at the first one still expecting bytes. */
static bs_status close_full_tensors(gguf_writer *w, bs_error *err) {
    while (w->cur < w->n_tensors && w->cur_written == w->tensors[w->cur].nbytes) {
        bs_status st = write_zeros(w, padding(w->tensors[w->cur].nbytes, w->alignment), err);
        if (st) return st;
        w->cur++;
        w->cur_written = 0;
    }
    return BS_OK;
}

bs_status gguf_writer_finish(gguf_writer *w, bs_error *err) {
    bs_status st = w->started ? BS_OK : start_data(w, err);
    if (!st) st = close_full_tensors(w, err);
    if (!st && w->cur < w->n_tensors)
        st = bs_fail(err, BS_EINVAL, "%s: tensor '%s' got %llu of its %llu bytes", w->path, w->tensors[w->cur].name,
                     (unsigned long long)w->cur_written, (unsigned long long)w->tensors[w->cur].nbytes);
    if (!st) {
        errno = 0;
        int bad = fflush(w->f) != 0 || ferror(w->f);
        bad |= fclose(w->f) != 0;
        w->f = NULL;
        if (bad) st = io_error(w, "write", err);
    }
    if (st) {
        gguf_writer_discard(w);
        return st;
    }
    free_writer(w);
    return BS_OK;
}

/* ---- metadata ------------------------------------------------------------ */

static bs_status check_open_for_header(gguf_writer *w, const char *what, bs_error *err) {
    if (w->started)
        return bs_fail(err, BS_EINVAL, "%s: %s added after tensor data began", w->path, what);
    return BS_OK;
}

bs_status gguf_writer_add(gguf_writer *w, const char *key, const gguf_value *v, bs_error *err) {
    bs_status st = check_open_for_header(w, "metadata", err);
    if (st) return st;
    if (!key[0]) return bs_fail(err, BS_EINVAL, "%s: empty metadata key", w->path);
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return bs_fail(err, BS_EINVAL, "%s: duplicate metadata key '%s'", w->path, key);
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        char **keys = realloc(w->keys, cap * sizeof *keys);
        if (!keys) return bs_fail(err, BS_ENOMEM, "%s: out of memory", w->path);
        w->keys = keys;
        w->cap_kv = cap;
    }
    size_t mark = w->len;
    enc e = {&w->buf, &w->len, &w->cap, 0};
    put_str(&e, key, strlen(key));
    put_u32(&e, (uint32_t)v->type);
    st = put_value(w, &e, v, 0, key, err);
    if (!st && e.oom) st = bs_fail(err, BS_ENOMEM, "%s: out of memory encoding key '%s'", w->path, key);
    char *copy = st ? NULL : strdup(key);
    if (!st && !copy) st = bs_fail(err, BS_ENOMEM, "%s: out of memory", w->path);
    if (st) {
        w->len = mark; /* drop the partial encoding */
        return st;
    }
    w->keys[w->n_kv++] = copy;
    return BS_OK;
}

bs_status gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v, bs_error *err) {
    gguf_value val = {.type = GGUF_TYPE_UINT32, .u = v};
    return gguf_writer_add(w, key, &val, err);
}

bs_status gguf_writer_add_f32(gguf_writer *w, const char *key, float v, bs_error *err) {
    gguf_value val = {.type = GGUF_TYPE_FLOAT32, .f = v};
    return gguf_writer_add(w, key, &val, err);
}

bs_status gguf_writer_add_bool(gguf_writer *w, const char *key, int v, bs_error *err) {
    gguf_value val = {.type = GGUF_TYPE_BOOL, .b = v != 0};
    return gguf_writer_add(w, key, &val, err);
}

bs_status gguf_writer_add_str(gguf_writer *w, const char *key, const char *v, bs_error *err) {
    gguf_value val = {.type = GGUF_TYPE_STRING, .s = {v, strlen(v)}};
    return gguf_writer_add(w, key, &val, err);
}

bs_status gguf_writer_add_array(gguf_writer *w, const char *key, gguf_type elem_type, const void *data, uint64_t n,
                                bs_error *err) {
    if (!scalar_size(elem_type))
        return bs_fail(err, BS_EINVAL, "%s: key '%s': gguf_writer_add_array takes numeric or bool elements", w->path, key);
    gguf_value val = {.type = GGUF_TYPE_ARRAY, .arr = {.elem_type = elem_type, .count = n, .data = data}};
    return gguf_writer_add(w, key, &val, err);
}

bs_status gguf_writer_add_str_array(gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                    uint64_t n, bs_error *err) {
    gguf_str *views = malloc((n ? n : 1) * sizeof *views);
    if (!views) return bs_fail(err, BS_ENOMEM, "%s: out of memory", w->path);
    for (uint64_t i = 0; i < n; i++) views[i] = (gguf_str){strs[i], lens ? lens[i] : strlen(strs[i])};
    gguf_value val = {.type = GGUF_TYPE_ARRAY, .arr = {.elem_type = GGUF_TYPE_STRING, .count = n, .strs = views}};
    bs_status st = gguf_writer_add(w, key, &val, err);
    free(views);
    return st;
}

/* ---- tensors ------------------------------------------------------------- */

bs_status gguf_writer_add_tensor(gguf_writer *w, const char *name, bs_dtype dtype, int ndim, const int64_t *shape,
                                 bs_error *err) {
    bs_status st = check_open_for_header(w, "a tensor", err);
    if (st) return st;
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > GGUF_MAX_NAME)
        return bs_fail(err, BS_EINVAL, "%s: tensor name '%s' must be 1 to %d bytes", w->path, name, GGUF_MAX_NAME);
    if (ndim < 1 || ndim > GGUF_MAX_DIMS || (unsigned)dtype >= BS_DTYPE_COUNT)
        return bs_fail(err, BS_EINVAL, "%s: tensor '%s': %d dims of %s (1 to %d dims of a known dtype)", w->path, name,
                       ndim, (unsigned)dtype < BS_DTYPE_COUNT ? bs_dtype_name(dtype) : "?", GGUF_MAX_DIMS);
    int64_t rows = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || (i < ndim - 1 && shape[i] > INT64_MAX / rows))
            return bs_fail(err, BS_EINVAL, "%s: tensor '%s' dim %d is %lld", w->path, name, i, (long long)shape[i]);
        if (i < ndim - 1) rows *= shape[i];
    }
    size_t row = bs_dtype_row_bytes(dtype, shape[ndim - 1]);
    if (row == 0)
        return bs_fail(err, BS_EINVAL, "%s: tensor '%s': inner dim %lld is not a multiple of the %s block size %d",
                       w->path, name, (long long)shape[ndim - 1], bs_dtype_name(dtype), bs_dtype_block_elems(dtype));
    if ((uint64_t)rows > UINT64_MAX / 2 / row)
        return bs_fail(err, BS_EINVAL, "%s: tensor '%s' byte size overflows", w->path, name);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return bs_fail(err, BS_EINVAL, "%s: duplicate tensor '%s'", w->path, name);
    if (w->n_tensors == w->cap_tensors) {
        uint64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return bs_fail(err, BS_ENOMEM, "%s: out of memory", w->path);
        w->tensors = t;
        w->cap_tensors = cap;
    }
    uint64_t nbytes = (uint64_t)rows * row;
    size_t mark = w->infos_len;
    enc e = {&w->infos, &w->infos_len, &w->infos_cap, 0};
    put_str(&e, name, name_len);
    put_u32(&e, (uint32_t)ndim);
    for (int i = ndim - 1; i >= 0; i--) put_u64(&e, (uint64_t)shape[i]); /* innermost first */
    put_u32(&e, gguf_ggml_type(dtype));
    put_u64(&e, w->data_size);
    char *copy = e.oom ? NULL : strdup(name);
    if (!copy) {
        w->infos_len = mark;
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", w->path);
    }
    w->tensors[w->n_tensors++] = (wtensor){copy, nbytes};
    w->data_total += nbytes;
    w->data_size += nbytes + padding(nbytes, w->alignment);
    return BS_OK;
}

bs_status gguf_writer_write(gguf_writer *w, const void *data, size_t n, bs_error *err) {
    if (n > w->data_total - w->data_written)
        return bs_fail(err, BS_EINVAL, "%s: %llu bytes written past the end of the last tensor", w->path,
                       (unsigned long long)(n - (w->data_total - w->data_written)));
    bs_status st = w->started ? BS_OK : start_data(w, err);
    const unsigned char *p = data;
    w->data_written += n;
    while (!st && n) {
        st = close_full_tensors(w, err);
        if (st) break;
        uint64_t room = w->tensors[w->cur].nbytes - w->cur_written;
        size_t k = room < n ? (size_t)room : n;
        st = write_bytes(w, p, k, err);
        w->cur_written += k;
        p += k;
        n -= k;
    }
    return st;
}
