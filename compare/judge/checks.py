"""The one comparison helper: every forward, gradient and finite-difference comparison in
lenet-parity goes through :func:`compare_arrays`.

Given two named arrays (``actual`` — the scratch side — and ``expected`` — the reference), a
kind and a :class:`Tolerance`, it checks, in this order:

1. the shapes are equal,
2. the dtypes are equal,
3. NaN, +Inf and −Inf sit at exactly the same places (never zeroed away: a NaN against a
   number is a failure, not a match),

and then, over the finite elements, computes the largest absolute error ``|a − b|``, the
largest relative error ``|a − b| / max(tiny, |a| + |b|)`` (cs231n's ``rel_error``, with the
smallest normal float64 instead of 1e-8 so that small values are not excused), the index of the
worst element and the number of bad elements. An element is bad when its absolute error
exceeds ``atol`` AND its relative error exceeds ``rtol``; the check passes when no element is
bad. Every check has its own calibrated pair (:mod:`compare.judge.tolerances`): ``atol`` bounds the
honest float noise of that tensor, whose size follows the tensor's scale, and ``rtol`` lets a
large element through when it is relatively as accurate as honest large elements are.

Every check also carries its **margin**: its error ÷ what it was allowed, so that a check fails
exactly when its margin is >= 1 (:func:`element_margins`). An element is bad only when it is
beyond both tolerances, so its margin is ``min(abs_err / atol, rel_err / rtol)`` (``x / 0`` is
+inf for ``x > 0`` and 0 for ``x == 0``), held just under 1 for an element that is not bad (so
that ``abs_err == atol`` exactly, which passes, is not rounded up to 1) and at least 1 for one
that is; the check's margin is the largest over its elements (0 for an empty array). Margins
are capped at :data:`MARGIN_CAP`, the largest finite float64, so that the JSON always holds a
finite number, even when an allowance is 0; a shape, dtype or NaN/Inf-place mismatch has the
cap as its margin, and a check that compared nothing ("not provided", "skipped", "n/a") has 0.

:func:`error_profile` gives what calibration measures for that rule.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final

import numpy as np

KINDS: Final = ("forward", "gradient", "finite-difference", "training")
TINY: Final = float(np.finfo(np.float64).tiny)
# Calibration takes rtol from the elements within a factor 10 of their tensor's largest
# magnitude: smaller sums can lose most of their digits to cancellation (a conv kernel gradient
# sums ~150,000 terms of both signs), which is float noise, not a relative accuracy.
LARGE_FRACTION: Final = 0.1
# The largest margin recorded: a failure with no finite ratio (an allowance of 0, a shape,
# dtype or NaN/Inf-place mismatch) is given this, the largest finite float64.
MARGIN_CAP: Final = float(np.finfo(np.float64).max)
# The largest margin of an element that is not bad: just under 1.
_BELOW_ONE: Final = float(np.nextafter(1.0, 0.0))


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Absolute and relative tolerance; an element fails when it exceeds both."""

    atol: float
    rtol: float

    def __post_init__(self) -> None:
        for arg in ("atol", "rtol"):
            value = getattr(self, arg)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"Invalid tolerance: `{arg}` must be a finite number >= 0. "
                    f"Received: {arg}={value!r}"
                )


