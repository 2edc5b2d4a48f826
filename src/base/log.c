#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int current_level(void) {
    static int level = -1;
    if (level < 0) {
        const char *s = getenv("BASALT_LOG");
        level = BS_LOG_INFO;
        if (s && strcmp(s, "error") == 0) level = BS_LOG_ERROR;
        else if (s && strcmp(s, "warn") == 0) level = BS_LOG_WARN;
        else if (s && strcmp(s, "debug") == 0) level = BS_LOG_DEBUG;
    }
    return level;
}

double bs_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bs_log(bs_log_level level, const char *fmt, ...) {
    if ((int)level > current_level()) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so concurrent threads do not interleave mid-line. */
    fprintf(stderr, "basalt %s: %s\n", names[level], line);
}
