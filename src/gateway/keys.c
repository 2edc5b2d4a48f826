/* gateway/keys.c — see keys.h.  The registry is a sorted array of
 * reference-counted immutable records behind a rwlock: readers take a
 * reference and let go of the lock at once, writers swap in new records,
 * so a refresh never invalidates a key_view a request still holds.  A
 * stored body goes through the same key_spec validation as a new key, so
 * one set of rules decides what a valid key is. */
#include "gateway/keys.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "base/log.h"
#include "hub/sha256.h"

#define DOC_KIND "api_key"
#define SECRET_PREFIX "sk-basalt-"
#define SECRET_RANDOM 32
#define SECRET_LEN (sizeof SECRET_PREFIX - 1 + KEY_ID_HEX + 1 + SECRET_RANDOM)
#define SALT_BYTES 16
#define NAME_MAX_LEN 256
#define CAS_TRIES 8

static const char BASE62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static const struct {
    const char *name;
    key_scope bit;
} SCOPES[] = {{"inference", KEY_SCOPE_INFERENCE},
              {"files", KEY_SCOPE_FILES},
              {"fine-tune", KEY_SCOPE_FINE_TUNE},
              {"admin", KEY_SCOPE_ADMIN}};
#define N_SCOPES (sizeof SCOPES / sizeof SCOPES[0])

typedef struct key_rec {
    atomic_int refs;
    key_info info;
    char salt[2 * SALT_BYTES + 1]; /* hex */
    char hash[SHA256_HEX_LEN + 1]; /* hex of sha256(salt bytes || secret) */
    int64_t updated_at;            /* the stored document's, for compare-and-set and refresh */
} key_rec;

struct keys_registry {
    bs_store *store;
    pthread_rwlock_t lock;
    key_rec **recs; /* sorted by id */
    size_t n;
};

/* ------------------------------------------------------------ key_info */

static void free_strings(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

void key_info_clear(key_info *k) {
    if (!k) return;
    free(k->name);
    free(k->owner);
    free_strings(k->models, k->n_models);
    free_strings(k->routes, k->n_routes);
    if (k->metadata) json_decref(k->metadata);
    memset(k, 0, sizeof *k);
}

void key_infos_free(key_info *items, size_t n) {
    for (size_t i = 0; items && i < n; i++) key_info_clear(&items[i]);
    free(items);
}

static char **copy_strings(const char *const *v, int n) {
    char **out = calloc((size_t)n + 1, sizeof *out);
    for (int i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) {
            free_strings(out, i);
            return NULL;
        }
    return out;
}

static bs_status info_copy(key_info *dst, const key_info *src, bs_error *err) {
    *dst = *src;
    dst->name = strdup(src->name);
    dst->owner = strdup(src->owner);
    dst->models = copy_strings((const char *const *)src->models, src->n_models);
    dst->routes = copy_strings((const char *const *)src->routes, src->n_routes);
    dst->metadata = json_deep_copy(src->metadata);
    if (!dst->name || !dst->owner || !dst->models || !dst->routes || !dst->metadata) {
        key_info_clear(dst);
        return bs_fail(err, BS_ENOMEM, "keys: out of memory");
    }
    return BS_OK;
}

static json_t *string_array(char **v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *scopes_json(unsigned scopes) {
    json_t *a = json_array();
    for (size_t i = 0; i < N_SCOPES; i++)
        if (scopes & SCOPES[i].bit) json_array_append_new(a, json_string(SCOPES[i].name));
    return a;
}

/* The fields shared by the admin object and the stored body. */
static json_t *info_fields(const key_info *k) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(k->name));
    json_object_set_new(o, "scopes", scopes_json(k->scopes));
    json_object_set_new(o, "models", string_array(k->models, k->n_models));
    json_object_set_new(o, "routes", string_array(k->routes, k->n_routes));
    json_object_set_new(o, "rpm", json_integer(k->rpm));
    json_object_set_new(o, "tpm", json_integer(k->tpm));
    json_object_set_new(o, "max_concurrent", json_integer(k->max_concurrent));
    json_object_set_new(o, "budget_usd", json_real(k->budget_usd));
    json_object_set_new(o, "budget_period", json_string(limit_period_name(k->budget_period)));
    json_object_set_new(o, "expires_at", json_integer(k->expires_at));
    json_object_set_new(o, "revoked_at", json_integer(k->revoked_at));
    json_object_set_new(o, "created_at", json_integer(k->created_at));
    json_object_set_new(o, "last4", json_string(k->last4));
    json_object_set_new(o, "metadata", json_deep_copy(k->metadata));
    return o;
}

