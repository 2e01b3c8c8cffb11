"""Summing the gradient over ranks while backprop is still running (Horovod's recipe).

``FusedAllreduce`` (distnn/reduce.py) waits for the whole gradient, then sends
it in one message. ``OverlapAllreduce`` has the same call interface but starts a
non-blocking allreduce of each layer's slice as soon as backprop has finished it
(``net.gradient(..., on_layer=...)`` calls back top layer first), so the sum of
the top layers can travel while the layers below are still being differentiated:

    backprop:  dW^L  | dW^{L-1} | ... | dW^1
    network:          [sum dW^L] [sum dW^{L-1}] ... [sum dW^1 + cost + stop]

Layers smaller than ``bucket_bytes`` are fused with the next ones (tensor
fusion): a bucket is sent once it holds at least ``bucket_bytes`` or reaches
the first layer. The buffer is laid out [cost, stop | gradient], so the last
bucket (the one holding layer 0) also carries the two scalars the trainer
needs, in the same message, as in ``FusedAllreduce``.

``compression="fp16"|"bf16"`` sends every bucket as 16-bit floats, halving the
bytes. MPI has no half-precision SUM, so the sum is a user-defined MPI operation
on 16-bit words (a Python callback that widens to float32, adds, and narrows).
The scalars stay in the net's precision (a second, 2-element message). float16
overflows past 65504 and keeps 11 significant bits; bfloat16 keeps float32's
range with 8 significant bits. Both round the summed gradient: this is lossy.

Whether any of this pays depends on the MPI library making progress while
Python computes: MPICH advances a non-blocking collective only inside MPI calls
unless ``MPIR_CVAR_ASYNC_PROGRESS=1`` starts a progress thread (which itself
needs a core). ``python -m distnn.bench`` measures it; see the README.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from distnn.comm import Comm
from distnn.reduce import FusedAllreduce

__all__ = ["OverlapAllreduce", "bf16_to_f32", "f32_to_bf16"]

_EXTRAS = 2  # [cost, stop] ahead of the gradient in the buffer


def f32_to_bf16(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Round float32 ``x`` to bfloat16 (nearest, ties to even), stored as uint16 words."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    np.right_shift(bits + rounding, 16, out=out, casting="unsafe")
    return out


def bf16_to_f32(h: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Widen bfloat16 words (uint16) to float32: the 16 bits become the top half."""
    wide = np.left_shift(h.astype(np.uint32), 16)
    if out is None:
        return wide.view(np.float32)
    np.copyto(out, wide.view(np.float32), casting="same_kind")
    return out


def _sum_fp16(inbuf, inoutbuf, datatype) -> None:
    """MPI user op: inout += in, both float16 stored as 16-bit words."""
    a = np.frombuffer(inbuf, np.float16)
    b = np.frombuffer(inoutbuf, np.float16)
    b[...] = a.astype(np.float32) + b.astype(np.float32)


def _sum_bf16(inbuf, inoutbuf, datatype) -> None:
    """MPI user op: inout += in, both bfloat16 stored as uint16 words."""
    a = np.frombuffer(inbuf, np.uint16)
    b = np.frombuffer(inoutbuf, np.uint16)
    f32_to_bf16(bf16_to_f32(a) + bf16_to_f32(b), out=b)


class _Compressor:
    """16-bit wire format for one bucket: compress before sending, decompress after."""

    _ops: dict[str, object] = {}  # one MPI op per format, created once per process

    def __init__(self, kind: str, n: int) -> None:
        self.kind = kind
        self.wire = np.zeros(n, np.uint16)  # what travels: float16 or bfloat16 bits

    def compress(self, grad: np.ndarray) -> None:
        if self.kind == "fp16":
            np.copyto(self.wire.view(np.float16), grad, casting="same_kind")
        else:
            f32_to_bf16(grad.astype(np.float32, copy=False), out=self.wire)

    def decompress(self, grad: np.ndarray) -> None:
        if self.kind == "fp16":
            np.copyto(grad, self.wire.view(np.float16), casting="same_kind")
        else:
            bf16_to_f32(self.wire, out=grad)

    @classmethod
    def op(cls, kind: str):
        from mpi4py import MPI

        if kind not in cls._ops:
            cls._ops[kind] = MPI.Op.Create(_sum_fp16 if kind == "fp16" else _sum_bf16, commute=True)
        return cls._ops[kind]


