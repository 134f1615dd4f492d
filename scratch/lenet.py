"""LeNet-5 in two variants, with the layer names the whole project keys weights by:
``conv1, pool1, conv2, pool2, flatten, fc1, fc2, output``.

- "keras-docs": the Keras documentation's LeNet-5 on 28×28×1 MNIST — Conv2D 6@5×5 relu valid →
  AveragePooling2D 2 → Conv2D 16@5×5 relu valid → AveragePooling2D 2 → Flatten (256) →
  Dense 120 relu → Dense 84 relu → Dense 10 softmax.
- "classic": LeCun et al. (1998) adapted to 28×28 input — conv1 6@5×5 "same" tanh (28×28, as
  the paper's 32×32 input with valid padding) → AvgPool 2 → conv2 16@5×5 valid tanh → AvgPool 2
  → Flatten (400) → Dense 120 tanh → Dense 84 tanh → Dense 10 softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

from scratch.conv import Conv2D
from scratch.dense import Dense
from scratch.layer import Layer
from scratch.losses import LOSS_PATHS, CategoricalCrossentropy, LossPath
from scratch.model import Sequential
from scratch.pooling import AveragePooling2D
from scratch.reshaping import Flatten

INPUT_SHAPE = (28, 28, 1)  # MNIST, NHWC without the batch axis
NUM_CLASSES = 10


@dataclass(frozen=True)
class LeNet5Spec:
    """What differs between the variants."""

    activation: str
    conv1_padding: str


VARIANTS: dict[str, LeNet5Spec] = {
    "keras-docs": LeNet5Spec(activation="relu", conv1_padding="valid"),
    "classic": LeNet5Spec(activation="tanh", conv1_padding="same"),
}


def lenet5_layers(spec: LeNet5Spec) -> list[Layer]:
    act = spec.activation
    return [
        Conv2D(6, 5, padding=spec.conv1_padding, activation=act, name="conv1"),
        AveragePooling2D(2, name="pool1"),
        Conv2D(16, 5, padding="valid", activation=act, name="conv2"),
        AveragePooling2D(2, name="pool2"),
        Flatten(name="flatten"),
        Dense(120, activation=act, name="fc1"),
        Dense(84, activation=act, name="fc2"),
        Dense(NUM_CLASSES, activation="softmax", name="output"),
    ]


def build_lenet5(
    variant: str = "keras-docs",
    dtype: str = "float32",
    seed: int = 0,
    *,
    loss_path: LossPath = "logits",
) -> Sequential:
    """A built LeNet-5 with Keras's default initialisation (glorot_uniform kernels, zero
    biases) drawn from ``np.random.default_rng(seed)``. ``loss_path`` chooses the
    cross-entropy path of the Keras backend to mirror: "logits" (TensorFlow) or
    "probabilities" (JAX, torch)."""
    if variant not in VARIANTS:
        raise ValueError(
            f"Unknown LeNet-5 variant. Expected one of {sorted(VARIANTS)}. "
            f"Received: variant={variant!r}"
        )
    if loss_path not in LOSS_PATHS:
        raise ValueError(
            f"Unknown loss path. Expected one of {LOSS_PATHS}. Received: loss_path={loss_path!r}"
        )
    return Sequential(
        lenet5_layers(VARIANTS[variant]),
        input_shape=INPUT_SHAPE,
        dtype=dtype,
        seed=seed,
        loss=CategoricalCrossentropy(loss_path),
        name=f"lenet5-{variant}",
    )
