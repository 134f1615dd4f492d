"""The layer contract every scratch layer follows, and the argument checks they share.

A layer is a small object with Keras's name and layouts (NHWC inputs, HWIO conv kernels, Dense
kernels ``(in, units)``):

- ``build(input_shape, dtype, rng)`` creates ``params`` (trainable, each with a gradient in
  ``grads`` under the same key) and ``state`` (non-trainable weights such as BatchNormalization's
  moving statistics, which Keras calls ``non_trainable_weights``). ``input_shape`` excludes the
  batch axis. A layer that was not built is built on its first ``forward`` from the input.
- ``forward(x, training=False)`` returns the output after the layer's activation and keeps what
  ``backward`` needs.
- ``backward(dout)`` returns dL/dx for the last ``forward`` and fills ``grads``. It never writes
  into ``dout``. With ``input_grad=False`` it skips dL/dx (the first layer of a network does not
  need it) and returns ``None``.

Subclasses implement ``_build``, ``_forward`` (pre-activation output) and ``_backward``
(gradient with respect to the pre-activation output); activation handling lives here once.

Weight penalties (Keras's ``kernel_regularizer`` ...) live in ``regularizers``, param key →
:class:`scratch.regularizers.L1L2`. A layer's ``backward`` gives the gradient of what flows
into it only; the model adds each penalty to its loss and the penalty's gradient to the
param's gradient (``regularization_losses`` / ``add_regularization_gradients``), as Keras adds
``model.losses`` to the compiled loss.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal, overload

import numpy as np

from scratch import activations, regularizers, windows
from scratch.activations import Activation
from scratch.initializers import Initializer
from scratch.regularizers import Regularizer
from scratch.windows import Axis

Shape = tuple[int, ...]

SUPPORTED_DTYPES = ("float32", "float64")


def standardize_dtype(dtype: object) -> np.dtype[np.floating]:
    """float32 or float64, as a NumPy dtype; anything else is rejected."""
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt is None or dt.name not in SUPPORTED_DTYPES:
        raise ValueError(
            f"Invalid dtype. Expected one of {SUPPORTED_DTYPES}. Received: dtype={dtype!r}"
        )
    return dt


def positive_int(value: object, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{arg}`. Expected a positive integer. "
            f"Received: {arg}={value!r}"
        )
    return int(value)


def int_pair(value: object, arg: str) -> tuple[int, int]:
    """An int or a pair of ints, all positive, as Keras's ``kernel_size``/``strides`` accept."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        items: Sequence[object] = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        items = value
    else:
        raise ValueError(
            f"Invalid value for argument `{arg}`. Expected an int or a tuple of 2 ints. "
            f"Received: {arg}={value!r}"
        )
    try:
        a, b = (positive_int(v, arg) for v in items)
    except ValueError:
        raise ValueError(
            f"Invalid value for argument `{arg}`. Expected positive integers. "
            f"Received: {arg}={value!r}"
        ) from None
    return a, b


def padding_mode(value: object) -> str:
    mode = value.lower() if isinstance(value, str) else value
    if mode not in ("valid", "same"):
        raise ValueError(
            "Invalid value for argument `padding`. Expected one of {'valid', 'same'}. "
            f"Received: padding={value!r}"
        )
    return str(mode)


def check_matching(
    expected: Mapping[str, np.ndarray], given: Mapping[str, np.ndarray], what: str
) -> None:
    """``given`` must have exactly ``expected``'s keys, and each array its shape and dtype."""
    if given.keys() != expected.keys():
        raise ValueError(
            f"The {what} must have exactly these keys: {sorted(expected)}. Received: "
            f"missing={sorted(expected.keys() - given.keys())}, "
            f"unexpected={sorted(given.keys() - expected.keys())}"
        )
    for key, ref in expected.items():
        value = np.asarray(given[key])
        if value.shape != ref.shape or value.dtype != ref.dtype:
            raise ValueError(
                f"The {what} '{key}' must have shape {ref.shape} and dtype {ref.dtype}. "
                f"Received: shape={value.shape}, dtype={value.dtype}"
            )


def spatial_plan(
    layer: str, input_shape: Shape, k: tuple[int, int], s: tuple[int, int], padding: str
) -> tuple[Axis, Axis]:
    """Rows and columns (output size, padding) of a 2-D windowed layer on NHWC input."""
    if len(input_shape) != 3:
        raise ValueError(
            f"Layer '{layer}' expects inputs of rank 4 (batch, height, width, channels). "
            f"Received: input_shape={(None, *input_shape)}"
        )
    rows = windows.same_or_valid(input_shape[0], k[0], s[0], padding)
    cols = windows.same_or_valid(input_shape[1], k[1], s[1], padding)
    if rows.out <= 0 or cols.out <= 0:
        raise ValueError(
            f"Layer '{layer}': the window {k} is larger than the input with padding='valid'. "
            f"Received: input_shape={(None, *input_shape)}"
        )
    return rows, cols


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])|(?<=[A-Z])([A-Z][a-z])", r"_\1\2", name).lower()


