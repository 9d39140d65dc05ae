// rtnetlink over libmnl. See include/cnl_netlink.h for why this is C.
#define _GNU_SOURCE
#include "cnl_netlink.h"

#include <errno.h>
#include <stdbool.h>
#include <sched.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/veth.h>
#include <libmnl/libmnl.h>

#ifndef IFA_F_NOPREFIXROUTE
#define IFA_F_NOPREFIXROUTE 0x200
#endif

size_t cnl_socket_buffer_size(void) { return MNL_SOCKET_BUFFER_SIZE; }

int cnl_socket_open(void **out) {
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (nl == NULL) return -errno;
    int one = 1;
    // Keep the kernel's extended-ack text, and do not echo whole requests in errors.
    if (mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof(one)) < 0 ||
        mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one)) < 0 ||
        mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = errno;
        mnl_socket_close(nl);
        return -err;
    }
    *out = nl;
    return 0;
}

uint32_t cnl_socket_portid(void *sock) { return mnl_socket_get_portid(sock); }
int cnl_socket_fd(void *sock) { return mnl_socket_get_fd(sock); }
void cnl_socket_close(void *sock) { mnl_socket_close(sock); }

ssize_t cnl_socket_send(void *sock, const void *buf, size_t len) {
    ssize_t n = mnl_socket_sendto(sock, buf, len);
    return n < 0 ? -errno : n;
}

ssize_t cnl_socket_recv(void *sock, void *buf, size_t len) {
    ssize_t n;
    do {
        n = mnl_socket_recvfrom(sock, buf, len);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int cnl_unshare_net(void) { return unshare(CLONE_NEWNET) == 0 ? 0 : -errno; }
int cnl_setns_net(int fd) { return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno; }

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

int cnl_is_nsfs_path(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return -errno;
    return info.f_type == NSFS_MAGIC ? 1 : 0;
}

int cnl_is_nsfs_fd(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -errno;
    return info.f_type == NSFS_MAGIC ? 1 : 0;
}

// ---- builders ----

// Smallest buffer any builder accepts before it starts writing headers: the netlink
// header plus the largest fixed header (rtmsg/ifinfomsg/ifaddrmsg are all <= 16 bytes).
#define CNL_MIN_BUFFER (MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct ifinfomsg)))

static struct nlmsghdr *put_header(void *buf, size_t len, uint16_t type, uint16_t flags,
                                   uint32_t seq, uint32_t portid) {
    if (buf == NULL || len < CNL_MIN_BUFFER) return NULL;
    memset(buf, 0, len); // libmnl does not zero attribute padding
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = seq;
    nlh->nlmsg_pid = portid;
    return nlh;
}

static int finish(struct nlmsghdr *nlh) { return (int)nlh->nlmsg_len; }

int cnl_build_veth(void *buf, size_t len, uint32_t seq, uint32_t portid,
                   const char *name, int ns_fd, const char *peer_name, int peer_ns_fd) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    if (!mnl_attr_put_strz_check(nlh, len, IFLA_IFNAME, name)) return -ENOSPC;
    if (!mnl_attr_put_u32_check(nlh, len, IFLA_NET_NS_FD, (uint32_t)ns_fd)) return -ENOSPC;
    struct nlattr *linkinfo = mnl_attr_nest_start_check(nlh, len, IFLA_LINKINFO);
    if (linkinfo == NULL) return -ENOSPC;
    if (!mnl_attr_put_strz_check(nlh, len, IFLA_INFO_KIND, "veth")) return -ENOSPC;
    struct nlattr *data = mnl_attr_nest_start_check(nlh, len, IFLA_INFO_DATA);
    if (data == NULL) return -ENOSPC;
    struct nlattr *peer = mnl_attr_nest_start_check(nlh, len, VETH_INFO_PEER);
    if (peer == NULL) return -ENOSPC;
    // The peer's attributes follow its own ifinfomsg, inside VETH_INFO_PEER.
    if (nlh->nlmsg_len + MNL_ALIGN(sizeof(struct ifinfomsg)) > len) return -ENOSPC;
    struct ifinfomsg *peer_ifm = (struct ifinfomsg *)((char *)nlh + nlh->nlmsg_len);
    memset(peer_ifm, 0, MNL_ALIGN(sizeof(*peer_ifm)));
    peer_ifm->ifi_family = AF_UNSPEC;
    nlh->nlmsg_len += MNL_ALIGN(sizeof(struct ifinfomsg));
    if (!mnl_attr_put_strz_check(nlh, len, IFLA_IFNAME, peer_name)) return -ENOSPC;
    if (!mnl_attr_put_u32_check(nlh, len, IFLA_NET_NS_FD, (uint32_t)peer_ns_fd)) return -ENOSPC;
    mnl_attr_nest_end(nlh, peer);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, linkinfo);
    return finish(nlh);
}

