"""The parity check: one shared set of weights, one batch of real digits, every layer's output
and every gradient of scratch against the Keras reference, plus a float64 finite-difference
third opinion on the scratch gradients.

Order is data-flow order, because the first failure is where a bug is: the forward outputs from
``conv1`` to ``output``; then the loss; then, from the output layer back to the input, each
parameter's gradient (Keras's, then the finite differences'), and last dloss/dinput. Then, with
``epochs`` > 0, the training run (:mod:`compare.curves`): both models trained side by side on
the identical batches, its checks ordered in time — the first failing training check is the one
whose first bad element comes earliest (the loss before step s's update, then the parameters
after it, then the held-out metrics of an epoch ending at s).

:func:`collect` produces the named array pairs, :func:`judge` turns them into
:class:`~compare.checks.Check` records with the one comparison helper, and :func:`check_parity`
does both and returns a :class:`Verdict`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

import scratch
from compare import curves as training
from compare import tolerances as tolerance_table
from compare import weights as weights_io
from compare.checks import Check, Pair, PerElement, Tolerance, compare_arrays
from compare.data import Dataset, load_data
from compare.errors import InputError
from compare.finite_difference import kink_free_differences

if TYPE_CHECKING:
    from compare.mutants import Mutant

DTYPES: Final = ("float32", "float64")
DEFAULT_BATCH_SIZE: Final = 256  # the training batch of the Keras docs recipe
LEARNING_RATE: Final = 0.05  # SGD's learning rate in the Keras docs recipe
# Finite differences per tensor (11 tensors, 2 loss evaluations per tried entry): FD_ENTRIES
# kink-free entries out of at most FD_MAX_TRIES tried.
FD_ENTRIES: Final = 5
FD_MAX_TRIES: Final = 40
# ... on the first FD_BATCH digits of the batch: every tried entry costs two forward passes,
# and 32 digits make them 8× cheaper than 256 (a whole check: 5.5 s at 256, 1.2 s at 32).
FD_BATCH: Final = 32


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    """Everything a parity check depends on (the ``config`` of the JSON verdict)."""

    variant: str = "keras-docs"
    dtype: str = "float32"
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    data: str = "bundled"
    weights: str | None = None  # a weights file; None: a fresh initialisation from the seed
    mutant: str | None = None  # the name of the deliberate bug applied to scratch, if any
    epochs: int = 1  # of side-by-side training on identical batches; 0: no training checks
    learning_rate: float = LEARNING_RATE
    momentum: float = 0.0  # SGD's momentum on both sides (Keras's form)
    nesterov: bool = False

    def __post_init__(self) -> None:
        if self.variant not in scratch.VARIANTS:
            raise InputError(
                f"unknown variant {self.variant!r}; expected one of "
                f"{', '.join(sorted(scratch.VARIANTS))}"
            )
        if self.dtype not in DTYPES:
            raise InputError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        for arg, minimum in (("seed", 0), ("batch_size", 1), ("epochs", 0)):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"{arg} must be an integer >= {minimum}: {value!r}")
        lr, mu = self.learning_rate, self.momentum
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < np.inf:
            raise InputError(f"learning rate must be a positive number: {lr!r}")
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu < 1:
            raise InputError(f"momentum must be a number in [0, 1): {mu!r}")
        if self.nesterov and mu == 0:
            raise InputError("nesterov needs a momentum > 0")


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    config: CheckConfig
    environment: dict[str, Any]
    checks: list[Check]
    tolerances: tolerance_table.Tolerances
    seconds: float
    curves: training.Curves | None = None
    # The compared arrays themselves (not in the JSON): the cross-backend matrix compares the
    # Keras sides of two verdicts.
    pairs: list[Pair] = dataclasses.field(default_factory=list, repr=False)

    @property
    def first_failure(self) -> Check | None:
        """The first failing check in data-flow order; among training checks, the one that
        fails earliest in the training run (see the module docstring)."""
        failed = [c for c in self.checks if not c.passed]
        before_training = [c for c in failed if c.kind != "training"]
        if before_training or not failed:
            return next(iter(before_training), None)
        return min(failed, key=lambda c: (c.step or 0, _phase(c.name)))

    def first_step_outside(self) -> int | None:
        """The first training step whose loss leaves its tolerance envelope, if any."""
        loss = next((c for c in self.checks if (c.kind, c.name) == ("training", "step loss")), None)
        return None if loss is None or loss.passed else loss.step

    def curve_frame(self) -> pd.DataFrame | None:
        """The training run step by step (:meth:`compare.curves.Curves.frame`), with the
        step-loss envelope; None without training."""
        if self.curves is None:
            return None
        steps = np.arange(1, self.curves.plan.steps + 1)
        return self.curves.frame(_tolerance(self.tolerances, ("training", "step loss"), steps))

    def heldout_frame(self) -> pd.DataFrame | None:
        """The held-out loss and accuracy after every epoch; None without training."""
        return None if self.curves is None else self.curves.heldout_frame()

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON schema (see README, "The verdict's JSON")."""
        first = self.first_failure
        return {
            "schema_version": 1,
            "passed": self.passed,
            "config": dataclasses.asdict(self.config),
            "environment": self.environment,
            "checks": [c.as_dict() for c in self.checks],
            "first_failure": None
            if first is None
            else {"kind": first.kind, "name": first.name, "step": first.step},
            "training": None if self.curves is None else self._training_dict(),
            "timing": {
                "seconds": round(self.seconds, 3),
                "training_seconds": None
                if self.curves is None
                else {
                    "scratch": round(self.curves.scratch.seconds, 3),
                    "reference": round(self.curves.reference.seconds, 3),
                },
            },
        }

    def _training_dict(self) -> dict[str, Any]:
        assert self.curves is not None
        plan, ours, theirs = self.curves.plan, self.curves.scratch, self.curves.reference
        return {
            "steps": plan.steps,
            "steps_per_epoch": plan.steps_per_epoch,
            "snapshot_steps": plan.snapshot_steps(),
            "first_step_outside_envelope": self.first_step_outside(),
            "step_loss": {
                "scratch": ours.step_loss.tolist(),
                "reference": theirs.step_loss.tolist(),
            },
            "step_accuracy": {
                "scratch": ours.step_accuracy.tolist(),
                "reference": theirs.step_accuracy.tolist(),
            },
            "heldout_loss": {
                "scratch": ours.heldout_loss.tolist(),
                "reference": theirs.heldout_loss.tolist(),
            },
            "heldout_accuracy": {
                "scratch": ours.heldout_accuracy.tolist(),
                "reference": theirs.heldout_accuracy.tolist(),
            },
        }

    def frame(self) -> pd.DataFrame:
        """One row per check, in data-flow order; ``step``: a failing training check's first
        step outside its tolerance."""
        return pd.DataFrame(
            {
                "check": [c.name for c in self.checks],
                "kind": [c.kind for c in self.checks],
                "max abs": [_sci(c.max_abs_err) for c in self.checks],
                "max rel": [_sci(c.max_rel_err) for c in self.checks],
                "atol": [_sci(c.atol) for c in self.checks],
                "rtol": [_sci(c.rtol) for c in self.checks],
                "step": ["-" if c.step is None else str(c.step) for c in self.checks],
                "result": [_result(c) for c in self.checks],
            }
        )

    def table(self) -> str:
        return str(self.frame().to_string(index=False))

    def summary(self) -> str:
        """The one-line verdict."""
        c = self.config
        optimizer = f"SGD({c.learning_rate:g}" + (
            f", momentum {c.momentum:g}{', nesterov' if c.nesterov else ''})" if c.momentum else ")"
        )
        setup = (
            f"{c.variant}, {c.dtype}, seed {c.seed}, batch {c.batch_size}, "
            f"{c.epochs} epoch{'s' * (c.epochs != 1)} of {optimizer}, "
            f"{self.environment['backend']}" + (f", mutant {c.mutant}" if c.mutant else "")
        )
        first = self.first_failure
        if first is None:
            return f"PASS: scratch matches Keras on all {len(self.checks)} checks ({setup})"
        n_failed = sum(not ch.passed for ch in self.checks)
        detail = first.problem
        if first.max_abs_err is not None:
            detail = (
                f"max abs {_sci(first.max_abs_err)}, max rel {_sci(first.max_rel_err)} at "
                f"{list(first.worst_index or ())} against atol {_sci(first.atol)}, rtol "
                f"{_sci(first.rtol)}: {first.problem}"
            )
        when = "" if first.step is None else f" at step {first.step}"
        return (
            f"FAIL: first divergence at {first.kind} {first.name!r}{when} ({detail}); "
            f"{n_failed} of {len(self.checks)} checks fail ({setup})"
        )


