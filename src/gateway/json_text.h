/* gateway/json_text.h — JSON text written straight into a growing buffer,
 * byte for byte what jansson's json_dumps(v, JSON_COMPACT) writes, for the
 * per-request log lines: formatting a line this way costs no object tree
 * and no allocation per member.
 *
 * Matching jansson: compact separators, members in insertion order,
 * strings escaped as jansson does (\" \\ \b \f \n \r \t, other control
 * characters as \u00XX, everything else as UTF-8), reals as "%.17g" with a
 * ".0" added to integral values and the exponent's "+" and leading zeros
 * dropped (the process runs in the C locale).  Where jansson would refuse
 * (a C string that is not UTF-8, a real that is not finite) this writes
 * U+FFFD for each invalid byte and null respectively, so a line is never
 * lost to one bad field. */
#ifndef BASALT_GATEWAY_JSON_TEXT_H
#define BASALT_GATEWAY_JSON_TEXT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct json_text {
    char *data;
    size_t len, cap;
    int oom;  /* an append failed: the text is incomplete, data may be NULL */
    int heap; /* data is malloc'd (else the caller's buffer, or NULL) */
} json_text;

/* A text that starts in the caller's buffer (a stack array: a line that
 * fits costs no allocation) and moves to the heap past it.  {0} is a text
 * that starts on the heap. */
static inline json_text json_text_on(char *buf, size_t cap) { return (json_text){.data = buf, .cap = cap}; }

/* Bytes as they are (punctuation, keys the caller spelled out). */
void json_text_raw(json_text *t, const char *s, size_t n);
#define json_text_lit(t, s) json_text_raw((t), (s), sizeof(s) - 1)
/* A string value; NULL writes null. */
void json_text_str(json_text *t, const char *s);
void json_text_strn(json_text *t, const char *s, size_t n);
void json_text_int(json_text *t, int64_t v);
void json_text_real(json_text *t, double v);
void json_text_bool(json_text *t, int v);
/* Any jansson value, as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
 * NULL writes null. */
void json_text_value(json_text *t, const json_t *v);
/* Frees what the text allocated. */
void json_text_free(json_text *t);

#endif
