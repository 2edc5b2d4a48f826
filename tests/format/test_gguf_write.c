/* The streaming GGUF writer: files read back by basalt's reader with every
 * value type, tensor and alignment intact; the same file checked by an
 * independent few-line Python parser (keys, types, ne innermost-first,
 * offsets); and misuse refused with one-line errors. */
#include <stdint.h>
#include <unistd.h>

#include "../support/oracle.h"
#include "../support/test.h"
#include "format/gguf.h"
#include "format/gguf_write.h"
#include "kernels/kernels.h"
#include "scratch.h"

/* Tensors of the sample file: name, dtype, shape (outermost-first). */
static const struct {
    const char *name;
    bs_dtype dtype;
    int ndim;
    int64_t shape[3];
} sample_tensors[] = {
    {"norm.weight", BS_DTYPE_F32, 1, {5}},
    {"q8", BS_DTYPE_Q8_0, 2, {3, 64}},
    {"q4k", BS_DTYPE_Q4_K, 2, {2, 256}},
    {"half", BS_DTYPE_F16, 3, {2, 3, 7}},
    {"bf", BS_DTYPE_BF16, 1, {9}},
};
enum { N_SAMPLE = sizeof sample_tensors / sizeof sample_tensors[0] };

static unsigned char *sample_data[N_SAMPLE];
static size_t sample_bytes[N_SAMPLE];

static void make_sample_data(void) {
    uint64_t s = 99;
    for (int i = 0; i < N_SAMPLE; i++) {
        int64_t n = 1;
        for (int d = 0; d < sample_tensors[i].ndim; d++) n *= sample_tensors[i].shape[d];
        float *f = malloc((size_t)n * sizeof *f);
        for (int64_t k = 0; k < n; k++) f[k] = (float)scratch_rand(&s) / 4294967296.0f - 0.5f;
        int64_t cols = sample_tensors[i].shape[sample_tensors[i].ndim - 1];
        sample_bytes[i] = bs_dtype_row_bytes(sample_tensors[i].dtype, cols) * (size_t)(n / cols);
        free(sample_data[i]);
        sample_data[i] = malloc(sample_bytes[i]);
        kern_quantize(sample_tensors[i].dtype, f, sample_data[i], n);
        free(f);
    }
}

/* Every value type, arrays of each, a string array and nested arrays. */
static bs_status write_sample(const char *path, size_t alignment, bs_error *err) {
    gguf_writer *w;
    bs_status st = gguf_writer_open(path, alignment, &w, err);
    if (st) return st;
    const int8_t i8s[3] = {-1, 0, 127};
    const uint16_t u16s[2] = {1, 65535};
    const int64_t i64s[2] = {-5, INT64_MAX};
    const double f64s[2] = {0.25, -1e300};
    const unsigned char bools[3] = {1, 0, 1};
    const char *strs[3] = {"a", "", "h\xC3\xA9llo"};
    const uint32_t inner0[2] = {7, 8};
    const gguf_value inner[2] = {
        {.type = GGUF_TYPE_ARRAY, .arr = {.elem_type = GGUF_TYPE_UINT32, .count = 2, .data = inner0}},
        {.type = GGUF_TYPE_ARRAY, .arr = {.elem_type = GGUF_TYPE_UINT32, .count = 0, .data = inner0}},
    };
    const gguf_value scalars[] = {
        {.type = GGUF_TYPE_UINT8, .u = 200},     {.type = GGUF_TYPE_INT8, .i = -100},
        {.type = GGUF_TYPE_UINT16, .u = 60000},  {.type = GGUF_TYPE_INT16, .i = -30000},
        {.type = GGUF_TYPE_UINT32, .u = 4000000000u}, {.type = GGUF_TYPE_INT32, .i = -2000000000},
        {.type = GGUF_TYPE_FLOAT32, .f = 1.5},   {.type = GGUF_TYPE_BOOL, .b = 1},
        {.type = GGUF_TYPE_UINT64, .u = UINT64_MAX}, {.type = GGUF_TYPE_INT64, .i = INT64_MIN},
        {.type = GGUF_TYPE_FLOAT64, .f = -2.5e-300},
        {.type = GGUF_TYPE_ARRAY, .arr = {.elem_type = GGUF_TYPE_ARRAY, .count = 2, .items = inner}},
    };
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0] && !st; i++) {
        char key[32];
        snprintf(key, sizeof key, "t.v%zu", i);
        st = gguf_writer_add(w, key, &scalars[i], err);
    }
    if (!st) st = gguf_writer_add_str(w, "general.name", "s\xC3\xA4mple", err);
    if (!st) st = gguf_writer_add_array(w, "t.i8s", GGUF_TYPE_INT8, i8s, 3, err);
    if (!st) st = gguf_writer_add_array(w, "t.u16s", GGUF_TYPE_UINT16, u16s, 2, err);
    if (!st) st = gguf_writer_add_array(w, "t.i64s", GGUF_TYPE_INT64, i64s, 2, err);
    if (!st) st = gguf_writer_add_array(w, "t.f64s", GGUF_TYPE_FLOAT64, f64s, 2, err);
    if (!st) st = gguf_writer_add_array(w, "t.bools", GGUF_TYPE_BOOL, bools, 3, err);
    if (!st) st = gguf_writer_add_str_array(w, "t.strs", strs, NULL, 3, err);
    for (int i = 0; i < N_SAMPLE && !st; i++)
        st = gguf_writer_add_tensor(w, sample_tensors[i].name, sample_tensors[i].dtype, sample_tensors[i].ndim,
                                    sample_tensors[i].shape, err);
    /* stream in uneven chunks that straddle tensor boundaries */
    bytes all = {0};
    for (int i = 0; i < N_SAMPLE; i++) bytes_put(&all, sample_data[i], sample_bytes[i]);
    for (size_t off = 0; off < all.len && !st; off += 13) st = gguf_writer_write(w, all.p + off, all.len - off < 13 ? all.len - off : 13, err);
    bytes_free(&all);
    if (st) {
        gguf_writer_discard(w);
        return st;
    }
    return gguf_writer_finish(w, err);
}

