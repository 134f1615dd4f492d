"""The tolerances: one pair (atol, rtol) per Keras backend, dtype, kind and check — all measured.

The defaults are read from ``compare/judge/tolerances.json``, which ``lenet-parity calibrate``
writes: it runs the unmutated comparison over many seeds and both variants, keeps for every
check its largest honest disagreement (:class:`compare.judge.checks.ErrorProfile`) and sets

    atol = SAFETY_FACTOR × (largest absolute error of the check)
    rtol = SAFETY_FACTOR × (largest relative error of the check's large elements)

rounded up to two significant digits. Tolerances are per check and not per kind alone because
float noise follows each tensor's scale: the loss (~2.3), a conv kernel's gradient (~1e-2) and
dloss/dinput (~1e-4) differ by orders of magnitude, and one shared number would either miss
bugs in the small tensors or flag noise in the large ones.

Training checks (kind ``training``) are judged against an :class:`Envelope`: float32 training
is chaotic, and the honest disagreement of two correct implementations grows with the step.
Calibration measures it at every recorded step, takes the running maximum over the steps (the
envelope never shrinks) and applies the same safety factor. A step beyond the calibrated ones
has no tolerance: the check refuses it rather than guess.

Rerun ``lenet-parity calibrate --out compare/judge/tolerances.json`` to refresh the table; a test
checks that the defaults are what the recorded measurements and safety factor give. Any
tolerance can be overridden per kind (``check_parity(tolerances=..., atol=..., rtol=...)``,
``lenet-parity check --atol/--rtol``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from compare.errors import InputError
from compare.judge.checks import KINDS, ErrorProfile, PerElement, Tolerance

TABLE_RESOURCE: Final = "tolerances.json"
# Ten times the largest honest disagreement seen in calibration: room for seeds, batches and
# digits that calibration did not see, while a forward bug of 1e-4 relative still shows in
# float32 (measured on fc1: 5e-5 in the cs231n measure, which halves relative errors, against
# an rtol of 2e-5).
SAFETY_FACTOR: Final = 10.0


@dataclasses.dataclass(frozen=True)
class Envelope:
    """A tolerance that grows with the training step: ``atol[i]`` and ``rtol[i]`` hold up to
    step ``at[i]``. Steps between calibrated ones take the next calibrated step's values (the
    envelope is non-decreasing, so that is the looser side)."""

    at: tuple[int, ...]
    atol: tuple[float, ...]
    rtol: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (len(self.at) == len(self.atol) == len(self.rtol) > 0) or list(self.at) != sorted(
            set(self.at)
        ):
            raise ValueError(
                "An envelope needs increasing steps and one atol and rtol per step. "
                f"Received: at={self.at}, atol={self.atol}, rtol={self.rtol}"
            )
        for values in (self.atol, self.rtol):
            for value in values:
                Tolerance(value, value)  # the same checks as every tolerance
            if any(b < a for a, b in itertools.pairwise(values)):
                raise ValueError(f"An envelope never shrinks. Received: {values}")

    @classmethod
    def from_profiles(cls, profiles: Mapping[int, ErrorProfile], safety: float) -> Envelope:
        """The envelope of per-step honest profiles: the running maximum over the steps, each
        step's tolerance derived from it like any other (:func:`derive`)."""
        at = sorted(profiles)
        running = list(itertools.accumulate((profiles[s] for s in at), ErrorProfile.merge))
        tols = [derive(p, safety) for p in running]
        return cls(tuple(at), tuple(t.atol for t in tols), tuple(t.rtol for t in tols))

    def over(self, steps: np.ndarray, what: str) -> PerElement:
        """The tolerance of every element recorded at ``steps``."""
        steps = np.asarray(steps)
        if steps.size and int(steps.max()) > self.at[-1]:
            raise InputError(
                f"the {what} tolerance is calibrated up to step {self.at[-1]}, but this run "
                f"reaches step {int(steps.max())}; run `lenet-parity calibrate --epochs N` "
                "with enough epochs, or train for fewer"
            )
        index = np.searchsorted(self.at, steps)  # the first calibrated step >= each step
        return PerElement(np.asarray(self.atol)[index], np.asarray(self.rtol)[index])

    def as_dict(self) -> dict[str, list[float] | list[int]]:
        return {"at": list(self.at), "atol": list(self.atol), "rtol": list(self.rtol)}


AnyTolerance = Tolerance | Envelope
Tolerances = dict[tuple[str, str], AnyTolerance]  # (kind, check name) -> tolerance


def round_up(value: float, digits: int = 2) -> float:
    """``value`` rounded up to ``digits`` significant digits (0 stays 0)."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value)) - digits + 1
    return float(f"{math.ceil(value / 10.0**exponent - 1e-9)}e{exponent}")


def derive(profile: ErrorProfile, safety: float) -> Tolerance:
    """One check's tolerance from its honest error profile."""
    return Tolerance(
        atol=round_up(safety * profile.max_abs), rtol=round_up(safety * profile.max_rel_large)
    )


