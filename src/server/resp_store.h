/* server/resp_store.h — the Responses API's stored responses (store: true):
 * what previous_response_id, item_reference inputs and GET/DELETE
 * /v1/responses/{id} read.
 *
 * In memory, per server process: nothing survives a restart (persistence
 * may move to src/store/ later).  Bounded by a count and by bytes (the
 * compact JSON of each entry); the least recently used entries go first
 * when either is exceeded, and a response larger than the byte cap alone is
 * not kept.  Thread-safe: one mutex, held for lookups and copies only. */
#ifndef BASALT_SERVER_RESP_STORE_H
#define BASALT_SERVER_RESP_STORE_H

#include <jansson.h>
#include <stddef.h>

#include "base/error.h"

#define RESP_STORE_DEFAULT_COUNT 1000
#define RESP_STORE_DEFAULT_BYTES ((size_t)64 << 20)

typedef struct resp_store resp_store;

/* max_count 0: nothing is stored (every put is dropped). */
bs_status resp_store_open(int max_count, size_t max_bytes, resp_store **out, bs_error *err);
void resp_store_close(resp_store *s);

/* Keeps the response object under its "id" with the input items its prompt
 * was built from (earlier turns included, item references resolved), so a
 * later turn can continue from it.  Both are stolen; an older entry with the
 * same id is replaced.  0 when it was kept. */
int resp_store_put(resp_store *s, json_t *response, json_t *input_items);

/* Deep copies (the caller owns them); NULL when unknown or evicted.  A hit
 * counts as a use for the LRU order.  input_items may be NULL. */
json_t *resp_store_get(resp_store *s, const char *id, json_t **input_items);

/* A copy of the input or output item with that "id" from any stored response,
 * newest first; NULL when none. */
json_t *resp_store_item(resp_store *s, const char *item_id);

/* 0 when it was there and is gone now. */
int resp_store_delete(resp_store *s, const char *id);

#endif