static void check_sample(const char *path, size_t alignment) {
    bs_error err = {0};
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(path, &g, &err), &err);
    if (!g) return;
    CHECK_INT(gguf_version(g), 3);
    const gguf_value *v;
    v = gguf_get(g, "t.v0"); CHECK(v && v->type == GGUF_TYPE_UINT8 && v->u == 200);
    v = gguf_get(g, "t.v1"); CHECK(v && v->type == GGUF_TYPE_INT8 && v->i == -100);
    v = gguf_get(g, "t.v2"); CHECK(v && v->type == GGUF_TYPE_UINT16 && v->u == 60000);
    v = gguf_get(g, "t.v3"); CHECK(v && v->type == GGUF_TYPE_INT16 && v->i == -30000);
    v = gguf_get(g, "t.v4"); CHECK(v && v->type == GGUF_TYPE_UINT32 && v->u == 4000000000u);
    v = gguf_get(g, "t.v5"); CHECK(v && v->type == GGUF_TYPE_INT32 && v->i == -2000000000);
    v = gguf_get(g, "t.v6"); CHECK(v && v->type == GGUF_TYPE_FLOAT32 && v->f == 1.5);
    v = gguf_get(g, "t.v7"); CHECK(v && v->type == GGUF_TYPE_BOOL && v->b == 1);
    v = gguf_get(g, "t.v8"); CHECK(v && v->type == GGUF_TYPE_UINT64 && v->u == UINT64_MAX);
    v = gguf_get(g, "t.v9"); CHECK(v && v->type == GGUF_TYPE_INT64 && v->i == INT64_MIN);
    v = gguf_get(g, "t.v10"); CHECK(v && v->type == GGUF_TYPE_FLOAT64 && v->f == -2.5e-300);
    v = gguf_get(g, "t.v11");
    CHECK(v && v->type == GGUF_TYPE_ARRAY && v->arr.elem_type == GGUF_TYPE_ARRAY && v->arr.count == 2);
    if (v && v->arr.count == 2) {
        CHECK_INT(v->arr.items[0].arr.count, 2);
        CHECK_INT(gguf_array_i64(&v->arr.items[0], 1), 8);
        CHECK_INT(v->arr.items[1].arr.count, 0);
    }
    const char *name = NULL;
    CHECK_OK(gguf_get_str(g, "general.name", 1, &name, &err), &err);
    CHECK_STR(name, "s\xC3\xA4mple");
    v = gguf_get(g, "t.i8s"); CHECK(v && v->arr.count == 3 && gguf_array_i64(v, 0) == -1 && gguf_array_i64(v, 2) == 127);
    v = gguf_get(g, "t.u16s"); CHECK(v && gguf_array_i64(v, 1) == 65535);
    v = gguf_get(g, "t.i64s"); CHECK(v && gguf_array_i64(v, 0) == -5 && gguf_array_i64(v, 1) == INT64_MAX);
    v = gguf_get(g, "t.f64s"); CHECK(v && gguf_array_f64(v, 0) == 0.25 && gguf_array_f64(v, 1) == -1e300);
    v = gguf_get(g, "t.bools"); CHECK(v && v->arr.elem_type == GGUF_TYPE_BOOL && gguf_array_i64(v, 2) == 1);
    v = gguf_get(g, "t.strs");
    CHECK(v && v->arr.elem_type == GGUF_TYPE_STRING && v->arr.count == 3);
    if (v && v->arr.count == 3) CHECK(v->arr.strs[1].len == 0 && v->arr.strs[2].len == 6);
    uint32_t align = 32;
    CHECK_OK(gguf_get_u32(g, "general.alignment", 0, &align, &err), &err);
    CHECK_INT(align, alignment);
    CHECK_INT(gguf_key_count(g), 19 + (alignment != 32));
    CHECK_INT(gguf_tensor_count(g), N_SAMPLE);
    const unsigned char *base = gguf_tensor(g, 0)->data;
    for (int i = 0; i < N_SAMPLE && i < (int)gguf_tensor_count(g); i++) {
        const bs_tensor *t = gguf_tensor(g, i);
        CHECK_STR(t->name, sample_tensors[i].name);
        CHECK_INT(t->dtype, sample_tensors[i].dtype);
        CHECK_INT(t->ndim, sample_tensors[i].ndim);
        CHECK(memcmp(t->shape, sample_tensors[i].shape, (size_t)t->ndim * sizeof(int64_t)) == 0);
        CHECK_INT(t->nbytes, sample_bytes[i]);
        CHECK(memcmp(t->data, sample_data[i], sample_bytes[i]) == 0);
        CHECK_INT(((const unsigned char *)t->data - base) % (long)alignment, 0);
    }
    gguf_close(g);
}

