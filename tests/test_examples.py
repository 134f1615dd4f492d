"""examples/: the cs231n-style NumPy LeNet-5 and its adapter to the implementation protocol.

Two halves:

- Without Keras (fast): the example on its own. Float64 central differences of its loss with
  respect to every parameter and the input, on both loss paths (tanh: no kink; relu: entries
  whose perturbation crosses a relu kink are left out); its layer outputs, loss, gradients and
  dX against the project's scratch model to ~1e-12 in float64; the dtype kept; nothing written
  in place; Keras's SGD rules.
- With Keras (the harness, ``compare.check_parity(..., implementation="examples/adapter.py:
  build")``): the example passes in float32 and float64 with one epoch of training, and each of
  three bugs planted in a copy of it fails, the verdict's first failure naming the layer (or
  training check) where the bug is.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

import scratch
from compare import check_parity

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE = EXAMPLES / "cs231n_lenet5.py"
ADAPTER = EXAMPLES / "adapter.py"
IMPLEMENTATION = f"{ADAPTER}:build"
LAYERS = ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "output"]
PARAMS = ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4", "W5", "b5"]
KERAS_KEYS = [
    f"{layer}/{p}"
    for layer in ["conv1", "conv2", "fc1", "fc2", "output"]
    for p in ("kernel", "bias")
]
VARIANTS = {"keras-docs": ("relu", "valid"), "classic": ("tanh", "same")}  # activation, conv1
LOSS_PATHS = ["logits", "probabilities"]
H = 1e-5  # central-difference step
FD_THRESHOLD = 1e-7


def load(path: Path = EXAMPLE):
    spec = importlib.util.spec_from_file_location(f"example_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


net = load()


def to_example_layout(weights: dict[str, np.ndarray], flat_hwc: tuple[int, int, int]) -> dict:
    """Keras-layout weights (HWIO kernels, fc1 rows in (H, W, C) order) -> W1 ... b5."""
    h, w, c = flat_hwc
    mine = {}
    for i, key in enumerate(KERAS_KEYS):
        value = weights[key]
        if value.ndim == 4:  # HWIO -> OIHW
            value = value.transpose(3, 2, 0, 1)
        elif key == "fc1/kernel":  # rows (H, W, C) -> (C, H, W)
            value = value.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
        mine[PARAMS[i]] = np.ascontiguousarray(value)
    return mine


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1)


def batch(n: int, dtype: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Digits-like inputs in [0, 1), NCHW, and one-hot labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28)).astype(dtype)
    y = np.eye(10, dtype=dtype)[rng.integers(0, 10, n)]
    return x, y


def scratch_and_example(variant: str, loss_path: str, dtype: str = "float64"):
    model = scratch.build_lenet5(variant, dtype, seed=0, loss_path=loss_path)
    params = to_example_layout(model.get_weights(), model.get_layer("pool2").output_shape)
    return model, params, net.lenet5_arch(*VARIANTS[variant])


def close(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-12) -> None:
    """Equal to ``rel`` of the expected array's largest magnitude, shape and dtype alike."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rel * max(scale, 1e-300))


# -- without Keras: the example on its own ---------------------------------------------------
def relu_pattern(params, x, arch) -> list[np.ndarray]:
    """Where every relu's input is positive: the kinks a central difference must not cross."""
    if all(act != "relu" for _, _, act in arch):
        return []
    _, caches = net.forward(params, x, arch)
    return [z > 0 for (_, _, act), (z, _, _) in zip(arch, caches, strict=True) if act == "relu"]


def fd_errors(params, x, y, arch, loss_path, entries: int = 12, seed: int = 0):
    """Norm-wise relative error ||a - n|| / (||a|| + ||n||) per tensor (every parameter and
    ``"X"``) between the analytic gradient and central differences on a sample of entries;
    an entry whose +-H perturbation flips a relu is left out. Also the entries kept."""
    _, grads, dx = net.loss(params, x, y, arch, loss_path)
    analytic = {**grads, "X": dx}
    tensors = {**params, "X": x}
    rng = np.random.default_rng(seed)
    errors, kept = {}, {}
    for name, t in tensors.items():
        flat = rng.choice(t.size, size=min(entries, t.size), replace=False)
        a, n = [], []
        for index in (np.unravel_index(i, t.shape) for i in flat):
            old = t[index]
            values, patterns = [], []
            for step in (H, -H):
                t[index] = old + step
                values.append(net.loss(params, x, y, arch, loss_path)[0])
                patterns.append(relu_pattern(params, x, arch))
            t[index] = old
            if not all(np.array_equal(p, q) for p, q in zip(*patterns, strict=True)):
                continue
            a.append(analytic[name][index])
            n.append((values[0] - values[1]) / (2 * H))
        a, n = np.array(a), np.array(n)
        denom = np.linalg.norm(a) + np.linalg.norm(n)
        errors[name] = 0.0 if denom == 0 else float(np.linalg.norm(a - n) / denom)
        kept[name] = len(a)
    return errors, kept


