"""The mutant catalogue: every deliberate bug is caught by the parity check, and the first
failing check names the place the bug shows first; each mutant patches only its own model
instance; and the catalogue applies to every zoo model by layer kind, not by LeNet's names.

Pure NumPy first (no Keras): every mutant's site (its target layers and the check that must
fail first) on every zoo model, from scratch models built to match the zoo's (labelled below;
a Keras-marked test checks them against the zoo's own specs); a simulation of the parity
check's data-flow order between a clean and a mutated scratch model, whose first difference
must be the expected check; and each patch stays in its instance.

Then, marked ``keras``: the default run covers the LeNet-5s' mutants on keras-docs (or the
LeNet-5 they are limited to) in both dtypes (float32 where the bug is larger than float32
noise), and each mutant the LeNet-5s lack a target for on the first zoo model it applies to;
``-m parity`` runs the whole grid: every zoo model each mutant applies to, both dtypes and
several seeds. Model bugs run without training (their first failure comes before it);
training bugs (the optimiser, the batch order, a model patch only training shows) train ten
steps and must be named by the exact training check where they first show.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import on_backend
import pytest

import scratch
from compare.cli import main
from compare.errors import InputError, JudgeUnavailable
from compare.inputs.data import load_data
from compare.output.text import summary, table
from compare.parity import training as curves
from compare.parity.collect import backward_order
from compare.parity.config import CheckConfig
from compare.parity.run import check_parity
from compare.sides import mutants

LENET5 = sorted(scratch.VARIANTS)
PARITY_SEEDS = (0, 1, 2)


# -- scratch models equal to the zoo's (reference/zoo.py), built here without Keras -------------
# Stand-ins for the zoo's mirrors (compare.sides.scratch_side.mirror of each zoo spec), with
# the zoo's layer names, settings and initialisers; test_stand_ins_are_the_zoo_models (Keras)
# checks that the catalogue sees them exactly as it sees the zoo's own specs.
def _normal(stddev: float) -> dict[str, Any]:
    return {"class_name": "RandomNormal", "config": {"stddev": stddev}}


def seed000_cnn() -> scratch.Sequential:
    """Stand-in for zoo ``seed000-cnn``: Conv2D 8@3x3 valid, no bias, no activation →
    MaxPooling2D 2 → Flatten → Dense 10 softmax."""
    return scratch.Sequential(
        [
            scratch.Conv2D(
                8,
                3,
                padding="valid",
                use_bias=False,
                name="conv1",
                kernel_initializer=_normal(1 / 9),
            ),
            scratch.MaxPooling2D(2, name="pool1"),
            scratch.Flatten(name="flatten"),
            scratch.Dense(
                10, activation="softmax", name="output", kernel_initializer=_normal(1 / 1352)
            ),
        ],
        input_shape=(28, 28, 1),
        dtype="float64",
        name="seed000-cnn",
    )


def cs231n_3layer() -> scratch.Sequential:
    """Stand-in for zoo ``cs231n-3layer``: Conv2D 32@7x7 same relu → MaxPooling2D 2 → Flatten
    → Dense 100 relu → Dense 10 softmax; weights N(0, 1e-3²), L2(0.05) on every kernel."""
    init, l2 = _normal(1e-3), scratch.L2(0.05)
    return scratch.Sequential(
        [
            scratch.Conv2D(
                32,
                7,
                padding="same",
                activation="relu",
                name="conv1",
                kernel_initializer=init,
                kernel_regularizer=l2,
            ),
            scratch.MaxPooling2D(2, strides=2, name="pool1"),
            scratch.Flatten(name="flatten"),
            scratch.Dense(
                100, activation="relu", name="fc1", kernel_initializer=init, kernel_regularizer=l2
            ),
            scratch.Dense(
                10,
                activation="softmax",
                name="output",
                kernel_initializer=init,
                kernel_regularizer=l2,
            ),
        ],
        input_shape=(28, 28, 1),
        dtype="float64",
        name="cs231n-3layer",
    )


def lenet5_bn_dropout() -> scratch.Sequential:
    """Stand-in for zoo ``lenet5-bn-dropout``: keras-docs with each Conv2D linear →
    BatchNormalization → ReLU, and Dropout(0.5) after fc2."""
    return scratch.Sequential(
        [
            scratch.Conv2D(6, 5, name="conv1"),
            scratch.BatchNormalization(name="bn1"),
            scratch.ReLU(name="relu1"),
            scratch.AveragePooling2D(2, name="pool1"),
            scratch.Conv2D(16, 5, name="conv2"),
            scratch.BatchNormalization(name="bn2"),
            scratch.ReLU(name="relu2"),
            scratch.AveragePooling2D(2, name="pool2"),
            scratch.Flatten(name="flatten"),
            scratch.Dense(120, activation="relu", name="fc1"),
            scratch.Dense(84, activation="relu", name="fc2"),
            scratch.Dropout(0.5, seed=1, name="dropout"),
            scratch.Dense(10, activation="softmax", name="output"),
        ],
        input_shape=(28, 28, 1),
        dtype="float64",
        name="lenet5-bn-dropout",
    )


ZOO: dict[str, Callable[[], scratch.Sequential]] = {
    "keras-docs": lambda: scratch.build_lenet5("keras-docs", dtype="float64"),
    "classic": lambda: scratch.build_lenet5("classic", dtype="float64"),
    "seed000-cnn": seed000_cnn,
    "cs231n-3layer": cs231n_3layer,
    "lenet5-bn-dropout": lenet5_bn_dropout,
}

# Every mutant's site on every zoo model it applies to: (the layers it patches, the check that
# must fail first). A model left out has no target for it. On the LeNet-5s these are the
# layers the catalogue has always named.
SITES: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "same-padding-bottom-right": {
        "classic": (("conv1",), "conv1"),
        "cs231n-3layer": (("conv1",), "conv1"),
    },
    "conv-flipped-kernel": {
        "keras-docs": (("conv2",), "conv2"),
        "classic": (("conv2",), "conv2"),
        "seed000-cnn": (("conv1",), "conv1"),
        "cs231n-3layer": (("conv1",), "conv1"),
        "lenet5-bn-dropout": (("conv2",), "conv2"),
    },
    "fc1-forward-off-1e-4": {
        "keras-docs": (("fc1",), "fc1"),
        "classic": (("fc1",), "fc1"),
        "cs231n-3layer": (("fc1",), "fc1"),
        "lenet5-bn-dropout": (("fc1",), "fc1"),
    },
    "flatten-nchw": {model: (("flatten",), "flatten") for model in ZOO},
    "loss-grad-missing-1-over-n": {model: ((), "output") for model in ZOO},
    "relu-mask-from-gradient": {
        "keras-docs": (("fc2",), "fc2"),
        "cs231n-3layer": (("fc1",), "fc1"),
        "lenet5-bn-dropout": (("fc2",), "fc2"),
    },
    "dense-kernel-grad-from-preactivation": {
        "keras-docs": (("fc1", "fc2"), "fc2"),
        "classic": (("fc1", "fc2"), "fc2"),
        "cs231n-3layer": (("fc1", "output"), "output"),
        "lenet5-bn-dropout": (("fc1", "fc2"), "fc2"),
    },
    "tanh-derivative-1-minus-y": {"classic": (("fc1",), "fc1")},
    "fc1-kernel-grad-scaled-1.001": {
        "keras-docs": (("fc1",), "fc1"),
        "classic": (("fc1",), "fc1"),
        "cs231n-3layer": (("fc1",), "fc1"),
        "lenet5-bn-dropout": (("fc1",), "fc1"),
    },
    "avgpool-backward-not-divided": {
        "keras-docs": (("pool2",), "conv2"),
        "classic": (("pool2",), "conv2"),
        "lenet5-bn-dropout": (("pool2",), "bn2"),  # bn2's gamma is the next gradient
    },
    "conv-dx-shifted-one-pixel": {
        "keras-docs": (("conv2",), "conv1"),
        "classic": (("conv2",), "conv1"),
        "seed000-cnn": (("conv1",), "input"),  # a first layer's dx is dloss/dinput
        "lenet5-bn-dropout": (("conv2",), "bn1"),
    },
    "conv-bias-grad-wrong-axis": {
        "keras-docs": (("conv1",), "conv1"),
        "classic": (("conv1",), "conv1"),
        "cs231n-3layer": (("conv1",), "conv1"),
        "lenet5-bn-dropout": (("conv1",), "conv1"),
    },
    "maxpool-argmax-row-col-swapped": {
        "seed000-cnn": (("pool1",), "conv1"),
        "cs231n-3layer": (("pool1",), "conv1"),
    },
    "dropout-backward-missing-scale": {"lenet5-bn-dropout": (("dropout",), "fc2")},
    "dropout-not-rescaled": {"lenet5-bn-dropout": (("dropout",), "loss")},
    "batchnorm-backward-stats-constant": {"lenet5-bn-dropout": (("bn1", "bn2"), "conv2")},
    "l2-gradient-missing-factor-2": {"cs231n-3layer": (("conv1", "fc1", "output"), "output")},
    "regularization-left-out-of-loss": {"cs231n-3layer": (("conv1", "fc1", "output"), "loss")},
    "batchnorm-momentum-swapped": {"lenet5-bn-dropout": (("bn1", "bn2"), "bn1/moving_mean")},
    "use-bias-false-ignored": {"seed000-cnn": (("conv1",), "step loss")},
    "learning-rate-applied-twice": {model: ((), mutants.ANY_PARAMETER) for model in ZOO},
    "learning-rate-times-1.01": {model: ((), mutants.ANY_PARAMETER) for model in ZOO},
    "optimizer-skips-biases": {
        "keras-docs": ((), "conv1/bias"),
        "classic": ((), "conv1/bias"),
        "seed000-cnn": ((), "output/bias"),  # conv1 has no bias
        "cs231n-3layer": ((), "conv1/bias"),
        "lenet5-bn-dropout": ((), "bn1/gamma"),  # bn1 cancels conv1's bias: no update to skip
    },
    "momentum-as-moving-average": {model: ((), mutants.ANY_PARAMETER) for model in ZOO},
    "nesterov-ignored": {model: ((), mutants.ANY_PARAMETER) for model in ZOO},
    "shuffle-differs": {model: ((), curves.STEP_LOSS) for model in ZOO},
}
# The mutants of the first catalogue, all for the LeNet-5s; the others were added with the zoo.
LENET5_MUTANTS = [name for name, sites in SITES.items() if set(sites) & set(LENET5)]
NEW_MUTANTS = [
    "maxpool-argmax-row-col-swapped",
    "dropout-backward-missing-scale",
    "dropout-not-rescaled",
    "batchnorm-backward-stats-constant",
    "batchnorm-momentum-swapped",
    "use-bias-false-ignored",
    "l2-gradient-missing-factor-2",
    "regularization-left-out-of-loss",
]
APPLICABLE = [(name, model) for name, sites in SITES.items() for model in sites]


def _default_model(name: str) -> str:
    """keras-docs, else the first LeNet-5 the mutant applies to, else the first zoo model."""
    models = list(SITES[name])
    lenets = [m for m in models if m in LENET5]
    return "keras-docs" if "keras-docs" in models else (lenets or models)[0]


# -- the catalogue itself ----------------------------------------------------------------------
def test_catalogue_is_well_formed() -> None:
    assert len(mutants.CATALOGUE) >= 10
    assert set(mutants.CATALOGUE) == set(SITES)
    assert set(NEW_MUTANTS) <= set(mutants.CATALOGUE)
    for name, mutant in mutants.CATALOGUE.items():
        assert name == mutant.name
        assert re.fullmatch(r"[a-z0-9.]+(-[a-z0-9.]+)*", name), name
        assert (mutant.step is not None) == mutant.trains, name
        assert mutant.trains == (
            mutant.optimizer is not None or mutant.batches is not None or mutant.step is not None
        )
        assert mutant.description.strip() and mutant.layer.strip(), name
        if mutant.locate is not None:
            assert mutant.requires.strip() and mutant.shows.strip(), name


def test_names_are_unique() -> None:
    names = [m.name for m in mutants.CATALOGUE.values()]
    assert len(names) == len(set(names))
    existing = next(iter(mutants.CATALOGUE.values()))
    before = dict(mutants.CATALOGUE)
    with pytest.raises(ValueError, match="Duplicate mutant name"):
        mutants.register(existing)
    assert before == mutants.CATALOGUE


def test_every_new_mutant_applies_to_a_zoo_model_and_no_lenet5() -> None:
    for name in NEW_MUTANTS:
        assert SITES[name] and not set(SITES[name]) & set(LENET5), name


# -- where each mutant acts and shows, on every zoo model (pure) -------------------------------
@pytest.mark.parametrize("model", list(ZOO))
@pytest.mark.parametrize("name", list(SITES))
def test_site_on_every_zoo_model(name: str, model: str) -> None:
    mutant = mutants.get(name)
    built = ZOO[model]()
    if model not in SITES[name]:
        assert not mutant.applies_to(built)
        with pytest.raises(InputError, match=f"does not apply to the {model} model: it needs"):
            mutant.site(built, model)
        return
    layers, expected = SITES[name][model]
    assert mutant.applies_to(built)
    assert mutant.site(built) == mutants.Site(layers, expected)
    assert mutant.expected(built) == expected
    assert mutant.expected(mutants.layer_views(built)) == expected


def test_the_next_gradient_after_a_layer() -> None:
    views = mutants.layer_views(lenet5_bn_dropout())
    names = [v.name for v in views]
    assert mutants.gradient_after(views, names.index("pool2")) == "bn2"
    assert mutants.gradient_after(views, names.index("relu1")) == "bn1"
    assert mutants.gradient_after(views, names.index("conv1")) == "input"
    assert mutants.gradient_after(views, names.index("dropout")) == "fc2"
    assert mutants.output_layer(views) == "output"


# -- a simulation of the check's order: the first difference is the expected check (pure) -------
BATCH = 8


@functools.cache
def _data() -> tuple[np.ndarray, np.ndarray]:
    data = load_data("bundled", seed=0, dtype="float64")
    return data.x_train[:64], data.y_train[:64]


def _close(a: Any, b: Any) -> bool:
    """Equal beyond float64 noise: the bugs are 1e-4 relative and more; a gradient that is
    zero in exact arithmetic (a bias before a BatchNormalization) is ~1e-17."""
    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-15))


def _masks(model: scratch.Sequential, n: int, step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([7, step])
    return {
        name: rng.random((n, *layer.input_shape)) >= layer.rate
        for name, layer in model.dropout_layers.items()
    }


def _first_difference(clean: scratch.Sequential, mutated: scratch.Sequential) -> str | None:
    """The first check in the parity check's data-flow order where the two models differ:
    forward outputs at inference, the training-mode loss, the gradients output layer first,
    dloss/dinput (the layer a check names, as :func:`mutants.failure_layer` reads it)."""
    x, y = (a[:BATCH] for a in _data())
    ours, theirs = mutated.layer_outputs(x), clean.layer_outputs(x)
    for name, expected in theirs.items():
        if not _close(ours[name], expected):
            return name
    masks = _masks(clean, BATCH, 0)
    for model in (clean, mutated):
        if masks:
            model.set_dropout_masks(masks)
    loss, grads, dx = mutated.loss_and_all_gradients(x, y)
    ref_loss, ref_grads, ref_dx = clean.loss_and_all_gradients(x, y)
    if not _close(loss, ref_loss):
        return "loss"
    for key in backward_order(list(ref_grads)):
        if key not in grads or not _close(grads[key], ref_grads[key]):
            return mutants.failure_layer(key)
    return None if _close(dx, ref_dx) else "input"


def _first_training_difference(
    mutant: mutants.Mutant, build: Callable[[], scratch.Sequential], steps: int = 2
) -> tuple[str, int] | None:
    """The first training check (step loss before each update, every weight after step 1)
    where a clean and a mutated run from the same weights and batches differ."""
    x, y = _data()
    momentum = float(mutant.settings.get("momentum", 0.0))
    nesterov = bool(mutant.settings.get("nesterov", False))
    clean, mutated = build(), build()
    if mutant.apply is not None:
        mutant.apply(mutated)
    ours, theirs = scratch.SGD(0.05, momentum, nesterov), scratch.SGD(0.05, momentum, nesterov)
    if mutant.optimizer is not None:
        mutant.optimizer(ours)
    plan = curves.schedule(len(x), 4, 1, 0).batches
    our_plan = plan if mutant.batches is None else mutant.batches(len(x), 4, 1, 0)
    for step in range(1, steps + 1):
        batch, our_batch = plan[step - 1], our_plan[step - 1]
        masks = _masks(clean, len(batch), step)
        if masks:
            clean.set_dropout_masks(masks)
            mutated.set_dropout_masks(masks)
        ref_loss, _ = clean.train_step(x[batch], y[batch], theirs)
        loss, _ = mutated.train_step(x[our_batch], y[our_batch], ours)
        if not _close(loss, ref_loss):
            return curves.STEP_LOSS, step
        if step == 1:
            got, expected = mutated.get_weights(), clean.get_weights()
            for key in expected:
                if key not in got or not _close(got[key], expected[key]):
                    return key, step
    return None


@pytest.mark.parametrize(("name", "model"), APPLICABLE)
def test_first_difference_is_the_expected_check(name: str, model: str) -> None:
    """Against a clean twin, a mutated scratch model first differs where the mutant says the
    parity check must first fail (float noise aside, which the tolerances are for)."""
    mutant = mutants.get(name)
    expected = SITES[name][model][1]
    clean, mutated = ZOO[model](), ZOO[model]()
    if mutant.apply is not None:
        mutant.apply(mutated)
    before_training = _first_difference(clean, mutated)
    if not mutant.trains:
        assert before_training == expected
        return
    assert before_training is None, f"{name} shows before training, at {before_training}"
    found = _first_training_difference(mutant, ZOO[model])
    assert found is not None, f"{name} changed nothing in training"
    check, step = found
    assert step == mutant.step, found
    if expected == mutants.ANY_PARAMETER:
        assert "/" in check, found
    else:
        assert check == expected, found


# -- each mutant patches its own instance only -------------------------------------------------
def _run(model: scratch.Sequential) -> list[np.ndarray]:
    """Forward, loss, gradients and dloss/dinput, then two training steps' losses and the
    weights after them."""
    x, y = (a[:BATCH] for a in _data())
    masks = _masks(model, BATCH, 0)
    if masks:
        model.set_dropout_masks(masks)
    outputs = model.layer_outputs(x)
    loss, grads, dx = model.loss_and_all_gradients(x, y)
    results = [*outputs.values(), np.asarray(loss), *(g.copy() for g in grads.values()), dx]
    optimizer = scratch.SGD(0.05)
    steps = [np.asarray(model.train_step(x, y, optimizer)[0]) for _ in range(2)]
    return [*results, *steps, *model.get_weights().values()]


@pytest.mark.parametrize("name", [name for name in SITES if mutants.get(name).apply is not None])
def test_mutant_patches_only_its_instance(name: str) -> None:
    model = _default_model(name)
    clean = _run(ZOO[model]())
    mutated = ZOO[model]()
    apply = mutants.get(name).apply
    assert apply is not None
    apply(mutated)
    wrong = _run(mutated)
    assert len(wrong) != len(clean) or any(
        not np.array_equal(a, b) for a, b in zip(wrong, clean, strict=True)
    ), f"{name} changed nothing"
    after = _run(ZOO[model]())
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


# -- refusing what cannot show (pure: the LeNet-5s need no Keras) ------------------------------
def test_a_mutant_without_its_target_is_refused_in_one_line() -> None:
    config = CheckConfig("keras-docs", "float64", epochs=0)
    with pytest.raises(InputError) as error:
        mutants.get("maxpool-argmax-row-col-swapped").check_applicable(config)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "mutant 'maxpool-argmax-row-col-swapped' does not apply to the keras-docs model: it "
        "needs a MaxPooling2D"
    )
    # given the model itself (a scratch model, or views of it), the same answer
    with pytest.raises(InputError, match="does not apply to the keras-docs model"):
        mutants.get("batchnorm-backward-stats-constant").check_applicable(
            config, ZOO["keras-docs"]()
        )
    mutants.get("dropout-not-rescaled").check_applicable(
        CheckConfig("lenet5-bn-dropout", "float64", epochs=0), lenet5_bn_dropout()
    )


def test_a_training_only_model_patch_needs_training() -> None:
    config = CheckConfig("lenet5-bn-dropout", "float64", epochs=0)
    with pytest.raises(InputError, match="shows only in training"):
        mutants.get("batchnorm-momentum-swapped").check_applicable(config, lenet5_bn_dropout())
    assert mutants.get("batchnorm-momentum-swapped").check_options() == {"steps": 10}
    assert mutants.get("flatten-nchw").check_options() == {"epochs": 0}
    assert mutants.get("nesterov-ignored").check_options(1) == {
        "epochs": 1,
        "momentum": 0.9,
        "nesterov": True,
    }


def test_localised_reads_the_site_of_the_model() -> None:
    class First:
        def __init__(self, kind: str, name: str, step: int | None = None) -> None:
            self.kind, self.name, self.step = kind, name, step

    flipped = mutants.get("conv-flipped-kernel")
    assert mutants.localised(flipped, First("forward", "conv2"), ZOO["keras-docs"]())
    assert mutants.localised(flipped, First("forward", "conv1"), ZOO["seed000-cnn"]())
    assert not mutants.localised(flipped, First("forward", "conv1"), ZOO["keras-docs"]())
    assert not mutants.localised(flipped, None, ZOO["keras-docs"]())
    momentum = mutants.get("batchnorm-momentum-swapped")
    site = mutants.Site(("bn1", "bn2"), "bn1/moving_mean")
    assert mutants.localised(momentum, First("training", "bn1/moving_mean", 1), site)
    assert not mutants.localised(momentum, First("training", "bn1/moving_mean", 2), site)
    with pytest.raises(ValueError, match="needs the model"):
        mutants.localised(flipped, First("forward", "conv2"))


# -- Keras: the zoo's own specs, and the parity check catching and naming each mutant ---------
def _zoo_spec(model: str) -> Any:
    from compare.parity.run import configure, spec_for
    from compare.sides import keras_side

    backend = keras_side.backend_module()
    return spec_for(configure(model, "float64", epochs=0), backend)


def _rounded(views: tuple[mutants.LayerView, ...]) -> tuple[mutants.LayerView, ...]:
    """The views with their penalty factors in float32: Keras may keep a regularizer's factor
    as a float32 (0.05000000074505806 for 0.05), which changes nothing a mutant looks at."""
    return tuple(
        dataclasses.replace(
            view,
            penalties={
                k: (float(np.float32(l1)), float(np.float32(l2)))
                for k, (l1, l2) in view.penalties.items()
            },
        )
        for view in views
    )


@pytest.mark.keras
@pytest.mark.parametrize("model", list(ZOO))
def test_stand_ins_are_the_zoo_models(model: str) -> None:
    """The stand-ins above are what the catalogue sees of the zoo's own models: the same
    layer views from the spec and from its scratch mirror, and so the same sites."""
    from compare.sides import scratch_side

    spec = _zoo_spec(model)
    views = _rounded(mutants.layer_views(ZOO[model]()))
    assert _rounded(mutants.layer_views(spec)) == views
    assert _rounded(mutants.layer_views(scratch_side.mirror(spec))) == views
    for name, sites in SITES.items():
        mutant = mutants.get(name)
        if model in sites:
            assert mutant.site(spec) == mutants.Site(*sites[model]), name
        else:
            assert not mutant.applies_to(spec), name


def _cases(name: str, models: list[str], seeds: tuple[int, ...]) -> list[tuple[str, str, str, int]]:
    """(mutant, model, dtype, seed) on the given models; float32 only where the mutant is
    meant to be caught there."""
    mutant = mutants.get(name)
    return [
        (name, model, dtype, seed)
        for model in models
        for dtype in ("float64", "float32")
        if dtype == "float64" or mutant.float32
        for seed in seeds
    ]


DEFAULT_CASES = [case for name in SITES for case in _cases(name, [_default_model(name)], (0,))]
GRID_CASES = [case for name in SITES for case in _cases(name, list(SITES[name]), PARITY_SEEDS)]


def _skip_where_float64_is_float32(mutant: mutants.Mutant, model: str, dtype: str) -> None:
    """Where this backend computes part of the model in float32 even in float64 (torch's
    matmul, batch normalization on JAX and torch), the float64 judge holds a float64 check to
    float32's epsilon: a mutant only float64 can localise (``mutant.float32`` false) is out of
    its reach there. The calibrated table, the LeNet-5s' judge, is not affected."""
    from compare.parity.run import configure
    from compare.sides import keras_side

    if dtype != "float64" or mutant.float32 or configure(model, dtype).judge != "float64":
        return
    inside = keras_side.float32_inside(keras_side.backend_module(), _zoo_spec(model))
    if inside:
        pytest.skip(f"{on_backend.NAME} computes {', '.join(inside)} of {model} in float32")


