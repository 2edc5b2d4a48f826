/* server/handlers_batches.c — SCAFFOLD: replaced by the Batch API. */
#include "server/server_impl.h"

static void not_yet(http_request *r) {
    api_error a = {.http = 501};
    api_fail(&a, BS_EUNSUPPORTED, NULL, "not_implemented", "not wired yet");
    respond_error(r, &a);
}
void handle_batch_create(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_batches_list(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_batch_get(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_batch_post(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
