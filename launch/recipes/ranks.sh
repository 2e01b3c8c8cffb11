# Sourced by the recipes, not run: their first arguments may be -n RANKS (the
# default is 2) or -h. Sets ranks and shifts them off, leaving the arguments
# for distnn.train in "$@".
ranks=2
if [[ ${1:-} == -n ]]; then
    ranks=${2:-}
    shift 2 || shift
elif [[ ${1:-} == -h || ${1:-} == --help ]]; then
    echo "usage: $0 [-n RANKS] [distnn.train arguments...]" >&2
    exit 2
fi