def _phase(name: str) -> int:
    """Order within one training step: the loss (before the update), then the parameters
    (after it), then the held-out metrics (after the epoch that ends there)."""
    return 0 if name == training.STEP_LOSS else 2 if name in training.HELDOUT else 1


def _tolerance(
    tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance],
    key: tuple[str, str],
    steps: np.ndarray | None,
) -> Tolerance | PerElement:
    """A check's tolerance; an envelope evaluated at each element's step."""
    tol = tolerances[key]
    if isinstance(tol, tolerance_table.Envelope):
        assert steps is not None, f"{key} has an envelope tolerance but no steps"
        return tol.over(steps, f"{key[0]} {key[1]!r}")
    return tol


def _result(check: Check) -> str:
    if not check.passed:
        return f"FAIL ({check.problem})"
    if check.size == 0 and check.kind == "finite-difference":
        return "n/a (every tried entry on a relu kink)"
    return "pass"


def _sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


# -- the two models --------------------------------------------------------------------------
def reference_backend() -> ModuleType:
    """The reference package's module for the backend Keras runs on (imports Keras)."""
    import reference

    try:
        return reference.backend()
    except reference.UnsupportedBackendError as exc:
        raise InputError(str(exc)) from None


def check_backend_dtype(backend: ModuleType, dtype: str) -> None:
    """Fail with a one-line error when ``backend`` cannot compute in ``dtype`` as configured
    (float64 on JAX without ``JAX_ENABLE_X64=1``)."""
    try:
        backend.check_dtype(dtype)
    except RuntimeError as exc:
        raise InputError(str(exc)) from None