json_t *key_info_json(const key_info *k) {
    json_t *o = info_fields(k);
    json_object_set_new(o, "id", json_string(k->id));
    json_object_set_new(o, "object", json_string("api_key"));
    json_object_set_new(o, "owner", json_string(k->owner));
    return o;
}

/* ------------------------------------------------------------ validation */

static bs_status check_strings(const char *field, const char *const *v, int n, bs_error *err) {
    if (n < 0) return bs_fail(err, BS_EINVAL, "%s: negative count %d", field, n);
    for (int i = 0; i < n; i++)
        if (!v || !v[i] || !*v[i] || strlen(v[i]) > NAME_MAX_LEN)
            return bs_fail(err, BS_EINVAL, "%s[%d]: must be a name of 1 to %d bytes", field, i, NAME_MAX_LEN);
    return BS_OK;
}

static bs_status check_limit(const char *field, int64_t v, bs_error *err) {
    if (v < 0) return bs_fail(err, BS_EINVAL, "%s: must be >= 0 (0 = unlimited), got %lld", field, (long long)v);
    return BS_OK;
}

/* Validate the `fields` parts of s and write them into k (which keeps its
 * other parts).  Nothing in k changes unless all of them are valid. */
static bs_status apply_spec(key_info *k, const key_spec *s, unsigned fields, bs_error *err) {
    bs_status st;
    unsigned scopes = 0;
    if (fields & KEY_UPDATE_NAME && s->name && strlen(s->name) > NAME_MAX_LEN)
        return bs_fail(err, BS_EINVAL, "name: longer than %d bytes", NAME_MAX_LEN);
    if (fields & KEY_UPDATE_SCOPES) {
        if (s->n_scopes < 0) return bs_fail(err, BS_EINVAL, "scopes: negative count %d", s->n_scopes);
        for (int i = 0; i < s->n_scopes; i++) {
            size_t j = 0;
            while (j < N_SCOPES && !(s->scopes[i] && strcmp(s->scopes[i], SCOPES[j].name) == 0)) j++;
            if (j == N_SCOPES)
                return bs_fail(err, BS_EINVAL, "scopes[%d]: unknown scope \"%s\" (known: inference, files, fine-tune, admin)",
                               i, s->scopes[i] ? s->scopes[i] : "");
            scopes |= SCOPES[j].bit;
        }
        if (!scopes) scopes = KEY_SCOPE_INFERENCE;
    }
    if ((fields & KEY_UPDATE_MODELS && (st = check_strings("models", s->models, s->n_models, err))) ||
        (fields & KEY_UPDATE_ROUTES && (st = check_strings("routes", s->routes, s->n_routes, err))))
        return st;
    if (fields & KEY_UPDATE_LIMITS &&
        ((st = check_limit("rpm", s->rpm, err)) || (st = check_limit("tpm", s->tpm, err)) ||
         (st = check_limit("max_concurrent", s->max_concurrent, err))))
        return st;
    if (fields & KEY_UPDATE_BUDGET) {
        if (!isfinite(s->budget_usd) || s->budget_usd < 0)
            return bs_fail(err, BS_EINVAL, "budget_usd: must be a number >= 0 (0 = none), got %g", s->budget_usd);
        if (s->budget_period != LIMIT_PERIOD_DAY && s->budget_period != LIMIT_PERIOD_MONTH)
            return bs_fail(err, BS_EINVAL, "budget_period: must be day or month");
    }
    if (fields & KEY_UPDATE_EXPIRY && (st = check_limit("expires_at", s->expires_at, err))) return st;
    if (fields & KEY_UPDATE_METADATA && s->metadata && !json_is_object(s->metadata))
        return bs_fail(err, BS_EINVAL, "metadata: must be an object");

    /* All valid: build the new parts, then swap them in. */
    char *name = NULL, **models = NULL, **routes = NULL;
    json_t *meta = NULL;
    int oom = 0;
    if (fields & KEY_UPDATE_NAME) oom |= !(name = strdup(s->name ? s->name : ""));
    if (fields & KEY_UPDATE_MODELS) oom |= !(models = copy_strings(s->models, s->n_models));
    if (fields & KEY_UPDATE_ROUTES) oom |= !(routes = copy_strings(s->routes, s->n_routes));
    if (fields & KEY_UPDATE_METADATA) oom |= !(meta = s->metadata ? json_deep_copy(s->metadata) : json_object());
    if (oom) {
        free(name);
        free_strings(models, models ? s->n_models : 0);
        free_strings(routes, routes ? s->n_routes : 0);
        if (meta) json_decref(meta);
        return bs_fail(err, BS_ENOMEM, "keys: out of memory");
    }
    if (fields & KEY_UPDATE_NAME) {
        free(k->name);
        k->name = name;
    }
    if (fields & KEY_UPDATE_SCOPES) k->scopes = scopes;
    if (fields & KEY_UPDATE_MODELS) {
        free_strings(k->models, k->n_models);
        k->models = models;
        k->n_models = s->n_models;
    }
    if (fields & KEY_UPDATE_ROUTES) {
        free_strings(k->routes, k->n_routes);
        k->routes = routes;
        k->n_routes = s->n_routes;
    }
    if (fields & KEY_UPDATE_LIMITS) {
        k->rpm = s->rpm;
        k->tpm = s->tpm;
        k->max_concurrent = s->max_concurrent;
    }
    if (fields & KEY_UPDATE_BUDGET) {
        k->budget_usd = s->budget_usd;
        k->budget_period = s->budget_period;
    }
    if (fields & KEY_UPDATE_EXPIRY) k->expires_at = s->expires_at;
    if (fields & KEY_UPDATE_METADATA) {
        if (k->metadata) json_decref(k->metadata);
        k->metadata = meta;
    }
    return BS_OK;
}

