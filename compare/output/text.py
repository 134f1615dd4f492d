"""A verdict as text, the one rendering every format shares: the table of checks (with each
check's margin), the checks closest to failing, and the one-line verdict — for the terminal,
the assertion message of :func:`compare.assert_parity`, and the Markdown and HTML reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pandas as pd

from compare.judge.checks import MARGIN_CAP, Check
from compare.parity.config import CheckConfig
from compare.parity.verdict import Verdict

NO_COMPARISON: Final = ("not provided", "skipped", "n/a")
CLOSEST: Final = 5  # the checks closest to failing, listed before the full table


def sci(value: float | None) -> str:
    """The one number format: two significant digits in e-notation ("-" for none)."""
    return "-" if value is None else f"{value:.2e}"


def margin_text(check: Check) -> str:
    """A check's margin as shown: "-" without comparison, "cap" at :data:`MARGIN_CAP`."""
    if check.status in NO_COMPARISON:
        return "-"
    return "cap" if check.margin >= MARGIN_CAP else sci(check.margin)


def result_text(check: Check) -> str:
    """A check's result: pass, FAIL (why), or the status without comparison with its reason."""
    if check.status == "pass":
        return "pass"
    label = "FAIL" if check.status == "fail" else check.status
    return label if not check.problem else f"{label} ({check.problem})"


def checks_table(checks: Sequence[Check]) -> pd.DataFrame:
    """The checks as shown, one row each, in data-flow order: every number in :func:`sci`'s
    format; ``step``: a failing training check's first step outside its tolerance."""
    compared = [c.status not in NO_COMPARISON for c in checks]
    return pd.DataFrame(
        {
            "check": [c.name for c in checks],
            "kind": [c.kind for c in checks],
            "margin": [margin_text(c) for c in checks],
            "max abs": [sci(c.max_abs_err) for c in checks],
            "max rel": [sci(c.max_rel_err) for c in checks],
            "atol": [sci(c.atol) if ok else "-" for c, ok in zip(checks, compared, strict=True)],
            "rtol": [sci(c.rtol) if ok else "-" for c, ok in zip(checks, compared, strict=True)],
            "step": ["-" if c.step is None else str(c.step) for c in checks],
            "result": [result_text(c) for c in checks],
        },
        columns=["check", "kind", "margin", "max abs", "max rel", "atol", "rtol", "step", "result"],
    )


def closest_to_failing(checks: Sequence[Check], n: int = CLOSEST) -> list[Check]:
    """The ``n`` compared checks with the largest margins, largest first (failures first)."""
    compared = [c for c in checks if c.status not in NO_COMPARISON]
    return sorted(compared, key=lambda c: -c.margin)[:n]


def counts(checks: Sequence[Check]) -> dict[str, int]:
    """How many checks have each status."""
    found: dict[str, int] = {}
    for c in checks:
        found[c.status] = found.get(c.status, 0) + 1
    return found


def training_text(config: Mapping[str, Any]) -> str:
    """How long both sides trained, from a config record: "1 epoch (at most 200 steps)"."""
    epochs, steps = config.get("epochs"), config.get("steps")
    if epochs == 0 or steps == 0:
        return "no training"
    if epochs is None:
        return f"{steps} step{'s' * (steps != 1)}"
    text = f"{epochs} epoch{'s' * (epochs != 1)}"
    return text if steps is None else f"{text} (at most {steps} steps)"


def setup_text(config: CheckConfig, environment: Mapping[str, Any]) -> str:
    """What was checked, in one phrase."""
    c = dataclasses.asdict(config)
    momentum = c.get("momentum", 0.0)
    optimizer = f"SGD({c.get('learning_rate', 0.0):g}" + (
        f", momentum {momentum:g}{', nesterov' if c.get('nesterov') else ''})" if momentum else ")"
    )
    mutant = c.get("mutant")
    train_batch = c.get("train_batch_size", c.get("batch_size"))
    judge = environment.get("judge")
    elsewhere = (
        f", judged by {judge.get('run')} on {judge.get('backend')} (a worker)"
        if isinstance(judge, Mapping) and judge.get("worker")
        else ""
    )
    return (
        f"{c.get('model')}, {c.get('dtype')}, seed {c.get('seed')}, batch "
        f"{c.get('batch_size')}, {training_text(c)} of {optimizer} in batches of {train_batch}, "
        f"{environment.get('backend')}{elsewhere}" + (f", mutant {mutant}" if mutant else "")
    )


def verdict_line(
    checks: Sequence[Check],
    config: CheckConfig,
    environment: Mapping[str, Any],
    first_failure: Check | None,
) -> str:
    """The one-line verdict: PASS with how many checks were compared, or FAIL with the first
    divergence (its errors, tolerances and margin) and how many checks fail."""
    label = dataclasses.asdict(config).get("implementation") or "scratch"
    found = counts(checks)
    others = ", ".join(f"{found[s]} {s}" for s in NO_COMPARISON if found.get(s))
    setup = setup_text(config, environment)
    if first_failure is None:
        return (
            f"PASS: {label} matches Keras on all {found.get('pass', 0)} compared checks"
            + (f" ({others})" if others else "")
            + f" ({setup})"
        )
    first = first_failure
    detail = first.problem
    if first.max_abs_err is not None:
        detail = (
            f"margin {margin_text(first)}: max abs {sci(first.max_abs_err)}, max rel "
            f"{sci(first.max_rel_err)} at {list(first.worst_index or ())} against atol "
            f"{sci(first.atol)}, rtol {sci(first.rtol)}: {first.problem}"
        )
    when = "" if first.step is None else f" at step {first.step}"
    return (
        f"FAIL: {label}'s first divergence at {first.kind} {first.name!r}{when} ({detail}); "
        f"{found.get('fail', 0)} of {len(checks)} checks fail ({setup})"
    )


def frame(verdict: Verdict) -> pd.DataFrame:
    """One row per check of ``verdict`` (:func:`checks_table`)."""
    return checks_table(verdict.checks)


def table(verdict: Verdict) -> str:
    return str(frame(verdict).to_string(index=False))


def summary(verdict: Verdict) -> str:
    """The one-line verdict (:func:`verdict_line`)."""
    return verdict_line(verdict.checks, verdict.config, verdict.environment, verdict.first_failure)
