"""The float64 judge's rule (compare/judge/float64.py), on synthetic arrays: NumPy only."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from compare.judge import float64 as judge
from compare.judge.checks import MARGIN_CAP
from compare.sides.protocol import LayerSpec

RULE = judge.DEFAULT_RULE
EPS32 = judge.EPS32


def _noisy(rng: np.random.Generator, exact: np.ndarray, sigma: float) -> np.ndarray:
    """A float32 result: the exact value plus relative noise of ``sigma``, rounded."""
    return (exact * (1 + sigma * rng.standard_normal(exact.shape))).astype(np.float32)


@pytest.fixture
def honest() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(implementation, reference, judge): two independent float32 results of one value."""
    rng = np.random.default_rng(0)
    exact = rng.standard_normal((64, 10))
    return _noisy(rng, exact, 3e-7), _noisy(rng, exact, 3e-7), exact


def test_honest_float32_noise_passes(honest: tuple[np.ndarray, ...]) -> None:
    actual, expected, exact = honest
    check = judge.judge_float32("forward", "fc1", actual, expected, exact, 100)
    assert check.status == "pass" and check.problem is None
    assert 0 < check.margin < 1
    assert check.n_bad == 0 and check.size == actual.size
    # the judged distance is the distance to the judge
    assert check.max_abs_err == pytest.approx(float(np.abs(actual - exact).max()))


def test_a_planted_error_fails_with_a_large_margin(honest: tuple[np.ndarray, ...]) -> None:
    actual, expected, exact = honest
    bug = (actual * np.float32(1 + 1e-4)).astype(np.float32)
    check = judge.judge_float32("forward", "fc1", bug, expected, exact, 100)
    assert check.status == "fail"
    assert check.margin > 20
    assert check.n_bad > 0 and check.first_bad_index is not None
    assert check.problem is not None
    assert f"{check.n_bad} of {bug.size} element(s) beyond" in check.problem
    assert "the worst, at" in check.problem
    assert f"{RULE.k:g} × the float32 reference" in check.problem
    # the allowed largest distance is recorded as atol
    ref_max = float(np.abs(expected.astype(np.float64) - exact).max())
    floor = RULE.floor32 * EPS32 * RULE.scale(100) * float(np.abs(exact).max())
    assert check.atol == pytest.approx(RULE.k * ref_max + floor)


def test_the_reference_itself_passes(honest: tuple[np.ndarray, ...]) -> None:
    _, expected, exact = honest
    check = judge.judge_float32("forward", "fc1", expected, expected, exact, 100)
    assert check.passed
    assert 0.5 / RULE.k < check.margin <= 1 / RULE.k  # the floor makes it a little less


def test_the_floor_keeps_a_bit_identical_reference_from_a_zero_tolerance() -> None:
    exact = np.linspace(-2.0, 2.0, 101)
    expected = exact.astype(np.float32)  # rounds; the judge is the float32 value exactly
    judge64 = expected.astype(np.float64)
    one_ulp = np.nextafter(expected, np.float32(np.inf))
    check = judge.judge_float32("forward", "fc1", one_ulp, expected, judge64, 10_000)
    assert check.passed, check.problem
    assert check.atol == pytest.approx(RULE.floor32 * EPS32 * RULE.scale(10_000) * 2.0)
    # the same ulp with a reduction length of 1 is beyond the floor
    assert not judge.judge_float32("forward", "fc1", one_ulp, expected, judge64, 1).passed
    # and a real error is beyond it at any length
    off = (expected * np.float32(1.001)).astype(np.float32)
    assert judge.judge_float32("forward", "fc1", off, expected, judge64, 10_000).failed
    # bit-identical to a bit-identical reference: distance 0, margin 0
    same = judge.judge_float32("forward", "fc1", expected, expected, judge64, 1)
    assert same.passed and same.margin == 0.0


def test_the_floor_scales_with_the_magnitude() -> None:
    base = np.linspace(0.5, 1.0, 50).astype(np.float32)
    for scale in (1e-6, 1.0, 1e6):
        expected = (base * np.float32(scale)).astype(np.float32)
        check = judge.judge_float32(
            "gradient", "fc1/bias", expected, expected, expected.astype(np.float64), 256
        )
        assert check.atol == pytest.approx(
            RULE.floor32 * EPS32 * RULE.scale(256) * float(expected.max())
        )


