"""Keras's activation layers: ``Activation(activation)``, ``ReLU()`` and ``Softmax(axis=-1)``.

Each is a layer without weights whose pre-activation output is its input and whose activation
is the named function of :mod:`scratch.activations`, so a model ending in ``Softmax()`` or
``Activation("softmax")`` has its logits (the layer's input) for the fused cross-entropy, as
Keras's softmax output carries ``_keras_logits`` on TensorFlow.

Supported: ``ReLU`` with its defaults only (max_value=None, negative_slope=0, threshold=0:
``max(x, 0)``, gradient 0 at 0) and ``Softmax`` over the last axis only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scratch.layer import Layer, Shape


def _is_zero(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0


class Activation(Layer):
    """``keras.layers.Activation``: applies ``activation`` (a name) to its input."""

    def __init__(self, activation: str | None, name: str | None = None) -> None:
        super().__init__(name=name, activation=activation)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return x

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        self.grads = {}
        return dz if input_grad else None


class ReLU(Activation):
    """``keras.layers.ReLU()`` with its default arguments: ``max(x, 0)``."""

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        name: str | None = None,
    ) -> None:
        checks = (
            ("max_value", max_value, max_value is None),
            ("negative_slope", negative_slope, _is_zero(negative_slope)),
            ("threshold", threshold, _is_zero(threshold)),
        )
        for arg, value, supported in checks:
            if not supported:
                raise ValueError(
                    "ReLU supports only max_value=None, negative_slope=0 and threshold=0. "
                    f"Received: {arg}={value!r}"
                )
        super().__init__("relu", name=name)


class Softmax(Activation):
    """``keras.layers.Softmax(axis=-1)``: softmax over the last axis (max-shifted)."""

    def __init__(self, axis: int | Sequence[int] = -1, name: str | None = None) -> None:
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if len(axes) != 1 or isinstance(axes[0], bool) or not isinstance(axes[0], int):
            raise ValueError(f"Softmax supports one axis, the last. Received: axis={axis!r}")
        self.axis: int = axes[0]
        super().__init__("softmax", name=name)

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if self.axis not in (-1, len(input_shape)):
            raise ValueError(
                f"Layer '{self.name}': Softmax supports the last axis only (axis=-1 or "
                f"axis={len(input_shape)} for inputs of rank {len(input_shape) + 1}). "
                f"Received: axis={self.axis}"
            )
        return input_shape
