/* cli/cmd_keys.c — `basalt keys create|list|revoke`: API keys managed
 * offline, straight against the data directory's store (or --store
 * postgres://…), so an operator can make the first admin key before the
 * server starts.  A running server picks changes up within seconds (it
 * refreshes its keys from the store). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/paths.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "gateway/audit.h"
#include "gateway/keys.h"
#include "store/store.h"

static const cli_command keys_cmd = {
    "keys", "create --name N [flags] | list | revoke KEY_ID",
    "Manage API keys (create prints the secret once).",
    "create: a key with --scopes (inference, files, fine-tune, admin; default\n"
    "inference), allow-lists --models / --routes (default: all), limits --rpm,\n"
    "--tpm, --max-concurrent, a --budget in USD per --period (day|month) and\n"
    "--expires-in DAYS.  The secret (sk-basalt-…) is printed on the first line,\n"
    "then the key as JSON; it cannot be shown again.\n"
    "list: every key as JSON lines.  revoke: revoke KEY_ID now.\n"
    "Keys live in the store of --data (DATA/basalt.db) or --store URL.",
};

/* "a,b,c" into list (pointers into a copy kept in *buf). */
static int split_commas(const char *flag, const char *s, const char **items, int *n, char **buf) {
    *n = 0;
    if (!s) return 0;
    if (!(*buf = strdup(s))) return 1;
    for (char *tok, *save = NULL, *p = *buf; (tok = strtok_r(p, ",", &save)); p = NULL) {
        if (*n == CLI_LIST_MAX) {
            fprintf(stderr, "basalt keys: %s: at most %d entries\n", flag, CLI_LIST_MAX);
            return 2;
        }
        items[(*n)++] = tok;
    }
    return 0;
}

static void print_key(const key_info *k) {
    json_t *o = key_info_json(k);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text) printf("%s\n", text);
    free(text);
    json_decref(o);
}

static int create(keys_registry *reg, bs_store *store, const char *name, const char *scopes, const char *models,
                  const char *routes, int rpm, int tpm, int max_concurrent, float budget, const char *period,
                  int expires_days) {
    if (!name) {
        fprintf(stderr, "basalt keys: create: --name is required\n");
        return 2;
    }
    if (rpm < 0 || tpm < 0 || max_concurrent < 0 || budget < 0 || expires_days < 0) {
        fprintf(stderr, "basalt keys: create: --rpm, --tpm, --max-concurrent, --budget and --expires-in must be >= 0\n");
        return 2;
    }
    const char *sc[CLI_LIST_MAX], *mo[CLI_LIST_MAX], *ro[CLI_LIST_MAX];
    char *b1 = NULL, *b2 = NULL, *b3 = NULL;
    key_spec spec = {.name = name, .rpm = rpm, .tpm = tpm, .max_concurrent = max_concurrent, .budget_usd = budget,
                     .expires_at = expires_days ? (int64_t)time(NULL) + (int64_t)expires_days * 86400 : 0,
                     .scopes = sc, .models = mo, .routes = ro};
    bs_error err = {0};
    int rc = split_commas("--scopes", scopes, sc, &spec.n_scopes, &b1);
    if (!rc) rc = split_commas("--models", models, mo, &spec.n_models, &b2);
    if (!rc) rc = split_commas("--routes", routes, ro, &spec.n_routes, &b3);
    if (!rc && period && limit_period_parse(period, &spec.budget_period, &err) != BS_OK) {
        fprintf(stderr, "basalt keys: --period: %s\n", err.msg);
        rc = 2;
    }
    char *secret = NULL;
    key_info info = {0};
    if (!rc && keys_create(reg, &spec, &secret, &info, &err) != BS_OK) rc = cli_report("keys", &err);
    if (!rc && audit_record(store, "", "key.create", info.id, NULL, NULL, &err) != BS_OK)
        rc = cli_report("keys", &err);
    if (!rc) {
        printf("%s\n", secret);
        print_key(&info);
    }
    free(secret);
    key_info_clear(&info);
    free(b1);
    free(b2);
    free(b3);
    return rc;
}

