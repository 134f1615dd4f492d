"""A catalogue of realistic implementation bugs, applied to a built scratch model at run time.

Only scratch offers this: the mutants patch scratch's own objects, so they live on scratch's
side of the implementation protocol (:mod:`compare.sides.scratch_side` applies them); the runner
is :mod:`compare.tools.mutants`.

Each :class:`Mutant` patches one scratch model instance (its layers' methods or attributes —
never the source, never other instances) so that it computes what a plausible hand-written bug
would. ``lenet-parity mutants`` runs the parity check on each and reports whether it was caught
and whether the first failing check names the place of the bug; the test suite asserts both.

The catalogue applies to any Sequential model of the layers scratch mirrors, by layer *kind*
and position, never by a model's layer names: each mutant's ``locate`` picks its target in the
model at hand ("the last Conv2D", "the first MaxPooling2D", "every Dropout" ...) and says which
check must fail first there (a :class:`Site`). A mutant whose target the model lacks does not
apply to it, and :meth:`Mutant.check_applicable` refuses it with one line: a check that cannot
show the bug would pass and prove nothing.

Where a bug first shows follows the parity check's data-flow order (forward outputs at
inference, layer by layer; the training-mode loss; the parameter gradients, output layer
first; dloss/dinput; then training, step by step). A forward bug shows in its layer's own
forward check; a bug in a layer's own parameter gradients in that layer's gradient check; a
bug in an input gradient dx, or in a parameterless layer's backward (pooling, dropout,
flatten), in the next parameter gradient backprop computes — the nearest earlier layer with
trainable weights (BatchNormalization's gamma and beta count), or dloss/dinput when there is
none (:func:`gradient_after`). A bug only the training-mode forward sees (dropout's scale)
shows in the loss.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

import numpy as np

import scratch
from compare.errors import InputError
from compare.sides import keras_side
from compare.sides.protocol import LayerSpec, ModelSpec
from scratch import windows
from scratch.layer import Layer
from scratch.windows import Axis

L = TypeVar("L", bound=Layer)

# The parity check's names that are no layer's: the training-mode loss and dloss/dinput.
LOSS: Final = "loss"
INPUT: Final = "input"
# A training bug's expected check when it changes every parameter's update: the first failure
# may be any parameter's check (the one whose float noise is smallest relative to the bug).
ANY_PARAMETER: Final = "any parameter"
STEP_LOSS: Final = "step loss"  # compare.parity.training.STEP_LOSS (parity is a layer above)
# A training bug's run: every one here shows by step 2, and the weights are recorded after
# steps 1 and 10 (compare.parity.training.SNAPSHOT_STEPS), so ten steps show it with its step.
TRAINING_STEPS: Final = 10
# Where the LeNet-5s come from without Keras (scratch's own builder, the same layer names).
LENET5: Final = tuple(sorted(scratch.VARIANTS))
CONVOLUTIONS: Final = ("Conv2D",)
WEIGHTED: Final = ("Conv2D", "Dense")


# -- what a mutant sees of a model: its layers by kind --------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerView:
    """One layer as the catalogue chooses targets: its kind (Keras's class name), settings
    and trainable weights, read alike off a scratch layer or a spec's layer (Keras config)."""

    name: str
    kind: str
    activation: str = "linear"
    trainable: tuple[str, ...] = ()  # trainable weights in order: kernel, bias / gamma, beta
    penalties: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    kernel_size: tuple[int, int] | None = None  # Conv2D's kernel, a pooling layer's window
    strides: tuple[int, int] | None = None
    dilation: tuple[int, int] = (1, 1)
    padding: str | None = None
    use_bias: bool | None = None
    rate: float | None = None  # Dropout's

    @property
    def pads_before(self) -> bool:
        """Whether a "same" layer puts padding before (above/left of) its input."""
        if self.padding != "same" or self.kernel_size is None or len(self.input_shape) != 3:
            return False
        strides = self.strides or (1, 1)
        return any(
            windows.same_or_valid(size, (k - 1) * d + 1, s, "same").before > 0
            for size, k, d, s in zip(
                self.input_shape[:2], self.kernel_size, self.dilation, strides, strict=True
            )
        )

    def l2(self, param: str) -> float:
        return self.penalties.get(param, (0.0, 0.0))[1]


def _pair(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    a, b = list(value)  # type: ignore[call-overload]
    return int(a), int(b)


def _scratch_view(layer: Layer) -> LayerView:
    kind = type(layer).__name__
    pooling = isinstance(layer, (scratch.AveragePooling2D, scratch.MaxPooling2D))
    return LayerView(
        name=layer.name,
        kind=kind,
        activation=layer.activation.name,
        trainable=tuple(layer.params),
        penalties={
            key: (reg.l1, reg.l2) for key, reg in layer.regularizers.items() if key in layer.params
        },
        input_shape=tuple(layer.input_shape),
        output_shape=tuple(layer.output_shape),
        kernel_size=_pair(getattr(layer, "pool_size" if pooling else "kernel_size", None)),
        strides=_pair(getattr(layer, "strides", None)),
        dilation=_pair(getattr(layer, "dilation_rate", None)) or (1, 1),
        padding=getattr(layer, "padding", None),
        use_bias=getattr(layer, "use_bias", None),
        rate=getattr(layer, "rate", None),
    )


_PENALTY_OPTIONS: Final = (
    ("kernel", "kernel_regularizer"),
    ("bias", "bias_regularizer"),
    ("gamma", "gamma_regularizer"),
    ("beta", "beta_regularizer"),
)


def _spec_view(layer: LayerSpec) -> LayerView:
    c = layer.config
    trainable = tuple(w for w in layer.weights if not w.startswith("moving_"))
    penalties = {}
    for param, option in _PENALTY_OPTIONS:
        if param in trainable and c.get(option) is not None:
            try:
                reg = scratch.regularizers.get(c[option])
            except ValueError:  # scratch's mirror refuses it with its own line
                continue
            if reg is not None:
                penalties[param] = (reg.l1, reg.l2)
    pooling = layer.class_name in ("AveragePooling2D", "MaxPooling2D")
    window = _pair(c.get("pool_size" if pooling else "kernel_size"))
    padding = c.get("padding")
    return LayerView(
        name=layer.name,
        kind=layer.class_name,
        activation=layer.activation,
        trainable=trainable,
        penalties=penalties,
        input_shape=tuple(layer.input_shape),
        output_shape=tuple(layer.output_shape),
        kernel_size=window,
        strides=_pair(c.get("strides")) or (window if pooling else None),
        dilation=_pair(c.get("dilation_rate")) or (1, 1),
        padding=padding.lower() if isinstance(padding, str) else None,
        use_bias=c.get("use_bias"),
        rate=c.get("rate"),
    )


Model = scratch.Sequential | ModelSpec | Sequence[LayerView]


def layer_views(model: Model) -> tuple[LayerView, ...]:
    """The layers of a built scratch model, of a :class:`ModelSpec`, or views already made."""
    if isinstance(model, scratch.Sequential):
        return tuple(_scratch_view(layer) for layer in model.layers)
    if isinstance(model, ModelSpec):
        return tuple(_spec_view(layer) for layer in model.layers)
    return tuple(model)


def model_for(source: str, config: Any = None) -> Model:
    """What the catalogue reads of the model ``source`` names: a LeNet-5 from scratch's own
    builder (no Keras needed), any other model's spec from the reference (imports Keras), in
    ``config``'s dtype. Only the layers are read: the recipe in the spec is a placeholder."""
    if source in LENET5:
        return scratch.build_lenet5(source, dtype="float64")
    return keras_side.model_spec(
        source,
        getattr(config, "dtype", "float64"),
        keras_side.backend_module(),
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        seed=getattr(config, "seed", 0),
        batch_size=32,
    )


def _model_name(model: Model) -> str:
    return str(getattr(model, "name", "given"))


# -- where a bug first shows -------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Site:
    """Where a mutant acts on one model and where it must first show there."""

    layers: tuple[str, ...]  # the layers it patches, in order (none: the loss or optimiser)
    expected: str  # what the first failing check names: a layer, "loss", "input", or a
    # training check ("step loss", "conv1/bias", ANY_PARAMETER)


Locate = Callable[[tuple[LayerView, ...]], Site | None]


def gradient_after(layers: Sequence[LayerView], index: int) -> str:
    """The check that first sees a wrong input gradient of layer ``index`` (or a wrong backward
    of a parameterless layer there): the next parameter gradient backprop computes, the nearest
    earlier layer with trainable weights; dloss/dinput ("input") when there is none."""
    for layer in reversed(layers[:index]):
        if layer.trainable:
            return layer.name
    return INPUT


def output_layer(layers: Sequence[LayerView]) -> str:
    """The first gradient backprop computes: the last layer with trainable weights."""
    return next((la.name for la in reversed(layers) if la.trainable), INPUT)


def _first(layers: Sequence[LayerView], test: Callable[[LayerView], bool]) -> int | None:
    return next((i for i, la in enumerate(layers) if test(la)), None)


def _last(layers: Sequence[LayerView], test: Callable[[LayerView], bool]) -> int | None:
    return next((i for i in range(len(layers) - 1, -1, -1) if test(layers[i])), None)


def _hidden_dense(layers: Sequence[LayerView]) -> Callable[[LayerView], bool]:
    """A Dense that is not the output layer (the last one with weights)."""
    out = output_layer(layers)
    return lambda la: la.kind == "Dense" and la.name != out


def _own(layers: Sequence[LayerView], index: int | None) -> Site | None:
    """The layer ``index``, its own check first (forward, or its own parameter gradient)."""
    return None if index is None else Site((layers[index].name,), layers[index].name)


def _behind(layers: Sequence[LayerView], index: int | None) -> Site | None:
    """The layer ``index``, first seen by the next parameter gradient backprop computes."""
    return None if index is None else Site((layers[index].name,), gradient_after(layers, index))


# -- the mutant ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Mutant:
    """One deliberate bug. A model bug patches the scratch model (``apply``); a training bug
    patches the scratch side's optimiser (``optimizer``) or reorders its batches (``batches``:
    the training set's size, the batch size, the epochs and the seed in, the batches scratch
    trains on out) — or is a model patch that only training shows (``step`` set).
    ``settings`` are check settings the bug needs in order to show at all (e.g. a momentum).

    ``locate`` picks the target in a model by kind and position and names the check that must
    fail first there (:class:`Site`), None where the model has no target; ``layer`` then says
    the target in words (for listings) and ``requires`` what a model needs. Without ``locate``
    (a one-off mutant) ``layer`` is the expected check's name on any model."""

    name: str
    description: str
    layer: str  # the target in words; a one-off mutant's expected check name
    apply: Callable[[scratch.Sequential], None] | None = None
    # Whether the bug is larger than float32 noise, so float32 must catch it too.
    float32: bool = True
    optimizer: Callable[[scratch.SGD], None] | None = None
    batches: Callable[[int, int, int, int], list[np.ndarray]] | None = None
    settings: Mapping[str, float | bool] = dataclasses.field(default_factory=dict)
    step: int | None = None  # a training bug: the training step where it must first show
    locate: Locate | None = None
    requires: str = ""  # what a model needs for the bug to show, in words
    shows: str = ""  # where it must first show, in words

    @property
    def trains(self) -> bool:
        """Whether only training can show this bug."""
        return self.apply is None or self.step is not None

    def site(self, model: Model, name: str | None = None) -> Site:
        """Where this bug acts on ``model`` (a built scratch model, a spec or layer views) and
        the check that must fail first there; InputError when it does not apply."""
        if self.locate is None:
            return Site((), self.layer)
        found = self.locate(layer_views(model))
        if found is None:
            raise InputError(
                f"mutant {self.name!r} does not apply to the {name or _model_name(model)} "
                f"model: it needs {self.requires}"
            )
        return found

    def applies_to(self, model: Model) -> bool:
        return self.locate is None or self.locate(layer_views(model)) is not None

    def expected(self, model: Model) -> str:
        """The name the first failing check must carry on ``model``."""
        return self.site(model).expected

    def check_applicable(self, config: Any, model: Model | None = None) -> None:
        """Fail early when ``config`` cannot show this bug (a model without its target, no
        training, or a setting off): a check that cannot show the bug would PASS and prove
        nothing. ``model``: the model checked (a scratch model or its spec); by default the
        one ``config.model`` names (:func:`model_for`)."""
        if self.locate is not None:
            self.site(model_for(config.model, config) if model is None else model, config.model)
        if self.trains and not config.trains:
            raise InputError(f"mutant {self.name!r} shows only in training: use --epochs >= 1")
        for key, value in self.settings.items():
            if getattr(config, key) != value:
                raise InputError(
                    f"mutant {self.name!r} shows only with {key}={value!r}; "
                    f"received {key}={getattr(config, key)!r}"
                )

    def check_options(self, epochs: int | None = None) -> dict[str, Any]:
        """The check's options that show this bug: no training for a model bug (its first
        failure comes before it), :data:`TRAINING_STEPS` steps for a training bug, its
        settings; ``epochs`` replaces the training length."""
        length: dict[str, Any] = {"epochs": 0}
        if epochs is not None:
            length = {"epochs": epochs}
        elif self.trains:
            length = {"steps": max(TRAINING_STEPS, self.step or 1)}
        return {**length, **self.settings}


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


def localised(mutant: Mutant, first: Any, model: Model | Site | None = None) -> bool:
    """Whether the first failing check (a :class:`~compare.judge.checks.Check` or None) names
    the bug on ``model`` (its :class:`Site`, or the model to locate it in; a one-off mutant
    needs none): the expected layer, "loss" or "input" for a model bug; for a training bug,
    the expected training check (or any parameter's, for :data:`ANY_PARAMETER`) at the step
    where it must first show."""
    if first is None:
        return False
    if isinstance(model, Site):
        expected = model.expected
    elif model is None:
        if mutant.locate is not None:
            raise ValueError(f"mutant {mutant.name!r} needs the model to say where it shows")
        expected = mutant.layer
    else:
        expected = mutant.expected(model)
    if mutant.trains:
        named = first.name == expected or (expected == ANY_PARAMETER and "/" in first.name)
        return bool(first.kind == "training" and named and first.step == mutant.step)
    return failure_layer(first.name) == expected


def _located(
    locate: Locate, patch: Callable[[scratch.Sequential, Site], None], name: str
) -> Callable[[scratch.Sequential], None]:
    """``apply`` for a catalogued model bug: find the site in the model, then patch it."""

    def apply(model: scratch.Sequential) -> None:
        site = locate(layer_views(model))
        if site is None:
            raise InputError(f"mutant {name!r} does not apply to the {model.name} model")
        patch(model, site)

    return apply


def _model_bug(
    name: str,
    description: str,
    *,
    target: str,
    requires: str,
    shows: str,
    locate: Locate,
    patch: Callable[[scratch.Sequential, Site], None],
    **extra: Any,
) -> Mutant:
    return register(
        Mutant(
            name=name,
            description=description,
            layer=target,
            apply=_located(locate, patch, name),
            locate=locate,
            requires=requires,
            shows=shows,
            **extra,
        )
    )


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


# -- the catalogue: model bugs ------------------------------------------------------------------
# Listed as on the LeNet-5s, in data-flow order of where each bug first shows there; then the
# bugs of the layer kinds the LeNet-5s lack; then the bugs only training shows.
def _same_padding_all_after(model: scratch.Sequential, site: Site) -> None:
    conv = _layer(model, site.layers[0], scratch.Conv2D)
    # The "same" plan written as `Axis(out, 0, k - 1)`: all the padding at the bottom/right,
    # as np.pad(x, ((0, 0), (0, k - 1), (0, k - 1), (0, 0))) does, instead of split in two.
    # Forward pads and backward crops with the plan, so the layer stays self-consistent.
    rows, cols = conv._rows, conv._cols
    _patch(conv, "_rows", Axis(rows.out, 0, rows.before + rows.after))
    _patch(conv, "_cols", Axis(cols.out, 0, cols.before + cols.after))


_model_bug(
    name="same-padding-bottom-right",
    description='the first "same" Conv2D\'s padding put entirely at the bottom/right (for '
    "a 5x5 kernel 0 before and 4 after, as np.pad(x, ((0, 0), (0, 4), (0, 4), (0, 0))) "
    "would) instead of split between both sides: the output is shifted (classic conv1; "
    'keras-docs conv1 is "valid")',
    target='the first Conv2D with "same" padding',
    requires='a Conv2D with "same" padding before its input',
    shows="its own forward check",
    locate=lambda ls: _own(ls, _first(ls, lambda la: la.kind == "Conv2D" and la.pads_before)),
    patch=_same_padding_all_after,
)


def _true_convolution(model: scratch.Sequential, site: Site) -> None:
    conv = _layer(model, site.layers[0], scratch.Conv2D)
    dilated, correct = conv._dilated, conv._backward

    def _flipped(kernel: np.ndarray) -> np.ndarray:
        # "convolution" from the textbook: the kernel flipped in H and W (scipy.signal.convolve)
        return dilated(np.ascontiguousarray(kernel[::-1, ::-1]))

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        # ... and a backward pass consistent with it: finite differences agree, Keras does not.
        # The layer's gradient is the flipped kernel's: flip it back to the kernel's taps.
        dx = correct(dz, input_grad)
        conv.grads["kernel"] = np.ascontiguousarray(conv.grads["kernel"][::-1, ::-1])
        return dx

    _patch(conv, "_dilated", _flipped)
    _patch(conv, "_backward", _backward)


_model_bug(
    name="conv-flipped-kernel",
    description="the last Conv2D computes a true convolution (kernel flipped in H and W) "
    "instead of Keras's cross-correlation, with a backward pass consistent with it, so only "
    "the comparison with Keras can see it (conv2 on the LeNet-5s)",
    target="the last Conv2D",
    requires="a Conv2D with a kernel larger than 1x1",
    shows="its own forward check",
    locate=lambda ls: _own(
        ls, _last(ls, lambda la: la.kind == "Conv2D" and la.kernel_size not in (None, (1, 1)))
    ),
    patch=_true_convolution,
)


def _forward_relative_error(model: scratch.Sequential, site: Site) -> None:
    dense = _layer(model, site.layers[0], scratch.Dense)
    correct = dense._forward

    def _forward(x: np.ndarray, training: bool) -> np.ndarray:
        return correct(x, training) * (1 + 1e-4)

    _patch(dense, "_forward", _forward)


_model_bug(
    name="fc1-forward-off-1e-4",
    description="the first hidden Dense's pre-activation output 1e-4 too large (relative): "
    "the stand-in for a small systematic forward error such as a constant rounded to four "
    "digits; the smallest forward bug the tolerances are meant to catch (fc1 wherever there "
    "is one)",
    target="the first hidden Dense (not the output layer)",
    requires="a Dense before the output layer",
    shows="its own forward check",
    locate=lambda ls: _own(ls, _first(ls, _hidden_dense(ls))),
    patch=_forward_relative_error,
)


def _flatten_nchw(model: scratch.Sequential, site: Site) -> None:
    flatten = _layer(model, site.layers[0], scratch.Flatten)

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


def _flattens_images(layer: LayerView) -> bool:
    shape = layer.input_shape
    return layer.kind == "Flatten" and len(shape) == 3 and shape[2] > 1 and shape[0] * shape[1] > 1


_model_bug(
    name="flatten-nchw",
    description="Flatten in channels-first (NCHW) order, as PyTorch flattens, instead of "
    "Keras's channels-last order (backward consistent with it): the next layer sees its "
    "inputs permuted",
    target="the first Flatten of a multi-channel image",
    requires="a Flatten of an image with more than one channel",
    shows="its own forward check",
    locate=lambda ls: _own(ls, _first(ls, _flattens_images)),
    patch=_flatten_nchw,
)


def _loss_gradient_not_averaged(model: scratch.Sequential, site: Site) -> None:
    correct = model.compute_loss

    def compute_loss(y_onehot: np.ndarray) -> tuple[np.floating, np.ndarray]:
        loss, dloss = correct(y_onehot)
        # the loss is the batch mean, but its gradient is the one of the sum: no / N
        return loss, dloss * y_onehot.shape[0]

    _patch(model, "compute_loss", compute_loss)


_model_bug(
    name="loss-grad-missing-1-over-n",
    description="the loss is the batch mean but its gradient lacks the 1/N (the gradient "
    "of the summed loss); the loss value is right, so the first failure is the first "
    "gradient computed from it, the output layer's kernel",
    target="the loss",
    requires="nothing",
    shows="the first gradient backprop computes (the last layer with weights)",
    locate=lambda ls: Site((), output_layer(ls)),
    patch=_loss_gradient_not_averaged,
)


def _relu_mask_from_gradient(model: scratch.Sequential, site: Site) -> None:
    dense = _layer(model, site.layers[0], scratch.Dense)

    def relu_backward(dout: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dout * (dout > 0)  # the mask of the upstream gradient, not of z

    _patch(dense, "activation", dataclasses.replace(dense.activation, backward=relu_backward))


_model_bug(
    name="relu-mask-from-gradient",
    description="the last relu Dense's relu backward masks with the upstream gradient "
    "(dout * (dout > 0), i.e. relu applied to the gradient) instead of with its "
    "pre-activation (z > 0): first visible in that layer's own kernel gradient (fc2 on "
    "keras-docs; classic uses tanh)",
    target="the last Dense with a relu activation",
    requires="a Dense with a relu activation",
    shows="its own kernel gradient",
    locate=lambda ls: _own(
        ls, _last(ls, lambda la: la.kind == "Dense" and la.activation == "relu")
    ),
    patch=_relu_mask_from_gradient,
)


def _after_activated_dense(layers: tuple[LayerView, ...]) -> Site | None:
    """The first Dense fed directly by a Dense with a non-linear activation (z != a)."""
    for before, layer in itertools.pairwise(layers):
        if layer.kind == "Dense" and before.kind == "Dense" and before.activation != "linear":
            return Site((before.name, layer.name), layer.name)
    return None


def _kernel_grad_from_preactivation(model: scratch.Sequential, site: Site) -> None:
    before = _layer(model, site.layers[0], scratch.Dense)
    dense = _layer(model, site.layers[1], scratch.Dense)
    correct = dense._backward

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dx = correct(dz, input_grad)
        # dW2 = z1.T @ dz2 where it should be a1.T @ dz2 (the input after its activation)
        dense.grads["kernel"] = before.preactivation.T @ dz
        return dx

    _patch(dense, "_backward", _backward)


_model_bug(
    name="dense-kernel-grad-from-preactivation",
    description="a Dense's kernel gradient computed from the previous Dense's pre-activation "
    "z1 instead of its activation a1 (dW2 = z1.T @ dz2, the classic mix-up of cached z and a; "
    "fc2 from fc1 on the LeNet-5s)",
    target="the first Dense fed by a Dense with an activation",
    requires="a Dense directly after a Dense with a non-linear activation",
    shows="its own kernel gradient",
    locate=_after_activated_dense,
    patch=_kernel_grad_from_preactivation,
)


def _tanh_derivative_one_minus_y(model: scratch.Sequential, site: Site) -> None:
    dense = _layer(model, site.layers[0], scratch.Dense)

    def tanh_backward(dout: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return dout * (1 - y)  # should be 1 - y**2

    _patch(dense, "activation", dataclasses.replace(dense.activation, backward=tanh_backward))


_model_bug(
    name="tanh-derivative-1-minus-y",
    description="the first tanh Dense's tanh derivative written 1 - y instead of 1 - y**2: "
    "first visible in its own kernel gradient (fc1 on classic; keras-docs uses relu)",
    target="the first Dense with a tanh activation",
    requires="a Dense with a tanh activation",
    shows="its own kernel gradient",
    locate=lambda ls: _own(
        ls, _first(ls, lambda la: la.kind == "Dense" and la.activation == "tanh")
    ),
    patch=_tanh_derivative_one_minus_y,
)


def _gradient_scaled(model: scratch.Sequential, site: Site) -> None:
    dense = _layer(model, site.layers[0], scratch.Dense)
    correct = dense._backward

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dx = correct(dz, input_grad)
        dense.grads["kernel"] = dense.grads["kernel"] * 1.001
        return dx

    _patch(dense, "_backward", _backward)


_model_bug(
    name="fc1-kernel-grad-scaled-1.001",
    description="the first hidden Dense's kernel gradient 0.1% too large (x 1.001), e.g. a "
    "stray factor left from debugging: the smallest gradient bug the tolerances are meant to "
    "catch (fc1 wherever there is one)",
    target="the first hidden Dense (not the output layer)",
    requires="a Dense before the output layer",
    shows="its own kernel gradient",
    locate=lambda ls: _own(ls, _first(ls, _hidden_dense(ls))),
    patch=_gradient_scaled,
)


def _avgpool_backward_not_divided(model: scratch.Sequential, site: Site) -> None:
    pool = _layer(model, site.layers[0], scratch.AveragePooling2D)

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        pool.grads = {}
        if not input_grad:
            return None
        kh, kw = pool.pool_size
        # every cell of a window gets the whole output gradient: missing `/ self._count`
        dwin = np.broadcast_to(dz[:, :, :, None, None, :], (*dz.shape[:3], kh, kw, dz.shape[3]))
        return pool._scatter(dwin)

    _patch(pool, "_backward", _backward)


_model_bug(
    name="avgpool-backward-not-divided",
    description="the last AveragePooling2D's backward spreads the output gradient to every "
    "cell of its window without dividing by the window size (4x too large for 2x2); pooling "
    "has no parameters, so it is first visible in the next parameter gradient backprop "
    "computes (pool2 → conv2 on the LeNet-5s)",
    target="the last AveragePooling2D",
    requires="an AveragePooling2D with a window larger than 1x1",
    shows="the next parameter gradient backprop computes",
    locate=lambda ls: _behind(
        ls,
        _last(
            ls,
            lambda la: la.kind == "AveragePooling2D" and math.prod(la.kernel_size or (1,)) > 1,
        ),
    ),
    patch=_avgpool_backward_not_divided,
)


def _conv_dx_shifted(model: scratch.Sequential, site: Site) -> None:
    conv = _layer(model, site.layers[0], scratch.Conv2D)
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


def _plain_valid_conv(layer: LayerView) -> bool:
    k = layer.kernel_size or (1, 1)
    return (
        layer.kind == "Conv2D"
        and layer.padding == "valid"
        and (layer.strides or (1, 1)) == (1, 1)
        and layer.dilation == (1, 1)
        and min(k) > 1
    )


_model_bug(
    name="conv-dx-shifted-one-pixel",
    description='the last plain (stride 1, undilated, "valid") Conv2D\'s input gradient '
    "shifted by one pixel up and left (the full-correlation padding placed at kh - 2 instead "
    "of kh - 1); its own gradients are right, so it is first visible in the next parameter "
    "gradient backprop computes, or in dloss/dinput for a first layer (conv2 → conv1 on the "
    "LeNet-5s, through pool1)",
    target='the last Conv2D with stride 1, no dilation and "valid" padding',
    requires='a Conv2D with stride 1, no dilation, "valid" padding and a kernel of at least 2x2',
    shows="the next parameter gradient backprop computes (dloss/dinput for a first layer)",
    locate=lambda ls: _behind(ls, _last(ls, _plain_valid_conv)),
    patch=_conv_dx_shifted,
)


def _conv_bias_grad_channels_first(model: scratch.Sequential, site: Site) -> None:
    conv = _layer(model, site.layers[0], scratch.Conv2D)
    correct = conv._backward

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        dx = correct(dz, input_grad)
        # channels-first habit: (F, everything else), then sum over "everything else"
        conv.grads["bias"] = dz.reshape(conv.filters, -1).sum(axis=1)
        return dx

    _patch(conv, "_backward", _backward)


_model_bug(
    name="conv-bias-grad-wrong-axis",
    description="the first biased Conv2D's bias gradient summed over the wrong axis of a "
    "channels-first reshape, dz.reshape(filters, -1).sum(axis=1), instead of "
    "dz.reshape(-1, filters).sum(axis=0); same shape, wrong values (conv1 on the LeNet-5s)",
    target="the first Conv2D with a bias",
    requires="a Conv2D with a bias and more than one filter",
    shows="its own bias gradient",
    locate=lambda ls: _own(
        ls,
        _first(
            ls,
            lambda la: la.kind == "Conv2D" and "bias" in la.trainable and la.output_shape[-1] > 1,
        ),
    ),
    patch=_conv_bias_grad_channels_first,
)


# -- model bugs of the layer kinds the LeNet-5s lack ------------------------------------------
def _maxpool_argmax_transposed(model: scratch.Sequential, site: Site) -> None:
    pool = _layer(model, site.layers[0], scratch.MaxPooling2D)

    def _backward(dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
        pool.grads = {}
        if not input_grad:
            return None
        n, ho, wo, c = dz.shape
        k, _ = pool.pool_size
        # the argmax's flat index into the window decoded column-first: r, c = idx % k,
        # idx // k instead of divmod(idx, k), i.e. the cell mirrored across the diagonal
        idx = pool._argmax
        swapped = (idx % k) * k + idx // k
        dwin = np.zeros((n, ho, wo, k * k, c), dtype=dz.dtype)
        np.put_along_axis(dwin, swapped, dz[:, :, :, None, :], axis=3)
        return pool._scatter(dwin.reshape(n, ho, wo, k, k, c))

    _patch(pool, "_backward", _backward)


def _square_maxpool(layer: LayerView) -> bool:
    k = layer.kernel_size or (1, 1)
    return layer.kind == "MaxPooling2D" and k[0] == k[1] > 1


_model_bug(
    name="maxpool-argmax-row-col-swapped",
    description="the first MaxPooling2D's backward decodes the argmax's flat index into its "
    "window column-first (row, col = idx % k, idx // k instead of divmod(idx, k)), so the "
    "gradient goes to the cell mirrored across the window's diagonal; the forward is right, "
    "pooling has no parameters: first visible in the next parameter gradient backprop "
    "computes (pool1 → conv1 on seed000-cnn and cs231n-3layer)",
    target="the first MaxPooling2D with a square window",
    requires="a MaxPooling2D with a square window larger than 1x1",
    shows="the next parameter gradient backprop computes",
    locate=lambda ls: _behind(ls, _first(ls, _square_maxpool)),
    patch=_maxpool_argmax_transposed,
)


def _dropouts(layers: tuple[LayerView, ...]) -> list[int]:
    """Every Dropout that drops something and keeps something (0 < rate < 1)."""
    return [i for i, la in enumerate(layers) if la.kind == "Dropout" and 0 < (la.rate or 0.0) < 1]


def _dropout_backward_unscaled(model: scratch.Sequential, site: Site) -> None:
    for name in site.layers:
        layer = _layer(model, name, scratch.Dropout)
        correct = layer._backward

        def _backward(
            dz: np.ndarray,
            input_grad: bool,
            layer: scratch.Dropout = layer,
            correct: Callable[..., np.ndarray | None] = correct,
        ) -> np.ndarray | None:
            if not input_grad or layer._keep is None or layer._zeros:
                return correct(dz, input_grad)
            # the forward keeps and scales by 1 / (1 - rate); the backward only keeps
            layer.grads = {}
            return np.where(layer._keep, dz, layer.dtype.type(0))

        _patch(layer, "_backward", _backward)


def _every_dropout(layers: tuple[LayerView, ...], expected: str | None = None) -> Site | None:
    """Every Dropout, first seen at ``expected``, by default by the next parameter gradient
    backprop computes after the last one (whose bug reaches backprop first)."""
    found = _dropouts(layers)
    if not found:
        return None
    names = tuple(layers[i].name for i in found)
    return Site(names, expected or gradient_after(layers, found[-1]))


_model_bug(
    name="dropout-backward-missing-scale",
    description="every Dropout's backward applies the keep mask but not the 1/(1 - rate) "
    "scale its forward applied in training (dx = dout * mask, the mask stored as booleans); "
    "the forward is right, so it is first visible in the next parameter gradient backprop "
    "computes after the last Dropout (fc2 on lenet5-bn-dropout)",
    target="every Dropout",
    requires="a Dropout with 0 < rate < 1",
    shows="the next parameter gradient backprop computes after the last Dropout",
    locate=_every_dropout,
    patch=_dropout_backward_unscaled,
)


def _dropout_not_rescaled(model: scratch.Sequential, site: Site) -> None:
    for name in site.layers:
        layer = _layer(model, name, scratch.Dropout)
        correct = layer._forward

        def _forward(
            x: np.ndarray,
            training: bool,
            layer: scratch.Dropout = layer,
            correct: Callable[[np.ndarray, bool], np.ndarray] = correct,
        ) -> np.ndarray:
            y = correct(x, training)
            if layer._keep is None:  # inference, rate 0 or rate 1: nothing to scale
                return y
            # the units dropped, the kept ones not scaled up: the backward (which uses the
            # layer's factor) consistent with it, so finite differences agree
            layer._factor = layer.dtype.type(1)
            return np.where(layer._keep, x, layer.dtype.type(0))

        _patch(layer, "_forward", _forward)


_model_bug(
    name="dropout-not-rescaled",
    description="every Dropout drops units in training but does not scale the kept ones by "
    "1/(1 - rate) (the 'vanilla' dropout of the original paper, which rescales at inference "
    "instead), backward consistent with it: the inference forward is the identity either way, "
    "so it is first visible in the training-mode loss",
    target="every Dropout",
    requires="a Dropout with 0 < rate < 1",
    shows="the loss (the first check computed in training mode)",
    locate=lambda ls: _every_dropout(ls, LOSS),
    patch=_dropout_not_rescaled,
)


def _batch_norms(layers: tuple[LayerView, ...]) -> list[int]:
    return [i for i, la in enumerate(layers) if la.kind == "BatchNormalization"]


def _batchnorm_backward_constant_statistics(model: scratch.Sequential, site: Site) -> None:
    for name in site.layers:
        layer = _layer(model, name, scratch.BatchNormalization)
        correct = layer._backward

        def _backward(
            dz: np.ndarray,
            input_grad: bool,
            layer: scratch.BatchNormalization = layer,
            correct: Callable[..., np.ndarray | None] = correct,
        ) -> np.ndarray | None:
            correct(dz, False)  # gamma's and beta's gradients are right
            if not input_grad:
                return None
            assert layer._cache is not None
            inv = layer._cache[3]  # gamma / sqrt(var + epsilon)
            # the batch mean and variance treated as constants, as at inference: the two
            # terms through mean(x) and var(x) are missing
            return dz * inv

        _patch(layer, "_backward", _backward)


def _every_batch_norm_behind(layers: tuple[LayerView, ...]) -> Site | None:
    found = _batch_norms(layers)
    if not found:
        return None
    return Site(tuple(layers[i].name for i in found), gradient_after(layers, found[-1]))


_model_bug(
    name="batchnorm-backward-stats-constant",
    description="every BatchNormalization's training backward treats the batch mean and "
    "variance as constants (dx = dout * gamma / sqrt(var + eps), the inference formula), "
    "leaving out the terms through mean(x) and var(x); gamma's and beta's gradients are "
    "right, so it is first visible in the next parameter gradient backprop computes after "
    "the last BatchNormalization (bn2 → conv2 on lenet5-bn-dropout)",
    target="every BatchNormalization",
    requires="a BatchNormalization",
    shows="the next parameter gradient backprop computes after the last BatchNormalization",
    locate=_every_batch_norm_behind,
    patch=_batchnorm_backward_constant_statistics,
)


class _L2GradientWithoutTwo(scratch.L1L2):
    """A penalty whose L2 gradient is written l2 · w: the derivative of l2 · w² without its 2
    (the form of cs231n's 0.5 · reg · w², whose gradient is reg · w, kept with Keras's l2)."""

    def gradient(self, w: np.ndarray) -> np.ndarray:
        t = w.dtype.type
        grad = t(self.l2) * w
        if self.l1 != 0.0:
            grad = t(self.l1) * np.sign(w) + grad
        return grad


def _l2_gradient_missing_two(model: scratch.Sequential, site: Site) -> None:
    for name in site.layers:
        layer = model.get_layer(name)
        for key, reg in list(layer.regularizers.items()):
            if reg.l2 != 0.0:
                layer.regularizers[key] = _L2GradientWithoutTwo(l1=reg.l1, l2=reg.l2)


def _l2_penalised(layers: tuple[LayerView, ...]) -> Site | None:
    found = [la.name for la in layers if any(la.l2(p) > 0 for p in la.trainable)]
    if not found:
        return None  # backprop order: the last penalised layer's gradient is checked first
    return Site(tuple(found), found[-1])


_model_bug(
    name="l2-gradient-missing-factor-2",
    description="every L2 penalty's gradient written l2 * w instead of 2 * l2 * w (the "
    "derivative of 0.5 * reg * w**2, cs231n's form, kept with Keras's l2 * w**2); the loss is "
    "right, so it is first visible in the first penalised gradient backprop computes (the "
    "output layer's kernel on cs231n-3layer)",
    target="every weight with an L2 regularizer",
    requires="a weight with an L2 (or L1L2 with l2 > 0) regularizer",
    shows="the gradient of the last layer with an L2-penalised weight",
    locate=_l2_penalised,
    patch=_l2_gradient_missing_two,
)


def _penalty_left_out_of_loss(model: scratch.Sequential, site: Site) -> None:
    # the compiled loss only: Keras's `model.losses` (the penalties) never added to it; the
    # backward pass still adds each penalty's gradient to its weight's
    _patch(model, "regularization_losses", lambda: [])


def _penalised(layers: tuple[LayerView, ...]) -> Site | None:
    found = tuple(la.name for la in layers if la.penalties)
    return Site(found, LOSS) if found else None


_model_bug(
    name="regularization-left-out-of-loss",
    description="the weight penalties left out of the loss (only the cross-entropy, as if "
    "model.losses were forgotten) but kept in the gradients: first visible in the loss",
    target="the loss of a model with regularizers",
    requires="a weight with a regularizer",
    shows="the loss",
    locate=_penalised,
    patch=_penalty_left_out_of_loss,
)


# -- model bugs only training shows ---------------------------------------------------------------
def _batchnorm_momentum_swapped(model: scratch.Sequential, site: Site) -> None:
    for name in site.layers:
        layer = _layer(model, name, scratch.BatchNormalization)
        correct = layer._forward

        def _forward(
            x: np.ndarray,
            training: bool,
            layer: scratch.BatchNormalization = layer,
            correct: Callable[[np.ndarray, bool], np.ndarray] = correct,
        ) -> np.ndarray:
            if not training:
                return correct(x, training)
            before = {key: w.copy() for key, w in layer.state.items()}
            y = correct(x, training)
            axes = tuple(range(x.ndim - 1))
            mean = x.mean(axis=axes)
            var = np.square(x - mean).mean(axis=axes)
            m = layer.momentum
            # PyTorch's convention, moving = (1 - m) * moving + m * batch, with Keras's m
            for key, batch in (("moving_mean", mean), ("moving_variance", var)):
                layer.state[key][...] = before[key] * (1.0 - m) + batch * m
            return y

        _patch(layer, "_forward", _forward)


def _first_moving_mean(layers: tuple[LayerView, ...]) -> Site | None:
    found = _batch_norms(layers)
    if not found:
        return None
    return Site(tuple(layers[i].name for i in found), f"{layers[found[0]].name}/moving_mean")


_model_bug(
    name="batchnorm-momentum-swapped",
    description="every BatchNormalization updates its moving statistics in PyTorch's "
    "convention with Keras's momentum, moving = (1 - momentum) * moving + momentum * batch "
    "(0.01 * moving + 0.99 * batch), instead of Keras's moving * momentum + batch * (1 - "
    "momentum); normalisation in training uses the batch's statistics, so only the moving "
    "statistics after the first update show it",
    target="every BatchNormalization",
    requires="a BatchNormalization",
    shows="the first BatchNormalization's moving_mean after step 1",
    locate=_first_moving_mean,
    patch=_batchnorm_momentum_swapped,
    step=1,
)


def _use_bias_ignored(model: scratch.Sequential, site: Site) -> None:
    layer = model.get_layer(site.layers[0])
    assert isinstance(layer, (scratch.Conv2D, scratch.Dense)), type(layer)
    units = layer.filters if isinstance(layer, scratch.Conv2D) else layer.units
    # use_bias=False ignored: the layer creates a (zero) bias, adds it and trains it ...
    _patch(layer, "use_bias", True)
    layer.params["bias"] = np.zeros(units, dtype=layer.dtype)
    key = f"{layer.name}/bias"
    correct_get, correct_set = model.get_weights, model.set_weights
    correct_grads = model.loss_and_all_gradients

    # ... while the model's weight I/O goes by the reference's list of weights, which has no
    # such bias: it is neither reported nor loaded, and its gradient never leaves the model
    def hidden(call: Callable[[], Any]) -> Any:
        bias = layer.params.pop("bias")
        try:
            return call()
        finally:
            layer.params["bias"] = bias

    def _get_weights() -> dict[str, np.ndarray]:
        return {k: v for k, v in correct_get().items() if k != key}

    def _set_weights(weights: dict[str, np.ndarray]) -> None:
        hidden(lambda: correct_set(weights))

    def _loss_and_all_gradients(
        x: np.ndarray, y_onehot: np.ndarray, *, training: bool = True
    ) -> tuple[np.floating, dict[str, np.ndarray], np.ndarray]:
        loss, grads, dx = correct_grads(x, y_onehot, training=training)
        return loss, {k: g for k, g in grads.items() if k != key}, dx

    _patch(model, "get_weights", _get_weights)
    _patch(model, "set_weights", _set_weights)
    _patch(model, "loss_and_all_gradients", _loss_and_all_gradients)


_model_bug(
    name="use-bias-false-ignored",
    description="the first layer with use_bias=False gets a bias anyway (created at zero, "
    "added and trained), while the model's weight I/O goes by the reference's list of "
    "weights and never shows it: forward and gradients agree until the first update moves "
    "the bias, so the first failure is the loss of step 2",
    target="the first Conv2D or Dense with use_bias=False",
    requires="a Conv2D or Dense with use_bias=False",
    shows="the step loss of step 2",
    locate=lambda ls: (
        None
        if (i := _first(ls, lambda la: la.kind in WEIGHTED and la.use_bias is False)) is None
        else Site((ls[i].name,), STEP_LOSS)
    ),
    patch=_use_bias_ignored,
    step=2,
    # the bias after one update moves step 2's loss by ~5e-8 relative on seed000-cnn: within
    # float32 noise, so float32 may first see it steps later
    float32=False,
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


def _first_non_kernel(layers: tuple[LayerView, ...]) -> Site | None:
    """The first trainable weight that is not a kernel, in weight order; a bias directly
    followed by a BatchNormalization is passed over: the normalisation subtracts it again, so
    its gradient is zero and its update nothing, with or without the bug."""
    for layer, after in zip(layers, [*layers[1:], None], strict=True):
        for param in layer.trainable:
            if param == "kernel":
                continue
            if param == "bias" and after is not None and after.kind == "BatchNormalization":
                continue
            return Site((), f"{layer.name}/{param}")
    return None


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
        "biases); the biases, and BatchNormalization's gamma and beta, stay at their initial "
        "values",
        layer="the first weight that is not a kernel",
        step=1,
        optimizer=_skip_biases,
        locate=_first_non_kernel,
        requires="a trainable weight that is not a kernel (a bias, gamma or beta)",
        shows="that weight after step 1",
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
