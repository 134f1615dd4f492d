"""Slow, obviously-correct loop implementations of Keras's windowed layers, used only as test
oracles for scratch/ (never imported by scratch/ itself).

They are written independently of scratch/windows.py: no padded array is ever built. Each
output cell loops over (sample, output row, output column), works out which rows and columns of
the *unpadded* input its window covers, and keeps only those real cells. Padding therefore
contributes nothing to a convolution (zero padding), is not counted by average pooling
("divide by the count of real cells", as TensorFlow's avg_pool) and can never win a max pool.

Geometry (TensorFlow's, which Keras uses), per spatial axis of size ``n``, window ``k``,
stride ``s``:

- "valid": windows start at 0, s, 2s, ... while the window fits: ``out = len(range(0, n-k+1, s))``.
- "same": ``out = ceil(n / s)``; ``pad_total = max((out-1)*s + k - n, 0)``;
  ``pad_before = pad_total // 2`` (the extra pixel of an odd total goes after). Window ``o``
  covers input positions ``o*s - pad_before ... o*s - pad_before + k - 1``.

Layouts are Keras's: NHWC inputs, HWIO kernels; Conv2D is a cross-correlation (no flip).
"""

from __future__ import annotations

import numpy as np


def axis_geometry(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(number of outputs, padding before) along one spatial axis."""
    if padding == "valid":
        return len(range(0, n - k + 1, s)), 0
    if padding == "same":
        out = len(range(0, n, s))  # ceil(n / s)
        pad_total = max((out - 1) * s + k - n, 0)
        return out, pad_total // 2
    raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")


def _window(o: int, k: int, s: int, before: int, n: int) -> tuple[int, int, int]:
    """Real input range [lo, hi) covered by window ``o`` and the offset of ``lo`` inside the
    window (how many padded cells precede it)."""
    start = o * s - before
    lo, hi = max(start, 0), min(start + k, n)
    assert lo < hi, "a window must cover at least one real cell"
    return lo, hi, lo - start


def conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    strides: tuple[int, int] = (1, 1),
    padding: str = "valid",
) -> np.ndarray:
    """Keras Conv2D before its activation: out[n, i, j, f] = bias[f] + sum over the real cells
    (a, b, c) of window (i, j) of x[n, a, b, c] * kernel[a - row0, b - col0, c, f]."""
    n_batch, h, w, c = x.shape
    kh, kw, c2, f = kernel.shape
    assert c == c2, (x.shape, kernel.shape)
    ho, top = axis_geometry(h, kh, strides[0], padding)
    wo, left = axis_geometry(w, kw, strides[1], padding)
    out = np.zeros((n_batch, ho, wo, f), dtype=np.result_type(x, kernel))
    for n in range(n_batch):
        for i in range(ho):
            r_lo, r_hi, dr = _window(i, kh, strides[0], top, h)
            for j in range(wo):
                c_lo, c_hi, dc = _window(j, kw, strides[1], left, w)
                patch = x[n, r_lo:r_hi, c_lo:c_hi, :]  # (rows, cols, C), real cells only
                weights = kernel[dr : dr + (r_hi - r_lo), dc : dc + (c_hi - c_lo), :, :]
                for ff in range(f):
                    out[n, i, j, ff] = np.sum(patch * weights[:, :, :, ff])
    if bias is not None:
        out += bias
    return out


def _pool(
    x: np.ndarray,
    pool_size: tuple[int, int],
    strides: tuple[int, int] | None,
    padding: str,
    reduce: str,
) -> np.ndarray:
    strides = pool_size if strides is None else strides
    n_batch, h, w, c = x.shape
    ho, top = axis_geometry(h, pool_size[0], strides[0], padding)
    wo, left = axis_geometry(w, pool_size[1], strides[1], padding)
    out = np.zeros((n_batch, ho, wo, c), dtype=x.dtype)
    for n in range(n_batch):
        for i in range(ho):
            r_lo, r_hi, _ = _window(i, pool_size[0], strides[0], top, h)
            for j in range(wo):
                c_lo, c_hi, _ = _window(j, pool_size[1], strides[1], left, w)
                for ch in range(c):
                    cells = x[n, r_lo:r_hi, c_lo:c_hi, ch]  # real cells only
                    if reduce == "mean":
                        out[n, i, j, ch] = cells.sum() / cells.size
                    else:
                        out[n, i, j, ch] = cells.max()
    return out


def avg_pool2d(
    x: np.ndarray,
    pool_size: tuple[int, int] = (2, 2),
    strides: tuple[int, int] | None = None,
    padding: str = "valid",
) -> np.ndarray:
    """Keras AveragePooling2D: the mean of each window's real (unpadded) cells."""
    return _pool(x, pool_size, strides, padding, "mean")


def max_pool2d(
    x: np.ndarray,
    pool_size: tuple[int, int] = (2, 2),
    strides: tuple[int, int] | None = None,
    padding: str = "valid",
) -> np.ndarray:
    """Keras MaxPooling2D: the max of each window's real cells (padding never wins)."""
    return _pool(x, pool_size, strides, padding, "max")
