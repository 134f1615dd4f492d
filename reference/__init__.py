"""reference: the Keras 3 models that implementations are compared against (Keras only).

This package imports Keras (and NumPy, which Keras brings) and nothing from scratch/ or
compare/. Everything backend-specific lives in one small module per Keras backend
(``reference/backend_tensorflow.py``); :func:`backend` returns the one Keras runs on.

- :data:`ZOO` / :func:`load_model` — the models known by name (:mod:`reference.zoo`: the two
  LeNet-5s and the models this project grew from) and ``.keras`` files, each checked to use
  only supported layers and options (:mod:`reference.loading`); :func:`convert` checks and
  copies a model a builder made.
- :func:`harness_model` — the copy the harness computes with: in the check's dtype, each
  Dropout applying given masks (:func:`set_dropout_masks`), compiled with the recipe.
- :func:`recipe_of` — a compiled model's (or a ``.keras`` compile config's) SGD recipe.
- :func:`build_lenet5` — the compiled LeNet-5 (the zoo's keras-docs and classic models).
- :func:`layer_outputs` — every layer's output for a batch (after its activation).
- :func:`get_weights` / :func:`set_weights` — the weights as ``"<layer>/<param>"`` arrays,
  non-trainable ones (moving statistics) included.
- :func:`train_step` / :func:`evaluate` — one compiled train step (the batch's loss and accuracy
  before the update) and Keras's held-out evaluation.
- ``backend().gradients(model, x, y)`` — ``(loss, grads keyed "<layer>/<param>", dloss/dinput)``
  in training mode, regularizers included, the model's moving statistics unchanged.
"""

from reference.backends import BACKENDS, UnsupportedBackendError, backend
from reference.dropout import MaskedDropout, needs_masks, set_dropout_masks
from reference.loading import (
    ModelSourceError,
    builder_model,
    compile_config,
    convert,
    harness_model,
    is_builder,
    is_file,
    is_zoo,
    layer_config,
    layer_options,
    load_model,
    recipe_of,
)
from reference.model import (
    VARIANTS,
    build_lenet5,
    compile_model,
    evaluate,
    get_weights,
    layer_outputs,
    predict,
    set_weights,
    train_step,
)
from reference.zoo import ZOO, Recipe

__all__ = [
    "BACKENDS",
    "VARIANTS",
    "ZOO",
    "MaskedDropout",
    "ModelSourceError",
    "Recipe",
    "UnsupportedBackendError",
    "backend",
    "build_lenet5",
    "builder_model",
    "compile_config",
    "compile_model",
    "convert",
    "evaluate",
    "get_weights",
    "harness_model",
    "is_builder",
    "is_file",
    "is_zoo",
    "layer_config",
    "layer_options",
    "layer_outputs",
    "load_model",
    "needs_masks",
    "predict",
    "recipe_of",
    "set_dropout_masks",
    "set_weights",
    "train_step",
]
