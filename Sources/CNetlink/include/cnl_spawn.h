// Starting processes inside a sandbox, and the rootless launcher.
//
// Why C: everything here runs in a child between clone and execve, where only
// async-signal-safe calls are allowed (no malloc, no locks, no stdio). Swift prepares
// every string, list and libcap object in the parent; the child only makes syscalls.
#ifndef CNL_SPAWN_H
#define CNL_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// One path to hide inside the sandbox: an empty read-only tmpfs over a directory, or
/// /dev/null bound over a file. The kind is decided in Swift (stat in the parent).
struct cnl_spawn_mask {
    const char *path;
    int is_directory;
};

/// Steps of the sandbox set-up; a failing step is reported to the parent with errno.
enum cnl_spawn_step {
    CNL_STEP_NONE = 0,
    CNL_STEP_CLONE = 1,
    CNL_STEP_SETNS = 2,
    CNL_STEP_PDEATHSIG = 3,
    CNL_STEP_MAKE_PRIVATE = 4,
    CNL_STEP_MOUNT_RUN = 5,
    CNL_STEP_MOUNT_VAR_RUN = 6,
    CNL_STEP_WRITE_RESOLV = 7,
    CNL_STEP_BIND_RESOLV = 8,
    CNL_STEP_WRITE_HOSTS = 9,
    CNL_STEP_BIND_HOSTS = 10,
    CNL_STEP_MASK = 11,
    CNL_STEP_MOUNT_PROC = 12,
    CNL_STEP_BOUNDING_SET = 13,
    CNL_STEP_AMBIENT = 14,
    CNL_STEP_SETGROUPS = 15,
    CNL_STEP_SETGID = 16,
    CNL_STEP_SETUID = 17,
    CNL_STEP_CAPSET = 18,
    CNL_STEP_NO_NEW_PRIVS = 19,
    CNL_STEP_FORK_COMMAND = 20,
    CNL_STEP_CHDIR = 21,
    CNL_STEP_SIGNALS = 22,
    CNL_STEP_UNSHARE = 23,
    CNL_STEP_SETGROUPS_DENY = 24,
    CNL_STEP_UID_MAP = 25,
    CNL_STEP_GID_MAP = 26,
    CNL_STEP_AMBIENT_RAISE = 27,
    CNL_STEP_DUP_FDS = 28,
    CNL_STEP_EXEC = 29,
    CNL_STEP_MOUNT_SYS = 30,
    CNL_STEP_SECCOMP = 31,
    CNL_STEP_PRIVATE_TMP = 32,
    CNL_STEP_KEEP_CWD = 33,
    CNL_STEP_PROC_READONLY = 34,
    CNL_STEP_DUMPABLE = 35,
};

/// A set-up failure as the child reports it through the CLOEXEC pipe.
struct cnl_spawn_failure {
    int32_t step;      // enum cnl_spawn_step
    int32_t error;     // errno
    int32_t index;     // which mask, or -1
};

/// Everything the sandbox init and the command need, prepared by Swift.
struct cnl_spawn_spec {
    const char *const *argv;             // NULL-terminated
    const char *const *envp;             // NULL-terminated
    const char *const *candidates;       // NULL-terminated executable paths to try, in order
    const char *command_name;            // for "airlock: NAME: command not found"
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t group_count;
    int netns_fd;                        // -1: stay in the current network namespace
    const char *resolv_conf;             // content of /etc/resolv.conf
    const char *resolv_conf_path;        // where to write it: a path under /run, or NULL to bind over /etc/resolv.conf
    const char *hosts;                   // content of /etc/hosts
    const char *hosts_path;              // like resolv_conf_path, for /etc/hosts
    int mount_var_run;                   // a separate tmpfs on /var/run (it is not a link to /run)
    const struct cnl_spawn_mask *masks;
    size_t mask_count;
    const char *cwd;                     // NULL: keep
    void *empty_caps;                    // cap_t with every set clear (cap_init in the parent)
    int cap_last_cap;                    // highest capability number of this kernel
    int stdio[3];                        // descriptors for the command's 0, 1, 2; -1 keeps the caller's
    int keep_groups;                     // skip setgroups (a user namespace with setgroups denied)
    int private_tmp;                     // fresh tmpfs on /tmp and /dev/shm
    const char *keep_directory;          // a directory under /tmp or /dev/shm re-bound into the fresh one (the cwd), or NULL
    const void *seccomp_instructions;    // struct sock_filter[seccomp_count], loaded right before execve; NULL: none
    unsigned short seccomp_count;
};

