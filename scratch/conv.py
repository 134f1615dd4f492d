"""Conv2D: Keras's 2-D convolution layer (cross-correlation, NHWC input, HWIO kernel)."""

from __future__ import annotations

import numpy as np

from scratch import initializers, windows
from scratch.layer import Layer, Shape, int_pair, padding_mode, positive_int, spatial_plan
from scratch.windows import Axis


class Conv2D(Layer):
    """``y = activation(correlate(pad(x), kernel) + bias)``.

    kernel: (kh, kw, in_channels, filters) — Keras's HWIO layout; bias: (filters,), absent
    with ``use_bias=False`` (as in Keras: no "bias" weight at all).
    "same" padding follows TensorFlow: the extra pixel of an odd padding goes bottom/right.
    The correlation is row-lowered (see ``scratch.windows``): forward, kernel gradient and
    input gradient are one matmul each, between the input's row matrix, the output gradient
    and the kernel laid out as a banded matrix.

    ``dilation_rate`` (d_h, d_w) spaces the kernel taps d apart: the layer correlates with the
    *dilated kernel*, the taps scattered into a zero-filled ((kh-1)·d_h + 1, (kw-1)·d_w + 1)
    kernel, and its kernel gradient is the dilated kernel's gradient gathered back from the
    taps. Padding and output size use that effective size, as TensorFlow does. As in Keras
    (keras/src/layers/convolutional/base_conv.py), ``strides > 1`` together with
    ``dilation_rate > 1`` is refused. With dilation 1 the kernel is used as is (no copy).
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
        *,
        dilation_rate: int | tuple[int, int] = (1, 1),
        use_bias: bool = True,
        kernel_initializer: object = "glorot_uniform",
        bias_initializer: object = "zeros",
        kernel_regularizer: object = None,
        bias_regularizer: object = None,
    ) -> None:
        super().__init__(name=name, activation=activation)
        self.filters = positive_int(filters, "filters")
        self.kernel_size = int_pair(kernel_size, "kernel_size")
        self.strides = int_pair(strides, "strides")
        self.padding = padding_mode(padding)
        self.dilation_rate = int_pair(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
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
        self._rows = self._cols = Axis(0, 0, 0)
        self._cache: tuple[np.ndarray, tuple[int, ...]] | None = None

    @property
    def dilated_kernel_size(self) -> tuple[int, int]:
        """The window the dilated kernel spans: ((kh-1)·d_h + 1, (kw-1)·d_w + 1)."""
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation_rate
        return (kh - 1) * dh + 1, (kw - 1) * dw + 1

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        self._rows, self._cols = spatial_plan(
            self.name, input_shape, self.dilated_kernel_size, self.strides, self.padding
        )
        (kh, kw), c = self.kernel_size, input_shape[2]
        # Keras's order of creation (and so of draws): kernel, then bias
        self.params = {
            "kernel": self._initialize(self.kernel_initializer, (kh, kw, c, self.filters), rng)
        }
        if self.use_bias:
            self.params["bias"] = self._initialize(self.bias_initializer, (self.filters,), rng)
        return (self._rows.out, self._cols.out, self.filters)

    def _dilated(self, kernel: np.ndarray) -> np.ndarray:
        """The kernel with its taps d apart in a zero-filled (kh_eff, kw_eff, C, F) kernel;
        the kernel itself when the dilation is 1."""
        if self.dilation_rate == (1, 1):
            return kernel
        dh, dw = self.dilation_rate
        dilated = np.zeros((*self.dilated_kernel_size, *kernel.shape[2:]), dtype=kernel.dtype)
        dilated[::dh, ::dw] = kernel  # tap (i, j) at (i·d_h, j·d_w)
        return dilated

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        xp = windows.pad(x, self._rows, self._cols)  # (N, Hp, Wp, C)
        kernel = self._dilated(self.params["kernel"])  # (kh_eff, kw_eff, C, F)
        bias = self.params.get("bias")
        z, rows = windows.correlate_rows(xp, kernel, self.strides, bias)  # (N, Ho, Wo, F)
        self._cache = (rows, xp.shape)
        return z

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        assert self._cache is not None
        rows, (_, hp, wp, _) = self._cache  # rows: (N*Ho, kh_eff*Wp*C); padded input NHWC
        kernel = self._dilated(self.params["kernel"])  # (kh_eff, kw_eff, C, F)
        dkernel = windows.correlate_kernel_grad(rows, dz, kernel.shape, self.strides, wp)
        if self.dilation_rate != (1, 1):
            dh, dw = self.dilation_rate
            dkernel = np.ascontiguousarray(dkernel[::dh, ::dw])  # the taps: (kh, kw, C, F)
        self.grads = {"kernel": dkernel}
        if self.use_bias:
            dz2 = dz.reshape(-1, dz.shape[2] * self.filters)  # (N*Ho, Wo*F)
            # rows first (a long, contiguous reduction), then the Wo output columns:
            # (Wo*F,) -> (Wo, F) -> (F,)
            self.grads["bias"] = dz2.sum(axis=0).reshape(-1, self.filters).sum(axis=0)
        if not input_grad:
            return None
        dxp = windows.correlate_input_grad(dz, kernel, self.strides, (hp, wp))
        return windows.crop(dxp, self._rows, self._cols)
