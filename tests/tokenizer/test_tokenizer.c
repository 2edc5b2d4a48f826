/* Tests for tokenizer/: the byte-level demo tokenizer, GGUF metadata rules
 * (BOS/EOS, end of generation, special and user-defined tokens), decoding,
 * the streaming decoder, encoding speed and malformed input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/log.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"

static bs_tokenizer *open_fixture(const char *model) {
    const char *shared = test_shared_dir();
    if (!shared) return NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/vocab/ggml-vocab-%s.gguf", shared, model);
    gguf_file *g = NULL;
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_OK(gguf_open(path, &g, &err), &err);
    if (g) CHECK_OK(tok_open_gguf(g, &t, &err), &err);
    gguf_close(g);
    return t;
}

static int encode_eq(const bs_tokenizer *t, const char *text, size_t len, int flags, const int32_t *expect,
                     size_t n_expect) {
    int32_t *ids = NULL;
    size_t n = 0;
    bs_error err = {0};
    if (tok_encode(t, text, len, flags, &ids, &n, &err) != BS_OK) {
        fprintf(stderr, "  encode failed: %s\n", err.msg);
        return 0;
    }
    int same = n == n_expect && (n == 0 || memcmp(ids, expect, n * sizeof *ids) == 0);
    if (!same) {
        fprintf(stderr, "  \"%.*s\" (flags %d) gave %zu ids:", (int)len, text, flags, n);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return same;
}
#define ENCODES_TO(t, text, flags, ...)                                                                 \
    CHECK(encode_eq(t, text, strlen(text), flags, (const int32_t[]){__VA_ARGS__},                      \
                    sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)))

static char *decode(const bs_tokenizer *t, const int32_t *ids, size_t n, int flags) {
    char *text = NULL;
    size_t len;
    bs_error err = {0};
    CHECK_OK(tok_decode(t, ids, n, flags, &text, &len, &err), &err);
    return text;
}

static void test_byte_level(void) {
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_OK(tok_open_byte_level(&t, &err), &err);
    if (!t) return;
    CHECK_INT(tok_vocab_size(t), 257);
    CHECK_INT(tok_eos_id(t), 256);
    CHECK_INT(tok_bos_id(t), -1);
    CHECK(tok_is_eog(t, 256));
    CHECK(!tok_is_eog(t, 10));
    CHECK_STR(tok_token_text(t, 32), "\xC4\xA0"); /* ' ' is spelled U+0120 */
    CHECK_STR(tok_token_text(t, 256), "<|endoftext|>");
    CHECK(tok_token_text(t, 257) == NULL);
    ENCODES_TO(t, "hi there", TOK_ADD_SPECIAL, 'h', 'i', ' ', 't', 'h', 'e', 'r', 'e');
    ENCODES_TO(t, "a<|endoftext|>", TOK_PARSE_SPECIAL, 'a', 256);
    char *s = decode(t, (const int32_t[]){'o', 'k', 256}, 3, TOK_DECODE_SPECIAL);
    CHECK_STR(s, "ok<|endoftext|>");
    free(s);
    s = decode(t, (const int32_t[]){'o', 'k', 256}, 3, 0);
    CHECK_STR(s, "ok");
    free(s);
    /* empty input: no ids, but still an allocated array */
    int32_t *ids = NULL;
    size_t n = 1;
    CHECK_OK(tok_encode(t, "", 0, 0, &ids, &n, &err), &err);
    CHECK_INT(n, 0);
    CHECK(ids != NULL);
    free(ids);
    tok_close(t);
}

