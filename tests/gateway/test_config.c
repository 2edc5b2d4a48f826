/* Tests for gateway/config.c: the issue's example with its exact values,
 * defaults and inheritance, flow and block styles, guardrail JSON, one
 * error per class with its FILE:LINE:COL and key path, the shipped example
 * config, and truncation at every byte (OK or a clean error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/test.h"
#include "gateway/config.h"

static gw_config *parse(const char *yaml, bs_error *err) {
    gw_config *c = NULL;
    gw_config_parse("cfg.yaml", yaml, strlen(yaml), &c, err);
    return c;
}

static const char *issue_example =
    "providers:\n"
    "  - {name: up1, base_url: \"http://127.0.0.1:9001/v1\", api_key_env: UP1_KEY}\n"
    "models:\n"
    "  - {name: local-tiny, path: /models/tiny}\n"
    "  - {name: remote-a, provider: up1, model: gpt-4o-mini, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}\n"
    "routes:\n"
    "  - name: canary\n"
    "    targets: [{model: local-tiny, weight: 90}, {model: remote-a, weight: 10}]\n"
    "    fallbacks: [remote-a]\n";

static void test_issue_example(void) {
    setenv("UP1_KEY", "sk-test-1", 1);
    bs_error err = {0};
    gw_config *c = parse(issue_example, &err);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_STR(c->path, "cfg.yaml");
    CHECK_INT(c->n_providers, 1);
    CHECK_INT(c->n_models, 2);
    CHECK_INT(c->n_routes, 1);
    CHECK_INT(c->n_guardrails, 0);
    const gw_provider *p = &c->providers[0];
    CHECK_STR(p->name, "up1");
    CHECK_STR(p->base_url, "http://127.0.0.1:9001/v1");
    CHECK_STR(p->api_key_env, "UP1_KEY");
    CHECK_STR(p->api_key, "sk-test-1");
    CHECK_INT(p->line, 2);

    int tiny = gw_config_model(c, "local-tiny"), remote = gw_config_model(c, "remote-a");
    CHECK_INT(tiny, 0);
    CHECK_INT(remote, 1);
    CHECK_INT(c->models[tiny].kind, GW_MODEL_LOCAL);
    CHECK_STR(c->models[tiny].path, "/models/tiny");
    CHECK(c->models[tiny].quantize == NULL);
    CHECK_INT(c->models[tiny].price.set, 0);
    CHECK_INT(c->models[remote].kind, GW_MODEL_REMOTE);
    CHECK_INT(c->models[remote].provider, 0);
    CHECK_STR(c->models[remote].upstream_model, "gpt-4o-mini");
    CHECK_INT(c->models[remote].price.set, 1);
    CHECK_NEAR(c->models[remote].price.input_per_mtok, 0.15, 1e-12);
    CHECK_NEAR(c->models[remote].price.output_per_mtok, 0.6, 1e-12);
    CHECK_INT(c->models[remote].line, 5);

    /* "model: canary" is the route, not a model. */
    CHECK_INT(gw_config_model(c, "canary"), -1);
    int ri = gw_config_route(c, "canary");
    CHECK_INT(ri, 0);
    const gw_route *r = &c->routes[ri];
    CHECK_INT(r->line, 7);
    CHECK_INT(r->n_targets, 2);
    CHECK_INT(r->targets[0].model, tiny);
    CHECK_NEAR(r->targets[0].weight, 0.9, 1e-12);
    CHECK_NEAR(r->targets[0].raw_weight, 90, 0);
    CHECK_INT(r->targets[1].model, remote);
    CHECK_NEAR(r->targets[1].weight, 0.1, 1e-12);
    CHECK_NEAR(r->targets[1].raw_weight, 10, 0);
    CHECK_INT(r->n_fallbacks, 1);
    CHECK_INT(r->fallbacks[0], remote);
    CHECK_INT(r->n_context_fallbacks + r->n_content_fallbacks + r->n_shadows + r->n_rules + r->n_guardrails, 0);
    CHECK(r->sticky_header == NULL);
    CHECK_INT(r->sticky_user, 0);
    CHECK_INT(gw_config_provider(c, "up1"), 0);
    CHECK_INT(gw_config_provider(c, "up2"), -1);
    CHECK(gw_config_guardrail(c, "x") == NULL);
    gw_config_unref(c);

    /* An unset api_key_env is not an error: the key stays NULL. */
    unsetenv("UP1_KEY");
    c = parse(issue_example, &err);
    CHECK(c != NULL);
    if (c) CHECK(c->providers[0].api_key == NULL);
    gw_config_unref(c);
}