def _assert_caught_and_localised(name: str, model: str, dtype: str, seed: int) -> None:
    mutant = mutants.get(name)
    _skip_where_float64_is_float32(mutant, model, dtype)
    try:
        verdict = check_parity(model, dtype, seed=seed, mutant=name, **mutant.check_options())
    except JudgeUnavailable as refused:
        # a float32 check whose float64 judge must run on TensorFlow, which is not installed
        # here: refused by design (tests/test_reference_models.py)
        pytest.skip(str(refused))
    first = verdict.first_failure
    expected = SITES[name][model][1]
    assert not verdict.passed, f"{name} escaped on {model}: {summary(verdict)}"
    assert first is not None
    assert mutant.expected(verdict.spec) == expected
    assert mutants.localised(mutant, first, verdict.spec), (
        f"{name} on {model}: first failure at {first.kind} {first.name!r} (step {first.step}), "
        f"expected {expected!r}\n{table(verdict)}"
    )


def test_default_cases_cover_every_mutant() -> None:
    cases = [getattr(case, "values", case) for case in DEFAULT_CASES]
    assert {case[0] for case in cases} == set(mutants.CATALOGUE)
    assert {case[1] for case in cases if case[0] in LENET5_MUTANTS} <= set(LENET5)


@pytest.mark.keras
def test_unmutated_check_passes() -> None:
    verdict = check_parity("keras-docs", "float64", epochs=0)
    assert verdict.passed, summary(verdict)
    assert verdict.first_failure is None


