/* Exactness against llama.cpp's tokenizer test vectors: every case of every
 * ../shared/fixtures/vocab/ggml-vocab-*.gguf.{inp,out} pair, encoded with
 * add_special=false, parse_special=false, plus decode(encode(x)) == x. */
#include <stdint.h>

#include "../support/test.h"
#include "format/gguf.h"
#include "tokenizer/tokenizer.h"
#include "vocab_cases.h"

static const char *const models[] = {"gpt-2", "llama-spm", "deepseek-llm", "phi-3", "falcon", "starcoder"};

static void check_model(const char *model) {
    const char *shared = test_shared_dir();
    if (!shared) SKIP("../shared fixtures absent (set BASALT_SHARED)");
    vocab_cases vc;
    bs_error err = {0};
    if (vocab_cases_load(shared, model, &vc, &err) != BS_OK) {
        fprintf(stderr, "  %s: %s\n", model, err.msg);
        test_failed_ = 1;
        return;
    }
    gguf_file *g = NULL;
    bs_tokenizer *t = NULL;
    CHECK_OK(gguf_open(vc.gguf_path, &g, &err), &err);
    if (g) CHECK_OK(tok_open_gguf(g, &t, &err), &err);
    gguf_close(g); /* the tokenizer keeps its own copies */
    if (t) {
        int passed = vocab_cases_check(t, &vc, model);
        fprintf(stderr, "  %s: %d/%d cases match\n", model, passed, vc.n);
        CHECK_INT(passed, vc.n);
    }
    tok_close(t);
    vocab_cases_free(&vc);
}

static void test_gpt2(void) { check_model(models[0]); }
static void test_llama_spm(void) { check_model(models[1]); }
static void test_deepseek_llm(void) { check_model(models[2]); }
static void test_phi3(void) { check_model(models[3]); }
static void test_falcon(void) { check_model(models[4]); }
static void test_starcoder(void) { check_model(models[5]); }

int main(void) {
    RUN(test_gpt2);
    RUN(test_llama_spm);
    RUN(test_deepseek_llm);
    RUN(test_phi3);
    RUN(test_falcon);
    RUN(test_starcoder);
    TEST_MAIN_END();
}
