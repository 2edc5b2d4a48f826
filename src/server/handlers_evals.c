/* server/handlers_evals.c — OpenAI's Evals API over server/evals.h:
 *
 *   POST   /v1/evals                         create        GET /v1/evals  list
 *   GET    /v1/evals/{id}                    retrieve      POST (name, metadata) update   DELETE
 *   POST   /v1/evals/{id}/runs               start a run   GET  list
 *   GET    /v1/evals/{id}/runs/{run}         retrieve      DELETE
 *   POST   /v1/evals/{id}/runs/{run}         cancel (OpenAI's SDK), also …/{run}/cancel
 *   GET    /v1/evals/{id}/runs/{run}/output_items[/{item}]
 *
 * Evals, runs and output items are store documents (kinds "eval",
 * "eval_run", "eval_output_item"), so they outlive the process.  Each run
 * executes on its own thread against the model it named (base or adapter,
 * resolved and referenced when the run is created); its thread is the only
 * writer of its run document while it lives, and writes every graded sample
 * as an output item as it goes.  A cancel or delete sets the run's flag and
 * waits for the thread to stop (within one engine poll).  Runs a dead
 * process left queued or in progress are marked failed at the next start. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "reward/reward_impl.h" /* json_schema_check / json_validate for item_schema */
#include "server/evals.h"
#include "server/server_impl.h"

typedef struct live_run {
    char id[64], eval_id[64];
    char *owner;
    basalt_server *s;
    srv_model view; /* the model's fields at creation; view.adapter is our reference */
    eval_criteria crit;
    eval_input input;
    json_t *items;
    eval_sampling sp;
    json_t *body; /* the run object the thread keeps writing */
    int64_t created_at;
    pthread_t thread;
    int cancel, done; /* under the runner's mutex */
    struct live_run *next;
} live_run;

struct eval_runner {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    live_run *head;
};

/* The tenant owning what a request creates and sees (server/governance.h):
 * another tenant's evals and runs answer the 404 of an unknown id. */
static const char *request_owner(http_request *r) { return request_tenant(r); }

/* ---- documents ------------------------------------------------------------- */

static bs_status doc_put(bs_store *st, const char *kind, const char *id, const char *owner, int64_t created,
                         const json_t *body, int insert, bs_error *err) {
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text) return bs_fail(err, BS_ENOMEM, "out of memory");
    store_doc d = {.kind = (char *)kind, .id = (char *)id, .owner = (char *)owner, .created_at = created,
                   .updated_at = unix_now(), .body = text};
    bs_status s = insert ? store_doc_insert(st, &d, err) : store_doc_update(st, &d, -1, err);
    free(text);
    return s;
}

/* The body of (kind, id) when owner may see it; NULL with err set (BS_ENOTFOUND names what). */
static json_t *doc_get(bs_store *st, const char *kind, const char *id, const char *owner, const char *what,
                       bs_error *err) {
    store_doc d = {0};
    json_t *body = NULL;
    if (store_doc_get(st, kind, id, &d, err) == BS_OK) {
        if (owner && strcmp(d.owner ? d.owner : "", owner) != 0) bs_fail(err, BS_ENOTFOUND, "No such %s: %s", what, id);
        else if (!(body = json_loads(d.body, 0, NULL))) bs_fail(err, BS_EFORMAT, "%s %s: stored body is not JSON", what, id);
    } else if (err->status == BS_ENOTFOUND) {
        bs_fail(err, BS_ENOTFOUND, "No such %s: %s", what, id);
    }
    store_doc_clear(&d);
    return body;
}

/* Bodies of every doc of kind owner sees whose field equals value (NULL:
 * all) and, with status, whose "status" is that; oldest first. */
static json_t *doc_select(bs_store *st, const char *kind, const char *owner, const char *field, const char *value,
                          const char *status, bs_error *err) {
    store_page page = {.limit = 0, .ascending = 1, .owner = owner};
    store_doc *docs = NULL;
    size_t n = 0;
    int more = 0;
    if (store_doc_list(st, kind, &page, &docs, &n, &more, err) != BS_OK) return NULL;
    json_t *out = json_array();
    for (size_t i = 0; out && i < n; i++) {
        json_t *b = json_loads(docs[i].body, 0, NULL);
        const char *v = field ? json_string_value(json_object_get(b, field)) : NULL;
        const char *stv = json_string_value(json_object_get(b, "status"));
        if (b && (!field || (v && strcmp(v, value) == 0)) && (!status || (stv && strcmp(stv, status) == 0)))
            json_array_append(out, b);
        json_decref(b);
    }
    store_docs_free(docs, n);
    if (!out) bs_fail(err, BS_ENOMEM, "out of memory");
    return out;
}

