/* Tests for gateway/keys: the secret's format and that only its salted hash
 * is stored; each authentication outcome (ok, missing, malformed, unknown,
 * wrong secret, revoked, expired) with a driven clock; validation messages
 * naming the field; updates and revocations seen by a second registry on
 * the same store after keys_refresh; permissions; the constant-time
 * compare. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../support/test.h"
#include "gateway/keys.h"

static char *make_dir(void) {
    char tmpl[] = "/tmp/basalt_keys_XXXXXX";
    return strdup(mkdtemp(tmpl));
}

static void remove_dir(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

typedef struct fixture {
    char *dir;
    bs_store *store;
    keys_registry *reg;
} fixture;

static int setup(fixture *f) {
    bs_error err = {0};
    f->dir = make_dir();
    f->reg = NULL;
    if (store_open(f->dir, &f->store, &err) || keys_open(f->store, &f->reg, &err)) {
        fprintf(stderr, "  setup: %s\n", err.msg);
        test_failed_ = 1;
        return 0;
    }
    return 1;
}

static void teardown(fixture *f) {
    keys_close(f->reg);
    store_close(f->store);
    remove_dir(f->dir);
    free(f->dir);
}

static char *bearer(const char *secret) {
    char *h = malloc(strlen(secret) + 8);
    sprintf(h, "Bearer %s", secret);
    return h;
}

static void test_create_and_authenticate(void) {
    fixture f;
    if (!setup(&f)) return;
    bs_error err = {0};
    CHECK_INT(keys_count(f.reg), 0);
    const char *scopes[] = {"inference", "files"}, *models[] = {"tiny"};
    key_spec spec = {.name = "ci", .scopes = scopes, .n_scopes = 2, .models = models, .n_models = 1, .rpm = 60,
                     .tpm = 10000, .max_concurrent = 4, .budget_usd = 2.5, .budget_period = LIMIT_PERIOD_MONTH};
    char *secret = NULL;
    key_info k;
    CHECK_OK(keys_create(f.reg, &spec, &secret, &k, &err), &err);
    CHECK_INT(keys_count(f.reg), 1);
    /* sk-basalt-<12 hex>-<32 base62>, naming the key id. */
    CHECK_INT(strlen(secret), 10 + 12 + 1 + 32);
    CHECK(strncmp(secret, "sk-basalt-", 10) == 0);
    CHECK(strspn(secret + 10, "0123456789abcdef") == 12);
    CHECK(secret[22] == '-');
    CHECK(strspn(secret + 23, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == 32);
    CHECK_INT(strlen(k.id), 16);
    CHECK(strncmp(k.id, "key-", 4) == 0 && strncmp(k.id + 4, secret + 10, 12) == 0);
    CHECK_STR(k.last4, secret + strlen(secret) - 4);
    CHECK_STR(k.name, "ci");
    CHECK_INT(k.scopes, KEY_SCOPE_INFERENCE | KEY_SCOPE_FILES);
    CHECK_INT(k.rpm, 60);
    CHECK_INT(k.budget_period, LIMIT_PERIOD_MONTH);

    /* The stored document holds a salt and a hash, never the secret. */
    store_doc d;
    CHECK_OK(store_doc_get(f.store, "api_key", k.id, &d, &err), &err);
    CHECK(strstr(d.body, secret) == NULL);
    CHECK(strstr(d.body, secret + 23) == NULL);
    json_t *body = json_loads(d.body, 0, NULL);
    CHECK_INT(strlen(json_string_value(json_object_get(body, "salt"))), 32);
    CHECK_INT(strlen(json_string_value(json_object_get(body, "hash"))), 64);
    CHECK_STR(json_string_value(json_object_get(body, "budget_period")), "month");
    json_decref(body);
    store_doc_clear(&d);

    /* The admin object: last4, no salt, hash or secret. */
    json_t *o = key_info_json(&k);
    CHECK_STR(json_string_value(json_object_get(o, "id")), k.id);
    CHECK_STR(json_string_value(json_object_get(o, "last4")), k.last4);
    CHECK(!json_object_get(o, "salt") && !json_object_get(o, "hash") && !json_object_get(o, "secret"));
    CHECK_STR(json_string_value(json_array_get(json_object_get(o, "scopes"), 1)), "files");
    char *text = json_dumps(o, 0);
    CHECK(strstr(text, secret + 23) == NULL);
    free(text);
    json_decref(o);

    char *h = bearer(secret);
    key_view v;
    CHECK_INT(keys_authenticate(f.reg, h, time(NULL), &v), KEY_AUTH_OK);
    CHECK_STR(v.key->id, k.id);
    CHECK_INT(v.key->tpm, 10000);
    key_view_release(&v);
    /* Scheme case and surrounding blanks are tolerated. */
    char loose[128];
    snprintf(loose, sizeof loose, "  bearer   %s \r\n", secret);
    CHECK_INT(keys_authenticate(f.reg, loose, time(NULL), &v), KEY_AUTH_OK);
    key_view_release(&v);
    free(h);
    free(secret);
    key_info_clear(&k);
    teardown(&f);
}

