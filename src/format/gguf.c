/* format/gguf.c — GGUF v2/v3 reader.
 *
 * The whole header is parsed once at open through a bounds-checked cursor;
 * every length and count read from the file is checked against the bytes that
 * remain before it is used for arithmetic or allocation, so a lying header
 * yields an error, never a read past the mapping.  Numeric arrays point into
 * the mapping; string and nested arrays get an index allocated here. */
#include "format/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"

#define GGUF_MAX_NAME 64       /* llama.cpp's GGML_MAX_NAME */
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_ARRAY_DEPTH 8 /* bounds recursion on hostile files */
#define GGUF_DEFAULT_ALIGNMENT 32
/* Smallest possible encodings, used to reject counts the file cannot hold. */
#define GGUF_MIN_KV_BYTES 13     /* key length, value type, 1-byte value */
#define GGUF_MIN_TENSOR_BYTES 32 /* name length, n_dims, one dim, type, offset */
#define GGUF_MIN_ARRAY_BYTES 12  /* element type, count */

typedef struct gguf_kv {
    char *name; /* NUL-terminated copy of the key */
    char *str;  /* NUL-terminated copy of a STRING value, else NULL */
    gguf_value value;
} gguf_kv;

struct gguf_file {
    bs_mapped_file map;
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;              /* file order */
    gguf_kv **kv_by_name;     /* sorted by name, for lookup */
    uint64_t n_tensors;
    bs_tensor *tensors;       /* file order */
    bs_tensor **tensor_by_name;
};

typedef struct reader {
    const unsigned char *data;
    size_t size, pos;
    const char *path;
    bs_error *err;
} reader;

static const char *value_type_name(uint32_t t) {
    static const char *names[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

/* ggml's type ids; gaps are ids ggml has retired. */
static const char *ggml_type_name(uint32_t t) {
    static const char *names[] = {
        "F32",     "F16",      "Q4_0",     "Q4_1",       "Q4_2",       "Q4_3",      "Q5_0",
        "Q5_1",    "Q8_0",     "Q8_1",     "Q2_K",       "Q3_K",       "Q4_K",      "Q5_K",
        "Q6_K",    "Q8_K",     "IQ2_XXS",  "IQ2_XS",     "IQ3_XXS",    "IQ1_S",     "IQ4_NL",
        "IQ3_S",   "IQ2_S",    "IQ4_XS",   "I8",         "I16",        "I32",       "I64",
        "F64",     "IQ1_M",    "BF16",     "Q4_0_4_4",   "Q4_0_4_8",   "Q4_0_8_8",  "TQ1_0",
        "TQ2_0",   "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

static int ggml_type_to_dtype(uint32_t t, bs_dtype *out) {
    switch (t) {
    case 0: *out = BS_DTYPE_F32; return 1;
    case 1: *out = BS_DTYPE_F16; return 1;
    case 2: *out = BS_DTYPE_Q4_0; return 1;
    case 8: *out = BS_DTYPE_Q8_0; return 1;
    case 12: *out = BS_DTYPE_Q4_K; return 1;
    case 14: *out = BS_DTYPE_Q6_K; return 1;
    case 30: *out = BS_DTYPE_BF16; return 1;
    default: return 0;
    }
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Decode one little-endian scalar of type t (scalar_size(t) > 0) from p. */
static void decode_scalar(gguf_type t, const unsigned char *p, gguf_value *v) {
    v->type = t;
    switch (t) {
    case GGUF_TYPE_UINT8: v->u = p[0]; break;
    case GGUF_TYPE_INT8: v->i = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL: v->b = p[0] != 0; break;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); v->u = x; break; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); v->i = x; break; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); v->u = x; break; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); v->i = x; break; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); v->f = x; break; }
    case GGUF_TYPE_UINT64: memcpy(&v->u, p, 8); break;
    case GGUF_TYPE_INT64: memcpy(&v->i, p, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(&v->f, p, 8); break;
    default: break;
    }
}

