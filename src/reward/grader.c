/* reward/grader.c — parsing (OpenAI's /graders/validate rules plus
 * basalt's kinds) and batch scoring of graders.
 *
 * Built-in graders score sample by sample; multi scores each sub-grader
 * over the whole batch (so an external sub-grader still batches) and then
 * evaluates calculate_output per sample. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reward/reward_impl.h"

const char *reward_error_name(reward_error_kind kind) {
    static const char *const names[REWARD_ERR_KINDS] = {"timeout",   "connection", "http_5xx", "http_4xx",
                                                        "invalid_json", "missing_id", "wrong_count", "nan",
                                                        "command"};
    return kind < REWARD_ERR_KINDS ? names[kind] : "unknown";
}

/* ------------------------------------------------------------ parsing */

static const char *const metrics[] = {"fuzzy_match", "bleu",    "gleu",    "rouge_1", "rouge_2",
                                      "rouge_3",     "rouge_4", "rouge_5", "rouge_l"};

static char *dup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort(); /* strings of a grader document: as jansson, no recovery from OOM */
    return d;
}

/* A required (or, with def, optional) string field; *out owned. */
static bs_status str_field(const json_t *g, const char *key, const char *path, const char *def, char **out,
                           bs_error *err) {
    const json_t *v = json_object_get(g, key);
    if (!v && def) {
        *out = dup(def);
        return BS_OK;
    }
    if (!v) return bs_fail(err, BS_EINVAL, "%s.%s: required", path, key);
    if (!json_is_string(v)) return bs_fail(err, BS_EINVAL, "%s.%s: must be a string", path, key);
    *out = dup(json_string_value(v));
    return BS_OK;
}

static bs_status template_field(const json_t *g, const char *key, const char *path, const char *def, char **out,
                                bs_error *err) {
    char p[BS_ERROR_MSG_MAX];
    snprintf(p, sizeof p, "%s.%s", path, key);
    if (str_field(g, key, path, def, out, err) != BS_OK) return err ? err->status : BS_EINVAL;
    return template_check(*out, p, err);
}

/* An optional integer option in [lo, hi]. */
static bs_status int_field(const json_t *g, const char *key, const char *path, long lo, long hi, long *out,
                           bs_error *err) {
    const json_t *v = json_object_get(g, key);
    if (!v) return BS_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bs_fail(err, BS_EINVAL, "%s.%s: must be an integer in [%ld, %ld]", path, key, lo, hi);
    *out = (long)json_integer_value(v);
    return BS_OK;
}

static bs_status parse_remote_opts(const json_t *g, const char *path, remote_opts *o, bs_error *err) {
    long batch = 16, conc = 4, timeout = 30000, retries = 2;
    if (int_field(g, "batch_size", path, 1, 4096, &batch, err) || int_field(g, "concurrency", path, 1, 64, &conc, err) ||
        int_field(g, "timeout_ms", path, 1, 900000, &timeout, err) || int_field(g, "retries", path, 0, 10, &retries, err))
        return err ? err->status : BS_EINVAL;
    *o = (remote_opts){(int)batch, (int)conc, timeout, (int)retries};
    return BS_OK;
}

/* The function name from "arn:aws:lambda:region:acct:function:NAME[:QUALIFIER]"
 * or a bare name, as the env variable suffix (upper case, [^A-Z0-9] → '_'). */
static void lambda_env_name(const char *fn, char *out, size_t cap) {
    const char *name = fn, *f = strstr(fn, ":function:");
    size_t n = strlen(fn);
    if (f) {
        name = f + 10;
        const char *q = strchr(name, ':');
        n = q ? (size_t)(q - name) : strlen(name);
    }
    size_t k = (size_t)snprintf(out, cap, "BASALT_LAMBDA_");
    for (size_t i = 0; i < n && k + 5 < cap; i++)
        out[k++] = isalnum((unsigned char)name[i]) ? (char)toupper((unsigned char)name[i]) : '_';
    snprintf(out + k, cap - k, "_URL");
}

