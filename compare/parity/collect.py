"""Collecting what the parity check compares: one shared set of weights, one batch of digits,
both sides run through the same methods — the implementation through the protocol
(:class:`~compare.sides.implementation.ImplementationSide`, scratch included), the reference
through :class:`~compare.sides.keras_side.KerasReference` — and every result paired with its
counterpart in Keras's keys and layouts, in data-flow order (:mod:`compare.parity.verdict`).

What cannot be compared is recorded as a check of its own: a layer output the implementation
leaves out is "not provided"; checks whose method it lacks are "skipped", with the reason; a
missing gradient or parameter, or a missing last-layer output, fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from compare.errors import InputError
from compare.inputs import validate
from compare.inputs import weights as weights_io
from compare.inputs.data import Dataset, load_data
from compare.judge import tolerances as tolerance_table
from compare.judge.checks import Check, Pair
from compare.judge.float64 import DEFAULT_RULE, EPS32, EPS64, reduction_lengths
from compare.parity import dropout, ties, training
from compare.parity.config import FD_BATCH, FD_ENTRIES, FD_MAX_TRIES, CheckConfig
from compare.parity.finite_difference import (
    ONE_SIDED,
    kink_free_differences,
    one_sided_differences,
    window_argmax,
)
from compare.sides import keras_side, remote, scratch_side
from compare.sides.implementation import Factory, ImplementationSide
from compare.sides.keras_side import KerasReference
from compare.sides.layout import Converted
from compare.sides.protocol import ModelSpec
from compare.sides.remote import RemoteReference

Item = Pair | Check  # a comparison to judge, or a check that compared nothing
# Two inputs of a max pooling window tie when they differ by at most this many units of
# eps * L * magnitude (L the reduction length of the pooled tensor): the float64 judge's own
# floor for a float64 result (compare.judge.float64.DEFAULT_RULE.floor64 = 1) times 4.
TIE_FACTOR = 4.0


def shared_weights(config: CheckConfig, spec: ModelSpec) -> dict[str, np.ndarray]:
    """The one weight set both sides load: the weights file; else the model's own (a
    ``.keras`` file's or a builder's) unless a fresh initialisation was asked for; else a fresh
    initialisation from the seed, drawn in NumPy by each layer's own initializer
    (the scratch mirror of :mod:`compare.sides.scratch_side`), the same on every backend."""
    layout = {k: (shape, np.dtype(config.dtype)) for k, shape in spec.weight_shapes().items()}
    if config.weights is not None:
        return weights_io.load_weights(
            Path(config.weights), config.model, config.dtype, layout=layout
        )
    if not config.fresh_weights:
        own = keras_side.model_weights(config.model, config.dtype)
        if own is not None:
            return weights_io.validate(
                own, config.model, config.dtype, source=config.model, layout=layout
            )
    return scratch_side.mirror(spec).get_weights()


def dataset(config: CheckConfig, spec: ModelSpec) -> Dataset:
    """The seeded split of ``config.data`` in the model's input shape and scaling, checked to
    hold at least one batch of the checks and one of training."""
    image_shape = spec.input_shape
    if len(image_shape) != 3:
        raise InputError(
            f"model {config.model!r} takes inputs of shape {image_shape}; lenet-parity feeds "
            "images (height, width, channels)"
        )
    data = load_data(
        config.data,
        seed=config.seed,
        dtype=config.dtype,
        image_shape=(int(image_shape[0]), int(image_shape[1]), int(image_shape[2])),
        num_classes=spec.num_classes,
    )
    if config.input_scaling == "centered":  # the recipe's pixels / 255 - 0.5
        data = data.shifted(-0.5)
    for flag, size in (
        ("batch size", config.batch_size),
        ("training batch size", config.train_batch_size),
    ):
        if size > len(data.x_train):
            raise InputError(
                f"{flag} {size} is larger than the {len(data.x_train)} training "
                f"examples of {config.data!r}"
            )
    return data


def missing(kind: str, name: str, problem: str) -> Check:
    """A failed check for an array the implementation should have returned and did not."""
    return Check(kind, name, False, None, None, 0.0, 0.0, None, 1, 1, problem, status="fail")


def _paired(
    kind: str,
    name: str,
    ours: Converted,
    expected: np.ndarray,
    to_theirs_layout: Callable[[np.ndarray], np.ndarray],
    **extra: Any,
) -> Pair:
    """A pair in Keras's layout; one whose shape the layout could not convert is compared in
    the implementation's layout instead, so the failure shows the implementation's shapes."""
    if ours.converted:
        return Pair(kind, name, ours.array, expected, **extra)
    for field in ("judge", "also"):  # the reference's runs, in the expected's layout
        if extra.get(field) is not None:
            extra[field] = to_theirs_layout(extra[field])
    return Pair(kind, name, ours.array, to_theirs_layout(expected), **extra)


def backward_order(keys: Sequence[str]) -> list[str]:
    """``"<layer>/<param>"`` keys with the layers reversed (output first) and each layer's
    params in their own order (kernel, then bias)."""
    layers = list(dict.fromkeys(k.split("/")[0] for k in keys))
    return [k for layer in reversed(layers) for k in keys if k.split("/")[0] == layer]


def collect(
    config: CheckConfig,
    spec: ModelSpec,
    factory: Factory,
    backend: ModuleType,
    *,
    tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance] | None = None,
    implementation_batches: Callable[[int, int, int, int], list[np.ndarray]] | None = None,
) -> tuple[list[Item], training.Curves | None]:
    """Every check's material, in data-flow order, and the training run (None with
    ``epochs=0`` or without ``train_step``). Given ``tolerances``, a run they do not cover
    fails before training. ``implementation_batches`` replaces the batches the implementation
    trains on (a mutant's hook: the same shuffle must reach both sides)."""
    weights = shared_weights(config, spec)
    data = dataset(config, spec)
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    ours = ImplementationSide(factory, spec)
    ours.set_weights(weights)
    theirs = KerasReference(config.model, config.dtype, backend, weights)
    judge = _JudgeRun.start(config, spec, backend, weights)

    items: list[Item] = []
    outputs, ref_outputs = ours.layer_outputs(x), theirs.layer_outputs(x)
    judged, also = judge.layer_outputs(x), judge.also_layer_outputs(x)
    last = spec.layers[-1].name
    for layer in spec.layers:
        name = layer.name
        expected = theirs.widened(ref_outputs[name])
        if name in outputs:
            to_theirs = lambda e, n=name: ours.adapter.output_to(n, e)  # noqa: E731
            extra = judge.extra("forward", name, judged.get(name), also.get(name))
            items.append(_paired("forward", name, outputs[name], expected, to_theirs, **extra))
        elif name == last:
            items.append(
                missing(
                    "forward",
                    name,
                    "the last layer's output (the probabilities) is not in layer_outputs()",
                )
            )
        else:
            items.append(
                Check.without_comparison(
                    "forward", name, "not provided", "not returned by layer_outputs()"
                )
            )
    widened = {k: theirs.widened(v) for k, v in ref_outputs.items()}
    items += _gradients(config, spec, factory, ours, theirs, judge, widened, weights, x, y)
    if not config.trains:
        judge.close()
        return items, None
    # the run's length is checked against its limit and its tolerances before any batch is made
    size = config.train_batch_size
    steps = validate.steps(config.epochs, len(data.x_train), size, config.steps)
    family = config.optimizer_family()
    parameter_keys = list(spec.weight_shapes())
    if tolerances is not None and judge.rule is None:
        checks = (training.STEP_LOSS, *training.HELDOUT, *parameter_keys)
        _covered(tolerances, steps, [training.envelope_name(c, family) for c in checks])
    plan = training.schedule(len(data.x_train), size, config.epochs, config.seed, config.steps)
    names = [training.STEP_LOSS, *parameter_keys, *training.HELDOUT]
    if not ours.provides("train_step"):
        judge.close()
        reason = "the implementation has no train_step()"
        return items + [
            Check.without_comparison("training", n, "skipped", reason) for n in names
        ], None
    our_plan = plan
    if implementation_batches is not None:
        batches = implementation_batches(len(data.x_train), size, plan.epochs, config.seed)[
            : plan.steps
        ]
        our_plan = dataclasses.replace(plan, batches=batches)
    curves = _train_side_by_side(
        config, spec, factory, weights, data, plan, our_plan, backend, judge
    )
    judge.close()
    by_name = {p.name: p for p in curves.pairs(family, judge.training_lengths())}
    for name in names:
        if name in by_name:
            items.append(by_name[name])
        elif not ours.provides("get_weights"):
            items.append(
                Check.without_comparison(
                    "training", name, "skipped", "the implementation has no get_weights()"
                )
            )
        else:
            items.append(
                missing("training", name, "not returned by get_weights() (or its shape changed)")
            )
    return items, curves


def _gradients(
    config: CheckConfig,
    spec: ModelSpec,
    factory: Factory,
    ours: ImplementationSide,
    theirs: KerasReference,
    judge: _JudgeRun,
    reference_outputs: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
) -> list[Item]:
    """The loss, every gradient (output layer first) with its finite-difference third opinion,
    then dloss/dinput."""
    keys = backward_order([k for k in spec.weight_shapes() if _trainable(k)])
    if not ours.provides("loss_and_gradients"):
        reason = "the implementation has no loss_and_gradients()"
        names = [("gradient", "loss")]
        names += [(kind, k) for k in keys for kind in ("gradient", "finite-difference")]
        names += [("gradient", "input"), ("finite-difference", "input")]
        return [Check.without_comparison(kind, n, "skipped", reason) for kind, n in names]
    masks = dropout.keep_masks(spec, len(x), config.seed, 0)
    loss, grads, dx = ours.loss_and_gradients(x, y, masks)
    ref_loss, ref_grads, ref_dx = theirs.loss_and_gradients(x, y, dropout_masks=masks)
    judge_loss, judge_grads, judge_dx = judge.loss_and_gradients(x, y, masks)
    also_loss, also_grads, also_dx = judge.also_loss_and_gradients(x, y, masks)
    numeric = finite_differences(config, spec, factory, theirs.backend, weights, x, y, masks)
    # the loss is a number on both sides: compared as float64 scalars
    loss_extra = judge.extra(
        "gradient", "loss", judge_loss, None if also_loss is None else np.array(also_loss)
    )
    items: list[Item] = [Pair("gradient", "loss", np.array(loss), np.array(ref_loss), **loss_extra)]
    for key in keys:
        if key in grads:
            to_theirs = lambda e, k=key: ours.adapter.weight_to(k, e)  # noqa: E731
            extra = judge.extra("gradient", key, judge_grads.get(key), also_grads.get(key))
            items.append(_paired("gradient", key, grads[key], ref_grads[key], to_theirs, **extra))
        else:
            items.append(missing("gradient", key, "not returned by loss_and_gradients()"))
        items.append(numeric.get(key) or missing("finite-difference", key, "no analytic gradient"))
    if dx is None:
        reason = "loss_and_gradients() returned (loss, grads) without dloss_dx"
        items.append(Check.without_comparison("gradient", "input", "not provided", reason))
        items.append(Check.without_comparison("finite-difference", "input", "not provided", reason))
    else:
        extra = judge.extra("gradient", "input", judge_dx, also_dx)
        pair = _paired("gradient", "input", dx, ref_dx, ours.adapter.input_to, **extra)
        items.append(judge.without_ties(pair, x, reference_outputs))
        items.append(
            numeric.get("input") or missing("finite-difference", "input", "no analytic gradient")
        )
    return items


def _trainable(key: str) -> bool:
    """Batch normalization's moving statistics are weights but not trainable."""
    return not key.split("/")[-1].startswith("moving_")


class FiniteDifferenceProbe:
    """The float64 instance of the implementation that the finite differences perturb: its
    analytic gradients, and its loss with the branch pattern of its piecewise-linear parts
    (:meth:`evaluate`), for each trainable parameter and the input (``tensors``: perturbed in
    place, restored exactly). Used by :func:`finite_differences` and by the measurement of
    their error (``compare.tools.fd_study``)."""

    def __init__(
        self,
        spec: ModelSpec,
        factory: Factory,
        weights: Mapping[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        masks: Mapping[str, np.ndarray] | None = None,
        *,
        patterns: KerasReference | None = None,
    ) -> None:
        # where the branch patterns come from: the implementation's inference-mode outputs,
        # or (``patterns``) a float64 reference's training-mode ones, for a model whose
        # training-mode pass differs before a kink (batch normalization, dropout)
        self._patterns = patterns
        self._side = ImplementationSide(factory, spec.with_dtype("float64"))
        self._w64 = {k: np.array(v, dtype=np.float64) for k, v in weights.items()}
        self._x64, self._y64 = x[:FD_BATCH].astype(np.float64), y[:FD_BATCH].astype(np.float64)
        # (N, ...) -> (FD_BATCH, ...): the digits' masks
        self._masks = None if masks is None else {k: m[:FD_BATCH] for k, m in masks.items()}
        self._side.set_weights(self._w64)
        _, grads, dx = self._side.loss_and_gradients(self._x64, self._y64, self._masks)
        self.analytic: dict[str, Converted] = dict(grads)
        if dx is not None:
            self.analytic["input"] = dx
        self.tensors: dict[str, np.ndarray] = {
            **{k: v for k, v in self._w64.items() if _trainable(k)},
            "input": self._x64,
        }
        self._relu = [layer.name for layer in spec.layers if layer.activation == "relu"]
        # each max pooling layer with the layer whose output it pools (None: the input)
        self._pools = [
            (layer, spec.layers[i - 1].name if i else None)
            for i, layer in enumerate(spec.layers)
            if layer.class_name == "MaxPooling2D"
        ]

    def evaluate(self, key: str) -> Callable[[], tuple[float, list[np.ndarray]]]:
        """The loss and the branch pattern as functions of the current contents of
        ``tensors[key]``: which relu outputs are positive and which cell holds each max
        pooling window's maximum (both from ``layer_outputs``)."""
        if key == "input":
            self._side.set_weights(self._w64)
            if self._patterns is not None:
                self._patterns.set_weights(self._w64)
        return lambda: self._loss_and_branches(set_weights=key != "input")

    def _loss_and_branches(self, set_weights: bool) -> tuple[float, list[np.ndarray]]:
        side, x64 = self._side, self._x64
        if set_weights:
            side.set_weights(self._w64)
        loss, _, _ = side.loss_and_gradients(x64, self._y64, self._masks)
        outputs = self._outputs(set_weights) if self._relu or self._pools else {}
        branches = [
            outputs[n].array > 0 for n in self._relu if n in outputs and outputs[n].converted
        ]
        for pool, source in self._pools:
            pooled = x64 if source is None else outputs.get(source)
            if isinstance(pooled, Converted):
                if not pooled.converted:
                    continue
                pooled = pooled.array
            if pooled is not None:
                c = pool.config
                branches.append(
                    window_argmax(
                        pooled,
                        c.get("pool_size", (2, 2)),
                        c.get("strides"),
                        str(c.get("padding", "valid")),
                    )
                )
        return loss, branches

    def _outputs(self, set_weights: bool) -> Mapping[str, Converted]:
        """The layer outputs the branch patterns are read from (module docstring of
        :func:`finite_differences`), in Keras's layouts."""
        if self._patterns is None:
            return self._side.layer_outputs(self._x64)
        if set_weights:
            self._patterns.set_weights(self._w64)
        outputs = self._patterns.training_outputs(self._x64, dropout_masks=self._masks)
        return {name: Converted(value, True) for name, value in outputs.items()}

    def candidates(self, key: str, rng: np.random.Generator) -> list[tuple[int, ...]]:
        """The entries of ``tensors[key]`` to try, in order: the one with the largest analytic
        gradient, then up to ``FD_MAX_TRIES`` seeded random ones."""
        t, got = self.tensors[key], self.analytic[key].array
        largest = int(np.argmax(np.abs(got)))
        order = [largest, *(i for i in rng.permutation(t.size)[:FD_MAX_TRIES] if i != largest)]
        return [tuple(int(j) for j in np.unravel_index(i, t.shape)) for i in order]


def pattern_source(
    config: CheckConfig, spec: ModelSpec, backend: ModuleType, weights: Mapping[str, np.ndarray]
) -> KerasReference | None:
    """Where the finite differences read the branch patterns from: None (the implementation's
    own ``layer_outputs``) unless a batch normalization or dropout layer comes before a relu or
    max pooling layer. Then inference mode (all ``layer_outputs`` gives) puts the kinks
    elsewhere than the training-mode loss does (moving instead of batch statistics, no masks),
    and the patterns come from a fresh float64 copy of the reference in training mode, given
    the same perturbed weights (measured: on lenet5-bn-dropout, seed 1, undetected kinks made
    conv1/kernel's differences miss by 2e-5 relative). None also when the backend has no
    float64 (the implementation's patterns are then all there is)."""
    kinked = [
        i
        for i, layer in enumerate(spec.layers)
        if layer.activation == "relu" or layer.class_name == "MaxPooling2D"
    ]
    stateful = [
        i
        for i, layer in enumerate(spec.layers)
        if layer.class_name in ("BatchNormalization", "Dropout")
    ]
    if not kinked or not stateful or min(stateful) > max(kinked):
        return None
    try:
        keras_side.check_backend_dtype(backend, "float64")
    except InputError:
        return None
    w64 = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    return KerasReference(config.model, "float64", backend, w64, training=True)


def finite_differences(
    config: CheckConfig,
    spec: ModelSpec,
    factory: Factory,
    backend: ModuleType,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Item]:
    """For each trainable parameter and the input (dropping what ``masks`` drops): the
    implementation's own analytic gradient against finite differences of its own loss, both
    on a float64 instance (``FACTORY`` with ``dtype="float64"``, weights through
    ``set_weights``), on sampled entries of the first ``FD_BATCH`` examples
    (:class:`FiniteDifferenceProbe`).

    Entries: the one with the largest analytic gradient, then seeded random ones, until
    ``FD_ENTRIES`` kink-free entries are found among at most ``FD_MAX_TRIES``. A kink is seen
    without reading the implementation's internals: an entry is skipped when the pattern of
    positive outputs of the relu layers, or the cell holding each max pooling window's maximum
    (both from ``layer_outputs``; from the reference in training mode when a batch
    normalization or dropout layer comes first, :func:`pattern_source`), differs between its
    +h and −h steps (:func:`compare.parity.finite_difference.kink_free_differences`). When
    every tried entry
    sits on a kink, the same entries get one-sided differences on the side where the pattern
    stays the unperturbed one (:func:`compare.parity.finite_difference.one_sided_differences`),
    judged by their own tolerance (the pair's ``tolerance`` is ``"one-sided"``); a tensor with
    no entry for them either is "n/a".
    """
    probe = FiniteDifferenceProbe(
        spec, factory, weights, x, y, masks, patterns=pattern_source(config, spec, backend, weights)
    )
    rng = np.random.default_rng(config.seed)
    result: dict[str, Item] = {}
    for key, t in probe.tensors.items():
        if key not in probe.analytic:
            continue
        got = probe.analytic[key]
        if not got.converted or got.array.shape != t.shape:  # let the check report the shape
            result[key] = Pair("finite-difference", key, got.array, np.zeros(t.shape))
            continue
        candidates = probe.candidates(key, rng)
        evaluate = probe.evaluate(key)
        tolerance = None
        used, numeric = kink_free_differences(evaluate, t, candidates, FD_ENTRIES)
        if not used:
            tolerance = ONE_SIDED
            used, numeric = one_sided_differences(evaluate, t, candidates, FD_ENTRIES)
        if not used:
            reason = (
                f"every tried entry sits on a relu or max pooling kink on both sides "
                f"({len(candidates)} tried)"
            )
            result[key] = Check.without_comparison("finite-difference", key, "n/a", reason)
            continue
        idx = tuple(np.array(axis, dtype=np.intp) for axis in zip(*used, strict=True))
        sampled = np.asarray(got.array[idx], dtype=np.float64)
        note = (
            None
            if tolerance is None
            else f"one-sided differences at {len(used)} entries: every central one straddles "
            "a relu or max pooling kink"
        )
        result[key] = Pair(
            "finite-difference",
            key,
            sampled,
            numeric.astype(np.float64),
            tolerance=tolerance,
            note=note,
        )
    return result


@dataclasses.dataclass
class _JudgeRun:
    """The float64 judge's side of a check (:mod:`compare.judge.float64`): the reference
    itself run in the other precision, whose results every pair carries (``Pair.judge``,
    widened to float64) with its reduction length. For a float32 check that run is in float64
    from the same weights and inputs (widened exactly): the judge. For a float64 check it is
    in float32 from the weights and inputs rounded to float32: the precision ladder, whose
    distance to the float64 reference shows how much the computation amplifies rounding
    (batch normalization's cancellations). Without the judge (the calibrated table judges),
    nothing.

    Where the check's backend computes part of a float64 model in float32, a float32 check's
    judge runs in a worker on TensorFlow (:attr:`remote`), and so does a second honest float32
    run of the reference (:attr:`also`, ``Pair.also``): a backend's float32 can sum far more
    accurately than another's (measured: JAX's batch normalization statistics against
    TensorFlow's and NumPy's, 1.2e-6 against 1.7e-3 on lenet5-bn-dropout; docs/judge.md), and
    an implementation that sums like either is honest."""

    config: CheckConfig
    spec: ModelSpec
    backend: ModuleType
    weights: dict[str, np.ndarray]  # the check's, in its dtype
    rule: object | None  # the JudgeRule, or None: the calibrated table judges
    lengths: dict[tuple[str, str], int]
    dtype: str = "float64"  # the other precision's
    # the backend of the worker the judge runs in (compare.sides.remote.judge_backend), or
    # None: this process's own
    remote: str | None = None
    reference: KerasReference | RemoteReference | None = None
    also: RemoteReference | None = None

    @classmethod
    def start(
        cls,
        config: CheckConfig,
        spec: ModelSpec,
        backend: ModuleType,
        weights: Mapping[str, np.ndarray],
    ) -> _JudgeRun:
        if config.judge != "float64":
            return cls(config, spec, backend, {}, None, {})
        lengths = reduction_lengths(spec.layers, config.batch_size)
        other = "float32" if config.dtype == "float64" else "float64"
        where = remote.judge_backend(backend, spec) if config.dtype == "float32" else None
        if where is None:
            keras_side.check_backend_dtype(backend, other)
        run = cls(config, spec, backend, dict(weights), DEFAULT_RULE, lengths, other, where)
        run.reference = run.new_reference(other, training=False)
        if where is not None:
            run.also = RemoteReference(config.model, config.dtype, where, weights, seed=config.seed)
        return run

    def new_reference(self, dtype: str, *, training: bool) -> KerasReference | RemoteReference:
        """A reference in ``dtype`` from the check's weights (float32 -> float64 widens
        exactly; float64 -> float32 rounds, the ladder's input): here, or in the worker on
        :attr:`remote`; ``training`` compiles it with the recipe."""
        config = self.config
        weights = {k: np.asarray(v, dtype=dtype) for k, v in self.weights.items()}
        recipe: dict[str, Any] = {}
        if training:
            recipe = {
                "training": True,
                "learning_rate": config.learning_rate,
                "momentum": config.momentum,
                "nesterov": config.nesterov,
            }
        if self.remote is None:
            return KerasReference(config.model, dtype, self.backend, weights, **recipe)
        return RemoteReference(
            config.model, dtype, self.remote, weights, seed=config.seed, **recipe
        )

    def extra(self, kind: str, name: str, judged: Any, also: Any = None) -> dict[str, Any]:
        """A pair's judge fields: the other precision's result, widened (None when there is
        none), the second float32 run's (:attr:`also`), and the length."""
        if self.rule is None:
            return {}
        record: dict[str, Any] = {"length": self.lengths.get((kind, name))}
        if self.reference is not None and judged is not None:
            record["judge"] = np.asarray(judged, dtype=np.float64)
        if also is not None:
            record["also"] = np.asarray(also)
        return record

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The judge's layer outputs (empty without a judge)."""
        if self.reference is None:
            return {}
        return self.reference.layer_outputs(x.astype(self.dtype))

    def also_layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The second float32 run's layer outputs (empty without one)."""
        return {} if self.also is None else self.also.layer_outputs(x)

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray, masks: Mapping[str, np.ndarray] | None
    ) -> tuple[float | None, dict[str, np.ndarray], np.ndarray | None]:
        """The judge's loss, gradients and dloss/dinput (None, {}, None without a judge)."""
        if self.reference is None:
            return None, {}, None
        return self.reference.loss_and_gradients(
            x.astype(self.dtype), y.astype(self.dtype), dropout_masks=masks
        )

    def also_loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray, masks: Mapping[str, np.ndarray] | None
    ) -> tuple[float | None, dict[str, np.ndarray], np.ndarray | None]:
        """The second float32 run's (None, {}, None without one)."""
        if self.also is None:
            return None, {}, None
        return self.also.loss_and_gradients(x, y, dropout_masks=masks)

    def without_ties(
        self, pair: Pair, x: np.ndarray, reference_outputs: Mapping[str, np.ndarray]
    ) -> Pair:
        """dloss/dinput without the elements under max pooling's ties (:mod:`ties`), whose
        gradient no two honest implementations need agree on; the pair says how many. The
        pool inputs are the judge's float64 ones for a float32 check, else
        ``reference_outputs`` (the float64 reference's)."""
        if self.rule is None or pair.actual.shape != x.shape:
            return pair
        outputs: Mapping[str, np.ndarray] = reference_outputs
        eps = EPS64
        judged_by_float64 = self.dtype == "float64"  # a float32 check
        if judged_by_float64:  # the judge's own float64 pool inputs
            outputs, eps = self.layer_outputs(x), EPS32
        pools = [la for la in self.spec.layers if la.class_name == "MaxPooling2D"]
        if not pools:
            return pair
        widths = {}
        for i, layer in enumerate(self.spec.layers):
            if layer in pools:
                source = x if i == 0 else outputs.get(self.spec.layers[i - 1].name)
                length = self.lengths.get(("forward", self.spec.layers[i - 1].name), 1) if i else 1
                scale = 0.0 if source is None else float(np.max(np.abs(source), initial=0.0))
                widths[layer.name] = TIE_FACTOR * eps * length * scale
        tied = ties.input_ties(self.spec.layers, outputs, x, widths)
        if tied is None:
            return pair
        # what a tied element is set to on every side: the float64 result (the judge's for a
        # float32 check, the reference's for a float64 one)
        target = pair.judge if judged_by_float64 and pair.judge is not None else pair.expected
        actual, expected = np.array(pair.actual, copy=True), np.array(pair.expected, copy=True)
        actual[tied], expected[tied] = target[tied], target[tied]
        judge = None if pair.judge is None else np.array(pair.judge, copy=True)
        if judge is not None:
            judge[tied] = target[tied]
        also = None if pair.also is None else np.array(pair.also, copy=True)
        if also is not None:
            also[tied] = target[tied]
        note = (
            f"{int(tied.sum())} of {tied.size} elements under max pooling windows whose two "
            "largest inputs tie within rounding are not compared (their gradient is not unique)"
        )
        return dataclasses.replace(
            pair, actual=actual, expected=expected, judge=judge, also=also, note=note
        )

    def training_lengths(self) -> dict[str, int] | None:
        if self.rule is None:
            return None
        train = reduction_lengths(self.spec.layers, self.config.train_batch_size)
        return {name: n for (kind, name), n in train.items() if kind == "training"}

    def train(
        self,
        plan: training.Schedule,
        data: Dataset,
        masks: Callable[[int, int], Mapping[str, np.ndarray] | None],
        *,
        also: bool = False,
    ) -> training.Recording | None:
        """The other precision's reference trained through ``plan`` on the same batches, widened
        (a float32 check's judge) or rounded (a float64 check's ladder); with ``also``, the
        second float32 run trained the same way (None without one)."""
        if self.reference is None or (also and self.also is None):
            return None
        dtype = self.config.dtype if also else self.dtype
        reference = self.new_reference(dtype, training=True)
        recorded = training.record(
            _Trainee(reference.train_step, reference.get_weights, reference.predict),
            plan,
            data.x_train.astype(dtype),
            data.y_train.astype(dtype),
            (data.x_heldout.astype(dtype), data.y_heldout.astype(dtype)),
            label=f"keras {dtype}" + ("" if self.remote is None else f" on {self.remote}"),
            batch_size=self.config.batch_size,
            masks=masks,
        )
        if isinstance(reference, RemoteReference):
            reference.close()
        return recorded

    def close(self) -> None:
        """Release the worker's models of this check (a process that runs many checks, the
        mutants or a sweep, would otherwise keep every one); a local reference needs nothing."""
        for found in (self.reference, self.also):
            if isinstance(found, RemoteReference):
                found.close()
        self.reference, self.also = None, None


