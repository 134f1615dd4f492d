"""The reference side: the Keras model (through the ``reference`` package) as the harness sees
it, and the :class:`~compare.sides.protocol.ModelSpec` read off it.

This module imports Keras only inside its functions, when a check first needs the reference:
``compare.sides`` stays importable without Keras. The backend is chosen before that, once, by
:func:`compare.sides.backends.choose` and passed down as the backend module.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from compare.errors import InputError
from compare.inputs.weights import ARCHITECTURE_KEYS
from compare.sides import quiet
from compare.sides.protocol import LayerSpec, ModelSpec


def backend_module() -> ModuleType:
    """The reference package's module for the backend Keras runs on (imports Keras, with the
    frameworks' C++ start-up chatter filtered out at its source: :mod:`compare.sides.quiet`)."""
    with quiet.framework_import():
        import keras

        import reference

        try:
            backend = reference.backend()
        except reference.UnsupportedBackendError as exc:
            raise InputError(str(exc)) from None
        # TensorFlow prints its oneDNN notice a second time at its first op: make it here
        reference.model.to_numpy(keras.ops.add(keras.ops.ones((1,)), 1.0))  # torch-safe
    return backend


def check_backend_dtype(backend: ModuleType, dtype: str) -> None:
    """A one-line error when ``backend`` cannot compute in ``dtype`` as configured (float64 on
    JAX without ``JAX_ENABLE_X64=1``)."""
    try:
        backend.check_dtype(dtype)
    except RuntimeError as exc:
        raise InputError(str(exc)) from None


@functools.cache
def _inference_model(variant: str, dtype: str) -> Any:
    """One Keras model per variant and dtype per process for the layer checks; weights are
    assigned per check."""
    import reference

    return reference.build_lenet5(variant, dtype)


# A layer's settings are read off the layer itself, under Keras's config names
# (ARCHITECTURE_KEYS): get_config() serialises the dtype policy through
# keras/src/saving/serialization_lib.py, whose ``tf.available`` imports TensorFlow whenever it
# is installed — seconds of start-up on a JAX or torch process that never uses it.


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if callable(value):  # an activation function: its name, as get_config() gives it
        return getattr(value, "__name__", repr(value))
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def layer_config(layer: Any) -> dict[str, Any]:
    """A layer's settings under Keras's config keys, as plain JSON values."""
    config = {"name": layer.name}
    for key in ARCHITECTURE_KEYS:
        if hasattr(layer, key):
            config[key] = _plain(getattr(layer, key))
    return config


def model_spec(
    variant: str,
    dtype: str,
    backend: ModuleType,
    *,
    learning_rate: float,
    momentum: float,
    nesterov: bool,
    seed: int,
    batch_size: int,
) -> ModelSpec:
    """The spec of the reference model: its layers in order, read off the Keras model, and the
    recipe as Keras applies it on ``backend`` (its effective momentum and loss path)."""
    model = _inference_model(variant, dtype)
    layers = tuple(
        LayerSpec(
            name=layer.name,
            class_name=type(layer).__name__,
            config=layer_config(layer),
            input_shape=tuple(int(d) for d in layer.input.shape[1:]),
            output_shape=tuple(int(d) for d in layer.output.shape[1:]),
            weights={w.name: tuple(int(d) for d in w.shape) for w in layer.weights},
        )
        for layer in model.layers
    )
    return ModelSpec(
        name=variant,
        dtype=dtype,
        learning_rate=float(learning_rate),
        momentum=float(backend.effective_momentum(momentum)),
        nesterov=bool(nesterov),
        loss_path=backend.LOSS_PATH,
        seed=seed,
        batch_size=batch_size,
        input_shape=tuple(int(d) for d in model.input_shape[1:]),
        layers=layers,
        num_classes=int(model.output_shape[-1]),
    )


class KerasReference:
    """The Keras model in Keras's keys and layouts: the same methods the protocol asks of an
    implementation, all of them provided. ``training=True`` builds a fresh compiled model with
    the recipe (for the training run); otherwise the process's cached inference model."""

    def __init__(
        self,
        variant: str,
        dtype: str,
        backend: ModuleType,
        weights: Mapping[str, np.ndarray],
        *,
        training: bool = False,
        learning_rate: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        import reference

        self._reference, self.backend = reference, backend
        if training:
            self.model = reference.build_lenet5(
                variant, dtype, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov
            )
        else:
            self.model = _inference_model(variant, dtype)
        reference.set_weights(self.model, weights)
        self.dtype = dtype

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = self._reference.layer_outputs(self.model, x)
        return outputs

    def widened(self, output: np.ndarray) -> np.ndarray:
        """A Keras layer output in the model's dtype. Keras on JAX computes tanh in float32 even
        in a float64 model (``backend.FLOAT64_COMPUTED_IN_FLOAT32``), so a tanh layer's output
        comes back float32: it is widened to float64 (exactly) and compared by value, and the
        float32 rounding Keras did counts as that backend's honest error. Only the reference
        side and only float32 → float64 on such a backend: any other dtype difference, and any
        on the implementation's side, stays a failed check."""
        if (
            output.dtype == np.float32
            and self.dtype == "float64"
            and self.backend.FLOAT64_COMPUTED_IN_FLOAT32
        ):
            return output.astype(np.float64)
        return output

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        loss, grads, dx = self.backend.gradients(self.model, x, y)
        return float(loss), grads, dx

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        loss, _ = self._reference.train_step(self.model, x, y)
        return float(loss)

    def get_weights(self) -> dict[str, np.ndarray]:
        weights: dict[str, np.ndarray] = self._reference.get_weights(self.model)
        return weights

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The probabilities (the last layer's output) at inference."""
        probabilities: np.ndarray = self._reference.predict(self.model, x)
        return probabilities
