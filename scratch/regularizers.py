"""Keras's weight regularizers L1, L2 and L1L2: a penalty added to the training loss.

keras/src/regularizers/regularizers.py computes, in the weight's dtype,

    L1L2(l1, l2)(w) = 0 + cast(l1) * sum(abs(w)) + cast(l2) * sum(square(w))

(each term only when its factor is not 0; ``L1(l1)`` and ``L2(l2)`` are the single terms), and
``Trainer.compute_loss`` adds the sum of every trainable weight's penalty to the compiled loss
(keras/src/trainers/trainer.py). The gradient is what autodiff of those ops gives on
TensorFlow: ``l1 · sign(w)`` (TensorFlow's AbsGrad is ``grad * sign(x)``, so 0 at w = 0) plus
``l2 · (2 · w)`` (SquareGrad).

Keras's ``L1`` stores its factor as a tensor of Keras's floatx, so its config reads back
float32(l1) (0.05000000074505806 for 0.05) when floatx is float32: a mirror built from that
config uses the factor Keras uses.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np


def _factor(value: object, arg: str) -> float:
    """Keras's ``validate_float_arg``: a finite, non-negative number."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"Invalid value for argument {arg}: expected a non-negative float. "
            f"Received: {arg}={value!r}"
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class L1L2:
    """``l1 · Σ|w| + l2 · Σw²`` and its gradient, in ``w``'s dtype."""

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "l1", _factor(0.0 if self.l1 is None else self.l1, "l1"))
        object.__setattr__(self, "l2", _factor(0.0 if self.l2 is None else self.l2, "l2"))

    @property
    def name(self) -> str:
        return type(self).__name__

    def loss(self, w: np.ndarray) -> np.floating:
        t = w.dtype.type
        total = t(0.0)
        if self.l1 != 0.0:
            total = total + t(self.l1) * np.abs(w).sum()
        if self.l2 != 0.0:
            total = total + t(self.l2) * np.square(w).sum()
        return total

    def gradient(self, w: np.ndarray) -> np.ndarray:
        t = w.dtype.type
        terms = []
        if self.l1 != 0.0:
            terms.append(t(self.l1) * np.sign(w))  # sign(0) = 0, as TensorFlow's AbsGrad
        if self.l2 != 0.0:
            terms.append(t(self.l2) * (w * t(2)))  # SquareGrad: grad * (2 * x)
        if not terms:
            return np.zeros_like(w)
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]


class L1(L1L2):
    """``l1 · Σ|w|`` (Keras's default factor 0.01)."""

    def __init__(self, l1: float = 0.01) -> None:
        super().__init__(l1=0.01 if l1 is None else l1, l2=0.0)


class L2(L1L2):
    """``l2 · Σw²`` (Keras's default factor 0.01)."""

    def __init__(self, l2: float = 0.01) -> None:
        super().__init__(l1=0.0, l2=0.01 if l2 is None else l2)


Regularizer = L1L2

REGULARIZERS: Final[dict[str, type[L1L2]]] = {"L1": L1, "L2": L2, "L1L2": L1L2}
# Keras's lookup: class names and their snake_case names (keras/src/regularizers/__init__.py)
_ALIASES: Final = {"l1": "L1", "l2": "L2", "l1l2": "L1L2", "l1_l2": "L1L2"}
_SERIALISATION_KEYS: Final = frozenset({"module", "registered_name"})


def _class(name: object, identifier: object) -> type[L1L2]:
    key = _ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in REGULARIZERS:
        raise ValueError(
            f"Unknown regularizer. Expected one of {sorted(REGULARIZERS)} or None. "
            f"Received: regularizer={identifier!r}"
        )
    return REGULARIZERS[key]


def get(identifier: object) -> L1L2 | None:
    """A regularizer from a Keras config value: ``None``, an :class:`L1L2`, a name (``"l2"``)
    or a serialised dict ``{"class_name": "L2", "config": {"l2": 0.05}}``."""
    if identifier is None or isinstance(identifier, L1L2):
        return identifier
    if isinstance(identifier, str):
        return _class(identifier, identifier)()
    if isinstance(identifier, Mapping) and "class_name" in identifier:
        config: Any = identifier.get("config") or {}
        extra = set(identifier) - {"class_name", "config"} - _SERIALISATION_KEYS
        if extra or not isinstance(config, Mapping):
            raise ValueError(
                "Invalid regularizer config. Expected {'class_name': ..., 'config': {...}}. "
                f"Received: regularizer={identifier!r}"
            )
        cls = _class(identifier["class_name"], identifier)
        try:
            return cls(**config)
        except TypeError:
            raise ValueError(
                f"Invalid config for regularizer {cls.__name__}. Expected keys among "
                f"{list(inspect.signature(cls).parameters)}. Received: regularizer={identifier!r}"
            ) from None
    raise ValueError(
        "Could not interpret regularizer identifier. Expected a name, a dict "
        f"{{'class_name': ..., 'config': {{...}}}} or None. Received: regularizer={identifier!r}"
    )
