"""A float64 central-difference gradient checker for the scratch layers and models.

The comparison is the norm-wise relative error, computed separately for every tensor (the input
gradient and each parameter):

    error = ||analytic - numeric||_2 / (||analytic||_2 + ||numeric||_2)

This is the gradient-checking recipe of Andrew Ng's Deep Learning Specialization (course 2,
"Improving Deep Neural Networks", week 1, "Gradient checking"), where an error of about 1e-7
means the gradient is right, 1e-5 deserves a look and 1e-3 is a bug. ``THRESHOLD`` is that
1e-7.

Step size. The central difference (f(w+h) - f(w-h)) / (2h) has a truncation error of about
h^2 |f'''| / 6 and a round-off error of about eps |f| / h (eps = 2.2e-16 in float64, times a
small factor for the rounding accumulated by the forward pass). The sum is smallest near
h ~ (3 eps |f| / |f'''|)^(1/3) ~ 1e-5 for |f| and |f'''| of order 1. ``H = 1e-5`` was chosen
by measuring h = 1e-3 ... 1e-7 on every check of test_scratch_layers and test_scratch_model:

- single layers: worst 2e-10 at h = 1e-5, against 5e-9 at 1e-4 and 5e-7 at 1e-3 (truncation,
  tanh and sigmoid) and 2e-8 at 1e-7 (round-off, growing as 1/h);
- the whole LeNet-5 loss (a batch mean of ~2.3): the input gradient's entries are ~1e-4, so
  round-off dominates there: 1.5e-8 at h = 1e-5 but 1e-7 at 1e-6. At 1e-4 one step crossed a
  relu kink in the keras-docs variant (conv2/bias error 1e-3), so a larger h is unsafe too.

Large tensors are checked on a seeded random sample of at most ``MAX_ENTRIES`` entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

# Andrew Ng's gradient-checking threshold (Deep Learning Specialization, course 2, week 1).
THRESHOLD = 1e-7
H = 1e-5
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


def sample_indices(
    shape: tuple[int, ...], rng: np.random.Generator, max_entries: int = MAX_ENTRIES
) -> tuple[np.ndarray, ...]:
    """All entries of a small tensor, or a seeded random sample of ``max_entries`` of them, as
    an index tuple usable as ``t[idx]``."""
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= max_entries else rng.choice(size, max_entries, replace=False)
    return np.unravel_index(np.sort(flat), shape)


def numerical_gradient(
    f: Callable[[], float], t: np.ndarray, idx: tuple[np.ndarray, ...], h: float = H
) -> np.ndarray:
    """Central differences of ``f()`` with respect to the entries ``t[idx]``, perturbing ``t``
    in place (``f`` must read the current contents of ``t``) and restoring it exactly."""
    assert t.dtype == np.float64, f"gradient checks run in float64, got {t.dtype}"
    out = np.empty(len(idx[0]))
    for k, pos in enumerate(zip(*idx, strict=True)):
        original = t[pos]
        t[pos] = original + h
        f_plus = f()
        t[pos] = original - h
        f_minus = f()
        t[pos] = original
        out[k] = (f_plus - f_minus) / (2 * h)
    return out


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
