/* engine/json_schema.h — JSON Schema -> GBNF, the front end of
 * grammar_from_json_schema (grammar.h).
 *
 * Supported (everything else is an error naming the keyword and its path):
 *  - type: object, array, string, number, integer, boolean, null, or an array
 *    of them; a schema without type takes its type from its keywords, an
 *    empty schema ({} or true) is any JSON value.
 *  - object: properties (emitted in schema order; required ones must appear,
 *    optional ones may be skipped), required (names must be in properties),
 *    additionalProperties false / true / absent / a schema.  Extra keys come
 *    after the declared ones, are plain strings (no escapes) and never equal
 *    a declared name, so the output has no duplicate keys.
 *  - string: minLength/maxLength (<= 4096), pattern (a regex subset:
 *    literals, escapes \d \w \s \D \W \S, classes, ., groups, (?:), |, ?, *,
 *    +, {m,n}, lazy quantifiers, ^ and $ at the ends; JSON Schema search
 *    semantics, so an unanchored side may have any text), format date, time,
 *    date-time, uuid, email.  One of pattern / format / lengths at a time.
 *    \u escapes are limited to non-surrogates so lengths count code points.
 *  - number/integer: minimum, maximum, exclusiveMinimum, exclusiveMaximum
 *    (numbers: as JSON Schema 2019+ numbers, or draft-4 booleans), enforced
 *    exactly when the bounds are integers of magnitude <= 10^15; a bounded
 *    number is written without exponent.  Unbounded: at most 16 integer
 *    digits, 16 fraction digits and 3 exponent digits (stops runaway digits).
 *  - array: items, prefixItems (items false closes the tuple), minItems,
 *    maxItems (<= 4096).
 *  - enum / const of any JSON values, written as compact JSON (jansson's
 *    serialization, keys in the given order).  Only type and annotations may
 *    sit beside them.
 *  - anyOf; oneOf is compiled as anyOf (exact when branches are disjoint, as
 *    in discriminated unions); allOf with a single schema.
 *  - $ref to "#" or a JSON pointer into the document ("#/$defs/x"),
 *    recursive schemas included (a $ref compiles once to a rule).
 *  - annotations ignored: title, description, default, examples, $comment,
 *    $schema, $id, deprecated, readOnly, writeOnly; $defs / definitions.
 * Whitespace: none at the ends; between tokens `ws ::= | " " | "\n" [ \t]{0,20}`
 * (one space, or a newline and up to 20 spaces/tabs of indentation). */
#ifndef BASALT_ENGINE_JSON_SCHEMA_H
#define BASALT_ENGINE_JSON_SCHEMA_H

#include <jansson.h>

#include "base/error.h"

/* *gbnf is malloc'ed GBNF text with start rule `root`. */
bs_status json_schema_to_gbnf(const json_t *schema, const char *path_for_errors, char **gbnf, bs_error *err);

/* The same rules with the schema's value as rule `rule` instead of root, and
 * no root: for grammars that embed JSON in other text (tool-call markup).
 * The caller's own rules must avoid the names used here (sN and the shared
 * primitives: ws, value, object, string, ...). */
bs_status json_schema_to_gbnf_rule(const json_t *schema, const char *path_for_errors, const char *rule, char **gbnf,
                                   bs_error *err);

/* Several schemas into one rule set sharing the primitives: entry k's value
 * is rule v[k].rule.  $refs in it resolve against v[k].doc (the document it
 * is part of, e.g. a property schema's whole parameters schema), or the
 * schema itself when doc is NULL.  n may be 0 (just the primitives). */
typedef struct json_schema_entry {
    const json_t *schema, *doc;
    const char *path; /* for errors */
    const char *rule;
} json_schema_entry;
bs_status json_schema_to_gbnf_rules(const json_schema_entry *v, size_t n, char **gbnf, bs_error *err);

/* GBNF for any JSON object (response_format json_object). */
const char *json_schema_object_gbnf(void);

#endif
