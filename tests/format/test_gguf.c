/* Tests for format/gguf: files written here by a tiny GGUF writer, every
 * validation error, truncation and byte-flip mini-fuzzing, and the shared
 * vocab-only fixtures when present. */
#include <dirent.h>

#include "../support/test.h"
#include "format/gguf.h"
#include "scratch.h"

/* ---- a tiny GGUF writer ---- */

static void put_str(bytes *b, const char *s) {
    bytes_u64(b, strlen(s));
    bytes_put(b, s, strlen(s));
}

static void put_header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    bytes_put(b, "GGUF", 4);
    bytes_u32(b, version);
    bytes_u64(b, n_tensors);
    bytes_u64(b, n_kv);
}

static void put_key(bytes *b, const char *key, uint32_t type) {
    put_str(b, key);
    bytes_u32(b, type);
}

static void kv_u32(bytes *b, const char *key, uint32_t v) {
    put_key(b, key, GGUF_TYPE_UINT32);
    bytes_u32(b, v);
}

static void kv_str(bytes *b, const char *key, const char *v) {
    put_key(b, key, GGUF_TYPE_STRING);
    put_str(b, v);
}

/* A tensor info with GGUF's innermost-first dims. */
static void put_tensor(bytes *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type,
                       uint64_t offset) {
    put_str(b, name);
    bytes_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) bytes_u64(b, dims[i]);
    bytes_u32(b, type);
    bytes_u64(b, offset);
}

static void pad_to(bytes *b, size_t alignment) {
    while (b->len % alignment) bytes_u8(b, 0);
}

static bs_status open_bytes(const bytes *b, const char *name, gguf_file **g, bs_error *err) {
    return gguf_open(scratch_write(name, b->p, b->len), g, err);
}

/* Opening must fail with status st and a message naming the file and
 * containing want. */
static void expect_fail(const bytes *b, const char *name, bs_status st, const char *want) {
    gguf_file *g = NULL;
    bs_error err = {0};
    bs_status got = open_bytes(b, name, &g, &err);
    CHECK_INT(got, st);
    CHECK(g == NULL);
    if (!strstr(err.msg, name) || !strstr(err.msg, want)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\" or \"%s\"\n", err.msg, name, want);
        test_failed_ = 1;
    }
    gguf_close(g);
}

/* The rich file: every value type, nested and string arrays, three tensors
 * (F32 {2,3}, F16 {4}, Q8_0 {2,32}).  With alignment != 32 it records
 * general.alignment and pads a filler key so that the data section's start
 * differs between 32- and the given alignment. */
