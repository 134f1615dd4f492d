"""scratch/ as one implementation among others: the project's own NumPy model behind the same
protocol (docs/protocol.md) that any user's implementation follows.

:func:`build` is its FACTORY: it builds a :class:`scratch.Sequential` mirror of the spec's
layers (scratch stays NumPy-only and takes plain arguments), with the spec's recipe. What only
scratch offers — the deliberate bugs of :mod:`compare.sides.mutants` — is applied here, behind
the seam: :func:`factory` returns a FACTORY with a mutant patched into every instance.

:func:`mirror` reads every option scratch mirrors from each layer's Keras config (the layers of
``SUPPORTED``; initializers and regularizers as Keras serialises them) and refuses anything
else with one line naming the layer, the option, its value and what is supported. The
protocol's optional ``dropout_masks`` keyword (layer name → keep mask) is honoured by
``loss_and_gradients`` and ``train_step`` for that call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import numpy as np

import scratch
from compare.errors import InputError
from compare.sides.mutants import Mutant
from compare.sides.protocol import LayerSpec, ModelSpec

LABEL: Final = "scratch"
SUPPORTED: Final = (
    "Conv2D",
    "AveragePooling2D",
    "MaxPooling2D",
    "Flatten",
    "Dense",
    "Dropout",
    "BatchNormalization",
    "Activation",
    "ReLU",
    "Softmax",
)
_INITIALIZERS: Final = (
    f"{', '.join(scratch.initializers.names())} (a name or {{'class_name': ..., 'config': ...}})"
)
_REGULARIZERS: Final = "None, L1, L2 or L1L2 (a name or {'class_name': ..., 'config': ...})"
# Options scratch has no mirror of, supported only at their "off" value (when the config has
# them at all).
_OFF: Final = {
    "kernel_constraint": None,
    "bias_constraint": None,
    "beta_constraint": None,
    "gamma_constraint": None,
    "activity_regularizer": None,
    "quantization_config": None,
    "trainable": True,
}


def _unsupported(layer: LayerSpec, option: str, value: object, supported: str) -> InputError:
    return InputError(
        f"scratch has no mirror for layer {layer.name!r} ({layer.class_name}): {option}={value!r}; "
        f"supported: {supported}"
    )


def _plain(value: object) -> object:
    """Lists for tuples, as JSON has them, so that (1, 1) and [1, 1] compare equal."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _require(layer: LayerSpec, option: str, default: object) -> None:
    """The option, when present, must have its default (the one value scratch mirrors)."""
    value = layer.config.get(option, default)
    if _plain(value) != _plain(default) or isinstance(value, bool) != isinstance(default, bool):
        raise _unsupported(layer, option, value, f"{option}={default!r}")


def _pair(layer: LayerSpec, option: str, default: object) -> tuple[int, int]:
    value = layer.config.get(option, default)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return value[0], value[1]
    raise _unsupported(layer, option, value, "a positive int or a pair of positive ints")


def _choice(layer: LayerSpec, option: str, default: object, choices: tuple[object, ...]) -> Any:
    value = layer.config.get(option, default)
    if isinstance(value, str) and option == "padding":
        value = value.lower()
    if not any(value == c and type(value) is type(c) for c in choices):
        raise _unsupported(layer, option, value, " or ".join(map(repr, choices)))
    return value


def _activation(layer: LayerSpec) -> str:
    value = layer.config.get("activation", "linear")
    if value is None:
        return "linear"
    if not isinstance(value, str) or value not in scratch.activations.ACTIVATIONS:
        raise _unsupported(
            layer, "activation", value, ", ".join(sorted(scratch.activations.ACTIVATIONS))
        )
    return value


def _initializer(layer: LayerSpec, option: str, default: str) -> scratch.initializers.Initializer:
    value = layer.config.get(option, default)
    try:
        return scratch.initializers.get(value)
    except ValueError:
        raise _unsupported(layer, option, value, _INITIALIZERS) from None


def _regularizer(layer: LayerSpec, option: str) -> scratch.L1L2 | None:
    value = layer.config.get(option)
    try:
        return scratch.regularizers.get(value)
    except ValueError:
        raise _unsupported(layer, option, value, _REGULARIZERS) from None


