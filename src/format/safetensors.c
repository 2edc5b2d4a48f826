/* format/safetensors.c — safetensors reader (single files and sharded sets).
 *
 * The JSON header is parsed with jansson (duplicate keys rejected) and every
 * entry is checked against the byte buffer before any view is handed out.
 * Tensors are kept sorted by name so lookups are a binary search. */
#include "format/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"

#define ST_MAX_HEADER (100u * 1000 * 1000) /* the reference implementation's cap */

struct st_file {
    bs_mapped_file map;
    uint64_t n;
    bs_tensor *tensors; /* sorted by name */
};

/* Every dtype the format defines; only the usable ones become views, so
 * .dtype is meaningful only where .usable is set. */
static const struct {
    const char *name;
    int size;
    int usable;
    bs_dtype dtype;
} st_dtypes[] = {
    {"F32", 4, 1, BS_DTYPE_F32},     {"F16", 2, 1, BS_DTYPE_F16},     {"BF16", 2, 1, BS_DTYPE_BF16},
    {"F64", 8, 0, BS_DTYPE_F32},     {"I64", 8, 0, BS_DTYPE_F32},     {"I32", 4, 0, BS_DTYPE_F32},
    {"I16", 2, 0, BS_DTYPE_F32},     {"I8", 1, 0, BS_DTYPE_F32},      {"U64", 8, 0, BS_DTYPE_F32},
    {"U32", 4, 0, BS_DTYPE_F32},     {"U16", 2, 0, BS_DTYPE_F32},     {"U8", 1, 0, BS_DTYPE_F32},
    {"BOOL", 1, 0, BS_DTYPE_F32},    {"F8_E4M3", 1, 0, BS_DTYPE_F32}, {"F8_E5M2", 1, 0, BS_DTYPE_F32},
};

typedef struct byte_range {
    uint64_t begin, end;
    const char *name;
} byte_range;

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const bs_tensor *)a)->name, ((const bs_tensor *)b)->name);
}

static int cmp_tensor_key(const void *key, const void *elem) {
    return strcmp(key, ((const bs_tensor *)elem)->name);
}

static int cmp_range(const void *a, const void *b) {
    uint64_t x = ((const byte_range *)a)->begin, y = ((const byte_range *)b)->begin;
    return x < y ? -1 : x > y;
}

static int json_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

/* Validate one header entry and fill t (name excepted) and its byte range. */
static bs_status parse_entry(const char *path, const char *name, json_t *entry, const unsigned char *buf,
                             uint64_t buf_size, bs_tensor *t, byte_range *range, bs_error *err) {
    if (!json_is_object(entry))
        return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    json_t *dtype = json_object_get(entry, "dtype");
    json_t *shape = json_object_get(entry, "shape");
    json_t *offsets = json_object_get(entry, "data_offsets");
    if (!json_is_string(dtype))
        return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (!json_is_array(shape))
        return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (!json_is_array(offsets) || json_array_size(offsets) != 2)
        return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': missing \"data_offsets\" [begin, end]", path, name);

    size_t kind = 0, n_kinds = sizeof st_dtypes / sizeof st_dtypes[0];
    while (kind < n_kinds && strcmp(st_dtypes[kind].name, json_string_value(dtype)) != 0) kind++;
    if (kind == n_kinds)
        return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': unknown dtype '%.40s'", path, name,
                       json_string_value(dtype));

    size_t ndim = json_array_size(shape);
    if (ndim > BS_TENSOR_MAX_DIMS)
        return bs_fail(err, BS_EUNSUPPORTED, "%s: tensor '%s' has %zu dims; basalt supports at most %d", path,
                       name, ndim, BS_TENSOR_MAX_DIMS);
    uint64_t numel = 1;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (!json_uint(json_array_get(shape, i), &d))
            return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path,
                           name, i);
        if (d > 0 && numel > (uint64_t)INT64_MAX / d)
            return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': element count overflows", path, name);
        numel *= d;
        t->shape[i] = (int64_t)d;
    }
    t->ndim = (int)ndim;
    if (numel > (uint64_t)INT64_MAX / (uint64_t)st_dtypes[kind].size)
        return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': byte size overflows", path, name);
    uint64_t nbytes = numel * (uint64_t)st_dtypes[kind].size;

    if (!json_uint(json_array_get(offsets, 0), &range->begin) || !json_uint(json_array_get(offsets, 1), &range->end))
        return bs_fail(err, BS_EFORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", path, name);
    if (range->begin > range->end || range->end > buf_size)
        return bs_fail(err, BS_EFORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] are outside the %llu-byte data buffer", path,
                       name, (unsigned long long)range->begin, (unsigned long long)range->end,
                       (unsigned long long)buf_size);
    if (range->end - range->begin != nbytes)
        return bs_fail(err, BS_EFORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes but shape and dtype %s need %llu", path,
                       name, (unsigned long long)(range->end - range->begin), st_dtypes[kind].name,
                       (unsigned long long)nbytes);
    if (!st_dtypes[kind].usable)
        return bs_fail(err, BS_EUNSUPPORTED,
                       "%s: tensor '%s' has dtype %s, which basalt does not support (F32, F16, BF16 only)", path,
                       name, st_dtypes[kind].name);
    t->dtype = st_dtypes[kind].dtype;
    t->data = buf + range->begin;
    t->nbytes = (size_t)nbytes;
    return BS_OK;
}

