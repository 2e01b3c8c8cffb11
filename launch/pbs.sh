#!/bin/bash
# Train distnn on a PBS Pro / OpenPBS or Torque cluster.
#
#   qsub launch/pbs.sh
#   qsub -v DISTNN_ARGS="--epochs 30 --lr 0.5" launch/pbs.sh   # arguments for distnn.train
#   qsub -N wide -v "DISTNN_ARGS='--layers 784,300,10'" launch/pbs.sh   # a second experiment
# (qsub passes no arguments to a script, hence DISTNN_ARGS; qsub -v splits at
# commas, so quote a value that has some as above. Arguments given some
# other way, e.g. Torque's `qsub -F "..."`, are passed on too.)
#
# Resources: PBS Pro / OpenPBS read the `select` line; on Torque use the
# `nodes=...:ppn=...` line instead. mpiprocs (ppn) = MPI ranks per node:
# one per core, with ompthreads=1 BLAS thread per rank.
#
# Run directory: ${DISTNN_RUN_DIR:-runs/$PBS_JOBNAME} under the directory
# qsub was run in, so a resubmitted job (same -N name) finds the checkpoint.
# One experiment, one name; delete the directory to start afresh. It, and
# the data file, must be on a file system all nodes see. Prepare the data
# once on the login node: `python -m distnn.data prepare --out PATH`, then
# pass --data PATH in DISTNN_ARGS.
#
# Walltime. When the walltime runs out PBS sends SIGTERM to the job's
# processes and SIGKILL kill_delay seconds later (often only 10-30 s). To
# leave the trainer time to finish its step and write the checkpoint, this
# script sends SIGTERM itself DISTNN_WALLTIME_LEAD seconds (default 120)
# before the walltime, read from $PBS_WALLTIME or `qstat -f`, the way the
# MPI passes it on to the ranks (launch/mpi.sh reads `mpirun --version`: Open
# MPI gets SIGUSR1; Intel MPI's mpiexec.hydra is started, not its mpirun
# script); rank 0 writes the checkpoint and the trainer exits 75. The
# trainer always gets --resume, so resubmitting the same qsub command
# continues from the checkpoint. With DISTNN_RESUBMIT=1 the script
# resubmits itself (qsub $PBS_O_WORKDIR/launch/pbs.sh, or DISTNN_PBS_SCRIPT,
# with the same name and arguments and the #PBS resources below, not those
# given to the first qsub) after such a stop, at most DISTNN_MAX_RESUBMITS
# times (default 10). PBS's own rerun (-r y) after a
# node failure also resumes from the checkpoint.
#
#PBS -N distnn
#PBS -l select=1:ncpus=4:mpiprocs=4:ompthreads=1
## Torque: #PBS -l nodes=1:ppn=4
#PBS -l walltime=01:00:00
#PBS -j oe
#PBS -r y

# --- site setup: edit for your cluster -------------------------------------
# module load gcc openmpi            # the MPI that mpi4py was built against
# source "$HOME/venvs/distnn/bin/activate"
# ---------------------------------------------------------------------------

set -uo pipefail

# launch/mpi.sh, beside this script: PBS may run a copy of the script, so
# look where qsub was run too.
for dir in "$(dirname "$0")" "${PBS_O_WORKDIR:-.}/launch"; do
    if [[ -f $dir/mpi.sh ]]; then
        # shellcheck source=launch/mpi.sh
        . "$dir/mpi.sh"
        break
    fi
done
if ! declare -F mpi_flavour >/dev/null; then
    echo "pbs.sh: error: launch/mpi.sh not found beside $0 or in ${PBS_O_WORKDIR:-.}/launch" >&2
    exit 2
fi
distnn_statuses "${PYTHON:-python}" || exit 2  # DISTNN_EXIT_INTERRUPTED and the others
cd "${PBS_O_WORKDIR:-.}" || exit 1
PYTHON=${PYTHON:-python}
RUN_DIR=${DISTNN_RUN_DIR:-runs/${PBS_JOBNAME:-distnn}}
CHECKPOINT=$RUN_DIR/checkpoint.h5
LEAD=${DISTNN_WALLTIME_LEAD:-120}
ARGS_FILE=$RUN_DIR/pbs-args  # the arguments, kept for a self-resubmitted job
read -r -a train_args <<<"${DISTNN_ARGS:-}"
train_args+=("$@")

# One rank per line of the node file (PBS Pro writes one line per mpiprocs).
if [[ -n ${PBS_NODEFILE:-} && -f $PBS_NODEFILE ]]; then
    NTASKS=$(wc -l <"$PBS_NODEFILE")
    hostfile=(-machinefile "$PBS_NODEFILE")
