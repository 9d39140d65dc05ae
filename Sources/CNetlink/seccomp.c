// The sandbox's seccomp filter (see cnl_seccomp.h): built here with libseccomp, exported
// as BPF, loaded by the sandbox init's child right before execve.
#define _GNU_SOURCE
#include "cnl_seccomp.h"

#include <errno.h>
#include <linux/personality.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

// Refused outright (EPERM). Names libseccomp does not know on this architecture are skipped.
static const char *const refused[] = {
    "bpf", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "userfaultfd", "perf_event_open",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module",
    "mount", "umount", "umount2", "pivot_root", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "acct", "quotactl", "quotactl_fd", "swapon", "swapoff", "reboot", "syslog",
    "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "vhangup",
    "iopl", "ioperm", "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
    "fanotify_init",
};

static int rule(scmp_filter_ctx ctx, int syscall, unsigned count, const struct scmp_arg_cmp *args) {
    if (syscall == __NR_SCMP_ERROR) return 0;
    return seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), syscall, count, args);
}

static int add_rules(scmp_filter_ctx ctx, int allow_nested) {
    int r;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int number = seccomp_syscall_resolve_name(refused[i]);
        if (number == __NR_SCMP_ERROR) continue;
        if ((r = rule(ctx, number, 0, NULL)) < 0) return r;
    }
    if (!allow_nested) {
        struct scmp_arg_cmp newuser = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);
        if ((r = rule(ctx, SCMP_SYS(clone), 1, &newuser)) < 0) return r;
        if ((r = rule(ctx, SCMP_SYS(unshare), 1, &newuser)) < 0) return r;
        // clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes glibc
        // and other libcs fall back to clone, whose flags are checked above.
        int clone3 = seccomp_syscall_resolve_name("clone3");
        if (clone3 != __NR_SCMP_ERROR && (r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), clone3, 0)) < 0) return r;
    }
    // personality: only the plain Linux domains (with or without ADDR_NO_RANDOMIZE, which
    // stays inside the sandbox) and the query 0xffffffff.
    static const unsigned long bad_personality[] = { READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT, STICKY_TIMEOUTS };
    for (size_t i = 0; i < sizeof bad_personality / sizeof bad_personality[0]; i++) {
        struct scmp_arg_cmp args[2] = {
            SCMP_A0(SCMP_CMP_MASKED_EQ, bad_personality[i], bad_personality[i]),
            SCMP_A0(SCMP_CMP_NE, 0xffffffffUL),
        };
        r = rule(ctx, SCMP_SYS(personality), 2, args);
        // libseccomp versions that refuse two comparisons on one argument: refuse the bit alone.
        if (r == -EINVAL) r = rule(ctx, SCMP_SYS(personality), 1, args);
        if (r < 0) return r;
    }
    // Typing into the controlling terminal's input queue reaches the shell that started airlock.
    struct scmp_arg_cmp sti = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCSTI);
    if ((r = rule(ctx, SCMP_SYS(ioctl), 1, &sti)) < 0) return r;
    struct scmp_arg_cmp linux_ioctl = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCLINUX);
    if ((r = rule(ctx, SCMP_SYS(ioctl), 1, &linux_ioctl)) < 0) return r;
    // vsock reaches the hypervisor's host whatever the network namespace.
    struct scmp_arg_cmp vsock = SCMP_A0(SCMP_CMP_EQ, AF_VSOCK);
    if ((r = rule(ctx, SCMP_SYS(socket), 1, &vsock)) < 0) return r;
    return 0;
}

int cnl_seccomp_compile(int allow_nested_namespaces, struct cnl_seccomp_program *out) {
    out->instructions = NULL;
    out->count = 0;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return -ENOMEM;
    int r = 0;
    // 32-bit system calls from a 64-bit process (int 0x80, x32) get the same rules.
#if defined(__x86_64__)
    if ((r = seccomp_arch_add(ctx, SCMP_ARCH_X86)) < 0 && r != -EEXIST) goto done;
    if ((r = seccomp_arch_add(ctx, SCMP_ARCH_X32)) < 0 && r != -EEXIST) goto done;
#elif defined(__aarch64__)
    if ((r = seccomp_arch_add(ctx, SCMP_ARCH_ARM)) < 0 && r != -EEXIST) goto done;
#endif
    // The child sets no_new_privs itself before loading.
    if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0) goto done;
    if ((r = add_rules(ctx, allow_nested_namespaces)) < 0) goto done;

    int fd = memfd_create("airlock-seccomp", MFD_CLOEXEC);
    if (fd < 0) { r = -errno; goto done; }
    if ((r = seccomp_export_bpf(ctx, fd)) < 0) { close(fd); goto done; }
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % 8 != 0 || st.st_size / 8 > 0xffff) {
        r = -EINVAL; close(fd); goto done;
    }
    void *buffer = malloc((size_t)st.st_size);
    if (!buffer) { r = -ENOMEM; close(fd); goto done; }
    size_t have = 0;
    while (have < (size_t)st.st_size) {
        ssize_t n = pread(fd, (char *)buffer + have, (size_t)st.st_size - have, (off_t)have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { r = n < 0 ? -errno : -EIO; free(buffer); close(fd); goto done; }
        have += (size_t)n;
    }
    close(fd);
    out->instructions = buffer;
    out->count = (unsigned short)(st.st_size / 8);
    r = 0;
done:
    seccomp_release(ctx);
    return r;
}

// The programs cnl_seccomp_compile makes from the rules above, generated at development
// time by scripts/seccomp-programs for x86-64: compiling them with libseccomp took a tenth
// of a run's instructions in the parent (docs/benchmarks.md), every run, for a program
// that depends only on the architecture and on allow_nested_namespaces. SeccompTests
// compiles both again and requires the same bytes, so the rules and the programs cannot
// drift apart. Other architectures compile at run time.
#include "seccomp_programs.h"

int cnl_seccomp_build(int allow_nested_namespaces, struct cnl_seccomp_program *out) {
#if defined(CNL_SECCOMP_PRECOMPILED)
    int nested = allow_nested_namespaces != 0;
    const struct sock_filter *program = nested ? cnl_seccomp_nested_program : cnl_seccomp_default_program;
    size_t size = nested ? sizeof cnl_seccomp_nested_program : sizeof cnl_seccomp_default_program;
    out->instructions = malloc(size);
    if (!out->instructions) { out->count = 0; return -ENOMEM; }
    memcpy(out->instructions, program, size);
    out->count = (unsigned short)(size / sizeof program[0]);
    return 0;
#else
    return cnl_seccomp_compile(allow_nested_namespaces, out);
#endif
}

const char *cnl_seccomp_precompiled_with(void) {
#if defined(CNL_SECCOMP_PRECOMPILED)
    return CNL_SECCOMP_PROGRAMS_LIBSECCOMP;
#else
    return "";
#endif
}

void cnl_seccomp_library_version(char *buffer, size_t size) {
    const struct scmp_version *v = seccomp_version();
    if (v) snprintf(buffer, size, "%u.%u.%u", v->major, v->minor, v->micro);
    else if (size) buffer[0] = 0;
}

void cnl_seccomp_free(struct cnl_seccomp_program *program) {
    free(program->instructions);
    program->instructions = NULL;
    program->count = 0;
}

int cnl_seccomp_available(void) {
    // PR_GET_SECCOMP fails with EINVAL on kernels built without seccomp; the filter mode
    // itself is probed by the actions file, which exists from Linux 4.14 with filters.
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 && errno == EINVAL) return 0;
    return access("/proc/sys/kernel/seccomp/actions_avail", R_OK) == 0 ? 1 : 0;
}
