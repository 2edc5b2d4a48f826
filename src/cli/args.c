#include "cli/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_opt *find_opt(const cli_opt *opts, const char *arg) {
    for (const cli_opt *o = opts; o && o->name; o++)
        if (strcmp(arg, o->name) == 0 || (o->alias && strcmp(arg, o->alias) == 0)) return o;
    return NULL;
}

static int store_value(const cli_command *cmd, const cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_STRING: *(const char **)o->dest = v; return 0;
    case OPT_STRING_LIST: {
        cli_string_list *l = o->dest;
        if (l->n == CLI_LIST_MAX) {
            fprintf(stderr, "basalt %s: %s given more than %d times\n", cmd->name, o->name, CLI_LIST_MAX);
            return 2;
        }
        l->items[l->n++] = v;
        return 0;
    }
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || *end || end == v || x < -2147483647L || x > 2147483647L) break;
        *(int *)o->dest = (int)x;
        return 0;
    }
    case OPT_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end || end == v || v[0] == '-') break;
        *(uint64_t *)o->dest = x;
        return 0;
    }
    case OPT_FLOAT: {
        float x = strtof(v, &end);
        if (errno || *end || end == v) break;
        *(float *)o->dest = x;
        return 0;
    }
    case OPT_FLAG: break;
    }
    fprintf(stderr, "basalt %s: %s expects %s, got '%s'\n", cmd->name, o->name,
            o->type == OPT_FLOAT ? "a number" : "an integer", v);
    return 2;
}

int cli_parse(const cli_command *cmd, const cli_opt *opts, int argc, char **argv,
              const char **positional, int max_positional, int min_positional) {
    int n_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_print_help(cmd, opts);
            return 1;
        }
        if (a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            char name[64];
            const char *inline_value = NULL;
            if (eq && a[1] == '-' && (size_t)(eq - a) < sizeof name) {
                memcpy(name, a, (size_t)(eq - a));
                name[eq - a] = '\0';
                inline_value = eq + 1;
                a = name;
            }
            const cli_opt *o = find_opt(opts, a);
            if (!o) {
                fprintf(stderr, "basalt %s: unknown option '%s' (see basalt %s --help)\n", cmd->name, a,
                        cmd->name);
                return 2;
            }
            if (o->type == OPT_FLAG) {
                *(int *)o->dest = 1;
                continue;
            }
            const char *v = inline_value;
            if (!v) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "basalt %s: %s needs a value (%s)\n", cmd->name, o->name, o->metavar);
                    return 2;
                }
                v = argv[++i];
            }
            int rc = store_value(cmd, o, v);
            if (rc) return rc;
            continue;
        }
        if (n_pos == max_positional) {
            fprintf(stderr, "basalt %s: unexpected argument '%s'\nusage: basalt %s %s\n", cmd->name, a,
                    cmd->name, cmd->usage);
            return 2;
        }
        positional[n_pos++] = a;
    }
    if (n_pos < min_positional) {
        fprintf(stderr, "basalt %s: missing argument\nusage: basalt %s %s\n", cmd->name, cmd->name,
                cmd->usage);
        return 2;
    }
    return 0;
}

void cli_print_help(const cli_command *cmd, const cli_opt *opts) {
    printf("usage: basalt %s %s\n\n%s\n", cmd->name, cmd->usage, cmd->summary);
    if (cmd->details) printf("\n%s\n", cmd->details);
    if (opts && opts->name) printf("\noptions:\n");
    for (const cli_opt *o = opts; o && o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name,
                 o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-26s %s\n", left, o->help);
    }
    printf("  %-26s %s\n", "-h, --help", "show this help");
}

int cli_parse_ids(const char *flag, const char *s, int32_t **ids, int *n) {
    size_t cap = 16;
    int count = 0;
    int32_t *out = malloc(cap * sizeof *out);
    const char *p = s;
    while (out) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 2147483647L) {
            fprintf(stderr, "basalt: %s: '%.20s' is not a token id (expected non-negative integers)\n", flag, p);
            free(out);
            return 2;
        }
        if ((size_t)count == cap) {
            int32_t *grown = realloc(out, 2 * cap * sizeof *out);
            if (!grown) {
                free(out);
                out = NULL;
                break;
            }
            out = grown;
            cap *= 2;
        }
        out[count++] = (int32_t)v;
        p = end;
    }
    if (!out) {
        fprintf(stderr, "basalt: out of memory\n");
        return 2;
    }
    if (count == 0) {
        fprintf(stderr, "basalt: %s: no token ids given\n", flag);
        free(out);
        return 2;
    }
    *ids = out;
    *n = count;
    return 0;
}
