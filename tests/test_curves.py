"""Training-curve parity: the shared batch schedule, the step envelope, the time order of the
first failure, and the real side-by-side training of scratch and Keras."""

from __future__ import annotations

import dataclasses

import numpy as np
import on_backend
import pytest

import scratch
from compare.errors import InputError
from compare.judge.checks import ErrorProfile, PerElement, compare_arrays
from compare.judge.tolerances import Envelope, defaults, load_table
from compare.output.text import summary, table
from compare.parity import training as curves
from compare.parity.config import DTYPES, CheckConfig
from compare.parity.run import check_parity, collect_for, judge
from compare.sides import mutants

pytestmark = pytest.mark.keras

VARIANTS = sorted(scratch.VARIANTS)


# -- the schedule --------------------------------------------------------------------------------
def test_schedule_is_one_seeded_permutation_per_epoch() -> None:
    plan = curves.schedule(1000, 256, 3, seed=7)
    assert (plan.steps, plan.steps_per_epoch, plan.epochs) == (12, 4, 3)
    assert [len(b) for b in plan.batches[:4]] == [256, 256, 256, 232]  # Keras keeps the rest
    for epoch in range(3):
        seen = np.concatenate(plan.batches[epoch * 4 : (epoch + 1) * 4])
        np.testing.assert_array_equal(np.sort(seen), np.arange(1000))
    assert not np.array_equal(plan.batches[0], plan.batches[4])  # reshuffled every epoch
    again = curves.schedule(1000, 256, 3, seed=7)
    for a, b in zip(plan.batches, again.batches, strict=True):
        np.testing.assert_array_equal(a, b)
    assert plan.epoch_ends() == [4, 8, 12]
    assert plan.snapshot_steps() == [1, 4, 8, 10, 12]


def test_schedule_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="Received: n=0"):
        curves.schedule(0, 256, 1, seed=0)


# -- the envelope ----------------------------------------------------------------------------------
def _profile(value: float) -> ErrorProfile:
    return ErrorProfile(max_abs=value, max_rel=value, max_rel_large=value)


def test_envelope_is_the_running_maximum_times_the_safety_factor() -> None:
    env = Envelope.from_profiles({1: _profile(1e-7), 5: _profile(4e-7), 3: _profile(2e-7)}, 10)
    assert env.at == (1, 3, 5)
    assert env.atol == pytest.approx((1e-6, 2e-6, 4e-6))
    # a quieter later step does not shrink it
    env = Envelope.from_profiles({1: _profile(3e-7), 2: _profile(1e-7)}, 10)
    assert env.atol == pytest.approx((3e-6, 3e-6))


def test_envelope_between_steps_takes_the_next_calibrated_step() -> None:
    env = Envelope(at=(1, 10, 32), atol=(1.0, 2.0, 3.0), rtol=(0.1, 0.2, 0.3))
    tol = env.over(np.array([1, 2, 10, 11, 32]), "step loss")
    np.testing.assert_array_equal(tol.atol, [1.0, 2.0, 2.0, 3.0, 3.0])
    np.testing.assert_array_equal(tol.rtol, [0.1, 0.2, 0.2, 0.3, 0.3])


def test_envelope_refuses_steps_it_was_not_calibrated_for() -> None:
    env = Envelope(at=(1, 32), atol=(1.0, 2.0), rtol=(0.1, 0.2))
    with pytest.raises(InputError, match="calibrated up to step 32, but this run reaches step 33"):
        env.over(np.array([33]), "step loss")


@pytest.mark.parametrize(
    ("at", "atol"),
    [((2, 1), (1.0, 1.0)), ((1, 2), (2.0, 1.0)), ((1,), (float("nan"),)), ((), ())],
)
def test_envelope_validates(at: tuple[int, ...], atol: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=r"envelope|tolerance"):
        Envelope(at=at, atol=atol, rtol=atol)


