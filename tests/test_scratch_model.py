"""Tests for the scratch model: LeNet-5 gradient checks, the two cross-entropy paths, SGD,
dtypes, weights, build_lenet5, fit and train_step."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from gradcheck import MAX_ENTRIES, THRESHOLD, check_model, gradcheck, numerical_gradient

from compare.parity.finite_difference import sample_indices
from scratch import (
    EPSILON,
    SGD,
    BatchNormalization,
    CategoricalCrossentropy,
    Conv2D,
    Dense,
    Flatten,
    MaxPooling2D,
    Sequential,
    build_lenet5,
    crossentropy_from_logits,
    crossentropy_from_probabilities,
    fit,
)

VARIANTS = ["keras-docs", "classic"]
LOSS_PATHS = ["logits", "probabilities"]
DTYPES = ["float32", "float64"]
LAYER_NAMES = ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "output"]


def images(n: int, seed: int, dtype: str = "float64") -> np.ndarray:
    """Continuous random MNIST-shaped inputs in [0, 1]."""
    return np.random.default_rng(seed).uniform(0, 1, (n, 28, 28, 1)).astype(dtype)


def one_hot(n: int, seed: int, dtype: str = "float64", classes: int = 10) -> np.ndarray:
    labels = np.random.default_rng(seed).integers(0, classes, n)
    return np.eye(classes, dtype=dtype)[labels]


# --------------------------------------------------------------------------------------------
# Whole-model gradient check
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_path", LOSS_PATHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_lenet5_loss_gradients_match_central_differences(variant: str, loss_path: str) -> None:
    model = build_lenet5(variant, "float64", seed=0, loss_path=loss_path)
    assert model.loss_path == loss_path
    x, y = images(3, 1), one_hot(3, 2)
    errors = check_model(model, x, y, seed=3)
    assert set(errors) == {"input", *model.params}
    assert len(errors) == 11  # 5 kernels, 5 biases, the input
    worst = max(errors.values())
    assert worst <= THRESHOLD, errors


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_vjp(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """dL/dz from dL/dp for p = softmax(z): the Jacobian is diag(p) - p p^T."""
    return p * (g - (g * p).sum(axis=-1, keepdims=True))


def clipped_path_at_logits(y: np.ndarray, z: np.ndarray) -> tuple[float, np.ndarray]:
    """The probabilities path applied to softmax(z), with its gradient chained to the logits."""
    p = softmax(z)
    loss, dp = crossentropy_from_probabilities(y, p)
    return float(loss), softmax_vjp(p, dp)


def saturated_logits() -> tuple[np.ndarray, np.ndarray]:
    """Five samples over 4 classes; sample 1 is confidently right (p_true > 1 - 1e-7, clipped)
    and sample 3 confidently wrong (p_true < 1e-7, clipped); the others are unsaturated."""
    z = np.random.default_rng(0).standard_normal((5, 4))
    y = np.eye(4)[[0, 2, 1, 3, 2]]
    z[1] = [0.0, 0.5, 30.0, -1.0]  # true class 2 far ahead
    z[3] = [0.0, 30.0, 0.5, 1.0]  # true class 3 far behind class 1
    p = softmax(z)
    assert p[1, 2] > 1 - EPSILON and p[3, 3] < EPSILON
    return y, z


def test_clipped_path_gradient_matches_central_differences_with_saturation() -> None:
    y, z = saturated_logits()
    _, dz = clipped_path_at_logits(y, z)
    # Where the true class's probability is clipped the loss is flat: the gradient is zero.
    np.testing.assert_array_equal(dz[[1, 3]], 0.0)
    assert np.all(np.abs(dz[[0, 2, 4]]) > 1e-6)

    def f() -> float:
        return clipped_path_at_logits(y, z)[0]

    errors = gradcheck(f, {"logits": z}, {"logits": dz})
    assert errors["logits"] <= THRESHOLD, errors
    # Every logit of the saturated samples, numerically: flat as well.
    saturated = (np.repeat([1, 3], 4), np.tile(np.arange(4), 2))
    np.testing.assert_allclose(numerical_gradient(f, z, saturated), 0.0, atol=1e-9)


def test_clipped_path_gradient_in_probability_space() -> None:
    """The renormalisation p / sum(p) is differentiated too: rows that do not sum to one."""
    rng = np.random.default_rng(1)
    probs = rng.uniform(0.05, 1.0, (4, 5))
    y = np.eye(5)[[0, 4, 2, 2]]
    _, dprobs = crossentropy_from_probabilities(y, probs)

    def f() -> float:
        return float(crossentropy_from_probabilities(y, probs)[0])

    errors = gradcheck(f, {"probs": probs}, {"probs": dprobs})
    assert errors["probs"] <= THRESHOLD, errors
    # Rescaling a row changes nothing: the gradient is orthogonal to the row.
    np.testing.assert_allclose((dprobs * probs).sum(axis=-1), 0.0, atol=1e-15)


def test_clipped_path_gradient_is_zero_where_clipped_in_probability_space() -> None:
    probs = np.array([[1 - 1e-9, 5e-10, 5e-10], [1e-9, 0.6, 0.4], [0.2, 0.5, 0.3]])
    y = np.eye(3)[[0, 0, 1]]
    loss, dprobs = crossentropy_from_probabilities(y, probs)
    np.testing.assert_array_equal(dprobs[:2], 0.0)
    assert np.all(dprobs[2] != 0)
    expected = (-np.log(1 - EPSILON) - np.log(EPSILON) - np.log(0.5)) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_logits_path_gradient_matches_central_differences() -> None:
    y, z = saturated_logits()
    _, dz = crossentropy_from_logits(y, z)

    def f() -> float:
        return float(crossentropy_from_logits(y, z)[0])

    errors = gradcheck(f, {"logits": z}, {"logits": dz})
    assert errors["logits"] <= THRESHOLD, errors


def test_loss_paths_agree_when_nothing_saturates() -> None:
    z = np.random.default_rng(2).standard_normal((6, 10)) * 2
    y = one_hot(6, 3)
    loss_logits, dz_logits = crossentropy_from_logits(y, z)
    loss_probs, dz_probs = clipped_path_at_logits(y, z)
    assert float(loss_logits) == pytest.approx(loss_probs, rel=1e-13)
    np.testing.assert_allclose(dz_probs, dz_logits, rtol=1e-10, atol=1e-15)


def test_loss_paths_differ_when_a_probability_saturates() -> None:
    y, z = saturated_logits()
    loss_logits, dz_logits = crossentropy_from_logits(y, z)
    loss_probs, dz_probs = clipped_path_at_logits(y, z)
    # Sample 3: the logits path charges -log p_true ~ 29 nats, the clipped path caps it at
    # -log(1e-7) ~ 16.1 (sample 1 adds a difference of only ~1e-7 / 5).
    nats = np.log(np.exp(z[3]).sum()) - z[3, 3]
    assert nats > 28
    difference = float(loss_logits) - loss_probs
    assert difference == pytest.approx((nats + np.log(EPSILON)) / 5, abs=1e-7)
    assert difference > 2.5
    # The logits path still pushes the confidently wrong sample; the clipped path does not.
    assert dz_logits[3, 3] == pytest.approx(-1 / 5, rel=1e-9)
    assert dz_probs[3, 3] == 0
    # Unsaturated samples get the same gradient on both paths.
    np.testing.assert_allclose(dz_probs[[0, 2, 4]], dz_logits[[0, 2, 4]], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("path", LOSS_PATHS)
def test_loss_is_the_batch_mean(path: str) -> None:
    z = np.random.default_rng(4).standard_normal((5, 3))
    y = one_hot(5, 5, classes=3)
    fn = crossentropy_from_logits if path == "logits" else crossentropy_from_probabilities
    pred = z if path == "logits" else softmax(z)
    loss, grad = fn(y, pred)
    rows = [fn(y[i : i + 1], pred[i : i + 1]) for i in range(5)]
    assert float(loss) == pytest.approx(np.mean([float(r[0]) for r in rows]), rel=1e-13)
    np.testing.assert_allclose(grad, np.concatenate([r[1] for r in rows]) / 5, rtol=1e-12)
    # Duplicating the batch leaves a mean unchanged (a sum would double).
    loss2, _ = fn(np.concatenate([y, y]), np.concatenate([pred, pred]))
    assert float(loss2) == pytest.approx(float(loss), rel=1e-13)
    # -log of the true class's probability, by hand.
    expected = -np.mean(np.log(softmax(z)[np.arange(5), y.argmax(axis=1)]))
    assert float(loss) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------------------------
def test_sgd_hand_computed_scalars() -> None:
    """w0 = 1, gradients 0.5, -1, 2; lr = 0.1, mu = 0.9, worked out by hand."""
    grads = [0.5, -1.0, 2.0]
    expected = {
        # plain: 1 - 0.05 = 0.95; + 0.1 = 1.05; - 0.2 = 0.85
        "plain": [0.95, 1.05, 0.85],
        # m1 = -0.05, w1 = 0.95; m2 = -0.045 + 0.1 = 0.055, w2 = 1.005;
        # m3 = 0.0495 - 0.2 = -0.1505, w3 = 0.8545
        "momentum": [0.95, 1.005, 0.8545],
        # w1 = 1 + (-0.045 - 0.05) = 0.905; w2 = 0.905 + (0.0495 + 0.1) = 1.0545;
        # w3 = 1.0545 + (-0.13545 - 0.2) = 0.71905
        "nesterov": [0.905, 1.0545, 0.71905],
    }
    for kind, values in expected.items():
        opt = SGD(0.1, momentum=0.0 if kind == "plain" else 0.9, nesterov=kind == "nesterov")
        w = {"w": np.array([1.0])}
        for g, value in zip(grads, values, strict=True):
            opt.apply(w, {"w": np.array([g])})
            assert w["w"][0] == pytest.approx(value, abs=1e-12), kind


def _sgd_problem(dtype: str) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(7)
    w0 = {"a": rng.standard_normal((2, 3)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}
    grads = [
        {"a": rng.standard_normal((2, 3)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}
        for _ in range(3)
    ]
    return w0, grads


def _run_sgd(opt: SGD, w0: dict, grads: list) -> list[dict[str, np.ndarray]]:
    params = {k: v.copy() for k, v in w0.items()}
    live = dict(params)
    history = []
    for g in grads:
        opt.apply(params, g)
        assert all(params[k] is live[k] for k in params)  # updated in place
        history.append({k: v.copy() for k, v in params.items()})
    return history


def _assert_steps(actual: list, expected: list, dtype: str) -> None:
    rtol = 1e-6 if dtype == "float32" else 1e-14
    for step, (got, want) in enumerate(zip(actual, expected, strict=True)):
        for key in want:
            assert got[key].dtype == np.dtype(dtype), (step, key)
            np.testing.assert_allclose(got[key], want[key], rtol=rtol, atol=rtol, err_msg=key)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_plain(dtype: str) -> None:
    w0, (g1, g2, g3) = _sgd_problem(dtype)
    lr = np.dtype(dtype).type(0.05)
    expected = []
    for key in ("a", "b"):
        w1 = w0[key] - g1[key] * lr
        w2 = w1 - g2[key] * lr
        w3 = w2 - g3[key] * lr
        expected.append((key, (w1, w2, w3)))
    want = [{k: ws[i] for k, ws in expected} for i in range(3)]
    _assert_steps(_run_sgd(SGD(0.05), w0, [g1, g2, g3]), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_momentum(dtype: str) -> None:
    w0, (g1, g2, g3) = _sgd_problem(dtype)
    lr, mu = np.dtype(dtype).type(0.05), np.dtype(dtype).type(0.8)
    expected = []
    for key in ("a", "b"):
        m1 = -g1[key] * lr
        w1 = w0[key] + m1
        m2 = m1 * mu - g2[key] * lr
        w2 = w1 + m2
        m3 = m2 * mu - g3[key] * lr
        w3 = w2 + m3
        expected.append((key, (w1, w2, w3)))
    want = [{k: ws[i] for k, ws in expected} for i in range(3)]
    _assert_steps(_run_sgd(SGD(0.05, momentum=0.8), w0, [g1, g2, g3]), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_nesterov(dtype: str) -> None:
    w0, (g1, g2, g3) = _sgd_problem(dtype)
    lr, mu = np.dtype(dtype).type(0.05), np.dtype(dtype).type(0.8)
    expected = []
    for key in ("a", "b"):
        m1 = -g1[key] * lr
        w1 = w0[key] + (m1 * mu - g1[key] * lr)
        m2 = m1 * mu - g2[key] * lr
        w2 = w1 + (m2 * mu - g2[key] * lr)
        m3 = m2 * mu - g3[key] * lr
        w3 = w2 + (m3 * mu - g3[key] * lr)
        expected.append((key, (w1, w2, w3)))
    want = [{k: ws[i] for k, ws in expected} for i in range(3)]
    opt = SGD(0.05, momentum=0.8, nesterov=True)
    _assert_steps(_run_sgd(opt, w0, [g1, g2, g3]), want, dtype)


@pytest.mark.parametrize("kind", ["missing", "extra", "shape", "dtype"])
def test_sgd_rejects_mismatched_gradients_without_updating(kind: str) -> None:
    w0, (g, _, _) = _sgd_problem("float32")
    params = {k: v.copy() for k, v in w0.items()}
    bad = dict(g)
    if kind == "missing":
        del bad["b"]
    elif kind == "extra":
        bad["c"] = np.zeros(2, "float32")
    elif kind == "shape":
        bad["b"] = np.zeros(5, "float32")
    else:
        bad["b"] = bad["b"].astype("float64")
    opt = SGD(0.1, momentum=0.9)
    with pytest.raises(ValueError, match="Received"):
        opt.apply(params, bad)
    for key in w0:  # "a" comes first and is valid: it must not have been updated either
        np.testing.assert_array_equal(params[key], w0[key])


# --------------------------------------------------------------------------------------------
# Model dtype and read-only arguments
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_path", LOSS_PATHS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lenet5_preserves_dtype(dtype: str, variant: str, loss_path: str) -> None:
    dt = np.dtype(dtype)
    model = build_lenet5(variant, dtype, seed=0, loss_path=loss_path)
    x, y = images(4, 0, dtype), one_hot(4, 1, dtype)
    assert model.forward(x).dtype == dt
    for name, out in model.layer_outputs(x).items():
        assert out.dtype == dt, name
    for key, w in model.get_weights().items():
        assert w.dtype == dt, key
    loss, grads = model.loss_and_gradients(x, y)
    assert loss.dtype == dt
    assert grads.keys() == model.params.keys()
    for key, g in grads.items():
        assert g.dtype == dt, key
    _, all_grads, dx = model.loss_and_all_gradients(x, y)
    assert dx.dtype == dt
    for key, g in all_grads.items():
        assert g.dtype == dt, key
    model.train_step(x, y, SGD(0.1, momentum=0.9, nesterov=True))
    for key, w in model.params.items():
        assert w.dtype == dt, key

    other = "float64" if dtype == "float32" else "float32"
    for call in (
        lambda: model.forward(x.astype(other)),
        lambda: model.layer_outputs(x.astype(other)),
        lambda: model.loss_and_gradients(x.astype(other), y),
        lambda: model.loss_and_all_gradients(x.astype(other), y),
    ):
        with pytest.raises(ValueError, match=f"Received: x.dtype={other}"):
            call()


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("loss_path", LOSS_PATHS)
def test_sequential_paths_never_write_into_their_arguments(loss_path: str) -> None:
    model = build_lenet5("classic", "float64", seed=0, loss_path=loss_path)
    x, y = _readonly(images(3, 0)), _readonly(one_hot(3, 1))
    x0, y0 = x.copy(), y.copy()
    model.forward(x, training=True)
    _, dloss = model.compute_loss(y)
    dloss = _readonly(dloss)
    d0 = dloss.copy()
    for input_grad in (False, True):
        model.backward_from_loss(dloss, input_grad=input_grad)
    model.loss_and_gradients(x, y)
    model.loss_and_all_gradients(x, y)
    model.evaluate(x, y, batch_size=2)
    model.train_step(x, y, SGD(0.01))
    fit(model, x, y, optimizer=SGD(0.01), batch_size=2, epochs=1, shuffle=True, seed=0)
    np.testing.assert_array_equal(dloss, d0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


# --------------------------------------------------------------------------------------------
# get_weights / set_weights
# --------------------------------------------------------------------------------------------
def small_bn_model(dtype: str, seed: int) -> Sequential:
    """A model with non-trainable state (BatchNormalization's moving statistics)."""
    return Sequential(
        [
            Conv2D(3, 3, activation="relu", name="conv"),
            BatchNormalization(name="bn"),
            MaxPooling2D(2, name="pool"),
            Flatten(name="flatten"),
            Dense(4, activation="softmax", name="out"),
        ],
        input_shape=(6, 6, 2),
        dtype=dtype,
        seed=seed,
    )


MODEL_FACTORIES: dict[str, Callable[[str, int], Sequential]] = {
    "lenet5": lambda dtype, seed: build_lenet5("classic", dtype, seed=seed),
    "with-batchnorm": small_bn_model,
}


@pytest.mark.parametrize("kind", list(MODEL_FACTORIES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_round_trip_bit_exact(dtype: str, kind: str) -> None:
    make = MODEL_FACTORIES[kind]
    source, target = make(dtype, 1), make(dtype, 2)
    if kind == "with-batchnorm":  # move the moving statistics away from their initial values
        x = np.random.default_rng(0).standard_normal((4, 6, 6, 2)).astype(dtype)
        source.forward(x, training=True)
        assert "bn/moving_mean" in source.get_weights()
    weights = source.get_weights()
    assert weights.keys() == target.get_weights().keys()
    target.set_weights(weights)
    restored = target.get_weights()
    assert restored.keys() == weights.keys()
    for key, w in weights.items():
        assert restored[key].dtype == w.dtype == np.dtype(dtype), key
        assert np.array_equal(restored[key], w), key
    x = np.random.default_rng(1).standard_normal((2, *source.input_shape)).astype(dtype)
    np.testing.assert_array_equal(source.forward(x), target.forward(x))


def test_get_weights_returns_copies_and_set_weights_copies_in() -> None:
    model = build_lenet5("keras-docs", "float32", seed=0)
    before = model.get_weights()
    copies = model.get_weights()
    for w in copies.values():
        w += 1
    for key, w in model.get_weights().items():
        np.testing.assert_array_equal(w, before[key], err_msg=key)
    model.set_weights(copies)
    for w in copies.values():  # mutating the source after set_weights changes nothing
        w -= 5
    for key, w in model.get_weights().items():
        np.testing.assert_array_equal(w, before[key] + 1, err_msg=key)


def _bad_weights(model: Sequential, other: Sequential, kind: str) -> dict[str, np.ndarray]:
    """``other``'s weights (all different from ``model``'s) with one defect, placed on the last
    key so that a write-as-you-validate implementation would already have written the rest."""
    w = other.get_weights()
    last = list(w)[-1]
    if kind == "missing":
        del w[last]
    elif kind == "extra":
        w["fc9/kernel"] = np.zeros((2, 2), dtype=model.dtype)
    elif kind == "shape":
        w[last] = np.zeros((*w[last].shape, 1), dtype=model.dtype)
    elif kind == "dtype":
        w[last] = w[last].astype("float64" if model.dtype == np.float32 else "float32")
    return w


@pytest.mark.parametrize("kind", ["missing", "extra", "shape", "dtype"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_set_weights_rejects_mismatches_without_writing(dtype: str, kind: str) -> None:
    model = build_lenet5("keras-docs", dtype, seed=0)
    other = build_lenet5("keras-docs", dtype, seed=1)
    before = model.get_weights()
    bad = _bad_weights(model, other, kind)
    with pytest.raises(ValueError, match="Received"):
        model.set_weights(bad)
    after = model.get_weights()
    for key, w in before.items():
        assert after[key].dtype == w.dtype and np.array_equal(after[key], w), key


# --------------------------------------------------------------------------------------------
# Constructor arguments
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "received"),
    [
        pytest.param(lambda: SGD(learning_rate=0), "learning_rate=0", id="lr=0"),
        pytest.param(lambda: SGD(0.1, momentum=-0.1), "momentum=-0.1", id="momentum=-0.1"),
        pytest.param(lambda: build_lenet5("lenet7"), "variant='lenet7'", id="variant"),
        pytest.param(lambda: build_lenet5(dtype="float16"), "dtype='float16'", id="dtype"),
        pytest.param(lambda: CategoricalCrossentropy("bogus"), "path='bogus'", id="loss-path"),
        pytest.param(
            lambda: build_lenet5(loss_path="bogus"), "loss_path='bogus'", id="lenet-loss-path"
        ),
    ],
)
def test_bad_arguments_are_rejected(make: Callable[[], object], received: str) -> None:
    with pytest.raises(ValueError, match="Received: ") as info:
        make()
    message = str(info.value)
    assert received in message, message


# --------------------------------------------------------------------------------------------
# build_lenet5
# --------------------------------------------------------------------------------------------
EXPECTED_SHAPES = {
    "keras-docs": [(24, 24, 6), (12, 12, 6), (8, 8, 16), (4, 4, 16), (256,), (120,), (84,), (10,)],
    "classic": [(28, 28, 6), (14, 14, 6), (10, 10, 16), (5, 5, 16), (400,), (120,), (84,), (10,)],
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_lenet5_layers_and_output_shapes(variant: str) -> None:
    model = build_lenet5(variant, "float32", seed=0)
    assert [layer.name for layer in model.layers] == LAYER_NAMES
    outputs = model.layer_outputs(images(2, 0, "float32"))
    assert list(outputs) == LAYER_NAMES
    for layer, shape in zip(model.layers, EXPECTED_SHAPES[variant], strict=True):
        assert layer.output_shape == shape, layer.name
        assert outputs[layer.name].shape == (2, *shape), layer.name
    np.testing.assert_allclose(outputs["output"].sum(axis=1), 1.0, rtol=1e-6)


def test_lenet5_param_counts_by_hand() -> None:
    conv1 = 5 * 5 * 1 * 6 + 6  # 156
    conv2 = 5 * 5 * 6 * 16 + 16  # 2,416
    fc2 = 120 * 84 + 84  # 10,164
    output = 84 * 10 + 10  # 850
    keras_docs = conv1 + conv2 + (4 * 4 * 16 * 120 + 120) + fc2 + output
    classic = conv1 + conv2 + (5 * 5 * 16 * 120 + 120) + fc2 + output
    assert (keras_docs, classic) == (44_426, 61_706)
    for variant, expected in (("keras-docs", keras_docs), ("classic", classic)):
        model = build_lenet5(variant, "float32", seed=0)
        assert model.count_params() == expected
        assert sum(w.size for w in model.get_weights().values()) == expected
        assert sum(w.size for w in model.params.values()) == expected


# fan_in, fan_out of every kernel, by hand: a conv kernel's fans include its 5x5 field.
FANS = {
    "keras-docs": {
        "conv1": (25 * 1, 25 * 6),
        "conv2": (25 * 6, 25 * 16),
        "fc1": (256, 120),
        "fc2": (120, 84),
        "output": (84, 10),
    },
}
FANS["classic"] = {**FANS["keras-docs"], "fc1": (400, 120)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_lenet5_glorot_uniform_init(variant: str, dtype: str) -> None:
    weights = build_lenet5(variant, dtype, seed=0).get_weights()
    assert len(weights) == 10
    for layer, (fan_in, fan_out) in FANS[variant].items():
        kernel, bias = weights[f"{layer}/kernel"], weights[f"{layer}/bias"]
        limit = math.sqrt(6 / (fan_in + fan_out))
        # float32 rounding of a draw just below the limit may land one ulp above it
        assert np.abs(kernel).max() <= limit * (1 + np.finfo(dtype).eps), layer
        assert np.abs(kernel).max() >= 0.9 * limit, layer  # the spread reaches the limit
        assert kernel.std() == pytest.approx(limit / math.sqrt(3), rel=0.15), layer
        assert abs(kernel.mean()) < 0.2 * limit, layer
        np.testing.assert_array_equal(bias, 0.0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_lenet5_seed_determines_weights(variant: str) -> None:
    a = build_lenet5(variant, "float32", seed=3).get_weights()
    b = build_lenet5(variant, "float32", seed=3).get_weights()
    c = build_lenet5(variant, "float32", seed=4).get_weights()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
        if key.endswith("/kernel"):
            assert not np.array_equal(a[key], c[key]), key


# --------------------------------------------------------------------------------------------
# fit and train_step
# --------------------------------------------------------------------------------------------
def tiny_model(seed: int = 0) -> Sequential:
    return Sequential(
        [Flatten(name="flatten"), Dense(3, activation="softmax", name="out")],
        input_shape=(2, 2, 1),
        dtype="float64",
        seed=seed,
    )


def tiny_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return np.random.default_rng(seed).standard_normal((n, 2, 2, 1)), one_hot(n, seed, classes=3)


@pytest.mark.parametrize(("n", "batch_size", "steps"), [(50, 16, 4), (48, 16, 3), (5, 16, 1)])
def test_fit_history_lengths(n: int, batch_size: int, steps: int) -> None:
    assert steps == math.ceil(n / batch_size)
    x, y = tiny_data(n, 0)
    history = fit(
        tiny_model(),
        x,
        y,
        optimizer=SGD(0.1),
        batch_size=batch_size,
        epochs=3,
        shuffle=True,
        seed=0,
        heldout=tiny_data(7, 1),
    )
    assert history.steps_per_epoch == steps
    assert len(history.step_loss) == len(history.step_accuracy) == 3 * steps
    assert len(history.epoch_heldout_loss) == len(history.epoch_heldout_accuracy) == 3
    assert len(history.epoch_seconds) == 3
    without = fit(tiny_model(), x, y, optimizer=SGD(0.1), batch_size=batch_size, epochs=2)
    assert without.epoch_heldout_loss == without.epoch_heldout_accuracy == []


def test_fit_same_seed_same_history() -> None:
    x, y = tiny_data(40, 0)

    def run(seed: int) -> dict:
        h = fit(
            tiny_model(),
            x,
            y,
            optimizer=SGD(0.1, momentum=0.9),
            batch_size=8,
            epochs=3,
            shuffle=True,
            seed=seed,
            heldout=tiny_data(10, 1),
        ).as_dict()
        del h["epoch_seconds"]
        return h

    assert run(0) == run(0)
    assert run(0)["step_loss"] != run(1)["step_loss"]  # the seed drives the shuffling


def test_fit_without_shuffle_is_train_step_over_consecutive_batches() -> None:
    x, y = tiny_data(20, 0)
    a, b = tiny_model(), tiny_model()
    history = fit(a, x, y, optimizer=SGD(0.1), batch_size=6, epochs=1, shuffle=False)
    opt = SGD(0.1)
    manual = [b.train_step(x[i : i + 6], y[i : i + 6], opt)[0] for i in range(0, 20, 6)]
    assert history.step_loss == manual
    for key, w in a.get_weights().items():
        np.testing.assert_array_equal(w, b.get_weights()[key])


def test_train_step_returns_the_pre_update_loss() -> None:
    x, y = images(8, 0, "float32"), one_hot(8, 1, "float32")
    model = build_lenet5("keras-docs", "float32", seed=0)
    twin = build_lenet5("keras-docs", "float32", seed=0)
    loss, grads = twin.loss_and_gradients(x, y)
    probs = twin.layers[-1].output
    before = model.get_weights()
    step_loss, step_acc = model.train_step(x, y, SGD(0.5))
    assert step_loss == float(loss)
    assert step_acc == np.mean(probs.argmax(axis=1) == y.argmax(axis=1))
    lr = np.float32(0.5)
    for key, w in model.params.items():
        np.testing.assert_array_equal(w, before[key] - grads[key] * lr, err_msg=key)
    new_loss, _ = model.loss_and_gradients(x, y)
    assert float(new_loss) != step_loss


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two easy classes of 28x28 images: a Gaussian blob near the top-left or bottom-right
    corner, plus noise. Labels are one-hot over LeNet's 10 classes (only 0 and 1 occur)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    centres = np.where(labels[:, None] == 0, 8.0, 19.0) + rng.normal(0, 1.5, (n, 2))
    r, c = np.mgrid[0:28, 0:28]
    d2 = (r - centres[:, 0, None, None]) ** 2 + (c - centres[:, 1, None, None]) ** 2
    x = np.exp(-d2 / 18.0) + rng.normal(0, 0.1, (n, 28, 28))
    return x[..., None].astype("float32"), np.eye(10, dtype="float32")[labels]


@pytest.mark.parametrize("variant", VARIANTS)
def test_fit_decreases_the_loss_on_an_easy_task(variant: str) -> None:
    x, y = blobs(64, 0)
    heldout = blobs(32, 1)
    model = build_lenet5(variant, "float32", seed=0)
    initial_loss, _ = model.evaluate(*heldout)
    history = fit(
        model,
        x,
        y,
        optimizer=SGD(0.05),
        batch_size=16,
        epochs=3,
        shuffle=True,
        seed=0,
        heldout=heldout,
    )
    first, last = history.step_loss[:4], history.step_loss[-4:]
    assert np.mean(last) < 0.5 * np.mean(first), history.step_loss
    assert history.epoch_heldout_loss[-1] < 0.5 * initial_loss
    assert history.epoch_heldout_loss[-1] < history.epoch_heldout_loss[0]
    assert history.epoch_heldout_accuracy[-1] >= 0.9


def test_sampled_gradcheck_covers_large_tensors() -> None:
    idx = sample_indices((400, 120), np.random.default_rng(0), MAX_ENTRIES)
    assert len(idx[0]) == 60 and len(set(zip(*idx, strict=True))) == 60
    assert len(sample_indices((10,), np.random.default_rng(0), MAX_ENTRIES)[0]) == 10
