"""A verdict as text: the table of checks and the one-line summary (the terminal, the
assertion message of :func:`compare.assert_parity`, the Markdown report)."""

from __future__ import annotations

import pandas as pd

from compare.judge.checks import Check
from compare.parity.verdict import Verdict


def sci(value: float | None) -> str:
    """One number format everywhere: two significant digits in e-notation ("-" for none)."""
    return "-" if value is None else f"{value:.2e}"


def result(check: Check) -> str:
    """A check's result cell: pass, FAIL (why), or the status with its reason."""
    if check.failed:
        return f"FAIL ({check.problem})"
    if check.status == "pass":
        return "pass"
    return f"{check.status} ({check.problem})"


def frame(verdict: Verdict) -> pd.DataFrame:
    """One row per check, in data-flow order; ``step``: a failing training check's first step
    outside its tolerance."""
    checks = verdict.checks
    return pd.DataFrame(
        {
            "check": [c.name for c in checks],
            "kind": [c.kind for c in checks],
            "max abs": [sci(c.max_abs_err) for c in checks],
            "max rel": [sci(c.max_rel_err) for c in checks],
            "atol": [sci(c.atol) if c.max_abs_err is not None else "-" for c in checks],
            "rtol": [sci(c.rtol) if c.max_abs_err is not None else "-" for c in checks],
            "step": ["-" if c.step is None else str(c.step) for c in checks],
            "result": [result(c) for c in checks],
        }
    )


def table(verdict: Verdict) -> str:
    return str(frame(verdict).to_string(index=False))


def setup(verdict: Verdict) -> str:
    """What was checked, in one phrase."""
    c = verdict.config
    optimizer = f"SGD({c.learning_rate:g}" + (
        f", momentum {c.momentum:g}{', nesterov' if c.nesterov else ''})" if c.momentum else ")"
    )
    return (
        f"{c.variant}, {c.dtype}, seed {c.seed}, batch {c.batch_size}, "
        f"{c.epochs} epoch{'s' * (c.epochs != 1)} of {optimizer}, "
        f"{verdict.environment['backend']}" + (f", mutant {c.mutant}" if c.mutant else "")
    )


def summary(verdict: Verdict) -> str:
    """The one-line verdict."""
    label = verdict.config.implementation
    counts = verdict.counts()
    others = ", ".join(
        f"{counts[s]} {s}" for s in ("not provided", "skipped", "n/a") if counts.get(s)
    )
    first = verdict.first_failure
    if first is None:
        compared = counts.get("pass", 0)
        return (
            f"PASS: {label} matches Keras on all {compared} compared checks"
            + (f" ({others})" if others else "")
            + f" ({setup(verdict)})"
        )
    n_failed = counts.get("fail", 0)
    detail = first.problem
    if first.max_abs_err is not None:
        detail = (
            f"max abs {sci(first.max_abs_err)}, max rel {sci(first.max_rel_err)} at "
            f"{list(first.worst_index or ())} against atol {sci(first.atol)}, rtol "
            f"{sci(first.rtol)}: {first.problem}"
        )
    when = "" if first.step is None else f" at step {first.step}"
    return (
        f"FAIL: {label}'s first divergence at {first.kind} {first.name!r}{when} ({detail}); "
        f"{n_failed} of {len(verdict.checks)} checks fail ({setup(verdict)})"
    )
