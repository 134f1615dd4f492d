"""A catalogue of realistic implementation bugs, applied to a built scratch model at run time.

Only scratch offers this: the mutants patch scratch's own objects, so they live on scratch's
side of the implementation protocol (:mod:`compare.sides.scratch_side` applies them); the runner
is :mod:`compare.tools.mutants`.

Each :class:`Mutant` patches one scratch model instance (its layers' methods or attributes —
never the source, never other instances) so that it computes what a plausible hand-written bug
would. ``lenet-parity mutants`` runs the parity check on each and reports whether it was caught
and whether the first failing check names the mutated layer; the test suite asserts both.

A mutant's ``layer`` is the layer named by the check that must fail first in data-flow order
(:func:`failure_layer`). For a bug in a layer without parameters (pooling, flatten) or in an
input gradient dx, that is the first parameter gradient computed after it in backprop, and the
description says so. The catalogue is listed in that order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import numpy as np

import scratch
from compare.errors import InputError
from scratch import windows
from scratch.layer import Layer
from scratch.windows import Axis

L = TypeVar("L", bound=Layer)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One deliberate bug. A model bug patches the scratch model (``apply``); a training bug
    patches the scratch side's optimiser (``optimizer``) or reorders its batches (``batches``:
    the training set's size, the batch size, the epochs and the seed in, the batches scratch
    trains on out). ``settings``
    are check settings the bug needs in order to show at all (e.g. a momentum)."""

    name: str
    description: str
    layer: str  # the layer (model bug) or training check (training bug) first failing
    apply: Callable[[scratch.Sequential], None] | None = None
    variants: tuple[str, ...] = ("keras-docs", "classic")  # where the bug can show
    # Whether the bug is larger than float32 noise, so float32 must catch it too.
    float32: bool = True
    optimizer: Callable[[scratch.SGD], None] | None = None
    batches: Callable[[int, int, int, int], list[np.ndarray]] | None = None
    settings: Mapping[str, float | bool] = dataclasses.field(default_factory=dict)
    step: int | None = None  # a training bug: the training step where it must first show

    @property
    def trains(self) -> bool:
        """Whether only training can show this bug."""
        return self.apply is None

    def check_applicable(self, config: Any) -> None:
        """Fail early when ``config`` cannot show this bug (another model, no training, or a
        setting off): a check that cannot show the bug would PASS and prove nothing."""
        if config.variant not in self.variants:
            raise InputError(
                f"mutant {self.name!r} does not apply to the {config.variant} model; it applies "
                f"to {', '.join(self.variants)}"
            )
        if self.trains and config.epochs < 1:
            raise InputError(f"mutant {self.name!r} shows only in training: use --epochs >= 1")
        for key, value in self.settings.items():
            if getattr(config, key) != value:
                raise InputError(
                    f"mutant {self.name!r} shows only with {key}={value!r}; "
                    f"received {key}={getattr(config, key)!r}"
                )


CATALOGUE: Final[dict[str, Mutant]] = {}


def register(mutant: Mutant) -> Mutant:
    if mutant.name in CATALOGUE:
        raise ValueError(f"Duplicate mutant name. Received: name={mutant.name!r}")
    CATALOGUE[mutant.name] = mutant
    return mutant


def get(name: str) -> Mutant:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise InputError(
            f"unknown mutant {name!r}; expected one of {', '.join(CATALOGUE)}"
        ) from None


def failure_layer(check_name: str) -> str:
    """The layer a check names: ``"conv1/kernel"`` → ``"conv1"``; ``"loss"``, ``"input"`` as is."""
    return check_name.split("/")[0]


# A training bug's ``layer`` when it changes every parameter's update: the first failure may be
# any parameter's check (the one whose float noise is smallest relative to the bug shows first).
ANY_PARAMETER: Final = "any parameter"


def localised(mutant: Mutant, first: Any) -> bool:
    """Whether the first failing check (a :class:`~compare.judge.checks.Check` or None) names it:
    the mutated layer for a model bug; for a training bug, the training check (or any
    parameter's, for :data:`ANY_PARAMETER`) at the step where it must first show."""
    if first is None:
        return False
    if mutant.trains:
        named = first.name == mutant.layer or (mutant.layer == ANY_PARAMETER and "/" in first.name)
        return bool(first.kind == "training" and named and first.step == mutant.step)
    return failure_layer(first.name) == mutant.layer


