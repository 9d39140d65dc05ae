#ifndef CNL_NETLINK_H
#define CNL_NETLINK_H
int cnl_placeholder_netlink(void);
#endif