static void test_gguf_metadata(void) {
    bs_tokenizer *gpt2 = open_fixture("gpt-2"), *spm = open_fixture("llama-spm");
    if (!test_shared_dir()) SKIP("../shared fixtures absent (set BASALT_SHARED)");
    if (!gpt2 || !spm) {
        tok_close(gpt2), tok_close(spm);
        return;
    }
    CHECK_INT(tok_vocab_size(gpt2), 50257);
    CHECK_INT(tok_bos_id(gpt2), 50256);
    CHECK_INT(tok_eos_id(gpt2), 50256);
    CHECK(tok_is_eog(gpt2, 50256));
    /* gpt-2 adds no BOS; llama-spm has add_bos_token = true */
    ENCODES_TO(gpt2, "Hello", TOK_ADD_SPECIAL, 15496);
    ENCODES_TO(spm, "Hello", TOK_ADD_SPECIAL, 1, 15043);
    ENCODES_TO(spm, "Hello", 0, 15043);
    /* control tokens only with TOK_PARSE_SPECIAL; the text after one gets the space prefix */
    ENCODES_TO(spm, "<s>Hello", TOK_PARSE_SPECIAL, 1, 15043);
    ENCODES_TO(gpt2, "<|endoftext|>", TOK_PARSE_SPECIAL, 50256);
    int32_t *ids = NULL;
    size_t n = 0;
    bs_error err = {0};
    CHECK_OK(tok_encode(gpt2, "<|endoftext|>", 13, 0, &ids, &n, &err), &err);
    CHECK_INT(n, 7); /* plain text without TOK_PARSE_SPECIAL */
    free(ids);
    char *s = decode(spm, (const int32_t[]){1, 15043, 2}, 3, 0);
    CHECK_STR(s, "Hello");
    free(s);
    s = decode(spm, (const int32_t[]){1, 15043, 2}, 3, TOK_DECODE_SPECIAL);
    CHECK_STR(s, "<s> Hello</s>");
    free(s);
    CHECK(tok_is_eog(spm, 2));
    CHECK(!tok_is_eog(spm, 1));
    CHECK_INT(tok_token_id(spm, "\xE2\x96\x81Hello", 8), 15043);
    CHECK_INT(tok_token_id(spm, "no such token", 13), -1);
    tok_close(gpt2);
    tok_close(spm);
}

static void test_user_defined_always_split(void) {
    /* deepseek-llm marks 'ø' (id 100002) user-defined: recognised even without TOK_PARSE_SPECIAL */
    bs_tokenizer *t = open_fixture("deepseek-llm");
    if (!test_shared_dir()) SKIP("../shared fixtures absent (set BASALT_SHARED)");
    if (!t) return;
    CHECK_INT(tok_token_id(t, "\xC3\xB8", 2), 100002);
    ENCODES_TO(t, "\xC3\xB8", 0, 100002);
    int32_t *ids = NULL;
    size_t n = 0;
    bs_error err = {0};
    CHECK_OK(tok_encode(t, "x\xC3\xB8y", 4, 0, &ids, &n, &err), &err);
    int found = 0;
    for (size_t i = 0; i < n; i++) found |= ids[i] == 100002;
    CHECK(found);
    free(ids);
    CHECK(tok_is_eog(t, 100001));
    tok_close(t);
}

static void test_decode_errors_and_invalid_utf8(void) {
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_OK(tok_open_byte_level(&t, &err), &err);
    if (!t) return;
    char *text = NULL;
    size_t len = 0;
    CHECK_INT(tok_decode(t, (const int32_t[]){104, 257}, 2, 0, &text, &len, &err), BS_ERANGE);
    CHECK(strstr(err.msg, "257") != NULL);
    CHECK(text == NULL);
    CHECK_INT(tok_decode(t, (const int32_t[]){-1}, 1, 0, &text, &len, &err), BS_ERANGE);
    /* invalid UTF-8 is encoded byte by byte and decodes back to the same bytes */
    const char bad[] = "ok \xFF\xFE\xC3 z\xE2\x82";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(tok_encode(t, bad, sizeof bad - 1, 0, &ids, &n, &err), &err);
    CHECK_INT(n, sizeof bad - 1);
    CHECK_OK(tok_decode(t, ids, n, 0, &text, &len, &err), &err);
    CHECK_INT(len, sizeof bad - 1);
    CHECK(text && memcmp(text, bad, len) == 0);
    free(text), free(ids);
    tok_close(t);

    /* Vocabularies that spell every byte round-trip; falcon, starcoder and deepseek-llm
     * have no token for bytes such as 0xFF (never valid UTF-8) and must merely cope. */
    const char *models[] = {"gpt-2", "llama-spm", "phi-3", "deepseek-llm", "falcon", "starcoder"};
    for (int m = 0; m < 6 && test_shared_dir(); m++) {
        bs_tokenizer *ft = open_fixture(models[m]);
        if (!ft) continue;
        ids = NULL, text = NULL;
        CHECK_OK(tok_encode(ft, bad, sizeof bad - 1, TOK_PARSE_SPECIAL, &ids, &n, &err), &err);
        CHECK_OK(tok_decode(ft, ids, n, 0, &text, &len, &err), &err);
        if (m < 3 && (len != sizeof bad - 1 || !text || memcmp(text, bad, len) != 0)) {
            fprintf(stderr, "  %s: invalid UTF-8 did not round-trip\n", models[m]);
            test_failed_ = 1;
        }
        free(text), free(ids);
        tok_close(ft);
    }
}

