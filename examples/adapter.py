"""The glue between lenet-parity's implementation protocol and ``cs231n_lenet5.py``.

``lenet-parity check --implementation examples/adapter.py:build``: ``build(spec)`` is the
FACTORY of docs/protocol.md. The network is read off ``spec.layers`` (the example's
``arch_from_keras``), so both LeNet-5 variants work; ``weight_names`` maps Keras's keys to the
example's ``W1, b1, ..., W5, b5`` (the weighted layers, numbered in order: ``conv1/kernel`` ->
``W1`` ... ``output/bias`` -> ``b5``), and ``layout`` declares the example's NCHW/OIHW, so the
harness converts every array. ``train_step`` is the example's ``sgd_step`` with the spec's
recipe, its velocity kept here between steps.

The example is a module of its own that knows nothing of the protocol. It is loaded by path
from this file's directory, because the harness loads this file by path too: a plain
``import cs231n_lenet5`` would depend on ``sys.path``. A copy of the two files in another
directory (the planted-bug tests make some) pairs with its own sibling.
"""

from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

_file = spec_from_file_location("cs231n_lenet5", Path(__file__).with_name("cs231n_lenet5.py"))
net = module_from_spec(_file)
_file.loader.exec_module(net)


class CS231nLeNet5:
    layout = "channels_first"

    def __init__(self, spec):
        self.spec, self.names = spec, [la.name for la in spec.layers]
        self.arch = net.arch_from_keras([(la.class_name, la.config) for la in spec.layers])
        weighted = [la.name for la in spec.layers if la.weights]
        self.weight_names = {f"{n}/kernel": f"W{i}" for i, n in enumerate(weighted, 1)}
        self.weight_names |= {f"{n}/bias": f"b{i}" for i, n in enumerate(weighted, 1)}
        self.sgd = (spec.learning_rate, spec.momentum, spec.nesterov)
        self.params, self.velocity = {}, {}

    def set_weights(self, weights):
        self.params = {key: value.copy() for key, value in weights.items()}

    def layer_outputs(self, x):
        return dict(zip(self.names, net.predict(self.params, x, self.arch), strict=True))

    def loss_and_gradients(self, x, y):
        return net.loss(self.params, x, y, self.arch, self.spec.loss_path)

    def train_step(self, x, y):
        loss, grads, _ = self.loss_and_gradients(x, y)
        self.params, self.velocity = net.sgd_step(self.params, grads, self.velocity, *self.sgd)
        return loss

    def get_weights(self):
        return {key: value.copy() for key, value in self.params.items()}


def build(spec):
    return CS231nLeNet5(spec)
