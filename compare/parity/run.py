"""The parity check: :func:`check_parity` collects both sides' results
(:func:`compare.parity.collect.collect`), judges every pair with the one comparison helper
(:func:`judge`) and returns the :class:`~compare.parity.verdict.Verdict`.

The implementation is the project's own scratch model unless ``implementation`` names a
FACTORY (a callable, or ``"MODULE:FACTORY"`` / ``"path/to/file.py:FACTORY"``): both go through
the protocol of docs/protocol.md.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

import numpy as np

from compare.errors import InputError
from compare.judge import float64 as float64_judge
from compare.judge import tolerances as tolerance_table
from compare.judge.checks import KINDS, Check, Pair, PerElement, Tolerance, compare_arrays
from compare.parity.collect import Item, collect
from compare.parity.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_STEPS,
    DEFAULT_MODEL,
    FD_ATOL,
    FD_ONE_SIDED_ATOL,
    FD_ONE_SIDED_RTOL,
    FD_RTOL,
    KERAS_FIT_BATCH_SIZE,
    SCRATCH,
    CheckConfig,
)
from compare.parity.environment import describe
from compare.parity.finite_difference import ONE_SIDED
from compare.parity.training import HELDOUT, Curves
from compare.parity.verdict import Verdict
from compare.sides import keras_side, quiet, remote, scratch_side
from compare.sides import mutants as mutant_catalogue
from compare.sides.implementation import Factory, load_factory
from compare.sides.protocol import ModelSpec

# The tolerance key of one-sided finite differences (measured, not calibrated: fd_tolerance).
ONE_SIDED_KEY: Final = ("finite-difference", ONE_SIDED)


def judge(
    items: Sequence[Item], tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance]
) -> list[Check]:
    """One :class:`Check` per pair, each against its own calibrated tolerance (a training
    check also records the step of its first bad element); checks that compared nothing pass
    through. One-sided finite differences, which no table calibrates, get their measured
    tolerance unless ``tolerances`` has one for them (:func:`check_parity`'s, with overrides)."""
    tolerances = {ONE_SIDED_KEY: fd_tolerance(ONE_SIDED), **tolerances}
    pairs = [item for item in items if isinstance(item, Pair)]
    tolerance_table.for_pairs(tolerances, [p.tolerance_key for p in pairs])
    checks = []
    for item in items:
        if isinstance(item, Check):
            checks.append(item)
            continue
        steps = None if item.at is None else item.steps()
        tol = tolerance_table.at_steps(tolerances, item.tolerance_key, steps)
        if item.atol_floor:
            shape = item.expected.shape
            tol = PerElement(
                np.maximum(np.broadcast_to(tol.atol, shape), item.atol_floor),
                np.broadcast_to(tol.rtol, shape),
            )
        checks.append(
            _with_step(item, compare_arrays(item.kind, item.name, item.actual, item.expected, tol))
        )
    return checks


def _with_step(item: Pair, check: Check) -> Check:
    """A training check with the step of its first bad element."""
    if item.at is not None and check.first_bad_index is not None:
        return dataclasses.replace(check, step=int(item.steps()[check.first_bad_index]))
    return check


def overrides(
    tolerances: Mapping[str, Tolerance] | None,
    *,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
) -> dict[tuple[str, str], tolerance_table.AnyTolerance]:
    """Under the float64 judge, the kinds whose tolerance the caller set (``--atol``,
    ``--rtol``, ``tolerances``): each kind so set is judged by that tolerance, element by
    element (the other number 0 unless given too); keyed ``(kind, "*")``."""
    chosen: dict[str, Tolerance] = dict(tolerances or {})
    atol, rtol = atol or {}, rtol or {}
    for kind in (*atol, *rtol):
        if kind != "*" and kind not in KINDS:
            raise InputError(f"unknown check kind {kind!r}; expected one of {', '.join(KINDS)}")
    for kind in KINDS:
        given_atol, given_rtol = atol.get(kind, atol.get("*")), rtol.get(kind, rtol.get("*"))
        if given_atol is None and given_rtol is None:
            continue
        base = chosen.get(kind, Tolerance(0.0, 0.0))
        chosen[kind] = Tolerance(
            base.atol if given_atol is None else given_atol,
            base.rtol if given_rtol is None else given_rtol,
        )
    unknown = sorted(set(chosen) - set(KINDS))
    if unknown:
        raise InputError(f"unknown check kind {unknown[0]!r}; expected one of {', '.join(KINDS)}")
    return {(kind, "*"): tol for kind, tol in chosen.items()}


def judge_items(
    items: Sequence[Item],
    tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance],
    config: CheckConfig,
    heldout_size: int,
    float64_eps: float = float64_judge.EPS64,
) -> list[Check]:
    """Every check of ``config``'s run: by the calibrated table (:func:`judge`) or by the
    float64 judge (:func:`by_float64_judge`); under the judge, a kind whose tolerance the
    caller set (:func:`overrides`) by that tolerance."""
    if config.judge == "table":
        checks = judge(items, tolerances)
    else:
        checks = []
        for item in items:
            if isinstance(item, Check):
                checks.append(item)
                continue
            tol = tolerances.get((item.kind, "*"))
            if isinstance(tol, Tolerance):
                compared = compare_arrays(item.kind, item.name, item.actual, item.expected, tol)
                checks.append(_with_step(item, compared))
            else:
                checks.append(by_float64_judge(item, config.dtype, heldout_size, float64_eps))
    return [_with_note(item, check) for item, check in zip(items, checks, strict=True)]


