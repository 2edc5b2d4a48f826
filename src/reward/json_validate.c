/* reward/json_validate.c — JSON Schema validation of values, for the
 * json_schema grader.  (engine/json_schema.c compiles schemas to grammars
 * for generation, which is a different job.)  The subset: type (a name or
 * an array of names), enum, const, properties, required,
 * additionalProperties (boolean or schema), items, minItems, maxItems,
 * minLength, maxLength (code points), pattern (PCRE2, unanchored as JSON
 * Schema says), minimum, maximum, exclusiveMinimum, exclusiveMaximum
 * (numbers), anyOf, oneOf, allOf, and the annotations title, description,
 * default, examples, $schema, $id, format (format is not asserted).  Any
 * other keyword is refused when the grader is parsed, so a schema never
 * silently means less than it says. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "reward/reward_impl.h"

static const char *const known[] = {
    "type",      "enum",      "const",     "properties", "required", "additionalProperties", "items",
    "minItems",  "maxItems",  "minLength", "maxLength",  "pattern",  "minimum",              "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "title", "description", "default",
    "examples",  "$schema",   "$id",       "format",
};

static const char *const types[] = {"object", "array", "string", "number", "integer", "boolean", "null"};

static int is_type_name(const json_t *t) {
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (json_is_string(t) && strcmp(json_string_value(t), types[i]) == 0) return 1;
    return 0;
}

bs_status json_schema_check(const json_t *schema, const char *path, bs_error *err) {
    if (json_is_boolean(schema)) return BS_OK;
    if (!json_is_object(schema)) return bs_fail(err, BS_EINVAL, "%s: a schema must be an object or a boolean", path);
    const char *k;
    const json_t *v;
    char sub[BS_ERROR_MSG_MAX];
    json_object_foreach((json_t *)schema, k, v) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], k) != 0) i++;
        if (i == sizeof known / sizeof known[0])
            return bs_fail(err, BS_EUNSUPPORTED, "%s.%s: unsupported JSON Schema keyword", path, k);
    }
    const json_t *t = json_object_get(schema, "type");
    if (t && !is_type_name(t)) {
        size_t i;
        const json_t *e;
        if (!json_is_array(t)) return bs_fail(err, BS_EINVAL, "%s.type: not a JSON type name", path);
        json_array_foreach(t, i, e) if (!is_type_name(e)) return bs_fail(err, BS_EINVAL, "%s.type[%zu]: not a JSON type name", path, i);
    }
    if ((v = json_object_get(schema, "properties"))) {
        if (!json_is_object(v)) return bs_fail(err, BS_EINVAL, "%s.properties: must be an object", path);
        const json_t *p;
        json_object_foreach((json_t *)v, k, p) {
            snprintf(sub, sizeof sub, "%s.properties.%s", path, k);
            if (json_schema_check(p, sub, err) != BS_OK) return err ? err->status : BS_EINVAL;
        }
    }
    if ((v = json_object_get(schema, "required"))) {
        size_t i;
        const json_t *e;
        if (!json_is_array(v)) return bs_fail(err, BS_EINVAL, "%s.required: must be an array of names", path);
        json_array_foreach(v, i, e) if (!json_is_string(e)) return bs_fail(err, BS_EINVAL, "%s.required[%zu]: not a string", path, i);
    }
    static const char *const sub_schemas[] = {"additionalProperties", "items"};
    for (int i = 0; i < 2; i++)
        if ((v = json_object_get(schema, sub_schemas[i]))) {
            snprintf(sub, sizeof sub, "%s.%s", path, sub_schemas[i]);
            if (json_schema_check(v, sub, err) != BS_OK) return err ? err->status : BS_EINVAL;
        }
    static const char *const lists[] = {"anyOf", "oneOf", "allOf"};
    for (int i = 0; i < 3; i++)
        if ((v = json_object_get(schema, lists[i]))) {
            size_t j;
            const json_t *e;
            if (!json_is_array(v) || json_array_size(v) == 0)
                return bs_fail(err, BS_EINVAL, "%s.%s: must be a non-empty array of schemas", path, lists[i]);
            json_array_foreach(v, j, e) {
                snprintf(sub, sizeof sub, "%s.%s[%zu]", path, lists[i], j);
                if (json_schema_check(e, sub, err) != BS_OK) return err ? err->status : BS_EINVAL;
            }
        }
    static const char *const numbers[] = {"minItems", "maxItems", "minLength", "maxLength", "minimum",
                                          "maximum",  "exclusiveMinimum", "exclusiveMaximum"};
    for (int i = 0; i < 8; i++)
        if ((v = json_object_get(schema, numbers[i])) && !json_is_number(v))
            return bs_fail(err, BS_EINVAL, "%s.%s: must be a number", path, numbers[i]);
    if ((v = json_object_get(schema, "pattern"))) {
        int code;
        PCRE2_SIZE off;
        pcre2_code *re = json_is_string(v) ? pcre2_compile((PCRE2_SPTR)json_string_value(v), PCRE2_ZERO_TERMINATED,
                                                           PCRE2_UTF, &code, &off, NULL)
                                           : NULL;
        if (!re) return bs_fail(err, BS_EINVAL, "%s.pattern: not a valid regular expression", path);
        pcre2_code_free(re);
    }
    if ((v = json_object_get(schema, "enum")) && !json_is_array(v))
        return bs_fail(err, BS_EINVAL, "%s.enum: must be an array", path);
    return BS_OK;
}

static int type_matches(const char *t, const json_t *v) {
    if (strcmp(t, "object") == 0) return json_is_object(v);
    if (strcmp(t, "array") == 0) return json_is_array(v);
    if (strcmp(t, "string") == 0) return json_is_string(v);
    if (strcmp(t, "boolean") == 0) return json_is_boolean(v);
    if (strcmp(t, "null") == 0) return json_is_null(v);
    if (strcmp(t, "number") == 0) return json_is_number(v);
    /* integer: JSON Schema counts 1.0 as an integer */
    return json_is_integer(v) || (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v));
}