def test_a_systematic_shift_fails_on_rms_with_no_element_beyond_the_max() -> None:
    rng = np.random.default_rng(1)
    exact = rng.standard_normal(10_000)
    noise = 1e-7 * rng.standard_normal((2, exact.size))
    expected = exact + noise[0]
    # every element within the reference's largest distance, but all of them about that far
    ref_max = float(np.abs(noise[0]).max())
    actual = exact + 0.9 * ref_max * np.sign(noise[1])
    rule = judge.JudgeRule(k=1.0, k_training=1.0, floor32=0.0, floor64=1.0, step_growth=0.0)
    check = judge.judge_float32("forward", "fc1", actual, expected, exact, 1, rule)
    assert check.failed and check.n_bad == 0
    assert check.margin >= 1 and check.first_bad_index is None
    assert check.problem is not None and check.problem.startswith("0 of 10000 element(s)")


def test_margin_is_distance_over_allowance_and_fails_exactly_at_one() -> None:
    exact = np.zeros(4)
    expected = np.array([0.0, 0.0, 0.0, 1e-6])
    rule = judge.JudgeRule(k=2.0, k_training=2.0, floor32=0.0, floor64=1.0, step_growth=0.0)
    at_limit = np.array([0.0, 0.0, 0.0, 2e-6])  # exactly k × the reference: passes
    check = judge.judge_float32("forward", "x", at_limit, expected, exact, 1, rule)
    assert check.passed and check.margin < 1
    half = judge.judge_float32("forward", "x", at_limit / 2, expected, exact, 1, rule)
    assert half.margin == pytest.approx(0.5)
    beyond = judge.judge_float32("forward", "x", at_limit * 3, expected, exact, 1, rule)
    assert beyond.failed and beyond.margin == pytest.approx(3.0)
    assert beyond.first_bad_index == (3,) and beyond.worst_index == (3,)
    # a zero allowance against a non-zero distance: the cap, still finite
    flat = judge.judge_float32("forward", "x", at_limit, exact, exact, 1, rule)
    assert flat.failed and flat.margin == MARGIN_CAP and math.isfinite(flat.margin)


def test_nan_and_inf_must_sit_at_the_same_places() -> None:
    expected = np.array([1.0, np.nan, np.inf, 4.0], dtype=np.float32)
    judge64 = np.array([1.0, np.nan, np.inf, 4.0])
    same = expected.copy()
    assert judge.judge_float32("forward", "x", same, expected, judge64, 1).passed
    moved = np.array([np.nan, 2.0, np.inf, 4.0], dtype=np.float32)
    check = judge.judge_float32("forward", "x", moved, expected, judge64, 1)
    assert check.failed and check.margin == MARGIN_CAP
    assert check.problem is not None and "NaN at different places" in check.problem
    assert check.first_bad_index == (0,)
    signed = np.array([1.0, np.nan, -np.inf, 4.0], dtype=np.float32)
    assert "Inf at different places" in str(
        judge.judge_float32("forward", "x", signed, expected, judge64, 1).problem
    )
    # NaN against a number is never hidden: not in float64 either
    check64 = judge.judge_float64("forward", "x", moved.astype(np.float64), judge64, 1)
    assert check64.failed and check64.margin == MARGIN_CAP


def test_shape_and_dtype_mismatches_fail_like_compare_arrays() -> None:
    expected = np.zeros((2, 3), np.float32)
    j = np.zeros((2, 3))
    shape = judge.judge_float32("forward", "x", np.zeros((3, 2), np.float32), expected, j, 1)
    assert shape.failed and "shape (3, 2) != expected (2, 3)" in str(shape.problem)
    dtype = judge.judge_float32("forward", "x", np.zeros((2, 3)), expected, j, 1)
    assert dtype.failed and "dtype float64 != expected float32" in str(dtype.problem)


def test_the_judge_must_be_float64_and_finite_where_the_reference_is() -> None:
    expected = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="The judge is a float64 run"):
        judge.judge_float32("forward", "x", expected, expected, expected, 1)
    with pytest.raises(ValueError, match="shape"):
        judge.judge_float32("forward", "x", expected, expected, np.ones(4), 1)
    broken = judge.judge_float32("forward", "x", expected, expected, np.array([1, np.nan, 1]), 1)
    assert broken.status == "n/a" and "cannot judge" in str(broken.problem)
    with pytest.raises(ValueError, match="reduction length"):
        judge.judge_float32("forward", "x", expected, expected, np.ones(3), 0)
    with pytest.raises(ValueError, match="kind"):
        judge.judge_float32("sideways", "x", expected, expected, np.ones(3), 1)