#define KEY_UPDATE_ALL 0xffu

/* ------------------------------------------------------------ records and documents */

static void rec_release(key_rec *r) {
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        key_info_clear(&r->info);
        free(r);
    }
}

static key_rec *rec_new(void) {
    key_rec *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    atomic_init(&r->refs, 1);
    r->info.name = strdup("");
    r->info.owner = strdup("");
    r->info.models = calloc(1, sizeof(char *));
    r->info.routes = calloc(1, sizeof(char *));
    r->info.metadata = json_object();
    r->info.scopes = KEY_SCOPE_INFERENCE;
    if (!r->info.name || !r->info.owner || !r->info.models || !r->info.routes || !r->info.metadata) {
        rec_release(r);
        return NULL;
    }
    return r;
}

static char *rec_body(const key_rec *r) {
    json_t *o = info_fields(&r->info);
    json_object_set_new(o, "salt", json_string(r->salt));
    json_object_set_new(o, "hash", json_string(r->hash));
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

/* A JSON array of strings as a borrowed C array (free the array only). */
static bs_status body_strings(const char *id, json_t *body, const char *field, const char ***out, int *n,
                              bs_error *err) {
    json_t *a = json_object_get(body, field);
    *out = NULL;
    *n = 0;
    if (!a) return BS_OK;
    if (!json_is_array(a)) return bs_fail(err, BS_EFORMAT, "api_key %s: %s: expected an array", id, field);
    *out = calloc(json_array_size(a) + 1, sizeof **out);
    if (!*out) return bs_fail(err, BS_ENOMEM, "keys: out of memory");
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s) return bs_fail(err, BS_EFORMAT, "api_key %s: %s[%zu]: expected a string", id, field, i);
        (*out)[(*n)++] = s;
    }
    return BS_OK;
}

static bs_status body_int(const char *id, json_t *body, const char *field, int64_t *out, bs_error *err) {
    json_t *v = json_object_get(body, field);
    if (!v) *out = 0;
    else if (json_is_integer(v)) *out = json_integer_value(v);
    else return bs_fail(err, BS_EFORMAT, "api_key %s: %s: expected an integer", id, field);
    return BS_OK;
}

static bs_status body_hex(const char *id, json_t *body, const char *field, char *out, size_t len, bs_error *err) {
    const char *s = json_string_value(json_object_get(body, field));
    if (!s || strlen(s) != len || strspn(s, "0123456789abcdef") != len)
        return bs_fail(err, BS_EFORMAT, "api_key %s: %s: expected %zu hex digits", id, field, len);
    memcpy(out, s, len + 1);
    return BS_OK;
}

