#!/usr/bin/env bash
# The 99% recipe's network on Fashion-MNIST (docs/accuracy.md).
#
#   launch/recipes/fashion-mnist.sh [-n RANKS] [distnn.train arguments...]
#
# Fashion-MNIST comes from Debian's dataset-fashion-mnist (IDX files in
# /usr/share/datasets/fashion-mnist) and is prepared into
# data/fashion-mnist.h5 on first use. No distortions: the photographs are
# centred and upright, and shifting them by up to 2 pixels cost 2 points of
# accuracy (docs/accuracy.md).
# Writes to ${DISTNN_RUN_DIR:-runs/fashion-mnist}; other arguments as for
# mnist-99.sh.
set -uo pipefail

source "$(dirname "$0")/fashion-data.sh"  # data, prepared on first use
ranks=()
if [[ ${1:-} == -n ]]; then
    ranks=(-n "${2:-}")
    shift 2 || shift
fi
export DISTNN_RUN_DIR=${DISTNN_RUN_DIR:-runs/fashion-mnist}
exec bash "$(dirname "$0")/mnist-99.sh" "${ranks[@]}" --data "$data" --augment "" "$@"
