"""BatchNormalization over the last (channel) axis, with Keras's meaning of its arguments.

Training: normalise with the batch mean and (biased) variance over all other axes, then update
``moving = moving * momentum + batch * (1 - momentum)``. Inference: normalise with the moving
statistics. ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``. gamma and beta are
trainable ``params``; moving_mean and moving_variance are ``state`` (Keras's non-trainable
weights): they are saved and loaded with the weights but have no gradient.
"""

from __future__ import annotations

import numpy as np

from scratch.layer import Layer, Shape


class BatchNormalization(Layer):
    def __init__(
        self, momentum: float = 0.99, epsilon: float = 1e-3, name: str | None = None
    ) -> None:
        super().__init__(name=name)
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not 0 <= momentum <= 1
        ):
            raise ValueError(
                "Invalid value for argument `momentum`. Expected a float in [0, 1]. "
                f"Received: momentum={momentum!r}"
            )
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(
                "Invalid value for argument `epsilon`. Expected a positive float. "
                f"Received: epsilon={epsilon!r}"
            )
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self._cache: tuple[np.ndarray, np.ndarray, bool] | None = None

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        c = input_shape[-1]
        self.params = {"gamma": self._new_weight((c,), 1.0), "beta": self._new_weight((c,), 0.0)}
        self.state = {
            "moving_mean": self._new_weight((c,), 0.0),
            "moving_variance": self._new_weight((c,), 1.0),
        }
        return input_shape

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        axes = tuple(range(x.ndim - 1))  # every axis but the channels
        if training:
            mean = x.mean(axis=axes)
            var = np.square(x - mean).mean(axis=axes)  # biased, as Keras's ops.moments
            for key, batch in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.state[key]
                moving[...] = moving * self.momentum + batch * (1 - self.momentum)
        else:
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
        inv_std = 1 / np.sqrt(var + self.epsilon)  # (C,)
        xhat = (x - mean) * inv_std
        self._cache = (xhat, inv_std, training)
        return xhat * self.params["gamma"] + self.params["beta"]

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        assert self._cache is not None
        xhat, inv_std, training = self._cache
        axes = tuple(range(dz.ndim - 1))
        self.grads = {"gamma": (dz * xhat).sum(axis=axes), "beta": dz.sum(axis=axes)}
        if not input_grad:
            return None
        dxhat = dz * self.params["gamma"]
        if not training:  # moving statistics are constants
            return dxhat * inv_std
        # mean and variance depend on x: d/dx of (x - mean(x)) / sqrt(var(x) + eps)
        return inv_std * (dxhat - dxhat.mean(axis=axes) - xhat * (dxhat * xhat).mean(axis=axes))