class OverlapAllreduce(FusedAllreduce):
    """Backprop the local batch, reducing each bucket of layers as soon as it is final.

    Same interface as ``FusedAllreduce``: ``reducer(x, y, stop) -> (cost_total,
    stop_any)``, the summed gradient in ``reducer.grad``, time spent in MPI calls
    (starting and waiting) accumulated in ``reducer.comm_seconds``, ``apply``.
    """

    def __init__(
        self,
        comm: Comm,
        net,
        optimizer=None,
        bucket_bytes: int = 0,
        compression: str | None = None,
    ) -> None:
        if compression not in (None, "fp16", "bf16"):
            raise ValueError(f"compression must be None, 'fp16' or 'bf16', got {compression!r}")
        self.comm = comm
        self.net = net
        self.optimizer = optimizer  # for apply()
        self.compression = compression if comm.size > 1 else None  # nothing to send alone
        n = net.params.size
        self._buf = np.zeros(_EXTRAS + n, dtype=net.params.dtype)
        self._extras = self._buf[:_EXTRAS]
        self.grad = self._buf[_EXTRAS:]  # view: the summed gradient lands here
        self.comm_seconds = 0.0
        self.buckets = self._plan(bucket_bytes)  # [(first layer, lo, hi)] in buf indices
        self._fire = {first: i for i, (first, _, _) in enumerate(self.buckets)}
        self._pending: list = []
        self._compressors = (
            [_Compressor(self.compression, hi - max(lo, _EXTRAS)) for _, lo, hi in self.buckets]
            if self.compression
            else []
        )

    def _plan(self, bucket_bytes: int) -> list[tuple[int, int, int]]:
        """Group layers L-1 .. 0 into buckets of >= bucket_bytes; the last also holds the extras."""
        itemsize = self.net.params.dtype.itemsize
        slices = self.net.layer_slices
        buckets, top = [], len(slices) - 1
        for l in range(len(slices) - 1, -1, -1):
            nbytes = (slices[top].stop - slices[l].start) * itemsize
            if nbytes >= bucket_bytes or l == 0:
                lo = 0 if l == 0 else _EXTRAS + slices[l].start
                buckets.append((l, lo, _EXTRAS + slices[top].stop))
                top = l - 1
        return buckets

    def _start(self, i: int) -> None:
        _, lo, hi = self.buckets[i]
        t0 = time.perf_counter()
        if not self.compression:
            self._pending.append(self.comm.iallreduce_(self._buf[lo:hi]))
        else:
            from mpi4py import MPI

            start = max(lo, _EXTRAS)  # the extras go separately, in full precision
            self._compressors[i].compress(self._buf[start:hi])
            wire = self._compressors[i].wire
            mpi_comm = self.comm._comm  # comm.py's iallreduce_ has no op argument
            self._pending.append(
                mpi_comm.Iallreduce(
                    MPI.IN_PLACE, [wire, MPI.UINT16_T], op=_Compressor.op(self.compression)
                )
            )
            if lo == 0:
                self._pending.append(self.comm.iallreduce_(self._extras))
        self.comm_seconds += time.perf_counter() - t0

    def _on_layer(self, l: int) -> None:
        i = self._fire.get(l)
        if i is not None and l != 0:  # the last bucket waits for the cost (see __call__)
            self._start(i)

    def __call__(self, x: np.ndarray, y: np.ndarray, stop: bool) -> tuple[float, bool]:
        """Sum over ranks of the gradient and cost of (x, y), and whether any rank stops."""
        on_layer: Callable[[int], None] | None = self._on_layer if self.comm.size > 1 else None
        self._pending = []
        cost, _ = self.net.gradient(x, y, out=self.grad, on_layer=on_layer)
        # gradient() returns right after on_layer(0): starting the last bucket here
        # loses nothing, and by now the cost is known and can ride along.
        self._extras[0] = cost
        self._extras[1] = 1.0 if stop else 0.0
        self._start(len(self.buckets) - 1)
        t0 = time.perf_counter()
        for request in self._pending:
            request.wait()
        for (_, lo, hi), compressor in zip(self.buckets, self._compressors):
            compressor.decompress(self._buf[max(lo, _EXTRAS) : hi])
        self.comm_seconds += time.perf_counter() - t0
        self._pending = []
        return float(self._extras[0]), bool(self._extras[1] > 0)
