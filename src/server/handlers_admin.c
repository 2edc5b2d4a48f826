/* server/handlers_admin.c — the admin API: API keys (create, list, get,
 * update, revoke), usage (JSON or CSV) and the audit log.  Every change is
 * recorded in the audit log with the calling key as its actor, and fails if
 * it cannot be recorded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "gateway/audit.h"
#include "server/server_impl.h"

#define KEYS_PREFIX "/v1/admin/keys/"

/* ------------------------------------------------------------ the key spec */

/* body[name]: an array of strings (borrowed from body into *out, which is
 * malloc'ed); absent or null leaves *present 0. */
static bs_status string_list(const json_t *body, const char *name, const char ***out, int *n, int *present,
                             api_error *a) {
    const json_t *v = json_object_get(body, name);
    *out = NULL;
    *n = 0;
    *present = v && !json_is_null(v);
    if (!*present) return BS_OK;
    if (!json_is_array(v)) return api_fail(a, BS_EINVAL, name, NULL, "%s: expected an array of strings", name);
    size_t count = json_array_size(v);
    if (count && !(*out = calloc(count, sizeof **out))) return api_fail(a, BS_ENOMEM, NULL, NULL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const char *s = json_string_value(json_array_get(v, i));
        if (!s) return api_fail(a, BS_EINVAL, name, NULL, "%s[%zu]: expected a string", name, i);
        (*out)[(*n)++] = s;
    }
    return BS_OK;
}

static bs_status int_field(const json_t *body, const char *name, int64_t *out, int *present, api_error *a) {
    const json_t *v = json_object_get(body, name);
    *present = v && !json_is_null(v);
    if (!*present) return BS_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return api_fail(a, BS_EINVAL, name, NULL, "%s: expected an integer >= 0", name);
    *out = (int64_t)json_integer_value(v);
    return BS_OK;
}

static bs_status string_field(const json_t *body, const char *name, const char **out, int *present, api_error *a) {
    const json_t *v = json_object_get(body, name);
    *present = v && !json_is_null(v);
    if (!*present) return BS_OK;
    if (!json_is_string(v)) return api_fail(a, BS_EINVAL, name, NULL, "%s: expected a string", name);
    *out = json_string_value(v);
    return BS_OK;
}

typedef struct key_request {
    key_spec spec;
    unsigned fields; /* KEY_UPDATE_* present in the body */
} key_request;

static void key_request_free(key_request *k) {
    free((void *)k->spec.scopes);
    free((void *)k->spec.models);
    free((void *)k->spec.routes);
}

/* The body's fields as a key_spec, the same names as `basalt keys create`'s
 * flags; unknown fields are refused so a typo is not silently ignored. */
static bs_status decode_key(const json_t *body, key_request *k, api_error *a) {
    static const char *const known[] = {"name", "owner", "scopes", "models", "routes", "rpm", "tpm",
                                        "max_concurrent", "budget_usd", "budget_period", "expires_at",
                                        "expires_in_s", "metadata"};
    const char *f;
    const json_t *v;
    json_object_foreach((json_t *)body, f, v) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], f) != 0) i++;
        if (i == sizeof known / sizeof known[0])
            return api_fail(a, BS_EINVAL, f, NULL, "%s: unknown field (expected name, owner, scopes, models, routes, "
                            "rpm, tpm, max_concurrent, budget_usd, budget_period, expires_at, expires_in_s, metadata)",
                            f);
    }
    key_spec *s = &k->spec;
    int p[16] = {0};
    const char *period = NULL;
    int64_t in_s = 0;
    if (string_field(body, "name", &s->name, &p[0], a) || string_field(body, "owner", &s->owner, &p[1], a) ||
        string_list(body, "scopes", (const char ***)&s->scopes, &s->n_scopes, &p[2], a) ||
        string_list(body, "models", (const char ***)&s->models, &s->n_models, &p[3], a) ||
        string_list(body, "routes", (const char ***)&s->routes, &s->n_routes, &p[4], a) ||
        int_field(body, "rpm", &s->rpm, &p[5], a) || int_field(body, "tpm", &s->tpm, &p[6], a) ||
        int_field(body, "max_concurrent", &s->max_concurrent, &p[7], a) ||
        string_field(body, "budget_period", &period, &p[9], a) ||
        int_field(body, "expires_at", &s->expires_at, &p[10], a) || int_field(body, "expires_in_s", &in_s, &p[11], a))
        return a->e.status;
    if ((v = json_object_get(body, "budget_usd")) && !json_is_null(v)) {
        p[8] = 1;
        if (!json_is_number(v) || json_number_value(v) < 0)
            return api_fail(a, BS_EINVAL, "budget_usd", NULL, "budget_usd: expected a number >= 0");
        s->budget_usd = json_number_value(v);
    }
    if (period && limit_period_parse(period, &s->budget_period, &a->e) != BS_OK)
        return api_fail(a, BS_EINVAL, "budget_period", NULL, "budget_period: %s", a->e.msg);
    if (p[10] && p[11])
        return api_fail(a, BS_EINVAL, "expires_in_s", NULL, "expires_in_s: give expires_at or expires_in_s, not both");
    if (p[11]) s->expires_at = (int64_t)time(NULL) + in_s;
    if ((v = json_object_get(body, "metadata")) && !json_is_null(v)) {
        if (!json_is_object(v)) return api_fail(a, BS_EINVAL, "metadata", NULL, "metadata: expected an object");
        s->metadata = (json_t *)v;
        k->fields |= KEY_UPDATE_METADATA;
    }
    k->fields |= (p[0] ? KEY_UPDATE_NAME : 0) | (p[2] ? KEY_UPDATE_SCOPES : 0) | (p[3] ? KEY_UPDATE_MODELS : 0) |
                 (p[4] ? KEY_UPDATE_ROUTES : 0) | (p[5] || p[6] || p[7] ? KEY_UPDATE_LIMITS : 0) |
                 (p[8] || p[9] ? KEY_UPDATE_BUDGET : 0) | (p[10] || p[11] ? KEY_UPDATE_EXPIRY : 0);
    return BS_OK;
}

