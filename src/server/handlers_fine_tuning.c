/* server/handlers_fine_tuning.c — the OpenAI fine-tuning jobs API: create
 * (request checks that name the parameter; the data itself is validated by
 * the runner, which fails the job with a line-numbered report), list,
 * retrieve, cancel / pause / resume, events and checkpoints.  Jobs run in
 * server/ft_jobs.c. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "reward/reward.h"
#include "server/ft_jobs.h"
#include "server/openai_response.h"
#include "server/server_impl.h"

/* ---- objects --------------------------------------------------------------- */

static json_t *json_or_null(const char *text) {
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *int_or_null(int64_t v) { return v == STORE_NULL_INT ? json_null() : json_integer((json_int_t)v); }

/* The hyperparameters object OpenAI shows: its three fields ("auto" until
 * the runner resolves them), plus basalt's when given or resolved. */
static json_t *job_hparams(const store_job *j, int rft) {
    json_t *h = json_or_null(j->hyperparameters);
    if (!json_is_object(h)) {
        json_decref(h);
        h = json_object();
    }
    static const char *const openai[] = {"n_epochs",      "batch_size",   "learning_rate_multiplier",
                                         "eval_interval", "eval_samples", "compute_multiplier",
                                         "reasoning_effort"};
    for (size_t i = 0; i < (rft ? 7u : 3u); i++)
        if (!json_object_get(h, openai[i])) json_object_set_new(h, openai[i], json_string("auto"));
    return h;
}

/* OpenAI's method object, {"type", "<type>": {..., "hyperparameters"}},
 * from the stored one (m, stolen). */
static json_t *job_method(json_t *m, int rft, json_t *h) {
    if (!rft) {
        json_decref(m);
        return json_pack("{s:s,s:{s:O}}", "type", "supervised", "supervised", "hyperparameters", h);
    }
    json_object_set(json_object_get(m, "reinforcement"), "hyperparameters", h);
    return m;
}

static json_t *job_object(basalt_server *s, const store_job *j) {
    json_t *m = json_or_null(j->method);
    const char *type = json_string_value(json_object_get(m, "type"));
    int rft = type && strcmp(type, "reinforcement") == 0;
    json_t *h = job_hparams(j, rft);
    long long eta = j->status == STORE_JOB_RUNNING ? ft_runner_estimate(s->ft, j->id) : -1;
    json_t *method = job_method(m, rft, h);
    return json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:s?,s:s,s:[],s:s,s:s,s:s?,s:o,s:I,s:o,s:o,s:o,s:[],s:n,s:s?,s:b}",
                     "object", "fine_tuning.job", "id", j->id, "model", j->model, "created_at",
                     (json_int_t)j->created_at, "finished_at", int_or_null(j->finished_at), "estimated_finish",
                     eta >= 0 ? json_integer(eta) : json_null(), "fine_tuned_model", j->fine_tuned_model,
                     "organization_id", "org-basalt", "result_files", "status", store_job_status_name(j->status),
                     "training_file", j->training_file, "validation_file", j->validation_file, "trained_tokens",
                     int_or_null(j->trained_tokens), "seed", (json_int_t)j->seed, "error", json_or_null(j->error),
                     "hyperparameters", h, "method", method, "integrations", "metadata", "user_provided_suffix",
                     j->suffix, "shared_with_openai", 0);
}

static json_t *event_object(const store_event *e) {
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:o}", "object", "fine_tuning.job.event", "id", e->id, "created_at",
                     (json_int_t)e->created_at, "level", e->level, "message", e->message, "type", e->type, "data",
                     json_or_null(e->data));
}

static json_t *checkpoint_object(const store_job *j, const store_checkpoint *c) {
    char model[512], name[600];
    ft_model_name(j->model, j->suffix, j->id, model, sizeof model);
    snprintf(name, sizeof name, "%s:ckpt-step-%lld", model, (long long)c->step);
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:I,s:o}", "object", "fine_tuning.job.checkpoint", "id", c->id,
                     "created_at", (json_int_t)c->created_at, "fine_tuned_model_checkpoint", name,
                     "fine_tuning_job_id", j->id, "step_number", (json_int_t)c->step, "metrics",
                     json_or_null(c->metrics));
}

/* ---- create ---------------------------------------------------------------- */

/* An optional string field: absent and null leave *out NULL. */
static bs_status opt_string(const json_t *body, const char *name, const char **out, api_error *a) {
    const json_t *v = json_object_get(body, name);
    *out = NULL;
    if (!v || json_is_null(v)) return BS_OK;
    if (!json_is_string(v)) return api_fail(a, BS_EINVAL, name, NULL, "%s: expected a string", name);
    *out = json_string_value(v);
    return BS_OK;
}