@functools.cache
def _keras_model(variant: str, dtype: str) -> Any:
    """One Keras model per variant and dtype per process; weights are assigned per check."""
    import reference

    return reference.build_lenet5(variant, dtype)


def shared_weights(config: CheckConfig) -> dict[str, np.ndarray]:
    """The one weight set both models load: the file, or a fresh initialisation from the seed."""
    if config.weights is not None:
        return weights_io.load_weights(Path(config.weights), config.variant, config.dtype)
    return weights_io.initial_weights(config.variant, config.dtype, config.seed)


def scratch_model(
    config: CheckConfig,
    weights: Mapping[str, np.ndarray],
    dtype: str,
    loss_path: str,
    mutant: Mutant | None,
) -> scratch.Sequential:
    model = scratch.build_lenet5(config.variant, dtype=dtype, loss_path=loss_path)  # type: ignore[arg-type]
    model.set_weights({k: np.asarray(v, dtype=dtype) for k, v in weights.items()})
    if mutant is not None and mutant.apply is not None:
        mutant.apply(model)
    return model


def dataset(config: CheckConfig) -> Dataset:
    """The seeded split of ``config.data``, checked to hold at least one batch."""
    data = load_data(config.data, seed=config.seed, dtype=config.dtype)
    if config.batch_size > len(data.x_train):
        raise InputError(
            f"batch size {config.batch_size} is larger than the {len(data.x_train)} training "
            f"examples of {config.data!r}"
        )
    return data