static void build_rich(bytes *b, uint32_t alignment) {
    int custom = alignment != 32;
    for (int filler = 0; filler < 64; filler++) {
        bytes_free(b);
        put_header(b, 3, 3, 16 + custom * 2);
        kv_str(b, "general.architecture", "llama");
        put_key(b, "t.u8", GGUF_TYPE_UINT8), bytes_u8(b, 200);
        put_key(b, "t.i8", GGUF_TYPE_INT8), bytes_u8(b, (uint8_t)-100);
        uint16_t u16 = 60000, i16 = (uint16_t)-30000;
        put_key(b, "t.u16", GGUF_TYPE_UINT16), bytes_put(b, &u16, 2);
        put_key(b, "t.i16", GGUF_TYPE_INT16), bytes_put(b, &i16, 2);
        kv_u32(b, "t.u32", 4000000000u);
        put_key(b, "t.i32", GGUF_TYPE_INT32), bytes_u32(b, (uint32_t)-2000000000);
        float f32 = 1.5f;
        put_key(b, "t.f32", GGUF_TYPE_FLOAT32), bytes_put(b, &f32, 4);
        put_key(b, "t.bool", GGUF_TYPE_BOOL), bytes_u8(b, 1);
        put_key(b, "t.u64", GGUF_TYPE_UINT64), bytes_u64(b, 1ull << 40);
        put_key(b, "t.i64", GGUF_TYPE_INT64), bytes_u64(b, (uint64_t)-(1ll << 40));
        double f64 = 2.25;
        put_key(b, "t.f64", GGUF_TYPE_FLOAT64), bytes_put(b, &f64, 8);
        put_key(b, "t.arr_i32", GGUF_TYPE_ARRAY), bytes_u32(b, GGUF_TYPE_INT32), bytes_u64(b, 3);
        bytes_u32(b, 1), bytes_u32(b, (uint32_t)-2), bytes_u32(b, 3);
        put_key(b, "t.arr_str", GGUF_TYPE_ARRAY), bytes_u32(b, GGUF_TYPE_STRING), bytes_u64(b, 3);
        put_str(b, "a"), put_str(b, "bc"), put_str(b, "");
        put_key(b, "t.nested", GGUF_TYPE_ARRAY), bytes_u32(b, GGUF_TYPE_ARRAY), bytes_u64(b, 2);
        bytes_u32(b, GGUF_TYPE_UINT8), bytes_u64(b, 2), bytes_u8(b, 1), bytes_u8(b, 2);
        bytes_u32(b, GGUF_TYPE_FLOAT32), bytes_u64(b, 1), bytes_put(b, &f32, 4);
        put_key(b, "t.empty", GGUF_TYPE_ARRAY), bytes_u32(b, GGUF_TYPE_STRING), bytes_u64(b, 0);
        if (custom) {
            kv_u32(b, "general.alignment", alignment);
            char fill[64];
            memset(fill, 'x', sizeof fill);
            fill[filler] = '\0';
            kv_str(b, "t.filler", fill);
        }
        size_t a_bytes = 24, b_off = (a_bytes + alignment - 1) / alignment * alignment;
        size_t q_off = (b_off + 8 + alignment - 1) / alignment * alignment;
        put_tensor(b, "a.weight", 2, (const uint64_t[]){3, 2}, 0, 0);
        put_tensor(b, "b.weight", 1, (const uint64_t[]){4}, 1, b_off);
        put_tensor(b, "q.weight", 2, (const uint64_t[]){32, 2}, 8, q_off);
        size_t end = b->len;
        if (custom && (end + 31) / 32 * 32 == (end + alignment - 1) / alignment * alignment) continue;
        pad_to(b, alignment);
        for (int i = 0; i < 6; i++) {
            float v = (float)i + 0.5f;
            bytes_put(b, &v, 4);
        }
        pad_to(b, alignment);
        for (int i = 0; i < 4; i++) {
            uint16_t h = bs_f32_to_f16((float)-i);
            bytes_put(b, &h, 2);
        }
        pad_to(b, alignment);
        for (int i = 0; i < 68; i++) bytes_u8(b, (uint8_t)i); /* two Q8_0 blocks */
        return;
    }
}

