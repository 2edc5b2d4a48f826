/* server/handlers_admin.c — SCAFFOLD: replaced by the governance integration. */
#include "server/server_impl.h"

static void not_yet(http_request *r) {
    api_error a = {.http = 501};
    api_fail(&a, BS_EUNSUPPORTED, NULL, "not_implemented", "not wired yet");
    respond_error(r, &a);
}
void handle_admin_key_create(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_admin_keys_list(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_admin_key_get(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_admin_key_update(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_admin_key_revoke(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_admin_usage(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
void handle_admin_audit(basalt_server *s, http_request *r) { (void)s; not_yet(r); }
