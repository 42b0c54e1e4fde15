// CShoal, overlay area: namespace switching and signal descriptors, which Glibc does not
// import (setns and signalfd are _GNU_SOURCE / Linux-only).
#ifndef SHOAL_OVERLAY_H
#define SHOAL_OVERLAY_H

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

#ifdef __cplusplus
}
#endif
#endif
