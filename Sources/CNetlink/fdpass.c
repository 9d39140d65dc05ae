#define _GNU_SOURCE
#include "cnl_fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

int cnl_send_fds(int sock, const void *data, size_t len, const int *fds, int count) {
    if (count < 0 || count > CNL_FDPASS_MAX || len == 0) return -EINVAL;
    char control[CMSG_SPACE(sizeof(int) * CNL_FDPASS_MAX)];
    memset(control, 0, sizeof(control));
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (count > 0) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)count);
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n >= 0) return (size_t)n == len ? 0 : -EMSGSIZE;
        if (errno != EINTR) return -errno;
    }
}

long cnl_recv_fds(int sock, void *data, size_t cap, int *fds, int max, int *received_fds) {
    *received_fds = 0;
    if (max < 0 || max > CNL_FDPASS_MAX) return -EINVAL;
    char control[CMSG_SPACE(sizeof(int) * CNL_FDPASS_MAX)];
    struct iovec iov = {.iov_base = data, .iov_len = cap};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *incoming = (int *)CMSG_DATA(cmsg);
        for (int i = 0; i < count; i++) {
            if (*received_fds < max) {
                fds[(*received_fds)++] = incoming[i];
            } else {
                close(incoming[i]);
            }
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) return -EMSGSIZE;
    return (long)n;
}