static void test_defaults(void) {
    bs_error err = {0};
    gw_config *c = parse("providers:\n"
                         "  - name: p\n"
                         "    base_url: https://api.example.com/v1/\n"
                         "models:\n"
                         "  - name: m1\n"
                         "    provider: p\n"
                         "    model: x\n"
                         "  - name: m2\n"
                         "    path: /m2\n"
                         "routes:\n"
                         "  - name: r\n"
                         "    targets: [{model: m1}, {model: m2}]\n",
                         &err);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    const gw_provider *p = &c->providers[0];
    CHECK_STR(p->base_url, "https://api.example.com/v1"); /* trailing slash dropped */
    CHECK(p->api_key_env == NULL && p->api_key == NULL);
    CHECK_NEAR(p->timeout_s, 600, 0);
    CHECK_NEAR(p->connect_timeout_s, 10, 0);
    CHECK_INT(p->max_connections, 64);
    CHECK_INT(c->models[1].ctx, 0);
    CHECK_INT(c->models[0].rpm, 0);
    CHECK_INT(c->models[0].tpm, 0);
    CHECK_INT(c->retry.max_retries, 2);
    CHECK_NEAR(c->retry.backoff_base_s, 0.25, 0);
    CHECK_NEAR(c->retry.backoff_max_s, 8, 0);
    CHECK_NEAR(c->retry.retry_after_max_s, 30, 0);
    CHECK_INT(c->breaker.min_requests, 5);
    CHECK_NEAR(c->breaker.failure_rate, 0.5, 0);
    CHECK_NEAR(c->breaker.window_s, 60, 0);
    CHECK_NEAR(c->breaker.cooldown_s, 30, 0);
    CHECK_INT(c->breaker.half_open_probes, 1);
    CHECK(c->store == NULL && c->ratelimit == NULL && c->log_dir == NULL);
    CHECK_INT(c->log_max_mb, 100);
    CHECK_INT(c->log_retention_days, 30);
    CHECK_INT(c->log_bodies, 0);
    CHECK_NEAR(c->flush_s, 5, 0);
    /* weight defaults to 1 each */
    CHECK_NEAR(c->routes[0].targets[0].raw_weight, 1, 0);
    CHECK_NEAR(c->routes[0].targets[0].weight, 0.5, 1e-12);
    CHECK_NEAR(c->routes[0].targets[1].weight, 0.5, 1e-12);
    CHECK_INT(c->routes[0].retry.max_retries, 2);
    CHECK_NEAR(c->routes[0].breaker.failure_rate, 0.5, 0);
    gw_config_unref(c);

    /* An empty file and a null document are an empty config. */
    c = parse("", &err);
    CHECK(c != NULL && c->n_models == 0 && c->n_routes == 0 && c->log_max_mb == 100);
    gw_config_unref(c);
    c = parse("# nothing yet\n---\n", &err);
    CHECK(c != NULL && c->n_providers == 0);
    gw_config_unref(c);
}