/* ---- the runner ------------------------------------------------------------ */

static int live_cancelled(live_run *lr) {
    eval_runner *er = lr->s->evals;
    pthread_mutex_lock(&er->mu);
    int c = lr->cancel;
    pthread_mutex_unlock(&er->mu);
    return c;
}

static json_t *criteria_results(const live_run *lr, const eval_totals *t) {
    json_t *a = json_array();
    for (int k = 0; k < lr->crit.n; k++)
        json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:o?}", "testing_criteria",
                                           reward_grader_name(lr->crit.graders[k]), "passed", t->crit_passed[k],
                                           "failed", t->crit_failed[k], "mean_score",
                                           t->crit_scored[k] ? json_real(t->crit_score_sum[k] / t->crit_scored[k])
                                                             : NULL));
    return a;
}

/* Write the run's counts (and status) to its document. */
static void save_run(live_run *lr, const eval_totals *t, const char *status) {
    json_object_set_new(lr->body, "status", json_string(status));
    json_object_set_new(lr->body, "result_counts", json_pack("{s:i,s:i,s:i,s:i}", "total", t->total, "errored",
                                                             t->errored, "failed", t->failed, "passed", t->passed));
    json_object_set_new(lr->body, "per_testing_criteria_results", criteria_results(lr, t));
    json_object_set_new(lr->body, "per_model_usage",
                        json_pack("[{s:s,s:i,s:i,s:i,s:i,s:i}]", "model_name", lr->view.name, "invocation_count",
                                  t->total, "prompt_tokens", t->prompt_tokens, "completion_tokens",
                                  t->completion_tokens, "total_tokens", t->prompt_tokens + t->completion_tokens,
                                  "cached_tokens", 0));
    bs_error err = {0};
    if (doc_put(lr->s->store, "eval_run", lr->id, lr->owner, lr->created_at, lr->body, 0, &err) != BS_OK)
        bs_log_error("eval run %s: %s", lr->id, err.msg);
}

typedef struct sample_ctx {
    live_run *lr;
    eval_totals *t;
} sample_ctx;

static int run_cancelled(void *user) { return live_cancelled(((sample_ctx *)user)->lr); }

static void on_sample(void *user, const eval_sample_result *r) {
    sample_ctx *x = user;
    live_run *lr = x->lr;
    char id[64];
    random_id("outputitem_", id, sizeof id);
    json_t *results = json_array();
    for (int k = 0; k < lr->crit.n; k++)
        json_array_append_new(results,
                              json_pack("{s:s,s:s,s:o,s:b}", "name", reward_grader_name(lr->crit.graders[k]), "type",
                                        reward_grader_type(lr->crit.graders[k]), "score",
                                        isnan(r->scores[k]) ? json_null() : json_real(r->scores[k]), "passed",
                                        r->passed[k]));
    json_t *sample = json_pack(
        "{s:O?,s:o,s:s?,s:s,s:{s:i,s:i,s:i,s:i},s:o,s:f,s:f,s:i,s:I}", "input", r->messages, "output",
        r->output_text ? json_pack("[{s:s,s:s}]", "role", "assistant", "content", r->output_text) : json_array(),
        "finish_reason", r->finish_reason, "model", lr->view.name, "usage", "prompt_tokens", r->prompt_tokens,
        "completion_tokens", r->completion_tokens, "total_tokens", r->prompt_tokens + r->completion_tokens,
        "cached_tokens", 0, "error",
        r->error ? json_pack("{s:s,s:s}", "code", "sample_error", "message", r->error) : json_null(), "temperature",
        (double)lr->sp.temperature, "top_p", (double)lr->sp.top_p, "max_completion_tokens", lr->sp.max_tokens, "seed",
        (json_int_t)lr->sp.seed);
    int64_t now = unix_now();
    json_t *item = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:I,s:O,s:o,s:o}", "object", "eval.run.output_item", "id", id,
                             "run_id", lr->id, "eval_id", lr->eval_id, "created_at", (json_int_t)now, "status",
                             r->status, "datasource_item_id", (json_int_t)r->item, "datasource_item",
                             json_array_get(lr->items, r->item), "results", results, "sample", sample);
    bs_error err = {0};
    if (!item || doc_put(lr->s->store, "eval_output_item", id, lr->owner, now, item, 1, &err) != BS_OK)
        bs_log_error("eval run %s: output item: %s", lr->id, item ? err.msg : "out of memory");
    json_decref(item);
    save_run(lr, x->t, "in_progress");
}