/* Parse a stored document, checking its body with the rules of apply_spec. */
static bs_status rec_from_doc(const store_doc *d, key_rec **out, bs_error *err) {
    *out = NULL;
    if (strlen(d->id) != 4 + KEY_ID_HEX || strncmp(d->id, "key-", 4) != 0)
        return bs_fail(err, BS_EFORMAT, "api_key %s: id is not key-<%d hex>", d->id, KEY_ID_HEX);
    json_error_t je;
    json_t *body = json_loads(d->body, 0, &je);
    if (!json_is_object(body)) {
        json_decref(body);
        return bs_fail(err, BS_EFORMAT, "api_key %s: body is not a JSON object", d->id);
    }
    key_rec *r = rec_new();
    key_spec s = {0};
    bs_status st = r ? BS_OK : bs_fail(err, BS_ENOMEM, "keys: out of memory");
    const char *period = json_string_value(json_object_get(body, "budget_period"));
    const char *last4 = json_string_value(json_object_get(body, "last4"));
    json_t *budget = json_object_get(body, "budget_usd");
    s.name = json_string_value(json_object_get(body, "name"));
    s.owner = d->owner;
    s.metadata = json_object_get(body, "metadata");
    s.budget_usd = budget ? json_number_value(budget) : 0;
    if (!st && budget && !json_is_number(budget))
        st = bs_fail(err, BS_EFORMAT, "api_key %s: budget_usd: expected a number", d->id);
    if (!st) st = body_strings(d->id, body, "scopes", (const char ***)&s.scopes, &s.n_scopes, err);
    if (!st) st = body_strings(d->id, body, "models", (const char ***)&s.models, &s.n_models, err);
    if (!st) st = body_strings(d->id, body, "routes", (const char ***)&s.routes, &s.n_routes, err);
    if (!st) st = body_int(d->id, body, "rpm", &s.rpm, err);
    if (!st) st = body_int(d->id, body, "tpm", &s.tpm, err);
    if (!st) st = body_int(d->id, body, "max_concurrent", &s.max_concurrent, err);
    if (!st) st = body_int(d->id, body, "expires_at", &s.expires_at, err);
    if (!st) st = body_int(d->id, body, "revoked_at", &r->info.revoked_at, err);
    if (!st) st = limit_period_parse(period ? period : "day", &s.budget_period, err);
    if (!st) st = body_hex(d->id, body, "salt", r->salt, 2 * SALT_BYTES, err);
    if (!st) st = body_hex(d->id, body, "hash", r->hash, SHA256_HEX_LEN, err);
    if (!st && (!last4 || strlen(last4) != 4))
        st = bs_fail(err, BS_EFORMAT, "api_key %s: last4: expected 4 characters", d->id);
    if (!st && (st = apply_spec(&r->info, &s, KEY_UPDATE_ALL, err))) bs_wrap(err, "api_key %s", d->id);
    if (!st) {
        free(r->info.owner);
        if (!(r->info.owner = strdup(d->owner ? d->owner : ""))) st = bs_fail(err, BS_ENOMEM, "keys: out of memory");
    }
    free((void *)s.scopes);
    free((void *)s.models);
    free((void *)s.routes);
    if (!st) {
        snprintf(r->info.id, sizeof r->info.id, "%s", d->id);
        memcpy(r->info.last4, last4, 5);
        r->info.created_at = d->created_at;
        r->updated_at = d->updated_at;
        *out = r;
    } else {
        rec_release(r);
    }
    json_decref(body);
    return st;
}

/* ------------------------------------------------------------ the registry */

static int rec_cmp(const void *a, const void *b) {
    return strcmp((*(key_rec *const *)a)->info.id, (*(key_rec *const *)b)->info.id);
}

/* Index of id in reg->recs, or where it would go (as ~index). */
static long reg_find(const keys_registry *reg, const char *id) {
    size_t lo = 0, hi = reg->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(reg->recs[mid]->info.id, id);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return ~(long)lo;
}