def _covered(
    tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance],
    steps: int,
    names: list[str],
) -> None:
    """Fail before training when the run's training tolerances are missing or do not reach its
    last step."""
    keys = [("training", name) for name in names]
    tolerance_table.for_pairs(tolerances, keys)
    for key in keys:
        tolerance_table.at_steps(tolerances, key, np.array([steps]))


@dataclasses.dataclass
class _Trainee:
    """A :class:`compare.parity.training.Trainee` from a side's methods."""

    step_fn: Callable[..., float]
    weights_fn: Callable[[], dict[str, np.ndarray] | None]
    predict_fn: Callable[[np.ndarray], np.ndarray | None]

    def step(self, x: np.ndarray, y: np.ndarray, masks: Mapping[str, np.ndarray] | None) -> float:
        return self.step_fn(x, y, dropout_masks=masks)

    def weights(self) -> dict[str, np.ndarray] | None:
        return self.weights_fn()

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        return self.predict_fn(x)


def _train_side_by_side(
    config: CheckConfig,
    spec: ModelSpec,
    factory: Factory,
    weights: Mapping[str, np.ndarray],
    data: Dataset,
    plan: training.Schedule,
    our_plan: training.Schedule,
    backend: ModuleType,
    judge: _JudgeRun,
) -> training.Curves:
    """Train a fresh implementation instance and a fresh Keras model from ``weights``, each
    through its plan (the same batches, unless a mutant says otherwise), and record both."""
    ours = ImplementationSide(factory, spec)
    ours.set_weights(weights)
    theirs = KerasReference(
        config.model,
        config.dtype,
        backend,
        weights,
        training=True,
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )

    def our_weights() -> dict[str, np.ndarray] | None:
        if not ours.provides("get_weights"):
            return None
        return {k: np.array(v.array, copy=True) for k, v in ours.get_weights().items()}

    heldout = (data.x_heldout, data.y_heldout)  # evaluated in batches of the checks' size

    def masks(step: int, n: int) -> dict[str, np.ndarray] | None:
        return dropout.keep_masks(spec, n, config.seed, step)

    implementation_run = training.record(
        _Trainee(ours.train_step, our_weights, ours.predict),
        our_plan,
        data.x_train,
        data.y_train,
        heldout,
        label=config.implementation,
        batch_size=config.batch_size,
        masks=masks,
    )
    keras_run = training.record(
        _Trainee(theirs.train_step, theirs.get_weights, theirs.predict),
        plan,
        data.x_train,
        data.y_train,
        heldout,
        label="keras",
        batch_size=config.batch_size,
        masks=masks,
    )
    return training.Curves(
        plan,
        implementation_run,
        keras_run,
        heldout_size=len(data.x_heldout),
        judge=judge.train(plan, data, masks),
        also=judge.train(plan, data, masks, also=True),
    )
