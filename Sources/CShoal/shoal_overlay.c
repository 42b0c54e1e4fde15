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

uint64_t shoal_csum_add(const void *data, size_t len, uint64_t acc) {
    const unsigned char *p = data;
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