/* A file the job reads: it must exist, belong to the tenant and have been
 * uploaded for fine-tuning. */
static bs_status check_file(basalt_server *s, http_request *r, const char *param, const char *id, api_error *a) {
    store_file f;
    bs_error err = {0};
    if (store_file_get(s->store, id, &f, &err) != BS_OK)
        return api_fail(a, BS_EINVAL, param, "invalid_file", "%s: no such file: %s", param, id);
    if (strcmp(f.owner ? f.owner : "", request_tenant(r)) != 0) {
        store_file_clear(&f);
        return api_fail(a, BS_EINVAL, param, "invalid_file", "%s: no such file: %s", param, id);
    }
    bs_status st = BS_OK;
    if (strcmp(f.purpose, "fine-tune") != 0)
        st = api_fail(a, BS_EINVAL, param, "invalid_file",
                      "%s: %s was uploaded with purpose \"%s\"; fine-tuning needs purpose \"fine-tune\"", param, id,
                      f.purpose);
    store_file_clear(&f);
    return st;
}

/* The reinforcement method: a grader reward_grader_parse accepts (its errors
 * name the field under method.reinforcement) and the hyperparameters. */
static bs_status request_rft(const json_t *method, const json_t **out, json_t **stored, api_error *a) {
    const json_t *rft = json_object_get(method, "reinforcement");
    if (!json_is_object(rft))
        return api_fail(a, BS_EINVAL, "method.reinforcement", NULL,
                        "method.reinforcement: expected an object with a grader");
    const json_t *grader = json_object_get(rft, "grader");
    if (!grader)
        return api_fail(a, BS_EINVAL, "method.reinforcement.grader", NULL, "method.reinforcement.grader: required");
    bs_reward_grader *g = NULL;
    bs_error err = {0};
    if (reward_grader_parse(grader, &g, &err) != BS_OK)
        return api_fail(a, err.status == BS_ENOMEM ? BS_ENOMEM : BS_EINVAL, "method.reinforcement.grader", NULL,
                        "method.reinforcement.%s", err.msg);
    reward_grader_free(g);
    const json_t *mh = json_object_get(rft, "hyperparameters");
    if (*out)
        return api_fail(a, BS_EINVAL, "hyperparameters", NULL,
                        "hyperparameters: give them in method.reinforcement.hyperparameters");
    *out = mh && !json_is_null(mh) ? mh : NULL;
    if (ft_rft_hparams_decode(*out, "method.reinforcement.hyperparameters", NULL, a) != BS_OK) return a->e.status;
    *stored = json_pack("{s:s,s:{s:O}}", "type", "reinforcement", "reinforcement", "grader", grader);
    return *stored ? BS_OK : api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
}

/* The hyperparameters object of the request (method's or, for supervised,
 * the deprecated top-level one, not both) and the method as the job stores
 * it (*stored: NULL for supervised). */
static bs_status request_hparams(const json_t *body, const json_t **out, json_t **stored, api_error *a) {
    const json_t *method = json_object_get(body, "method"), *top = json_object_get(body, "hyperparameters");
    *out = top && !json_is_null(top) ? top : NULL;
    *stored = NULL;
    if (!method || json_is_null(method)) return ft_hparams_decode(*out, "hyperparameters", NULL, a);
    if (!json_is_object(method)) return api_fail(a, BS_EINVAL, "method", NULL, "method: expected an object");
    const char *type = json_string_value(json_object_get(method, "type"));
    if (!type)
        return api_fail(a, BS_EINVAL, "method.type", NULL,
                        "method.type: expected a string (\"supervised\" or \"reinforcement\")");
    if (strcmp(type, "reinforcement") == 0) return request_rft(method, out, stored, a);
    if (strcmp(type, "supervised") != 0)
        return api_fail(a, BS_EUNSUPPORTED, "method.type", NULL,
                        "method.type: \"%s\" is not supported; basalt fine-tunes with \"supervised\" or "
                        "\"reinforcement\"",
                        type);
    const json_t *sup = json_object_get(method, "supervised");
    if (sup && !json_is_null(sup) && !json_is_object(sup))
        return api_fail(a, BS_EINVAL, "method.supervised", NULL, "method.supervised: expected an object");
    const json_t *mh = sup ? json_object_get(sup, "hyperparameters") : NULL;
    if (mh && !json_is_null(mh)) {
        if (*out)
            return api_fail(a, BS_EINVAL, "hyperparameters", NULL,
                            "hyperparameters: give them in method.supervised.hyperparameters only (the top-level "
                            "field is deprecated)");
        *out = mh;
        return ft_hparams_decode(mh, "method.supervised.hyperparameters", NULL, a);
    }
    return ft_hparams_decode(*out, "hyperparameters", NULL, a);
}

