#ifndef CNL_PROCESS_H
#define CNL_PROCESS_H

// Process attributes set through prctl(2), which is variadic in C and so not callable
// from Swift. Each returns 0 or -errno.

/// PR_SET_DUMPABLE: 0 keeps same-uid processes from ptracing this one or reading its
/// memory and environ.
int cnl_set_dumpable(int dumpable);

/// PR_SET_PDEATHSIG: `signal` is delivered when the thread that created this process exits.
int cnl_set_parent_death_signal(int signal);

/// Whether a fresh procfs can be mounted here the way a sandbox mounts one: in a new PID
/// namespace, a child makes `/` private and mounts proc on /proc. Call it in a process that
/// has mount and user namespaces of its own (what it mounts stays there). Returns 0 when
/// the mount works, else the errno (EPERM where parts of the current /proc are mounted
/// over, as in a container, and this is not the host's user namespace).
int cnl_probe_fresh_proc(void);

#endif
