#define _GNU_SOURCE
#include "shoal_mesh.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

int shoal_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static int ctl(int ep, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(ep, op, fd, &ev);
}

int shoal_epoll_add(int ep, int fd, uint32_t events, uint64_t data) { return ctl(ep, EPOLL_CTL_ADD, fd, events, data); }
int shoal_epoll_mod(int ep, int fd, uint32_t events, uint64_t data) { return ctl(ep, EPOLL_CTL_MOD, fd, events, data); }
int shoal_epoll_del(int ep, int fd) { return ctl(ep, EPOLL_CTL_DEL, fd, 0, 0); }

struct epoll_event *shoal_epoll_events(int n) { return calloc((size_t)n, sizeof(struct epoll_event)); }

int shoal_epoll_wait(int ep, struct epoll_event *events, int n, int timeout_ms) {
    return epoll_wait(ep, events, n, timeout_ms);
}

int shoal_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

void shoal_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r;
}

void shoal_eventfd_drain(int fd) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
}

int shoal_tcp_tune(int fd, int nodelay, int idle_s, int interval_s, int count) {
    int one = 1;
    if (nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) return -1;
    if (idle_s > 0) {
        if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) != 0) return -1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s)) != 0) return -1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s)) != 0) return -1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)) != 0) return -1;
    }
    return 0;
}

int shoal_set_linger_reset(int fd) {
    struct linger l = {1, 0};
    return setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

int shoal_shutdown_write(int fd) { return shutdown(fd, SHUT_WR); }

ssize_t shoal_recv_peek(int fd, void *buf, size_t len) { return recv(fd, buf, len, MSG_PEEK | MSG_DONTWAIT); }

uint64_t shoal_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t shoal_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

long shoal_raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    }
    return (long)rl.rlim_cur;
}

size_t shoal_pktinfo_space(void) {
    size_t a = CMSG_SPACE(sizeof(struct in_pktinfo));
    size_t b = CMSG_SPACE(sizeof(struct in6_pktinfo));
    return a > b ? a : b;
}

int shoal_enable_pktinfo(int fd, int family) {
    int one = 1;
    if (family == AF_INET6) return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
}

int shoal_pktinfo_get(const struct msghdr *msg, uint8_t addr[16]) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            memcpy(addr, &pi.ipi_addr, 4);
            return 4;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            memcpy(addr, &pi.ipi6_addr, 16);
            return 16;
        }
    }
    return 0;
}

void shoal_pktinfo_put(struct msghdr *msg, const uint8_t *addr, int len) {
    struct cmsghdr *c = (struct cmsghdr *)msg->msg_control;
    memset(c, 0, shoal_pktinfo_space());
    if (len == 4) {
        struct in_pktinfo pi;
        memset(&pi, 0, sizeof(pi));
        memcpy(&pi.ipi_spec_dst, addr, 4);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        msg->msg_controllen = CMSG_SPACE(sizeof(pi));
    } else {
        struct in6_pktinfo pi;
        memset(&pi, 0, sizeof(pi));
        memcpy(&pi.ipi6_addr, addr, 16);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        msg->msg_controllen = CMSG_SPACE(sizeof(pi));
    }
}
