/* server/internal_auth.c — the per-process token of internal requests. */
#include "server/internal_auth.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static char token[65];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int token_ok;

static void make_token(void) {
    unsigned char b[32];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) return;
    for (size_t i = 0; i < sizeof b; i++) snprintf(token + 2 * i, 3, "%02x", b[i]);
    token_ok = 1;
}

bs_status internal_auth_init(bs_error *err) {
    pthread_once(&once, make_token);
    return token_ok ? BS_OK : bs_fail(err, BS_EIO, "internal auth: getrandom failed");
}

const char *internal_auth_token(void) { return token; }

int internal_auth_check(const char *value) {
    if (!token_ok || !value || strlen(value) != sizeof token - 1) return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < sizeof token - 1; i++) diff |= (unsigned char)(value[i] ^ token[i]);
    return diff == 0;
}
