#ifndef CNL_BINDER_H
#define CNL_BINDER_H

#include <stdint.h>
#include <sys/types.h>

// The port binder: a forked helper that binds listening TCP sockets inside the gateway
// namespace for a gateway that has dropped its privileges.
//
// Why C: the helper runs between fork and its own exit without exec, in a process that
// may hold other threads' state, so it may call only async-signal-safe functions (no
// Swift runtime, no malloc); and SCM_RIGHTS needs the control-message macros.
//
// What it can do: bind a TCP socket on the one address it was started with, on a port
// from 1 to 65535, listen, and send it back. Nothing else: no other address, no UDP, no
// exec. It runs as the gateway's unprivileged account with CAP_NET_BIND_SERVICE alone
// (ports below 1024), not dumpable, no_new_privs, with every inherited descriptor closed
// but its end of the pair, and exits when the gateway closes its end or dies.

/// Forks the binder. The child enters the network namespace `netns_fd`, drops to
/// `uid`/`gid`/`groups` keeping only CAP_NET_BIND_SERVICE, and answers requests on its
/// end of a SOCK_SEQPACKET pair. Returns the caller's end (close-on-exec) once the child
/// is set up and sets `*pid`, or -errno: of fork or socketpair, or of the child's step that
/// failed (the child is then reaped).
/// Requires: CAP_SYS_ADMIN (setns), CAP_SETUID, CAP_SETGID, CAP_SETPCAP in the caller.
int cnl_binder_start(int netns_fd, uint32_t address_network_order, int backlog,
                     uid_t uid, gid_t gid, const gid_t *groups, size_t count, pid_t *pid);

/// Asks the binder on `sock` for a listening TCP socket on `port`. Returns the descriptor
/// (close-on-exec) or -errno: the binder's errno for socket, bind or listen; -EPIPE or
/// -ECONNRESET when the binder is gone; -EINVAL for port 0.
int cnl_binder_bind(int sock, uint16_t port);

#endif
