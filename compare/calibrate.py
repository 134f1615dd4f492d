"""``lenet-parity calibrate``: measure honest float disagreement and derive the tolerances.

Runs the unmutated comparison (fresh weights and split per seed, both variants) for every
seed and dtype on the backend Keras runs on, records per check the largest honest
disagreement (:func:`compare.checks.error_profile`), and writes the table that
:mod:`compare.tolerances` reads its defaults from. Entries for other backends already in the
output file are kept.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from compare import tolerances as tolerance_table
from compare.checks import ErrorProfile, error_profile
from compare.environment import describe
from compare.errors import InputError
from compare.parity import CheckConfig, collect, reference_backend

PROFILE_FIELDS = ("max_abs", "max_rel", "max_rel_large")
POOLED_KINDS = ("finite-difference",)


def measure(
    seeds: Sequence[int],
    dtypes: Sequence[str],
    variants: Sequence[str],
    *,
    batch_size: int,
    data: str = "bundled",
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict[str, ErrorProfile]]]:
    """``{dtype: {kind: {check: profile}}}``, each merged over all seeds and variants."""
    backend = reference_backend()
    measured: dict[str, dict[str, dict[str, ErrorProfile]]] = {}
    for dtype in dtypes:
        for variant in variants:
            for seed in seeds:
                backend.configure_determinism(seed)
                config = CheckConfig(variant, dtype, seed, batch_size, data)
                for pair in collect(config, backend=backend):
                    profile = error_profile(pair.actual, pair.expected)
                    checks = measured.setdefault(dtype, {}).setdefault(pair.kind, {})
                    seen = checks.get(pair.name)
                    checks[pair.name] = profile if seen is None else seen.merge(profile)
                if progress is not None:
                    progress(f"{dtype} {variant} seed {seed}")
    return measured


def calibrate(
    seeds: Sequence[int],
    dtypes: Sequence[str],
    variants: Sequence[str],
    *,
    batch_size: int,
    data: str = "bundled",
    safety_factor: float = tolerance_table.SAFETY_FACTOR,
    previous: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The calibration table (``previous`` keeps its other backends' entries)."""
    backend = reference_backend()
    backend.configure_determinism(0)
    environment = {k: v for k, v in describe(backend, "").items() if k != "dtype"}
    measured = measure(seeds, dtypes, variants, batch_size=batch_size, data=data, progress=progress)
    table: dict[str, Any] = {
        "schema_version": 1,
        "about": "Tolerances of lenet-parity, measured by `lenet-parity calibrate`: per backend, "
        "dtype, kind and check: atol = safety_factor x max_abs, the check's largest absolute "
        "error, and rtol = safety_factor x max_rel_large, its largest relative error among "
        "elements within a factor 10 of the tensor's largest magnitude; over every seed and "
        "variant; rounded up to 2 significant digits. An element fails a check when it exceeds "
        "both atol and rtol.",
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
        "data": data,
        "environment": environment,
    }
    table["measured"][backend.NAME] = {
        dtype: {
            kind: {
                name: dict(zip(PROFILE_FIELDS, p.row(), strict=True)) for name, p in checks.items()
            }
            for kind, checks in kinds.items()
        }
        for dtype, kinds in measured.items()
    }
    table["tolerances"][backend.NAME] = {
        dtype: {kind: _tolerances(kind, checks, safety_factor) for kind, checks in kinds.items()}
        for dtype, kinds in measured.items()
    }
    return table


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