static void *run_main(void *arg) {
    live_run *lr = arg;
    eval_totals t;
    bs_error err = {0};
    bs_status st = eval_totals_init(&t, lr->crit.n, &err);
    if (st == BS_OK) {
        save_run(lr, &t, "in_progress");
        sample_ctx x = {lr, &t};
        eval_hooks h = {.user = &x, .on_sample = on_sample, .cancelled = run_cancelled};
        st = eval_execute(&lr->view, lr->s->jobs, &lr->crit, &lr->input, lr->items, &lr->sp, &h, &t, &err);
    }
    const char *status = st != BS_OK ? "failed" : live_cancelled(lr) ? "canceled" : "completed";
    if (st != BS_OK)
        json_object_set_new(lr->body, "error", json_pack("{s:s,s:s}", "code", "run_failed", "message", err.msg));
    if (t.crit_passed) save_run(lr, &t, status);
    eval_totals_clear(&t);
    bs_log_info("eval run %s: %s", lr->id, status);
    eval_runner *er = lr->s->evals;
    pthread_mutex_lock(&er->mu);
    lr->done = 1;
    pthread_cond_broadcast(&er->cv);
    pthread_mutex_unlock(&er->mu);
    return NULL;
}

/* Free a run whose thread never started or has been joined. */
static void live_destroy(live_run *lr) {
    adapter_close(lr->view.adapter);
    free(lr->view.name);
    free(lr->owner);
    eval_criteria_clear(&lr->crit);
    eval_input_clear(&lr->input);
    json_decref(lr->items);
    json_decref(lr->body);
    free(lr);
}

static void live_free(live_run *lr) {
    pthread_join(lr->thread, NULL);
    live_destroy(lr);
}

/* Join and free finished runs (caller holds the mutex). */
static void reap(eval_runner *er) {
    for (live_run **pp = &er->head; *pp;) {
        live_run *lr = *pp;
        if (lr->done) {
            *pp = lr->next;
            live_free(lr);
        } else {
            pp = &lr->next;
        }
    }
}

/* Cancel the live runs of run_id (NULL: any run) of eval_id (NULL: any)
 * and wait until their threads stopped. */
static void stop_runs(eval_runner *er, const char *eval_id, const char *run_id) {
    pthread_mutex_lock(&er->mu);
    for (live_run *lr = er->head; lr; lr = lr->next)
        if ((!eval_id || strcmp(lr->eval_id, eval_id) == 0) && (!run_id || strcmp(lr->id, run_id) == 0))
            lr->cancel = 1;
    for (;;) {
        int waiting = 0;
        for (live_run *lr = er->head; lr; lr = lr->next) waiting |= lr->cancel && !lr->done;
        if (!waiting) break;
        pthread_cond_wait(&er->cv, &er->mu);
    }
    reap(er);
    pthread_mutex_unlock(&er->mu);
}

/* A run left queued or in progress by a process that died cannot resume. */
static void fail_orphans(basalt_server *s) {
    bs_error err = {0};
    json_t *runs = doc_select(s->store, "eval_run", NULL, NULL, NULL, NULL, &err);
    size_t i;
    json_t *b;
    json_array_foreach(runs, i, b) {
        const char *st = json_string_value(json_object_get(b, "status"));
        if (!st || (strcmp(st, "in_progress") != 0 && strcmp(st, "queued") != 0)) continue;
        const char *id = json_string_value(json_object_get(b, "id"));
        json_object_set_new(b, "status", json_string("failed"));
        json_object_set_new(b, "error", json_pack("{s:s,s:s}", "code", "server_restarted", "message",
                                                  "the server stopped while the run was in progress"));
        store_doc d = {0};
        if (store_doc_get(s->store, "eval_run", id, &d, &err) == BS_OK &&
            doc_put(s->store, "eval_run", id, d.owner, d.created_at, b, 0, &err) == BS_OK)
            bs_log_warn("eval run %s: marked failed (the server stopped while it ran)", id);
        store_doc_clear(&d);
    }
    json_decref(runs);
}

bs_status eval_runner_open(basalt_server *s, eval_runner **out, bs_error *err) {
    eval_runner *er = calloc(1, sizeof *er);
    if (!er) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&er->mu, NULL);
    pthread_cond_init(&er->cv, NULL);
    *out = er;
    fail_orphans(s);
    return BS_OK;
}

void eval_runner_close(eval_runner *er) {
    if (!er) return;
    stop_runs(er, NULL, NULL);
    pthread_cond_destroy(&er->cv);
    pthread_mutex_destroy(&er->mu);
    free(er);
}

/* ---- request helpers ------------------------------------------------------- */

static void respond_bs(http_request *r, const bs_error *err, const char *param) {
    api_error a = {.e = *err};
    snprintf(a.param, sizeof a.param, "%s", param);
    respond_error(r, &a);
}