def _with_note(item: Item, check: Check) -> Check:
    """A check that says what its pair left out or how it was measured (``Pair.note``)."""
    if not isinstance(item, Pair) or not item.note:
        return check
    said = check.problem
    return dataclasses.replace(check, problem=item.note if not said else f"{said}; {item.note}")


def fd_tolerance(formula: str | None) -> Tolerance:
    """The measured tolerance of finite differences (no table's): the one-sided ones'
    (``formula`` is ``ONE_SIDED``: ``FD_ONE_SIDED_*``) or the central ones' (``FD_ATOL``,
    ``FD_RTOL``)."""
    if formula == ONE_SIDED:
        return Tolerance(FD_ONE_SIDED_ATOL, FD_ONE_SIDED_RTOL)
    return Tolerance(FD_ATOL, FD_RTOL)


def judge_backend(config: CheckConfig, backend: ModuleType, spec: ModelSpec) -> str | None:
    """The backend of the worker a float32 check's float64 judge runs in, or None for this
    process's own (:func:`compare.sides.remote.judge_backend`): where this backend computes
    part of the model in float32 even in float64, its float64 run would share the float32
    reference's errors and judge nothing (measured on JAX: Keras's float32 batch normalization
    sums its statistics less accurately than TensorFlow's, and its float64 run does the same in
    float32, so scratch's loss was 140 times farther from it than the reference; docs/judge.md).
    An InputError, before any work, when that worker's backend is not installed."""
    if config.judge != "float64" or config.dtype != "float32":
        return None
    return remote.judge_backend(backend, spec)


def float64_eps(backend: ModuleType, spec: ModelSpec) -> float:
    """The machine epsilon a float64 check of ``spec`` on ``backend`` is judged to: float64's,
    or float32's where the backend computes part of the model in float32 even in float64
    (:func:`compare.sides.keras_side.float32_inside`; docs/judge.md)."""
    inside = keras_side.float32_inside(backend, spec)
    return float64_judge.EPS32 if inside else float64_judge.EPS64


def by_float64_judge(
    item: Pair, dtype: str, heldout_size: int, eps64: float = float64_judge.EPS64
) -> Check:
    """One pair judged by the float64 judge: a float32 pair against its float64 run, a float64
    pair by float64's rounding; training curves step by step; the held-out accuracy by a count
    of digits; the finite differences by their own tolerance (FD_ATOL, FD_RTOL)."""
    kind, name = item.kind, item.name
    if kind == "finite-difference":
        return compare_arrays(kind, name, item.actual, item.expected, fd_tolerance(item.tolerance))
    if name == HELDOUT[1]:
        by_judge = dtype == "float32" and item.disagreement is not None
        counted = float64_judge.judge_count(
            kind,
            name,
            item.actual,
            item.expected,
            heldout_size,
            judge=item.judge if by_judge else None,
            disagreement=item.disagreement if by_judge else None,
        )
        return _with_step(item, counted)  # the epoch end of its first bad element
    length = item.length or 1
    if dtype == "float32" and item.judge is None:  # no float64 run of it: float32's rounding
        if item.at is None:
            return float64_judge.judge_float64(
                kind, name, item.actual, item.expected, length, eps=float64_judge.EPS32
            )
        return float64_judge.judge_trajectory_float64(
            name,
            item.actual,
            item.expected,
            length,
            steps=np.asarray(item.at).reshape(-1),
            eps=float64_judge.EPS32,
        )
    if item.at is None:
        if dtype == "float32":
            return float64_judge.judge_float32(
                kind, name, item.actual, item.expected, item.judge, length, also=item.also
            )
        return float64_judge.judge_float64(
            kind, name, item.actual, item.expected, length, eps=eps64, lower=item.judge
        )
    steps = np.asarray(item.at).reshape(-1)
    if dtype == "float32":
        return float64_judge.judge_trajectory_float32(
            name, item.actual, item.expected, item.judge, length, steps=steps, also=item.also
        )
    return float64_judge.judge_trajectory_float64(
        name, item.actual, item.expected, length, steps=steps, eps=eps64, lower=item.judge
    )


