/* cli/main.c — the `basalt` command: dispatch to subcommands. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        printf("usage: basalt COMMAND [ARGS]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "basalt: unknown command '%s' (see basalt --help)\n", argv[1]);
    return 2;
}