/* A counted reference to id's record, or NULL. */
static key_rec *reg_get(keys_registry *reg, const char *id) {
    pthread_rwlock_rdlock(&reg->lock);
    long i = reg_find(reg, id);
    key_rec *r = i >= 0 ? reg->recs[i] : NULL;
    if (r) atomic_fetch_add(&r->refs, 1);
    pthread_rwlock_unlock(&reg->lock);
    return r;
}

/* Install r (the registry takes the caller's reference), replacing the
 * record with its id unless that one is newer (a refresh got there first). */
static bs_status reg_put(keys_registry *reg, key_rec *r, bs_error *err) {
    pthread_rwlock_wrlock(&reg->lock);
    long i = reg_find(reg, r->info.id);
    bs_status st = BS_OK;
    if (i >= 0) {
        key_rec *old = reg->recs[i];
        if (old->updated_at > r->updated_at) {
            old = r;
        } else {
            reg->recs[i] = r;
        }
        rec_release(old);
    } else {
        key_rec **grown = realloc(reg->recs, (reg->n + 1) * sizeof *grown);
        if (!grown) {
            rec_release(r);
            st = bs_fail(err, BS_ENOMEM, "keys: out of memory");
        } else {
            size_t at = (size_t)~i;
            memmove(grown + at + 1, grown + at, (reg->n - at) * sizeof *grown);
            grown[at] = r;
            reg->recs = grown;
            reg->n++;
        }
    }
    pthread_rwlock_unlock(&reg->lock);
    return st;
}

bs_status keys_refresh(keys_registry *reg, bs_error *err) {
    store_doc *docs = NULL;
    size_t n = 0;
    int has_more = 0;
    store_page page = {0};
    bs_status st = store_doc_list(reg->store, DOC_KIND, &page, &docs, &n, &has_more, err);
    if (st) return bs_wrap(err, "loading API keys");
    key_rec **recs = calloc(n + 1, sizeof *recs);
    size_t m = 0;
    if (!recs) st = bs_fail(err, BS_ENOMEM, "keys: out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        key_rec *old = reg_get(reg, docs[i].id);
        if (old && old->updated_at == docs[i].updated_at) {
            recs[m++] = old; /* unchanged: keep the parsed record */
            continue;
        }
        rec_release(old);
        bs_error perr = {0};
        bs_status ps = rec_from_doc(&docs[i], &recs[m], &perr);
        if (ps == BS_ENOMEM) st = bs_fail(err, ps, "%s", perr.msg);
        /* One damaged document must not lock every other key out. */
        else if (ps) bs_log_warn("keys: skipping %s", perr.msg);
        else m++;
    }
    store_docs_free(docs, n);
    if (st) {
        for (size_t i = 0; i < m; i++) rec_release(recs[i]);
        free(recs);
        return st;
    }
    qsort(recs, m, sizeof *recs, rec_cmp);
    pthread_rwlock_wrlock(&reg->lock);
    key_rec **old = reg->recs;
    size_t old_n = reg->n;
    reg->recs = recs;
    reg->n = m;
    pthread_rwlock_unlock(&reg->lock);
    for (size_t i = 0; i < old_n; i++) rec_release(old[i]);
    free(old);
    return BS_OK;
}

bs_status keys_open(bs_store *store, keys_registry **out, bs_error *err) {
    *out = NULL;
    keys_registry *reg = calloc(1, sizeof *reg);
    if (!reg) return bs_fail(err, BS_ENOMEM, "keys: out of memory");
    reg->store = store;
    pthread_rwlock_init(&reg->lock, NULL);
    bs_status st = keys_refresh(reg, err);
    if (st) {
        keys_close(reg);
        return st;
    }
    *out = reg;
    return BS_OK;
}

void keys_close(keys_registry *reg) {
    if (!reg) return;
    for (size_t i = 0; i < reg->n; i++) rec_release(reg->recs[i]);
    free(reg->recs);
    pthread_rwlock_destroy(&reg->lock);
    free(reg);
}

size_t keys_count(keys_registry *reg) {
    pthread_rwlock_rdlock(&reg->lock);
    size_t n = reg->n;
    pthread_rwlock_unlock(&reg->lock);
    return n;
}

/* ------------------------------------------------------------ secrets */

static bs_status random_bytes(unsigned char *b, size_t n, bs_error *err) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r <= 0) return bs_fail(err, BS_EIO, "keys: getrandom failed");
        got += (size_t)r;
    }
    return BS_OK;
}

