#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

bs_status bs_file_map(const char *path, bs_mapped_file *out, bs_error *err) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bs_fail(err, BS_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return bs_fail(err, BS_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bs_fail(err, BS_EIO, "%s: not a regular file", path);
    }
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return bs_fail(err, BS_EIO, "%s: cannot mmap: %s", path, strerror(e));
        }
        out->data = p;
    }
    close(fd);
    out->path = strdup(path);
    if (!out->path) {
        bs_file_unmap(out);
        return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    }
    return BS_OK;
}

void bs_file_unmap(bs_mapped_file *f) {
    if (f->data) munmap((void *)f->data, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

void bs_file_drop(const bs_mapped_file *f, const void *p, size_t len) {
    uintptr_t begin = (uintptr_t)p, end = begin + len, page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (!f->data || begin < (uintptr_t)f->data || end > (uintptr_t)f->data + f->size) return;
    begin = (begin + page - 1) / page * page; /* whole pages only: neighbours may still be in use */
    end = end / page * page;
    if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
}

bs_status bs_file_read(const char *path, char **data, size_t *size, bs_error *err) {
    *data = NULL;
    if (size) *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return bs_fail(err, BS_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (len < cap) break;
        cap *= 2;
        char *grown = realloc(buf, cap + 1);
        if (!grown) free(buf);
        buf = grown;
    }
    int read_error = ferror(fp);
    fclose(fp);
    if (!buf) return bs_fail(err, BS_ENOMEM, "%s: out of memory", path);
    if (read_error) {
        free(buf);
        return bs_fail(err, BS_EIO, "%s: read error", path);
    }
    buf[len] = '\0';
    *data = buf;
    if (size) *size = len;
    return BS_OK;
}

bs_status bs_file_copy(const char *src, const char *dst, bs_error *err) {
    FILE *in = fopen(src, "rb");
    if (!in) return bs_fail(err, BS_EIO, "%s: cannot open: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        int e = errno;
        fclose(in);
        return bs_fail(err, BS_EIO, "%s: cannot create: %s", dst, strerror(e));
    }
    char buf[1 << 16];
    size_t n;
    bs_status st = BS_OK;
    while (st == BS_OK && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) st = bs_fail(err, BS_EIO, "%s: write failed: %s", dst, strerror(errno));
    if (st == BS_OK && ferror(in)) st = bs_fail(err, BS_EIO, "%s: read error", src);
    fclose(in);
    if (fclose(out) != 0 && st == BS_OK) st = bs_fail(err, BS_EIO, "%s: write failed: %s", dst, strerror(errno));
    return st;
}

int bs_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int bs_is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *bs_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a > 0 && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

bs_status bs_remove_tree(const char *path, bs_error *err) {
    if (access(path, F_OK) != 0) return BS_OK;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return bs_fail(err, BS_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return BS_OK;
}
