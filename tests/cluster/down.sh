#!/usr/bin/env bash
# Remove what tests/cluster/up.sh made: the hosts' processes, namespaces, interfaces, bridge.
# Idempotent: with nothing up, it does nothing.
set -uo pipefail
if [ "$(id -u)" != 0 ]; then echo "down.sh: needs root" >&2; exit 1; fi
state=/run/distnn-cluster
for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^dnn[0-9]+$/ {print $1}'); do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    ip netns delete "$ns"
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^dnnv[0-9]+@/ {split($2, a, "@"); print a[1]}'); do
    ip link delete "$link" 2>/dev/null
done
ip link show dnnbr0 >/dev/null 2>&1 && ip link delete dnnbr0
if mountpoint -q "$state" 2>/dev/null; then
    for f in "$state"/*.uts "$state"/*.mnt; do [ -e "$f" ] && umount "$f" 2>/dev/null; done
    umount "$state"
fi
rm -rf "$state"
[ -w /etc/hosts ] && sed -i '/# distnn-cluster$/d' /etc/hosts
exit 0
