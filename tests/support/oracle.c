#include "oracle.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *test_python(void) {
    const char *p = getenv("BASALT_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

const char *test_torch_missing(void) {
    static int checked;
    static const char *reason;
    if (!checked) {
        checked = 1;
        char cmd[600];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, numpy' >/dev/null 2>&1", test_python());
        if (system(cmd) != 0) reason = "PyTorch/numpy not importable by $BASALT_PYTHON (default /usr/bin/python3)";
    }
    return reason;
}

enum { MAX_TEMP_DIRS = 8 };
static char temp_dirs[MAX_TEMP_DIRS][64];
static int n_temp_dirs;

static void remove_temp_dirs(void) {
    for (int i = 0; i < n_temp_dirs; i++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", temp_dirs[i]);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", temp_dirs[i]);
    }
}

const char *test_temp_dir(const char *prefix) {
    if (n_temp_dirs == MAX_TEMP_DIRS) return NULL;
    char *dir = temp_dirs[n_temp_dirs];
    snprintf(dir, sizeof temp_dirs[0], "/tmp/%s-XXXXXX", prefix);
    if (!mkdtemp(dir)) return NULL;
    if (n_temp_dirs++ == 0) atexit(remove_temp_dirs);
    return dir;
}

void *test_read_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = *size >= 0 ? malloc((size_t)*size + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)*size, f) != (size_t)*size) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[*size] = '\0';
    fclose(f);
    return buf;
}

const char *test_oracle_models(const char **skip) {
    static int state; /* 0 not run, 1 ready, -1 unavailable */
    static const char *dir;
    *skip = test_torch_missing();
    if (state) return state > 0 ? dir : NULL;
    state = -1;
    if (*skip) return NULL;
    dir = test_temp_dir("basalt-oracle");
    if (!dir) return NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' tests/oracle/make_model.py '%s'", test_python(), dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "  %s failed\n", cmd);
        return NULL;
    }
    state = 1;
    return dir;
}

int test_read_named(const char *path, void **buf, test_named *out, int cap) {
    long size = 0;
    unsigned char *p = *buf = test_read_file(path, &size), *end = p + size;
    int n = 0;
    while (p && p + 4 <= end && n < cap) {
        uint32_t len, rows, cols;
        memcpy(&len, p, 4);
        if (len >= sizeof out->name || p + 12 + len > end) return -1;
        memcpy(out[n].name, p + 4, len);
        out[n].name[len] = 0;
        memcpy(&rows, p + 4 + len, 4);
        memcpy(&cols, p + 8 + len, 4);
        out[n].rows = (int)rows;
        out[n].cols = (int)cols;
        out[n].data = p + 12 + len;
        p += 12 + len + (size_t)rows * cols * 4;
        if (p > end) return -1;
        n++;
    }
    return p ? n : -1;
}

const test_named *test_find_named(const test_named *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}

double test_max_rel(const float *got, const unsigned char *ref_bytes, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        float ref;
        memcpy(&ref, ref_bytes + 4 * i, 4);
        double e = fabs((double)got[i] - ref);
        if (!(e <= d)) d = e;
        if (fabs(ref) > r) r = fabs(ref);
    }
    return r > 0 ? d / r : d;
}
