"""scratch/ as one implementation among others: the project's own NumPy model behind the same
protocol (docs/protocol.md) that any user's implementation follows.

:func:`build` is its FACTORY: it builds a :class:`scratch.Sequential` mirror of the spec's
layers (scratch stays NumPy-only and takes plain arguments), with the spec's recipe. What only
scratch offers — the deliberate bugs of :mod:`compare.sides.mutants` — is applied here, behind
the seam: :func:`factory` returns a FACTORY with a mutant patched into every instance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np

import scratch
from compare.errors import InputError
from compare.sides.mutants import Mutant
from compare.sides.protocol import LayerSpec, ModelSpec

LABEL: Final = "scratch"
SUPPORTED: Final = ("Conv2D", "AveragePooling2D", "MaxPooling2D", "Flatten", "Dense")


def _unsupported(layer: LayerSpec, option: str, value: object, supported: str) -> InputError:
    return InputError(
        f"scratch has no mirror for layer {layer.name!r} ({layer.class_name}): {option}={value!r}; "
        f"supported: {supported}"
    )


def _layer(layer: LayerSpec) -> scratch.Layer:
    """The scratch layer mirroring one Keras layer's config."""
    c: Mapping[str, Any] = layer.config
    if layer.class_name not in SUPPORTED:
        raise _unsupported(layer, "class", layer.class_name, ", ".join(SUPPORTED))
    if c.get("data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, "data_format", c.get("data_format"), "channels_last")
    if layer.class_name == "Conv2D":
        for option, default in (("dilation_rate", [1, 1]), ("groups", 1), ("use_bias", True)):
            value = c.get(option, default)
            if (list(value) if isinstance(value, (list, tuple)) else value) != default:
                raise _unsupported(layer, option, value, f"{option}={default}")
        return scratch.Conv2D(
            c["filters"],
            tuple(c["kernel_size"]),
            strides=tuple(c.get("strides", (1, 1))),
            padding=c.get("padding", "valid"),
            activation=c.get("activation", "linear"),
            name=layer.name,
        )
    if layer.class_name == "Dense":
        if not c.get("use_bias", True):
            raise _unsupported(layer, "use_bias", False, "use_bias=True")
        return scratch.Dense(c["units"], activation=c.get("activation", "linear"), name=layer.name)
    if layer.class_name in ("AveragePooling2D", "MaxPooling2D"):
        pooling = (
            scratch.AveragePooling2D
            if layer.class_name == "AveragePooling2D"
            else scratch.MaxPooling2D
        )
        strides = c.get("strides")
        return pooling(
            tuple(c.get("pool_size", (2, 2))),
            strides=None if strides is None else tuple(strides),
            padding=c.get("padding", "valid"),
            name=layer.name,
        )
    return scratch.Flatten(name=layer.name)


def mirror(spec: ModelSpec) -> scratch.Sequential:
    """A built scratch model of the spec's layers, names and dtype, with the spec's loss path."""
    try:
        return scratch.Sequential(
            [_layer(layer) for layer in spec.layers],
            input_shape=spec.input_shape,
            dtype=spec.dtype,
            seed=spec.seed,
            loss=scratch.CategoricalCrossentropy(spec.loss_path),  # type: ignore[arg-type]
            name=spec.name,
        )
    except (ValueError, KeyError) as exc:  # a Keras config scratch's own checks refuse
        raise InputError(f"scratch cannot mirror model {spec.name!r}: {exc}") from None


class ScratchImplementation:
    """The protocol's methods on a scratch model (channels-last, Keras's names: no conversion)."""

    layout = "channels_last"

    def __init__(self, spec: ModelSpec, mutant: Mutant | None = None) -> None:
        self.model = mirror(spec)
        self.optimizer = scratch.SGD(spec.learning_rate, spec.momentum, spec.nesterov)
        if mutant is not None and mutant.apply is not None:
            mutant.apply(self.model)
        if mutant is not None and mutant.optimizer is not None:
            mutant.optimizer(self.optimizer)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self.model.set_weights(dict(weights))

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.layer_outputs(x, training=False)

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.floating, dict[str, np.ndarray], np.ndarray]:
        loss, grads, dx = self.model.loss_and_all_gradients(x, y)
        return loss, {k: g.copy() for k, g in grads.items()}, dx

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        # A broken scratch model may overflow: its NaN and Inf are compared, not raised.
        with np.errstate(all="ignore"):
            loss, _ = self.model.train_step(x, y, self.optimizer)
        return loss

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.model.get_weights()


def build(spec: ModelSpec) -> ScratchImplementation:
    """The FACTORY of the project's own implementation."""
    return ScratchImplementation(spec)


def factory(mutant: Mutant | None = None) -> Callable[[ModelSpec], ScratchImplementation]:
    """scratch's FACTORY, with ``mutant`` patched into every instance it builds."""
    if mutant is None:
        return build
    return functools.partial(ScratchImplementation, mutant=mutant)
