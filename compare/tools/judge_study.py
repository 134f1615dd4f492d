"""Measuring the float64 judge's constants (:mod:`compare.judge.float64`, docs/judge.md).

    python -m compare.tools.judge_study --out reports/judge_study.json [--seeds 3] [--steps 16]

For both LeNet-5 variants and every seed, on every Keras backend (each in its own child
process: Keras fixes its backend per process), four runs of the same computation — the same
float32 weights and digits, widened exactly to float64 for the float64 runs:

- scratch in float32 (the implementation) and in float64,
- Keras in float32 (the reference) and in float64 (a judge),

each giving every layer output, the loss, every gradient and dloss/dinput on one batch, and a
training run of ``--steps`` SGD steps (learning rate 0.05, the same batches for all four) with
the loss and every parameter after every step. TensorFlow and JAX hand their float64 runs to
the later children (files in the work folder), so that each float32 reference can be judged by
another backend's float64: torch's float64 multiplies in float32, and JAX's computes tanh in
float32 (``FLOAT64_COMPUTED_IN_FLOAT32``).

Per tensor the report keeps the distances (RMS and max) of each pair, the judge's magnitude and
the tensor's reduction length L; from them it derives what each constant must be
(``derived``): the ratios rms(scratch32 − judge) / rms(keras32 − judge) (and for the max) that
``k`` must cover, with and without floors; the distances in units of ε · L^p · magnitude for
p = 0, 0.25, 0.5 and 1 (the power that fits); the float32 reference's smallest distance and
scratch's typical one in ε32 · √L · magnitude (the floor); the float64 distances in
ε64 · √L · magnitude and their growth with the step; and what torch's and JAX's float64 can
be judged to. For relu models it records the relu patterns of every run on every step's batch:
the first step where a float32 run's pattern differs from the float64 one (a *flip*, after
which float32 training leaves float64 for good, honestly) ends the judged part of the curves;
and at the single step, the digits on a kink and the gradients' ratios without them.

It also judges every honest run with the shipped rule
(:data:`~compare.judge.float64.DEFAULT_RULE`, whose margins must stay below 1) and the
deliberate bugs of :mod:`compare.sides.mutants` (whose margins must be far above 1), next to
the calibrated table's verdict on the same arrays. Each child's result is kept in
``<out>.parts/``; ``--rederive`` derives the report again from them without running anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from compare.inputs.data import load_data
from compare.inputs.weights import initial_weights
from compare.judge import float64 as rule
from compare.judge import tolerances as table
from compare.judge.checks import Check, compare_arrays
from compare.sides import backends as keras_backends
from compare.sides import keras_side, mutants, scratch_side

BACKENDS: Final = ("tensorflow", "jax", "torch")  # the judges' suppliers first
VARIANTS: Final = ("keras-docs", "classic")
LEARNING_RATE: Final = 0.05
BATCH: Final = 256
# Model bugs of the catalogue, and training bugs that need no momentum (the momentum ones
# would need a Keras run with momentum, which this study does not make).
MUTANTS: Final = (
    "same-padding-bottom-right",
    "conv-flipped-kernel",
    "fc1-forward-off-1e-4",
    "flatten-nchw",
    "loss-grad-missing-1-over-n",
    "relu-mask-from-gradient",
    "dense-kernel-grad-from-preactivation",
    "tanh-derivative-1-minus-y",
    "fc1-kernel-grad-scaled-1.001",
    "avgpool-backward-not-divided",
    "conv-dx-shifted-one-pixel",
    "conv-bias-grad-wrong-axis",
    "learning-rate-applied-twice",
    "learning-rate-times-1.01",
    "optimizer-skips-biases",
    "shuffle-differs",
)
Key = tuple[str, str]  # (kind, name)
Run = dict[Key, np.ndarray]


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    seeds: int = 3
    steps: int = 16
    variants: tuple[str, ...] = VARIANTS
    mutants: tuple[str, ...] = MUTANTS
    mutant_seeds: int = 1
    batch: int = BATCH


# -- which float64 run judges which float32 reference -------------------------------------
def judge_for(backend: str, variant: str, available: Iterable[str]) -> str | None:
    """The backend whose float64 run judges ``backend``'s float32 reference: its own when its
    float64 is float64 for this model (TensorFlow always; JAX when the model has no tanh), else
    TensorFlow's, else JAX's for a model without tanh; None when no true float64 run is
    available."""
    have = set(available)
    tanh = variant == "classic"
    true64 = ["tensorflow"] + ([] if tanh else ["jax"])
    if backend in true64 and backend in have:
        return backend
    return next((b for b in true64 if b in have), None)


# -- the child: one backend ------------------------------------------------------------------
def _schedule(n: int, batch: int, steps: int, seed: int) -> list[np.ndarray]:
    """``steps`` batches from one seeded permutation per epoch (the harness's schedule)."""
    rng = np.random.default_rng(seed)
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        order = rng.permutation(n)
        batches += [order[i : i + batch] for i in range(0, n, batch)]
    return batches[:steps]


class _Child:
    """Everything one backend's process computes."""

    def __init__(self, config: StudyConfig, workdir: Path) -> None:
        self.config, self.workdir = config, workdir
        self.backend = keras_side.backend_module()
        import reference

        self.reference = reference
        self.name: str = self.backend.NAME
        self._models: dict[tuple[str, str, bool], Any] = {}
        self.widened: set[str] = set()  # tensors this backend's float64 returned in float32

    # Keras ------------------------------------------------------------------------------
    def _model(self, variant: str, dtype: str, training: bool) -> Any:
        key = (variant, dtype, training)
        if key not in self._models:
            self._models[key] = self.reference.build_lenet5(
                variant, dtype, learning_rate=LEARNING_RATE
            )
        return self._models[key]

    def _widen(self, what: str, value: Any, dtype: str) -> np.ndarray:
        array = np.asarray(value)
        if dtype == "float64" and array.dtype == np.float32:
            self.widened.add(what)
            return array.astype(np.float64)
        return array

    def keras_run(
        self,
        variant: str,
        dtype: str,
        weights: dict[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        data: tuple[np.ndarray, np.ndarray],
        batches: list[np.ndarray],
        patterns: Sequence[str] = (),
    ) -> Run:
        ref = self.reference
        model = self._model(variant, dtype, False)
        ref.set_weights(model, weights)
        run: Run = {}
        for name, out in ref.layer_outputs(model, x).items():
            run[("forward", name)] = self._widen(f"forward {name}", out, dtype)
        loss, grads, dx = self.backend.gradients(model, x, y)
        run[("gradient", "loss")] = self._widen("gradient loss", loss, dtype)
        for key, g in grads.items():
            run[("gradient", key)] = self._widen(f"gradient {key}", g, dtype)
        run[("gradient", "input")] = self._widen("gradient input", dx, dtype)
        if not batches:
            return run
        trainer = self._model(variant, dtype, True)
        ref.set_weights(trainer, weights)
        xs, ys = data
        losses, params = [], []
        signs: dict[str, list[np.ndarray]] = {name: [] for name in patterns}
        for idx in batches:
            if patterns:
                outputs = ref.layer_outputs(trainer, xs[idx])
                for name in patterns:
                    signs[name].append(outputs[name] > 0)
            loss_t, _ = ref.train_step(trainer, xs[idx], ys[idx])
            losses.append(loss_t)
            params.append(ref.get_weights(trainer))
        _keep_patterns(run, signs)
        run[("training", "step loss")] = np.asarray(losses, dtype=np.float64)
        for key in params[0]:
            run[("training", key)] = self._widen(
                f"training {key}", np.stack([p[key] for p in params]), dtype
            )
        return run

    # scratch ----------------------------------------------------------------------------
    def scratch_run(
        self,
        spec: Any,
        mutant: Any,
        weights: dict[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        data: tuple[np.ndarray, np.ndarray],
        batches: list[np.ndarray],
        patterns: Sequence[str] = (),
    ) -> Run:
        make = scratch_side.factory(mutant)
        impl = make(spec)
        impl.set_weights(weights)
        run: Run = {}
        with np.errstate(all="ignore"):  # a mutant may overflow: compared, not raised
            for name, out in impl.layer_outputs(x).items():
                run[("forward", name)] = np.asarray(out)
            loss, grads, dx = impl.loss_and_gradients(x, y)
        run[("gradient", "loss")] = np.asarray(loss)
        for key, g in grads.items():
            run[("gradient", key)] = np.asarray(g)
        run[("gradient", "input")] = np.asarray(dx)
        if not batches:
            return run
        trainer = make(spec)
        trainer.set_weights(weights)
        if mutant is not None and mutant.batches is not None:
            n, size = len(data[0]), self.config.batch
            epochs = -(-len(batches) * size // n) + 1
            batches = mutant.batches(n, size, epochs, spec.seed)[: len(batches)]
        xs, ys = data
        losses, params = [], []
        signs: dict[str, list[np.ndarray]] = {name: [] for name in patterns}
        for idx in batches:
            if patterns:
                with np.errstate(all="ignore"):
                    outputs = trainer.layer_outputs(xs[idx])
                for name in patterns:
                    signs[name].append(np.asarray(outputs[name]) > 0)
            losses.append(trainer.train_step(xs[idx], ys[idx]))
            params.append(trainer.get_weights())
        _keep_patterns(run, signs)
        run[("training", "step loss")] = np.asarray(losses, dtype=np.float64)
        for key in params[0]:
            run[("training", key)] = np.stack([p[key] for p in params])
        return run

    # kinks -----------------------------------------------------------------------------
    def keras_gradients(
        self, variant: str, dtype: str, weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
    ) -> dict[str, np.ndarray]:
        model = self._model(variant, dtype, False)
        self.reference.set_weights(model, weights)
        loss, grads, dx = self.backend.gradients(model, x, y)
        return {"loss": np.asarray(loss), **grads, "input": np.asarray(dx)}

    def scratch_gradients(
        self, spec: Any, weights: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray
    ) -> dict[str, np.ndarray]:
        impl = scratch_side.build(spec)
        impl.set_weights(weights)
        loss, grads, dx = impl.loss_and_gradients(x, y)
        return {"loss": np.asarray(loss), **grads, "input": np.asarray(dx)}


def _kinks(
    c: _Child,
    spec32: Any,
    variant: str,
    runs: Mapping[str, Run],
    w32: dict[str, np.ndarray],
    x32: np.ndarray,
    y32: np.ndarray,
) -> dict[str, Any] | None:
    """Relu kinks of this batch: the digits whose relu pattern (output > 0) differs between a
    float32 run and the float64 one, and the gradients' ratios without those digits (the same
    ratios as with them where there are none). Judged by this backend's own float64."""
    relu = [layer.name for layer in spec32.layers if layer.activation == "relu"]
    if not relu:
        return None
    judge = runs["k64"]
    n = len(x32)
    kink = np.zeros(n, dtype=bool)
    per_layer = {}
    for name in relu:
        positive = judge[("forward", name)] > 0
        flipped = np.zeros(n, dtype=bool)
        for side in ("s32", "k32"):
            differs = (runs[side][("forward", name)] > 0) != positive
            flipped |= differs.reshape(n, -1).any(axis=1)
        per_layer[name] = int(flipped.sum())
        kink |= flipped
    result: dict[str, Any] = {"digits": int(kink.sum()), "by_layer": per_layer}
    if not kink.any():
        return result
    keep = ~kink
    x64, y64 = x32.astype(np.float64), y32.astype(np.float64)
    w64 = _wide(w32)
    s32 = c.scratch_gradients(spec32, w32, x32[keep], y32[keep])
    k32 = c.keras_gradients(variant, "float32", w32, x32[keep], y32[keep])
    j64 = c.keras_gradients(variant, "float64", w64, x64[keep], y64[keep])
    ratios = {}
    for key in k32:
        full = ("gradient", key)
        before = [
            _ratio(a, b)
            for a, b in zip(
                _distance(runs["s32"][full], judge[full], False),
                _distance(runs["k32"][full], judge[full], False),
                strict=True,
            )
        ]
        after = [
            _ratio(a, b)
            for a, b in zip(
                _distance(s32[key], j64[key], False),
                _distance(k32[key], j64[key], False),
                strict=True,
            )
        ]
        ratios[key] = {"with_kinks": _nums(before), "without": _nums(after)}
    result["ratios"] = ratios
    return result


def _wide(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}


def _save_run(path: Path, run: Run) -> None:
    arrays: dict[str, Any] = {f"{kind}|{name}": v for (kind, name), v in run.items()}
    np.savez(path, **arrays)


def _load_run(path: Path) -> Run:
    run: Run = {}
    with np.load(path, allow_pickle=False) as z:
        for member in z.files:
            kind, _, name = member.partition("|")
            run[(kind, name)] = z[member]
    return run


def _distance(a: np.ndarray, b: np.ndarray, per_step: bool) -> list[Any]:
    """[rms, max] of a − b over finite elements (per step along axis 0: two lists)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    finite = np.isfinite(a64) & np.isfinite(b64)
    d = np.where(finite, a64 - b64, 0.0)
    if not per_step:
        return [_num(np.sqrt(np.mean(d**2))), _num(np.max(np.abs(d), initial=0.0))]
    axes = tuple(range(1, d.ndim))
    return [_nums(np.sqrt(np.mean(d**2, axis=axes))), _nums(np.max(np.abs(d), axis=axes))]


def _magnitude(v: np.ndarray, per_step: bool) -> list[Any]:
    return _distance(v, np.zeros_like(v), per_step)


def _num(value: Any) -> float:
    """A finite float for the JSON (NaN and Inf, from a broken run, as 1e308)."""
    x = float(value)
    return x if math.isfinite(x) else 1e308


def _nums(values: Any) -> list[float]:
    return [float(f"{_num(v):.5g}") for v in np.atleast_1d(values)]


def _order(run: Run) -> list[Key]:
    """Data-flow order: forward, loss, gradients output first, input, training."""
    forward = [k for k in run if k[0] == "forward"]
    grads = [k for k in run if k[0] == "gradient" and "/" in k[1]]
    layers = list(dict.fromkeys(k[1].split("/")[0] for k in grads))
    backward = [k for layer in reversed(layers) for k in grads if k[1].split("/")[0] == layer]
    training = [k for k in run if k[0] == "training"]
    return [*forward, ("gradient", "loss"), *backward, ("gradient", "input"), *training]


def _table_check(
    tolerances: table.Tolerances, key: Key, actual: np.ndarray, expected: np.ndarray
) -> Check | None:
    """The calibrated table's check of the same arrays (None when the table has no entry)."""
    kind, name = key
    if key not in tolerances:
        return None
    if key == ("gradient", "loss"):  # the harness compares the loss as float64 scalars
        actual, expected = np.array(float(actual)), np.array(float(expected))
    steps = None
    if kind == "training":
        at = np.arange(1, expected.shape[0] + 1).reshape(-1, *([1] * (expected.ndim - 1)))
        steps = np.broadcast_to(at, expected.shape)
    try:
        tol = table.at_steps(tolerances, key, steps)
    except Exception:  # a run beyond the calibrated steps
        return None
    return compare_arrays(kind, name, actual, expected, tol)


def _rule_checks(
    lengths: Mapping[Key, int],
    actual32: Run,
    ref32: Run,
    judge: Run | None,
    actual64: Run,
    ref64: Run,
    eps64: float,
    until: int | None,
) -> dict[str, dict[Key, Check]]:
    """The shipped rule's checks: float32 (against ``judge``; training curves up to step
    ``until``) and float64."""
    out: dict[str, dict[Key, Check]] = {"float32": {}, "float64": {}}
    for key in _order(ref32):
        kind, name = key
        length = lengths[key]
        if judge is not None:
            if kind == "training":
                c32 = rule.judge_trajectory_float32(
                    name, actual32[key], ref32[key], judge[key], length, until=until
                )
            else:
                c32 = rule.judge_float32(kind, name, actual32[key], ref32[key], judge[key], length)
            out["float32"][key] = c32
        if kind == "training":
            c64 = rule.judge_trajectory_float64(name, actual64[key], ref64[key], length, eps=eps64)
        else:
            c64 = rule.judge_float64(kind, name, actual64[key], ref64[key], length, eps=eps64)
        out["float64"][key] = c64
    return out


def _first_failure(checks: Mapping[Key, Check | None]) -> dict[str, Any] | None:
    for key, check in checks.items():
        if check is not None and check.failed:
            return {"kind": key[0], "name": key[1], "step": check.step, "margin": check.margin}
    return None


def _summary(checks: Mapping[Key, Check | None]) -> dict[str, Any]:
    margins = {f"{k[0]} {k[1]}": c.margin for k, c in checks.items() if c is not None}
    worst = max(margins.items(), key=lambda kv: kv[1], default=(None, 0.0))
    return {
        "failed": sum(1 for c in checks.values() if c is not None and c.failed),
        "first_failure": _first_failure(checks),
        "max_margin": worst[1],
        "max_margin_check": worst[0],
        "margins": {k: float(f"{v:.4g}") for k, v in margins.items()},
    }


def child(backend: str, config: StudyConfig, workdir: Path) -> None:
    """One backend's part: runs, distances, checks; written to ``workdir/<backend>.json``."""
    c = _Child(config, workdir)
    if c.name != backend:
        raise RuntimeError(f"this child runs on {c.name}, not {backend}: set KERAS_BACKEND")
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    mutant_records: list[dict[str, Any]] = []
    for variant in config.variants:
        spec32 = keras_side.model_spec(
            variant,
            "float32",
            c.backend,
            learning_rate=LEARNING_RATE,
            momentum=0.0,
            nesterov=False,
            seed=0,
            batch_size=config.batch,
        )
        lengths = rule.reduction_lengths(spec32.layers, config.batch)
        local = _local_lengths(spec32.layers, config.batch)
        for seed in range(config.seeds):
            t0 = time.perf_counter()
            c.backend.configure_determinism(seed)
            spec32 = dataclasses.replace(spec32, seed=seed)
            spec64 = spec32.with_dtype("float64")
            data = load_data("bundled", seed=seed, dtype="float32")
            w32 = initial_weights(variant, "float32", seed)
            w64 = _wide(w32)
            x32, y32 = data.x_train[: config.batch], data.y_train[: config.batch]
            x64, y64 = x32.astype(np.float64), y32.astype(np.float64)
            d32 = (data.x_train, data.y_train)
            d64 = (data.x_train.astype(np.float64), data.y_train.astype(np.float64))
            batches = _schedule(len(data.x_train), config.batch, config.steps, seed)
            relu = [layer.name for layer in spec32.layers if layer.activation == "relu"]
            runs = {
                "s32": c.scratch_run(spec32, None, w32, x32, y32, d32, batches, relu),
                "k32": c.keras_run(variant, "float32", w32, x32, y32, d32, batches, relu),
                "s64": c.scratch_run(spec64, None, w64, x64, y64, d64, batches, relu),
                "k64": c.keras_run(variant, "float64", w64, x64, y64, d64, batches),
            }
            flips = {side: _first_flip(runs[side], runs["s64"], relu) for side in ("s32", "k32")}
            until = _until(flips.values())
            for run in runs.values():  # the relu patterns have served
                for key in [k for k in run if k[0] == "pattern"]:
                    del run[key]
            if backend in ("tensorflow", "jax"):
                _save_run(workdir / f"judge-{backend}-{variant}-{seed}.npz", runs["k64"])
            judges = {backend: runs["k64"]}
            for other in ("tensorflow", "jax"):
                path = workdir / f"judge-{other}-{variant}-{seed}.npz"
                if other != backend and path.exists():
                    judges[other] = _load_run(path)
            runs.update({f"{b}64": r for b, r in judges.items() if b != backend})
            chosen = judge_for(backend, variant, judges)
            record = _distances(backend, variant, seed, runs, lengths, local, chosen)
            record["kinks"] = _kinks(c, spec32, variant, runs, w32, x32, y32)
            record["training_flips"] = {"first_flip": flips, "judged_until": until}
            tolerances32 = table.defaults(backend, "float32")
            tolerances64 = table.defaults(backend, "float64")
            # the shipped rule: with the recommended judge, and with the backend's own float64
            own = judges[backend]
            eps_own = rule.EPS32 if _float32_inside(c.backend, variant) else rule.EPS64
            checks = _rule_checks(
                lengths,
                runs["s32"],
                runs["k32"],
                None if chosen is None else judges[chosen],
                runs["s64"],
                runs["k64"],
                eps_own,
                until,
            )
            own_checks = _rule_checks(
                lengths, runs["s32"], runs["k32"], own, runs["s64"], runs["k64"], rule.EPS64, until
            )
            unjudged = _rule_checks(
                lengths,
                runs["s32"],
                runs["k32"],
                None if chosen is None else judges[chosen],
                runs["s64"],
                runs["k64"],
                eps_own,
                None,
            )
            record["rule"] = {
                "judge": chosen,
                "float64_eps": eps_own,
                "float32": _summary(checks["float32"]),
                "float64": _summary(checks["float64"]),
                "float32_own_judge": _summary(own_checks["float32"]),
                "float32_past_flips": _summary(unjudged["float32"]),
                "float64_eps64": _summary(own_checks["float64"]),
            }
            record["table"] = {
                "float32": _summary(
                    {
                        k: _table_check(tolerances32, k, runs["s32"][k], runs["k32"][k])
                        for k in _order(runs["k32"])
                    }
                ),
            }
            if seed < config.mutant_seeds:
                tolerances = {"float32": tolerances32, "float64": tolerances64}
                for name in config.mutants:
                    mutant = mutants.get(name)
                    if not _applies(mutant, spec32, variant):
                        continue
                    m32 = c.scratch_run(spec32, mutant, w32, x32, y32, d32, batches, relu)
                    m64 = c.scratch_run(spec64, mutant, w64, x64, y64, d64, batches)
                    m_until = _until([_first_flip(m32, runs["s64"], relu), flips["k32"]])
                    mchecks = _rule_checks(
                        lengths,
                        m32,
                        runs["k32"],
                        None if chosen is None else judges[chosen],
                        m64,
                        runs["k64"],
                        eps_own,
                        m_until,
                    )
                    order = _order(runs["k32"])
                    mutant_records.append(
                        {
                            "backend": backend,
                            "variant": variant,
                            "seed": seed,
                            "mutant": name,
                            "layer": mutant.layer,
                            "judge": chosen,
                            "judged_until": m_until,
                            "rule_float32": _summary(mchecks["float32"]),
                            "rule_float64": _summary(mchecks["float64"]),
                            "table_float32": _summary(
                                {
                                    k: _table_check(
                                        tolerances["float32"], k, m32[k], runs["k32"][k]
                                    )
                                    for k in order
                                }
                            ),
                            "table_float64": _summary(
                                {
                                    k: _table_check(
                                        tolerances["float64"], k, m64[k], runs["k64"][k]
                                    )
                                    for k in order
                                }
                            ),
                        }
                    )
            record["seconds"] = round(time.perf_counter() - t0, 1)
            records.append(record)
            print(
                f"{backend} {variant} seed {seed}: {record['seconds']} s, judge {chosen}",
                flush=True,
            )
    result = {
        "backend": backend,
        "config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
        },
        "environment": _environment(c.backend),
        "widened": sorted(c.widened),
        "records": records,
        "mutants": mutant_records,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (workdir / f"{backend}.json").write_text(json.dumps(result), encoding="utf-8")


def _applies(mutant: Any, spec: Any, variant: str) -> bool:
    """Whether a mutant of the catalogue can show on this model (``applies_to`` where the
    catalogue locates its targets, else its list of variants)."""
    applies = getattr(mutant, "applies_to", None)
    if applies is not None:
        return bool(applies(spec))
    return variant in getattr(mutant, "variants", (variant,))


def _keep_patterns(run: Run, signs: Mapping[str, list[np.ndarray]]) -> None:
    """Each step's relu pattern, keyed ``("pattern", "<layer>@<step>")`` (a step's batch may
    be smaller than the others: the last of an epoch)."""
    for name, steps in signs.items():
        for step, pattern in enumerate(steps, start=1):
            run[("pattern", f"{name}@{step}")] = pattern


def _first_flip(run: Run, judge: Run, relu: Sequence[str]) -> int | None:
    """The first training step whose batch a relu layer of ``run`` splits differently from
    ``judge`` (the signs of its outputs, with each run's own weights before the step)."""
    first = None
    for (kind, label), pattern in run.items():
        name, _, at = label.rpartition("@")
        if kind != "pattern" or name not in relu or (kind, label) not in judge:
            continue
        if not np.array_equal(pattern, judge[(kind, label)]):
            first = int(at) if first is None else min(first, int(at))
    return first


def _until(flips: Iterable[int | None]) -> int | None:
    """The last step to judge: the step before the first flip of either float32 run."""
    found = [f for f in flips if f is not None]
    return None if not found else min(found) - 1


def _float32_inside(backend: Any, variant: str) -> bool:
    """Whether this backend's float64 LeNet-5 computes some op in float32."""
    ops = set(backend.FLOAT64_COMPUTED_IN_FLOAT32)
    return "matmul" in ops or ("tanh" in ops and variant == "classic")


def _local_lengths(layers: Sequence[Any], batch: int) -> dict[Key, int]:
    """Each tensor's own layer's reduction length (not accumulated along the data flow)."""
    out: dict[Key, int] = {}
    for layer in layers:
        mine = rule.layer_lengths(layer, batch)
        out[("forward", layer.name)] = mine.output
        for param, length in mine.params.items():
            out[("gradient", f"{layer.name}/{param}")] = length
            out[("training", f"{layer.name}/{param}")] = length
    classes = math.prod(layers[-1].output_shape)
    out[("gradient", "loss")] = out[("training", "step loss")] = batch * classes
    out[("gradient", "input")] = rule.layer_lengths(layers[0], batch).input_grad
    return out


def _distances(
    backend: str,
    variant: str,
    seed: int,
    runs: Mapping[str, Run],
    lengths: Mapping[Key, int],
    local: Mapping[Key, int],
    chosen: str | None,
) -> dict[str, Any]:
    """Per tensor: the distances of every pair the derivation needs, the magnitudes, lengths.

    Pairs are labelled ``a~b``: ``s32``/``s64`` scratch, ``k32``/``k64`` this backend's Keras,
    ``<backend>64`` a backend's Keras float64 (this one's included)."""
    judges = {f"{backend}64": runs["k64"]}
    judges.update({name: run for name, run in runs.items() if name[0] not in "sk"})
    pairs: list[tuple[str, str, str]] = [("s32~k32", "s32", "k32"), ("s64~k64", "s64", "k64")]
    for name in judges:
        pairs += [(f"s32~{name}", "s32", name), (f"k32~{name}", "k32", name)]
        if name != f"{backend}64":
            pairs += [(f"s64~{name}", "s64", name), (f"k64~{name}", "k64", name)]
    everything = {**runs, **judges}
    magnitude_of = judges[f"{chosen or backend}64"]
    tensors = []
    for key in _order(runs["k32"]):
        per_step = key[0] == "training"
        entry: dict[str, Any] = {
            "kind": key[0],
            "name": key[1],
            "size": int(runs["k32"][key].size),
            "L": int(lengths[key]),
            "L_local": int(local.get(key, 1)),
            "magnitude": _magnitude(magnitude_of[key], per_step),
            "d": {
                label: _distance(everything[a][key], everything[b][key], per_step)
                for label, a, b in pairs
            },
        }
        tensors.append(entry)
    return {"backend": backend, "variant": variant, "seed": seed, "tensors": tensors}


def _environment(backend: Any) -> dict[str, Any]:
    import keras

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        **backend.versions(),
        "flags": backend.numeric_flags(),
    }
    return env


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text("utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
                break
    except OSError:
        pass
    blas: list[dict[str, Any]] = []
    try:
        import threadpoolctl  # type: ignore[import-untyped]

        blas = [
            {
                k: v
                for k, v in info.items()
                if k
                in ("internal_api", "version", "architecture", "num_threads", "threading_layer")
            }
            for info in threadpoolctl.threadpool_info()
            if info.get("user_api") == "blas"
        ]
    except ImportError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "blas": blas,
        "machine": platform.machine(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- the derivation -------------------------------------------------------------------------
def _stats(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if not v.size:
        return {"n": 0}
    return {
        "n": int(v.size),
        "min": float(f"{v.min():.4g}"),
        "median": float(f"{np.median(v):.4g}"),
        "p90": float(f"{np.quantile(v, 0.9):.4g}"),
        "max": float(f"{v.max():.4g}"),
    }


def _ratio(a: float, b: float) -> float:
    if b > 0:
        return a / b
    return 0.0 if a == 0 else math.inf


def _worst_ratios(
    d: Mapping[str, Any], judge: str, training: bool, until: int | None = None
) -> list[float]:
    """rms(scratch32 − judge) / rms(keras32 − judge) and the same for max; for a training
    curve the largest over the steps (up to ``until``) of each step's distance ÷ the running
    maximum of the reference's."""
    res, ref = d[f"s32~{judge}"], d[f"k32~{judge}"]
    if not training:
        return [_ratio(res[i], ref[i]) for i in range(2)]
    out = []
    for i in range(2):
        running = np.maximum.accumulate(np.asarray(ref[i], dtype=np.float64))
        pairs = list(zip(res[i], running, strict=True))[:until]
        out.append(max((_ratio(r, q) for r, q in pairs), default=0.0))
    return out


POWER: Final = rule.DEFAULT_RULE.length_power


def _units(
    distance: Any, eps: float, length: float, magnitude: Any, power: float = POWER
) -> list[float]:
    """Distances in units of eps · L**power · magnitude (per step for a training curve)."""
    ds, ms = np.atleast_1d(distance), np.atleast_1d(magnitude)
    scale = eps * float(length) ** power
    return [_ratio(float(x), scale * float(m)) for x, m in zip(ds, ms, strict=True) if m > 0]


def derive(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What each constant must be, from the children's records (module docstring)."""
    eps32, eps64 = rule.EPS32, rule.EPS64
    k_single: list[tuple[float, str]] = []
    k_small: list[float] = []  # tensors of at most 100 elements (biases, the loss)
    k_training: list[tuple[float, str]] = []
    by_kind: dict[str, list[float]] = {}
    by_judge: dict[str, list[float]] = {}
    floor_single: list[tuple[float, str]] = []
    floor_training: list[tuple[float, str]] = []
    floor_local: list[float] = []
    floor_sqrt: list[float] = []
    f64: list[tuple[float, str]] = []
    f64_local: list[float] = []
    f64_steps: dict[int, list[float]] = {}
    judged_to: dict[str, dict[str, list[float]]] = {}
    flips: list[str] = []
    powers: dict[str, dict[float, list[float]]] = {"float32": {}, "float64": {}}
    for result in results:
        backend = result["backend"]
        for record in result["records"]:
            variant, seed = record["variant"], record["seed"]
            chosen = record["rule"]["judge"]
            j = None if chosen is None else f"{chosen}64"
            true64 = chosen == backend
            until = (record.get("training_flips") or {}).get("judged_until")
            if until is not None:
                flips.append(f"{backend} {variant} seed {seed}: judged until step {until}")
            for t in record["tensors"]:
                d, length, mag = t["d"], t["L"], t["magnitude"]
                training = t["kind"] == "training"
                where = f"{backend} {variant} seed {seed} {t['kind']} {t['name']}"
                part = "training" if training else "one tensor"
                for label in d:
                    if label.startswith("s32~") and label != "s32~k32":
                        name = label[4:]
                        key = f"{backend} {variant}, judge {name}, {part}"
                        by_judge.setdefault(key, []).extend(_worst_ratios(d, name, training, until))
                if j is not None:
                    ratios = _worst_ratios(d, j, training, until)
                    for metric, r in zip(("rms", "max"), ratios, strict=True):
                        if training:
                            k_training.append((r, f"{where} ({metric})"))
                        else:
                            k_single.append((r, f"{where} ({metric})"))
                            by_kind.setdefault(f"{t['kind']} ({metric})", []).append(r)
                            if t["size"] <= 100:
                                k_small.append(r)
                    ref = d[f"k32~{j}"]
                    for i, metric in enumerate(("rms", "max")):
                        if not training:
                            for power in (0.0, 0.25, 0.5, 1.0):
                                powers["float32"].setdefault(power, []).extend(
                                    _units(d[f"s32~{j}"][i], eps32, length, mag[i], power)
                                )
                                if true64:
                                    powers["float64"].setdefault(power, []).extend(
                                        _units(d["s64~k64"][i], eps64, length, mag[i], power)
                                    )
                        units = _units(ref[i], eps32, length, mag[i])
                        target = floor_training if training else floor_single
                        target.extend((u, f"{where} ({metric})") for u in units)
                        if not training:
                            floor_local += _units(ref[i], eps32, t["L_local"], mag[i])
                            floor_sqrt += _units(d[f"s32~{j}"][i], eps32, length, mag[i])
                d64 = d["s64~k64"]
                for i, metric in enumerate(("rms", "max")):
                    if true64 and training:
                        for step, u in enumerate(_units(d64[i], eps64, length, mag[i]), 1):
                            f64_steps.setdefault(step, []).append(u)
                    elif true64:
                        f64 += [
                            (u, f"{where} ({metric})")
                            for u in _units(d64[i], eps64, length, mag[i])
                        ]
                        f64_local += _units(d64[i], eps64, t["L_local"], mag[i])
                if not true64 and j is not None:
                    entry = judged_to.setdefault(f"{backend} {variant}", {})
                    for i in range(2):
                        k64 = _units(d[f"k64~{j}"][i], eps32, length, mag[i])
                        s64 = _units(d[f"s64~{j}"][i], eps64, length, mag[i])
                        entry.setdefault(f"keras64 - {j}, eps32 units, {part}", []).extend(k64)
                        entry.setdefault(f"scratch64 - {j}, eps64 units, {part}", []).extend(s64)
                        if not training:
                            own = _units(d64[i], eps64, length, mag[i])
                            entry.setdefault(
                                "scratch64 - keras64, eps64 units, one tensor", []
                            ).extend(own)
    growth = {s: max(v) for s, v in sorted(f64_steps.items())}
    return {
        "k": {
            "note": "rms and max of (scratch32 - judge) / (keras32 - judge), one tensor",
            "ratio_max": max(k_single, default=(0.0, ""))[0],
            "where": max(k_single, default=(0.0, ""))[1],
            "ratio": _stats([r for r, _ in k_single]),
            "small_tensors": _stats(k_small),
            "by_kind": {k: _stats(v) for k, v in sorted(by_kind.items())},
        },
        "k_training": {
            "note": "largest over the steps of the distance / the running max of the reference's",
            "ratio_max": max(k_training, default=(0.0, ""))[0],
            "where": max(k_training, default=(0.0, ""))[1],
            "ratio": _stats([r for r, _ in k_training]),
            "k_needed_by_floor": _k_needed_training(results),
        },
        "by_judge": {k: _stats(v) for k, v in sorted(by_judge.items())},
        "floor32": {
            "note": "the float32 reference's distance to the judge in eps32 * sqrt(L) * magnitude",
            "min": min(floor_single, default=(0.0, ""))[0],
            "where": min(floor_single, default=(0.0, ""))[1],
            "units": _stats([u for u, _ in floor_single]),
            "training_min": min(floor_training, default=(0.0, ""))[0],
            "training_where": min(floor_training, default=(0.0, ""))[1],
            "training_units": _stats([u for u, _ in floor_training]),
            "units_with_local_L": _stats(floor_local),
            "scratch32_units": _stats(floor_sqrt),
            "k_needed_by_floor": _k_needed(results),
        },
        "length_power": {
            "note": "honest distances (scratch32 to the judge, scratch64 to keras64) in eps * "
            "L**p * magnitude for each p: the p with the smallest spread (max / median) fits",
            **{
                dtype: {
                    str(p): {**_stats(v), "spread": _spread(v)} for p, v in sorted(by_p.items())
                }
                for dtype, by_p in powers.items()
            },
        },
        "training_flips": flips,
        "floor64": {
            "note": "scratch64 - keras64 in eps64 * sqrt(L) * magnitude (true float64 backends)",
            "max": max(f64, default=(0.0, ""))[0],
            "where": max(f64, default=(0.0, ""))[1],
            "units": _stats([u for u, _ in f64]),
            "units_with_local_L": _stats(f64_local),
        },
        "step_growth": {
            "note": "largest scratch64 - keras64 per training step, in eps64 * sqrt(L) * magnitude",
            "by_step": {str(s): float(f"{v:.4g}") for s, v in growth.items()},
            "exponent_needed": _exponent(growth, rule.DEFAULT_RULE.floor64),
        },
        "float64_judged_to": {
            k: {name: _stats(v) for name, v in entry.items()} for k, entry in judged_to.items()
        },
    }


def _spread(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if x > 0 and math.isfinite(x)])
    return float(f"{v.max() / np.median(v):.3g}") if v.size else 0.0


def _k_needed(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """For floor coefficients around the shipped one: the largest k one tensor needs,
    (distance − floor) / the reference's distance, over every honest float32 tensor."""
    eps32 = rule.EPS32
    rows = []
    for result in results:
        for record in result["records"]:
            chosen = record["rule"]["judge"]
            if chosen is None:
                continue
            j = f"{chosen}64"
            for t in record["tensors"]:
                if t["kind"] == "training":
                    continue
                for i in range(2):
                    scale = eps32 * t["L"] ** POWER * t["magnitude"][i]
                    rows.append((t["d"][f"s32~{j}"][i], t["d"][f"k32~{j}"][i], scale))
    out = {}
    for c in (0.05, 0.1, 0.15, 0.2, rule.DEFAULT_RULE.floor32):
        needed = [_ratio(max(r - c * s, 0.0), q) for r, q, s in rows]
        out[f"{c:g}"] = float(f"{max(needed, default=0.0):.4g}")
    return out


def _k_needed_training(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The same for training curves: the largest over steps (up to the first relu flip) of
    (distance − floor) / the running maximum of the reference's, with the step's floor."""
    eps32 = rule.EPS32
    out: dict[str, Any] = {}
    for c in (0.05, 0.1, 0.2, rule.DEFAULT_RULE.floor32):
        worst = (0.0, "")
        for result in results:
            for record in result["records"]:
                chosen = record["rule"]["judge"]
                if chosen is None:
                    continue
                j = f"{chosen}64"
                until = (record.get("training_flips") or {}).get("judged_until")
                for t in record["tensors"]:
                    if t["kind"] != "training":
                        continue
                    for i in range(2):
                        res, ref = t["d"][f"s32~{j}"][i], t["d"][f"k32~{j}"][i]
                        running = np.maximum.accumulate(np.asarray(ref, dtype=np.float64))
                        scale = eps32 * t["L"] ** POWER * np.asarray(t["magnitude"][i])
                        need = [
                            _ratio(max(r - c * f, 0.0), q)
                            for r, q, f in list(zip(res, running, scale, strict=True))[:until]
                        ]
                        if need and max(need) > worst[0]:
                            where = f"{result['backend']} {record['variant']} seed "
                            worst = (max(need), where + f"{record['seed']} {t['name']}")
        out[f"{c:g}"] = {"k": float(f"{worst[0]:.4g}"), "where": worst[1]}
    return out


def _exponent(growth: Mapping[int, float], floor64: float) -> float | None:
    """The smallest p with growth[t] <= floor64 · t**p at every step t >= 2 (None: no data)."""
    needed = [
        math.log(v / floor64) / math.log(t) for t, v in growth.items() if t >= 2 and v > floor64
    ]
    return float(f"{max(needed):.3g}") if needed else (0.0 if growth else None)


def _honest_margins(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The shipped rule's largest margin on honest runs, per backend and dtype."""
    out: dict[str, Any] = {}
    for result in results:
        for record in result["records"]:
            for part in ("float32", "float64", "float32_own_judge", "float64_eps64"):
                s = record["rule"][part]
                key = f"{result['backend']} {part}"
                entry = out.setdefault(key, {"max_margin": 0.0, "where": None, "failed_runs": 0})
                if s["max_margin"] > entry["max_margin"]:
                    entry["max_margin"] = s["max_margin"]
                    entry["where"] = f"{record['variant']} seed {record['seed']} " + str(
                        s["max_margin_check"]
                    )
                entry["failed_runs"] += int(s["failed"] > 0)
    return out


def _mutant_table(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        for m in result["mutants"]:
            row = {k: m[k] for k in ("backend", "variant", "mutant", "layer", "judge")}
            for part in ("rule_float32", "rule_float64", "table_float32", "table_float64"):
                s = m[part]
                row[part] = {
                    "caught": s["failed"] > 0,
                    "first_failure": s["first_failure"],
                    "max_margin": float(f"{s['max_margin']:.4g}"),
                    "max_margin_check": s["max_margin_check"],
                }
            rows.append(row)
    return rows


# -- the parent --------------------------------------------------------------------------------
def _run_child(
    backend: str, config: StudyConfig, workdir: Path, progress: Callable[[str], None]
) -> None:
    command = [
        sys.executable,
        "-m",
        "compare.tools.judge_study",
        "--child",
        backend,
        "--config",
        json.dumps(dataclasses.asdict(config)),
        "--workdir",
        str(workdir),
    ]
    errors = workdir / f"{backend}.stderr.txt"
    with (
        errors.open("w+", encoding="utf-8") as stderr,
        subprocess.Popen(
            command,
            env=keras_backends.child_env(backend),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        try:
            assert process.stdout is not None
            for line in process.stdout:
                progress(line.rstrip())
            code = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if code != 0:
            stderr.seek(0)
            lines = [line.rstrip() for line in stderr if line.strip()]
            raise RuntimeError(
                f"the {backend} child failed (exit {code}): " + "\n".join(lines[-15:])
            )


def parts_folder(out: Path) -> Path:
    """Where the children's results are kept next to the report (``--rederive`` reads them)."""
    return out.with_name(out.stem + ".parts")


def study(
    out: Path,
    *,
    config: StudyConfig = StudyConfig(),
    backends: Sequence[str] = BACKENDS,
    workdir: Path | None = None,
    progress: Callable[[str], None] = print,
    rederive: bool = False,
) -> dict[str, Any]:
    """Run every backend's child (TensorFlow and JAX first: they supply the judges), keep each
    child's result in :func:`parts_folder`, derive the constants and write the report to
    ``out``. ``rederive``: run nothing, derive again from the kept results."""
    started = time.perf_counter()
    ordered = [b for b in BACKENDS if b in backends]
    parts = parts_folder(out)
    seconds: dict[str, float] = {}
    if not rederive:
        parts.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="judge-study-", dir=workdir) as tmp:
            folder = Path(tmp)
            for backend in ordered:
                t0 = time.perf_counter()
                _run_child(backend, config, folder, progress)
                seconds[backend] = round(time.perf_counter() - t0, 1)
                text = (folder / f"{backend}.json").read_text("utf-8")
                (parts / f"{backend}.json").write_text(text, encoding="utf-8")
    results = [
        json.loads((parts / f"{b}.json").read_text("utf-8"))
        for b in ordered
        if (parts / f"{b}.json").exists()
    ]
    if rederive:
        seconds = {r["backend"]: r["seconds"] for r in results}
        config = StudyConfig(**results[0]["config"]) if "config" in results[0] else config
    report = {
        "command": "python -m compare.tools.judge_study " + " ".join(sys.argv[1:]),
        "config": dataclasses.asdict(config),
        "machine": _machine(),
        "environments": {r["backend"]: r["environment"] for r in results},
        "widened_float64_outputs": {r["backend"]: r["widened"] for r in results},
        "rule": dataclasses.asdict(rule.DEFAULT_RULE),
        "derived": derive(results),
        "honest_margins": _honest_margins(results),
        "mutants": _mutant_table(results),
        "seconds": {"total": round(time.perf_counter() - started, 1), **seconds},
        "records": [rec for r in results for rec in r["records"]],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def _brief(report: Mapping[str, Any]) -> str:
    d = report["derived"]
    lines = [
        f"k: largest ratio {d['k']['ratio_max']:.3g} ({d['k']['where']})",
        f"k_training: largest ratio {d['k_training']['ratio_max']:.3g} "
        f"({d['k_training']['where']})",
        f"floor32: smallest reference distance {d['floor32']['min']:.3g} eps32*sqrt(L)*mag "
        f"({d['floor32']['where']})",
        f"floor64: largest float64 distance {d['floor64']['max']:.3g} eps64*sqrt(L)*mag "
        f"({d['floor64']['where']})",
        f"step growth exponent needed: {d['step_growth']['exponent_needed']}",
    ]
    for key, value in report["honest_margins"].items():
        lines.append(
            f"honest {key}: max margin {value['max_margin']:.3g} ({value['where']}), "
            f"failed runs {value['failed_runs']}"
        )
    for row in report["mutants"]:
        r32, t32 = row["rule_float32"], row["table_float32"]
        lines.append(
            f"mutant {row['backend']:<10} {row['variant']:<10} {row['mutant']:<36} "
            f"rule32 {r32['max_margin']:.3g} ({'caught' if r32['caught'] else 'MISSED'}) "
            f"table32 {t32['max_margin']:.3g} ({'caught' if t32['caught'] else 'MISSED'}) "
            f"rule64 {row['rule_float64']['max_margin']:.3g}"
        )
    lines.append(f"seconds: {report['seconds']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.tools.judge_study")
    parser.add_argument("--out", type=Path, default=Path("reports/judge_study.json"))
    parser.add_argument("--seeds", type=int, default=StudyConfig.seeds)
    parser.add_argument("--steps", type=int, default=StudyConfig.steps)
    parser.add_argument("--mutant-seeds", type=int, default=StudyConfig.mutant_seeds)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--mutants", default=",".join(MUTANTS), help="'' for none")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--rederive", action="store_true", help="derive again from the kept child results"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        fields = json.loads(args.config)
        config = StudyConfig(
            seeds=int(fields["seeds"]),
            steps=int(fields["steps"]),
            variants=tuple(fields["variants"]),
            mutants=tuple(fields["mutants"]),
            mutant_seeds=int(fields["mutant_seeds"]),
            batch=int(fields["batch"]),
        )
        child(args.child, config, args.workdir)
        return 0
    config = StudyConfig(
        seeds=args.seeds,
        steps=args.steps,
        variants=tuple(v for v in args.variants.split(",") if v),
        mutants=tuple(m for m in args.mutants.split(",") if m),
        mutant_seeds=args.mutant_seeds,
    )
    backends = [b for b in args.backends.split(",") if b]
    report = study(
        args.out, config=config, backends=backends, workdir=args.workdir, rederive=args.rederive
    )
    print(_brief(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
