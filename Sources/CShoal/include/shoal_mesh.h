// CShoal, routing mesh: epoll (its event struct is packed on x86-64, so Swift reads it through
// these accessors), eventfd wake-ups, TCP tuning and the reset-on-close used to refuse.
#ifndef SHOAL_MESH_H
#define SHOAL_MESH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHOAL_EV_IN 0x001u
#define SHOAL_EV_OUT 0x004u
#define SHOAL_EV_ERR 0x008u
#define SHOAL_EV_HUP 0x010u
#define SHOAL_EV_RDHUP 0x2000u
#define SHOAL_EV_ET 0x80000000u

/// epoll_create1(EPOLL_CLOEXEC).
int shoal_epoll_create(void);
/// epoll_ctl ADD / MOD / DEL with a 64-bit cookie.
int shoal_epoll_add(int ep, int fd, uint32_t events, uint64_t data);
int shoal_epoll_mod(int ep, int fd, uint32_t events, uint64_t data);
int shoal_epoll_del(int ep, int fd);
/// An event array of `n` entries (malloc'd once per reactor; free with free()).
struct epoll_event *shoal_epoll_events(int n);
int shoal_epoll_wait(int ep, struct epoll_event *events, int n, int timeout_ms);
static inline uint32_t shoal_epoll_event_mask(const struct epoll_event *events, int i) { return events[i].events; }
static inline uint64_t shoal_epoll_event_data(const struct epoll_event *events, int i) { return events[i].data.u64; }

/// eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC), and its signal / drain.
int shoal_eventfd(void);
void shoal_eventfd_signal(int fd);
void shoal_eventfd_drain(int fd);

/// TCP_NODELAY, and keepalive (SO_KEEPALIVE with TCP_KEEPIDLE/INTVL/CNT) when idle_s > 0.
int shoal_tcp_tune(int fd, int nodelay, int idle_s, int interval_s, int count);
/// SO_LINGER {1, 0}: the next close sends RST (a clear refusal) instead of FIN.
int shoal_set_linger_reset(int fd);
/// shutdown(fd, SHUT_WR).
int shoal_shutdown_write(int fd);
/// recv with MSG_PEEK (PROXY headers are parsed before they are consumed).
ssize_t shoal_recv_peek(int fd, void *buf, size_t len);
/// Monotonic clock in milliseconds and in nanoseconds.
uint64_t shoal_now_ms(void);
uint64_t shoal_now_ns(void);
/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
long shoal_raise_nofile(void);

#ifdef __cplusplus
}
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif
/// Space for one IP_PKTINFO or IPV6_PKTINFO control message (either family).
size_t shoal_pktinfo_space(void);
/// Asks the kernel for the destination address of each datagram (IP_PKTINFO, IPV6_RECVPKTINFO).
int shoal_enable_pktinfo(int fd, int family);
/// The destination address of a received datagram: writes 4 or 16 bytes to `addr` and returns
/// 4 or 16, or 0 when the message carries no pktinfo.
int shoal_pktinfo_get(const struct msghdr *msg, uint8_t addr[16]);
/// Makes a reply leave from `addr` (4 or 16 bytes): writes the control message into
/// msg->msg_control (shoal_pktinfo_space() bytes) and sets msg_controllen.
void shoal_pktinfo_put(struct msghdr *msg, const uint8_t *addr, int len);
#ifdef __cplusplus
}
#endif
