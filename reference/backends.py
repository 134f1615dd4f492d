"""Which Keras backend computes the reference, and its backend-specific module.

Keras fixes its backend when it is first imported (``KERAS_BACKEND``); each backend has one
small module here with the same interface:

- ``NAME``: the backend's name.
- ``LOSS_PATH``: how Keras's categorical cross-entropy is computed on it — ``"logits"``
  (TensorFlow: from the softmax's logits, unclipped) or ``"probabilities"`` (clipped to
  [1e-7, 1 − 1e-7]); the scratch model mirrors it.
- ``FLOAT64_COMPUTED_IN_FLOAT32``: the Keras ops that compute a float64 model's tensors in
  float32 on this backend (tanh on JAX, matmul on torch; none on TensorFlow).
- ``configure_determinism(seed)``: seeds and deterministic ops.
- ``check_dtype(dtype)``: raises when the backend cannot compute in ``dtype`` as configured
  (float64 on JAX without ``JAX_ENABLE_X64=1``).
- ``effective_momentum(momentum)``: the momentum Keras's SGD really applies on this backend.
- ``gradients(model, x, y) -> (loss, grads keyed "<layer>/<param>", dloss/dinput)``.
- ``versions() -> dict``: the backend's package versions; ``numeric_flags() -> dict``: settings
  that change its numerics.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import keras

BACKENDS = ("tensorflow", "jax", "torch")
_SUPPORTED = BACKENDS


class UnsupportedBackendError(RuntimeError):
    """Keras runs on a backend that lenet-parity has no reference module for."""


def backend() -> ModuleType:
    """The backend-specific module for the backend Keras was imported with."""
    name = keras.backend.backend()
    if name not in _SUPPORTED:
        raise UnsupportedBackendError(
            f"Keras runs on the {name!r} backend; lenet-parity's reference supports "
            f"{', '.join(_SUPPORTED)}. Set KERAS_BACKEND=tensorflow."
        )
    return importlib.import_module(f"reference.backend_{name}")