/* ------------------------------------------------------------ helpers */

static const char *actor(http_request *r) {
    const key_info *k = request_key(r);
    return k ? k->id : "";
}

/* Record the action; 0 after answering 500 when it cannot be recorded. */
static int audit(basalt_server *s, http_request *r, const char *action, const char *target, const json_t *details) {
    bs_error err = {0};
    if (audit_record(s->store, actor(r), action, target, details, NULL, &err) == BS_OK) return 1;
    bs_log_error("audit: %s %s: %s", action, target ? target : "", err.msg);
    api_error a = {.e = err, .http = 500};
    respond_error(r, &a);
    return 0;
}

static void respond_keys_error(http_request *r, const bs_error *err, const char *param) {
    api_error a = {.e = *err};
    if (err->status == BS_ENOTFOUND || err->status == BS_EINVAL) snprintf(a.param, sizeof a.param, "%s", param);
    else bs_log_error("keys: %s", err->msg);
    respond_error(r, &a);
}

/* The key id of /v1/admin/keys/{id}; NULL after answering 404 for a deeper path. */
static const char *path_key_id(http_request *r) {
    const char *id = http_path(r) + strlen(KEYS_PREFIX);
    if (!strchr(id, '/')) return id;
    api_error a = {.http = 404};
    api_fail(&a, BS_ENOTFOUND, NULL, "not_found", "Unknown route: %s %s", http_method(r), http_path(r));
    respond_error(r, &a);
    return NULL;
}

/* The audit details of a change: the request's fields, never a secret. */
static json_t *audit_details(const json_t *body) { return body ? json_deep_copy(body) : json_object(); }

/* ------------------------------------------------------------ keys */

void handle_admin_key_create(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    key_request k = {0};
    api_error a = {0};
    char *secret = NULL;
    key_info info = {0};
    if (decode_key(body, &k, &a) != BS_OK) {
        respond_error(r, &a);
    } else if (!k.spec.name) {
        api_fail(&a, BS_EINVAL, "name", NULL, "name: required");
        respond_error(r, &a);
    } else if (keys_create(governance_keys(s->gov), &k.spec, &secret, &info, &a.e) != BS_OK) {
        respond_keys_error(r, &a.e, "key");
    } else {
        json_t *d = audit_details(body);
        if (audit(s, r, "key.create", info.id, d)) {
            json_t *o = key_info_json(&info);
            json_object_set_new(o, "secret", json_string(secret));
            respond_json(r, 200, o);
        }
        json_decref(d);
    }
    if (secret) memset(secret, 0, strlen(secret));
    free(secret);
    key_info_clear(&info);
    key_request_free(&k);
    json_decref(body);
}

