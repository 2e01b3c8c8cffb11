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
# adds options to mpirun.
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

echo "=== distnn: $ranks ranks, checkpoint $RUN_DIR/checkpoint.h5"
# exec: mpirun gets Ctrl-C / SIGTERM directly and passes it to the ranks.
# shellcheck disable=SC2086  # MPIRUN_ARGS is a list of words
exec mpirun -n "$ranks" ${MPIRUN_ARGS:-} \
    "$PYTHON" -m distnn.train --checkpoint "$RUN_DIR/checkpoint.h5" --resume \
    --metrics "$RUN_DIR/metrics.jsonl" "$@"