static bs_status check_create(basalt_server *s, http_request *r, const json_t *body, store_job *j, api_error *a) {
    const char *model, *suffix;
    const json_t *v, *h;
    if (opt_string(body, "model", &model, a) || opt_string(body, "training_file", (const char **)&j->training_file, a) ||
        opt_string(body, "validation_file", (const char **)&j->validation_file, a) ||
        opt_string(body, "suffix", &suffix, a))
        return a->e.status;
    if (!model) return api_fail(a, BS_EINVAL, "model", NULL, "model: required");
    if (!j->training_file) return api_fail(a, BS_EINVAL, "training_file", NULL, "training_file: required");
    if (suffix && (!*suffix || strlen(suffix) > 64))
        return api_fail(a, BS_EINVAL, "suffix", NULL, "suffix: expected 1 to 64 characters");
    if ((v = json_object_get(body, "seed")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2147483647)
            return api_fail(a, BS_EINVAL, "seed", NULL, "seed: expected an integer from 0 to 2147483647");
        j->seed = json_integer_value(v);
    }
    if ((v = json_object_get(body, "integrations")) && !json_is_null(v) &&
        !(json_is_array(v) && json_array_size(v) == 0))
        return api_fail(a, BS_EUNSUPPORTED, "integrations", NULL, "integrations: not supported by basalt");
    if ((v = json_object_get(body, "metadata")) && !json_is_null(v))
        return api_fail(a, BS_EUNSUPPORTED, "metadata", NULL, "metadata: not supported by basalt fine-tuning jobs");
    json_t *stored = NULL;
    if (request_hparams(body, &h, &stored, a) != BS_OK) return a->e.status;
    j->method = stored ? json_dumps(stored, JSON_COMPACT) : strdup("{\"type\":\"supervised\"}");
    json_decref(stored);
    if (!j->method) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    if (strncmp(model, "ft:", 3) == 0)
        return api_fail(a, BS_EUNSUPPORTED, "model", NULL,
                        "model: fine-tuning a fine-tuned model (%s) is not supported; name its base model", model);
    if (!request_model(s, r, model)) return BS_ENOTFOUND; /* answered */
    if (check_file(s, r, "training_file", j->training_file, a) ||
        (j->validation_file && check_file(s, r, "validation_file", j->validation_file, a)))
        return a->e.status;
    j->model = (char *)model;
    j->suffix = (char *)suffix;
    j->hyperparameters = h ? json_dumps(h, JSON_COMPACT) : strdup("{}");
    if (!j->hyperparameters) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    return BS_OK;
}

void handle_ft_create(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    char id[48];
    random_id("ftjob-", id, sizeof id);
    /* No seed given: one drawn from the id's random digits, as OpenAI generates one. */
    unsigned seed_bytes = 0;
    for (const char *p = id + 6; *p; p++) seed_bytes = seed_bytes * 31 + (unsigned char)*p;
    store_job j = {.id = id, .owner = (char *)request_tenant(r), .seed = (int64_t)(seed_bytes & 0x7fffffff), .status =
                   STORE_JOB_VALIDATING_FILES, .created_at = unix_now(), .finished_at = STORE_NULL_INT,
                   .trained_tokens = STORE_NULL_INT};
    api_error a = {0};
    bs_status st = check_create(s, r, body, &j, &a);
    if (st == BS_ENOTFOUND) {
        /* request_model answered */
    } else if (st != BS_OK || ft_runner_submit(s->ft, &j, &a.e) != BS_OK) {
        if (a.e.status != BS_EINVAL && a.e.status != BS_EUNSUPPORTED) bs_log_error("fine-tuning: %s", a.e.msg);
        respond_error(r, &a);
    } else {
        respond_json(r, 200, job_object(s, &j));
    }
    free(j.hyperparameters);
    free(j.method);
    json_decref(body);
}

/* ---- list, retrieve, actions, events, checkpoints ------------------------- */

void handle_ft_list(basalt_server *s, http_request *r) {
    api_error a = {0};
    long limit = 20;
    if (query_int(r, "limit", 1, 100, &limit, &a) != BS_OK) {
        respond_error(r, &a);
        return;
    }
    store_page page = {.limit = (int)limit, .after = http_query(r, "after"), .owner = request_tenant(r)};
    store_job *items;
    size_t n;
    int more;
    bs_error err = {0};
    if (store_job_list(s->store, -1, &page, &items, &n, &more, &err) != BS_OK) {
        if (err.status == BS_ENOTFOUND) err.status = BS_EINVAL;
        respond_store_error(r, &err, "after");
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, job_object(s, &items[i]));
    respond_json(r, 200, json_pack("{s:s,s:o,s:b}", "object", "list", "data", data, "has_more", more));
    store_jobs_free(items, n);
}

