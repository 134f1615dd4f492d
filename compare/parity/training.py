"""Training-curve parity: both models start from the same weights and train on the identical
sequence of batches, and every step is recorded on both sides.

The batches come from one seeded shuffle made here (:func:`schedule`) and are fed to both
sides; neither side shuffles, and neither reports a running mean: after every step each side
gives the batch's loss *before* the update (what a Keras train step reports). At
the snapshot steps — 1, 10 and every epoch end — every parameter is copied after the update,
and after every epoch the held-out loss and accuracy are measured.

:class:`Curves` turns the two recordings into the ``training`` pairs of the parity check, each
element labelled with the step it was recorded at, so that the step-dependent envelope of
:mod:`compare.judge.tolerances` can judge it and the verdict can say at which step the curves leave
it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

import numpy as np
import pandas as pd
from tqdm import tqdm

from compare.judge.checks import Pair, PerElement, Tolerance

SNAPSHOT_STEPS: Final = (1, 10)  # besides every epoch end
STEP_LOSS: Final = "step loss"
HELDOUT: Final = ("held-out loss", "held-out accuracy")
# An accuracy may differ by one digit honestly: a digit whose two largest probabilities tie to
# within rounding goes either way under any change of summation order. So the held-out
# accuracy's atol is at least 1.5 digits' worth (one digit passes, two fail) — the measure's
# resolution, which calibration cannot see when no calibrated run happened to flip a digit.
ACCURACY_DIGITS_FLOOR: Final = 1.5


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """Every step's batch (index arrays into the training set), epochs one after another; a
    run cut at a number of steps ends inside an epoch."""

    batches: list[np.ndarray]
    steps_per_epoch: int
    epochs: int  # the epochs begun

    @property
    def steps(self) -> int:
        return len(self.batches)

    def epoch_ends(self) -> list[int]:
        """The steps after which the held-out metrics are taken: every epoch's end, and the
        last step of a run cut inside an epoch."""
        ends = [e * self.steps_per_epoch for e in range(1, self.epochs + 1)]
        return [s for s in ends if s < self.steps] + [self.steps]

    def snapshot_steps(self) -> list[int]:
        """The steps after which every parameter is recorded: 1, 10 and every epoch end."""
        wanted = {s for s in SNAPSHOT_STEPS if s <= self.steps} | set(self.epoch_ends())
        return sorted(wanted)


def schedule(
    n: int, batch_size: int, epochs: int | None, seed: int, steps: int | None = None
) -> Schedule:
    """One seeded permutation of the ``n`` training examples per epoch, cut into batches (the
    last one may be smaller, as in Keras), from ``np.random.default_rng(seed)``; ``epochs``
    epochs cut at ``steps`` steps (``epochs=None``: as many epochs as ``steps`` take)."""
    per_epoch = -(-n // batch_size) if n >= 1 and batch_size >= 1 else 0
    if epochs is None and steps is not None and per_epoch:
        epochs = -(-steps // per_epoch)
    if per_epoch < 1 or epochs is None or epochs < 1 or (steps is not None and steps < 1):
        raise ValueError(
            "A schedule needs n, batch_size, epochs (or steps) >= 1. "
            f"Received: n={n}, batch_size={batch_size}, epochs={epochs}, steps={steps}"
        )
    rng = np.random.default_rng(seed)
    batches: list[np.ndarray] = []
    for _ in range(epochs):
        order = rng.permutation(n)
        batches += [order[i : i + batch_size] for i in range(0, n, batch_size)]
        if steps is not None and len(batches) >= steps:
            break
    batches = batches if steps is None else batches[:steps]
    return Schedule(batches, steps_per_epoch=per_epoch, epochs=-(-len(batches) // per_epoch))


# Keras's epsilon (keras/src/backend/config.py: 1e-7), by which its probability path clips.
EPSILON: Final = 1e-7


class Trainee(Protocol):
    """One side of the comparison, as the recorder sees it (both sides alike)."""

    def step(self, x: np.ndarray, y: np.ndarray, masks: Mapping[str, np.ndarray] | None) -> float:
        """One optimiser step (dropping what ``masks`` drops); the batch's loss before the
        update."""
        ...

    def weights(self) -> dict[str, np.ndarray] | None:
        """Copies of the trainable parameters, keyed ``"<layer>/<param>"`` in Keras's layout;
        None when this side cannot tell."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray | None:
        """The probabilities at inference; None when this side does not give them."""
        ...


NO_CLASS: Final = -1  # a held-out digit's predicted class when a side gave no probabilities


