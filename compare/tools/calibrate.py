"""``lenet-parity calibrate``: measure honest float disagreement and derive the tolerances.

Runs the unmutated comparison (fresh weights and split per seed, both variants) for every
seed and dtype on the backend Keras runs on, records per check the largest honest
disagreement (:func:`compare.judge.checks.error_profile`), and writes the table that
:mod:`compare.judge.tolerances` reads its defaults from. Training checks are measured at every step
they record and become envelopes (:class:`compare.judge.tolerances.Envelope`) up to the last step of
the calibrated epochs. Entries for other backends already in the output file are kept.

Every measurement is a maximum over runs, so calibrations of disjoint parts of a grid of seeds x
dtypes (``--first-seed``, ``--dtype``: one process each, in parallel) combine exactly:
:func:`merge` (``lenet-parity calibrate --merge``) writes what one calibration over the whole
grid writes, byte for byte.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from compare.errors import InputError
from compare.judge import tolerances as tolerance_table
from compare.judge.checks import ErrorProfile, Pair, error_profile
from compare.parity.collect import collect
from compare.parity.config import CheckConfig
from compare.parity.environment import describe
from compare.parity.finite_difference import ONE_SIDED
from compare.parity.run import spec_for
from compare.sides import scratch_side
from compare.sides.backends import BACKENDS
from compare.sides.keras_side import backend_module, check_backend_dtype
from compare.tools.progress import Progress

PROFILE_FIELDS = ("max_abs", "max_rel", "max_rel_large")
K = TypeVar("K", str, int)
# The momentum of the momentum envelopes: the common choice (Keras's SGD examples, PyTorch's).
MOMENTUM = 0.9
POOLED_KINDS = ("finite-difference",)


Profiles = dict[str, dict[str, dict[str, ErrorProfile]]]  # dtype -> kind -> check -> profile
StepProfiles = dict[str, dict[str, dict[int, ErrorProfile]]]  # dtype -> check -> step -> profile


def measure(
    seeds: Sequence[int],
    dtypes: Sequence[str],
    variants: Sequence[str],
    *,
    batch_size: int,
    epochs: int = 0,
    momentum_epochs: int = 0,
    data: str = "bundled",
    progress: Callable[[str], None] | None = None,
) -> tuple[Profiles, StepProfiles]:
    """The profiles of the checks without steps, and of the training checks per step, each
    merged over all seeds and variants. Each seed trains ``epochs`` with plain SGD and, for
    the momentum envelopes, ``momentum_epochs`` with momentum ``MOMENTUM`` (Nesterov on odd
    seeds). ``progress`` gets a counter line per measured dtype × variant × seed
    (``3/80 [95 s] float32 keras-docs seed 2``), or a bar shows on a terminal
    (:mod:`compare.tools.progress`)."""
    with Progress(len(dtypes) * len(variants) * len(seeds), "calibrate", progress) as shown:
        return _measure(seeds, dtypes, variants, batch_size, epochs, momentum_epochs, data, shown)


def _measure(
    seeds: Sequence[int],
    dtypes: Sequence[str],
    variants: Sequence[str],
    batch_size: int,
    epochs: int,
    momentum_epochs: int,
    data: str,
    progress: Progress,
) -> tuple[Profiles, StepProfiles]:
    backend = backend_module()
    measured: Profiles = {}
    per_step: StepProfiles = {}
    for dtype in dtypes:
        check_backend_dtype(backend, dtype)
        for variant in variants:
            for seed in seeds:
                runs = [
                    CheckConfig(
                        variant,
                        dtype,
                        seed,
                        batch_size,
                        data,
                        epochs=epochs,
                        steps=None,
                        train_batch_size=batch_size,
                    )
                ]
                if momentum_epochs:
                    runs.append(
                        dataclasses.replace(
                            runs[0],
                            epochs=momentum_epochs,
                            momentum=MOMENTUM,
                            nesterov=seed % 2 == 1,
                        )
                    )
                for config in runs:
                    backend.configure_determinism(seed)
                    items, _ = collect(
                        config, spec_for(config, backend), scratch_side.build, backend
                    )
                    pairs = [item for item in items if isinstance(item, Pair)]
                    _record(
                        pairs if config is runs[0] else [p for p in pairs if p.at is not None],
                        measured.setdefault(dtype, {}),
                        per_step.setdefault(dtype, {}),
                    )
                progress.finished(f"{dtype} {variant} seed {seed}")
    return measured, per_step


def _record(
    pairs: Sequence[Pair],
    measured: dict[str, dict[str, ErrorProfile]],
    per_step: dict[str, dict[int, ErrorProfile]],
) -> None:
    """Merge one run's profiles: whole checks, and training checks step by step."""
    for pair in pairs:
        if pair.tolerance == ONE_SIDED:  # measured apart (compare.tools.fd_study), not calibrated
            continue
        if pair.at is None:
            profile = error_profile(pair.actual, pair.expected)
            _merge(measured.setdefault(pair.kind, {}), pair.name, profile)
            continue
        steps = pair.steps()
        by_step = per_step.setdefault(pair.tolerance_key[1], {})
        for step in np.unique(steps):
            mask = steps == step  # the elements recorded at this step
            _merge(by_step, int(step), error_profile(pair.actual[mask], pair.expected[mask]))


