/* template/jinja.h — a Jinja2 interpreter for chat templates.
 *
 * Parses a template once (jinja_parse) and renders it many times
 * (jinja_render) with JSON variables, reproducing Python jinja2 3.1 byte for
 * byte under Hugging Face's chat-template environment: an immutable sandbox,
 * trim_blocks and lstrip_blocks on, loop controls, the {% generation %} tag,
 * HF's tojson / raise_exception / strftime_now globals.  Errors name the
 * template line and column.  A jinja_template is immutable after parse and
 * may be rendered by several threads at once. */
#ifndef BASALT_TEMPLATE_JINJA_H
#define BASALT_TEMPLATE_JINJA_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

#include "base/error.h"

typedef struct jinja_template jinja_template;

typedef struct jinja_options {
    time_t now;               /* strftime_now's clock (local time); 0 = the current time */
    long max_iterations;      /* loop iterations over the whole render; 0 = 1,000,000 */
    size_t max_output;        /* bytes of output; 0 = 16 MiB */
    int max_depth;            /* nested macro calls / expression depth; 0 = 200 */
} jinja_options;

/* name labels errors ("chat_template:3:7: ...") and may be NULL. */
bs_status jinja_parse(const char *source, const char *name, jinja_template **out, bs_error *err);
void jinja_free(jinja_template *t);

/* vars: a JSON object whose members become template variables (NULL = none).
 * opts may be NULL.  *out is malloc'ed and NUL-terminated; *len excludes the NUL. */
bs_status jinja_render(const jinja_template *t, const json_t *vars, const jinja_options *opts, char **out,
                       size_t *len, bs_error *err);

#endif
