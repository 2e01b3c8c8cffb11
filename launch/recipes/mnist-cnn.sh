#!/usr/bin/env bash
# Nielsen's chapter 6 conv net to >= 99.5% MNIST test accuracy within 20 minutes
# of wall time on a 2-core machine (docs/accuracy.md, "A convolutional network").
#
#   launch/recipes/mnist-cnn.sh                          # 2 ranks
#   launch/recipes/mnist-cnn.sh -n 4 --seed 1 --metrics runs/seed1.jsonl
#
# The network of network3.py: two layers of 5x5 filters (20, then 40), each
# followed by 2x2 max-pooling, then 100 fully connected ReLUs and the softmax;
# dropout on the fully connected layers' inputs, the conv features among them;
# every training image shifted, turned and scaled afresh each step; SGD with
# momentum and a cosine schedule. Runs through launch/local.sh, so it writes to
# ${DISTNN_RUN_DIR:-runs/mnist-cnn} and carries on with the same command after
# Ctrl-C. Arguments after -n go to distnn.train after the recipe's own, so they
# override them.
set -uo pipefail

source "$(dirname "$0")/ranks.sh"  # ranks, from -n RANKS

recipe=(
    --hidden conv20x5,pool2,conv40x5,pool2,100 --activation relu --cost cross_entropy
    --init he --dropout 0.3 --augment shift=2,rotate=10,scale=0.1
    --epochs 20 --batch-size 128 --lr 0.05 --momentum 0.9 --weight-decay 1e-4
    --schedule cosine --warmup-epochs 1
)
export DISTNN_RUN_DIR=${DISTNN_RUN_DIR:-runs/mnist-cnn}
exec bash "$(dirname "$0")/../local.sh" -n "$ranks" "${recipe[@]}" "$@"
