"""``lenet-parity calibrate``: measure honest float disagreement and derive the tolerances.

Runs the unmutated comparison (fresh weights and split per seed, both variants) for every
seed and dtype on the backend Keras runs on, records per check the largest honest
disagreement (:func:`compare.checks.error_profile`), and writes the table that
:mod:`compare.tolerances` reads its defaults from. Training checks are measured at every step
they record and become envelopes (:class:`compare.tolerances.Envelope`) up to the last step of
the calibrated epochs. Entries for other backends already in the output file are kept.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from compare import tolerances as tolerance_table
from compare.checks import ErrorProfile, Pair, error_profile
from compare.environment import describe
from compare.errors import InputError
from compare.parity import CheckConfig, check_backend_dtype, collect, reference_backend

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
    seeds)."""
    backend = reference_backend()
    measured: Profiles = {}
    per_step: StepProfiles = {}
    for dtype in dtypes:
        check_backend_dtype(backend, dtype)
        for variant in variants:
            for seed in seeds:
                runs = [CheckConfig(variant, dtype, seed, batch_size, data, epochs=epochs)]
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
                    pairs, _ = collect(config, backend=backend)
                    _record(
                        pairs if config is runs[0] else [p for p in pairs if p.at is not None],
                        measured.setdefault(dtype, {}),
                        per_step.setdefault(dtype, {}),
                    )
                if progress is not None:
                    progress(f"{dtype} {variant} seed {seed}")
    return measured, per_step


def _record(
    pairs: Sequence[Pair],
    measured: dict[str, dict[str, ErrorProfile]],
    per_step: dict[str, dict[int, ErrorProfile]],
) -> None:
    """Merge one run's profiles: whole checks, and training checks step by step."""
    for pair in pairs:
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
    backend = reference_backend()
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
            table[key] = {b: v for b, v in previous.get(key, {}).items() if b != backend.NAME}
    table["runs"][backend.NAME] = {
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
    table["measured"][backend.NAME] = {
        dtype: {
            **{
                kind: {name: _fields(p) for name, p in checks.items()}
                for kind, checks in kinds.items()
            },
            **_training(per_step.get(dtype, {}), lambda steps: _by_step(steps, _fields)),
        }
        for dtype, kinds in measured.items()
    }
    table["tolerances"][backend.NAME] = {
        dtype: {
            **{kind: _tolerances(kind, checks, safety_factor) for kind, checks in kinds.items()},
            **_training(per_step.get(dtype, {}), lambda steps: _envelope(steps, safety_factor)),
        }
        for dtype, kinds in measured.items()
    }
    return table


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
