// rtnetlink over libmnl: request builders, reply parsing and the socket.
//
// Why C: the requests are nested attributes (IFLA_LINKINFO > IFLA_INFO_DATA >
// VETH_INFO_PEER) laid out with libmnl's alignment macros, and the socket and buffer
// sizes are macros (MNL_SOCKET_BUFFER_SIZE) that Swift cannot import.
//
// Every builder writes ONE request into the caller's buffer and returns its length, or
// -ENOSPC when the buffer is too small. Sequence number and port id are parameters so
// the bytes are deterministic (golden tests). IPv4 addresses are in network byte order.
// Everything else returns 0 (or a value >= 0) on success and -errno on failure.
#ifndef CNL_NETLINK_H
#define CNL_NETLINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// The receive buffer size libmnl recommends (MNL_SOCKET_BUFFER_SIZE).
size_t cnl_socket_buffer_size(void);

/// Opens a NETLINK_ROUTE socket (close-on-exec) in the calling thread's network
/// namespace, with NETLINK_EXT_ACK and NETLINK_CAP_ACK on, bound to an automatic port.
/// Stores the socket in *out and returns 0, or -errno.
int cnl_socket_open(void **out);
/// The port id the kernel gave the socket.
uint32_t cnl_socket_portid(void *sock);
/// The socket's file descriptor.
int cnl_socket_fd(void *sock);
/// Closes the socket.
void cnl_socket_close(void *sock);
/// Sends one request; returns bytes sent or -errno.
ssize_t cnl_socket_send(void *sock, const void *buf, size_t len);
/// Receives one datagram (several messages); returns bytes read or -errno.
ssize_t cnl_socket_recv(void *sock, void *buf, size_t len);

// ---- namespaces ----
// unshare(2) and setns(2) are _GNU_SOURCE declarations that Swift's Glibc module does
// not import.

/// unshare(CLONE_NEWNET) for the calling thread; 0 or -errno.
int cnl_unshare_net(void);
/// setns(fd, CLONE_NEWNET) for the calling thread; 0 or -errno.
int cnl_setns_net(int fd);

/// 1 if `path` is a namespace file (nsfs, i.e. a live pin), 0 if not, -errno on error.
/// In C because struct statfs is not imported by Swift's Glibc module.
int cnl_is_nsfs_path(const char *path);
/// 1 if `fd` is a namespace file (nsfs), 0 if not, -errno on error.
int cnl_is_nsfs_fd(int fd);

// ---- request builders ----

/// RTM_NEWLINK creating a veth pair in one request: the end `name` is placed in the
/// namespace `ns_fd` and its peer `peer_name` in `peer_ns_fd`, so no interface ever
/// appears in the namespace of the netlink socket.
/// Flags: NLM_F_REQUEST|NLM_F_ACK|NLM_F_CREATE|NLM_F_EXCL.
int cnl_build_veth(void *buf, size_t len, uint32_t seq, uint32_t portid,
                   const char *name, int ns_fd, const char *peer_name, int peer_ns_fd);
/// RTM_NEWLINK setting (up != 0) or clearing IFF_UP on the link `ifindex`
/// (ifi_change = IFF_UP, so no other flag changes).
int cnl_build_link_set_up(void *buf, size_t len, uint32_t seq, uint32_t portid,
                          uint32_t ifindex, int up);
/// RTM_NEWLINK setting the IPv6 address generation mode of `ifindex` to none
/// (IFLA_AF_SPEC / AF_INET6 / IFLA_INET6_ADDR_GEN_MODE = IN6_ADDR_GEN_MODE_NONE): the
/// link never gets a link-local address, so IPv6 has no source address on it. The netlink
/// form of keeping IPv6 off a link, for namespaces whose /proc/sys is read-only.
int cnl_build_link_ipv6_addr_gen_none(void *buf, size_t len, uint32_t seq, uint32_t portid, uint32_t ifindex);
/// RTM_NEWLINK setting the IPv4 `forwarding` of `ifindex` to `on`
/// (IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF / IPV4_DEVCONF_FORWARDING).
int cnl_build_link_ipv4_forwarding(void *buf, size_t len, uint32_t seq, uint32_t portid, uint32_t ifindex, int on);
/// RTM_DELLINK of the link called `name`.
int cnl_build_link_delete(void *buf, size_t len, uint32_t seq, uint32_t portid, const char *name);
/// RTM_GETLINK of the link called `name` (NLM_F_ACK, so the reply ends with an ACK).
int cnl_build_link_get(void *buf, size_t len, uint32_t seq, uint32_t portid, const char *name);
/// RTM_NEWADDR of an IPv4 address `local`/`prefixlen` on `ifindex`, scope universe,
/// IFA_F_NOPREFIXROUTE (so no prefix route appears), NLM_F_CREATE|NLM_F_EXCL|NLM_F_ACK.
int cnl_build_addr_add_v4(void *buf, size_t len, uint32_t seq, uint32_t portid,
                          uint32_t ifindex, uint32_t local, uint8_t prefixlen);
