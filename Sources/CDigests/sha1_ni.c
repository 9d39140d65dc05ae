#include "CDigests.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

int airlock_sha1_accelerated(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    int sha = (ebx >> 29) & 1;
    return ssse3 && sse41 && sha;
}

/* The SHA extensions keep a vector's first word in its highest lane: the state as (a, b,
 * c, d) from high to low, e alone in the high lane, message words w[t] .. w[t+3] from
 * high to low. One sha1rnds4 does four rounds; sha1nexte derives the next four rounds'
 * e (a of the state four rounds back, rotated by 30) and adds it to their first word;
 * sha1msg1, a xor and sha1msg2 extend the message schedule four words at a time. */

#define ROUNDS4(f)                                                   \
    do {                                                             \
        if (g >= 4) {                                                \
            msg[g & 3] = _mm_sha1msg2_epu32(                         \
                _mm_xor_si128(_mm_sha1msg1_epu32(msg[g & 3], msg[(g + 1) & 3]), msg[(g + 2) & 3]), \
                msg[(g + 3) & 3]);                                   \
        }                                                            \
        __m128i we = g == 0 ? _mm_add_epi32(e, msg[0]) : _mm_sha1nexte_epu32(before, msg[g & 3]); \
        before = abcd;                                               \
        abcd = _mm_sha1rnds4_epu32(abcd, we, f);                     \
    } while (0)

__attribute__((target("sha,ssse3,sse4.1")))
void airlock_sha1_blocks(uint32_t state[5], const uint8_t *data, size_t blocks) {
    const __m128i reverse = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)state), 0x1B);
    __m128i e = _mm_set_epi32((int)state[4], 0, 0, 0);
    for (size_t block = 0; block < blocks; block++, data += 64) {
        const __m128i abcd_start = abcd, e_start = e;
        __m128i msg[4], before = abcd;
        for (int i = 0; i < 4; i++) {
            msg[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), reverse);
        }
        int g = 0;
#pragma clang loop unroll(full)
        for (; g < 5; g++) ROUNDS4(0);
#pragma clang loop unroll(full)
        for (; g < 10; g++) ROUNDS4(1);
#pragma clang loop unroll(full)
        for (; g < 15; g++) ROUNDS4(2);
#pragma clang loop unroll(full)
        for (; g < 20; g++) ROUNDS4(3);
        /* e after 80 rounds is a of the state four rounds back, rotated: add it to the
         * block's starting e, as the state's other words are added below. */
        e = _mm_sha1nexte_epu32(before, e_start);
        abcd = _mm_add_epi32(abcd, abcd_start);
    }
    _mm_storeu_si128((__m128i *)state, _mm_shuffle_epi32(abcd, 0x1B));
    state[4] = (uint32_t)_mm_extract_epi32(e, 3);
}

#else

int airlock_sha1_accelerated(void) { return 0; }
void airlock_sha1_blocks(uint32_t state[5], const uint8_t *data, size_t blocks) {
    (void)state; (void)data; (void)blocks;
}

#endif