# -- collecting the pairs --------------------------------------------------------------------
def collect(
    config: CheckConfig,
    *,
    mutant: Mutant | None = None,
    backend: ModuleType | None = None,
    tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance] | None = None,
) -> tuple[list[Pair], training.Curves | None]:
    """Every pair the parity check compares, in data-flow order, and the training run (None
    with ``epochs=0``). Given ``tolerances``, a run they do not cover fails before training."""
    import reference

    backend = backend or reference_backend()
    weights = shared_weights(config)
    data = dataset(config)
    x, y = data.x_train[: config.batch_size], data.y_train[: config.batch_size]
    ours = scratch_model(config, weights, config.dtype, backend.LOSS_PATH, mutant)
    theirs = _keras_model(config.variant, config.dtype)
    reference.set_weights(theirs, weights)

    pairs = []
    outputs, ref_outputs = ours.layer_outputs(x), reference.layer_outputs(theirs, x)
    for name, out in outputs.items():
        pairs.append(Pair("forward", name, out, _widened(ref_outputs[name], config.dtype, backend)))

    loss, grads, dx = ours.loss_and_all_gradients(x, y)
    grads = {k: g.copy() for k, g in grads.items()}
    ref_loss, ref_grads, ref_dx = backend.gradients(theirs, x, y)
    numeric = _finite_differences(config, weights, x, y, backend.LOSS_PATH, mutant)
    pairs.append(Pair("gradient", "loss", np.asarray(loss), np.asarray(ref_loss)))
    for key in _backward_order(list(grads)):
        pairs.append(Pair("gradient", key, grads[key], ref_grads[key]))
        pairs.append(Pair("finite-difference", key, *numeric[key]))
    pairs.append(Pair("gradient", "input", dx, ref_dx))
    pairs.append(Pair("finite-difference", "input", *numeric["input"]))
    if config.epochs == 0:
        return pairs, None
    plan = training.schedule(len(data.x_train), config.batch_size, config.epochs, config.seed)
    family = optimizer_tolerances(config)
    if tolerances is not None:
        checks = (training.STEP_LOSS, *training.HELDOUT, *weights)
        _covered(tolerances, plan, [training.envelope_name(c, family) for c in checks])
    curves = train_side_by_side(config, weights, data, plan, backend, mutant)
    return pairs + curves.pairs(family), curves


def _widened(expected: np.ndarray, dtype: str, backend: ModuleType) -> np.ndarray:
    """A Keras layer output in the model's dtype. Keras on JAX computes tanh in float32 even in
    a float64 model (``backend.FLOAT64_COMPUTED_IN_FLOAT32``), so a tanh layer's output comes
    back float32: it is widened to float64 (exactly) and compared by value, and the float32
    rounding Keras did counts as that backend's honest error, calibrated like any other. Only
    the reference side and only float32 → float64 on such a backend: any other dtype
    difference, and any on the scratch side, stays a failed check."""
    if expected.dtype == np.float32 and dtype == "float64" and backend.FLOAT64_COMPUTED_IN_FLOAT32:
        return expected.astype(np.float64)
    return expected


def optimizer_tolerances(config: CheckConfig) -> str | None:
    """Which training envelopes judge this run: plain SGD's (None), or momentum's — momentum
    makes float32 training chaotic sooner, so it has envelopes of its own."""
    return "momentum" if config.momentum else None


def _covered(
    tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance],
    plan: training.Schedule,
    names: list[str],
) -> None:
    """Fail before training when the run's training tolerances are missing or do not reach its
    last step."""
    keys = [("training", name) for name in names]
    tolerance_table.for_pairs(tolerances, keys)
    for key in keys:
        _tolerance(tolerances, key, np.array([plan.steps]))