static bs_status parse_http(bs_reward_grader *g, const json_t *j, const char *path, bs_error *err) {
    g->kind = GRADER_HTTP;
    if (strcmp(g->type, "lambda") == 0) {
        const json_t *l = json_object_get(j, "lambda"), *fn = json_object_get(l, "function");
        if (!json_is_object(l)) return bs_fail(err, BS_EINVAL, "%s.lambda: required object {\"function\": ARN or name}", path);
        if (!json_is_string(fn) || !*json_string_value(fn))
            return bs_fail(err, BS_EINVAL, "%s.lambda.function: required string (ARN or name)", path);
        char env[256];
        lambda_env_name(json_string_value(fn), env, sizeof env);
        const char *url = getenv(env);
        if (!url || !*url)
            return bs_fail(err, BS_ENOTFOUND, "%s.lambda.function: no endpoint for \"%s\": set %s", path,
                           json_string_value(fn), env);
        g->url = dup(url);
    } else if (str_field(j, "url", path, NULL, &g->url, err) != BS_OK) {
        return err ? err->status : BS_EINVAL;
    } else if (strncmp(g->url, "http://", 7) != 0 && strncmp(g->url, "https://", 8) != 0) {
        return bs_fail(err, BS_EINVAL, "%s.url: must be an http:// or https:// URL", path);
    }
    const json_t *h = json_object_get(j, "headers"), *v;
    const char *k;
    if (h && !json_is_object(h)) return bs_fail(err, BS_EINVAL, "%s.headers: must be an object", path);
    g->headers = calloc(json_object_size(h) + 1, sizeof *g->headers);
    if (!g->headers) return bs_fail(err, BS_ENOMEM, "%s.headers: out of memory", path);
    json_object_foreach((json_t *)h, k, v) {
        if (!json_is_string(v)) return bs_fail(err, BS_EINVAL, "%s.headers.%s: must be a string", path, k);
        if (strpbrk(k, ":\r\n") || strpbrk(json_string_value(v), "\r\n"))
            return bs_fail(err, BS_EINVAL, "%s.headers.%s: invalid header", path, k);
        size_t n = strlen(k) + json_string_length(v) + 3;
        if (!(g->headers[g->n_headers] = malloc(n))) return bs_fail(err, BS_ENOMEM, "%s.headers: out of memory", path);
        snprintf(g->headers[g->n_headers++], n, "%s: %s", k, json_string_value(v));
    }
    return parse_remote_opts(j, path, &g->remote, err);
}

static bs_status parse_command(bs_reward_grader *g, const json_t *j, const char *path, bs_error *err) {
    g->kind = GRADER_COMMAND;
    const json_t *a = json_object_get(j, "argv"), *e;
    size_t i;
    if (!json_is_array(a) || json_array_size(a) == 0)
        return bs_fail(err, BS_EINVAL, "%s.argv: required non-empty array of strings", path);
    g->argv = calloc(json_array_size(a) + 1, sizeof *g->argv);
    if (!g->argv) return bs_fail(err, BS_ENOMEM, "%s.argv: out of memory", path);
    json_array_foreach(a, i, e) {
        if (!json_is_string(e)) return bs_fail(err, BS_EINVAL, "%s.argv[%zu]: must be a string", path, i);
        g->argv[i] = dup(json_string_value(e));
    }
    if (parse_remote_opts(j, path, &g->remote, err) != BS_OK) return err ? err->status : BS_EINVAL;
    /* a process start is costly: by default the whole batch goes to one invocation */
    if (!json_object_get(j, "batch_size")) g->remote.batch_size = 4096;
    g->cpu_seconds = (g->remote.timeout_ms + 999) / 1000 + 1;
    g->memory_mb = 2048;
    g->max_files = 64;
    if (int_field(j, "cpu_seconds", path, 1, 3600, &g->cpu_seconds, err) ||
        int_field(j, "memory_mb", path, 16, 1 << 20, &g->memory_mb, err) ||
        int_field(j, "max_files", path, 8, 65536, &g->max_files, err))
        return err ? err->status : BS_EINVAL;
    return BS_OK;
}

static bs_status parse_into(bs_reward_grader *g, const json_t *j, const char *path, int top, bs_error *err);

