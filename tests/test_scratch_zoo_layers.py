"""The scratch layers and options beyond LeNet-5 ("the zoo"): Conv2D dilation_rate and
use_bias=False, Dense use_bias=False, Keras's initializers, L1/L2/L1L2 regularizers, the
Activation / ReLU / Softmax layers, Dropout with given keep masks, BatchNormalization's
center/scale/momentum/epsilon, and their mirror built from Keras configs
(compare/sides/scratch_side.py).

Pure NumPy first: central differences (float64, Andrew Ng's 1e-7), the loop oracle for dilated
convolutions, the initializers' moments and limits against Keras's formulas, and the argument
checks. Then, marked ``keras`` and on TensorFlow only (the GradientTape is TensorFlow's): each
option in a small Keras model mirrored from its configs, with forward outputs, the loss with
its penalties, every gradient and dloss/dinput compared (float64 to ~1e-12 relative, float32
to float32 rounding); Dropout with a keep mask bit for bit against Keras's own Dropout; and one
compiled ``train_on_batch`` with BatchNormalization's moving statistics.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from gradcheck import THRESHOLD, check_layer, check_model
from oracles import conv2d

import scratch
from compare.errors import InputError
from compare.sides import scratch_side
from compare.sides.protocol import LayerSpec, ModelSpec
from scratch import initializers, regularizers


def normal(shape: tuple[int, ...], seed: int, dtype: str = "float64") -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def onehot(n: int, k: int, seed: int, dtype: str = "float64") -> np.ndarray:
    return np.eye(k, dtype=dtype)[np.random.default_rng(seed).integers(0, k, n)]


def randomise(model: scratch.Sequential, seed: int) -> None:
    """Every weight random (biases and beta away from 0, gamma around 1, variances > 0)."""
    rng = np.random.default_rng(seed)
    for key, w in model._live_weights().items():
        if key.endswith(("moving_variance", "gamma")):
            w[...] = rng.uniform(0.5, 2.0, w.shape)
        else:
            w[...] = rng.standard_normal(w.shape) * (0.5 if key.endswith("kernel") else 0.3)


# --------------------------------------------------------------------------------------------
# Conv2D dilation_rate and use_bias=False, Dense use_bias=False (pure NumPy)
# --------------------------------------------------------------------------------------------
DILATED = {
    # (input N,H,W,C, filters, kernel, dilation, padding, use_bias)
    "d2-same-nobias": ((2, 7, 8, 2), 3, (3, 3), (2, 2), "same", False),
    "d1x3-valid-bias": ((2, 6, 11, 1), 2, (2, 3), (1, 3), "valid", True),
    "d3x2-same-evenk": ((1, 9, 7, 3), 2, (2, 2), (3, 2), "same", True),
    "d1-valid-nobias": ((2, 5, 6, 2), 3, (3, 2), (1, 1), "valid", False),
}


@pytest.mark.parametrize("case", list(DILATED))
def test_conv_dilation_and_no_bias_match_central_differences(case: str) -> None:
    shape, f, k, d, pad, bias = DILATED[case]
    layer = scratch.Conv2D(f, k, padding=pad, activation="tanh", dilation_rate=d, use_bias=bias)
    layer.build(shape[1:], "float64", np.random.default_rng(0))
    assert set(layer.params) == ({"kernel", "bias"} if bias else {"kernel"})
    if bias:
        layer.params["bias"][...] = normal((f,), 1)
    errors = check_layer(layer, normal(shape, 2))
    assert set(errors) == {"input", *layer.params}
    assert max(errors.values()) <= THRESHOLD, errors


@pytest.mark.parametrize("case", list(DILATED))
def test_conv_dilation_matches_the_loop_oracle(case: str) -> None:
    """A dilated convolution is the plain one with the zero-filled dilated kernel (the loop
    oracle computes that one), output size and "same" padding included."""
    shape, f, k, d, pad, bias = DILATED[case]
    layer = scratch.Conv2D(f, k, padding=pad, dilation_rate=d, use_bias=bias)
    x = normal(shape, 3)
    y = layer.forward(x)
    kernel = layer.params["kernel"]
    dilated = np.zeros(((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1, *kernel.shape[2:]))
    dilated[:: d[0], :: d[1]] = kernel
    expected = conv2d(x, dilated, layer.params.get("bias"), padding=pad)
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)


def test_conv_dilation_one_is_the_plain_path_bit_for_bit() -> None:
    x = normal((2, 8, 8, 2), 0, "float32")
    plain = scratch.Conv2D(3, 3, padding="same", activation="relu", seed=4)
    dilated = scratch.Conv2D(3, 3, padding="same", activation="relu", seed=4, dilation_rate=1)
    for layer in (plain, dilated):
        layer.build(x.shape[1:], "float32")
    assert plain._dilated(plain.params["kernel"]) is plain.params["kernel"]
    np.testing.assert_array_equal(plain.forward(x), dilated.forward(x))
    dout = normal((2, 8, 8, 3), 1, "float32")
    np.testing.assert_array_equal(plain.backward(dout), dilated.backward(dout))
    for key in plain.grads:
        np.testing.assert_array_equal(plain.grads[key], dilated.grads[key])


def test_conv_strides_with_dilation_refused_as_keras_does() -> None:
    with pytest.raises(ValueError, match=r"Received: strides=\(2, 1\) and dilation_rate"):
        scratch.Conv2D(2, 3, strides=(2, 1), dilation_rate=2)


def test_dense_without_bias_matches_central_differences() -> None:
    layer = scratch.Dense(4, activation="sigmoid", use_bias=False, seed=0)
    errors = check_layer(layer, normal((3, 2, 5), 0))
    assert set(errors) == {"input", "kernel"} and set(layer.params) == {"kernel"}
    assert max(errors.values()) <= THRESHOLD, errors


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_batchnorm_center_scale_weights_and_gradients(center: bool, scale: bool) -> None:
    layer = scratch.BatchNormalization(0.9, 1e-2, center=center, scale=scale)
    layer.build((3, 4, 2), "float64")
    keys = [k for k, on in (("gamma", scale), ("beta", center)) if on]
    assert list(layer.weights) == [*keys, "moving_mean", "moving_variance"]  # Keras's order
    for key in keys:
        layer.params[key][...] = normal((2,), 5)
    for training in (True, False):
        errors = check_layer(layer, normal((3, 3, 4, 2), 6) * 2 + 1, training=training)
        assert max(errors.values()) <= THRESHOLD, (training, errors)


# --------------------------------------------------------------------------------------------
# Activation layers
# --------------------------------------------------------------------------------------------
def test_activation_layers_names_and_logits_path() -> None:
    model = scratch.Sequential(
        [
            scratch.Dense(5),
            scratch.ReLU(),
            scratch.Dense(4),
            scratch.Activation("tanh"),
            scratch.Dense(3),
            scratch.Softmax(),
        ],
        input_shape=(6,),
        dtype="float64",
    )
    assert [la.name for la in model.layers] == [
        "dense",
        "re_lu",
        "dense_1",
        "activation",
        "dense_2",
        "softmax",
    ]
    assert model.loss_path == "logits"  # the Softmax layer's input is the logits
    errors = check_model(model, normal((4, 6), 0), onehot(4, 3, 1))
    assert max(errors.values()) <= THRESHOLD, errors


@pytest.mark.parametrize(
    ("make", "received"),
    [
        (lambda: scratch.ReLU(max_value=6.0), "max_value=6.0"),
        (lambda: scratch.ReLU(negative_slope=0.1), "negative_slope=0.1"),
        (lambda: scratch.ReLU(threshold=1.0), "threshold=1.0"),
        (lambda: scratch.Softmax(axis=(1, 2)), "axis=(1, 2)"),
        (lambda: scratch.Activation("gelu"), "activation='gelu'"),
        (lambda: scratch.Softmax(axis=1).build((3, 4)), "axis=1"),
        (lambda: scratch.BatchNormalization(axis=1).build((3, 4)), "axis=1"),
        (lambda: scratch.Conv2D(2, 3, use_bias="no"), "use_bias='no'"),  # type: ignore[arg-type]
        (lambda: scratch.Dense(2, kernel_initializer="orthogonal"), "initializer='orthogonal'"),
        (lambda: scratch.Dense(2, kernel_regularizer="l3"), "regularizer='l3'"),
    ],
)
def test_unsupported_arguments_are_refused(make: Callable[[], object], received: str) -> None:
    with pytest.raises(ValueError, match="Received: ") as info:
        make()
    assert f"Received: {received}" in str(info.value), str(info.value)


# --------------------------------------------------------------------------------------------
# Initializers: Keras's formulas (keras/src/initializers/random_initializers.py)
# --------------------------------------------------------------------------------------------
SHAPE = (3, 3, 20, 30)  # an HWIO kernel: fan_in 180, fan_out 270, 16200 draws
FAN_IN, FAN_OUT = 180, 270
# name -> (scale, n, distribution) of the VarianceScaling presets
PRESETS = {
    "GlorotUniform": (1.0, (FAN_IN + FAN_OUT) / 2, "uniform"),
    "GlorotNormal": (1.0, (FAN_IN + FAN_OUT) / 2, "truncated_normal"),
    "HeUniform": (2.0, FAN_IN, "uniform"),
    "HeNormal": (2.0, FAN_IN, "truncated_normal"),
    "LecunUniform": (1.0, FAN_IN, "uniform"),
    "LecunNormal": (1.0, FAN_IN, "truncated_normal"),
}
SNAKE = {
    "GlorotUniform": "glorot_uniform",
    "GlorotNormal": "glorot_normal",
    "HeUniform": "he_uniform",
    "HeNormal": "he_normal",
    "LecunUniform": "lecun_uniform",
    "LecunNormal": "lecun_normal",
}


def _check_moments(w: np.ndarray, mean: float, std: float) -> None:
    n = w.size
    assert abs(w.mean() - mean) <= 5 * std / math.sqrt(n), (w.mean(), mean)
    assert abs(w.std() / std - 1) <= 5 / math.sqrt(2 * n), (w.std(), std)


def _check_distribution(w: np.ndarray, variance: float, distribution: str) -> None:
    std = math.sqrt(variance)
    if distribution == "uniform":
        limit = math.sqrt(3 * variance)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.999 * limit
    elif distribution == "truncated_normal":  # stddev before truncation std / 0.8796...
        bound = 2 * std / 0.87962566103423978
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    else:
        assert np.abs(w).max() > 3 * std  # not truncated
    _check_moments(w, 0.0, std)


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("form", ["name", "snake", "dict"])
def test_variance_scaling_presets_follow_keras_formulas(name: str, form: str) -> None:
    scale, n, distribution = PRESETS[name]
    identifier: object = {
        "name": name,
        "snake": SNAKE[name],
        "dict": {
            "module": "keras.initializers",
            "class_name": name,
            "config": {"seed": None},
            "registered_name": None,
        },
    }[form]
    init = initializers.get(identifier)
    assert isinstance(init, initializers.VarianceScaling) and type(init).__name__ == name
    assert (init.scale, init.distribution) == (scale, distribution)
    w = init(SHAPE, np.random.default_rng(0), np.dtype("float64"))
    assert w.shape == SHAPE and w.dtype == np.float64
    _check_distribution(w, scale / n, distribution)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["uniform", "truncated_normal", "untruncated_normal"])
def test_variance_scaling_modes(mode: str, distribution: str) -> None:
    config = {"scale": 3.0, "mode": mode, "distribution": distribution, "seed": 1}
    init = initializers.get({"class_name": "VarianceScaling", "config": config})
    n = {"fan_in": FAN_IN, "fan_out": FAN_OUT, "fan_avg": (FAN_IN + FAN_OUT) / 2}[mode]
    w = init(SHAPE, np.random.default_rng(1), np.dtype("float32"))
    assert w.dtype == np.float32
    _check_distribution(w.astype(np.float64), 3.0 / n, distribution)


def test_variance_scaling_explicit_axes_and_normal_alias() -> None:
    init = initializers.VarianceScaling(
        2.0, "fan_out", "normal", input_axes=(0,), output_axes=(1, 2, 3)
    )
    assert init.distribution == "truncated_normal"
    assert init.variance(SHAPE) == 2.0 / (3 * 20 * 30)
    assert initializers.VarianceScaling(1.0, "fan_in").variance((0,)) == 1.0  # max(1, fan)


@pytest.mark.parametrize(
    ("identifier", "mean", "std", "low", "high"),
    [
        (
            {"class_name": "RandomNormal", "config": {"mean": 1.0, "stddev": 0.5}},
            1.0,
            0.5,
            None,
            None,
        ),
        ("random_normal", 0.0, 0.05, None, None),
        ("normal", 0.0, 0.05, None, None),
        (
            {"class_name": "RandomUniform", "config": {"minval": -0.2, "maxval": 0.3}},
            0.05,
            0.5 / math.sqrt(12),
            -0.2,
            0.3,
        ),
        ("uniform", 0.0, 0.1 / math.sqrt(12), -0.05, 0.05),
        (
            {"class_name": "TruncatedNormal", "config": {"mean": 0.5, "stddev": 0.1, "seed": 3}},
            0.5,
            0.1 * 0.87962566103423978,
            0.3,
            0.7,
        ),
    ],
)
def test_random_initializers_moments_and_limits(
    identifier: object, mean: float, std: float, low: float | None, high: float | None
) -> None:
    w = initializers.get(identifier)(SHAPE, np.random.default_rng(2), np.dtype("float64"))
    _check_moments(w, mean, std)
    if low is not None and high is not None:
        assert low <= w.min() < low + 0.01 * (high - low)
        assert high - 0.01 * (high - low) < w.max() <= high


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_constant_initializers(dtype: str) -> None:
    rng = np.random.default_rng(0)
    for identifier, value in [
        ("zeros", 0.0),
        ("zero", 0.0),
        ("Ones", 1.0),
        ("one", 1.0),
        ({"class_name": "Constant", "config": {"value": 0.1}}, 0.1),
    ]:
        w = initializers.get(identifier)((2, 3), rng, np.dtype(dtype))
        assert w.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(w, np.full((2, 3), value, dtype=dtype))
    assert rng.random() == np.random.default_rng(0).random()  # nothing drawn


def test_default_initializers_draw_exactly_the_historical_numbers() -> None:
    """glorot_uniform kernels and zero biases, spelled any way, draw the same numbers in the
    same order as before initializers existed (LeNet-5's weights for a seed never change)."""
    for spelling in (
        "glorot_uniform",
        "GlorotUniform",
        None,
        {"class_name": "GlorotUniform", "config": {"seed": None}},
    ):
        rng, old = np.random.default_rng(7), np.random.default_rng(7)
        conv = scratch.Conv2D(4, 3, kernel_initializer=spelling)
        conv.build((6, 6, 2), "float32", rng)
        dense = scratch.Dense(5, kernel_initializer=spelling)
        dense.build((7,), "float32", rng)
        for layer, shape in ((conv, (3, 3, 2, 4)), (dense, (7, 5))):
            expected = initializers.glorot_uniform(shape, old, np.dtype("float32"))
            assert layer.params["kernel"].tobytes() == expected.tobytes()
            assert not layer.params["bias"].any()


def test_weights_drawn_in_keras_order() -> None:
    """Kernel then bias, layer by layer: a random bias initializer draws after its kernel."""
    init = {"class_name": "RandomUniform", "config": {}}
    model = scratch.Sequential(
        [scratch.Dense(3, bias_initializer=init), scratch.Dense(2, bias_initializer=init)],
        input_shape=(4,),
        seed=5,
    )
    rng = np.random.default_rng(5)
    f32 = np.dtype("float32")
    expected = [
        initializers.glorot_uniform((4, 3), rng, f32),
        rng.uniform(-0.05, 0.05, 3).astype(f32),
        initializers.glorot_uniform((3, 2), rng, f32),
        rng.uniform(-0.05, 0.05, 2).astype(f32),
    ]
    for got, want in zip(model.get_weights().values(), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "identifier",
    [
        "orthogonal",
        {"class_name": "Identity", "config": {}},
        {"class_name": "RandomNormal", "config": {"sigma": 1.0}},
        {"class_name": "VarianceScaling", "config": {"mode": "fan_sum"}},
        {"class_name": "VarianceScaling", "config": {"scale": -1.0}},
        {"class_name": "Constant", "config": {"value": [1.0, 2.0]}},
        {"name": "GlorotUniform"},
        3.0,
    ],
)
def test_bad_initializers_are_refused(identifier: object) -> None:
    with pytest.raises(ValueError, match="Received: "):
        initializers.get(identifier)


# --------------------------------------------------------------------------------------------
# Regularizers (pure NumPy)
# --------------------------------------------------------------------------------------------
def test_regularizer_forms_and_defaults() -> None:
    assert regularizers.get(None) is None
    assert regularizers.get("l2") == regularizers.L2(0.01)
    assert regularizers.get("L1") == regularizers.L1(0.01)
    assert regularizers.get("l1l2") == regularizers.L1L2(0.0, 0.0)
    got = regularizers.get(
        {
            "module": "keras.regularizers",
            "class_name": "L1L2",
            "config": {"l1": 0.1, "l2": 0.2},
            "registered_name": None,
        }
    )
    assert (got.l1, got.l2) == (0.1, 0.2)  # type: ignore[union-attr]
    for bad in (
        "l3",
        {"class_name": "L2", "config": {"l1": 0.1}},
        {"class_name": "L2", "config": {"l2": -1.0}},
        0.01,
    ):
        with pytest.raises(ValueError, match="Received: "):
            regularizers.get(bad)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_regularizer_values_in_the_weight_dtype(dtype: str) -> None:
    w = np.array([[-1.5, 0.0], [2.0, 0.25]], dtype=dtype)
    reg = regularizers.L1L2(l1=0.1, l2=0.3)
    t = np.dtype(dtype).type
    assert reg.loss(w).dtype == np.dtype(dtype)
    assert reg.loss(w) == t(0.0) + t(0.1) * np.abs(w).sum() + t(0.3) * np.square(w).sum()
    g = reg.gradient(w)
    assert g.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(g, t(0.1) * np.sign(w) + t(0.3) * (w * 2))
    assert g[0, 1] == 0  # sign(0) = 0: TensorFlow's AbsGrad
    np.testing.assert_array_equal(regularizers.L1L2().gradient(w), np.zeros_like(w))


def test_regularized_model_matches_central_differences_and_adds_its_penalties() -> None:
    l2 = {"class_name": "L2", "config": {"l2": 0.05}}
    layers = [
        scratch.Conv2D(2, 3, activation="tanh", kernel_regularizer=l2, bias_regularizer="l1"),
        scratch.BatchNormalization(gamma_regularizer=l2, beta_regularizer="l1l2"),
        scratch.Flatten(),
        scratch.Dense(
            3,
            activation="softmax",
            kernel_regularizer=scratch.L1L2(0.01, 0.02),
            bias_regularizer="l2",
        ),
    ]
    model = scratch.Sequential(layers, input_shape=(5, 5, 1), dtype="float64", seed=1)
    randomise(model, 2)
    x, y = normal((3, 5, 5, 1), 3), onehot(3, 3, 4)
    errors = check_model(model, x, y)
    assert max(errors.values()) <= THRESHOLD, errors
    plain = scratch.Sequential(
        [
            scratch.Conv2D(2, 3, activation="tanh"),
            scratch.BatchNormalization(),
            scratch.Flatten(),
            scratch.Dense(3, activation="softmax"),
        ],
        input_shape=(5, 5, 1),
        dtype="float64",
    )
    plain.set_weights(model.get_weights())
    penalties = model.regularization_losses()
    assert len(penalties) == 6 and plain.regularization_losses() == []
    loss, grads = model.loss_and_gradients(x, y)
    plain_loss, plain_grads = plain.loss_and_gradients(x, y)
    assert float(loss) == pytest.approx(float(plain_loss + sum(penalties)), rel=1e-15)
    w = model.params["dense/kernel"]
    np.testing.assert_allclose(
        grads["dense/kernel"] - plain_grads["dense/kernel"],
        0.01 * np.sign(w) + 0.02 * 2 * w,
        rtol=1e-12,
        atol=1e-15,
    )
    # evaluate and train_step report the regularized loss too
    assert model.evaluate(x, y)[0] > plain.evaluate(x, y)[0]
    assert model.train_step(x, y, scratch.SGD(0.1))[0] == pytest.approx(float(loss), rel=1e-12)


# --------------------------------------------------------------------------------------------
# Dropout keep masks (pure NumPy)
# --------------------------------------------------------------------------------------------
def _dropout_model(dtype: str = "float64") -> scratch.Sequential:
    return scratch.Sequential(
        [
            scratch.Dense(6, activation="relu", name="fc"),
            scratch.Dropout(0.25, name="drop"),
            scratch.Dense(5, name="fc2"),
            scratch.Dropout(0.5, name="drop2"),
            scratch.Dense(3, activation="softmax", name="out"),
        ],
        input_shape=(4,),
        dtype=dtype,
        seed=0,
    )


def test_dropout_masks_are_applied_as_keras_and_kept_until_cleared() -> None:
    model = _dropout_model()
    x, y = normal((3, 4), 0), onehot(3, 3, 1)
    masks = {
        "drop": np.random.default_rng(2).random((3, 6)) > 0.25,
        "drop2": np.random.default_rng(3).random((3, 5)) > 0.5,
    }
    model.set_dropout_masks(masks)
    outputs = model.layer_outputs(x, training=True)
    expected = np.where(masks["drop"], outputs["fc"] * np.float64(1 / 0.75), 0.0)
    np.testing.assert_array_equal(outputs["drop"], expected)
    errors = check_model(model, x, y)  # the same masks for every evaluation
    assert max(errors.values()) <= THRESHOLD, errors
    again = model.layer_outputs(x, training=True)
    np.testing.assert_array_equal(again["drop2"], outputs["drop2"])
    inference = model.layer_outputs(x, training=False)  # masks are ignored at inference
    np.testing.assert_array_equal(inference["drop"], inference["fc"])
    model.clear_dropout_masks()
    own = model.layer_outputs(x, training=True)["drop"]
    assert not np.array_equal(own != 0, masks["drop"])  # the layer's own draws again


def test_dropout_scale_is_tensorflows_rounding() -> None:
    layer = scratch.Dropout(0.3)
    layer.build((4,), "float32")
    mask = np.array([[True, False, True, True]])
    layer.set_mask(mask)
    x = np.array([[1.1, -2.0, -3.3, 0.7]], dtype=np.float32)
    y = layer.forward(x, training=True)
    scale = np.float32(1 / (1 - 0.3))  # Python's division, rounded once
    np.testing.assert_array_equal(y, np.where(mask, x * scale, np.float32(0)))
    dx = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx, np.where(mask, np.float32(1), np.float32(0)) * scale)
    assert y.dtype == dx.dtype == np.float32