/* Concatenated stream output must equal tok_decode; a character split over byte
 * tokens appears only once complete. */
static void stream_matches_decode(const bs_tokenizer *t, const char *input) {
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    bs_error err = {0};
    char *whole = NULL;
    CHECK_OK(tok_encode(t, input, strlen(input), 0, &ids, &n, &err), &err);
    CHECK_OK(tok_decode(t, ids, n, 0, &whole, &len, &err), &err);
    char streamed[4096] = {0};
    size_t w = 0;
    tok_stream st;
    tok_stream_init(&st);
    for (size_t i = 0; i < n && w + 256 < sizeof streamed; i++) w += tok_stream_push(t, &st, ids[i], 0, streamed + w, 256);
    w += tok_stream_flush(t, &st, streamed + w, 256);
    CHECK_INT(st.n_tokens, n);
    CHECK_INT(w, len);
    CHECK(whole && memcmp(streamed, whole, len) == 0);
    free(whole), free(ids);
}

static void test_stream(void) {
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_OK(tok_open_byte_level(&t, &err), &err);
    if (!t) return;
    const char *llama = "\xF0\x9F\xA6\x99"; /* U+1F999, four byte tokens */
    char out[256];
    tok_stream st;
    tok_stream_init(&st);
    CHECK_INT(tok_stream_push(t, &st, 'a', 0, out, sizeof out), 1);
    CHECK(out[0] == 'a');
    for (int i = 0; i < 3; i++) CHECK_INT(tok_stream_push(t, &st, (unsigned char)llama[i], 0, out, sizeof out), 0);
    CHECK_INT(tok_stream_push(t, &st, (unsigned char)llama[3], 0, out, sizeof out), 4);
    CHECK(memcmp(out, llama, 4) == 0);
    /* an unfinished character is flushed as U+FFFD; an impossible byte becomes U+FFFD at once */
    CHECK_INT(tok_stream_push(t, &st, 0xE2, 0, out, sizeof out), 0);
    CHECK_INT(tok_stream_flush(t, &st, out, sizeof out), 3);
    CHECK(memcmp(out, "\xEF\xBF\xBD", 3) == 0);
    CHECK_INT(tok_stream_push(t, &st, 0xFF, 0, out, sizeof out), 3);
    CHECK_INT(tok_stream_push(t, &st, 256, 0, out, sizeof out), 0);
    CHECK_INT(tok_stream_push(t, &st, 256, TOK_DECODE_SPECIAL, out, sizeof out), 13);
    CHECK_INT(tok_stream_push(t, &st, 999, 0, out, sizeof out), 0);
    stream_matches_decode(t, "stream \xF0\x9F\xA6\x99 and \xE4\xBD\xA0\xE5\xA5\xBD!");
    tok_close(t);

    if (!test_shared_dir()) return;
    /* SentencePiece: byte-fallback pieces and the dropped leading space */
    bs_tokenizer *spm = open_fixture("llama-spm");
    if (spm) {
        stream_matches_decode(spm, " this is \xF0\x9F\xA6\x99.cpp and \xE1\x9E\x80\xE1\x9E\xB6");
        stream_matches_decode(spm, "Hello world");
        tok_close(spm);
    }
    bs_tokenizer *gpt2 = open_fixture("gpt-2");
    if (gpt2) {
        stream_matches_decode(gpt2, "\xF0\x9F\x9A\x80 (normal) \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F");
        tok_close(gpt2);
    }
}

