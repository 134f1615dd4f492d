"""The zoo: the reference models this project knows by name, each with its training recipe.

Each entry is a builder ``build(dtype) -> keras.Model`` (uncompiled; every layer named by us:
``conv1``, ``pool1``, ...; every layer and the input in ``dtype``) and the :class:`Recipe` it
is trained with. The models are the ones this project grew from (docs: /work/shared/NOTES.md,
"The models this project grew from"): the Keras docs' LeNet-5 and its classic tanh variant, a
NumPy tutorial's one-convolution network, cs231n's ``ThreeLayerConvNet``, and LeNet-5 with
batch normalisation and dropout.

Their weights are never Keras's: the harness initialises every zoo model afresh from its seed
(in NumPy, with each layer's own initializer), so only the initializers' settings matter here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final

import keras

from reference.model import INPUT_SHAPE, LEARNING_RATE, NUM_CLASSES, check_dtype, floatx, lenet5

INPUT_SCALINGS: Final = ("unit", "centered")  # pixels / 255, and pixels / 255 - 0.5
LOSSES: Final = ("categorical_crossentropy", "sparse_categorical_crossentropy")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is trained: SGD with ``learning_rate``, ``momentum`` and ``nesterov`` on
    batches of ``batch_size`` (None: not known, e.g. a ``.keras`` file does not record it),
    inputs scaled as ``input_scaling`` (``"unit"``: pixels / 255 in [0, 1]; ``"centered"``:
    pixels / 255 - 0.5) and the loss Keras's name of the model's loss (the harness always
    trains its own copy with categorical cross-entropy on one-hot labels, which is the same
    loss as the sparse one on integer labels)."""

    learning_rate: float
    momentum: float = 0.0
    nesterov: bool = False
    batch_size: int | None = None
    input_scaling: str = "unit"
    loss: str = "categorical_crossentropy"

    def __post_init__(self) -> None:
        if self.input_scaling not in INPUT_SCALINGS:
            raise ValueError(
                f"Invalid input scaling. Expected one of {INPUT_SCALINGS}. "
                f"Received: {self.input_scaling!r}"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"Invalid loss. Expected one of {LOSSES}. Received: {self.loss!r}")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One zoo model: its builder, recipe and a one-line description."""

    name: str
    build: Callable[[str], keras.Model]
    recipe: Recipe
    description: str


# The recipe the LeNet-5s have always been trained with here (reference.build_lenet5's SGD(0.05),
# categorical cross-entropy, batches of 256, pixels / 255).
_DOCS = Recipe(LEARNING_RATE, batch_size=256, input_scaling="unit")


def keras_docs(dtype: str = "float32") -> keras.Sequential:
    """The Keras docs LeNet-5: relu, valid padding, average pooling."""
    return lenet5("keras-docs", dtype)


def classic(dtype: str = "float32") -> keras.Sequential:
    """The classic LeNet-5: tanh, conv1 'same' padding, average pooling."""
    return lenet5("classic", dtype)


def seed000_cnn(dtype: str = "float32") -> keras.Sequential:
    """The NumPy tutorial's network (NOTES.md): ``Conv3x3(8)`` — 8 filters of 3×3 drawn as
    ``randn(8, 3, 3) / 9`` (stddev 1/9), no bias, no activation, valid — then ``MaxPool2``
    (2×2, 26×26×8 → 13×13×8) and a softmax layer of 13·13·8 = 1352 inputs with weights
    ``randn / input_len`` (stddev 1/1352) and zero biases."""
    check_dtype(dtype)
    layers = keras.layers
    fan_in = 13 * 13 * 8
    with floatx(dtype):
        return keras.Sequential(
            [
                keras.Input(INPUT_SHAPE, dtype=dtype),
                layers.Conv2D(
                    8,
                    3,
                    padding="valid",
                    use_bias=False,
                    kernel_initializer=keras.initializers.RandomNormal(stddev=1 / 9),
                    name="conv1",
                    dtype=dtype,
                ),
                layers.MaxPooling2D(2, name="pool1", dtype=dtype),
                layers.Flatten(name="flatten", dtype=dtype),
                layers.Dense(
                    NUM_CLASSES,
                    activation="softmax",
                    kernel_initializer=keras.initializers.RandomNormal(stddev=1 / fan_in),
                    bias_initializer="zeros",
                    name="output",
                    dtype=dtype,
                ),
            ],
            name="seed000_cnn",
        )


# cs231n's ThreeLayerConvNet (NOTES.md): weight_scale 1e-3 (its default), and the loss term
# 0.5 · reg · ΣW² over the three weight matrices with reg = 0.1, i.e. Keras's L2(reg / 2)
# (L2 computes l2 · ΣW²). (ThreeLayerConvNet's own default is reg = 0.0; 0.1 makes the
# regularizer part of the comparison.)
_CS231N_WEIGHT_SCALE: Final = 1e-3
_CS231N_REG: Final = 0.1


def cs231n_3layer(dtype: str = "float32") -> keras.Sequential:
    """cs231n's ``ThreeLayerConvNet`` on MNIST: conv 32 filters of 7×7, stride 1, pad 3
    ('same') → relu → 2×2 max pool stride 2 → affine 100 → relu → affine 10 → softmax;
    ``W = weight_scale · randn`` (RandomNormal(stddev=1e-3)), zero biases, L2 on the kernels."""
    check_dtype(dtype)
    layers = keras.layers

    def kernel() -> dict[str, object]:
        return {
            "kernel_initializer": keras.initializers.RandomNormal(stddev=_CS231N_WEIGHT_SCALE),
            "bias_initializer": "zeros",
            "kernel_regularizer": keras.regularizers.L2(_CS231N_REG / 2),
        }

    with floatx(dtype):
        return keras.Sequential(
            [
                keras.Input(INPUT_SHAPE, dtype=dtype),
                layers.Conv2D(
                    32, 7, padding="same", activation="relu", name="conv1", dtype=dtype, **kernel()
                ),
                layers.MaxPooling2D(2, strides=2, name="pool1", dtype=dtype),
                layers.Flatten(name="flatten", dtype=dtype),
                layers.Dense(100, activation="relu", name="fc1", dtype=dtype, **kernel()),
                layers.Dense(
                    NUM_CLASSES, activation="softmax", name="output", dtype=dtype, **kernel()
                ),
            ],
            name="cs231n_3layer",
        )


def lenet5_bn_dropout(dtype: str = "float32") -> keras.Sequential:
    """The Keras docs LeNet-5 with each convolution linear → BatchNormalization (Keras's
    defaults: momentum 0.99, epsilon 1e-3) → ReLU, and Dropout(0.5) after fc2. The
    convolutions keep their biases (the keras-docs layers, only their activation moved)."""
    check_dtype(dtype)
    layers = keras.layers
    with floatx(dtype):
        return keras.Sequential(
            [
                keras.Input(INPUT_SHAPE, dtype=dtype),
                layers.Conv2D(6, 5, padding="valid", name="conv1", dtype=dtype),
                layers.BatchNormalization(name="bn1", dtype=dtype),
                layers.ReLU(name="relu1", dtype=dtype),
                layers.AveragePooling2D(2, name="pool1", dtype=dtype),
                layers.Conv2D(16, 5, padding="valid", name="conv2", dtype=dtype),
                layers.BatchNormalization(name="bn2", dtype=dtype),
                layers.ReLU(name="relu2", dtype=dtype),
                layers.AveragePooling2D(2, name="pool2", dtype=dtype),
                layers.Flatten(name="flatten", dtype=dtype),
                layers.Dense(120, activation="relu", name="fc1", dtype=dtype),
                layers.Dense(84, activation="relu", name="fc2", dtype=dtype),
                layers.Dropout(0.5, name="dropout", dtype=dtype),
                layers.Dense(NUM_CLASSES, activation="softmax", name="output", dtype=dtype),
            ],
            name="lenet5_bn_dropout",
        )


ZOO: Final[dict[str, Entry]] = {
    entry.name: entry
    for entry in (
        Entry(
            "keras-docs",
            keras_docs,
            _DOCS,
            "LeNet-5 as in the Keras docs: relu, valid convolutions, average pooling",
        ),
        Entry(
            "classic",
            classic,
            _DOCS,
            "LeNet-5 classic: tanh, conv1 'same' padding, average pooling",
        ),
        Entry(
            "seed000-cnn",
            seed000_cnn,
            # the tutorial's SGD: learning rate 0.005, one image at a time, image / 255 - 0.5
            Recipe(0.005, batch_size=1, input_scaling="centered"),
            "a NumPy tutorial's CNN: 8 unbiased 3x3 filters, 2x2 max pooling, softmax",
        ),
        Entry(
            "cs231n-3layer",
            cs231n_3layer,
            # cs231n's Solver defaults (assignment 2, cs231n/solver.py): update_rule "sgd",
            # batch_size 100; cs231n/optim.py::sgd's learning_rate default 1e-2.
            Recipe(1e-2, batch_size=100, input_scaling="unit"),
            "cs231n's ThreeLayerConvNet: 32 7x7 'same' relu, 2x2 max pool, 100 relu, L2 0.05",
        ),
        Entry(
            "lenet5-bn-dropout",
            lenet5_bn_dropout,
            _DOCS,
            "keras-docs LeNet-5 with BatchNormalization before each relu and Dropout(0.5)",
        ),
    )
}


def names() -> list[str]:
    """The zoo's model names, in the zoo's order."""
    return list(ZOO)


def entry(name: str) -> Entry:
    if name not in ZOO:
        raise KeyError(f"No zoo model named {name!r}. Expected one of {names()}")
    return ZOO[name]
