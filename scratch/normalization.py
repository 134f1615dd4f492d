"""BatchNormalization over the last (channel) axis, with Keras's meaning of its arguments
(keras/src/layers/normalization/batch_normalization.py).

Training: the batch mean and the *biased* variance over all other axes (``ops.moments``: the
mean of the squared deviations, divided by N, not N - 1) normalise the batch, and the moving
statistics become ``moving * momentum + batch * (1 - momentum)`` (the batch's biased variance
goes into ``moving_variance`` too). Inference: the moving statistics normalise. The output is
computed as TensorFlow's ``tf.nn.batch_normalization`` (and Keras's JAX and NumPy backends)
write it:

    inv = gamma / sqrt(var + epsilon)          (1 / sqrt(var + epsilon) with scale=False)
    y = x * inv + (beta - mean * inv)          (x * inv - mean * inv with center=False)

gamma (``scale``) and beta (``center``) are trainable ``params`` and exist only when enabled;
moving_mean and moving_variance are ``state`` (Keras's non-trainable weights). Weights come in
Keras's order: gamma, beta, moving_mean, moving_variance. Only the last axis is supported.
"""

from __future__ import annotations

import numpy as np

from scratch import initializers
from scratch.layer import Layer, Shape


def _fraction(value: object, arg: str, *, low_open: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and low_open:
        ok = value > 0  # type: ignore[operator]
    elif ok:
        ok = 0 <= value <= 1  # type: ignore[operator]
    if not ok:
        expected = "a positive float" if low_open else "a float in [0, 1]"
        raise ValueError(
            f"Invalid value for argument `{arg}`. Expected {expected}. Received: {arg}={value!r}"
        )
    return float(value)  # type: ignore[arg-type]


class BatchNormalization(Layer):
    def __init__(
        self,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        name: str | None = None,
        *,
        axis: int = -1,
        center: bool = True,
        scale: bool = True,
        beta_initializer: object = "zeros",
        gamma_initializer: object = "ones",
        moving_mean_initializer: object = "zeros",
        moving_variance_initializer: object = "ones",
        beta_regularizer: object = None,
        gamma_regularizer: object = None,
    ) -> None:
        super().__init__(name=name)
        self.momentum = _fraction(momentum, "momentum")
        self.epsilon = _fraction(epsilon, "epsilon", low_open=True)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(
                f"Invalid value for argument `axis`. Expected an int. Received: axis={axis!r}"
            )
        self.axis = axis
        for arg, value in (("center", center), ("scale", scale)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(
                    f"Invalid value for argument `{arg}`. Expected a bool. "
                    f"Received: {arg}={value!r}"
                )
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self._regularize("gamma", gamma_regularizer)
        self._regularize("beta", beta_regularizer)
        # (x, mean, 1/sqrt(var + eps), inv, training) of the last forward
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool] | None = None

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if self.axis not in (-1, len(input_shape)):
            raise ValueError(
                f"Layer '{self.name}' normalises the last axis only (axis=-1 or "
                f"axis={len(input_shape)} for inputs of rank {len(input_shape) + 1}). "
                f"Received: axis={self.axis}"
            )
        c = (input_shape[-1],)
        # Keras's order of creation (and so of draws and of the weights)
        self.params = {}
        if self.scale:
            self.params["gamma"] = self._initialize(self.gamma_initializer, c, rng)
        if self.center:
            self.params["beta"] = self._initialize(self.beta_initializer, c, rng)
        self.state = {
            "moving_mean": self._initialize(self.moving_mean_initializer, c, rng),
            "moving_variance": self._initialize(self.moving_variance_initializer, c, rng),
        }
        return input_shape

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        axes = tuple(range(x.ndim - 1))  # every axis but the channels
        if training:
            mean = x.mean(axis=axes)  # (C,)
            var = np.square(x - mean).mean(axis=axes)  # (C,), biased, as ops.moments
            for key, batch in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.state[key]
                moving[...] = moving * self.momentum + batch * (1.0 - self.momentum)
        else:
            mean, var = self.state["moving_mean"].copy(), self.state["moving_variance"].copy()
        rstd = 1 / np.sqrt(var + self.epsilon)  # (C,)
        inv = rstd * self.params["gamma"] if self.scale else rstd  # (C,)
        self._cache = (x, mean, rstd, inv, training)
        if self.center:
            return x * inv + (self.params["beta"] - mean * inv)
        return x * inv + -(mean * inv)

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        assert self._cache is not None
        x, mean, rstd, inv, training = self._cache
        axes = tuple(range(dz.ndim - 1))
        xhat = (x - mean) * rstd  # the normalised input
        self.grads = {}
        if self.scale:
            self.grads["gamma"] = (dz * xhat).sum(axis=axes)
        if self.center:
            self.grads["beta"] = dz.sum(axis=axes)
        if not input_grad:
            return None
        if not training:  # moving statistics are constants
            return dz * inv
        # mean and variance depend on x: d/dx of (x - mean(x)) / sqrt(var(x) + eps), times gamma
        dxhat = dz * self.params["gamma"] if self.scale else dz
        return rstd * (dxhat - dxhat.mean(axis=axes) - xhat * (dxhat * xhat).mean(axis=axes))
