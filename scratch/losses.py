"""Categorical cross-entropy, mean over the batch, along both of the paths Keras 3 takes.

Keras computes ``categorical_crossentropy(y_true, y_pred)`` differently by backend when
``y_pred`` comes out of a softmax (keras/src/backend/*/nn.py):

- ``"logits"`` — TensorFlow: the softmax output carries its logits (``_keras_logits``), and the
  loss is ``softmax_cross_entropy_with_logits`` on them: no normalisation, no clipping.
- ``"probabilities"`` — JAX, torch and NumPy: ``p = y_pred / sum(y_pred)``, clipped to
  ``[EPSILON, 1 - EPSILON]``, loss ``-sum(y_true * log(p))``. Where a probability is clipped its
  gradient is zero.

The reduction is Keras's default ``sum_over_batch_size``: the sum over samples divided by the
batch size (keras/src/losses/loss.py). Each function returns ``(loss, dloss/dinput)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from scratch.activations import log_softmax

# keras.config.epsilon(), the fuzz factor of the clipped path (keras/src/backend/config.py).
EPSILON = 1e-7

LossPath = Literal["logits", "probabilities"]
LOSS_PATHS: tuple[LossPath, ...] = ("logits", "probabilities")


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.shape != y_pred.shape or y_pred.ndim != 2:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same shape (batch, classes). "
            f"Received: y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}"
        )
    if y_true.dtype != y_pred.dtype:
        raise ValueError(
            "Arguments `y_true` and `y_pred` must have the same dtype. "
            f"Received: y_true.dtype={y_true.dtype}, y_pred.dtype={y_pred.dtype}"
        )


def crossentropy_from_logits(
    y_true: np.ndarray, logits: np.ndarray
) -> tuple[np.floating, np.ndarray]:
    """Loss and dloss/dlogits. The fused gradient ``(softmax(z) * sum(y) - y) / N`` is exact for
    any targets (``sum(y) = 1`` for one-hot labels)."""
    _check(y_true, logits)
    n = logits.shape[0]
    log_p = log_softmax(logits)  # (N, K)
    loss = -(y_true * log_p).sum(axis=-1).sum() / n
    dlogits = (np.exp(log_p) * y_true.sum(axis=-1, keepdims=True) - y_true) / n
    return loss, dlogits


def crossentropy_from_probabilities(
    y_true: np.ndarray, probs: np.ndarray
) -> tuple[np.floating, np.ndarray]:
    """Loss and dloss/dprobs through Keras's renormalise-and-clip path."""
    _check(y_true, probs)
    n = probs.shape[0]
    total = probs.sum(axis=-1, keepdims=True)  # (N, 1)
    p = probs / total
    clipped = np.clip(p, EPSILON, 1 - EPSILON)
    loss = -(y_true * np.log(clipped)).sum(axis=-1).sum() / n
    inside = (p >= EPSILON) & (p <= 1 - EPSILON)  # clip's gradient: 1 inside, 0 outside
    dp = -y_true / clipped / n * inside
    # p = probs / total: dL/dprobs_j = (dp_j - sum_i dp_i p_i) / total
    dprobs = (dp - (dp * p).sum(axis=-1, keepdims=True)) / total
    return loss, dprobs


@dataclass(frozen=True)
class CategoricalCrossentropy:
    """The loss of a model whose last layer ends in softmax; ``path`` picks Keras's backend
    behaviour (see the module docstring). Without a softmax output the logits path is not
    available and the probabilities path is used, as on TensorFlow."""

    path: LossPath = "logits"

    def __post_init__(self) -> None:
        if self.path not in LOSS_PATHS:
            raise ValueError(
                f"Invalid loss path. Expected one of {LOSS_PATHS}. Received: path={self.path!r}"
            )
