#!/usr/bin/env bash
# Stop the cluster that start_slurm.sh DIR started: cancel its jobs, then end
# its daemons by the pids in DIR/run (TERM, then KILL after 15 s).
#
#   tests/slurm/stop_slurm.sh DIR [--rm]     # --rm also deletes DIR
set -uo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 DIR [--rm]" >&2
    exit 2
fi
DIR=$1
[[ -d $DIR ]] || exit 0
DIR=$(cd "$DIR" && pwd)

if [[ -f $DIR/etc/slurm.conf && -f $DIR/run/slurmctld.pid ]]; then
    export SLURM_CONF=$DIR/etc/slurm.conf
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null)
    if [[ -n $jobs ]]; then
        # shellcheck disable=SC2086  # one job id per word
        timeout 10 scancel $jobs 2>/dev/null
        for _ in $(seq 20); do
            [[ -z $(timeout 10 squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

# Reverse order of start-up.
for pidfile in "$DIR"/run/slurmd-*.pid "$DIR"/run/{slurmctld,slurmdbd,mariadbd,munged}.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
done

if [[ ${2:-} == --rm ]]; then
    rm -rf "$DIR"
fi
exit 0
