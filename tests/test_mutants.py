"""The mutant catalogue: every deliberate bug is caught by the parity check, and the first
failing check names the layer the bug is in; each mutant patches only its own model instance.

The default run covers keras-docs in both dtypes (float32 where the bug is larger than float32
noise) and the classic-only mutants on classic; ``-m parity`` runs the whole grid: both
variants, both dtypes and several seeds. Model bugs run without training (their first failure
comes before it); training bugs (the optimiser, the batch order) train one epoch and must be
named by the exact training check where they first show.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import scratch
from compare.cli import main
from compare.inputs.data import load_data
from compare.output.text import summary, table
from compare.parity import training as curves
from compare.parity.run import check_parity
from compare.sides import mutants

pytestmark = pytest.mark.keras

VARIANTS = sorted(scratch.VARIANTS)
LAYERS = {"loss", "input", *(layer.name for layer in scratch.build_lenet5().layers)}
TRAINING_CHECKS = {
    curves.STEP_LOSS,
    *curves.HELDOUT,
    *scratch.build_lenet5().params,  # the parameters after each snapshot step
    mutants.ANY_PARAMETER,
}
PARITY_SEEDS = (0, 1, 2)


def _default_variants(mutant: mutants.Mutant) -> list[str]:
    """keras-docs, or the variants a mutant is limited to when keras-docs is not one."""
    return ["keras-docs"] if "keras-docs" in mutant.variants else list(mutant.variants)


def _cases(
    mutant: mutants.Mutant, variants: list[str], seeds: tuple[int, ...]
) -> list[tuple[str, str, str, int]]:
    """(mutant, variant, dtype, seed) on the given variants the mutant applies to; float32
    only where the mutant is meant to be caught there."""
    return [
        (mutant.name, variant, dtype, seed)
        for variant in variants
        if variant in mutant.variants
        for dtype in ("float64", "float32")
        if dtype == "float64" or mutant.float32
        for seed in seeds
    ]


DEFAULT_CASES = [
    case for m in mutants.CATALOGUE.values() for case in _cases(m, _default_variants(m), (0,))
]
GRID_CASES = [
    case for m in mutants.CATALOGUE.values() for case in _cases(m, VARIANTS, PARITY_SEEDS)
]


def _assert_caught_and_localised(name: str, variant: str, dtype: str, seed: int) -> None:
    mutant = mutants.get(name)
    verdict = check_parity(
        variant,
        dtype,
        seed=seed,
        mutant=name,
        epochs=int(mutant.trains),
        **mutant.settings,  # type: ignore[arg-type]
    )
    first = verdict.first_failure
    assert not verdict.passed, f"{name} escaped: {summary(verdict)}"
    assert first is not None
    assert mutants.localised(mutant, first), (
        f"{name}: first failure at {first.kind} {first.name!r} (step {first.step}), expected "
        f"{mutant.layer!r}\n{table(verdict)}"
    )


# -- the catalogue itself ----------------------------------------------------------------------
def test_catalogue_has_at_least_ten_well_formed_mutants() -> None:
    assert len(mutants.CATALOGUE) >= 10
    for name, mutant in mutants.CATALOGUE.items():
        assert name == mutant.name
        assert re.fullmatch(r"[a-z0-9.]+(-[a-z0-9.]+)*", name), name
        assert mutant.layer in (TRAINING_CHECKS if mutant.trains else LAYERS), (name, mutant.layer)
        assert (mutant.step is not None) == mutant.trains, name
        assert mutant.trains == (mutant.optimizer is not None or mutant.batches is not None)
        assert mutant.variants, name
        assert set(mutant.variants) <= set(VARIANTS), (name, mutant.variants)
        assert mutant.description.strip(), name


def test_names_are_unique() -> None:
    names = [m.name for m in mutants.CATALOGUE.values()]
    assert len(names) == len(set(names))
    existing = next(iter(mutants.CATALOGUE.values()))
    before = dict(mutants.CATALOGUE)
    with pytest.raises(ValueError, match="Duplicate mutant name"):
        mutants.register(existing)
    assert before == mutants.CATALOGUE


def test_default_cases_cover_every_mutant() -> None:
    assert {case[0] for case in DEFAULT_CASES} == set(mutants.CATALOGUE)


# -- each mutant patches its own instance only -----------------------------------------------
def _run(model: scratch.Sequential, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    outputs = model.layer_outputs(x)
    loss, grads, dx = model.loss_and_all_gradients(x, y)
    return [*outputs.values(), np.asarray(loss), *(g.copy() for g in grads.values()), dx.copy()]


@pytest.mark.parametrize(
    ("name", "variant"),
    [(m.name, _default_variants(m)[0]) for m in mutants.CATALOGUE.values() if not m.trains],
)
def test_mutant_patches_only_its_instance(name: str, variant: str) -> None:
    data = load_data("bundled", seed=0, dtype="float64")
    x, y = data.x_train[:16], data.y_train[:16]
    clean = _run(scratch.build_lenet5(variant, dtype="float64"), x, y)

    mutated = scratch.build_lenet5(variant, dtype="float64")
    apply = mutants.get(name).apply
    assert apply is not None
    apply(mutated)
    wrong = _run(mutated, x, y)
    assert any(not np.array_equal(a, b) for a, b in zip(wrong, clean, strict=True)), (
        f"{name} changed nothing"
    )

    after = _run(scratch.build_lenet5(variant, dtype="float64"), x, y)
    for got, expected in zip(after, clean, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "name", [m.name for m in mutants.CATALOGUE.values() if m.optimizer is not None]
)
def test_optimizer_mutant_patches_only_its_instance(name: str) -> None:
    mutant = mutants.get(name)
    momentum, nesterov = (
        float(mutant.settings.get("momentum", 0.0)),
        bool(mutant.settings.get("nesterov", False)),
    )
    rng = np.random.default_rng(0)
    grads = [{"d/kernel": rng.normal(size=(3, 2)), "d/bias": rng.normal(size=2)} for _ in range(2)]

    def two_steps(optimizer: scratch.SGD) -> dict[str, np.ndarray]:
        params = {"d/kernel": np.ones((3, 2)), "d/bias": np.ones(2)}
        for g in grads:
            optimizer.apply(params, g)
        return params

    clean = two_steps(scratch.SGD(0.05, momentum, nesterov))
    mutated = scratch.SGD(0.05, momentum, nesterov)
    assert mutant.optimizer is not None
    mutant.optimizer(mutated)
    wrong = two_steps(mutated)
    assert any(not np.array_equal(wrong[k], clean[k]) for k in clean), f"{name} changed nothing"
    after = two_steps(scratch.SGD(0.05, momentum, nesterov))
    for key, value in clean.items():
        np.testing.assert_array_equal(after[key], value)


# -- the parity check catches and localises each one -------------------------------------------
def test_unmutated_check_passes() -> None:
    verdict = check_parity("keras-docs", "float64", epochs=0)
    assert verdict.passed, summary(verdict)
    assert verdict.first_failure is None


@pytest.mark.parametrize(("name", "variant", "dtype", "seed"), DEFAULT_CASES)
def test_mutant_is_caught_and_localised(name: str, variant: str, dtype: str, seed: int) -> None:
    _assert_caught_and_localised(name, variant, dtype, seed)


@pytest.mark.parity
@pytest.mark.parametrize(("name", "variant", "dtype", "seed"), GRID_CASES)
def test_mutant_grid(name: str, variant: str, dtype: str, seed: int) -> None:
    _assert_caught_and_localised(name, variant, dtype, seed)


# -- the command -------------------------------------------------------------------------------
def test_cli_runs_one_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    name = "flatten-nchw"
    code = main(["mutants", "--only", name, "--variant", "keras-docs", "--dtype", "float64"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    # one counter line per run: "1/1 [12 s] flatten-nchw keras-docs float64 caught=yes ..."
    (row,) = [line for line in out.splitlines() if f" {name} " in line]
    assert row.startswith("1/1 [") and row.split()[3:6] == [name, "keras-docs", "float64"]
    assert "caught=yes" in row
    assert "first=forward flatten" in row
    assert "localised=yes" in row
    assert "1 of 1 mutant runs caught" in out


def test_a_mutant_that_cannot_show_is_refused_not_passed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A check that cannot show the bug would PASS and prove nothing (issue: silent
    acceptance): a classic-only mutant on keras-docs, as a check or as the only mutant run."""
    argv = ["check", "--mutant", "same-padding-bottom-right", "--epochs", "0"]
    assert main(argv) == 2
    assert "does not apply to the keras-docs model" in capsys.readouterr().err
    argv = ["mutants", "--only", "same-padding-bottom-right", "--variant", "keras-docs"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "nothing would be run" in err and err.count("\n") == 1


def test_cli_unknown_mutant_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["mutants", "--only", "no-such-bug", "--variant", "keras-docs"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("lenet-parity: error: unknown mutant 'no-such-bug'")
