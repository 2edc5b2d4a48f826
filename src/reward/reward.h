/* reward/reward.h — reward functions for reinforcement fine-tuning.
 *
 * A grader is a JSON document in OpenAI's grader vocabulary (string_check,
 * text_similarity, multi) plus basalt's json_schema and regex graders and
 * three external kinds: "http" (a Bedrock-reward-Lambda-compatible HTTP
 * endpoint), "lambda" (Bedrock's {"lambda":{"function":…}}, mapped to a URL
 * by the environment variable BASALT_LAMBDA_<NAME>_URL, where NAME is the
 * function name from the ARN upper-cased with every non-alphanumeric byte
 * turned into '_') and "command" (a local program, same JSON over
 * stdin/stdout).  See docs/rewards.md for every field.
 *
 * reward_grader_parse validates like OpenAI's /graders/validate: a bad
 * grader is an error naming the field path ("grader.graders.acc.operation").
 * reward_score_batch never fails because of one sample: an unscorable sample
 * gets NAN and its failure is counted by kind in reward_errors.  Every
 * external call has a deadline, so scoring never hangs.  A parsed grader is
 * read-only while scoring, so threads may share it. */
#ifndef BASALT_REWARD_REWARD_H
#define BASALT_REWARD_REWARD_H

#include <jansson.h>

#include "base/error.h"

typedef struct bs_reward_grader bs_reward_grader;

/* One model output to score.  messages is the conversation with the
 * generated assistant turn appended (NULL: just that turn); item is the
 * dataset row (NULL: {}); id is echoed to external graders (NULL: the
 * sample's index). */
typedef struct reward_sample {
    const char *id;
    const json_t *messages;
    const char *output_text;
    const json_t *item;
} reward_sample;

typedef enum {
    REWARD_ERR_TIMEOUT,       /* an external call ran past timeout_ms */
    REWARD_ERR_CONNECTION,    /* connection refused / reset / DNS */
    REWARD_ERR_HTTP_5XX,      /* 5xx still, after the retries */
    REWARD_ERR_HTTP_4XX,      /* the endpoint refused the request (not retried) */
    REWARD_ERR_INVALID_JSON,  /* the response is not a JSON array */
    REWARD_ERR_MISSING_ID,    /* no result carries the sample's id */
    REWARD_ERR_WRONG_COUNT,   /* the response has a different number of results */
    REWARD_ERR_NAN,           /* the score is missing, non-numeric or not finite */
    REWARD_ERR_COMMAND,       /* the command could not start, crashed or exited non-zero */
    REWARD_ERR_KINDS
} reward_error_kind;

typedef struct reward_errors {
    int count[REWARD_ERR_KINDS];
    char first[BS_ERROR_MSG_MAX]; /* the first failure's message, "" when none */
} reward_errors;

/* "timeout", "connection", "http_5xx", … (the metric label). */
const char *reward_error_name(reward_error_kind kind);

/* Validate grader and compile it (templates, formula, regexes, schemas).
 * Errors name the path from "grader". */
bs_status reward_grader_parse(const json_t *grader, bs_reward_grader **out, bs_error *err);
void reward_grader_free(bs_reward_grader *g);

const char *reward_grader_name(const bs_reward_grader *g);
const char *reward_grader_type(const bs_reward_grader *g);

/* Score n samples into scores[0..n) (NAN = unscorable; errs counts why;
 * errs may be NULL).  *metrics (may be NULL) receives a new array with one
 * object per sample: multi's sub-scores by grader key, an external grader's
 * metrics_list by name, text_similarity's "passed" when it has a
 * pass_threshold.  Fails only for bad arguments or out of memory. */
bs_status reward_score_batch(const bs_reward_grader *g, const reward_sample *samples, int n, double *scores,
                             reward_errors *errs, json_t **metrics, bs_error *err);

/* The text similarity metrics, exposed for tests and other callers.
 * metric: fuzzy_match, bleu, gleu, rouge_1 … rouge_5, rouge_l.  Definitions
 * in reward/similarity.c.  Returns NAN for an unknown metric. */
double reward_similarity(const char *metric, const char *input, const char *reference);

#endif
