"""The implementation protocol, version 1: how any NumPy model plugs into lenet-parity.

docs/protocol.md is the prose of this module; the names here are the public contract. A user
writes ``FACTORY(spec) -> object``; the harness calls FACTORY with a :class:`ModelSpec` (more
than once: e.g. a float64 instance for the finite differences, a fresh one for training) and
talks to the object only through the methods of :class:`Implementation`:

required  ``set_weights(weights)``, ``layer_outputs(x)``
optional  ``loss_and_gradients(x, y)``, ``train_step(x, y)``, ``get_weights()``,
          the attributes ``layout`` and ``weight_names``

No method beyond the two required ones will ever be required; anything more the harness wants
is optional, with a fallback (the checks it would enable are "skipped", with the reason).

Layouts. Keras's are canonical: NHWC activations, HWIO conv kernels, Dense kernels
``(in, units)``, Flatten in (H, W, C) order. An implementation declares
``layout = "channels_first"`` to receive and return NCHW activations, OIHW conv kernels and a
Flatten in (C, H, W) order (with the first Dense kernel's rows in that order too); Dense
kernels are ``(in, units)`` in both. The harness does every conversion
(:mod:`compare.sides.layout`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol, runtime_checkable

import numpy as np

PROTOCOL_VERSION: Final = 1
LAYOUTS: Final = ("channels_last", "channels_first")
DTYPES: Final = ("float32", "float64")
LOSS_PATHS: Final = ("logits", "probabilities")
REQUIRED: Final = ("set_weights", "layer_outputs")
OPTIONAL: Final = ("loss_and_gradients", "train_step", "get_weights")

Layout = Literal["channels_last", "channels_first"]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One layer of the reference model, in order.

    ``class_name`` is Keras's (``"Conv2D"``, ``"AveragePooling2D"``, ``"Flatten"``,
    ``"Dense"`` …), ``config`` its ``get_config()`` as plain JSON values. Shapes exclude the
    batch axis and are Keras's (channels-last); ``weights`` maps each of the layer's weights
    (``"kernel"``, ``"bias"``) to its Keras shape."""

    name: str
    class_name: str
    config: Mapping[str, Any]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    weights: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)

    @property
    def activation(self) -> str:
        """The layer's activation by name (``"linear"`` when it has none); an Activation or
        ReLU layer's own function."""
        if self.class_name == "ReLU":
            return "relu"
        if self.class_name == "Softmax":
            return "softmax"
        value = self.config.get("activation", "linear")
        return value if isinstance(value, str) else "linear"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What an implementation is asked to be (the argument of ``FACTORY(spec)``).

    ``momentum`` is the one Keras really applies on the reference's backend (TensorFlow rounds
    it to float32 even for float64 variables), ``loss_path`` how Keras computes its categorical
    cross-entropy there: ``"logits"`` (from the softmax's logits, unclipped: TensorFlow) or
    ``"probabilities"`` (renormalised and clipped to [1e-7, 1 − 1e-7]: JAX, torch)."""

    name: str
    dtype: str
    learning_rate: float
    momentum: float
    nesterov: bool
    loss_path: str
    seed: int
    batch_size: int
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    num_classes: int
    protocol_version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"Invalid dtype. Expected one of {DTYPES}. Received: {self.dtype!r}")
        if self.loss_path not in LOSS_PATHS:
            raise ValueError(
                f"Invalid loss path. Expected one of {LOSS_PATHS}. Received: {self.loss_path!r}"
            )
        names = [layer.name for layer in self.layers]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"A model needs layers with unique names. Received: {names}")

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(
            f"No layer named {name!r}. Expected one of {[la.name for la in self.layers]}"
        )

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight key ``"<layer>/<param>"`` with its Keras (channels-last) shape."""
        return {
            f"{layer.name}/{param}": shape
            for layer in self.layers
            for param, shape in layer.weights.items()
        }

    def with_dtype(self, dtype: str) -> ModelSpec:
        """The same model in another dtype (the harness's float64 instance)."""
        return dataclasses.replace(self, dtype=dtype)

    def as_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["layers"] = [
            {**dataclasses.asdict(la), "config": dict(la.config), "weights": dict(la.weights)}
            for la in self.layers
        ]
        return record

    def describe(self) -> str:
        """Human-readable: the recipe and every layer with its shapes and weights."""
        lines = [
            f"model {self.name}: {self.dtype}, input {self.input_shape}, {self.num_classes} "
            f"classes; SGD(learning_rate={self.learning_rate:g}, momentum={self.momentum:.17g}, "
            f"nesterov={self.nesterov}), loss path {self.loss_path}, batch {self.batch_size}, "
            f"seed {self.seed}; protocol version {self.protocol_version}"
        ]
        for la in self.layers:
            weights = ", ".join(f"{k} {v}" for k, v in la.weights.items()) or "no weights"
            lines.append(
                f"  {la.name:<12} {la.class_name:<18} {la.input_shape!s:<14} -> "
                f"{la.output_shape!s:<14} {la.activation:<8} {weights}"
            )
        return "\n".join(lines)


def parameter_count(spec: ModelSpec) -> int:
    return sum(math.prod(shape) for shape in spec.weight_shapes().values())


@runtime_checkable
class Implementation(Protocol):
    """The object ``FACTORY(spec)`` returns. Only the two methods below are required; the
    optional ones are documented in docs/protocol.md and looked up with ``getattr``:

    - ``layout: "channels_last" | "channels_first"`` (default ``"channels_last"``);
    - ``weight_names: Mapping[str, str]`` — reference key → the implementation's own key;
    - ``loss_and_gradients(x, y) -> (loss, grads) | (loss, grads, dloss_dx)`` — training mode,
      no state update; ``y`` one-hot in the spec's dtype; ``loss`` a scalar including any
      regularization term; ``grads`` keyed like ``set_weights``, trainable weights only;
    - ``train_step(x, y) -> loss`` — one optimizer step of the spec's recipe; the batch's loss
      before the update;
    - ``get_weights() -> Mapping[str, array]`` — copies, keyed and laid out like
      ``set_weights``.
    """

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load ``"<layer>/<param>"`` → array (the implementation's layout, dtype and, with
        ``weight_names``, keys), non-trainable state included."""
        ...

    def layer_outputs(self, x: np.ndarray) -> Mapping[str, np.ndarray]:
        """Layer name → that layer's output after its activation, inference mode, in the
        implementation's layout; the last layer's output is the probabilities. A layer left
        out is "not provided" in the verdict."""
        ...
