/* Tests for format/safetensors: single files and sharded sets written here,
 * every validation error, and truncation/byte-flip mini-fuzzing. */
#include "../support/test.h"
#include "format/safetensors.h"
#include "scratch.h"

/* A safetensors file: length, the JSON header padded with spaces to a
 * multiple of 8 (as the reference writer does), then data. */
static void st_bytes(bytes *b, const char *json, const void *data, size_t data_len) {
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    bytes_free(b);
    bytes_u64(b, padded);
    bytes_put(b, json, n);
    while (b->len < 8 + padded) bytes_u8(b, ' ');
    bytes_put(b, data, data_len);
}

static const char *write_st(const char *name, const char *json, const void *data, size_t data_len) {
    bytes b = {0};
    st_bytes(&b, json, data, data_len);
    const char *path = scratch_write(name, b.p, b.len);
    bytes_free(&b);
    return path;
}

/* The valid file: F32 {2,3}, F16 {4}, BF16 scalar, an empty F32 {0,3}. */
static const char *rich_json =
    "{\"__metadata__\": {\"format\": \"pt\"},"
    " \"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
    " \"h\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [24, 32]},"
    " \"s\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [32, 34]},"
    " \"z\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [34, 34]}}";

static void rich_data(unsigned char data[34]) {
    for (int i = 0; i < 6; i++) {
        float v = (float)i * 2.0f;
        memcpy(data + 4 * i, &v, 4);
    }
    for (int i = 0; i < 4; i++) {
        uint16_t h = bs_f32_to_f16((float)i + 0.25f);
        memcpy(data + 24 + 2 * i, &h, 2);
    }
    uint16_t s = bs_f32_to_bf16(-7.0f);
    memcpy(data + 32, &s, 2);
}

static void expect_fail(const char *name, const char *json, size_t data_len, bs_status st, const char *want) {
    static unsigned char zeros[256];
    st_file *f = NULL;
    bs_error err = {0};
    CHECK_INT(st_open(write_st(name, json, zeros, data_len), &f, &err), st);
    CHECK(f == NULL);
    if (!strstr(err.msg, name) || !strstr(err.msg, want)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\" or \"%s\"\n", err.msg, name, want);
        test_failed_ = 1;
    }
    st_close(f);
}

static void test_rich_file(void) {
    unsigned char data[34];
    rich_data(data);
    st_file *f = NULL;
    bs_error err = {0};
    CHECK_OK(st_open(write_st("rich.safetensors", rich_json, data, sizeof data), &f, &err), &err);
    if (!f) return;
    CHECK_INT(st_tensor_count(f), 4);
    CHECK_STR(st_tensor(f, 0)->name, "h"); /* name order */
    CHECK(st_tensor(f, 4) == NULL);
    CHECK(st_find(f, "__metadata__") == NULL);
    CHECK(st_find(f, "nope") == NULL);
    const bs_tensor *w = st_find(f, "w"), *h = st_find(f, "h"), *s = st_find(f, "s"), *z = st_find(f, "z");
    CHECK(w && h && s && z);
    if (w && h && s && z) {
        CHECK_INT(w->dtype, BS_DTYPE_F32);
        CHECK_INT(w->ndim, 2);
        CHECK_INT(w->shape[0], 2);
        CHECK_INT(w->shape[1], 3);
        CHECK_INT(w->nbytes, 24);
        float x;
        memcpy(&x, (const char *)w->data + 20, 4);
        CHECK_NEAR(x, 10.0, 0);
        CHECK_INT(h->dtype, BS_DTYPE_F16);
        CHECK_INT(h->shape[0], 4);
        uint16_t u;
        memcpy(&u, (const char *)h->data + 6, 2);
        CHECK_NEAR(bs_f16_to_f32(u), 3.25, 0);
        CHECK_INT(s->dtype, BS_DTYPE_BF16);
        CHECK_INT(s->ndim, 0);
        CHECK_INT(bs_tensor_numel(s), 1);
        memcpy(&u, s->data, 2);
        CHECK_NEAR(bs_bf16_to_f32(u), -7.0, 0);
        CHECK_INT(z->nbytes, 0);
        CHECK_INT(z->shape[0], 0);
        CHECK_INT((const char *)h->data - (const char *)w->data, 24);
    }
    st_close(f);
}

static void test_header_errors(void) {
    bytes b = {0};
    st_file *f = NULL;
    bs_error err = {0};
    st_bytes(&b, "{}", NULL, 0);
    memcpy(b.p, &(uint64_t){4096}, 8);
    const char *path = scratch_write("hlen.safetensors", b.p, b.len);
    CHECK_INT(st_open(path, &f, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "header length 4096 runs past the end"));
    memcpy(b.p, &(uint64_t){UINT64_MAX}, 8);
    path = scratch_write("hhuge.safetensors", b.p, b.len);
    CHECK_INT(st_open(path, &f, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "100 MB"));
    path = scratch_write("short.safetensors", b.p, 5);
    CHECK_INT(st_open(path, &f, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "too small"));
    CHECK(f == NULL);
    bytes_free(&b);

    expect_fail("json.safetensors", "{\"w\": {\"dtype\": \"F32\",, }}", 0, BS_EFORMAT,
                "malformed JSON header at line 1 column");
    expect_fail("notobj.safetensors", "[1, 2]", 0, BS_EFORMAT, "not an object");
    expect_fail("meta.safetensors", "{\"__metadata__\": {\"format\": 1}}", 0, BS_EFORMAT,
                "__metadata__ value of 'format' is not a string");
}

