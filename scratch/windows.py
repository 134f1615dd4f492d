"""Sliding-window maths shared by convolution and pooling, vectorised (no loop over samples or
pixels; the only Python loops run over the kh·kw kernel offsets). All arrays are NHWC.

- ``same_or_valid``: output size and padding of one spatial axis, with Keras/TensorFlow's rule
  for "same": the extra pixel of an odd total padding goes after (bottom/right).
- ``windows``: a zero-copy strided view of every window, ``(N, Ho, Wo, kh, kw, C)``;
  ``windows_adjoint`` is its transpose (col2im). ``window_sum`` sums each window (average
  pooling) and ``window_sum_adjoint`` is its transpose.
- Convolution is *row-lowered*: ``im2row`` copies, for every output row, the kh input rows it
  reads, ``(N·Ho, kh·Wp·C)``; ``banded`` lays the kernel out as a banded (Toeplitz) matrix
  ``(kh·Wp·C, Wo·F)`` that slides it along W. One matmul of the two is the convolution, and
  the two gradients are the two other matmuls of the same matrices:

      out = rows @ T      dT = rows.T @ dout      drows = dout @ T.T

  The kernel gradient is ``dT`` read back on the band (``band``, summed over output columns)
  and dL/dx is ``drows`` added back onto the input rows (``im2row_adjoint``).

Why rows and not the textbook im2col ``(N·Ho·Wo, kh·kw·C)``: with LeNet's few channels, an
im2col copy moves runs of only kw·C contiguous numbers and its col2im adds runs of C, and NumPy
spends its time in per-run overhead; rows are copied and added in runs of Wp·C, and all the
arithmetic goes to BLAS in well-shaped matrices. The price is arithmetic on the band's zeros:
``T`` is Wp/kw times denser in work than the kernel (≈5.6× for LeNet's conv1), so the cost
grows with the image width — right for LeNet's 28×28 digits, not for wide images.

``correlate`` and ``correlate_input_grad`` are the forward and input-gradient entry points;
``correlate`` also returns the im2col matrix for callers that form a kernel gradient from it
(compare.sides.mutants does); Conv2D uses ``correlate_rows``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

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


def out_size(padded: int, k: int, s: int) -> int:
    """Number of valid windows of size ``k`` at stride ``s`` along an already padded axis."""
    return (padded - k) // s + 1


def taps(k: int, s: int, n_out: int) -> list[slice]:
    """For each kernel offset ``i < k``, the slice of padded rows (or columns) that offset
    reads over ``n_out`` windows: i, i+s, ..., i+s·(n_out-1)."""
    return [slice(i, i + s * (n_out - 1) + 1, s) for i in range(k)]


# -- windows (pooling) -----------------------------------------------------------------------
def windows(xp: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """Every (kh, kw) window of ``xp`` at stride ``s``, as a view: (N, Ho, Wo, kh, kw, C)."""
    v = sliding_window_view(xp, k, axis=(1, 2))  # (N, Hp-kh+1, Wp-kw+1, C, kh, kw)
    v = v[:, :: s[0], :: s[1]]  # (N, Ho, Wo, C, kh, kw)
    return v.transpose(0, 1, 2, 4, 5, 3)  # (N, Ho, Wo, kh, kw, C)


def window_sum(xp: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """``windows(xp, k, s).sum(axis=(3, 4))``, shape (N, Ho, Wo, C), summed separably: first
    the kh rows of each window (adds of whole contiguous rows), then the kw columns (NumPy
    reduces a 6-D view over its two middle axes slowly)."""
    ho, wo = out_size(xp.shape[1], k[0], s[0]), out_size(xp.shape[2], k[1], s[1])
    rows = taps(k[0], s[0], ho)
    cols = taps(k[1], s[1], wo)
    by_row = xp[:, rows[0]].copy()  # (N, Ho, Wp, C): sum over window rows
    for r in rows[1:]:
        by_row += xp[:, r]
    total = by_row[:, :, cols[0]].copy()  # (N, Ho, Wo, C): then over window columns
    for c in cols[1:]:
        total += by_row[:, :, c]
    return total


def window_sum_adjoint(
    g: Array, padded_shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int]
) -> Array:
    """Transpose of ``window_sum``: every cell of every window receives that window's value of
    ``g`` (N, Ho, Wo, C); overlapping windows add up. Returns (N, Hp, Wp, C)."""
    n, ho, wo, c = g.shape
    hp, wp = padded_shape[1], padded_shape[2]
    if tuple(k) == tuple(s) and (hp, wp) == (ho * k[0], wo * k[1]):
        # Windows that tile the input exactly (LeNet's 2x2 pools): each cell is in one window
        # and gets its value unchanged, so the adjoint is a repeat: (N, Ho, Wo, C) ->
        # (N, Ho, Wp, C) -> (N, Hp, Wp, C). The same numbers as the general path below (which
        # adds them to zeros), in one pass over whole rows instead of runs of C.
        return np.repeat(np.repeat(g, k[1], axis=2), k[0], axis=1)
    by_row = np.zeros((n, ho, wp, c), dtype=g.dtype)  # spread over window columns ...
    for col in taps(k[1], s[1], wo):
        by_row[:, :, col] += g
    out = np.zeros((n, hp, wp, c), dtype=g.dtype)  # ... then over window rows
    for r in taps(k[0], s[0], ho):
        out[:, r] += by_row
    return out


def windows_adjoint(dwin: Array, padded_shape: tuple[int, ...], s: tuple[int, int]) -> Array:
    """Transpose of ``windows``: scatter-add (N, Ho, Wo, kh, kw, C) window values onto an
    (N, Hp, Wp, C) array. Overlapping windows (stride < kernel) add up."""
    n, ho, wo, kh, kw, c = dwin.shape
    assert padded_shape[0] == n and padded_shape[3] == c, (dwin.shape, padded_shape)
    out = np.zeros(padded_shape, dtype=dwin.dtype)
    for i, r in enumerate(taps(kh, s[0], ho)):
        for j, col in enumerate(taps(kw, s[1], wo)):
            # rows i, i+s, ..., i+s*(ho-1) of the input receive offset (i, j) of each window
            out[:, r, col, :] += dwin[:, :, :, i, j, :]
    return out


def im2col(xp: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """The windows of ``xp`` as a matrix (N·Ho·Wo, kh·kw·C); column order (i, j, c) matches the
    rows of an HWIO kernel reshaped to (kh·kw·C, out)."""
    w = windows(xp, k, s)
    n, ho, wo, kh, kw, c = w.shape
    return w.reshape(n * ho * wo, kh * kw * c)  # copy


# -- row-lowered convolution ---------------------------------------------------------------
def im2row(xp: Array, kh: int, sh: int) -> Array:
    """For every output row, the kh padded input rows it reads, flattened:
    (N·Ho, kh·Wp·C), column order (i, w, c). One copy, in contiguous runs of Wp·C."""
    wp, c = xp.shape[2:]
    v = sliding_window_view(xp, kh, axis=1)[:, ::sh]  # (N, Ho, Wp, C, kh)
    v = v.transpose(0, 1, 4, 2, 3)  # (N, Ho, kh, Wp, C)
    return v.reshape(-1, kh * wp * c)  # copy: (N*Ho, kh*Wp*C)


def im2row_adjoint(drows: Array, padded_shape: tuple[int, ...], kh: int, sh: int) -> Array:
    """Transpose of ``im2row``: add the (N·Ho, kh·Wp·C) row gradients back onto an
    (N, Hp, Wp, C) array; rows read by several output rows (stride < kh) add up."""
    n, _, wp, c = padded_shape
    ho = drows.shape[0] // n
    d = drows.reshape(n, ho, kh, wp, c)  # (N, Ho, kh, Wp, C)
    out = np.zeros(padded_shape, dtype=drows.dtype)
    for i, r in enumerate(taps(kh, sh, ho)):
        out[:, r] += d[:, :, i]  # input rows i, i+sh, ... receive kernel row i
    return out


def band(t: Array, kw: int, sw: int) -> Array:
    """The band of a (kh, Wp, C, Wo, F) banded matrix as a view (kh, kw, C, Wo, F):
    ``band(t)[i, j, c, wo, f] = t[i, wo·sw + j, c, wo, f]``, the entry that multiplies kernel
    tap (i, j) into output column wo. Distinct indices are distinct entries, so it can be
    written through."""
    kh, wp, c, wo, f = t.shape
    s0, s1, s2, s3, s4 = t.strides
    assert (wo - 1) * sw + kw <= wp, (t.shape, kw, sw)
    return as_strided(t, (kh, kw, c, wo, f), (s0, s1, s2, sw * s1 + s3, s4))


def banded(kernel: Array, wp: int, sw: int) -> Array:
    """The HWIO kernel as the (kh·Wp·C, Wo·F) matrix that correlates one row band along W at
    stride ``sw``: ``im2row(xp) @ banded(kernel)`` is the convolution, row-major (N·Ho, Wo·F).
    Zero off the band."""
    kh, kw, c, f = kernel.shape
    wo = out_size(wp, kw, sw)
    t = np.zeros((kh, wp, c, wo, f), dtype=kernel.dtype)
    band(t, kw, sw)[...] = kernel[:, :, :, None, :]  # the same taps at every output column
    return t.reshape(kh * wp * c, wo * f)


def banded_adjoint(dt: Array, kernel_shape: tuple[int, ...], wp: int, sw: int) -> Array:
    """Transpose of ``banded``: the gradient of an HWIO kernel from the gradient of its banded
    matrix, each tap summed over the output columns it slides to: (kh, kw, C, F)."""
    kh, kw, c, f = kernel_shape
    wo = out_size(wp, kw, sw)
    return band(dt.reshape(kh, wp, c, wo, f), kw, sw).sum(axis=3)  # (kh, kw, C, F)


def correlate_rows(
    xp: Array, kernel: Array, s: tuple[int, int], bias: Array | None = None
) -> tuple[Array, Array]:
    """Valid cross-correlation (Keras's Conv2D, no kernel flip) of an already padded NHWC input
    with an HWIO kernel, plus ``bias`` (F,) if given: one matmul. Returns the output
    (N, Ho, Wo, F) and ``im2row(xp)`` (N·Ho, kh·Wp·C), which the kernel gradient needs."""
    kh, kw, c, f = kernel.shape
    n, _, wp, c2 = xp.shape
    assert c == c2, (xp.shape, kernel.shape)
    wo = out_size(wp, kw, s[1])
    rows = im2row(xp, kh, s[0])  # (N*Ho, kh*Wp*C)
    out = rows @ banded(kernel, wp, s[1])  # (N*Ho, Wo*F)
    if bias is not None:
        out += np.tile(bias, wo)  # (Wo*F,): long rows, not NumPy's slow runs of F
    return out.reshape(n, -1, wo, f), rows  # (N, Ho, Wo, F), no copy


def correlate_kernel_grad(
    rows: Array, dout: Array, kernel_shape: tuple[int, ...], s: tuple[int, int], wp: int
) -> Array:
    """dL/d(kernel) (kh, kw, C, F) for ``out, rows = correlate_rows(xp, kernel, s)`` with xp
    of padded width ``wp``, given dL/d(out)."""
    n, ho, wo, f = dout.shape
    # rows.T @ dout as (dout.T @ rows).T: the same product, which OpenBLAS runs faster
    dt = (dout.reshape(n * ho, wo * f).T @ rows).T  # (kh*Wp*C, Wo*F)
    return banded_adjoint(dt, kernel_shape, wp, s[1])


def correlate_input_grad(
    dout: Array, kernel: Array, s: tuple[int, int], padded_hw: tuple[int, int]
) -> Array:
    """dL/d(xp) for ``out = correlate(xp, kernel, s)``, given dL/d(out); shape (N, Hp, Wp, C).
    The matmul with the transposed banded kernel, then ``im2row``'s adjoint. Rows and columns
    of xp that no window reached (stride leftovers) get zero."""
    n, ho, wo, f = dout.shape
    kh, _, c, f2 = kernel.shape
    assert f == f2, (dout.shape, kernel.shape)
    hp, wp = padded_hw
    drows = dout.reshape(n * ho, wo * f) @ banded(kernel, wp, s[1]).T  # (N*Ho, kh*Wp*C)
    return im2row_adjoint(drows, (n, hp, wp, c), kh, s[0])


def correlate(xp: Array, kernel: Array, s: tuple[int, int]) -> tuple[Array, Array]:
    """``correlate_rows``'s output, with the im2col matrix (N·Ho·Wo, kh·kw·C) instead of the row
    matrix: ``im2col.T @ dout.reshape(-1, F)`` is the kernel gradient in HWIO order reshaped to
    (kh·kw·C, F). Conv2D does not use it (it keeps the cheaper rows); compare.sides.mutants does."""
    out, _ = correlate_rows(xp, kernel, s)
    return out, im2col(xp, kernel.shape[:2], s)