int cnl_build_link_set_up(void *buf, size_t len, uint32_t seq, uint32_t portid,
                          uint32_t ifindex, int up) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = (int)ifindex;
    ifm->ifi_flags = up ? IFF_UP : 0;
    ifm->ifi_change = IFF_UP;
    return finish(nlh);
}

/// RTM_NEWLINK of `ifindex` carrying IFLA_AF_SPEC / `family` / (`outer`, if nonzero) /
/// attribute `type` = `value` of `size` bytes (1 or 4).
static int build_link_af_setting(void *buf, size_t len, uint32_t seq, uint32_t portid, uint32_t ifindex,
                                 uint16_t family, uint16_t outer, uint16_t type, uint32_t value, int size) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = (int)ifindex;
    struct nlattr *spec = mnl_attr_nest_start_check(nlh, len, IFLA_AF_SPEC);
    if (spec == NULL) return -ENOSPC;
    struct nlattr *af = mnl_attr_nest_start_check(nlh, len, family);
    if (af == NULL) return -ENOSPC;
    struct nlattr *inner = NULL;
    if (outer != 0 && (inner = mnl_attr_nest_start_check(nlh, len, outer)) == NULL) return -ENOSPC;
    bool put = size == 1 ? mnl_attr_put_u8_check(nlh, len, type, (uint8_t)value)
                         : mnl_attr_put_u32_check(nlh, len, type, value);
    if (!put) return -ENOSPC;
    if (inner != NULL) mnl_attr_nest_end(nlh, inner);
    mnl_attr_nest_end(nlh, af);
    mnl_attr_nest_end(nlh, spec);
    return finish(nlh);
}

int cnl_build_link_ipv6_addr_gen_none(void *buf, size_t len, uint32_t seq, uint32_t portid, uint32_t ifindex) {
    return build_link_af_setting(buf, len, seq, portid, ifindex, AF_INET6, 0, IFLA_INET6_ADDR_GEN_MODE,
                                 IN6_ADDR_GEN_MODE_NONE, 1);
}

int cnl_build_link_ipv4_forwarding(void *buf, size_t len, uint32_t seq, uint32_t portid, uint32_t ifindex, int on) {
    // IPV4_DEVCONF_FORWARDING is 1 (linux/ip.h); the kernel's devconf array is 1-based.
    return build_link_af_setting(buf, len, seq, portid, ifindex, AF_INET, IFLA_INET_CONF, 1, on ? 1 : 0, 4);
}

static int build_link_by_name(void *buf, size_t len, uint32_t seq, uint32_t portid,
                              uint16_t type, uint16_t flags, const char *name) {
    struct nlmsghdr *nlh = put_header(buf, len, type, flags, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    if (!mnl_attr_put_strz_check(nlh, len, IFLA_IFNAME, name)) return -ENOSPC;
    return finish(nlh);
}

int cnl_build_link_delete(void *buf, size_t len, uint32_t seq, uint32_t portid, const char *name) {
    return build_link_by_name(buf, len, seq, portid, RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, name);
}

int cnl_build_link_get(void *buf, size_t len, uint32_t seq, uint32_t portid, const char *name) {
    return build_link_by_name(buf, len, seq, portid, RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, name);
}

int cnl_build_link_dump(void *buf, size_t len, uint32_t seq, uint32_t portid) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
    ifm->ifi_family = AF_UNSPEC;
    return finish(nlh);
}

