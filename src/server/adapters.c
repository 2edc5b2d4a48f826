/* server/adapters.c — LoRA adapters served over the base models, as vLLM
 * does it: `--lora NAME=DIR[@BASE]` at start, POST /v1/load_lora_adapter
 * and /v1/unload_lora_adapter at run time, server_register_adapter for the
 * fine-tuning runner; clients pick one with "model": NAME and it appears in
 * /v1/models with parent (its base) and root (its directory).
 *
 * Each adapter is served through an srv_model that copies its base's
 * (scheduler, tokenizer, template...) and adds the adapter, so handlers treat
 * it as any model and requests for several adapters and the base share the
 * base's scheduler steps.  Lifetimes: the registry holds one reference to
 * each adapter; a lookup takes another for the request, held in its log
 * until the request ends (server.c on_done), and the scheduler holds its own
 * per engine request.  An unloaded entry moves to a retired list instead of
 * being freed, because a handler that found it may still read its fields;
 * retired entries are a few hundred bytes each and go at server close. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/log.h"
#include "server/server_impl.h"

typedef struct adapter_entry {
    srv_model view;  /* the base's fields; name, adapter, parent and root its own */
    char *owner;     /* the tenant it serves; "": every client */
    struct adapter_entry *next;
} adapter_entry;

struct srv_adapters {
    pthread_mutex_t mu;
    adapter_entry *live, *retired;
};

static void entry_free(adapter_entry *e) {
    free(e->view.name);
    free(e->view.root);
    free(e->owner);
    free(e);
}

bs_status adapters_open(srv_adapters **out, bs_error *err) {
    srv_adapters *r = calloc(1, sizeof *r);
    if (!r) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    *out = r;
    return BS_OK;
}

