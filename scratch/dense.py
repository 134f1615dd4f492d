"""Dense: ``y = activation(x @ kernel + bias)`` with Keras's kernel layout ``(in, units)``,
applied to the last axis of its input. With ``use_bias=False`` there is no "bias" weight."""

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
        *,
        use_bias: bool = True,
        kernel_initializer: object = "glorot_uniform",
        bias_initializer: object = "zeros",
        kernel_regularizer: object = None,
        bias_regularizer: object = None,
    ) -> None:
        super().__init__(name=name, activation=activation)
        self.units = positive_int(units, "units")
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(
                f"Invalid value for argument `use_bias`. Expected a bool. "
                f"Received: use_bias={use_bias!r}"
            )
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self._regularize("kernel", kernel_regularizer)
        self._regularize("bias", bias_regularizer)
        self.seed = seed
        self._x: np.ndarray | None = None

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(input_shape) < 1:
            raise ValueError(
                f"Layer '{self.name}' expects inputs of rank >= 2. "
                f"Received: input_shape={(None, *input_shape)}"
            )
        # Keras's order of creation (and so of draws): kernel, then bias
        kernel_shape = (input_shape[-1], self.units)
        self.params = {"kernel": self._initialize(self.kernel_initializer, kernel_shape, rng)}
        if self.use_bias:
            self.params["bias"] = self._initialize(self.bias_initializer, (self.units,), rng)
        return (*input_shape[:-1], self.units)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._x = x
        z = x @ self.params["kernel"]  # (..., in) @ (in, units) -> (..., units)
        if self.use_bias:
            z += self.params["bias"]
        return z

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        assert self._x is not None
        kernel = self.params["kernel"]
        x2 = self._x.reshape(-1, kernel.shape[0])  # (M, in), M = all leading axes
        dz2 = dz.reshape(-1, self.units)  # (M, units)
        self.grads = {"kernel": x2.T @ dz2}
        if self.use_bias:
            self.grads["bias"] = dz2.sum(axis=0)
        return dz @ kernel.T if input_grad else None