/* The field path an error message starts with ("testing_criteria[1].operation"). */
static void respond_invalid(http_request *r, const bs_error *err) {
    api_error a = {.e = *err, .http = err->status == BS_ENOMEM ? 0 : 400};
    size_t n = strcspn(err->msg, ": ");
    snprintf(a.param, sizeof a.param, "%.*s", (int)(n < sizeof a.param ? n : sizeof a.param - 1), err->msg);
    respond_error(r, &a);
}

static bs_status opt_metadata(const json_t *body, api_error *a) {
    const json_t *m = json_object_get(body, "metadata");
    if (m && !json_is_null(m) && !json_is_object(m))
        return api_fail(a, BS_EINVAL, "metadata", NULL, "metadata: must be an object of strings");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)m, k, v) if (!json_is_string(v)) return api_fail(
        a, BS_EINVAL, "metadata", NULL, "metadata.%s: must be a string", k);
    return BS_OK;
}

static bs_status opt_name(const json_t *body, api_error *a) {
    const json_t *n = json_object_get(body, "name");
    if (n && !json_is_null(n) && !json_is_string(n)) return api_fail(a, BS_EINVAL, "name", NULL, "name: must be a string");
    return BS_OK;
}

/* A cursor page of arr (oldest first) per ?after, ?limit and ?order. */
static void respond_page(http_request *r, json_t *arr, long default_limit) {
    api_error a = {0};
    long limit = default_limit;
    const char *order = http_query(r, "order"), *after = http_query(r, "after");
    if (query_int(r, "limit", 1, 100, &limit, &a) != BS_OK) {
        json_decref(arr);
        respond_error(r, &a);
        return;
    }
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0) {
        json_decref(arr);
        api_fail(&a, BS_EINVAL, "order", NULL, "order: expected asc or desc, got \"%s\"", order);
        respond_error(r, &a);
        return;
    }
    size_t n = json_array_size(arr);
    int desc = order && strcmp(order, "desc") == 0;
    size_t start = 0;
    if (after) {
        while (start < n) {
            const json_t *e = json_array_get(arr, desc ? n - 1 - start : start);
            start++;
            if (strcmp(json_string_value(json_object_get(e, "id")), after) == 0) break;
            if (start == n) {
                json_decref(arr);
                api_fail(&a, BS_EINVAL, "after", NULL, "after: no such id in this list: %s", after);
                respond_error(r, &a);
                return;
            }
        }
    }
    json_t *data = json_array();
    for (size_t i = start; i < n && (long)json_array_size(data) < limit; i++)
        json_array_append(data, json_array_get(arr, desc ? n - 1 - i : i));
    size_t k = json_array_size(data);
    json_t *first = k ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = k ? json_object_get(json_array_get(data, k - 1), "id") : NULL;
    respond_json(r, 200, json_pack("{s:s,s:o,s:O?,s:O?,s:b}", "object", "list", "data", data, "first_id", first,
                                   "last_id", last, "has_more", start + k < n));
    json_decref(arr);
}

/* ---- evals ----------------------------------------------------------------- */

/* data_source_config {type: custom, item_schema, include_sample_schema} ->
 * the stored {type, schema} (OpenAI's shape: item and sample under one schema). */
static json_t *source_config(const json_t *c, bs_error *err) {
    if (!json_is_object(c)) {
        bs_fail(err, BS_EINVAL, "data_source_config: required object");
        return NULL;
    }
    const char *type = json_string_value(json_object_get(c, "type"));
    if (!type || strcmp(type, "custom") != 0) {
        bs_fail(err, BS_EINVAL, "data_source_config.type: expected \"custom\", got %s%s%s", type ? "\"" : "",
                type ? type : "none", type ? "\"" : "");
        return NULL;
    }
    const json_t *schema = json_object_get(c, "item_schema"), *inc = json_object_get(c, "include_sample_schema");
    if (!json_is_object(schema)) {
        bs_fail(err, BS_EINVAL, "data_source_config.item_schema: required JSON Schema object");
        return NULL;
    }
    if (json_schema_check(schema, "data_source_config.item_schema", err) != BS_OK) return NULL;
    if (inc && !json_is_boolean(inc)) {
        bs_fail(err, BS_EINVAL, "data_source_config.include_sample_schema: must be a boolean");
        return NULL;
    }
    json_t *props = json_pack("{s:O}", "item", schema), *req = json_pack("[s]", "item");
    if (json_is_true(inc)) {
        json_object_set_new(props, "sample", json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object", "properties",
                                                       "output_text", "type", "string", "required", "output_text"));
        json_array_append_new(req, json_string("sample"));
    }
    return json_pack("{s:s,s:{s:s,s:o,s:o}}", "type", "custom", "schema", "type", "object", "properties", props,
                     "required", req);
}