@pytest.mark.parametrize(
    ("masks", "match"),
    [
        ({"drop": np.ones((3, 6), bool)}, r"missing=\['drop2'\]"),
        (
            {
                "drop": np.ones((3, 6), bool),
                "drop2": np.ones((3, 5), bool),
                "fc": np.ones((3, 6), bool),
            },
            r"unknown=\['fc'\]",
        ),
        (
            {"drop": np.ones((3, 7), bool), "drop2": np.ones((3, 5), bool)},
            r"shape \(batch, 6\)\. Received: mask.shape=\(3, 7\)",
        ),
        ({"drop": np.ones((3, 6)), "drop2": np.ones((3, 5), bool)}, "mask.dtype=float64"),
    ],
)
def test_bad_dropout_masks_are_refused(masks: dict[str, np.ndarray], match: str) -> None:
    model = _dropout_model()
    with pytest.raises(ValueError, match=match):
        model.set_dropout_masks(masks)
    assert all(la.mask is None for la in model.dropout_layers.values())  # nothing was set


def test_dropout_mask_of_another_batch_size_is_refused_at_forward() -> None:
    model = _dropout_model()
    model.set_dropout_masks({"drop": np.ones((2, 6), bool), "drop2": np.ones((2, 5), bool)})
    with pytest.raises(ValueError, match=r"Received: mask.shape=\(2, 6\)"):
        model.forward(normal((3, 4), 0), training=True)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_dropout_rate_0_and_1(rate: float) -> None:
    layer = scratch.Dropout(rate)
    x = normal((2, 3), 0)
    layer.build((3,), "float64")
    layer.set_mask(np.zeros((2, 3), bool))
    y = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(y))
    expected = x if rate == 0 else np.zeros_like(x)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(dx, np.ones_like(x) if rate == 0 else np.zeros_like(x))