static bs_status parse_multi(bs_reward_grader *g, const json_t *j, const char *path, bs_error *err) {
    g->kind = GRADER_MULTI;
    const json_t *subs = json_object_get(j, "graders"), *v;
    const char *k;
    char sub[BS_ERROR_MSG_MAX];
    if (!json_is_object(subs) || json_object_size(subs) == 0)
        return bs_fail(err, BS_EINVAL, "%s.graders: required object mapping names to graders", path);
    size_t n = json_object_size(subs);
    g->sub_keys = calloc(n, sizeof *g->sub_keys);
    g->subs = calloc(n, sizeof *g->subs);
    if (!g->sub_keys || !g->subs) return bs_fail(err, BS_ENOMEM, "%s.graders: out of memory", path);
    json_object_foreach((json_t *)subs, k, v) {
        snprintf(sub, sizeof sub, "%s.graders.%s", path, k);
        const char *c = k;
        while (isalnum((unsigned char)*c) || *c == '_') c++;
        if (*c || isdigit((unsigned char)*k))
            return bs_fail(err, BS_EINVAL, "%s: a grader key must be an identifier usable in calculate_output", sub);
        g->sub_keys[g->n_sub] = dup(k);
        if (!(g->subs[g->n_sub] = calloc(1, sizeof **g->subs)))
            return bs_fail(err, BS_ENOMEM, "%s: out of memory", sub);
        g->n_sub++;
        if (parse_into(g->subs[g->n_sub - 1], v, sub, 0, err) != BS_OK) return err ? err->status : BS_EINVAL;
    }
    char *formula_text;
    if (str_field(j, "calculate_output", path, NULL, &formula_text, err) != BS_OK) return err ? err->status : BS_EINVAL;
    /* multi is only ever the top-level grader, so the formula's errors say "grader.calculate_output" */
    bs_status st = formula_parse(formula_text, g->sub_keys, g->n_sub, &g->formula, err);
    free(formula_text);
    return st;
}

static bs_status parse_regex(bs_reward_grader *g, const json_t *j, const char *path, bs_error *err) {
    g->kind = GRADER_REGEX;
    char *pattern;
    if (template_field(j, "input", path, "{{sample.output_text}}", &g->input, err) != BS_OK ||
        str_field(j, "pattern", path, NULL, &pattern, err) != BS_OK)
        return err ? err->status : BS_EINVAL;
    int code;
    PCRE2_SIZE off;
    g->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &off, NULL);
    free(pattern);
    if (!g->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        return bs_fail(err, BS_EINVAL, "%s.pattern: %s at offset %zu", path, (const char *)msg, (size_t)off);
    }
    const json_t *groups = json_object_get(j, "groups"), *v;
    const char *k;
    if (groups && !json_is_object(groups))
        return bs_fail(err, BS_EINVAL, "%s.groups: must be an object of group name -> expected text", path);
    size_t n = json_object_size(groups);
    g->group_names = calloc(n + 1, sizeof *g->group_names);
    g->group_values = calloc(n + 1, sizeof *g->group_values);
    if (!g->group_names || !g->group_values) return bs_fail(err, BS_ENOMEM, "%s.groups: out of memory", path);
    char sub[BS_ERROR_MSG_MAX];
    json_object_foreach((json_t *)groups, k, v) {
        snprintf(sub, sizeof sub, "%s.groups", path);
        if (pcre2_substring_number_from_name(g->re, (PCRE2_SPTR)k) < 0)
            return bs_fail(err, BS_EINVAL, "%s.%s: the pattern has no group named \"%s\"", sub, k, k);
        g->group_names[g->n_groups] = dup(k);
        g->n_groups++;
        if (template_field(groups, k, sub, NULL, &g->group_values[g->n_groups - 1], err) != BS_OK)
            return err ? err->status : BS_EINVAL;
    }
    return BS_OK;
}

