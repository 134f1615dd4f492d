"""The tolerances: one pair (atol, rtol) per Keras backend, dtype, kind and check — all measured.

The defaults are read from ``compare/tolerances.json``, which ``lenet-parity calibrate``
writes: it runs the unmutated comparison over many seeds and both variants, keeps for every
check its largest honest disagreement (:class:`compare.checks.ErrorProfile`) and sets

    atol = SAFETY_FACTOR × (largest absolute error of the check)
    rtol = SAFETY_FACTOR × (largest relative error of the check's large elements)

rounded up to two significant digits. Tolerances are per check and not per kind alone because
float noise follows each tensor's scale: the loss (~2.3), a conv kernel's gradient (~1e-2) and
dloss/dinput (~1e-4) differ by orders of magnitude, and one shared number would either miss
bugs in the small tensors or flag noise in the large ones.

Rerun ``lenet-parity calibrate --out compare/tolerances.json`` to refresh the table; a test
checks that the defaults are what the recorded measurements and safety factor give. Any
tolerance can be overridden per kind (``check_parity(tolerances=..., atol=..., rtol=...)``,
``lenet-parity check --atol/--rtol``).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from collections.abc import Mapping
from typing import Any, Final

from compare.checks import KINDS, ErrorProfile, Tolerance
from compare.errors import InputError

TABLE_RESOURCE: Final = "tolerances.json"
# Ten times the largest honest disagreement seen in calibration: room for seeds, batches and
# digits that calibration did not see, while a forward bug of 1e-4 relative still shows in
# float32 (measured on fc1: 5e-5 in the cs231n measure, which halves relative errors, against
# an rtol of 2e-5).
SAFETY_FACTOR: Final = 10.0

Tolerances = dict[tuple[str, str], Tolerance]  # (kind, check name) -> tolerance


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
    text = importlib.resources.files("compare").joinpath(TABLE_RESOURCE).read_text("utf-8")
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
        (kind, name): Tolerance(**tol)
        for kind, checks in kinds.items()
        for name, tol in checks.items()
    }


def resolve(
    backend: str,
    dtype: str,
    overrides: Mapping[str, Tolerance] | None = None,
    *,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
) -> Tolerances:
    """The defaults; then ``overrides`` (a whole :class:`Tolerance` per kind); then single
    ``atol``/``rtol`` values per kind. Key ``"*"`` means every kind."""
    result = defaults(backend, dtype)
    for kind, tol in (overrides or {}).items():
        for key in _keys(result, kind):
            result[key] = tol
    for arg, values in (("atol", atol or {}), ("rtol", rtol or {})):
        for kind, value in values.items():
            for key in _keys(result, kind):
                result[key] = Tolerance(**{**vars(result[key]), arg: value})
    return result


def _keys(tolerances: Tolerances, kind: str) -> list[tuple[str, str]]:
    if kind != "*" and kind not in KINDS:
        raise InputError(f"unknown check kind {kind!r}; expected one of {', '.join(KINDS)}")
    return [key for key in tolerances if kind in ("*", key[0])]