# --------------------------------------------------------------------------------------------
# The mirror (compare/sides/scratch_side.py) from Keras-style configs
# --------------------------------------------------------------------------------------------
def _spec(layers: tuple[LayerSpec, ...], dtype: str = "float64") -> ModelSpec:
    return ModelSpec(
        "zoo",
        dtype,
        0.25,
        0.0,
        False,
        "logits",
        0,
        4,
        layers[0].input_shape,
        layers,
        layers[-1].output_shape[-1],
    )


def _zoo_specs() -> tuple[LayerSpec, ...]:
    L = LayerSpec
    he = {
        "module": "keras.initializers",
        "class_name": "HeNormal",
        "config": {"seed": None, "input_axes": None, "output_axes": None},
        "registered_name": None,
    }
    return (
        L(
            "c1",
            "Conv2D",
            {
                "filters": 3,
                "kernel_size": [3, 3],
                "strides": [1, 1],
                "padding": "same",
                "dilation_rate": [2, 2],
                "groups": 1,
                "use_bias": False,
                "activation": "relu",
                "data_format": "channels_last",
                "kernel_initializer": he,
                "kernel_regularizer": {"class_name": "L2", "config": {"l2": 0.05}},
                "kernel_constraint": None,
            },
            (8, 8, 1),
            (8, 8, 3),
        ),
        L(
            "bn",
            "BatchNormalization",
            {
                "axis": -1,
                "momentum": 0.9,
                "epsilon": 1e-2,
                "center": False,
                "scale": True,
                "gamma_initializer": "ones",
            },
            (8, 8, 3),
            (8, 8, 3),
        ),
        L(
            "r",
            "ReLU",
            {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
            (8, 8, 3),
            (8, 8, 3),
        ),
        L(
            "p",
            "MaxPooling2D",
            {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid"},
            (8, 8, 3),
            (4, 4, 3),
        ),
        L("f", "Flatten", {"data_format": "channels_last"}, (4, 4, 3), (48,)),
        L("d", "Dropout", {"rate": 0.3, "noise_shape": None, "seed": None}, (48,), (48,)),
        L(
            "fc",
            "Dense",
            {
                "units": 5,
                "activation": "linear",
                "use_bias": True,
                "bias_initializer": "random_normal",
                "bias_regularizer": {"class_name": "L1", "config": {"l1": 0.01}},
            },
            (48,),
            (5,),
        ),
        L("a", "Activation", {"activation": "tanh"}, (5,), (5,)),
        L("sm", "Softmax", {"axis": -1}, (5,), (5,)),
    )


def test_mirror_builds_every_option_and_takes_dropout_masks() -> None:
    impl = scratch_side.build(_spec(_zoo_specs()))
    model = impl.model
    assert [type(la).__name__ for la in model.layers] == [
        "Conv2D",
        "BatchNormalization",
        "ReLU",
        "MaxPooling2D",
        "Flatten",
        "Dropout",
        "Dense",
        "Activation",
        "Softmax",
    ]
    conv = model.get_layer("c1")
    assert isinstance(conv, scratch.Conv2D)
    assert conv.dilation_rate == (2, 2) and not conv.use_bias
    assert type(conv.kernel_initializer).__name__ == "HeNormal"
    assert list(impl.get_weights()) == [
        "c1/kernel",
        "bn/gamma",
        "bn/moving_mean",
        "bn/moving_variance",
        "fc/kernel",
        "fc/bias",
    ]
    assert len(model.regularization_losses()) == 2 and model.loss_path == "logits"
    randomise(model, 0)
    x, y = normal((4, 8, 8, 1), 1), onehot(4, 5, 2)
    masks = {"d": np.random.default_rng(3).random((4, 48)) > 0.3}
    before = impl.get_weights()
    loss, grads, dx = impl.loss_and_gradients(x, y, dropout_masks=masks)
    after = impl.get_weights()
    for key in before:  # the protocol's loss_and_gradients updates no state
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert all(la.mask is None for la in model.dropout_layers.values())  # for that call only
    again, grads2, _ = impl.loss_and_gradients(x, y, dropout_masks=masks)
    assert loss == again and all(np.array_equal(grads[k], grads2[k]) for k in grads)
    assert set(grads) == {"c1/kernel", "bn/gamma", "fc/kernel", "fc/bias"} and dx.shape == x.shape
    assert impl.train_step(x, y, dropout_masks=masks) == loss
    moved = impl.get_weights()
    assert not np.array_equal(moved["bn/moving_mean"], before["bn/moving_mean"])


@pytest.mark.parametrize(
    ("layer", "needle"),
    [
        (
            LayerSpec(
                "c",
                "Conv2D",
                {"filters": 2, "kernel_size": [3, 3], "groups": 2},
                (6, 6, 2),
                (4, 4, 2),
            ),
            "'c' (Conv2D): groups=2; supported: groups=1",
        ),
        (
            LayerSpec(
                "c",
                "Conv2D",
                {"filters": 2, "kernel_size": [3, 3], "strides": [2, 2], "dilation_rate": [2, 2]},
                (9, 9, 1),
                (3, 3, 2),
            ),
            "dilation_rate=[2, 2]; supported: 1 when strides > 1",
        ),
        (
            LayerSpec(
                "c",
                "Conv2D",
                {"filters": 2, "kernel_size": [3, 3], "kernel_initializer": "orthogonal"},
                (6, 6, 1),
                (4, 4, 2),
            ),
            "kernel_initializer='orthogonal'; supported: Constant, GlorotNormal",
        ),
        (
            LayerSpec(
                "c",
                "Conv2D",
                {
                    "filters": 2,
                    "kernel_size": [3, 3],
                    "kernel_constraint": {"class_name": "NonNeg"},
                },
                (6, 6, 1),
                (4, 4, 2),
            ),
            "kernel_constraint={'class_name': 'NonNeg'}",
        ),
        (
            LayerSpec(
                "d",
                "Dense",
                {
                    "units": 2,
                    "bias_regularizer": {"class_name": "OrthogonalRegularizer", "config": {}},
                },
                (3,),
                (2,),
            ),
            "bias_regularizer={'class_name': 'OrthogonalRegularizer'",
        ),
        (
            LayerSpec("d", "Dense", {"units": 2, "activation": "gelu"}, (3,), (2,)),
            "activation='gelu'; supported: linear, relu, sigmoid, softmax, tanh",
        ),
        (
            LayerSpec("r", "ReLU", {"max_value": 6.0}, (3,), (3,)),
            "'r' (ReLU): max_value=6.0; supported: max_value=None",
        ),
        (LayerSpec("r", "ReLU", {"negative_slope": 0.2}, (3,), (3,)), "negative_slope=0.2"),
        (LayerSpec("s", "Softmax", {"axis": 1}, (3, 4), (3, 4)), "axis=1; supported: -1"),
        (LayerSpec("b", "BatchNormalization", {"axis": 1}, (3, 4), (3, 4)), "axis=1"),
        (LayerSpec("b", "BatchNormalization", {"renorm": True}, (3,), (3,)), "renorm=True"),
        (
            LayerSpec("b", "BatchNormalization", {"synchronized": True}, (3,), (3,)),
            "synchronized=True",
        ),
        (
            LayerSpec("o", "Dropout", {"rate": 0.5, "noise_shape": [None, 1]}, (3,), (3,)),
            "noise_shape=[None, 1]; supported: noise_shape=None",
        ),
        (LayerSpec("o", "Dropout", {"rate": 1.5}, (3,), (3,)), "rate=1.5"),
        (LayerSpec("l", "LSTM", {}, (3, 4), (4,)), "class='LSTM'; supported: Conv2D"),
        (
            LayerSpec("f", "Flatten", {"data_format": "channels_first"}, (2, 2, 2), (8,)),
            "data_format='channels_first'",
        ),
        (LayerSpec("f", "Flatten", {"trainable": False}, (2, 2, 2), (8,)), "trainable=False"),
        (LayerSpec("f", "Flatten", {}, (2, 2, 2), (9,)), "outputs (None, 8); the reference"),
    ],
)
def test_mirror_refuses_what_it_cannot_mirror_in_one_line(layer: LayerSpec, needle: str) -> None:
    with pytest.raises(InputError) as info:
        scratch_side.mirror(_spec((layer,)))
    message = str(info.value)
    assert needle in message and "\n" not in message, message


def test_mirror_keeps_the_mutant_hook() -> None:
    from compare.sides import mutants

    spec = _spec(
        (
            LayerSpec("fc1", "Dense", {"units": 4, "activation": "relu"}, (3,), (4,)),
            LayerSpec("output", "Dense", {"units": 2, "activation": "softmax"}, (4,), (2,)),
        ),
    )
    plain = scratch_side.build(spec)
    bugged = scratch_side.factory(mutants.get("fc1-forward-off-1e-4"))(spec)
    bugged.set_weights(plain.get_weights())
    x = normal((2, 3), 0)
    ours, theirs = plain.layer_outputs(x)["fc1"], bugged.layer_outputs(x)["fc1"]
    assert not np.array_equal(ours, theirs)


# ============================================================================================
# Against Keras on TensorFlow
# ============================================================================================
@pytest.fixture(scope="module")
def keras_tf() -> Any:
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("these comparisons use TensorFlow's GradientTape (KERAS_BACKEND=tensorflow)")
    return keras


@contextlib.contextmanager
def _floatx(keras: Any, dtype: str) -> Iterator[None]:
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


def _keras_model(
    keras: Any,
    make: Callable[..., list[Any]],
    shape: tuple[int, ...],
    dtype: str,
    **compile_args: Any,
) -> Any:
    with _floatx(keras, dtype):
        model = keras.Sequential([keras.Input(shape, dtype=dtype), *make(keras.layers, dtype)])
        model.compile(loss=keras.losses.CategoricalCrossentropy(dtype=dtype), **compile_args)
    return model


def _keras_weights(model: Any) -> dict[str, np.ndarray]:
    return {f"{la.name}/{v.name}": np.array(v.numpy()) for la in model.layers for v in la.weights}


def _tensorflow_factors(config: dict[str, Any]) -> dict[str, Any]:
    """The config with every L2 / L1L2 factor as TensorFlow applies it: ``ops.cast(l2,
    x.dtype)`` of a Python float is ``tf.cast``, which makes a float32 tensor of it first, so a
    float64 weight's penalty uses float32(l2) (L1 keeps its factor as a tensor already, and
    its config reads that value back). The spec of a TensorFlow reference has to carry these
    effective factors, as it carries the effective momentum."""
    out = dict(config)
    for key, value in config.items():
        if key.endswith("_regularizer") and isinstance(value, dict):
            factors = {k: float(np.float32(v)) for k, v in value["config"].items()}
            out[key] = {**value, "config": factors}
    return out


def _mirror(model: Any, dtype: str, seed: int) -> scratch.Sequential:
    """The scratch mirror built from the Keras model's own get_config() (with TensorFlow's
    effective regularization factors), with Keras's (randomised) weights."""
    layers = tuple(
        LayerSpec(
            la.name,
            type(la).__name__,
            _tensorflow_factors(la.get_config()),
            tuple(la.input.shape[1:]),
            tuple(la.output.shape[1:]),
        )
        for la in model.layers
    )
    rng = np.random.default_rng(seed)
    for la in model.layers:
        for v in la.weights:
            if v.name in ("moving_variance", "gamma"):
                value = rng.uniform(0.5, 2.0, v.shape)
            else:
                value = rng.standard_normal(v.shape) * (0.5 if v.name == "kernel" else 0.3)
            v.assign(value.astype(dtype))
    ours = scratch_side.mirror(_spec(layers, dtype))
    ours.set_weights(_keras_weights(model))
    return ours


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs| (0 for two zero arrays)."""
    scale = float(np.max(np.abs(theirs))) if np.size(theirs) else 0.0
    diff = float(np.max(np.abs(np.asarray(ours, np.float64) - theirs))) if np.size(theirs) else 0.0
    return diff / scale if scale else diff


TOLERANCE = {"float64": 1e-12, "float32": 2e-5}


def _compare_with_keras(
    keras: Any,
    make: Callable[..., list[Any]],
    shape: tuple[int, ...],
    dtype: str,
    *,
    batch: int = 3,
    prepare: Callable[[Any, scratch.Sequential], dict[str, np.ndarray]] | None = None,
) -> None:
    """Forward outputs (inference and training), the loss with its penalties, every gradient
    and dloss/dinput of the mirror against Keras's model.compute_loss under a GradientTape."""
    import tensorflow as tf

    model = _keras_model(keras, make, shape, dtype)
    ours = _mirror(model, dtype, seed=1)
    x, y = normal((batch, *shape), 2, dtype), onehot(batch, model.output_shape[-1], 3, dtype)
    masks = prepare(model, ours) if prepare is not None else {}
    tol = TOLERANCE[dtype]
    # inference outputs, layer by layer
    h = tf.constant(x)
    inference = ours.layer_outputs(x, training=False)
    for la in model.layers:
        h = la(h, training=False)
        assert _relative(inference[la.name], h.numpy()) <= tol, la.name
    # training: outputs, loss, gradients
    if masks:
        ours.set_dropout_masks(masks)
    training = ours.layer_outputs(x, training=True)
    ours.set_weights(_keras_weights(model))  # undo the moving statistics' update
    loss, grads, dx = ours.loss_and_all_gradients(x, y)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        h = xt
        for la in model.layers:
            h = la(h, training=True)
            assert _relative(training[la.name], h.numpy()) <= tol, la.name
        keras_loss = model.compute_loss(x=xt, y=tf.constant(y), y_pred=h)
    variables = {f"{la.name}/{v.name}": v for la in model.layers for v in la.trainable_weights}
    *keras_grads, keras_dx = tape.gradient(keras_loss, [*variables.values(), xt])
    assert loss.dtype == np.dtype(dtype)
    assert abs(float(loss) / float(keras_loss) - 1) <= tol, (float(loss), float(keras_loss))
    assert list(grads) == list(variables)
    for key, g in zip(variables, keras_grads, strict=True):
        assert grads[key].dtype == np.dtype(dtype)
        assert _relative(grads[key], g.numpy()) <= tol, (key, _relative(grads[key], g.numpy()))
    assert _relative(dx, keras_dx.numpy()) <= tol
    # the moving statistics after one training forward
    for key, value in _keras_weights(model).items():
        assert _relative(ours.get_weights()[key], value) <= tol, key


def _case_conv_dilated(L: Any, d: str) -> list[Any]:
    return [
        L.Conv2D(3, 3, padding="same", dilation_rate=2, use_bias=False, activation="relu", dtype=d),
        L.Conv2D(2, (2, 3), dilation_rate=(1, 3), activation="tanh", dtype=d),
        L.Flatten(dtype=d),
        L.Dense(4, activation="softmax", dtype=d),
    ]


def _case_dense_no_bias(L: Any, d: str) -> list[Any]:
    return [
        L.Flatten(dtype=d),
        L.Dense(5, use_bias=False, activation="sigmoid", dtype=d),
        L.Dense(4, use_bias=False, activation="softmax", dtype=d),
    ]


def _case_activation_layers(L: Any, d: str) -> list[Any]:
    return [
        L.Flatten(dtype=d),
        L.Dense(6, dtype=d),
        L.ReLU(dtype=d),
        L.Dense(5, dtype=d),
        L.Activation("tanh", dtype=d),
        L.Dense(4, dtype=d),
        L.Softmax(dtype=d),
    ]


def _case_sigmoid_output(L: Any, d: str) -> list[Any]:
    # On TensorFlow Keras's categorical cross-entropy takes the sigmoid's logits (a softmax
    # cross-entropy of them): the mirror's logits path does the same.
    return [L.Flatten(dtype=d), L.Dense(4, activation="sigmoid", dtype=d)]


def _case_regularizers(L: Any, d: str) -> list[Any]:
    import keras

    R = keras.regularizers
    return [
        L.Conv2D(
            2,
            3,
            activation="tanh",
            kernel_regularizer=R.L2(0.05),
            bias_regularizer=R.L1(0.01),
            dtype=d,
        ),
        L.BatchNormalization(
            gamma_regularizer=R.L2(0.02), beta_regularizer=R.L1L2(0.01, 0.03), dtype=d
        ),
        L.Flatten(dtype=d),
        L.Dense(
            4,
            activation="softmax",
            kernel_regularizer=R.L1L2(l1=0.01, l2=0.02),
            bias_regularizer="l2",
            dtype=d,
        ),
    ]


def _zero_some_weights(model: Any, ours: scratch.Sequential) -> dict[str, np.ndarray]:
    """An exact 0 in every L1-regularized weight: sign(0) = 0 on both sides."""
    for la in model.layers:
        for v in la.trainable_weights:
            value = v.numpy()
            value.reshape(-1)[0] = 0
            v.assign(value)
    ours.set_weights(_keras_weights(model))
    return {}


def _case_batchnorm(center: bool, scale: bool) -> Callable[..., list[Any]]:
    def make(L: Any, d: str) -> list[Any]:
        return [
            # activations before each BatchNormalization: a bias right before one has a zero
            # gradient (the normalisation removes it), all rounding noise
            L.Conv2D(3, 2, activation="tanh", dtype=d),
            L.BatchNormalization(momentum=0.9, epsilon=1e-2, center=center, scale=scale, dtype=d),
            L.Flatten(dtype=d),
            L.Dense(5, activation="tanh", dtype=d),
            L.BatchNormalization(center=center, scale=scale, dtype=d),
            L.Dense(4, activation="softmax", dtype=d),
        ]

    return make


def _case_dropout(L: Any, d: str) -> list[Any]:
    return [
        L.Flatten(dtype=d),
        L.Dense(6, activation="relu", dtype=d),
        L.Dropout(0.3, seed=11, name="drop", dtype=d),
        L.Dense(4, activation="softmax", dtype=d),
    ]


def _keras_dropout_pattern(
    keras: Any, rate: float, seed: int, shape: tuple[int, ...], dtype: str
) -> np.ndarray:
    """The keep pattern of a fresh ``Dropout(rate, seed=seed)``'s first training call,
    recovered by running it on a positive input."""
    with _floatx(keras, dtype):
        probe = keras.layers.Dropout(rate, seed=seed, dtype=dtype)
    out = probe(np.ones(shape, dtype), training=True).numpy()
    return np.asarray(out != 0)


def _dropout_masks(model: Any, ours: scratch.Sequential) -> dict[str, np.ndarray]:
    keras = pytest.importorskip("keras")
    return {"drop": _keras_dropout_pattern(keras, 0.3, 11, (3, 6), ours.dtype.name)}


KERAS_CASES = {
    "conv-dilated-no-bias": (_case_conv_dilated, (9, 10, 2), None),
    "dense-no-bias": (_case_dense_no_bias, (5,), None),
    "activation-layers": (_case_activation_layers, (5,), None),
    "sigmoid-output": (_case_sigmoid_output, (5,), None),
    "regularizers": (_case_regularizers, (6, 6, 2), _zero_some_weights),
    "batchnorm": (_case_batchnorm(True, True), (5, 5, 2), None),
    "batchnorm-no-center": (_case_batchnorm(False, True), (5, 5, 2), None),
    "batchnorm-no-scale": (_case_batchnorm(True, False), (5, 5, 2), None),
    "batchnorm-neither": (_case_batchnorm(False, False), (5, 5, 2), None),
    "dropout": (_case_dropout, (6,), _dropout_masks),
}


@pytest.mark.keras
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_mirror_matches_keras_forward_loss_and_gradients(
    keras_tf: Any, case: str, dtype: str
) -> None:
    make, shape, prepare = KERAS_CASES[case]
    _compare_with_keras(keras_tf, make, shape, dtype, prepare=prepare)


@pytest.mark.keras
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.7])
def test_dropout_with_keras_pattern_is_keras_bit_for_bit(
    keras_tf: Any, rate: float, dtype: str
) -> None:
    """scratch's Dropout given the keep pattern of Keras's own Dropout(rate, seed) computes
    exactly Keras's training output and input gradient, for the same pattern."""
    import tensorflow as tf

    shape = (4, 5, 6)
    mask = _keras_dropout_pattern(keras_tf, rate, 5, shape, dtype)
    assert 0 < mask.mean() < 1
    x = normal(shape, 0, dtype)
    dout = normal(shape, 1, dtype)
    with _floatx(keras_tf, dtype):
        theirs = keras_tf.layers.Dropout(rate, seed=5, dtype=dtype)  # the same first seed
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = theirs(xt, training=True)
        target = tf.reduce_sum(out * dout)
    keras_dx = tape.gradient(target, xt).numpy()
    np.testing.assert_array_equal(out.numpy() != 0, mask & (x != 0))
    layer = scratch.Dropout(rate)
    layer.build(shape[1:], dtype)
    layer.set_mask(mask)
    y = layer.forward(x, training=True)
    assert y.tobytes() == out.numpy().tobytes()
    assert layer.backward(dout).tobytes() == keras_dx.tobytes()
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