static void check_rich(const gguf_file *g) {
    bs_error err = {0};
    CHECK_INT(gguf_version(g), 3);
    CHECK_INT(gguf_tensor_count(g), 3);
    CHECK_STR(gguf_key_name(g, 0), "general.architecture");
    CHECK(gguf_key_name(g, 1000) == NULL);
    CHECK(gguf_key_value(g, 1) == gguf_get(g, "t.u8"));

    const gguf_value *v;
    CHECK((v = gguf_get(g, "t.u8")) && v->type == GGUF_TYPE_UINT8 && v->u == 200);
    CHECK((v = gguf_get(g, "t.i8")) && v->type == GGUF_TYPE_INT8 && v->i == -100);
    CHECK((v = gguf_get(g, "t.u16")) && v->u == 60000);
    CHECK((v = gguf_get(g, "t.i16")) && v->i == -30000);
    CHECK((v = gguf_get(g, "t.u32")) && v->u == 4000000000u);
    CHECK((v = gguf_get(g, "t.i32")) && v->i == -2000000000);
    CHECK((v = gguf_get(g, "t.f32")) && v->type == GGUF_TYPE_FLOAT32 && v->f == 1.5);
    CHECK((v = gguf_get(g, "t.bool")) && v->b == 1);
    CHECK((v = gguf_get(g, "t.u64")) && v->u == 1ull << 40);
    CHECK((v = gguf_get(g, "t.i64")) && v->i == -(1ll << 40));
    CHECK((v = gguf_get(g, "t.f64")) && v->type == GGUF_TYPE_FLOAT64 && v->f == 2.25);
    CHECK(gguf_get(g, "t.absent") == NULL);

    v = gguf_get(g, "t.arr_i32");
    CHECK(v && v->type == GGUF_TYPE_ARRAY && v->arr.elem_type == GGUF_TYPE_INT32 && v->arr.count == 3);
    if (v) {
        CHECK_INT(gguf_array_i64(v, 0), 1);
        CHECK_INT(gguf_array_i64(v, 1), -2);
        CHECK_NEAR(gguf_array_f64(v, 2), 3.0, 0);
        CHECK_INT(gguf_array_i64(v, 3), 0); /* out of range reads as 0 */
    }
    v = gguf_get(g, "t.arr_str");
    CHECK(v && v->arr.elem_type == GGUF_TYPE_STRING && v->arr.count == 3);
    if (v && v->arr.count == 3) {
        CHECK(v->arr.strs[0].len == 1 && memcmp(v->arr.strs[0].ptr, "a", 1) == 0);
        CHECK(v->arr.strs[1].len == 2 && memcmp(v->arr.strs[1].ptr, "bc", 2) == 0);
        CHECK_INT(v->arr.strs[2].len, 0);
    }
    v = gguf_get(g, "t.nested");
    CHECK(v && v->arr.elem_type == GGUF_TYPE_ARRAY && v->arr.count == 2);
    if (v && v->arr.count == 2) {
        const gguf_value *a = &v->arr.items[0], *b = &v->arr.items[1];
        CHECK(a->type == GGUF_TYPE_ARRAY && a->arr.elem_type == GGUF_TYPE_UINT8 && a->arr.count == 2);
        CHECK_INT(gguf_array_i64(a, 1), 2);
        CHECK(b->arr.elem_type == GGUF_TYPE_FLOAT32 && b->arr.count == 1);
        CHECK_NEAR(gguf_array_f64(b, 0), 1.5, 0);
    }
    CHECK((v = gguf_get(g, "t.empty")) && v->arr.count == 0);

    /* Typed getters. */
    uint32_t u = 7;
    float f = 0;
    int flag = 0;
    const char *s = NULL;
    CHECK_OK(gguf_get_u32(g, "t.u16", 1, &u, &err), &err);
    CHECK_INT(u, 60000);
    u = 7;
    CHECK_INT(gguf_get_u32(g, "t.u64", 1, &u, &err), BS_ERANGE);
    CHECK(strstr(err.msg, "t.u64") != NULL);
    CHECK_INT(gguf_get_u32(g, "t.i8", 1, &u, &err), BS_ERANGE);
    CHECK_INT(gguf_get_u32(g, "t.absent", 0, &u, &err), BS_OK);
    CHECK_INT(u, 7); /* default kept */
    CHECK_INT(gguf_get_u32(g, "t.absent", 1, &u, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "t.absent") && strstr(err.msg, gguf_path(g)));
    CHECK_INT(gguf_get_u32(g, "t.f32", 1, &u, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "t.f32") && strstr(err.msg, "f32"));
    CHECK_OK(gguf_get_f32(g, "t.f64", 1, &f, &err), &err);
    CHECK_NEAR(f, 2.25, 0);
    CHECK_INT(gguf_get_f32(g, "t.u8", 1, &f, &err), BS_EFORMAT);
    CHECK_OK(gguf_get_bool(g, "t.bool", 1, &flag, &err), &err);
    CHECK_INT(flag, 1);
    CHECK_OK(gguf_get_str(g, "general.architecture", 1, &s, &err), &err);
    CHECK_STR(s, "llama");
    CHECK_OK(gguf_get_str(g, "t.absent", 0, &s, &err), &err);
    CHECK(s == NULL);
    CHECK_INT(gguf_get_str(g, "t.u8", 1, &s, &err), BS_EFORMAT);

    /* Tensors: shapes reversed, bytes where the writer put them. */
    const bs_tensor *a = gguf_find_tensor(g, "a.weight");
    const bs_tensor *b = gguf_find_tensor(g, "b.weight");
    const bs_tensor *q = gguf_find_tensor(g, "q.weight");
    CHECK(gguf_find_tensor(g, "missing") == NULL);
    CHECK(a && b && q);
    if (!a || !b || !q) return;
    CHECK(gguf_tensor(g, 0) == a && gguf_tensor(g, 2) == q && gguf_tensor(g, 3) == NULL);
    CHECK_INT(a->dtype, BS_DTYPE_F32);
    CHECK_INT(a->ndim, 2);
    CHECK_INT(a->shape[0], 2);
    CHECK_INT(a->shape[1], 3);
    CHECK_INT(a->nbytes, 24);
    for (int i = 0; i < 6; i++) {
        float x;
        memcpy(&x, (const char *)a->data + 4 * i, 4);
        CHECK_NEAR(x, i + 0.5, 0);
    }
    CHECK_INT(b->dtype, BS_DTYPE_F16);
    CHECK_INT(b->ndim, 1);
    CHECK_INT(b->shape[0], 4);
    CHECK_INT(b->nbytes, 8);
    uint16_t h;
    memcpy(&h, (const char *)b->data + 6, 2);
    CHECK_NEAR(bs_f16_to_f32(h), -3.0, 0);
    CHECK_INT(q->dtype, BS_DTYPE_Q8_0);
    CHECK_INT(q->shape[0], 2);
    CHECK_INT(q->shape[1], 32);
    CHECK_INT(q->nbytes, 68);
    CHECK_INT(((const unsigned char *)q->data)[67], 67);
}