def heldout_metrics(
    predict: Callable[[np.ndarray], np.ndarray | None],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
) -> tuple[float, float, np.ndarray]:
    """Held-out loss, accuracy and every digit's predicted class from the probabilities, by one
    function for both sides: the cross-entropy of the probabilities renormalised and clipped to
    [EPSILON, 1 − EPSILON] (as Keras's probability path computes it), in float64, the
    categorical accuracy and the argmax per digit (shape ``(len(x),)``). NaN and
    :data:`NO_CLASS` when the side gives no probabilities of the right shape."""
    n = len(x)
    if n == 0:
        raise ValueError("held-out metrics need at least one sample. Received: len(x)=0")
    loss_sum = correct = 0.0
    classes = np.full(n, NO_CLASS, dtype=np.int64)
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        probs = predict(xb)
        if probs is None or probs.shape != yb.shape:
            return float("nan"), float("nan"), np.full(n, NO_CLASS, dtype=np.int64)
        p = probs.astype(np.float64)
        with np.errstate(all="ignore"):  # a broken side's NaN or zeros are compared, not raised
            p = np.clip(p / p.sum(axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
            loss_sum += float(-(yb * np.log(p)).sum())
        classes[start : start + len(xb)] = p.argmax(axis=-1)
        correct += float(np.sum(classes[start : start + len(xb)] == yb.argmax(axis=-1)))
    return loss_sum / n, correct / n, classes


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
    """What one side did. ``params[key]`` stacks the snapshots: shape ``(S, *param.shape)``
    for the S snapshot steps of the schedule (empty when the side gives no weights)."""

    step_loss: np.ndarray  # (steps,) float64
    params: dict[str, np.ndarray]
    heldout_loss: np.ndarray  # (epochs,) float64
    heldout_accuracy: np.ndarray  # (epochs,) float64
    seconds: float
    # every held-out digit's predicted class after every epoch, NO_CLASS without probabilities
    heldout_classes: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.int64)
    )  # (epochs, n) int64


