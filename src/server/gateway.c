/* server/gateway.c — SCAFFOLD: replaced by the gateway integration. */
#include "server/server_impl.h"

struct srv_gateway { int unused; };

bs_status gateway_open(basalt_server *s, const char *config_path, srv_gateway **out, bs_error *err) {
    (void)s;
    *out = NULL;
    if (config_path) return bs_fail(err, BS_EUNSUPPORTED, "--config: not wired yet");
    return BS_OK;
}
void gateway_close(srv_gateway *g) { (void)g; }
gw_config *gateway_config(srv_gateway *g) { (void)g; return NULL; }
const gw_config *gateway_request_config(basalt_server *s, http_request *r) { (void)s; (void)r; return NULL; }
const struct guard_set *gateway_guards(basalt_server *s, http_request *r) { (void)s; (void)r; return NULL; }
bs_status gateway_reload(basalt_server *s, bs_error *err) { (void)s; return bs_fail(err, BS_EUNSUPPORTED, "no --config"); }
int gateway_serve(basalt_server *s, http_request *r, const char *endpoint, json_t *body) {
    (void)s; (void)r; (void)endpoint; (void)body;
    return 0;
}
void gateway_request_done(basalt_server *s, http_request *r, json_t *line) { (void)s; (void)r; (void)line; }
void handle_admin_reload(basalt_server *s, http_request *r) {
    bs_error err = {0};
    api_error a = {.e = {0}};
    if (gateway_reload(s, &err) != BS_OK) {
        a.e = err;
        respond_error(r, &a);
        return;
    }
    respond_json(r, 200, json_pack("{s:s}", "status", "reloaded"));
}
