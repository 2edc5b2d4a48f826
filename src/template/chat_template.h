/* template/chat_template.h — a model's chat template: where it comes from
 * (HF tokenizer_config.json / chat_template.jinja, GGUF metadata, or the
 * ChatML fallback) and rendering a conversation into a prompt exactly as
 * Hugging Face's apply_chat_template does (see template/jinja.h).
 * A chat_template is immutable after open and may be shared by threads. */
#ifndef BASALT_TEMPLATE_CHAT_TEMPLATE_H
#define BASALT_TEMPLATE_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

#include "base/error.h"

typedef struct chat_template chat_template;

/* source: the Jinja template; bos/eos token strings (may be "" or NULL). */
bs_status chat_template_open(const char *source, const char *bos_token, const char *eos_token, chat_template **out,
                             bs_error *err);

/* From a model: an HF directory (tokenizer_config.json "chat_template", a
 * string or a list of {name, template}; else chat_template.jinja beside it)
 * or a .gguf (tokenizer.chat_template, or tokenizer.chat_template.NAME).
 * name picks a named template (e.g. "tool_use"); NULL, or a name the model
 * lacks, picks "default".  bos/eos strings come from tokenizer_config.json
 * (a string or an AddedToken {"content": ...}) or the GGUF vocabulary.
 * A model without a template, or model_path NULL (a model with no files),
 * gets the ChatML template; a debug log line says so. */
bs_status chat_template_from_model(const char *model_path, const char *name, chat_template **out, bs_error *err);

void chat_template_close(chat_template *t);
const char *chat_template_source(const chat_template *t);
const char *chat_template_bos(const chat_template *t);
const char *chat_template_eos(const chat_template *t);

/* Pin strftime_now's clock (Unix time, rendered as local time) so renders
 * are reproducible; 0 restores the real clock.  Call before sharing t. */
void chat_template_pin_clock(chat_template *t, time_t now);

/* Render with the variables apply_chat_template passes: messages (JSON
 * array), tools (JSON array, or NULL for none), documents (none),
 * add_generation_prompt, bos_token, eos_token, then the members of extra
 * (a JSON object, e.g. {"enable_thinking": false}, or NULL), which override.
 * *out is malloc'ed and NUL-terminated; *len excludes the NUL.  A template
 * that calls raise_exception fails with its message in err. */
bs_status chat_template_render(const chat_template *t, const json_t *messages, const json_t *tools,
                               int add_generation_prompt, const json_t *extra, char **out, size_t *len,
                               bs_error *err);

#endif