@pytest.mark.keras
@pytest.mark.parametrize(("name", "model", "dtype", "seed"), DEFAULT_CASES)
def test_mutant_is_caught_and_localised(name: str, model: str, dtype: str, seed: int) -> None:
    _assert_caught_and_localised(name, model, dtype, seed)


@pytest.mark.keras
@pytest.mark.parity
@pytest.mark.parametrize(("name", "model", "dtype", "seed"), GRID_CASES)
def test_mutant_grid(name: str, model: str, dtype: str, seed: int) -> None:
    _assert_caught_and_localised(name, model, dtype, seed)


# -- the command -------------------------------------------------------------------------------
@pytest.mark.keras
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


@pytest.mark.keras
def test_a_mutant_that_cannot_show_is_refused_not_passed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A check that cannot show the bug would PASS and prove nothing (issue: silent
    acceptance): a mutant whose target keras-docs lacks, as a check or as the only mutant
    run."""
    argv = ["check", "--mutant", "same-padding-bottom-right", "--epochs", "0"]
    assert main(argv) == 2
    assert "does not apply to the keras-docs model" in capsys.readouterr().err
    argv = ["mutants", "--only", "same-padding-bottom-right", "--variant", "keras-docs"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "nothing would be run" in err and err.count("\n") == 1


def test_run_catalogue_runs_each_mutant_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure: the check itself replaced; on the LeNet-5s the whole catalogue runs each mutant on
    the variants it has a target in, and nothing of the zoo-only mutants."""
    from compare.tools import mutants as tool

    calls: list[tuple[str, str, Mapping[str, Any]]] = []

    def fake(model: str, dtype: str, **options: Any) -> Any:
        calls.append((options["mutant"], model, options))
        return type("Verdict", (), {"passed": False, "first_failure": None})()

    monkeypatch.setattr(tool, "check_parity", fake)
    results = tool.run_catalogue(dtypes=["float64"])
    expected = [(n, m) for n, sites in SITES.items() for m in LENET5 if m in sites]
    assert sorted((r["mutant"], r["model"]) for r in results) == sorted(expected)
    for name, model, options in calls:
        trains = mutants.get(name).trains
        assert (options.get("epochs"), options.get("steps")) == (
            (None, 10) if trains else (0, None)
        )
        assert {r["expected"] for r in results if (r["mutant"], r["model"]) == (name, model)} == {
            SITES[name][model][1]
        }
    with pytest.raises(InputError, match="nothing would be run"):
        tool.run_catalogue(
            models=["keras-docs"], dtypes=["float64"], names=["dropout-not-rescaled"]
        )


@pytest.mark.keras
def test_cli_unknown_mutant_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["mutants", "--only", "no-such-bug", "--variant", "keras-docs"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("lenet-parity: error: unknown mutant 'no-such-bug'")


@pytest.mark.keras
def test_cli_runs_one_mutant_on_a_zoo_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model as --variant is, merged with it: the mutant runs on seed000-cnn and is skipped
    on keras-docs, which has no max pooling for it."""
    name, runs = "maxpool-argmax-row-col-swapped", tmp_path / "runs.json"
    argv = ["mutants", "--only", name, "--model", "seed000-cnn", "--variant", "keras-docs"]
    code = main([*argv, "--dtype", "float64", "--json", str(runs)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (row,) = [line for line in out.splitlines() if f" {name} " in line]
    assert row.startswith("1/1 [") and row.split()[3:6] == [name, "seed000-cnn", "float64"]
    assert "caught=yes" in row and "localised=yes" in row
    (run,) = json.loads(runs.read_text("utf-8"))["runs"]
    assert (run["model"], run["expected"], run["caught"]) == ("seed000-cnn", "conv1", True)