def resolve_implementation(implementation: str | Factory | None) -> tuple[str, Factory]:
    """The implementation's label (for the verdict) and its FACTORY."""
    if implementation is None or implementation == SCRATCH:
        return SCRATCH, scratch_side.build
    if isinstance(implementation, str):
        return implementation, load_factory(implementation)
    if not callable(implementation):
        raise InputError(
            f"implementation must be a FACTORY callable or 'MODULE:FACTORY'. "
            f"Received: {type(implementation).__name__}"
        )
    module = getattr(implementation, "__module__", "?")
    label = f"{module}:{getattr(implementation, '__qualname__', '?')}"
    return label, implementation


def spec_for(config: CheckConfig, backend: ModuleType) -> ModelSpec:
    """The :class:`ModelSpec` an implementation receives for ``config`` on ``backend``."""
    return keras_side.model_spec(
        config.model,
        config.dtype,
        backend,
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        nesterov=config.nesterov,
        seed=config.seed,
        batch_size=config.train_batch_size,
    )


def configure(
    model: str,
    dtype: str,
    *,
    seed: int = 0,
    fresh_weights: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    data: str = "bundled",
    weights: str | Path | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    train_batch_size: int | None = None,
    learning_rate: float | None = None,
    momentum: float | None = None,
    nesterov: bool | None = None,
    mutant: str | None = None,
    implementation: str = SCRATCH,
    judge: str = "auto",
) -> CheckConfig:
    """The :class:`CheckConfig` of a check of ``model``: every option not given (None) is the
    model's recipe's (:func:`compare.sides.keras_side.recipe`: a zoo entry's, or what a
    ``.keras`` file's or a builder's model was compiled with). Reads the model, so Keras must
    be importable. An uncompiled model needs ``learning_rate``.

    Training: ``epochs`` epochs, or ``steps`` steps; neither: one epoch or
    :data:`DEFAULT_MAX_STEPS` steps, whichever is shorter. Weights: the model's own (a file's,
    a builder's) unless ``fresh_weights`` (default: only for zoo names, which have none)."""
    recipe = keras_side.recipe(model)
    if learning_rate is None:
        if recipe is None:
            raise InputError(
                f"model {model!r} was not compiled, so it has no training recipe: give the "
                "learning rate (--learning-rate; --momentum, --nesterov and "
                "--train-batch-size too, unless SGD's defaults and a batch of 32 are meant)"
            )
        learning_rate = recipe.learning_rate
    if epochs is None and steps is None:
        epochs, steps = 1, DEFAULT_MAX_STEPS
    return CheckConfig(
        model=model,
        dtype=dtype,
        seed=seed,
        batch_size=batch_size,
        data=str(data),
        weights=None if weights is None else str(weights),
        fresh_weights=keras_side.is_zoo(model) if fresh_weights is None else fresh_weights,
        mutant=mutant,
        epochs=epochs,
        steps=steps,
        train_batch_size=(
            train_batch_size
            if train_batch_size is not None
            else (
                recipe.batch_size
                if recipe is not None and recipe.batch_size
                else KERAS_FIT_BATCH_SIZE
            )
        ),
        learning_rate=learning_rate,
        momentum=momentum if momentum is not None else (recipe.momentum if recipe else 0.0),
        nesterov=nesterov if nesterov is not None else (recipe.nesterov if recipe else False),
        input_scaling=recipe.input_scaling if recipe is not None else "unit",
        implementation=implementation,
        judge=judge,
    )


def prepare(
    config: CheckConfig,
) -> tuple[ModuleType, mutant_catalogue.Mutant | None]:
    """The reference backend, checked for the dtype and made deterministic, and the mutant."""
    bug = None if config.mutant is None else mutant_catalogue.get(config.mutant)
    if bug is not None:
        bug.check_applicable(config)
    backend = keras_side.backend_module()
    keras_side.check_backend_dtype(backend, config.dtype)
    backend.configure_determinism(config.seed)
    return backend, bug


def collect_for(
    config: CheckConfig,
    *,
    mutant: mutant_catalogue.Mutant | None = None,
    factory: Factory | None = None,
) -> tuple[list[Item], Curves | None]:
    """What :func:`check_parity` collects for ``config`` (the implementation ``factory``,
    default scratch's, or scratch with ``mutant``), on this process's backend, unjudged."""
    backend, named = prepare(config)
    bug = mutant or named
    if factory is None:
        factory = scratch_side.factory(bug)
    return collect(
        config,
        spec_for(config, backend),
        factory,
        backend,
        implementation_batches=None if bug is None else bug.batches,
    )


