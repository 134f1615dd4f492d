"""The TensorFlow backend: gradients with ``tf.GradientTape`` and deterministic ops."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from reference.model import preserved_state, trainable_variables

NAME = "tensorflow"
# keras/src/backend/tensorflow/nn.py::categorical_crossentropy takes the softmax's logits
# (`_keras_logits`) when the output comes from a softmax: no clipping.
LOSS_PATH = "logits"
# Keras ops that compute a float64 model's tensor in float32 on this backend: none.
FLOAT64_COMPUTED_IN_FLOAT32: tuple[str, ...] = ()
# Keras layers that compute a float64 model's output in float32 on this backend: none.
FLOAT64_LAYERS_COMPUTED_IN_FLOAT32: tuple[str, ...] = ()


def effective_momentum(momentum: float) -> float:
    """The momentum Keras's SGD actually applies on this backend. keras/src/optimizers/sgd.py
    computes ``ops.cast(self.momentum, variable.dtype)`` from the Python float; TensorFlow turns
    a Python float into a float32 tensor before the cast, so even float64 variables get
    float32(momentum): 0.8999999761581421 for 0.9. (Measured: with the exact 0.9 a float64
    scratch model leaves Keras by 8e-11 after the second step; with this value, 1e-16.)"""
    return float(np.float32(momentum))


def effective_regularization_factor(factor: float) -> float:
    """The factor Keras's L2 and L1L2 regularizers actually apply on this backend. They keep
    it a Python float and compute ``ops.cast(self.l2, dtype=x.dtype) * ops.sum(ops.square(x))``
    (keras/src/regularizers/regularizers.py); ``tf.cast`` turns the Python float into a
    float32 tensor first, so a float64 model's penalty uses float32(factor):
    0.05000000074505806 for 0.05 (measured). L1 keeps its factor as a tensor made in floatx
    (``ops.convert_to_tensor(l1)``), so it is the model's dtype's rounding of the factor on
    every backend."""
    return float(np.float32(factor))


_state = {"op_determinism": False}  # TensorFlow has no public getter for it


def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic, so two runs
    with the same arguments give the same numbers."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    _state["op_determinism"] = True


def check_dtype(dtype: str) -> None:
    """Every dtype works on TensorFlow."""


def gradients(
    model: keras.Model, x: np.ndarray, y: np.ndarray
) -> tuple[np.floating, dict[str, np.ndarray], np.ndarray]:
    """The compiled loss (mean over the batch, plus the weight regularizers' penalties, as
    keras/src/trainers/trainer.py::compute_loss adds ``self.losses``) of ``model`` on
    ``(x, y)`` in training mode, its gradient for every trainable parameter keyed
    ``"<layer>/<param>"``, and dloss/dinput. A training-mode call assigns BatchNormalization's
    moving statistics: they are put back (:func:`reference.model.preserved_state`)."""
    variables = trainable_variables(model)
    xt = tf.convert_to_tensor(x)
    yt = tf.convert_to_tensor(y)
    with preserved_state(model):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y_pred = model(xt, training=True)
            loss = model.compute_loss(x=xt, y=yt, y_pred=y_pred, training=True)
        *grads, dx = tape.gradient(loss, [*variables.values(), xt])
    return (
        loss.numpy()[()],
        {key: g.numpy() for key, g in zip(variables, grads, strict=True)},
        dx.numpy(),
    )


def apply_dropout_mask(
    inputs: tf.Tensor, keep: tf.Tensor, rate: float, *, seeded: bool
) -> tf.Tensor:
    """Keras's Dropout with ``keep`` (1 kept, 0 dropped) for its random mask:
    keras/src/backend/tensorflow/random.py::dropout calls ``tf.nn.experimental.
    stateless_dropout``, whose ``nn_ops._dropout`` multiplies by ``1 / (1 - rate)`` (a Python
    float made a tensor of the input's dtype) and selects 0 where the mask drops. Seeded or
    not, the same path."""
    scale = tf.convert_to_tensor(1 / (1 - rate), dtype=inputs.dtype)
    return tf.where(tf.not_equal(keep, 0), inputs * scale, tf.constant(0, dtype=inputs.dtype))


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__}


def numeric_flags() -> dict[str, object]:
    """Settings that change TensorFlow's float results: op determinism and oneDNN (on by
    default on x86 Linux; ``TF_ENABLE_ONEDNN_OPTS=0`` turns it off)."""
    return {
        "op_determinism": _state["op_determinism"],
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (on)"),
    }