static void to_hex(const unsigned char *b, size_t n, char *out) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = 0;
}

static void secret_hash(const char *salt_hex, const char *secret, char out[SHA256_HEX_LEN + 1]) {
    unsigned char salt[SALT_BYTES];
    for (int i = 0; i < SALT_BYTES; i++) {
        unsigned hi = (unsigned)(salt_hex[2 * i] <= '9' ? salt_hex[2 * i] - '0' : salt_hex[2 * i] - 'a' + 10);
        unsigned lo = (unsigned)(salt_hex[2 * i + 1] <= '9' ? salt_hex[2 * i + 1] - '0' : salt_hex[2 * i + 1] - 'a' + 10);
        salt[i] = (unsigned char)(hi << 4 | lo);
    }
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, salt, sizeof salt);
    sha256_update(&c, secret, strlen(secret));
    sha256_final_hex(&c, out);
}

int keys_equal_ct(const void *a, const void *b, size_t n) {
    const volatile unsigned char *x = a, *y = b;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++) diff |= x[i] ^ y[i];
    return diff == 0;
}

/* 32 base62 characters, uniform: bytes >= 248 (4 * 62) are drawn again. */
static bs_status random_base62(char *out, size_t n, bs_error *err) {
    size_t got = 0;
    while (got < n) {
        unsigned char b[64];
        bs_status st = random_bytes(b, sizeof b, err);
        if (st) return st;
        for (size_t i = 0; i < sizeof b && got < n; i++)
            if (b[i] < 248) out[got++] = BASE62[b[i] % 62];
    }
    out[n] = 0;
    return BS_OK;
}

/* ------------------------------------------------------------ create / get / list */

static int64_t now_s(void) { return (int64_t)time(NULL); }

bs_status keys_create(keys_registry *reg, const key_spec *spec, char **secret_out, key_info *out, bs_error *err) {
    *secret_out = NULL;
    memset(out, 0, sizeof *out);
    key_rec *r = rec_new();
    if (!r) return bs_fail(err, BS_ENOMEM, "keys: out of memory");
    bs_status st = apply_spec(&r->info, spec, KEY_UPDATE_ALL, err);
    if (!st && spec->owner) {
        free(r->info.owner);
        if (!(r->info.owner = strdup(spec->owner))) st = bs_fail(err, BS_ENOMEM, "keys: out of memory");
    }
    unsigned char idb[KEY_ID_HEX / 2], salt[SALT_BYTES];
    char idhex[KEY_ID_HEX + 1], rnd[SECRET_RANDOM + 1], *secret = malloc(SECRET_LEN + 1);
    if (!st && !secret) st = bs_fail(err, BS_ENOMEM, "keys: out of memory");
    if (!st) st = random_bytes(idb, sizeof idb, err);
    if (!st) st = random_bytes(salt, sizeof salt, err);
    if (!st) st = random_base62(rnd, SECRET_RANDOM, err);
    char *body = NULL;
    if (!st) {
        to_hex(idb, sizeof idb, idhex);
        to_hex(salt, sizeof salt, r->salt);
        snprintf(secret, SECRET_LEN + 1, SECRET_PREFIX "%s-%s", idhex, rnd);
        snprintf(r->info.id, sizeof r->info.id, "key-%s", idhex);
        memcpy(r->info.last4, secret + SECRET_LEN - 4, 5);
        secret_hash(r->salt, secret, r->hash);
        r->info.created_at = r->updated_at = now_s();
        if (!(body = rec_body(r))) st = bs_fail(err, BS_ENOMEM, "keys: out of memory");
    }
    if (!st) {
        store_doc d = {.kind = DOC_KIND, .id = r->info.id, .owner = r->info.owner,
                       .created_at = r->info.created_at, .updated_at = r->updated_at, .body = body};
        if ((st = store_doc_insert(reg->store, &d, err))) bs_wrap(err, "storing API key");
    }
    free(body);
    if (!st) st = info_copy(out, &r->info, err);
    if (st) {
        if (secret) memset(secret, 0, SECRET_LEN);
        free(secret);
        rec_release(r);
        return st;
    }
    *secret_out = secret;
    return reg_put(reg, r, err);
}

