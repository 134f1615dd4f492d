"""Tests for the scratch layers: float64 gradient checks, forward values against the loop
oracles, dtype preservation, read-only gradients and constructor argument checks."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from gradcheck import THRESHOLD, check_layer, relative_error
from oracles import avg_pool2d, axis_geometry, conv2d, max_pool2d

from scratch import (
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPooling2D,
    windows,
)

ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "softmax"]
DTYPES = ["float32", "float64"]


def normal(shape: tuple[int, ...], seed: int, dtype: str = "float64") -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def randomise(layer: Layer, seed: int) -> None:
    """Give every parameter and state entry a random value (biases start at zero, BN's gamma at
    one), so that no gradient term vanishes by accident."""
    rng = np.random.default_rng(seed)
    for key, w in {**layer.params, **layer.state}.items():
        if key == "moving_variance":
            w[...] = rng.uniform(0.5, 2.0, w.shape)
        elif key != "kernel":
            w[...] = rng.standard_normal(w.shape)


# --------------------------------------------------------------------------------------------
# Gradient-check cases: (layer factory, input shape, training, needs a fresh dropout mask)
# --------------------------------------------------------------------------------------------
CONV_CONFIGS = {
    # (input N,H,W,C, filters, kernel, strides, padding)
    # "same" with odd total padding on both axes: H 6 -> 3 (pad 1), W 7 -> 4 (pad 3)
    "s2-same-oddpad": ((2, 6, 7, 3), 4, (3, 4), (2, 2), "same"),
    "s1x2-valid": ((3, 7, 5, 2), 3, (2, 3), (1, 2), "valid"),
    "s1-same-evenpad": ((2, 5, 6, 2), 3, (3, 3), (1, 1), "same"),
    "s3x1-valid-leftover": ((2, 8, 7, 1), 2, (5, 2), (3, 1), "valid"),
}

POOL_CONFIGS = {
    # (input shape, pool_size, strides, padding)
    "2-valid-disjoint": ((2, 6, 8, 3), (2, 2), None, "valid"),
    "3s2-valid-overlap": ((2, 7, 8, 2), (3, 3), (2, 2), "valid"),
    "3s2-same-overlap": ((2, 7, 6, 2), (3, 3), (2, 2), "same"),
    "2-same-oddinput": ((2, 5, 7, 2), (2, 2), None, "same"),
    "3x2s1x2-same": ((2, 5, 6, 2), (3, 2), (1, 2), "same"),
    "2x3s3x1-valid": ((3, 8, 6, 1), (2, 3), (3, 1), "valid"),
}


def _gradcheck_cases() -> list:
    cases = []
    for (name, (shape, f, k, s, pad)), act in itertools.product(CONV_CONFIGS.items(), ACTIVATIONS):
        cases.append(
            pytest.param(
                lambda f=f, k=k, s=s, pad=pad, act=act: Conv2D(
                    f, k, strides=s, padding=pad, activation=act, seed=1
                ),
                shape,
                False,
                id=f"conv-{name}-{act}",
            )
        )
    for (name, (shape, p, s, pad)), cls in itertools.product(
        POOL_CONFIGS.items(), [AveragePooling2D, MaxPooling2D]
    ):
        cases.append(
            pytest.param(
                lambda cls=cls, p=p, s=s, pad=pad: cls(p, strides=s, padding=pad),
                shape,
                False,
                id=f"{cls.__name__}-{name}",
            )
        )
    cases.append(pytest.param(Flatten, (3, 4, 5, 2), False, id="flatten"))
    for shape, act in itertools.product([(4, 7), (2, 3, 6)], ACTIVATIONS):
        cases.append(
            pytest.param(
                lambda act=act: Dense(5, activation=act, seed=2),
                shape,
                False,
                id=f"dense-{len(shape)}d-{act}",
            )
        )
    for rate, training in [(0.3, True), (0.5, True), (0.5, False)]:
        cases.append(
            pytest.param(
                lambda rate=rate: Dropout(rate, seed=3),
                (3, 4, 5),
                training,
                id=f"dropout-{rate}-{'train' if training else 'infer'}",
            )
        )
    for shape, training in itertools.product([(3, 4, 5, 2), (8, 5)], [True, False]):
        cases.append(
            pytest.param(
                BatchNormalization,
                shape,
                training,
                id=f"batchnorm-{len(shape)}d-{'train' if training else 'infer'}",
            )
        )
    return cases


GRADCHECK_CASES = _gradcheck_cases()


def run_gradcheck(
    factory: Callable[[], Layer], shape: tuple[int, ...], training: bool, seed: int = 0
) -> dict[str, float]:
    """Build the layer in float64 on a standard-normal input, randomise its parameters and
    return the relative error of the input gradient and of each parameter gradient."""
    layer = factory()
    x = normal(shape, seed)
    layer.build(shape[1:], "float64")
    randomise(layer, seed + 100)
    before = None
    if isinstance(layer, Dropout):
        # Each evaluation draws its mask from the layer's generator: reseeding it before every
        # forward makes the mask the same fixed mask for the analytic and numeric gradients.
        dropout = layer

        def before() -> None:
            dropout.rng = np.random.default_rng(dropout.seed)

    errors = check_layer(layer, x, training=training, before_forward=before, seed=seed)
    assert set(errors) == {"input", *layer.params}
    return errors


@pytest.mark.parametrize(("factory", "shape", "training"), GRADCHECK_CASES)
def test_layer_gradients_match_central_differences(
    factory: Callable[[], Layer], shape: tuple[int, ...], training: bool
) -> None:
    errors = run_gradcheck(factory, shape, training)
    worst = max(errors.values())
    assert worst <= THRESHOLD, errors


def test_dropout_gradcheck_mask_is_fixed_and_nontrivial() -> None:
    """The dropout check above is meaningful: reseeding reproduces the mask, and the mask
    drops some entries and scales the rest by 1 / (1 - rate)."""
    layer = Dropout(0.5, seed=3)
    x = np.ones((3, 4, 5))
    y1 = layer.forward(x, training=True)
    layer.rng = np.random.default_rng(3)
    y2 = layer.forward(x, training=True)
    np.testing.assert_array_equal(y1, y2)
    assert set(np.unique(y1)) == {0.0, 2.0}
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_gradcheck_detects_a_wrong_gradient() -> None:
    """The checker itself can fail: a Dense layer whose kernel gradient is off by 1e-5
    relative (a tiny bug) is caught."""

    class BrokenDense(Dense):
        def _backward(self, dz: np.ndarray, input_grad: bool) -> np.ndarray | None:
            dx = super()._backward(dz, input_grad)
            self.grads["kernel"] = self.grads["kernel"] * (1 + 1e-5)
            return dx

    errors = run_gradcheck(lambda: BrokenDense(4, activation="tanh", seed=0), (3, 5), False)
    assert errors["input"] <= THRESHOLD
    assert errors["kernel"] > THRESHOLD
    assert relative_error(np.ones(3), np.ones(3)) == 0.0
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.ones(2), -np.ones(2)) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Forward values against the loop oracles
# --------------------------------------------------------------------------------------------
SPATIAL = [(7, 10), (8, 5), (6, 6)]
WINDOWS = [(3, 2), (2, 2), (1, 3), (4, 5)]
STRIDES = [(1, 1), (2, 2), (3, 3), (2, 3)]
PADDINGS = ["valid", "same"]


def _forward_grid() -> list:
    return [
        pytest.param(hw, k, s, pad, id=f"{hw[0]}x{hw[1]}-k{k[0]}x{k[1]}-s{s[0]}x{s[1]}-{pad}")
        for hw, k, s, pad in itertools.product(SPATIAL, WINDOWS, STRIDES, PADDINGS)
    ]


@pytest.mark.parametrize(("hw", "k", "s", "padding"), _forward_grid())
def test_windowed_forward_matches_loop_oracles(
    hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int], padding: str
) -> None:
    x = normal((2, *hw, 3), seed=hw[0] * 100 + k[0] * 10 + s[0])
    conv = Conv2D(4, k, strides=s, padding=padding, seed=5)
    z = conv.forward(x)
    randomise(conv, 6)
    z = conv.forward(x)
    kernel, bias = conv.params["kernel"], conv.params["bias"]
    expected = conv2d(x, kernel, bias, strides=s, padding=padding)
    assert z.shape == expected.shape
    np.testing.assert_allclose(z, expected, rtol=1e-12, atol=1e-12)

    avg = AveragePooling2D(k, strides=s, padding=padding).forward(x)
    expected = avg_pool2d(x, k, strides=s, padding=padding)
    assert avg.shape == expected.shape
    np.testing.assert_allclose(avg, expected, rtol=1e-12, atol=1e-12)

    mx = MaxPooling2D(k, strides=s, padding=padding).forward(x)
    np.testing.assert_array_equal(mx, max_pool2d(x, k, strides=s, padding=padding))


@pytest.mark.parametrize(("hw", "k", "s", "padding"), _forward_grid())
def test_window_primitives_are_adjoint_pairs(
    hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int], padding: str
) -> None:
    """Each backward primitive of scratch.windows is the transpose of its forward one:
    <A x, y> == <x, A.T y>. Together with the forward oracles this pins the backward maths."""
    rows_plan = windows.same_or_valid(hw[0], k[0], s[0], padding)
    cols_plan = windows.same_or_valid(hw[1], k[1], s[1], padding)
    xp = windows.pad(normal((2, *hw, 3), seed=1), rows_plan, cols_plan)  # (N, Hp, Wp, C)
    n, hp, wp, c = xp.shape
    ho, wo = rows_plan.out, cols_plan.out

    rows = windows.im2row(xp, k[0], s[0])  # (N*Ho, kh*Wp*C)
    d = normal(rows.shape, seed=2)
    back = windows.im2row_adjoint(d, xp.shape, k[0], s[0])
    assert np.vdot(rows, d) == pytest.approx(np.vdot(xp, back), rel=1e-12)

    kernel = normal((*k, c, 4), seed=3)
    t = windows.banded(kernel, wp, s[1])  # (kh*Wp*C, Wo*4)
    assert t.shape == (k[0] * wp * c, wo * 4)
    dt = normal(t.shape, seed=4)
    dk = windows.banded_adjoint(dt, kernel.shape, wp, s[1])
    assert np.vdot(t, dt) == pytest.approx(np.vdot(kernel, dk), rel=1e-12)

    total = windows.window_sum(xp, k, s)  # (N, Ho, Wo, C)
    np.testing.assert_allclose(total, windows.windows(xp, k, s).sum(axis=(3, 4)), rtol=1e-12)
    g = normal((n, ho, wo, c), seed=5)
    back = windows.window_sum_adjoint(g, xp.shape, k, s)
    assert back.shape == (n, hp, wp, c)
    assert np.vdot(total, g) == pytest.approx(np.vdot(xp, back), rel=1e-12)

    # correlate keeps the im2col matrix its callers build kernel gradients from
    out, cols = windows.correlate(xp, kernel, s)
    dout = normal(out.shape, seed=6)
    np.testing.assert_allclose(
        (cols.T @ dout.reshape(-1, 4)).reshape(kernel.shape),
        windows.correlate_kernel_grad(rows, dout, kernel.shape, s, wp),
        rtol=1e-10,
        atol=1e-12,
    )


def test_pooling_default_strides_equal_pool_size() -> None:
    x = normal((2, 9, 7, 2), seed=11)
    np.testing.assert_allclose(
        AveragePooling2D(3).forward(x), avg_pool2d(x, (3, 3), (3, 3)), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_array_equal(
        MaxPooling2D((3, 2), padding="same").forward(x),
        max_pool2d(x, (3, 2), (3, 2), padding="same"),
    )


def test_oracles_against_hand_computed_values() -> None:
    """The oracles themselves, on values worked out by hand."""
    # TensorFlow "same": n=6, k=3, s=2 -> 3 outputs, total padding 1, all of it after.
    assert axis_geometry(6, 3, 2, "same") == (3, 0)
    assert axis_geometry(7, 4, 2, "same") == (4, 1)  # total 3: 1 before, 2 after
    assert axis_geometry(7, 3, 3, "valid") == (2, 0)  # windows at 0 and 3; row 6 unused
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    # 2x2 stride-2 "same" on 3x3: total padding 1 per axis, after -> windows hold 4, 2, 2, 1
    # real cells, and average pooling divides by those counts.
    avg = avg_pool2d(x, (2, 2), padding="same")[0, :, :, 0]
    np.testing.assert_array_equal(avg, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])
    mx = max_pool2d(-x, (2, 2), padding="same")[0, :, :, 0]  # padding (zero) never wins
    np.testing.assert_array_equal(mx, [[0, -2], [-6, -8]])
    # Cross-correlation, not convolution: the kernel is not flipped.
    kernel = np.array([[1.0, 10.0], [100.0, 1000.0]]).reshape(2, 2, 1, 1)
    out = conv2d(x, kernel)[0, :, :, 0]
    np.testing.assert_array_equal(out, [[4310, 5421], [7643, 8754]])
    # "same" conv on 3x3 with a 2x2 kernel: pad one row/column after; the last row/column sees
    # zeros where the kernel's second row/column would go.
    same = conv2d(x, kernel, padding="same")[0, :, :, 0]
    np.testing.assert_array_equal(same[:2, :2], out)
    np.testing.assert_array_equal(same[2], [6 + 10 * 7 + 0, 7 + 10 * 8, 8])
    np.testing.assert_array_equal(same[:, 2], [2 + 100 * 5, 5 + 100 * 8, 8])


def test_flatten_dense_batchnorm_forward_values() -> None:
    """The non-windowed layers, against their formulas written out directly."""
    x = normal((2, 3, 4, 5), seed=12)
    flat = Flatten().forward(x)
    # Channels-last (Keras) order: channel index fastest, then column, then row.
    assert flat[1, 1] == x[1, 0, 0, 1] and flat[1, 5] == x[1, 0, 1, 0]
    assert flat[1, 4 * 5] == x[1, 1, 0, 0]

    dense = Dense(3, activation="tanh", seed=0)
    dense.build((2, 5), "float64")
    randomise(dense, 13)
    k, b = dense.params["kernel"], dense.params["bias"]
    x3 = normal((4, 2, 5), seed=14)
    expected = np.tanh(np.einsum("nti,iu->ntu", x3, k) + b)
    np.testing.assert_allclose(dense.forward(x3), expected, rtol=1e-13, atol=1e-15)

    bn = BatchNormalization(momentum=0.9, epsilon=1e-3)
    xb = normal((6, 2, 3, 4), seed=15) * 3 + 1
    bn.build(xb.shape[1:], "float64")
    randomise(bn, 16)
    gamma, beta = bn.params["gamma"].copy(), bn.params["beta"].copy()
    mm, mv = bn.state["moving_mean"].copy(), bn.state["moving_variance"].copy()
    mean, var = xb.mean(axis=(0, 1, 2)), xb.var(axis=(0, 1, 2))  # biased variance
    np.testing.assert_allclose(
        bn.forward(xb, training=True),
        gamma * (xb - mean) / np.sqrt(var + 1e-3) + beta,
        rtol=1e-12,
        atol=1e-12,
    )
    # Keras's update: moving = moving * momentum + batch * (1 - momentum).
    np.testing.assert_allclose(bn.state["moving_mean"], mm * 0.9 + mean * 0.1, rtol=1e-13)
    np.testing.assert_allclose(bn.state["moving_variance"], mv * 0.9 + var * 0.1, rtol=1e-13)
    mm, mv = bn.state["moving_mean"].copy(), bn.state["moving_variance"].copy()
    np.testing.assert_allclose(
        bn.forward(xb, training=False),
        gamma * (xb - mm) / np.sqrt(mv + 1e-3) + beta,
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_array_equal(bn.state["moving_mean"], mm)  # inference leaves them alone
    assert bn.grads == {} or bn.grads.keys() == bn.params.keys()


# --------------------------------------------------------------------------------------------
# dtype preservation and read-only gradients, for every layer
# --------------------------------------------------------------------------------------------
LAYER_FACTORIES: dict[str, tuple[Callable[[], Layer], tuple[int, ...], bool]] = {
    **{
        f"conv-{act}": (
            lambda act=act: Conv2D(3, (3, 2), strides=2, padding="same", activation=act, seed=0),
            (2, 7, 6, 2),
            False,
        )
        for act in ACTIVATIONS
    },
    "avgpool-same": (lambda: AveragePooling2D(3, strides=2, padding="same"), (2, 7, 6, 2), False),
    "avgpool-valid": (lambda: AveragePooling2D(2), (2, 6, 6, 2), False),
    "maxpool-same": (lambda: MaxPooling2D(3, strides=2, padding="same"), (2, 7, 6, 2), False),
    "maxpool-valid": (lambda: MaxPooling2D(2), (2, 6, 6, 2), False),
    "flatten": (Flatten, (2, 3, 4, 2), False),
    **{
        f"dense-{act}": (lambda act=act: Dense(4, activation=act, seed=0), (3, 5), False)
        for act in ACTIVATIONS
    },
    "dense-3d": (lambda: Dense(4, activation="relu", seed=0), (2, 3, 5), False),
    "dropout-train": (lambda: Dropout(0.4, seed=0), (3, 6), True),
    "dropout-infer": (lambda: Dropout(0.4, seed=0), (3, 6), False),
    "batchnorm-train": (BatchNormalization, (2, 3, 4, 2), True),
    "batchnorm-infer": (BatchNormalization, (5, 3), False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYER_FACTORIES))
def test_layer_preserves_dtype(name: str, dtype: str) -> None:
    factory, shape, training = LAYER_FACTORIES[name]
    layer = factory()
    x = normal(shape, 0, dtype)
    y = layer.forward(x, training=training)
    assert layer.dtype == np.dtype(dtype)
    assert y.dtype == np.dtype(dtype)
    dx = layer.backward(normal(y.shape, 1, dtype))
    assert dx.dtype == np.dtype(dtype)
    assert dx.shape == x.shape
    assert layer.grads.keys() == layer.params.keys()
    for key in layer.params:
        assert layer.params[key].dtype == np.dtype(dtype), key
        assert layer.grads[key].dtype == np.dtype(dtype), key
        assert layer.grads[key].shape == layer.params[key].shape, key
    for key, value in layer.state.items():
        assert value.dtype == np.dtype(dtype), key
    # backward_preactivation (used for the fused softmax + cross-entropy) keeps it too.
    dz = layer.backward_preactivation(normal(y.shape, 2, dtype))
    assert dz.dtype == np.dtype(dtype)

    other = "float64" if dtype == "float32" else "float32"
    with pytest.raises(ValueError, match=f"Received: x.dtype={other}"):
        layer.forward(x.astype(other), training=training)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_built_from_first_input_dtype(dtype: str) -> None:
    layer = Dense(3)
    layer.forward(np.ones((2, 4), dtype=dtype))
    assert layer.built and layer.input_shape == (4,)
    assert layer.params["kernel"].dtype == np.dtype(dtype)


@pytest.mark.parametrize("name", list(LAYER_FACTORIES))
def test_backward_never_writes_into_dout(name: str) -> None:
    factory, shape, training = LAYER_FACTORIES[name]
    layer = factory()
    x = normal(shape, 0)
    x.setflags(write=False)  # forward must not write into its input either
    y = layer.forward(x, training=training)
    for method in (layer.backward, layer.backward_preactivation):
        dout = normal(y.shape, 3)
        dout.setflags(write=False)
        expected = dout.copy()
        for input_grad in (True, False):
            method(dout, input_grad=input_grad)
        np.testing.assert_array_equal(dout, expected)
    np.testing.assert_array_equal(x, normal(shape, 0))


def test_backward_without_input_grad_returns_none_and_fills_grads() -> None:
    layer = Conv2D(2, 3, seed=0)
    layer.forward(normal((2, 5, 5, 1), 0))
    assert layer.backward(normal((2, 3, 3, 2), 1), input_grad=False) is None
    assert layer.grads.keys() == {"kernel", "bias"}


# --------------------------------------------------------------------------------------------
# Constructor arguments
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "received"),
    [
        pytest.param(lambda: Conv2D(0, 3), "filters=0", id="filters=0"),
        pytest.param(lambda: Conv2D(2.5, 3), "filters=2.5", id="filters=2.5"),
        pytest.param(lambda: Conv2D(4, (3,)), "kernel_size=(3,)", id="kernel_size=(3,)"),
        pytest.param(lambda: Conv2D(4, 0), "kernel_size=0", id="kernel_size=0"),
        pytest.param(lambda: Conv2D(4, 3, strides=-1), "strides=-1", id="conv-strides=-1"),
        pytest.param(lambda: MaxPooling2D(2, strides=-1), "strides=-1", id="pool-strides=-1"),
        pytest.param(lambda: Conv2D(4, 3, padding="full"), "padding='full'", id="conv-full"),
        pytest.param(
            lambda: AveragePooling2D(padding="full"), "padding='full'", id="pool-padding=full"
        ),
        pytest.param(lambda: Conv2D(4, 3, activation="gelu"), "activation='gelu'", id="gelu"),
        pytest.param(lambda: Dense(4, activation="gelu"), "activation='gelu'", id="dense-gelu"),
        pytest.param(lambda: Dense(-3), "units=-3", id="units=-3"),
        pytest.param(lambda: Dropout(1.5), "rate=1.5", id="rate=1.5"),
        pytest.param(lambda: BatchNormalization(momentum=2), "momentum=2", id="bn-momentum=2"),
    ],
)
def test_bad_layer_arguments_are_rejected(make: Callable[[], object], received: str) -> None:
    with pytest.raises(ValueError, match="Received: ") as info:
        make()
    message = str(info.value)
    assert f"Received: {received}" in message, message