def train_side_by_side(
    config: CheckConfig,
    weights: Mapping[str, np.ndarray],
    data: Dataset,
    plan: training.Schedule,
    backend: ModuleType,
    mutant: Mutant | None = None,
) -> training.Curves:
    """Train scratch and Keras from ``weights`` through ``plan`` (the same batches for both)
    and record both (:func:`compare.curves.record`). Scratch's SGD gets the momentum Keras
    applies on ``backend`` (``effective_momentum``: float32-rounded on TensorFlow)."""
    import reference

    momentum = backend.effective_momentum(config.momentum)
    optimizer = scratch.SGD(config.learning_rate, momentum, config.nesterov)
    ours = scratch_model(config, weights, config.dtype, backend.LOSS_PATH, mutant)
    our_plan = plan
    if mutant is not None and mutant.optimizer is not None:
        mutant.optimizer(optimizer)
    if mutant is not None and mutant.batches is not None:
        our_plan = dataclasses.replace(plan, batches=mutant.batches(plan, config.seed))
    theirs = reference.build_lenet5(
        config.variant,
        config.dtype,
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        nesterov=config.nesterov,
    )
    reference.set_weights(theirs, weights)
    heldout = (data.x_heldout, data.y_heldout)
    size = config.batch_size
    # A broken scratch model may overflow: its NaN and Inf are compared, not raised.
    with np.errstate(all="ignore"):
        scratch_run = training.record(
            training.CallableTrainee(
                lambda xb, yb: ours.train_step(xb, yb, optimizer),
                lambda: ours.params,
                lambda xh, yh: ours.evaluate(xh, yh, batch_size=size),
            ),
            our_plan,
            data.x_train,
            data.y_train,
            heldout,
            label="scratch",
        )
    keras_run = training.record(
        training.CallableTrainee(
            lambda xb, yb: reference.train_step(theirs, xb, yb),
            lambda: reference.get_weights(theirs),
            lambda xh, yh: reference.evaluate(theirs, xh, yh, batch_size=size),
        ),
        plan,
        data.x_train,
        data.y_train,
        heldout,
        label="keras",
    )
    return training.Curves(plan, scratch_run, keras_run, heldout_size=len(data.x_heldout))


def _backward_order(keys: list[str]) -> list[str]:
    """``"<layer>/<param>"`` keys with the layers reversed (output first) and each layer's
    params in their own order (kernel, then bias)."""
    layers = list(dict.fromkeys(k.split("/")[0] for k in keys))
    return [k for layer in reversed(layers) for k in keys if k.split("/")[0] == layer]


