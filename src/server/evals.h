/* server/evals.h — evaluation runs: generate a sample for each data-source
 * item with a served model, grade it with every testing criterion, count
 * passes.  This is the executor behind OpenAI's Evals API
 * (server/handlers_evals.c, which persists evals, runs and output items in
 * the store) and `basalt eval` (cli/cmd_eval.c, which compares models
 * offline); it knows nothing of HTTP or the store.
 *
 *   eval_criteria_parse (testing_criteria) + eval_input_parse (input_messages)
 *   + eval_items_read / an array of items
 *       -> eval_execute (per window of items: render the conversation with the
 *          model's chat template -> one gen_job (server/job.h) -> grade every
 *          sample with each criterion (reward/reward.h) -> on_sample) -> totals
 *
 * A criterion is any grader reward_grader_parse accepts; it passes when its
 * score >= its pass_threshold (required for text_similarity, as OpenAI's
 * eval variant; 1 when absent, so binary graders pass on a full score).  A
 * sample passes when every criterion passes, fails when one does not, and is
 * errored when generation failed or a criterion could not score it (NAN).
 *
 * Cancellation: eval_hooks.cancelled is polled between engine events, so a
 * cancelled run stops generating within a few milliseconds. */
#ifndef BASALT_SERVER_EVALS_H
#define BASALT_SERVER_EVALS_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"
#include "reward/reward.h"
#include "server/job.h"

typedef struct srv_model srv_model;

typedef struct eval_criteria {
    int n;
    bs_reward_grader **graders;
    double *pass_threshold;
} eval_criteria;

/* criteria must be a non-empty array of graders; errors name the field from
 * param ("testing_criteria[1].operation: unknown operation \"equals\""). */
bs_status eval_criteria_parse(const json_t *criteria, const char *param, eval_criteria *out, bs_error *err);
void eval_criteria_clear(eval_criteria *c);

/* How an item becomes the conversation the model answers: a template of
 * messages whose string contents may hold {{item.x}}, or a reference to an
 * array of messages in the item ("item.messages"). */
typedef struct eval_input {
    json_t *template;     /* [{role, content}], owned; NULL with item_reference */
    char *item_reference; /* the path after "item.", owned; NULL with template */
} eval_input;

/* data_source.input_messages; errors name the field from param. */
bs_status eval_input_parse(const json_t *input_messages, const char *param, eval_input *out, bs_error *err);
void eval_input_clear(eval_input *in);

/* A JSONL data source: one item per line, either {"item": {...}} (OpenAI's
 * eval files) or the object itself (RFT prompt sets).  Problems name the
 * line ("data.jsonl:3: not a JSON object"). *items is a new array. */
bs_status eval_items_read(const char *path, json_t **items, bs_error *err);

typedef struct eval_sampling {
    float temperature, top_p; /* OpenAI's defaults: 1, 1 */
    int max_tokens;           /* max_completion_tokens; <= 0: 256 */
    uint64_t seed;
    int samples;              /* samples per item; <= 0: 1 */
} eval_sampling;

/* One graded sample. */
typedef struct eval_sample_result {
    size_t item;              /* index into items */
    int sample;               /* 0 .. samples-1 */
    const json_t *messages;   /* the conversation sent; NULL when it could not be built */
    const char *output_text;  /* NULL when generation failed */
    const char *finish_reason;
    int prompt_tokens, completion_tokens;
    const double *scores;     /* [criteria.n]; NAN = the criterion could not score it */
    const int *passed;        /* [criteria.n] */
    const char *error;        /* why the sample is errored, or NULL */
    const char *status;       /* "pass", "fail" or "error" */
} eval_sample_result;

typedef struct eval_hooks {
    void *user;
    /* Each sample once graded, in item order.  May be NULL. */
    void (*on_sample)(void *user, const eval_sample_result *r);
    /* Nonzero stops the run (polled while generating).  May be NULL. */
    int (*cancelled)(void *user);
} eval_hooks;

/* Per criterion totals, and the run's. */
typedef struct eval_totals {
    int total, errored, failed, passed;
    int prompt_tokens, completion_tokens;
    int *crit_passed, *crit_failed, *crit_scored; /* [criteria.n] */
    double *crit_score_sum;                       /* over scored samples */
} eval_totals;

bs_status eval_totals_init(eval_totals *t, int n_criteria, bs_error *err);
void eval_totals_clear(eval_totals *t);

/* Run every item through m (a base model or an adapter's view) on its
 * scheduler, registering the engine work in jobs, and grade it.  t (from
 * eval_totals_init) accumulates.  A cancelled run returns BS_OK with the
 * samples graded so far counted; errors (out of memory, the engine refusing
 * work) stop the run. */
bs_status eval_execute(const srv_model *m, job_registry *jobs, const eval_criteria *c, const eval_input *in,
                       const json_t *items, const eval_sampling *sp, const eval_hooks *h, eval_totals *t,
                       bs_error *err);

#endif
