"""SGD with Keras's update rules (keras/src/optimizers/sgd.py), in the weights' dtype:

- plain:     w = w - g * lr
- momentum:  m = m * mu - g * lr;  w = w + m
- nesterov:  m = m * mu - g * lr;  w = w + (m * mu - g * lr)

(PyTorch's momentum differs: v = mu * v + g; w -= lr * v.) Updates happen in place, so the
arrays a model holds stay the ones it owns.
"""

from __future__ import annotations

import numpy as np

from scratch.layer import check_matching


class SGD:
    def __init__(
        self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False
    ) -> None:
        if (
            isinstance(learning_rate, bool)
            or not isinstance(learning_rate, (int, float))
            or not learning_rate > 0
        ):
            raise ValueError(
                "Invalid value for argument `learning_rate`. Expected a positive float. "
                f"Received: learning_rate={learning_rate!r}"
            )
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not 0 <= momentum <= 1
        ):
            raise ValueError(
                f"`momentum` must be a float between [0, 1]. Received: momentum={momentum!r}"
            )
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.momentums: dict[str, np.ndarray] = {}
        self.iterations = 0

    def apply(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every ``params[key]`` in place from ``grads[key]``; the key sets must match."""
        check_matching(params, grads, "gradient")
        for key, w in params.items():
            g = grads[key]
            lr = w.dtype.type(self.learning_rate)  # Keras casts lr to the variable's dtype
            if self.momentum == 0:
                w -= g * lr
                continue
            mu = w.dtype.type(self.momentum)
            m = self.momentums.setdefault(key, np.zeros_like(w))
            m[...] = m * mu - g * lr
            if self.nesterov:
                w += m * mu - g * lr
            else:
                w += m
        self.iterations += 1