def test_per_element_tolerance_reports_the_first_bad_element() -> None:
    expected = np.array([1.0, 1.0, 1.0, 1.0])
    actual = expected + np.array([1e-3, 1e-2, 5e-2, 1e-1])
    tol = PerElement(atol=np.array([1e-2, 1e-3, 1e-1, 1e-2]), rtol=np.zeros(4))
    check = compare_arrays("training", "step loss", actual, expected, tol)
    assert not check.passed and check.n_bad == 2
    assert check.first_bad_index == (1,)
    assert check.worst_index == (3,) and check.atol == 1e-2  # the worst element's tolerance
    with pytest.raises(ValueError, match="shape"):
        compare_arrays("training", "x", actual, expected, PerElement(np.zeros(3), np.zeros(3)))


# Epochs of plain SGD each backend's envelopes were calibrated over (docs/backends.md).
CALIBRATED_EPOCHS = {"tensorflow": 5, "jax": 1, "torch": 1}


@pytest.mark.parametrize("backend", sorted(CALIBRATED_EPOCHS))
def test_every_shipped_training_envelope_covers_the_calibrated_epochs(backend: str) -> None:
    steps = CALIBRATED_EPOCHS[backend] * 32  # 8,000 bundled training digits, batches of 256
    for dtype in DTYPES:
        table = defaults(backend, dtype)
        envelopes = {name: t for (kind, name), t in table.items() if kind == "training"}
        names = {curves.STEP_LOSS, *curves.HELDOUT, *scratch.build_lenet5().params}
        assert set(envelopes) == names | {curves.envelope_name(n, "momentum") for n in names}
        for name, env in envelopes.items():
            assert isinstance(env, Envelope), name
            assert env.at[-1] >= (32 if "momentum" in name else steps), (dtype, name)


# -- side by side, for real ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def float64_run() -> tuple[list[object], curves.Curves]:
    pairs, run = collect_for(CheckConfig("keras-docs", "float64", epochs=1))
    assert run is not None
    return pairs, run


@on_backend.needs_exact_float64
def test_float64_curves_agree_to_1e_9_relative(
    float64_run: tuple[list[object], curves.Curves],
) -> None:
    _, run = float64_run
    ours, theirs = run.implementation, run.reference
    assert run.plan.steps == 32 and len(ours.step_loss) == 32
    for a, b in (
        (ours.step_loss, theirs.step_loss),
        (ours.heldout_loss, theirs.heldout_loss),
        *((ours.params[k], theirs.params[k]) for k in theirs.params),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=0)
    np.testing.assert_array_equal(ours.heldout_accuracy, theirs.heldout_accuracy)
    # it did learn: the loss fell from chance level
    assert theirs.step_loss[0] > 2.2 and theirs.heldout_loss[-1] < theirs.step_loss[0]


def test_snapshots_are_steps_1_10_and_every_epoch_end(
    float64_run: tuple[list[object], curves.Curves],
) -> None:
    _, run = float64_run
    assert run.plan.snapshot_steps() == [1, 10, 32]
    for key, stacked in run.reference.params.items():
        assert stacked.shape[0] == 3, key


def test_the_check_runs_one_epoch_by_default_and_passes() -> None:
    verdict = check_parity("keras-docs", "float64")
    assert verdict.passed, summary(verdict) + "\n" + table(verdict)
    assert verdict.config.epochs == 1 and verdict.curves is not None
    names = [c.name for c in verdict.checks if c.kind == "training"]
    assert names[0] == curves.STEP_LOSS and names[-2:] == list(curves.HELDOUT)
    frame = verdict.curve_frame()
    assert frame is not None and len(frame) == 32
    assert (frame["abs_diff"] <= frame["atol"]).all()
    record = verdict.as_dict()["training"]
    assert record["steps"] == 32 and record["first_step_outside_envelope"] is None
    assert len(record["step_loss"]["implementation"]) == 32


def test_epochs_0_skips_training() -> None:
    verdict = check_parity("keras-docs", "float32", epochs=0)
    assert verdict.curves is None and verdict.curve_frame() is None
    assert all(c.kind != "training" for c in verdict.checks)
    assert verdict.as_dict()["training"] is None


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_keras_in_float64(nesterov: bool) -> None:
    verdict = check_parity("keras-docs", "float64", momentum=0.9, nesterov=nesterov)
    assert verdict.passed, summary(verdict) + "\n" + table(verdict)


