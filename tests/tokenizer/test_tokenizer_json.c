/* Tests for the tokenizer.json loader: files rebuilt from fixture GGUF
 * vocabularies must reproduce llama.cpp's test vectors, plus small hand-written
 * tokenizer.json cases for each feature and malformed inputs. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/test.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "vocab_cases.h"

static char tmpdir[64];

static const char *tmp_path(const char *name) {
    static char path[256];
    if (!tmpdir[0]) {
        strcpy(tmpdir, "/tmp/basalt-tok-XXXXXX");
        if (!mkdtemp(tmpdir)) return NULL;
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

static void write_file(const char *name, const char *text) {
    const char *path = tmp_path(name);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) {
        test_failed_ = 1;
        return;
    }
    fputs(text, f);
    fclose(f);
}

static void remove_file(const char *name) { unlink(tmp_path(name)); }

/* Open tokenizer.json text (and optional tokenizer_config.json text) through tok_open_hf. */
static bs_status open_text(const char *json, const char *config, bs_tokenizer **t, bs_error *err) {
    write_file("tokenizer.json", json);
    if (config) write_file("tokenizer_config.json", config);
    bs_status s = tok_open_hf(tmpdir, t, err);
    remove_file("tokenizer.json");
    remove_file("tokenizer_config.json");
    return s;
}

/* Encode text and compare with the expected ids (terminated by -1). */
static void check_ids(const bs_tokenizer *t, const char *text, int flags, const int32_t *expect) {
    int32_t *ids = NULL;
    size_t n = 0, n_expect = 0;
    bs_error err = {0};
    while (expect[n_expect] >= 0) n_expect++;
    CHECK_OK(tok_encode(t, text, strlen(text), flags, &ids, &n, &err), &err);
    int same = n == n_expect && (n == 0 || memcmp(ids, expect, n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "  encoding \"%s\" (flags %d):\n", text, flags);
        print_ids("expected", expect, n_expect);
        print_ids("got     ", ids, n);
        test_failed_ = 1;
    }
    free(ids);
}

static void check_decode(const bs_tokenizer *t, const int32_t *ids, size_t n, int flags, const char *expect) {
    char *text = NULL;
    size_t len = 0;
    bs_error err = {0};
    CHECK_OK(tok_decode(t, ids, n, flags, &text, &len, &err), &err);
    CHECK_STR(text, expect);
    free(text);
}

/* --------------------------------------- tokenizer.json from fixture GGUFs --- */

typedef struct {
    int32_t left, right, token;
    float score;
} spm_merge;

static int spm_merge_order(const void *pa, const void *pb) {
    const spm_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->token != b->token) return a->token < b->token ? -1 : 1;
    if (a->left != b->left) return a->left < b->left ? -1 : 1;
    return a->right < b->right ? -1 : a->right > b->right;
}

/* Merges the way transformers' SentencePieceExtractor derives them from a
 * SentencePiece model: every split of a piece into two pieces, best score first. */
static json_t *spm_merges(const bs_tokenizer *t, const gguf_value *scores) {
    int32_t n = tok_vocab_size(t);
    size_t cap = 1 << 16, count = 0;
    spm_merge *m = malloc(cap * sizeof *m);
    for (int32_t id = 0; id < n && m; id++) {
        const char *s = tok_token_text(t, id);
        size_t len = strlen(s);
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)s[k] & 0xC0) == 0x80) continue; /* split only between characters */
            int32_t l = tok_token_id(t, s, k), r = tok_token_id(t, s + k, len - k);
            if (l < 0 || r < 0) continue;
            if (count == cap) m = realloc(m, (cap *= 2) * sizeof *m);
            if (!m) break;
            m[count++] = (spm_merge){l, r, id, (float)gguf_array_f64(scores, (uint64_t)id)};
        }
    }
    json_t *arr = json_array();
    if (!m) return arr;
    qsort(m, count, sizeof *m, spm_merge_order);
    for (size_t i = 0; i < count; i++)
        json_array_append_new(arr, json_pack("[ss]", tok_token_text(t, m[i].left), tok_token_text(t, m[i].right)));
    free(m);
    return arr;
}