bs_status keys_get(keys_registry *reg, const char *id, key_info *out, bs_error *err) {
    memset(out, 0, sizeof *out);
    key_rec *r = id ? reg_get(reg, id) : NULL;
    if (!r) return bs_fail(err, BS_ENOTFOUND, "key_id: no API key \"%s\"", id ? id : "");
    bs_status st = info_copy(out, &r->info, err);
    rec_release(r);
    return st;
}

bs_status keys_list(keys_registry *reg, const char *owner, key_info **items, size_t *n, bs_error *err) {
    *items = NULL;
    *n = 0;
    pthread_rwlock_rdlock(&reg->lock);
    key_info *out = calloc(reg->n + 1, sizeof *out);
    size_t m = 0;
    bs_status st = out ? BS_OK : bs_fail(err, BS_ENOMEM, "keys: out of memory");
    for (size_t i = 0; !st && i < reg->n; i++) {
        if (owner && strcmp(owner, reg->recs[i]->info.owner) != 0) continue;
        if (!(st = info_copy(&out[m], &reg->recs[i]->info, err))) m++;
    }
    pthread_rwlock_unlock(&reg->lock);
    if (st) {
        key_infos_free(out, m);
        return st;
    }
    *items = out;
    *n = m;
    return BS_OK;
}

/* ------------------------------------------------------------ update / revoke */

typedef bs_status (*key_mutation)(key_rec *r, const void *ctx, bs_error *err);

/* Read the stored document, change it, write it back only if no one else
 * wrote it meanwhile (compare-and-set on updated_at), retrying otherwise. */
static bs_status modify(keys_registry *reg, const char *id, key_mutation fn, const void *ctx, key_info *out,
                        bs_error *err) {
    memset(out, 0, sizeof *out);
    if (!id) return bs_fail(err, BS_EINVAL, "key_id: required");
    for (int attempt = 0; attempt < CAS_TRIES; attempt++) {
        store_doc d = {0};
        bs_status st = store_doc_get(reg->store, DOC_KIND, id, &d, err);
        if (st == BS_ENOTFOUND) return bs_fail(err, BS_ENOTFOUND, "key_id: no API key \"%s\"", id);
        if (st) return st;
        key_rec *r;
        st = rec_from_doc(&d, &r, err);
        int64_t expect = d.updated_at;
        store_doc_clear(&d);
        if (st) return st;
        if ((st = fn(r, ctx, err))) {
            rec_release(r);
            return st;
        }
        /* Strictly increasing, so the compare-and-set sees every write. */
        r->updated_at = now_s() > expect ? now_s() : expect + 1;
        char *body = rec_body(r);
        store_doc nd = {.kind = DOC_KIND, .id = r->info.id, .owner = r->info.owner,
                        .created_at = r->info.created_at, .updated_at = r->updated_at, .body = body};
        st = body ? store_doc_update(reg->store, &nd, expect, err) : bs_fail(err, BS_ENOMEM, "keys: out of memory");
        free(body);
        if (st == BS_EBUSY) {
            rec_release(r);
            continue;
        }
        if (!st) st = info_copy(out, &r->info, err);
        if (st) {
            rec_release(r);
            return st;
        }
        return reg_put(reg, r, err);
    }
    return bs_fail(err, BS_EBUSY, "key %s: changed concurrently %d times; try again", id, CAS_TRIES);
}

typedef struct update_ctx {
    const key_spec *spec;
    unsigned fields;
} update_ctx;

static bs_status do_update(key_rec *r, const void *ctx, bs_error *err) {
    const update_ctx *u = ctx;
    return apply_spec(&r->info, u->spec, u->fields, err);
}

static bs_status do_revoke(key_rec *r, const void *ctx, bs_error *err) {
    (void)ctx;
    (void)err;
    if (!r->info.revoked_at) r->info.revoked_at = now_s();
    return BS_OK;
}

bs_status keys_update(keys_registry *reg, const char *id, const key_spec *spec, unsigned fields, key_info *out,
                      bs_error *err) {
    update_ctx u = {spec, fields & KEY_UPDATE_ALL};
    return modify(reg, id, do_update, &u, out, err);
}

bs_status keys_revoke(keys_registry *reg, const char *id, key_info *out, bs_error *err) {
    return modify(reg, id, do_revoke, NULL, out, err);
}

