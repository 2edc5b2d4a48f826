/* gateway/audit.c — audit entries as "audit" store documents. */
#include "gateway/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

bs_status audit_record(bs_store *s, const char *actor_key_id, const char *action, const char *target,
                       const json_t *details, char *id_out, bs_error *err) {
    if (!action || !*action) return bs_fail(err, BS_EINVAL, "audit: action is required");
    if (details && !json_is_object(details)) return bs_fail(err, BS_EINVAL, "audit: details must be a JSON object");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    /* Time first so ids sort like the log; random bits keep replicas from
     * colliding within one millisecond. */
    unsigned long long rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) rnd = (unsigned long long)now.tv_nsec;
    char id[AUDIT_ID_MAX];
    snprintf(id, sizeof id, "audit-%012llx%016llx", ms, rnd);

    json_t *body = json_pack("{s:s, s:s, s:o, s:O, s:I}", "actor", actor_key_id ? actor_key_id : "", "action", action,
                             "target", target ? json_string(target) : json_null(), "details",
                             details ? details : json_null(), "ts", (json_int_t)ms);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return bs_fail(err, BS_EINVAL, "audit: cannot encode the entry (strings must be UTF-8)");
    store_doc d = {.kind = "audit", .id = id, .owner = "", .created_at = now.tv_sec, .updated_at = now.tv_sec,
                   .body = text};
    bs_status st = store_doc_insert(s, &d, err);
    free(text);
    if (st != BS_OK) return bs_wrap(err, "audit: recording %s", action);
    if (id_out) memcpy(id_out, id, strlen(id) + 1);
    return BS_OK;
}

static json_t *entry_json(const store_doc *d) {
    json_t *o = json_loads(d->body, 0, NULL);
    if (!json_is_object(o)) {
        /* A corrupt row still shows up, so the log has no silent holes. */
        json_decref(o);
        o = json_pack("{s:s}", "error", "unreadable audit body");
    }
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "object", json_string("audit_event"));
    json_object_set_new(o, "created_at", json_integer(d->created_at));
    return o;
}

bs_status audit_list(bs_store *s, int64_t from, int64_t to, const store_page *page, json_t **out, bs_error *err) {
    *out = NULL;
    /* The time filter comes before paging, so the store's pages (which
     * know no time) cannot be used; all entries are read, oldest first. */
    store_page all = {.limit = 0, .ascending = 1, .owner = page ? page->owner : NULL};
    store_doc *docs = NULL;
    size_t n = 0;
    int more = 0;
    bs_status st = store_doc_list(s, "audit", &all, &docs, &n, &more, err);
    if (st != BS_OK) return st;
    size_t *keep = malloc((n ? n : 1) * sizeof *keep), k = 0;
    if (!keep) {
        store_docs_free(docs, n);
        return bs_fail(err, BS_ENOMEM, "audit: out of memory");
    }
    int asc = !page || page->ascending;
    for (size_t i = 0; i < n; i++) {
        size_t j = asc ? i : n - 1 - i;
        if (docs[j].created_at >= from && (to <= 0 || docs[j].created_at < to)) keep[k++] = j;
    }
    size_t start = 0;
    if (page && page->after) {
        while (start < k && strcmp(docs[keep[start]].id, page->after) != 0) start++;
        if (start == k) {
            free(keep);
            store_docs_free(docs, n);
            return bs_fail(err, BS_ENOTFOUND, "after: no audit entry \"%s\" in this range", page->after);
        }
        start++;
    }
    size_t end = page && page->limit > 0 && start + (size_t)page->limit < k ? start + (size_t)page->limit : k;
    json_t *data = json_array();
    for (size_t i = start; i < end; i++) json_array_append_new(data, entry_json(&docs[keep[i]]));
    *out = json_pack("{s:s, s:o, s:o, s:o, s:b}", "object", "list", "data", data, "first_id",
                     end > start ? json_string(docs[keep[start]].id) : json_null(), "last_id",
                     end > start ? json_string(docs[keep[end - 1]].id) : json_null(), "has_more", end < k);
    free(keep);
    store_docs_free(docs, n);
    return *out ? BS_OK : bs_fail(err, BS_ENOMEM, "audit: out of memory");
}