def test_float64_is_judged_by_its_own_rounding() -> None:
    rng = np.random.default_rng(2)
    expected = rng.standard_normal(1000)
    assert judge.judge_float64("forward", "x", expected.copy(), expected, 1).margin == 0.0
    ulps = expected * (1 + judge.EPS64 * rng.standard_normal(expected.size))
    check = judge.judge_float64("forward", "x", ulps, expected, 25)
    assert check.passed and 0 < check.margin < 1
    bug = judge.judge_float64("forward", "x", expected * (1 + 1e-10), expected, 25)
    assert bug.failed and bug.margin > 1e3
    # a backend computing in float32 inside can be judged only to float32's epsilon
    float32_inside = expected.astype(np.float32).astype(np.float64)
    assert judge.judge_float64("forward", "x", float32_inside, expected, 25).failed
    loose = judge.judge_float64("forward", "x", float32_inside, expected, 25, eps=EPS32)
    assert loose.passed


def test_the_precision_ladder_covers_an_ill_conditioned_float64_result() -> None:
    # A sum that cancels to (nearly) 0, like the gradient of a bias under batch normalization:
    # float64 noise of order eps64 * sqrt(n) * |terms|, with a result of magnitude ~0, so the
    # floor (relative to the result) allows nothing. The float32 run shows the same
    # cancellation at float32's scale; eps64 / eps32 times its distance covers the float64 noise.
    rng = np.random.default_rng(7)
    terms = rng.standard_normal((16, 4096))
    terms -= terms.mean(axis=1, keepdims=True)  # every row sums to ~0 in exact arithmetic
    expected = terms.sum(axis=1)  # the float64 reference: ~1e-13 noise
    ours = terms[:, ::-1].sum(axis=1)  # another order: other noise of the same size
    lower = terms.astype(np.float32).sum(axis=1).astype(np.float64)  # the float32 run
    bare = judge.judge_float64("gradient", "b", ours, expected, 4096)
    assert bare.failed  # the floor alone allows ~eps64 * |noise|
    rule = dataclasses.replace(RULE, k_ladder=RULE.k_ladder or 1.0)
    laddered = judge.judge_float64("gradient", "b", ours, expected, 4096, rule, lower=lower)
    assert laddered.passed
    # a real error stays far beyond it, and the message says how the allowance was made
    bug = judge.judge_float64("gradient", "b", ours + 1e-6, expected, 4096, rule, lower=lower)
    assert bug.failed and bug.margin > 10
    assert "float32 reference's distance" in str(bug.problem)
    # what k_ladder the pair needs, and that it is what the rule then needs to pass
    needed = judge.k_ladder_needed(ours, expected, lower, 4096)
    assert 0 < needed < rule.k_ladder
    tight = dataclasses.replace(RULE, k_ladder=needed * 0.99)
    assert judge.judge_float64("gradient", "b", ours, expected, 4096, tight, lower=lower).failed
    assert judge.k_ladder_needed(expected, expected, lower, 4096) == 0.0


def test_the_float64_bound_grows_with_the_step() -> None:
    expected = np.ones(10)
    actual = expected * (1 + 3 * judge.EPS64)
    rule = judge.JudgeRule(k=1, k_training=1, floor32=0, floor64=1.0, step_growth=1.0)
    assert judge.judge_float64("training", "x", actual, expected, 1, rule).failed
    late = judge.judge_float64("training", "x", actual, expected, 1, rule, step=4)
    assert late.passed
    early = judge.judge_float64("training", "x", actual, expected, 1, rule, step=2)
    assert early.failed and early.step == 2


