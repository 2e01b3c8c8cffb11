#!/usr/bin/env bash
# The whole test suite: the serial tests, then the distributed ones on 2 and 4 ranks.
#
#   bash tests/run.sh            # what CI runs (slow tests left out)
#   bash tests/run.sh -m slow    # only the slow ones (real MNIST training)
#
# Extra arguments go to the serial pytest run. mpirun is the one the `mpich`
# extra installs, unless another is first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

markers=(-m "not slow")
for arg in "$@"; do
    if [ "$arg" = "-m" ]; then markers=(); fi  # the caller chose the markers
done

# Every test has a time limit (tests/watchdog.py). Behind it, no mpirun may
# outlive LIMIT seconds: a job whose ranks all hang where even that cannot
# reach them still ends, and CI is not held until its own time limit.
LIMIT=${DISTNN_MPIRUN_LIMIT:-900}
limit=()
if command -v timeout >/dev/null; then limit=(timeout --kill-after=30 "$LIMIT"); fi

# The jobs that tests end on purpose (killed, aborted, stalled) leave MPICH's
# shared-memory segments in /dev/shm, 2 MB each: remove this run's, once no
# process maps them (the README's "What a crash leaves").
started=$(mktemp)
clean_shm() {
    local status=$? mapped
    mapped=$(cat /proc/[0-9]*/maps 2>/dev/null | grep -o '/dev/shm/mpich_shm_[^ ]*' | sort -u) || true
    find /dev/shm -maxdepth 1 -name 'mpich_shm_*' -newer "$started" 2>/dev/null | sort \
        | comm -23 - <(echo "$mapped") | xargs -r rm -f || true
    rm -f "$started"
    return "$status"  # the tests' verdict, not the clean-up's
}
trap clean_shm EXIT

python -m pytest "${markers[@]}" "$@"
# Only tests marked @pytest.mark.mpi run under mpirun: the rest ran above, once.
for ranks in 2 4; do
    echo "== distributed tests on $ranks ranks"
    ${limit[@]+"${limit[@]}"} mpirun -n "$ranks" python -m pytest --with-mpi -m "mpi and not slow" \
        -q -p no:cacheprovider
done
