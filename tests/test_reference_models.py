"""Any supported Keras model as the reference: the zoo, .keras files, builders, the one-line
refusals, the harness's copy (dtype, masked dropout, recipe) and what its gradients and steps
do to BatchNormalization's statistics and to regularizers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import on_backend
import pytest

import reference
from compare import check_parity
from compare.errors import InputError, JudgeUnavailable
from compare.inputs.weights import ARCHITECTURE_KEYS
from compare.sides import backends, keras_side, remote

pytestmark = pytest.mark.keras

L = keras.layers
BACKEND = keras_side.backend_module()


@contextlib.contextmanager
def keras_quiet() -> Iterator[None]:
    """Around the tests' own Keras calls (saving a model, reading variables): Keras 3.15's and
    TensorFlow 2.21's variables lack NumPy 2's ``__array__(copy=...)``, so NumPy warns and
    copies exactly; and Keras warns when it serialises a Lambda (the refusal test saves one)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="__array__ implementation doesn't accept a copy keyword",
            category=DeprecationWarning,
        )
        warnings.filterwarnings(
            "ignore",
            message="The object being serialized includes a `lambda`",
            category=UserWarning,
        )
        yield


def spec_of(source: str, dtype: str = "float32") -> Any:
    return keras_side.model_spec(
        source,
        dtype,
        BACKEND,
        learning_rate=0.05,
        momentum=0.0,
        nesterov=False,
        seed=0,
        batch_size=32,
    )


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def rich(model: keras.Model, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights for every variable (moving variances positive), in the model's dtypes."""
    rng = np.random.default_rng(seed)
    weights = {}
    for key, value in reference.get_weights(model).items():
        draw = rng.normal(0, 0.3, value.shape)
        if key.endswith("moving_variance"):
            draw = rng.uniform(0.5, 2.0, value.shape)
        weights[key] = draw.astype(value.dtype)
    return weights


# -- the zoo -----------------------------------------------------------------------------------
ZOO_LAYERS = {
    "keras-docs": ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "output"],
    "classic": ["conv1", "pool1", "conv2", "pool2", "flatten", "fc1", "fc2", "output"],
    "seed000-cnn": ["conv1", "pool1", "flatten", "output"],
    "cs231n-3layer": ["conv1", "pool1", "flatten", "fc1", "output"],
    "lenet5-bn-dropout": [
        "conv1",
        "bn1",
        "relu1",
        "pool1",
        "conv2",
        "bn2",
        "relu2",
        "pool2",
        "flatten",
        "fc1",
        "fc2",
        "dropout",
        "output",
    ],
}


def test_the_zoo_is_the_documented_list() -> None:
    assert list(reference.ZOO) == list(ZOO_LAYERS)
    assert set(keras_side.zoo()) == set(ZOO_LAYERS)
    assert all(keras_side.is_zoo(name) for name in ZOO_LAYERS)
    assert not keras_side.is_zoo("model.keras")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(ZOO_LAYERS))
def test_each_zoo_model_builds_in_its_dtype_with_its_layers(name: str, dtype: str) -> None:
    model = reference.load_model(name, dtype)
    assert [la.name for la in model.layers] == ZOO_LAYERS[name]
    assert all(la.dtype_policy.name == dtype for la in model.layers)
    assert model.inputs[0].dtype == dtype and tuple(model.inputs[0].shape[1:]) == (28, 28, 1)
    assert tuple(model.outputs[0].shape[1:]) == (10,)
    assert {v.dtype for v in model.weights} == {dtype}
    assert not model.compiled
    assert keras.config.floatx() == "float32"


