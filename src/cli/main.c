/* cli/main.c — placeholder entry while the engine lands (replaced below). */
#include <stdio.h>
int main(void) {
    fprintf(stderr, "basalt: building\n");
    return 2;
}