int cnl_build_addr_add_v4(void *buf, size_t len, uint32_t seq, uint32_t portid,
                          uint32_t ifindex, uint32_t local, uint8_t prefixlen) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = prefixlen;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = ifindex;
    if (!mnl_attr_put_check(nlh, len, IFA_LOCAL, sizeof(local), &local)) return -ENOSPC;
    if (!mnl_attr_put_check(nlh, len, IFA_ADDRESS, sizeof(local), &local)) return -ENOSPC;
    // ifa_flags is 8 bits; IFA_F_NOPREFIXROUTE only fits in the IFA_FLAGS attribute.
    if (!mnl_attr_put_u32_check(nlh, len, IFA_FLAGS, IFA_F_NOPREFIXROUTE)) return -ENOSPC;
    return finish(nlh);
}

int cnl_build_addr_dump(void *buf, size_t len, uint32_t seq, uint32_t portid, uint8_t family) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = family;
    return finish(nlh);
}

int cnl_build_route_add_host_v4(void *buf, size_t len, uint32_t seq, uint32_t portid,
                                uint32_t ifindex, uint32_t dst, uint32_t prefsrc) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_NEWROUTE,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = AF_INET;
    rtm->rtm_dst_len = 32;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_LINK;
    rtm->rtm_type = RTN_UNICAST;
    if (!mnl_attr_put_check(nlh, len, RTA_DST, sizeof(dst), &dst)) return -ENOSPC;
    if (!mnl_attr_put_u32_check(nlh, len, RTA_OIF, ifindex)) return -ENOSPC;
    if (!mnl_attr_put_check(nlh, len, RTA_PREFSRC, sizeof(prefsrc), &prefsrc)) return -ENOSPC;
    return finish(nlh);
}

int cnl_build_route_delete_v4(void *buf, size_t len, uint32_t seq, uint32_t portid,
                              uint32_t table, uint32_t dst, uint8_t dst_len, uint32_t ifindex) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = AF_INET;
    rtm->rtm_dst_len = dst_len;
    rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
    rtm->rtm_scope = RT_SCOPE_NOWHERE;
    if (!mnl_attr_put_u32_check(nlh, len, RTA_TABLE, table)) return -ENOSPC;
    if (dst_len > 0 && !mnl_attr_put_check(nlh, len, RTA_DST, sizeof(dst), &dst)) return -ENOSPC;
    if (ifindex != 0 && !mnl_attr_put_u32_check(nlh, len, RTA_OIF, ifindex)) return -ENOSPC;
    return finish(nlh);
}

int cnl_build_route_dump(void *buf, size_t len, uint32_t seq, uint32_t portid, uint8_t family) {
    struct nlmsghdr *nlh = put_header(buf, len, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, portid);
    if (nlh == NULL) return -ENOSPC;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
    rtm->rtm_family = family;
    return finish(nlh);
}

// ---- replies ----

static void copy_address(uint8_t out[16], const struct nlattr *attr) {
    size_t n = mnl_attr_get_payload_len(attr);
    if (n > 16) n = 16;
    memcpy(out, mnl_attr_get_payload(attr), n);
}

struct attr_table { const struct nlattr *attrs[64]; int max; };

static int collect_attr(const struct nlattr *attr, void *data) {
    struct attr_table *table = data;
    int type = mnl_attr_get_type(attr);
    if (type >= 0 && type <= table->max && type < 64) table->attrs[type] = attr;
    return MNL_CB_OK;
}