static void test_entry_errors(void) {
    expect_fail("nooffsets.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, BS_EFORMAT,
                "tensor 'w': missing \"data_offsets\"");
    expect_fail("nodtype.safetensors", "{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, BS_EFORMAT,
                "tensor 'w': missing or non-string \"dtype\"");
    expect_fail("noshape.safetensors", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8, BS_EFORMAT,
                "tensor 'w': missing or non-array \"shape\"");
    expect_fail("negdim.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}",
                8, BS_EFORMAT, "shape[0] is not a non-negative integer");
    expect_fail("range.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                8, BS_EFORMAT, "data_offsets [8, 16] are outside the 8-byte data buffer");
    expect_fail("backwards.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 0]}}",
                8, BS_EFORMAT, "outside");
    expect_fail("mismatch.safetensors", "{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
                8, BS_EFORMAT, "span 8 bytes but shape and dtype F32 need 12");
    expect_fail("dtype.safetensors", "{\"w\": {\"dtype\": \"F17\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
                BS_EFORMAT, "tensor 'w': unknown dtype 'F17'");
    expect_fail("i64.safetensors", "{\"ids\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8,
                BS_EUNSUPPORTED, "tensor 'ids' has dtype I64");
    expect_fail("dims.safetensors",
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4,
                BS_EUNSUPPORTED, "tensor 'w' has 5 dims");
    expect_fail("overflow.safetensors",
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 4]}}", 4,
                BS_EFORMAT, "overflows");
    expect_fail("dupkey.safetensors",
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                8, BS_EFORMAT, "duplicate");
    expect_fail("overlap.safetensors",
                "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                " \"b\": {\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [6, 10]}}",
                10, BS_EFORMAT, "tensors 'a' and 'b' overlap");
}

/* ---- sharded sets ---- */

static const char *shard1_json = "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                                 " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}";
static const char *shard2_json = "{\"c\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}";

/* A directory holding both shards and the given index.json body. */
static const char *sharded_dir(const char *dir, const char *index_json) {
    static const unsigned char data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    char name[256];
    scratch_mkdir(dir);
    snprintf(name, sizeof name, "%s/model-00001-of-00002.safetensors", dir);
    write_st(name, shard1_json, data, 8);
    snprintf(name, sizeof name, "%s/model-00002-of-00002.safetensors", dir);
    write_st(name, shard2_json, data, 4);
    snprintf(name, sizeof name, "%s/model.safetensors.index.json", dir);
    scratch_write(name, index_json, strlen(index_json));
    return scratch_path(dir);
}

static void test_sharded_set(void) {
    const char *dir = sharded_dir("sharded", "{\"metadata\": {\"total_size\": 12}, \"weight_map\": {"
                                             "\"c\": \"model-00002-of-00002.safetensors\","
                                             "\"a\": \"model-00001-of-00002.safetensors\","
                                             "\"b\": \"model-00001-of-00002.safetensors\"}}");
    st_set *s = NULL;
    bs_error err = {0};
    CHECK_OK(st_set_open_dir(dir, &s, &err), &err);
    if (!s) return;
    CHECK_INT(st_set_tensor_count(s), 3);
    CHECK_STR(st_set_tensor(s, 0)->name, "a");
    CHECK_STR(st_set_tensor(s, 2)->name, "c");
    CHECK(st_set_tensor(s, 3) == NULL);
    const bs_tensor *b = st_set_find(s, "b"), *c = st_set_find(s, "c");
    CHECK(b && c && !st_set_find(s, "d"));
    if (b && c) {
        CHECK_INT(((const unsigned char *)b->data)[0], 5);
        CHECK_INT(c->dtype, BS_DTYPE_BF16);
        CHECK_INT(((const unsigned char *)c->data)[3], 4);
    }
    const char *pa = st_set_tensor_path(s, "a"), *pc = st_set_tensor_path(s, "c");
    CHECK(pa && strstr(pa, "sharded/model-00001-of-00002.safetensors"));
    CHECK(pc && strstr(pc, "sharded/model-00002-of-00002.safetensors"));
    CHECK(st_set_tensor_path(s, "d") == NULL);
    st_set_close(s);
}

