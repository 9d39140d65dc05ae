// The port binder (cnl_binder.h). Everything the child runs is async-signal-safe.
#define _GNU_SOURCE
#include "cnl_binder.h"
#include "cnl_fdpass.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// The binder's requests: the port, two bytes in host order. Answers: an int32 (0 or an
// errno), with the socket attached on success.

static int binder_set_caps(uint32_t keep) {
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    data[0].effective = keep;
    data[0].permitted = keep;
    return (int)syscall(SYS_capset, &header, data);
}

// Closes every descriptor from `first` up, but `keep`.
static void binder_close_from(int first, int keep) {
#ifdef SYS_close_range
    if (keep < first) {
        if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
    } else {
        if (keep > first) (void)syscall(SYS_close_range, (unsigned)first, (unsigned)(keep - 1), 0);
        if (syscall(SYS_close_range, (unsigned)(keep + 1), ~0U, 0) == 0) return;
    }
#endif
    for (int fd = first; fd < 65536; fd++) {
        if (fd != keep) close(fd);
    }
}

// Returns 0 or -errno.
static int binder_setup(int sock, int netns_fd, pid_t parent, uid_t uid, gid_t gid, const gid_t *groups, size_t count) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) return -errno;
    if (getppid() != parent) return -ESRCH;
    if (setns(netns_fd, CLONE_NEWNET) < 0) return -errno;
    int null = open("/dev/null", O_RDWR);
    if (null < 0) return -errno;
    for (int fd = 0; fd < 3; fd++) {
        if (fd != null && dup2(null, fd) < 0) return -errno;
    }
    // The gateway's descriptors (listeners, the audit log, the control socket) stay with
    // the gateway: a copy here would keep a removed listener open.
    binder_close_from(3, sock);
    // Keep only CAP_NET_BIND_SERVICE across the uid change, then nothing else.
    int last = 63;
    for (int cap = 0; cap <= last; cap++) {
        if (cap == CAP_NET_BIND_SERVICE) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) return -errno;
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) return -errno;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return -errno;
    if (setgroups(count, groups) < 0) return -errno;
    if (setresgid(gid, gid, gid) < 0) return -errno;
    if (setresuid(uid, uid, uid) < 0) return -errno;
    if (binder_set_caps(1u << CAP_NET_BIND_SERVICE) < 0) return -errno;
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) return -errno;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    return 0;
}

static int binder_make(uint32_t address, uint16_t port, int backlog) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = address;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 ||
        listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static void binder_serve(int sock, uint32_t address, int backlog) {
    for (;;) {
        uint16_t port = 0;
        ssize_t n;
        do {
            n = recv(sock, &port, sizeof port, 0);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) _exit(0);
        int32_t status = 0;
        int fd = -1;
        if (n != (ssize_t)sizeof port || port == 0) {
            status = EINVAL;
        } else {
            fd = binder_make(address, port, backlog);
            if (fd < 0) status = -fd;
        }
        int r = cnl_send_fds(sock, &status, sizeof status, &fd, fd >= 0 ? 1 : 0);
        if (fd >= 0) close(fd);
        if (r < 0) _exit(0);
    }
}

int cnl_binder_start(int netns_fd, uint32_t address_network_order, int backlog,
                     uid_t uid, gid_t gid, const gid_t *groups, size_t count, pid_t *pid) {
    int ends[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) < 0) return -errno;
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(ends[0]);
        close(ends[1]);
        return -e;
    }
    if (child == 0) {
        // No signal blocked, whatever the caller holds (a fork keeps the mask).
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(ends[0]);
        int32_t status = -binder_setup(ends[1], netns_fd, parent, uid, gid, groups, count);
        ssize_t sent = send(ends[1], &status, sizeof status, MSG_NOSIGNAL);
        if (status != 0 || sent != (ssize_t)sizeof status) _exit(125);
        binder_serve(ends[1], address_network_order, backlog);
        _exit(0);
    }
    close(ends[1]);
    // The child says whether it set itself up: 0, or the errno of the step that failed.
    int32_t status = 0;
    ssize_t n;
    do {
        n = recv(ends[0], &status, sizeof status, 0);
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof status || status != 0) {
        int e = n < 0 ? errno : (n == (ssize_t)sizeof status ? status : ECHILD);
        close(ends[0]);
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {}
        return -e;
    }
    *pid = child;
    return ends[0];
}

int cnl_binder_bind(int sock, uint16_t port) {
    if (port == 0) return -EINVAL;
    ssize_t n;
    do {
        n = send(sock, &port, sizeof port, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    int32_t status = 0;
    int fd = -1;
    int received = 0;
    long r = cnl_recv_fds(sock, &status, sizeof status, &fd, 1, &received);
    if (r < 0) {
        if (received > 0) close(fd);
        return (int)r;
    }
    if (r == 0) return -EPIPE;
    if (r != (long)sizeof status || (status == 0 && received != 1)) {
        if (received > 0) close(fd);
        return -EPROTO;
    }
    if (status != 0) {
        if (received > 0) close(fd);
        return -status;
    }
    return fd;
}
