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
from compare.parity.finite_difference import kink_free_differences, window_argmax
from compare.sides import keras_side, scratch_side
from compare.sides.implementation import Factory, ImplementationSide
from compare.sides.keras_side import KerasReference
from compare.sides.layout import Converted
from compare.sides.protocol import ModelSpec

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
    if extra.get("judge") is not None:
        extra["judge"] = to_theirs_layout(extra["judge"])
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
    judged = judge.layer_outputs(x)
    last = spec.layers[-1].name
    for layer in spec.layers:
        name = layer.name
        expected = theirs.widened(ref_outputs[name])
        if name in outputs:
            to_theirs = lambda e, n=name: ours.adapter.output_to(n, e)  # noqa: E731
            extra = judge.extra("forward", name, judged.get(name))
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
    fd_masks = None if masks is None else {k: m[:FD_BATCH] for k, m in masks.items()}
    numeric = finite_differences(config, spec, factory, weights, x, y, fd_masks)
    # the loss is a number on both sides: compared as float64 scalars
    loss_extra = judge.extra("gradient", "loss", judge_loss)
    items: list[Item] = [Pair("gradient", "loss", np.array(loss), np.array(ref_loss), **loss_extra)]
    for key in keys:
        if key in grads:
            to_theirs = lambda e, k=key: ours.adapter.weight_to(k, e)  # noqa: E731
            extra = judge.extra("gradient", key, judge_grads.get(key))
            items.append(_paired("gradient", key, grads[key], ref_grads[key], to_theirs, **extra))
        else:
            items.append(missing("gradient", key, "not returned by loss_and_gradients()"))
        items.append(numeric.get(key) or missing("finite-difference", key, "no analytic gradient"))
    if dx is None:
        reason = "loss_and_gradients() returned (loss, grads) without dloss_dx"
        items.append(Check.without_comparison("gradient", "input", "not provided", reason))
        items.append(Check.without_comparison("finite-difference", "input", "not provided", reason))
    else:
        extra = judge.extra("gradient", "input", judge_dx)
        pair = _paired("gradient", "input", dx, ref_dx, ours.adapter.input_to, **extra)
        items.append(judge.without_ties(pair, x, reference_outputs))
        items.append(
            numeric.get("input") or missing("finite-difference", "input", "no analytic gradient")
        )
    return items


def _trainable(key: str) -> bool:
    """Batch normalization's moving statistics are weights but not trainable."""
    return not key.split("/")[-1].startswith("moving_")


def finite_differences(
    config: CheckConfig,
    spec: ModelSpec,
    factory: Factory,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Item]:
    """For each trainable parameter and the input (dropping what ``masks`` drops): the
    implementation's own analytic gradient against central differences of its own loss, both
    on a float64 instance (``FACTORY`` with ``dtype="float64"``, weights through
    ``set_weights``), on sampled entries of the first ``FD_BATCH`` examples.

    Entries: the one with the largest analytic gradient, then seeded random ones, until
    ``FD_ENTRIES`` kink-free entries are found among at most ``FD_MAX_TRIES``. A kink is seen
    without reading the implementation's internals: an entry is skipped when the pattern of
    positive outputs of the relu layers, or the cell holding each max pooling window's maximum
    (both from ``layer_outputs``), differs between its +h and −h steps
    (:func:`compare.parity.finite_difference.kink_free_differences`). A tensor whose tried
    entries all sit on kinks is "n/a".
    """
    spec64 = spec.with_dtype("float64")
    side = ImplementationSide(factory, spec64)
    w64 = {k: np.array(v, dtype=np.float64) for k, v in weights.items()}
    x64, y64 = x[:FD_BATCH].astype(np.float64), y[:FD_BATCH].astype(np.float64)
    side.set_weights(w64)
    _, grads, dx = side.loss_and_gradients(x64, y64, masks)
    analytic = dict(grads)
    if dx is not None:
        analytic["input"] = dx
    relu = [layer.name for layer in spec.layers if layer.activation == "relu"]
    # each max pooling layer with the layer whose output it pools (None: the input)
    pools = [
        (layer, spec.layers[i - 1].name if i else None)
        for i, layer in enumerate(spec.layers)
        if layer.class_name == "MaxPooling2D"
    ]

    def loss_and_branches(set_weights: bool) -> tuple[float, list[np.ndarray]]:
        if set_weights:
            side.set_weights(w64)
        loss, _, _ = side.loss_and_gradients(x64, y64, masks)
        outputs = side.layer_outputs(x64) if relu or pools else {}
        branches = [outputs[n].array > 0 for n in relu if n in outputs and outputs[n].converted]
        for pool, source in pools:
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

    rng = np.random.default_rng(config.seed)
    result: dict[str, Item] = {}
    tensors = {**{k: w64[k] for k in w64 if _trainable(k)}, "input": x64}
    for key, t in tensors.items():
        if key not in analytic:
            continue
        if key == "input":
            side.set_weights(w64)
        got = analytic[key]
        if not got.converted or got.array.shape != t.shape:  # let the check report the shape
            result[key] = Pair("finite-difference", key, got.array, np.zeros(t.shape))
            continue
        largest = int(np.argmax(np.abs(got.array)))
        order = [largest, *(i for i in rng.permutation(t.size)[:FD_MAX_TRIES] if i != largest)]
        candidates = (tuple(int(j) for j in np.unravel_index(i, t.shape)) for i in order)
        evaluate = lambda s=key != "input": loss_and_branches(s)  # noqa: E731
        used, numeric = kink_free_differences(evaluate, t, candidates, FD_ENTRIES)
        if not used:
            reason = f"every tried entry sits on a relu kink ({min(FD_MAX_TRIES, t.size)} tried)"
            result[key] = Check.without_comparison("finite-difference", key, "n/a", reason)
            continue
        idx = tuple(np.array(axis, dtype=np.intp) for axis in zip(*used, strict=True))
        sampled = np.asarray(got.array[idx], dtype=np.float64)
        result[key] = Pair("finite-difference", key, sampled, numeric.astype(np.float64))
    return result