static void test_encode_speed(void) {
    bs_tokenizer *gpt2 = open_fixture("gpt-2"), *spm = open_fixture("llama-spm");
    if (!test_shared_dir()) SKIP("../shared fixtures absent (set BASALT_SHARED)");
    const char *para = "The quick brown fox jumps over the lazy dog; tokenizers should be fast even on long "
                       "prompts with numbers 12345, symbols {}[]() and \xC3\xBCnicode \xE4\xBD\xA0\xE5\xA5\xBD. ";
    size_t plen = strlen(para), reps = 400;
    char *text = malloc(plen * reps + 1);
    for (size_t i = 0; i < reps; i++) memcpy(text + i * plen, para, plen);
    text[plen * reps] = 0;
    bs_tokenizer *ts[2] = {gpt2, spm};
    for (int k = 0; k < 2; k++) {
        if (!ts[k]) continue;
        int32_t *ids = NULL;
        size_t n = 0;
        bs_error err = {0};
        double t0 = bs_now();
        CHECK_OK(tok_encode(ts[k], text, plen * reps, 0, &ids, &n, &err), &err);
        double dt = bs_now() - t0;
        fprintf(stderr, "  %s: %zu bytes -> %zu tokens in %.1f ms\n", k ? "llama-spm" : "gpt-2", plen * reps, n, dt * 1e3);
        CHECK(n > 10000);
        CHECK(dt < 2.0); /* milliseconds in a normal build; generous for sanitizers */
        free(ids);
    }
    free(text);
    tok_close(gpt2), tok_close(spm);
}

/* ----------------------------------------------------- malformed GGUF files --- */

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void put_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void put_str(FILE *f, const char *s) {
    put_u64(f, strlen(s));
    fwrite(s, 1, strlen(s), f);
}

/* A vocab-only GGUF: tokenizer.ggml.model = model and a tokens array of n
 * entries, written as strings or (wrong) as u32. */
static const char *write_gguf(const char *model, int tokens_as_strings, const char *pre) {
    static char path[64];
    strcpy(path, "/tmp/basalt-tok-gguf-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) return NULL;
    const char *tokens[] = {"a", "b", "ab", "<|endoftext|>"};
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, 0);
    put_u64(f, pre ? 4 : 3);
    put_str(f, "tokenizer.ggml.model");
    put_u32(f, GGUF_TYPE_STRING);
    put_str(f, model);
    put_str(f, "tokenizer.ggml.tokens");
    put_u32(f, GGUF_TYPE_ARRAY);
    put_u32(f, tokens_as_strings ? GGUF_TYPE_STRING : GGUF_TYPE_UINT32);
    put_u64(f, 4);
    for (int i = 0; i < 4; i++) tokens_as_strings ? put_str(f, tokens[i]) : put_u32(f, (uint32_t)i);
    put_str(f, "tokenizer.ggml.merges");
    put_u32(f, GGUF_TYPE_ARRAY);
    put_u32(f, GGUF_TYPE_STRING);
    put_u64(f, 1);
    put_str(f, "a b");
    if (pre) {
        put_str(f, "tokenizer.ggml.pre");
        put_u32(f, GGUF_TYPE_STRING);
        put_str(f, pre);
    }
    fclose(f);
    return path;
}

static bs_status open_written(const char *path, bs_tokenizer **t, bs_error *err) {
    gguf_file *g = NULL;
    *t = NULL;
    bs_status s = path ? gguf_open(path, &g, err) : BS_EIO;
    if (!s) s = tok_open_gguf(g, t, err);
    gguf_close(g);
    if (path) unlink(path);
    return s;
}

static void test_bad_gguf(void) {
    bs_tokenizer *t = NULL;
    bs_error err = {0};
    CHECK_INT(open_written(write_gguf("gpt2", 0, NULL), &t, &err), BS_EFORMAT);
    CHECK(strstr(err.msg, "tokenizer.ggml.tokens") != NULL);
    CHECK(t == NULL);
    CHECK_INT(open_written(write_gguf("bert", 1, NULL), &t, &err), BS_EUNSUPPORTED);
    CHECK(strstr(err.msg, "bert") != NULL);
    CHECK(t == NULL);
    /* an unknown pre-tokenizer falls back to GPT-2's regex (with a warning) */
    CHECK_OK(open_written(write_gguf("gpt2", 1, "no-such-pre"), &t, &err), &err);
    if (t) {
        ENCODES_TO(t, "abab", 0, 2, 2);
        CHECK(tok_is_eog(t, 3) == 0); /* without token_type every token is normal text */
        tok_close(t);
    }
}

int main(void) {
    RUN(test_byte_level);
    RUN(test_gguf_metadata);
    RUN(test_user_defined_always_split);
    RUN(test_decode_errors_and_invalid_utf8);
    RUN(test_stream);
    RUN(test_encode_speed);
    RUN(test_bad_gguf);
    TEST_MAIN_END();
}