static bs_status check_metadata(const char *path, json_t *meta, bs_error *err) {
    const char *key;
    json_t *value;
    if (!json_is_object(meta)) return bs_fail(err, BS_EFORMAT, "%s: __metadata__ is not a JSON object", path);
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return bs_fail(err, BS_EFORMAT, "%s: __metadata__ value of '%s' is not a string", path, key);
    }
    return BS_OK;
}

static bs_status parse_tensors(st_file *f, json_t *root, const unsigned char *buf, uint64_t buf_size,
                               bs_error *err) {
    const char *path = f->map.path;
    json_t *meta = json_object_get(root, "__metadata__");
    size_t count = json_object_size(root) - (meta ? 1 : 0);
    bs_status st = meta ? check_metadata(path, meta, err) : BS_OK;
    if (st != BS_OK) return st;
    f->tensors = count ? calloc(count, sizeof *f->tensors) : NULL;
    byte_range *ranges = count ? malloc(count * sizeof *ranges) : NULL;
    if (count && (!f->tensors || !ranges)) {
        free(ranges);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    }
    const char *key;
    json_t *entry;
    json_object_foreach(root, key, entry) {
        if (entry == meta) continue;
        bs_tensor *t = &f->tensors[f->n];
        t->name = strdup(key);
        if (!t->name) {
            st = bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
            break;
        }
        f->n++;
        st = parse_entry(path, key, entry, buf, buf_size, t, &ranges[f->n - 1], err);
        if (st != BS_OK) break;
        ranges[f->n - 1].name = t->name;
    }
    if (st == BS_OK && count) {
        qsort(ranges, count, sizeof *ranges, cmp_range);
        for (size_t i = 1; i < count && st == BS_OK; i++)
            if (ranges[i - 1].end > ranges[i].begin)
                st = bs_fail(err, BS_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data buffer", path,
                             ranges[i - 1].name, ranges[i].name);
        qsort(f->tensors, count, sizeof *f->tensors, cmp_tensor_name);
    }
    free(ranges);
    return st;
}

static bs_status parse(st_file *f, bs_error *err) {
    const char *path = f->map.path;
    size_t size = f->map.size;
    if (size < 8)
        return bs_fail(err, BS_EFORMAT, "%s: %zu bytes is too small for a safetensors file", path, size);
    uint64_t header_len;
    memcpy(&header_len, f->map.data, 8);
    if (header_len > ST_MAX_HEADER)
        return bs_fail(err, BS_EFORMAT, "%s: header length %llu exceeds the 100 MB limit", path,
                       (unsigned long long)header_len);
    if (header_len > size - 8)
        return bs_fail(err, BS_EFORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                       path, (unsigned long long)header_len, size);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map.data + 8, header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return bs_fail(err, BS_EFORMAT, "%s: malformed JSON header at line %d column %d: %s", path, jerr.line,
                       jerr.column, jerr.text);
    bs_status st;
    if (!json_is_object(root))
        st = bs_fail(err, BS_EFORMAT, "%s: JSON header is not an object", path);
    else
        st = parse_tensors(f, root, f->map.data + 8 + header_len, size - 8 - header_len, err);
    json_decref(root);
    return st;
}

bs_status st_open(const char *path, st_file **out, bs_error *err) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    bs_status st = bs_file_map(path, &f->map, err);
    if (st == BS_OK) st = parse(f, err);
    if (st != BS_OK) {
        st_close(f);
        return st;
    }
    *out = f;
    return BS_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    for (uint64_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    bs_file_unmap(&f->map);
    free(f);
}

uint64_t st_tensor_count(const st_file *f) { return f->n; }

const bs_tensor *st_tensor(const st_file *f, uint64_t i) { return i < f->n ? &f->tensors[i] : NULL; }

const bs_tensor *st_find(const st_file *f, const char *name) {
    if (f->n == 0) return NULL;
    return bsearch(name, f->tensors, f->n, sizeof *f->tensors, cmp_tensor_key);
}

/* ---- sharded sets ---- */

typedef struct st_set_entry {
    const bs_tensor *tensor;
    const st_file *file;
} st_set_entry;

struct st_set {
    st_file **files;
    size_t n_files;
    uint64_t n;
    st_set_entry *entries; /* sorted by tensor name */
};

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(((const st_set_entry *)a)->tensor->name, ((const st_set_entry *)b)->tensor->name);
}

static int cmp_entry_key(const void *key, const void *elem) {
    return strcmp(key, ((const st_set_entry *)elem)->tensor->name);
}

static bs_status open_single(st_set *s, const char *path, bs_error *err) {
    s->files = calloc(1, sizeof *s->files);
    if (!s->files) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    bs_status st = st_open(path, &s->files[0], err);
    if (st != BS_OK) return st;
    s->n_files = 1;
    const st_file *f = s->files[0];
    s->entries = f->n ? calloc(f->n, sizeof *s->entries) : NULL;
    if (f->n && !s->entries) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < f->n; i++) s->entries[i] = (st_set_entry){&f->tensors[i], f};
    s->n = f->n; /* already sorted by name */
    return BS_OK;
}

