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
from compare.parity import training
from compare.parity.config import FD_BATCH, FD_ENTRIES, FD_MAX_TRIES, CheckConfig
from compare.parity.finite_difference import kink_free_differences
from compare.sides.implementation import Factory, ImplementationSide
from compare.sides.keras_side import KerasReference
from compare.sides.layout import Converted
from compare.sides.protocol import ModelSpec

Item = Pair | Check  # a comparison to judge, or a check that compared nothing


def shared_weights(config: CheckConfig) -> dict[str, np.ndarray]:
    """The one weight set both sides load: the file, or a fresh initialisation from the seed."""
    if config.weights is not None:
        return weights_io.load_weights(Path(config.weights), config.variant, config.dtype)
    return weights_io.initial_weights(config.variant, config.dtype, config.seed)


def dataset(config: CheckConfig) -> Dataset:
    """The seeded split of ``config.data``, checked to hold at least one batch."""
    data = load_data(config.data, seed=config.seed, dtype=config.dtype)
    if config.batch_size > len(data.x_train):
        raise InputError(
            f"batch size {config.batch_size} is larger than the {len(data.x_train)} training "
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
    weights = shared_weights(config)
    data = dataset(config)
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    ours = ImplementationSide(factory, spec)
    ours.set_weights(weights)
    theirs = KerasReference(config.variant, config.dtype, backend, weights)

    items: list[Item] = []
    outputs, ref_outputs = ours.layer_outputs(x), theirs.layer_outputs(x)
    last = spec.layers[-1].name
    for layer in spec.layers:
        name = layer.name
        expected = theirs.widened(ref_outputs[name])
        if name in outputs:
            to_theirs = lambda e, n=name: ours.adapter.output_to(n, e)  # noqa: E731
            items.append(_paired("forward", name, outputs[name], expected, to_theirs))
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
    items += _gradients(config, spec, factory, ours, theirs, weights, x, y)
    if config.epochs == 0:
        return items, None
    # the run's length is checked against its limit and its tolerances before any batch is made
    steps = validate.steps(config.epochs, len(data.x_train), config.batch_size)
    family = config.optimizer_family()
    parameter_keys = list(spec.weight_shapes())
    if tolerances is not None:
        checks = (training.STEP_LOSS, *training.HELDOUT, *parameter_keys)
        _covered(tolerances, steps, [training.envelope_name(c, family) for c in checks])
    plan = training.schedule(len(data.x_train), config.batch_size, config.epochs, config.seed)
    names = [training.STEP_LOSS, *parameter_keys, *training.HELDOUT]
    if not ours.provides("train_step"):
        reason = "the implementation has no train_step()"
        return items + [
            Check.without_comparison("training", n, "skipped", reason) for n in names
        ], None
    our_plan = plan
    if implementation_batches is not None:
        batches = implementation_batches(
            len(data.x_train), config.batch_size, config.epochs, config.seed
        )
        our_plan = dataclasses.replace(plan, batches=batches)
    curves = _train_side_by_side(config, spec, factory, weights, data, plan, our_plan, backend)
    by_name = {p.name: p for p in curves.pairs(family)}
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
    loss, grads, dx = ours.loss_and_gradients(x, y)
    ref_loss, ref_grads, ref_dx = theirs.loss_and_gradients(x, y)
    numeric = finite_differences(config, spec, factory, weights, x, y)
    # the loss is a number on both sides: compared as float64 scalars
    items: list[Item] = [Pair("gradient", "loss", np.array(loss), np.array(ref_loss))]
    for key in keys:
        if key in grads:
            to_theirs = lambda e, k=key: ours.adapter.weight_to(k, e)  # noqa: E731
            items.append(_paired("gradient", key, grads[key], ref_grads[key], to_theirs))
        else:
            items.append(missing("gradient", key, "not returned by loss_and_gradients()"))
        items.append(numeric.get(key) or missing("finite-difference", key, "no analytic gradient"))
    if dx is None:
        reason = "loss_and_gradients() returned (loss, grads) without dloss_dx"
        items.append(Check.without_comparison("gradient", "input", "not provided", reason))
        items.append(Check.without_comparison("finite-difference", "input", "not provided", reason))
    else:
        items.append(_paired("gradient", "input", dx, ref_dx, ours.adapter.input_to))
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
) -> dict[str, Item]:
    """For each trainable parameter and the input: the implementation's own analytic gradient
    against central differences of its own loss, both on a float64 instance (``FACTORY`` with
    ``dtype="float64"``, weights through ``set_weights``), on sampled entries of the first
    ``FD_BATCH`` digits.

    Entries: the one with the largest analytic gradient, then seeded random ones, until
    ``FD_ENTRIES`` kink-free entries are found among at most ``FD_MAX_TRIES``. A kink is seen
    without reading the implementation's internals: an entry is skipped when the pattern of
    positive outputs of the relu layers (from ``layer_outputs``) differs between its +h and −h
    steps (:func:`compare.parity.finite_difference.kink_free_differences`). A tensor whose tried
    entries all sit on kinks is "n/a".
    """
    spec64 = spec.with_dtype("float64")
    side = ImplementationSide(factory, spec64)
    w64 = {k: np.array(v, dtype=np.float64) for k, v in weights.items()}
    x64, y64 = x[:FD_BATCH].astype(np.float64), y[:FD_BATCH].astype(np.float64)
    side.set_weights(w64)
    _, grads, dx = side.loss_and_gradients(x64, y64)
    analytic = dict(grads)
    if dx is not None:
        analytic["input"] = dx
    relu = [layer.name for layer in spec.layers if layer.activation == "relu"]

    def loss_and_branches(set_weights: bool) -> tuple[float, list[np.ndarray]]:
        if set_weights:
            side.set_weights(w64)
        loss, _, _ = side.loss_and_gradients(x64, y64)
        outputs = side.layer_outputs(x64) if relu else {}
        return loss, [outputs[n].array > 0 for n in relu if n in outputs]

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

    step_fn: Callable[[np.ndarray, np.ndarray], float]
    weights_fn: Callable[[], dict[str, np.ndarray] | None]
    predict_fn: Callable[[np.ndarray], np.ndarray | None]

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.step_fn(x, y)

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
) -> training.Curves:
    """Train a fresh implementation instance and a fresh Keras model from ``weights``, each
    through its plan (the same batches, unless a mutant says otherwise), and record both."""
    ours = ImplementationSide(factory, spec)
    ours.set_weights(weights)
    theirs = KerasReference(
        config.variant,
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

    heldout = (data.x_heldout, data.y_heldout)
    size = config.batch_size
    implementation_run = training.record(
        _Trainee(ours.train_step, our_weights, ours.predict),
        our_plan,
        data.x_train,
        data.y_train,
        heldout,
        label=config.implementation,
        batch_size=size,
    )
    keras_run = training.record(
        _Trainee(theirs.train_step, theirs.get_weights, theirs.predict),
        plan,
        data.x_train,
        data.y_train,
        heldout,
        label="keras",
        batch_size=size,
    )
    return training.Curves(plan, implementation_run, keras_run, heldout_size=len(data.x_heldout))