static void test_rich_file(void) {
    bytes b = {0};
    build_rich(&b, 32);
    gguf_file *g = NULL;
    bs_error err = {0};
    CHECK_OK(open_bytes(&b, "rich.gguf", &g, &err), &err);
    if (g) check_rich(g);
    gguf_close(g);
    bytes_free(&b);
}

static void test_custom_alignment(void) {
    bytes b = {0};
    build_rich(&b, 64);
    gguf_file *g = NULL;
    bs_error err = {0};
    CHECK_OK(open_bytes(&b, "align64.gguf", &g, &err), &err);
    if (g) {
        check_rich(g);
        uint32_t a = 0;
        CHECK_OK(gguf_get_u32(g, "general.alignment", 1, &a, &err), &err);
        CHECK_INT(a, 64);
        const bs_tensor *t0 = gguf_tensor(g, 0), *t1 = gguf_tensor(g, 1);
        CHECK_INT((const char *)t1->data - (const char *)t0->data, 64);
    }
    gguf_close(g);
    bytes_free(&b);
}

static void test_vocab_only(void) {
    bytes b = {0};
    put_header(&b, 2, 0, 1);
    kv_str(&b, "tokenizer.ggml.model", "gpt2");
    gguf_file *g = NULL;
    bs_error err = {0};
    CHECK_OK(open_bytes(&b, "vocab.gguf", &g, &err), &err);
    if (g) {
        CHECK_INT(gguf_version(g), 2);
        CHECK_INT(gguf_tensor_count(g), 0);
        CHECK(gguf_find_tensor(g, "x") == NULL);
        CHECK_INT(gguf_key_count(g), 1);
    }
    gguf_close(g);
    bytes_free(&b);
}

/* ---- bad inputs, one each ---- */

static void test_bad_magic(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 0);
    b.p[0] = 'X';
    expect_fail(&b, "magic.gguf", BS_EFORMAT, "magic");
    b.len = 2;
    expect_fail(&b, "tiny.gguf", BS_EFORMAT, "truncated");
    bytes_free(&b);
}

static void test_unsupported_versions(void) {
    bytes b = {0};
    put_header(&b, 1, 0, 0);
    expect_fail(&b, "v1.gguf", BS_EUNSUPPORTED, "version 1");
    bytes_free(&b);
    put_header(&b, 4, 0, 0);
    expect_fail(&b, "v4.gguf", BS_EUNSUPPORTED, "version 4");
    bytes_free(&b);
    put_header(&b, 3u << 24, 0, 0); /* a big-endian v3 file read little-endian */
    expect_fail(&b, "be.gguf", BS_EUNSUPPORTED, "big-endian");
    bytes_free(&b);
}

static void test_huge_counts(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 1ull << 60);
    kv_str(&b, "a", "b");
    expect_fail(&b, "hugekv.gguf", BS_EFORMAT, "key count");
    bytes_free(&b);
    put_header(&b, 3, UINT64_MAX, 1);
    kv_str(&b, "a", "b");
    expect_fail(&b, "hugetensors.gguf", BS_EFORMAT, "tensor count");
    bytes_free(&b);
    put_header(&b, 3, 0, 1);
    put_key(&b, "arr", GGUF_TYPE_ARRAY), bytes_u32(&b, GGUF_TYPE_STRING), bytes_u64(&b, 1ull << 62);
    expect_fail(&b, "hugearray.gguf", BS_EFORMAT, "past the end");
    bytes_free(&b);
}

