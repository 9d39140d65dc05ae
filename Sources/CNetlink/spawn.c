// The sandbox init and the rootless launcher: the code between clone and execve.
//
// Only async-signal-safe calls run in the children: raw syscalls, no malloc, no locks,
// no stdio. The parent (Swift) prepares every string and the libcap objects; clone is
// made with SYS_clone directly so no fork handlers run in a copy of a threaded process.
#define _GNU_SOURCE
#include "cnl_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

_Static_assert(CNL_CLONE_NEWNS == CLONE_NEWNS && CNL_CLONE_NEWUSER == CLONE_NEWUSER && CNL_CLONE_NEWNET == CLONE_NEWNET,
               "namespace flags match <sched.h>");

static pid_t raw_clone(unsigned long flags) {
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
}

static void report(int fd, int step, int error, int index) {
    struct cnl_spawn_failure failure = { step, error, index };
    ssize_t r;
    do { r = write(fd, &failure, sizeof failure); } while (r < 0 && errno == EINTR);
}

static size_t text_length(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static int write_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t r = write(fd, data, length);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += r;
        length -= (size_t)r;
    }
    return 0;
}

// Creates every missing parent directory of `path` (which lies on the fresh /run tmpfs).
static int make_parents(const char *path) {
    char buffer[PATH_MAX];
    size_t n = text_length(path);
    if (n >= sizeof buffer) { errno = ENAMETOOLONG; return -1; }
    memcpy(buffer, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buffer[i] != '/') continue;
        buffer[i] = 0;
        if (mkdir(buffer, 0755) < 0 && errno != EEXIST) return -1;
        buffer[i] = '/';
    }
    return 0;
}

static int write_file(const char *path, const char *content) {
    if (make_parents(path) < 0) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return -1;
    int r = write_all(fd, content, text_length(content));
    int saved = errno;
    close(fd);
    errno = saved;
    return r;
}

// Places `content` at `target` (a path under /run when the /etc file links there), or
// writes it to `scratch` on the fresh /run and binds it read-only over `etc_path`.
static int place_file(const char *etc_path, const char *target, const char *scratch,
                      const char *content, int *bind_step) {
    if (target) return write_file(target, content);
    if (write_file(scratch, content) < 0) return -1;
    struct stat st;
    if (stat(etc_path, &st) < 0) return 0;  // nothing to cover
    *bind_step = 1;
    if (mount(scratch, etc_path, NULL, MS_BIND, NULL) < 0) return -1;
    if (mount(NULL, etc_path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) return -1;
    return 0;
}

// The owners and modes of a kept directory's parents below /tmp or /dev/shm, read before
// the fresh tmpfs covers them and given to the parents made again there: a parent the
// command's user could not enter on the host (/tmp/x, 0700) stays closed to it inside.
struct parent_mode { mode_t mode; uid_t uid; gid_t gid; };
enum { MAX_KEPT_PARENTS = 64 };

static int parent_modes(const char *path, struct parent_mode *modes, int set) {
    char buffer[PATH_MAX];
    size_t n = text_length(path);
    if (n >= sizeof buffer) { errno = ENAMETOOLONG; return -1; }
    memcpy(buffer, path, n + 1);
    // The parents down to the mount point (/tmp, or /dev and /dev/shm) are left alone.
    int under_dev = n > 5 && buffer[0] == '/' && buffer[1] == 'd' && buffer[2] == 'e' && buffer[3] == 'v' && buffer[4] == '/';
    int depth = 0, slashes = 0;
    for (size_t i = 1; i < n; i++) {
        if (buffer[i] != '/') continue;
        if (++slashes < (under_dev ? 3 : 2)) continue;
        if (depth >= MAX_KEPT_PARENTS) { errno = ENAMETOOLONG; return -1; }
        buffer[i] = 0;
        if (set) {
            // In a user namespace the host's owners may be unmapped (EINVAL): the command
            // is then the caller, whose own access the modes still describe.
            if (chown(buffer, modes[depth].uid, modes[depth].gid) < 0 && errno != EINVAL && errno != EPERM) return -1;
            if (chmod(buffer, modes[depth].mode & 07777) < 0) return -1;
        } else {
            struct stat st;
            if (stat(buffer, &st) < 0) return -1;
            modes[depth] = (struct parent_mode){ st.st_mode, st.st_uid, st.st_gid };
        }
        depth++;
        buffer[i] = '/';
    }
    return 0;
}

// A fresh tmpfs on /tmp and /dev/shm: host sockets and files there (tmux, ssh-agent, IDE
// and X sockets, other users' scratch files) are out of reach. `keep` (the working
// directory, when it lies under one of them) is bound aside first and put back at the
// same path in the fresh tmpfs, its parents made again with their host owners and modes,
// so a command started in /tmp/work still works there and reaches no more than before.
static int private_tmp(const char *keep, int *step) {
    static const char *const staging = "/run/airlock-sandbox/cwd";
    struct parent_mode modes[MAX_KEPT_PARENTS];
    if (keep) {
        *step = CNL_STEP_KEEP_CWD;
        if (parent_modes(keep, modes, 0) < 0) return -1;
        if (make_parents(staging) < 0 || (mkdir(staging, 0700) < 0 && errno != EEXIST)) return -1;
        if (mount(keep, staging, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
    }
    *step = CNL_STEP_PRIVATE_TMP;
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) return -1;
    struct stat st;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode)
        && mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0) return -1;
    if (keep) {
        *step = CNL_STEP_KEEP_CWD;
        if (make_parents(keep) < 0 || (mkdir(keep, 0755) < 0 && errno != EEXIST)) return -1;
        if (parent_modes(keep, modes, 1) < 0) return -1;
        if (mount(staging, keep, NULL, MS_BIND | MS_REC, NULL) < 0) return -1;
        if (umount2(staging, MNT_DETACH) < 0) return -1;
        (void)rmdir(staging);
    }
    return 0;
}

