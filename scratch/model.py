"""Sequential: a stack of layers with the loss, gradients, weights and a train step.

Weights and gradients are dicts keyed ``"<layer name>/<param>"`` (``"conv1/kernel"``,
``"fc2/bias"``, ``"bn/moving_mean"``) holding arrays in Keras's layouts. That naming is the
contract the rest of lenet-parity and its users rely on.

The loss is Keras's ``Trainer.compute_loss``: the cross-entropy plus every weight penalty
(``kernel_regularizer`` ...), summed in layer and weight order; each penalty's gradient is
added to its weight's gradient. A model without regularizers does none of that work.
Dropout layers take keep masks from outside with :meth:`Sequential.set_dropout_masks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from scratch.layer import Layer, Shape, check_matching, standardize_dtype
from scratch.losses import (
    CategoricalCrossentropy,
    LossPath,
    crossentropy_from_logits,
    crossentropy_from_probabilities,
)
from scratch.optimizers import SGD
from scratch.regularization import Dropout

# Output activations whose logits Keras's TensorFlow cross-entropy uses (``_keras_logits``).
LOGITS_OUTPUTS = ("softmax", "sigmoid")


def accuracy(y_onehot: np.ndarray, probs: np.ndarray) -> float:
    """Keras's categorical accuracy: argmax of the prediction equals argmax of the target."""
    return float(np.mean(probs.argmax(axis=-1) == y_onehot.argmax(axis=-1)))