/* ------------------------------------------------------------ authentication */

const char *key_auth_message(key_auth r) {
    switch (r) {
    case KEY_AUTH_OK: return "ok";
    case KEY_AUTH_MISSING: return "missing API key: send Authorization: Bearer sk-basalt-…";
    case KEY_AUTH_MALFORMED: return "malformed API key: expected Authorization: Bearer sk-basalt-…";
    case KEY_AUTH_UNKNOWN: return "invalid API key";
    case KEY_AUTH_REVOKED: return "API key revoked";
    case KEY_AUTH_EXPIRED: return "API key expired";
    }
    return "invalid API key";
}

void key_view_release(key_view *v) {
    if (!v) return;
    rec_release(v->rec_);
    v->rec_ = NULL;
    v->key = NULL;
}

/* The token of "Bearer <token>" (scheme case-insensitive), checked for the
 * secret's exact shape; its length in *len. */
static const char *parse_bearer(const char *h, size_t *len) {
    while (*h == ' ' || *h == '\t') h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return NULL;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t' || h[n - 1] == '\r' || h[n - 1] == '\n')) n--;
    const size_t pre = sizeof SECRET_PREFIX - 1;
    if (n != SECRET_LEN || strncmp(h, SECRET_PREFIX, pre) != 0 || h[pre + KEY_ID_HEX] != '-') return NULL;
    for (size_t i = pre; i < pre + KEY_ID_HEX; i++)
        if (!strchr("0123456789abcdef", h[i])) return NULL;
    for (size_t i = pre + KEY_ID_HEX + 1; i < n; i++)
        if (!strchr(BASE62, h[i])) return NULL;
    *len = n;
    return h;
}

/* r (a reference) as a view when the key is live; else released. */
static key_auth view_of(key_rec *r, int64_t now, key_view *out) {
    key_auth res = r->info.revoked_at                              ? KEY_AUTH_REVOKED
                   : r->info.expires_at && now >= r->info.expires_at ? KEY_AUTH_EXPIRED
                                                                     : KEY_AUTH_OK;
    if (res != KEY_AUTH_OK) {
        rec_release(r);
        return res;
    }
    out->key = &r->info;
    out->rec_ = r;
    return KEY_AUTH_OK;
}

key_auth keys_authenticate(keys_registry *reg, const char *authorization, int64_t now, key_view *out) {
    out->key = NULL;
    out->rec_ = NULL;
    if (!authorization || !*authorization) return KEY_AUTH_MISSING;
    size_t len;
    const char *tok = parse_bearer(authorization, &len);
    if (!tok) return KEY_AUTH_MALFORMED;
    char id[KEY_ID_MAX], secret[SECRET_LEN + 1];
    memcpy(secret, tok, len);
    secret[len] = 0;
    snprintf(id, sizeof id, "key-%.*s", KEY_ID_HEX, tok + sizeof SECRET_PREFIX - 1);
    key_rec *r = reg_get(reg, id);
    if (!r) return KEY_AUTH_UNKNOWN;
    char hash[SHA256_HEX_LEN + 1];
    secret_hash(r->salt, secret, hash);
    memset(secret, 0, sizeof secret);
    if (!keys_equal_ct(hash, r->hash, SHA256_HEX_LEN)) {
        rec_release(r);
        return KEY_AUTH_UNKNOWN;
    }
    return view_of(r, now, out);
}

key_auth keys_view_by_id(keys_registry *reg, const char *id, int64_t now, key_view *out) {
    out->key = NULL;
    out->rec_ = NULL;
    key_rec *r = id && *id ? reg_get(reg, id) : NULL;
    return r ? view_of(r, now, out) : KEY_AUTH_UNKNOWN;
}

/* ------------------------------------------------------------ permissions */

static int listed(char **v, int n, const char *name) {
    if (n == 0) return 1;
    for (int i = 0; name && i < n; i++)
        if (strcmp(v[i], name) == 0) return 1;
    return 0;
}

int key_allows_model(const key_info *k, const char *model, const char *route) {
    return route ? listed(k->routes, k->n_routes, route) : listed(k->models, k->n_models, model);
}

int key_allows_scope(const key_info *k, key_scope scope) {
    return (k->scopes & KEY_SCOPE_ADMIN) || (k->scopes & scope) == (unsigned)scope;
}
