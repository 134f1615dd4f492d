"""Sliding-window maths shared by convolution and pooling, vectorised (no loop over samples or
pixels). All arrays are NHWC.

- ``same_or_valid``: output size and padding of one spatial axis, with Keras/TensorFlow's rule
  for "same": the extra pixel of an odd total padding goes after (bottom/right).
- ``windows``: a zero-copy strided view of every window, ``(N, Ho, Wo, kh, kw, C)``.
- ``windows_adjoint``: the transpose of ``windows`` (col2im), summing window gradients back
  onto the padded input; the only loop runs over the kh·kw kernel offsets.
- ``correlate``: cross-correlation (Keras's Conv2D, no kernel flip) as one im2col matmul.
- ``correlate_input_grad``: dL/dx of ``correlate`` as another ``correlate`` of the stride-
  dilated, padded output gradient with the flipped kernel, so the backward pass is a matmul too.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Array = np.ndarray


class Axis(NamedTuple):
    """One spatial axis of a windowed op: output size and zero-padding before/after."""

    out: int
    before: int
    after: int


def same_or_valid(size: int, k: int, s: int, padding: str) -> Axis:
    """Output size and padding along one axis (TensorFlow's convention, which Keras uses)."""
    if padding == "valid":
        return Axis((size - k) // s + 1 if size >= k else 0, 0, 0)
    out = -(-size // s)  # ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return Axis(out, total // 2, total - total // 2)


def pad(x: Array, rows: Axis, cols: Axis, value: float = 0.0) -> Array:
    """Pad H and W of an NHWC array; returns ``x`` itself when there is nothing to pad."""
    if rows.before == rows.after == cols.before == cols.after == 0:
        return x
    widths = ((0, 0), (rows.before, rows.after), (cols.before, cols.after), (0, 0))
    return np.pad(x, widths, constant_values=value)


def crop(xp: Array, rows: Axis, cols: Axis) -> Array:
    """Undo ``pad``: the (N, H, W, C) interior of a padded (N, Hp, Wp, C) array (a view)."""
    return xp[:, rows.before : xp.shape[1] - rows.after, cols.before : xp.shape[2] - cols.after]


def windows(xp: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """Every (kh, kw) window of ``xp`` at stride ``s``, as a view: (N, Ho, Wo, kh, kw, C)."""
    v = sliding_window_view(xp, k, axis=(1, 2))  # (N, Hp-kh+1, Wp-kw+1, C, kh, kw)
    v = v[:, :: s[0], :: s[1]]  # (N, Ho, Wo, C, kh, kw)
    return v.transpose(0, 1, 2, 4, 5, 3)  # (N, Ho, Wo, kh, kw, C)


def windows_adjoint(dwin: Array, padded_shape: tuple[int, ...], s: tuple[int, int]) -> Array:
    """Transpose of ``windows``: scatter-add (N, Ho, Wo, kh, kw, C) window values onto an
    (N, Hp, Wp, C) array. Overlapping windows (stride < kernel) add up."""
    n, ho, wo, kh, kw, c = dwin.shape
    assert padded_shape[0] == n and padded_shape[3] == c, (dwin.shape, padded_shape)
    out = np.zeros(padded_shape, dtype=dwin.dtype)
    for i in range(kh):
        for j in range(kw):
            # rows i, i+s, ..., i+s*(ho-1) of the input receive offset (i, j) of each window
            out[:, i : i + s[0] * ho : s[0], j : j + s[1] * wo : s[1], :] += dwin[:, :, :, i, j, :]
    return out


def im2col(xp: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """The windows of ``xp`` as a matrix (N·Ho·Wo, kh·kw·C); column order (i, j, c) matches the
    rows of an HWIO kernel reshaped to (kh·kw·C, out). This is the one copy of the input."""
    w = windows(xp, k, s)
    n, ho, wo, kh, kw, c = w.shape
    return w.reshape(n * ho * wo, kh * kw * c)


def correlate(xp: Array, kernel: Array, s: tuple[int, int]) -> tuple[Array, Array]:
    """Valid cross-correlation of an already padded NHWC input with an HWIO kernel.

    Returns the output (N, Ho, Wo, F) and the im2col matrix (N·Ho·Wo, kh·kw·C), which the
    kernel gradient needs.
    """
    kh, kw, c, f = kernel.shape
    assert xp.shape[3] == c, (xp.shape, kernel.shape)
    cols = im2col(xp, (kh, kw), s)  # (N*Ho*Wo, kh*kw*C)
    n = xp.shape[0]
    ho = (xp.shape[1] - kh) // s[0] + 1
    wo = (xp.shape[2] - kw) // s[1] + 1
    out = cols @ kernel.reshape(kh * kw * c, f)  # (N*Ho*Wo, F)
    return out.reshape(n, ho, wo, f), cols


def correlate_input_grad(
    dout: Array, kernel: Array, s: tuple[int, int], padded_hw: tuple[int, int]
) -> Array:
    """dL/d(xp) for ``out = correlate(xp, kernel, s)``, given dL/d(out); shape (N, Hp, Wp, C).

    Input row a receives output row p through kernel row i exactly when a = p·s + i. Placing
    dout[p] at row (kh-1) + p·s of a zero array (stride dilation plus kh-1 rows of padding) and
    correlating with the kernel flipped in H and W, input/output channels swapped, sums exactly
    those terms. Rows of xp that no window reached (stride leftovers) get zero.
    """
    n, ho, wo, f = dout.shape
    kh, kw, c, f2 = kernel.shape
    assert f == f2, (dout.shape, kernel.shape)
    hp, wp = padded_hw
    g = np.zeros((n, hp + kh - 1, wp + kw - 1, f), dtype=dout.dtype)
    rows = slice(kh - 1, kh - 1 + s[0] * (ho - 1) + 1, s[0])  # dilate by the stride
    cols = slice(kw - 1, kw - 1 + s[1] * (wo - 1) + 1, s[1])
    g[:, rows, cols, :] = dout
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)  # (kh, kw, F, C)
    dxp, _ = correlate(g, flipped, (1, 1))
    assert dxp.shape == (n, hp, wp, c), (dxp.shape, (n, hp, wp, c))
    return dxp