static void test_roundtrip(void) {
    make_sample_data();
    bs_error err = {0};
    const size_t aligns[] = {32, 64, 8};
    for (size_t k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "w%zu.gguf", aligns[k]);
        const char *path = scratch_path(name);
        CHECK_OK(write_sample(path, aligns[k] == 32 ? 0 : aligns[k], &err), &err);
        check_sample(path, aligns[k]);
    }
}

/* An independent reader: parse with Python's struct module and print what
 * the file says, in a form compared line by line below. */
static const char py_reader[] =
    "import struct, sys\n"
    "b = open(sys.argv[1], 'rb').read(); p = 0\n"
    "def rd(f):\n"
    "    global p; v = struct.unpack_from('<' + f, b, p); p += struct.calcsize('<' + f); return v[0]\n"
    "def rs():\n"
    "    n = rd('Q'); global p; s = b[p:p + n]; p += n; return s.decode()\n"
    "FMT = {0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}\n"
    "def val(t):\n"
    "    if t == 8: return rs()\n"
    "    if t == 9:\n"
    "        et = rd('I'); n = rd('Q'); return [val(et) for _ in range(n)]\n"
    "    return rd(FMT[t])\n"
    "assert b[:4] == b'GGUF'; p = 4\n"
    "ver = rd('I'); nt = rd('Q'); nk = rd('Q'); print('version', ver, nt, nk)\n"
    "align = 32\n"
    "for _ in range(nk):\n"
    "    k = rs(); t = rd('I'); v = val(t)\n"
    "    if k == 'general.alignment': align = v\n"
    "    print('kv', k, t, v if t != 8 else repr(v))\n"
    "infos = []\n"
    "for _ in range(nt):\n"
    "    n = rs(); nd = rd('I'); ne = [rd('Q') for _ in range(nd)]; t = rd('I'); off = rd('Q')\n"
    "    infos.append(off); print('tensor', n, ne, t, off, off % align == 0)\n"
    "start = (p + align - 1) // align * align\n"
    "print('data', start % align == 0, not any(b[p:start]), start + infos[-1] <= len(b))\n";

