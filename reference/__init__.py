"""reference: the Keras 3 LeNet-5 that scratch/ is compared against (Keras only).

Empty for now: the Keras model, its per-layer outputs and its gradients arrive with the parity
issue. This package will import Keras and nothing from scratch/ or compare/.
"""