static void test_sections_and_inheritance(void) {
    bs_error err = {0};
    gw_config *c = parse("retry: {max_retries: 5, backoff_max_s: 4}\n"
                         "breaker: {failure_rate: 0.3, min_requests: 10}\n"
                         "store: postgres://basalt@db/basalt\n"
                         "ratelimit: redis://127.0.0.1:6379/2\n"
                         "usage: {log_dir: /var/log/basalt, log_max_mb: 10, log_retention_days: 7, log_bodies: true,"
                         " flush_s: 0.5}\n"
                         "guardrails:\n"
                         "  - {name: pii, type: pii}\n"
                         "  - {name: words, type: denied_words, words: [a]}\n"
                         "models:\n"
                         "  - {name: a, path: /a.gguf, quantize: q4_k, ctx: 4096, rpm: 60, tpm: 100000,\n"
                         "     guardrails: [pii]}\n"
                         "  - {name: b, path: /b}\n"
                         "  - {name: c, path: /c}\n"
                         "routes:\n"
                         "  - name: r\n"
                         "    targets: [{model: a, weight: 0}, {model: b, weight: 0}]\n"
                         "    rules:\n"
                         "      - {match: {header: x-tier, value: gold}, target: b}\n"
                         "      - {match: {metadata: team, value: 'ml-*'}, target: c}\n"
                         "      - {match: {model: 'gpt-4*'}, target: a}\n"
                         "    sticky: {header: x-session}\n"
                         "    context_window_fallbacks: [c]\n"
                         "    content_policy_fallbacks: [b, c]\n"
                         "    shadow: [c]\n"
                         "    retry: {backoff_base_s: 1}\n"
                         "    breaker: {window_s: 10}\n"
                         "    guardrails: [words, pii]\n"
                         "  - {name: r2, targets: [{model: a}], sticky: user}\n",
                         &err);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    CHECK_INT(c->retry.max_retries, 5);
    CHECK_NEAR(c->retry.backoff_max_s, 4, 0);
    CHECK_NEAR(c->breaker.failure_rate, 0.3, 0);
    CHECK_STR(c->store, "postgres://basalt@db/basalt");
    CHECK_STR(c->ratelimit, "redis://127.0.0.1:6379/2");
    CHECK_STR(c->log_dir, "/var/log/basalt");
    CHECK_INT(c->log_max_mb, 10);
    CHECK_INT(c->log_retention_days, 7);
    CHECK_INT(c->log_bodies, 1);
    CHECK_NEAR(c->flush_s, 0.5, 0);
    const gw_model *a = &c->models[0];
    CHECK_STR(a->quantize, "q4_k");
    CHECK_INT(a->ctx, 4096);
    CHECK_INT(a->rpm, 60);
    CHECK_INT(a->tpm, 100000);
    CHECK_INT(a->n_guardrails, 1);
    CHECK_STR(a->guardrails[0], "pii");

    const gw_route *r = &c->routes[0];
    /* inherited field by field: top-level max_retries and backoff_max_s, the route's base */
    CHECK_INT(r->retry.max_retries, 5);
    CHECK_NEAR(r->retry.backoff_base_s, 1, 0);
    CHECK_NEAR(r->retry.backoff_max_s, 4, 0);
    CHECK_NEAR(r->retry.retry_after_max_s, 30, 0);
    CHECK_NEAR(r->breaker.failure_rate, 0.3, 0);
    CHECK_INT(r->breaker.min_requests, 10);
    CHECK_NEAR(r->breaker.window_s, 10, 0);
    CHECK_NEAR(r->breaker.cooldown_s, 30, 0);
    /* all-zero weights: only reachable by pinning */
    CHECK_NEAR(r->targets[0].weight, 0, 0);
    CHECK_NEAR(r->targets[1].weight, 0, 0);
    CHECK_INT(r->n_rules, 3);
    CHECK_INT(r->rules[0].kind, GW_MATCH_HEADER);
    CHECK_STR(r->rules[0].key, "x-tier");
    CHECK_STR(r->rules[0].value, "gold");
    CHECK_INT(r->rules[0].model, 1);
    CHECK_INT(r->rules[1].kind, GW_MATCH_METADATA);
    CHECK_STR(r->rules[1].key, "team");
    CHECK_STR(r->rules[1].value, "ml-*");
    CHECK_INT(r->rules[1].model, 2);
    CHECK_INT(r->rules[2].kind, GW_MATCH_MODEL);
    CHECK(r->rules[2].key == NULL);
    CHECK_STR(r->rules[2].value, "gpt-4*");
    CHECK_INT(r->rules[2].model, 0);
    CHECK_STR(r->sticky_header, "x-session");
    CHECK_INT(r->sticky_user, 1);
    CHECK_INT(r->n_context_fallbacks, 1);
    CHECK_INT(r->context_fallbacks[0], 2);
    CHECK_INT(r->n_content_fallbacks, 2);
    CHECK_INT(r->content_fallbacks[1], 2);
    CHECK_INT(r->n_shadows, 1);
    CHECK_INT(r->n_guardrails, 2);
    CHECK_STR(r->guardrails[0], "words");
    const gw_route *r2 = &c->routes[1];
    CHECK(r2->sticky_header == NULL);
    CHECK_INT(r2->sticky_user, 1);
    CHECK_NEAR(r2->targets[0].weight, 1, 0);
    CHECK_INT(r2->retry.max_retries, 5);
    CHECK_NEAR(r2->retry.backoff_base_s, 0.25, 0);
    gw_config_unref(c);

    /* The builtin backends' names mean the same as leaving the keys out. */
    c = parse("store: sqlite\nratelimit: memory\n", &err);
    CHECK(c != NULL && c->store == NULL && c->ratelimit == NULL);
    gw_config_unref(c);
}