@dataclasses.dataclass
class _JudgeRun:
    """The float64 judge's side of a check (:mod:`compare.judge.float64`): for a float32
    check judged by it, the reference itself run in float64 from the same weights and inputs
    (widened exactly), whose results every pair carries with its reduction length; for a
    float64 check, only the lengths; without the judge (the calibrated table judges), nothing.
    """

    config: CheckConfig
    spec: ModelSpec
    backend: ModuleType
    weights: dict[str, np.ndarray]
    rule: object | None  # the JudgeRule, or None: the calibrated table judges
    reference: KerasReference | None
    lengths: dict[tuple[str, str], int]

    @classmethod
    def start(
        cls,
        config: CheckConfig,
        spec: ModelSpec,
        backend: ModuleType,
        weights: Mapping[str, np.ndarray],
    ) -> _JudgeRun:
        if config.judge != "float64":
            return cls(config, spec, backend, {}, None, None, {})
        lengths = reduction_lengths(spec.layers, config.batch_size)
        if config.dtype == "float64":
            return cls(config, spec, backend, {}, DEFAULT_RULE, None, lengths)
        keras_side.check_backend_dtype(backend, "float64")
        w64 = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        reference = KerasReference(config.model, "float64", backend, w64)
        return cls(config, spec, backend, w64, DEFAULT_RULE, reference, lengths)

    def extra(self, kind: str, name: str, judged: Any) -> dict[str, Any]:
        """A pair's judge fields: its float64 result (None when there is none) and length."""
        if self.rule is None:
            return {}
        record: dict[str, Any] = {"length": self.lengths.get((kind, name))}
        if self.reference is not None and judged is not None:
            record["judge"] = np.asarray(judged, dtype=np.float64)
        return record

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.reference is None:
            return {}
        return self.reference.layer_outputs(x.astype(np.float64))

    def loss_and_gradients(
        self, x: np.ndarray, y: np.ndarray, masks: Mapping[str, np.ndarray] | None
    ) -> tuple[float | None, dict[str, np.ndarray], np.ndarray | None]:
        if self.reference is None:
            return None, {}, None
        return self.reference.loss_and_gradients(
            x.astype(np.float64), y.astype(np.float64), dropout_masks=masks
        )

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
        if self.reference is not None:  # float32: the judge's own float64 pool inputs
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
        target = pair.judge if pair.judge is not None else pair.expected
        actual, expected = np.array(pair.actual, copy=True), np.array(pair.expected, copy=True)
        actual[tied], expected[tied] = target[tied], target[tied]
        note = (
            f"{int(tied.sum())} of {tied.size} elements under max pooling windows whose two "
            "largest inputs tie within rounding are not compared (their gradient is not unique)"
        )
        return dataclasses.replace(pair, actual=actual, expected=expected, note=note)

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
    ) -> training.Recording | None:
        """The float64 reference trained through ``plan`` on the same batches widened."""
        if self.reference is None:
            return None
        config = self.config
        reference = KerasReference(
            config.model,
            "float64",
            self.backend,
            self.weights,
            training=True,
            learning_rate=config.learning_rate,
            momentum=config.momentum,
            nesterov=config.nesterov,
        )
        return training.record(
            _Trainee(reference.train_step, reference.get_weights, reference.predict),
            plan,
            data.x_train.astype(np.float64),
            data.y_train.astype(np.float64),
            (data.x_heldout.astype(np.float64), data.y_heldout.astype(np.float64)),
            label="keras float64",
            batch_size=config.batch_size,
            masks=masks,
        )


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
    )
