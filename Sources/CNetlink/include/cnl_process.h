#ifndef CNL_PROCESS_H
#define CNL_PROCESS_H

// Process attributes set through prctl(2), which is variadic in C and so not callable
// from Swift. Each returns 0 or -errno.

/// PR_SET_DUMPABLE: 0 keeps same-uid processes from ptracing this one or reading its
/// memory and environ.
int cnl_set_dumpable(int dumpable);

/// PR_SET_PDEATHSIG: `signal` is delivered when the thread that created this process exits.
int cnl_set_parent_death_signal(int signal);

#endif