/* Everything the flow/block comparison looks at, as one line. */
static void summarize(const gw_config *c, char *out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < c->n_providers; i++)
        n += (size_t)snprintf(out + n, cap - n, "P %s %s %g|", c->providers[i].name, c->providers[i].base_url,
                              c->providers[i].timeout_s);
    for (int i = 0; i < c->n_models; i++)
        n += (size_t)snprintf(out + n, cap - n, "M %s %d %s %d %g %d|", c->models[i].name, c->models[i].kind,
                              c->models[i].path ? c->models[i].path : "-", c->models[i].provider,
                              c->models[i].price.output_per_mtok, c->models[i].n_guardrails);
    for (int i = 0; i < c->n_routes; i++) {
        const gw_route *r = &c->routes[i];
        n += (size_t)snprintf(out + n, cap - n, "R %s %d %g %d %d %s %d|", r->name, r->n_targets,
                              r->targets[0].weight, r->n_fallbacks, r->n_rules, r->rules[0].value,
                              r->retry.max_retries);
    }
    for (int i = 0; i < c->n_guardrails; i++) {
        char *j = json_dumps(c->guardrails[i].spec, JSON_COMPACT | JSON_SORT_KEYS);
        n += (size_t)snprintf(out + n, cap - n, "G %s|", j);
        free(j);
    }
}

static void test_flow_equals_block(void) {
    const char *block = "providers:\n"
                        "  - name: up\n"
                        "    base_url: http://h:1/v1\n"
                        "    timeout_s: 30\n"
                        "guardrails:\n"
                        "  - name: g\n"
                        "    words:\n"
                        "      - a\n"
                        "      - 2\n"
                        "models:\n"
                        "  - name: x\n"
                        "    provider: up\n"
                        "    model: gpt\n"
                        "    price:\n"
                        "      input_per_mtok: 1\n"
                        "      output_per_mtok: 2\n"
                        "    guardrails:\n"
                        "      - g\n"
                        "  - name: y\n"
                        "    path: /y\n"
                        "routes:\n"
                        "  - name: r\n"
                        "    targets:\n"
                        "      - model: x\n"
                        "        weight: 3\n"
                        "      - model: y\n"
                        "        weight: 1\n"
                        "    rules:\n"
                        "      - match:\n"
                        "          header: h\n"
                        "          value: v*\n"
                        "        target: y\n"
                        "    fallbacks:\n"
                        "      - y\n"
                        "    retry:\n"
                        "      max_retries: 7\n";
    const char *flow = "{providers: [{name: up, base_url: 'http://h:1/v1', timeout_s: 30}],\n"
                       " guardrails: [{name: g, words: [a, 2]}],\n"
                       " models: [{name: x, provider: up, model: gpt, price: {input_per_mtok: 1, output_per_mtok: 2},"
                       " guardrails: [g]}, {name: y, path: /y}],\n"
                       " routes: [{name: r, targets: [{model: x, weight: 3}, {model: y, weight: 1}],\n"
                       "   rules: [{match: {header: h, value: v*}, target: y}], fallbacks: [y],"
                       " retry: {max_retries: 7}}]}\n";
    bs_error e1 = {0}, e2 = {0};
    gw_config *a = parse(block, &e1), *b = parse(flow, &e2);
    CHECK(a != NULL);
    CHECK(b != NULL);
    if (a && b) {
        char sa[2048], sb[2048];
        summarize(a, sa, sizeof sa);
        summarize(b, sb, sizeof sb);
        CHECK_STR(sa, sb);
        CHECK_STR(sa, "P up http://h:1/v1 30|M x 1 - 0 2 1|M y 0 /y -1 0 0|R r 2 0.75 1 1 v* 7|"
                      "G {\"name\":\"g\",\"words\":[\"a\",2]}|");
    } else {
        fprintf(stderr, "  block: %s\n  flow: %s\n", e1.msg, e2.msg);
    }
    gw_config_unref(a);
    gw_config_unref(b);
}

