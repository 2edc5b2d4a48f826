/* hub/sha256.h — SHA-256 (FIPS 180-4), streaming.
 * Downloads are verified against the hub's LFS sha256 while the bytes arrive,
 * so a multi-gigabyte file is not read twice; no crypto library is assumed. */
#ifndef BASALT_HUB_SHA256_H
#define BASALT_HUB_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

typedef struct sha256_ctx {
    uint32_t state[8];
    uint64_t length; /* bytes hashed so far */
    unsigned char block[64];
    size_t fill; /* bytes waiting in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
/* Finish and write the digest as 64 lowercase hex digits plus NUL. */
void sha256_final_hex(sha256_ctx *c, char hex[SHA256_HEX_LEN + 1]);

#endif
