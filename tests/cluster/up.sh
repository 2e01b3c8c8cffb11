#!/usr/bin/env bash
# Stand-in cluster hosts on this one machine: bash tests/cluster/up.sh [N]  (N >= 2, default 2)
#
# Host i (1..N) is named dnn<i>: a network namespace with its own hostname (a UTS
# namespace), its own interface eth0 at 198.18.0.<10+i>/24 on the bridge dnnbr0, its
# own mount table (the same files), and its own CPU (CPU (i-1) mod the machine's
# CPUs, by taskset when a command runs there).
# The head (this machine's own namespace) is 198.18.0.1 on the same bridge.
# 198.18.0.0/15 is the range set aside for benchmarking (RFC 2544): no traffic
# leaves the bridge.
#
#   bash tests/cluster/on-host dnn1 hostname     # run a command on a host
#   cat /run/distnn-cluster/hosts                # name address cpu, one host a line
#   bash tests/cluster/down.sh                   # remove it all
#
# Root only. Idempotent: it first removes what an earlier up.sh made.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
n=${1:-2}
if [ "$(id -u)" != 0 ]; then echo "up.sh: needs root (network namespaces, a bridge)" >&2; exit 1; fi
if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 2 ] || [ "$n" -gt 200 ]; then
    echo "up.sh: N must be a number of hosts from 2 to 200, not '$n'" >&2; exit 2
fi
for tool in ip unshare nsenter taskset; do
    command -v "$tool" >/dev/null || { echo "up.sh: $tool is missing (apt-get install iproute2 util-linux)" >&2; exit 1; }
done
bash "$here/down.sh"

state=/run/distnn-cluster
mkdir -p "$state"
# The files that hold the hosts' UTS namespaces must live on a private mount.
mount -t tmpfs distnn-cluster "$state"
mount --make-private "$state"
cpus=$(nproc --all)

ip link add dnnbr0 type bridge
ip addr add 198.18.0.1/24 dev dnnbr0
ip link set dnnbr0 up
for i in $(seq 1 "$n"); do
    name=dnn$i addr=198.18.0.$((10 + i)) cpu=$(((i - 1) % cpus))
    ip netns add "$name"
    ip link add "dnnv$i" type veth peer name eth0 netns "$name"
    ip link set "dnnv$i" master dnnbr0 up
    ip -n "$name" addr add "$addr/24" dev eth0
    ip -n "$name" link set eth0 up
    ip -n "$name" link set lo up
    touch "$state/$name.uts" "$state/$name.mnt"
    unshare --uts="$state/$name.uts" hostname "$name"
    # Its own mount table, a copy of this one: the same files (a cluster's shared
    # file system), but a test can mount a directory read-only on one host alone.
    unshare --mount="$state/$name.mnt" --propagation private true
    echo "$name $addr $cpu" >> "$state/hosts"
done
# Every host, and the head, reach each other by name.
sed -i '/# distnn-cluster$/d' /etc/hosts
{ echo "198.18.0.1 dnnhead # distnn-cluster"
  while read -r name addr _; do echo "$addr $name # distnn-cluster"; done < "$state/hosts"; } >> /etc/hosts
# Each host reaches the head over the bridge: a TCP connection from each.
python3 - "$here/on-host" "$n" <<'PY'
import socket, subprocess, sys
on_host, n = sys.argv[1], int(sys.argv[2])
with socket.create_server(("198.18.0.1", 0)) as server:
    server.settimeout(5)
    port = server.getsockname()[1]
    for i in range(1, n + 1):
        connect = f"import socket; socket.create_connection(('198.18.0.1', {port}), 5)"
        probe = subprocess.Popen(["bash", on_host, f"dnn{i}", f'{sys.executable} -c "{connect}"'])
        try:
            server.accept()[0].close()
        except TimeoutError:
            sys.exit(f"up.sh: dnn{i} cannot reach the head at 198.18.0.1")
        probe.wait()
PY
echo "up.sh: $n hosts up: $(cut -d' ' -f1 "$state/hosts" | tr '\n' ' ')(head: dnnhead, 198.18.0.1)"
