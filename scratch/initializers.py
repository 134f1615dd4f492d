"""Keras's weight initialisers, drawn from a NumPy generator.

Each initialiser is a small object ``init(shape, rng, dtype) -> array`` with Keras's name, its
constructor arguments and its distribution (keras/src/initializers/random_initializers.py and
constant_initializers.py). :func:`get` reads the forms a Keras config holds: a name
(``"glorot_uniform"``, ``"GlorotUniform"``, Keras's aliases ``"normal"``, ``"uniform"``,
``"one"``, ``"zero"``) or a serialised dict ``{"class_name": "HeNormal", "config": {...}}``.

- ``VarianceScaling(scale, mode, distribution)``: ``n`` = fan_in, fan_out or their mean
  (``mode``), never below 1; ``"uniform"`` draws U(-limit, limit) with
  limit = sqrt(3 · scale / n), ``"untruncated_normal"`` N(0, sqrt(scale / n)) and
  ``"truncated_normal"`` (also spelled ``"normal"``) a normal truncated at two standard
  deviations whose stddev before truncation is sqrt(scale / n) / 0.87962566103423978, the
  stddev of a unit normal truncated to [-2, 2], so that the drawn values have stddev
  sqrt(scale / n). Glorot (fan_avg), He (fan_in, scale 2) and LeCun (fan_in) are its presets.
- ``RandomNormal(mean, stddev)``, ``RandomUniform(minval, maxval)`` (``[minval, maxval)``),
  ``TruncatedNormal(mean, stddev)`` (re-drawn outside mean ± 2·stddev; the stddev is the one
  *before* truncation, as in Keras), ``Zeros``, ``Ones``, ``Constant(value)``.

Fans follow ``keras.src.initializers.random_initializers.compute_fans``: a conv kernel's fans
include its receptive field kh·kw. Seeds never match Keras's own draws (parity copies weights),
so an initialiser's ``seed`` is accepted and ignored: every draw comes from the model's
generator, in Keras's order of weight creation. Keras draws in the weight's dtype; these draw
in float64 and round, the same distribution.

``glorot_uniform`` is the historical default path: GlorotUniform draws exactly its numbers
(limit written sqrt(6 / (fan_in + fan_out)), Keras's sqrt(3 / ((fan_in + fan_out) / 2)) up to
the rounding of the limit), so a model's weights for a seed do not depend on how its default
initialiser was spelled.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import numpy as np

Shape = tuple[int, ...]

# The stddev of a unit normal truncated to [-2, 2] (Keras's constant, VarianceScaling).
TRUNCATED_STDDEV: Final = 0.87962566103423978
MODES: Final = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS: Final = ("uniform", "truncated_normal", "untruncated_normal")


def compute_fans(
    shape: Shape,
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> tuple[int, int]:
    """Keras's ``compute_fans``: explicit axes if both are given, else by rank."""
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])  # kh * kw for an HWIO kernel
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
    fan_in, fan_out = compute_fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def truncated_normal(
    shape: Shape, rng: np.random.Generator, mean: float, stddev: float
) -> np.ndarray:
    """N(mean, stddev) re-drawn outside [mean - 2·stddev, mean + 2·stddev], float64. The only
    loop is over rejection rounds (each redraws the ~4.6 % rejected entries at once)."""
    values = rng.normal(mean, stddev, size=shape)
    outside = np.abs(values - mean) > 2 * stddev
    while outside.any():
        values[outside] = rng.normal(mean, stddev, size=int(outside.sum()))
        outside = np.abs(values - mean) > 2 * stddev
    return values