@pytest.mark.skipif(on_backend.NAME != "tensorflow", reason="TensorFlow's own rounding")
def test_keras_applies_a_float32_rounded_momentum_on_tensorflow() -> None:
    """Why scratch's SGD gets ``effective_momentum``: with the exact 0.9 a float64 scratch
    model leaves Keras after its second update by far more than float64 noise. (On JAX with
    x64 and on torch, ``ops.cast`` keeps the exact float: ``test_momentum_matches_keras_in_
    float64`` passes there with the exact 0.9.)"""
    config = CheckConfig("keras-docs", "float64", epochs=1, momentum=0.9)
    exact = mutants.Mutant(
        name="exact-momentum",
        description="SGD with the exact float64 momentum 0.9",
        layer="conv1/kernel",
        optimizer=lambda opt: setattr(opt, "momentum", 0.9),
    )
    checks = judge(collect_for(config, mutant=exact)[0], defaults(on_backend.NAME, "float64"))
    step_loss = next(c for c in checks if c.name == curves.STEP_LOSS)
    # step 3's loss is the first one measured after two updates: the first that can differ
    assert not step_loss.passed and step_loss.step == 3
    assert step_loss.max_rel_err is not None and step_loss.max_rel_err > 1e-12


def test_pytorch_momentum_is_kerass_at_a_constant_learning_rate() -> None:
    """v = mu v + g, w -= lr v is m = mu m - lr g, w += m with m = -lr v: the same run."""

    def torch_form(optimizer: scratch.SGD) -> None:
        mu, lr = optimizer.momentum, optimizer.learning_rate

        def apply(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
            for key, w in params.items():
                v = optimizer.momentums.setdefault(key, np.zeros_like(w))
                v[...] = v * w.dtype.type(mu) + grads[key]
                w -= v * w.dtype.type(lr)

        optimizer.apply = apply  # type: ignore[method-assign]

    torch = mutants.Mutant("torch-momentum", "PyTorch's momentum", "conv1", optimizer=torch_form)
    config = CheckConfig("keras-docs", "float64", epochs=1, momentum=0.9)
    checks = judge(collect_for(config, mutant=torch)[0], defaults(on_backend.NAME, "float64"))
    assert not any(c.failed for c in checks), [c.name for c in checks if c.failed]


def test_a_training_failure_is_placed_in_time() -> None:
    verdict = check_parity("keras-docs", "float64", mutant="optimizer-skips-biases")
    first = verdict.first_failure
    assert first is not None and (first.kind, first.name, first.step) == (
        "training",
        "conv1/bias",
        1,
    )
    assert "first divergence at training 'conv1/bias' at step 1 (" in summary(verdict)
    loss = next(c for c in verdict.checks if c.name == curves.STEP_LOSS)
    assert loss.step == 2 and verdict.first_step_outside() == 2


def test_a_different_batch_order_fails_at_the_first_loss() -> None:
    verdict = check_parity("keras-docs", "float32", mutant="shuffle-differs")
    first = verdict.first_failure
    assert first is not None and (first.name, first.step) == (curves.STEP_LOSS, 1)


def test_training_mutants_need_training_and_their_settings() -> None:
    with pytest.raises(InputError, match="only in training"):
        check_parity("keras-docs", "float64", epochs=0, mutant="optimizer-skips-biases")
    with pytest.raises(InputError, match=r"momentum=0\.9"):
        check_parity("keras-docs", "float64", mutant="momentum-as-moving-average")


def test_a_run_beyond_the_calibrated_steps_fails_before_training() -> None:
    last = CALIBRATED_EPOCHS[on_backend.NAME] * 32
    with pytest.raises(InputError, match=f"calibrated up to step {last}, but this run reaches"):
        check_parity("keras-docs", "float32", epochs=6, data="bundled")


def test_an_overridden_training_tolerance_applies_at_every_step() -> None:
    verdict = check_parity("keras-docs", "float64", atol={"training": 0.0}, rtol={"training": 0.0})
    loss = next(c for c in verdict.checks if c.name == curves.STEP_LOSS)
    assert (loss.atol, loss.rtol) == (0.0, 0.0)
    envelope = verdict.tolerances["training", curves.STEP_LOSS]
    assert isinstance(envelope, Envelope)
    assert set(envelope.atol) == set(envelope.rtol) == {0.0}


def test_accuracy_tolerates_one_digit_and_not_two() -> None:
    """Where float64 is computed in float64 the held-out accuracy's atol is its floor of 1.5
    digits. On torch the Dense matmuls run in float32 and calibration saw digits flip, so its
    float64 atol is float32-sized: one digit passes there too, two may."""
    _, run = collect_for(CheckConfig("keras-docs", "float64", epochs=1))
    assert run is not None
    table = defaults(on_backend.NAME, "float64")
    n = run.heldout_size
    cases = ((1, True), (2, False)) if on_backend.EXACT_FLOAT64 else ((1, True),)
    for digits, passes in cases:
        shifted = dataclasses.replace(
            run.implementation, heldout_accuracy=run.reference.heldout_accuracy + digits / n
        )
        changed = dataclasses.replace(run, implementation=shifted)
        check = next(c for c in judge(changed.pairs(), table) if c.name == "held-out accuracy")
        assert check.passed is passes, (digits, check)


def test_the_heldout_digits_the_reference_decided_differently_from_its_judge() -> None:
    """Every held-out digit's class is recorded after every epoch, and the held-out accuracy
    pair carries the fraction the reference and the judge's run decide differently."""

    def run(classes: list[list[int]]) -> curves.Recording:
        c = np.array(classes, dtype=np.int64)
        return curves.Recording(
            step_loss=np.zeros(2),
            params={},
            heldout_loss=np.zeros(len(c)),
            heldout_accuracy=np.zeros(len(c)),
            seconds=0.0,
            heldout_classes=c,
        )

    ref, judged = run([[1, 2, 3, 4], [1, 2, 3, 4]]), run([[1, 2, 3, 4], [1, 0, 3, 0]])
    np.testing.assert_array_equal(curves.disagreement(ref, judged), [0.0, 0.5])
    assert curves.disagreement(ref, run([[1, 2, 3, 4]])) is None  # not the same epochs
    assert curves.disagreement(ref, run([[1, 2, 3, 4], [1, 2, 3, curves.NO_CLASS]])) is None

    def predict(x: np.ndarray) -> np.ndarray:
        return np.eye(3)[x[:, 0].astype(int)]

    x = np.array([[0], [2], [1], [2], [0]], dtype=np.float64)
    y = np.eye(3)[[0, 2, 2, 2, 1]]
    _, accuracy, classes = curves.heldout_metrics(predict, x, y, batch_size=2)
    np.testing.assert_array_equal(classes, [0, 2, 1, 2, 0])
    assert accuracy == pytest.approx(3 / 5)
    _, _, none = curves.heldout_metrics(lambda x: None, x, y, batch_size=2)
    assert (none == curves.NO_CLASS).all()


# -- the long sweep: no false alarm over seeds the calibration never saw -------------------------
SWEEP_SEEDS = range(100, 120)


@pytest.mark.parametrize("backend", sorted(CALIBRATED_EPOCHS))
def test_no_sweep_seed_was_calibrated(backend: str) -> None:
    assert set(load_table()["runs"][backend]["seeds"]).isdisjoint(SWEEP_SEEDS)


@pytest.mark.parity
@pytest.mark.parametrize("seed", SWEEP_SEEDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_no_false_alarm_over_the_calibrated_epochs(variant: str, dtype: str, seed: int) -> None:
    verdict = check_parity(variant, dtype, seed=seed, epochs=CALIBRATED_EPOCHS[on_backend.NAME])
    assert verdict.passed, summary(verdict) + "\n" + table(verdict)
