/* tests/format/scratch.h — helpers shared by the format tests: a growable
 * byte buffer for writing test files and a scratch directory under /tmp
 * that is removed when the test binary ends. */
#ifndef BASALT_TESTS_FORMAT_SCRATCH_H
#define BASALT_TESTS_FORMAT_SCRATCH_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/test.h"
#include "base/error.h"

typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static inline void bytes_put(bytes *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        unsigned char *grown = realloc(b->p, cap);
        if (!grown) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        b->p = grown;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static inline void bytes_u8(bytes *b, uint8_t v) { bytes_put(b, &v, 1); }
static inline void bytes_u32(bytes *b, uint32_t v) { bytes_put(b, &v, 4); }
static inline void bytes_u64(bytes *b, uint64_t v) { bytes_put(b, &v, 8); }
static inline void bytes_zeros(bytes *b, size_t n) {
    while (n--) bytes_u8(b, 0);
}
static inline void bytes_free(bytes *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static char scratch_root[64];

static inline int scratch_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static inline void scratch_cleanup(void) {
    if (scratch_root[0]) nftw(scratch_root, scratch_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Create the scratch directory once; returns its path. */
static inline const char *scratch_dir(void) {
    if (!scratch_root[0]) {
        snprintf(scratch_root, sizeof scratch_root, "/tmp/basalt-format-XXXXXX");
        if (!mkdtemp(scratch_root)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(scratch_cleanup);
    }
    return scratch_root;
}

/* Path of name inside the scratch directory (a static buffer per call slot). */
static inline const char *scratch_path(const char *name) {
    static char paths[4][512];
    static int slot;
    char *p = paths[slot++ % 4];
    snprintf(p, 512, "%s/%s", scratch_dir(), name);
    return p;
}

static inline void scratch_mkdir(const char *name) { mkdir(scratch_path(name), 0700); }

/* Write data to name in the scratch directory and return its path. */
static inline const char *scratch_write(const char *name, const void *data, size_t n) {
    const char *path = scratch_path(name);
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n) || fclose(fp) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

/* A small deterministic generator for the mini-fuzz loops. */
static inline uint32_t scratch_rand(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*state >> 33);
}

/* Truncate a valid file at every byte offset: each prefix must fail to open,
 * with an error naming the file.  try_open opens and closes. */
static inline void check_every_truncation_fails(const bytes *b, const char *name,
                                                bs_status (*try_open)(const char *path, bs_error *err)) {
    int opened = 0;
    for (size_t n = 0; n < b->len; n++) {
        bs_error err = {0};
        const char *path = scratch_write(name, b->p, n);
        if (try_open(path, &err) == BS_OK) {
            opened++;
        } else if (!strstr(err.msg, path)) {
            fprintf(stderr, "  truncated at %zu: message without the path: %s\n", n, err.msg);
            test_failed_ = 1;
        }
    }
    CHECK_INT(opened, 0);
}

#endif
