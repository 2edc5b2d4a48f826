/* server/resp_store.c — a doubly linked list in LRU order (head: most
 * recently used).  Lookups walk it: with the count capped (1000 by default)
 * a walk costs less than the request that asks for it, and no index has to
 * be kept in step. */
#include "server/resp_store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *prev, *next;
    json_t *response, *input_items;
    const char *id; /* borrowed from response */
    size_t bytes;
} entry;

struct resp_store {
    pthread_mutex_t mu;
    entry *head, *tail;
    int count, max_count;
    size_t bytes, max_bytes;
};

bs_status resp_store_open(int max_count, size_t max_bytes, resp_store **out, bs_error *err) {
    resp_store *s = calloc(1, sizeof *s);
    if (!s) return bs_fail(err, BS_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    s->max_count = max_count;
    s->max_bytes = max_bytes;
    *out = s;
    return BS_OK;
}

static void unlink_entry(resp_store *s, entry *e) {
    if (e->prev) e->prev->next = e->next;
    else s->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(resp_store *s, entry *e) {
    e->next = s->head;
    if (s->head) s->head->prev = e;
    s->head = e;
    if (!s->tail) s->tail = e;
}

static void free_entry(resp_store *s, entry *e) {
    unlink_entry(s, e);
    s->count--;
    s->bytes -= e->bytes;
    json_decref(e->response);
    json_decref(e->input_items);
    free(e);
}

void resp_store_close(resp_store *s) {
    if (!s) return;
    while (s->head) free_entry(s, s->head);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static entry *find(resp_store *s, const char *id) {
    for (entry *e = s->head; e; e = e->next)
        if (strcmp(e->id, id) == 0) return e;
    return NULL;
}

static size_t json_bytes(const json_t *v) {
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = text ? strlen(text) : 0;
    free(text);
    return n;
}

int resp_store_put(resp_store *s, json_t *response, json_t *input_items) {
    const char *id = json_string_value(json_object_get(response, "id"));
    entry *e = id && input_items ? calloc(1, sizeof *e) : NULL;
    size_t bytes = e ? json_bytes(response) + json_bytes(input_items) + sizeof *e : 0;
    if (!e || s->max_count <= 0 || bytes > s->max_bytes) {
        free(e);
        json_decref(response);
        json_decref(input_items);
        return -1;
    }
    *e = (entry){.response = response, .input_items = input_items, .id = id, .bytes = bytes};
    pthread_mutex_lock(&s->mu);
    entry *old = find(s, id);
    if (old) free_entry(s, old);
    while (s->tail && (s->count + 1 > s->max_count || s->bytes + bytes > s->max_bytes)) free_entry(s, s->tail);
    push_front(s, e);
    s->count++;
    s->bytes += bytes;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

json_t *resp_store_get(resp_store *s, const char *id, json_t **input_items) {
    json_t *r = NULL;
    if (input_items) *input_items = NULL;
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, id);
    if (e) {
        unlink_entry(s, e);
        push_front(s, e);
        r = json_deep_copy(e->response);
        if (input_items) *input_items = json_deep_copy(e->input_items);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

static json_t *item_in(const json_t *items, const char *item_id) {
    size_t i;
    const json_t *it;
    json_array_foreach(items, i, it) {
        const char *id = json_string_value(json_object_get(it, "id"));
        if (id && strcmp(id, item_id) == 0) return json_deep_copy(it);
    }
    return NULL;
}

json_t *resp_store_item(resp_store *s, const char *item_id) {
    json_t *r = NULL;
    pthread_mutex_lock(&s->mu);
    for (entry *e = s->head; e && !r; e = e->next) {
        r = item_in(json_object_get(e->response, "output"), item_id);
        if (!r) r = item_in(e->input_items, item_id);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int resp_store_delete(resp_store *s, const char *id) {
    pthread_mutex_lock(&s->mu);
    entry *e = find(s, id);
    int rc = e ? 0 : -1;
    if (e) free_entry(s, e);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
