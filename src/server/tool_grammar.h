/* server/tool_grammar.h — the lazy grammar for strict tools under
 * tool_choice auto, in the model family's own tool-call markup
 * (chat_call_syntax), as llama.cpp's lazy grammars: the model writes freely
 * until the family's trigger, then the grammar takes the block — calls
 * naming one of the tools, a strict tool's arguments matching its schema
 * (the others' free), and the closer.
 *
 * XML families write a strict tool's declared parameters in schema order
 * (required ones always, optional ones maybe), each value as the parser
 * reads it (chat_xml_value_type): JSON per the parameter's schema, or raw
 * text up to the end tag, where the schema may only restrict the text by
 * enum/const.  What the markup cannot carry (parameters that are not an
 * object with properties, a constraint on text values, names markup cannot
 * hold) is BS_EUNSUPPORTED naming the tool and the reason. */
#ifndef BASALT_SERVER_TOOL_GRAMMAR_H
#define BASALT_SERVER_TOOL_GRAMMAR_H

#include <jansson.h>

#include "base/error.h"
#include "engine/grammar.h"
#include "template/chat_parse.h"

/* tools: the request's OpenAI tools array.  With parallel, a block holds
 * several calls where the family joins them (separator), else exactly one. */
bs_status tool_grammar_build(const json_t *tools, int parallel, const chat_call_syntax *syn, const char *family,
                             bs_grammar **out, bs_error *err);

#endif
