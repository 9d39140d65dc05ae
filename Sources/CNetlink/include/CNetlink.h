// CNetlink: the only C in airlock.
//
// What lives here, and why it is C:
// - rtnetlink request builders over libmnl (cnl_netlink.h): nested attributes and
//   macros such as MNL_SOCKET_BUFFER_SIZE that Swift cannot import cleanly;
// - the child setup that runs between fork and exec (cnl_spawn.h): it must be
//   async-signal-safe, which Swift code is not;
// - libcap calls (cnl_caps.h);
// - the sandbox's seccomp filter over libseccomp (cnl_seccomp.h);
// - the port binder, a forked helper that binds listeners in G for a gateway that has
//   dropped its privileges (cnl_binder.h);
// - the unix sockets bound to paths, over sock_diag (cnl_unixdiag.h).
//
// Conventions: every symbol is prefixed `cnl_`; functions return 0 or a value >= 0 on
// success and -errno on failure; Swift turns that into one error type.
#ifndef CNETLINK_H
#define CNETLINK_H

#include "cnl_netlink.h"
#include "cnl_spawn.h"
#include "cnl_caps.h"
#include "cnl_fdpass.h"
#include "cnl_binder.h"
#include "cnl_process.h"
#include "cnl_seccomp.h"
#include "cnl_unixdiag.h"

#endif
