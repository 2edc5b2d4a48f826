/* server/buf.h — a growable byte buffer for response bodies, SSE frames and
 * held-back stream text.  Allocation failure is sticky: the buffer stops
 * growing and records it, so writers can append freely and check once. */
#ifndef BASALT_SERVER_BUF_H
#define BASALT_SERVER_BUF_H

#include <stddef.h>

typedef struct srv_buf {
    char *data; /* NUL-terminated while len < cap */
    size_t len, cap;
    int oom;
} srv_buf;

void buf_append(srv_buf *b, const char *s, size_t n);
void buf_puts(srv_buf *b, const char *s);
void buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes. */
void buf_consume(srv_buf *b, size_t n);
void buf_free(srv_buf *b);

#endif
