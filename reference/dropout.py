"""Dropout with a given keep mask: the harness's stand-in for ``keras.layers.Dropout``.

Keras draws its dropout mask from its own random stream, which no other implementation can
reproduce. The harness's copy of a model replaces each Dropout with :class:`MaskedDropout`
(same name, same rate): in training it applies a keep mask the harness chose (and hands the
implementation too), with exactly the arithmetic Keras's Dropout applies to its own mask on the
backend (``backend_<name>.apply_dropout_mask``, from keras/src/backend/<name>/random.py
``dropout``), so the float rounding matches; at inference it is the identity, like Dropout.

The mask lives in a non-trainable variable, so a compiled train step (a ``tf.function`` on
TensorFlow, a jitted function of the model's state on JAX) reads the mask assigned before each
call. The variable has room for ``capacity`` samples; a batch uses its first rows, so a partial
last batch needs no new variable. A larger batch grows the variable, and the model's compiled
functions are dropped so that the next call traces them with it (:func:`set_dropout_masks`).

The mask variable is state of the harness, not of the model: :func:`reference.get_weights`
and :func:`reference.set_weights` leave it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from reference.backends import backend


class MaskedDropout(keras.layers.Layer):  # type: ignore[misc]  # Keras is untyped
    """``keras.layers.Dropout(rate, seed=seed)`` whose training-mode mask is assigned with
    :func:`set_dropout_masks` instead of drawn (``noise_shape`` is always None: one mask entry
    per input entry). ``seed`` is kept because on torch it picks Keras's arithmetic: an
    unseeded Dropout goes through ``torch.nn.functional.dropout`` (``x * (mask / keep)``), a
    seeded one through ``torch.where(mask, x / keep, 0)``."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1]. Received: rate={rate}")
        self.rate = rate
        self.seed = seed
        self.noise_shape = None
        self.supports_masking = True
        self.keep: keras.Variable | None = None

    def build(self, input_shape: tuple[Any, ...]) -> None:
        self.feature_shape = tuple(int(d) for d in input_shape[1:])
        self.keep = self._new_keep(1)

    def _new_keep(self, capacity: int) -> keras.Variable:
        return self.add_weight(
            shape=(capacity, *self.feature_shape),
            initializer="ones",
            trainable=False,
            name="keep",
            dtype=self.variable_dtype,
        )

    @property
    def capacity(self) -> int:
        assert self.keep is not None, "the layer is not built"
        return int(self.keep.shape[0])

    def grow(self, capacity: int) -> None:
        """Replace the mask variable by one with room for ``capacity`` samples (Keras locks a
        built layer's state; the lock is restored)."""
        old = self.keep
        assert old is not None, "the layer is not built"
        locked = self._tracker.locked
        self._tracker.unlock()
        try:
            self._untrack_variable(old)  # leaves the tracker as it found it: unlocked
            self.keep = self._new_keep(capacity)
        finally:
            if locked:
                self._tracker.lock()

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:  # Keras: zeros_like(inputs), no mask drawn
            return keras.ops.zeros_like(inputs)
        assert self.keep is not None
        keep = self.keep.value[: keras.ops.shape(inputs)[0]]
        return backend().apply_dropout_mask(inputs, keep, self.rate, seeded=self.seed is not None)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "noise_shape": self.noise_shape,
        }


def masked_layers(model: keras.Model) -> dict[str, MaskedDropout]:
    """The model's MaskedDropout layers by name, in layer order."""
    return {layer.name: layer for layer in model.layers if isinstance(layer, MaskedDropout)}


def needs_masks(model: keras.Model) -> list[str]:
    """The names of the layers that need a mask before a training-mode call (rate in (0, 1))."""
    return [name for name, la in masked_layers(model).items() if 0 < la.rate < 1]


def set_dropout_masks(
    model: keras.Model, masks: Mapping[str, np.ndarray], *, batch_size: int | None = None
) -> None:
    """Assign each MaskedDropout layer's keep mask for the next training-mode calls
    (``gradients``, ``train_step``): ``masks[name]`` has the layer's input shape with the batch
    axis, entries 0 (dropped) or 1 (kept), bool or numeric. Every layer with a rate strictly
    between 0 and 1 needs one; all masks have one batch size (``batch_size`` when given).
    Nothing is assigned unless everything matches."""
    layers = masked_layers(model)
    unknown = sorted(set(masks) - set(layers))
    if unknown:
        raise ValueError(f"No dropout layer named {unknown}. Expected the names {sorted(layers)}")
    missing = [name for name in needs_masks(model) if name not in masks]
    if missing:
        raise ValueError(f"A keep mask is needed for the dropout layers {missing}")
    checked: dict[str, np.ndarray] = {}
    for name, mask in masks.items():
        layer = layers[name]
        value = np.asarray(mask)
        if value.ndim != 1 + len(layer.feature_shape) or value.shape[1:] != layer.feature_shape:
            raise ValueError(
                f"The keep mask of '{name}' must have shape (batch, *{layer.feature_shape}). "
                f"Received: shape={value.shape}"
            )
        if value.shape[0] < 1 or (batch_size is not None and value.shape[0] != batch_size):
            raise ValueError(
                f"The keep mask of '{name}' must cover the batch of "
                f"{batch_size if batch_size is not None else 'at least 1'} samples. "
                f"Received: shape={value.shape}"
            )
        if not np.isin(value, (0, 1)).all():
            raise ValueError(f"The keep mask of '{name}' must hold only 0 and 1 (or booleans)")
        checked[name] = value
    sizes = {v.shape[0] for v in checked.values()}
    if len(sizes) > 1:
        raise ValueError(f"The keep masks must have one batch size. Received: {sorted(sizes)}")
    grown = False
    for name, value in checked.items():
        layer = layers[name]
        n = value.shape[0]
        if n > layer.capacity:
            layer.grow(n)
            grown = True
        full = np.ones((layer.capacity, *layer.feature_shape), dtype=layer.variable_dtype)
        full[:n] = value
        assert layer.keep is not None
        layer.keep.assign(full)
    if grown:  # the compiled steps captured (TF) or were traced with the old variables
        model.train_function = model.test_function = model.predict_function = None
