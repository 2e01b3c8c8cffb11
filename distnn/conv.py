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

On BLAS (im2col): the patches of a^{l-1} are copied, through strided views,
into the rows of ``cols`` (M, k*k*C_in), one patch a row. A copy straight from
the maps moves a patch's rows, k*C_in numbers at a time; where that is short
(under 16 numbers: 5 for an MNIST image) the copy takes two steps, first the
k-wide windows along each row of the maps, then k of those rows stacked, a
whole patch at a time. Then (FF) is a matrix product, z = cols w^T + b;
(BP4c) is dC/dw = delta^T cols, one product for the whole batch; and (BP2c) is
d cols = delta w followed by col2im, which adds every patch entry back onto the
pixel it was copied from, one strided add per kernel row i and position y (a
run of k*C_in numbers, j and c together): the sum over patches of a pixel's
entries is exactly the full convolution with the flipped kernel. The products
take w, and make dC/dw, row by row, which BLAS does faster than on the flat
vector's column-by-column layout; each is copied across.

The rows come window position first: the p*p positions (i', j') of a pooling
window each own a block of m*H''*W'' rows, the position (pX + i', pY + j') of
every window (X, Y). Pooling is then p*p - 1 elementwise maxima of whole
blocks, and routing delta back one product, where a row-major order of
positions would make every numpy call walk the maps C numbers at a time.
Positions past the last whole window feed no output, so they get no row at
all. The forward product and d cols run one block at a time, right after that
block's im2col and right before its col2im, so that what a block holds (4 MB
for Nielsen's second layer at batch 128) is read again while it is in cache;
d cols is kept for one block only.

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

    @property
    def short_rows(self) -> bool:
        """Whether a patch's rows (k*C_in numbers each) are shorter than a 64-byte cache
        line of float32: im2col then copies in two steps (``patches``)."""
        return self.k * self.c_in < 16

    # -- forward ----------------------------------------------------------------

    def forward(self, a_prev: np.ndarray, w: np.ndarray, b: np.ndarray,
                sigma: Activation, ws: ConvWorkspace) -> np.ndarray:
        """(FF) for a batch: a^l = sigma(pool(cols w^T) + b); a^{l-1} is (m, H, W, C_in).

        Keeps in ``ws`` what backprop needs: cols, z^l, a^l and which position won.
        Returns a^l, (m, H'', W'', C_out).
        """
        np.copyto(ws.w, w)  # w row by row, (C_out, k*k*C_in): BLAS takes it faster
        patches = self.patches(a_prev, ws)
        for o, (cols, conv) in enumerate(zip(ws.cols_blocks, ws.conv_blocks)):
            self.im2col(patches, ws, o)  # block by block: the product finds it in cache
            np.matmul(cols, ws.w.T, out=conv)  # (m*H''*W'', C_out), window position o
        self.max_pool(ws)  # into ws.z, (m, H'', W'', C_out)
        ws.z += b
        return sigma.fn(ws.z, out=ws.a)

    def patches(self, a_prev: np.ndarray, ws: ConvWorkspace) -> np.ndarray:
        """The k x k x C_in patch at every position of a whole window, as
        (p, p, m, H'', W'', k, k, C_in), window position first: a strided view of
        a^{l-1} or, for short rows, of ``ws.rows``, which this fills with a^{l-1}'s
        k-wide windows along each row."""
        if self.pad:  # the zero border was set when the workspace was made
            p = self.pad
            ws.padded[:, p:p + self.h, p:p + self.w, :] = a_prev
            a_prev = ws.padded
        m, h, _, c = a_prev.shape
        p, k = self.pool, self.k
        ho, wo, _ = self.out_shape
        if not self.short_rows:  # (m, H', W', C_in, i, j), whole windows only
            patches = sliding_window_view(a_prev, (k, k), axis=(1, 2))[:, :ho * p, :wo * p]
            patches = patches.reshape(m, ho, p, wo, p, c, k, k)  # (m, X, i', Y, j', c, i, j)
            return patches.transpose(2, 4, 0, 1, 3, 6, 7, 5)  # (i', j', m, X, Y, i, j, c)
        # Along the rows: (m, H, W', C_in, j), whole windows only; position y = pY + j'.
        across = sliding_window_view(a_prev, k, axis=2)[:, :, :wo * p]
        across = across.reshape(m, h, wo, p, c, k)  # (m, r, Y, j', c, j)
        np.copyto(ws.rows, across.transpose(3, 0, 2, 1, 5, 4))  # (j', m, Y, r, j, c)
        # Down the columns: k rows of windows, x = pX + i', a run of k*k*C_in each.
        down = sliding_window_view(ws.rows, k, axis=3)[:, :, :, :ho * p]  # (.., x, j, c, i)
        down = down.reshape(p, m, wo, ho, p, k, c, k)  # (j', m, Y, X, i', j, c, i)
        return down.transpose(4, 0, 1, 3, 2, 7, 5, 6)  # (i', j', m, X, Y, i, j, c)

    def im2col(self, patches: np.ndarray, ws: ConvWorkspace, o: int) -> None:
        """Window position o's patches, one a row of its block of ``ws.cols``."""
        i_w, j_w = divmod(o, self.pool)
        np.copyto(ws.cols_as_patches[i_w, j_w], patches[i_w, j_w])  # (m, H'', W'', k, k, C_in)

    def max_pool(self, ws: ConvWorkspace) -> None:
        """z = the max of every p x p window of ``ws.conv``; ``ws.won[o]`` marks where
        position o of a window won (the first of equals)."""
        if self.pool == 1:  # z is ws.conv's one block
            return
        conv, z = ws.conv, ws.z  # (p*p, m, H'', W'', C): block o is position o of each window
        np.maximum(conv[0], conv[1], out=z)
        for block in conv[2:]:
            np.maximum(z, block, out=z)
        # The first position equal to the max wins: equal, and none before it was.
        np.equal(conv[0], z, out=ws.won[0])
        np.copyto(ws.taken, ws.won[0])
        for o in range(1, len(conv)):
            np.equal(conv[o], z, out=ws.equal)
            np.greater(ws.equal, ws.taken, out=ws.won[o])  # equal and not taken
            ws.taken |= ws.equal

    # -- backward ---------------------------------------------------------------

    def backward(self, nabla_w: np.ndarray, nabla_b: np.ndarray, ws: ConvWorkspace,
                 below: bool) -> np.ndarray | None:
        """(BP3c), (BP4c) into nabla_b, nabla_w from delta^l, ``ws.delta`` (m, H'', W'', C_out);
        with ``below``, also dC/da^{l-1} (m, H, W, C_in), the sum in (BP2c) before sigma',
        with the w that ``forward`` took into ``ws``."""
        delta = ws.delta.reshape(-1, self.c_out)
        np.matmul(ws.ones, delta, out=nabla_b)  # (BP3c): sum over the batch and positions
        delta_conv = self.unpool(ws)  # dC/d(cols w^T), (p*p*m*H''*W'', C_out)
        # (BP4c), (C_out, k*k*C_in): row by row, as BLAS makes it faster, then into nabla_w
        np.matmul(delta_conv.T, ws.cols, out=ws.nabla_w)
        np.copyto(nabla_w, ws.nabla_w)
        if not below:  # the input has no delta to carry
            return None
        ws.input_delta[...] = 0  # ws.w still holds w row by row: forward() copied it
        for o, delta_o in enumerate(np.split(delta_conv, self.pool ** 2)):
            np.matmul(delta_o, ws.w, out=ws.cols_delta)  # d cols of window position o
            self.col2im(ws, o)  # block by block: col2im finds d cols in cache
        p = self.pad
        return ws.input_delta[:, p:p + self.h, p:p + self.w, :] if p else ws.input_delta

    def unpool(self, ws: ConvWorkspace) -> np.ndarray:
        """delta of the convolution's output: delta^l at the position that won, else 0."""
        if self.pool == 1:
            return ws.delta.reshape(-1, self.c_out)
        np.multiply(ws.delta, ws.won, out=ws.conv_delta)  # delta^l to every block, masked
        return ws.conv_delta.reshape(-1, self.c_out)

    def col2im(self, ws: ConvWorkspace, o: int) -> None:
        """Each entry of window position o's d cols added onto ``ws.input_delta`` at the
        pixel it was copied from."""
        p, k = self.pool, self.k
        i_w, j_w = divmod(o, p)
        ho, wo, _ = self.out_shape
        d_patches = ws.cols_delta.reshape(-1, ho, wo, k, k, self.c_in)  # (m, X, Y, i, j, c)
        d_input = ws.input_delta  # padded like the input
        for i in range(k):
            for y_win in range(wo):  # position (x, y) = (pX + i_w, pY + j_w) of window (X, Y)
                y = p * y_win + j_w
                # (m, H'', k*C_in): pixels (x + i, y + j) of every X, j and c together
                d_input[:, i + i_w:i + i_w + p * ho:p, y:y + k, :] += d_patches[:, :, y_win, i]

    def workspace(self, m: int, dtype: np.dtype, below: bool) -> ConvWorkspace:
        """Buffers for a batch of m; ``below``: the layer passes a delta to the one below."""
        return ConvWorkspace(self, m, dtype, below)


