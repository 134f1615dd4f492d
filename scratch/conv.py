"""Conv2D: Keras's 2-D convolution layer (cross-correlation, NHWC input, HWIO kernel)."""

from __future__ import annotations

import numpy as np

from scratch import initializers, windows
from scratch.layer import Layer, Shape, int_pair, padding_mode, positive_int, spatial_plan
from scratch.windows import Axis


class Conv2D(Layer):
    """``y = activation(correlate(pad(x), kernel) + bias)``.

    kernel: (kh, kw, in_channels, filters) — Keras's HWIO layout; bias: (filters,).
    "same" padding follows TensorFlow: the extra pixel of an odd padding goes bottom/right.
    The correlation is row-lowered (see ``scratch.windows``): forward, kernel gradient and
    input gradient are one matmul each, between the input's row matrix, the output gradient
    and the kernel laid out as a banded matrix.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = (1, 1),
        padding: str = "valid",
        activation: str | None = None,
        name: str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name=name, activation=activation)
        self.filters = positive_int(filters, "filters")
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.strides = int_pair(strides, "strides")
        self.padding = padding_mode(padding)
        self.seed = seed
        self._rows = self._cols = Axis(0, 0, 0)
        self._cache: tuple[np.ndarray, tuple[int, ...]] | None = None

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        self._rows, self._cols = spatial_plan(
            self.name, input_shape, self.kernel_size, self.strides, self.padding
        )
        (kh, kw), c = self.kernel_size, input_shape[2]
        self.params = {
            "kernel": initializers.glorot_uniform((kh, kw, c, self.filters), rng, self.dtype),
            "bias": self._new_weight((self.filters,), 0.0),
        }
        return (self._rows.out, self._cols.out, self.filters)

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        xp = windows.pad(x, self._rows, self._cols)  # (N, Hp, Wp, C)
        kernel, bias = self.params["kernel"], self.params["bias"]
        z, rows = windows.correlate_rows(xp, kernel, self.strides, bias)  # (N, Ho, Wo, F)
        self._cache = (rows, xp.shape)
        return z

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        assert self._cache is not None
        rows, (_, hp, wp, _) = self._cache  # rows: (N*Ho, kh*Wp*C); padded input NHWC
        kernel = self.params["kernel"]
        dz2 = dz.reshape(-1, dz.shape[2] * self.filters)  # (N*Ho, Wo*F)
        self.grads = {
            "kernel": windows.correlate_kernel_grad(rows, dz, kernel.shape, self.strides, wp),
            # rows first (a long, contiguous reduction), then the Wo output columns
            "bias": dz2.sum(axis=0).reshape(-1, self.filters).sum(axis=0),
        }
        if not input_grad:
            return None
        dxp = windows.correlate_input_grad(dz, kernel, self.strides, (hp, wp))
        return windows.crop(dxp, self._rows, self._cols)