static void respond_unknown_route(http_request *r) {
    api_error a = {.http = 404};
    api_fail(&a, BS_ENOTFOUND, NULL, "not_found", "Unknown route: %s %s", http_method(r), http_path(r));
    respond_error(r, &a);
}

/* The job named by the path; 0 after answering 404 — also for another
 * tenant's job, with the same message. */
static int lookup_job(basalt_server *s, http_request *r, const char *id, store_job *j) {
    bs_error err = {0};
    bs_status st = store_job_get(s->store, id, j, &err);
    if (st == BS_OK && strcmp(j->owner ? j->owner : "", request_tenant(r)) == 0) return 1;
    if (st == BS_OK) {
        store_job_clear(j);
        err.status = BS_ENOTFOUND;
    }
    if (err.status == BS_ENOTFOUND) bs_fail(&err, BS_ENOTFOUND, "No such fine-tuning job: %s", id);
    respond_store_error(r, &err, "fine_tuning_job_id");
    return 0;
}

static void list_events(basalt_server *s, http_request *r, const store_job *j) {
    api_error a = {0};
    long limit = 20;
    if (query_int(r, "limit", 1, 1000, &limit, &a) != BS_OK) {
        respond_error(r, &a);
        return;
    }
    store_page page = {.limit = (int)limit, .after = http_query(r, "after")};
    store_event *items;
    size_t n;
    int more;
    bs_error err = {0};
    if (store_event_list(s->store, j->id, &page, &items, &n, &more, &err) != BS_OK) {
        if (err.status == BS_ENOTFOUND) err.status = BS_EINVAL;
        respond_store_error(r, &err, "after");
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, event_object(&items[i]));
    respond_json(r, 200, json_pack("{s:s,s:o,s:b}", "object", "list", "data", data, "has_more", more));
    store_events_free(items, n);
}

static void list_checkpoints(basalt_server *s, http_request *r, const store_job *j) {
    api_error a = {0};
    long limit = 10;
    if (query_int(r, "limit", 1, 1000, &limit, &a) != BS_OK) {
        respond_error(r, &a);
        return;
    }
    store_page page = {.limit = (int)limit, .after = http_query(r, "after")};
    store_checkpoint *items;
    size_t n;
    int more;
    bs_error err = {0};
    if (store_checkpoint_list(s->store, j->id, &page, &items, &n, &more, &err) != BS_OK) {
        if (err.status == BS_ENOTFOUND) err.status = BS_EINVAL;
        respond_store_error(r, &err, "after");
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, checkpoint_object(j, &items[i]));
    respond_json(r, 200, json_pack("{s:s,s:o,s:s?,s:s?,s:b}", "object", "list", "data", data, "first_id",
                                   n ? items[0].id : NULL, "last_id", n ? items[n - 1].id : NULL, "has_more", more));
    store_checkpoints_free(items, n);
}

void handle_ft_get(basalt_server *s, http_request *r) {
    char id[128];
    const char *verb;
    if (!split_resource_path(http_path(r), "/v1/fine_tuning/jobs/", id, sizeof id, &verb) ||
        (*verb && strcmp(verb, "events") != 0 && strcmp(verb, "checkpoints") != 0)) {
        respond_unknown_route(r);
        return;
    }
    store_job j;
    if (!lookup_job(s, r, id, &j)) return;
    if (!*verb) respond_json(r, 200, job_object(s, &j));
    else if (strcmp(verb, "events") == 0) list_events(s, r, &j);
    else list_checkpoints(s, r, &j);
    store_job_clear(&j);
}

void handle_ft_post(basalt_server *s, http_request *r) {
    static const char *const verbs[] = {"cancel", "pause", "resume"};
    char id[128];
    const char *verb;
    int k = -1;
    if (split_resource_path(http_path(r), "/v1/fine_tuning/jobs/", id, sizeof id, &verb))
        for (int i = 0; i < 3; i++)
            if (strcmp(verb, verbs[i]) == 0) k = i;
    if (k < 0) {
        respond_unknown_route(r);
        return;
    }
    store_job j = {0};
    api_error a = {0};
    if (!lookup_job(s, r, id, &j)) return;
    store_job_clear(&j);
    if (ft_runner_act(s->ft, id, (ft_action)k, &j, &a) != BS_OK) respond_error(r, &a);
    else respond_json(r, 200, job_object(s, &j));
    store_job_clear(&j);
}