/// Starts the sandbox: a child in new PID, mount and IPC namespaces (PID 1 of its namespace)
/// that joins `netns_fd`, sets up mounts, drops to the user, then waits at a gate before it
/// runs the command as its own child, so the caller can wait for something else (its
/// gateway to serve) meanwhile. `cnl_spawn_open_gate` lets it start the command; closing
/// the gate instead (`close(*gate_fd_out)`) makes the init exit without starting anything.
/// `status_fd_out` receives a pipe from which the init's final report (the command's raw
/// wait status, an int) can be read after the init exits. Returns 0 or -errno (then
/// nothing was started).
int cnl_spawn_gated(const struct cnl_spawn_spec *spec, pid_t *pid_out, int *setup_fd_out, int *status_fd_out,
                    int *gate_fd_out, struct cnl_spawn_failure *failure);

/// Opens the gate of `cnl_spawn_gated` and waits until the command has been exec'd or the
/// set-up failed; closes `setup_fd` and `gate_fd`. Returns 0, or 1 with `failure` filled
/// and the init reaped.
int cnl_spawn_open_gate(pid_t pid, int setup_fd, int gate_fd, struct cnl_spawn_failure *failure);

/// Namespace flags for `cnl_launch_spec.unshare_flags` (the kernel's CLONE_NEW* values,
/// which Swift cannot import from <sched.h> without _GNU_SOURCE).
enum {
    CNL_CLONE_NEWNS = 0x00020000,
    CNL_CLONE_NEWUSER = 0x10000000,
    CNL_CLONE_NEWNET = 0x40000000,
};

/// Everything the rootless launcher's child needs, prepared by Swift.
struct cnl_launch_spec {
    const char *path;                    // absolute path to execute; NULL: probe only (exit 0)
    const char *const *argv;
    const char *const *envp;
    const char *uid_map;                 // "UID UID 1\n"
    const char *gid_map;                 // "GID GID 1\n"
    const int *fds;                      // passed as 3, 4, …
    size_t fd_count;
    void *caps;                          // cap_t with the kept capabilities permitted, effective, inheritable
    const int *ambient;                  // capabilities to raise as ambient
    size_t ambient_count;
    int unshare_flags;                   // CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS
    int parent_death_signal;             // sent to the child when the launching thread ends; 0: none
};

/// Starts a child in a new user namespace (plus the other namespaces in the flags) with
/// the caller's ids mapped to themselves, keeping the listed capabilities across execve
/// as ambient ones. Returns 0 and the child's pid (the child has exec'd, or, when
/// probing, exited), or -errno, or 1 with `failure` filled when the child reported a step
/// that failed (the child has been reaped).
int cnl_launch(const struct cnl_launch_spec *spec, pid_t *pid_out, struct cnl_spawn_failure *failure);

/// `cnl_launch` without execve (`path`, `argv`, `envp`, `fds` and the ambient list are not
/// used): the child sets up the same namespaces and maps, takes `caps` as its capabilities,
/// makes itself not dumpable, closes every descriptor but 0, 1, 2 and `keep_fd`, and
/// returns 2 to its caller. Call only while the process has one thread (the child goes on
/// running the caller's code). In the parent: 0 and the child's pid, -errno, or 1 with
/// `failure` filled (the child reaped), as `cnl_launch`.
int cnl_launch_fork(const struct cnl_launch_spec *spec, int keep_fd, pid_t *pid_out, struct cnl_spawn_failure *failure);

/// Forwards SIGINT, SIGTERM and SIGHUP received by this process to `pid` (0 stops).
/// Signals the kernel generates for the terminal (si_code SI_KERNEL) are not forwarded:
/// the sandbox shares airlock's process group, so it receives those itself.
int cnl_forward_signals(pid_t pid);

#endif