static void test_string_past_eof(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    bytes_u64(&b, 1000), bytes_put(&b, "general.name", 12); /* key length lies */
    bytes_u32(&b, GGUF_TYPE_UINT8), bytes_u8(&b, 0);
    expect_fail(&b, "longkey.gguf", BS_EFORMAT, "past the end");
    bytes_free(&b);
    put_header(&b, 3, 0, 1);
    put_key(&b, "general.name", GGUF_TYPE_STRING), bytes_u64(&b, UINT64_MAX), bytes_put(&b, "abc", 3);
    expect_fail(&b, "longval.gguf", BS_EFORMAT, "general.name");
    bytes_free(&b);
}

static void test_unknown_value_type(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    put_key(&b, "general.weird", 13), bytes_u64(&b, 0);
    expect_fail(&b, "vtype.gguf", BS_EFORMAT, "unknown value type 13");
    bytes_free(&b);
    put_header(&b, 3, 0, 1);
    put_key(&b, "general.weird", GGUF_TYPE_ARRAY), bytes_u32(&b, 99), bytes_u64(&b, 0);
    expect_fail(&b, "etype.gguf", BS_EFORMAT, "element type 99");
    bytes_free(&b);
}

static void test_deep_nesting(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    put_key(&b, "deep", GGUF_TYPE_ARRAY);
    for (int i = 0; i < 100; i++) bytes_u32(&b, GGUF_TYPE_ARRAY), bytes_u64(&b, 1);
    bytes_u32(&b, GGUF_TYPE_UINT8), bytes_u64(&b, 0);
    expect_fail(&b, "deep.gguf", BS_EFORMAT, "nested");
    bytes_free(&b);
}

static void test_duplicate_key(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 3);
    kv_u32(&b, "x.a", 1), kv_u32(&b, "x.b", 2), kv_u32(&b, "x.a", 3);
    expect_fail(&b, "dupkey.gguf", BS_EFORMAT, "duplicate metadata key 'x.a'");
    bytes_free(&b);
}

static void test_bad_alignment(void) {
    bytes b = {0};
    put_header(&b, 3, 0, 1);
    kv_u32(&b, "general.alignment", 48);
    expect_fail(&b, "align48.gguf", BS_EFORMAT, "general.alignment is 48");
    bytes_free(&b);
    put_header(&b, 3, 0, 1);
    kv_str(&b, "general.alignment", "32");
    expect_fail(&b, "alignstr.gguf", BS_EFORMAT, "general.alignment has type string");
    bytes_free(&b);
}

/* A file with the given tensor infos and data_len bytes of data. */
static void tensors_file(bytes *b, int n, const char *const *names, const uint32_t *types,
                         const uint64_t *ne0, const uint64_t *offsets, size_t data_len) {
    bytes_free(b);
    put_header(b, 3, (uint64_t)n, 0);
    for (int i = 0; i < n; i++) put_tensor(b, names[i], 1, &ne0[i], types[i], offsets[i]);
    pad_to(b, 32);
    bytes_zeros(b, data_len);
}