/* gpt-2 as ByteLevel BPE; pairs=1 writes merges as ["a","b"], else "a b". */
static json_t *gpt2_json(const bs_tokenizer *t, const gguf_file *g, int pairs) {
    json_t *vocab = json_object(), *merges = json_array();
    for (int32_t id = 0; id < tok_vocab_size(t); id++)
        if (strcmp(tok_token_text(t, id), "<|endoftext|>") != 0)
            json_object_set_new(vocab, tok_token_text(t, id), json_integer(id));
    const gguf_value *m = gguf_get(g, "tokenizer.ggml.merges");
    for (uint64_t i = 0; m && i < m->arr.count; i++) {
        const gguf_str ms = m->arr.strs[i];
        if (!pairs) {
            json_array_append_new(merges, json_stringn(ms.ptr, ms.len));
            continue;
        }
        const char *sp = ms.len > 1 ? memchr(ms.ptr + 1, ' ', ms.len - 1) : NULL;
        if (sp)
            json_array_append_new(merges, json_pack("[s#s#]", ms.ptr, (int)(sp - ms.ptr), sp + 1,
                                                    (int)(ms.len - (size_t)(sp - ms.ptr) - 1)));
    }
    return json_pack("{s:[{s:i,s:s,s:b,s:b,s:b}],s:n,s:{s:s,s:b,s:b},s:{s:s},s:{s:s,s:o,s:o}}",
                     "added_tokens", "id", 50256, "content", "<|endoftext|>", "special", 1, "lstrip", 0, "rstrip", 0,
                     "normalizer", "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1,
                     "decoder", "type", "ByteLevel", "model", "type", "BPE", "vocab", vocab, "merges", merges);
}

/* llama-spm as HF writes Llama 2: Prepend/Replace normalizer, byte fallback. */
static json_t *spm_json(const bs_tokenizer *t, const gguf_file *g) {
    json_t *vocab = json_object(), *added = json_array();
    for (int32_t id = 0; id < tok_vocab_size(t); id++) {
        json_object_set_new(vocab, tok_token_text(t, id), json_integer(id));
        if (id <= 2)
            json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", id, "content", tok_token_text(t, id), "special", 1));
    }
    json_t *merges = spm_merges(t, gguf_get(g, "tokenizer.ggml.scores"));
    json_t *normalizer = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]}", "type", "Sequence", "normalizers", "type",
                                   "Prepend", "prepend", "\xE2\x96\x81", "type", "Replace", "pattern", "String", " ",
                                   "content", "\xE2\x96\x81");
    json_t *decoder = json_pack("{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s},{s:s,s:s,s:i,s:i}]}", "type", "Sequence",
                                "decoders", "type", "Replace", "pattern", "String", "\xE2\x96\x81", "content", " ", "type",
                                "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0);
    return json_pack("{s:o,s:o,s:n,s:o,s:{s:s,s:o,s:o,s:b,s:s}}", "added_tokens", added, "normalizer", normalizer,
                     "pre_tokenizer", "decoder", decoder, "model", "type", "BPE", "vocab", vocab, "merges", merges,
                     "byte_fallback", 1, "unk_token", "<unk>");
}

static void check_rebuilt(const char *model, int variant) {
    const char *shared = test_shared_dir();
    if (!shared) SKIP("../shared fixtures absent (set BASALT_SHARED)");
    vocab_cases vc;
    bs_error err = {0};
    CHECK_OK(vocab_cases_load(shared, model, &vc, &err), &err);
    gguf_file *g = NULL;
    bs_tokenizer *gt = NULL, *ht = NULL;
    CHECK_OK(gguf_open(vc.gguf_path, &g, &err), &err);
    if (g) CHECK_OK(tok_open_gguf(g, &gt, &err), &err);
    if (gt) {
        json_t *root = strcmp(model, "gpt-2") == 0 ? gpt2_json(gt, g, variant) : spm_json(gt, g);
        CHECK(root != NULL);
        if (root && json_dump_file(root, tmp_path("tokenizer.json"), JSON_COMPACT) == 0)
            CHECK_OK(tok_open_hf(tmpdir, &ht, &err), &err);
        json_decref(root);
        remove_file("tokenizer.json");
    }
    if (ht) {
        int passed = vocab_cases_check(ht, &vc, model);
        fprintf(stderr, "  %s via tokenizer.json: %d/%d cases match\n", model, passed, vc.n);
        CHECK_INT(passed, vc.n);
        CHECK_INT(tok_vocab_size(ht), tok_vocab_size(gt));
    }
    tok_close(ht);
    tok_close(gt);
    gguf_close(g);
    vocab_cases_free(&vc);
}

