"""The JAX backend: gradients with ``jax.value_and_grad`` over the model's stateless call.

float64 on JAX needs ``JAX_ENABLE_X64=1`` before JAX is imported; without it JAX computes in
float32 whatever Keras's floatx says. :func:`check_x64` refuses a float64 run without it.
"""

from __future__ import annotations

import os

import jax
import keras
import numpy as np

from reference.model import seed_host, trainable_variables

NAME = "jax"
# keras/src/backend/jax/nn.py::categorical_crossentropy renormalises the probabilities and
# clips them to [epsilon, 1 - epsilon] (epsilon = 1e-7) before the log: no logits path.
LOSS_PATH = "probabilities"
# Keras ops that compute a float64 model's tensor in float32 here, and why. Keras's tanh casts to
# result_type(x.dtype, float) (keras/src/backend/jax/numpy.py::tanh), and result_type maps
# float64 to float32 on every backend but TensorFlow (keras/src/backend/common/dtypes.py,
# BIT64_TO_BIT32_DTYPE): a tanh layer of a float64 model returns float32 (the classic variant).
FLOAT64_COMPUTED_IN_FLOAT32 = ("tanh",)
# Keras layers that compute a float64 model's output in float32 here (and cast it back to float64,
# so the output's dtype does not show it). BatchNormalization.call computes in
# ``backend.result_type(inputs.dtype, "float32")`` (keras/src/layers/normalization/
# batch_normalization.py), which is float32 for float64 inputs on every backend but TensorFlow
# (the same BIT64_TO_BIT32_DTYPE rule): batch statistics, moving-statistics updates and the
# normalisation are float32. Measured against TensorFlow's float64: 7.7e-6 (jax, training mode).
FLOAT64_LAYERS_COMPUTED_IN_FLOAT32 = ("BatchNormalization",)


def effective_momentum(momentum: float) -> float:
    """The momentum Keras's SGD applies: ``ops.cast(momentum, variable.dtype)`` is
    ``jnp.asarray(momentum, dtype)``, so float64 variables get the exact Python float (float32
    ones its float32 rounding, which scratch's float32 arithmetic applies by itself)."""
    return momentum


def effective_regularization_factor(factor: float) -> float:
    """The factor Keras's L2 and L1L2 regularizers apply: ``ops.cast(self.l2, dtype=x.dtype)``
    of the Python float is ``jnp.asarray(factor, dtype)`` here, so a float64 model gets the
    exact factor (a float32 one its float32 rounding)."""
    return factor


def configure_determinism(seed: int) -> None:
    """Seed Python and NumPy (:func:`reference.model.seed_host`; JAX's random numbers are
    explicit keys). XLA's CPU kernels are deterministic for the same program and input; there
    is no switch to turn on."""
    seed_host(seed)


def _flag(name: str) -> object:
    """One of JAX's configuration values (``jax.config.values``: typed, unlike attributes)."""
    return jax.config.values.get(name)


def check_dtype(dtype: str) -> None:
    """Refuse float64 when JAX runs without 64-bit types (it would silently compute float32)."""
    if dtype == "float64" and not _flag("jax_enable_x64"):
        raise RuntimeError(
            "float64 on the jax backend needs JAX_ENABLE_X64=1 set before JAX is imported"
        )


def gradients(
    model: keras.Model, x: np.ndarray, y: np.ndarray
) -> tuple[np.floating, dict[str, np.ndarray], np.ndarray]:
    """The compiled loss (mean over the batch, plus the weight regularizers' penalties) of
    ``model`` on ``(x, y)`` in training mode, its gradient for every trainable parameter keyed
    ``"<layer>/<param>"``, and dloss/dinput. As keras/src/backend/jax/trainer.py::
    compute_loss_and_updates computes it: a stateless call that returns the layers' losses,
    then ``stateless_compute_loss`` (the regularizers read the traced weights, so their
    penalty is differentiated too). The non-trainable state the call returns (moving
    statistics) is dropped: the model's variables are not changed."""
    check_dtype(str(np.asarray(x).dtype))
    variables = trainable_variables(model)
    names = {id(v): key for key, v in variables.items()}
    order = [names[id(v)] for v in model.trainable_variables]  # stateless_call's order
    non_trainable = [v.value for v in model.non_trainable_variables]
    metrics = [v.value for v in model.metrics_variables]

    def loss_of(trainable: list[jax.Array], xin: jax.Array) -> jax.Array:
        y_pred, updated, losses = model.stateless_call(
            trainable, non_trainable, xin, return_losses=True, training=True
        )
        if losses:
            model._losses_override.clear()
            model._losses_override = losses
        try:
            loss, _ = model.stateless_compute_loss(
                trainable, updated, metrics, x=xin, y=y, y_pred=y_pred, training=True
            )
        finally:
            if losses:
                model._losses_override.clear()
        return loss

    value_and_grad = jax.value_and_grad(loss_of, argnums=(0, 1))
    loss, (grads, dx) = value_and_grad([variables[k].value for k in order], jax.numpy.asarray(x))
    by_name = dict(zip(order, grads, strict=True))
    return (
        np.asarray(loss)[()],  # type: ignore[return-value]
        {key: np.asarray(by_name[key]) for key in variables},
        np.asarray(dx),
    )


def apply_dropout_mask(
    inputs: jax.Array, keep: jax.Array, rate: float, *, seeded: bool
) -> jax.Array:
    """Keras's Dropout with ``keep`` (1 kept, 0 dropped) for its random mask:
    keras/src/backend/jax/random.py::dropout computes ``jax.lax.select(mask, inputs /
    keep_prob, zeros_like(inputs))`` with ``keep_prob = 1.0 - rate``. Seeded or not, the
    same path."""
    keep_prob = 1.0 - rate
    return jax.lax.select(keep != 0, inputs / keep_prob, jax.numpy.zeros_like(inputs))


def versions() -> dict[str, str]:
    from jaxlib import version

    return {"jax": jax.__version__, "jaxlib": version.__version__}


def numeric_flags() -> dict[str, object]:
    """Settings that change JAX's float results: 64-bit types and XLA's flags."""
    return {
        "jax_enable_x64": bool(_flag("jax_enable_x64")),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "unset"),
        "jax_default_matmul_precision": str(_flag("jax_default_matmul_precision")),
        "keras_float64_ops_in_float32": ", ".join(FLOAT64_COMPUTED_IN_FLOAT32),
    }