def _trajectory(steps: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    exact = np.cumsum(rng.standard_normal((steps, 20, 5)), axis=0)
    grow = np.arange(1, steps + 1).reshape(-1, 1, 1) * 1e-7
    ref = (exact * (1 + grow * rng.standard_normal(exact.shape))).astype(np.float32)
    ours = (exact * (1 + grow * rng.standard_normal(exact.shape))).astype(np.float32)
    return ours, ref, exact


def test_an_honest_trajectory_passes() -> None:
    ours, ref, exact = _trajectory(16, np.random.default_rng(3))
    check = judge.judge_trajectory_float32("fc1/kernel", ours, ref, exact, 256)
    assert check.passed and check.step is None and check.kind == "training"


def test_a_trajectory_records_its_first_bad_step() -> None:
    ours, ref, exact = _trajectory(16, np.random.default_rng(4))
    ours[6:] = (ours[6:] * np.float32(1.001)).astype(np.float32)  # from step 7 on
    check = judge.judge_trajectory_float32("fc1/kernel", ours, ref, exact, 256)
    assert check.failed and check.step == 7
    assert check.first_bad_index is not None and check.first_bad_index[0] == 6
    assert check.problem is not None and "from step 7 on" in check.problem
    # steps can be named (snapshots)
    at = np.arange(10, 170, 10)
    named = judge.judge_trajectory_float32("fc1/kernel", ours, ref, exact, 256, steps=at)
    assert named.step == 70


def test_the_reference_enters_a_trajectory_as_its_running_maximum() -> None:
    exact = np.zeros((4, 3))
    ref = np.zeros((4, 3))
    ref[1] = 1e-6  # far at step 2, back on the judge later: the allowance does not shrink
    ours = np.full((4, 3), 1e-6)
    ours[0] = 0.0
    rule = judge.JudgeRule(k=1.5, k_training=1.5, floor32=0.0, floor64=1.0, step_growth=0.0)
    check = judge.judge_trajectory_float32("x", ours, ref, exact, 1, rule)
    assert check.passed, check.problem
    assert check.margin == pytest.approx(1 / 1.5)


def test_a_scalar_trajectory_and_a_float64_trajectory() -> None:
    exact = np.linspace(2.3, 0.5, 16)
    ref = exact * (1 + 1e-7 * np.cos(np.arange(16)))
    ours = exact * (1 + 1e-7 * np.sin(np.arange(16)))
    assert judge.judge_trajectory_float32("step loss", ours, ref, exact, 3000).passed
    bad = ours.copy()
    bad[9] *= 1.01
    assert judge.judge_trajectory_float32("step loss", bad, ref, exact, 3000).step == 10
    wide = exact * (1 + judge.EPS64 * np.arange(16) ** 1.5)
    check = judge.judge_trajectory_float64("step loss", wide, exact, 3000)
    assert check.passed
    bad64 = exact.copy()
    bad64[9] *= 1.01
    assert judge.judge_trajectory_float64("step loss", bad64, exact, 3000).step == 10
    with pytest.raises(ValueError, match="axis 0"):
        judge.judge_trajectory_float64("step loss", np.array(1.0), np.array(1.0), 1)


def test_an_empty_tensor_passes_with_margin_zero() -> None:
    empty = np.zeros((0, 3), np.float32)
    check = judge.judge_float32("forward", "x", empty, empty, np.zeros((0, 3)), 1)
    assert check.passed and check.margin == 0.0 and check.size == 0


def test_a_count_may_differ_by_one_outcome() -> None:
    total = 2000
    assert judge.judge_count("training", "held-out accuracy", 0.9005, 0.9, total).passed
    assert judge.judge_count("training", "held-out accuracy", 0.901, 0.9, total).failed


def test_a_float32_count_is_judged_by_the_digits_the_reference_flips() -> None:
    """A float32 training run that parts from float64 within the epoch flips digits honestly:
    the count is judged by its distance to the float64 run's, within k_training times the
    digits the reference decided differently from it, plus the count tolerance."""
    total = 2000
    judged, flips = np.array([0.9]), np.array([5 / total])  # the reference flipped 5 digits
    allowed = (RULE.k_training * 5 + judge.COUNT_TOLERANCE) / total
    near = judge.judge_count(
        "training",
        "held-out accuracy",
        judged + allowed * 0.99,
        np.array([0.9025]),
        total,
        judge=judged,
        disagreement=flips,
    )
    assert near.passed and near.atol == pytest.approx(allowed)
    far = judge.judge_count(
        "training",
        "held-out accuracy",
        judged + allowed * 1.01,
        np.array([0.9025]),
        total,
        judge=judged,
        disagreement=flips,
    )
    assert far.failed
    # no flips: the count tolerance alone, now around the judge's count
    still = judge.judge_count(
        "training",
        "held-out accuracy",
        np.array([0.9005]),
        np.array([0.9]),
        total,
        judge=judged,
        disagreement=np.zeros(1),
    )
    assert still.passed
    # the flips' running maximum: a later epoch keeps an earlier epoch's allowance
    two = judge.judge_count(
        "training",
        "held-out accuracy",
        np.array([0.9, 0.9 + 4 / total]),
        np.array([0.9, 0.9]),
        total,
        judge=np.array([0.9, 0.9]),
        disagreement=np.array([1 / total, 0.0]),
    )
    assert two.passed
    with pytest.raises(ValueError, match="fraction in"):
        judge.judge_count(
            "training",
            "held-out accuracy",
            judged,
            judged,
            total,
            judge=judged,
            disagreement=np.array([2.0]),
        )


def test_the_summation_spread_is_recursive_over_pairwise_rounding() -> None:
    assert judge.summation_spread(1) == 1.0 and judge.summation_spread(2) == pytest.approx(
        math.sqrt(2)
    )
    assert judge.summation_spread(16384) == pytest.approx(math.sqrt(16384 / 14))
    with pytest.raises(ValueError, match="reduction length"):
        judge.summation_spread(0)


def test_an_unresolved_tensor_allows_another_summation_order() -> None:
    """A cancelling sum (a bias before a batch normalization: exactly 0) is rounding at
    float32: an implementation summing in another order may land farther from 0 than the
    reference by up to the summation spread, and passes; a real error is far beyond that."""
    rng = np.random.default_rng(3)
    length = 256 * 8 * 8
    exact = 1e-18 * rng.standard_normal(16)  # the float64 run: rounding of an exact 0
    reference = (1e-9 * rng.standard_normal(16)).astype(np.float32)  # a pairwise sum's rounding
    ours = (8e-9 * rng.standard_normal(16)).astype(np.float32)  # a recursive sum's, 8x larger
    check = judge.judge_float32("gradient", "conv2/bias", ours, reference, exact, length)
    assert check.passed, check.problem
    spread = judge.summation_spread(length)
    assert 8 / (RULE.k * spread) < check.margin < 8 / RULE.k
    bug = (1e-4 * rng.standard_normal(16)).astype(np.float32)  # a sum over the wrong axis
    failed = judge.judge_float32("gradient", "conv2/bias", bug, reference, exact, length)
    assert failed.failed and failed.margin > 1e3
    assert "summation spread" in (failed.problem or "")
    # a tensor float32 resolves keeps k alone: the same 8x noise fails there
    value = rng.standard_normal(16)
    resolved = judge.judge_float32(
        "gradient",
        "fc1/bias",
        (value + 8e-5 * rng.standard_normal(16)).astype(np.float32),
        (value + 1e-5 * rng.standard_normal(16)).astype(np.float32),
        value,
        length,
    )
    assert resolved.failed and "summation spread" not in (resolved.problem or "")
    # in a trajectory, per step: the steps float32 does not resolve get the spread
    steps_exact = np.stack([exact, value])
    steps_ref = np.stack([reference, (value + 1e-7 * rng.standard_normal(16)).astype(np.float32)])
    steps_ours = np.stack([ours, steps_ref[1]])
    trajectory = judge.judge_trajectory_float32(
        "conv2/bias", steps_ours, steps_ref, steps_exact, length
    )
    assert trajectory.passed, trajectory.problem


def test_the_rule_refuses_nonsense_constants() -> None:
    with pytest.raises(ValueError, match="k and k_training must be >= 1"):
        judge.JudgeRule(k=0.5, k_training=1, floor32=0, floor64=0, step_growth=0)
    with pytest.raises(ValueError, match="floor64"):
        judge.JudgeRule(k=1, k_training=1, floor32=0, floor64=math.nan, step_growth=0)
    assert RULE.growth(None) == 1.0 and RULE.growth(1) == 1.0


def _lenet(variant: str) -> list[LayerSpec]:
    same = variant == "classic"
    first = 28 if same else 24
    second = first // 2 - 4
    flat = (second // 2) ** 2 * 16
    act = "tanh" if same else "relu"

    def conv(name: str, cin: int, cout: int, size: int) -> LayerSpec:
        return LayerSpec(
            name,
            "Conv2D",
            {"kernel_size": [5, 5], "activation": act, "strides": [1, 1]},
            (size, size, cin),
            (size, size, cout),
            {"kernel": (5, 5, cin, cout), "bias": (cout,)},
        )

    def pool(name: str, size: int, c: int) -> LayerSpec:
        return LayerSpec(
            name,
            "AveragePooling2D",
            {"pool_size": [2, 2], "strides": [2, 2]},
            (size, size, c),
            (size // 2, size // 2, c),
        )

    def dense(name: str, n_in: int, n_out: int, activation: str) -> LayerSpec:
        return LayerSpec(
            name,
            "Dense",
            {"units": n_out, "activation": activation},
            (n_in,),
            (n_out,),
            {"kernel": (n_in, n_out), "bias": (n_out,)},
        )

    return [
        conv("conv1", 1, 6, first),
        pool("pool1", first, 6),
        conv("conv2", 6, 16, second),
        pool("pool2", second, 16),
        LayerSpec("flatten", "Flatten", {}, (second // 2, second // 2, 16), (flat,)),
        dense("fc1", flat, 120, act),
        dense("fc2", 120, 84, act),
        dense("output", 84, 10, "softmax"),
    ]


def test_reduction_lengths_of_lenet5() -> None:
    lengths = judge.reduction_lengths(_lenet("keras-docs"), 256)
    forward = [lengths[("forward", n)] for n in ("conv1", "pool1", "conv2", "pool2", "flatten")]
    assert forward == [25, 29, 179, 183, 184]
    assert lengths[("forward", "fc1")] == 184 + 256
    assert lengths[("forward", "output")] == 184 + 256 + 120 + 84 + 10
    top = lengths[("forward", "output")]
    assert lengths[("gradient", "loss")] == top + 256 * 10
    assert lengths[("gradient", "output/kernel")] == top + 256
    assert lengths[("gradient", "output/bias")] == top + 256
    assert lengths[("gradient", "fc2/kernel")] == top + 20 + 256  # output's dx: 10 units + softmax
    # conv1's kernel gradient sums over the batch and its 24 x 24 positions
    below = top + 20 + 84 + 120 + 1 + 1 + 5 * 5 * 16 + 1
    assert lengths[("gradient", "conv1/kernel")] == below + 256 * 24 * 24
    assert lengths[("gradient", "input")] == below + 5 * 5 * 6
    assert lengths[("training", "conv1/kernel")] == lengths[("gradient", "conv1/kernel")]
    assert lengths[("training", "step loss")] == lengths[("gradient", "loss")]
    classic = judge.reduction_lengths(_lenet("classic"), 32)
    assert classic[("forward", "fc1")] == 25 + 4 + 150 + 4 + 1 + 400


def test_layer_lengths_of_other_layers() -> None:
    overlapping = LayerSpec(
        "p", "MaxPooling2D", {"pool_size": [3, 3], "strides": [1, 1]}, (8, 8, 2), (6, 6, 2)
    )
    mine = judge.layer_lengths(overlapping, 4)
    assert (mine.output, mine.input_grad, dict(mine.params)) == (9, 9, {})
    norm = LayerSpec(
        "bn", "BatchNormalization", {}, (8, 8, 2), (8, 8, 2), {"gamma": (2,), "beta": (2,)}
    )
    assert judge.layer_lengths(norm, 4).params == {"gamma": 4 * 64, "beta": 4 * 64}
    with pytest.raises(ValueError, match="batch"):
        judge.layer_lengths(norm, 0)
    with pytest.raises(ValueError, match="at least one layer"):
        judge.reduction_lengths([], 4)


def test_a_trajectory_is_judged_until_the_first_relu_flip() -> None:
    ours, ref, exact = _trajectory(16, np.random.default_rng(5))
    ours[6:] = (ours[6:] * np.float32(1.001)).astype(np.float32)  # a flip at step 7
    assert judge.judge_trajectory_float32("fc1/kernel", ours, ref, exact, 256).step == 7
    before = judge.judge_trajectory_float32("fc1/kernel", ours, ref, exact, 256, until=6)
    assert before.passed and before.size == 6 * 20 * 5
    none = judge.judge_trajectory_float32("fc1/kernel", ours, ref, exact, 256, until=0)
    assert none.status == "n/a" and "relu kink" in str(none.problem)