static void test_python_reader(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import struct' >/dev/null 2>&1", test_python());
    if (system(cmd) != 0) SKIP("no python3");
    make_sample_data();
    bs_error err = {0};
    const char *path = scratch_path("py.gguf");
    CHECK_OK(write_sample(path, 64, &err), &err);
    const char *script = scratch_write("reader.py", py_reader, sizeof py_reader - 1);
    char out_path[600];
    snprintf(out_path, sizeof out_path, "%s", scratch_path("reader.out"));
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' > '%s'", test_python(),
             script, path, out_path);
    CHECK_INT(system(cmd), 0);
    FILE *f = fopen(out_path, "r");
    CHECK(f != NULL);
    if (!f) return;
    char all[8192];
    size_t n = fread(all, 1, sizeof all - 1, f);
    all[n] = 0;
    fclose(f);
    static const char *const expect[] = {
        "version 3 5 20\n",
        "kv general.alignment 4 64\n",
        "kv t.v0 0 200\n", "kv t.v1 1 -100\n", "kv t.v2 2 60000\n", "kv t.v3 3 -30000\n",
        "kv t.v4 4 4000000000\n", "kv t.v5 5 -2000000000\n", "kv t.v6 6 1.5\n", "kv t.v7 7 True\n",
        "kv t.v8 10 18446744073709551615\n", "kv t.v9 11 -9223372036854775808\n", "kv t.v10 12 -2.5e-300\n",
        "kv t.v11 9 [[7, 8], []]\n", "kv general.name 8 's\xC3\xA4mple'\n", "kv t.i8s 9 [-1, 0, 127]\n",
        "kv t.bools 9 [True, False, True]\n", "kv t.strs 9 ['a', '', 'h\xC3\xA9llo']\n",
        /* ne innermost-first, ggml type ids, offsets aligned to 64 */
        "tensor norm.weight [5] 0 0 True\n",
        "tensor q8 [64, 3] 8 64 True\n",
        "tensor q4k [256, 2] 12 320 True\n",
        "tensor half [7, 3, 2] 1 640 True\n",
        "tensor bf [9] 30 768 True\n",
        "data True True True\n",
    };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
        if (!strstr(all, expect[i])) fprintf(stderr, "  python reader output lacks: %s", expect[i]);
        CHECK(strstr(all, expect[i]) != NULL);
    }
}

static void test_misuse(void) {
    bs_error err = {0};
    gguf_writer *w = NULL;
    CHECK_INT(gguf_writer_open("/nonexistent-dir/x.gguf", 0, &w, &err), BS_EIO);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.gguf") != NULL);
    CHECK_INT(gguf_writer_open(scratch_path("a.gguf"), 48, &w, &err), BS_EINVAL);

    const char *path = scratch_path("bad.gguf");
    CHECK_OK(gguf_writer_open(path, 0, &w, &err), &err);
    if (!w) return;
    CHECK_OK(gguf_writer_add_u32(w, "k", 1, &err), &err);
    CHECK_INT(gguf_writer_add_u32(w, "k", 2, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "duplicate metadata key 'k'") != NULL);
    CHECK_INT(gguf_writer_add_str(w, "", "x", &err), BS_EINVAL);
    int64_t shape[2] = {2, 48};
    CHECK_INT(gguf_writer_add_tensor(w, "t", BS_DTYPE_Q8_0, 2, shape, &err), BS_EINVAL); /* 48 is not whole blocks */
    CHECK(strstr(err.msg, "'t'") != NULL);
    shape[1] = 64;
    CHECK_OK(gguf_writer_add_tensor(w, "t", BS_DTYPE_Q8_0, 2, shape, &err), &err);
    CHECK_INT(gguf_writer_add_tensor(w, "t", BS_DTYPE_F32, 1, shape, &err), BS_EINVAL);
    char long_name[80];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    CHECK_INT(gguf_writer_add_tensor(w, long_name, BS_DTYPE_F32, 1, shape, &err), BS_EINVAL);
    unsigned char block[84] = {0}; /* t is 2 rows of 2 Q8_0 blocks: 136 bytes */
    CHECK_OK(gguf_writer_write(w, block, 60, &err), &err);
    CHECK_INT(gguf_writer_add_u32(w, "late", 1, &err), BS_EINVAL); /* data began */
    CHECK_INT(gguf_writer_write(w, block, 84, &err), BS_EINVAL);     /* 8 bytes too many */
    CHECK(strstr(err.msg, "8 bytes written past the end") != NULL);
    /* short: finish fails and removes the file */
    CHECK_INT(gguf_writer_finish(w, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "tensor 't' got 60 of its 136 bytes") != NULL);
    CHECK(access(path, F_OK) != 0);

    /* discard removes the partial file */
    CHECK_OK(gguf_writer_open(path, 0, &w, &err), &err);
    gguf_writer_discard(w);
    CHECK(access(path, F_OK) != 0);

    /* a file with metadata only is valid (vocab-only GGUFs) */
    CHECK_OK(gguf_writer_open(path, 0, &w, &err), &err);
    CHECK_OK(gguf_writer_add_str(w, "general.architecture", "llama", &err), &err);
    CHECK_OK(gguf_writer_finish(w, &err), &err);
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(path, &g, &err), &err);
    if (g) CHECK_INT(gguf_tensor_count(g), 0);
    gguf_close(g);
}

int main(void) {
    RUN(test_roundtrip);
    RUN(test_python_reader);
    RUN(test_misuse);
    for (int i = 0; i < N_SAMPLE; i++) free(sample_data[i]);
    TEST_MAIN_END();
}