@pytest.mark.parametrize("loss_path", LOSS_PATHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_finite_differences_of_every_parameter_and_the_input(variant, loss_path) -> None:
    _, params, arch = scratch_and_example(variant, loss_path)
    # biases of 0 would leave the relu kinks where the inputs are 0; move them off
    rng = np.random.default_rng(2)
    params = {
        k: v + 0.05 * rng.standard_normal(v.shape) if k[0] == "b" else v for k, v in params.items()
    }
    x, y = batch(3, "float64")
    errors, kept = fd_errors(params, x, y, arch, loss_path)
    assert sorted(errors) == sorted([*PARAMS, "X"])
    sampled = {k: min(12, v.size) for k, v in {**params, "X": x}.items()}
    assert all(kept[k] >= 0.6 * n for k, n in sampled.items()), kept  # most are off the kinks
    bad = {k: e for k, e in errors.items() if not e < FD_THRESHOLD}
    assert not bad, bad


def test_the_probabilities_path_passes_no_gradient_where_it_clips() -> None:
    probs = np.array([[1e-9, 0.3, 0.7 - 1e-9], [0.2, 0.5, 0.3]])
    y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    loss, dprobs = net.clipped_cross_entropy(probs, y)
    assert loss == pytest.approx(-(np.log(1e-7) + np.log(0.5)) / 2, rel=1e-12)
    numeric = np.zeros_like(probs)
    for index in np.ndindex(probs.shape):
        plus, minus = probs.copy(), probs.copy()
        plus[index] += 1e-10
        minus[index] -= 1e-10
        numeric[index] = (
            net.clipped_cross_entropy(plus, y)[0] - net.clipped_cross_entropy(minus, y)[0]
        ) / 2e-10
    assert dprobs[0, 0] == 0  # clipped: no gradient
    np.testing.assert_allclose(dprobs, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss_path", LOSS_PATHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_layer_outputs_loss_and_gradients_equal_the_scratch_models(variant, loss_path) -> None:
    model, params, arch = scratch_and_example(variant, loss_path)
    x, y = batch(4, "float64")
    outputs = net.predict(params, x, arch)
    assert len(outputs) == len(LAYERS)
    h, w, c = model.get_layer("pool2").output_shape
    for name, mine, ref in zip(LAYERS, outputs, model.layer_outputs(nhwc(x)).values(), strict=True):
        if mine.ndim == 4:
            mine = nhwc(mine)
        elif name == "flatten":  # (C, H, W) order -> Keras's (H, W, C)
            mine = mine.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(len(x), -1)
        close(mine, ref)
    loss, grads, dx = net.loss(params, x, y, arch, loss_path)
    ref_loss, ref_grads, ref_dx = model.loss_and_all_gradients(nhwc(x), y)
    assert loss == pytest.approx(float(ref_loss), rel=1e-13)
    assert sorted(grads) == sorted(PARAMS)
    for key, value in to_example_layout(ref_grads, (h, w, c)).items():
        close(grads[key], value)
    close(dx, nchw(ref_dx))


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_steps_follow_keras_and_the_scratch_optimizer(momentum, nesterov) -> None:
    model, params, arch = scratch_and_example("keras-docs", "logits")
    optimizer = scratch.SGD(0.01, momentum=momentum, nesterov=nesterov)
    h, w, c = model.get_layer("pool2").output_shape
    velocity = {}
    for step in range(3):
        x, y = batch(4, "float64", seed=step)
        loss, grads, _ = net.loss(params, x, y, arch, "logits")
        ref_loss, _ = model.train_step(nhwc(x), y, optimizer)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        params, velocity = net.sgd_step(params, grads, velocity, 0.01, momentum, nesterov)
    for key, value in to_example_layout(model.get_weights(), (h, w, c)).items():
        close(params[key], value)


def test_sgd_step_is_keras_s_rule_and_updates_nothing_in_place() -> None:
    w, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    for a in (w, g):
        a.setflags(write=False)
    lr, mu = 0.1, 0.9
    p1, v1 = net.sgd_step({"w": w}, {"w": g}, {}, lr, mu, nesterov=False)
    np.testing.assert_array_equal(v1["w"], -lr * g)
    np.testing.assert_array_equal(p1["w"], w - lr * g)
    p2, v2 = net.sgd_step(p1, {"w": g}, v1, lr, mu, nesterov=False)
    np.testing.assert_array_equal(v2["w"], mu * v1["w"] - lr * g)
    np.testing.assert_array_equal(p2["w"], p1["w"] + v2["w"])
    p2n, v2n = net.sgd_step(p1, {"w": g}, v1, lr, mu, nesterov=True)
    np.testing.assert_array_equal(p2n["w"], p1["w"] + (mu * v2n["w"] - lr * g))
    plain, none = net.sgd_step({"w": w}, {"w": g}, {}, lr)
    np.testing.assert_array_equal(plain["w"], w - lr * g)
    assert none == {}


@pytest.mark.parametrize("loss_path", LOSS_PATHS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_stays_float32_and_nothing_is_written_in_place(variant, loss_path) -> None:
    _, params, arch = scratch_and_example(variant, loss_path, "float32")
    x, y = batch(3, "float32")
    for a in [x, y, *params.values()]:
        a.setflags(write=False)  # a write into any of them raises
    outputs = net.predict(params, x, arch)
    assert [o.dtype for o in outputs] == [np.float32] * len(LAYERS)
    loss, grads, dx = net.loss(params, x, y, arch, loss_path)
    assert loss.dtype == np.float32
    assert dx.dtype == np.float32
    assert dx.shape == x.shape
    assert {k: (g.dtype, g.shape) for k, g in grads.items()} == {
        k: (np.dtype(np.float32), p.shape) for k, p in params.items()
    }
    # NumPy float64 scalars for the recipe must not promote the weights
    for nesterov in (False, True):
        new, velocity = net.sgd_step(params, grads, {}, np.float64(0.01), np.float64(0.9), nesterov)
        assert {v.dtype for v in [*new.values(), *velocity.values()]} == {np.dtype(np.float32)}


def test_backward_functions_never_write_into_the_upstream_gradient() -> None:
    rng = np.random.default_rng(0)

    def frozen(*shape):
        a = rng.standard_normal(shape)
        a.setflags(write=False)
        return a

    x, w, b = frozen(2, 3, 8, 8), frozen(4, 3, 3, 3), frozen(4)
    out, cache = net.conv_forward(x, w, b, {"stride": 1, "pad": net.same_pad(3, 3)})
    assert out.shape == (2, 4, 8, 8)
    dx, dw, db = net.conv_backward(frozen(*out.shape), cache)
    assert (dx.shape, dw.shape, db.shape) == (x.shape, w.shape, b.shape)
    out, cache = net.avg_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert net.avg_pool_backward(frozen(*out.shape), cache).shape == x.shape
    out, cache = net.flatten_forward(x)
    assert net.flatten_backward(frozen(*out.shape), cache).shape == x.shape
    x2, w2, b2 = frozen(2, 5), frozen(5, 3), frozen(3)
    out, cache = net.affine_forward(x2, w2, b2)
    assert [a.shape for a in net.affine_backward(frozen(2, 3), cache)] == [(2, 5), (5, 3), (3,)]
    for forward, backward in net.ACTIVATIONS.values():
        out, cache = forward(x2)
        assert backward(frozen(*out.shape), cache).shape == x2.shape


def test_odd_sizes_pool_valid_and_pad_same_like_keras() -> None:
    x = np.arange(2 * 1 * 5 * 5, dtype=np.float64).reshape(2, 1, 5, 5)
    out, cache = net.avg_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert out.shape == (2, 1, 2, 2)  # the last row and column are dropped
    assert out[0, 0, 0, 0] == (0 + 1 + 5 + 6) / 4
    dx = net.avg_pool_backward(np.ones_like(out), cache)
    assert dx[:, :, 4].sum() == dx[:, :, :, 4].sum() == 0
    assert dx.sum() == out.size  # each window passes its gradient on whole
    assert net.same_pad(5, 5) == ((2, 2), (2, 2))
    assert net.same_pad(4, 2) == ((1, 2), (0, 1))  # the extra pixel bottom/right


def keras_config(variant: str) -> list[tuple[str, dict]]:
    """What a Keras LeNet-5's get_config() says of the layers ``arch_from_keras`` reads."""
    act, pad = VARIANTS[variant]
    conv = {"kernel_size": [5, 5], "strides": [1, 1], "dilation_rate": [1, 1], "activation": act}
    pool = {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid"}
    return [
        ("Conv2D", {**conv, "filters": 6, "padding": pad}),
        ("AveragePooling2D", pool),
        ("Conv2D", {**conv, "filters": 16, "padding": "valid"}),
        ("AveragePooling2D", pool),
        ("Flatten", {"data_format": "channels_last"}),
        ("Dense", {"units": 120, "activation": act}),
        ("Dense", {"units": 84, "activation": act}),
        ("Dense", {"units": 10, "activation": "softmax"}),
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_network_read_off_keras_configs_is_lenet5(variant) -> None:
    arch = net.arch_from_keras(keras_config(variant))
    assert arch == net.lenet5_arch(*VARIANTS[variant])


@pytest.mark.parametrize(
    ("class_name", "config"),
    [
        ("Conv2D", {"kernel_size": [3, 3], "strides": [2, 2], "padding": "valid"}),
        ("Conv2D", {"kernel_size": [3, 3], "strides": [1, 1], "padding": "causal"}),
        ("AveragePooling2D", {"pool_size": [2, 2], "strides": [1, 1], "padding": "valid"}),
        ("AveragePooling2D", {"pool_size": [2, 2], "strides": [2, 2], "padding": "same"}),
        ("MaxPooling2D", {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid"}),
        ("Dense", {"units": 3, "activation": "gelu"}),
        ("Dense", {"units": 3, "activation": {"class_name": "Custom"}}),
        ("Dense", {"units": 3, "activation": "relu", "use_bias": False}),
    ],
)
def test_what_the_example_cannot_compute_it_refuses(class_name, config) -> None:
    with pytest.raises(NotImplementedError):
        net.arch_from_keras([(class_name, config)])


def test_the_example_imports_nothing_but_numpy() -> None:
    imports = [
        line.split()[1]
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith(("import ", "from "))
    ]
    assert {name.split(".")[0] for name in imports} == {"__future__", "numpy"}


# -- with Keras: through the harness ---------------------------------------------------------
def failures(verdict) -> str:
    """The checks that did not pass, one a line (an assertion's message)."""
    return "\n".join(
        f"{c.kind} {c.name}: {c.status} (step {c.step}) max abs err {c.max_abs_err} {c.problem}"
        for c in verdict.checks
        if c.status != "pass"
    )


@pytest.mark.keras
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_example_passes_the_parity_check_with_training(dtype) -> None:
    verdict = check_parity("keras-docs", dtype, implementation=IMPLEMENTATION, epochs=1)
    assert verdict.passed, failures(verdict)
    assert verdict.first_failure is None
    statuses = {(c.kind, c.name): c.status for c in verdict.checks}
    assert statuses[("forward", "conv1")] == statuses[("forward", "flatten")] == "pass"
    assert statuses[("gradient", "input")] == statuses[("training", "step loss")] == "pass"
    assert "not provided" not in statuses.values()


def plant(tmp_path: Path, original: str, planted: str) -> str:
    """A copy of the example and its adapter in ``tmp_path`` with one exact replacement in the
    example; the ``--implementation`` that names the copy."""
    source = EXAMPLE.read_text()
    assert source.count(original) == 1, original
    (tmp_path / EXAMPLE.name).write_text(source.replace(original, planted))
    shutil.copy(ADAPTER, tmp_path / ADAPTER.name)
    return f"{tmp_path / ADAPTER.name}:build"


# (original, bug, check_parity's keyword arguments, the first failure: kind and name)
BUGS = {
    # Flattening "like Keras" (H, W, C) although the weights come in the declared
    # channels_first layout: fc1's rows no longer meet their pixels.
    "flatten in (H, W, C) order": (
        "    return x.reshape(x.shape[0], -1), x.shape",
        "    return x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1), x.shape",
        {"epochs": 0},
        ("forward", "flatten"),
    ),
    # dW as x_cols @ dout.T: (C*kh*kw, F) read back as (F, C, kh, kw), the right size. conv1
    # is hit too, but conv2's kernel comes first in backward order.
    "conv dW missing a transpose": (
        "    dw = (dout_reshaped @ x_cols.T).reshape(w.shape)",
        "    dw = (x_cols @ dout_reshaped.T).reshape(w.shape)",
        {"epochs": 0},
        ("gradient", "conv2/kernel"),
    ),
    # cs231n's sgd_momentum without `config["velocity"] = v`: every step starts from a zero
    # velocity, i.e. plain SGD. Step 1 is right; the losses drift from step 2 on.
    "momentum velocity not carried over": (
        "        new_velocity[key] = v\n",
        "",
        {"epochs": 1, "momentum": 0.9},
        ("training", "step loss"),
    ),
}


@pytest.mark.keras
@pytest.mark.parametrize("bug", BUGS)
def test_each_planted_bug_fails_where_it_is(tmp_path, bug) -> None:
    original, planted, kwargs, (kind, name) = BUGS[bug]
    implementation = plant(tmp_path, original, planted)
    verdict = check_parity("keras-docs", "float32", implementation=implementation, **kwargs)
    assert not verdict.passed
    first = verdict.first_failure
    assert first is not None
    assert (first.kind, first.name) == (kind, name), failures(verdict)
    if kind == "training":
        assert first.step is not None
        assert first.step > 1  # the first update is still plain SGD, right
