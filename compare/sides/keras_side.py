"""The reference side: any supported Keras model (through the ``reference`` package), named by a
model source, as the harness sees it, and the :class:`~compare.sides.protocol.ModelSpec` read
off it.

This module imports Keras only inside its functions, when a check first needs the reference:
``compare.sides`` stays importable without Keras. The backend is chosen before that, once, by
:func:`compare.sides.backends.choose` and passed down as the backend module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from compare.errors import ImplementationError, InputError, ProtocolError
from compare.sides import quiet
from compare.sides.implementation import load_factory
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


# -- model sources --------------------------------------------------------------------------------
# A model SOURCE is a zoo name (reference/zoo.py: keras-docs, classic, seed000-cnn,
# cs231n-3layer, lenet5-bn-dropout), a saved FILE.keras, or MODULE:BUILDER /
# path/to/file.py:BUILDER — a function of no arguments returning a Keras model, found the way
# implementations are found (compare.sides.implementation.load_factory). The old LeNet-5
# ``variant`` strings are zoo names.


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is trained (:class:`reference.zoo.Recipe`, here without Keras): SGD with
    ``learning_rate``, ``momentum`` and ``nesterov`` on batches of ``batch_size`` (None: not
    recorded, as in a ``.keras`` file), inputs scaled ``input_scaling`` (``"unit"``: pixels /
    255; ``"centered"``: pixels / 255 - 0.5), and Keras's name of the model's ``loss``."""

    learning_rate: float
    momentum: float
    nesterov: bool
    batch_size: int | None
    input_scaling: str
    loss: str


@contextlib.contextmanager
def _as_input_error() -> Iterator[None]:
    """The reference package's one-line model errors as InputError (exit 2)."""
    import reference

    try:
        yield
    except reference.ModelSourceError as exc:
        raise InputError(str(exc)) from None


def is_zoo(source: str) -> bool:
    """Whether ``source`` names a zoo model (whose weights are a fresh seeded initialisation:
    the zoo has no weights of its own)."""
    import reference

    return bool(reference.is_zoo(source))


def zoo() -> dict[str, tuple[str, Recipe]]:
    """Every zoo model: name → (one-line description, recipe), in the zoo's order."""
    import reference

    return {
        name: (entry.description, Recipe(**dataclasses.asdict(entry.recipe)))
        for name, entry in reference.ZOO.items()
    }


def _check_source(source: str) -> None:
    import reference

    if not isinstance(source, str) or not (
        reference.is_zoo(source) or reference.is_file(source) or reference.is_builder(source)
    ):
        with _as_input_error():
            raise reference.loading.unknown_source(str(source))


@functools.cache
def _original(source: str) -> Any:
    """The model a ``.keras`` file holds (read once per process) or a ``MODULE:BUILDER``
    source's builder returns (called once per process), checked to be a supported model."""
    import reference

    if reference.is_file(source):
        with _as_input_error(), quiet.filtered_stderr():
            return reference.loading.read_model_file(source)
    try:
        builder = load_factory(source)
    except ProtocolError as exc:
        # load_factory speaks of implementations; here it was asked for a model builder
        text = str(exc).replace("the implementation's ", "").replace("the implementation ", "")
        raise InputError(f"model {source}: {text}") from None
    build: Callable[[], Any] = builder  # type: ignore[assignment]  # BUILDER() takes nothing
    try:
        model = build()
    except Exception as exc:  # the user's builder raised: its traceback, exit 3
        raise ImplementationError(f"the model builder {source}()", exc) from exc
    with _as_input_error():
        return reference.builder_model(model, source)


@functools.cache
def _model(source: str, dtype: str) -> Any:
    """The source's model in ``dtype``, uncompiled, with its own weights (a zoo model's are
    Keras's initialisation, never used): what the spec and :func:`model_weights` read. Never
    computed with, never assigned to; one per source and dtype per process."""
    import reference

    _check_source(source)
    if reference.is_zoo(source):
        with _as_input_error():
            return reference.load_model(source, dtype)
    original = _original(source)
    with _as_input_error():
        return reference.convert(original, dtype, where=source)


