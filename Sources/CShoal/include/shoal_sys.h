// CShoal: what Glibc does not import into Swift (variadic ioctls, CMSG_* macros, mmsghdr
// helpers, splice). Each area keeps its own header under include/ (the module map is generated
// from this directory), so new areas add a file rather than edit a shared one.
#ifndef SHOAL_SYS_H
#define SHOAL_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: errno-safe syscalls. Each returns -1 and leaves errno set on failure.

/// ioctl(2) with a pointer argument (Swift cannot call the variadic one).
int shoal_ioctl_ptr(int fd, unsigned long request, void *arg);
/// ioctl(2) with an integer argument.
int shoal_ioctl_int(int fd, unsigned long request, unsigned long arg);
/// fcntl(2) F_SETFL with O_NONBLOCK added.
int shoal_set_nonblocking(int fd);
/// splice(2).
ssize_t shoal_splice(int fd_in, int fd_out, size_t len, unsigned int flags);
/// pipe2(2) with O_NONBLOCK|O_CLOEXEC; fds[0] read end, fds[1] write end.
int shoal_pipe_nonblocking(int fds[2]);
/// fcntl(F_SETPIPE_SZ).
int shoal_set_pipe_size(int fd, int size);
/// Layout-identical to glibc's `struct mmsghdr` (only declared under _GNU_SOURCE, which the
/// Swift Glibc module does not define).
struct shoal_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
/// recvmmsg(2) / sendmmsg(2) on arrays the caller owns.
int shoal_recvmmsg(int fd, struct shoal_mmsghdr *msgs, unsigned int n, int flags);
int shoal_sendmmsg(int fd, struct shoal_mmsghdr *msgs, unsigned int n, int flags);
/// accept4(2) with SOCK_NONBLOCK|SOCK_CLOEXEC.
int shoal_accept4(int fd, struct sockaddr *addr, socklen_t *len);

// MARK: TUN/TAP.

/// Opens /dev/net/tun and attaches a TAP device named `name` (IFF_TAP|IFF_NO_PI, plus
/// IFF_VNET_HDR when vnet_hdr != 0). Returns the fd, -1 with errno on failure.
/// The kernel's chosen name is written back into `name` (IFNAMSIZ bytes).
int shoal_tap_open(char *name, int vnet_hdr, int multi_queue);
/// TUNSETOFFLOAD with the given TUN_F_* flags.
int shoal_tap_set_offload(int fd, unsigned int flags);
/// TUNSETVNETHDRSZ.
int shoal_tap_set_vnet_hdr_size(int fd, int size);
/// TUNSETPERSIST 0.
int shoal_tap_set_persist(int fd, int persist);

unsigned int shoal_tun_f_csum(void);
unsigned int shoal_tun_f_tso4(void);
unsigned int shoal_tun_f_tso6(void);
unsigned int shoal_tun_f_ecn(void);
unsigned int shoal_tun_f_uso4(void);
unsigned int shoal_tun_f_uso6(void);

// MARK: control messages.

/// Space for one cmsg carrying `len` payload bytes (CMSG_SPACE).
size_t shoal_cmsg_space(size_t len);
/// Writes one cmsg (level, type, payload) at the start of msg->msg_control and sets
/// msg_controllen. Returns 0, or -1 if msg_controllen is too small.
int shoal_cmsg_put_u16(struct msghdr *msg, int level, int type, uint16_t value);
/// Scans msg's control data for (level, type) carrying an int or u16; returns the value or -1.
int shoal_cmsg_get_int(const struct msghdr *msg, int level, int type);

int shoal_sol_udp(void);
int shoal_udp_segment(void);
int shoal_udp_gro(void);

// MARK: threads and queues.

/// SO_ATTACH_REUSEPORT_CBPF with the program "return current CPU % n": a datagram goes to the
/// socket of the reuseport group whose index (bind order) is the CPU that received it, mod n.
int shoal_reuseport_steer_by_cpu(int fd, unsigned int n);
/// Pins the calling thread to `cpu` (pthread_setaffinity_np). Returns 0 or an errno value.
int shoal_pin_thread_to_cpu(int cpu);

#ifdef __cplusplus
}
#endif
#endif
