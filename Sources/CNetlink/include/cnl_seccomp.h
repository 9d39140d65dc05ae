// The sandbox's seccomp filter, built with libseccomp.
//
// Why C: libseccomp is a C library whose rule macros (SCMP_A0, SCMP_SYS) Swift cannot
// import, and the filter must be built in the parent and only loaded (one prctl) in the
// child between clone and execve, where nothing but system calls may run.
#ifndef CNL_SECCOMP_H
#define CNL_SECCOMP_H

#include <stddef.h>

/// A compiled classic-BPF seccomp program (an array of `struct sock_filter`).
struct cnl_seccomp_program {
    void *instructions;    // malloc'ed `struct sock_filter[count]`; free with cnl_seccomp_free
    unsigned short count;
};

/// Builds the sandbox's filter, modelled on Docker's default profile: every system call
/// is allowed except new user namespaces (clone/unshare with CLONE_NEWUSER; clone3, whose
/// flags a filter cannot read, answers ENOSYS so libc falls back to clone), bpf, the
/// keyrings (keyctl, add_key, request_key), io_uring, userfaultfd, perf_event_open,
/// kexec, module loading, mounts and the new mount API, open_by_handle_at, personality
/// changes other than the plain Linux ones, the terminal injection ioctls (TIOCSTI,
/// TIOCLINUX), AF_VSOCK sockets (the hypervisor's host, outside every network namespace),
/// and a few obsolete or host-wide calls (acct, swapon, reboot, syslog, …). Refused calls
/// fail with EPERM; nothing is killed. With `allow_nested_namespaces` the user-namespace
/// rules are left out (for tools that build their own sandbox: browsers, bwrap).
/// On x86-64 the program is the one `cnl_seccomp_compile` made when the rules last changed
/// (seccomp_programs.h); elsewhere it is compiled now. Returns 0, or -errno.
int cnl_seccomp_build(int allow_nested_namespaces, struct cnl_seccomp_program *out);

/// The same filter compiled from the rules by libseccomp now. Returns 0, or -errno.
int cnl_seccomp_compile(int allow_nested_namespaces, struct cnl_seccomp_program *out);

/// The libseccomp version that compiled the programs cnl_seccomp_build gives; "" where it
/// compiles them at run time.
const char *cnl_seccomp_precompiled_with(void);

/// The libseccomp version linked into this build ("2.5.4"), written into `buffer`.
void cnl_seccomp_library_version(char *buffer, size_t size);

/// Frees a program made by cnl_seccomp_build or cnl_seccomp_compile.
void cnl_seccomp_free(struct cnl_seccomp_program *program);

/// Whether this kernel can load seccomp filters: 1 yes, 0 no.
int cnl_seccomp_available(void);

#endif
