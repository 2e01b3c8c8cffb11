"""The one spec that names a network, from the command line to the checkpoint.

A network is a list of layers, input first, each item one of

    784            a width: the input's features, or a fully connected layer
    1x28x28        an image input, C x H x W (28x28 is one channel)
    conv20x5       a convolutional layer: 20 filters of 5 x 5 ("valid": no padding)
    conv20x5:same  ... padded with zeros to keep the map's size (k odd)
    pool2          2 x 2 max-pooling of the layer before, which must be a conv

so that ``--layers 1x28x28,conv20x5,pool2,conv40x5,pool2,100,10`` is Nielsen's
chapter 6 network, and ``--hidden conv20x5,pool2,conv40x5,pool2,100`` the same
with the ends taken from the data file. Conv layers come first, then the fully
connected ones; the last item is the output layer's width.

As stored (config, checkpoint) an item is an int (a width) or a string (the
rest), normalized: ``28x28`` is kept as ``1x28x28``. A list without conv layers
is an MLP's ``sizes``, all ints, as before conv layers existed: an image input
then counts as its C*H*W features.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

from distnn.conv import ConvPool

__all__ = ["SpecError", "parse", "text", "check", "plan", "is_conv", "shape_of", "image",
           "widths", "n_params", "workspace"]

_SHAPE = re.compile(r"(?:(\d+)x)?(\d+)x(\d+)")
_CONV = re.compile(r"conv(\d+)x(\d+)(:same|:valid)?")
_POOL = re.compile(r"pool(\d+)")


class SpecError(ValueError):
    """A network spec that cannot be built; the message says which item and why."""


def _item(token: str) -> int | str:
    token = token.strip().lower()
    if token.isdigit():
        return int(token)
    if (match := _SHAPE.fullmatch(token)):
        c, h, w = match.groups()
        return f"{int(c or 1)}x{int(h)}x{int(w)}"
    if (match := _CONV.fullmatch(token)):
        n, k, pad = match.groups()
        return f"conv{int(n)}x{int(k)}" + (":same" if pad == ":same" else "")
    if (match := _POOL.fullmatch(token)):
        return f"pool{int(match.group(1))}"
    raise SpecError(f"{token!r} is not a layer: expected a width (100), an image shape "
                    "(1x28x28), conv<filters>x<k>[:same] (conv20x5) or pool<p> (pool2)")


def parse(spec: str) -> list[int | str]:
    """'1x28x28,conv20x5,pool2,100,10' -> [ '1x28x28', 'conv20x5', 'pool2', 100, 10 ]."""
    return [_item(token) for token in spec.split(",")]


def text(layers: Sequence[int | str]) -> str:
    """The spec as typed: ``parse(text(layers)) == layers``."""
    return ",".join(map(str, layers))


def is_conv(layers: Sequence[int | str]) -> bool:
    """Whether the spec has a convolutional layer (else it is an MLP's sizes)."""
    return any(isinstance(item, str) and item.strip().lower().startswith("conv")
               for item in layers)


def shape_of(item: int | str) -> tuple[int, int, int] | None:
    """(C, H, W) of an image input item, None for any other item."""
    match = _SHAPE.fullmatch(item) if isinstance(item, str) else None
    if not match:
        return None
    c, h, w = match.groups()
    return int(c or 1), int(h), int(w)  # 28x28: one channel


def image(shape: Sequence[int]) -> str:
    """The input item for a data file's ``image_shape``: (28, 28) or (1, 28, 28) -> '1x28x28'."""
    return _item("x".join(map(str, shape)))


def plan(layers: Sequence[int | str]) -> tuple[list[ConvPool], list[int]]:
    """The conv layers, and the fully connected sizes after them (their input first).

    Raises SpecError, naming the item, for a spec that cannot be built. Items are read
    as ``parse`` reads them (``28x28``, ``Conv20x5:valid``), so a list typed in Python
    is checked as the same spec on the command line.
    """
    layers = [_item(item) if isinstance(item, str) else item for item in layers]
    if len(layers) < 2:
        raise SpecError(f"a network needs an input and an output layer, got {text(layers)!r}")
    first, rest = layers[0], layers[1:]
    shape = shape_of(first)
    if shape is None and not (isinstance(first, int) and first >= 1):
        raise SpecError(f"the first layer is the input, its features (784) or image shape "
                        f"(1x28x28), not {first!r}")
    if shape is not None and min(shape) < 1:
        raise SpecError(f"image shape {first} must be positive")
    convs: list[ConvPool] = []
    dense: list[int] = []
    c, h, w = shape or (0, 0, 0)
    for item in rest:
        if isinstance(item, int):
            if item < 1:
                raise SpecError(f"layer widths must be positive, got {item}")
            dense.append(item)
            continue
        if dense:
            raise SpecError(f"{item} comes after a fully connected layer: conv and pool "
                            "layers come first, then the fully connected ones")
        if (match := _CONV.fullmatch(item)):
            if shape is None:
                raise SpecError(f"{item} needs an image input: begin the layers with its "
                                "shape, C x H x W (1x28x28)")
            n, k = int(match.group(1)), int(match.group(2))
            same = match.group(3) == ":same"
            if n < 1 or k < 1 or (same and k % 2 == 0):
                raise SpecError(f"{item}: filters and kernel must be positive, and a kernel "
                                "padded to the same size odd")
            layer = ConvPool(h, w, c, n, k, pad=(k - 1) // 2 if same else 0)
            if min(layer.conv_shape) < 1:
                raise SpecError(f"{item}: a {k}x{k} kernel does not fit the {h}x{w} maps "
                                "it gets")
            convs.append(layer)
        elif (match := _POOL.fullmatch(item)):
            p = int(match.group(1))
            if not convs or convs[-1].pool != 1:
                raise SpecError(f"{item} must follow a conv layer")
            if p < 1 or p > min(convs[-1].conv_shape[:2]):
                raise SpecError(f"{item}: a {p}x{p} window does not fit the "
                                f"{'x'.join(map(str, convs[-1].conv_shape[:2]))} maps it gets")
            convs[-1] = dataclasses.replace(convs[-1], pool=p)
        else:
            raise SpecError(f"{item} can only be the first layer, the input")
        h, w, c = convs[-1].out_shape
    if not dense:
        raise SpecError("the last layer must be the output's width, a number")
    n_in = h * w * c if convs else (math.prod(shape) if shape else first)
    return convs, [n_in, *dense]


def check(layers: Sequence[int | str]) -> list[int | str]:
    """The spec normalized: an MLP's all-int sizes where it has no conv layer."""
    convs, sizes = plan(layers)
    return [_item(item) if isinstance(item, str) else item for item in layers] if convs \
        else sizes


def widths(layers: Sequence[int | str]) -> list[int]:
    """Each layer's output as a flat row, input first: an MLP's ``sizes``."""
    convs, sizes = plan(layers)
    if not convs:
        return sizes
    n_in = convs[0].h * convs[0].w * convs[0].c_in
    return [n_in, *(math.prod(layer.out_shape) for layer in convs), *sizes[1:]]


def n_params(layers: Sequence[int | str]) -> int:
    """The parameters of the network: every w and b."""
    convs, sizes = plan(layers)
    return sum(layer.c_out * (layer.fan_in + 1) for layer in convs) \
        + sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def workspace(layers: Sequence[int | str]) -> int:
    """About the floats a network's buffers take for each sample of a batch: the batch and
    its dropout copy, four per unit of a fully connected layer (``distnn.network``), and a
    conv layer's (``distnn.conv``): its patches, one window position's d patches, for short
    patch rows the k-wide windows along its input's rows, its maps before pooling twice,
    six per output, its input padded and its delta."""
    convs, sizes = plan(layers)
    floats = 2 * sizes[0] + 4 * sum(sizes[1:])
    for layer in convs:
        hc, wc, c = layer.conv_shape
        h_in, w_in = layer.h + 2 * layer.pad, layer.w + 2 * layer.pad
        floats += hc * wc * (layer.fan_in + 2 * c) + hc * wc * layer.fan_in // layer.pool ** 2 \
            + layer.short_rows * layer.pool * layer.out_shape[1] * h_in * layer.k * layer.c_in \
            + 6 * math.prod(layer.out_shape) + 2 * h_in * w_in * layer.c_in
    return floats
