#!/usr/bin/env bash
# The baseline that `scripts/bench` measures airlock against: the sandbox topology of
# `airlock netns create` built with iproute2, as a careful administrator would script it.
# It is deliberately the fast way (one `ip -batch` per namespace, sysctls written through
# `nsenter --net` rather than `ip netns exec`), so a ratio against it is not flattered.
#
#   ip-topology.sh create NAME [GATEWAY_CIDR SANDBOX_CIDR]   pins NAME (S) and NAME.gw (G)
#   ip-topology.sh destroy NAME
#   ip-topology.sh run NAME -- CMD [ARG...]                   create, run CMD in S, destroy
#
# Same shape as airlock: veth gw0 in G, eth0 in S, each end made directly in its
# namespace; lo up in both; IPv6 off on both veth ends; no default route in S.
set -euo pipefail

create() {
  local name=$1 gw=${2:-169.254.200.1/30} sb=${3:-169.254.200.2/30}
  ip netns add "$name"
  ip netns add "$name.gw"
  ip link add gw0 netns "$name.gw" type veth peer name eth0 netns "$name"
  nsenter --net="/run/netns/$name.gw" sysctl -qw net.ipv6.conf.gw0.disable_ipv6=1
  nsenter --net="/run/netns/$name" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
  ip -n "$name.gw" -batch - <<BATCH
link set lo up
addr add $gw dev gw0
link set gw0 up
BATCH
  ip -n "$name" -batch - <<BATCH
link set lo up
addr add $sb dev eth0
link set eth0 up
BATCH
}

destroy() {
  local name=$1
  ip netns del "$name"
  ip netns del "$name.gw"
}

case "${1:-}" in
  create) shift; create "$@" ;;
  destroy) shift; destroy "$@" ;;
  run)
    shift; name=$1; shift
    [ "${1:-}" = "--" ] && shift
    create "$name"
    status=0
    ip netns exec "$name" "$@" || status=$?
    destroy "$name"
    exit "$status" ;;
  *) echo "usage: ip-topology.sh create NAME [GW_CIDR SB_CIDR] | destroy NAME | run NAME -- CMD" >&2; exit 2 ;;
esac
