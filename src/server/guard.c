/* server/guard.c — SCAFFOLD: replaced by the guardrails integration. */
#include "server/server_impl.h"

bs_status guard_set_build(const gw_config *c, guard_set **out, bs_error *err) { (void)c; (void)err; *out = NULL; return BS_OK; }
void guard_set_free(guard_set *g) { (void)g; }
int guard_admit(basalt_server *s, http_request *r, const char *endpoint, json_t *body, const guard_set *guards) {
    (void)s; (void)r; (void)endpoint; (void)body; (void)guards;
    return 1;
}
void guard_request_done(basalt_server *s, http_request *r, json_t *line) { (void)s; (void)r; (void)line; }
void handle_guardrail_apply(basalt_server *s, http_request *r) { (void)s; (void)r; }