void handle_evals_create(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    api_error a = {0};
    bs_error err = {0};
    eval_criteria crit = {0};
    json_t *cfg = NULL;
    if (opt_name(body, &a) != BS_OK || opt_metadata(body, &a) != BS_OK) {
        respond_error(r, &a);
    } else if (!(cfg = source_config(json_object_get(body, "data_source_config"), &err)) ||
               eval_criteria_parse(json_object_get(body, "testing_criteria"), "testing_criteria", &crit, &err) !=
                   BS_OK) {
        respond_invalid(r, &err);
    } else {
        char id[64];
        random_id("eval_", id, sizeof id);
        int64_t now = unix_now();
        const json_t *name = json_object_get(body, "name"), *md = json_object_get(body, "metadata");
        json_t *e = json_pack("{s:s,s:s,s:s?,s:I,s:O,s:O,s:O}", "object", "eval", "id", id, "name",
                              json_string_value(name), "created_at", (json_int_t)now, "data_source_config", cfg,
                              "testing_criteria", json_object_get(body, "testing_criteria"), "metadata",
                              md ? md : json_null());
        if (!e) bs_fail(&err, BS_ENOMEM, "out of memory");
        if (e && doc_put(s->store, "eval", id, request_owner(r), now, e, 1, &err) == BS_OK) respond_json(r, 200, e);
        else {
            json_decref(e);
            respond_bs(r, &err, "");
        }
    }
    eval_criteria_clear(&crit);
    json_decref(cfg);
    json_decref(body);
}

void handle_evals_list(basalt_server *s, http_request *r) {
    bs_error err = {0};
    json_t *all = doc_select(s->store, "eval", request_owner(r), NULL, NULL, NULL, &err);
    if (!all) respond_store_error(r, &err, "");
    else respond_page(r, all, 20);
}

/* "/v1/evals/A/B/C/D/E" -> up to 5 segments; 0 when empty or too deep. */
static int split_path(const char *path, char seg[5][96]) {
    const char *p = path + strlen("/v1/evals/");
    int n = 0;
    while (*p) {
        size_t len = strcspn(p, "/");
        if (n == 5 || len == 0 || len >= 96) return 0;
        memcpy(seg[n], p, len);
        seg[n++][len] = '\0';
        p += len + (p[len] == '/');
    }
    return n;
}

static void respond_unknown(http_request *r) {
    api_error a = {.http = 404};
    api_fail(&a, BS_ENOTFOUND, NULL, "not_found", "Unknown route: %s %s", http_method(r), http_path(r));
    respond_error(r, &a);
}

static json_t *lookup(basalt_server *s, http_request *r, const char *kind, const char *id, const char *what,
                      const char *param) {
    bs_error err = {0};
    json_t *b = doc_get(s->store, kind, id, request_owner(r), what, &err);
    if (!b) respond_store_error(r, &err, param);
    return b;
}

/* A run of eval_id, or NULL after answering 404. */
static json_t *lookup_run(basalt_server *s, http_request *r, const char *eval_id, const char *run_id) {
    json_t *run = lookup(s, r, "eval_run", run_id, "eval run", "run_id");
    if (run && strcmp(json_string_value(json_object_get(run, "eval_id")), eval_id) != 0) {
        json_decref(run);
        bs_error err;
        bs_fail(&err, BS_ENOTFOUND, "No such eval run: %s", run_id);
        respond_store_error(r, &err, "run_id");
        return NULL;
    }
    return run;
}

static void delete_all(bs_store *st, const char *kind, const json_t *docs) {
    size_t i;
    const json_t *b;
    bs_error err = {0};
    json_array_foreach(docs, i, b) {
        if (store_doc_delete(st, kind, json_string_value(json_object_get(b, "id")), &err) != BS_OK &&
            err.status != BS_ENOTFOUND)
            bs_log_error("%s delete: %s", kind, err.msg);
    }
}

/* A run's output items and then the run. */
static void delete_run(basalt_server *s, const char *run_id) {
    bs_error err = {0};
    stop_runs(s->evals, NULL, run_id);
    json_t *items = doc_select(s->store, "eval_output_item", NULL, "run_id", run_id, NULL, &err);
    delete_all(s->store, "eval_output_item", items);
    json_decref(items);
    if (store_doc_delete(s->store, "eval_run", run_id, &err) != BS_OK && err.status != BS_ENOTFOUND)
        bs_log_error("eval run delete: %s", err.msg);
}

