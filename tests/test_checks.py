"""The one comparison helper: structure first (shape, dtype, NaN/Inf places), then errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compare.judge.checks import Tolerance, compare_arrays, error_profile

TOL = Tolerance(atol=1e-6, rtol=1e-3)


def test_equal_arrays_pass_with_zero_error() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = compare_arrays("forward", "conv1", a, a.copy(), TOL)
    assert c.passed and c.max_abs_err == 0.0 and c.max_rel_err == 0.0 and c.n_bad == 0
    assert (c.kind, c.name, c.size, c.atol, c.rtol) == ("forward", "conv1", 6, 1e-6, 1e-3)


def test_errors_worst_index_and_bad_count() -> None:
    b = np.array([[1.0, 2.0], [3.0, 4.0]])
    a = b.copy()
    a[1, 0] += 0.5  # abs 0.5, rel 0.5 / 6.5
    a[0, 1] += 1e-7  # within atol
    c = compare_arrays("gradient", "fc1/kernel", a, b, TOL)
    assert not c.passed and c.n_bad == 1 and c.worst_index == (1, 0)
    assert c.max_abs_err == pytest.approx(0.5)
    assert c.max_rel_err == pytest.approx(0.5 / 6.5)
    assert "1 of 4" in (c.problem or "")


def test_an_element_fails_only_beyond_both_atol_and_rtol() -> None:
    big = np.array([1e3])
    # abs 1e-3 > atol, but rel 5e-7 <= rtol: passes
    assert compare_arrays("forward", "x", big + 1e-3, big, TOL).passed
    tiny = np.array([1e-9])
    # rel ~1 > rtol, but abs 1e-9 <= atol: passes
    assert compare_arrays("forward", "x", -tiny, tiny, TOL).passed
    assert not compare_arrays("forward", "x", np.array([1.0]), np.array([1.01]), TOL).passed


@pytest.mark.parametrize(
    ("a", "b", "problem"),
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), "shape (2, 3) != expected (3, 2)"),
        (np.zeros(3, np.float32), np.zeros(3), "dtype float32 != expected float64"),
        (np.array([np.nan, 1.0]), np.array([0.0, 1.0]), "NaN at different places"),
        (np.array([np.inf, 1.0]), np.array([1e308, 1.0]), "+Inf at different places"),
        (np.array([np.inf, 1.0]), np.array([-np.inf, 1.0]), "+Inf at different places"),
        (np.array([-np.inf]), np.array([np.nan]), "NaN at different places"),
    ],
)
def test_structure_mismatches_fail_before_any_error_is_computed(
    a: np.ndarray, b: np.ndarray, problem: str
) -> None:
    c = compare_arrays("forward", "conv1", a, b, Tolerance(1e9, 1e9))
    assert not c.passed and c.problem is not None and c.problem.startswith(problem), c.problem
    assert c.max_abs_err is None and c.worst_index is None


def test_matching_nan_and_inf_count_as_exact_and_are_not_zeroed_away() -> None:
    a = np.array([np.nan, np.inf, -np.inf, 1.0])
    c = compare_arrays("forward", "x", a, a.copy(), Tolerance(0.0, 0.0))
    assert c.passed and c.max_abs_err == 0.0
    b = a.copy()
    b[3] = 2.0
    c = compare_arrays("forward", "x", a, b, TOL)
    assert not c.passed and c.worst_index == (3,) and math.isfinite(c.max_abs_err or 0)


def test_scalars_and_empty_arrays() -> None:
    assert compare_arrays("gradient", "loss", np.float32(2.3), np.float32(2.3), TOL).passed
    c = compare_arrays("finite-difference", "conv1/bias", np.empty(0), np.empty(0), TOL)
    assert c.passed and c.size == 0 and c.worst_index is None


def test_relative_error_is_cs231n_with_tiny_floor() -> None:
    c = compare_arrays("forward", "x", np.array([0.0]), np.array([0.0]), Tolerance(0.0, 0.0))
    assert c.passed and c.max_rel_err == 0.0
    c = compare_arrays("forward", "x", np.array([3.0]), np.array([1.0]), TOL)
    assert c.max_rel_err == pytest.approx(2.0 / 4.0)


def test_bad_kind_and_tolerance_are_rejected() -> None:
    with pytest.raises(ValueError, match="kind="):
        compare_arrays("backward", "x", np.zeros(1), np.zeros(1), TOL)
    with pytest.raises(ValueError, match="atol"):
        Tolerance(-1.0, 0.0)
    with pytest.raises(ValueError, match="rtol"):
        Tolerance(0.0, float("nan"))


def test_error_profile_takes_rtol_from_large_elements_only() -> None:
    b = np.array([10.0, 1e-6, 5.0])
    a = b + np.array([1e-5, 1e-6, 0.0])  # the tiny element has rel 1/3, a large one 5e-7
    p = error_profile(a, b)
    assert p.max_abs == pytest.approx(1e-5)
    assert p.max_rel == pytest.approx(1 / 3)
    assert p.max_rel_large == pytest.approx(1e-5 / 20.00001)
    assert p.merge(error_profile(b, b)) == p
    with pytest.raises(ValueError, match="honest"):
        error_profile(np.zeros(2), np.zeros(3))


def test_a_nan_mismatch_names_its_first_element() -> None:
    expected = np.array([1.0, 2.0, 3.0, 4.0])
    actual = expected.copy()
    actual[2:] = np.nan  # a diverging run: NaN from the third step on
    c = compare_arrays("training", "step loss", actual, expected, TOL)
    assert not c.passed and c.first_bad_index == (2,)
    assert "NaN at different places" in (c.problem or "")