def _merge(profiles: dict[K, ErrorProfile], key: K, profile: ErrorProfile) -> None:
    seen = profiles.get(key)
    profiles[key] = profile if seen is None else seen.merge(profile)


def calibrate(
    seeds: Sequence[int],
    dtypes: Sequence[str],
    variants: Sequence[str],
    *,
    batch_size: int,
    epochs: int = 0,
    momentum_epochs: int = 0,
    data: str = "bundled",
    safety_factor: float = tolerance_table.SAFETY_FACTOR,
    previous: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The calibration table (``previous`` keeps its other backends' entries)."""
    backend = backend_module()
    backend.configure_determinism(0)
    environment = {k: v for k, v in describe(backend, "").items() if k != "dtype"}
    measured, per_step = measure(
        seeds,
        dtypes,
        variants,
        batch_size=batch_size,
        epochs=epochs,
        momentum_epochs=momentum_epochs,
        data=data,
        progress=progress,
    )
    run = {
        "seeds": list(seeds),
        "dtypes": list(dtypes),
        "variants": list(variants),
        "batch_size": batch_size,
        "epochs": epochs,
        "momentum_epochs": momentum_epochs,
        "momentum": MOMENTUM,
        "data": data,
        "environment": environment,
    }
    table = _empty_table(safety_factor, previous, replacing=[backend.NAME])
    _add_backend(table, backend.NAME, run, measured, per_step)
    return table


def merge(
    parts: Sequence[tuple[str, dict[str, Any]]], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One table from calibration tables ``(name, table)`` that measured disjoint parts of one
    grid of seeds x dtypes per backend, run alike (variants, batch size, epochs, data,
    environment): what one calibration over the whole grid gives, since every measurement is a
    maximum over runs. ``previous`` keeps its entries of backends no part has. Raises
    :class:`InputError` naming the part that does not fit."""
    if not parts:
        raise InputError("--merge needs at least one calibration table")
    safety = {table.get("safety_factor") if isinstance(table, dict) else None for _, table in parts}
    if len(safety) != 1:
        raise InputError(f"the tables to merge differ in safety_factor: {sorted(map(str, safety))}")
    factor = safety.pop()
    if isinstance(factor, bool) or not isinstance(factor, int | float):
        raise InputError(f"{parts[0][0]} is not a calibration table: no safety_factor")
    backends = dict.fromkeys(b for name, t in parts for b in _section(t, "runs", name))
    table = _empty_table(float(factor), previous, replacing=list(backends))
    for backend in backends:
        having = [(name, t) for name, t in parts if backend in t["runs"]]
        runs = [(name, _section(t["runs"], backend, name)) for name, t in having]
        run = _merged_run(backend, runs)
        measured: Profiles = {}
        per_step: StepProfiles = {}
        for name, t in having:
            try:
                _read_measured(t["measured"][backend], measured, per_step)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                raise InputError(
                    f"{name} is not a calibration table: bad measured entry for {backend} "
                    f"({type(exc).__name__}: {exc})"
                ) from None
        unmeasured = [d for d in run["dtypes"] if d not in measured]
        if unmeasured:
            raise InputError(f"no table to merge has measurements of {backend} {unmeasured[0]}")
        _add_backend(table, backend, run, measured, per_step)
    return table


def _section(table: Any, key: str, name: str) -> dict[str, Any]:
    if not isinstance(table, dict) or not isinstance(table.get(key), dict):
        raise InputError(f"{name} is not a calibration table: no {key!r} entry")
    section: dict[str, Any] = table[key]
    return section


def _merged_run(backend: str, runs: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The ``runs`` entry of the whole grid; the parts must be run alike and cover a full
    seeds x dtypes grid exactly once."""
    first_name, first = runs[0]
    alike = {k: v for k, v in first.items() if k not in ("seeds", "dtypes")}
    cells: dict[tuple[int, str], str] = {}
    for name, run in runs:
        for key, value in alike.items():
            theirs = run.get(key)
            if theirs != value:
                if isinstance(theirs, dict) and isinstance(value, dict):
                    keys = sorted(k for k in {*theirs, *value} if theirs.get(k) != value.get(k))
                    theirs = {k: theirs.get(k) for k in keys}
                    value = {k: value.get(k) for k in keys}
                raise InputError(
                    f"{name} and {first_name} calibrated {backend} differently: {key} "
                    f"{theirs!r} != {value!r}"
                )
        try:
            grid = [(int(s), str(d)) for s in run["seeds"] for d in run["dtypes"]]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{name} is not a calibration table: bad runs entry") from None
        for cell in grid:
            if cell in cells:
                raise InputError(
                    f"{name} and {cells[cell]} both measured {backend} seed {cell[0]} "
                    f"{cell[1]}: merge disjoint calibrations"
                )
            cells[cell] = name
    seeds = sorted({s for s, _ in cells})
    dtypes = sorted({d for _, d in cells})
    missing = [(s, d) for s in seeds for d in dtypes if (s, d) not in cells]
    if missing:
        s, d = missing[0]
        raise InputError(
            f"the merged {backend} calibration is not a full seeds x dtypes grid: seed {s} "
            f"{d} is missing ({len(missing)} cells in all)"
        )
    return {"seeds": seeds, "dtypes": dtypes, **alike}


def _read_measured(entry: dict[str, Any], measured: Profiles, per_step: StepProfiles) -> None:
    """Merge one table's ``measured`` entry of a backend into ``measured`` / ``per_step``."""
    for dtype, kinds in entry.items():
        for kind, checks in kinds.items():
            for name, row in checks.items():
                if kind != "training":
                    profile = ErrorProfile(*(float(row[f]) for f in PROFILE_FIELDS))
                    _merge(measured.setdefault(dtype, {}).setdefault(kind, {}), name, profile)
                    continue
                by_step = per_step.setdefault(dtype, {}).setdefault(name, {})
                for i, at in enumerate(row["at"]):
                    profile = ErrorProfile(*(float(row[f][i]) for f in PROFILE_FIELDS))
                    _merge(by_step, int(at), profile)


def _empty_table(
    safety_factor: float, previous: dict[str, Any] | None, *, replacing: Sequence[str]
) -> dict[str, Any]:
    """A table with no measurements but ``previous``'s entries of backends not ``replacing``."""
    table: dict[str, Any] = {
        "schema_version": 1,
        "about": "Tolerances of lenet-parity, measured by `lenet-parity calibrate`: per backend, "
        "dtype, kind and check: atol = safety_factor x max_abs, the check's largest absolute "
        "error, and rtol = safety_factor x max_rel_large, its largest relative error among "
        "elements within a factor 10 of the tensor's largest magnitude; over every seed and "
        "variant; rounded up to 2 significant digits. An element fails a check when it exceeds "
        "both atol and rtol. Training checks have one such pair per step they record (`at`), "
        "from the running maximum of the measurements over the steps: an envelope.",
        "safety_factor": safety_factor,
        "tolerances": {},
        "measured": {},
        "runs": {},
    }
    if previous:
        for key in ("tolerances", "measured", "runs"):
            table[key] = {b: v for b, v in previous.get(key, {}).items() if b not in replacing}
    return table


def _add_backend(
    table: dict[str, Any],
    backend: str,
    run: dict[str, Any],
    measured: Profiles,
    per_step: StepProfiles,
) -> None:
    """Record one backend's run, measurements and the tolerances they give."""
    safety_factor = table["safety_factor"]
    table["runs"][backend] = run
    table["measured"][backend] = {
        dtype: {
            **{
                kind: {name: _fields(p) for name, p in checks.items()}
                for kind, checks in kinds.items()
            },
            **_training(per_step.get(dtype, {}), lambda steps: _by_step(steps, _fields)),
        }
        for dtype, kinds in ((d, measured[d]) for d in run["dtypes"])
    }
    table["tolerances"][backend] = {
        dtype: {
            **{kind: _tolerances(kind, checks, safety_factor) for kind, checks in kinds.items()},
            **_training(per_step.get(dtype, {}), lambda steps: _envelope(steps, safety_factor)),
        }
        for dtype, kinds in ((d, measured[d]) for d in run["dtypes"])
    }
    for key in ("tolerances", "measured", "runs"):  # backends in BACKENDS order
        order = sorted(
            table[key],
            key=lambda b: BACKENDS.index(b) if b in BACKENDS else len(BACKENDS),
        )
        table[key] = {b: table[key][b] for b in order}


def _envelope(steps: dict[int, ErrorProfile], safety_factor: float) -> dict[str, Any]:
    return tolerance_table.Envelope.from_profiles(steps, safety_factor).as_dict()


def _fields(profile: ErrorProfile) -> dict[str, float]:
    return dict(zip(PROFILE_FIELDS, profile.row(), strict=True))


def _by_step(
    steps: dict[int, ErrorProfile], fields: Callable[[ErrorProfile], dict[str, float]]
) -> dict[str, list[float] | list[int]]:
    """Per-step profiles as columns: ``{"at": [...], "max_abs": [...], ...}``."""
    at = sorted(steps)
    columns: dict[str, list[float] | list[int]] = {"at": at}
    for field in PROFILE_FIELDS:
        columns[field] = [fields(steps[s])[field] for s in at]
    return columns


def _training(
    per_step: dict[str, dict[int, ErrorProfile]],
    entry: Callable[[dict[int, ErrorProfile]], dict[str, Any]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``training`` kind's entries (none when calibration ran no training)."""
    if not per_step:
        return {}
    return {"training": {name: entry(steps) for name, steps in per_step.items()}}


def _tolerances(
    kind: str, profiles: dict[str, ErrorProfile], safety_factor: float
) -> dict[str, dict[str, float]]:
    """Per check, its own tolerance; for the finite differences one tolerance pooled over all
    their checks, because their error comes from the step size and the loss (round-off
    eps·|loss|/h, truncation h²·|f‴|), the same for every tensor, and a tensor whose sampled
    entries all sat on relu kinks in calibration measured nothing of its own."""
    if kind in POOLED_KINDS:
        pooled = functools.reduce(ErrorProfile.merge, profiles.values())
        profiles = dict.fromkeys(profiles, pooled)
    return {
        name: dataclasses.asdict(tolerance_table.derive(p, safety_factor))
        for name, p in profiles.items()
    }


def read_previous(path: Path) -> dict[str, Any] | None:
    """An existing table at ``path`` to merge into, or None."""
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a calibration table: {exc}") from None
    if not isinstance(previous, dict) or previous.get("schema_version") != 1:
        raise InputError(f"{path} is not a calibration table (schema_version 1)")
    return previous
