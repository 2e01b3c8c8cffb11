# launch/mpi.sh: what the launch scripts need to know of the MPI they launch.
# Sourced by local.sh (slurm.sbatch and pbs.sh do not use it yet); nothing to
# set by hand: the MPI is read off `mpirun --version`.
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
# Every launcher is started in a process group of its own (setsid), so that a
# terminal's Ctrl-C reaches only the script, which passes it on once, the
# MPI's way; and whatever of the job is left when the launcher ends is
# killed with its group.

# mpich, openmpi, intel or unknown.
mpi_flavour() {
    local version
    version=$(mpirun --version 2>&1 | head -n 5)
    case $version in
        *"Open MPI"* | *OpenRTE* | *PRRTE*) echo openmpi ;;
        *"Intel(R) MPI"*) echo intel ;;
        *HYDRA* | *MPICH*) echo mpich ;;
        *) echo unknown ;;
    esac
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

# Options flavour $1 needs on one machine for $2 ranks, one word a line: more
# ranks than cores, and running as root, each only when it is so. Open MPI
# also gets the shared-memory one-sided component (which distnn's shm summing
# uses) instead of trying UCX's, which prints an error on every rank where
# UCX has no network to offer.
mpi_options() {
    local flavour=$1 ranks=$2
    case $flavour in
        openmpi)
            ((ranks > $(nproc))) && echo --oversubscribe
            ((EUID == 0)) && echo --allow-run-as-root
            printf '%s\n' --mca osc sm,rdma
            ;;
    esac
    return 0
}

# Start the launcher "$@" in the background, in its own process group;
# sets launcher_pid (also the group's id).
mpi_start() {
    if command -v setsid >/dev/null; then
        setsid "$@" &
    else  # no util-linux (macOS): a terminal's Ctrl-C reaches the launcher too
        "$@" &
    fi
    launcher_pid=$!
}

# Send stop signal $1 to the launcher, which passes it on to every rank.
mpi_stop() {
    kill -s "$1" "$launcher_pid" 2>/dev/null
}

# Wait for the launcher, also through trapped signals; sets status. Then ends
# whatever of its group is left, so that no rank outlives the launcher.
mpi_wait() {
    while kill -0 "$launcher_pid" 2>/dev/null; do
        wait "$launcher_pid"
    done
    wait "$launcher_pid"
    status=$?
    kill -KILL -- "-$launcher_pid" 2>/dev/null
    return 0
}