static bs_status parse_into(bs_reward_grader *g, const json_t *j, const char *path, int top, bs_error *err) {
    g->pass_threshold = NAN;
    if (!json_is_object(j)) return bs_fail(err, BS_EINVAL, "%s: must be an object", path);
    const json_t *t = json_object_get(j, "type");
    if (!json_is_string(t)) return bs_fail(err, BS_EINVAL, "%s.type: required string", path);
    const char *type = json_string_value(t);
    static const char *const types[] = {"string_check", "text_similarity", "multi", "json_schema", "regex",
                                        "http",         "lambda",          "command"};
    size_t ti = 0;
    while (ti < sizeof types / sizeof types[0] && strcmp(types[ti], type) != 0) ti++;
    if (ti == sizeof types / sizeof types[0]) {
        const char *why = strcmp(type, "score_model") == 0 || strcmp(type, "label_model") == 0 || strcmp(type, "python") == 0
                              ? " (not supported by basalt: use an http, lambda or command grader)"
                              : "";
        return bs_fail(err, BS_EUNSUPPORTED, "%s.type: unknown grader type \"%s\"%s", path, type, why);
    }
    g->type = types[ti];
    /* OpenAI requires name; Bedrock's lambda grader has none, so it defaults to the type there. */
    const char *need_name = ti >= 3 ? g->type : NULL;
    if (str_field(j, "name", path, need_name, &g->name, err) != BS_OK) return err ? err->status : BS_EINVAL;
    const json_t *pt = json_object_get(j, "pass_threshold");
    if (pt && !json_is_null(pt)) {
        if (!json_is_number(pt)) return bs_fail(err, BS_EINVAL, "%s.pass_threshold: must be a number", path);
        g->pass_threshold = json_number_value(pt);
    }
    switch (ti) {
    case 0: {
        char *op;
        if (template_field(j, "input", path, NULL, &g->input, err) != BS_OK ||
            template_field(j, "reference", path, NULL, &g->reference, err) != BS_OK ||
            str_field(j, "operation", path, NULL, &op, err) != BS_OK)
            return err ? err->status : BS_EINVAL;
        static const char *const ops[] = {"eq", "ne", "like", "ilike", "neq"};
        int o = 0;
        while (o < 5 && strcmp(ops[o], op) != 0) o++;
        free(op);
        if (o == 5) return bs_fail(err, BS_EINVAL, "%s.operation: must be one of eq, ne, like, ilike", path);
        g->kind = GRADER_STRING_CHECK;
        g->op = o == 4 ? STR_NE : (string_op)o; /* the guide's prose says "neq" */
        return BS_OK;
    }
    case 1: {
        g->kind = GRADER_TEXT_SIMILARITY;
        if (template_field(j, "input", path, NULL, &g->input, err) != BS_OK ||
            template_field(j, "reference", path, NULL, &g->reference, err) != BS_OK ||
            str_field(j, "evaluation_metric", path, NULL, &g->metric, err) != BS_OK)
            return err ? err->status : BS_EINVAL;
        for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++)
            if (strcmp(metrics[m], g->metric) == 0) return BS_OK;
        return bs_fail(err, BS_EUNSUPPORTED,
                       "%s.evaluation_metric: \"%s\" is not supported (fuzzy_match, bleu, gleu, rouge_1..rouge_5, rouge_l)",
                       path, g->metric);
    }
    case 2:
        if (!top) return bs_fail(err, BS_EINVAL, "%s.type: multi graders cannot be nested", path);
        return parse_multi(g, j, path, err);
    case 3: {
        g->kind = GRADER_JSON_SCHEMA;
        char p[BS_ERROR_MSG_MAX];
        snprintf(p, sizeof p, "%s.schema", path);
        const json_t *s = json_object_get(j, "schema"), *pc = json_object_get(j, "partial_credit");
        if (template_field(j, "input", path, "{{sample.output_text}}", &g->input, err) != BS_OK) return err ? err->status : BS_EINVAL;
        if (!s) return bs_fail(err, BS_EINVAL, "%s: required", p);
        if (json_schema_check(s, p, err) != BS_OK) return err ? err->status : BS_EINVAL;
        if (pc && !json_is_boolean(pc)) return bs_fail(err, BS_EINVAL, "%s.partial_credit: must be a boolean", path);
        g->partial_credit = json_is_true(pc);
        g->schema = json_incref((json_t *)s);
        return BS_OK;
    }
    case 4: return parse_regex(g, j, path, err);
    case 5:
    case 6: return parse_http(g, j, path, err);
    default: return parse_command(g, j, path, err);
    }
}

bs_status reward_grader_parse(const json_t *grader, bs_reward_grader **out, bs_error *err) {
    *out = NULL;
    bs_reward_grader *g = calloc(1, sizeof *g);
    if (!g) return bs_fail(err, BS_ENOMEM, "grader: out of memory");
    bs_error local;
    bs_error *e = err ? err : &local;
    if (parse_into(g, grader, "grader", 1, e) != BS_OK) {
        reward_grader_free(g);
        return e->status;
    }
    *out = g;
    return BS_OK;
}