def test_the_zoo_models_have_the_documented_settings_and_recipes() -> None:
    spec = {name: spec_of(name) for name in ZOO_LAYERS}
    recipes = {name: keras_side.recipe(name) for name in ZOO_LAYERS}
    for name in ("keras-docs", "classic", "lenet5-bn-dropout"):
        assert recipes[name] == keras_side.Recipe(
            0.05, 0.0, False, 256, "unit", "categorical_crossentropy"
        )
    # the NumPy tutorial's CNN: 8 unbiased 3x3 filters of stddev 1/9, a 1352-input softmax
    seed = spec["seed000-cnn"]
    conv, pool, out = seed.layer("conv1"), seed.layer("pool1"), seed.layer("output")
    assert (conv.output_shape, conv.weights, conv.activation) == (
        (26, 26, 8),
        {"kernel": (3, 3, 1, 8)},
        "linear",
    )
    assert conv.config["kernel_initializer"]["class_name"] == "RandomNormal"
    assert conv.config["kernel_initializer"]["config"]["stddev"] == 1 / 9
    assert pool.class_name == "MaxPooling2D" and pool.output_shape == (13, 13, 8)
    assert out.weights == {"kernel": (1352, 10), "bias": (10,)}
    assert out.config["kernel_initializer"]["config"]["stddev"] == 1 / 1352
    assert out.config["bias_initializer"]["class_name"] == "Zeros"
    assert recipes["seed000-cnn"] == keras_side.Recipe(
        0.005, 0.0, False, 1, "centered", "categorical_crossentropy"
    )
    # cs231n's ThreeLayerConvNet: every kernel RandomNormal(1e-3) with L2(0.1 / 2)
    cs = spec["cs231n-3layer"]
    assert cs.layer("conv1").config["padding"] == "same"
    assert cs.layer("conv1").output_shape == (28, 28, 32)
    assert cs.layer("fc1").weights == {"kernel": (14 * 14 * 32, 100), "bias": (100,)}
    for layer in ("conv1", "fc1", "output"):
        config = cs.layer(layer).config
        assert config["kernel_initializer"]["config"]["stddev"] == 1e-3
        # the spec carries the factor as the backend applies it (float32 on TensorFlow)
        assert config["kernel_regularizer"] == {
            "module": "keras.regularizers",
            "class_name": "L2",
            "config": {"l2": BACKEND.effective_regularization_factor(0.05)},
            "registered_name": None,
        }
        assert config["bias_regularizer"] is None
    assert recipes["cs231n-3layer"] == keras_side.Recipe(
        0.01, 0.0, False, 100, "unit", "categorical_crossentropy"
    )
    # LeNet-5 with batch norm and dropout: the moving statistics are weights too
    bn = spec["lenet5-bn-dropout"]
    assert bn.layer("conv1").activation == "linear"
    assert bn.layer("bn1").weights == {
        "gamma": (6,),
        "beta": (6,),
        "moving_mean": (6,),
        "moving_variance": (6,),
    }
    assert bn.layer("bn1").config["momentum"] == 0.99
    assert bn.layer("bn1").config["epsilon"] == 1e-3
    assert bn.layer("relu1").activation == "relu"
    assert bn.layer("dropout").class_name == "Dropout"
    assert bn.layer("dropout").config["rate"] == 0.5
    assert keras_side.model_weights("lenet5-bn-dropout", "float32") is None


def test_layer_configs_carry_every_option_get_config_has() -> None:
    """No option of a supported layer is dropped silently: every key of Keras's get_config()
    (but name, trainable and dtype) is in the spec's config or is one the reference checks to
    be at Keras's default; and the values agree. ARCHITECTURE_KEYS (compare.inputs.weights)
    are all read."""
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            L.Conv2D(4, 3, kernel_regularizer="l2", name="conv"),
            L.BatchNormalization(name="bn"),
            L.ReLU(name="relu"),
            L.Activation("tanh", name="act"),
            L.AveragePooling2D(2, name="avg"),
            L.MaxPooling2D(2, padding="same", name="max"),
            L.Flatten(name="flat"),
            L.Dropout(0.2, seed=3, name="drop"),
            L.Dense(5, name="dense", bias_regularizer=keras.regularizers.L1(0.5)),
            L.Softmax(name="softmax"),
        ]
    )
    checked = {"activity_regularizer", "kernel_constraint", "bias_constraint", "lora_rank"}
    checked |= {"quantization_config", "beta_regularizer", "gamma_regularizer"}
    checked |= {"beta_constraint", "gamma_constraint", "synchronized", "renorm"}
    checked |= {"renorm_clipping", "renorm_momentum"}  # only used with renorm=True
    for layer in model.layers:
        ours = keras_side.layer_config(layer)
        theirs = json.loads(json.dumps(layer.get_config()))
        missing = set(theirs) - set(ours) - {"trainable", "dtype"} - checked
        assert not missing, (layer.name, missing)
        assert {k: theirs[k] for k in ours} == ours, layer.name
        assert not (set(ARCHITECTURE_KEYS) & set(theirs)) - set(ours), layer.name