def _finite_differences(
    config: CheckConfig,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    loss_path: str,
    mutant: Mutant | None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each parameter and the input: (scratch's analytic gradient, the central difference)
    on sampled entries, both in float64 on a float64 copy of the scratch model, for the first
    ``FD_BATCH`` digits of the batch.

    Entries: the one with the largest analytic gradient, then seeded random ones, until
    ``FD_ENTRIES`` kink-free entries are found among at most ``FD_MAX_TRIES`` (see
    :func:`compare.finite_difference.kink_free_differences`); a tensor whose tried entries all
    sit on relu kinks (conv1's bias at zero init over blank pixels) gets an empty comparison.
    """
    model = scratch_model(config, weights, "float64", loss_path, mutant)
    x64, y64 = x[:FD_BATCH].astype(np.float64), y[:FD_BATCH].astype(np.float64)
    _, grads, dx = model.loss_and_all_gradients(x64, y64)
    analytic = {**{k: g.copy() for k, g in grads.items()}, "input": dx}
    tensors = {**model.params, "input": x64}
    relu_layers = [layer for layer in model.layers if layer.activation.name == "relu"]

    def loss_and_branches() -> tuple[float, list[np.ndarray]]:
        model.forward(x64, training=True)
        value, _ = model.compute_loss(y64)
        return float(value), [layer.preactivation > 0 for layer in relu_layers]

    rng = np.random.default_rng(config.seed)
    result = {}
    for key, t in tensors.items():
        if analytic[key].shape != t.shape:  # a broken backward: let the check report the shape
            result[key] = (analytic[key], np.zeros(t.shape))
            continue
        largest = int(np.argmax(np.abs(analytic[key])))
        order = [largest, *(i for i in rng.permutation(t.size)[:FD_MAX_TRIES] if i != largest)]
        candidates = (tuple(int(j) for j in np.unravel_index(i, t.shape)) for i in order)
        used, numeric = kink_free_differences(loss_and_branches, t, candidates, FD_ENTRIES)
        idx = tuple(np.array(axis, dtype=np.intp) for axis in zip(*used, strict=True))
        sampled = analytic[key][idx] if used else np.empty(0)
        result[key] = (sampled, numeric.astype(np.float64))
    return result


# -- judging -----------------------------------------------------------------------------------
def judge(
    pairs: list[Pair], tolerances: Mapping[tuple[str, str], tolerance_table.AnyTolerance]
) -> list[Check]:
    """One :class:`Check` per pair, each against its own tolerance; a training check also
    records the step of its first bad element."""
    tolerance_table.for_pairs(tolerances, [p.tolerance_key for p in pairs])
    checks = []
    for p in pairs:
        steps = None if p.at is None else p.steps()
        tol = _tolerance(tolerances, p.tolerance_key, steps)
        if p.atol_floor:
            shape = np.shape(p.expected)
            tol = PerElement(
                np.maximum(np.broadcast_to(tol.atol, shape), p.atol_floor),
                np.broadcast_to(tol.rtol, shape),
            )
        check = compare_arrays(p.kind, p.name, p.actual, p.expected, tol)
        if steps is not None and check.first_bad_index is not None:
            check = dataclasses.replace(check, step=int(steps[check.first_bad_index]))
        checks.append(check)
    return checks


def check_parity(
    variant: str = "keras-docs",
    dtype: str = "float32",
    *,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    data: str = "bundled",
    weights: str | Path | None = None,
    epochs: int = 1,
    learning_rate: float = LEARNING_RATE,
    momentum: float = 0.0,
    nesterov: bool = False,
    tolerances: Mapping[str, Tolerance] | None = None,
    atol: Mapping[str, float] | None = None,
    rtol: Mapping[str, float] | None = None,
    mutant: str | None = None,
) -> Verdict:
    """Run the parity check and return its :class:`Verdict`.

    ``epochs`` of side-by-side training follow the forward and gradient checks (0: none), with
    SGD(``learning_rate``, ``momentum``, ``nesterov``) on both sides. ``tolerances`` replaces
    the calibrated tolerance of a kind (``{"forward": Tolerance(...)}``); ``atol``/``rtol``
    replace one number per kind (key ``"*"`` for every kind). ``mutant`` names a deliberate bug
    from :mod:`compare.mutants` to apply to the scratch side. Bad arguments or input raise
    :class:`compare.errors.InputError`.
    """
    from compare import mutants as mutant_catalogue
    from compare.environment import describe

    started = time.perf_counter()
    config = CheckConfig(
        variant=variant,
        dtype=dtype,
        seed=seed,
        batch_size=batch_size,
        data=str(data),
        weights=None if weights is None else str(weights),
        mutant=mutant,
        epochs=epochs,
        learning_rate=learning_rate,
        momentum=momentum,
        nesterov=nesterov,
    )
    bug = None if mutant is None else mutant_catalogue.get(mutant)
    if bug is not None:
        bug.check_applicable(config)
    backend = reference_backend()
    check_backend_dtype(backend, dtype)
    backend.configure_determinism(seed)
    tols = tolerance_table.resolve(backend.NAME, dtype, tolerances, atol=atol, rtol=rtol)
    pairs, curves = collect(config, mutant=bug, backend=backend, tolerances=tols)
    checks = judge(pairs, tols)
    return Verdict(
        passed=all(c.passed for c in checks),
        config=config,
        environment=describe(backend, dtype),
        checks=checks,
        tolerances=tols,
        seconds=time.perf_counter() - started,
        curves=curves,
        pairs=pairs,
    )


def assert_parity(*args: Any, **kwargs: Any) -> Verdict:
    """:func:`check_parity`, raising ``AssertionError`` (message: the verdict line and the
    table) unless parity holds; returns the verdict when it does."""
    verdict = check_parity(*args, **kwargs)
    if not verdict.passed:
        raise AssertionError(f"{verdict.summary()}\n{verdict.table()}")
    return verdict
