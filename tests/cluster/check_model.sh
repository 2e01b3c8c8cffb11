#!/usr/bin/env bash
# The benchmark's model of an Allreduce against two stand-in hosts over an emulated link:
#
#   bash tests/cluster/check_model.sh 1gbit 32kb       # RATE and BURST for link.sh
#   bash tests/cluster/check_model.sh 10gbit 128kb
#
# Sets the link and runs python -m distnn.bench.alphabeta across dnn1 and dnn2
# (one rank each), calibrating the link with one TCP stream before and after the
# run: the rate of a token bucket on this shared VM drifts. The report, in
# bench-results/link-RATE/alphabeta.md, puts the step measured across the hosts
# beside the model's prediction at the mean of the two rates. Needs the hosts
# (up.sh) and the bench's Python on PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rate=${1:?usage: check_model.sh RATE [BURST]}
burst=${2:-32kb}
out=bench-results/link-$rate
bash "$here/link.sh" "$rate" "$burst"
before=$(python3 "$here/stream.py" dnn1 dnn2 512)
python -m distnn.bench.alphabeta --launcher "bash $here/mpiexec -hosts dnn1:1,dnn2:1" \
    --out "$out" > /dev/null
after=$(python3 "$here/stream.py" dnn1 dnn2 512)
bash "$here/link.sh" off
gbps=$(python3 -c "print(round(($(awk '{print $4}' <<< "$before") + $(awk '{print $4}' <<< "$after")) / 2, 3))")
echo "link $rate (burst $burst): before the run $before; after it $after; mean $gbps Gbit/s"
python -m distnn.bench.alphabeta --report --link-gbps "$gbps" --out "$out" | sed -n '/^# The model/,$p'
echo "(the whole report: $out/alphabeta.md)"