# -- patching one instance -------------------------------------------------------------------
def _patch(obj: object, attr: str, value: object) -> None:
    """Replace ``obj.attr`` on this instance only (the class and other instances keep theirs).
    The attribute must exist: a typo in a mutant must not silently patch nothing."""
    if not hasattr(obj, attr):
        raise AttributeError(f"{type(obj).__name__} has no attribute {attr!r} to patch")
    setattr(obj, attr, value)


def _layer(model: scratch.Sequential, name: str, kind: type[L]) -> L:
    layer = model.get_layer(name)
    assert isinstance(layer, kind), (name, type(layer))
    return layer


# -- the catalogue, in data-flow order of where each bug first shows --------------------------
def _same_padding_all_after(model: scratch.Sequential) -> None:
    conv = _layer(model, "conv1", scratch.Conv2D)
    # The "same" plan written as `Axis(out, 0, k - 1)`: all 4 rows and columns of padding at
    # the bottom/right, as np.pad(x, ((0, 0), (0, 4), (0, 4), (0, 0))) does, instead of 2/2.
    # Forward pads and backward crops with the plan, so the layer stays self-consistent.
    rows, cols = conv._rows, conv._cols
    _patch(conv, "_rows", Axis(rows.out, 0, rows.before + rows.after))
    _patch(conv, "_cols", Axis(cols.out, 0, cols.before + cols.after))


register(
    Mutant(
        name="same-padding-bottom-right",
        description='conv1\'s 5x5 "same" padding put entirely at the bottom/right (0 before, '
        "4 after, as np.pad(x, ((0, 0), (0, 4), (0, 4), (0, 0))) would) instead of 2 on each "
        "side: the output is shifted by two pixels (classic variant only: keras-docs conv1 "
        'is "valid")',
        layer="conv1",
        apply=_same_padding_all_after,
        variants=("classic",),
    )
)


def _true_convolution(model: scratch.Sequential) -> None:
    conv = _layer(model, "conv2", scratch.Conv2D)

    def _forward(x: np.ndarray, training: bool) -> np.ndarray:
        # "convolution" from the textbook: the kernel flipped in H and W (scipy.signal.convolve)
        kernel = conv.params["kernel"][::-1, ::-1]
        xp = windows.pad(x, conv._rows, conv._cols)
        z, cols = windows.correlate(xp, kernel, conv.strides)
        z += conv.params["bias"]
        conv._cache = (cols, xp.shape)
        return z

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        # ... and a backward pass consistent with it: finite differences agree, Keras does not
        assert conv._cache is not None
        cols, (_, hp, wp, _) = conv._cache
        kernel = conv.params["kernel"]
        dz2 = dz.reshape(-1, conv.filters)
        conv.grads = {
            "kernel": (cols.T @ dz2).reshape(kernel.shape)[::-1, ::-1].copy(),
            "bias": dz2.sum(axis=0),
        }
        if not input_grad:
            return None
        dxp = windows.correlate_input_grad(dz, kernel[::-1, ::-1], conv.strides, (hp, wp))
        return windows.crop(dxp, conv._rows, conv._cols)

    _patch(conv, "_forward", _forward)
    _patch(conv, "_backward", _backward)


register(
    Mutant(
        name="conv-flipped-kernel",
        description="conv2 computes a true convolution (kernel flipped in H and W) instead of "
        "Keras's cross-correlation, with a backward pass consistent with it, so only the "
        "comparison with Keras can see it",
        layer="conv2",
        apply=_true_convolution,
    )
)


def _forward_relative_error(model: scratch.Sequential) -> None:
    dense = _layer(model, "fc1", scratch.Dense)
    correct = dense._forward

    def _forward(x: np.ndarray, training: bool) -> np.ndarray:
        return correct(x, training) * (1 + 1e-4)

    _patch(dense, "_forward", _forward)