static void test_guardrail_json(void) {
    bs_error err = {0};
    gw_config *c = parse("guardrails:\n"
                         "  - name: pii\n"
                         "    type: pii\n"
                         "    action: mask\n"
                         "    threshold: 0.75\n"
                         "    max: 3\n"
                         "    big: -12e2\n"
                         "    enabled: true\n"
                         "    off: false\n"
                         "    quoted: [\"12\", 'true', \"1.5\"]\n"
                         "    nothing: ~\n"
                         "    hex: 0x10\n"
                         "    entities: [EMAIL, [1, 2.5], {nested: [yes, True]}]\n",
                         &err);
    CHECK(c != NULL);
    if (!c) {
        fprintf(stderr, "  %s\n", err.msg);
        return;
    }
    const gw_guardrail *g = gw_config_guardrail(c, "pii");
    CHECK(g != NULL);
    if (g) {
        CHECK_INT(g->line, 2);
        char *j = json_dumps(g->spec, JSON_COMPACT | JSON_SORT_KEYS);
        CHECK_STR(j, "{\"action\":\"mask\",\"big\":-1200.0,\"enabled\":true,\"entities\":[\"EMAIL\",[1,2.5],"
                     "{\"nested\":[\"yes\",true]}],\"hex\":\"0x10\",\"max\":3,\"name\":\"pii\",\"nothing\":null,"
                     "\"off\":false,\"quoted\":[\"12\",\"true\",\"1.5\"],\"threshold\":0.75,\"type\":\"pii\"}");
        free(j);
        CHECK(json_is_integer(json_object_get(g->spec, "max")));
        CHECK(json_is_real(json_object_get(g->spec, "threshold")));
    }
    gw_config_unref(c);
}