static bs_status need(reader *r, uint64_t n, const char *what) {
    if (n > r->size - r->pos)
        return bs_fail(r->err, BS_EFORMAT, "%s: truncated at offset %zu while reading %s", r->path,
                       r->pos, what);
    return BS_OK;
}

static bs_status read_u32(reader *r, uint32_t *out, const char *what) {
    bs_status st = need(r, 4, what);
    if (st != BS_OK) return st;
    memcpy(out, r->data + r->pos, 4);
    r->pos += 4;
    return BS_OK;
}

static bs_status read_u64(reader *r, uint64_t *out, const char *what) {
    bs_status st = need(r, 8, what);
    if (st != BS_OK) return st;
    memcpy(out, r->data + r->pos, 8);
    r->pos += 8;
    return BS_OK;
}

static bs_status read_str(reader *r, gguf_str *out, const char *what) {
    uint64_t len;
    bs_status st = read_u64(r, &len, what);
    if (st != BS_OK) return st;
    if (len > r->size - r->pos)
        return bs_fail(r->err, BS_EFORMAT,
                       "%s: string of %llu bytes at offset %zu runs past the end of the file while "
                       "reading %s",
                       r->path, (unsigned long long)len, r->pos - 8, what);
    out->ptr = (const char *)r->data + r->pos;
    out->len = len;
    r->pos += len;
    return BS_OK;
}

static void free_value(gguf_value *v) {
    if (v->type != GGUF_TYPE_ARRAY) return;
    if (v->arr.elem_type == GGUF_TYPE_STRING) {
        free((void *)v->arr.strs);
    } else if (v->arr.elem_type == GGUF_TYPE_ARRAY) {
        gguf_value *items = (gguf_value *)v->arr.items;
        for (uint64_t i = 0; i < v->arr.count; i++) free_value(&items[i]);
        free(items);
    }
}

/* Parse a value of the given type at the cursor.  v must start zeroed: on
 * failure whatever was allocated is still reachable for free_value. */
static bs_status parse_value(reader *r, uint32_t type, gguf_value *v, int depth, const char *what) {
    size_t size = scalar_size(type);
    if (size > 0) {
        bs_status st = need(r, size, what);
        if (st != BS_OK) return st;
        decode_scalar((gguf_type)type, r->data + r->pos, v);
        r->pos += size;
        return BS_OK;
    }
    if (type == GGUF_TYPE_STRING) {
        v->type = GGUF_TYPE_STRING;
        return read_str(r, &v->s, what);
    }
    if (type != GGUF_TYPE_ARRAY)
        return bs_fail(r->err, BS_EFORMAT, "%s: unknown value type %u in %s", r->path, type, what);
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return bs_fail(r->err, BS_EFORMAT, "%s: arrays nested deeper than %d levels in %s", r->path,
                       GGUF_MAX_ARRAY_DEPTH, what);
    v->type = GGUF_TYPE_ARRAY;
    uint32_t elem_type;
    uint64_t count;
    bs_status st = read_u32(r, &elem_type, what);
    if (st == BS_OK) st = read_u64(r, &count, what);
    if (st != BS_OK) return st;

    size_t remaining = r->size - r->pos, elem_size = scalar_size(elem_type), min_elem;
    if (elem_size > 0) min_elem = elem_size;
    else if (elem_type == GGUF_TYPE_STRING) min_elem = 8;
    else if (elem_type == GGUF_TYPE_ARRAY) min_elem = GGUF_MIN_ARRAY_BYTES;
    else
        return bs_fail(r->err, BS_EFORMAT, "%s: unknown array element type %u in %s", r->path,
                       elem_type, what);
    if (count > remaining / min_elem)
        return bs_fail(r->err, BS_EFORMAT,
                       "%s: array of %llu %s elements at offset %zu runs past the end of the file "
                       "in %s",
                       r->path, (unsigned long long)count, value_type_name(elem_type), r->pos, what);

    if (elem_size > 0) {
        v->arr.elem_type = (gguf_type)elem_type;
        v->arr.count = count;
        v->arr.data = r->data + r->pos;
        r->pos += count * elem_size;
        return BS_OK;
    }
    if (elem_type == GGUF_TYPE_STRING) {
        gguf_str *strs = count ? malloc(count * sizeof *strs) : NULL;
        if (count && !strs) return bs_fail(r->err, BS_ENOMEM, "%s: out of memory reading %s", r->path, what);
        v->arr.elem_type = GGUF_TYPE_STRING;
        v->arr.count = count;
        v->arr.strs = strs;
        for (uint64_t i = 0; i < count; i++) {
            st = read_str(r, &strs[i], what);
            if (st != BS_OK) return st;
        }
        return BS_OK;
    }
    gguf_value *items = count ? calloc(count, sizeof *items) : NULL;
    if (count && !items) return bs_fail(r->err, BS_ENOMEM, "%s: out of memory reading %s", r->path, what);
    v->arr.elem_type = GGUF_TYPE_ARRAY;
    v->arr.count = count;
    v->arr.items = items;
    for (uint64_t i = 0; i < count; i++) {
        st = parse_value(r, GGUF_TYPE_ARRAY, &items[i], depth + 1, what);
        if (st != BS_OK) return st;
    }
    return BS_OK;
}