static size_t code_points(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static int num(const json_t *schema, const char *key, double *out) {
    const json_t *v = json_object_get(schema, key);
    if (!v) return 0;
    *out = json_number_value(v);
    return 1;
}

int json_validate(const json_t *schema, const json_t *value) {
    if (json_is_boolean(schema)) return json_is_true(schema);
    const json_t *t = json_object_get(schema, "type"), *v;
    if (json_is_string(t) && !type_matches(json_string_value(t), value)) return 0;
    if (json_is_array(t)) {
        size_t i;
        const json_t *e;
        int any = 0;
        json_array_foreach(t, i, e) any |= type_matches(json_string_value(e), value);
        if (!any) return 0;
    }
    if ((v = json_object_get(schema, "const")) && !json_equal(v, (json_t *)value)) return 0;
    if ((v = json_object_get(schema, "enum"))) {
        size_t i;
        const json_t *e;
        int any = 0;
        json_array_foreach(v, i, e) any |= json_equal(e, (json_t *)value);
        if (!any) return 0;
    }
    double x;
    if (json_is_number(value)) {
        double d = json_number_value(value);
        if ((num(schema, "minimum", &x) && d < x) || (num(schema, "maximum", &x) && d > x) ||
            (num(schema, "exclusiveMinimum", &x) && d <= x) || (num(schema, "exclusiveMaximum", &x) && d >= x))
            return 0;
    }
    if (json_is_string(value)) {
        size_t n = code_points(json_string_value(value), json_string_length(value));
        if ((num(schema, "minLength", &x) && n < x) || (num(schema, "maxLength", &x) && n > x)) return 0;
        if ((v = json_object_get(schema, "pattern"))) {
            int code;
            PCRE2_SIZE off;
            pcre2_code *re = pcre2_compile((PCRE2_SPTR)json_string_value(v), PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code,
                                           &off, NULL);
            pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
            int rc = md ? pcre2_match(re, (PCRE2_SPTR)json_string_value(value), json_string_length(value), 0, 0, md, NULL)
                        : -1;
            pcre2_match_data_free(md);
            pcre2_code_free(re);
            if (rc < 0) return 0;
        }
    }
    if (json_is_array(value)) {
        size_t n = json_array_size(value), i;
        const json_t *e;
        if ((num(schema, "minItems", &x) && n < x) || (num(schema, "maxItems", &x) && n > x)) return 0;
        if ((v = json_object_get(schema, "items"))) json_array_foreach(value, i, e) if (!json_validate(v, e)) return 0;
    }
    if (json_is_object(value)) {
        const json_t *props = json_object_get(schema, "properties"), *extra = json_object_get(schema, "additionalProperties");
        const char *k;
        const json_t *e;
        size_t i;
        json_array_foreach(json_object_get(schema, "required"), i, e) if (!json_object_get(value, json_string_value(e))) return 0;
        json_object_foreach((json_t *)value, k, e) {
            const json_t *p = json_object_get(props, k);
            if (p ? !json_validate(p, e) : (extra && !json_validate(extra, e))) return 0;
        }
    }
    if ((v = json_object_get(schema, "allOf"))) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) if (!json_validate(e, value)) return 0;
    }
    if ((v = json_object_get(schema, "anyOf"))) {
        size_t i;
        const json_t *e;
        int any = 0;
        json_array_foreach(v, i, e) any |= json_validate(e, value);
        if (!any) return 0;
    }
    if ((v = json_object_get(schema, "oneOf"))) {
        size_t i;
        const json_t *e;
        int hits = 0;
        json_array_foreach(v, i, e) hits += json_validate(e, value);
        if (hits != 1) return 0;
    }
    return 1;
}