void reward_grader_free(bs_reward_grader *g) {
    if (!g) return;
    free(g->name);
    free(g->input);
    free(g->reference);
    free(g->metric);
    for (int i = 0; i < g->n_sub; i++) {
        free(g->sub_keys[i]);
        reward_grader_free(g->subs[i]);
    }
    free(g->sub_keys);
    free(g->subs);
    formula_free(g->formula);
    json_decref(g->schema);
    pcre2_code_free(g->re);
    for (int i = 0; i < g->n_groups; i++) {
        free(g->group_names[i]);
        free(g->group_values[i]);
    }
    free(g->group_names);
    free(g->group_values);
    free(g->url);
    for (int i = 0; i < g->n_headers; i++) free(g->headers[i]);
    free(g->headers);
    for (int i = 0; g->argv && g->argv[i]; i++) free(g->argv[i]);
    free(g->argv);
    free(g);
}

const char *reward_grader_name(const bs_reward_grader *g) { return g->name; }
const char *reward_grader_type(const bs_reward_grader *g) { return g->type; }

/* ------------------------------------------------------------ scoring */

static const char *ci_strstr(const char *h, const char *n) {
    size_t ln = strlen(n);
    for (; *h; h++)
        if (strncasecmp(h, n, ln) == 0) return h;
    return ln == 0 ? h : NULL;
}

static double score_regex(const bs_reward_grader *g, const char *input, const json_t *item, const char *text,
                          const json_t *oj) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(g->re, NULL);
    if (!md) return NAN;
    int rc = pcre2_match(g->re, (PCRE2_SPTR)input, strlen(input), 0, 0, md, NULL);
    double score = rc >= 0;
    for (int i = 0; score == 1 && i < g->n_groups; i++) {
        PCRE2_UCHAR *got = NULL;
        PCRE2_SIZE len;
        char *want = template_render(g->group_values[i], item, text, oj);
        if (pcre2_substring_get_byname(md, (PCRE2_SPTR)g->group_names[i], &got, &len) != 0 ||
            strlen(want) != len || memcmp(got, want, len) != 0)
            score = 0;
        pcre2_substring_free(got);
        free(want);
    }
    pcre2_match_data_free(md);
    return score;
}

/* Fraction of the schema's top-level required properties that are present
 * and valid: partial credit for an almost-right object. */
static double partial_credit(const json_t *schema, const json_t *value) {
    const json_t *req = json_object_get(schema, "required"), *props = json_object_get(schema, "properties"), *e;
    size_t i, n = json_array_size(req), ok = 0;
    if (n == 0 || !json_is_object(value)) return 0;
    json_array_foreach(req, i, e) {
        const json_t *v = json_object_get(value, json_string_value(e)), *p = json_object_get(props, json_string_value(e));
        ok += v && (!p || json_validate(p, v));
    }
    return (double)ok / (double)n;
}

/* One sample through a built-in (non-multi, local) grader; sub receives
 * per-sample metrics. */
static double score_local(const bs_reward_grader *g, const reward_sample *s, json_t *sub) {
    const char *text = s->output_text ? s->output_text : "";
    json_t *empty = json_object();
    const json_t *item = s->item ? s->item : empty;
    json_t *oj = json_loads(text, JSON_DECODE_ANY, NULL);
    char *in = template_render(g->input, item, text, oj);
    char *ref = g->reference ? template_render(g->reference, item, text, oj) : NULL;
    double score = NAN;
    switch (g->kind) {
    case GRADER_STRING_CHECK:
        switch (g->op) {
        case STR_EQ: score = strcmp(in, ref) == 0; break;
        case STR_NE: score = strcmp(in, ref) != 0; break;
        case STR_LIKE: score = strstr(in, ref) != NULL; break;
        case STR_ILIKE: score = ci_strstr(in, ref) != NULL; break;
        }
        break;
    case GRADER_TEXT_SIMILARITY:
        score = reward_similarity(g->metric, in, ref);
        if (!isnan(g->pass_threshold) && !isnan(score))
            json_object_set_new(sub, "passed", json_boolean(score >= g->pass_threshold));
        break;
    case GRADER_JSON_SCHEMA: {
        json_t *v = json_loads(in, JSON_DECODE_ANY, NULL);
        score = v && json_validate(g->schema, v) ? 1.0 : g->partial_credit && v ? partial_credit(g->schema, v) : 0.0;
        json_decref(v);
        break;
    }
    case GRADER_REGEX: score = score_regex(g, in, item, text, oj); break;
    default: break;
    }
    free(in);
    free(ref);
    json_decref(oj);
    json_decref(empty);
    return score;
}

