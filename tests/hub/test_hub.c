/* Unit tests for hub/: SHA-256, model specs, path safety, the cache layout
 * and offline resolution.  Downloads are tested by test_pull.sh against a
 * mock hub. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/test.h"
#include "hub/hub.h"
#include "hub/pull.h"
#include "hub/sha256.h"

static void sha_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1]) {
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, len);
    sha256_final_hex(&c, out);
}

static void test_sha256_vectors(void) {
    char hex[SHA256_HEX_LEN + 1];
    sha_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes */
    sha_hex(two_blocks, strlen(two_blocks), hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    sha_hex(million, 1000000, hex);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

/* Feeding the same bytes in pieces of every size (as a resumed download
 * does) gives the one-shot digest, across block and padding boundaries. */
static void test_sha256_incremental(void) {
    unsigned char buf[300];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 0; len <= sizeof buf; len += 13) {
        char whole[SHA256_HEX_LEN + 1];
        sha_hex(buf, len, whole);
        for (size_t step = 1; step <= 70; step += 23) {
            sha256_ctx c;
            sha256_init(&c);
            for (size_t at = 0; at < len; at += step) sha256_update(&c, buf + at, len - at < step ? len - at : step);
            char parts[SHA256_HEX_LEN + 1];
            sha256_final_hex(&c, parts);
            CHECK_STR(parts, whole);
        }
    }
    /* 55, 56 and 64 bytes: padding fits, just does not, exactly one block. */
    char hex[SHA256_HEX_LEN + 1];
    memset(buf, 'a', 64);
    sha_hex(buf, 55, hex);
    CHECK_STR(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
    sha_hex(buf, 56, hex);
    CHECK_STR(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
    sha_hex(buf, 64, hex);
    CHECK_STR(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

static void test_parse_spec(void) {
    hub_spec s;
    bs_error err = {0};
    CHECK_OK(hub_parse_spec("Qwen/Qwen2.5-0.5B-Instruct", &s, &err), &err);
    CHECK_STR(s.repo, "Qwen/Qwen2.5-0.5B-Instruct");
    CHECK_STR(s.revision, "main");
    CHECK_STR(s.file, "");
    CHECK_OK(hub_parse_spec("org/repo:sub/model-Q4_K_M.gguf", &s, &err), &err);
    CHECK_STR(s.repo, "org/repo");
    CHECK_STR(s.file, "sub/model-Q4_K_M.gguf");
    CHECK_OK(hub_parse_spec("org/repo@refs/pr/1:m.gguf", &s, &err), &err);
    CHECK_STR(s.revision, "refs/pr/1");
    CHECK_STR(s.file, "m.gguf");
    CHECK_OK(hub_parse_spec("org/repo@v1.0", &s, &err), &err);
    CHECK_STR(s.revision, "v1.0");

    const char *bad[] = {
        "repo", /* no org */
        "org/",
        "/repo",
        "org/repo/extra",
        "../etc",
        "org/re po",
        "org/-repo",
        "org/repo.",
        "org/a--b", /* would make models--org--a--b ambiguous */
        "org/a..b",
        "org/repo@",
        "org/repo@:f.gguf",
        "org/repo:",
        "org/repo:../x.gguf",
        "org/repo:/abs.gguf",
        "org/repo@../../x",
        "org/repo:a//b.gguf",
        "org/repo:dir/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bs_status st = hub_parse_spec(bad[i], &s, &err);
        if (st != BS_EINVAL) fprintf(stderr, "  accepted bad spec '%s'\n", bad[i]);
        CHECK_INT(st, BS_EINVAL);
        CHECK(strstr(err.msg, bad[i]) != NULL);
    }
    char long_repo[HUB_REPO_MAX + 8];
    memset(long_repo, 'a', sizeof long_repo - 1);
    long_repo[sizeof long_repo - 1] = '\0';
    long_repo[3] = '/';
    CHECK_INT(hub_parse_spec(long_repo, &s, &err), BS_EINVAL);
}

static void test_path_safety(void) {
    CHECK(hub_path_is_safe("model.safetensors"));
    CHECK(hub_path_is_safe("sub/dir/file.gguf"));
    CHECK(hub_path_is_safe("..hidden/x")); /* a name that starts with dots is fine */
    CHECK(!hub_path_is_safe(""));
    CHECK(!hub_path_is_safe("../x"));
    CHECK(!hub_path_is_safe("a/../../x"));
    CHECK(!hub_path_is_safe("a/.."));
    CHECK(!hub_path_is_safe("./x"));
    CHECK(!hub_path_is_safe("/etc/passwd"));
    CHECK(!hub_path_is_safe("a//b"));
    CHECK(!hub_path_is_safe("a/"));
    CHECK(!hub_path_is_safe("a\\..\\b"));
    CHECK(!hub_path_is_safe("a\nb"));
    char huge[HUB_PATH_MAX + 2];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    CHECK(!hub_path_is_safe(huge));
}

static void test_commit_ids(void) {
    CHECK(hub_is_commit("0123456789abcdef0123456789abcdef01234567"));
    CHECK(!hub_is_commit("0123456789ABCDEF0123456789abcdef01234567"));
    CHECK(!hub_is_commit("0123456789abcdef0123456789abcdef0123456"));
    CHECK(!hub_is_commit("0123456789abcdef0123456789abcdef012345678"));
    CHECK(!hub_is_commit("main"));
}

static void test_wanted_files(void) {
    const char *yes[] = {"config.json",
                         "generation_config.json",
                         "tokenizer.json",
                         "tokenizer_config.json",
                         "chat_template.jinja",
                         "special_tokens_map.json",
                         "model.safetensors",
                         "model-00001-of-00002.safetensors",
                         "model.safetensors.index.json"};
    const char *no[] = {"pytorch_model.bin",
                        "model.pt",
                        "tf_model.h5",
                        "flax_model.msgpack",
                        "onnx/model.onnx",
                        "original/consolidated.00.pth",
                        "original/model.safetensors",
                        "README.md",
                        ".gitattributes",
                        "model.gguf",
                        ".safetensors"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) CHECK(hub_wants_file(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) CHECK(!hub_wants_file(no[i]));
}

static void set_env(const char *name, const char *value) {
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

static void test_cache_dir(void) {
    char *saved[3];
    const char *names[3] = {"BASALT_DATA", "XDG_DATA_HOME", "HOME"};
    for (int i = 0; i < 3; i++) saved[i] = getenv(names[i]) ? strdup(getenv(names[i])) : NULL;
    bs_error err = {0};
    char *dir = NULL;
    set_env("BASALT_DATA", "/data/b");
    set_env("XDG_DATA_HOME", "/xdg");
    set_env("HOME", "/home/u");
    CHECK_OK(hub_cache_dir("/explicit", &dir, &err), &err);
    CHECK_STR(dir, "/explicit/models");
    free(dir);
    CHECK_OK(hub_cache_dir(NULL, &dir, &err), &err);
    CHECK_STR(dir, "/data/b/models");
    free(dir);
    set_env("BASALT_DATA", NULL);
    CHECK_OK(hub_cache_dir(NULL, &dir, &err), &err);
    CHECK_STR(dir, "/xdg/basalt/models");
    free(dir);
    set_env("XDG_DATA_HOME", "relative/ignored");
    CHECK_OK(hub_cache_dir(NULL, &dir, &err), &err);
    CHECK_STR(dir, "/home/u/.local/share/basalt/models");
    free(dir);
    set_env("XDG_DATA_HOME", NULL);
    set_env("HOME", NULL);
    CHECK_INT(hub_cache_dir(NULL, &dir, &err), BS_EINVAL);
    CHECK(strstr(err.msg, "BASALT_DATA") != NULL);
    for (int i = 0; i < 3; i++) {
        set_env(names[i], saved[i]);
        free(saved[i]);
    }
    dir = hub_repo_dir("/c", "Qwen/Qwen2.5-0.5B");
    CHECK_STR(dir, "/c/models--Qwen--Qwen2.5-0.5B");
    free(dir);
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) {
        test_failed_ = 1;
        return;
    }
    fputs(text, fp);
    fclose(fp);
}

/* A cache as `basalt pull` leaves it: refs/main and refs/v1 name snapshots,
 * one holding a directory model and a GGUF file. */
static void test_resolve(void) {
    char root[] = "/tmp/basalt_hub_XXXXXX";
    if (!mkdtemp(root)) SKIP("mkdtemp failed");
    const char *main_c = "1111111111111111111111111111111111111111";
    const char *v1_c = "2222222222222222222222222222222222222222";
    char path[512], cache[300], *got = NULL;
    bs_error err = {0};
    snprintf(cache, sizeof cache, "%s/models", root);
    const char *dirs[] = {"models",
                          "models/models--acme--tiny",
                          "models/models--acme--tiny/refs",
                          "models/models--acme--tiny/blobs",
                          "models/models--acme--tiny/snapshots",
                          "models/models--acme--tiny/snapshots/1111111111111111111111111111111111111111",
                          "models/models--acme--tiny/snapshots/2222222222222222222222222222222222222222"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
        mkdir(path, 0755);
    }
    snprintf(path, sizeof path, "%s/models--acme--tiny/refs/main", cache);
    write_file(path, main_c);
    snprintf(path, sizeof path, "%s/models--acme--tiny/refs/v1", cache);
    write_file(path, "2222222222222222222222222222222222222222\n");
    snprintf(path, sizeof path, "%s/models--acme--tiny/blobs/abc", cache);
    write_file(path, "GGUF");
    snprintf(path, sizeof path, "%s/models--acme--tiny/snapshots/%s/m.gguf", cache, main_c);
    if (symlink("../../blobs/abc", path) != 0) test_failed_ = 1;

    char want[512];
    CHECK_OK(hub_resolve_in(cache, "acme/tiny", &got, &err), &err);
    snprintf(want, sizeof want, "%s/models--acme--tiny/snapshots/%s", cache, main_c);
    CHECK_STR(got, want);
    free(got);
    CHECK_OK(hub_resolve_in(cache, "acme/tiny:m.gguf", &got, &err), &err);
    snprintf(want, sizeof want, "%s/models--acme--tiny/snapshots/%s/m.gguf", cache, main_c);
    CHECK_STR(got, want);
    free(got);
    CHECK_OK(hub_resolve_in(cache, "acme/tiny@v1", &got, &err), &err);
    snprintf(want, sizeof want, "%s/models--acme--tiny/snapshots/%s", cache, v1_c);
    CHECK_STR(got, want);
    free(got);
    CHECK_OK(hub_resolve_in(cache, "acme/tiny@2222222222222222222222222222222222222222", &got, &err), &err);
    CHECK_STR(got, want);
    free(got);

    /* Not pulled: the message says what to run. */
    CHECK_INT(hub_resolve_in(cache, "acme/other", &got, &err), BS_ENOTFOUND);
    CHECK(got == NULL);
    CHECK(strstr(err.msg, "basalt pull acme/other") != NULL);
    CHECK_INT(hub_resolve_in(cache, "acme/tiny@v2", &got, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "basalt pull acme/tiny@v2") != NULL);
    CHECK_INT(hub_resolve_in(cache, "acme/tiny@v1:m.gguf", &got, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "m.gguf") != NULL);
    snprintf(path, sizeof path, "%s/models--acme--tiny/refs/bad", cache);
    write_file(path, "not a commit");
    CHECK_INT(hub_resolve_in(cache, "acme/tiny@bad", &got, &err), BS_EFORMAT);

    /* Local paths pass through, even ones that look like specs. */
    snprintf(path, sizeof path, "%s/models--acme--tiny/blobs/abc", cache);
    CHECK_OK(hub_resolve_in(cache, path, &got, &err), &err);
    CHECK_STR(got, path);
    free(got);
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) && chdir(root) == 0) {
        mkdir("acme", 0755);
        mkdir("acme/tiny", 0755);
        CHECK_OK(hub_resolve_in(cache, "acme/tiny", &got, &err), &err);
        CHECK_STR(got, "acme/tiny");
        free(got);
        CHECK(chdir(cwd) == 0);
    }

    /* hub_resolve_model: the same with the cache under $BASALT_DATA. */
    char *saved = getenv("BASALT_DATA") ? strdup(getenv("BASALT_DATA")) : NULL;
    setenv("BASALT_DATA", root, 1);
    CHECK_OK(hub_resolve_model(root, &got, &err), &err);
    CHECK_STR(got, root);
    free(got);
    CHECK_OK(hub_resolve_model("acme/tiny:m.gguf", &got, &err), &err);
    snprintf(want, sizeof want, "%s/models--acme--tiny/snapshots/%s/m.gguf", cache, main_c);
    CHECK_STR(got, want);
    free(got);
    CHECK_INT(hub_resolve_model("/no/such/model.gguf", &got, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "/no/such/model.gguf") != NULL);
    CHECK_INT(hub_resolve_model("acme/none", &got, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "basalt pull") != NULL);
    set_env("BASALT_DATA", saved);
    free(saved);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_INT(system(cmd), 0);
}

int main(void) {
    RUN(test_sha256_vectors);
    RUN(test_sha256_incremental);
    RUN(test_parse_spec);
    RUN(test_path_safety);
    RUN(test_commit_ids);
    RUN(test_wanted_files);
    RUN(test_cache_dir);
    RUN(test_resolve);
    TEST_MAIN_END();
}