/// RTM_GETADDR dump of `family` (AF_INET, AF_INET6 or AF_UNSPEC).
int cnl_build_addr_dump(void *buf, size_t len, uint32_t seq, uint32_t portid, uint8_t family);
/// RTM_NEWROUTE of the host route `dst`/32 via device `ifindex`, scope link, table
/// main, protocol static, preferred source `prefsrc`, NLM_F_CREATE|NLM_F_EXCL|NLM_F_ACK.
int cnl_build_route_add_host_v4(void *buf, size_t len, uint32_t seq, uint32_t portid,
                                uint32_t ifindex, uint32_t dst, uint32_t prefsrc);
/// RTM_DELROUTE of the IPv4 route `dst`/`dst_len` in `table` through device `ifindex`
/// (0: any device), any scope, type and protocol; NLM_F_ACK.
int cnl_build_route_delete_v4(void *buf, size_t len, uint32_t seq, uint32_t portid,
                              uint32_t table, uint32_t dst, uint8_t dst_len, uint32_t ifindex);
/// RTM_GETROUTE dump of `family`.
int cnl_build_route_dump(void *buf, size_t len, uint32_t seq, uint32_t portid, uint8_t family);
/// RTM_GETLINK dump of every link.
int cnl_build_link_dump(void *buf, size_t len, uint32_t seq, uint32_t portid);

// ---- replies ----

/// One link from an RTM_NEWLINK reply.
struct cnl_link {
    uint32_t index;
    uint32_t flags;      // IFF_*
    char name[16];
    char kind[16];       // IFLA_INFO_KIND, empty if none
    int32_t link_netnsid; // IFLA_LINK_NETNSID, -1 if absent
};

/// One address from an RTM_NEWADDR reply.
struct cnl_addr {
    uint32_t index;
    uint8_t family;
    uint8_t prefixlen;
    uint8_t scope;
    uint32_t flags;       // IFA_FLAGS if present, else ifa_flags
    uint8_t local[16];    // IFA_LOCAL (IPv4) or IFA_ADDRESS
    uint8_t address[16];  // IFA_ADDRESS
};

/// One route from an RTM_NEWROUTE reply.
struct cnl_route {
    uint8_t family;
    uint8_t dst_len;
    uint8_t scope;
    uint8_t protocol;
    uint8_t type;
    uint32_t table;       // RTA_TABLE if present, else rtm_table
    uint32_t oif;         // 0 if absent
    uint8_t has_gateway;
    uint8_t dst[16];
    uint8_t prefsrc[16];
    uint8_t gateway[16];
};

/// Where parsed replies go. Callbacks may be NULL. `error` and `message` are filled
/// when the kernel answers with an error: `message` holds NLMSGERR_ATTR_MSG, if any.
struct cnl_sink {
    void *context;
    void (*on_link)(void *context, const struct cnl_link *link);
    void (*on_addr)(void *context, const struct cnl_addr *addr);
    void (*on_route)(void *context, const struct cnl_route *route);
    int error;            // -errno from NLMSG_ERROR, 0 if none
    char message[256];    // extended-ack text, NUL-terminated, empty if none
};

/// Parses one received datagram of replies to request `seq` from port `portid`.
/// Returns 1 when more datagrams are expected (a dump in progress), 0 when the reply
/// is complete (ACK or NLMSG_DONE), or -errno: the kernel's error (also in sink->error,
/// with sink->message), -EPROTO for a malformed datagram, -ESRCH/-EPROTO for a sequence
/// or port mismatch (libmnl's checks).
int cnl_parse_reply(const void *buf, size_t len, uint32_t seq, uint32_t portid, struct cnl_sink *sink);

#endif
