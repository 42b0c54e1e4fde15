#define _GNU_SOURCE
#include "shoal_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/udp.h>
#include <linux/filter.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

int shoal_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
int shoal_ioctl_int(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }

int shoal_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

ssize_t shoal_splice(int fd_in, int fd_out, size_t len, unsigned int flags) {
    return splice(fd_in, NULL, fd_out, NULL, len, flags);
}

int shoal_pipe_nonblocking(int fds[2]) { return pipe2(fds, O_NONBLOCK | O_CLOEXEC); }

int shoal_set_pipe_size(int fd, int size) { return fcntl(fd, F_SETPIPE_SZ, size); }

_Static_assert(sizeof(struct shoal_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");

int shoal_recvmmsg(int fd, struct shoal_mmsghdr *msgs, unsigned int n, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)msgs, n, flags, NULL);
}

int shoal_sendmmsg(int fd, struct shoal_mmsghdr *msgs, unsigned int n, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)msgs, n, flags);
}

int shoal_accept4(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int shoal_tap_open(char *name, int vnet_hdr, int multi_queue) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (vnet_hdr) ifr.ifr_flags |= IFF_VNET_HDR;
    if (multi_queue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    memcpy(name, ifr.ifr_name, IFNAMSIZ);
    return fd;
}

int shoal_tap_set_offload(int fd, unsigned int flags) { return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags); }
int shoal_tap_set_vnet_hdr_size(int fd, int size) { return ioctl(fd, TUNSETVNETHDRSZ, &size); }
int shoal_tap_set_persist(int fd, int persist) { return ioctl(fd, TUNSETPERSIST, (unsigned long)persist); }

unsigned int shoal_tun_f_csum(void) { return TUN_F_CSUM; }
unsigned int shoal_tun_f_tso4(void) { return TUN_F_TSO4; }
unsigned int shoal_tun_f_tso6(void) { return TUN_F_TSO6; }
unsigned int shoal_tun_f_ecn(void) { return TUN_F_TSO_ECN; }
unsigned int shoal_tun_f_uso4(void) { return TUN_F_USO4; }
unsigned int shoal_tun_f_uso6(void) { return TUN_F_USO6; }

size_t shoal_cmsg_space(size_t len) { return CMSG_SPACE(len); }

int shoal_cmsg_put_u16(struct msghdr *msg, int level, int type, uint16_t value) {
    if (msg->msg_controllen < CMSG_SPACE(sizeof(uint16_t))) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(msg);
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &value, sizeof(value));
    msg->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
    return 0;
}

int shoal_cmsg_get_int(const struct msghdr *msg, int level, int type) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == level && c->cmsg_type == type) {
            if (c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int v;
                memcpy(&v, CMSG_DATA(c), sizeof(v));
                return v;
            }
            if (c->cmsg_len >= CMSG_LEN(sizeof(uint16_t))) {
                uint16_t v;
                memcpy(&v, CMSG_DATA(c), sizeof(v));
                return v;
            }
        }
    }
    return -1;
}

int shoal_sol_udp(void) { return IPPROTO_UDP; }
int shoal_udp_segment(void) { return UDP_SEGMENT; }
int shoal_udp_gro(void) { return UDP_GRO; }

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

int shoal_reuseport_steer_by_cpu(int fd, unsigned int n) {
    struct sock_filter code[] = {
        {BPF_LD | BPF_W | BPF_ABS, 0, 0, (unsigned int)(SKF_AD_OFF + SKF_AD_CPU)},
        {BPF_ALU | BPF_MOD | BPF_K, 0, 0, n},
        {BPF_RET | BPF_A, 0, 0, 0},
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog));
}

int shoal_pin_thread_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}
