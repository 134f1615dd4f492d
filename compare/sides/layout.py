"""Every layout conversion between Keras's layouts and an implementation's, written once.

Keras's layouts are canonical (NHWC activations, HWIO conv kernels, Dense kernels
``(in, units)``, Flatten in (H, W, C) order). A ``"channels_first"`` implementation works in
NCHW / OIHW with Flatten in (C, H, W) order, so the first Dense kernel after a Flatten has its
rows in that order too. :class:`LayoutAdapter` knows, from the :class:`ModelSpec`, which
conversion each activation and each weight needs; the elementary conversions are the module
functions below, each with its inverse derived from the same axes, a shape comment and a shape
assert.

Going to the implementation, shapes are the spec's and are asserted. Coming back, an array
whose shape is not what the implementation's layout implies is returned unconverted (with
``converted=False``), so that the comparison reports the implementation's own wrong shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

import numpy as np

from compare.sides.protocol import LAYOUTS, ModelSpec

# NHWC -> NCHW, and HWIO -> OIHW; the inverses are their argsorts.
NHWC_TO_NCHW: Final = (0, 3, 1, 2)
HWIO_TO_OIHW: Final = (3, 2, 0, 1)


def _inverse(axes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(axes))


def permute(x: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """``x`` (of ``shape``) with its axes permuted, as a contiguous array."""
    assert x.shape == shape, f"expected shape {shape}, got {x.shape}"
    return np.ascontiguousarray(x.transpose(axes))


def flat_order(hwc: tuple[int, int, int]) -> np.ndarray:
    """The permutation from an (H, W, C)-ordered flat vector to a (C, H, W)-ordered one:
    ``chw_flat = hwc_flat[..., order]``; its argsort goes back."""
    h, w, c = hwc
    # index of each (h, w, c) element in HWC order, laid out as (C, H, W), then flattened
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


@dataclasses.dataclass(frozen=True)
class Converted:
    """An array brought back to Keras's layout, or left as returned (``converted=False``)
    because its shape was not the one the implementation's layout implies."""

    array: np.ndarray
    converted: bool


