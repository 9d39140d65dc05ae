#ifndef CNL_FDPASS_H
#define CNL_FDPASS_H

#include <stddef.h>

// Passing file descriptors over a Unix socket (SCM_RIGHTS).
//
// In C because the control-message macros (CMSG_FIRSTHDR, CMSG_DATA, CMSG_SPACE) are
// not importable into Swift. Used by `airlock run` in rootless mode: the child that
// built the sandbox inside a user namespace hands the gateway's listening sockets to
// the parent, which serves them from the host namespace.

/// The most descriptors one message carries.
#define CNL_FDPASS_MAX 16

/// Sends `len` bytes of `data` (at least 1) and `count` descriptors on `sock`.
/// Returns 0 or -errno.
int cnl_send_fds(int sock, const void *data, size_t len, const int *fds, int count);

/// Receives one message: up to `cap` bytes into `data` and up to `max` descriptors
/// into `fds` (marked close-on-exec). Sets `*received_fds`. Returns the number of
/// bytes read (0 at end of stream) or -errno. -EMSGSIZE when descriptors were cut off.
long cnl_recv_fds(int sock, void *data, size_t cap, int *fds, int max, int *received_fds);

#endif