static void test_gpt2_json_string_merges(void) { check_rebuilt("gpt-2", 0); }
static void test_gpt2_json_pair_merges(void) { check_rebuilt("gpt-2", 1); }
static void test_llama_spm_json(void) { check_rebuilt("llama-spm", 0); }

/* ------------------------------------------------------ hand-written cases --- */

static void test_merge_with_space(void) {
    /* Pairs can hold a space, which the "a b" string form cannot express. */
    const char *json = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\" \":1,\"b\":2,\"a \":3,\"a b\":4},"
                       "\"merges\":[[\"a\",\" \"],[\"a \",\"b\"]]}}";
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_OK(open_text(json, NULL, &t, &err), &err);
    if (!t) return;
    check_ids(t, "a b", 0, (const int32_t[]){4, -1});
    check_ids(t, "a  b", 0, (const int32_t[]){3, 1, 2, -1});
    check_decode(t, (const int32_t[]){4, 1}, 2, 0, "a b ");
    tok_close(t);
}

static void test_ignore_merges(void) {
    /* "abc" is a token but no merge chain reaches it: only ignore_merges finds it. */
    const char *fmt = "{\"model\":{\"type\":\"BPE\",\"ignore_merges\":%s,"
                      "\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"bc\":3,\"abc\":4},\"merges\":[\"b c\"]}}";
    char json[512];
    bs_error err = {0};
    for (int ignore = 0; ignore < 2; ignore++) {
        bs_tokenizer *t = NULL;
        snprintf(json, sizeof json, fmt, ignore ? "true" : "false");
        CHECK_OK(open_text(json, NULL, &t, &err), &err);
        if (!t) continue;
        check_ids(t, "abc", 0, ignore ? (const int32_t[]){4, -1} : (const int32_t[]){0, 3, -1});
        check_ids(t, "abca", 0, (const int32_t[]){0, 3, 0, -1});
        tok_close(t);
    }
}

static void test_nfc_normalizer(void) {
    const char *fmt = "{\"normalizer\":%s,\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xC3\xA9\":0,\"e\":1,\"\xCC\x81\":2},"
                      "\"merges\":[]}}";
    const char *normalizers[] = {"null", "{\"type\":\"NFC\"}",
                                 "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"}]}"};
    char json[512];
    bs_error err = {0};
    for (int k = 0; k < 3; k++) {
        bs_tokenizer *t = NULL;
        snprintf(json, sizeof json, fmt, normalizers[k]);
        CHECK_OK(open_text(json, NULL, &t, &err), &err);
        if (!t) continue;
        check_ids(t, "\xC3\xA9", 0, (const int32_t[]){0, -1});
        check_ids(t, "e\xCC\x81", 0, k ? (const int32_t[]){0, -1} : (const int32_t[]){1, 2, -1});
        tok_close(t);
    }
}

