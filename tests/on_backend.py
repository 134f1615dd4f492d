"""The Keras backend the tests compare against: ``KERAS_BACKEND`` (tox's keras-tensorflow,
keras-jax and keras-torch envs set it; the default env runs TensorFlow)."""

from __future__ import annotations

import keras
import pytest

NAME: str = keras.backend.backend()

# Whether Keras computes the float64 keras-docs LeNet-5 (relu) in float64 throughout. Not on
# torch: keras.ops.matmul casts both operands to keras.backend.result_type(...), which maps
# float64 to float32 on every backend but TensorFlow (keras/src/backend/common/dtypes.py,
# BIT64_TO_BIT32_DTYPE), so every Dense layer multiplies in float32. (On JAX the same rule hits
# tanh, i.e. the classic variant.) test_backends.py checks the ops per backend.
EXACT_FLOAT64: bool = NAME != "torch"

needs_exact_float64 = pytest.mark.skipif(
    not EXACT_FLOAT64,
    reason="Keras on torch computes float64 Dense matmuls in float32 (test_backends.py)",
)
