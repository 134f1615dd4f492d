"""A small ``fit``: seeded shuffling, mini-batches, one SGD step per batch, per-step loss and
accuracy, per-epoch held-out loss and accuracy. It returns its history as data."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from scratch.model import Sequential
from scratch.optimizers import SGD


@dataclass
class History:
    """Per-step values are the batch's loss and accuracy before its update; per-epoch values
    are measured on the held-out data after the epoch (empty without held-out data)."""

    step_loss: list[float] = field(default_factory=list)
    step_accuracy: list[float] = field(default_factory=list)
    epoch_heldout_loss: list[float] = field(default_factory=list)
    epoch_heldout_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0

    def as_dict(self) -> dict[str, list[float] | int]:
        return asdict(self)


def batch_indices(
    n: int, batch_size: int, *, shuffle: bool, rng: np.random.Generator
) -> list[np.ndarray]:
    """Index arrays of one epoch's batches; the last batch may be smaller (Keras keeps it)."""
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"Need n > 0 and batch_size > 0. Received: n={n}, batch_size={batch_size}")
    order = rng.permutation(n) if shuffle else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def fit(
    model: Sequential,
    x: np.ndarray,
    y_onehot: np.ndarray,
    *,
    optimizer: SGD,
    batch_size: int = 256,
    epochs: int = 1,
    shuffle: bool = True,
    seed: int = 0,
    heldout: tuple[np.ndarray, np.ndarray] | None = None,
    on_step: Callable[[int, float, float], None] | None = None,
    on_epoch: Callable[[int, History], None] | None = None,
) -> History:
    """Train ``model`` in place. Shuffling draws from ``np.random.default_rng(seed)``, one
    permutation per epoch. ``on_step(step, loss, accuracy)`` is called after every step and
    ``on_epoch(epoch, history)`` after every epoch (both count from 1)."""
    if len(x) != len(y_onehot):
        raise ValueError(
            f"x and y must have the same length. Received: len(x)={len(x)}, len(y)={len(y_onehot)}"
        )
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1. Received: epochs={epochs}")
    rng = np.random.default_rng(seed)
    history = History()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        batches = batch_indices(len(x), batch_size, shuffle=shuffle, rng=rng)
        history.steps_per_epoch = len(batches)
        for idx in batches:
            loss, acc = model.train_step(x[idx], y_onehot[idx], optimizer)
            history.step_loss.append(loss)
            history.step_accuracy.append(acc)
            if on_step is not None:
                on_step(len(history.step_loss), loss, acc)
        history.epoch_seconds.append(time.perf_counter() - start)
        if heldout is not None:
            h_loss, h_acc = model.evaluate(*heldout, batch_size=batch_size)
            history.epoch_heldout_loss.append(h_loss)
            history.epoch_heldout_accuracy.append(h_acc)
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history
