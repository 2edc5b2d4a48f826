/* server/handlers_batches.c — OpenAI's Batch API over server/batches.h:
 *
 *   POST /v1/batches               create {input_file_id, endpoint, completion_window, metadata}
 *   GET  /v1/batches               list (after, limit), newest first
 *   GET  /v1/batches/{id}          retrieve
 *   POST /v1/batches/{id}/cancel   cancel
 *
 * Batches belong to the tenant that made them (request_tenant); another
 * tenant's batch answers 404 as an unknown one does.  The stored object is
 * what a finished batch answers; one the worker still holds answers its
 * live object, whose counts are fresher than the last save. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_impl.h"

static const char *const create_keys[] = {"input_file_id", "endpoint", "completion_window", "metadata"};

/* OpenAI's Metadata: up to 16 string pairs, keys <= 64 and values <= 512 characters. */
static bs_status check_metadata(const json_t *md, api_error *a) {
    if (!md || json_is_null(md)) return BS_OK;
    if (!json_is_object(md)) return api_fail(a, BS_EINVAL, "metadata", NULL, "metadata: expected an object");
    if (json_object_size(md) > 16)
        return api_fail(a, BS_EINVAL, "metadata", NULL, "metadata: %zu pairs; at most 16", json_object_size(md));
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)md, k, v) {
        if (strlen(k) > 64) return api_fail(a, BS_EINVAL, "metadata", NULL, "metadata: key \"%.64s…\" is longer than 64", k);
        if (!json_is_string(v) || strlen(json_string_value(v)) > 512)
            return api_fail(a, BS_EINVAL, "metadata", NULL, "metadata.%s: expected a string of at most 512 characters",
                            k);
    }
    return BS_OK;
}

/* The request's fields, before anything is looked up. */
static bs_status check_create(const json_t *body, api_error *a) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)body, k, v) {
        int known = 0;
        for (size_t i = 0; i < sizeof create_keys / sizeof create_keys[0]; i++) known |= strcmp(k, create_keys[i]) == 0;
        if (strcmp(k, "output_expires_after") == 0)
            return api_fail(a, BS_EUNSUPPORTED, k, NULL,
                            "output_expires_after: not supported; basalt keeps files until they are deleted");
        if (!known)
            return api_fail(a, BS_EINVAL, k, NULL,
                            "unknown parameter \"%s\" (expected input_file_id, endpoint, completion_window, metadata)",
                            k);
    }
    const char *fid = json_string_value(json_object_get(body, "input_file_id"));
    const char *endpoint = json_string_value(json_object_get(body, "endpoint"));
    const char *window = json_string_value(json_object_get(body, "completion_window"));
    if (!fid || !*fid) return api_fail(a, BS_EINVAL, "input_file_id", NULL, "input_file_id: required string");
    if (!endpoint)
        return api_fail(a, BS_EINVAL, "endpoint", NULL, "endpoint: required string (one of %s)", batch_endpoints_text());
    if (!batch_endpoint_known(endpoint))
        return api_fail(a, BS_EINVAL, "endpoint", NULL, "endpoint: \"%s\" is not one of %s", endpoint,
                        batch_endpoints_text());
    if (!window || strcmp(window, "24h") != 0)
        return api_fail(a, BS_EINVAL, "completion_window", NULL, "completion_window: must be \"24h\"%s%s%s",
                        window ? ", got \"" : "", window ? window : "", window ? "\"" : "");
    return check_metadata(json_object_get(body, "metadata"), a);
}

/* The input file must be the tenant's and uploaded for batches. */
static int check_input_file(basalt_server *s, http_request *r, const char *fid, const char *tenant) {
    store_file f;
    bs_error err = {0};
    if (store_file_get(s->store, fid, &f, &err) != BS_OK) {
        if (err.status == BS_ENOTFOUND) bs_fail(&err, BS_ENOTFOUND, "input_file_id: no such File object: %s", fid);
        respond_store_error(r, &err, "input_file_id");
        return 0;
    }
    api_error a = {0};
    if (f.owner && *f.owner && strcmp(f.owner, tenant) != 0) {
        a.http = 404;
        api_fail(&a, BS_ENOTFOUND, "input_file_id", NULL, "input_file_id: no such File object: %s", fid);
    } else if (strcmp(f.purpose, "batch") != 0) {
        api_fail(&a, BS_EINVAL, "input_file_id", NULL,
                 "input_file_id: %s was uploaded with purpose \"%s\"; batches read files of purpose \"batch\"", fid,
                 f.purpose);
    }
    store_file_clear(&f);
    if (a.e.status == BS_OK) return 1;
    respond_error(r, &a);
    return 0;
}