static void errors_merge(reward_errors *into, const reward_errors *from) {
    for (int k = 0; k < REWARD_ERR_KINDS; k++) into->count[k] += from->count[k];
    if (!into->first[0]) memcpy(into->first, from->first, sizeof into->first);
}

static bs_status score_multi(const bs_reward_grader *g, const reward_sample *samples, int n, double *scores,
                             reward_errors *errs, json_t *metrics, bs_error *err) {
    double *sub = malloc((size_t)n * (size_t)g->n_sub * sizeof *sub), *vals = malloc((size_t)g->n_sub * sizeof *vals);
    if (!sub || !vals) {
        free(sub);
        free(vals);
        return bs_fail(err, BS_ENOMEM, "grader %s: out of memory", g->name);
    }
    bs_status st = BS_OK;
    for (int k = 0; k < g->n_sub && st == BS_OK; k++) {
        reward_errors e = {0};
        json_t *m = NULL;
        st = reward_score_batch(g->subs[k], samples, n, sub + (size_t)k * (size_t)n, &e, &m, err);
        errors_merge(errs, &e);
        for (int i = 0; st == BS_OK && i < n; i++) {
            double v = sub[(size_t)k * (size_t)n + (size_t)i];
            json_t *o = json_array_get(metrics, (size_t)i);
            json_object_set_new(o, g->sub_keys[k], isnan(v) ? json_null() : json_real(v));
            const char *mk;
            json_t *mv;
            json_object_foreach(json_array_get(m, (size_t)i), mk, mv) {
                char key[256];
                snprintf(key, sizeof key, "%s/%s", g->sub_keys[k], mk);
                json_object_set(o, key, mv);
            }
        }
        json_decref(m);
    }
    for (int i = 0; st == BS_OK && i < n; i++) {
        for (int k = 0; k < g->n_sub; k++) vals[k] = sub[(size_t)k * (size_t)n + (size_t)i];
        scores[i] = formula_eval(g->formula, vals);
        if (!isfinite(scores[i])) {
            int sub_nan = 0;
            for (int k = 0; k < g->n_sub; k++) sub_nan |= isnan(vals[k]);
            if (!sub_nan) /* the sub-grader's failure is counted already */
                remote_fail(errs, REWARD_ERR_NAN, 1, "grader %s: calculate_output gave %g for sample %d", g->name,
                            scores[i], i);
            scores[i] = NAN;
        }
    }
    free(sub);
    free(vals);
    return st;
}

bs_status reward_score_batch(const bs_reward_grader *g, const reward_sample *samples, int n, double *scores,
                             reward_errors *errs, json_t **metrics, bs_error *err) {
    if (metrics) *metrics = NULL;
    if (!g || n < 0 || (n > 0 && (!samples || !scores))) return bs_fail(err, BS_EINVAL, "reward_score_batch: bad arguments");
    reward_errors local = {0};
    if (!errs) errs = &local;
    json_t *m = json_array();
    for (int i = 0; m && i < n; i++) {
        scores[i] = NAN;
        if (json_array_append_new(m, json_object()) != 0) {
            json_decref(m);
            m = NULL;
        }
    }
    if (!m) return bs_fail(err, BS_ENOMEM, "grader %s: out of memory", g->name);
    bs_status st = BS_OK;
    switch (g->kind) {
    case GRADER_MULTI: st = score_multi(g, samples, n, scores, errs, m, err); break;
    case GRADER_HTTP: remote_score_http(g, samples, n, scores, m, errs); break;
    case GRADER_COMMAND: remote_score_command(g, samples, n, scores, m, errs); break;
    default:
        for (int i = 0; i < n; i++) scores[i] = score_local(g, &samples[i], json_array_get(m, (size_t)i));
    }
    if (metrics && st == BS_OK)
        *metrics = m;
    else
        json_decref(m);
    return st;
}
