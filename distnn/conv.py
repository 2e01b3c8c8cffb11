"""A convolutional layer with max-pooling, forward and backward: the lecture's next chapter.

Nielsen's ``network3.py`` builds a network of layers of one shape; its
``ConvPoolLayer`` convolves, pools and applies sigma, and Theano derives the
backward pass. Here the backward pass is written out beside the forward one,
in the lecture's notation, and ``distnn.convnet`` chains these layers in front
of the fully connected ones (``distnn.network.MLP``).

Feature maps are batches of m samples, each of H x W positions with C channels,
stored (m, H, W, C): a sample's channels sit together, so a k x k patch of all
channels is one strided window and one row of a matrix product. A layer has
C_out filters w_f of k x k x C_in and a bias b_f each:

    z^l_{x,y,f} = b_f + sum_{i,j<k} sum_c w_{f,i,j,c} a^{l-1}_{x+i,y+j,c}          (FF)
    a^l = sigma(z^l)

(a correlation, as every library computes "convolution"; ``same`` padding
surrounds a^{l-1} with (k - 1)/2 zeros so that z keeps its H x W). With
delta^l = dC/dz^l as in the four equations of the MLP:

    (BP2c) delta^{l-1}_{x,y,c} = (sum_{f,i,j} delta^l_{x-i,y-j,f} w_{f,i,j,c})
                                 (.) sigma'(z^{l-1}_{x,y,c}),
           the full convolution of delta^l with the flipped kernel;
    (BP3c) dC/db_f = sum_{x,y} delta^l_{x,y,f}, summed over positions (and the batch);
    (BP4c) dC/dw_{f,i,j,c} = sum_{x,y} delta^l_{x,y,f} a^{l-1}_{x+i,y+j,c}
           the correlation of the input with delta.

Max-pooling p x p with stride p keeps the largest of each window,
zp_{X,Y,f} = max_{i,j<p} z_{pX+i,pY+j,f}, and its backward pass routes delta to
the position that won, zero to the others (the first of equals, as PyTorch
does). A layer pools before it adds b and applies sigma: max commutes with
adding one b_f to the whole window and with every one of the seed's
activations (they never decrease), so this is the layer conv, sigma, pool of
the lecture, with the bias and sigma computed on 1/p^2 of the positions.

On BLAS (im2col): the patches of a^{l-1} are copied, through a strided view,
into the rows of ``cols`` (m*H'*W', k*k*C_in), one patch a row. Then (FF) is
one matrix product for the whole batch, z = cols w^T + b; (BP4c) is
dC/dw = delta^T cols; and (BP2c) is d cols = delta w followed by col2im, which
adds every patch entry back onto the pixel it was copied from (k*k strided
adds, one per kernel offset): the sum over patches of a pixel's entries is
exactly the full convolution with the flipped kernel.

Non-goals: strides other than 1 (pooling does the downsampling), dilation,
groups, even kernels with ``same`` padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from distnn.activations import Activation

__all__ = ["ConvPool"]


@dataclass(frozen=True)
class ConvPool:
    """C_out filters of k x k over the C_in channels of an H x W map, then p x p max-pooling
    (pool 1: none), then sigma. Holds the geometry; the weights are the network's views."""

    h: int  # H of the input maps
    w: int  # W
    c_in: int  # C_in
    c_out: int  # C_out, one filter each
    k: int  # each filter is k x k (x C_in)
    pad: int = 0  # zeros around the input: 0 for "valid", (k - 1) // 2 for "same"
    pool: int = 1  # p of p x p max-pooling; 1 = none

    @property
    def conv_shape(self) -> tuple[int, int, int]:
        """(H', W', C_out) of the convolution's output, before pooling."""
        return (self.h + 2 * self.pad - self.k + 1, self.w + 2 * self.pad - self.k + 1,
                self.c_out)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(H'', W'', C_out) of the layer's output: pooled, a partial window dropped."""
        hc, wc, c = self.conv_shape
        return hc // self.pool, wc // self.pool, c

    @property
    def fan_in(self) -> int:
        """k*k*C_in: the inputs of one filter, the columns of ``cols`` and of w."""
        return self.k * self.k * self.c_in

    # -- forward ----------------------------------------------------------------

    def forward(self, a_prev: np.ndarray, w: np.ndarray, b: np.ndarray,
                sigma: Activation, ws: ConvWorkspace) -> np.ndarray:
        """(FF) for a batch: a^l = sigma(pool(cols w^T) + b); a^{l-1} is (m, H, W, C_in).

        Keeps in ``ws`` what backprop needs: cols, z^l, a^l and which position won.
        Returns a^l, (m, H'', W'', C_out).
        """
        self._im2col(a_prev, ws)
        np.matmul(ws.cols, w.T, out=ws.conv.reshape(-1, self.c_out))  # (m*H'*W', C_out)
        self._max_pool(ws.conv, ws)  # into ws.z, (m, H'', W'', C_out)
        ws.z += b
        return sigma.fn(ws.z, out=ws.a)

    def _im2col(self, a_prev: np.ndarray, ws: ConvWorkspace) -> None:
        """The k x k x C_in patch at every output position, one a row of ``ws.cols``."""
        if self.pad:  # the zero border was set when the workspace was made
            p = self.pad
            ws.padded[:, p:p + self.h, p:p + self.w, :] = a_prev
            a_prev = ws.padded
        hc, wc, _ = self.conv_shape
        # (m, H', W', C_in, k, k): the window's axes come last
        patches = sliding_window_view(a_prev, (self.k, self.k), axis=(1, 2))
        cols = ws.cols.reshape(len(a_prev), hc, wc, self.k, self.k, self.c_in)
        np.copyto(cols, patches.transpose(0, 1, 2, 4, 5, 3))  # (m, H', W', k, k, C_in)

    def _windows(self, maps: np.ndarray) -> list[np.ndarray]:
        """The p*p strided views of ``maps`` (m, H', W', C), one per position in a window:
        view (i, j) holds position (i, j) of every window, row by row."""
        p = self.pool
        hp, wp, _ = self.out_shape
        return [maps[:, i:hp * p:p, j:wp * p:p, :] for i in range(p) for j in range(p)]

    def _max_pool(self, conv: np.ndarray, ws: ConvWorkspace) -> None:
        """z = the max of every p x p window of ``conv``; ``ws.won[o]`` marks where position
        o of a window won (the first of equals)."""
        if self.pool == 1:
            ws.z[...] = conv
            return
        views = self._windows(conv)
        np.copyto(ws.z, views[0])
        for v in views[1:]:
            np.maximum(ws.z, v, out=ws.z)
        taken = ws.taken
        taken[...] = False
        for o, v in enumerate(views):  # the first position equal to the max wins
            np.equal(v, ws.z, out=ws.won[o])
            ws.won[o] &= ~taken
            taken |= ws.won[o]

    # -- backward ---------------------------------------------------------------

    def backward(self, w: np.ndarray, nabla_w: np.ndarray, nabla_b: np.ndarray,
                 ws: ConvWorkspace, below: bool) -> np.ndarray | None:
        """(BP3c), (BP4c) into nabla_b, nabla_w from delta^l, ``ws.delta`` (m, H'', W'', C_out);
        with ``below``, also dC/da^{l-1} (m, H, W, C_in), the sum in (BP2c) before sigma'."""
        delta = ws.delta.reshape(-1, self.c_out)
        np.matmul(ws.ones, delta, out=nabla_b)  # (BP3c): sum over the batch and positions
        delta_conv = self._unpool(ws)  # dC/d(cols w^T), (m*H'*W', C_out)
        np.matmul(delta_conv.T, ws.cols, out=nabla_w)  # (BP4c), (C_out, k*k*C_in)
        if not below:  # the input has no delta to carry
            return None
        np.matmul(delta_conv, w, out=ws.cols_delta)  # d cols, (m*H'*W', k*k*C_in)
        return self._col2im(ws)

    def _unpool(self, ws: ConvWorkspace) -> np.ndarray:
        """delta of the convolution's output: delta^l at the position that won, else 0."""
        if self.pool == 1:
            return ws.delta.reshape(-1, self.c_out)
        for won, v in zip(ws.won, self._windows(ws.conv_delta)):
            np.multiply(ws.delta, won, out=v)
        # Rows and columns past the last whole window stay the zeros they were made.
        return ws.conv_delta.reshape(-1, self.c_out)

    def _col2im(self, ws: ConvWorkspace) -> np.ndarray:
        """Each patch entry of d cols added back onto the pixel it was copied from."""
        m = len(ws.a)
        hc, wc, _ = self.conv_shape
        d_cols = ws.cols_delta.reshape(m, hc, wc, self.k, self.k, self.c_in)
        d_input = ws.input_delta  # padded like the input
        d_input[...] = 0
        for i in range(self.k):  # k*k strided adds, one per kernel offset
            for j in range(self.k):
                d_input[:, i:i + hc, j:j + wc, :] += d_cols[:, :, :, i, j, :]
        p = self.pad
        return d_input[:, p:p + self.h, p:p + self.w, :] if p else d_input

    def workspace(self, m: int, dtype: np.dtype, below: bool) -> ConvWorkspace:
        """Buffers for a batch of m; ``below``: the layer passes a delta to the one below."""
        return ConvWorkspace(self, m, dtype, below)


