/* cli/cmd_config.c — `basalt config check FILE`: load a gateway config as
 * `serve --config` would, plus the checks that belong to "will this serve"
 * rather than to parsing: local model paths exist (an error) and
 * api_key_env variables are set (a warning; the upstream may need no key). */
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "gateway/config.h"

static const cli_command config_cmd = {
    "config", "check FILE.yaml",
    "Validate a gateway configuration file.",
    "Loads FILE.yaml like `basalt serve --config` (every key, type, range and\n"
    "reference; see docs/gateway.md), then checks that every local model path\n"
    "exists and warns about api_key_env variables that are not set.  Prints\n"
    "\"FILE: ok (N providers, N models, N routes, N guardrails)\" and exits 0,\n"
    "or prints FILE:LINE:COL: KEY: what is wrong and exits 1.",
};

int cmd_config(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    const cli_opt opts[] = {{0}};
    int rc = cli_parse(&config_cmd, opts, argc, argv, pos, 2, 2);
    if (rc) return rc == 1 ? 0 : 2;
    if (strcmp(pos[0], "check") != 0) {
        fprintf(stderr, "basalt config: unknown action '%s' (expected: check)\nusage: basalt config %s\n", pos[0],
                config_cmd.usage);
        return 2;
    }
    const char *file = pos[1];
    gw_config *c;
    bs_error err = {0};
    if (gw_config_load(file, &c, &err) != BS_OK) return cli_report("config", &err);
    for (int i = 0; i < c->n_providers; i++) {
        const gw_provider *p = &c->providers[i];
        if (p->api_key_env && !p->api_key)
            fprintf(stderr, "basalt config: %s:%d: warning: providers[%d].api_key_env: %s is not set; requests to %s "
                    "will carry no API key\n", file, p->line, i, p->api_key_env, p->name);
    }
    int status = 0;
    for (int i = 0; i < c->n_models; i++) {
        const gw_model *m = &c->models[i];
        if (m->kind != GW_MODEL_LOCAL || bs_file_exists(m->path) || bs_is_directory(m->path)) continue;
        fprintf(stderr, "basalt config: %s:%d: models[%d].path: %s does not exist\n", file, m->line, i, m->path);
        status = 1;
    }
    if (!status)
        printf("%s: ok (%d providers, %d models, %d routes, %d guardrails)\n", file, c->n_providers, c->n_models,
               c->n_routes, c->n_guardrails);
    gw_config_unref(c);
    return status;
}
