"""Max pooling's ties: where dloss/dinput is not unique, so no two honest implementations need
agree on it.

A max pooling window whose two largest inputs are equal up to rounding has no single
derivative: the gradient may go to either cell, and which one an implementation picks follows
from the last bit of values that are equal in exact arithmetic. It happens wholesale when a
convolution without bias sees a constant background that is not 0 (the NumPy tutorial's inputs
scaled to [-0.5, 0.5]): every blank window ties, and a summation order that differs by
position (a blocked matmul) breaks the ties at random, where Keras breaks them at the first
cell. The parameters' gradients do not depend on which cell: tied cells see the same input
patch. dloss/dinput does. :func:`input_ties` finds the input elements whose gradient passes
through a tied window (from the reference's own pool inputs) so that the check leaves them out
and says how many it left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from compare.sides.protocol import LayerSpec

_SPATIAL = ("Conv2D", "AveragePooling2D", "MaxPooling2D")


def _pairs(value: Any, default: Sequence[int]) -> tuple[int, int]:
    if value is None:
        value = default
    if isinstance(value, int):
        return value, value
    a, b = (int(v) for v in value)
    return a, b


def _geometry(layer: LayerSpec) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], str]:
    """(window, strides, dilation, padding) of a spatial layer."""
    c = layer.config
    if layer.class_name == "Conv2D":
        window = _pairs(c.get("kernel_size"), (1, 1))
        strides = _pairs(c.get("strides"), (1, 1))
        dilation = _pairs(c.get("dilation_rate"), (1, 1))
    else:
        window = _pairs(c.get("pool_size"), (2, 2))
        strides = _pairs(c.get("strides"), window)
        dilation = (1, 1)
    return window, strides, dilation, str(c.get("padding", "valid"))


def _before(size: int, out: int, k: int, s: int, padding: str) -> int:
    """The padding before the first row (TensorFlow's: the extra one goes after)."""
    if padding != "same":
        return 0
    return max((out - 1) * s + k - size, 0) // 2


def _spread(mask: np.ndarray, layer: LayerSpec) -> np.ndarray:
    """A (N, Ho, Wo) mask of a layer's output cells → the (N, H, W) input cells they read."""
    (kh, kw), (sh, sw), (dh, dw), padding = _geometry(layer)
    h, w = layer.input_shape[:2]
    ho, wo = mask.shape[1:3]
    top, left = (
        _before(h, ho, (kh - 1) * dh + 1, sh, padding),
        _before(w, wo, (kw - 1) * dw + 1, sw, padding),
    )
    rows = np.arange(ho) * sh - top
    cols = np.arange(wo) * sw - left
    out = np.zeros((mask.shape[0], h, w), dtype=bool)
    for a in range(kh):  # one slice per tap of the window: kh·kw vectorised ORs
        r = rows + a * dh
        keep_r = (r >= 0) & (r < h)
        for b in range(kw):
            c = cols + b * dw
            keep_c = (c >= 0) & (c < w)
            sub = mask[:, keep_r][:, :, keep_c]  # (N, rows kept, cols kept)
            out[:, r[keep_r][:, None], c[keep_c][None, :]] |= sub
    return out


def _tied_windows(x: np.ndarray, layer: LayerSpec, tolerance: float) -> np.ndarray:
    """(N, H, W) cells of ``x`` (a max pooling layer's NHWC input) in a window, of any channel,
    whose two largest values differ by at most ``tolerance``."""
    (ph, pw), (sh, sw), _, padding = _geometry(layer)
    h, w = x.shape[1:3]
    ho = -(-h // sh) if padding == "same" else (h - ph) // sh + 1
    wo = -(-w // sw) if padding == "same" else (w - pw) // sw + 1
    top, left = _before(h, ho, ph, sh, padding), _before(w, wo, pw, sw, padding)
    padded = np.pad(
        x,
        (
            (0, 0),
            (top, max((ho - 1) * sh + ph - h - top, 0)),
            (left, max((wo - 1) * sw + pw - w - left, 0)),
            (0, 0),
        ),
        constant_values=-np.inf,
    )
    # (N, Hp, Wp, C) -> (N, Ho, Wo, C, ph, pw) -> (N, Ho, Wo, C, ph·pw), largest last
    windows = np.lib.stride_tricks.sliding_window_view(padded, (ph, pw), axis=(1, 2))
    ranked = np.sort(windows[:, ::sh, ::sw].reshape(*windows.shape[:1], ho, wo, -1, ph * pw), -1)
    if ranked.shape[-1] < 2:
        return np.zeros((x.shape[0], h, w), dtype=bool)
    tied = (ranked[..., -1] - ranked[..., -2] <= tolerance).any(axis=-1)  # (N, Ho, Wo)
    return _spread(tied, layer)


def input_ties(
    layers: Sequence[LayerSpec],
    reference_outputs: Mapping[str, np.ndarray],
    x: np.ndarray,
    tolerances: Mapping[str, float],
) -> np.ndarray | None:
    """The (N, H, W, C) input elements whose dloss/dinput passes through a tied max pooling
    window (module docstring), from the reference's layer outputs; ``tolerances[layer]`` is
    how close two values of a pooling layer's input count as tied. None: no max pooling, or no
    tie (every element can be compared)."""
    found = np.zeros(x.shape[:3], dtype=bool)
    for i, layer in enumerate(layers):
        if layer.class_name != "MaxPooling2D":
            continue
        pooled = x if i == 0 else reference_outputs.get(layers[i - 1].name)
        if pooled is None or pooled.ndim != 4:
            continue
        mask = _tied_windows(np.asarray(pooled, dtype=np.float64), layer, tolerances[layer.name])
        for below in reversed(layers[:i]):  # back to the input through the spatial layers
            if below.class_name in _SPATIAL:
                mask = _spread(mask, below)
        found |= mask
    if not found.any():
        return None
    return np.broadcast_to(found[..., None], x.shape)