def check_parity(
    model: str = DEFAULT_MODEL,
    dtype: str = "float32",
    *,
    variant: str | None = None,
    seed: int = 0,
    fresh_weights: bool | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    data: str = "bundled",
    weights: str | Path | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    train_batch_size: int | None = None,
    learning_rate: float | None = None,
    momentum: float | None = None,
    nesterov: bool | None = None,
    tolerances: Mapping[str, Tolerance] | None = None,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
    mutant: str | None = None,
    implementation: str | Factory | None = None,
    judge: str = "auto",
) -> Verdict:
    """Run the parity check and return its :class:`Verdict`.

    ``model``: the reference — a zoo name (``keras-docs``, ``classic``, ``seed000-cnn``,
    ``cs231n-3layer``, ``lenet5-bn-dropout``), a ``FILE.keras`` or ``"MODULE:BUILDER"``
    (``variant`` is the old name of the two LeNet-5s' option). ``implementation``: a FACTORY
    (docs/protocol.md), ``"MODULE:FACTORY"`` or ``"path/to/file.py:FACTORY"``; default: the
    project's scratch model, mirroring the model. The training recipe (learning rate, momentum,
    Nesterov, training batch, input scaling) is the model's unless given; the training length
    ``epochs`` or ``steps`` (default: one epoch or 200 steps, whichever is shorter; 0: none);
    ``batch_size`` is the layer and gradient checks' batch. ``tolerances`` replaces the
    tolerance of a kind (``{"forward": Tolerance(...)}``); ``atol``/``rtol`` replace one number
    per kind (key ``"*"`` for every kind). ``mutant`` names a deliberate bug from
    :mod:`compare.sides.mutants` to apply to the scratch model. Bad arguments or input raise
    :class:`compare.errors.InputError` (a protocol breach
    :class:`~compare.errors.ProtocolError`); an exception inside the implementation
    :class:`~compare.errors.ImplementationError`.
    """
    started = time.perf_counter()
    if variant is not None:
        if model != DEFAULT_MODEL and model != variant:
            raise InputError(f"give the model once: model={model!r}, variant={variant!r}")
        model = variant
    label, factory = resolve_implementation(implementation)
    keras_side.backend_module()  # Keras, imported quietly, before the model is read
    config = configure(
        model,
        dtype,
        seed=seed,
        fresh_weights=fresh_weights,
        batch_size=batch_size,
        data=data,
        weights=weights,
        epochs=epochs,
        steps=steps,
        train_batch_size=train_batch_size,
        learning_rate=learning_rate,
        momentum=momentum,
        nesterov=nesterov,
        mutant=mutant,
        implementation=label,
        judge=judge,
    )
    backend, bug = prepare(config)
    if bug is not None:
        factory = scratch_side.factory(bug)
    tols: Mapping[tuple[str, str], tolerance_table.AnyTolerance]
    if config.judge == "table":
        # the one-sided finite differences are no calibrated check: their measured tolerance
        tols = tolerance_table.resolve(
            backend.NAME,
            dtype,
            tolerances,
            atol=atol,
            rtol=rtol,
            uncalibrated={ONE_SIDED_KEY: fd_tolerance(ONE_SIDED)},
        )
    else:
        tols = overrides(tolerances, atol=atol, rtol=rtol)
    # TensorFlow's oneDNN rewrite logs a C++ line for every float64 graph it builds
    with quiet.filtered_stderr():
        spec = spec_for(config, backend)
        judged_on = judge_backend(config, backend, spec)
        items, curves = collect(
            config,
            spec,
            factory,
            backend,
            tolerances=tols,
            implementation_batches=None if bug is None else bug.batches,
        )
    heldout = 0 if curves is None else curves.heldout_size
    checks = judge_items(items, tols, config, heldout, float64_eps(backend, spec))
    environment = describe(backend, dtype)
    if config.judge == "float64":
        environment["judge"] = {
            "run": f"Keras {'float32' if dtype == 'float64' else 'float64'}",
            "backend": judged_on or backend.NAME,
            "worker": judged_on is not None,
        }
    return Verdict(
        passed=not any(c.failed for c in checks),
        config=config,
        environment=environment,
        checks=checks,
        tolerances=tols,
        seconds=time.perf_counter() - started,
        spec=spec,
        curves=curves,
        pairs=[item for item in items if isinstance(item, Pair)],
    )