/* One config per error class; each must fail with every listed substring. */
static void test_errors(void) {
    static const struct {
        const char *yaml, *want[3];
    } cases[] = {
        /* YAML syntax: libyaml's problem mark */
        {"models:\n  - {name: a, path: /a\n", {"cfg.yaml:3:1: YAML syntax error:", "flow mapping"}},
        {"models:\n  - name: a\n   path: x\n", {"cfg.yaml:3:4: YAML syntax error:", "block collection at line 2"}},
        {"a: &x 1\nb: *x\n", {"cfg.yaml:2:4:", "aliases"}},
        {"models: []\n---\nmodels: []\n", {"cfg.yaml:2:1:", "second"}},
        {"models: []\nmodels: []\n", {"cfg.yaml:2:1: models: duplicate key (first at line 1)"}},
        /* unknown keys, naming the allowed ones */
        {"modles: []\n", {"cfg.yaml:1:1: modles: unknown key (allowed: providers, models, routes,"}},
        {"models:\n  - name: a\n    path: /a\n    qunatize: q8_0\n",
         {"cfg.yaml:4:5: models[0].qunatize: unknown key", "quantize, ctx"}},
        {"routes:\n  - name: r\n    targets: [{model: a, wieght: 1}]\nmodels: [{name: a, path: /a}]\n",
         {"cfg.yaml:3:26: routes[0].targets[0].wieght: unknown key (allowed: model, weight)"}},
        {"retry: {max_retries: 1, jitter: 2}\n", {"cfg.yaml:1:25: retry.jitter: unknown key"}},
        /* wrong types */
        {"models: {name: a}\n", {"cfg.yaml:1:9: models: expected a list, got a mapping"}},
        {"providers:\n  - name: p\n    base_url: http://h\n    timeout_s: fast\n",
         {"cfg.yaml:4:16: providers[0].timeout_s: expected a number, got 'fast'"}},
        {"providers:\n  - {name: p, base_url: http://h, max_connections: 1.5}\n",
         {"cfg.yaml:2:52: providers[0].max_connections: expected an integer, got '1.5'"}},
        {"models:\n  - name: [a]\n    path: /a\n", {"cfg.yaml:2:11: models[0].name: expected a string, got a list"}},
        {"usage: {log_bodies: sometimes}\n", {"cfg.yaml:1:21: usage.log_bodies: expected true or false"}},
        {"- a\n", {"cfg.yaml:1:1: (top level): expected a mapping, got a list"}},
        /* duplicate names: models and routes share one namespace */
        {"models:\n  - {name: a, path: /a}\n  - {name: a, path: /b}\n",
         {"cfg.yaml:3:12: models[1].name: 'a' is already defined (the model at line 2)"}},
        {"models:\n  - {name: a, path: /a}\nroutes:\n  - {name: a, targets: [{model: a}]}\n",
         {"cfg.yaml:4:12: routes[0].name: 'a' is already defined (the model at line 2)"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - {name: r, targets: [{model: a}]}\n"
         "  - {name: r, targets: [{model: a}]}\n",
         {"cfg.yaml:4:12: routes[1].name: 'r' is already defined (the route at line 3)"}},
        {"providers:\n  - {name: p, base_url: http://a}\n  - {name: p, base_url: http://b}\n",
         {"cfg.yaml:3:12: providers[1].name: provider 'p' is already defined (line 2)"}},
        {"guardrails: [{name: g}, {name: g}]\n", {"cfg.yaml:1:32: guardrails[1].name:", "already defined"}},
        /* undefined references */
        {"models:\n  - {name: a, provider: nope, model: x}\n",
         {"cfg.yaml:2:25: models[0].provider: no provider named 'nope' is defined"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - name: r\n    targets: [{model: a}]\n    fallbacks: [a, b]\n",
         {"cfg.yaml:5:20: routes[0].fallbacks[1]: no model named 'b' is defined"}},
        {"models: [{name: a, path: /a, guardrails: [pii]}]\n",
         {"cfg.yaml:1:43: models[0].guardrails[0]: no guardrail named 'pii' is defined"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - {name: r, targets: [{model: a}], guardrails: [g]}\n",
         {"cfg.yaml:3:51: routes[0].guardrails[0]: no guardrail named 'g'"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - name: r\n    targets: [{model: a}]\n"
         "    rules: [{match: {header: h, value: v}, target: zz}]\n",
         {"cfg.yaml:5:52: routes[0].rules[0].target: no model named 'zz'"}},
        /* a route target that is a route (defined later still counts) */
        {"models: [{name: a, path: /a}]\nroutes:\n  - {name: r1, targets: [{model: r2}]}\n"
         "  - {name: r2, targets: [{model: a}]}\n",
         {"cfg.yaml:3:34: routes[0].targets[0].model: 'r2' is a route"}},
        /* weights */
        {"models: [{name: a, path: /a}]\nroutes:\n  - {name: r, targets: [{model: a, weight: -1}]}\n",
         {"cfg.yaml:3:44: routes[0].targets[0].weight: must be >= 0, got -1"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - {name: r, targets: []}\n",
         {"cfg.yaml:3:24: routes[0].targets: must list at least one target"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - {name: r, targets: [{model: a}, {model: a}]}\n",
         {"routes[0].targets[1].model: 'a' is already a target"}},
        /* URLs */
        {"providers:\n  - {name: p, base_url: ftp://h/v1}\n",
         {"cfg.yaml:2:25: providers[0].base_url: 'ftp://h/v1' is not an http:// or https:// URL"}},
        {"providers:\n  - {name: p, base_url: 'http://'}\n", {"cfg.yaml:2:25: providers[0].base_url:"}},
        {"store: mysql://x\n", {"cfg.yaml:1:8: store: expected 'sqlite' or a postgres:// URL"}},
        {"ratelimit: redis:/x\n", {"cfg.yaml:1:12: ratelimit: expected 'memory' or a redis:// URL"}},
        /* missing required keys */
        {"models:\n  - name: a\n    rpm: 5\n",
         {"cfg.yaml:2:5: models[0]: a model needs either path (local) or provider and model (remote)"}},
        {"providers: [{name: p, base_url: http://h}]\nmodels:\n  - {name: a, provider: p}\n",
         {"cfg.yaml:3:5: models[0].model: missing (required)"}},
        {"models:\n  - {name: a, path: /a, model: x}\n", {"cfg.yaml:2:32: models[0].model:", "not both"}},
        {"providers:\n  - {name: p}\n", {"cfg.yaml:2:5: providers[0].base_url: missing (required)"}},
        {"models: [{path: /a}]\n", {"cfg.yaml:1:10: models[0].name: missing (required)"}},
        {"routes: [{name: r}]\n", {"cfg.yaml:1:10: routes[0].targets: missing (required)"}},
        {"models: [{name: a, path: ''}]\n", {"cfg.yaml:1:26: models[0].path: must not be empty"}},
        /* durations and probabilities out of range */
        {"breaker: {failure_rate: 0}\n", {"cfg.yaml:1:25: breaker.failure_rate: must be in (0, 1], got 0"}},
        {"breaker: {failure_rate: 1.5}\n", {"breaker.failure_rate: must be in (0, 1]"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - name: r\n    targets: [{model: a}]\n"
         "    breaker: {cooldown_s: 0}\n",
         {"cfg.yaml:5:27: routes[0].breaker.cooldown_s: must be > 0, got 0"}},
        {"retry: {backoff_base_s: 10, backoff_max_s: 2}\n", {"cfg.yaml:1:8: retry: backoff_max_s (2) is below"}},
        {"retry: {max_retries: -1}\n", {"cfg.yaml:1:22: retry.max_retries: must be >= 0"}},
        {"usage: {log_retention_days: 0}\n", {"usage.log_retention_days: must be >= 1"}},
        {"providers: [{name: p, base_url: http://h, timeout_s: .inf}]\n",
         {"providers[0].timeout_s: expected a number"}},
        /* enumerations and shapes */
        {"models: [{name: a, path: /a, quantize: q5_0}]\n",
         {"cfg.yaml:1:40: models[0].quantize: 'q5_0' is not one of q8_0, q4_0, q4_k, q6_k"}},
        {"providers: [{name: p, base_url: http://h}]\nmodels: [{name: a, provider: p, model: m, ctx: 5}]\n",
         {"cfg.yaml:2:48: models[0].ctx: applies only to local models"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - {name: r, targets: [{model: a}], sticky: session}\n",
         {"cfg.yaml:3:46: routes[0].sticky: expected 'user' or {header: NAME}"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - name: r\n    targets: [{model: a}]\n"
         "    rules: [{match: {header: h, model: a}, target: a}]\n",
         {"cfg.yaml:5:21: routes[0].rules[0].match: give one of header, metadata or model"}},
        {"models: [{name: a, path: /a}]\nroutes:\n  - name: r\n    targets: [{model: a}]\n"
         "    rules: [{match: {header: h}, target: a}]\n",
         {"cfg.yaml:5:21: routes[0].rules[0].match.value: missing (required)"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bs_error err = {0};
        gw_config *c = parse(cases[i].yaml, &err);
        if (c) {
            fprintf(stderr, "  case %zu loaded; expected an error\n", i);
            test_failed_ = 1;
            gw_config_unref(c);
            continue;
        }
        CHECK_INT(err.status, BS_EFORMAT);
        for (int k = 0; k < 3 && cases[i].want[k]; k++)
            if (!strstr(err.msg, cases[i].want[k])) {
                fprintf(stderr, "  case %zu: \"%s\" lacks \"%s\"\n", i, err.msg, cases[i].want[k]);
                test_failed_ = 1;
            }
    }
}

static void test_load_file(void) {
    bs_error err = {0};
    gw_config *c = NULL;
    CHECK_INT(gw_config_load("no/such/cfg.yaml", &c, &err), BS_EIO);
    CHECK(c == NULL);
    CHECK(strstr(err.msg, "no/such/cfg.yaml") != NULL);

    /* The shipped example stays valid. */
    CHECK_OK(gw_config_load("docs/basalt.example.yaml", &c, &err), &err);
    if (c) {
        CHECK_STR(c->path, "docs/basalt.example.yaml");
        CHECK(c->n_providers >= 1 && c->n_models >= 2 && c->n_routes >= 1 && c->n_guardrails >= 1);
        int canary = gw_config_route(c, "canary");
        CHECK(canary >= 0);
        if (canary >= 0) {
            double sum = 0;
            for (int i = 0; i < c->routes[canary].n_targets; i++) sum += c->routes[canary].targets[i].weight;
            CHECK_NEAR(sum, 1, 1e-12);
        }
    }
    gw_config_unref(c);
}

static void test_refcount(void) {
    bs_error err = {0};
    gw_config *c = parse("models: [{name: a, path: /a}]\n", &err);
    CHECK(c != NULL);
    if (!c) return;
    CHECK(gw_config_ref(c) == c);
    CHECK_INT(c->refcount, 2);
    gw_config_unref(c);
    CHECK_INT(c->refcount, 1);
    CHECK_STR(c->models[0].name, "a");
    gw_config_unref(c);
    gw_config_unref(NULL);
    CHECK(gw_config_ref(NULL) == NULL);
}

/* Every prefix of a full config either loads or fails with a positioned
 * message; run under build-san this also proves nothing leaks on any path. */
static void test_truncation(void) {
    const char *full = "providers:\n"
                       "  - {name: up1, base_url: \"http://127.0.0.1:9001/v1\", api_key_env: UP1_KEY, timeout_s: 5}\n"
                       "guardrails:\n"
                       "  - name: pii\n"
                       "    entities: [EMAIL, {x: [1, 'two', true]}]\n"
                       "retry: {max_retries: 3}\n"
                       "breaker: {failure_rate: 0.25}\n"
                       "usage: {log_dir: /tmp/x, flush_s: 2}\n"
                       "models:\n"
                       "  - {name: local-tiny, path: /models/tiny, quantize: q8_0, guardrails: [pii]}\n"
                       "  - name: remote-a\n"
                       "    provider: up1\n"
                       "    model: gpt-4o-mini\n"
                       "    price: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n"
                       "routes:\n"
                       "  - name: canary\n"
                       "    targets: [{model: local-tiny, weight: 90}, {model: remote-a, weight: 10}]\n"
                       "    rules: [{match: {header: x-tier, value: gold}, target: remote-a}]\n"
                       "    sticky: {header: x-session}\n"
                       "    fallbacks: [remote-a]\n"
                       "    retry: {backoff_base_s: 0.5}\n"
                       "    guardrails: [pii]\n";
    size_t n = strlen(full);
    int ok = 0, bad = 0;
    for (size_t len = 0; len <= n; len++) {
        bs_error err = {0};
        gw_config *c = NULL;
        bs_status s = gw_config_parse("cfg.yaml", full, len, &c, &err);
        if (s == BS_OK) {
            ok++;
            CHECK(c != NULL);
        } else {
            CHECK(c == NULL);
            if (strncmp(err.msg, "cfg.yaml:", 9) != 0) {
                fprintf(stderr, "  length %zu: unpositioned error \"%s\"\n", len, err.msg);
                bad++;
            }
        }
        gw_config_unref(c);
    }
    CHECK_INT(bad, 0);
    CHECK(ok >= 2); /* the empty prefix and the whole text at least */
    bs_error err = {0};
    gw_config *c = NULL;
    CHECK_OK(gw_config_parse("cfg.yaml", full, n, &c, &err), &err);
    gw_config_unref(c);
}

int main(void) {
    RUN(test_issue_example);
    RUN(test_defaults);
    RUN(test_sections_and_inheritance);
    RUN(test_flow_equals_block);
    RUN(test_guardrail_json);
    RUN(test_errors);
    RUN(test_load_file);
    RUN(test_refcount);
    RUN(test_truncation);
    TEST_MAIN_END();
}
