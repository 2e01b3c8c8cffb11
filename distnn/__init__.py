"""distnn: data-parallel neural-network training from first principles.

A fully connected network (``MLP``), or one with convolutional layers in front
(``ConvNet``), trained by the seed lecture's backprop and mini-batch SGD, with one
replica per MPI rank and the gradients summed by Allreduce. Start with
``python -m distnn.train --help``; a trained model predicts on new rows with
``load_model(checkpoint).predict(rows)`` or ``python -m distnn.predict``.
"""

from distnn.checkpoint import load_checkpoint
from distnn.convnet import ConvNet
from distnn.network import MLP

__all__ = ["ConvNet", "MLP", "load_checkpoint", "load_model"]


def load_model(path):
    """The model in a checkpoint, with its training data's scaling: ``.predict(rows)`` on
    raw rows gives classes, or values in the target's units (``distnn.predict``)."""
    from distnn.predict import Model  # here: ``python -m distnn.predict`` imports it itself

    return Model.load(path)
__version__ = "0.1.0"