class ConvWorkspace:
    """One layer's buffers for one batch size m, reused by every step of that size."""

    def __init__(self, layer: ConvPool, m: int, dtype: np.dtype, below: bool) -> None:
        hc, wc, c = layer.conv_shape
        ho, wo, _ = layer.out_shape
        hp, wp = layer.h + 2 * layer.pad, layer.w + 2 * layer.pad
        self.padded = np.zeros((m, hp, wp, layer.c_in), dtype) if layer.pad else None
        self.cols = np.empty((m * hc * wc, layer.fan_in), dtype)  # the patches, a row each
        self.conv = np.empty((m, hc, wc, c), dtype)  # cols w^T, before pooling
        self.z = np.empty((m, ho, wo, c), dtype)  # z^l
        self.a = np.empty((m, ho, wo, c), dtype)  # a^l
        self.delta = np.empty((m, ho, wo, c), dtype)  # delta^l
        self.prime = np.empty((m, ho, wo, c), dtype)  # sigma'(z^l)
        self.ones = np.ones(m * ho * wo, dtype)  # (BP3c) as a product, as MLP does
        if layer.pool > 1:
            self.won = np.empty((layer.pool ** 2, m, ho, wo, c), bool)
            self.taken = np.empty((m, ho, wo, c), bool)
            self.conv_delta = np.zeros((m, hc, wc, c), dtype)
        self.cols_delta = np.empty_like(self.cols) if below else None
        self.input_delta = np.empty((m, hp, wp, layer.c_in), dtype) if below else None