class ConvWorkspace:
    """One layer's buffers for one batch size m, reused by every step of that size."""

    def __init__(self, layer: ConvPool, m: int, dtype: np.dtype, below: bool) -> None:
        ho, wo, c = layer.out_shape
        h_in, w_in = layer.h + 2 * layer.pad, layer.w + 2 * layer.pad
        p = layer.pool
        block = m * ho * wo  # rows of one window position: one per window
        self.padded = np.zeros((m, h_in, w_in, layer.c_in), dtype) if layer.pad else None
        # w and dC/dw row by row: the flat vector keeps them column by column
        self.w = np.empty((c, layer.fan_in), dtype)
        self.nabla_w = np.empty((c, layer.fan_in), dtype)
        # im2col's first copy for short rows: (p, m, W'', H, k, C_in), the k-wide windows
        # along each row
        self.rows = np.empty((p, m, wo, h_in, layer.k, layer.c_in), dtype) \
            if layer.short_rows else None
        self.cols = np.empty((p * p * block, layer.fan_in), dtype)  # the patches, a row each
        # ... as (p, p, m, H'', W'', k, k, C_in): window position, window, patch
        self.cols_as_patches = self.cols.reshape(p, p, m, ho, wo, layer.k, layer.k,
                                                 layer.c_in)
        self.cols_blocks = np.split(self.cols, p * p)  # a window position's rows each
        self.conv = np.empty((p * p, m, ho, wo, c), dtype)  # cols w^T, before pooling
        self.conv_blocks = [b.reshape(block, c) for b in self.conv]
        self.z = self.conv[0] if p == 1 else np.empty((m, ho, wo, c), dtype)  # z^l
        self.a = np.empty((m, ho, wo, c), dtype)  # a^l
        self.delta = np.empty((m, ho, wo, c), dtype)  # delta^l
        self.prime = np.empty((m, ho, wo, c), dtype)  # sigma'(z^l)
        self.ones = np.ones(block, dtype)  # (BP3c) as a product, as MLP does
        if p > 1:
            self.won = np.empty((p * p, m, ho, wo, c), bool)  # where each position won
            self.equal = np.empty((m, ho, wo, c), bool)
            self.taken = np.empty((m, ho, wo, c), bool)
            self.conv_delta = np.empty_like(self.conv)
        # d cols of one window position at a time, row by row
        self.cols_delta = np.empty((block, layer.fan_in), dtype) if below else None
        self.input_delta = np.empty((m, h_in, w_in, layer.c_in), dtype) if below else None

