/* server/governance.c — SCAFFOLD: replaced by the governance integration. */
#include "server/server_impl.h"

struct srv_governance { int unused; };

bs_status governance_open(basalt_server *s, const server_config *c, srv_governance **out, bs_error *err) {
    (void)s; (void)c; (void)err;
    *out = NULL;
    return BS_OK;
}
void governance_close(srv_governance *g) { (void)g; }
int governance_authenticate(basalt_server *s, http_request *r, const char *scope) { (void)s; (void)r; (void)scope; return 1; }
int governance_admit(basalt_server *s, http_request *r, const char *endpoint, json_t *body) {
    (void)s; (void)r; (void)endpoint; (void)body;
    return 1;
}
const char *request_tenant(http_request *r) { (void)r; return ""; }
int request_key_guardrails(http_request *r, const char *const **names) { (void)r; *names = NULL; return 0; }
void governance_done(basalt_server *s, http_request *r, json_t *line) { (void)s; (void)r; (void)line; }
