#include "cnl_netlink.h"
int cnl_placeholder_netlink(void) { return 0; }
