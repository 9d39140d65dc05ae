// Capabilities through libcap, and the privilege drop of the gateway process.
//
// Why C: libcap's cap_t and the capability constants are C macros and opaque types;
// keeping them here gives Swift a handful of plain functions.
#ifndef CNL_CAPS_H
#define CNL_CAPS_H

#include <stdint.h>
#include <sys/types.h>

/// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap), or -errno.
int cnl_cap_last_cap(void);

/// Reads the effective, permitted, inheritable, bounding and ambient sets of the calling thread.
int cnl_cap_read(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable,
                 uint64_t *bounding, uint64_t *ambient);

/// A cap_t with every set clear (to be applied with cap_set_proc in a child). NULL on failure.
void *cnl_cap_new_empty(void);

/// A cap_t with `values` permitted, effective and inheritable. NULL on failure.
void *cnl_cap_new_with(const int *values, size_t count);

/// Frees a cap_t made by the functions above.
void cnl_cap_free(void *caps);

/// The name libcap gives to a capability ("cap_net_admin"), written into `buffer`.
int cnl_cap_name(int value, char *buffer, size_t size);

/// Drops the calling process to `uid`/`gid`/`groups` with no capabilities at all: the
/// bounding set and ambient set cleared, PR_SET_DUMPABLE 0, PR_SET_NO_NEW_PRIVS 1.
/// Returns 0 or -errno; `step` receives the failing step (enum cnl_spawn_step).
int cnl_drop_process_privileges(uid_t uid, gid_t gid, const gid_t *groups, size_t count, int *step);

/// Keeps only the capabilities `values` (permitted and effective; every other one leaves the
/// bounding set, the ambient set is cleared), then PR_SET_DUMPABLE 0 and
/// PR_SET_NO_NEW_PRIVS 1. The uid stays as it is. Returns 0 or -errno.
int cnl_keep_only_caps(const int *values, size_t count);

/// The libcap version this was built against ("2.66").
const char *cnl_libcap_version(void);

#endif
