"""Dropout: inverted dropout, as ``keras.layers.Dropout``.

While training, each element is kept with probability ``1 - rate`` and scaled by
``1 / (1 - rate)``; at inference it is the identity. The mask comes from the layer's own seeded
NumPy generator, so a layer built with the same seed draws the same masks in the same order.
"""

from __future__ import annotations

import numpy as np

from scratch.layer import Layer


class Dropout(Layer):
    def __init__(self, rate: float, seed: int | None = None, name: str | None = None) -> None:
        super().__init__(name=name)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(
                "Invalid value received for argument `rate`. Expected a float value between "
                f"0 and 1. Received: rate={rate!r}"
            )
        self.rate = float(rate)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._scale: np.ndarray | None = None  # mask / keep_prob of the last training forward

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        if not training or self.rate == 0:
            self._scale = None
            return x
        keep = 1.0 - self.rate
        mask = self.rng.random(x.shape) < keep
        self._scale = mask.astype(self.dtype) / keep if keep > 0 else np.zeros(x.shape, self.dtype)
        return x * self._scale

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        self.grads = {}
        if not input_grad:
            return None
        return dz if self._scale is None else dz * self._scale