/* A NUL-terminated copy of a name read from the file; names with NUL bytes
 * inside would be ambiguous, so they are rejected. */
static bs_status copy_name(reader *r, gguf_str s, char **out, const char *what) {
    if (s.len == 0) return bs_fail(r->err, BS_EFORMAT, "%s: empty %s", r->path, what);
    if (memchr(s.ptr, '\0', s.len))
        return bs_fail(r->err, BS_EFORMAT, "%s: %s contains a NUL byte", r->path, what);
    *out = malloc(s.len + 1);
    if (!*out) return bs_fail(r->err, BS_ENOMEM, "%s: out of memory", r->path);
    memcpy(*out, s.ptr, s.len);
    (*out)[s.len] = '\0';
    return BS_OK;
}

static int cmp_kv_name(const void *a, const void *b) {
    return strcmp((*(gguf_kv *const *)a)->name, (*(gguf_kv *const *)b)->name);
}

static int cmp_kv_key(const void *key, const void *elem) {
    return strcmp(key, (*(gguf_kv *const *)elem)->name);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(bs_tensor *const *)a)->name, (*(bs_tensor *const *)b)->name);
}

static int cmp_tensor_key(const void *key, const void *elem) {
    return strcmp(key, (*(bs_tensor *const *)elem)->name);
}