// Kernel knobs stay read-only (uid 0 of a user namespace, or a setuid-less user, cannot
// write them anyway; this also holds if a permission is ever wrong), and the files that
// show kernel memory or other processes' keys and timers are hidden.
static int harden_proc(void) {
    static const char *const read_only[] = { "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs" };
    for (size_t i = 0; i < sizeof read_only / sizeof read_only[0]; i++) {
        if (mount(read_only[i], read_only[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT) continue;
            return -1;
        }
        if (mount(NULL, read_only[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) return -1;
    }
    static const char *const hidden[] = { "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug" };
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        if (mount("/dev/null", hidden[i], NULL, MS_BIND, NULL) < 0 && errno != ENOENT) return -1;
    }
    return 0;
}

static void reset_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &dfl, NULL);
    }
}

// Drops to the target user with no capabilities and no_new_privs.
static int drop_privileges(const struct cnl_spawn_spec *spec, int *step) {
    for (int cap = 0; cap <= spec->cap_last_cap; cap++) {
        if (cap_drop_bound((cap_value_t)cap) < 0 && errno != EINVAL) { *step = CNL_STEP_BOUNDING_SET; return -1; }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) { *step = CNL_STEP_AMBIENT; return -1; }
    // Raw system calls, not glibc's wrappers: in a multithreaded process glibc applies an id
    // change to every thread it knows of (signals them and waits), and after a raw clone those
    // threads are not in this process. The wrappers could wait forever.
    if (!spec->keep_groups && syscall(SYS_setgroups, spec->group_count, spec->groups) < 0) { *step = CNL_STEP_SETGROUPS; return -1; }
    if (syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) < 0) { *step = CNL_STEP_SETGID; return -1; }
    if (syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) < 0) { *step = CNL_STEP_SETUID; return -1; }
    // The init is a copy of airlock's memory (which, as root, holds the upstream tokens)
    // and is never exec'd: the command, same uid, must not ptrace it or read its
    // memory or environ. The command's own execve makes it dumpable again.
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) { *step = CNL_STEP_SETUID; return -1; }
    if (cap_set_proc((cap_t)spec->empty_caps) < 0) { *step = CNL_STEP_CAPSET; return -1; }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) { *step = CNL_STEP_NO_NEW_PRIVS; return -1; }
    return 0;
}

