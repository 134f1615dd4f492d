"""Central finite differences in float64: the third opinion on the scratch gradients.

Keras and scratch could agree on a wrong gradient only if both were wrong the same way; a
numerical derivative of the scratch loss itself cannot share a backward-pass bug, so the parity
check compares the scratch gradients with it on sampled entries (see ``compare.parity.run``), and
the test suite's gradient checks use the same functions.

Step size ``H = 1e-5``. The central difference (f(w+h) − f(w−h)) / (2h) has a truncation error
of about h² |f'''| / 6 and a round-off error of about eps |f| / h (eps = 2.2e-16 in float64,
times a small factor for the rounding accumulated by the forward pass). The sum is smallest
near h ~ (3 eps |f| / |f'''|)^(1/3) ~ 1e-5 for |f| and |f'''| of order 1. It was chosen by
measuring h = 1e-3 … 1e-7 on every gradient check of the test suite: single layers, worst 2e-10
at h = 1e-5 against 5e-9 at 1e-4 and 5e-7 at 1e-3 (truncation) and 2e-8 at 1e-7 (round-off);
the whole LeNet-5 loss, 1.5e-8 at h = 1e-5 but 1e-7 at 1e-6, while at 1e-4 one step crossed a
relu kink (conv2/bias error 1e-3), so a larger h is unsafe too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

H = 1e-5
# The tolerance key of a pair of one-sided differences (judged by their own tolerance).
ONE_SIDED = "one-sided"


def sample_indices(
    shape: tuple[int, ...], rng: np.random.Generator, max_entries: int
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
    if t.dtype != np.float64:
        raise ValueError(f"Finite differences run in float64. Received: t.dtype={t.dtype}")
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


def kink_free_differences(
    f: Callable[[], tuple[float, list[np.ndarray]]],
    t: np.ndarray,
    candidates: Iterable[tuple[int, ...]],
    want: int,
    h: float = H,
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Central differences at up to ``want`` entries of ``t``, taken from ``candidates`` in
    order, skipping every entry whose difference straddles a kink.

    ``f`` returns the value and the branch pattern of its piecewise-linear parts (e.g. which
    relu units are positive). When f(t + h) and f(t − h) take different branches, the
    difference quotient mixes two slopes and estimates no derivative — at a relu whose input is
    exactly 0, which zero biases and MNIST's blank background make common, it gives half the
    slope — so such entries are skipped. Returns the entries used and their differences.
    """
    if t.dtype != np.float64:
        raise ValueError(f"Finite differences run in float64. Received: t.dtype={t.dtype}")
    used: list[tuple[int, ...]] = []
    values: list[float] = []
    for pos in candidates:
        if len(used) == want:
            break
        original = t[pos]
        t[pos] = original + h
        f_plus, branches_plus = f()
        t[pos] = original - h
        f_minus, branches_minus = f()
        t[pos] = original
        if all(np.array_equal(p, m) for p, m in zip(branches_plus, branches_minus, strict=True)):
            used.append(pos)
            values.append((f_plus - f_minus) / (2 * h))
    return used, np.array(values)


def one_sided_differences(
    f: Callable[[], tuple[float, list[np.ndarray]]],
    t: np.ndarray,
    candidates: Iterable[tuple[int, ...]],
    want: int,
    h: float = H,
) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Second-order one-sided differences at up to ``want`` entries of ``t``, for entries whose
    central difference straddles a kink: taken on the side where the branch pattern stays the
    one at ``t`` itself, so that they estimate the derivative the analytic gradient takes there.

    At a relu whose input is exactly 0 the pattern at ``t`` says "not positive", so the
    difference is taken on the side where the unit stays off: relu'(0) = 0, as Keras's
    gradient has it (TensorFlow's ``ReluGrad`` is ``where(x > 0, dy, 0)``). A blank window
    under a zero conv bias is such a unit, and it leaves central differences nothing to use.
    Backward first, (3 f(t) - 4 f(t - h) + f(t - 2h)) / 2h, then forward,
    (-3 f(t) + 4 f(t + h) - f(t + 2h)) / 2h; an entry whose pattern changes on both sides
    within 2h is skipped. Their error is larger than the central difference's: truncation
    h**2 |f3| / 3 against h**2 |f3| / 6 (f3 the third derivative), and round-off
    (3 + 4 + 1) eps |f| / 2h = 4 eps |f| / h against eps |f| / h; hence their own tolerance
    (``FD_ONE_SIDED_ATOL``, ``FD_ONE_SIDED_RTOL`` in ``compare.parity.config``).
    Returns the entries used and their differences; ``t`` is restored exactly.
    """
    if t.dtype != np.float64:
        raise ValueError(f"Finite differences run in float64. Received: t.dtype={t.dtype}")
    f_0, branches_0 = f()
    used: list[tuple[int, ...]] = []
    values: list[float] = []

    def unchanged(branches: list[np.ndarray]) -> bool:
        return all(np.array_equal(b, b0) for b, b0 in zip(branches, branches_0, strict=True))

    for pos in candidates:
        if len(used) == want:
            break
        original = t[pos]
        for direction in (-1.0, 1.0):
            t[pos] = original + direction * h
            f_1, branches_1 = f()
            if not unchanged(branches_1):
                continue
            t[pos] = original + direction * 2 * h
            f_2, branches_2 = f()
            if not unchanged(branches_2):
                continue
            used.append(pos)
            values.append(direction * (-3 * f_0 + 4 * f_1 - f_2) / (2 * h))
            break
        t[pos] = original
    return used, np.array(values)


def window_argmax(
    x: np.ndarray, pool_size: Sequence[int], strides: Sequence[int] | None, padding: str
) -> np.ndarray:
    """Which cell of each max-pooling window holds its maximum: the branch pattern of a max
    pooling layer (Keras's MaxPooling2D on NHWC ``x``; "same" pads with -inf, so a padded cell
    is never the maximum). A finite difference whose two steps move a window's maximum to
    another cell straddles a kink, like a relu crossing 0."""
    ph, pw = (int(v) for v in pool_size)
    sh, sw = (int(v) for v in (strides if strides is not None else pool_size))
    if padding == "same":
        h, w = x.shape[1:3]
        out_h, out_w = -(-h // sh), -(-w // sw)
        pad_h, pad_w = max((out_h - 1) * sh + ph - h, 0), max((out_w - 1) * sw + pw - w, 0)
        # the extra row and column go at the bottom and right, as in Keras
        x = np.pad(
            x,
            ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
            constant_values=-np.inf,
        )
    # (N, H, W, C) -> (N, Ho, Wo, C, ph, pw): every window, strided
    windows = np.lib.stride_tricks.sliding_window_view(x, (ph, pw), axis=(1, 2))[:, ::sh, ::sw]
    # (N, Ho, Wo, C, ph, pw) -> (N, Ho, Wo, C, ph * pw)
    flat = windows.reshape(*windows.shape[:4], ph * pw)
    return flat.argmax(axis=-1)
