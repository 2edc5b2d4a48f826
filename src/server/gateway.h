/* server/gateway.h — the gateway inside `basalt serve --config FILE`: the
 * loaded configuration (swapped whole on reload; each request keeps the
 * generation it started with), the upstream connection pool, the circuit
 * breakers, and the serving of requests whose model is a name the config
 * defines (a route, an upstream alias or a local model): plan the targets,
 * try them with retries and fallbacks, mirror shadows, and answer with
 * x-basalt-target and x-basalt-overhead-ms. */
#ifndef BASALT_SERVER_GATEWAY_H
#define BASALT_SERVER_GATEWAY_H

#include <jansson.h>

#include "base/error.h"
#include "gateway/config.h"

typedef struct basalt_server basalt_server;
typedef struct http_request http_request;
typedef struct srv_gateway srv_gateway;

/* config_path NULL: no gateway config (only the models given on the command
 * line are served, as before). */
bs_status gateway_open(basalt_server *s, const char *config_path, srv_gateway **out, bs_error *err);
void gateway_close(srv_gateway *g);

/* The configuration now in force, a new reference (gw_config_unref it), or
 * NULL without --config. */
gw_config *gateway_config(srv_gateway *g);

/* The request's configuration generation, pinned on first use so the whole
 * request (admission, guardrails, routing) sees one config: its config (a
 * borrowed pointer, valid until the request ends; NULL without --config) and
 * its compiled guardrails (NULL: none). */
const gw_config *gateway_request_config(basalt_server *s, http_request *r);
const struct guard_set *gateway_guards(basalt_server *s, http_request *r);

/* Load the config file again; on any error the old one stays in force.
 * Requests already running finish on the configuration they started with. */
bs_status gateway_reload(basalt_server *s, bs_error *err);

/* An inference request (endpoint: the route pattern, e.g.
 * "/v1/chat/completions") whose body is parsed: when body.model names a
 * route or model of the config, serve it and return 1 (answered); else 0
 * and the local handler runs.  local is the endpoint's local handler, run
 * in-process for local targets (with body.model set to the local model's
 * name, which is also the "model" its response shows). */
int gateway_serve(basalt_server *s, http_request *r, const char *endpoint, json_t *body,
                  void (*local)(basalt_server *s, http_request *r));

/* When the response is over: per route/target metrics, and the request's
 * log line (line) gets route, target, chain, overhead_ms. */
void gateway_request_done(basalt_server *s, http_request *r, json_t *line);

/* POST /v1/admin/reload */
void handle_admin_reload(basalt_server *s, http_request *r);

#endif
