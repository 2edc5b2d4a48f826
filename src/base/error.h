/* base/error.h — errors as values.
 *
 * Every fallible library function returns a bs_status and, on failure, fills
 * a caller-owned bs_error with one human-readable line that names the file,
 * line, key or parameter at fault.  Only cli/ decides to exit. */
#ifndef BASALT_BASE_ERROR_H
#define BASALT_BASE_ERROR_H

typedef enum {
    BS_OK = 0,
    BS_EINVAL,       /* bad argument or parameter */
    BS_EIO,          /* open/read/mmap failed */
    BS_EFORMAT,      /* file or document is malformed */
    BS_EUNSUPPORTED, /* well-formed but not something basalt handles */
    BS_ENOTFOUND,    /* named thing is absent */
    BS_ENOMEM,       /* allocation failed */
    BS_ERANGE,       /* value outside the allowed range (e.g. context full) */
    BS_EBUSY,        /* temporarily refused (queue full); retry later */
} bs_status;

#define BS_ERROR_MSG_MAX 512

typedef struct bs_error {
    bs_status status;
    char msg[BS_ERROR_MSG_MAX];
} bs_error;

/* Record a failure in err (which may be NULL) and return status, so callers
 * can write `return bs_fail(err, BS_EFORMAT, "%s: bad magic", path);`. */
bs_status bs_fail(bs_error *err, bs_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message with more context ("loading X: <old msg>"). */
bs_status bs_wrap(bs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

const char *bs_status_name(bs_status status);

#endif