@dataclasses.dataclass(frozen=True, eq=False)
class Pair:
    """Two arrays that should agree: ``actual`` from scratch, ``expected`` from the reference
    (Keras, or the finite differences).

    Training pairs also say when each element was recorded: ``at`` holds the training step of
    each element (broadcastable to the arrays' shape), and ``tolerance`` names the calibrated
    envelope they are judged against when it is not ``name``."""

    kind: str
    name: str
    actual: np.ndarray
    expected: np.ndarray
    at: np.ndarray | None = None
    tolerance: str | None = None
    # The smallest atol the pair is judged with: the resolution of a count-based measure.
    atol_floor: float = 0.0
    # For the float64 judge (compare.judge.float64): the reference's result of the same
    # computation in the other precision, widened to float64 — the float64 judge of a float32
    # pair, the float32 precision ladder of a float64 pair (None: no such run) — and the
    # tensor's reduction length.
    judge: np.ndarray | None = None
    length: int | None = None
    # For a float32 pair whose judge ran on another backend: that backend's float32 run of the
    # reference too, another honest float32 result (the judge allows the larger distance).
    also: np.ndarray | None = None
    # For a count judged by the float64 judge (the held-out accuracy): per element, the
    # fraction of outcomes that the reference and its other-precision run disagree on.
    disagreement: np.ndarray | None = None
    # What the check leaves out and why (e.g. elements under max pooling's ties), said with
    # its result.
    note: str | None = None

    @property
    def tolerance_key(self) -> tuple[str, str]:
        return (self.kind, self.tolerance or self.name)

    def steps(self) -> np.ndarray:
        """The step of every element, shaped like ``expected`` (training pairs only)."""
        if self.at is None:
            raise ValueError(f"{self.kind} {self.name!r} is not a training pair: it has no steps")
        return np.broadcast_to(self.at, np.shape(self.expected))


@dataclasses.dataclass(frozen=True, eq=False)
class PerElement:
    """A tolerance per element (arrays shaped like the compared arrays): the training curves'
    envelope, whose float noise grows with the step (:mod:`compare.judge.tolerances`)."""

    atol: np.ndarray
    rtol: np.ndarray

    def __post_init__(self) -> None:
        for arg in ("atol", "rtol"):
            value = np.asarray(getattr(self, arg), dtype=np.float64)
            if not (np.all(np.isfinite(value)) and np.all(value >= 0)):
                raise ValueError(
                    f"Invalid tolerance: `{arg}` must be finite numbers >= 0. "
                    f"Received: {arg}={value!r}"
                )
            object.__setattr__(self, arg, value)
        if self.atol.shape != self.rtol.shape:
            raise ValueError(
                "atol and rtol must have the same shape. "
                f"Received: atol.shape={self.atol.shape}, rtol.shape={self.rtol.shape}"
            )