@functools.cache
def load_table() -> dict[str, Any]:
    """The calibration table shipped with the package."""
    text = importlib.resources.files("compare.judge").joinpath(TABLE_RESOURCE).read_text("utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def defaults(backend: str, dtype: str) -> Tolerances:
    """The calibrated tolerance of every check for ``backend`` and ``dtype``."""
    try:
        kinds = load_table()["tolerances"][backend][dtype]
    except KeyError:
        raise InputError(
            f"no calibrated tolerances for the {backend} backend in {dtype}; run "
            f"`lenet-parity calibrate` with that backend and dtype"
        ) from None
    return {
        (kind, name): Envelope(**{k: tuple(v) for k, v in tol.items()})
        if "at" in tol
        else Tolerance(**tol)
        for kind, checks in kinds.items()
        for name, tol in checks.items()
    }


def at_steps(
    tolerances: Mapping[tuple[str, str], AnyTolerance],
    key: tuple[str, str],
    steps: np.ndarray | None,
) -> Tolerance | PerElement:
    """A check's tolerance; an envelope evaluated at each element's step."""
    tol = tolerances[key]
    if isinstance(tol, Envelope):
        assert steps is not None, f"{key} has an envelope tolerance but no steps"
        return tol.over(steps, f"{key[0]} {key[1]!r}")
    return tol


def for_pairs(
    tolerances: Mapping[tuple[str, str], AnyTolerance], keys: Sequence[tuple[str, str]]
) -> None:
    """Fail before any work when a check has no calibrated tolerance."""
    missing = [f"{kind} {name}" for kind, name in keys if (kind, name) not in tolerances]
    if missing:
        raise InputError(
            f"no calibrated tolerance for {', '.join(missing)}; rerun `lenet-parity calibrate`"
        )


def between_references(first: Tolerances, second: Tolerances) -> Tolerances:
    """The tolerances of comparing two Keras backends with each other, each calibrated against
    the scratch model: their sum, check by check. By the triangle inequality through scratch,
    |A − B| <= |A − S| + |S − B|, so two backends that each agree with scratch within their own
    tolerance agree with each other within the sum; no separate calibration is needed.
    Envelopes are summed at every step either calibrated, up to the last step both reach."""
    combined: Tolerances = {}
    for key in first.keys() & second.keys():
        a, b = first[key], second[key]
        if isinstance(a, Envelope) and isinstance(b, Envelope):
            last = min(a.at[-1], b.at[-1])
            at = np.array(sorted(s for s in {*a.at, *b.at} if s <= last))
            ta, tb = a.over(at, key[1]), b.over(at, key[1])
            combined[key] = Envelope(
                tuple(int(s) for s in at),
                tuple(float(v) for v in ta.atol + tb.atol),
                tuple(float(v) for v in ta.rtol + tb.rtol),
            )
        elif isinstance(a, Tolerance) and isinstance(b, Tolerance):
            combined[key] = Tolerance(a.atol + b.atol, a.rtol + b.rtol)
    return combined


def resolve(
    backend: str,
    dtype: str,
    overrides: Mapping[str, Tolerance] | None = None,
    *,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
    uncalibrated: Mapping[tuple[str, str], AnyTolerance] | None = None,
) -> Tolerances:
    """The defaults, with the ``uncalibrated`` checks' tolerances (measured, not in the
    table); then ``overrides`` (a whole :class:`Tolerance` per kind); then single
    ``atol``/``rtol`` values per kind. Key ``"*"`` means every kind."""
    result = {**defaults(backend, dtype), **(uncalibrated or {})}
    for kind, tol in (overrides or {}).items():
        for key in _keys(result, kind):
            result[key] = tol
    for arg, values in (("atol", atol or {}), ("rtol", rtol or {})):
        for kind, value in values.items():
            for key in _keys(result, kind):
                result[key] = _replaced(result[key], arg, value)
    return result


def _replaced(tolerance: AnyTolerance, arg: str, value: float) -> AnyTolerance:
    """``tolerance`` with its ``atol`` or ``rtol`` set to ``value`` (at every step)."""
    if isinstance(tolerance, Envelope):
        constant = (value,) * len(tolerance.at)
        atol, rtol = (constant, tolerance.rtol) if arg == "atol" else (tolerance.atol, constant)
        return Envelope(tolerance.at, atol, rtol)
    return dataclasses.replace(tolerance, **{arg: value})


def _keys(tolerances: Tolerances, kind: str) -> list[tuple[str, str]]:
    if kind != "*" and kind not in KINDS:
        raise InputError(f"unknown check kind {kind!r}; expected one of {', '.join(KINDS)}")
    return [key for key in tolerances if kind in ("*", key[0])]
