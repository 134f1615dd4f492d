"""The dropout masks the harness draws and gives both sides (docs/protocol.md, "Dropout").

Dropout is random; to compare a model with Dropout layers in training mode, both sides must
drop the same units. The harness draws every keep mask itself — for the gradient check's batch
and for every training step — and hands it to the implementation (the ``dropout_masks``
keyword) and to the reference (a layer that applies a given mask exactly as
``keras.layers.Dropout`` does: :mod:`reference.dropout`). A unit is kept where a uniform draw
is ``>= rate``, Keras's rule, so it is kept with probability ``1 - rate``.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from compare.sides.protocol import LayerSpec, ModelSpec

# The stream of mask draws, apart from the seed's other streams (weights, split, shuffle).
_STREAM: Final = 0xD80


def dropout_layers(spec: ModelSpec) -> list[LayerSpec]:
    """The spec's Dropout layers, in order."""
    return [layer for layer in spec.layers if layer.class_name == "Dropout"]


def keep_masks(spec: ModelSpec, n: int, seed: int, step: int) -> dict[str, np.ndarray] | None:
    """Layer name → boolean keep mask ``(n, *layer input shape)`` for the batch of ``step``
    (0: the gradient check's batch; 1…: training steps), the same for any call order; None
    for a model without Dropout (the keyword is then never passed)."""
    layers = dropout_layers(spec)
    if not layers:
        return None
    rng = np.random.default_rng([seed, _STREAM, step])
    return {
        layer.name: rng.random((n, *layer.input_shape)) >= float(layer.config.get("rate", 0.0))
        for layer in layers
    }