void handle_batch_create(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    api_error a = {0};
    const char *tenant = request_tenant(r);
    if (check_create(body, &a) != BS_OK) {
        respond_error(r, &a);
    } else if (check_input_file(s, r, json_string_value(json_object_get(body, "input_file_id")), tenant)) {
        char id[64];
        random_id("batch_", id, sizeof id);
        json_int_t now = unix_now();
        const json_t *md = json_object_get(body, "metadata");
        json_t *batch = json_pack(
            "{s:s,s:s,s:O,s:n,s:n,s:O,s:s,s:s,s:n,s:n,s:I,s:n,s:I,s:n,s:n,s:n,s:n,s:n,s:n,s:{s:i,s:i,s:i},s:n,s:O}",
            "id", id, "object", "batch", "endpoint", json_object_get(body, "endpoint"), "model", "errors",
            "input_file_id", json_object_get(body, "input_file_id"), "completion_window", "24h", "status", "validating",
            "output_file_id", "error_file_id", "created_at", now, "in_progress_at", "expires_at",
            now + BATCH_WINDOW_S, "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
            "cancelled_at", "request_counts", "total", 0, "completed", 0, "failed", 0, "usage", "metadata",
            md ? md : json_null());
        bs_error err = {0};
        if (!batch) {
            api_fail(&a, BS_ENOMEM, NULL, NULL, "out of memory");
            respond_error(r, &a);
        } else if (batch_runner_create(s->batches, tenant, request_key(r) ? request_key(r)->id : "", batch, &err) !=
                   BS_OK) {
            respond_store_error(r, &err, "");
        } else {
            respond_json(r, 200, json_incref(batch));
        }
        json_decref(batch);
    }
    json_decref(body);
}

void handle_batches_list(basalt_server *s, http_request *r) {
    api_error a = {0};
    long limit = 20;
    if (query_int(r, "limit", 1, 100, &limit, &a) != BS_OK) {
        respond_error(r, &a);
        return;
    }
    store_page page = {.limit = (int)limit, .after = http_query(r, "after"), .owner = request_tenant(r)};
    store_doc *docs = NULL;
    size_t n = 0;
    int more = 0;
    bs_error err = {0};
    if (store_doc_list(s->store, "batch", &page, &docs, &n, &more, &err) != BS_OK) {
        /* An unknown cursor is a bad parameter, not a missing resource. */
        if (err.status == BS_ENOTFOUND) err.status = BS_EINVAL;
        respond_store_error(r, &err, "after");
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *obj = batch_runner_object(s->batches, docs[i].id);
        if (!obj) obj = json_loads(docs[i].body, 0, NULL);
        if (obj) json_array_append_new(data, obj);
    }
    respond_json(r, 200,
                 json_pack("{s:s,s:o,s:s?,s:s?,s:b}", "object", "list", "data", data, "first_id",
                           n ? docs[0].id : NULL, "last_id", n ? docs[n - 1].id : NULL, "has_more", more));
    store_docs_free(docs, n);
}

/* The object of the path's batch when the tenant may see it; NULL after answering 404. */
static json_t *lookup(basalt_server *s, http_request *r, const char *id) {
    store_doc d = {0};
    bs_error err = {0};
    json_t *obj = NULL;
    if (store_doc_get(s->store, "batch", id, &d, &err) == BS_OK &&
        strcmp(d.owner ? d.owner : "", request_tenant(r)) == 0) {
        obj = batch_runner_object(s->batches, id);
        if (!obj && !(obj = json_loads(d.body, 0, NULL))) bs_fail(&err, BS_EFORMAT, "batch %s: stored body is not JSON", id);
    } else if (err.status == BS_OK || err.status == BS_ENOTFOUND) {
        bs_fail(&err, BS_ENOTFOUND, "No such batch: %s", id);
    }
    store_doc_clear(&d);
    if (!obj) respond_store_error(r, &err, "batch_id");
    return obj;
}

static void not_found_route(http_request *r) {
    api_error a = {.http = 404};
    api_fail(&a, BS_ENOTFOUND, NULL, "not_found", "Unknown route: %s %s", http_method(r), http_path(r));
    respond_error(r, &a);
}

void handle_batch_get(basalt_server *s, http_request *r) {
    char id[128];
    const char *action;
    if (!split_resource_path(http_path(r), "/v1/batches/", id, sizeof id, &action) || *action) {
        not_found_route(r);
        return;
    }
    json_t *obj = lookup(s, r, id);
    if (obj) respond_json(r, 200, obj);
}

void handle_batch_post(basalt_server *s, http_request *r) {
    char id[128];
    const char *action;
    if (!split_resource_path(http_path(r), "/v1/batches/", id, sizeof id, &action) || strcmp(action, "cancel") != 0) {
        not_found_route(r);
        return;
    }
    json_t *obj = lookup(s, r, id);
    if (!obj) return;
    json_t *now = NULL;
    bs_error err = {0};
    if (batch_runner_cancel(s->batches, id, &now, &err) == BS_OK) {
        respond_json(r, 200, now);
    } else {
        /* Finished already (or finalizing): nothing left to cancel. */
        json_decref(obj);
        obj = lookup(s, r, id);
        if (!obj) return;
        api_error a = {.http = 409};
        if (err.status == BS_EINVAL) api_fail(&a, BS_EINVAL, NULL, "batch_not_cancellable", "%s", err.msg);
        else
            api_fail(&a, BS_EINVAL, NULL, "batch_not_cancellable", "batch %s is %s and can no longer be cancelled", id,
                     json_string_value(json_object_get(obj, "status")));
        respond_error(r, &a);
    }
    json_decref(obj);
}
