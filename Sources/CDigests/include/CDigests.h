#ifndef AIRLOCK_CDIGESTS_H
#define AIRLOCK_CDIGESTS_H

#include <stddef.h>
#include <stdint.h>

/* SHA-1's block function on the x86 SHA extensions (SHA-NI), for the pack reader's object
 * ids. The Swift implementation in Digests is the reference and the fallback. */

/* 1 when this CPU has the SHA extensions (and the SSSE3/SSE4.1 they are used with). */
int airlock_sha1_accelerated(void);

/* Compresses `blocks` 64-byte blocks at `data` into `state` (a, b, c, d, e). Call only when
 * airlock_sha1_accelerated() is 1. */
void airlock_sha1_blocks(uint32_t state[5], const uint8_t *data, size_t blocks);

#endif
