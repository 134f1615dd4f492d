"""The PyTorch backend: gradients with ``torch.autograd`` and deterministic algorithms."""

from __future__ import annotations

import keras
import numpy as np
import torch

from reference.model import preserved_state, seed_host, trainable_variables

NAME = "torch"
# keras/src/backend/torch/nn.py::categorical_crossentropy renormalises the probabilities and
# clips them to [epsilon, 1 - epsilon] (epsilon = 1e-7) before the log: no logits path.
LOSS_PATH = "probabilities"
# Keras ops that compute a float64 model's tensor in float32 here, and why. keras.ops.matmul casts
# both operands to result_type(...) (keras/src/backend/torch/numpy.py::matmul), and result_type
# maps float64 to float32 on every backend but TensorFlow (keras/src/backend/common/dtypes.py,
# BIT64_TO_BIT32_DTYPE): every Dense layer of a float64 model multiplies in float32 (its bias
# add promotes the result back to float64).
FLOAT64_COMPUTED_IN_FLOAT32 = ("matmul",)
# Keras layers that compute a float64 model's output in float32 here (and cast it back to float64,
# so the output's dtype does not show it). BatchNormalization.call computes in
# ``backend.result_type(inputs.dtype, "float32")`` (keras/src/layers/normalization/
# batch_normalization.py), which is float32 for float64 inputs on every backend but TensorFlow
# (the same BIT64_TO_BIT32_DTYPE rule): batch statistics, moving-statistics updates and the
# normalisation are float32. Measured against TensorFlow's float64: 4.8e-6 (torch, training mode).
FLOAT64_LAYERS_COMPUTED_IN_FLOAT32 = ("BatchNormalization",)


def effective_momentum(momentum: float) -> float:
    """The momentum Keras's SGD applies: ``ops.cast(momentum, variable.dtype)`` is
    ``torch.as_tensor(momentum, dtype=...)`` (keras/src/backend/torch/core.py), so float64
    variables get the exact Python float."""
    return momentum


def effective_regularization_factor(factor: float) -> float:
    """The factor Keras's L2 and L1L2 regularizers apply: ``ops.cast(self.l2, dtype=x.dtype)``
    of the Python float is ``torch.as_tensor(factor, dtype=...)`` here, so a float64 model gets
    the exact factor (a float32 one its float32 rounding)."""
    return factor


def configure_determinism(seed: int) -> None:
    """Seed Python, NumPy (:func:`reference.model.seed_host`) and torch, and make torch use
    deterministic algorithms only."""
    seed_host(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def check_dtype(dtype: str) -> None:
    """Every dtype works on torch."""


def gradients(
    model: keras.Model, x: np.ndarray, y: np.ndarray
) -> tuple[np.floating, dict[str, np.ndarray], np.ndarray]:
    """The compiled loss (mean over the batch, plus the weight regularizers' penalties, as
    keras/src/trainers/trainer.py::compute_loss adds ``self.losses``) of ``model`` on
    ``(x, y)`` in training mode, its gradient for every trainable parameter keyed
    ``"<layer>/<param>"``, and dloss/dinput. A training-mode call assigns BatchNormalization's
    moving statistics: they are put back (:func:`reference.model.preserved_state`)."""
    variables = trainable_variables(model)
    xt = torch.tensor(np.asarray(x), requires_grad=True)
    yt = torch.tensor(np.asarray(y))
    with preserved_state(model):
        y_pred = model(xt, training=True)
        loss = model.compute_loss(x=xt, y=yt, y_pred=y_pred, training=True)
        *grads, dx = torch.autograd.grad(loss, [*(v.value for v in variables.values()), xt])
    return (
        loss.detach().numpy()[()],
        {key: g.detach().numpy().copy() for key, g in zip(variables, grads, strict=True)},
        dx.detach().numpy().copy(),
    )


def apply_dropout_mask(
    inputs: torch.Tensor, keep: torch.Tensor, rate: float, *, seeded: bool
) -> torch.Tensor:
    """Keras's Dropout with ``keep`` (1 kept, 0 dropped) for its random mask, by the path
    keras/src/backend/torch/random.py::dropout takes: a seeded Dropout draws a Bernoulli mask
    and computes ``torch.where(mask, inputs / keep_prob, zeros)``; an unseeded one calls
    ``torch.nn.functional.dropout``, which on the CPU (no fused kernel) divides its 0/1 noise
    by ``1 - p`` in place and multiplies: ``inputs * (noise / keep_prob)``."""
    keep_prob = 1.0 - rate
    if seeded:
        return torch.where(keep != 0, inputs / keep_prob, torch.zeros_like(inputs))
    return inputs * (keep / keep_prob)


def versions() -> dict[str, str]:
    return {"torch": torch.__version__}


def numeric_flags() -> dict[str, object]:
    """Settings that change torch's float results: deterministic algorithms, oneDNN (mkldnn)
    and the number of intra-op threads (it changes reduction order)."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "num_threads": torch.get_num_threads(),
        "keras_float64_ops_in_float32": ", ".join(FLOAT64_COMPUTED_IN_FLOAT32),
    }