# -- .keras files -------------------------------------------------------------------------------
def sink(dtype: str = "float32") -> keras.Sequential:
    """A model with the options the LeNets do not use."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), dtype=dtype),
            L.Conv2D(
                4,
                3,
                strides=2,
                padding="same",
                use_bias=False,
                kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                kernel_initializer="he_normal",
                name="conv1",
                dtype=dtype,
            ),
            L.BatchNormalization(name="bn1", momentum=0.9, epsilon=1e-5, dtype=dtype),
            L.ReLU(name="relu1", dtype=dtype),
            L.Conv2D(5, 3, dilation_rate=2, activation="sigmoid", name="conv2", dtype=dtype),
            L.MaxPooling2D(2, strides=1, padding="same", name="pool1", dtype=dtype),
            L.Flatten(name="flatten", dtype=dtype),
            L.Dropout(0.3, name="dropout", dtype=dtype),
            L.Dense(10, activation="softmax", name="output", dtype=dtype),
        ],
        name="sink",
    )


@pytest.fixture(scope="module")
def sink_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, keras.Model]:
    model = sink()
    reference.set_weights(model, rich(model))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    path = tmp_path_factory.mktemp("keras") / "sink.keras"
    with keras_quiet():
        model.save(path)
    return path, model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_keras_file_round_trips_through_load_model_and_model_spec(
    sink_file: tuple[Path, keras.Model], dtype: str
) -> None:
    path, original = sink_file
    source = str(path)
    loaded = reference.load_model(source, dtype)
    assert [la.name for la in loaded.layers] == [la.name for la in original.layers]
    assert {v.dtype for v in loaded.weights} == {dtype}
    want = {k: v.astype(dtype) for k, v in reference.get_weights(original).items()}
    own = keras_side.model_weights(source, dtype)
    assert own is not None and list(own) == list(want)
    assert all(np.array_equal(own[k], want[k]) and own[k].dtype == dtype for k in want)
    spec = spec_of(source, dtype)
    assert spec.name == source and spec.input_shape == (28, 28, 1) and spec.num_classes == 10
    assert spec.weight_shapes()["bn1/moving_variance"] == (4,)
    assert "conv1/bias" not in spec.weight_shapes()
    conv1, conv2 = spec.layer("conv1").config, spec.layer("conv2").config
    assert (conv1["strides"], conv1["padding"], conv1["use_bias"]) == ([2, 2], "same", False)
    # the spec carries the factors as the backend applies them (float32 on TensorFlow)
    assert conv1["kernel_regularizer"]["config"] == {
        "l1": BACKEND.effective_regularization_factor(0.01),
        "l2": BACKEND.effective_regularization_factor(0.02),
    }
    assert conv2["dilation_rate"] == [2, 2] and conv2["activation"] == "sigmoid"
    assert spec.layer("bn1").config["momentum"] == 0.9
    assert spec.layer("pool1").config == {
        "name": "pool1",
        "pool_size": [2, 2],
        "padding": "same",
        "strides": [1, 1],
        "data_format": "channels_last",
    }
    assert spec.layer("dropout").config["rate"] == 0.3
    # the file's compile config is the recipe, its learning rate as Keras stored it
    assert keras_side.recipe(source) == keras_side.Recipe(
        float(np.float32(0.01)), 0.9, True, None, "unit", "categorical_crossentropy"
    )


def test_the_harness_copy_computes_what_the_original_does(
    sink_file: tuple[Path, keras.Model],
) -> None:
    """Rebuilt from the layers' settings, the float32 copy gives the original's outputs
    exactly; the Dropout is a MaskedDropout of the same rate (identity at inference)."""
    path, original = sink_file
    copy = reference.harness_model(reference.load_model(str(path), "float32"), "float32")
    assert isinstance(copy.get_layer("dropout"), reference.MaskedDropout)
    assert copy.get_layer("dropout").rate == 0.3
    assert list(reference.get_weights(copy)) == list(reference.get_weights(original))
    x = np.random.default_rng(1).random((6, 28, 28, 1)).astype("float32")
    ours = reference.layer_outputs(copy, x)
    theirs = reference.layer_outputs(original, x)
    assert all(np.array_equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(
            lambda p: p.write_bytes(b"not a zip"), "not a readable .keras archive", id="garbage"
        ),
        pytest.param(
            lambda p: zipfile.ZipFile(p, "w").writestr("x.txt", "x"),
            "no config.json",
            id="no-config",
        ),
        pytest.param(None, "does not exist", id="missing"),
    ],
)
def test_an_unreadable_keras_file_is_one_line(
    tmp_path: Path, make: Callable[[Path], object] | None, needle: str
) -> None:
    path = tmp_path / "bad.keras"
    if make is not None:
        make(path)
    with pytest.raises(InputError) as exc:
        spec_of(str(path))
    assert needle in one_line(exc) and str(path) in str(exc.value)


def test_a_truncated_keras_file_is_one_line(
    sink_file: tuple[Path, keras.Model], tmp_path: Path
) -> None:
    data = sink_file[0].read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        spec_of(str(path))
    assert "not a readable .keras archive" in one_line(exc)


# -- builders -----------------------------------------------------------------------------------
BUILDER = """
import keras

