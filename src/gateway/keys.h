/* gateway/keys.h — API keys: creation, storage, the in-memory registry
 * that authenticates requests, and the per-key permissions and limits.
 *
 * A key is a store document of kind "api_key", id "key-<12 hex>".  Its
 * secret, "sk-basalt-<12 hex>-<32 base62>", is returned once by
 * keys_create and never stored: the document keeps a per-key random
 * 16-byte salt and sha256(salt || secret), compared in constant time.  The
 * token names its key id, so authentication is one lookup, not a scan.
 *
 * The registry is a copy of every key in memory, loaded at keys_open,
 * updated by every change made through it and reloaded by keys_refresh
 * (the server calls it every few seconds, so replicas sharing a PostgreSQL
 * store see each other's revocations within seconds).  Authentication
 * never touches the database.  Any number of threads may use a registry. */
#ifndef BASALT_GATEWAY_KEYS_H
#define BASALT_GATEWAY_KEYS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "gateway/limits.h"
#include "store/store.h"

#define KEY_ID_HEX 12
#define KEY_ID_MAX 32

typedef enum {
    KEY_SCOPE_INFERENCE = 1 << 0,
    KEY_SCOPE_FILES = 1 << 1,
    KEY_SCOPE_FINE_TUNE = 1 << 2,
    KEY_SCOPE_ADMIN = 1 << 3, /* implies every other scope */
} key_scope;

/* What a caller asks for (create) or changes (update).  Strings borrowed.
 * scopes are names ("inference", "files", "fine-tune", "admin"); none given
 * at create means inference only.  Empty models / routes: every one. */
typedef struct key_spec {
    const char *name;
    const char *owner; /* tenant; NULL = "" */
    const char *const *scopes;
    int n_scopes;
    const char *const *models;
    int n_models;
    const char *const *routes;
    int n_routes;
    int64_t rpm, tpm, max_concurrent; /* 0 = unlimited */
    double budget_usd;                /* 0 = none */
    limit_period budget_period;
    int64_t expires_at; /* Unix seconds; 0 = never */
    json_t *metadata;   /* object or NULL; borrowed */
} key_spec;

/* Which parts of a key_spec keys_update applies. */
enum {
    KEY_UPDATE_NAME = 1 << 0,
    KEY_UPDATE_SCOPES = 1 << 1,
    KEY_UPDATE_MODELS = 1 << 2,
    KEY_UPDATE_ROUTES = 1 << 3,
    KEY_UPDATE_LIMITS = 1 << 4, /* rpm, tpm, max_concurrent */
    KEY_UPDATE_BUDGET = 1 << 5, /* budget_usd, budget_period */
    KEY_UPDATE_EXPIRY = 1 << 6,
    KEY_UPDATE_METADATA = 1 << 7,
};

/* A key as the admin API and the request path see it (no salt, no hash). */
typedef struct key_info {
    char id[KEY_ID_MAX];
    char *name, *owner;
    unsigned scopes; /* key_scope bits */
    char **models;
    int n_models;
    char **routes;
    int n_routes;
    int64_t rpm, tpm, max_concurrent;
    double budget_usd;
    limit_period budget_period;
    int64_t expires_at, revoked_at, created_at; /* 0 = never / not revoked */
    char last4[5];                              /* the secret's last 4 chars, for display */
    json_t *metadata;                           /* an object, never NULL */
} key_info;
void key_info_clear(key_info *k);
void key_infos_free(key_info *items, size_t n);
/* The admin API's object: everything above plus "object": "api_key";
 * never the salt, the hash or the secret.  New reference. */
json_t *key_info_json(const key_info *k);

/* An authenticated request's key: a counted reference to the registry's
 * record, valid until key_view_release even if a refresh replaces it. */
typedef struct key_view {
    const key_info *key;
    void *rec_; /* internal */
} key_view;
void key_view_release(key_view *v);

typedef struct keys_registry keys_registry;

bs_status keys_open(bs_store *store, keys_registry **out, bs_error *err);
void keys_close(keys_registry *reg);
/* Reload every key from the store; on failure the old copy stays. */
bs_status keys_refresh(keys_registry *reg, bs_error *err);
/* Every key in the store, revoked ones included (0: none configured; the
 * server then serves without authentication, on loopback only). */
size_t keys_count(keys_registry *reg);

/* Validate spec, store the key and return its secret (*secret_out,
 * malloc'ed, shown once) and *out.  Validation errors name the field:
 * "scopes[2]: unknown scope \"fine_tune\" (known: …)". */
bs_status keys_create(keys_registry *reg, const key_spec *spec, char **secret_out, key_info *out, bs_error *err);
/* From the registry's copy; BS_ENOTFOUND for an unknown id. */
bs_status keys_get(keys_registry *reg, const char *id, key_info *out, bs_error *err);
/* owner NULL: every key; sorted by id.  Free with key_infos_free. */
bs_status keys_list(keys_registry *reg, const char *owner, key_info **items, size_t *n, bs_error *err);
/* Apply the KEY_UPDATE_* parts of spec to key id (compare-and-set on the
 * stored document, retried when another replica wrote it meanwhile). */
bs_status keys_update(keys_registry *reg, const char *id, const key_spec *spec, unsigned fields, key_info *out,
                      bs_error *err);
/* Revoke now; revoking a revoked key keeps the first time. */
bs_status keys_revoke(keys_registry *reg, const char *id, key_info *out, bs_error *err);

typedef enum {
    KEY_AUTH_OK,
    KEY_AUTH_MISSING,   /* no Authorization header */
    KEY_AUTH_MALFORMED, /* not "Bearer sk-basalt-<12 hex>-<32 base62>" */
    KEY_AUTH_UNKNOWN,   /* no such key, or the secret does not match */
    KEY_AUTH_REVOKED,
    KEY_AUTH_EXPIRED,
} key_auth;
/* A client-facing sentence for the result; never contains the secret. */
const char *key_auth_message(key_auth r);

/* Check "Bearer sk-…" (header value, may be NULL) at time now (Unix
 * seconds).  Revoked and expired are only reported to a caller who holds
 * the right secret.  On KEY_AUTH_OK *out holds the key (release it). */
key_auth keys_authenticate(keys_registry *reg, const char *authorization, int64_t now, key_view *out);
/* A view of key id without its secret, for work basalt runs on a key's
 * behalf (batches): KEY_AUTH_UNKNOWN / REVOKED / EXPIRED as above. */
key_auth keys_view_by_id(keys_registry *reg, const char *id, int64_t now, key_view *out);

/* route NULL: the request named a model, checked against the models list;
 * else it named a route, checked against the routes list. */
int key_allows_model(const key_info *k, const char *model, const char *route);
int key_allows_scope(const key_info *k, key_scope scope);

/* Compare n bytes in time independent of where they differ. */
int keys_equal_ct(const void *a, const void *b, size_t n);

#endif