class Layer:
    """Base class: naming, building, dtype/shape checks and the activation wrapper."""

    def __init__(self, name: str | None = None, activation: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(
                "Invalid value for argument `name`. Expected a non-empty string without '/'. "
                f"Received: name={name!r}"
            )
        self.name: str = name if name is not None else _snake_case(type(self).__name__)
        self.auto_named = name is None
        self.activation: Activation = activations.get(activation)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self.regularizers: dict[str, Regularizer] = {}  # param key -> penalty
        self.built = False
        self.dtype: np.dtype[np.floating] = np.dtype("float32")
        self.input_shape: Shape = ()
        self.output_shape: Shape = ()
        self.seed: int | None = None
        self._z: np.ndarray | None = None  # pre-activation output of the last forward
        self._y: np.ndarray | None = None  # output of the last forward

    # -- building --------------------------------------------------------------------------
    def build(
        self,
        input_shape: Sequence[int],
        dtype: object = "float32",
        rng: np.random.Generator | None = None,
    ) -> Shape:
        """Create the weights for inputs of shape ``(batch, *input_shape)``; return the output
        shape (without the batch axis)."""
        shape = tuple(int(d) for d in input_shape)
        if any(d <= 0 for d in shape):
            raise ValueError(
                f"Layer '{self.name}': input dimensions must be positive. "
                f"Received: input_shape={shape}"
            )
        self.dtype = standardize_dtype(dtype)
        self.input_shape = shape
        self.output_shape = self._build(
            shape, rng if rng is not None else np.random.default_rng(self.seed)
        )
        self.built = True
        return self.output_shape

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        return input_shape

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = np.asarray(x)
        if not self.built:
            self.build(x.shape[1:], x.dtype)
        if x.dtype != self.dtype:
            raise ValueError(
                f"Layer '{self.name}' computes in {self.dtype.name}; cast the input first. "
                f"Received: x.dtype={x.dtype}"
            )
        if x.shape[1:] != self.input_shape or x.shape[0] == 0:
            raise ValueError(
                f"Layer '{self.name}' expects inputs of shape (batch, "
                f"{', '.join(map(str, self.input_shape))}). Received: x.shape={x.shape}"
            )
        z = self._forward(x, training)
        y = self.activation.forward(z)
        self._z, self._y = z, y
        return y

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        raise NotImplementedError

    @property
    def output(self) -> np.ndarray:
        """The output of the last ``forward`` (after the activation)."""
        if self._y is None:
            raise RuntimeError(f"Layer '{self.name}': call forward() first.")
        return self._y

    @property
    def preactivation(self) -> np.ndarray:
        """The output of the last ``forward`` before the activation (the logits of a softmax)."""
        if self._z is None:
            raise RuntimeError(f"Layer '{self.name}': call forward() first.")
        return self._z

    # -- backward --------------------------------------------------------------------------
    @overload
    def backward(self, dout: np.ndarray, *, input_grad: Literal[True] = ...) -> np.ndarray: ...
    @overload
    def backward(self, dout: np.ndarray, *, input_grad: bool) -> np.ndarray | None: ...

    def backward(self, dout: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """dL/dx given dL/d(output); fills ``grads``. Never writes into ``dout``."""
        if self._z is None or self._y is None:
            raise RuntimeError(f"Layer '{self.name}': call forward() before backward().")
        self._check_grad(dout, self._y, "dout")
        dz = self.activation.backward(dout, self._z, self._y)
        return self._backward(dz, input_grad)

    @overload
    def backward_preactivation(
        self, dz: np.ndarray, *, input_grad: Literal[True] = ...
    ) -> np.ndarray: ...
    @overload
    def backward_preactivation(self, dz: np.ndarray, *, input_grad: bool) -> np.ndarray | None: ...

    def backward_preactivation(
        self, dz: np.ndarray, *, input_grad: bool = True
    ) -> np.ndarray | None:
        """Like ``backward`` but given dL/d(pre-activation output), e.g. a fused softmax +
        cross-entropy gradient at the logits."""
        if self._z is None:
            raise RuntimeError(f"Layer '{self.name}': call forward() before backward().")
        self._check_grad(dz, self._z, "dz")
        return self._backward(dz, input_grad)

    def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        raise NotImplementedError

    def _check_grad(self, g: np.ndarray, like: np.ndarray, arg: str) -> None:
        if not isinstance(g, np.ndarray) or g.shape != like.shape or g.dtype != like.dtype:
            raise ValueError(
                f"Layer '{self.name}': the gradient must match the output of the last forward, "
                f"shape {like.shape} and dtype {like.dtype}. Received: {arg}.shape="
                f"{getattr(g, 'shape', None)}, {arg}.dtype={getattr(g, 'dtype', None)}"
            )

    # -- weights ---------------------------------------------------------------------------
    @property
    def weights(self) -> dict[str, np.ndarray]:
        """Trainable params then non-trainable state, live arrays (Keras's weights order)."""
        return {**self.params, **self.state}

    def _new_weight(self, shape: Shape, init: np.ndarray | float) -> np.ndarray:
        return np.array(np.broadcast_to(init, shape), dtype=self.dtype)

    def _initialize(self, init: Initializer, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """A weight drawn by ``init`` in the layer's dtype (C-contiguous, writable)."""
        value = np.ascontiguousarray(init(shape, rng, self.dtype))
        if value.shape != shape or value.dtype != self.dtype:
            raise AssertionError((type(init).__name__, value.shape, shape, value.dtype))
        return value

    def _regularize(self, key: str, identifier: object) -> None:
        """Attach the penalty ``identifier`` (see :func:`scratch.regularizers.get`) to the
        param ``key``; ``None`` attaches nothing."""
        regularizer = regularizers.get(identifier)
        if regularizer is not None:
            self.regularizers[key] = regularizer

    # -- regularization --------------------------------------------------------------------
    def regularization_losses(self) -> list[np.floating]:
        """Each penalty of an existing param, in param order (Keras's ``layer.losses`` from
        weight regularizers), in the param's dtype."""
        return [
            self.regularizers[key].loss(w)
            for key, w in self.params.items()
            if key in self.regularizers
        ]

    def add_regularization_gradients(self) -> None:
        """Add each penalty's gradient to its param's gradient of the last backward (new
        arrays: ``grads`` may be shared with the caller)."""
        for key, w in self.params.items():
            if key in self.regularizers:
                self.grads[key] = self.grads[key] + self.regularizers[key].gradient(w)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