static int cmp_tensor_data(const void *a, const void *b) {
    const unsigned char *x = (*(bs_tensor *const *)a)->data, *y = (*(bs_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

static gguf_kv *find_kv(const gguf_file *g, const char *key) {
    if (g->n_kv == 0) return NULL;
    gguf_kv **hit = bsearch(key, g->kv_by_name, g->n_kv, sizeof *g->kv_by_name, cmp_kv_key);
    return hit ? *hit : NULL;
}

static bs_status parse_kvs(gguf_file *g, reader *r, uint64_t count) {
    char what[128];
    g->kv = count ? calloc(count, sizeof *g->kv) : NULL;
    g->kv_by_name = count ? malloc(count * sizeof *g->kv_by_name) : NULL;
    if (count && (!g->kv || !g->kv_by_name)) return bs_fail(r->err, BS_ENOMEM, "%s: out of memory", r->path);
    g->n_kv = count;
    for (uint64_t i = 0; i < count; i++) {
        gguf_kv *kv = &g->kv[i];
        gguf_str key;
        uint32_t type;
        snprintf(what, sizeof what, "metadata key #%llu", (unsigned long long)i);
        bs_status st = read_str(r, &key, what);
        if (st == BS_OK) st = copy_name(r, key, &kv->name, what);
        if (st != BS_OK) return st;
        snprintf(what, sizeof what, "key '%.100s'", kv->name);
        st = read_u32(r, &type, what);
        if (st == BS_OK) st = parse_value(r, type, &kv->value, 0, what);
        if (st != BS_OK) return st;
        if (type == GGUF_TYPE_STRING) {
            kv->str = strndup(kv->value.s.ptr, kv->value.s.len);
            if (!kv->str) return bs_fail(r->err, BS_ENOMEM, "%s: out of memory", r->path);
        }
        g->kv_by_name[i] = kv;
    }
    if (count) qsort(g->kv_by_name, count, sizeof *g->kv_by_name, cmp_kv_name);
    for (uint64_t i = 1; i < count; i++)
        if (strcmp(g->kv_by_name[i - 1]->name, g->kv_by_name[i]->name) == 0)
            return bs_fail(r->err, BS_EFORMAT, "%s: duplicate metadata key '%.200s'", r->path,
                           g->kv_by_name[i]->name);
    return BS_OK;
}

static bs_status read_alignment(const gguf_file *g, size_t *alignment, bs_error *err) {
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_value *v = gguf_get(g, "general.alignment");
    if (!v) return BS_OK;
    if (v->type != GGUF_TYPE_UINT32)
        return bs_fail(err, BS_EFORMAT, "%s: general.alignment has type %s, expected u32",
                       g->map.path, value_type_name(v->type));
    if (v->u == 0 || (v->u & (v->u - 1)) != 0 || v->u % 8 != 0)
        return bs_fail(err, BS_EFORMAT,
                       "%s: general.alignment is %llu; it must be a power of two and a multiple of 8",
                       g->map.path, (unsigned long long)v->u);
    *alignment = (size_t)v->u;
    return BS_OK;
}

/* Read one tensor info; its data pointer is resolved later, once the data
 * section's start is known, so the file offset goes to *offset. */
static bs_status parse_tensor_info(reader *r, uint64_t index, bs_tensor *t, uint64_t *offset) {
    char what[128];
    gguf_str name;
    snprintf(what, sizeof what, "name of tensor #%llu", (unsigned long long)index);
    bs_status st = read_str(r, &name, what);
    if (st != BS_OK) return st;
    if (name.len > GGUF_MAX_NAME)
        return bs_fail(r->err, BS_EFORMAT, "%s: tensor #%llu name is %llu bytes long; the limit is %d",
                       r->path, (unsigned long long)index, (unsigned long long)name.len, GGUF_MAX_NAME);
    char *copy;
    st = copy_name(r, name, &copy, what);
    if (st != BS_OK) return st;
    t->name = copy;
    snprintf(what, sizeof what, "info of tensor '%s'", t->name);

    uint32_t n_dims, type;
    st = read_u32(r, &n_dims, what);
    if (st != BS_OK) return st;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return bs_fail(r->err, BS_EFORMAT, "%s: tensor '%s' has %u dims; expected 1 to %d", r->path,
                       t->name, n_dims, GGUF_MAX_DIMS);
    int64_t numel = 1;
    for (uint32_t j = 0; j < n_dims; j++) {
        uint64_t d;
        st = read_u64(r, &d, what);
        if (st != BS_OK) return st;
        if (d == 0 || d > (uint64_t)INT64_MAX || (int64_t)d > INT64_MAX / numel)
            return bs_fail(r->err, BS_EFORMAT, "%s: tensor '%s' dim %u is %llu, which is zero or overflows",
                           r->path, t->name, j, (unsigned long long)d);
        numel *= (int64_t)d;
        t->shape[n_dims - 1 - j] = (int64_t)d; /* GGUF dims are innermost-first */
    }
    t->ndim = (int)n_dims;
    st = read_u32(r, &type, what);
    if (st == BS_OK) st = read_u64(r, offset, what);
    if (st != BS_OK) return st;
    if (!ggml_type_to_dtype(type, &t->dtype))
        return bs_fail(r->err, BS_EUNSUPPORTED, "%s: tensor '%s' has type %s (%u), which basalt does not support",
                       r->path, t->name, ggml_type_name(type), type);

    int64_t ne0 = t->shape[t->ndim - 1];
    size_t row = bs_dtype_row_bytes(t->dtype, ne0);
    if (row == 0)
        return bs_fail(r->err, BS_EFORMAT,
                       "%s: tensor '%s' has inner dim %lld, not a multiple of the %s block size %d",
                       r->path, t->name, (long long)ne0, bs_dtype_name(t->dtype),
                       bs_dtype_block_elems(t->dtype));
    uint64_t rows = (uint64_t)(numel / ne0);
    if (rows > SIZE_MAX / row)
        return bs_fail(r->err, BS_EFORMAT, "%s: tensor '%s' byte size overflows", r->path, t->name);
    t->nbytes = row * (size_t)rows;
    return BS_OK;
}

static bs_status parse_tensors(gguf_file *g, reader *r, uint64_t count) {
    g->tensors = count ? calloc(count, sizeof *g->tensors) : NULL;
    g->tensor_by_name = count ? malloc(count * sizeof *g->tensor_by_name) : NULL;
    uint64_t *offsets = count ? malloc(count * sizeof *offsets) : NULL;
    bs_tensor **by_data = count ? malloc(count * sizeof *by_data) : NULL;
    bs_status st = BS_OK;
    if (count && (!g->tensors || !g->tensor_by_name || !offsets || !by_data)) {
        st = bs_fail(r->err, BS_ENOMEM, "%s: out of memory", r->path);
        goto done;
    }
    g->n_tensors = count;
    size_t alignment;
    st = read_alignment(g, &alignment, r->err);
    for (uint64_t i = 0; st == BS_OK && i < count; i++) {
        st = parse_tensor_info(r, i, &g->tensors[i], &offsets[i]);
        g->tensor_by_name[i] = by_data[i] = &g->tensors[i];
    }
    if (st != BS_OK) goto done;

    /* The data section starts at the next alignment boundary (pos <= size, so no overflow). */
    size_t data_start = (r->pos + alignment - 1) / alignment * alignment;
    for (uint64_t i = 0; i < count; i++) {
        bs_tensor *t = &g->tensors[i];
        if (offsets[i] % alignment != 0) {
            st = bs_fail(r->err, BS_EFORMAT, "%s: tensor '%s' offset %llu is not a multiple of the alignment %zu",
                         r->path, t->name, (unsigned long long)offsets[i], alignment);
            goto done;
        }
        if (data_start > r->size || offsets[i] > r->size - data_start ||
            t->nbytes > r->size - data_start - offsets[i]) {
            st = bs_fail(r->err, BS_EFORMAT,
                         "%s: tensor '%s' data (%zu bytes at offset %llu) extends past the end of the file",
                         r->path, t->name, t->nbytes, (unsigned long long)offsets[i]);
            goto done;
        }
        t->data = r->data + data_start + offsets[i];
    }
    if (count) {
        qsort(by_data, count, sizeof *by_data, cmp_tensor_data);
        qsort(g->tensor_by_name, count, sizeof *g->tensor_by_name, cmp_tensor_name);
    }
    for (uint64_t i = 1; i < count; i++) {
        if (strcmp(g->tensor_by_name[i - 1]->name, g->tensor_by_name[i]->name) == 0) {
            st = bs_fail(r->err, BS_EFORMAT, "%s: duplicate tensor name '%s'", r->path,
                         g->tensor_by_name[i]->name);
            goto done;
        }
        const bs_tensor *a = by_data[i - 1], *b = by_data[i];
        if ((const unsigned char *)a->data + a->nbytes > (const unsigned char *)b->data) {
            st = bs_fail(r->err, BS_EFORMAT, "%s: tensors '%s' and '%s' overlap", r->path, a->name, b->name);
            goto done;
        }
    }
done:
    free(offsets);
    free(by_data);
    return st;
}

static bs_status parse(gguf_file *g, bs_error *err) {
    reader r = {g->map.data, g->map.size, 0, g->map.path, err};
    bs_status st = need(&r, 4, "magic");
    if (st != BS_OK) return st;
    if (memcmp(r.data, "GGUF", 4) != 0)
        return bs_fail(err, BS_EFORMAT, "%s: not a GGUF file (bad magic)", r.path);
    r.pos = 4;
    st = read_u32(&r, &g->version, "version");
    if (st != BS_OK) return st;
    if (g->version == 1)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: GGUF version 1 is not supported (only versions 2 and 3)", r.path);
    if ((g->version & 0xffff) == 0 && g->version != 0)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: big-endian GGUF files are not supported", r.path);
    if (g->version != 2 && g->version != 3)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: unsupported GGUF version %u (only versions 2 and 3)",
                       r.path, g->version);

    uint64_t n_tensors, n_kv;
    st = read_u64(&r, &n_tensors, "tensor count");
    if (st == BS_OK) st = read_u64(&r, &n_kv, "metadata key count");
    if (st != BS_OK) return st;
    size_t remaining = r.size - r.pos;
    if (n_kv > remaining / GGUF_MIN_KV_BYTES)
        return bs_fail(err, BS_EFORMAT, "%s: metadata key count %llu is more than the file could hold",
                       r.path, (unsigned long long)n_kv);
    if (n_tensors > (remaining - n_kv * GGUF_MIN_KV_BYTES) / GGUF_MIN_TENSOR_BYTES)
        return bs_fail(err, BS_EFORMAT, "%s: tensor count %llu is more than the file could hold", r.path,
                       (unsigned long long)n_tensors);
    st = parse_kvs(g, &r, n_kv);
    if (st == BS_OK) st = parse_tensors(g, &r, n_tensors);
    return st;
}

bs_status gguf_open(const char *path, gguf_file **out, bs_error *err) {
    *out = NULL;
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    bs_status st = bs_file_map(path, &g->map, err);
    if (st == BS_OK) st = parse(g, err);
    if (st != BS_OK) {
        gguf_close(g);
        return st;
    }
    *out = g;
    return BS_OK;
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].name);
        free(g->kv[i].str);
        free_value(&g->kv[i].value);
    }
    free(g->kv);
    free(g->kv_by_name);
    for (uint64_t i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->tensors);
    free(g->tensor_by_name);
    bs_file_unmap(&g->map);
    free(g);
}

