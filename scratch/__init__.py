"""scratch: LeNet-5 from scratch in NumPy, with Keras's layer names, layouts and semantics.

This package imports nothing but NumPy. Layouts are Keras's: NHWC inputs, HWIO conv kernels,
Dense kernels ``(in, units)``, Flatten in channels-last order; weights and gradients are dicts
keyed ``"<layer name>/<param>"``.
"""

from scratch import initializers, regularizers
from scratch.activation_layers import Activation, ReLU, Softmax
from scratch.conv import Conv2D
from scratch.dense import Dense
from scratch.layer import Layer
from scratch.lenet import VARIANTS, build_lenet5
from scratch.losses import (
    EPSILON,
    CategoricalCrossentropy,
    crossentropy_from_logits,
    crossentropy_from_probabilities,
)
from scratch.model import Sequential, accuracy
from scratch.normalization import BatchNormalization
from scratch.optimizers import SGD
from scratch.pooling import AveragePooling2D, MaxPooling2D
from scratch.regularization import Dropout
from scratch.regularizers import L1, L1L2, L2
from scratch.reshaping import Flatten
from scratch.training import History, batch_indices, fit

__all__ = [
    "EPSILON",
    "L1",
    "L1L2",
    "L2",
    "SGD",
    "VARIANTS",
    "Activation",
    "AveragePooling2D",
    "BatchNormalization",
    "CategoricalCrossentropy",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "History",
    "Layer",
    "MaxPooling2D",
    "ReLU",
    "Sequential",
    "Softmax",
    "accuracy",
    "batch_indices",
    "build_lenet5",
    "crossentropy_from_logits",
    "crossentropy_from_probabilities",
    "fit",
    "initializers",
    "regularizers",
]