static void test_tensor_errors(void) {
    bytes b = {0};
    tensors_file(&b, 1, (const char *[]){"blk.0.attn_q.weight"}, (uint32_t[]){13}, (uint64_t[]){256},
                 (uint64_t[]){0}, 176);
    expect_fail(&b, "q5k.gguf", BS_EUNSUPPORTED, "tensor 'blk.0.attn_q.weight' has type Q5_K (13)");
    tensors_file(&b, 1, (const char *[]){"w"}, (uint32_t[]){0}, (uint64_t[]){16}, (uint64_t[]){0}, 63);
    expect_fail(&b, "pasteof.gguf", BS_EFORMAT, "tensor 'w' data (64 bytes at offset 0) extends past the end");
    tensors_file(&b, 1, (const char *[]){"w"}, (uint32_t[]){0}, (uint64_t[]){4}, (uint64_t[]){UINT64_MAX - 31}, 64);
    expect_fail(&b, "hugeoff.gguf", BS_EFORMAT, "past the end");
    tensors_file(&b, 1, (const char *[]){"w"}, (uint32_t[]){0}, (uint64_t[]){4}, (uint64_t[]){16}, 64);
    expect_fail(&b, "misaligned.gguf", BS_EFORMAT, "offset 16 is not a multiple of the alignment 32");
    tensors_file(&b, 2, (const char *[]){"w", "w"}, (uint32_t[]){0, 0}, (uint64_t[]){4, 4},
                 (uint64_t[]){0, 32}, 64);
    expect_fail(&b, "duptensor.gguf", BS_EFORMAT, "duplicate tensor name 'w'");
    tensors_file(&b, 2, (const char *[]){"u", "v"}, (uint32_t[]){0, 0}, (uint64_t[]){16, 4},
                 (uint64_t[]){0, 32}, 64);
    expect_fail(&b, "overlap.gguf", BS_EFORMAT, "tensors 'u' and 'v' overlap");
    tensors_file(&b, 1, (const char *[]){"q"}, (uint32_t[]){8}, (uint64_t[]){31}, (uint64_t[]){0}, 64);
    expect_fail(&b, "block.gguf", BS_EFORMAT, "not a multiple of the Q8_0 block size 32");
    tensors_file(&b, 1, (const char *[]){"w"}, (uint32_t[]){0}, (uint64_t[]){0}, (uint64_t[]){0}, 64);
    expect_fail(&b, "zerodim.gguf", BS_EFORMAT, "tensor 'w' dim 0 is 0");
    tensors_file(&b, 1, (const char *[]){"an.extremely.long.tensor.name.that.goes.past.the.limit.of.64.bytes"},
                 (uint32_t[]){0}, (uint64_t[]){4}, (uint64_t[]){0}, 64);
    expect_fail(&b, "longname.gguf", BS_EFORMAT, "the limit is 64");

    bytes_free(&b);
    put_header(&b, 3, 1, 0);
    put_tensor(&b, "w", 5, (const uint64_t[]){1, 1, 1, 1, 1}, 0, 0);
    pad_to(&b, 32), bytes_zeros(&b, 32);
    expect_fail(&b, "ndims.gguf", BS_EFORMAT, "tensor 'w' has 5 dims");
    bytes_free(&b);
    put_header(&b, 3, 1, 0);
    put_tensor(&b, "w", 4, (const uint64_t[]){1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20}, 0, 0);
    pad_to(&b, 32), bytes_zeros(&b, 32);
    expect_fail(&b, "overflow.gguf", BS_EFORMAT, "overflows");
    bytes_free(&b);
}

/* ---- mini-fuzz ---- */

/* Touch everything a successfully opened file exposes, so ASan sees any
 * index that points outside the mapping. */
static unsigned walk(const gguf_file *g) {
    unsigned sum = 0;
    for (uint64_t i = 0; i < gguf_key_count(g); i++) {
        const gguf_value *v = gguf_key_value(g, i);
        sum += (unsigned)strlen(gguf_key_name(g, i));
        if (v->type == GGUF_TYPE_ARRAY && v->arr.elem_type == GGUF_TYPE_STRING)
            for (uint64_t j = 0; j < v->arr.count; j++)
                if (v->arr.strs[j].len) sum += (unsigned char)v->arr.strs[j].ptr[v->arr.strs[j].len - 1];
        if (v->type == GGUF_TYPE_ARRAY && v->arr.count) sum += (unsigned)gguf_array_i64(v, v->arr.count - 1);
    }
    for (uint64_t i = 0; i < gguf_tensor_count(g); i++) {
        const bs_tensor *t = gguf_tensor(g, i);
        sum += ((const unsigned char *)t->data)[0] + ((const unsigned char *)t->data)[t->nbytes - 1];
    }
    return sum;
}

static bs_status open_close_gguf(const char *path, bs_error *err) {
    gguf_file *g = NULL;
    bs_status s = gguf_open(path, &g, err);
    if (s == BS_OK) gguf_close(g);
    return s;
}

static void test_truncated_everywhere(void) {
    bytes b = {0};
    build_rich(&b, 32);
    check_every_truncation_fails(&b, "trunc.gguf", open_close_gguf);
    bytes_free(&b);
}

