"""Dense: ``y = activation(x @ kernel + bias)`` with Keras's kernel layout ``(in, units)``,
applied to the last axis of its input."""

from __future__ import annotations

import numpy as np

from scratch import initializers
from scratch.layer import Layer, Shape, positive_int


class Dense(Layer):
    def __init__(
        self,
        units: int,
        activation: str | None = None,
        name: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name=name, activation=activation)
        self.units = positive_int(units, "units")
        self.seed = seed
        self._x: np.ndarray | None = None

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(input_shape) < 1:
            raise ValueError(
                f"Layer '{self.name}' expects inputs of rank >= 2. "
                f"Received: input_shape={(None, *input_shape)}"
            )
        self.params = {
            "kernel": initializers.glorot_uniform((input_shape[-1], self.units), rng, self.dtype),
            "bias": self._new_weight((self.units,), 0.0),
        }
        return (*input_shape[:-1], self.units)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._x = x
        z = x @ self.params["kernel"]  # (..., in) @ (in, units) -> (..., units)
        z += self.params["bias"]
        return z

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        assert self._x is not None
        kernel = self.params["kernel"]
        x2 = self._x.reshape(-1, kernel.shape[0])  # (M, in), M = all leading axes
        dz2 = dz.reshape(-1, self.units)  # (M, units)
        self.grads = {"kernel": x2.T @ dz2, "bias": dz2.sum(axis=0)}
        return dz @ kernel.T if input_grad else None
