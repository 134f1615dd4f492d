"""The Keras reference model: same architecture and names as scratch, the docs recipe, dtypes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import reference
import scratch

pytestmark = pytest.mark.keras

LAYERS = ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "output"]


def test_variants_are_the_same_table_as_scratch() -> None:
    assert {
        name: (spec.activation, spec.conv1_padding) for name, spec in scratch.VARIANTS.items()
    } == reference.VARIANTS


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("variant", sorted(scratch.VARIANTS))
def test_model_matches_scratch_layout_and_recipe(variant: str, dtype: str) -> None:
    model = reference.build_lenet5(variant, dtype)
    assert [layer.name for layer in model.layers] == LAYERS
    ours = scratch.build_lenet5(variant, dtype).get_weights()
    theirs = reference.get_weights(model)
    assert {k: (v.shape, v.dtype) for k, v in theirs.items()} == {
        k: (v.shape, v.dtype) for k, v in ours.items()
    }
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert model.optimizer.learning_rate.dtype == dtype
    assert keras.config.floatx() == "float32"  # restored after the build
    x = np.zeros((2, 28, 28, 1), dtype)
    # Every output in the model's dtype, but where the backend declares that Keras computes a
    # float64 op in float32 (tanh on JAX: the classic variant's activations; test_backends.py)
    float32_ops = reference.backend().FLOAT64_COMPUTED_IN_FLOAT32 if dtype == "float64" else ()
    expected = {
        layer.name: np.dtype("float32" if layer.activation.name in float32_ops else dtype)
        for layer in scratch.build_lenet5(variant, dtype).layers
    }
    assert {k: v.dtype for k, v in reference.layer_outputs(model, x).items()} == expected


def test_gradients_are_keyed_like_scratch_and_in_the_model_dtype() -> None:
    model = reference.build_lenet5("keras-docs", "float64")
    x = np.random.default_rng(0).random((4, 28, 28, 1))
    y = np.eye(10)[[1, 2, 3, 4]]
    loss, grads, dx = reference.backend().gradients(model, x, y)
    assert loss.dtype == np.float64 and dx.shape == x.shape and dx.dtype == np.float64
    assert list(grads) == list(scratch.build_lenet5("keras-docs", "float64").params)


def test_set_weights_checks_everything_before_assigning() -> None:
    model = reference.build_lenet5("keras-docs", "float32")
    before = reference.get_weights(model)
    weights = {k: np.ones_like(v) for k, v in before.items()}
    weights["fc1/bias"] = weights["fc1/bias"].astype(np.float64)
    with pytest.raises(ValueError, match="'fc1/bias' must have shape"):
        reference.set_weights(model, weights)
    weights.pop("fc1/bias")
    with pytest.raises(ValueError, match="missing=\\['fc1/bias'\\]"):
        reference.set_weights(model, weights)
    after = reference.get_weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="variant="):
        reference.build_lenet5("lenet")
