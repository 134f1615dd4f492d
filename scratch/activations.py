"""Activations as pure functions: each has a forward ``f(z)`` and a backward that maps dL/dy to
dL/dz given ``z`` and ``y = f(z)``. They preserve the dtype and never write into their inputs.

The derivative conventions follow Keras on TensorFlow: relu's gradient at exactly 0 is 0
(TensorFlow's ReluGrad uses ``features > 0``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    name: str
    forward: Callable[[Array], Array]
    backward: Callable[[Array, Array, Array], Array]  # (dout, z, y) -> dz


def relu(z: Array) -> Array:
    return np.maximum(z, 0)


def tanh(z: Array) -> Array:
    return np.tanh(z)


def sigmoid(z: Array) -> Array:
    # 0.5 * (1 + tanh(z / 2)) equals 1 / (1 + exp(-z)) and cannot overflow.
    return 0.5 * (np.tanh(0.5 * z) + 1)


def softmax(z: Array) -> Array:
    """Softmax over the last axis (max-shifted, as every Keras backend does)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z: Array) -> Array:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _linear_backward(dout: Array, z: Array, y: Array) -> Array:
    return dout


def _relu_backward(dout: Array, z: Array, y: Array) -> Array:
    return dout * (z > 0)


def _tanh_backward(dout: Array, z: Array, y: Array) -> Array:
    return dout * (1 - y * y)


def _sigmoid_backward(dout: Array, z: Array, y: Array) -> Array:
    return dout * (y * (1 - y))


def _softmax_backward(dout: Array, z: Array, y: Array) -> Array:
    # Jacobian-vector product of softmax: dz_i = y_i * (dout_i - sum_j dout_j y_j).
    return y * (dout - (dout * y).sum(axis=-1, keepdims=True))


def _identity(z: Array) -> Array:
    return z


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("linear", _identity, _linear_backward),
        Activation("relu", relu, _relu_backward),
        Activation("tanh", tanh, _tanh_backward),
        Activation("sigmoid", sigmoid, _sigmoid_backward),
        Activation("softmax", softmax, _softmax_backward),
    )
}


def get(name: str | None) -> Activation:
    """The activation called ``name``; ``None`` means linear, as in Keras."""
    key = "linear" if name is None else name
    if key not in ACTIVATIONS:
        raise ValueError(
            f"Unknown activation. Expected one of {sorted(ACTIVATIONS)} or None. "
            f"Received: activation={name!r}"
        )
    return ACTIVATIONS[key]