class LayoutAdapter:
    """The conversions of one model between Keras's layout and ``layout``."""

    def __init__(self, spec: ModelSpec, layout: str) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"Invalid layout. Expected one of {LAYOUTS}. Received: {layout!r}")
        self.spec, self.layout = spec, layout
        self.first = layout == "channels_first"
        # For each layer: the flat-order permutation its (rank-1) output has in the
        # implementation (after a Flatten of an (H, W, C) input, until a Dense consumes it),
        # and the one its rank-1 weights and the rows of its kernel need.
        self._out_order: dict[str, np.ndarray | None] = {}
        self._in_order: dict[str, np.ndarray | None] = {}
        order: np.ndarray | None = None
        for layer in spec.layers:
            self._in_order[layer.name] = order
            if layer.class_name == "Flatten" and len(layer.input_shape) == 3:
                h, w, c = layer.input_shape
                order = flat_order((h, w, c))
            elif layer.class_name == "Dense" or len(layer.output_shape) != 1:
                order = None
            self._out_order[layer.name] = order

    # -- activations -------------------------------------------------------------------------
    def _activation_to(
        self, x: np.ndarray, shape: tuple[int, ...], order: np.ndarray | None
    ) -> np.ndarray:
        """(N, *shape) in Keras's layout → the implementation's."""
        if not self.first:
            return x
        if len(shape) == 3:
            return permute(x, NHWC_TO_NCHW, (x.shape[0], *shape))  # (N, H, W, C) -> (N, C, H, W)
        if order is not None:
            assert x.shape[1:] == shape, f"expected (N, {shape}), got {x.shape}"
            return np.ascontiguousarray(x[:, order])  # (N, H·W·C) HWC order -> CHW order
        return x

    def _activation_from(
        self, x: np.ndarray, shape: tuple[int, ...], order: np.ndarray | None
    ) -> Converted:
        """The implementation's (N, …) → Keras's (N, *shape), if it has the implied shape."""
        expected = self._implied(shape)
        if x.ndim != len(shape) + 1 or x.shape[1:] != expected:
            return Converted(x, False)
        if not self.first:
            return Converted(x, True)
        if len(shape) == 3:
            back = permute(x, _inverse(NHWC_TO_NCHW), (x.shape[0], *expected))  # NCHW -> NHWC
            return Converted(back, True)
        if order is not None:
            return Converted(np.ascontiguousarray(x[:, np.argsort(order)]), True)  # CHW -> HWC
        return Converted(x, True)

    def _implied(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """One example's shape in the implementation's layout."""
        if self.first and len(shape) == 3:
            h, w, c = shape
            return (c, h, w)
        return shape

    def input_to(self, x: np.ndarray) -> np.ndarray:
        return self._activation_to(x, self.spec.input_shape, None)

    def input_from(self, dx: np.ndarray) -> Converted:
        return self._activation_from(dx, self.spec.input_shape, None)

    def output_to(self, name: str, y: np.ndarray) -> np.ndarray:
        """A layer's output in Keras's layout → the implementation's (for messages)."""
        return self._activation_to(y, self.spec.layer(name).output_shape, self._out_order[name])

    def output_from(self, name: str, y: np.ndarray) -> Converted:
        layer = self.spec.layer(name)
        return self._activation_from(y, layer.output_shape, self._out_order[name])

    # -- weights -----------------------------------------------------------------------------
    def _weight_rule(self, key: str) -> tuple[str, tuple[int, ...], np.ndarray | None]:
        """(what the weight is, its Keras shape, the flat order of its rows or entries)."""
        layer_name, _, param = key.partition("/")
        layer = self.spec.layer(layer_name)
        shape = tuple(layer.weights[param])
        if len(shape) == 4:
            return "conv kernel", shape, None
        order = self._in_order[layer_name]
        if len(shape) == 2 and layer.class_name == "Dense":
            return "dense kernel", shape, order
        if len(shape) == 1 and order is not None and shape[0] == order.size:
            return "feature vector", shape, order  # e.g. batch norm over a flat input
        return "as is", shape, None

    def weight_to(self, key: str, w: np.ndarray) -> np.ndarray:
        """One weight in Keras's layout → the implementation's."""
        kind, shape, order = self._weight_rule(key)
        assert w.shape == shape, f"{key}: expected shape {shape}, got {w.shape}"
        if not self.first:
            return w
        if kind == "conv kernel":
            return permute(w, HWIO_TO_OIHW, shape)  # (kh, kw, in, out) -> (out, in, kh, kw)
        if order is not None and kind == "dense kernel":
            return np.ascontiguousarray(w[order])  # rows: (H·W·C) HWC order -> CHW order
        if order is not None and kind == "feature vector":
            return np.ascontiguousarray(w[order])
        return w

    def weight_from(self, key: str, w: np.ndarray) -> Converted:
        """One weight (or gradient) in the implementation's layout → Keras's."""
        kind, shape, order = self._weight_rule(key)
        implied = (
            tuple(shape[i] for i in HWIO_TO_OIHW) if self.first and kind == "conv kernel" else shape
        )
        if w.shape != implied:
            return Converted(w, False)
        if not self.first:
            return Converted(w, True)
        if kind == "conv kernel":
            # (out, in, kh, kw) -> (kh, kw, in, out)
            return Converted(permute(w, _inverse(HWIO_TO_OIHW), implied), True)
        if order is not None and kind in ("dense kernel", "feature vector"):
            return Converted(np.ascontiguousarray(w[np.argsort(order)]), True)  # CHW -> HWC
        return Converted(w, True)

    def weights_to(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: self.weight_to(key, w) for key, w in weights.items()}
