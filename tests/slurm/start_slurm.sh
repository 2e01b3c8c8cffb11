#!/usr/bin/env bash
# Start a throwaway single-node Slurm cluster on this machine, for tests.
#
#   tests/slurm/start_slurm.sh DIR      # then: source DIR/env.sh; sbatch ...
#   tests/slurm/stop_slurm.sh DIR
#
# Everything lives under DIR: configuration, munge key and socket, state,
# spool, logs, pid files. Nothing in /etc is touched, and the daemons listen
# on free ports of 127.0.0.1 only, so a system Slurm (if any) is left alone.
# Slurm commands find this cluster through SLURM_CONF, set by DIR/env.sh.
#
# Daemons, all run as root (the test machine has no systemd; we start them
# by hand): munged, then -- when slurmdbd and mariadbd are installed --
# mariadbd and slurmdbd so that `sacct` works (Slurm 22.05 has no
# file-based accounting; without slurmdbd sacct has nothing to read), then
# slurmctld and slurmd. Without slurmdbd the cluster still runs jobs and
# records finished ones with jobcomp/filetxt in DIR/jobcomp.txt.
#
# Needs (Debian 12):
#   apt-get install -y slurm-wlm slurmdbd munge mariadb-server
# Exits 0 once `sinfo` shows the node idle; non-zero with the logs' tails
# printed otherwise. DISTNN_SLURM_NO_DBD=1 skips the database;
# DISTNN_SLURM_CPUS=N declares N CPUs on each node (default: nproc).
# DISTNN_SLURM_EXTRA holds more lines for slurm.conf (e.g. SlurmdTimeout=5).
#
# Several nodes: DISTNN_SLURM_HOSTS="dnn1 dnn2" names stand-in hosts of
# tests/cluster/up.sh. Then each runs its own slurmd (NodeName = the host's
# name, at its address), slurmctld listens on the head's bridge address
# 198.18.0.1, and sbatch, srun and sacct work from the head.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
for cmd in munged slurmctld slurmd sinfo sbatch; do
    if ! command -v "$cmd" >/dev/null; then
        echo "error: $cmd not found; install with: apt-get install -y slurm-wlm munge" >&2
        exit 3
    fi
done
if [[ $(id -u) -ne 0 ]]; then
    echo "error: must run as root (slurmd runs jobs as their owner)" >&2
    exit 3
fi

WITH_DBD=1
if [[ -n ${DISTNN_SLURM_NO_DBD:-} ]] || ! command -v slurmdbd >/dev/null \
        || ! command -v mariadbd >/dev/null || ! command -v mariadb-install-db >/dev/null; then
    WITH_DBD=0
fi

mkdir -p "$DIR"/{etc,log,run,state,spool,munge,mysql,tmp}
# munged wants its socket directory searchable by all, the key private.
chmod 755 "$DIR/munge"

# Free TCP ports on 127.0.0.1: mariadb, slurmdbd, slurmctld, slurmd.
read -r PORT_DB PORT_DBD PORT_CTLD PORT_D < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)
HOST=$(hostname -s)
HOSTS=${DISTNN_SLURM_HOSTS:-}
CTLD_ADDR=127.0.0.1
if [[ -n $HOSTS ]]; then
    [[ -f /run/distnn-cluster/hosts ]] || { echo "error: no stand-in hosts (tests/cluster/up.sh)" >&2; exit 3; }
    CTLD_ADDR=198.18.0.1
fi
# DISTNN_SLURM_CPUS may exceed the real cores (config_overrides below), so
# that tests can run two small jobs side by side on a 2-core machine.
CPUS=${DISTNN_SLURM_CPUS:-$(nproc)}
MUNGE_SOCKET=$DIR/munge/munge.socket.2

