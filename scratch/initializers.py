"""Keras's default initialisers, drawn from a NumPy generator.

glorot_uniform is Keras's ``VarianceScaling(scale=1.0, mode="fan_avg",
distribution="uniform")``: U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)), fans as
in ``keras.src.initializers.random_initializers.compute_fans`` (a conv kernel's fans include its
receptive field kh·kw). Seeds never match Keras's own draws: parity copies weights instead.
"""

from __future__ import annotations

import math

import numpy as np


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])  # kh * kw for an HWIO kernel
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(
    shape: tuple[int, ...], rng: np.random.Generator, dtype: np.dtype[np.floating]
) -> np.ndarray:
    fan_in, fan_out = compute_fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)
