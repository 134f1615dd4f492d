"""reference: the Keras 3 LeNet-5 that scratch/ is compared against (Keras only).

This package imports Keras (and NumPy, which Keras brings) and nothing from scratch/ or
compare/. Everything backend-specific lives in one small module per Keras backend
(``reference/backend_tensorflow.py``); :func:`backend` returns the one Keras runs on.

- :func:`build_lenet5` — the Keras model, same layer names as scratch, compiled with the docs
  recipe.
- :func:`layer_outputs` — every layer's output for a batch (after its activation).
- :func:`get_weights` / :func:`set_weights` — the weights as ``"<layer>/<param>"`` arrays.
- :func:`train_step` / :func:`evaluate` — one compiled train step (the batch's loss and accuracy
  before the update) and Keras's held-out evaluation.
- ``backend().gradients(model, x, y)`` — ``(loss, grads keyed "<layer>/<param>", dloss/dinput)``.
"""

from reference.backends import BACKENDS, UnsupportedBackendError, backend
from reference.model import (
    VARIANTS,
    build_lenet5,
    evaluate,
    get_weights,
    layer_outputs,
    predict,
    set_weights,
    train_step,
)

__all__ = [
    "BACKENDS",
    "VARIANTS",
    "UnsupportedBackendError",
    "backend",
    "build_lenet5",
    "evaluate",
    "get_weights",
    "layer_outputs",
    "predict",
    "set_weights",
    "train_step",
]