// The command, a child of the sandbox init: resets signals, enters cwd, execs.
static void run_command(const struct cnl_spawn_spec *spec, int setup_fd, const sigset_t *original_mask) {
    reset_signals();
    for (int i = 0; i < 3; i++) {
        if (spec->stdio[i] >= 0 && spec->stdio[i] != i && dup2(spec->stdio[i], i) < 0) { report(setup_fd, CNL_STEP_DUP_FDS, errno, i); _exit(126); }
    }
    if (spec->cwd && chdir(spec->cwd) < 0) { report(setup_fd, CNL_STEP_CHDIR, errno, -1); _exit(126); }
    // No descriptor of airlock's (netns, listeners, pipes) survives into the command.
    (void)syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    sigprocmask(SIG_SETMASK, original_mask, NULL);
    // Last: the filter also covers everything the command's exec does. no_new_privs is
    // already set (drop_privileges), so an unprivileged process may load it.
    if (spec->seccomp_instructions) {
        struct sock_fprog program = { spec->seccomp_count, (struct sock_filter *)spec->seccomp_instructions };
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) < 0) { report(setup_fd, CNL_STEP_SECCOMP, errno, -1); _exit(126); }
    }
    int denied = 0;
    for (const char *const *candidate = spec->candidates; *candidate; candidate++) {
        execve(*candidate, (char *const *)spec->argv, (char *const *)spec->envp);
        if (errno == EACCES || errno == EPERM || errno == ENOEXEC || errno == EISDIR) denied = errno;
    }
    const char *name = spec->command_name;
    (void)write_all(2, "airlock: ", 9);
    (void)write_all(2, name, text_length(name));
    if (denied) {
        const char *why = ": permission denied\n";
        (void)write_all(2, why, text_length(why));
        _exit(126);
    }
    const char *why = ": command not found\n";
    (void)write_all(2, why, text_length(why));
    _exit(127);
}

// Closes every descriptor but the `count` in `keep` (negative entries are ignored): what
// the init inherited from airlock (the namespaces, the gateway's pipes and sockets, or a
// rootless builder's channel to its gateway) is not held for the sandbox's lifetime.
static void close_other_descriptors(const int *keep, size_t count) {
    unsigned int next = 0;
    for (;;) {
        long lowest = -1;
        for (size_t i = 0; i < count; i++) {
            if (keep[i] >= 0 && (unsigned int)keep[i] >= next && (lowest < 0 || keep[i] < lowest)) lowest = keep[i];
        }
        if (lowest < 0) {
            (void)syscall(SYS_close_range, next, ~0U, 0U);
            return;
        }
        if ((unsigned int)lowest > next) (void)syscall(SYS_close_range, next, (unsigned int)lowest - 1, 0U);
        next = (unsigned int)lowest + 1;
    }
}