register(
    Mutant(
        name="fc1-forward-off-1e-4",
        description="fc1's pre-activation output 1e-4 too large (relative): the stand-in for "
        "a small systematic forward error such as a constant rounded to four digits; the "
        "smallest forward bug the tolerances are meant to catch",
        layer="fc1",
        apply=_forward_relative_error,
    )
)


def _flatten_nchw(model: scratch.Sequential) -> None:
    flatten = _layer(model, "flatten", scratch.Flatten)

    def _forward(x: np.ndarray, training: bool) -> np.ndarray:
        # PyTorch habit: channels before rows and columns
        return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        flatten.grads = {}
        if not input_grad:
            return None
        h, w, c = flatten.input_shape
        return dz.reshape(dz.shape[0], c, h, w).transpose(0, 2, 3, 1)

    _patch(flatten, "_forward", _forward)
    _patch(flatten, "_backward", _backward)


register(
    Mutant(
        name="flatten-nchw",
        description="Flatten in channels-first (NCHW) order, as PyTorch flattens, instead of "
        "Keras's channels-last order (backward consistent with it): fc1 sees its inputs "
        "permuted",
        layer="flatten",
        apply=_flatten_nchw,
    )
)


def _loss_gradient_not_averaged(model: scratch.Sequential) -> None:
    correct = model.compute_loss

    def compute_loss(y_onehot: np.ndarray) -> tuple[np.floating, np.ndarray]:
        loss, dloss = correct(y_onehot)
        # the loss is the batch mean, but its gradient is the one of the sum: no / N
        return loss, dloss * y_onehot.shape[0]

    _patch(model, "compute_loss", compute_loss)


register(
    Mutant(
        name="loss-grad-missing-1-over-n",
        description="the loss is the batch mean but its gradient lacks the 1/N (the gradient "
        "of the summed loss); the loss value is right, so the first failure is the first "
        "gradient computed from it, output's kernel",
        layer="output",
        apply=_loss_gradient_not_averaged,
    )
)