static void test_auth_failures(void) {
    fixture f;
    if (!setup(&f)) return;
    bs_error err = {0};
    int64_t now = time(NULL);
    key_spec spec = {.name = "short-lived", .expires_at = now + 100};
    char *secret;
    key_info k;
    CHECK_OK(keys_create(f.reg, &spec, &secret, &k, &err), &err);
    char *h = bearer(secret);
    key_view v;
    CHECK_INT(keys_authenticate(f.reg, NULL, now, &v), KEY_AUTH_MISSING);
    CHECK_INT(keys_authenticate(f.reg, "", now, &v), KEY_AUTH_MISSING);
    CHECK_INT(keys_authenticate(f.reg, "Basic dXNlcjpwYXNz", now, &v), KEY_AUTH_MALFORMED);
    CHECK_INT(keys_authenticate(f.reg, "Bearer sk-basalt-123", now, &v), KEY_AUTH_MALFORMED);
    CHECK_INT(keys_authenticate(f.reg, secret, now, &v), KEY_AUTH_MALFORMED); /* no scheme */
    char bad[128];
    snprintf(bad, sizeof bad, "Bearer %s", secret);
    bad[7 + 12] = 'G'; /* not a hex digit in the id */
    CHECK_INT(keys_authenticate(f.reg, bad, now, &v), KEY_AUTH_MALFORMED);
    snprintf(bad, sizeof bad, "Bearer %s", secret);
    bad[strlen(bad) - 1] = '!';
    CHECK_INT(keys_authenticate(f.reg, bad, now, &v), KEY_AUTH_MALFORMED);

    /* Unknown id, well formed. */
    snprintf(bad, sizeof bad, "Bearer sk-basalt-000000000000-%s", secret + 23);
    CHECK_INT(keys_authenticate(f.reg, bad, now, &v), KEY_AUTH_UNKNOWN);
    CHECK(v.key == NULL);
    /* The right id with a wrong secret. */
    snprintf(bad, sizeof bad, "Bearer %s", secret);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == 'a' ? 'b' : 'a';
    CHECK_INT(keys_authenticate(f.reg, bad, now, &v), KEY_AUTH_UNKNOWN);

    /* Expiry, with the clock driven. */
    CHECK_INT(keys_authenticate(f.reg, h, now + 99, &v), KEY_AUTH_OK);
    key_view_release(&v);
    CHECK_INT(keys_authenticate(f.reg, h, now + 100, &v), KEY_AUTH_EXPIRED);

    /* Revoked: reported only to the holder of the secret. */
    key_info r;
    CHECK_OK(keys_revoke(f.reg, k.id, &r, &err), &err);
    CHECK(r.revoked_at >= now);
    CHECK_INT(keys_authenticate(f.reg, h, now, &v), KEY_AUTH_REVOKED);
    CHECK_INT(keys_authenticate(f.reg, bad, now, &v), KEY_AUTH_UNKNOWN);
    CHECK_INT(keys_count(f.reg), 1); /* revoked keys still count: the server stays closed */

    /* No message echoes anything of the secret. */
    for (int a = KEY_AUTH_OK; a <= KEY_AUTH_EXPIRED; a++) CHECK(strstr(key_auth_message((key_auth)a), secret + 23) == NULL);
    CHECK_STR(key_auth_message(KEY_AUTH_REVOKED), "API key revoked");

    key_info_clear(&r);
    key_info_clear(&k);
    free(h);
    free(secret);
    teardown(&f);
}