static void test_added_tokens(void) {
    const char *json =
        "{\"added_tokens\":["
        "{\"id\":20,\"content\":\"<sp>\",\"special\":true,\"lstrip\":false,\"rstrip\":false},"
        "{\"id\":21,\"content\":\"<user>\",\"special\":false,\"lstrip\":false,\"rstrip\":false},"
        "{\"id\":22,\"content\":\"<ls>\",\"special\":true,\"lstrip\":true,\"rstrip\":false},"
        "{\"id\":23,\"content\":\"<rs>\",\"special\":true,\"lstrip\":false,\"rstrip\":true},"
        "{\"id\":24,\"content\":\"<user>x\",\"special\":false}],"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"<\":2,\">\":3,\"s\":4,\"p\":5,\" \":6,\"u\":7,"
        "\"e\":8,\"r\":9,\"l\":10,\"x\":11},\"merges\":[]}}";
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_OK(open_text(json, NULL, &t, &err), &err);
    if (!t) return;
    /* special tokens are text unless TOK_PARSE_SPECIAL; user-defined ones always match, longest first */
    check_ids(t, "a<sp>b", 0, (const int32_t[]){0, 2, 4, 5, 3, 1, -1});
    check_ids(t, "a<sp>b", TOK_PARSE_SPECIAL, (const int32_t[]){0, 20, 1, -1});
    check_ids(t, "a<user>b", 0, (const int32_t[]){0, 21, 1, -1});
    check_ids(t, "a<user>xb", 0, (const int32_t[]){0, 24, 1, -1});
    check_ids(t, "a  <ls> b", TOK_PARSE_SPECIAL, (const int32_t[]){0, 22, 6, 1, -1});
    check_ids(t, "a <rs>  b", TOK_PARSE_SPECIAL, (const int32_t[]){0, 6, 23, 1, -1});
    check_ids(t, "a  <ls> b", 0, (const int32_t[]){0, 6, 6, 2, 10, 4, 3, 6, 1, -1});
    check_decode(t, (const int32_t[]){0, 20, 1}, 3, 0, "ab");
    check_decode(t, (const int32_t[]){0, 20, 1}, 3, TOK_DECODE_SPECIAL, "a<sp>b");
    check_decode(t, (const int32_t[]){0, 21, 1}, 3, 0, "a<user>b");
    CHECK(tok_is_eog(t, 20) == 0);
    tok_close(t);
}

/* A byte-level tokenizer.json: 256 byte tokens, "hi" merged, Llama 3 specials. */
static char *llama3_style_json(int with_template) {
    bs_tokenizer *bytes = NULL;
    bs_error err = {0};
    if (tok_open_byte_level(&bytes, &err) != BS_OK) return NULL;
    json_t *vocab = json_object();
    for (int32_t b = 0; b < 256; b++) json_object_set_new(vocab, tok_token_text(bytes, b), json_integer(b));
    json_object_set_new(vocab, "hi", json_integer(256));
    tok_close(bytes);
    json_t *post = with_template
        ? json_pack("{s:s,s:[{s:s,s:b,s:b,s:b},{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:{s:{s:s,s:[i],s:[s]}}}]}",
                    "type", "Sequence", "processors", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0,
                    "use_regex", 1, "type", "TemplateProcessing", "single", "SpecialToken", "id",
                    "<|begin_of_text|>", "type_id", 0, "Sequence", "id", "A", "type_id", 0, "special_tokens",
                    "<|begin_of_text|>", "id", "<|begin_of_text|>", "ids", 300, "tokens", "<|begin_of_text|>")
        : json_null();
    json_t *root = json_pack(
        "{s:[{s:i,s:s,s:b},{s:i,s:s,s:b}],s:n,s:{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b}]},s:o,s:{s:s},"
        "s:{s:s,s:b,s:o,s:[s]}}",
        "added_tokens", "id", 300, "content", "<|begin_of_text|>", "special", 1, "id", 301, "content", "<|eot_id|>",
        "special", 1, "normalizer", "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern",
        "Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
        "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 0,
        "post_processor", post, "decoder", "type", "ByteLevel", "model", "type", "BPE", "ignore_merges", 1, "vocab",
        vocab, "merges", "h i");
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return text;
}

static void test_template_processing_bos(void) {
    char *json = llama3_style_json(1);
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK(json != NULL);
    CHECK_OK(open_text(json, NULL, &t, &err), &err);
    if (t) {
        CHECK_INT(tok_bos_id(t), 300);
        check_ids(t, "hi", TOK_ADD_SPECIAL, (const int32_t[]){300, 256, -1});
        check_ids(t, "hi", 0, (const int32_t[]){256, -1});
        check_ids(t, "<|eot_id|>hi", TOK_PARSE_SPECIAL, (const int32_t[]){301, 256, -1});
        CHECK(tok_is_eog(t, 301));
        check_decode(t, (const int32_t[]){300, 256, 301}, 3, 0, "hi");
        check_decode(t, (const int32_t[]){300, 256, 301}, 3, TOK_DECODE_SPECIAL, "<|begin_of_text|>hi<|eot_id|>");
        tok_close(t);
        t = NULL;
    }
    /* tokenizer_config.json add_bos_token overrides the template */
    CHECK_OK(open_text(json, "{\"add_bos_token\":false,\"eos_token\":{\"content\":\"<|eot_id|>\"}}", &t, &err), &err);
    if (t) {
        check_ids(t, "hi", TOK_ADD_SPECIAL, (const int32_t[]){256, -1});
        CHECK_INT(tok_eos_id(t), 301);
        tok_close(t);
        t = NULL;
    }
    free(json);
    json = llama3_style_json(0);
    CHECK_OK(open_text(json, NULL, &t, &err), &err);
    if (t) {
        CHECK_INT(tok_bos_id(t), -1);
        check_ids(t, "hi", TOK_ADD_SPECIAL, (const int32_t[]){256, -1});
        tok_close(t);
    }
    free(json);
}