def _relu_mask_from_gradient(model: scratch.Sequential) -> None:
    dense = _layer(model, "fc2", scratch.Dense)

    def relu_backward(dout: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dout * (dout > 0)  # the mask of the upstream gradient, not of z

    _patch(dense, "activation", dataclasses.replace(dense.activation, backward=relu_backward))


register(
    Mutant(
        name="relu-mask-from-gradient",
        description="fc2's relu backward masks with the upstream gradient (dout * (dout > 0), "
        "i.e. relu applied to the gradient) instead of with its pre-activation (z > 0): first "
        "visible in fc2's own kernel gradient (keras-docs only: classic uses tanh)",
        layer="fc2",
        apply=_relu_mask_from_gradient,
        variants=("keras-docs",),
    )
)


def _kernel_grad_from_preactivation(model: scratch.Sequential) -> None:
    fc1 = _layer(model, "fc1", scratch.Dense)
    fc2 = _layer(model, "fc2", scratch.Dense)
    correct = fc2._backward

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dx = correct(dz, input_grad)
        # dW2 = z1.T @ dz2 where it should be a1.T @ dz2 (fc1's output after its activation)
        fc2.grads["kernel"] = fc1.preactivation.T @ dz
        return dx

    _patch(fc2, "_backward", _backward)


register(
    Mutant(
        name="dense-kernel-grad-from-preactivation",
        description="fc2's kernel gradient computed from fc1's pre-activation z1 instead of its "
        "activation a1 (dW2 = z1.T @ dz2, the classic mix-up of cached z and a)",
        layer="fc2",
        apply=_kernel_grad_from_preactivation,
    )
)


def _tanh_derivative_one_minus_y(model: scratch.Sequential) -> None:
    dense = _layer(model, "fc1", scratch.Dense)

    def tanh_backward(dout: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dout * (1 - y)  # should be 1 - y**2

    _patch(dense, "activation", dataclasses.replace(dense.activation, backward=tanh_backward))


register(
    Mutant(
        name="tanh-derivative-1-minus-y",
        description="fc1's tanh derivative written 1 - y instead of 1 - y**2: first visible "
        "in fc1's own kernel gradient (classic only: keras-docs uses relu)",
        layer="fc1",
        apply=_tanh_derivative_one_minus_y,
        variants=("classic",),
    )
)


def _gradient_scaled(model: scratch.Sequential) -> None:
    dense = _layer(model, "fc1", scratch.Dense)
    correct = dense._backward

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dx = correct(dz, input_grad)
        dense.grads["kernel"] = dense.grads["kernel"] * 1.001
        return dx

    _patch(dense, "_backward", _backward)


register(
    Mutant(
        name="fc1-kernel-grad-scaled-1.001",
        description="fc1's kernel gradient 0.1% too large (x 1.001), e.g. a stray factor left "
        "from debugging: the smallest gradient bug the tolerances are meant to catch",
        layer="fc1",
        apply=_gradient_scaled,
    )
)


def _avgpool_backward_not_divided(model: scratch.Sequential) -> None:
    pool = _layer(model, "pool2", scratch.AveragePooling2D)

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        pool.grads = {}
        if not input_grad:
            return None
        kh, kw = pool.pool_size
        # every cell of a window gets the whole output gradient: missing `/ self._count`
        dwin = np.broadcast_to(dz[:, :, :, None, None, :], (*dz.shape[:3], kh, kw, dz.shape[3]))
        return pool._scatter(dwin)

    _patch(pool, "_backward", _backward)


register(
    Mutant(
        name="avgpool-backward-not-divided",
        description="pool2's backward spreads the output gradient to every cell of its 2x2 "
        "window without dividing by the window size (4x too large); pool2 has no parameters, "
        "so it is first visible in conv2's kernel gradient, the first gradient computed after it",
        layer="conv2",
        apply=_avgpool_backward_not_divided,
    )
)


def _conv_dx_shifted(model: scratch.Sequential) -> None:
    conv = _layer(model, "conv2", scratch.Conv2D)
    correct = conv._backward

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        correct(dz, False)  # the parameter gradients are right
        if not input_grad:
            return None
        kernel = conv.params["kernel"]  # stride 1, "valid": dx = full correlation, flipped
        kh, kw, _, _ = kernel.shape
        n, ho, wo, f = dz.shape
        g = np.zeros((n, ho + 2 * (kh - 1), wo + 2 * (kw - 1), f), dtype=dz.dtype)
        g[:, kh - 2 : kh - 2 + ho, kw - 2 : kw - 2 + wo] = dz  # off by one: should be kh - 1
        dx, _ = windows.correlate(g, kernel[::-1, ::-1].transpose(0, 1, 3, 2), (1, 1))
        return dx

    _patch(conv, "_backward", _backward)


register(
    Mutant(
        name="conv-dx-shifted-one-pixel",
        description="conv2's input gradient shifted by one pixel up and left (the full-"
        "correlation padding placed at kh - 2 instead of kh - 1); conv2's own gradients are "
        "right, so it is first visible in conv1's kernel gradient, the next parameter "
        "gradient backprop computes (through pool1)",
        layer="conv1",
        apply=_conv_dx_shifted,
    )
)


def _conv_bias_grad_channels_first(model: scratch.Sequential) -> None:
    conv = _layer(model, "conv1", scratch.Conv2D)
    correct = conv._backward

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dx = correct(dz, input_grad)
        # channels-first habit: (F, everything else), then sum over "everything else"
        conv.grads["bias"] = dz.reshape(conv.filters, -1).sum(axis=1)
        return dx

    _patch(conv, "_backward", _backward)


register(
    Mutant(
        name="conv-bias-grad-wrong-axis",
        description="conv1's bias gradient summed over the wrong axis of a channels-first "
        "reshape, dz.reshape(filters, -1).sum(axis=1), instead of "
        "dz.reshape(-1, filters).sum(axis=0); same shape, wrong values",
        layer="conv1",
        apply=_conv_bias_grad_channels_first,
    )
)


# -- training bugs: forward and gradients are right, the learning is not ---------------------
def _learning_rate_twice(optimizer: scratch.SGD) -> None:
    correct = optimizer.apply
    lr = optimizer.learning_rate

    def apply(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        # the gradient arrives already scaled by lr (as a layer's backward "helpfully" did)
        correct(params, {k: g * g.dtype.type(lr) for k, g in grads.items()})

    _patch(optimizer, "apply", apply)


register(
    Mutant(
        name="learning-rate-applied-twice",
        description="the learning rate applied twice: the gradients reach SGD already scaled by "
        "lr, which scales them again (w -= lr * (lr * g)); shows in the parameters after the "
        "first update",
        layer=ANY_PARAMETER,
        step=1,
        optimizer=_learning_rate_twice,
    )
)


def _learning_rate_off_by_one_percent(optimizer: scratch.SGD) -> None:
    _patch(optimizer, "learning_rate", optimizer.learning_rate * 1.01)


register(
    Mutant(
        name="learning-rate-times-1.01",
        description="the learning rate 1% too large (0.0505 for 0.05, a typo or a rounded "
        "constant); shows in the parameters after the first update",
        layer=ANY_PARAMETER,
        step=1,
        optimizer=_learning_rate_off_by_one_percent,
    )
)


def _skip_biases(optimizer: scratch.SGD) -> None:
    correct = optimizer.apply

    def apply(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        # only the kernels are "the weights": the biases keep their initial zeros
        kernels = [k for k in params if k.endswith("/kernel")]
        correct({k: params[k] for k in kernels}, {k: grads[k] for k in kernels})

    _patch(optimizer, "apply", apply)


register(
    Mutant(
        name="optimizer-skips-biases",
        description="SGD updates the kernels only (a loop over the 'weights' that forgets the "
        "biases); the biases stay at their initial values",
        layer="conv1/bias",
        step=1,
        optimizer=_skip_biases,
    )
)


def _dampened_momentum(optimizer: scratch.SGD) -> None:
    mu, lr = optimizer.momentum, optimizer.learning_rate

    def apply(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for key, w in params.items():
            g = grads[key]
            v = optimizer.momentums.setdefault(key, np.zeros_like(w))
            # an exponential moving average of the gradients (Adam's first moment, TF1-style
            # dampening) where Keras accumulates: m = mu * m - lr * g; w += m
            v[...] = v * w.dtype.type(mu) + g * w.dtype.type(1 - mu)
            w -= v * w.dtype.type(lr)
        optimizer.iterations += 1

    _patch(optimizer, "apply", apply)


register(
    Mutant(
        name="momentum-as-moving-average",
        description="momentum accumulated as a moving average, v = mu * v + (1 - mu) * g, "
        "w -= lr * v, instead of Keras's m = mu * m - lr * g, w += m (PyTorch's own form, "
        "v = mu * v + g, w -= lr * v, is the same as Keras's at a constant learning rate and "
        "is not a bug here); needs --momentum 0.9",
        layer=ANY_PARAMETER,
        step=1,
        optimizer=_dampened_momentum,
        settings={"momentum": 0.9},
    )
)


def _nesterov_ignored(optimizer: scratch.SGD) -> None:
    _patch(optimizer, "nesterov", False)


register(
    Mutant(
        name="nesterov-ignored",
        description="nesterov=True accepted but plain momentum applied (w += m instead of "
        "w += mu * m - lr * g: the first update is already (1 + mu) times too small); needs "
        "--momentum 0.9 --nesterov",
        layer=ANY_PARAMETER,
        step=1,
        optimizer=_nesterov_ignored,
        settings={"momentum": 0.9, "nesterov": True},
    )
)


def _legacy_shuffle(n: int, size: int, epochs: int, seed: int) -> list[np.ndarray]:
    rng = np.random.RandomState(seed)  # the legacy generator: same seed, another order
    batches = []
    for _ in range(epochs):
        order = rng.permutation(n)
        batches += [order[i : i + size] for i in range(0, n, size)]
    return batches


register(
    Mutant(
        name="shuffle-differs",
        description="scratch shuffles the training set itself, with the same seed but NumPy's "
        "legacy RandomState, so it sees other batches than Keras from the first step on",
        layer="step loss",
        step=1,
        batches=_legacy_shuffle,
    )
)