static int parse_link(const struct nlmsghdr *nlh, struct cnl_sink *sink) {
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg)) return MNL_CB_ERROR;
    const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    struct cnl_link link;
    memset(&link, 0, sizeof(link));
    link.index = (uint32_t)ifm->ifi_index;
    link.flags = ifm->ifi_flags;
    link.link_netnsid = -1;
    struct attr_table table = { .max = IFLA_MAX };
    memset(table.attrs, 0, sizeof(table.attrs));
    if (mnl_attr_parse(nlh, sizeof(*ifm), collect_attr, &table) < 0) return MNL_CB_ERROR;
    if (table.attrs[IFLA_IFNAME] && mnl_attr_validate(table.attrs[IFLA_IFNAME], MNL_TYPE_STRING) == 0)
        strncpy(link.name, mnl_attr_get_str(table.attrs[IFLA_IFNAME]), sizeof(link.name) - 1);
    if (table.attrs[IFLA_LINK_NETNSID] && mnl_attr_validate(table.attrs[IFLA_LINK_NETNSID], MNL_TYPE_U32) == 0)
        link.link_netnsid = (int32_t)mnl_attr_get_u32(table.attrs[IFLA_LINK_NETNSID]);
    if (table.attrs[IFLA_LINKINFO]) {
        const struct nlattr *inner;
        mnl_attr_for_each_nested(inner, table.attrs[IFLA_LINKINFO]) {
            if (mnl_attr_get_type(inner) == IFLA_INFO_KIND && mnl_attr_validate(inner, MNL_TYPE_STRING) == 0)
                strncpy(link.kind, mnl_attr_get_str(inner), sizeof(link.kind) - 1);
        }
    }
    if (sink->on_link) sink->on_link(sink->context, &link);
    return MNL_CB_OK;
}

static int parse_addr(const struct nlmsghdr *nlh, struct cnl_sink *sink) {
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifaddrmsg)) return MNL_CB_ERROR;
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    struct cnl_addr addr;
    memset(&addr, 0, sizeof(addr));
    addr.index = ifa->ifa_index;
    addr.family = ifa->ifa_family;
    addr.prefixlen = ifa->ifa_prefixlen;
    addr.scope = ifa->ifa_scope;
    addr.flags = ifa->ifa_flags;
    struct attr_table table = { .max = IFA_MAX };
    memset(table.attrs, 0, sizeof(table.attrs));
    if (mnl_attr_parse(nlh, sizeof(*ifa), collect_attr, &table) < 0) return MNL_CB_ERROR;
    if (table.attrs[IFA_ADDRESS]) copy_address(addr.address, table.attrs[IFA_ADDRESS]);
    if (table.attrs[IFA_LOCAL]) copy_address(addr.local, table.attrs[IFA_LOCAL]);
    else if (table.attrs[IFA_ADDRESS]) copy_address(addr.local, table.attrs[IFA_ADDRESS]);
    if (table.attrs[IFA_FLAGS] && mnl_attr_validate(table.attrs[IFA_FLAGS], MNL_TYPE_U32) == 0)
        addr.flags = mnl_attr_get_u32(table.attrs[IFA_FLAGS]);
    if (sink->on_addr) sink->on_addr(sink->context, &addr);
    return MNL_CB_OK;
}

static int parse_route(const struct nlmsghdr *nlh, struct cnl_sink *sink) {
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct rtmsg)) return MNL_CB_ERROR;
    const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
    struct cnl_route route;
    memset(&route, 0, sizeof(route));
    route.family = rtm->rtm_family;
    route.dst_len = rtm->rtm_dst_len;
    route.scope = rtm->rtm_scope;
    route.protocol = rtm->rtm_protocol;
    route.type = rtm->rtm_type;
    route.table = rtm->rtm_table;
    struct attr_table table = { .max = RTA_MAX };
    memset(table.attrs, 0, sizeof(table.attrs));
    if (mnl_attr_parse(nlh, sizeof(*rtm), collect_attr, &table) < 0) return MNL_CB_ERROR;
    if (table.attrs[RTA_TABLE] && mnl_attr_validate(table.attrs[RTA_TABLE], MNL_TYPE_U32) == 0)
        route.table = mnl_attr_get_u32(table.attrs[RTA_TABLE]);
    if (table.attrs[RTA_OIF] && mnl_attr_validate(table.attrs[RTA_OIF], MNL_TYPE_U32) == 0)
        route.oif = mnl_attr_get_u32(table.attrs[RTA_OIF]);
    if (table.attrs[RTA_DST]) copy_address(route.dst, table.attrs[RTA_DST]);
    if (table.attrs[RTA_PREFSRC]) copy_address(route.prefsrc, table.attrs[RTA_PREFSRC]);
    if (table.attrs[RTA_GATEWAY]) {
        copy_address(route.gateway, table.attrs[RTA_GATEWAY]);
        route.has_gateway = 1;
    }
    if (sink->on_route) sink->on_route(sink->context, &route);
    return MNL_CB_OK;
}

