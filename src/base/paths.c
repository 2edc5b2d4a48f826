#include "base/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static bs_status dup_joined(const char *a, const char *b, char **out, bs_error *err) {
    size_t n = strlen(a) + strlen(b) + 1;
    *out = malloc(n);
    if (!*out) return bs_fail(err, BS_ENOMEM, "out of memory");
    snprintf(*out, n, "%s%s", a, b);
    return BS_OK;
}

bs_status bs_data_dir(const char *override, char **out, bs_error *err) {
    const char *env = getenv("BASALT_DATA"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    *out = NULL;
    if (override && *override) return dup_joined(override, "", out, err);
    if (env && *env) return dup_joined(env, "", out, err);
    if (xdg && xdg[0] == '/') return dup_joined(xdg, "/basalt", out, err);
    if (home && *home) return dup_joined(home, "/.local/share/basalt", out, err);
    return bs_fail(err, BS_EINVAL, "no data directory: set --data, BASALT_DATA or HOME");
}

bs_status bs_make_dirs(const char *path, mode_t mode, bs_error *err) {
    if (!*path) return bs_fail(err, BS_EINVAL, "cannot create a directory with an empty name");
    char *p = strdup(path);
    if (!p) return bs_fail(err, BS_ENOMEM, "out of memory");
    bs_status s = BS_OK;
    for (char *c = p + 1; s == BS_OK; c++) {
        if (*c != '/' && *c != '\0') continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) s = bs_fail(err, BS_EIO, "%s: cannot create directory: %s", p, strerror(errno));
        *c = saved;
        if (!saved) break;
    }
    free(p);
    struct stat st;
    if (s == BS_OK && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)))
        s = bs_fail(err, BS_EIO, "%s is not a directory", path);
    return s;
}
