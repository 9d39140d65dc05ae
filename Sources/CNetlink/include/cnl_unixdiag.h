#ifndef CNL_UNIXDIAG_H
#define CNL_UNIXDIAG_H

#include <stddef.h>

/// Calls `each` with the path of every unix socket of the calling thread's network
/// namespace that is bound to a file system name, exactly as the kernel holds it (any byte
/// but NUL, a newline included), over NETLINK_SOCK_DIAG. Abstract and unbound sockets are
/// skipped. Returns 0, or -errno: -EPROTONOSUPPORT or -ENOENT where the kernel has no
/// unix_diag; -EPROTO for a reply it cannot read.
int cnl_unix_socket_paths(void (*each)(void *context, const char *path, size_t length), void *context);

#endif