def record(
    trainee: Trainee,
    plan: Schedule,
    x: np.ndarray,
    y: np.ndarray,
    heldout: tuple[np.ndarray, np.ndarray],
    *,
    label: str,
    batch_size: int,
    masks: Callable[[int, int], Mapping[str, np.ndarray] | None] = lambda step, n: None,
) -> Recording:
    """Train ``trainee`` through ``plan`` and record everything (see the module docstring). A
    progress bar shows on stderr when stdout is a terminal; CI stays quiet."""
    started = time.perf_counter()
    snapshots = set(plan.snapshot_steps())
    ends = set(plan.epoch_ends())
    loss, heldout_loss, heldout_accuracy, heldout_classes = [], [], [], []
    taken: list[dict[str, np.ndarray]] = []
    bar = tqdm(
        total=plan.steps, desc=label, unit="step", leave=False, disable=not sys.stdout.isatty()
    )
    with bar:
        for step, idx in enumerate(plan.batches, start=1):
            loss.append(trainee.step(x[idx], y[idx], masks(step, len(idx))))
            if step in snapshots:
                taken.append(trainee.weights() or {})
            if step in ends:
                h_loss, h_acc, h_classes = heldout_metrics(trainee.predict, *heldout, batch_size)
                heldout_loss.append(h_loss)
                heldout_accuracy.append(h_acc)
                heldout_classes.append(h_classes)
            bar.update()
    keys = [k for k in taken[0] if all(k in snap for snap in taken)] if taken else []
    params = {}
    for key in keys:
        shapes = {snap[key].shape for snap in taken}
        if len(shapes) == 1:
            # S snapshots of (*param.shape) -> (S, *param.shape)
            params[key] = np.stack([snap[key] for snap in taken])
    return Recording(
        step_loss=np.array(loss, dtype=np.float64),
        params=params,
        heldout_loss=np.array(heldout_loss, dtype=np.float64),
        heldout_accuracy=np.array(heldout_accuracy, dtype=np.float64),
        seconds=time.perf_counter() - started,
        # E epochs of (n,) -> (E, n)
        heldout_classes=np.stack(heldout_classes) if heldout_classes else np.zeros((0, 0), int),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Curves:
    """The two recordings of one training comparison."""

    plan: Schedule
    implementation: Recording
    reference: Recording
    heldout_size: int
    # The float64 judge's own run of the reference (compare.judge.float64) on the same batches
    # in the other precision: float64 for a float32 comparison, float32 for a float64 one (the
    # precision ladder); None under the calibrated table.
    judge: Recording | None = None
    # A second honest float32 run of the reference for a float32 comparison whose judge ran on
    # another backend (TensorFlow's float32 run there), else None.
    also: Recording | None = None

    def pairs(
        self, envelopes: str | None = None, lengths: Mapping[str, int] | None = None
    ) -> list[Pair]:
        """The ``training`` pairs: the per-step loss; every parameter at every snapshot step
        (one check per parameter, its snapshots stacked); the held-out loss and accuracy after
        every epoch. Every element carries its step. ``envelopes`` names another family of
        calibrated envelopes than plain SGD's (see :func:`envelope_name`); ``lengths`` gives
        each check's reduction length for the float64 judge, whose run (:attr:`judge`) each
        pair then carries."""
        steps = np.arange(1, self.plan.steps + 1)
        snapshot_steps = np.array(self.plan.snapshot_steps())
        ends = np.array(self.plan.epoch_ends())
        ours, theirs, judge, also = self.implementation, self.reference, self.judge, self.also

        def judged(of: Callable[[Recording], np.ndarray | None]) -> np.ndarray | None:
            found = None if judge is None else of(judge)
            return None if found is None else np.asarray(found, dtype=np.float64)  # widened

        def second(of: Callable[[Recording], np.ndarray | None]) -> np.ndarray | None:
            return None if also is None else of(also)

        # (name, what of a recording, its steps)
        named: list[tuple[str, Callable[[Recording], np.ndarray | None], np.ndarray]] = [
            (STEP_LOSS, _step_loss, steps)
        ]
        for key, stacked in theirs.params.items():
            if key not in ours.params:  # the parity check reports it missing or skipped
                continue
            # one step per snapshot, broadcast over the parameter's axes: (S, 1, ..., 1)
            named.append((key, _param(key), snapshot_steps.reshape(-1, *[1] * (stacked.ndim - 1))))
        named.append((HELDOUT[0], _heldout_loss, ends))
        named.append((HELDOUT[1], _heldout_accuracy, ends))
        floor = {HELDOUT[1]: ACCURACY_DIGITS_FLOOR / self.heldout_size}
        flips: dict[str, np.ndarray | None] = {}
        if judge is not None:  # the digits each float32 run decides differently from the judge
            found = [disagreement(run, judge) for run in (theirs, also) if run is not None]
            known = [f for f in found if f is not None]
            flips[HELDOUT[1]] = np.maximum.reduce(known) if len(known) == len(found) else None
        return [
            Pair(
                "training",
                name,
                _present(of(ours)),
                _present(of(theirs)),
                at=at,
                tolerance=envelope_name(name, envelopes),
                atol_floor=floor.get(name, 0.0),
                judge=judged(of),
                length=None if lengths is None else lengths.get(name),
                disagreement=flips.get(name),
                also=second(of),
            )
            for name, of, at in named
        ]

    def frame(self, loss_tolerance: Tolerance | PerElement | None = None) -> pd.DataFrame:
        """One row per step: both sides' loss and accuracy before the update, the absolute
        loss difference and (given the step-loss tolerance) the envelope it is judged by."""
        steps = np.arange(1, self.plan.steps + 1)
        frame = pd.DataFrame(
            {
                "step": steps,
                "epoch": (steps - 1) // self.plan.steps_per_epoch + 1,
                "implementation_loss": self.implementation.step_loss,
                "reference_loss": self.reference.step_loss,
                "abs_diff": np.abs(self.implementation.step_loss - self.reference.step_loss),
            }
        )
        if loss_tolerance is not None:
            frame["atol"] = np.broadcast_to(loss_tolerance.atol, steps.shape)
            frame["rtol"] = np.broadcast_to(loss_tolerance.rtol, steps.shape)
        return frame

    def heldout_frame(self) -> pd.DataFrame:
        """One row per epoch: both sides' held-out loss and accuracy after it."""
        return pd.DataFrame(
            {
                "epoch": [-(-s // self.plan.steps_per_epoch) for s in self.plan.epoch_ends()],
                "step": self.plan.epoch_ends(),
                "implementation_loss": self.implementation.heldout_loss,
                "reference_loss": self.reference.heldout_loss,
                "abs_diff": np.abs(self.implementation.heldout_loss - self.reference.heldout_loss),
                "implementation_accuracy": self.implementation.heldout_accuracy,
                "reference_accuracy": self.reference.heldout_accuracy,
            }
        )


def disagreement(reference: Recording, judge: Recording) -> np.ndarray | None:
    """After every epoch, the fraction of held-out digits that the reference and the judge's
    run of it classify differently (shape ``(epochs,)``): how many outcomes the reference's
    rounding flipped. None when either run gave no classes."""
    a, b = reference.heldout_classes, judge.heldout_classes
    if a.shape != b.shape or a.size == 0 or (a == NO_CLASS).any() or (b == NO_CLASS).any():
        return None
    return np.mean(a != b, axis=1).astype(np.float64)


def _step_loss(run: Recording) -> np.ndarray:
    return run.step_loss


def _heldout_loss(run: Recording) -> np.ndarray:
    return run.heldout_loss


def _heldout_accuracy(run: Recording) -> np.ndarray:
    return run.heldout_accuracy


def _present(found: np.ndarray | None) -> np.ndarray:
    """A curve both recordings have (Curves.pairs names only those)."""
    assert found is not None
    return found


def _param(key: str) -> Callable[[Recording], np.ndarray | None]:
    return lambda run: run.params.get(key)


def envelope_name(check: str, family: str | None) -> str:
    """The tolerance-table name of a training check's envelope: the check's own name for plain
    SGD, ``"<check> [<family>]"`` for another family (``"step loss [momentum]"``)."""
    return check if family is None else f"{check} [{family}]"
