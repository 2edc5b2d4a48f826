/* tests/server/test_fuzz_request.c — a short, deterministic fuzz run of the
 * request-parsing path every client reaches before any model runs: body
 * parsing (oai_parse_body) and the chat / responses / completions /
 * embeddings / tokenize decoders on 20 000 mutated bodies, and API-key
 * authentication on 20 000 mutated Authorization headers.  Nothing may
 * crash (run under the sanitizer build too), every refusal must be a
 * client error naming what is wrong, and no mutated secret may
 * authenticate. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/file.h"
#include "gateway/keys.h"
#include "server/openai_request.h"
#include "store/store.h"

#define ROUNDS 20000

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next(void) { /* xorshift64*: reproducible across runs */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1dull) >> 32);
}

static const char *const seeds[] = {
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5,\"temperature\":0.7}",
    "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\",\"content\":[{\"type\":"
    "\"text\",\"text\":\"x\"}]}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{"
    "\"type\":\"object\"}}}],\"tool_choice\":\"auto\",\"response_format\":{\"type\":\"json_object\"}}",
    "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"],\"max_tokens\":3,\"stop\":[\"\\n\"],\"logit_bias\":{\"5\":-100}}",
    "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":\"q\"}],\"max_output_tokens\":9,\"stream\":true}",
    "{\"model\":\"m\",\"input\":[1,2,3],\"encoding_format\":\"base64\"}",
    "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"r\"}]}",
};

/* Tokens that steer mutations toward the decoders' edge cases. */
static const char *const dict[] = {"null", "true", "-1", "1e309", "\"\\u0000\"", "[]", "{}", "\"\\ud800\"",
                                   "9223372036854775808", "\"max_tokens\":", "\"messages\":", "\"role\":",
                                   "\"content\":", "' OR 1=1 --", "\r\n", "\xff\xfe", "{\"a\":[[[[[[[[", "]]]]}"};

static size_t mutate(const char *seed, char *out, size_t cap) {
    size_t n = strlen(seed);
    memcpy(out, seed, n);
    for (int k = 1 + (int)(next() % 4); k > 0; k--) {
        size_t at = n ? next() % n : 0;
        switch (next() % 4) {
        case 0: /* flip a bit */
            if (n) out[at] ^= (char)(1u << (next() % 8));
            break;
        case 1: /* drop a run */
            if (n) {
                size_t len = 1 + next() % 8;
                if (at + len > n) len = n - at;
                memmove(out + at, out + at + len, n - at - len);
                n -= len;
            }
            break;
        default: { /* insert a dictionary token or a random byte */
            const char *t = dict[next() % (sizeof dict / sizeof dict[0])];
            char b[2] = {(char)(next() & 0xff), 0};
            const char *ins = next() % 2 ? t : b;
            size_t len = strlen(ins) ? strlen(ins) : 1;
            if (n + len >= cap) break;
            memmove(out + at + len, out + at, n - at);
            memcpy(out + at, ins, len);
            n += len;
        }
        }
    }
    out[n] = '\0';
    return n;
}

/* A refusal is a client error with a message (never a crash, never a 5xx-class status). */
static int client_error(bs_status st, const api_error *a) {
    return st == BS_OK || ((st == BS_EINVAL || st == BS_EFORMAT || st == BS_EUNSUPPORTED || st == BS_ERANGE ||
                            st == BS_ENOTFOUND) &&
                           a->e.msg[0]);
}

static void test_decoders_survive_mutations(void) {
    char buf[4096];
    int parsed = 0, decoded = 0, bad = 0;
    for (int i = 0; i < ROUNDS; i++) {
        size_t n = mutate(seeds[next() % (sizeof seeds / sizeof seeds[0])], buf, sizeof buf);
        json_t *body = NULL;
        api_error a = {0};
        bs_status st = oai_parse_body(buf, n, &body, &a);
        if (st != BS_OK) {
            bad += !client_error(st, &a);
            continue;
        }
        parsed++;
        chat_request c;
        completion_request p;
        embedding_request e;
        tokenize_request t;
        a = (api_error){0};
        st = chat_request_decode(body, &c, &a);
        bad += !client_error(st, &a), decoded += st == BS_OK;
        chat_request_free(&c);
        a = (api_error){0};
        st = responses_request_decode(body, &c, &a);
        bad += !client_error(st, &a), decoded += st == BS_OK;
        chat_request_free(&c);
        a = (api_error){0};
        st = completion_request_decode(body, &p, &a);
        bad += !client_error(st, &a), decoded += st == BS_OK;
        completion_request_free(&p);
        a = (api_error){0};
        st = embedding_request_decode(body, &e, &a);
        bad += !client_error(st, &a), decoded += st == BS_OK;
        embedding_request_free(&e);
        a = (api_error){0};
        st = tokenize_request_decode(body, &t, &a);
        bad += !client_error(st, &a), decoded += st == BS_OK;
        tokenize_request_free(&t);
        json_decref(body);
    }
    CHECK_INT(bad, 0);
    /* The mutations must leave enough valid input to reach the decoders' depths. */
    CHECK(parsed > ROUNDS / 10);
    CHECK(decoded > ROUNDS / 20);
}

static void test_mutated_secrets_never_authenticate(void) {
    char dir[] = "/tmp/basalt_fuzz_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    bs_store *store = NULL;
    keys_registry *reg = NULL;
    bs_error err = {0};
    CHECK(store_open(dir, &store, &err) == BS_OK);
    CHECK(keys_open(store, &reg, &err) == BS_OK);
    key_spec spec = {.name = "fuzz"};
    char *secret = NULL;
    key_info info = {0};
    CHECK(keys_create(reg, &spec, &secret, &info, &err) == BS_OK);
    char header[256], buf[512];
    snprintf(header, sizeof header, "Bearer %s", secret);
    int accepted = 0, exact = 0;
    for (int i = 0; i < ROUNDS; i++) {
        mutate(header, buf, sizeof buf);
        key_view v = {0};
        key_auth res = keys_authenticate(reg, buf, 0, &v);
        if (res == KEY_AUTH_OK) {
            /* Only the exact secret (the scheme's case aside) may pass. */
            accepted++;
            exact += strcmp(buf + 7, secret) == 0 && strncasecmp(buf, "bearer ", 7) == 0;
        }
        CHECK(strstr(key_auth_message(res), secret) == NULL);
        key_view_release(&v);
    }
    CHECK_INT(accepted, exact);
    free(secret);
    key_info_clear(&info);
    keys_close(reg);
    store_close(store);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void) {
    RUN(test_decoders_survive_mutations);
    RUN(test_mutated_secrets_never_authenticate);
    TEST_MAIN_END();
}