static void test_validation_names_field(void) {
    fixture f;
    if (!setup(&f)) return;
    bs_error err = {0};
    char *secret = NULL;
    key_info k;
    const char *scopes[] = {"inference", "files", "fine_tune"};
    key_spec spec = {.name = "x", .scopes = scopes, .n_scopes = 3};
    CHECK_INT(keys_create(f.reg, &spec, &secret, &k, &err), BS_EINVAL);
    CHECK_STR(err.msg, "scopes[2]: unknown scope \"fine_tune\" (known: inference, files, fine-tune, admin)");
    CHECK(secret == NULL);
    const char *models[] = {"tiny", ""};
    spec = (key_spec){.models = models, .n_models = 2};
    CHECK_INT(keys_create(f.reg, &spec, &secret, &k, &err), BS_EINVAL);
    CHECK(strncmp(err.msg, "models[1]:", 10) == 0);
    spec = (key_spec){.tpm = -5};
    CHECK_INT(keys_create(f.reg, &spec, &secret, &k, &err), BS_EINVAL);
    CHECK(strncmp(err.msg, "tpm:", 4) == 0);
    spec = (key_spec){.budget_usd = -1};
    CHECK_INT(keys_create(f.reg, &spec, &secret, &k, &err), BS_EINVAL);
    CHECK(strncmp(err.msg, "budget_usd:", 11) == 0);
    json_t *arr = json_array();
    spec = (key_spec){.metadata = arr};
    CHECK_INT(keys_create(f.reg, &spec, &secret, &k, &err), BS_EINVAL);
    CHECK(strncmp(err.msg, "metadata:", 9) == 0);
    json_decref(arr);
    CHECK_INT(keys_count(f.reg), 0); /* nothing half-created */
    CHECK_INT(keys_update(f.reg, "key-000000000000", &spec, KEY_UPDATE_NAME, &k, &err), BS_ENOTFOUND);
    CHECK(strstr(err.msg, "key-000000000000") != NULL);
    teardown(&f);
}

/* One registry writes, another on the same store sees it after a refresh. */
static void test_two_registries(void) {
    fixture f;
    if (!setup(&f)) return;
    bs_error err = {0};
    keys_registry *other;
    CHECK_OK(keys_open(f.store, &other, &err), &err);
    int64_t now = time(NULL);
    json_t *meta = json_pack("{s:s}", "team", "ml");
    key_spec spec = {.name = "shared", .rpm = 10, .metadata = meta};
    char *secret;
    key_info k;
    CHECK_OK(keys_create(f.reg, &spec, &secret, &k, &err), &err);
    json_decref(meta);
    char *h = bearer(secret);
    key_view v, held;
    CHECK_INT(keys_authenticate(other, h, now, &v), KEY_AUTH_UNKNOWN);
    CHECK_OK(keys_refresh(other, &err), &err);
    CHECK_INT(keys_count(other), 1);
    CHECK_INT(keys_authenticate(other, h, now, &held), KEY_AUTH_OK);
    CHECK_STR(json_string_value(json_object_get(held.key->metadata, "team")), "ml");

    /* Update limits and scopes through the first; the second sees them after a refresh. */
    const char *scopes[] = {"admin"}, *routes[] = {"chat-ab"};
    key_spec upd = {.name = "renamed", .scopes = scopes, .n_scopes = 1, .routes = routes, .n_routes = 1, .rpm = 99,
                    .tpm = 5000, .max_concurrent = 2};
    key_info u;
    CHECK_OK(keys_update(f.reg, k.id, &upd, KEY_UPDATE_SCOPES | KEY_UPDATE_LIMITS | KEY_UPDATE_ROUTES, &u, &err), &err);
    CHECK_STR(u.name, "shared"); /* name not in the mask: unchanged */
    CHECK_INT(u.rpm, 99);
    CHECK_INT(u.scopes, KEY_SCOPE_ADMIN);
    key_info_clear(&u);
    CHECK_OK(keys_get(f.reg, k.id, &u, &err), &err);
    CHECK_INT(u.tpm, 5000);
    key_info_clear(&u);
    CHECK_OK(keys_get(other, k.id, &u, &err), &err);
    CHECK_INT(u.rpm, 10); /* not refreshed yet */
    key_info_clear(&u);
    CHECK_OK(keys_refresh(other, &err), &err);
    CHECK_INT(keys_authenticate(other, h, now, &v), KEY_AUTH_OK);
    CHECK_INT(v.key->rpm, 99);
    CHECK_INT(v.key->max_concurrent, 2);
    CHECK(key_allows_scope(v.key, KEY_SCOPE_FINE_TUNE));
    CHECK(key_allows_model(v.key, NULL, "chat-ab"));
    CHECK(!key_allows_model(v.key, NULL, "chat-other"));
    key_view_release(&v);
    /* A view taken before the refresh still reads the old record. */
    CHECK_INT(held.key->rpm, 10);
    key_view_release(&held);

    /* The second registry updates from a stale copy: the store's current
     * document is the base, so the first's changes survive. */
    upd = (key_spec){.name = "renamed"};
    CHECK_OK(keys_update(other, k.id, &upd, KEY_UPDATE_NAME, &u, &err), &err);
    CHECK_STR(u.name, "renamed");
    CHECK_INT(u.rpm, 99);
    key_info_clear(&u);

    /* Revoke through the first: the second keeps admitting until it refreshes. */
    CHECK_OK(keys_revoke(f.reg, k.id, &u, &err), &err);
    key_info_clear(&u);
    CHECK_INT(keys_authenticate(other, h, now, &v), KEY_AUTH_OK);
    key_view_release(&v);
    CHECK_OK(keys_refresh(other, &err), &err);
    CHECK_INT(keys_authenticate(other, h, now, &v), KEY_AUTH_REVOKED);
    CHECK_INT(keys_authenticate(f.reg, h, now, &v), KEY_AUTH_REVOKED);

    key_info *items;
    size_t n;
    CHECK_OK(keys_list(other, NULL, &items, &n, &err), &err);
    CHECK_INT(n, 1);
    CHECK_STR(items[0].name, "renamed");
    key_infos_free(items, n);
    CHECK_OK(keys_list(other, "someone-else", &items, &n, &err), &err);
    CHECK_INT(n, 0);
    key_infos_free(items, n);

    keys_close(other);
    key_info_clear(&k);
    free(h);
    free(secret);
    teardown(&f);
}