int cmd_keys(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    const char *name = NULL, *scopes = NULL, *models = NULL, *routes = NULL, *period = NULL, *data = NULL,
               *store_url = NULL;
    int rpm = 0, tpm = 0, max_concurrent = 0, expires = 0;
    float budget = 0;
    const cli_opt opts[] = {
        {"--name", NULL, OPT_STRING, &name, "N", "the key's name (create)"},
        {"--scopes", NULL, OPT_STRING, &scopes, "LIST", "inference,files,fine-tune,admin (default inference)"},
        {"--models", NULL, OPT_STRING, &models, "LIST", "models the key may use (default all)"},
        {"--routes", NULL, OPT_STRING, &routes, "LIST", "gateway routes the key may use (default all)"},
        {"--rpm", NULL, OPT_INT, &rpm, "N", "requests per minute (0: unlimited)"},
        {"--tpm", NULL, OPT_INT, &tpm, "N", "tokens per minute (0: unlimited)"},
        {"--max-concurrent", NULL, OPT_INT, &max_concurrent, "N", "requests in flight (0: unlimited)"},
        {"--budget", NULL, OPT_FLOAT, &budget, "USD", "spend allowed per --period (0: none)"},
        {"--period", NULL, OPT_STRING, &period, "P", "day or month (default day)"},
        {"--expires-in", NULL, OPT_INT, &expires, "DAYS", "the key expires after DAYS days (0: never)"},
        {"--data", NULL, OPT_STRING, &data, "DIR", "state directory (default $BASALT_DATA, else XDG data dir)"},
        {"--store", NULL, OPT_STRING, &store_url, "URL", "postgres://… store shared by replicas (default SQLite)"},
        {0},
    };
    int rc = cli_parse(&keys_cmd, opts, argc, argv, pos, 2, 1);
    if (rc) return rc == 1 ? 0 : 2;
    const char *action = pos[0];
    if (strcmp(action, "create") != 0 && strcmp(action, "list") != 0 && strcmp(action, "revoke") != 0) {
        fprintf(stderr, "basalt keys: unknown action '%s' (expected create, list or revoke)\nusage: basalt keys %s\n",
                action, keys_cmd.usage);
        return 2;
    }
    if ((strcmp(action, "revoke") == 0) != (pos[1] != NULL)) {
        fprintf(stderr, "basalt keys: %s\nusage: basalt keys %s\n",
                pos[1] ? "only revoke takes an argument" : "revoke: which KEY_ID?", keys_cmd.usage);
        return 2;
    }
    char *dir = NULL;
    bs_store *store = NULL;
    keys_registry *reg = NULL;
    bs_error err = {0};
    if (bs_data_dir(data, &dir, &err) != BS_OK || bs_make_dirs(dir, 0700, &err) != BS_OK ||
        store_open_url(store_url, dir, &store, &err) != BS_OK || keys_open(store, &reg, &err) != BS_OK) {
        rc = cli_report("keys", &err);
    } else if (strcmp(action, "create") == 0) {
        rc = create(reg, store, name, scopes, models, routes, rpm, tpm, max_concurrent, budget, period, expires);
    } else if (strcmp(action, "list") == 0) {
        key_info *items;
        size_t n;
        if (keys_list(reg, NULL, &items, &n, &err) != BS_OK) {
            rc = cli_report("keys", &err);
        } else {
            for (size_t i = 0; i < n; i++) print_key(&items[i]);
            key_infos_free(items, n);
        }
    } else {
        key_info info = {0};
        if (keys_revoke(reg, pos[1], &info, &err) != BS_OK ||
            audit_record(store, "", "key.revoke", pos[1], NULL, NULL, &err) != BS_OK)
            rc = cli_report("keys", &err);
        else print_key(&info);
        key_info_clear(&info);
    }
    keys_close(reg);
    store_close(store);
    free(dir);
    return rc;
}
