"""The verdict of one parity check, as a plain record: what ran, every check, and the training
run. Presentation — tables, the one-line summary, reports — is :mod:`compare.output`'s.

Order is data-flow order, because the first failure is where a bug is: the forward outputs
from the first layer to the last; then the loss; then, from the output layer back to the input,
each parameter's gradient (the reference's, then the finite differences'), and last
dloss/dinput. Then the training run: its checks are ordered in time — the first failing
training check is the one whose first bad element comes earliest (the loss before step s's
update, then the parameters after it, then the held-out metrics of an epoch ending at s).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import numpy as np
import pandas as pd

from compare.judge import tolerances as tolerance_table
from compare.judge.checks import Check, Pair
from compare.parity import training
from compare.parity.config import CheckConfig
from compare.sides.protocol import PROTOCOL_VERSION, ModelSpec

SCHEMA_VERSION: Final = 3


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    config: CheckConfig
    environment: dict[str, Any]
    checks: list[Check]
    tolerances: tolerance_table.Tolerances
    seconds: float
    spec: ModelSpec
    curves: training.Curves | None = None
    # The compared arrays themselves (not in the JSON): the cross-backend matrix compares the
    # reference sides of two verdicts.
    pairs: list[Pair] = dataclasses.field(default_factory=list, repr=False)

    @property
    def first_failure(self) -> Check | None:
        """The first failing check in data-flow order; among training checks, the one that
        fails earliest in the training run (see the module docstring)."""
        failed = [c for c in self.checks if c.failed]
        before_training = [c for c in failed if c.kind != "training"]
        if before_training or not failed:
            return next(iter(before_training), None)
        return min(failed, key=lambda c: (c.step or 0, _phase(c.name)))

    def counts(self) -> dict[str, int]:
        """How many checks have each status."""
        counts: dict[str, int] = {}
        for c in self.checks:
            counts[c.status] = counts.get(c.status, 0) + 1
        return counts

    def first_step_outside(self) -> int | None:
        """The first training step whose loss leaves its tolerance envelope, if any."""
        loss = next(
            (c for c in self.checks if (c.kind, c.name) == ("training", training.STEP_LOSS)), None
        )
        return None if loss is None or not loss.failed else loss.step

    def curve_frame(self) -> pd.DataFrame | None:
        """The training run step by step (:meth:`compare.parity.training.Curves.frame`), with
        the step-loss envelope; None without training."""
        if self.curves is None:
            return None
        steps = np.arange(1, self.curves.plan.steps + 1)
        key = (
            "training",
            training.envelope_name(training.STEP_LOSS, self.config.optimizer_family()),
        )
        return self.curves.frame(tolerance_table.at_steps(self.tolerances, key, steps))

    def heldout_frame(self) -> pd.DataFrame | None:
        """The held-out loss and accuracy after every epoch; None without training."""
        return None if self.curves is None else self.curves.heldout_frame()

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON schema (docs/verdict.md), version 3."""
        first = self.first_failure
        return {
            "schema_version": SCHEMA_VERSION,
            "protocol_version": PROTOCOL_VERSION,
            "passed": self.passed,
            "counts": self.counts(),
            "config": dataclasses.asdict(self.config),
            "environment": self.environment,
            "checks": [c.as_dict() for c in self.checks],
            "first_failure": None
            if first is None
            else {"kind": first.kind, "name": first.name, "step": first.step},
            "training": None if self.curves is None else self._training_dict(),
            "timing": {
                "seconds": round(self.seconds, 3),
                "training_seconds": None
                if self.curves is None
                else {
                    "implementation": round(self.curves.implementation.seconds, 3),
                    "reference": round(self.curves.reference.seconds, 3),
                },
            },
        }

    def _training_dict(self) -> dict[str, Any]:
        assert self.curves is not None
        plan, ours, theirs = self.curves.plan, self.curves.implementation, self.curves.reference
        return {
            "steps": plan.steps,
            "steps_per_epoch": plan.steps_per_epoch,
            "snapshot_steps": plan.snapshot_steps(),
            "first_step_outside_envelope": self.first_step_outside(),
            "step_loss": {
                "implementation": ours.step_loss.tolist(),
                "reference": theirs.step_loss.tolist(),
            },
            "heldout_loss": {
                "implementation": ours.heldout_loss.tolist(),
                "reference": theirs.heldout_loss.tolist(),
            },
            "heldout_accuracy": {
                "implementation": ours.heldout_accuracy.tolist(),
                "reference": theirs.heldout_accuracy.tolist(),
            },
        }


def _phase(name: str) -> int:
    """Order within one training step: the loss (before the update), then the parameters
    (after it), then the held-out metrics (after the epoch that ends there)."""
    base = name.split(" [")[0]
    return 0 if base == training.STEP_LOSS else 2 if base in training.HELDOUT else 1