void gguf_drop(const gguf_file *g, const void *p, size_t len) { bs_file_drop(&g->map, p, len); }

const char *gguf_path(const gguf_file *g) { return g->map.path; }
uint32_t gguf_version(const gguf_file *g) { return g->version; }

const gguf_value *gguf_get(const gguf_file *g, const char *key) {
    gguf_kv *kv = find_kv(g, key);
    return kv ? &kv->value : NULL;
}

uint64_t gguf_key_count(const gguf_file *g) { return g->n_kv; }

const char *gguf_key_name(const gguf_file *g, uint64_t i) { return i < g->n_kv ? g->kv[i].name : NULL; }

const gguf_value *gguf_key_value(const gguf_file *g, uint64_t i) {
    return i < g->n_kv ? &g->kv[i].value : NULL;
}

/* The entry for key, or NULL: with *st = BS_OK when absent and optional. */
static const gguf_kv *lookup(const gguf_file *g, const char *key, int required, bs_status *st, bs_error *err) {
    const gguf_kv *kv = find_kv(g, key);
    *st = BS_OK;
    if (!kv && required) *st = bs_fail(err, BS_ENOTFOUND, "%s: missing required key '%s'", g->map.path, key);
    return kv;
}

static bs_status wrong_type(const gguf_file *g, const char *key, gguf_type type, const char *expected, bs_error *err) {
    return bs_fail(err, BS_EFORMAT, "%s: key '%s' has type %s, expected %s", g->map.path, key,
                   value_type_name(type), expected);
}