static void test_damaged_document_skipped(void) {
    fixture f;
    if (!setup(&f)) return;
    bs_error err = {0};
    key_spec spec = {.name = "good"};
    char *secret;
    key_info k;
    CHECK_OK(keys_create(f.reg, &spec, &secret, &k, &err), &err);
    store_doc bad = {.kind = "api_key", .id = "key-aaaaaaaaaaaa", .owner = "", .created_at = 1, .updated_at = 1,
                     .body = "{\"name\":\"x\",\"scopes\":[\"root\"]}"};
    CHECK_OK(store_doc_insert(f.store, &bad, &err), &err);
    CHECK_OK(keys_refresh(f.reg, &err), &err);
    CHECK_INT(keys_count(f.reg), 1);
    char *h = bearer(secret);
    key_view v;
    CHECK_INT(keys_authenticate(f.reg, h, time(NULL), &v), KEY_AUTH_OK);
    key_view_release(&v);
    free(h);
    free(secret);
    key_info_clear(&k);
    teardown(&f);
}

static void test_permissions(void) {
    char *models[] = {"tiny", "gpt-4o"};
    key_info k = {.scopes = KEY_SCOPE_INFERENCE, .models = models, .n_models = 2};
    CHECK(key_allows_model(&k, "tiny", NULL));
    CHECK(!key_allows_model(&k, "other", NULL));
    CHECK(key_allows_model(&k, NULL, "any-route")); /* no routes list: every route */
    CHECK(key_allows_scope(&k, KEY_SCOPE_INFERENCE));
    CHECK(!key_allows_scope(&k, KEY_SCOPE_FILES));
    CHECK(!key_allows_scope(&k, KEY_SCOPE_ADMIN));
    k.n_models = 0;
    CHECK(key_allows_model(&k, "anything", NULL));
}

static void test_constant_time_compare(void) {
    char a[65], b[65];
    memset(a, 'f', 64);
    memcpy(b, a, 64);
    CHECK(keys_equal_ct(a, b, 64));
    b[0] = 'e';
    CHECK(!keys_equal_ct(a, b, 64));
    b[0] = 'f';
    b[63] = '0';
    CHECK(!keys_equal_ct(a, b, 64));
    CHECK(keys_equal_ct(a, b, 63));
    CHECK(keys_equal_ct(a, b, 0));
}

int main(void) {
    RUN(test_create_and_authenticate);
    RUN(test_auth_failures);
    RUN(test_validation_names_field);
    RUN(test_two_registries);
    RUN(test_damaged_document_skipped);
    RUN(test_permissions);
    RUN(test_constant_time_compare);
    TEST_MAIN_END();
}
