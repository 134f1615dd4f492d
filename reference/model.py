"""Backend-agnostic Keras code shared by every reference model: the LeNet-5s, the harness's
compile recipe, weights as named arrays, layer outputs and training steps.

Weights are keyed ``"<layer>/<param>"`` (``"conv1/kernel"``, ``"bn1/moving_mean"``) in Keras's
own layouts, so nothing is transposed on the way in or out. The LeNet-5s' layer names are the
project's contract: ``conv1, pool1, conv2, pool2, flatten, fc1, fc2, output``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping

import keras
import numpy as np

from reference.dropout import MaskedDropout

INPUT_SHAPE = (28, 28, 1)  # MNIST, NHWC without the batch axis
NUM_CLASSES = 10
DTYPES = ("float32", "float64")
LEARNING_RATE = 0.05  # the Keras docs recipe: SGD(0.05), categorical cross-entropy, accuracy

# variant -> (hidden activation, conv1 padding); the same table as scratch.lenet.VARIANTS,
# which a test holds equal.
VARIANTS: dict[str, tuple[str, str]] = {
    "keras-docs": ("relu", "valid"),
    "classic": ("tanh", "same"),
}


def seed_host(seed: int) -> None:
    """Seed Python's and NumPy's global generators: what ``keras.utils.set_random_seed`` does on
    JAX and torch less seeding TensorFlow, which it imports whenever TensorFlow is installed
    (keras/src/utils/rng_utils.py: ``if tf.available``), costing a JAX or torch process 3.7 s
    (measured on this project's 2-core machine) and TensorFlow's C++ start-up log. Keras's
    global ``SeedGenerator`` seeds itself from Python's ``random`` when it is first made. No
    random number Keras draws reaches a comparison: the shared weights replace the initial
    ones, and the harness's models apply given dropout masks (:mod:`reference.dropout`)."""
    random.seed(seed)
    # the legacy global generator, which set_random_seed seeds too
    np.random.seed(seed)  # noqa: NPY002


@contextlib.contextmanager
def floatx(dtype: str) -> Iterator[None]:
    """Keras's floatx set to ``dtype`` while a model is built and compiled (the loss and the
    metrics take their dtype from it), then restored. The layers get ``dtype`` explicitly:
    Keras caches its global dtype policy from floatx the first time a layer is made
    (keras/src/dtype_policies/dtype_policy.py::dtype_policy), so floatx alone does not reach
    layers made after that. The policy is cached here first, from the floatx outside the
    scope, so that a model made inside a float64 scope does not leave float64 as the default
    policy of every layer made later without a dtype (a user's builder, say)."""
    keras.config.dtype_policy()
    previous = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(previous)


def build_lenet5(
    variant: str = "keras-docs",
    dtype: str = "float32",
    *,
    learning_rate: float = LEARNING_RATE,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> keras.Sequential:
    """The Keras LeNet-5 in ``dtype`` (float64 through Keras's floatx), compiled with SGD,
    categorical cross-entropy and accuracy (:func:`compile_model`). Its weights are Keras's
    fresh initialisation: load the shared weights with :func:`set_weights` before comparing."""
    model = lenet5(variant, dtype)
    compile_model(model, dtype, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov)
    return model


def lenet5(variant: str = "keras-docs", dtype: str = "float32") -> keras.Sequential:
    """The uncompiled Keras LeNet-5 ``variant`` in ``dtype`` (the zoo's keras-docs and classic
    models)."""
    if variant not in VARIANTS:
        raise ValueError(
            f"Unknown LeNet-5 variant. Expected one of {sorted(VARIANTS)}. "
            f"Received: variant={variant!r}"
        )
    check_dtype(dtype)
    act, pad = VARIANTS[variant]
    layers = keras.layers
    with floatx(dtype):
        return keras.Sequential(
            [
                keras.Input(INPUT_SHAPE, dtype=dtype),
                layers.Conv2D(6, 5, padding=pad, activation=act, name="conv1", dtype=dtype),
                layers.AveragePooling2D(2, name="pool1", dtype=dtype),
                layers.Conv2D(16, 5, padding="valid", activation=act, name="conv2", dtype=dtype),
                layers.AveragePooling2D(2, name="pool2", dtype=dtype),
                layers.Flatten(name="flatten", dtype=dtype),
                layers.Dense(120, activation=act, name="fc1", dtype=dtype),
                layers.Dense(84, activation=act, name="fc2", dtype=dtype),
                layers.Dense(NUM_CLASSES, activation="softmax", name="output", dtype=dtype),
            ],
            name=f"lenet5_{variant.replace('-', '_')}",
        )


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"Invalid dtype. Expected one of {DTYPES}. Received: dtype={dtype!r}")


def compile_model(
    model: keras.Model,
    dtype: str,
    *,
    learning_rate: float = LEARNING_RATE,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> None:
    """Compile ``model`` (built in ``dtype``) the way the harness trains every reference:
    SGD with the recipe, categorical cross-entropy on one-hot labels and accuracy, all made in
    Keras's floatx set to ``dtype`` (the optimizer's learning-rate variable takes its dtype from
    it)."""
    check_dtype(dtype)
    with floatx(dtype):
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov),
            # Objects, not strings: Keras resolves strings lazily, outside this floatx scope,
            # and the float32 loss would then cast float64 predictions down.
            loss=keras.losses.CategoricalCrossentropy(dtype=dtype),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy", dtype=dtype)],
        )


