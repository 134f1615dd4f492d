"""A float64 central-difference gradient checker for the scratch layers and models.

The comparison is the norm-wise relative error, computed separately for every tensor (the input
gradient and each parameter):

    error = ||analytic - numeric||_2 / (||analytic||_2 + ||numeric||_2)

This is the gradient-checking recipe of Andrew Ng's Deep Learning Specialization (course 2,
"Improving Deep Neural Networks", week 1, "Gradient checking"), where an error of about 1e-7
means the gradient is right, 1e-5 deserves a look and 1e-3 is a bug. ``THRESHOLD`` is that
1e-7.

The step size ``H`` and the central differences are lenet-parity's own
(``compare.parity.finite_difference``, where the choice of h = 1e-5 is measured and explained).

Large tensors are checked on a seeded random sample of at most ``MAX_ENTRIES`` entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from compare.parity.finite_difference import H, numerical_gradient, sample_indices

# Andrew Ng's gradient-checking threshold (Deep Learning Specialization, course 2, week 1).
THRESHOLD = 1e-7
MAX_ENTRIES = 60


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """||a - n||_2 / (||a||_2 + ||n||_2); 0 when both are exactly zero."""
    a = np.asarray(analytic, dtype=np.float64).ravel()
    n = np.asarray(numeric, dtype=np.float64).ravel()
    assert a.shape == n.shape, (a.shape, n.shape)
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    if denom == 0:
        return 0.0
    return float(np.linalg.norm(a - n) / denom)


def gradcheck(
    f: Callable[[], float],
    tensors: Mapping[str, np.ndarray],
    analytic: Mapping[str, np.ndarray],
    *,
    h: float = H,
    max_entries: int = MAX_ENTRIES,
    seed: int = 0,
) -> dict[str, float]:
    """Relative error per tensor between ``analytic[name]`` and the central-difference gradient
    of ``f()`` with respect to ``tensors[name]`` (live arrays that ``f`` reads)."""
    assert tensors.keys() == analytic.keys(), (sorted(tensors), sorted(analytic))
    rng = np.random.default_rng(seed)
    errors = {}
    for name, t in tensors.items():
        a = np.asarray(analytic[name])
        assert a.shape == t.shape, (name, a.shape, t.shape)
        idx = sample_indices(t.shape, rng, max_entries)
        errors[name] = relative_error(a[idx], numerical_gradient(f, t, idx, h))
    return errors


def check_layer(
    layer,
    x: np.ndarray,
    *,
    training: bool = False,
    before_forward: Callable[[], None] | None = None,
    seed: int = 0,
    h: float = H,
    max_entries: int = MAX_ENTRIES,
) -> dict[str, float]:
    """Errors of ``layer.backward`` (key ``"input"``) and ``layer.grads`` (each param key) for
    the scalar f = sum(forward(x) * dout), with a fixed standard-normal ``dout``.

    ``before_forward`` runs before every forward pass, e.g. to reseed a Dropout layer so that
    each evaluation draws the same mask.
    """

    def forward() -> np.ndarray:
        if before_forward is not None:
            before_forward()
        return layer.forward(x, training=training)

    dout = np.random.default_rng(seed + 1).standard_normal(forward().shape)
    forward()
    analytic = {"input": np.array(layer.backward(dout))}
    analytic.update({k: np.array(v) for k, v in layer.grads.items()})
    tensors = {"input": x, **layer.params}

    def f() -> float:
        return float(np.sum(forward() * dout))

    return gradcheck(f, tensors, analytic, h=h, max_entries=max_entries, seed=seed)


def check_model(
    model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int = 0,
    h: float = H,
    max_entries: int = MAX_ENTRIES,
) -> dict[str, float]:
    """Errors of ``model.loss_and_all_gradients``: each ``"<layer>/<param>"`` and dloss/dinput
    (key ``"input"``) against central differences of the loss. ``loss_and_gradients`` must give
    the same parameter gradients bit for bit."""
    _, grads, dx = model.loss_and_all_gradients(x, y)
    analytic = {k: np.array(v) for k, v in grads.items()}
    analytic["input"] = np.array(dx)
    _, grads_only = model.loss_and_gradients(x, y)
    for key, g in grads_only.items():
        np.testing.assert_array_equal(g, analytic[key], err_msg=key)
    tensors = {**model.params, "input": x}

    def f() -> float:
        model.forward(x, training=True)
        loss, _ = model.compute_loss(y)
        return float(loss)

    return gradcheck(f, tensors, analytic, h=h, max_entries=max_entries, seed=seed)