// PID 1 of the sandbox: sets up the mount namespace, drops privileges, starts the
// command, forwards signals to it, reaps every child, and exits when the command does.
static void sandbox_init(const struct cnl_spawn_spec *spec, int setup_fd, int status_fd, int gate_fd,
                         const sigset_t *original_mask) {
    // PID 1 of the sandbox is this clone of airlock, not airlock: say so in `ps`.
    (void)prctl(PR_SET_NAME, "sandbox-init", 0, 0, 0);
    if (spec->netns_fd >= 0 && setns(spec->netns_fd, CLONE_NEWNET) < 0) { report(setup_fd, CNL_STEP_SETNS, errno, -1); _exit(125); }
    int keep[] = { 0, 1, 2, spec->stdio[0], spec->stdio[1], spec->stdio[2], setup_fd, status_fd, gate_fd };
    close_other_descriptors(keep, sizeof keep / sizeof keep[0]);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) { report(setup_fd, CNL_STEP_PDEATHSIG, errno, -1); _exit(125); }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) { report(setup_fd, CNL_STEP_MAKE_PRIVATE, errno, -1); _exit(125); }
    if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") < 0) { report(setup_fd, CNL_STEP_MOUNT_RUN, errno, -1); _exit(125); }
    if (spec->mount_var_run && mount("tmpfs", "/var/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") < 0) {
        report(setup_fd, CNL_STEP_MOUNT_VAR_RUN, errno, -1); _exit(125);
    }
    int bound = 0;
    if (place_file("/etc/resolv.conf", spec->resolv_conf_path, "/run/airlock-sandbox/resolv.conf", spec->resolv_conf, &bound) < 0) {
        report(setup_fd, bound ? CNL_STEP_BIND_RESOLV : CNL_STEP_WRITE_RESOLV, errno, -1); _exit(125);
    }
    bound = 0;
    if (place_file("/etc/hosts", spec->hosts_path, "/run/airlock-sandbox/hosts", spec->hosts, &bound) < 0) {
        report(setup_fd, bound ? CNL_STEP_BIND_HOSTS : CNL_STEP_WRITE_HOSTS, errno, -1); _exit(125);
    }
    if (spec->private_tmp) {
        int step = 0;
        if (private_tmp(spec->keep_directory, &step) < 0) { report(setup_fd, step, errno, -1); _exit(125); }
    }
    for (size_t i = 0; i < spec->mask_count; i++) {
        const struct cnl_spawn_mask *mask = &spec->masks[i];
        int r;
        if (mask->is_directory) {
            r = mount("tmpfs", mask->path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555,size=4k,nr_inodes=1");
        } else {
            r = mount("/dev/null", mask->path, NULL, MS_BIND, NULL);
            if (r == 0) r = mount(NULL, mask->path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);  // not nodev: it is a device
        }
        // ENOENT, EACCES: the path is gone or out of this user's reach anyway.
        if (r < 0 && errno != ENOENT && errno != EACCES) { report(setup_fd, CNL_STEP_MASK, errno, (int)i); _exit(125); }
    }
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) { report(setup_fd, CNL_STEP_MOUNT_PROC, errno, -1); _exit(125); }
    if (harden_proc() < 0) { report(setup_fd, CNL_STEP_PROC_READONLY, errno, -1); _exit(125); }
    // The host's sysfs lists the host's network interfaces (names, addresses, counters).
    // A sysfs mounted from inside S shows S's own interfaces only. Where the kernel refuses
    // a new sysfs (some user-namespace set-ups), the interface directories are hidden instead.
    if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        static const char *const hidden[] = {"/sys/class/net", "/sys/devices/virtual/net"};
        for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
            if (mount("tmpfs", hidden[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0555,size=4k,nr_inodes=1") < 0
                && errno != ENOENT) {
                report(setup_fd, CNL_STEP_MOUNT_SYS, errno, -1); _exit(125);
            }
        }
    }

    int step = 0;
    if (drop_privileges(spec, &step) < 0) { report(setup_fd, step, errno, -1); _exit(125); }

    // The gate: the sandbox is ready; the command starts only when the caller says so (its
    // gateway serves). End of file means the caller gave up: nothing is started.
    char go = 0;
    ssize_t r;
    do { r = read(gate_fd, &go, 1); } while (r < 0 && errno == EINTR);
    if (r != 1) _exit(125);
    close(gate_fd);

    // The forwarded signals and SIGCHLD stay blocked (inherited from the parent) and are
    // taken with sigwaitinfo; the command gets the original mask back before execve.
    // vfork: the command shares this init's memory until its execve instead of copying
    // it (the init is a copy of all of airlock's), and this init waits until then.
    pid_t command = vfork();
    if (command < 0) { report(setup_fd, CNL_STEP_FORK_COMMAND, errno, -1); _exit(125); }
    if (command == 0) {
        close(status_fd);
        run_command(spec, setup_fd, original_mask);
    }
    close(setup_fd);

    sigset_t waited;
    sigemptyset(&waited);
    int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&waited, forwarded[i]);
    sigaddset(&waited, SIGCHLD);
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&waited, &info);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            // The terminal's own signals already reach the command (same process group).
            if (info.si_code != SI_KERNEL) (void)kill(command, sig);
            continue;
        }
        for (;;) {
            int status = 0;
            pid_t reaped = waitpid(-1, &status, WNOHANG);
            if (reaped <= 0) break;
            if (reaped == command) {
                int32_t raw = status;
                (void)write_all(status_fd, (const char *)&raw, sizeof raw);
                if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
                _exit(128 + WTERMSIG(status));
            }
        }
    }
}

// Waits on a child's set-up pipe: end of file (the child exec'd, or finished its set-up
// and closed it) is success; a report means the step that failed, and the child, which
// exits after reporting, is reaped. Closes `setup_fd`. Returns 0 or 1.
static int await_setup(pid_t pid, int setup_fd, struct cnl_spawn_failure *failure) {
    ssize_t r;
    do { r = read(setup_fd, failure, sizeof *failure); } while (r < 0 && errno == EINTR);
    close(setup_fd);
    if (r != (ssize_t)sizeof *failure) return 0;
    int ignored;
    while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {}
    return 1;
}