STATUSES: Final = ("pass", "fail", "not provided", "skipped", "n/a")


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison's record (the ``checks`` entries of the JSON verdict).

    ``status``: "pass" or "fail" for a comparison made; "not provided" when the implementation
    did not return the array (never counted as passed); "skipped" when the check did not run
    (the method that enables it is missing, or it was not asked for: ``problem`` says which);
    "n/a" when there was nothing to compare. ``passed`` is ``status == "pass"``.

    ``margin``: the error ÷ the allowance (see the module docstring): >= 1 exactly when the
    status is "fail", in [0, 1) when it is "pass", 0 without comparison; always finite (at most
    :data:`MARGIN_CAP`). Left out (NaN), it is the cap for a failure and 0 otherwise."""

    kind: str
    name: str
    passed: bool
    max_abs_err: float | None
    max_rel_err: float | None
    atol: float
    rtol: float
    worst_index: tuple[int, ...] | None
    n_bad: int
    size: int
    problem: str | None = None  # shape, dtype or NaN/Inf mismatch; or how many elements failed
    first_bad_index: tuple[int, ...] | None = None  # the first bad element in C order
    # Training checks: the step of the training run the first bad element belongs to (for the
    # step-loss curve, the step before whose update the loss was measured).
    step: int | None = None
    status: str = ""
    margin: float = math.nan

    def __post_init__(self) -> None:
        status = self.status or ("pass" if self.passed else "fail")
        if status not in STATUSES or self.passed != (status == "pass"):
            raise ValueError(
                f"A check's status is one of {STATUSES} and passed means 'pass'. "
                f"Received: status={self.status!r}, passed={self.passed}"
            )
        object.__setattr__(self, "status", status)
        margin = self.margin
        if isinstance(margin, float) and math.isnan(margin):
            margin = MARGIN_CAP if status == "fail" else 0.0
        consistent = {"pass": 0 <= margin < 1, "fail": 1 <= margin <= MARGIN_CAP}
        if isinstance(margin, bool) or not consistent.get(status, margin == 0):
            raise ValueError(
                "A check's margin is finite, >= 1 when it fails, in [0, 1) when it passes and "
                f"0 without comparison. Received: status={status!r}, margin={margin!r}"
            )
        object.__setattr__(self, "margin", float(margin))

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    @classmethod
    def without_comparison(cls, kind: str, name: str, status: str, reason: str) -> Check:
        """A check that compared nothing: "not provided", "skipped" or "n/a", with why."""
        if status not in ("not provided", "skipped", "n/a"):
            raise ValueError(f"Not a status without comparison. Received: status={status!r}")
        return cls(kind, name, False, None, None, 0.0, 0.0, None, 0, 0, reason, status=status)

    def as_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        for key in ("worst_index", "first_bad_index"):
            index = getattr(self, key)
            record[key] = None if index is None else list(index)
        return record


def _nonfinite_mismatch(a: np.ndarray, b: np.ndarray) -> str | None:
    for label, test in (
        ("NaN", np.isnan),
        ("+Inf", lambda v: np.isposinf(v)),
        ("-Inf", lambda v: np.isneginf(v)),
    ):
        ma, mb = test(a), test(b)
        if not np.array_equal(ma, mb):
            n = int(np.count_nonzero(ma != mb))
            return (
                f"{label} at different places: {int(ma.sum())} in actual, {int(mb.sum())} in "
                f"expected, {n} element(s) differ"
            )
    return None


def _errors(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absolute error, relative error and magnitude |a|+|b| per element, in float64; elements
    that are non-finite on both sides (at the same places) count as exact."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    finite = np.isfinite(a64) & np.isfinite(b64)
    a64, b64 = np.where(finite, a64, 0.0), np.where(finite, b64, 0.0)
    abs_err = np.abs(a64 - b64)
    magnitude = np.abs(a64) + np.abs(b64)
    return abs_err, abs_err / np.maximum(TINY, magnitude), magnitude


def _ratio(error: np.ndarray, allowance: np.ndarray) -> np.ndarray:
    """``error / allowance`` per element, with ``x / 0`` = +inf for ``x > 0`` and 0 for 0."""
    ratio = np.divide(
        error, allowance, out=np.zeros_like(error), where=allowance > 0, casting="unsafe"
    )
    return np.where((allowance > 0) | (error == 0), ratio, np.inf)


def element_margins(
    abs_err: np.ndarray, rel_err: np.ndarray, atol: np.ndarray, rtol: np.ndarray
) -> np.ndarray:
    """Each element's margin: ``min(abs_err / atol, rel_err / rtol)``, clipped to just under 1
    for an element that is not bad and to at least 1 for one that is (abs_err > atol and
    rel_err > rtol), and capped at :data:`MARGIN_CAP`. So margin >= 1 exactly when the element
    is bad, whatever the rounding of the divisions."""
    abs_err, rel_err = np.asarray(abs_err, np.float64), np.asarray(rel_err, np.float64)
    atol, rtol = np.asarray(atol, np.float64), np.asarray(rtol, np.float64)
    with np.errstate(over="ignore"):  # a tiny allowance: the ratio overflows to inf, capped
        ratio = np.minimum(_ratio(abs_err, atol), _ratio(rel_err, rtol))
    bad = (abs_err > atol) & (rel_err > rtol)
    ratio = np.where(bad, np.maximum(ratio, 1.0), np.minimum(ratio, _BELOW_ONE))
    return np.minimum(ratio, MARGIN_CAP)


def compare_arrays(
    kind: str, name: str, actual: object, expected: object, tolerance: Tolerance | PerElement
) -> Check:
    """Compare ``actual`` (scratch) with ``expected`` (the reference) → one :class:`Check`.

    With a :class:`PerElement` tolerance (shaped like ``expected``), the record's ``atol`` and
    ``rtol`` are those of the worst element."""
    if kind not in KINDS:
        raise ValueError(f"Unknown check kind. Expected one of {KINDS}. Received: kind={kind!r}")
    a, b = np.asarray(actual), np.asarray(expected)
    if isinstance(tolerance, PerElement) and tolerance.atol.shape != b.shape:
        raise ValueError(
            f"A per-element tolerance must have the expected array's shape {b.shape}. "
            f"Received: shape={tolerance.atol.shape}"
        )
    atol, rtol = np.broadcast_to(tolerance.atol, b.shape), np.broadcast_to(tolerance.rtol, b.shape)
    record = Check(
        kind,
        name,
        False,
        None,
        None,
        float(atol.max(initial=0.0)),
        float(rtol.max(initial=0.0)),
        None,
        0,
        int(b.size),
    )
    problem = None
    if a.shape != b.shape:
        problem = f"shape {a.shape} != expected {b.shape}"
    elif a.dtype != b.dtype:
        problem = f"dtype {a.dtype} != expected {b.dtype}"
    else:
        problem = _nonfinite_mismatch(a, b)
    if problem is not None:
        first_bad = None
        if a.shape == b.shape and a.dtype == b.dtype:  # NaN/Inf places: the first that differs
            differ = (
                (np.isnan(a) != np.isnan(b))
                | (np.isinf(a) != np.isinf(b))
                | (np.isinf(a) & np.isinf(b) & (np.sign(a) != np.sign(b)))
            )
            first_bad = tuple(int(i) for i in np.unravel_index(int(np.argmax(differ)), a.shape))
        return dataclasses.replace(
            record,
            n_bad=int(max(a.size, b.size)),
            problem=problem,
            first_bad_index=first_bad,
            margin=MARGIN_CAP,
        )
    abs_err, rel_err, _ = _errors(a, b)
    bad = (abs_err > atol) & (rel_err > rtol)
    n_bad = int(np.count_nonzero(bad))
    worst = first = None
    if a.size:
        # The worst element: the largest absolute error among the bad ones, if any.
        flat = int(np.argmax(np.where(bad, abs_err, -1.0) if n_bad else abs_err))
        worst = tuple(int(i) for i in np.unravel_index(flat, a.shape))
        record = dataclasses.replace(record, atol=float(atol[worst]), rtol=float(rtol[worst]))
    if n_bad:
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
    return dataclasses.replace(
        record,
        passed=n_bad == 0,
        status="pass" if n_bad == 0 else "fail",
        first_bad_index=first,
        max_abs_err=float(abs_err.max(initial=0.0)),
        max_rel_err=float(rel_err.max(initial=0.0)),
        worst_index=worst,
        n_bad=n_bad,
        problem=f"{n_bad} of {a.size} element(s) beyond tolerance" if n_bad else None,
        margin=float(element_margins(abs_err, rel_err, atol, rtol).max(initial=0.0)),
    )


@dataclasses.dataclass(frozen=True)
class ErrorProfile:
    """What calibration keeps of honest comparisons of one check (merged over runs):
    the largest absolute error, the largest relative error, and the largest relative error
    among the large elements (magnitude at least ``LARGE_FRACTION`` of the tensor's largest),
    which is the relative float noise a correct implementation shows where it matters."""

    max_abs: float
    max_rel: float
    max_rel_large: float

    def merge(self, other: ErrorProfile) -> ErrorProfile:
        return ErrorProfile(*(max(a, b) for a, b in zip(self.row(), other.row(), strict=True)))

    def row(self) -> tuple[float, float, float]:
        return (self.max_abs, self.max_rel, self.max_rel_large)


def error_profile(actual: np.ndarray, expected: np.ndarray) -> ErrorProfile:
    """The :class:`ErrorProfile` of one honest comparison (which must match in shape, dtype
    and NaN/Inf places)."""
    a, b = np.asarray(actual), np.asarray(expected)
    if a.shape != b.shape or a.dtype != b.dtype or _nonfinite_mismatch(a, b) is not None:
        raise ValueError(
            f"An honest comparison must match in shape, dtype and NaN/Inf places. "
            f"Received: shapes {a.shape}/{b.shape}, dtypes {a.dtype}/{b.dtype}"
        )
    abs_err, rel_err, magnitude = _errors(a, b)
    large = magnitude >= LARGE_FRACTION * magnitude.max(initial=0.0)
    return ErrorProfile(
        max_abs=float(abs_err.max(initial=0.0)),
        max_rel=float(rel_err.max(initial=0.0)),
        max_rel_large=float(rel_err[large].max(initial=0.0)),
    )