static int data_cb(const struct nlmsghdr *nlh, void *data) {
    struct cnl_sink *sink = data;
    switch (nlh->nlmsg_type) {
    case RTM_NEWLINK: return parse_link(nlh, sink);
    case RTM_NEWADDR: return parse_addr(nlh, sink);
    case RTM_NEWROUTE: return parse_route(nlh, sink);
    default: return MNL_CB_OK;
    }
}

static int ext_ack_attr(const struct nlattr *attr, void *data) {
    struct cnl_sink *sink = data;
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
        strncpy(sink->message, mnl_attr_get_str(attr), sizeof(sink->message) - 1);
        sink->message[sizeof(sink->message) - 1] = 0;
    }
    return MNL_CB_OK;
}

static int error_cb(const struct nlmsghdr *nlh, void *data) {
    struct cnl_sink *sink = data;
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct nlmsgerr)) {
        errno = EBADMSG;
        return MNL_CB_ERROR;
    }
    const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
    if (err->error == 0) return MNL_CB_STOP; // ACK
    if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
        // With NETLINK_CAP_ACK the echoed request is only its header; otherwise it is
        // the whole request. The extended-ack attributes follow it.
        size_t offset = sizeof(*err);
        if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - sizeof(struct nlmsghdr);
        if (offset <= mnl_nlmsg_get_payload_len(nlh)) mnl_attr_parse(nlh, (unsigned int)offset, ext_ack_attr, sink);
    }
    sink->error = err->error < 0 ? err->error : -err->error;
    errno = -sink->error;
    return MNL_CB_ERROR;
}

static int done_cb(const struct nlmsghdr *nlh, void *data) {
    (void)data;
    // A dump may end with an error code in its NLMSG_DONE payload.
    if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
        int code = *(const int *)mnl_nlmsg_get_payload(nlh);
        if (code < 0) {
            struct cnl_sink *sink = data;
            sink->error = code;
            errno = -code;
            return MNL_CB_ERROR;
        }
    }
    return MNL_CB_STOP;
}

static int noop_cb(const struct nlmsghdr *nlh, void *data) {
    (void)nlh; (void)data;
    return MNL_CB_OK;
}

static int overrun_cb(const struct nlmsghdr *nlh, void *data) {
    (void)nlh; (void)data;
    errno = ENOSPC;
    return MNL_CB_ERROR;
}

int cnl_parse_reply(const void *buf, size_t len, uint32_t seq, uint32_t portid, struct cnl_sink *sink) {
    static mnl_cb_t controls[NLMSG_MIN_TYPE] = {
        [NLMSG_NOOP] = noop_cb,
        [NLMSG_ERROR] = error_cb,
        [NLMSG_DONE] = done_cb,
        [NLMSG_OVERRUN] = overrun_cb,
    };
    sink->error = 0;
    sink->message[0] = 0;
    if (len < sizeof(struct nlmsghdr)) return -EPROTO;
    errno = 0;
    int ret = mnl_cb_run2(buf, len, seq, portid, data_cb, sink, controls, NLMSG_MIN_TYPE);
    if (ret < 0) {
        if (sink->error != 0) return sink->error;
        return errno != 0 ? -errno : -EPROTO;
    }
    return ret == MNL_CB_STOP ? 0 : 1;
}
