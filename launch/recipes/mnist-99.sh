#!/usr/bin/env bash
# An MLP to >= 99.0% MNIST test accuracy in under 10 minutes on a 2-core machine.
#
#   launch/recipes/mnist-99.sh                          # 2 ranks
#   launch/recipes/mnist-99.sh -n 4 --seed 1 --metrics runs/seed1.jsonl
#
# Measured results, and how the recipe was chosen: docs/accuracy.md. The
# recipe: two hidden layers of 1024 ReLUs, dropout on them, max-norm on their
# incoming weights, and every training image shifted, turned and scaled afresh
# each step; SGD with momentum and a cosine schedule. Runs through
# launch/local.sh, so it writes to ${DISTNN_RUN_DIR:-runs/mnist-99} and
# carries on with the same command after Ctrl-C. Arguments after -n go to
# distnn.train after the recipe's own, so they override them.
set -uo pipefail

source "$(dirname "$0")/ranks.sh"  # ranks, from -n RANKS

recipe=(
    --layers 784,1024,1024,10 --activation relu --cost cross_entropy --init he
    --dropout 0.3 --max-norm 3 --augment shift=2,rotate=10,scale=0.1
    --epochs 40 --batch-size 128 --lr 0.1 --momentum 0.9 --weight-decay 0
    --schedule cosine --warmup-epochs 1
)
export DISTNN_RUN_DIR=${DISTNN_RUN_DIR:-runs/mnist-99}
exec bash "$(dirname "$0")/../local.sh" -n "$ranks" "${recipe[@]}" "$@"
