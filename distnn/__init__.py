"""distnn: data-parallel neural-network training from first principles.

A fully connected network (``MLP``) trained by the seed lecture's backprop and
mini-batch SGD, with one replica per MPI rank and the gradients summed by
Allreduce. Start with ``python -m distnn.train --help``.
"""

from distnn.checkpoint import load_checkpoint
from distnn.network import MLP

__all__ = ["MLP", "load_checkpoint"]
__version__ = "0.1.0"
