#!/usr/bin/env bash
# Train distnn on one machine with mpirun.
#
#   launch/local.sh                       # one rank per core, default settings
#   launch/local.sh -n 2 --epochs 5       # 2 ranks; the rest goes to distnn.train
#
# Ranks default to the number of cores (nproc); distnn gives each rank
# cores/ranks BLAS threads (DISTNN_THREADS=n overrides). Checkpoint and
# metrics (checkpoint.h5, metrics.jsonl) go to
# ${DISTNN_RUN_DIR:-runs/local}; the trainer always gets --resume, so after
# Ctrl-C (the ranks finish their step, write the checkpoint and exit 75) the
# same command carries on where it stopped. Delete the run directory, or set
# DISTNN_RUN_DIR, to start afresh. PYTHON names the interpreter; MPIRUN_ARGS
# adds options to mpirun. MPICH, Open MPI and Intel MPI are told apart by
# `mpirun --version` (launch/mpi.sh): each gets the options it needs and the
# stop request the way it passes it on.
set -uo pipefail

usage() {
    echo "usage: $0 [-n RANKS] [distnn.train arguments...]" >&2
    exit 2
}

ranks=$(nproc)
if [[ ${1:-} == -n ]]; then
    [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || usage
    ranks=$2
    shift 2
elif [[ ${1:-} == -h || ${1:-} == --help ]]; then
    usage
fi

PYTHON=${PYTHON:-python}
RUN_DIR=${DISTNN_RUN_DIR:-runs/local}
if ! command -v mpirun >/dev/null; then
    echo "local.sh: error: mpirun not found; pip install 'distnn[mpich]' or install an MPI" >&2
    exit 1
fi
mkdir -p "$RUN_DIR" || exit 1

# shellcheck source=launch/mpi.sh
. "$(dirname "$0")/mpi.sh"
distnn_statuses "$PYTHON" || exit 2  # DISTNN_EXIT_IOERR and the others
flavour=$(mpi_flavour)
mapfile -t options < <(mpi_options "$flavour" "$ranks" "$(nproc)")
echo "=== distnn: $ranks ranks ($flavour), checkpoint $RUN_DIR/checkpoint.h5"

# Ctrl-C or SIGTERM reaches this script (the launcher has a process group of
# its own); it is passed on to the launcher the way this MPI forwards it.
# shellcheck disable=SC2317,SC2329  # invoked by the traps below
forward() { mpi_stop "$(mpi_stop_signal "$flavour" "$1")"; }
trap 'forward TERM' TERM
trap 'forward INT' INT
# shellcheck disable=SC2086  # MPIRUN_ARGS is a list of words
mpi_start --own-group "$(mpi_launcher "$flavour")" -n "$ranks" "${options[@]}" ${MPIRUN_ARGS:-} \
    "$PYTHON" -m distnn.train --checkpoint "$RUN_DIR/checkpoint.h5" --resume \
    --metrics "$RUN_DIR/metrics.jsonl" "$@"
mpi_wait
distnn_status_note "$status" >&2
exit "$status"