def _number(value: object, arg: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(
            f"Invalid value for argument `{arg}`. Expected a finite number. "
            f"Received: {arg}={value!r}"
        )
    if positive and not value > 0:
        raise ValueError(f"Argument `{arg}` must be positive float. Received: {arg}={value!r}")
    return float(value)


def _axes(value: object, arg: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    raise ValueError(
        f"Invalid value for argument `{arg}`. Expected a list of ints or None. "
        f"Received: {arg}={value!r}"
    )


class Initializer:
    """``init(shape, rng, dtype)``: an array of ``shape`` in ``dtype`` (random ones draw from
    ``rng``)."""

    name: ClassVar[str] = "Initializer"

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Zeros(Initializer):
    name: ClassVar[str] = "Zeros"

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Ones(Initializer):
    name: ClassVar[str] = "Ones"

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        return np.ones(shape, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Constant(Initializer):
    """Every entry ``value`` rounded to the dtype (Keras: ``cast(value) * ones``)."""

    value: float = 0.0
    name: ClassVar[str] = "Constant"

    def __post_init__(self) -> None:
        _number(self.value, "value")

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        return np.full(shape, self.value, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class RandomNormal(Initializer):
    mean: float = 0.0
    stddev: float = 0.05
    seed: int | None = None  # accepted, ignored: draws come from the model's generator
    name: ClassVar[str] = "RandomNormal"

    def __post_init__(self) -> None:
        _number(self.mean, "mean")
        _number(self.stddev, "stddev")

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        return rng.normal(self.mean, self.stddev, size=shape).astype(dtype)


@dataclasses.dataclass(frozen=True)
class RandomUniform(Initializer):
    minval: float = -0.05
    maxval: float = 0.05
    seed: int | None = None
    name: ClassVar[str] = "RandomUniform"

    def __post_init__(self) -> None:
        _number(self.minval, "minval")
        _number(self.maxval, "maxval")

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        return rng.uniform(self.minval, self.maxval, size=shape).astype(dtype)


@dataclasses.dataclass(frozen=True)
class TruncatedNormal(Initializer):
    mean: float = 0.0
    stddev: float = 0.05
    seed: int | None = None
    name: ClassVar[str] = "TruncatedNormal"

    def __post_init__(self) -> None:
        _number(self.mean, "mean")
        _number(self.stddev, "stddev")

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        return truncated_normal(shape, rng, self.mean, self.stddev).astype(dtype)


@dataclasses.dataclass(frozen=True)
class VarianceScaling(Initializer):
    scale: float = 1.0
    mode: str = "fan_in"
    distribution: str = "truncated_normal"
    seed: int | None = None
    input_axes: tuple[int, ...] | None = None
    output_axes: tuple[int, ...] | None = None
    name: ClassVar[str] = "VarianceScaling"

    def __post_init__(self) -> None:
        _number(self.scale, "scale", positive=True)
        if self.mode not in MODES:
            raise ValueError(
                f"Invalid value for argument `mode`. Expected one of {MODES}. "
                f"Received: mode={self.mode!r}"
            )
        dist = self.distribution.lower() if isinstance(self.distribution, str) else None
        dist = "truncated_normal" if dist == "normal" else dist  # Keras's alias
        if dist not in DISTRIBUTIONS:
            raise ValueError(
                f"Invalid value for argument `distribution`. Expected one of {DISTRIBUTIONS}. "
                f"Received: distribution={self.distribution!r}"
            )
        object.__setattr__(self, "distribution", dist)
        object.__setattr__(self, "input_axes", _axes(self.input_axes, "input_axes"))
        object.__setattr__(self, "output_axes", _axes(self.output_axes, "output_axes"))

    def variance(self, shape: Shape) -> float:
        """``scale / n``, Keras's arithmetic: the target variance of the drawn values."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        if self.mode == "fan_in":
            return self.scale / max(1.0, fan_in)
        if self.mode == "fan_out":
            return self.scale / max(1.0, fan_out)
        return self.scale / max(1.0, (fan_in + fan_out) / 2.0)

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        scale = self.variance(shape)
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(scale) / TRUNCATED_STDDEV
            return truncated_normal(shape, rng, 0.0, stddev).astype(dtype)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(scale), size=shape).astype(dtype)
        limit = math.sqrt(3.0 * scale)
        return rng.uniform(-limit, limit, size=shape).astype(dtype)


class _Preset(VarianceScaling):
    """A Keras preset of VarianceScaling: only ``seed``, ``input_axes`` and ``output_axes``
    are its arguments."""

    PRESET: ClassVar[tuple[float, str, str]] = (1.0, "fan_in", "truncated_normal")

    def __init__(
        self,
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        scale, mode, distribution = self.PRESET
        super().__init__(
            scale,
            mode,
            distribution,
            seed,
            _axes(input_axes, "input_axes"),
            _axes(output_axes, "output_axes"),
        )


class GlorotUniform(_Preset):
    """VarianceScaling(1, "fan_avg", "uniform"), drawing exactly :func:`glorot_uniform`'s
    numbers when its fans are the default ones."""

    PRESET = (1.0, "fan_avg", "uniform")
    name: ClassVar[str] = "GlorotUniform"

    def __call__(self, shape: Shape, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
        if self.input_axes is None or self.output_axes is None:
            return glorot_uniform(shape, rng, dtype)
        return super().__call__(shape, rng, dtype)


class GlorotNormal(_Preset):
    PRESET = (1.0, "fan_avg", "truncated_normal")
    name: ClassVar[str] = "GlorotNormal"


class HeUniform(_Preset):
    PRESET = (2.0, "fan_in", "uniform")
    name: ClassVar[str] = "HeUniform"


class HeNormal(_Preset):
    PRESET = (2.0, "fan_in", "truncated_normal")
    name: ClassVar[str] = "HeNormal"


class LecunUniform(_Preset):
    PRESET = (1.0, "fan_in", "uniform")
    name: ClassVar[str] = "LecunUniform"


class LecunNormal(_Preset):
    PRESET = (1.0, "fan_in", "truncated_normal")
    name: ClassVar[str] = "LecunNormal"


INITIALIZERS: Final[dict[str, type[Initializer]]] = {
    cls.name: cls
    for cls in (
        Zeros,
        Ones,
        Constant,
        RandomNormal,
        RandomUniform,
        TruncatedNormal,
        VarianceScaling,
        GlorotUniform,
        GlorotNormal,
        HeUniform,
        HeNormal,
        LecunUniform,
        LecunNormal,
    )
}
# Keras's lookup: class names, their snake_case names, and a few aliases
# (keras/src/initializers/__init__.py).
_SNAKE: Final = {
    "zeros": "Zeros",
    "ones": "Ones",
    "constant": "Constant",
    "random_normal": "RandomNormal",
    "random_uniform": "RandomUniform",
    "truncated_normal": "TruncatedNormal",
    "variance_scaling": "VarianceScaling",
    "glorot_uniform": "GlorotUniform",
    "glorot_normal": "GlorotNormal",
    "he_uniform": "HeUniform",
    "he_normal": "HeNormal",
    "lecun_uniform": "LecunUniform",
    "lecun_normal": "LecunNormal",
    "normal": "RandomNormal",
    "uniform": "RandomUniform",
    "one": "Ones",
    "zero": "Zeros",
}
# Keys of a serialised Keras object besides class_name and config.
_SERIALISATION_KEYS: Final = frozenset({"module", "registered_name"})


def names() -> list[str]:
    return sorted(INITIALIZERS)


def _class(name: object, identifier: object) -> type[Initializer]:
    key = _SNAKE.get(name, name) if isinstance(name, str) else None
    if key not in INITIALIZERS:
        raise ValueError(
            f"Unknown initializer. Expected one of {names()} (or their snake_case names). "
            f"Received: initializer={identifier!r}"
        )
    return INITIALIZERS[key]


def get(identifier: object) -> Initializer:
    """An initialiser from a Keras config value: an :class:`Initializer`, a name, or a
    serialised dict. ``None`` is glorot_uniform, the default of Keras's ``add_weight``."""
    if isinstance(identifier, Initializer):
        return identifier
    if identifier is None:
        return GlorotUniform()
    if isinstance(identifier, str):
        return _class(identifier, identifier)()
    if isinstance(identifier, Mapping) and "class_name" in identifier:
        extra = set(identifier) - {"class_name", "config"} - _SERIALISATION_KEYS
        config = identifier.get("config") or {}
        if extra or not isinstance(config, Mapping):
            raise ValueError(
                "Invalid initializer config. Expected {'class_name': ..., 'config': {...}}. "
                f"Received: initializer={identifier!r}"
            )
        cls = _class(identifier["class_name"], identifier)
        try:
            return cls(**config)
        except TypeError:
            fields = list(inspect.signature(cls).parameters)
            raise ValueError(
                f"Invalid config for initializer {cls.name}. Expected keys among {fields}. "
                f"Received: initializer={identifier!r}"
            ) from None
    raise ValueError(
        "Could not interpret initializer identifier. Expected a name, a dict "
        f"{{'class_name': ..., 'config': {{...}}}} or None. Received: initializer={identifier!r}"
    )