static void test_single_file_dir(void) {
    unsigned char data[34];
    rich_data(data);
    scratch_mkdir("single");
    write_st("single/model.safetensors", rich_json, data, sizeof data);
    st_set *s = NULL;
    bs_error err = {0};
    CHECK_OK(st_set_open_dir(scratch_path("single"), &s, &err), &err);
    if (!s) return;
    CHECK_INT(st_set_tensor_count(s), 4);
    const bs_tensor *w = st_set_find(s, "w");
    CHECK(w && w->nbytes == 24);
    const char *p = st_set_tensor_path(s, "w");
    CHECK(p && strstr(p, "single/model.safetensors"));
    st_set_close(s);
}

static void expect_set_fail(const char *dir, bs_status st, const char *want1, const char *want2) {
    st_set *s = NULL;
    bs_error err = {0};
    CHECK_INT(st_set_open_dir(dir, &s, &err), st);
    CHECK(s == NULL);
    if (!strstr(err.msg, want1) || !strstr(err.msg, want2)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\" or \"%s\"\n", err.msg, want1, want2);
        test_failed_ = 1;
    }
}

static void test_set_errors(void) {
    scratch_mkdir("empty");
    expect_set_fail(scratch_path("empty"), BS_ENOTFOUND, "empty", "no model.safetensors or model.safetensors.index.json");
    expect_set_fail(sharded_dir("missingshard", "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                                                "\"x\": \"model-00003-of-00003.safetensors\"}}"),
                    BS_EIO, "missingshard/model.safetensors.index.json: shard 'model-00003-of-00003.safetensors' listed for tensor 'x'",
                    "cannot open");
    expect_set_fail(sharded_dir("notinshard", "{\"weight_map\": {\"c\": \"model-00001-of-00002.safetensors\"}}"),
                    BS_EFORMAT, "notinshard/model.safetensors.index.json",
                    "tensor 'c' is mapped to shard 'model-00001-of-00002.safetensors' but is not in it");
    expect_set_fail(sharded_dir("traversal", "{\"weight_map\": {\"a\": \"../sharded/model-00001-of-00002.safetensors\"}}"),
                    BS_EFORMAT, "traversal/model.safetensors.index.json", "is not a plain file name");
    expect_set_fail(sharded_dir("dotdot", "{\"weight_map\": {\"a\": \"..\"}}"), BS_EFORMAT, "dotdot", "not a plain file name");
    expect_set_fail(sharded_dir("badindex", "{\"weight_map\": [}"), BS_EFORMAT, "badindex/model.safetensors.index.json",
                    "malformed JSON at line 1");
    expect_set_fail(sharded_dir("nomap", "{\"metadata\": {}}"), BS_EFORMAT, "nomap", "\"weight_map\"");
    expect_set_fail(sharded_dir("badentry", "{\"weight_map\": {\"a\": 3}}"), BS_EFORMAT, "badentry",
                    "weight_map entry for tensor 'a' is not a string");
    expect_set_fail(sharded_dir("badshard", "{\"weight_map\": {\"a\": \"model.safetensors.index.json\"}}"), BS_EFORMAT,
                    "badshard/model.safetensors.index.json: shard", "header length");
}

/* ---- mini-fuzz ---- */

static bs_status open_close_safetensors(const char *path, bs_error *err) {
    st_file *f = NULL;
    bs_status s = st_open(path, &f, err);
    if (s == BS_OK) st_close(f);
    return s;
}

static void test_truncated_everywhere(void) {
    unsigned char data[34];
    rich_data(data);
    bytes b = {0};
    st_bytes(&b, rich_json, data, sizeof data);
    check_every_truncation_fails(&b, "trunc.safetensors", open_close_safetensors);
    bytes_free(&b);
}

static void test_byte_flips(void) {
    unsigned char data[34];
    rich_data(data);
    bytes b = {0};
    st_bytes(&b, rich_json, data, sizeof data);
    unsigned char *copy = malloc(b.len);
    uint64_t rng = 99;
    unsigned sink = 0;
    for (int iter = 0; iter < 300; iter++) {
        memcpy(copy, b.p, b.len);
        for (int k = 0; k < 2; k++) {
            size_t at = scratch_rand(&rng) % (b.len - sizeof data);
            copy[at] = "0123456789[]{},:\" x\xff"[scratch_rand(&rng) % 20];
        }
        st_file *f = NULL;
        bs_error err = {0};
        if (st_open(scratch_write("flip.safetensors", copy, b.len), &f, &err) == BS_OK) {
            for (uint64_t i = 0; i < st_tensor_count(f); i++) {
                const bs_tensor *t = st_tensor(f, i);
                if (t->nbytes) sink += ((const unsigned char *)t->data)[t->nbytes - 1];
            }
            st_close(f);
        } else {
            CHECK(err.msg[0] != '\0');
        }
    }
    (void)sink;
    free(copy);
    bytes_free(&b);
}

int main(void) {
    RUN(test_rich_file);
    RUN(test_header_errors);
    RUN(test_entry_errors);
    RUN(test_sharded_set);
    RUN(test_single_file_dir);
    RUN(test_set_errors);
    RUN(test_truncated_everywhere);
    RUN(test_byte_flips);
    TEST_MAIN_END();
}
