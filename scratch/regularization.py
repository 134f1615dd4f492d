"""Dropout: inverted dropout, as ``keras.layers.Dropout``.

While training, each element is kept with probability ``1 - rate`` and scaled by
``1 / (1 - rate)``; at inference it is the identity. With ``rate == 0`` it is the identity and
with ``rate == 1`` it outputs zeros, in training too (Keras's ``backend.random.dropout``).

The keep mask comes from the layer's own seeded NumPy generator (a layer built with the same
seed draws the same masks in the same order) unless one is given with :meth:`Dropout.set_mask`:
a bool array of the input's full shape, batch included, used by every training forward until
it is replaced or cleared (``set_mask(None)``). That is how a mirror reproduces a Keras run:
Keras's masks are drawn by its backend's generator, which NumPy cannot replay.

The arithmetic is TensorFlow's (``tf.nn.experimental.stateless_dropout`` → ``nn_ops._dropout``):
``where(mask, x * scale, 0)`` with ``scale = 1 / (1 - rate)`` computed in Python floats and
rounded once to the dtype; its gradient is ``where(mask, dout, 0) * scale``. Keras on JAX,
torch and NumPy divides instead, ``where(mask, x / (1 - rate), 0)``: the same number or one
unit in the last place away.
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
        self.mask: np.ndarray | None = None  # a keep mask given from outside
        self._keep: np.ndarray | None = None  # the keep mask of the last training forward
        self._zeros = False  # whether the last forward output zeros (training, rate 1)
        self._factor: np.floating = np.float64(1.0)

    @property
    def scale(self) -> np.floating:
        """``1 / (1 - rate)`` rounded to the layer's dtype (0 < rate < 1)."""
        return self.dtype.type(1.0 / (1.0 - self.rate))

    def set_mask(self, mask: np.ndarray | None) -> None:
        """Use ``mask`` (bool, the input's full shape with the batch axis; True keeps) for the
        next training forward passes instead of the layer's own draws; ``None`` goes back to
        them."""
        if mask is None:
            self.mask = None
            return
        rank = len(self.input_shape) + 1 if self.built else None
        if (
            not isinstance(mask, np.ndarray)
            or mask.dtype != np.bool_
            or mask.ndim < 2
            or mask.shape[0] == 0
            or (rank is not None and mask.shape[1:] != self.input_shape)
        ):
            expected = (
                f"(batch, {', '.join(map(str, self.input_shape))})"
                if self.built
                else "(batch, ...)"
            )
            raise ValueError(
                f"Layer '{self.name}': a dropout mask must be a bool array of shape {expected}. "
                f"Received: mask.shape={getattr(mask, 'shape', None)}, "
                f"mask.dtype={getattr(mask, 'dtype', type(mask).__name__)}"
            )
        self.mask = mask

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        self._keep, self._zeros = None, training and self.rate == 1
        if not training or self.rate == 0:
            return x
        if self._zeros:
            return np.zeros_like(x)
        if self.mask is not None:
            if self.mask.shape != x.shape:
                raise ValueError(
                    f"Layer '{self.name}': the dropout mask must have the input's shape "
                    f"{x.shape}. Received: mask.shape={self.mask.shape}"
                )
            keep = self.mask
        else:
            keep = self.rng.random(x.shape) < 1.0 - self.rate
        self._keep, self._factor = keep, self.scale
        return np.where(keep, x * self._factor, self.dtype.type(0))

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        self.grads = {}
        if not input_grad:
            return None
        if self._zeros:
            return np.zeros_like(dz)
        if self._keep is None:  # the identity: inference, or rate 0
            return dz
        return np.where(self._keep, dz, self.dtype.type(0)) * self._factor
