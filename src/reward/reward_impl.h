/* reward/reward_impl.h — what the reward/ files share: the compiled grader,
 * templates, the calculate_output formula, the JSON value validator and the
 * external (HTTP, command) scorers. */
#ifndef BASALT_REWARD_REWARD_IMPL_H
#define BASALT_REWARD_REWARD_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "reward/reward.h"

typedef enum {
    GRADER_STRING_CHECK,
    GRADER_TEXT_SIMILARITY,
    GRADER_MULTI,
    GRADER_JSON_SCHEMA,
    GRADER_REGEX,
    GRADER_HTTP,
    GRADER_COMMAND,
} grader_kind;

typedef enum { STR_EQ, STR_NE, STR_LIKE, STR_ILIKE } string_op;

typedef struct formula formula;

/* Options shared by the external graders. */
typedef struct remote_opts {
    int batch_size;  /* samples per request / invocation */
    int concurrency; /* requests in flight (http) */
    long timeout_ms; /* per request / invocation */
    int retries;     /* extra attempts after a 5xx, timeout or connection failure (http) */
} remote_opts;

struct bs_reward_grader {
    grader_kind kind;
    char *name;
    const char *type; /* as written ("lambda" stays "lambda" though it runs as http) */
    char *input, *reference; /* templates */
    string_op op;
    char *metric;
    double pass_threshold; /* NAN: none */
    /* multi */
    int n_sub;
    char **sub_keys;
    bs_reward_grader **subs;
    formula *formula;
    /* json_schema */
    json_t *schema;
    int partial_credit;
    /* regex */
    pcre2_code *re;
    int n_groups;
    char **group_names, **group_values; /* named group -> expected template */
    /* http / lambda */
    char *url;
    char **headers; /* "Name: value" */
    int n_headers;
    /* command */
    char **argv; /* NULL-terminated */
    long cpu_seconds, memory_mb, max_files;
    remote_opts remote;
};

/* ---- templates (template.c) */

/* Check every {{…}} in text names item.… or sample.output_text /
 * sample.output_json…; path names the field for the error. */
bs_status template_check(const char *text, const char *path, bs_error *err);
/* Substitute: strings as they are, other JSON compactly, missing → "".
 * output_json is the sample parsed as JSON (NULL when it is not JSON). */
char *template_render(const char *text, const json_t *item, const char *output_text, const json_t *output_json);

/* ---- calculate_output (formula.c) */

bs_status formula_parse(const char *text, char *const *vars, int n_vars, formula **out, bs_error *err);
double formula_eval(const formula *f, const double *values);
void formula_free(formula *f);

/* ---- JSON Schema validation of values (json_validate.c) */

/* Check the schema uses only the supported subset (path names it). */
bs_status json_schema_check(const json_t *schema, const char *path, bs_error *err);
int json_validate(const json_t *schema, const json_t *value);

/* ---- external graders (remote.c) */

/* The Bedrock event for samples[0..n): [{id, messages, metadata}]. */
json_t *remote_event(const reward_sample *samples, int first, int n);
/* Read a response body into scores/metrics for samples[first..first+n). */
void remote_read_response(const char *body, size_t len, const reward_sample *samples, int first, int n, double *scores,
                          json_t *metrics, reward_errors *errs, const char *what);
void remote_fail(reward_errors *errs, reward_error_kind kind, int n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void remote_score_http(const bs_reward_grader *g, const reward_sample *samples, int n, double *scores,
                       json_t *metrics, reward_errors *errs);
void remote_score_command(const bs_reward_grader *g, const reward_sample *samples, int n, double *scores,
                          json_t *metrics, reward_errors *errs);

#endif