void handle_admin_keys_list(basalt_server *s, http_request *r) {
    key_info *items;
    size_t n;
    bs_error err = {0};
    if (keys_list(governance_keys(s->gov), http_query(r, "owner"), &items, &n, &err) != BS_OK) {
        respond_keys_error(r, &err, "owner");
        return;
    }
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(data, key_info_json(&items[i]));
    respond_json(r, 200, json_pack("{s:s,s:o,s:b}", "object", "list", "data", data, "has_more", 0));
    key_infos_free(items, n);
}

void handle_admin_key_get(basalt_server *s, http_request *r) {
    const char *id = path_key_id(r);
    if (!id) return;
    key_info info = {0};
    bs_error err = {0};
    if (keys_get(governance_keys(s->gov), id, &info, &err) != BS_OK) respond_keys_error(r, &err, "key_id");
    else respond_json(r, 200, key_info_json(&info));
    key_info_clear(&info);
}

void handle_admin_key_update(basalt_server *s, http_request *r) {
    const char *id = path_key_id(r);
    if (!id) return;
    json_t *body = request_body(r);
    if (!body) return;
    key_request k = {0};
    api_error a = {0};
    key_info info = {0};
    if (decode_key(body, &k, &a) != BS_OK) {
        respond_error(r, &a);
    } else if (json_object_get(body, "owner")) {
        api_fail(&a, BS_EINVAL, "owner", NULL, "owner: a key's tenant is set when it is created and never changes");
        respond_error(r, &a);
    } else if (keys_update(governance_keys(s->gov), id, &k.spec, k.fields, &info, &a.e) != BS_OK) {
        respond_keys_error(r, &a.e, "key_id");
    } else {
        json_t *d = audit_details(body);
        if (audit(s, r, "key.update", id, d)) respond_json(r, 200, key_info_json(&info));
        json_decref(d);
    }
    key_info_clear(&info);
    key_request_free(&k);
    json_decref(body);
}

void handle_admin_key_revoke(basalt_server *s, http_request *r) {
    const char *id = path_key_id(r);
    if (!id) return;
    key_info info = {0};
    bs_error err = {0};
    if (keys_revoke(governance_keys(s->gov), id, &info, &err) != BS_OK) {
        respond_keys_error(r, &err, "key_id");
    } else if (audit(s, r, "key.revoke", id, NULL)) {
        json_t *o = key_info_json(&info);
        json_object_set_new(o, "deleted", json_true());
        respond_json(r, 200, o);
    }
    key_info_clear(&info);
}

/* ------------------------------------------------------------ usage, audit */

void handle_admin_usage(basalt_server *s, http_request *r) {
    const char *group = http_query(r, "group_by"), *from = http_query(r, "from"), *to = http_query(r, "to"),
               *key = http_query(r, "key_id"), *format = http_query(r, "format");
    api_error a = {0};
    if (format && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0) {
        api_fail(&a, BS_EINVAL, "format", NULL, "format: expected json or csv, got \"%s\"", format);
        respond_error(r, &a);
        return;
    }
    usage_recorder *u = governance_usage(s->gov);
    if (format && strcmp(format, "csv") == 0) {
        char *csv = NULL;
        if (usage_csv(u, group, from, to, key, &csv, &a.e) != BS_OK) {
            respond_keys_error(r, &a.e, "group_by");
        } else {
            http_add_header(r, "Content-Disposition", "attachment; filename=\"usage.csv\"");
            http_respond(r, 200, "text/csv; charset=utf-8", csv, strlen(csv));
        }
        free(csv);
        return;
    }
    json_t *out = NULL;
    if (usage_query(u, group, from, to, key, &out, &a.e) != BS_OK) respond_keys_error(r, &a.e, "group_by");
    else respond_json(r, 200, out);
}

void handle_admin_audit(basalt_server *s, http_request *r) {
    api_error a = {0};
    long from = 0, to = 0, limit = 100;
    if (query_int(r, "from", 0, 0x7fffffffL, &from, &a) != BS_OK || query_int(r, "to", 0, 0x7fffffffL, &to, &a) ||
        query_int(r, "limit", 1, 1000, &limit, &a)) {
        respond_error(r, &a);
        return;
    }
    store_page page = {.limit = (int)limit, .after = http_query(r, "after"), .ascending = 1};
    json_t *out = NULL;
    bs_error err = {0};
    if (audit_list(s->store, from, to, &page, &out, &err) != BS_OK) {
        /* An unknown cursor is a bad parameter, not a missing resource. */
        if (err.status == BS_ENOTFOUND) err.status = BS_EINVAL;
        respond_store_error(r, &err, "after");
        return;
    }
    respond_json(r, 200, out);
}
