"""The TensorFlow backend: gradients with ``tf.GradientTape`` and deterministic ops."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from reference.model import trainable_variables

NAME = "tensorflow"
# keras/src/backend/tensorflow/nn.py::categorical_crossentropy takes the softmax's logits
# (`_keras_logits`) when the output comes from a softmax: no clipping.
LOSS_PATH = "logits"
# Keras ops that compute a float64 model's tensor in float32 on this backend: none.
FLOAT64_COMPUTED_IN_FLOAT32: tuple[str, ...] = ()


def effective_momentum(momentum: float) -> float:
    """The momentum Keras's SGD actually applies on this backend. keras/src/optimizers/sgd.py
    computes ``ops.cast(self.momentum, variable.dtype)`` from the Python float; TensorFlow turns
    a Python float into a float32 tensor before the cast, so even float64 variables get
    float32(momentum): 0.8999999761581421 for 0.9. (Measured: with the exact 0.9 a float64
    scratch model leaves Keras by 8e-11 after the second step; with this value, 1e-16.)"""
    return float(np.float32(momentum))


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
    """The compiled loss (mean over the batch) of ``model`` on ``(x, y)``, its gradient for
    every trainable parameter keyed ``"<layer>/<param>"``, and dloss/dinput."""
    variables = trainable_variables(model)
    xt = tf.convert_to_tensor(x)
    yt = tf.convert_to_tensor(y)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y_pred = model(xt, training=True)
        loss = model.compute_loss(x=xt, y=yt, y_pred=y_pred, training=False)
    *grads, dx = tape.gradient(loss, [*variables.values(), xt])
    return (
        loss.numpy()[()],
        {key: g.numpy() for key, g in zip(variables, grads, strict=True)},
        dx.numpy(),
    )


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__}


def numeric_flags() -> dict[str, object]:
    """Settings that change TensorFlow's float results: op determinism and oneDNN (on by
    default on x86 Linux; ``TF_ENABLE_ONEDNN_OPTS=0`` turns it off)."""
    return {
        "op_determinism": _state["op_determinism"],
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (on)"),
    }
