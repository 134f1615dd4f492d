"""Flatten: (N, H, W, C) -> (N, H·W·C) in channels-last (C-contiguous) order, as Keras does."""

from __future__ import annotations

import math

import numpy as np

from scratch.layer import Layer, Shape


class Flatten(Layer):
    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        return (math.prod(input_shape),)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        return x.reshape(x.shape[0], -1)  # (N, H, W, C) -> (N, H*W*C), C fastest

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        self.grads = {}
        return dz.reshape(dz.shape[0], *self.input_shape) if input_grad else None
