#define _GNU_SOURCE
#include "shoal_overlay.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <fcntl.h>
#include <string.h>

int shoal_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }

static int shoal_signal_pipe_w = -1;

static void shoal_signal_pipe_handler(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    (void)!write(shoal_signal_pipe_w, &b, 1);
    errno = saved;
}

int shoal_signal_pipe_terminate(void) {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return -1;
    shoal_signal_pipe_w = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = shoal_signal_pipe_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGHUP, &sa, NULL) < 0)
        return -1;
    return fds[0];
}

int shoal_signal_pipe_read(int fd) {
    unsigned char b;
    ssize_t n = read(fd, &b, 1);
    if (n == 1) return (int)b;
    if (n < 0 && errno == EAGAIN) return 0;
    return -1;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* The 64-byte blocks of `p` with AVX2: each 32-bit word w = hi·2^16 + lo is added as hi + lo
 * (equal modulo 0xFFFF, which is all the one's complement sum keeps) into 32-bit lanes; a lane
 * gains at most 2 × 0xFFFF per block, so lanes are emptied into the 64-bit sum every 4096
 * blocks (256 KiB), far below overflow. Returns the sum; *done is the bytes consumed. */
__attribute__((target("avx2"))) static uint64_t shoal_csum_add_avx2(const unsigned char *p, size_t len,
                                                                     uint64_t acc, size_t *done) {
    const __m256i low = _mm256_set1_epi32(0xFFFF);
    size_t blocks = len / 64, i = 0;
    while (i < blocks) {
        size_t end = blocks - i > 4096 ? i + 4096 : blocks;
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        for (; i < end; i++) {
            __m256i a = _mm256_loadu_si256((const __m256i *)(p + 64 * i));
            __m256i b = _mm256_loadu_si256((const __m256i *)(p + 64 * i + 32));
            s0 = _mm256_add_epi32(s0, _mm256_add_epi32(_mm256_and_si256(a, low), _mm256_srli_epi32(a, 16)));
            s1 = _mm256_add_epi32(s1, _mm256_add_epi32(_mm256_and_si256(b, low), _mm256_srli_epi32(b, 16)));
        }
        uint32_t lanes[16];
        _mm256_storeu_si256((__m256i *)lanes, s0);
        _mm256_storeu_si256((__m256i *)(lanes + 8), s1);
        for (int k = 0; k < 16; k++) acc += lanes[k];
    }
    *done = blocks * 64;
    return acc;
}
#endif

uint64_t shoal_csum_add(const void *data, size_t len, uint64_t acc) {
    const unsigned char *p = data;
#if defined(__x86_64__)
    /* Segments (about 1.4 KB) take the AVX2 loop; headers the plain one. What is left after
     * the blocks starts at an even offset, so 16-bit words stay aligned as RFC 1071 needs. */
    if (len >= 256 && __builtin_cpu_supports("avx2")) {
        size_t done;
        acc = shoal_csum_add_avx2(p, len, acc, &done);
        p += done;
        len -= done;
    }
#endif
    while (len >= 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        acc += (uint64_t)a + b;
        p += 8;
        len -= 8;
    }
    if (len >= 4) {
        uint32_t a;
        memcpy(&a, p, 4);
        acc += a;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        uint16_t a;
        memcpy(&a, p, 2);
        acc += a;
        p += 2;
        len -= 2;
    }
    if (len) {
        uint16_t a = 0;
        memcpy(&a, p, 1);  /* the odd byte, padded with a zero byte after it */
        acc += a;
    }
    return acc;
}

uint16_t shoal_csum_fold(uint64_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}