static void update_eval(basalt_server *s, http_request *r, json_t *e) {
    json_t *body = request_body(r);
    if (!body) return;
    api_error a = {0};
    bs_error err = {0};
    if (opt_name(body, &a) != BS_OK || opt_metadata(body, &a) != BS_OK) {
        respond_error(r, &a);
    } else {
        const json_t *name = json_object_get(body, "name"), *md = json_object_get(body, "metadata");
        if (json_is_string(name)) json_object_set(e, "name", (json_t *)name);
        if (md) json_object_set(e, "metadata", (json_t *)md);
        if (doc_put(s->store, "eval", json_string_value(json_object_get(e, "id")), request_owner(r),
                    json_integer_value(json_object_get(e, "created_at")), e, 0, &err) == BS_OK)
            respond_json(r, 200, json_incref(e));
        else respond_bs(r, &err, "");
    }
    json_decref(body);
}

/* ---- runs ------------------------------------------------------------------ */

static bs_status number_in(const json_t *o, const char *key, const char *param, double lo, double hi, double *out,
                           bs_error *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return BS_OK;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi)
        return bs_fail(err, BS_EINVAL, "%s.%s: expected a number from %g to %g", param, key, lo, hi);
    *out = json_number_value(v);
    return BS_OK;
}

static bs_status sampling_decode(const json_t *p, eval_sampling *sp, bs_error *err) {
    *sp = (eval_sampling){.temperature = 1, .top_p = 1, .max_tokens = 256, .samples = 1};
    if (!p || json_is_null(p)) return BS_OK;
    if (!json_is_object(p)) return bs_fail(err, BS_EINVAL, "data_source.sampling_params: must be an object");
    const char *param = "data_source.sampling_params";
    double t = sp->temperature, top = sp->top_p, max = sp->max_tokens, seed = 0;
    if (number_in(p, "temperature", param, 0, 2, &t, err) != BS_OK || number_in(p, "top_p", param, 0, 1, &top, err) ||
        number_in(p, "max_completion_tokens", param, 1, 1 << 20, &max, err) ||
        number_in(p, "seed", param, 0, 9007199254740991.0, &seed, err))
        return err->status;
    *sp = (eval_sampling){.temperature = (float)t, .top_p = (float)top, .max_tokens = (int)max,
                          .seed = (uint64_t)seed, .samples = 1};
    return BS_OK;
}

/* data_source.source -> the items. */
static json_t *source_items(basalt_server *s, const json_t *src, bs_error *err) {
    const char *type = json_string_value(json_object_get(src, "type"));
    json_t *items = NULL;
    if (!json_is_object(src) || !type) {
        bs_fail(err, BS_EINVAL, "data_source.source.type: required (file_id or file_content)");
    } else if (strcmp(type, "file_content") == 0) {
        const json_t *content = json_object_get(src, "content"), *row;
        size_t i;
        if (!json_is_array(content) || json_array_size(content) == 0) {
            bs_fail(err, BS_EINVAL, "data_source.source.content: must be a non-empty array of {item}");
            return NULL;
        }
        items = json_array();
        json_array_foreach(content, i, row) {
            json_t *item = json_object_get(row, "item");
            if (!json_is_object(item)) {
                bs_fail(err, BS_EINVAL, "data_source.source.content[%zu].item: required object", i);
                json_decref(items);
                return NULL;
            }
            json_array_append(items, item);
        }
    } else if (strcmp(type, "file_id") == 0) {
        const char *id = json_string_value(json_object_get(src, "id"));
        store_file f;
        if (!id) {
            bs_fail(err, BS_EINVAL, "data_source.source.id: required string");
        } else if (store_file_get(s->store, id, &f, err) != BS_OK) {
            bs_fail(err, BS_EINVAL, "data_source.source.id: file not found: %s", id);
        } else {
            if (eval_items_read(f.path, &items, err) != BS_OK) bs_wrap(err, "data_source.source.id: %s", id);
            store_file_clear(&f);
        }
    } else {
        bs_fail(err, BS_EINVAL, "data_source.source.type: unknown type \"%s\" (expected file_id or file_content)",
                type);
    }
    return items;
}

/* The served model called name (base or adapter; an adapter's reference
 * goes into the request's log), or NULL after answering 404. */
static srv_model *run_model(basalt_server *s, http_request *r, const char *name) {
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return &s->models[i];
    srv_model *m = adapters_find(s, r, name);
    if (!m) {
        api_error a = {.http = 404};
        api_fail(&a, BS_ENOTFOUND, "data_source.model", "model_not_found",
                 "data_source.model: the model '%s' is not served", name);
        respond_error(r, &a);
    }
    return m;
}

