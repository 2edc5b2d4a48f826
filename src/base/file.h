/* base/file.h — read-only file mappings and whole-file reads.
 * Model weights are mmapped so the page cache is the only copy. */
#ifndef BASALT_BASE_FILE_H
#define BASALT_BASE_FILE_H

#include <stddef.h>

#include "base/error.h"

typedef struct bs_mapped_file {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
    char *path; /* owned copy, for error messages */
} bs_mapped_file;

bs_status bs_file_map(const char *path, bs_mapped_file *out, bs_error *err);
void bs_file_unmap(bs_mapped_file *f);
/* The whole pages of [p, p + len) inside f will not be read again: they
 * leave the process (the page cache keeps them until the kernel wants the
 * memory; a later read maps them back).  For weights copied elsewhere at
 * load, so the process does not hold both copies. */
void bs_file_drop(const bs_mapped_file *f, const void *p, size_t len);

/* Read a whole file into a NUL-terminated heap buffer (caller frees). */
bs_status bs_file_read(const char *path, char **data, size_t *size, bs_error *err);

/* Copy src to dst (created or truncated) by streaming; BS_EIO names the file at fault. */
bs_status bs_file_copy(const char *src, const char *dst, bs_error *err);

int bs_file_exists(const char *path);
int bs_is_directory(const char *path);

/* rm -rf path (not following symlinks); a missing path is not an error. */
bs_status bs_remove_tree(const char *path, bs_error *err);

/* Join dir and name into a freshly allocated path (caller frees). */
char *bs_path_join(const char *dir, const char *name);

#endif