static void test_byte_flips(void) {
    bytes b = {0};
    build_rich(&b, 32);
    size_t header_len = b.len - 132; /* up to the data section: 32 + 32 + 68 bytes */
    uint64_t rng = 12345;
    int opened = 0;
    unsigned sink = 0;
    unsigned char *copy = malloc(b.len);
    for (int iter = 0; iter < 400; iter++) {
        memcpy(copy, b.p, b.len);
        int flips = 1 + (int)(scratch_rand(&rng) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = scratch_rand(&rng) % header_len;
            copy[at] = iter % 3 == 0 ? 0xff : (unsigned char)scratch_rand(&rng);
        }
        gguf_file *g = NULL;
        bs_error err = {0};
        if (gguf_open(scratch_write("flip.gguf", copy, b.len), &g, &err) == BS_OK) {
            opened++;
            sink += walk(g);
            gguf_close(g);
        } else {
            CHECK(err.msg[0] != '\0');
        }
    }
    fprintf(stderr, "  byte flips: %d of 400 still opened (walk %u)\n", opened, sink);
    free(copy);
    bytes_free(&b);
}

/* ---- shared fixtures ---- */

static void test_vocab_fixtures(void) {
    const char *shared = test_shared_dir();
    if (!shared) SKIP("no ../shared fixtures directory (set BASALT_SHARED)");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fixtures/vocab", shared);
    DIR *d = opendir(dir);
    if (!d) SKIP("no fixtures/vocab directory");
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".gguf") != 0) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        gguf_file *g = NULL;
        bs_error err = {0};
        CHECK_OK(gguf_open(path, &g, &err), &err);
        if (!g) continue;
        files++;
        const char *model = NULL;
        CHECK_OK(gguf_get_str(g, "tokenizer.ggml.model", 1, &model, &err), &err);
        const gguf_value *tokens = gguf_get(g, "tokenizer.ggml.tokens");
        CHECK(tokens && tokens->type == GGUF_TYPE_ARRAY && tokens->arr.elem_type == GGUF_TYPE_STRING);
        CHECK_INT(gguf_tensor_count(g), 0);
        const gguf_value *types = gguf_get(g, "tokenizer.ggml.token_type");
        if (tokens && types) CHECK_INT(types->arr.count, tokens->arr.count);
        if (strcmp(e->d_name, "ggml-vocab-gpt-2.gguf") == 0) {
            CHECK_STR(model, "gpt2");
            CHECK(tokens && tokens->arr.count == 50257);
            if (tokens && tokens->arr.count == 50257) {
                CHECK(tokens->arr.strs[0].len == 1 && tokens->arr.strs[0].ptr[0] == '!');
                gguf_str last = tokens->arr.strs[50256];
                CHECK(last.len == 13 && memcmp(last.ptr, "<|endoftext|>", 13) == 0);
            }
            const gguf_value *merges = gguf_get(g, "tokenizer.ggml.merges");
            CHECK(merges && merges->arr.count == 50000);
            uint32_t eos = 0;
            CHECK_OK(gguf_get_u32(g, "tokenizer.ggml.eos_token_id", 1, &eos, &err), &err);
            CHECK_INT(eos, 50256);
        }
        if (strcmp(e->d_name, "ggml-vocab-llama-spm.gguf") == 0) {
            CHECK_STR(model, "llama");
            CHECK(tokens && tokens->arr.count == 32000);
            const gguf_value *scores = gguf_get(g, "tokenizer.ggml.scores");
            CHECK(scores && scores->arr.elem_type == GGUF_TYPE_FLOAT32 && scores->arr.count == 32000);
        }
        gguf_close(g);
    }
    closedir(d);
    CHECK(files > 0);
}

int main(void) {
    RUN(test_rich_file);
    RUN(test_custom_alignment);
    RUN(test_vocab_only);
    RUN(test_bad_magic);
    RUN(test_unsupported_versions);
    RUN(test_huge_counts);
    RUN(test_string_past_eof);
    RUN(test_unknown_value_type);
    RUN(test_deep_nesting);
    RUN(test_duplicate_key);
    RUN(test_bad_alignment);
    RUN(test_tensor_errors);
    RUN(test_truncated_everywhere);
    RUN(test_byte_flips);
    RUN(test_vocab_fixtures);
    TEST_MAIN_END();
}
