"""AveragePooling2D and MaxPooling2D (NHWC), with Keras's padding rules.

"same" average pooling divides by the number of real (unpadded) cells in each window, as
TensorFlow's avg_pool does; "same" max pooling never picks a padded cell. Max-pool gradients go
to the first maximum of each window (row-major), the convention of TensorFlow's MaxPoolGrad
for ties; with continuous inputs ties do not occur.
"""

from __future__ import annotations

import numpy as np

from scratch import windows
from scratch.layer import Layer, Shape, int_pair, padding_mode, spatial_plan
from scratch.windows import Axis


class _Pooling2D(Layer):
    def __init__(
        self,
        pool_size: int | tuple[int, int] = (2, 2),
        strides: int | tuple[int, int] | None = None,
        padding: str = "valid",
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        self.pool_size = int_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else int_pair(strides, "strides")
        self.padding = padding_mode(padding)
        self._rows = self._cols = Axis(0, 0, 0)
        self._padded_shape: tuple[int, ...] = ()

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        self._rows, self._cols = spatial_plan(
            self.name, input_shape, self.pool_size, self.strides, self.padding
        )
        return (self._rows.out, self._cols.out, input_shape[2])

    def _scatter(self, dwin: np.ndarray) -> np.ndarray:
        """Window gradients (N, Ho, Wo, kh, kw, C) -> dL/dx (N, H, W, C), padding cropped."""
        dxp = windows.windows_adjoint(dwin, self._padded_shape, self.strides)
        return windows.crop(dxp, self._rows, self._cols)


class AveragePooling2D(_Pooling2D):
    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        out = super()._build(input_shape, rng)
        # Real cells per window: pool the indicator of the unpadded input. Shape (1, Ho, Wo, C),
        # every channel alike (dividing by it then runs over whole rows, not runs of C).
        ones = windows.pad(np.ones((1, *input_shape), self.dtype), self._rows, self._cols)
        self._count = windows.window_sum(ones, self.pool_size, self.strides)
        return out

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        xp = windows.pad(x, self._rows, self._cols)  # (N, Hp, Wp, C)
        self._padded_shape = xp.shape
        total = windows.window_sum(xp, self.pool_size, self.strides)  # (N, Ho, Wo, C)
        total /= self._count  # in place: total is a fresh array
        return total

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        self.grads = {}
        if not input_grad:
            return None
        g = dz / self._count  # (N, Ho, Wo, C)
        dxp = windows.window_sum_adjoint(g, self._padded_shape, self.pool_size, self.strides)
        return windows.crop(dxp, self._rows, self._cols)


class MaxPooling2D(_Pooling2D):
    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        xp = windows.pad(x, self._rows, self._cols, value=-np.inf)  # (N, Hp, Wp, C)
        self._padded_shape = xp.shape
        win = windows.windows(xp, self.pool_size, self.strides)  # (N, Ho, Wo, kh, kw, C)
        n, ho, wo, kh, kw, c = win.shape
        flat = win.reshape(n, ho, wo, kh * kw, c)  # copy: window cells on one axis
        self._argmax = flat.argmax(axis=3)[:, :, :, None, :]  # (N, Ho, Wo, 1, C)
        return np.take_along_axis(flat, self._argmax, axis=3)[:, :, :, 0, :]

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        self.grads = {}
        if not input_grad:
            return None
        n, ho, wo, c = dz.shape
        kh, kw = self.pool_size
        dwin = np.zeros((n, ho, wo, kh * kw, c), dtype=dz.dtype)
        np.put_along_axis(dwin, self._argmax, dz[:, :, :, None, :], axis=3)
        return self._scatter(dwin.reshape(n, ho, wo, kh, kw, c))
