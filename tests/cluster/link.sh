#!/usr/bin/env bash
# A link rate for the stand-in hosts: a token bucket (tc tbf) on both ends of each
# host's interface, so traffic between any two hosts is held to RATE each way.
#
#   bash tests/cluster/link.sh 1gbit [BURST]     # e.g. 1gbit, 10gbit; BURST default 32kb
#   bash tests/cluster/link.sh off               # the bridge's own speed again
#   python3 tests/cluster/stream.py dnn1 dnn2    # what a TCP stream then gets
#
# No added latency: this kernel has no netem. Keep the burst small: a large
# one lets a whole training step's message through above the rate (measured:
# at 1 Gbit/s a 32 KB burst matched the alpha-beta model). Calibrate each link
# with stream.py rather than trusting RATE.
set -euo pipefail
rate=${1:?usage: link.sh RATE [BURST] | off}
burst=${2:-32kb}
state=/run/distnn-cluster
[ -f "$state/hosts" ] || { echo "link.sh: no stand-in hosts (bash tests/cluster/up.sh)" >&2; exit 2; }
i=0
while read -r name _ _; do
    i=$((i + 1))
    for end in "dev dnnv$i" "-n $name dev eth0"; do
        # shellcheck disable=SC2086  # "-n NAME dev IF" is several words
        set -- ${end}
        if [ "$1" = -n ]; then ns=(-n "$2"); dev=$4; else ns=(); dev=$2; fi
        if [ "$rate" = off ]; then
            tc "${ns[@]}" qdisc del dev "$dev" root 2>/dev/null || true
        else
            tc "${ns[@]}" qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 50ms
        fi
    done
done < "$state/hosts"
if [ "$rate" = off ]; then echo "link.sh: no limit between the hosts"
else echo "link.sh: $rate each way between the hosts (burst $burst)"; fi