class Sequential:
    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        input_shape: Sequence[int] | None = None,
        dtype: object = "float32",
        seed: int = 0,
        loss: CategoricalCrossentropy | None = None,
        name: str = "sequential",
    ) -> None:
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise ValueError(
                f"Sequential expects a non-empty list of layers. Received: layers={layers!r}"
            )
        self.layers = list(layers)
        self.name = name
        self.dtype = standardize_dtype(dtype)
        self.loss = loss if loss is not None else CategoricalCrossentropy()
        self.seed = seed
        self._name_layers()
        self.built = False
        if input_shape is not None:
            self.build(input_shape)

    def _name_layers(self) -> None:
        """Unnamed layers get Keras-style names (conv2d, conv2d_1, ...); names must be unique."""
        taken = {layer.name for layer in self.layers if not layer.auto_named}
        for layer in self.layers:
            if layer.auto_named:
                base, i = layer.name, 0
                while layer.name in taken:
                    i += 1
                    layer.name = f"{base}_{i}"
                taken.add(layer.name)
        names = [layer.name for layer in self.layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Layer names must be unique. Received duplicate names: {dup}")

    def build(self, input_shape: Sequence[int]) -> None:
        """Build every layer for inputs ``(batch, *input_shape)``; weights come from one NumPy
        generator seeded with ``seed``, drawn in layer order."""
        rng = np.random.default_rng(self.seed)
        shape: Shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.build(shape, self.dtype, rng)
        self.input_shape = tuple(input_shape)
        self.output_shape = shape
        self.built = True

    def get_layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(
            f"No such layer. Expected one of {[la.name for la in self.layers]}. "
            f"Received: name={name!r}"
        )

    # -- forward and backward --------------------------------------------------------------
    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not self.built:
            self.build(x.shape[1:])
        if x.dtype != self.dtype:
            raise ValueError(
                f"Model '{self.name}' computes in {self.dtype.name}; cast the input first. "
                f"Received: x.dtype={x.dtype}"
            )
        return x

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._check_input(x)
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def layer_outputs(self, x: np.ndarray, training: bool = False) -> dict[str, np.ndarray]:
        """Every layer's output (after its activation) for one forward pass, in order."""
        x = self._check_input(x)
        outputs = {}
        for layer in self.layers:
            x = outputs[layer.name] = layer.forward(x, training=training)
        return outputs

    @property
    def loss_path(self) -> LossPath:
        """The cross-entropy path actually used: "logits" needs an output layer ending in
        softmax or sigmoid. Keras on TensorFlow takes the logits of both: its sigmoid output
        carries ``_keras_logits`` too (keras/src/backend/tensorflow/nn.py), and
        ``categorical_crossentropy`` then computes the *softmax* cross-entropy of those
        logits. Any other output takes the probabilities path, as on TensorFlow."""
        if self.loss.path == "logits" and self.layers[-1].activation.name in LOGITS_OUTPUTS:
            return "logits"
        return "probabilities"

    def compute_loss(self, y_onehot: np.ndarray) -> tuple[np.floating, np.ndarray]:
        """Loss of the last forward pass and its gradient at the last layer: at the logits on
        the logits path (fused softmax + cross-entropy), at the output otherwise. The loss
        includes the weight penalties (:meth:`regularization_losses`), as Keras's does."""
        last = self.layers[-1]
        if self.loss_path == "logits":
            loss, dloss = crossentropy_from_logits(y_onehot, last.preactivation)
        else:
            loss, dloss = crossentropy_from_probabilities(y_onehot, last.output)
        # Keras: ops.sum([compiled loss, *model.losses]), added in that order
        for penalty in self.regularization_losses():
            loss = loss + penalty
        return loss, dloss

    def regularization_losses(self) -> list[np.floating]:
        """Every weight penalty, in layer and weight order (Keras's ``model.losses``)."""
        return [
            p for layer in self.layers if layer.regularizers for p in layer.regularization_losses()
        ]

    # -- dropout masks ---------------------------------------------------------------------
    @property
    def dropout_layers(self) -> dict[str, Dropout]:
        return {la.name: la for la in self.layers if isinstance(la, Dropout)}

    def set_dropout_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        """Keep masks (layer name → bool array of that Dropout layer's input shape, batch
        included; True keeps) for every Dropout layer, used by the next training forward
        passes until replaced or cleared (:meth:`clear_dropout_masks`). Nothing is set unless
        every mask is valid."""
        dropouts = self.dropout_layers
        if masks.keys() != dropouts.keys():
            raise ValueError(
                "set_dropout_masks needs one mask for every Dropout layer: "
                f"{sorted(dropouts)}. Received: missing={sorted(dropouts.keys() - masks.keys())}, "
                f"unknown={sorted(masks.keys() - dropouts.keys())}"
            )
        previous = {name: layer.mask for name, layer in dropouts.items()}
        try:
            for name, layer in dropouts.items():
                layer.set_mask(np.asarray(masks[name]))
        except ValueError:
            for name, layer in dropouts.items():
                layer.mask = previous[name]
            raise

    def clear_dropout_masks(self) -> None:
        """Back to every Dropout layer's own seeded masks."""
        for layer in self.dropout_layers.values():
            layer.set_mask(None)

    def backward_from_loss(
        self, dloss: np.ndarray, *, input_grad: bool = False
    ) -> np.ndarray | None:
        """Backpropagate the gradient from ``compute_loss`` through every layer, then add each
        weight penalty's gradient to its weight's; returns dloss/dinput when ``input_grad``
        (the first layer skips that work otherwise)."""
        last = self.layers[-1]
        grad_in = input_grad or len(self.layers) > 1
        if self.loss_path == "logits":
            g = last.backward_preactivation(dloss, input_grad=grad_in)
        else:
            g = last.backward(dloss, input_grad=grad_in)
        for i in range(len(self.layers) - 2, -1, -1):
            assert g is not None
            g = self.layers[i].backward(g, input_grad=input_grad or i > 0)
        for layer in self.layers:
            if layer.regularizers:
                layer.add_regularization_gradients()
        return g

    def _loss_and_backward(
        self, x: np.ndarray, y_onehot: np.ndarray, training: bool, input_grad: bool
    ) -> tuple[np.floating, np.ndarray | None]:
        self.forward(x, training=training)
        loss, dloss = self.compute_loss(np.asarray(y_onehot))
        return loss, self.backward_from_loss(dloss, input_grad=input_grad)

    def loss_and_gradients(
        self, x: np.ndarray, y_onehot: np.ndarray, *, training: bool = True
    ) -> tuple[np.floating, dict[str, np.ndarray]]:
        """Loss (mean over the batch) and its gradient for every trainable parameter, keyed
        ``"<layer>/<param>"``. The first layer skips dloss/dinput, which training never needs."""
        loss, _ = self._loss_and_backward(x, y_onehot, training, input_grad=False)
        return loss, self.grads

    def loss_and_all_gradients(
        self, x: np.ndarray, y_onehot: np.ndarray, *, training: bool = True
    ) -> tuple[np.floating, dict[str, np.ndarray], np.ndarray]:
        """Like ``loss_and_gradients`` from the same single pass, plus dloss/dinput."""
        loss, dx = self._loss_and_backward(x, y_onehot, training, input_grad=True)
        assert dx is not None
        return loss, self.grads, dx

    # -- weights ---------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """Trainable parameters, live arrays, keyed ``"<layer>/<param>"``."""
        return {f"{la.name}/{k}": v for la in self.layers for k, v in la.params.items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Gradients of the last backward pass, keyed like ``params``."""
        return {f"{la.name}/{k}": v for la in self.layers for k, v in la.grads.items()}

    def _live_weights(self) -> dict[str, np.ndarray]:
        return {f"{la.name}/{k}": v for la in self.layers for k, v in la.weights.items()}

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every weight (trainable params and non-trainable state)."""
        if not self.built:
            raise RuntimeError(
                f"Model '{self.name}' is not built: give input_shape or call forward()."
            )
        return {k: v.copy() for k, v in self._live_weights().items()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy ``weights`` into the model. The key set, every shape and every dtype must match
        exactly; nothing is written unless everything matches."""
        if not self.built:
            raise RuntimeError(
                f"Model '{self.name}' is not built: give input_shape or call forward()."
            )
        live = self._live_weights()
        check_matching(live, weights, "weight")
        for key, target in live.items():
            np.copyto(target, weights[key])

    # -- training --------------------------------------------------------------------------
    def train_step(
        self, x: np.ndarray, y_onehot: np.ndarray, optimizer: SGD
    ) -> tuple[float, float]:
        """One SGD step; returns the batch's loss and accuracy before the update (what Keras's
        train step reports)."""
        loss, grads = self.loss_and_gradients(x, y_onehot, training=True)
        acc = accuracy(np.asarray(y_onehot), self.layers[-1].output)
        optimizer.apply(self.params, grads)
        return float(loss), acc

    def evaluate(
        self, x: np.ndarray, y_onehot: np.ndarray, batch_size: int = 256
    ) -> tuple[float, float]:
        """Loss and accuracy over a dataset at inference, each batch weighted by its size."""
        n = len(x)
        if n == 0:
            raise ValueError("evaluate needs at least one sample. Received: len(x)=0")
        loss_sum = acc_sum = 0.0
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y_onehot[start : start + batch_size]
            probs = self.forward(xb, training=False)
            loss, _ = self.compute_loss(yb)
            loss_sum += float(loss) * len(xb)
            acc_sum += accuracy(yb, probs) * len(xb)
        return loss_sum / n, acc_sum / n

    def count_params(self) -> int:
        return sum(v.size for v in self._live_weights().values())

    def summary(self) -> str:
        lines = [f"Model '{self.name}' ({self.dtype.name}, loss path: {self.loss_path})"]
        for layer in self.layers:
            n = sum(v.size for v in layer.weights.values())
            lines.append(
                f"  {layer.name:<10} {type(layer).__name__:<20} "
                f"{(None, *layer.output_shape)!s:<20} {n:>8}"
            )
        lines.append(f"  total params: {self.count_params()}")
        return "\n".join(lines)