int cnl_spawn_gated(const struct cnl_spawn_spec *spec, pid_t *pid_out, int *setup_fd_out, int *status_fd_out,
                    int *gate_fd_out, struct cnl_spawn_failure *failure) {
    int setup[2], status[2], gate[2];
    if (pipe2(setup, O_CLOEXEC) < 0) return -errno;
    if (pipe2(status, O_CLOEXEC) < 0) { int e = errno; close(setup[0]); close(setup[1]); return -e; }
    // A socket pair, so that opening the gate of an init that has died is an error, not
    // a SIGPIPE.
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gate) < 0) {
        int e = errno;
        close(setup[0]); close(setup[1]); close(status[0]); close(status[1]);
        return -e;
    }

    sigset_t all, original;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &original);
    // A new IPC namespace too: System V IPC and POSIX message queues are not the host's.
    pid_t pid = raw_clone(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC);
    if (pid == 0) {
        close(setup[0]);
        close(status[0]);
        close(gate[1]);
        sigset_t blocked;
        sigemptyset(&blocked);
        int held[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD };
        for (size_t i = 0; i < sizeof held / sizeof held[0]; i++) sigaddset(&blocked, held[i]);
        reset_signals();
        sigprocmask(SIG_SETMASK, &blocked, NULL);
        sandbox_init(spec, setup[1], status[1], gate[0], &original);
        _exit(125);
    }
    int clone_error = errno;
    pthread_sigmask(SIG_SETMASK, &original, NULL);
    close(setup[1]);
    close(status[1]);
    close(gate[0]);
    if (pid < 0) {
        close(setup[0]);
        close(status[0]);
        close(gate[1]);
        failure->step = CNL_STEP_CLONE;
        failure->error = clone_error;
        failure->index = -1;
        return -clone_error;
    }
    *pid_out = pid;
    *setup_fd_out = setup[0];
    *status_fd_out = status[0];
    *gate_fd_out = gate[1];
    return 0;
}

int cnl_spawn_open_gate(pid_t pid, int setup_fd, int gate_fd, struct cnl_spawn_failure *failure) {
    // An init that failed its set-up has closed the gate: the send fails and the report
    // is read below.
    char go = 1;
    ssize_t r;
    do { r = send(gate_fd, &go, 1, MSG_NOSIGNAL); } while (r < 0 && errno == EINTR);
    close(gate_fd);
    return await_setup(pid, setup_fd, failure);
}

// The rootless launcher's child: a new user namespace with the caller's ids mapped to
// themselves; the capabilities the sandbox builder needs kept as ambient across execve.
// The parent-death signal, the new namespaces and the id maps, in the launched child.
static void enter_user_namespace(const struct cnl_launch_spec *spec, int setup_fd) {
    if (spec->parent_death_signal && prctl(PR_SET_PDEATHSIG, spec->parent_death_signal, 0, 0, 0) < 0) {
        report(setup_fd, CNL_STEP_PDEATHSIG, errno, -1); _exit(125);
    }
    if (unshare(spec->unshare_flags) < 0) { report(setup_fd, CNL_STEP_UNSHARE, errno, -1); _exit(125); }
    int fd = open("/proc/self/setgroups", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, "deny", 4) < 0) { report(setup_fd, CNL_STEP_SETGROUPS_DENY, errno, -1); _exit(125); }
    close(fd);
    fd = open("/proc/self/uid_map", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, spec->uid_map, text_length(spec->uid_map)) < 0) { report(setup_fd, CNL_STEP_UID_MAP, errno, -1); _exit(125); }
    close(fd);
    fd = open("/proc/self/gid_map", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, spec->gid_map, text_length(spec->gid_map)) < 0) { report(setup_fd, CNL_STEP_GID_MAP, errno, -1); _exit(125); }
    close(fd);
}