def build():
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(3, 5, strides=2, name="conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ])
    model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5), loss="{loss}")
    return model

def plain():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten(name="flat")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="out")(x))
"""


def test_a_builder_in_a_file_and_in_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "zoo_builder.py").write_text(BUILDER.format(loss="categorical_crossentropy"))
    source = f"{tmp_path / 'zoo_builder.py'}:build"
    spec = spec_of(source, "float64")
    assert [la.name for la in spec.layers] == ["conv", "flat", "out"]
    assert spec.layer("conv").output_shape == (12, 12, 3)
    assert keras_side.recipe(source) == keras_side.Recipe(
        float(np.float32(0.02)), 0.5, False, None, "unit", "categorical_crossentropy"
    )
    weights = keras_side.model_weights(source, "float64")
    assert weights is not None and {v.dtype for v in weights.values()} == {np.dtype("float64")}
    # the builder was called once: its (random) weights are the same ones every time
    again = keras_side.model_weights(source, "float32")
    assert again is not None
    assert all(np.array_equal(again[k], weights[k].astype("float32")) for k in weights)
    # MODULE:BUILDER from the current folder, a functional chain, uncompiled: no recipe
    monkeypatch.chdir(tmp_path)
    assert [la.name for la in spec_of("zoo_builder:plain").layers] == ["flat", "out"]
    assert keras_side.recipe("zoo_builder:plain") is None


def test_a_builder_that_fails_or_returns_no_model(tmp_path: Path) -> None:
    (tmp_path / "bad_builder.py").write_text(
        "def boom():\n    raise RuntimeError('no')\n\ndef nothing():\n    return 3\n"
    )
    from compare.errors import ImplementationError

    with pytest.raises(ImplementationError):
        spec_of(f"{tmp_path / 'bad_builder.py'}:boom")
    with pytest.raises(InputError) as exc:
        spec_of(f"{tmp_path / 'bad_builder.py'}:nothing")
    assert "returned a int; expected a Keras model" in one_line(exc)
    with pytest.raises(InputError) as exc:
        spec_of(f"{tmp_path / 'bad_builder.py'}:absent")
    assert "has no 'absent'" in one_line(exc)
    with pytest.raises(InputError) as exc:
        spec_of("lenet7")
    assert "unknown model 'lenet7'" in one_line(exc) and "keras-docs" in str(exc.value)


# -- refusals -----------------------------------------------------------------------------------
def _model(*layers: Any, shape: tuple[int, ...] = (28, 28, 1)) -> keras.Sequential:
    return keras.Sequential([keras.Input(shape), *layers, L.Flatten(), L.Dense(10, "softmax")])


REFUSED = [
    pytest.param(
        lambda: _model(L.Conv1D(2, 3, name="c"), shape=(28, 28)),
        "layer 'c': Conv1D is not supported; supported layers: Conv2D",
        id="conv1d",
    ),
    pytest.param(
        lambda: _model(L.Conv2D(2, 3, activation="elu", name="c")),
        "layer 'c': activation='elu' is not supported; supported: relu, tanh, sigmoid",
        id="activation",
    ),
    pytest.param(
        lambda: _model(L.Conv2D(2, 3, data_format="channels_first", name="c"), shape=(3, 28, 28)),
        "layer 'c': data_format='channels_first' is not supported; supported: channels_last",
        id="data-format",
    ),
    pytest.param(
        lambda: _model(L.Conv2D(2, 3, kernel_constraint="non_neg", name="c")),
        "layer 'c': kernel_constraint='NonNeg' is not supported; supported: None",
        id="constraint",
    ),
    pytest.param(
        lambda: _model(L.Conv2D(2, 3, kernel_initializer="orthogonal", name="c")),
        "layer 'c': kernel_initializer='Orthogonal' is not supported",
        id="initializer",
    ),
    pytest.param(
        lambda: _model(L.Conv2D(2, 3, activity_regularizer="l2", name="c")),
        "layer 'c': activity_regularizer='L2' is not supported; supported: None",
        id="activity-regularizer",
    ),
    pytest.param(
        lambda: _model(L.ReLU(max_value=6.0, name="r")),
        "layer 'r': max_value=6.0 is not supported; supported: None (ReLU's defaults only)",
        id="relu6",
    ),
    pytest.param(
        lambda: _model(L.Dropout(0.5, noise_shape=(None, 1, 1, 1), name="d")),
        "layer 'd': noise_shape=(None, 1, 1, 1) is not supported; supported: None",
        id="noise-shape",
    ),
    pytest.param(
        lambda: _model(L.BatchNormalization(axis=1, name="b")),
        "layer 'b': axis=1 is not supported; supported: -1 (the last axis)",
        id="bn-axis",
    ),
    pytest.param(
        lambda: _model(L.LayerNormalization(name="n")),
        "layer 'n': LayerNormalization is not supported",
        id="layer-norm",
    ),
    pytest.param(
        lambda: keras.Sequential([keras.Input((4,)), L.Dense(10, name="logits")]),
        "layer 'logits': Dense with activation='linear' as the last layer is not supported",
        id="no-softmax",
    ),
]


@pytest.mark.parametrize(("make", "needle"), REFUSED)
def test_an_unsupported_layer_or_option_is_one_line_naming_it(
    make: Callable[[], keras.Model], needle: str
) -> None:
    with pytest.raises(reference.ModelSourceError) as exc:
        reference.convert(make(), "float32")
    assert needle in one_line(exc)


def test_unsupported_models_through_the_harness_are_input_errors(tmp_path: Path) -> None:
    """A file with an LSTM or a Lambda is refused from its config.json (before Keras would
    build it, or refuse the Lambda in a multi-line error); a model that is not a chain, or a
    layer called with training=True, names the layer."""
    for name, layer in (
        ("lstm", L.LSTM(4, name="lstm")),
        ("lam", L.Lambda(lambda t: t, name="lam")),
    ):
        model = keras.Sequential(
            [keras.Input((28, 28)), layer, L.Flatten(), L.Dense(10, activation="softmax")]
        )
        path = tmp_path / f"{name}.keras"
        with keras_quiet():
            model.save(path)
        with pytest.raises(InputError) as exc:
            spec_of(str(path))
        assert f"layer '{name}': {type(layer).__name__} is not supported" in one_line(exc)
    inputs = keras.Input((28, 28, 1))
    x = L.Flatten(name="flat")(inputs)
    x = L.Dropout(0.5, name="drop")(x, training=True)
    forced = keras.Model(inputs, L.Dense(10, activation="softmax", name="out")(x))
    with pytest.raises(reference.ModelSourceError) as err:
        reference.convert(forced, "float32")
    assert "layer 'drop': is called with {'training': True}" in one_line(err)

    class Mine(keras.Model):  # type: ignore[misc]
        def call(self, x: Any) -> Any:
            return x

    with pytest.raises(reference.ModelSourceError) as err:
        reference.convert(Mine(), "float32")
    assert "model class Mine is not supported" in one_line(err)


def _compiled(**options: Any) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), L.Dense(10, activation="softmax")])
    optimizer = options.pop("optimizer", None) or keras.optimizers.SGD(
        0.1, **options.pop("sgd", {})
    )
    model.compile(optimizer=optimizer, loss=options.pop("loss", "categorical_crossentropy"))
    return model


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(
            lambda: _compiled(sgd={"clipnorm": 1.0}),
            "optimizer SGD clipnorm=1.0 is not supported",
            id="clipnorm",
        ),
        pytest.param(
            lambda: _compiled(sgd={"weight_decay": 1e-4}),
            "optimizer SGD weight_decay=0.0001 is not supported",
            id="weight-decay",
        ),
        pytest.param(
            lambda: _compiled(optimizer=keras.optimizers.Adam()),
            "optimizer Adam is not supported; supported: SGD",
            id="adam",
        ),
        pytest.param(
            lambda: _compiled(
                optimizer=keras.optimizers.SGD(
                    keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
                )
            ),
            "learning_rate=ExponentialDecay (a schedule) is not supported",
            id="schedule",
        ),
        pytest.param(
            lambda: _compiled(loss=keras.losses.CategoricalCrossentropy(from_logits=True)),
            "loss CategoricalCrossentropy from_logits=True is not supported",
            id="logits",
        ),
        pytest.param(
            lambda: _compiled(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1)),
            "loss CategoricalCrossentropy label_smoothing=0.1 is not supported",
            id="smoothing",
        ),
        pytest.param(lambda: _compiled(loss="mse"), "loss mse is not supported", id="mse"),
    ],
)
def test_an_unsupported_recipe_is_named(make: Callable[[], keras.Model], needle: str) -> None:
    with pytest.raises(reference.ModelSourceError) as exc:
        reference.recipe_of(make())
    assert needle in one_line(exc)


def test_recipes_of_compiled_models_and_of_compile_configs() -> None:
    model = _compiled(sgd={"momentum": 0.9}, loss=keras.losses.SparseCategoricalCrossentropy())
    recipe = reference.recipe_of(model)
    assert recipe == reference.Recipe(
        float(np.float32(0.1)), 0.9, False, loss="sparse_categorical_crossentropy"
    )
    assert reference.recipe_of(keras.Sequential([keras.Input((4,)), L.Dense(2)])) is None
    assert reference.recipe_of({}) is None
    config = {
        "optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.5, "clipvalue": 2.0}},
        "loss": "categorical_crossentropy",
    }
    with pytest.raises(reference.ModelSourceError, match=r"clipvalue=2\.0 is not supported"):
        reference.recipe_of(config)
    config["optimizer"]["config"] = {"learning_rate": 0.5, "nesterov": True}  # type: ignore[index]
    config["loss"] = {"class_name": "function", "config": "categorical_crossentropy"}
    assert reference.recipe_of(config) == reference.Recipe(0.5, 0.0, True)


# -- the harness's copy: gradients, steps, masks --------------------------------------------------
# Keras computes a float64 BatchNormalization in float32 on JAX and torch (and the compiled
# step's float32 rounding differs from the eager gradients'): float32-sized there.
BN_IN_FLOAT32 = "BatchNormalization" in BACKEND.FLOAT64_LAYERS_COMPUTED_IN_FLOAT32
BN_RTOL = 1e-5 if BN_IN_FLOAT32 else 1e-10


def test_the_layers_that_compute_float64_in_float32_are_the_declared_ones() -> None:
    """BatchNormalization in a float64 model: float64 throughout on TensorFlow, float32 inside
    on JAX and torch (``backend.FLOAT64_LAYERS_COMPUTED_IN_FLOAT32``), its output cast back."""
    x = np.random.default_rng(8).normal(3, 10, (4, 6, 6, 3))
    layer = L.BatchNormalization(epsilon=1e-3, dtype="float64")
    ours = reference.model.to_numpy(layer(x, training=True))
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    exact = (x - mean) / np.sqrt(var + 1e-3)
    error = np.abs(ours - exact).max() / np.abs(exact).max()
    assert ours.dtype == np.float64
    assert bool(error > 1e-9) is BN_IN_FLOAT32, error
    assert set(BACKEND.FLOAT64_LAYERS_COMPUTED_IN_FLOAT32) <= set(reference.loading.SUPPORTED)


def test_gradients_leave_the_moving_statistics_and_train_step_updates_them() -> None:
    model = reference.harness_model(reference.load_model("lenet5-bn-dropout", "float64"), "float64")
    weights = rich(model)
    reference.set_weights(model, weights)
    rng = np.random.default_rng(2)
    x, y = rng.random((8, 28, 28, 1)), np.eye(10)[rng.integers(0, 10, 8)]
    masks = {"dropout": rng.random((8, 84)) >= 0.5}
    reference.set_dropout_masks(model, masks)
    loss, grads, dx = reference.backend().gradients(model, x, y)
    after = reference.get_weights(model)
    assert all(np.array_equal(after[k], weights[k]) for k in weights)
    assert set(grads) == {k for k in weights if "moving" not in k}
    assert dx.shape == x.shape
    # Keras's step updates the moving statistics from the batch: moving = m·μ + batch·(1 − μ)
    inputs = reference.layer_outputs(model, x)["conv1"]  # bn1's input (conv1 precedes it)
    step_loss, _ = reference.train_step(model, x, y)
    np.testing.assert_allclose(step_loss, float(loss), rtol=BN_RTOL)
    mean = weights["bn1/moving_mean"] * 0.99 + inputs.mean(axis=(0, 1, 2)) * 0.01
    np.testing.assert_allclose(reference.get_weights(model)["bn1/moving_mean"], mean, rtol=BN_RTOL)


def test_gradients_include_the_regularizers() -> None:
    """loss and gradients differ from the unregularized model's by exactly L2's and L1's
    penalty and its gradient (JAX: the penalty is differentiated through the stateless call)."""

    def build(regularized: bool) -> keras.Sequential:
        kernel = keras.regularizers.L2(0.05) if regularized else None
        bias = keras.regularizers.L1(0.25) if regularized else None
        return keras.Sequential(
            [
                keras.Input((3, 3, 1), dtype="float64"),
                L.Flatten(dtype="float64", name="flat"),
                L.Dense(
                    10,
                    activation="softmax",
                    kernel_regularizer=kernel,
                    bias_regularizer=bias,
                    name="out",
                    dtype="float64",
                ),
            ]
        )

    models = [reference.harness_model(build(r), "float64") for r in (True, False)]
    weights = rich(models[0], seed=4)
    rng = np.random.default_rng(3)
    x, y = rng.random((5, 3, 3, 1)), np.eye(10)[rng.integers(0, 10, 5)]
    results = []
    for model in models:
        reference.set_weights(model, weights)
        results.append(reference.backend().gradients(model, x, y))
    (loss_r, grads_r, _), (loss_p, grads_p, _) = results
    kernel, bias = weights["out/kernel"], weights["out/bias"]
    # TensorFlow casts L2's Python float to float32 before float64 (backend_tensorflow.py)
    l2 = reference.backend().effective_regularization_factor(0.05)
    assert l2 == (float(np.float32(0.05)) if on_backend.NAME == "tensorflow" else 0.05)
    penalty = l2 * np.sum(kernel**2) + 0.25 * np.sum(np.abs(bias))
    # torch multiplies float64 Dense matmuls in float32 (tests/on_backend.py)
    tol = 1e-12 if on_backend.EXACT_FLOAT64 else 1e-6
    np.testing.assert_allclose(float(loss_r) - float(loss_p), penalty, rtol=tol)
    np.testing.assert_allclose(
        grads_r["out/kernel"] - grads_p["out/kernel"], 2 * l2 * kernel, atol=tol
    )
    np.testing.assert_allclose(
        grads_r["out/bias"] - grads_p["out/bias"], 0.25 * np.sign(bias), atol=tol
    )


def _keras_dropout(rate: float, seed: int | None, x: np.ndarray, base: int) -> np.ndarray:
    """keras.layers.Dropout's training output on ``x``, its random state set from ``base``
    (a seeded layer's SeedGenerator, or an unseeded one's default seed from Python's random and
    torch's global generator), so that the same ``base`` gives the same mask."""
    random.seed(base)
    if on_backend.NAME == "torch":
        import torch

        torch.manual_seed(base)
    layer = L.Dropout(rate, seed=seed, dtype=str(x.dtype))
    return reference.model.to_numpy(layer(x, training=True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("seed", [7, None])
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_masked_dropout_equals_keras_dropout(rate: float, seed: int | None, dtype: str) -> None:
    x = np.random.default_rng(5).normal(0, 3, (6, 5, 4)).astype(dtype)
    pattern = _keras_dropout(rate, seed, np.ones_like(x), base=11) != 0  # Keras's mask
    assert 0 < pattern.mean() < 1
    theirs = _keras_dropout(rate, seed, x, base=11)
    model = keras.Sequential(
        [
            keras.Input((5, 4), dtype=dtype),
            reference.MaskedDropout(rate, seed=seed, name="d", dtype=dtype),
        ]
    )
    reference.set_dropout_masks(model, {"d": pattern})
    ours = reference.model.to_numpy(model(x, training=True))
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(reference.model.to_numpy(model(x, training=False)), x)


def test_masks_follow_the_batch_size_in_compiled_steps() -> None:
    """A partial batch uses the first rows of the mask variable, a larger one grows it: the
    compiled step's loss is the eager gradients' loss for the same masks each time."""
    model = reference.harness_model(reference.load_model("lenet5-bn-dropout", "float64"), "float64")
    reference.set_weights(model, rich(model, seed=6))
    rng = np.random.default_rng(7)
    for n in (8, 5, 12):
        x, y = rng.random((n, 28, 28, 1)), np.eye(10)[rng.integers(0, 10, n)]
        reference.set_dropout_masks(model, {"dropout": rng.random((n, 84)) >= 0.5}, batch_size=n)
        loss, _, _ = reference.backend().gradients(model, x, y)
        step_loss, _ = reference.train_step(model, x, y)
        np.testing.assert_allclose(step_loss, float(loss), rtol=BN_RTOL)
    assert model.get_layer("dropout").capacity == 12
    assert "dropout/keep" not in reference.get_weights(model)


def test_wrong_masks_are_refused_before_anything_is_assigned() -> None:
    model = reference.harness_model(reference.load_model("lenet5-bn-dropout", "float32"), "float32")
    ok = np.ones((4, 84), bool)
    with pytest.raises(ValueError, match="A keep mask is needed for the dropout layers"):
        reference.set_dropout_masks(model, {})
    with pytest.raises(ValueError, match="No dropout layer named"):
        reference.set_dropout_masks(model, {"dropout": ok, "fc2": ok})
    with pytest.raises(ValueError, match=r"must have shape \(batch, \*\(84,\)\)"):
        reference.set_dropout_masks(model, {"dropout": np.ones((4, 83))})
    with pytest.raises(ValueError, match="only 0 and 1"):
        reference.set_dropout_masks(model, {"dropout": np.full((4, 84), 0.5)})
    with pytest.raises(ValueError, match="cover the batch of 5 samples"):
        reference.set_dropout_masks(model, {"dropout": ok}, batch_size=5)
    weights = rich(model)
    theirs = keras_side.KerasReference("lenet5-bn-dropout", "float32", BACKEND, weights)
    x, y = np.zeros((4, 28, 28, 1), "float32"), np.eye(10, dtype="float32")[:4]
    with pytest.raises(ValueError, match=r"The model has Dropout \(dropout\)"):
        theirs.loss_and_gradients(x, y)
    loss, grads, _ = theirs.loss_and_gradients(x, y, dropout_masks={"dropout": ok})
    assert np.isfinite(loss) and "bn1/gamma" in grads


def test_keras_side_is_importable_without_keras_and_its_recipe_is_the_reference_s() -> None:
    code = "import sys, compare.sides.keras_side; print('keras' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    fields = [f.name for f in dataclasses.fields(keras_side.Recipe)]
    assert fields == [f.name for f in dataclasses.fields(reference.Recipe)]


@pytest.mark.keras
def test_the_help_lists_the_zoo() -> None:
    """`--help` lists the zoo without importing Keras (compare/cli.py's MODELS): the same
    names, in the same order, as reference/zoo.py."""
    from compare import cli
    from compare.sides import keras_side

    assert list(cli.MODELS) == list(keras_side.zoo())


# -- where the float64 judge can run -----------------------------------------------------------
FLOAT32_INSIDE = {
    # what each backend computes in float32 even in a float64 model, per zoo model
    "tensorflow": {},
    "jax": {"classic": ["tanh"], "lenet5-bn-dropout": ["BatchNormalization"]},
    "torch": {
        "keras-docs": ["matmul (Dense)"],
        "classic": ["matmul (Dense)"],
        "seed000-cnn": ["matmul (Dense)"],
        "cs231n-3layer": ["matmul (Dense)"],
        "lenet5-bn-dropout": ["matmul (Dense)", "BatchNormalization"],
    },
}


@pytest.mark.parametrize("model", list(keras_side.zoo()))
def test_a_float32_check_is_judged_on_tensorflow_where_its_float64_is_not_float64(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where this backend computes part of a float64 model in float32, a float32 check's judge
    runs in a TensorFlow worker; without TensorFlow installed it is refused, one line, before
    any work."""
    spec = spec_of(model)
    inside = keras_side.float32_inside(BACKEND, spec)
    assert inside == FLOAT32_INSIDE[on_backend.NAME].get(model, [])
    expected = "tensorflow" if inside else None
    assert remote.judge_backend(BACKEND, spec) == expected
    if not inside:
        return
    installed = backends.is_installed
    monkeypatch.setattr(backends, "is_installed", lambda n: n != "tensorflow" and installed(n))
    message = f"float64 judge of {model} in float32 on {on_backend.NAME} runs on tensorflow"
    with pytest.raises(JudgeUnavailable, match=message):
        check_parity(model=model, dtype="float32", epochs=0, judge="float64")