@pytest.mark.keras
def test_l1_gradient_at_zero_is_zero_on_tensorflow(keras_tf: Any) -> None:
    import tensorflow as tf

    w = tf.Variable(np.array([-1.0, 0.0, 2.0]))
    with tf.GradientTape() as tape:
        penalty = keras_tf.regularizers.L1L2(l1=0.1, l2=0.2)(w)
    keras_grad = tape.gradient(penalty, w).numpy()
    # TensorFlow applies float32(0.1) and float32(0.2) to this float64 weight (tf.cast of a
    # Python float): the factors a TensorFlow spec has to give
    reg = regularizers.L1L2(float(np.float32(0.1)), float(np.float32(0.2)))
    np.testing.assert_array_equal(reg.gradient(w.numpy()), keras_grad)
    assert keras_grad[1] == 0 and reg.loss(w.numpy()) == penalty.numpy()
    exact = regularizers.L1L2(0.1, 0.2).gradient(w.numpy())
    assert not np.array_equal(exact, keras_grad)


@pytest.mark.keras
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batchnorm_train_step_matches_keras_train_on_batch(keras_tf: Any, dtype: str) -> None:
    """One compiled SGD step of a model with BatchNormalization (momentum 0.9) and an L2
    kernel penalty: the reported loss, every weight and the moving statistics after it, and
    the evaluation loss (inference BatchNormalization, penalty included)."""
    keras = keras_tf

    def make(L: Any, d: str) -> list[Any]:
        return [
            L.Conv2D(
                3, 3, activation="relu", kernel_regularizer=keras.regularizers.L2(0.05), dtype=d
            ),
            L.BatchNormalization(momentum=0.9, epsilon=1e-2, dtype=d),
            L.Flatten(dtype=d),
            L.Dense(4, activation="softmax", dtype=d),
        ]

    lr = 0.25  # a power of two: the same in float32 and float64
    model = _keras_model(
        keras, make, (6, 6, 2), dtype, optimizer=keras.optimizers.SGD(lr), jit_compile=False
    )
    ours = _mirror(model, dtype, seed=4)
    x, y = normal((5, 6, 6, 2), 5, dtype), onehot(5, 4, 6, dtype)
    tol = TOLERANCE[dtype]
    keras_loss = model.train_on_batch(x, y)
    loss, _ = ours.train_step(x, y, scratch.SGD(lr))
    assert abs(loss / float(keras_loss) - 1) <= tol
    after = _keras_weights(model)
    assert list(after) == list(ours.get_weights())
    for key, value in after.items():
        assert _relative(ours.get_weights()[key], value) <= tol, key
    keras_eval = model.test_on_batch(x, y)
    assert abs(ours.evaluate(x, y)[0] / float(keras_eval) - 1) <= tol