void adapters_close(srv_adapters *r) {
    if (!r) return;
    for (adapter_entry *e = r->live, *next; e; e = next) {
        next = e->next;
        adapter_close(e->view.adapter);
        entry_free(e);
    }
    for (adapter_entry *e = r->retired, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static srv_model *base_model(basalt_server *s, const char *name) {
    for (int i = 0; i < s->n_models; i++)
        if (strcmp(s->models[i].name, name) == 0) return &s->models[i];
    return NULL;
}

static adapter_entry *find_live(srv_adapters *r, const char *name) {
    for (adapter_entry *e = r->live; e; e = e->next)
        if (strcmp(e->view.name, name) == 0) return e;
    return NULL;
}

bs_status server_register_adapter(basalt_server *s, const char *name, bs_adapter *adapter, const char *base,
                                  const char *owner, bs_error *err) {
    srv_model *b = base_model(s, base);
    if (!b) return bs_fail(err, BS_ENOTFOUND, "adapter %s: the base model %s is not served", name, base);
    if (adapter_base(adapter) != b->model)
        return bs_fail(err, BS_EINVAL, "adapter %s was loaded over another model than %s", name, base);
    if (!*name || base_model(s, name))
        return bs_fail(err, BS_EINVAL, "adapter name '%s' is empty or a base model's", name);
    adapter_entry *e = calloc(1, sizeof *e);
    if (!e) return bs_fail(err, BS_ENOMEM, "out of memory");
    e->view = *b;
    e->view.name = strdup(name);
    e->view.root = strdup(adapter_source(adapter) ? adapter_source(adapter) : name);
    e->view.parent = b->name;
    e->view.created = unix_now();
    e->owner = strdup(owner ? owner : "");
    if (!e->view.name || !e->view.root || !e->owner) {
        entry_free(e);
        return bs_fail(err, BS_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&s->adapters->mu);
    if (find_live(s->adapters, name)) {
        pthread_mutex_unlock(&s->adapters->mu);
        entry_free(e);
        return bs_fail(err, BS_EINVAL, "The lora adapter '%s' has already been loaded.", name);
    }
    e->view.adapter = adapter_retain(adapter);
    e->next = s->adapters->live;
    s->adapters->live = e;
    pthread_mutex_unlock(&s->adapters->mu);
    bs_log_info("adapter %s over %s (r = %d, scale %g) from %s", name, base, adapter_config(adapter)->rank,
                (double)adapter_scale(adapter), e->view.root);
    return BS_OK;
}

bs_status server_unregister_adapter(basalt_server *s, const char *name, bs_error *err) {
    srv_adapters *r = s->adapters;
    pthread_mutex_lock(&r->mu);
    adapter_entry **pp = &r->live;
    while (*pp && strcmp((*pp)->view.name, name) != 0) pp = &(*pp)->next;
    adapter_entry *e = *pp;
    if (e) {
        *pp = e->next;
        e->next = r->retired;
        r->retired = e;
    }
    pthread_mutex_unlock(&r->mu);
    if (!e) return bs_fail(err, BS_ENOTFOUND, "The lora adapter '%s' cannot be found.", name);
    adapter_close(e->view.adapter); /* running requests keep theirs */
    bs_log_info("adapter %s unloaded", name);
    return BS_OK;
}

/* Load DIR over the base named base (NULL: the first served model) and serve it as name. */
static bs_status load_and_register(basalt_server *s, const char *name, const char *dir, const char *base,
                                   bs_error *err) {
    srv_model *b = base ? base_model(s, base) : &s->models[0];
    if (!b) return bs_fail(err, BS_ENOTFOUND, "adapter %s: the base model %s is not served", name, base);
    bs_adapter *a = NULL;
    bs_status st = adapter_load_peft(b->model, dir, &a, err);
    if (!st) st = server_register_adapter(s, name, a, b->name, "", err); /* the operator's: shared */
    adapter_close(a);
    return st;
}

bs_status adapters_load_specs(basalt_server *s, const server_lora_spec *specs, int n, bs_error *err) {
    for (int i = 0; i < n; i++)
        if (load_and_register(s, specs[i].name, specs[i].path, specs[i].base, err) != BS_OK)
            return bs_wrap(err, "--lora %s", specs[i].name);
    return BS_OK;
}

/* Fine-tuned models belong to the tenant whose job made them; to anyone
 * else they do not exist. */
static int visible(const adapter_entry *e, http_request *r) {
    return !e->owner[0] || strcmp(e->owner, request_tenant(r)) == 0;
}

srv_model *adapters_find(basalt_server *s, http_request *r, const char *name) {
    req_log *l = request_log(r);
    pthread_mutex_lock(&s->adapters->mu);
    adapter_entry *e = l ? find_live(s->adapters, name) : NULL;
    if (e && !visible(e, r)) e = NULL;
    if (e) {
        adapter_close(l->adapter); /* a second lookup in one request */
        l->adapter = adapter_retain(e->view.adapter);
    }
    pthread_mutex_unlock(&s->adapters->mu);
    return e ? &e->view : NULL;
}

void adapters_list(basalt_server *s, http_request *r, json_t *data) {
    pthread_mutex_lock(&s->adapters->mu);
    for (adapter_entry *e = s->adapters->live; e; e = e->next)
        if (visible(e, r)) json_array_append_new(data, model_object(&e->view));
    pthread_mutex_unlock(&s->adapters->mu);
}

/* ---- vLLM's runtime endpoints ------------------------------------------------- */

static const char *body_string(const json_t *body, const char *key, int required, api_error *a) {
    const json_t *v = json_object_get(body, key);
    if ((!v || json_is_null(v)) && !required) return NULL;
    if (!json_is_string(v) || !*json_string_value(v)) {
        api_fail(a, BS_EINVAL, key, NULL, "'%s' must be a non-empty string", key);
        return NULL;
    }
    return json_string_value(v);
}

static void respond_text(http_request *r, const char *fmt, const char *name) {
    char msg[256];
    int n = snprintf(msg, sizeof msg, fmt, name);
    http_respond(r, 200, "text/plain; charset=utf-8", msg, n < (int)sizeof msg ? (size_t)n : sizeof msg - 1);
}

/* An engine error as a 400 naming the adapter (allocation failures stay 500). */
static void respond_adapter_error(http_request *r, const bs_error *err, const char *param) {
    api_error a = {.e = *err};
    snprintf(a.param, sizeof a.param, "%s", param);
    if (err->status != BS_ENOMEM) a.http = err->status == BS_ENOTFOUND && !strcmp(param, "lora_name") ? 404 : 400;
    respond_error(r, &a);
}

void handle_load_lora(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    api_error a = {0};
    const char *name = body_string(body, "lora_name", 1, &a);
    const char *path = name ? body_string(body, "lora_path", 1, &a) : NULL;
    const char *base = path ? json_string_value(json_object_get(body, "base_model_name")) : NULL;
    bs_error err = {0};
    if (!path) respond_error(r, &a);
    else if (load_and_register(s, name, path, base, &err) != BS_OK) respond_adapter_error(r, &err, "lora_path");
    else respond_text(r, "Success: LoRA adapter '%s' added successfully.", name);
    json_decref(body);
}

void handle_unload_lora(basalt_server *s, http_request *r) {
    json_t *body = request_body(r);
    if (!body) return;
    api_error a = {0};
    const char *name = body_string(body, "lora_name", 1, &a);
    bs_error err = {0};
    if (!name) respond_error(r, &a);
    else if (server_unregister_adapter(s, name, &err) != BS_OK) respond_adapter_error(r, &err, "lora_name");
    else respond_text(r, "Success: LoRA adapter '%s' removed successfully.", name);
    json_decref(body);
}
