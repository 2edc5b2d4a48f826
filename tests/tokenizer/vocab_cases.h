/* tests/tokenizer/vocab_cases.h — llama.cpp's tokenizer test vectors
 * (ggml-vocab-NAME.gguf.inp / .out) loaded for the tokenizer tests.
 * Cases in .inp are separated by "\n__ggml_vocab_test__\n" (the file ends with
 * one); .out holds one line of space-separated ids per case. */
#ifndef BASALT_TESTS_VOCAB_CASES_H
#define BASALT_TESTS_VOCAB_CASES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/test.h"
#include "base/file.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    char gguf_path[1024];
    char *inp, *outp; /* file contents; cases point into them */
    int n;
    const char *text[256];
    size_t len[256];
    int32_t *ids[256];
    size_t n_ids[256];
} vocab_cases;

static void vocab_cases_free(vocab_cases *vc) {
    for (int i = 0; i < vc->n; i++) free(vc->ids[i]);
    free(vc->inp);
    free(vc->outp);
    memset(vc, 0, sizeof *vc);
}

static bs_status vocab_cases_load(const char *shared, const char *model, vocab_cases *vc, bs_error *err) {
    static const char sep[] = "\n__ggml_vocab_test__\n";
    memset(vc, 0, sizeof *vc);
    char path[1100];
    size_t inp_len, out_len;
    snprintf(vc->gguf_path, sizeof vc->gguf_path, "%s/fixtures/vocab/ggml-vocab-%s.gguf", shared, model);
    snprintf(path, sizeof path, "%s.inp", vc->gguf_path);
    bs_status s = bs_file_read(path, &vc->inp, &inp_len, err);
    if (s) return s;
    snprintf(path, sizeof path, "%s.out", vc->gguf_path);
    s = bs_file_read(path, &vc->outp, &out_len, err);
    if (s) return s;
    char *p = vc->inp, *end = vc->inp + inp_len;
    char *line = vc->outp;
    while (p < end && vc->n < 256) {
        char *q = strstr(p, sep);
        if (!q) break;
        if (!*line) return bs_fail(err, BS_EFORMAT, "%s: fewer lines than cases", path);
        char *eol = strchr(line, '\n');
        if (eol) *eol = 0;
        int i = vc->n++;
        vc->text[i] = p;
        vc->len[i] = (size_t)(q - p);
        vc->ids[i] = malloc(strlen(line) * sizeof(int32_t) + sizeof(int32_t));
        if (!vc->ids[i]) return bs_fail(err, BS_ENOMEM, "out of memory");
        for (char *c = line; *c;) {
            char *next;
            long v = strtol(c, &next, 10);
            if (next == c) break;
            vc->ids[i][vc->n_ids[i]++] = (int32_t)v;
            c = next;
        }
        line = eol ? eol + 1 : line + strlen(line);
        p = q + strlen(sep);
    }
    return vc->n ? BS_OK : bs_fail(err, BS_EFORMAT, "%s: no cases", path);
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "      %s:", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Encode every case (no BOS, no special parsing), compare the ids, and check
 * that decoding gives the text back.  Returns the number of matching cases. */
static int vocab_cases_check(const bs_tokenizer *t, const vocab_cases *vc, const char *model) {
    int passed = 0;
    for (int i = 0; i < vc->n; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        bs_error err = {0};
        if (tok_encode(t, vc->text[i], vc->len[i], 0, &ids, &n, &err) != BS_OK) {
            fprintf(stderr, "    %s case %d: encode failed: %s\n", model, i, err.msg);
            continue;
        }
        int ok = n == vc->n_ids[i] && (n == 0 || memcmp(ids, vc->ids[i], n * sizeof *ids) == 0);
        if (!ok) {
            fprintf(stderr, "    %s case %d \"%.*s\": ids differ\n", model, i, (int)vc->len[i], vc->text[i]);
            print_ids("expected", vc->ids[i], vc->n_ids[i]);
            print_ids("got     ", ids, n);
        }
        char *text = NULL;
        size_t len = 0;
        if (tok_decode(t, ids, n, 0, &text, &len, &err) != BS_OK) {
            fprintf(stderr, "    %s case %d: decode failed: %s\n", model, i, err.msg);
            ok = 0;
        } else if (len != vc->len[i] || memcmp(text, vc->text[i], len) != 0) {
            fprintf(stderr, "    %s case %d: decode(encode(x)) = \"%s\", expected \"%.*s\"\n", model, i, text,
                    (int)vc->len[i], vc->text[i]);
            ok = 0;
        }
        free(text);
        free(ids);
        passed += ok;
    }
    return passed;
}

#endif