@pytest.mark.keras
def test_keras_serialised_initializers_and_regularizers_are_read(keras_tf: Any) -> None:
    keras = keras_tf
    objects = [
        keras.initializers.GlorotUniform(),
        keras.initializers.GlorotNormal(seed=3),
        keras.initializers.HeUniform(),
        keras.initializers.HeNormal(),
        keras.initializers.LecunUniform(),
        keras.initializers.LecunNormal(),
        keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
        keras.initializers.RandomNormal(0.5, 0.2),
        keras.initializers.RandomUniform(-1.0, 2.0),
        keras.initializers.TruncatedNormal(0.1, 0.3),
        keras.initializers.Zeros(),
        keras.initializers.Ones(),
        keras.initializers.Constant(0.7),
    ]
    for obj in objects:
        ours = initializers.get(keras.initializers.serialize(obj))
        assert type(ours).__name__ == type(obj).__name__
        for attr in (
            "scale",
            "mode",
            "distribution",
            "mean",
            "stddev",
            "minval",
            "maxval",
            "value",
        ):
            if hasattr(obj, attr):
                assert getattr(ours, attr) == getattr(obj, attr), (obj, attr)
    for obj in (
        keras.regularizers.L1(0.05),
        keras.regularizers.L2(0.05),
        keras.regularizers.L1L2(0.01, 0.02),
    ):
        ours_reg = regularizers.get(keras.regularizers.serialize(obj))
        assert ours_reg is not None and type(ours_reg).__name__ == type(obj).__name__
        assert ours_reg.l1 == float(getattr(obj, "l1", 0.0))
        assert ours_reg.l2 == float(getattr(obj, "l2", 0.0))
