"""The finite differences' kink handling (compare/parity/finite_difference.py): central
differences skip entries whose two steps take different relu branches; one-sided differences
speak there on the side where the unperturbed branch pattern holds (relu'(0) = 0)."""

from __future__ import annotations

import numpy as np
import pytest

from compare.parity.config import FD_ONE_SIDED_ATOL
from compare.parity.finite_difference import H, kink_free_differences, one_sided_differences

# f(b) = sum(v * relu(b + z)) for a bias b of one unit per row of z
V = np.array([2.0, -3.0, 0.5])


def _relu_sum(b: np.ndarray, z: np.ndarray):  # type: ignore[no-untyped-def]
    def f() -> tuple[float, list[np.ndarray]]:
        pre = b[:, None] + z  # (units, inputs)
        return float(np.sum(V[: len(b), None] * np.maximum(pre, 0.0) ** 2 / 2 + pre)), [pre > 0]

    return f


def _analytic(b: np.ndarray, z: np.ndarray) -> np.ndarray:
    pre = b[:, None] + z
    # relu'(0) = 0: an input exactly at 0 contributes nothing through the relu
    return np.sum(V[: len(b), None] * np.maximum(pre, 0.0) + 1.0, axis=1)


def test_an_entry_at_a_relu_kink_gets_no_central_difference_but_a_one_sided_one() -> None:
    b = np.zeros(3)
    z = np.array([[0.0, 0.3, -0.2], [0.0, 0.0, 0.7], [0.4, 0.0, -1.0]])  # each row has a 0
    f = _relu_sum(b, z)
    entries = [(0,), (1,), (2,)]
    used, _ = kink_free_differences(f, b, entries, 3)
    assert used == []
    used, values = one_sided_differences(f, b, entries, 3)
    assert used == entries
    np.testing.assert_allclose(values, _analytic(b, z), rtol=0, atol=FD_ONE_SIDED_ATOL)
    assert np.array_equal(b, np.zeros(3))  # restored exactly


def test_the_one_sided_difference_takes_the_side_that_keeps_the_pattern() -> None:
    # a unit just above 0 (on): the backward side turns it off, the forward side keeps it on
    b = np.zeros(1)
    z = np.array([[0.5 * H, 0.2]])
    f = _relu_sum(b, z)
    assert kink_free_differences(f, b, [(0,)], 1)[0] == []
    used, values = one_sided_differences(f, b, [(0,)], 1)
    assert used == [(0,)]
    np.testing.assert_allclose(values, _analytic(b, z)[:1], rtol=0, atol=FD_ONE_SIDED_ATOL)


def test_an_entry_with_kinks_within_two_steps_on_both_sides_is_skipped() -> None:
    # one unit exactly at 0 (the forward side turns it on), one at 1.5 h (2 h back turns it off)
    b = np.zeros(1)
    z = np.array([[0.0, 1.5 * H]])
    f = _relu_sum(b, z)
    used, values = one_sided_differences(f, b, [(0,)], 1)
    assert used == [] and values.size == 0
    assert np.array_equal(b, np.zeros(1))


def test_the_one_sided_difference_is_second_order_accurate() -> None:
    # f(t) = t**3 at t = 1: exact f' = 3; error = h**2 |f'''| / 3 = 2 h**2 (f''' = 6)
    t = np.ones(1)

    def f() -> tuple[float, list[np.ndarray]]:
        return float(t[0] ** 3), []

    _, values = one_sided_differences(f, t, [(0,)], 1)
    assert abs(values[0] - 3.0) < 4 * H**2
    assert abs(values[0] - 3.0) > 0.5 * H**2  # truly a one-sided formula, not central


# -- the harness: where the branch patterns come from -------------------------------------------
@pytest.mark.keras
def test_batch_normalization_models_read_their_kinks_in_training_mode() -> None:
    # Inference-mode outputs (moving statistics) put the relu kinks elsewhere than the
    # training-mode loss (batch statistics): on seed 1 they hid kinks that made conv1/kernel's
    # central differences miss by 2e-5 relative (margin 218). The patterns now come from the
    # reference in training mode, and every finite difference passes.
    from compare import check_parity
    from compare.parity.collect import pattern_source
    from compare.parity.run import configure, prepare, spec_for

    for model, expected in (("keras-docs", False), ("lenet5-bn-dropout", True)):
        config = configure(model, "float64", epochs=0)
        backend, _ = prepare(config)
        spec = spec_for(config, backend)
        weights = {k: np.zeros(s) for k, s in spec.weight_shapes().items()}
        assert (pattern_source(config, spec, backend, weights) is not None) == expected
    verdict = check_parity(model="lenet5-bn-dropout", dtype="float64", seed=1, epochs=0)
    fd = [c for c in verdict.checks if c.kind == "finite-difference"]
    assert fd and all(c.status == "pass" for c in fd), [(c.name, c.margin) for c in fd]
