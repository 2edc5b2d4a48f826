/* Tests for base/paths: the data-directory rule in its precedence order and
 * mkdir -p. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/paths.h"

static void set_env(const char *name, const char *value) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
}

static const char *const names[3] = {"BASALT_DATA", "XDG_DATA_HOME", "HOME"};

/* The resolved directory with this environment, or NULL on failure. */
static char *resolve(const char *override, const char *basalt, const char *xdg, const char *home, bs_error *err) {
    set_env("BASALT_DATA", basalt);
    set_env("XDG_DATA_HOME", xdg);
    set_env("HOME", home);
    char *out = NULL;
    return bs_data_dir(override, &out, err) == BS_OK ? out : NULL;
}

static void expect(const char *override, const char *basalt, const char *xdg, const char *home, const char *want) {
    bs_error err = {0};
    char *got = resolve(override, basalt, xdg, home, &err);
    if (!got) fprintf(stderr, "  bs_data_dir failed: %s\n", err.msg);
    CHECK_STR(got, want);
    free(got);
}

static void test_data_dir_precedence(void) {
    char *saved[3];
    for (int i = 0; i < 3; i++) saved[i] = getenv(names[i]) ? strdup(getenv(names[i])) : NULL;
    expect("/explicit", "/b", "/xdg", "/home/u", "/explicit");
    expect("", "/b", "/xdg", "/home/u", "/b");   /* an empty --data is no override */
    expect(NULL, "/b", "/xdg", "/home/u", "/b");
    expect(NULL, "", "/xdg", "/home/u", "/xdg/basalt");
    expect(NULL, NULL, "/xdg", "/home/u", "/xdg/basalt");
    expect(NULL, NULL, "rel/xdg", "/home/u", "/home/u/.local/share/basalt"); /* XDG: relative is invalid */
    expect(NULL, NULL, "", "/home/u", "/home/u/.local/share/basalt");
    bs_error err = {0};
    CHECK(resolve(NULL, NULL, "rel", NULL, &err) == NULL);
    CHECK_INT(err.status, BS_EINVAL);
    CHECK(strstr(err.msg, "BASALT_DATA") != NULL && strstr(err.msg, "--data") != NULL);
    for (int i = 0; i < 3; i++) {
        set_env(names[i], saved[i]);
        free(saved[i]);
    }
}

static void test_make_dirs(void) {
    char root[] = "/tmp/basalt_paths_XXXXXX";
    if (!mkdtemp(root)) SKIP("mkdtemp failed");
    char deep[128], file[128], under_file[160];
    snprintf(deep, sizeof deep, "%s/a/b/c", root);
    snprintf(file, sizeof file, "%s/f", root);
    snprintf(under_file, sizeof under_file, "%s/f/x", root);
    bs_error err = {0};
    CHECK_OK(bs_make_dirs(deep, 0700, &err), &err);
    struct stat st;
    CHECK(stat(deep, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK_OK(bs_make_dirs(deep, 0700, &err), &err); /* already there: fine */
    FILE *fp = fopen(file, "w");
    CHECK(fp != NULL);
    if (fp) fclose(fp);
    CHECK_INT(bs_make_dirs(file, 0700, &err), BS_EIO);
    CHECK(strstr(err.msg, "not a directory") != NULL);
    CHECK_INT(bs_make_dirs(under_file, 0700, &err), BS_EIO);
    CHECK(strstr(err.msg, "/f/x") != NULL);
    CHECK_INT(bs_make_dirs("", 0700, &err), BS_EINVAL);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_INT(system(cmd), 0);
}

int main(void) {
    RUN(test_data_dir_precedence);
    RUN(test_make_dirs);
    TEST_MAIN_END();
}