bs_status gguf_get_u32(const gguf_file *g, const char *key, int required, uint32_t *out, bs_error *err) {
    bs_status st;
    const gguf_kv *kv = lookup(g, key, required, &st, err);
    if (!kv) return st;
    const gguf_value *v = &kv->value;
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        if (v->u > UINT32_MAX)
            return bs_fail(err, BS_ERANGE, "%s: key '%s' value %llu does not fit in u32", g->map.path, key,
                           (unsigned long long)v->u);
        *out = (uint32_t)v->u;
        return BS_OK;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        if (v->i < 0 || v->i > (int64_t)UINT32_MAX)
            return bs_fail(err, BS_ERANGE, "%s: key '%s' value %lld does not fit in u32", g->map.path, key,
                           (long long)v->i);
        *out = (uint32_t)v->i;
        return BS_OK;
    default:
        return wrong_type(g, key, v->type, "an integer", err);
    }
}

bs_status gguf_get_f32(const gguf_file *g, const char *key, int required, float *out, bs_error *err) {
    bs_status st;
    const gguf_kv *kv = lookup(g, key, required, &st, err);
    if (!kv) return st;
    if (kv->value.type != GGUF_TYPE_FLOAT32 && kv->value.type != GGUF_TYPE_FLOAT64)
        return wrong_type(g, key, kv->value.type, "f32 or f64", err);
    *out = (float)kv->value.f;
    return BS_OK;
}

