/* cli/args.h — table-driven flag parsing shared by every subcommand.
 * One table per command both parses argv and prints `basalt CMD --help`, so
 * the help text cannot drift from the flags that exist. */
#ifndef BASALT_CLI_ARGS_H
#define BASALT_CLI_ARGS_H

#include <stdint.h>

typedef enum { OPT_STRING, OPT_INT, OPT_FLOAT, OPT_U64, OPT_FLAG, OPT_STRING_LIST } cli_opt_type;

typedef struct cli_opt {
    const char *name;  /* "--top-p" */
    const char *alias; /* "-n" or NULL */
    cli_opt_type type;
    void *dest; /* const char**, int*, float*, uint64_t*, int* (flag), cli_string_list* */
    const char *metavar;
    const char *help;
} cli_opt;

#define CLI_LIST_MAX 16
typedef struct cli_string_list {
    const char *items[CLI_LIST_MAX];
    int n;
} cli_string_list;

typedef struct cli_command {
    const char *name;
    const char *usage;   /* "MODEL --text STR | --file F [--special]" */
    const char *summary; /* one line for `basalt --help` */
    const char *details; /* extra paragraph for `basalt CMD --help`, or NULL */
} cli_command;

/* Parse argv (after the command name).  Positionals are stored in order in
 * positional[0..max_positional).  Returns 0 to proceed, 1 when --help was
 * printed, 2 on a usage error (already reported on stderr). */
int cli_parse(const cli_command *cmd, const cli_opt *opts, int argc, char **argv,
              const char **positional, int max_positional, int min_positional);

void cli_print_help(const cli_command *cmd, const cli_opt *opts);

/* Parse "1 2 3" (spaces or commas) into a malloc'ed array.  Returns 0 on
 * success, else prints what is wrong and returns 2. */
int cli_parse_ids(const char *flag, const char *s, int32_t **ids, int *n);

#endif