die() {
    echo "error: $*" >&2
    for f in "$DIR"/log/*.log; do
        [[ -f $f ]] || continue
        echo "--- $f" >&2
        tail -n 20 "$f" >&2
    done
    exit 1
}

# wait_for SECONDS DAEMON COMMAND...: poll until COMMAND succeeds; give up
# early if DAEMON's pid file names a process that has died.
wait_for() {
    local seconds=$1 daemon=$2
    shift 2
    local deadline=$((SECONDS + seconds)) pidfile=$DIR/run/$daemon.pid pid
    until "$@" >/dev/null 2>&1; do
        if [[ -f $pidfile ]]; then
            pid=$(<"$pidfile")
            kill -0 "$pid" 2>/dev/null || die "$daemon exited"
        fi
        ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $daemon"
        sleep 0.5
    done
}

# --- munge: our own key and socket, so no system munged is needed.
mungekey --create --force --keyfile="$DIR/munge/munge.key" >/dev/null
chmod 600 "$DIR/munge/munge.key"
munged --force \
    --key-file="$DIR/munge/munge.key" \
    --socket="$MUNGE_SOCKET" \
    --pid-file="$DIR/run/munged.pid" \
    --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" \
    || die "munged did not start"
wait_for 20 munged munge --socket="$MUNGE_SOCKET" -n

# --- accounting database and slurmdbd.
if ((WITH_DBD)); then
    mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
    # Started in the background and not waited for: stop_slurm.sh ends it.
    mariadbd --no-defaults --user=root --datadir="$DIR/mysql" \
        --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mariadbd.pid" \
        --port="$PORT_DB" --bind-address=127.0.0.1 --skip-name-resolve \
        --innodb-buffer-pool-size=32M --log-error="$DIR/log/mariadbd.log" \
        </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadbd mariadb-admin --no-defaults --protocol=tcp \
        --host=127.0.0.1 --port="$PORT_DB" --user=root ping

    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$PORT_DBD
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$PORT_DB
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    SLURM_CONF=$DIR/etc/slurm.conf slurmdbd || die "slurmdbd did not start"
    wait_for 60 slurmdbd bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT_DBD"
    ACCOUNTING="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$PORT_DBD
AccountingStoragePass=$MUNGE_SOCKET"
else
    ACCOUNTING="AccountingStorageType=accounting_storage/none"
fi

# --- slurm.conf: one node, one partition; short timeouts suit tests.
# proctrack/linuxproc and task/none: cgroups may be missing in containers.
# Job ids start somewhere new for every throwaway cluster: MPICH names its
# shared-memory segment after the PMI job name (job.step under srun), and a
# segment left in /dev/shm by a killed step of an earlier cluster's job with
# the same id breaks MPI_Init of the new one ("Message ... truncated").
FIRST_JOB_ID=$(( (($(date +%s) / 10) % 500000) * 100 + 1000 ))
# The NodeName lines, and the partition's node list: this machine, or the hosts.
nodes() {
    if [[ -z $HOSTS ]]; then
        echo "NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN"
        return
    fi
    local name addr
    for name in $HOSTS; do
        addr=$(awk -v h="$name" '$1 == h {print $2}' /run/distnn-cluster/hosts)
        [[ -n $addr ]] || die "no stand-in host $name (tests/cluster/up.sh)"
        echo "NodeName=$name NodeAddr=$addr CPUs=$CPUS State=UNKNOWN"
    done
}
node_names() { if [[ -z $HOSTS ]]; then echo "$HOST"; else echo "${HOSTS// /,}"; fi; }
cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=distnntest
FirstJobId=$FIRST_JOB_ID
SlurmctldHost=$HOST($CTLD_ADDR)
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_D
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
TmpFS=$DIR/tmp
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
PlugStackConfig=$DIR/etc/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
# Time limits: kill promptly at the limit, give SIGTERM'd steps 10 s.
KillWait=10
OverTimeLimit=0
# Keep finished jobs visible to scontrol for 10 minutes.
MinJobAge=600
JobRequeue=1
$ACCOUNTING
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
${DISTNN_SLURM_EXTRA:-}
$(nodes)
PartitionName=debug Nodes=$(node_names) Default=YES MaxTime=INFINITE State=UP
EOF
: >"$DIR/etc/plugstack.conf"
cat >"$DIR/env.sh" <<EOF
export SLURM_CONF=$DIR/etc/slurm.conf
EOF
export SLURM_CONF=$DIR/etc/slurm.conf

slurmctld || die "slurmctld did not start"
wait_for 60 slurmctld scontrol ping
if [[ -z $HOSTS ]]; then
    mkdir -p "$DIR/spool/$HOST"
    slurmd || die "slurmd did not start"
else
    on_host=$(cd "$(dirname "$0")/../cluster" && pwd)/on-host
    for name in $HOSTS; do
        mkdir -p "$DIR/spool/$name"
        # A node's TmpFS is its own, as on a real cluster: srun --mpi=pmix makes
        # /tmp-like directories named after the step, the same on every node.
        bash "$on_host" "$name" "mount -t tmpfs distnn-tmp-$name $DIR/tmp" \
            || die "no TmpFS for $name"
        bash "$on_host" "$name" "SLURM_CONF=$SLURM_CONF slurmd -N $name" \
            || die "slurmd did not start on $name"
    done
fi
node_idle() { [[ $(sinfo -h -N -o %t 2>/dev/null | sort -u) == idle ]]; }
wait_for 60 slurmd node_idle
echo "slurm is up: source $DIR/env.sh (accounting: $( ((WITH_DBD)) && echo slurmdbd || echo none))"
