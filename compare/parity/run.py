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

import numpy as np

from compare.errors import InputError
from compare.judge import tolerances as tolerance_table
from compare.judge.checks import Check, Pair, PerElement, Tolerance, compare_arrays
from compare.parity.collect import Item, collect
from compare.parity.config import DEFAULT_BATCH_SIZE, LEARNING_RATE, SCRATCH, CheckConfig
from compare.parity.environment import describe
from compare.parity.training import Curves
from compare.parity.verdict import Verdict
from compare.sides import keras_side, quiet, scratch_side
from compare.sides import mutants as mutant_catalogue
from compare.sides.implementation import Factory, load_factory
from compare.sides.protocol import ModelSpec


def judge(
    items: Sequence[Item], tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance]
) -> list[Check]:
    """One :class:`Check` per pair, each against its own tolerance (a training check also
    records the step of its first bad element); checks that compared nothing pass through."""
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
        check = compare_arrays(item.kind, item.name, item.actual, item.expected, tol)
        if steps is not None and check.first_bad_index is not None:
            check = dataclasses.replace(check, step=int(steps[check.first_bad_index]))
        checks.append(check)
    return checks


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
        config.variant,
        config.dtype,
        backend,
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        nesterov=config.nesterov,
        seed=config.seed,
        batch_size=config.batch_size,
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
    variant: str = "keras-docs",
    dtype: str = "float32",
    *,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    data: str = "bundled",
    weights: str | Path | None = None,
    epochs: int = 1,
    learning_rate: float = LEARNING_RATE,
    momentum: float = 0.0,
    nesterov: bool = False,
    tolerances: Mapping[str, Tolerance] | None = None,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
    mutant: str | None = None,
    implementation: str | Factory | None = None,
) -> Verdict:
    """Run the parity check and return its :class:`Verdict`.

    ``implementation``: a FACTORY (docs/protocol.md), ``"MODULE:FACTORY"`` or
    ``"path/to/file.py:FACTORY"``; default: the project's scratch model. ``epochs`` of
    side-by-side training follow the forward and gradient checks (0: none), with
    SGD(``learning_rate``, ``momentum``, ``nesterov``) on both sides. ``tolerances`` replaces
    the calibrated tolerance of a kind (``{"forward": Tolerance(...)}``); ``atol``/``rtol``
    replace one number per kind (key ``"*"`` for every kind). ``mutant`` names a deliberate bug
    from :mod:`compare.sides.mutants` to apply to the scratch model. Bad arguments or input
    raise :class:`compare.errors.InputError` (a protocol breach
    :class:`~compare.errors.ProtocolError`); an exception inside the implementation
    :class:`~compare.errors.ImplementationError`.
    """
    started = time.perf_counter()
    label, factory = resolve_implementation(implementation)
    config = CheckConfig(
        variant=variant,
        dtype=dtype,
        seed=seed,
        batch_size=batch_size,
        data=str(data),
        weights=None if weights is None else str(weights),
        mutant=mutant,
        epochs=epochs,
        learning_rate=learning_rate,
        momentum=momentum,
        nesterov=nesterov,
        implementation=label,
    )
    backend, bug = prepare(config)
    if bug is not None:
        factory = scratch_side.factory(bug)
    tols = tolerance_table.resolve(backend.NAME, dtype, tolerances, atol=atol, rtol=rtol)
    # TensorFlow's oneDNN rewrite logs a C++ line for every float64 graph it builds
    with quiet.filtered_stderr():
        spec = spec_for(config, backend)
        items, curves = collect(
            config,
            spec,
            factory,
            backend,
            tolerances=tols,
            implementation_batches=None if bug is None else bug.batches,
        )
    checks = judge(items, tols)
    return Verdict(
        passed=not any(c.failed for c in checks),
        config=config,
        environment=describe(backend, dtype),
        checks=checks,
        tolerances=tols,
        seconds=time.perf_counter() - started,
        spec=spec,
        curves=curves,
        pairs=[item for item in items if isinstance(item, Pair)],
    )
