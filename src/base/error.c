#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bs_status bs_fail(bs_error *err, bs_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

bs_status bs_wrap(bs_error *err, const char *fmt, ...) {
    if (!err) return BS_EINVAL;
    char prefix[BS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[BS_ERROR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
    return err->status;
}

const char *bs_status_name(bs_status status) {
    switch (status) {
    case BS_OK: return "ok";
    case BS_EINVAL: return "invalid argument";
    case BS_EIO: return "i/o error";
    case BS_EFORMAT: return "malformed input";
    case BS_EUNSUPPORTED: return "unsupported";
    case BS_ENOTFOUND: return "not found";
    case BS_ENOMEM: return "out of memory";
    case BS_ERANGE: return "out of range";
    case BS_EBUSY: return "busy";
    }
    return "unknown";
}