static void create_run(basalt_server *s, http_request *r, const json_t *eval) {
    json_t *body = request_body(r);
    if (!body) return;
    bs_error err = {0};
    api_error a = {0};
    live_run *lr = calloc(1, sizeof *lr);
    const json_t *ds = json_object_get(body, "data_source");
    const char *type = json_string_value(json_object_get(ds, "type"));
    const char *model = json_string_value(json_object_get(ds, "model"));
    const json_t *schema = json_object_get(json_object_get(json_object_get(json_object_get(eval, "data_source_config"),
                                                                           "schema"), "properties"), "item");
    srv_model *m = NULL;
    if (!lr) {
        api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
        respond_error(r, &a);
        goto done;
    }
    lr->s = s;
    if (opt_name(body, &a) != BS_OK || opt_metadata(body, &a) != BS_OK) {
        respond_error(r, &a);
        goto done;
    }
    if (!json_is_object(ds)) bs_fail(&err, BS_EINVAL, "data_source: required object");
    else if (!type || strcmp(type, "completions") != 0)
        bs_fail(&err, BS_EINVAL, "data_source.type: expected \"completions\"");
    else if (!model) bs_fail(&err, BS_EINVAL, "data_source.model: required string");
    else if (eval_input_parse(json_object_get(ds, "input_messages"), "data_source.input_messages", &lr->input, &err) ==
                 BS_OK &&
             sampling_decode(json_object_get(ds, "sampling_params"), &lr->sp, &err) == BS_OK &&
             (lr->items = source_items(s, json_object_get(ds, "source"), &err)))
        err.status = BS_OK;
    if (err.status != BS_OK) {
        if (err.status == BS_EIO) err.status = BS_EINVAL; /* an unreadable upload is the request's file */
        respond_invalid(r, &err);
        goto done;
    }
    size_t i;
    const json_t *item;
    json_array_foreach(lr->items, i, item) if (schema && !json_validate(schema, item)) {
        bs_fail(&err, BS_EINVAL, "data_source.source: item %zu does not match the eval's item_schema", i);
        respond_invalid(r, &err);
        goto done;
    }
    if (eval_criteria_parse(json_object_get(eval, "testing_criteria"), "testing_criteria", &lr->crit, &err) != BS_OK) {
        respond_bs(r, &err, "testing_criteria");
        goto done;
    }
    if (!(m = run_model(s, r, model))) goto done;
    lr->view = *m;
    lr->view.adapter = m->adapter ? adapter_retain(m->adapter) : NULL;
    lr->view.name = strdup(m->name);
    lr->owner = strdup(request_owner(r));
    snprintf(lr->eval_id, sizeof lr->eval_id, "%s", json_string_value(json_object_get(eval, "id")));
    random_id("evalrun_", lr->id, sizeof lr->id);
    lr->created_at = unix_now();
    const json_t *name = json_object_get(body, "name"), *md = json_object_get(body, "metadata");
    lr->body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:O,s:{s:i,s:i,s:i,s:i},s:[],s:[],s:n,s:n,s:O}", "object",
                         "eval.run", "id", lr->id, "eval_id", lr->eval_id, "name",
                         json_is_string(name) ? json_string_value(name) : lr->id, "status", "queued", "model", model,
                         "created_at", (json_int_t)lr->created_at, "data_source", ds, "result_counts", "total", 0,
                         "errored", 0, "failed", 0, "passed", 0, "per_testing_criteria_results", "per_model_usage",
                         "report_url", "error", "metadata", md ? md : json_null());
    if (!lr->view.name || !lr->owner || !lr->body) {
        bs_fail(&err, BS_ENOMEM, "out of memory");
        respond_bs(r, &err, "");
        goto done;
    }
    if (doc_put(s->store, "eval_run", lr->id, lr->owner, lr->created_at, lr->body, 1, &err) != BS_OK) {
        respond_bs(r, &err, "");
        goto done;
    }
    json_t *reply = json_deep_copy(lr->body); /* the thread writes lr->body from now on */
    eval_runner *er = s->evals;
    pthread_mutex_lock(&er->mu);
    reap(er);
    if (pthread_create(&lr->thread, NULL, run_main, lr) != 0) {
        pthread_mutex_unlock(&er->mu);
        json_decref(reply);
        bs_fail(&err, BS_ENOMEM, "cannot start the run's thread");
        respond_bs(r, &err, "");
        goto done;
    }
    lr->next = er->head;
    er->head = lr;
    pthread_mutex_unlock(&er->mu);
    respond_json(r, 200, reply);
    lr = NULL;
done:
    if (lr) live_destroy(lr);
    json_decref(body);
}