bs_status gguf_get_bool(const gguf_file *g, const char *key, int required, int *out, bs_error *err) {
    bs_status st;
    const gguf_kv *kv = lookup(g, key, required, &st, err);
    if (!kv) return st;
    if (kv->value.type != GGUF_TYPE_BOOL) return wrong_type(g, key, kv->value.type, "bool", err);
    *out = kv->value.b;
    return BS_OK;
}

bs_status gguf_get_str(const gguf_file *g, const char *key, int required, const char **out, bs_error *err) {
    bs_status st;
    const gguf_kv *kv = lookup(g, key, required, &st, err);
    *out = NULL;
    if (!kv) return st;
    if (kv->value.type != GGUF_TYPE_STRING) return wrong_type(g, key, kv->value.type, "string", err);
    *out = kv->str;
    return BS_OK;
}

/* Element i of a numeric (or bool) array decoded as a scalar value; type
 * STRING marks "no number here" (not an array, out of range, not numeric). */
static gguf_value array_elem(const gguf_value *v, uint64_t i) {
    gguf_value e = {.type = GGUF_TYPE_STRING};
    if (v->type != GGUF_TYPE_ARRAY || i >= v->arr.count) return e;
    size_t size = scalar_size(v->arr.elem_type);
    if (size > 0) decode_scalar(v->arr.elem_type, (const unsigned char *)v->arr.data + i * size, &e);
    return e;
}

double gguf_array_f64(const gguf_value *v, uint64_t i) {
    gguf_value e = array_elem(v, i);
    switch (e.type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64: return (double)e.u;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: return (double)e.i;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: return e.f;
    case GGUF_TYPE_BOOL: return e.b;
    default: return 0.0;
    }
}

int64_t gguf_array_i64(const gguf_value *v, uint64_t i) {
    gguf_value e = array_elem(v, i);
    switch (e.type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64: return (int64_t)e.u;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: return e.i;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: /* truncate; NaN and out-of-range read as 0 */
        return e.f > -9.2e18 && e.f < 9.2e18 ? (int64_t)e.f : 0;
    case GGUF_TYPE_BOOL: return e.b;
    default: return 0;
    }
}

uint64_t gguf_tensor_count(const gguf_file *g) { return g->n_tensors; }

const bs_tensor *gguf_tensor(const gguf_file *g, uint64_t i) { return i < g->n_tensors ? &g->tensors[i] : NULL; }

const bs_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    if (g->n_tensors == 0) return NULL;
    bs_tensor **hit = bsearch(name, g->tensor_by_name, g->n_tensors, sizeof *g->tensor_by_name, cmp_tensor_key);
    return hit ? *hit : NULL;
}