def _harness(
    source: str, dtype: str, *, learning_rate: float, momentum: float, nesterov: bool
) -> Any:
    """A fresh copy of the source's model the harness computes with (each Dropout applying the
    masks it is given), compiled with the recipe."""
    import reference

    with _as_input_error():
        return reference.harness_model(
            _model(source, dtype),
            dtype,
            learning_rate=learning_rate,
            momentum=momentum,
            nesterov=nesterov,
        )


@functools.cache
def _inference_model(source: str, dtype: str) -> Any:
    """One harness model per source and dtype per process for the layer and gradient checks;
    weights are assigned per check."""
    import reference

    return _harness(
        source, dtype, learning_rate=reference.model.LEARNING_RATE, momentum=0.0, nesterov=False
    )


def recipe(source: str) -> Recipe | None:
    """The source's training recipe: a zoo entry's; what a ``.keras`` file's model was compiled
    with (its config.json's ``compile_config``, read without compiling) or a builder's model
    was compiled with (batch size None, inputs "unit": neither is recorded); None for an
    uncompiled model (the recipe must then be given). An optimizer or loss the harness cannot
    reproduce is an InputError naming it."""
    import reference

    _check_source(source)
    found: Any
    with _as_input_error():
        if reference.is_zoo(source):
            found = reference.ZOO[source].recipe
        elif reference.is_file(source):
            found = reference.recipe_of(reference.compile_config(source), where=source)
        else:
            found = reference.recipe_of(_original(source), where=source)
    return None if found is None else Recipe(**dataclasses.asdict(found))


def model_weights(source: str, dtype: str) -> dict[str, np.ndarray] | None:
    """The weights a ``.keras`` file's or a builder's model carries, cast to ``dtype``, keyed
    ``"<layer>/<param>"`` (non-trainable ones too); None for a zoo name (its weights are a fresh
    seeded initialisation, made elsewhere)."""
    import reference

    if is_zoo(source):
        return None
    weights: dict[str, np.ndarray] = reference.get_weights(_model(source, dtype))
    return weights


# The layers' settings are read off the layers themselves (reference.layer_config), under
# Keras's config keys: get_config() serialises the dtype policy through
# keras/src/saving/serialization_lib.py, whose ``tf.available`` imports TensorFlow whenever it
# is installed — seconds of start-up on a JAX or torch process that never uses it. Every
# setting in compare.inputs.weights.ARCHITECTURE_KEYS that a supported layer has is among them.


def layer_config(layer: Any) -> dict[str, Any]:
    """A layer's settings under Keras's config keys, as plain JSON values (initializers and
    regularizers as ``{"module", "class_name", "config", "registered_name"}``, the activation
    by name); InputError for an unsupported layer."""
    import reference

    with _as_input_error():
        config: dict[str, Any] = reference.layer_config(layer)
    return config


def _as_applied(config: dict[str, Any], backend: ModuleType) -> dict[str, Any]:
    """A layer's config with each L2 or L1L2 regularizer's factors as Keras really applies
    them on ``backend`` (``effective_regularization_factor``: TensorFlow casts a Python float
    to float32 first, even for a float64 model), so that a mirror computing in the spec's
    dtype adds the same penalty."""
    applied = dict(config)
    for key, value in config.items():
        if (
            key.endswith("_regularizer")
            and isinstance(value, dict)
            and value.get("class_name") in ("L2", "L1L2")
        ):
            factors = dict(value.get("config", {}))
            for name in ("l1", "l2") if value["class_name"] == "L1L2" else ("l2",):
                if isinstance(factors.get(name), (int, float)):
                    factors[name] = backend.effective_regularization_factor(factors[name])
            applied[key] = {**value, "config": factors}
    return applied


def model_spec(
    source: str,
    dtype: str,
    backend: ModuleType,
    *,
    learning_rate: float,
    momentum: float,
    nesterov: bool,
    seed: int,
    batch_size: int,
) -> ModelSpec:
    """The spec of the source's model: every layer but the input in order, read off the Keras
    model (class, settings, shapes, weights with their Keras shapes, non-trainable ones too),
    and the recipe as Keras applies it on ``backend`` (its effective momentum and loss path).
    Its name is ``source`` as given."""
    model = _model(source, dtype)
    layers = tuple(
        LayerSpec(
            name=layer.name,
            class_name=type(layer).__name__,
            config=_as_applied(layer_config(layer), backend),
            input_shape=tuple(int(d) for d in layer.input.shape[1:]),
            output_shape=tuple(int(d) for d in layer.output.shape[1:]),
            weights={w.name: tuple(int(d) for d in w.shape) for w in layer.weights},
        )
        for layer in model.layers
    )
    return ModelSpec(
        name=source,
        dtype=dtype,
        learning_rate=float(learning_rate),
        momentum=float(backend.effective_momentum(momentum)),
        nesterov=bool(nesterov),
        loss_path=backend.LOSS_PATH,
        seed=seed,
        batch_size=batch_size,
        input_shape=tuple(int(d) for d in model.inputs[0].shape[1:]),
        layers=layers,
        num_classes=int(model.outputs[0].shape[-1]),
    )