else
    NTASKS=$(nproc)
    hostfile=()
fi
# One BLAS thread per rank unless told otherwise (PBS Pro sets OMP_NUM_THREADS
# from ompthreads); distnn.threads reads DISTNN_THREADS.
THREADS=${OMP_NUM_THREADS:-1}
export DISTNN_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

# Walltime in seconds: Torque sets PBS_WALLTIME; otherwise ask qstat.
walltime=${PBS_WALLTIME:-}
if [[ -z $walltime && -n ${PBS_JOBID:-} ]]; then
    hms=$(qstat -f "$PBS_JOBID" 2>/dev/null | sed -n 's/^ *Resource_List.walltime = //p')
    if [[ $hms =~ ^([0-9]+):([0-9]+):([0-9]+)$ ]]; then
        walltime=$((10#${BASH_REMATCH[1]} * 3600 + 10#${BASH_REMATCH[2]} * 60 + 10#${BASH_REMATCH[3]}))
    fi
fi

mkdir -p "$RUN_DIR" || exit 1
if ((${DISTNN_RESUBMIT_COUNT:-0} > 0)) && [[ -f $ARGS_FILE ]]; then
    mapfile -d '' -t train_args <"$ARGS_FILE"
else
    printf '%s\0' "${train_args[@]}" >"$ARGS_FILE"
fi
flavour=$(mpi_flavour)
echo "=== distnn job ${PBS_JOBID:-?} on $(hostname) at $(date '+%F %T'):" \
    "$NTASKS ranks x $THREADS threads ($flavour), walltime ${walltime:-unknown} s," \
    "checkpoint $CHECKPOINT"

# PBS signals every process of the job (qdel, walltime): mpirun gets it too
# and passes it on, so the traps only take note; another copy sent later would
# reach the ranks as a second request, which means "stop now, no checkpoint".
# The clock below signals mpirun itself, before PBS does.
signalled=
walltime_stop=
launcher_pid=
trap 'signalled=TERM' TERM
trap 'signalled=INT' INT

mapfile -t options < <(mpi_options "$flavour" "$NTASKS")
# shellcheck disable=SC2086  # MPIRUN_ARGS is a list of words
mpi_start "$(mpi_launcher "$flavour")" -n "$NTASKS" "${hostfile[@]}" "${options[@]}" \
    ${MPIRUN_ARGS:-} "$PYTHON" -m distnn.train --checkpoint "$CHECKPOINT" --resume \
    --metrics "$RUN_DIR/metrics.jsonl" "${train_args[@]}"

# Wait for mpirun, looking at the clock every 5 s: LEAD seconds before the
# walltime, pass SIGTERM on as if PBS had sent it. (SECONDS counts from the
# start of this script, which is close enough to the start of the job.)
deadline=
if [[ -n $walltime ]] && ((walltime > LEAD)); then
    deadline=$((walltime - LEAD))
fi
while kill -0 "$launcher_pid" 2>/dev/null; do
    if [[ -n $deadline && -z $signalled ]] && ((SECONDS >= deadline)); then
        signalled=$(mpi_stop_signal "$flavour" TERM)
        echo "=== $(date '+%F %T') walltime ends in about $LEAD s: SIG$signalled to the ranks"
        walltime_stop=1
        mpi_stop "$signalled"  # mpirun passes it on to the ranks
    fi
    sleep 5 &
    wait $!  # returns at once when a trapped signal arrives
done
mpi_wait
echo "=== $(date '+%F %T') distnn.train exited with status $status"
distnn_status_note "$status"

# Resubmit only after our own walltime stop, never after a qdel.
if [[ $status == "$DISTNN_EXIT_INTERRUPTED" && -n $walltime_stop && ${DISTNN_RESUBMIT:-0} == 1 ]]; then
    count=${DISTNN_RESUBMIT_COUNT:-0}
    if ((count >= ${DISTNN_MAX_RESUBMITS:-10})); then
        echo "=== resubmitted $count times already: not again"
    # The arguments travel in $ARGS_FILE: qsub -v would split them at commas.
    elif qsub -N "${PBS_JOBNAME:-distnn}" \
            -v "DISTNN_RUN_DIR=$RUN_DIR,DISTNN_RESUBMIT=1,DISTNN_RESUBMIT_COUNT=$((count + 1))" \
            "${DISTNN_PBS_SCRIPT:-$PBS_O_WORKDIR/launch/pbs.sh}"; then
        echo "=== resubmitted: the new job resumes from $CHECKPOINT"
    else
        echo "=== qsub failed: resubmit by hand to continue from $CHECKPOINT"
    fi
fi
exit "$status"
