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