def float32_inside(backend: ModuleType, spec: ModelSpec) -> list[str]:
    """What of ``spec``'s model this backend computes in float32 even in a float64 model
    (``FLOAT64_COMPUTED_IN_FLOAT32``, ``FLOAT64_LAYERS_COMPUTED_IN_FLOAT32``): torch's matmul
    (the Dense layers), JAX's tanh, batch normalization on JAX and torch. Empty: the backend's
    float64 is float64 throughout for this model."""
    ops = set(backend.FLOAT64_COMPUTED_IN_FLOAT32)
    layers = set(getattr(backend, "FLOAT64_LAYERS_COMPUTED_IN_FLOAT32", ()))
    found: list[str] = []
    if "matmul" in ops and any(layer.class_name == "Dense" for layer in spec.layers):
        found.append("matmul (Dense)")
    if "tanh" in ops and any(layer.activation == "tanh" for layer in spec.layers):
        found.append("tanh")
    found += sorted({layer.class_name for layer in spec.layers if layer.class_name in layers})
    return found


class KerasReference:
    """The Keras model in Keras's keys and layouts: the same methods the protocol asks of an
    implementation, all of them provided. ``training=True`` makes a fresh compiled copy with
    the recipe (for the training run); otherwise the process's cached copy of the source and
    dtype. A model with Dropout needs ``dropout_masks`` (layer name → keep mask of the layer's
    input shape with the batch axis) for every training-mode call."""

    def __init__(
        self,
        source: str,
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
            self.model = _harness(
                source, dtype, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov
            )
        else:
            self.model = _inference_model(source, dtype)
        reference.set_weights(self.model, weights)
        self.dtype = dtype
        self.dropout_layers: list[str] = reference.needs_masks(self.model)

    def _set_masks(self, x: np.ndarray, masks: Mapping[str, np.ndarray] | None) -> None:
        if masks is None:
            if self.dropout_layers:
                raise ValueError(
                    f"The model has Dropout ({', '.join(self.dropout_layers)}): a training-mode "
                    "call needs dropout_masks"
                )
            return
        self._reference.set_dropout_masks(self.model, masks, batch_size=len(x))

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = self._reference.layer_outputs(self.model, x)
        return outputs

    def training_outputs(
        self, x: np.ndarray, *, dropout_masks: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Every layer's output in one training-mode pass (what ``loss_and_gradients`` computes
        on the way: batch statistics, the dropout masks); it moves batch normalization's moving
        statistics, which set_weights restores."""
        self._set_masks(x, dropout_masks)
        outputs: dict[str, np.ndarray] = self._reference.layer_outputs(self.model, x, training=True)
        return outputs

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self._reference.set_weights(self.model, weights)

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
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        dropout_masks: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
        """Training mode, the model unchanged: the loss (regularizers included), every trainable
        parameter's gradient and dloss/dinput."""
        self._set_masks(x, dropout_masks)
        loss, grads, dx = self.backend.gradients(self.model, x, y)
        return float(loss), grads, dx

    def train_step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        dropout_masks: Mapping[str, np.ndarray] | None = None,
    ) -> float:
        """One compiled Keras step (moving statistics updated as Keras does); the batch's loss
        before the update."""
        self._set_masks(x, dropout_masks)
        loss, _ = self._reference.train_step(self.model, x, y)
        return float(loss)

    def get_weights(self) -> dict[str, np.ndarray]:
        weights: dict[str, np.ndarray] = self._reference.get_weights(self.model)
        return weights

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The probabilities (the last layer's output) at inference."""
        probabilities: np.ndarray = self._reference.predict(self.model, x)
        return probabilities