def _number(layer: LayerSpec, option: str, default: float, low: float, high: float) -> float:
    value = layer.config.get(option, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not low <= value <= high
        or (option == "epsilon" and value <= 0)
    ):
        raise _unsupported(layer, option, value, f"a number in [{low:g}, {high:g}]")
    return float(value)


def _last_axis(layer: LayerSpec) -> None:
    """Softmax and BatchNormalization mirror the last axis only: -1 or its positive index."""
    value = layer.config.get("axis", -1)
    axes = value if isinstance(value, (list, tuple)) else [value]
    last = len(layer.input_shape)  # the last axis, counting the batch axis
    if len(axes) != 1 or isinstance(axes[0], bool) or axes[0] not in (-1, last):
        raise _unsupported(layer, "axis", value, f"-1 (the last axis, also {last})")


def _layer(layer: LayerSpec, seed: int) -> scratch.Layer:
    """The scratch layer mirroring one Keras layer's config; ``seed`` seeds a Dropout layer's
    own masks."""
    c: Mapping[str, Any] = layer.config
    name = layer.name
    if layer.class_name not in SUPPORTED:
        raise _unsupported(layer, "class", layer.class_name, ", ".join(SUPPORTED))
    for option, off in _OFF.items():
        if option in c:
            _require(layer, option, off)
    if layer.class_name in ("Conv2D", "AveragePooling2D", "MaxPooling2D", "Flatten"):
        _choice(layer, "data_format", "channels_last", ("channels_last",))
    if layer.class_name == "Conv2D":
        _require(layer, "groups", 1)
        strides, dilation = _pair(layer, "strides", 1), _pair(layer, "dilation_rate", 1)
        if max(strides) > 1 and max(dilation) > 1:
            raise _unsupported(
                layer, "dilation_rate", c.get("dilation_rate"), "1 when strides > 1 (as Keras)"
            )
        return scratch.Conv2D(
            c["filters"],
            _pair(layer, "kernel_size", None),
            strides=strides,
            padding=_choice(layer, "padding", "valid", ("valid", "same")),
            activation=_activation(layer),
            name=name,
            dilation_rate=dilation,
            use_bias=_choice(layer, "use_bias", True, (True, False)),
            kernel_initializer=_initializer(layer, "kernel_initializer", "glorot_uniform"),
            bias_initializer=_initializer(layer, "bias_initializer", "zeros"),
            kernel_regularizer=_regularizer(layer, "kernel_regularizer"),
            bias_regularizer=_regularizer(layer, "bias_regularizer"),
        )
    if layer.class_name == "Dense":
        return scratch.Dense(
            c["units"],
            activation=_activation(layer),
            name=name,
            use_bias=_choice(layer, "use_bias", True, (True, False)),
            kernel_initializer=_initializer(layer, "kernel_initializer", "glorot_uniform"),
            bias_initializer=_initializer(layer, "bias_initializer", "zeros"),
            kernel_regularizer=_regularizer(layer, "kernel_regularizer"),
            bias_regularizer=_regularizer(layer, "bias_regularizer"),
        )
    if layer.class_name in ("AveragePooling2D", "MaxPooling2D"):
        pooling = (
            scratch.AveragePooling2D
            if layer.class_name == "AveragePooling2D"
            else scratch.MaxPooling2D
        )
        pool_size = _pair(layer, "pool_size", 2)
        return pooling(
            pool_size,
            strides=pool_size if c.get("strides") is None else _pair(layer, "strides", None),
            padding=_choice(layer, "padding", "valid", ("valid", "same")),
            name=name,
        )
    if layer.class_name == "Dropout":
        _require(layer, "noise_shape", None)
        return scratch.Dropout(_number(layer, "rate", 0.5, 0.0, 1.0), seed=seed, name=name)
    if layer.class_name == "BatchNormalization":
        _last_axis(layer)
        for option in ("renorm", "synchronized"):
            _require(layer, option, False)
        return scratch.BatchNormalization(
            _number(layer, "momentum", 0.99, 0.0, 1.0),
            _number(layer, "epsilon", 1e-3, 0.0, float("inf")),
            name=name,
            center=_choice(layer, "center", True, (True, False)),
            scale=_choice(layer, "scale", True, (True, False)),
            beta_initializer=_initializer(layer, "beta_initializer", "zeros"),
            gamma_initializer=_initializer(layer, "gamma_initializer", "ones"),
            moving_mean_initializer=_initializer(layer, "moving_mean_initializer", "zeros"),
            moving_variance_initializer=_initializer(layer, "moving_variance_initializer", "ones"),
            beta_regularizer=_regularizer(layer, "beta_regularizer"),
            gamma_regularizer=_regularizer(layer, "gamma_regularizer"),
        )
    if layer.class_name == "Activation":
        return scratch.Activation(_activation(layer), name=name)
    if layer.class_name == "ReLU":
        for option, default in (("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0)):
            value = c.get(option, default)
            if value is not default and not (default == 0.0 and value == 0):
                raise _unsupported(layer, option, value, f"{option}={default!r}")
        return scratch.ReLU(name=name)
    if layer.class_name == "Softmax":
        _last_axis(layer)
        return scratch.Softmax(name=name)
    return scratch.Flatten(name=name)


def _dropout_seed(seed: int, index: int) -> int:
    """A Dropout layer's own seed: distinct per layer, fixed by the spec's seed."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def mirror(spec: ModelSpec) -> scratch.Sequential:
    """A built scratch model of the spec's layers, names and dtype, with the spec's loss path."""
    try:
        model = scratch.Sequential(
            [_layer(layer, _dropout_seed(spec.seed, i)) for i, layer in enumerate(spec.layers)],
            input_shape=spec.input_shape,
            dtype=spec.dtype,
            seed=spec.seed,
            loss=scratch.CategoricalCrossentropy(spec.loss_path),  # type: ignore[arg-type]
            name=spec.name,
        )
    except InputError:  # an option scratch has no mirror of, named with its layer
        raise
    except (ValueError, KeyError) as exc:  # a Keras config scratch's own checks refuse
        raise InputError(f"scratch cannot mirror model {spec.name!r}: {exc}") from None
    for ours, theirs in zip(model.layers, spec.layers, strict=True):
        if tuple(ours.output_shape) != tuple(theirs.output_shape):
            raise InputError(
                f"scratch's mirror of layer {theirs.name!r} ({theirs.class_name}) outputs "
                f"{(None, *ours.output_shape)}; the reference's outputs "
                f"{(None, *theirs.output_shape)}"
            )
    return model


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

    @contextlib.contextmanager
    def _masks(self, dropout_masks: Mapping[str, np.ndarray] | None) -> Iterator[None]:
        """The given keep masks for this call only (the model's own draws without them)."""
        if dropout_masks is None:
            yield
            return
        self.model.set_dropout_masks(dropout_masks)
        try:
            yield
        finally:
            self.model.clear_dropout_masks()

    @contextlib.contextmanager
    def _state_kept(self) -> Iterator[None]:
        """The protocol's loss_and_gradients updates no state: BatchNormalization's moving
        statistics, updated by a training forward, are put back."""
        kept = [(w, w.copy()) for layer in self.model.layers for w in layer.state.values()]
        try:
            yield
        finally:
            for live, value in kept:
                np.copyto(live, value)

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray, *, dropout_masks: Mapping[str, np.ndarray] | None = None
    ) -> tuple[np.floating, dict[str, np.ndarray], np.ndarray]:
        with self._masks(dropout_masks), self._state_kept():
            loss, grads, dx = self.model.loss_and_all_gradients(x, y)
        return loss, {k: g.copy() for k, g in grads.items()}, dx

    def train_step(
        self, x: np.ndarray, y: np.ndarray, *, dropout_masks: Mapping[str, np.ndarray] | None = None
    ) -> float:
        # A broken scratch model may overflow: its NaN and Inf are compared, not raised.
        with self._masks(dropout_masks), np.errstate(all="ignore"):
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
