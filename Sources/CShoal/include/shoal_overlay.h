// CShoal, overlay area: namespace switching and signal descriptors, which Glibc does not
// import (setns and signalfd are _GNU_SOURCE / Linux-only).
#ifndef SHOAL_OVERLAY_H
#define SHOAL_OVERLAY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// setns(fd, CLONE_NEWNET) for the calling thread. Returns 0, or -1 with errno.
int shoal_setns_net(int fd);
/// Installs handlers for SIGINT, SIGTERM and SIGHUP (whatever thread receives them) that write
/// the signal number to a self-pipe; returns the pipe's non-blocking read end, or -1 with errno.
/// Call once per process.
int shoal_signal_pipe_terminate(void);
/// Reads one signal number from that pipe; 0 if none is pending, -1 on error.
int shoal_signal_pipe_read(int fd);

/// Internet checksum (RFC 1071) accumulation: adds `len` bytes at `data` to `acc`, summing
/// native-order 16-bit words (the result is byte-order independent once stored back natively).
uint64_t shoal_csum_add(const void *data, size_t len, uint64_t acc);
/// Folds an accumulator to 16 bits and complements it: the checksum, to store natively.
uint16_t shoal_csum_fold(uint64_t acc);

#ifdef __cplusplus
}
#endif
#endif