static void test_generation_config_stops(void) {
    char *json = llama3_style_json(1);
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    write_file("generation_config.json", "{\"eos_token_id\":[104, 301]}");
    CHECK_OK(open_text(json, NULL, &t, &err), &err);
    remove_file("generation_config.json");
    if (t) {
        CHECK(tok_is_eog(t, 104));
        CHECK(tok_is_eog(t, 301));
        CHECK(!tok_is_eog(t, 105));
        CHECK_INT(tok_eos_id(t), 104);
        tok_close(t);
    }
    free(json);
}

/* ------------------------------------------------------------- bad input --- */

static void expect_failure(const char *json, bs_status status, const char *needle) {
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_INT(open_text(json, NULL, &t, &err), status);
    CHECK(t == NULL);
    if (!strstr(err.msg, needle)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err.msg, needle);
        test_failed_ = 1;
    }
    tok_close(t);
}

static void test_bad_json(void) {
    expect_failure("{\"model\": {\"type\": \"BPE\",\n  \"vocab\": {\"a\": 0,}}}", BS_EFORMAT, "line 2 column");
    expect_failure("{\"model\": {\"type\": \"BPE\", \"merges\": []}}", BS_ENOTFOUND, "model.vocab");
    expect_failure("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a c\"]}}",
                   BS_EFORMAT, "unknown token \"c\"");
    expect_failure("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]}}",
                   BS_EFORMAT, "not a token");
    expect_failure("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", BS_EFORMAT,
                   "no separating space");
    expect_failure("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", BS_EFORMAT, "model.vocab[\"a\"]");
    expect_failure("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", BS_EUNSUPPORTED, "Unigram");
    expect_failure("{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                   BS_EUNSUPPORTED, "Lowercase");
    expect_failure("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"},"
                   " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                   BS_EFORMAT, "regex");
    expect_failure("[1, 2", BS_EFORMAT, "line 1");

    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_INT(tok_open_hf("/nonexistent-basalt-dir", &t, &err), BS_EIO);
    CHECK(t == NULL);
}

static void test_invalid_utf8_chars_model(void) {
    /* A character-level model with NFC must pass invalid bytes through unharmed. */
    const char *json = "{\"normalizer\":{\"type\":\"NFC\"},\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,"
                       "\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"<0xFF>\":1,\"<0xC3>\":2,\"a\":3},\"merges\":[]}}";
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_OK(open_text(json, NULL, &t, &err), &err);
    if (!t) return;
    check_ids(t, "a\xFF\xC3", 0, (const int32_t[]){3, 1, 2, -1});
    check_ids(t, "b", 0, (const int32_t[]){0, -1});
    check_decode(t, (const int32_t[]){3, 1, 2}, 3, 0, "a\xFF\xC3");
    tok_close(t);
}

int main(void) {
    RUN(test_gpt2_json_string_merges);
    RUN(test_gpt2_json_pair_merges);
    RUN(test_llama_spm_json);
    RUN(test_merge_with_space);
    RUN(test_ignore_merges);
    RUN(test_nfc_normalizer);
    RUN(test_added_tokens);
    RUN(test_template_processing_bos);
    RUN(test_generation_config_stops);
    RUN(test_bad_json);
    RUN(test_invalid_utf8_chars_model);
    if (tmpdir[0]) rmdir(tmpdir);
    TEST_MAIN_END();
}