def trainable_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """The model's trainable variables keyed ``"<layer>/<param>"``, in layer order."""
    return {
        f"{layer.name}/{v.name}": v for layer in model.layers for v in layer.trainable_variables
    }


def _all_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """Every weight, trainable or not (BatchNormalization's moving statistics too), keyed
    ``"<layer>/<param>"``; a MaskedDropout's keep mask is the harness's, not the model's."""
    return {
        f"{layer.name}/{v.name}": v
        for layer in model.layers
        if not isinstance(layer, MaskedDropout)
        for v in layer.weights
    }


@contextlib.contextmanager
def preserved_state(model: keras.Model) -> Iterator[None]:
    """The model's non-trainable state (BatchNormalization's moving statistics, Dropout's seed
    state) put back as it was on leaving: a training-mode forward pass on TensorFlow or torch
    assigns the moving statistics, which a gradient computation must not change."""
    saved = [(v, to_numpy(v)) for v in model.non_trainable_variables]
    try:
        yield
    finally:
        for v, value in saved:
            v.assign(value)


def get_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Copies of every weight, keyed ``"<layer>/<param>"``, in Keras layouts and dtypes."""
    return {k: to_numpy(v) for k, v in _all_variables(model).items()}


def set_weights(model: keras.Model, weights: Mapping[str, np.ndarray]) -> None:
    """Assign ``weights`` (exactly the model's keys, shapes and dtypes) to the model; nothing
    is assigned unless everything matches."""
    variables = _all_variables(model)
    if weights.keys() != variables.keys():
        raise ValueError(
            f"The weights must have exactly these keys: {sorted(variables)}. Received: "
            f"missing={sorted(variables.keys() - weights.keys())}, "
            f"unexpected={sorted(weights.keys() - variables.keys())}"
        )
    for key, v in variables.items():
        value = np.asarray(weights[key])
        if value.shape != tuple(v.shape) or value.dtype != np.dtype(v.dtype):
            raise ValueError(
                f"The weight '{key}' must have shape {tuple(v.shape)} and dtype {v.dtype}. "
                f"Received: shape={value.shape}, dtype={value.dtype}"
            )
    for key, v in variables.items():
        v.assign(weights[key])


def layer_outputs(
    model: keras.Model, x: np.ndarray, *, training: bool = False
) -> dict[str, np.ndarray]:
    """Every layer's output (after its activation) for one inference pass, in layer order;
    ``training=True``: for one training-mode pass (batch normalization on the batch's
    statistics, which also moves its moving statistics; Dropout by its masks)."""
    extractor = keras.Model(
        inputs=model.inputs[0], outputs={layer.name: layer.output for layer in model.layers}
    )
    outputs = extractor(np.asarray(x), training=training)
    return {layer.name: to_numpy(outputs[layer.name]) for layer in model.layers}


def to_numpy(tensor: object) -> np.ndarray:
    """A backend tensor or Keras variable as a NumPy array (a copy), the way each backend
    converts without a warning under NumPy 2: torch through ``detach().numpy()`` and TensorFlow
    through ``.numpy()`` (both ``__array__`` implementations take no ``copy`` argument, which
    ``np.array`` and ``keras.ops.convert_to_numpy`` would pass); JAX arrays directly."""
    value = tensor.value if isinstance(tensor, keras.Variable) else tensor
    detach = getattr(value, "detach", None)
    if detach is not None:  # torch
        return np.array(detach().cpu().numpy())
    numpy = getattr(value, "numpy", None)
    if numpy is not None:  # tensorflow
        return np.array(numpy())
    return np.array(value)  # jax


# -- training --------------------------------------------------------------------------------
def train_step(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """One compiled Keras train step on ``(x, y)`` on the model's backend; returns the batch's
    loss and accuracy before the update. ``train_on_batch`` resets the metrics first, so these
    are the batch's own values, not ``fit``'s running means; its data go to the step as given
    (no cast to floatx)."""
    logs = model.train_on_batch(x, y, return_dict=True)
    return float(logs["loss"]), float(logs["accuracy"])


def evaluate(
    model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int
) -> tuple[float, float]:
    """Loss and accuracy over ``(x, y)`` at inference: one compiled ``test_on_batch`` per batch,
    each batch weighted by its size, as ``evaluate`` aggregates them. Not ``evaluate`` itself:
    its array adapter casts float inputs to floatx
    (keras/src/trainers/data_adapters/array_slicing.py), which rounds float64 images to float32
    (a 1e-9 relative error in the float64 held-out loss, measured), and its tf.data pipeline
    logs C++ errors on TensorFlow 2.21."""
    n = len(x)
    if n == 0:
        raise ValueError("evaluate needs at least one sample. Received: len(x)=0")
    loss_sum = accuracy_sum = 0.0
    for start in range(0, n, batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        logs = model.test_on_batch(xb, yb, return_dict=True)
        loss_sum += float(logs["loss"]) * len(xb)
        accuracy_sum += float(logs["accuracy"]) * len(xb)
    return loss_sum / n, accuracy_sum / n


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's output (the probabilities) for one inference pass, as a NumPy array."""
    return to_numpy(model(np.asarray(x), training=False))
