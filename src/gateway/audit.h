/* gateway/audit.h — the audit log of admin actions (key created or revoked,
 * config reloaded, …): one store document of kind "audit" per action.
 *
 * Writes are synchronous: admin actions are rare and an action that cannot
 * be recorded should fail rather than go unrecorded. */
#ifndef BASALT_GATEWAY_AUDIT_H
#define BASALT_GATEWAY_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#include "base/error.h"
#include "store/store.h"

/* Stores {"actor", "action", "target", "details", "ts"} (ts: Unix
 * milliseconds) as doc "audit-<hex>" (the hex starts with the time, so ids
 * sort by time).  actor_key_id NULL: "" (e.g. the bootstrap admin key);
 * action is required ("key.create", "key.revoke", "config.reload", …);
 * target and details may be NULL.  The new id goes to id_out when given
 * (at least AUDIT_ID_MAX bytes). */
#define AUDIT_ID_MAX 48
bs_status audit_record(bs_store *s, const char *actor_key_id, const char *action, const char *target,
                       const json_t *details, char *id_out, bs_error *err);

/* GET /v1/admin/audit: the entries with created_at in [from, to) (Unix
 * seconds; to <= 0: no upper bound), paged like the store's lists (page
 * NULL: all, oldest first).  *out = {"object":"list","data":[{"id",
 * "object":"audit_event","created_at","actor","action","target","details",
 * "ts"}],"first_id","last_id","has_more"}. */
bs_status audit_list(bs_store *s, int64_t from, int64_t to, const store_page *page, json_t **out, bs_error *err);

#endif
