// The unix sockets bound to a path, over NETLINK_SOCK_DIAG (see include/cnl_unixdiag.h).
// /proc/net/unix writes each path as is, so a newline in a path breaks its lines.
#define _GNU_SOURCE
#include "cnl_unixdiag.h"
#include "cnl_netlink.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <libmnl/libmnl.h>

struct paths_context {
    void (*each)(void *context, const char *path, size_t length);
    void *context;
};

static int name_attr(const struct nlattr *attr, void *data) {
    struct paths_context *paths = data;
    if (mnl_attr_get_type(attr) != UNIX_DIAG_NAME) return MNL_CB_OK;
    const char *name = mnl_attr_get_payload(attr);
    size_t length = mnl_attr_get_payload_len(attr);
    // An abstract name begins with NUL; a path is NUL-terminated in the kernel's copy.
    if (length == 0 || name[0] == 0) return MNL_CB_OK;
    paths->each(paths->context, name, strnlen(name, length));
    return MNL_CB_OK;
}

static int socket_message(const struct nlmsghdr *nlh, void *data) {
    if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY) return MNL_CB_OK;
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct unix_diag_msg)) {
        errno = EPROTO;
        return MNL_CB_ERROR;
    }
    if (mnl_attr_parse(nlh, sizeof(struct unix_diag_msg), name_attr, data) < 0) {
        errno = EPROTO;
        return MNL_CB_ERROR;
    }
    return MNL_CB_OK;
}

int cnl_unix_socket_paths(void (*each)(void *context, const char *path, size_t length), void *context) {
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC);
    if (nl == NULL) return -errno;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = errno;
        mnl_socket_close(nl);
        return -err;
    }
    // A dump datagram holds as many messages as fit a page or two; 64 KB is far more.
    size_t size = 65536;
    char *buf = malloc(size);
    if (buf == NULL) {
        mnl_socket_close(nl);
        return -ENOMEM;
    }
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = 1;
    struct unix_diag_req *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
    req->sdiag_family = AF_UNIX;
    req->udiag_states = ~0u;
    req->udiag_show = UDIAG_SHOW_NAME;
    uint32_t portid = mnl_socket_get_portid(nl);
    int result = 0;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        result = -errno;
    } else {
        struct paths_context paths = { .each = each, .context = context };
        // Bounded: a namespace's sockets are a few thousand datagrams at most.
        result = -EOVERFLOW;
        for (int datagrams = 0; datagrams < 100000; datagrams++) {
            ssize_t n = cnl_socket_recv(nl, buf, size);
            if (n < 0) { result = (int)n; break; }
            errno = 0;
            int ret = mnl_cb_run(buf, (size_t)n, 1, portid, socket_message, &paths);
            if (ret < 0) { result = errno != 0 ? -errno : -EPROTO; break; }
            if (ret == MNL_CB_STOP) { result = 0; break; }
        }
    }
    free(buf);
    mnl_socket_close(nl);
    return result;
}