static void cancel_run(basalt_server *s, http_request *r, const char *eval_id, json_t *run) {
    const char *id = json_string_value(json_object_get(run, "id"));
    const char *st = json_string_value(json_object_get(run, "status"));
    if (strcmp(st, "queued") != 0 && strcmp(st, "in_progress") != 0) {
        api_error a = {0};
        api_fail(&a, BS_EINVAL, "run_id", NULL, "eval run %s is already %s", id, st);
        respond_error(r, &a);
        return;
    }
    stop_runs(s->evals, NULL, id);
    json_t *now = lookup_run(s, r, eval_id, id);
    if (now) respond_json(r, 200, now);
}

static void list_output_items(basalt_server *s, http_request *r, const char *run_id) {
    const char *status = http_query(r, "status");
    if (status && strcmp(status, "pass") != 0 && strcmp(status, "fail") != 0 && strcmp(status, "error") != 0) {
        api_error a = {0};
        api_fail(&a, BS_EINVAL, "status", NULL, "status: expected pass, fail or error, got \"%s\"", status);
        respond_error(r, &a);
        return;
    }
    bs_error err = {0};
    json_t *items = doc_select(s->store, "eval_output_item", request_owner(r), "run_id", run_id, status, &err);
    if (!items) respond_store_error(r, &err, "");
    else respond_page(r, items, 20);
}

/* ---- routes ---------------------------------------------------------------- */

/* GET, POST or DELETE on /v1/evals/{eval}[/runs[/{run}[/verb[/{item}]]]]. */
static void handle_eval_path(basalt_server *s, http_request *r, char m) {
    char seg[5][96];
    int n = split_path(http_path(r), seg);
    if (n == 0 || (n >= 2 && strcmp(seg[1], "runs") != 0)) {
        respond_unknown(r);
        return;
    }
    json_t *e = lookup(s, r, "eval", seg[0], "eval", "eval_id"), *run = NULL;
    if (!e) return;
    if (n == 1) {
        if (m == 'G') respond_json(r, 200, json_incref(e));
        else if (m == 'P') update_eval(s, r, e);
        else {
            bs_error err = {0};
            json_t *runs = doc_select(s->store, "eval_run", NULL, "eval_id", seg[0], NULL, &err);
            size_t i;
            const json_t *b;
            json_array_foreach(runs, i, b) delete_run(s, json_string_value(json_object_get(b, "id")));
            json_decref(runs);
            if (store_doc_delete(s->store, "eval", seg[0], &err) != BS_OK) respond_store_error(r, &err, "eval_id");
            else respond_json(r, 200, json_pack("{s:s,s:s,s:b}", "object", "eval.deleted", "eval_id", seg[0], "deleted", 1));
        }
    } else if (n == 2) {
        bs_error err = {0};
        json_t *runs = NULL;
        if (m == 'P') create_run(s, r, e);
        else if (m == 'D') respond_unknown(r);
        else if (!(runs = doc_select(s->store, "eval_run", request_owner(r), "eval_id", seg[0], http_query(r, "status"), &err)))
            respond_store_error(r, &err, "");
        else respond_page(r, runs, 20);
    } else if ((run = lookup_run(s, r, seg[0], seg[2]))) {
        if (n == 3 && m == 'G') {
            respond_json(r, 200, json_incref(run));
        } else if (n == 3 && m == 'D') {
            delete_run(s, seg[2]);
            respond_json(r, 200, json_pack("{s:s,s:s,s:b}", "object", "eval.run.deleted", "run_id", seg[2], "deleted", 1));
        } else if ((n == 3 && m == 'P') || (n == 4 && m == 'P' && strcmp(seg[3], "cancel") == 0)) {
            cancel_run(s, r, seg[0], run);
        } else if (n == 4 && m == 'G' && strcmp(seg[3], "output_items") == 0) {
            list_output_items(s, r, seg[2]);
        } else if (n == 5 && m == 'G' && strcmp(seg[3], "output_items") == 0) {
            json_t *item = lookup(s, r, "eval_output_item", seg[4], "output item", "output_item_id");
            const char *rid = item ? json_string_value(json_object_get(item, "run_id")) : NULL;
            if (rid && strcmp(rid, seg[2]) == 0) respond_json(r, 200, json_incref(item));
            else if (item) respond_unknown(r);
            json_decref(item);
        } else {
            respond_unknown(r);
        }
    }
    json_decref(run);
    json_decref(e);
}

void handle_eval_get(basalt_server *s, http_request *r) { handle_eval_path(s, r, 'G'); }
void handle_eval_post(basalt_server *s, http_request *r) { handle_eval_path(s, r, 'P'); }
void handle_eval_delete(basalt_server *s, http_request *r) { handle_eval_path(s, r, 'D'); }