/* The shard named in the index, opened on first use. */
static bs_status shard_for(st_set *s, const char *dir, const char *index_path, const char *shard,
                           const char *tensor, const st_file **out, bs_error *err) {
    if (shard[0] == '\0' || strchr(shard, '/') || strcmp(shard, ".") == 0 || strcmp(shard, "..") == 0)
        return bs_fail(err, BS_EFORMAT, "%s: shard '%s' for tensor '%s' is not a plain file name", index_path,
                       shard, tensor);
    char *path = bs_path_join(dir, shard);
    if (!path) return bs_fail(err, BS_ENOMEM, "%s: out of memory", index_path);
    for (size_t i = 0; i < s->n_files; i++) {
        if (strcmp(s->files[i]->map.path, path) == 0) {
            *out = s->files[i];
            free(path);
            return BS_OK;
        }
    }
    bs_status st = st_open(path, &s->files[s->n_files], err);
    free(path);
    if (st != BS_OK) return bs_wrap(err, "%s: shard '%s' listed for tensor '%s'", index_path, shard, tensor);
    *out = s->files[s->n_files++];
    return BS_OK;
}

static bs_status open_sharded(st_set *s, const char *dir, const char *index_path, bs_error *err) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return bs_fail(err, BS_EFORMAT, "%s: malformed JSON at line %d column %d: %s", index_path, jerr.line,
                       jerr.column, jerr.text);
    json_t *map = json_object_get(root, "weight_map");
    bs_status st = BS_OK;
    size_t count = json_object_size(map);
    if (!json_is_object(map)) {
        st = bs_fail(err, BS_EFORMAT, "%s: missing or non-object \"weight_map\"", index_path);
        goto done;
    }
    s->files = count ? calloc(count, sizeof *s->files) : NULL; /* at most one shard per tensor */
    s->entries = count ? calloc(count, sizeof *s->entries) : NULL;
    if (count && (!s->files || !s->entries)) {
        st = bs_fail(err, BS_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    const char *tensor;
    json_t *shard;
    json_object_foreach(map, tensor, shard) {
        if (!json_is_string(shard)) {
            st = bs_fail(err, BS_EFORMAT, "%s: weight_map entry for tensor '%s' is not a string", index_path,
                         tensor);
            goto done;
        }
        const st_file *f = NULL;
        st = shard_for(s, dir, index_path, json_string_value(shard), tensor, &f, err);
        if (st != BS_OK) goto done;
        const bs_tensor *t = st_find(f, tensor);
        if (!t) {
            st = bs_fail(err, BS_EFORMAT, "%s: tensor '%s' is mapped to shard '%s' but is not in it", index_path,
                         tensor, json_string_value(shard));
            goto done;
        }
        s->entries[s->n++] = (st_set_entry){t, f};
    }
    if (s->n) qsort(s->entries, s->n, sizeof *s->entries, cmp_entry_name);
done:
    json_decref(root);
    return st;
}

bs_status st_set_open_dir(const char *dir, st_set **out, bs_error *err) {
    *out = NULL;
    st_set *s = calloc(1, sizeof *s);
    char *index_path = bs_path_join(dir, "model.safetensors.index.json");
    char *single_path = bs_path_join(dir, "model.safetensors");
    bs_status st;
    if (!s || !index_path || !single_path)
        st = bs_fail(err, BS_ENOMEM, "%s: out of memory", dir);
    else if (bs_file_exists(index_path))
        st = open_sharded(s, dir, index_path, err);
    else if (bs_file_exists(single_path))
        st = open_single(s, single_path, err);
    else
        st = bs_fail(err, BS_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    free(index_path);
    free(single_path);
    if (st != BS_OK) {
        st_set_close(s);
        return st;
    }
    *out = s;
    return BS_OK;
}

void st_set_close(st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) st_close(s->files[i]);
    free(s->files);
    free(s->entries);
    free(s);
}

uint64_t st_set_tensor_count(const st_set *s) { return s->n; }

const bs_tensor *st_set_tensor(const st_set *s, uint64_t i) { return i < s->n ? s->entries[i].tensor : NULL; }

static const st_set_entry *find_entry(const st_set *s, const char *name) {
    if (s->n == 0) return NULL;
    return bsearch(name, s->entries, s->n, sizeof *s->entries, cmp_entry_key);
}

const bs_tensor *st_set_find(const st_set *s, const char *name) {
    const st_set_entry *e = find_entry(s, name);
    return e ? e->tensor : NULL;
}

const char *st_set_tensor_path(const st_set *s, const char *name) {
    const st_set_entry *e = find_entry(s, name);
    return e ? e->file->map.path : NULL;
}

void st_set_drop(const st_set *s, const void *p, size_t len) {
    for (size_t i = 0; i < s->n_files; i++) bs_file_drop(&s->files[i]->map, p, len); /* the file holding p acts */
}
