"""The training length (epochs, steps, the default one epoch or 200 steps) and the data a
model of another input shape gets (pure NumPy: no Keras)."""

from __future__ import annotations

import numpy as np
import pytest

from compare.errors import InputError
from compare.inputs import validate
from compare.inputs.data import load_data
from compare.parity import training
from compare.parity.config import DEFAULT_MAX_STEPS, CheckConfig


def test_a_schedule_cut_at_steps_keeps_the_epoch_order() -> None:
    whole = training.schedule(100, 8, 3, seed=4)
    cut = training.schedule(100, 8, None, seed=4, steps=20)
    assert cut.steps == 20 and cut.epochs == 2 and cut.steps_per_epoch == 13
    assert all(np.array_equal(a, b) for a, b in zip(cut.batches, whole.batches[:20], strict=False))
    # the held-out metrics after the epoch end and after the last step of the cut run
    assert cut.epoch_ends() == [13, 20]
    assert cut.snapshot_steps() == [1, 10, 13, 20]
    assert training.schedule(100, 8, 1, seed=4, steps=DEFAULT_MAX_STEPS).steps == 13


def test_the_default_is_one_epoch_or_200_steps_whichever_is_shorter() -> None:
    config = CheckConfig()
    assert (config.epochs, config.steps) == (1, DEFAULT_MAX_STEPS)
    assert validate.steps(config.epochs, 8_000, 256, config.steps) == 32
    assert validate.steps(config.epochs, 8_000, 1, config.steps) == 200
    assert validate.steps(None, 8_000, 1, 5_000) == 5_000
    assert not CheckConfig(epochs=0).trains and not CheckConfig(epochs=None, steps=0).trains


def test_synthetic_data_takes_the_models_shape_and_classes() -> None:
    data = load_data("synthetic", seed=2, image_shape=(12, 16, 3), num_classes=4)
    assert data.x_train.shape[1:] == (12, 16, 3) and data.y_train.shape[1] == 4
    assert set(np.unique(data.labels_train)) == {0, 1, 2, 3}
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    centred = data.shifted(-0.5)
    assert np.array_equal(centred.x_train, data.x_train - np.float32(0.5))


def test_digits_for_a_model_of_another_shape_are_one_line() -> None:
    with pytest.raises(InputError, match=r"takes 32x32x3 inputs of 10 classes; --data bundled "):
        load_data("bundled", image_shape=(32, 32, 3))
    with pytest.raises(InputError, match="use --data synthetic"):
        load_data("bundled", num_classes=5)
