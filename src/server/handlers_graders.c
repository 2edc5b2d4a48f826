/* server/handlers_graders.c — OpenAI's grader test endpoints over
 * reward/: POST /v1/fine_tuning/alpha/graders/validate and /run.
 *
 * /run scores the one sample synchronously on the connection's thread;
 * every external grader call has its own deadline (reward/remote.c), so
 * the request cannot hang.  An unscorable sample answers reward 0 with the
 * error flags set, as OpenAI does; basalt's per-kind counts and the first
 * failure's message ride along in metadata.errors. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "reward/reward.h"
#include "server/server_impl.h"

/* Parse body.grader; on failure answer 400 with param = the field path the
 * message starts with ("grader.graders.a.operation"). */
static bs_reward_grader *body_grader(http_request *r, const json_t *body) {
    api_error a = {0};
    const json_t *gj = json_object_get(body, "grader");
    bs_reward_grader *g = NULL;
    if (!json_is_object(gj)) {
        api_fail(&a, BS_EINVAL, "grader", NULL, "grader: required object");
    } else if (reward_grader_parse(gj, &g, &a.e) != BS_OK) {
        size_t n = strcspn(a.e.msg, ": ");
        snprintf(a.param, sizeof a.param, "%.*s", (int)(n < sizeof a.param ? n : sizeof a.param - 1), a.e.msg);
        if (a.e.status != BS_ENOMEM) a.http = 400; /* an unmapped lambda is a bad grader, not a missing route */
    }
    if (!g) respond_error(r, &a);
    return g;
}

void handle_grader_validate(basalt_server *s, http_request *r) {
    (void)s;
    json_t *body = request_body(r);
    if (!body) return;
    bs_reward_grader *g = body_grader(r, body);
    if (g) respond_json(r, 200, json_pack("{s:O}", "grader", json_object_get(body, "grader")));
    reward_grader_free(g);
    json_decref(body);
}

/* OpenAI's metadata.errors flags from basalt's counts. */
static json_t *error_flags(const reward_errors *e) {
    int unresponsive = e->count[REWARD_ERR_TIMEOUT] + e->count[REWARD_ERR_CONNECTION] + e->count[REWARD_ERR_HTTP_5XX];
    int other = 0;
    json_t *counts = json_object();
    for (int k = 0; k < REWARD_ERR_KINDS; k++) {
        if (k != REWARD_ERR_TIMEOUT && k != REWARD_ERR_CONNECTION && k != REWARD_ERR_HTTP_5XX) other += e->count[k];
        if (e->count[k]) json_object_set_new(counts, reward_error_name((reward_error_kind)k), json_integer(e->count[k]));
    }
    return json_pack("{s:b,s:b,s:b,s:b,s:b,s:b,s:b,s:n,s:b,s:n,s:b,s:b,s:b,s:n,s:o,s:s?}", "formula_parse_error", 0,
                     "sample_parse_error", 0, "truncated_observation_error", 0, "unresponsive_reward_error",
                     unresponsive > 0, "invalid_variable_error", 0, "other_error", other > 0,
                     "python_grader_server_error", 0, "python_grader_server_error_type", "python_grader_runtime_error",
                     0, "python_grader_runtime_error_details", "model_grader_server_error", 0,
                     "model_grader_refusal_error", 0, "model_grader_parse_error", 0,
                     "model_grader_server_error_details", "reward_errors", counts, "details",
                     e->first[0] ? e->first : NULL);
}

void handle_grader_run(basalt_server *s, http_request *r) {
    (void)s;
    json_t *body = request_body(r);
    if (!body) return;
    api_error a = {0};
    const json_t *sample = json_object_get(body, "model_sample"), *item = json_object_get(body, "item");
    bs_reward_grader *g = NULL;
    if (!json_is_string(sample)) {
        api_fail(&a, BS_EINVAL, "model_sample", NULL, "model_sample: required string");
    } else if (item && !json_is_null(item) && !json_is_object(item)) {
        api_fail(&a, BS_EINVAL, "item", NULL, "item: must be an object");
    } else if (!(g = body_grader(r, body))) {
        json_decref(body);
        return;
    }
    if (!g) {
        respond_error(r, &a);
        json_decref(body);
        return;
    }
    /* the conversation as a reward Lambda sees it: item.messages + the sample */
    json_t *msgs = json_is_array(json_object_get(item, "messages")) ? json_deep_copy(json_object_get(item, "messages"))
                                                                     : json_array();
    json_array_append_new(msgs, json_pack("{s:s,s:O}", "role", "assistant", "content", sample));
    reward_sample rs = {.id = "0", .messages = msgs, .output_text = json_string_value(sample),
                        .item = json_is_object(item) ? item : NULL};
    double score = NAN;
    reward_errors errs = {0};
    json_t *metrics = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bs_status st = reward_score_batch(g, &rs, 1, &score, &errs, &metrics, &a.e);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st != BS_OK) {
        respond_error(r, &a);
    } else {
        json_t *scores = json_incref(json_array_get(metrics, 0)), *sub = json_object();
        const char *k;
        json_t *v;
        if (strcmp(reward_grader_type(g), "multi") == 0)
            json_object_foreach(scores, k, v) if (!strchr(k, '/')) json_object_set(sub, k, v);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        respond_json(r, 200,
                     json_pack("{s:f,s:{s:s,s:s,s:o,s:f,s:o,s:{s:i,s:i,s:i,s:i},s:n},s:o,s:{}}", "reward",
                               isnan(score) ? 0.0 : score, "metadata", "name", reward_grader_name(g), "type",
                               reward_grader_type(g), "errors", error_flags(&errs), "execution_time", secs, "scores",
                               scores, "token_usage", "prompt_tokens", 0, "completion_tokens", 0, "total_tokens", 0,
                               "cached_tokens", 0, "sampled_model_name", "sub_rewards", sub,
                               "model_grader_token_usage_per_model"));
    }
    json_decref(metrics);
    json_decref(msgs);
    reward_grader_free(g);
    json_decref(body);
}