static void launch_child(const struct cnl_launch_spec *spec, int setup_fd) {
    enter_user_namespace(spec, setup_fd);
    if (!spec->path) _exit(0);

    if (cap_set_proc((cap_t)spec->caps) < 0) { report(setup_fd, CNL_STEP_CAPSET, errno, -1); _exit(125); }
    for (size_t i = 0; i < spec->ambient_count; i++) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, spec->ambient[i], 0, 0) < 0) {
            report(setup_fd, CNL_STEP_AMBIENT_RAISE, errno, (int)spec->ambient[i]); _exit(125);
        }
    }
    // Move the passed descriptors out of the way first, then to 3, 4, … in order.
    int high[64];
    size_t count = spec->fd_count < 64 ? spec->fd_count : 64;
    int floor = 3 + (int)count + 64;
    if (setup_fd < floor) {
        int moved = fcntl(setup_fd, F_DUPFD_CLOEXEC, floor);
        if (moved < 0) { report(setup_fd, CNL_STEP_DUP_FDS, errno, -1); _exit(125); }
        setup_fd = moved;
    }
    for (size_t i = 0; i < count; i++) {
        high[i] = fcntl(spec->fds[i], F_DUPFD_CLOEXEC, floor);
        if (high[i] < 0) { report(setup_fd, CNL_STEP_DUP_FDS, errno, (int)i); _exit(125); }
    }
    for (size_t i = 0; i < count; i++) {
        if (dup2(high[i], 3 + (int)i) < 0) { report(setup_fd, CNL_STEP_DUP_FDS, errno, (int)i); _exit(125); }
    }
    (void)syscall(SYS_close_range, 3U + (unsigned)count, ~0U, CLOSE_RANGE_CLOEXEC);
    reset_signals();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(spec->path, (char *const *)spec->argv, (char *const *)spec->envp);
    report(setup_fd, CNL_STEP_EXEC, errno, -1);
    _exit(127);
}

// The launcher's child without execve: the capability set, not dumpable, only 0, 1, 2
// and `keep_fd` left open; then back to the caller's code.
static void fork_child(const struct cnl_launch_spec *spec, int setup_fd, int keep_fd, const sigset_t *original) {
    enter_user_namespace(spec, setup_fd);
    if (cap_set_proc((cap_t)spec->caps) < 0) { report(setup_fd, CNL_STEP_CAPSET, errno, -1); _exit(125); }
    // The maps are written (which needs the process dumpable); from here on nothing of
    // this process (a copy of airlock's memory, credentials included) can be read or
    // traced by an account without CAP_SYS_PTRACE on the host, nor by its clones.
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) { report(setup_fd, CNL_STEP_DUMPABLE, errno, -1); _exit(125); }
    reset_signals();
    pthread_sigmask(SIG_SETMASK, original, NULL);
    close(setup_fd);
    // Nothing of airlock's beyond the standard streams and `keep_fd` (what an execve
    // with close-on-exec descriptors would have left): not the audit log, not files.
    int kept[] = { 0, 1, 2, keep_fd };
    close_other_descriptors(kept, sizeof kept / sizeof kept[0]);
}

// Both launchers: `forked` continues in the child (returning 2 there) instead of execve.
static int launch(const struct cnl_launch_spec *spec, int forked, int keep_fd, pid_t *pid_out,
                  struct cnl_spawn_failure *failure) {
    int setup[2];
    if (pipe2(setup, O_CLOEXEC) < 0) return -errno;
    sigset_t all, original;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &original);
    pid_t pid = raw_clone(0);
    if (pid == 0) {
        close(setup[0]);
        if (!forked) {
            launch_child(spec, setup[1]);
            _exit(125);
        }
        fork_child(spec, setup[1], keep_fd, &original);
        *pid_out = 0;
        return 2;
    }
    int clone_error = errno;
    pthread_sigmask(SIG_SETMASK, &original, NULL);
    close(setup[1]);
    if (pid < 0) { close(setup[0]); return -clone_error; }
    if (await_setup(pid, setup[0], failure)) return 1;
    *pid_out = pid;
    return 0;
}

int cnl_launch(const struct cnl_launch_spec *spec, pid_t *pid_out, struct cnl_spawn_failure *failure) {
    if (spec->fd_count > 64) return -EINVAL;
    return launch(spec, 0, -1, pid_out, failure);
}

int cnl_launch_fork(const struct cnl_launch_spec *spec, int keep_fd, pid_t *pid_out, struct cnl_spawn_failure *failure) {
    return launch(spec, 1, keep_fd, pid_out, failure);
}

static volatile sig_atomic_t forward_target = 0;

static void forward_signal(int sig, siginfo_t *info, void *context) {
    (void)context;
    pid_t target = (pid_t)forward_target;
    if (target > 0 && (!info || info->si_code != SI_KERNEL)) (void)kill(target, sig);
}

int cnl_forward_signals(pid_t pid) {
    forward_target = pid;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    if (pid > 0) {
        action.sa_sigaction = forward_signal;
        action.sa_flags = SA_SIGINFO | SA_RESTART;
    } else {
        action.sa_handler = SIG_DFL;
    }
    sigemptyset(&action.sa_mask);
    int signals[] = { SIGINT, SIGTERM, SIGHUP };
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &action, NULL) < 0) return -errno;
    }
    return 0;
}
